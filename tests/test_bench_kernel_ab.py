"""benchmarks/bench_kernel_ab.py: the kernel against another git revision in one process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _in_git_checkout() -> bool:
    res = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "HEAD"], capture_output=True)
    return res.returncode == 0 and (ROOT / ".git").exists()


needs_git = pytest.mark.skipif(not _in_git_checkout(), reason="needs the repository's git history (not an exported tree)")


@needs_git
def test_an_unknown_revision_is_one_line_and_exit_2(capsys, load_benchmark):
    assert load_benchmark("bench_kernel_ab").main(["--against", "no-such-revision-x", "--reps", "1", "--patches", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench_kernel_ab: git archive no-such-revision-x failed")


@pytest.mark.slow
@needs_git
def test_against_head_the_outputs_are_the_same_bytes(capsys, load_benchmark):
    # HEAD's kernel compiled as a second package: same arguments, same bytes out on every scene
    assert load_benchmark("bench_kernel_ab").main(["--against", "HEAD", "--height", "16", "--width", "64", "--reps", "2", "--patches", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("same bytes") == 4 and "OUTPUTS DIFFER" not in out, out
