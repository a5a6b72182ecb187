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
    assert params["gain_k_dn_per_e"] == pytest.approx(1.53) and params["iso"] == 1600
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
        (["--card", "SonyA7S2", "--iso", 50], "cannot serve iso=50"),
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
