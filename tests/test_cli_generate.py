"""``noisesim generate`` / ``noisesim inspect``: the CLI is a thin shell over noisesim.dataset."""

from __future__ import annotations

import h5py
import numpy as np

from noisesim.cli import main


def test_generate_then_inspect(tmp_path, capsys):
    out = tmp_path / "d.h5"
    rc = main(["generate", "--card", "SonyA7S2", "--output", str(out), "--pairs", "4", "--patch", "32",
               "--iso", "800:1600", "--ratio", "100,250,300", "--blur", "gaussian:0.5-1", "--seed", "3",
               "--storage", "uint16", "--compression", "lzf", "--no-progress"])
    assert rc == 0 and out.exists()
    with h5py.File(out) as f:
        rec = f["params"][:]
        assert f["noisy"].dtype == np.uint16 and f["noisy"].compression == "lzf"
        assert f.attrs["seed"] == 3 and "--pairs 4" in f.attrs["command"]
    assert set(rec["ratio"]) <= {100.0, 250.0, 300.0}
    assert np.all((rec["iso"] >= 800) & (rec["iso"] <= 1600))
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pairs: 4" in text and "SonyA7S2" in text and "uint16" in text and "ratio" in text


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "d.h5"
    args = ["generate", "--card", "SonyA7S2", "--output", str(out), "--pairs", "2", "--patch", "32", "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_inspect_rejects_non_dataset(tmp_path, capsys):
    bad = tmp_path / "x.h5"
    with h5py.File(bad, "w") as f:
        f["foo"] = 1
    assert main(["inspect", str(bad)]) == 2
    assert "not a noisesim dataset" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 2


def test_recorded_command_ignores_resume_and_workers(tmp_path):
    from noisesim.cli import build_parser
    from noisesim.cli.generate import canonical_command

    base = ["generate", "--card", "A", "--output", "d.h5", "--pairs", "3"]
    a = canonical_command(build_parser().parse_args(base))
    b = canonical_command(build_parser().parse_args(base + ["--resume", "--workers", "2", "--no-progress"]))
    assert a == b and "--pairs 3" in a and "--resume" not in a


def test_verbose_flag_before_or_after_the_command():
    from noisesim.cli import build_parser

    base = ["generate", "--card", "SonyA7S2", "-o", "x.h5", "-n", "2"]
    parser = build_parser()
    assert parser.parse_args(base).verbose is False
    assert parser.parse_args(["-v"] + base).verbose is True
    assert parser.parse_args(base + ["-v"]).verbose is True
    assert parser.parse_args(base + ["--verbose"]).verbose is True
