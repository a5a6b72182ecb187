"""Every command's errors (issue 11 item 6): a bad file gives one line on stderr that names it and exit
status 2; an API error names the command-line option; a usage error is one line, not argparse's usage block."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from noisesim.cli import cli_message, main

MANIFEST_HEAD = "path,kind,iso,exposure_s,black_level,white_level,cfa\n"


def one_line_error(capsys, argv, *expected):
    """Run ``noisesim argv``: exit 2, stderr exactly one line, containing each of ``expected``."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for text in expected:
        assert str(text) in err, err
    return err


@pytest.fixture()
def files(tmp_path):
    """A few bad inputs: a truncated .npy, an RGB image, a corrupt card, a folder, a non-HDF5 .h5 and
    manifests whose only frame is missing or an RGB image."""
    np.save(tmp_path / "good.npy", np.full((32, 32), 0.2, np.float32))
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "good.npy").read_bytes()[:100])
    np.save(tmp_path / "rgb.npy", np.zeros((32, 32, 3), np.uint16))
    (tmp_path / "corrupt.toml").write_text("this is [not toml = \n")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "not_hdf5.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"x" * 100)
    (tmp_path / "missing_frame.csv").write_text(MANIFEST_HEAD + "gone.npy,dark,100,1/1000,512,16383,RGGB\n")
    (tmp_path / "rgb_frame.csv").write_text(MANIFEST_HEAD + "rgb.npy,dark,100,1/1000,512,16383,RGGB\n")
    return tmp_path


