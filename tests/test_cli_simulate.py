"""``noisesim simulate`` and the CLI shell: outputs, reproducibility and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from noisesim.cli import main
from noisesim.rawio import read_raw


@pytest.fixture()
def clean_npy(tmp_path):
    path = tmp_path / "clean.npy"
    np.save(path, (np.random.default_rng(0).uniform(0, 1, (64, 96)) ** 2).astype(np.float32))
    return path


def run_cli(*args):
    return main([str(a) for a in args])


def test_simulate_npy_is_reproducible(tmp_path, clean_npy, capsys):
    out1, out2 = tmp_path / "a.npy", tmp_path / "b.npy"
    for out in (out1, out2):
        assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 1600, "--ratio", 50, "--input", clean_npy,
                       "--output", out, "--seed", 3, "--params-out", tmp_path / "p.json") == 0
    a, b = np.load(out1), np.load(out2)
    assert a.dtype == np.uint16 and a.shape == (64, 96)
    np.testing.assert_array_equal(a, b)
    params = json.loads((tmp_path / "p.json").read_text())
    assert params["gain_k_dn_per_e"] == pytest.approx(1.53008) and params["iso"] == 1600
    assert "wrote" in capsys.readouterr().out
    # another seed, another frame
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 1600, "--ratio", 50, "--input", clean_npy,
                   "--output", out2, "--seed", 4) == 0
    assert not np.array_equal(a, np.load(out2))


def test_simulate_dng_round_trip(tmp_path, clean_npy):
    dng = tmp_path / "noisy.dng"
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 3200, "--input", clean_npy, "--output", dng) == 0
    frame = read_raw(dng)
    assert frame.cfa.pattern == "RGGB" and frame.black_level_dn == (512.0,) * 4
    # and a raw file as input: levels and CFA come from the file
    out = tmp_path / "again.tiff"
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", dng, "--output", out,
                   "--output-unit", "normalized") == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--card", "NoSuchCam", "--iso", 100], "Shipped cards: "),
        (["--card", "SonyA7S2", "--iso", 40], "cannot serve --iso 40"),  # the table starts at ISO 50
        (["--card", "SonyA7S2", "--disable", "photons"], "unknown noise terms"),
        (["--card", "SonyA7S2", "--ratio", 0.5], "ratio must be"),
    ],
)
def test_simulate_errors_are_one_line(tmp_path, clean_npy, capsys, args, message):
    rc = run_cli("simulate", *args, "--input", clean_npy, "--output", tmp_path / "n.npy")
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "n.npy").exists()


def test_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy at all")
    assert run_cli("simulate", "--card", "SonyA7S2", "--input", bad, "--output", tmp_path / "n.npy") == 2
    assert "bad.npy: not a .npy file" in capsys.readouterr().err
    assert run_cli("simulate", "--card", "SonyA7S2", "--input", tmp_path / "missing.npy", "--output", tmp_path / "n.npy") == 2
    assert "missing.npy: no such file" in capsys.readouterr().err
    fake = tmp_path / "fake.dng"
    fake.write_bytes(b"II*\x00garbage")
    assert run_cli("simulate", "--card", "SonyA7S2", "--input", fake, "--output", tmp_path / "n.npy") == 2
    assert "fake.dng: cannot be read as a raw file" in capsys.readouterr().err
    assert run_cli("simulate", "--card", "SonyA7S2", "--input", bad, "--output", tmp_path / "nodir" / "n.npy") == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_entry_point():
    res = subprocess.run([sys.executable, "-m", "noisesim", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for command in ("simulate", "cards"):
        assert command in res.stdout


# --------------------------------------------------------------------------------------------------
# --input-unit auto (issue 11 item 1)
# --------------------------------------------------------------------------------------------------
def test_float_dn_input_is_read_as_dn(tmp_path, capsys):
    # float32 raw DN 512…16383: read as normalized, every pixel saturated at 16383 with exit 0
    ramp = np.round(np.linspace(512, 16383, 64 * 96)).astype(np.float32).reshape(64, 96)
    src = tmp_path / "clean_dn.npy"
    np.save(src, ramp)
    out = tmp_path / "noisy.npy"
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", src, "--output", out) == 0
    err = capsys.readouterr().err
    assert "clean_dn.npy" in err and "read as raw DN" in err
    noisy = np.load(out).astype(np.float64)
    assert np.mean(noisy == 16383) < 0.05
    # ISO 100, ratio 1: the noisy frame follows the ramp (σ ≤ √(K·16383) + read ≈ 40 DN)
    assert np.abs(noisy - ramp).mean() < 50
    # the same frame given as integers or normalized gives the same result
    np.save(src, ramp.astype(np.uint16))
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", src, "--output", tmp_path / "u.npy") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "u.npy"), noisy)


@pytest.mark.parametrize("lo,hi", [(-40.0, 900.0), (0.0, 30000.0), (2.0, 255.0)])
def test_ambiguous_float_input_is_refused(tmp_path, capsys, lo, hi):
    src = tmp_path / "odd.npy"
    np.save(src, np.linspace(lo, hi, 64 * 96, dtype=np.float32).reshape(64, 96))
    out = tmp_path / "n.npy"
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", src, "--output", out) == 2
    err = capsys.readouterr().err
    assert "odd.npy" in err and f"{lo:g}…{hi:g}" in err and "--input-unit" in err and err.count("\n") == 1
    assert not out.exists()
    # naming the unit overrides the inference
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", src, "--output", out,
                   "--input-unit", "electrons") == 0


@pytest.mark.parametrize("values,found", [
    (np.linspace(-5, -1, 64 * 96, dtype=np.float32), "float values -5…-1"),  # was read as normalized, exit 0
    (np.full(64 * 96, 70000, np.int32), "integer values 70000…70000"),  # was clipped at white, exit 0
    (np.full(64 * 96, -3, np.int16), "integer values -3…-3"),  # was read as DN below black, exit 0
])
def test_input_outside_every_unit_is_refused(tmp_path, capsys, values, found):
    src = tmp_path / "odd.npy"
    np.save(src, values.reshape(64, 96))
    out = tmp_path / "n.npy"
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", src, "--output", out) == 2
    err = capsys.readouterr().err
    assert "odd.npy" in err and found in err and err.count("\n") == 1
    assert not out.exists()


def test_output_over_its_own_input_is_refused(tmp_path, clean_npy, capsys):
    before = clean_npy.read_bytes()
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", clean_npy, "--output", clean_npy) == 2
    assert "would overwrite its own input" in capsys.readouterr().err
    assert clean_npy.read_bytes() == before


@pytest.mark.parametrize("index", [2**63, 2**32])  # 2**63 was an OverflowError traceback
def test_frame_index_beyond_the_counter_word_is_refused(tmp_path, clean_npy, capsys, index):
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", clean_npy, "--output", tmp_path / "n.npy",
                   "--frame-index", index) == 2
    err = capsys.readouterr().err
    assert "--frame-index" in err and "Traceback" not in err and err.count("\n") == 1


def test_normalized_float_input_is_unchanged(tmp_path, clean_npy, capsys):
    out = tmp_path / "n.npy"
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", clean_npy, "--output", out) == 0
    assert "read as raw DN" not in capsys.readouterr().err
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", clean_npy, "--output", tmp_path / "m.npy",
                   "--input-unit", "normalized") == 0
    np.testing.assert_array_equal(np.load(out), np.load(tmp_path / "m.npy"))


def test_help_says_what_auto_does(capsys):
    with pytest.raises(SystemExit):
        run_cli("simulate", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "auto (default): integers are raw DN" in text and "floats in -0.5 … 1.5 are normalized" in text


@pytest.mark.parametrize("shape,message", [((64, 96, 3), "RGB image"), ((63, 96), "multiples of 2")])
def test_shape_errors_name_the_file(tmp_path, capsys, shape, message):
    src = tmp_path / "wrong_shape.npy"
    np.save(src, np.zeros(shape, np.float32))
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--input", src, "--output", tmp_path / "n.npy") == 2
    err = capsys.readouterr().err
    assert "wrong_shape.npy" in err and message in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------------
# many frames in one process (issue 11 item 9)
# --------------------------------------------------------------------------------------------------
def _frames(folder, n=3):
    folder.mkdir()
    g = np.random.default_rng(2)
    for i in range(n):
        np.save(folder / f"f{i}.npy", g.uniform(0, 1, (32, 48)).astype(np.float32))
    (folder / "notes.txt").write_text("not a frame")


def test_folder_and_glob_batches_are_deterministic_per_frame(tmp_path, capsys):
    _frames(tmp_path / "clean")
    common = ["simulate", "--card", "SonyA7S2", "--iso", 3200, "--ratio", 20, "--seed", 5]
    assert run_cli(*common, "--input", tmp_path / "clean", "--output", tmp_path / "out") == 0
    assert "wrote 3 frames to" in capsys.readouterr().out
    outs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outs] == ["f0.npy", "f1.npy", "f2.npy"]
    # frame i equals a single run with --frame-index i (seed + frame index), and differs from the others
    for i, out in enumerate(outs):
        single = tmp_path / f"single{i}.npy"
        assert run_cli(*common, "--input", tmp_path / "clean" / f"f{i}.npy", "--output", single, "--frame-index", i) == 0
        np.testing.assert_array_equal(np.load(out), np.load(single))
    noise0 = np.load(outs[0]).astype(float) - np.load(tmp_path / "single1.npy").astype(float)
    assert np.any(noise0 != 0)
    # a glob of the same frames, written as TIFF, holds the same pixels
    assert run_cli(*common, "--input", str(tmp_path / "clean" / "f*.npy"), "--output", tmp_path / "tif",
                   "--output-format", ".tiff", "--no-progress") == 0
    import tifffile

    for i in range(3):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "tif" / f"f{i}.tiff"), np.load(outs[i]))


def test_batch_errors_are_one_line(tmp_path, capsys):
    _frames(tmp_path / "clean", n=1)
    (tmp_path / "empty").mkdir()
    cases = [
        (["--input", tmp_path / "empty", "--output", tmp_path / "o"], "no frames in the folder"),
        (["--input", str(tmp_path / "nothing*.npy"), "--output", tmp_path / "o"], "no frames in the pattern"),
        (["--input", tmp_path / "clean", "--output", tmp_path / "clean"], "would overwrite its own input"),
        (["--input", tmp_path / "clean", "--output", tmp_path / "x.npy"], "needs an output folder"),
        (["--input", tmp_path / "clean" / "f0.npy", "--output", tmp_path / "clean"], "is a folder"),
    ]
    for args, message in cases:
        assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, *args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (args, err)


def test_a_truncated_tiff_gives_one_line(tmp_path):
    """tifffile logged a line per damaged tag (five for this file) before noisesim's one error."""
    import tifffile

    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, np.full((64, 96), 2000, np.uint16), description="x" * 50, resolution=(300, 300))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:200])  # the header and IFD, but not the tag values they point to
    res = subprocess.run([sys.executable, "-m", "noisesim", "simulate", "--card", "SonyA7S2", "--iso", "100", "--input",
                          str(cut), "--output", str(tmp_path / "n.npy")], capture_output=True, text=True)
    assert res.returncode == 2
    assert "cut.tif" in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_maps_smaller_than_the_frame_name_the_frame_and_card(tmp_path, capsys):
    """The error said only 'map … of shape (64, 64) does not cover the frame', naming neither file."""
    from noisesim.card import load_card, save_card
    from noisesim.params import FixedPatternMaps

    g = np.random.default_rng(0)
    maps = FixedPatternMaps(prnu=g.normal(0, 0.01, (64, 64)).astype(np.float32))
    card = save_card(load_card("SonyA7S2").with_maps(maps), tmp_path / "small_maps.toml")
    src = tmp_path / "big_frame.npy"
    np.save(src, np.full((128, 128), 0.1, np.float32))
    assert run_cli("simulate", "--card", card, "--iso", 100, "--input", src, "--output", tmp_path / "n.npy") == 2
    err = capsys.readouterr().err
    assert "big_frame.npy" in err and "small_maps.toml" in err and "does not cover" in err and err.count("\n") == 1


