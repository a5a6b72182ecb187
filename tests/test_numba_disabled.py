"""The calibration kernels' bodies run as Python under NUMBA_DISABLE_JIT=1 (where coverage can see them)
and still agree with their numpy references: tests/test_calibration_kernels.py in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_calibration_kernels_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(REPO / "tests" / "test_calibration_kernels.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail, tail  # every kernel test ran, none fell back to a skip