# --------------------------------------------------------------------------------------------------
# every error names its file
# --------------------------------------------------------------------------------------------------
def test_simulate_bad_files(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    out = files / "n.npy"
    one_line_error(capsys, ["simulate", "--card", "SonyA7S2", "--iso", 800, "--input", files / "truncated.npy", "--output", out],
                   "truncated.npy")
    one_line_error(capsys, ["simulate", "--card", "SonyA7S2", "--iso", 800, "--input", files / "rgb.npy", "--output", out],
                   "rgb.npy", "RGB image")
    one_line_error(capsys, ["simulate", "--card", files / "corrupt.toml", "--iso", 800, "--input", files / "good.npy",
                            "--output", out], "corrupt.toml", "not valid TOML")
    # a folder given as the card (a bare name, no slash): it said "not a shipped card and no such file"
    one_line_error(capsys, ["simulate", "--card", "a_folder", "--iso", 800, "--input", files / "good.npy", "--output", out],
                   "a_folder: is a folder")
    # a folder as --params-out: it wrote the frame, then failed naming a temporary file (.a_folder.XXXX.tmp)
    err = one_line_error(capsys, ["simulate", "--card", "SonyA7S2", "--iso", 800, "--input", files / "good.npy",
                                  "--output", out, "--params-out", files / "a_folder"], "a_folder")
    assert ".tmp" not in err and not out.exists()


def test_cards_bad_files(files, capsys):
    one_line_error(capsys, ["cards", "show", files / "corrupt.toml"], "corrupt.toml")
    one_line_error(capsys, ["cards", "show", files / "a_folder"], "a_folder", "folder")
    one_line_error(capsys, ["cards", "import", files / "truncated.npy", "--output", files / "c.toml"], "truncated.npy")
    # a folder as an import source: it said "no such file"
    one_line_error(capsys, ["cards", "import", files / "a_folder", "--output", files / "c.toml"], "a_folder: is a folder")


def test_calibrate_bad_files(files, capsys):
    # the manifest's only frame is missing: one line naming both (it was two lines, the frame named twice)
    err = one_line_error(capsys, ["calibrate", files / "missing_frame.csv", "--output", files / "c.toml"],
                         "missing_frame.csv", "gone.npy")
    assert err.count("gone.npy") == 1
    one_line_error(capsys, ["calibrate", files / "good.npy", "--output", files / "c.toml"], "good.npy")
    # the only frame of a manifest has the wrong dtype: it was logged as a warning, then repeated in the error
    np.save(files / "complex.npy", np.zeros((32, 32), np.complex64))
    (files / "complex.csv").write_text(MANIFEST_HEAD + "complex.npy,dark,100,1/1000,512,16383,RGGB\n")
    proc = subprocess.run([sys.executable, "-m", "noisesim", "calibrate", str(files / "complex.csv"), "--output",
                           str(files / "c.toml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr  # a real process: warnings shown
    assert "complex.npy" in proc.stderr and "complex64" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def small_capture(tmp_path_factory):
    """A usable manifest capture: 4 darks and 3 flat pairs of 32×32 uint16 at ISO 100 (RGGB, black 512 DN,
    white 16383 DN: the SonyA7S2 card's levels). Returns (folder, the manifest's lines)."""
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames
    from noisesim.params import NoiseParams, Sensor

    folder = tmp_path_factory.mktemp("small_capture")
    frames = synthetic_frames({100: NoiseParams(0.5, "tukey", 3.0, 0.0, 2.0, 0.0, 0.0)}, Sensor("RGGB", 14, (512,) * 4, 16383),
                              (32, 32), SyntheticSpec(n_darks=4, flat_levels=(0.1, 0.3, 0.5)), rng=5)
    lines = []
    for i, f in enumerate(frames):
        np.save(folder / f"f{i:02d}.npy", f.load())
        lines.append(f"f{i:02d}.npy,{f.kind},100,{f.exposure_s!r},512,16383,RGGB")
    return folder, lines


def corrupt_capture(small_capture, tmp_path, how):
    """A copy of ``small_capture`` whose first flat is damaged as ``how`` says; returns (manifest, the file's name)."""
    import shutil

    src, lines = small_capture
    for p in src.glob("*.npy"):
        shutil.copy(p, tmp_path / p.name)
    i = next(i for i, line in enumerate(lines) if ",flat," in line)
    name = lines[i].split(",")[0]
    bad = tmp_path / name
    a = np.load(bad)
    lines = list(lines)
    if how == "nan":  # one NaN in a float frame: it was dropped silently (a flat level fewer, K changed)
        a = a.astype(np.float32)
        a[3, 5] = np.nan
        np.save(bad, a)
    elif how == "missing":
        bad.unlink()
    elif how == "truncated":
        bad.write_bytes(bad.read_bytes()[:300])
    elif how == "size":
        np.save(bad, a[:16, :16])
    elif how == "rgb":
        np.save(bad, np.stack([a] * 3, axis=-1))
    elif how == "complex":
        np.save(bad, a.astype(np.complex64))
    elif how == "levels":  # black above white: the error named no file
        lines[i] = lines[i].replace(",512,16383,", ",16383,512,")
    elif how == "white":  # beyond 16 bits: it failed after the calibration, naming no file
        lines[i] = lines[i].replace(",512,16383,", ",512,70000,")
    (tmp_path / "m.csv").write_text(MANIFEST_HEAD + "\n".join(lines) + "\n")
    return tmp_path / "m.csv", name


@pytest.mark.parametrize("how,problem", [("nan", "1 non-finite value"), ("missing", "not found"), ("truncated", ""),
                                         ("size", "resolution"), ("rgb", "(32, 32, 3)"), ("complex", "complex64"),
                                         ("levels", "black < white"), ("white", "70000 DN")])
def test_calibrate_refuses_a_bad_frame_of_a_manifest(small_capture, tmp_path, capsys, how, problem):
    """A file the manifest lists but that cannot be used was skipped with a warning and the card written
    (exit 0); a NaN was not even warned about. Now: one line naming the file, exit 2, no card."""
    manifest, name = corrupt_capture(small_capture, tmp_path, how)
    card = tmp_path / "c.toml"
    one_line_error(capsys, ["calibrate", manifest, "--camera", "A B", "--output", card, "--no-fidelity"], name, problem)
    assert not card.exists() and not list(tmp_path.glob("c_maps*"))


@pytest.mark.parametrize("how", ["nan", "truncated"])
def test_validate_and_darks_bank_refuse_a_bad_frame_of_a_manifest(small_capture, tmp_path, capsys, how):
    """``darks bank`` said "wrote …: N dark frames" without naming the truncated file it left out."""
    manifest, _ = corrupt_capture(small_capture, tmp_path, how)
    text = manifest.read_text().replace(",flat,", ",dark,")  # the damaged file is a dark for both commands
    manifest.write_text(text)
    name = text.splitlines()[1 + next(i for i, line in enumerate(small_capture[1]) if ",flat," in line)].split(",")[0]
    one_line_error(capsys, ["validate", "SonyA7S2", manifest], name)
    one_line_error(capsys, ["darks", "bank", manifest, "--card", "SonyA7S2", "--output", tmp_path / "b.h5"], name)
    assert not (tmp_path / "b.h5").exists()


def test_calibrate_refuses_non_finite_in_memory_frames(small_capture):
    """Frames given in memory (no manifest scan) are checked as they are read: an inf in a flat is an error."""
    from noisesim.calibration.capture import read_manifest, frame_from_array
    from noisesim.calibration.pipeline import calibrate
    from noisesim.errors import InputFileError

    folder, lines = small_capture
    (folder / "ok.csv").write_text(MANIFEST_HEAD + "\n".join(lines) + "\n")
    frames = []
    for f in read_manifest(folder / "ok.csv").frames:
        a = f.load().astype(np.float64)
        if f.kind == "flat" and not any(g.kind == "flat" for g in frames):
            a[0, 0] = np.inf
        frames.append(frame_from_array(a, kind=f.kind, iso=f.iso, exposure_s=f.exposure_s, cfa=f.cfa,
                                       black_level_dn=f.black_level_dn, white_level_dn=f.white_level_dn, label=f"mem{len(frames)}"))
    bad = next(g.path for g in frames if g.kind == "flat")
    with pytest.raises(InputFileError, match=f"{bad}: 1 non-finite value"):
        calibrate(frames, "A B", fidelity=False)


@pytest.mark.parametrize("option,path,problem", [
    ("--report", "nodir/r.html", "folder"), ("--report", ".", "is a folder"),
    ("--dark-bank", "nodir/b.h5", "folder"), ("--dark-bank", "b.txt", ".h5"),
])
def test_calibrate_checks_every_output_before_the_work(small_capture, tmp_path, capsys, option, path, problem):
    """An unwritable --report or --dark-bank failed after the whole calibration, leaving the card and its maps
    sidecar behind (and named a temporary file). Now it fails first, naming the path; nothing is written."""
    folder, lines = small_capture
    (tmp_path / "m.csv").write_text(MANIFEST_HEAD + "\n".join(f"{folder}/{line}" for line in lines) + "\n")
    target = tmp_path / path
    err = one_line_error(capsys, ["calibrate", tmp_path / "m.csv", "--camera", "A B", "--output", tmp_path / "c.toml",
                                  "--no-fidelity", option, target], str(target), problem)
    assert ".tmp" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_calibrate_refuses_workers_below_one(small_capture, tmp_path, capsys):
    """--workers 0 was accepted silently without --scheduler."""
    folder, lines = small_capture
    (tmp_path / "m.csv").write_text(MANIFEST_HEAD + "\n".join(f"{folder}/{line}" for line in lines) + "\n")
    one_line_error(capsys, ["calibrate", tmp_path / "m.csv", "--camera", "A B", "--output", tmp_path / "c.toml",
                            "--workers", 0], "--workers must be ≥ 1, got 0")
    assert not (tmp_path / "c.toml").exists()


def test_save_leaves_no_card_when_the_report_cannot_be_written(small_capture, tmp_path):
    """CalibrationResult.save wrote the card, then failed on the report: the card was left behind."""
    from noisesim.calibration.pipeline import calibrate
    from noisesim.errors import InputFileError

    folder, lines = small_capture
    (tmp_path / "m.csv").write_text(MANIFEST_HEAD + "\n".join(f"{folder}/{line}" for line in lines) + "\n")
    res = calibrate(tmp_path / "m.csv", "A B", fidelity=False)
    with pytest.raises(InputFileError, match="nodir"):
        res.save(tmp_path / "c.toml", report=tmp_path / "nodir" / "r.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_darks_bank_names_the_files_a_folder_scan_skips(tmp_path, caplog):
    """A folder's unusable file is still skipped (the design for folders), but the bank said nothing about it."""
    from noisesim.calibration.banks import bank_from_capture
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
    from noisesim.card import load_card
    from noisesim.params import NoiseParams, Sensor

    frames = synthetic_frames({100: NoiseParams(0.5, "tukey", 3.0, 0.0, 2.0, 0.0, 0.0)}, Sensor("RGGB", 14, (512,) * 4, 16383),
                              (32, 32), SyntheticSpec(n_darks=2, flat_levels=()), rng=1)
    write_capture_dng(frames, tmp_path / "cap")
    (tmp_path / "cap" / "darks" / "broken.dng").write_bytes(b"II*\0garbage")
    with caplog.at_level("WARNING"):
        bank_from_capture(tmp_path / "cap", tmp_path / "b.h5", sensor=load_card("SonyA7S2").sensor)
    assert any("broken.dng" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records), caplog.text


def test_frames_declaring_another_white_level_are_named(small_capture):
    """A frame declaring another white level was calibrated with the common one without a word."""
    from noisesim.calibration.capture import read_manifest
    from noisesim.calibration.pipeline import calibrate

    folder, lines = small_capture
    i = next(i for i, line in enumerate(lines) if ",flat," in line)
    lines = [line.replace(",16383,", ",16000,") if j == i else line for j, line in enumerate(lines)]
    (folder / "w.csv").write_text(MANIFEST_HEAD + "\n".join(lines) + "\n")
    res = calibrate(read_manifest(folder / "w.csv"), "A B", fidelity=False)
    name = lines[i].split(",")[0]
    assert any("different white levels" in w and name in w for w in res.warnings), res.warnings


def _manifest(small_capture, tmp_path, name="m.csv", lines=None):
    """``small_capture``'s manifest, its paths absolute, written to ``tmp_path / name``."""
    folder, default = small_capture
    m = tmp_path / name
    m.write_text(MANIFEST_HEAD + "\n".join(f"{folder}/{line}" for line in (lines or default)) + "\n")
    return m


@pytest.mark.parametrize("suffix", [".csv", ".toml"])
def test_a_manifest_that_is_not_utf8_is_one_line(tmp_path, capsys, suffix):
    """A Latin-1 file name (0xE9) in a manifest gave a UnicodeDecodeError traceback, exit 1, in every command."""
    m = tmp_path / f"m{suffix}"
    m.write_bytes(MANIFEST_HEAD.encode() + b"f\xe9.npy,dark,100,0.001,512,16383,RGGB\n" if suffix == ".csv"
                  else b'[[frame]]\npath = "f\xe9.npy"\nkind = "dark"\n')
    for argv in (["calibrate", m, "--camera", "A B", "-o", tmp_path / "o.toml"], ["validate", "SonyA7S2", m],
                 ["darks", "bank", m, "--card", "SonyA7S2", "--output", tmp_path / "b.h5"]):
        one_line_error(capsys, argv, m, "not UTF-8 text")
    assert sorted(p.name for p in tmp_path.iterdir()) == [m.name]


def test_a_manifest_with_a_byte_order_mark_is_read(small_capture, tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM: the header was not recognised ("needs a header row with 'path'")."""
    from noisesim.calibration.capture import read_manifest

    m = _manifest(small_capture, tmp_path)
    m.write_bytes(b"\xef\xbb\xbf" + m.read_bytes())
    assert len(read_manifest(m).frames) == len(small_capture[1])


def test_validate_checks_the_bank_before_the_work(small_capture, tmp_path, capsys):
    """A missing, non-bank or non-HDF5 --bank failed only after the whole validation had printed its verdict."""
    import h5py

    m = _manifest(small_capture, tmp_path)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    for bank, problem in ((tmp_path / "nosuch.h5", "nosuch.h5: --bank not found"), (tmp_path, "is a folder"),
                          (tmp_path / "other.h5", "not a noisesim dark-frame bank"), (m, "m.csv")):
        rc = main(["validate", "SonyA7S2", str(m), "--bank", str(bank)])
        out, err = capsys.readouterr()
        assert rc == 2 and out == "" and err.count("\n") == 1 and problem in err and "Traceback" not in err, (out, err)


def test_calibrate_refuses_an_empty_camera_first(tmp_path, capsys):
    """``--camera ""`` ran the whole calibration, then said "name: must not be empty" without naming --camera.
    Refused before the capture is read (it does not exist here)."""
    one_line_error(capsys, ["calibrate", tmp_path / "nothing", "--camera", "", "-o", tmp_path / "c.toml"],
                   "--camera must not be empty")
    one_line_error(capsys, ["calibrate", tmp_path / "nothing", "--camera", "  ", "-o", tmp_path / "c.toml"], "--camera")


def test_manifest_entry_errors_have_one_prefix_and_name_folders(small_capture, tmp_path, capsys):
    """A bad kind said "m.csv (entry 1): m.csv (entry 1) (…f00.npy): kind must be …"; a path "." or a folder
    said "no such file"."""
    folder, lines = small_capture
    m = _manifest(small_capture, tmp_path, lines=[lines[0].replace(",dark,", ",dork,")] + lines[1:])
    err = one_line_error(capsys, ["calibrate", m, "--camera", "A B", "-o", tmp_path / "c.toml"], "kind must be", "f00.npy")
    assert err.count("(entry 1)") == 1, err
    for path in (".", str(folder)):
        (tmp_path / "d.csv").write_text(MANIFEST_HEAD + f"{path},dark,100,0.001,512,16383,RGGB\n")
        one_line_error(capsys, ["validate", "SonyA7S2", tmp_path / "d.csv"], "d.csv (entry 1)", "is a folder")


def test_validate_bad_files(files, capsys):
    # the only dark is an RGB image: it said "no dark frames at an ISO of the card (50, 64, …)"
    one_line_error(capsys, ["validate", "SonyA7S2", files / "rgb_frame.csv"], "rgb_frame.csv", "rgb.npy", "(32, 32, 3)")
    one_line_error(capsys, ["validate", files / "corrupt.toml", files / "rgb_frame.csv"], "corrupt.toml")


def test_darks_bank_bad_files(files, capsys):
    # it said "no dark frames found", not why
    one_line_error(capsys, ["darks", "bank", files / "missing_frame.csv", "--card", "SonyA7S2", "--output", files / "b.h5"],
                   "missing_frame.csv", "gone.npy", "not found")
    one_line_error(capsys, ["darks", "bank", files / "rgb_frame.csv", "--card", "SonyA7S2", "--output", files / "b.h5"],
                   "rgb.npy", "(32, 32, 3)")


def test_inspect_bad_files(files, capsys):
    one_line_error(capsys, ["inspect", files / "not_hdf5.h5"], "not_hdf5.h5")
    one_line_error(capsys, ["inspect", files / "a_folder"], "a_folder")
    one_line_error(capsys, ["inspect", files / "truncated.npy"], "truncated.npy")


def test_generate_bad_files(files, capsys):
    base = ["generate", "--pairs", 2, "--patch", 32, "--no-progress"]
    one_line_error(capsys, [*base, "--card", files / "corrupt.toml", "--output", files / "g.h5"], "corrupt.toml")
    one_line_error(capsys, [*base, "--card", "SonyA7S2", "--output", files / "a_folder"], "a_folder")
    one_line_error(capsys, [*base, "--card", "SonyA7S2", "--output", files / "g.h5", "--noise", "dark-frame",
                            "--bank", files / "not_hdf5.h5"], "not_hdf5.h5")
    assert not (files / "g.h5").exists()


# --------------------------------------------------------------------------------------------------
# API errors in the command line's words
# --------------------------------------------------------------------------------------------------
def test_cli_message_translates_names_not_words():
    options = {"gain_k_dn_per_e": "--gain-k", "pairs": "--pairs", "noise": "--noise", "workers": "--workers"}
    assert cli_message("gain_k_dn_per_e=400 is outside", options) == "--gain-k 400 is outside"
    assert cli_message("pairs must be >= 1, got 0", options) == "--pairs must be >= 1, got 0"
    assert cli_message("noise='dark-frame' needs a bank", options) == "--noise dark-frame needs a bank"
    assert cli_message("a LocalCluster needs workers >= 1", options) == "a LocalCluster needs --workers >= 1"
    # ordinary words, paths and flags already in the message stay as they are
    for text in ("the noise of 4 pairs", "/data/pairs must/x.npy: bad", "--pairs must be >= 1"):
        assert cli_message(text, options) == text


@pytest.mark.parametrize("argv,option,api_name", [
    (["simulate", "--card", "SonyA7S2", "--gain-k", 400], "--gain-k 400", "gain_k_dn_per_e"),
    (["generate", "--card", "SonyA7S2", "--pairs", 0], "--pairs must", "error: pairs"),
    (["generate", "--card", "SonyA7S2", "--pairs", 2, "--gain-k", "100:200"], "--gain-k 100", "gain_k_dn_per_e"),
    (["generate", "--card", "SonyA7S2", "--pairs", 2, "--noise", "dark-frame"], "--noise dark-frame", "noise="),
    (["validate", "SonyA7S2", "{capture}", "--max-kl", -1], "--max-kl must", "kl_symmetric_nats"),
    (["validate", "SonyA7S2", "{capture}", "--max-ks", 2], "--max-ks must", "ks_statistic"),
    (["inspect", "{dataset}", "--contact-sheet", "{tmp}/s.png", "--n", 0], "--n must", "IndexError"),
])
def test_errors_name_cli_options(files, capsys, argv, option, api_name):
    capture = files / "missing_frame.csv"
    dataset = files / "not_hdf5.h5"  # --n is checked before the file is read
    argv = [str(a).format(capture=capture, dataset=dataset, tmp=files) for a in argv]
    if argv[0] in ("simulate", "generate"):
        argv += ["--input", files / "good.npy", "--output", files / "n.npy"] if argv[0] == "simulate" else \
            ["--output", files / "g.h5", "--patch", 32, "--no-progress"]
    err = one_line_error(capsys, argv, option)
    assert api_name not in err


def test_calibrate_workers_named_as_the_option(files, capsys):
    pytest.importorskip("distributed")
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
    from noisesim.params import NoiseParams, Sensor

    params = {1600: NoiseParams(1.5, "tukey", 4.0, 0.0, 2.6, 0.0, 0.0)}
    frames = synthetic_frames(params, Sensor("RGGB", 14, (512,) * 4, 16383), (32, 32),
                              SyntheticSpec(n_darks=2, flat_levels=(0.1, 0.2)), rng=3)
    write_capture_dng(frames, files / "cap")
    err = one_line_error(capsys, ["calibrate", files / "cap", "--output", files / "c.toml", "--scheduler", "local",
                                  "--workers", 0], "--workers")
    assert "needs workers" not in err


# --------------------------------------------------------------------------------------------------
# usage errors: one line that points to --help
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,prog,text", [
    (["simulate", "--card", "SonyA7S2", "--input", "a.npy", "--output", "b.npy", "--bogus"], "noisesim simulate",
     "unrecognized arguments: --bogus"),
    (["generate", "--card", "SonyA7S2", "--output", "g.h5"], "noisesim generate", "required: --pairs"),
    (["generate", "--card", "SonyA7S2", "--output", "g.h5", "-n", "2", "--storage", "int8"], "noisesim generate",
     "invalid choice: 'int8'"),
    (["cards", "bogus"], "noisesim cards", "invalid choice: 'bogus'"),
    (["calibrate"], "noisesim calibrate", "required"),
    (["validate", "SonyA7S2", "cap", "--max-kl", "lots"], "noisesim validate", "invalid float value: 'lots'"),
    (["inspect", "x.h5", "--n"], "noisesim inspect", "expected one argument"),
    (["darks"], "noisesim darks", "required: ACTION"),
    (["darks", "bank", "d", "--card", "SonyA7S2"], "noisesim darks bank", "required: --output"),
    (["--bogus"], "noisesim", "unrecognized arguments"),
])
def test_usage_errors_are_one_line(capsys, argv, prog, text):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and "usage:" not in err, err
    assert err.startswith(f"{prog}: error: ") and text in err and err.rstrip().endswith(f"(see {prog} --help)"), err


def test_commands_own_usage_errors_point_to_help(capsys):
    assert main(["cards", "search"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith("(see noisesim cards --help)")
