"""benchmarks/bench_coldstart.py: cold against warm start, per job (issue 12 item 4)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_coldstart_under_test", ROOT / "benchmarks" / "bench_coldstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [["--jobs", "bogus"], ["--jobs", ""], ["--reps", "0"], ["--height", "4"]])
def test_bad_options_are_one_line_and_exit_2(capsys, argv):
    assert _bench().main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "api, simulate, generate" in err


@pytest.mark.slow
def test_the_command_line_job_runs_cold_then_warm(capsys):
    assert _bench().main(["--jobs", "simulate", "--reps", "1", "--height", "64", "--width", "64"]) == 0
    out = capsys.readouterr().out
    cold = float(re.search(r"cold start .*?([0-9.]+) s CPU", out).group(1))
    warm = float(re.search(r"warm start .*?([0-9.]+) s CPU", out).group(1))
    assert "simulate: noisesim simulate" in out and "cold / warm" in out
    assert cold > warm  # the cold start compiled the kernel, the warm one loaded it