@pytest.mark.parametrize("damage", ["truncated_npy", "odd_shape", "truncated_tiff"])
def test_a_bad_frame_stops_a_batch_before_any_output(tmp_path, capsys, damage):
    """The batch ran frame by frame: a bad third frame stopped it with the first two written (exit 2)."""
    import tifffile

    src = tmp_path / "frames"
    src.mkdir()
    for name in ("a", "b"):
        np.save(src / f"{name}.npy", np.full((32, 48), 0.1, np.float32))
    if damage == "truncated_npy":
        np.save(src / "c.npy", np.full((32, 48), 0.1, np.float32))
        (src / "c.npy").write_bytes((src / "c.npy").read_bytes()[:-100])
    elif damage == "odd_shape":
        np.save(src / "c.npy", np.full((31, 48), 0.1, np.float32))
    else:
        tifffile.imwrite(src / "c.tif", np.full((32, 48), 2000, np.uint16))
        (src / "c.tif").write_bytes((src / "c.tif").read_bytes()[:-500])
    out = tmp_path / "noisy"
    assert run_cli("simulate", "--card", "SonyA7S2", "--iso", 100, "--no-progress", "--input", src, "--output", out) == 2
    err = capsys.readouterr().err
    assert "c." in err and err.count("\n") == 1
    assert not out.exists()
