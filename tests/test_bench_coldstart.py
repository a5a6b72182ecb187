"""benchmarks/bench_coldstart.py: cold against warm start, per job (issue 12 item 4)."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("argv", [["--jobs", "bogus"], ["--jobs", ""], ["--reps", "0"], ["--height", "4"]])
def test_bad_options_are_one_line_and_exit_2(capsys, load_benchmark, argv):
    assert load_benchmark("bench_coldstart").main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "api, simulate, generate" in err


@pytest.mark.slow
def test_the_command_line_job_runs_cold_then_warm(capsys, load_benchmark):
    assert load_benchmark("bench_coldstart").main(["--jobs", "simulate", "--reps", "1", "--height", "64", "--width", "64"]) == 0
    out = capsys.readouterr().out
    cold = float(re.search(r"cold start .*?([0-9.]+) s CPU", out).group(1))
    warm = float(re.search(r"warm start .*?([0-9.]+) s CPU", out).group(1))
    assert "simulate: noisesim simulate" in out and "cold / warm" in out
    assert cold > warm  # the cold start compiled the kernel, the warm one loaded it
