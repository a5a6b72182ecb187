"""Faults around dataset generation (issue 14): concurrent writers, resume over complete outputs,
corruption, orphaned workers, full disks, hostile input, byte determinism."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from noisesim.dataset import generate_dataset
from noisesim.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]
CARD = "SonyA7S2"
SMALL = dict(card=CARD, source="builtin", patch=32, iso=(800, 3200), ratio=(100, 300), progress=False)
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _generate_cli(cwd, *extra, pairs=300):
    args = ["--card", CARD, "--output", "ds.h5", "--pairs", str(pairs), "--patch", "32", "--seed", "5", "--no-progress", *extra]
    return subprocess.Popen([sys.executable, "-m", "noisesim", "generate", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lock(proc, lock: Path, timeout=120.0) -> None:
    """Wait until ``proc`` holds the lock and has created its partial file."""
    t0 = time.monotonic()
    partial = lock.with_name(lock.name.replace(".lock", ".partial"))
    while not (lock.exists() and lock.read_text().strip() and partial.exists()):
        if proc.poll() is not None:
            pytest.fail(f"first run ended before taking the lock: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            pytest.fail("first run never took the lock")
        time.sleep(0.02)


def _interrupt_after(n_writes: int):
    """Patch _ShardWriter.write to raise KeyboardInterrupt at its n-th call; returns an undo function."""
    import noisesim.dataset as dsmod

    real = dsmod._ShardWriter.write
    calls = {"n": 0}

    def write(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == n_writes:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    dsmod._ShardWriter.write = write
    return lambda: setattr(dsmod._ShardWriter, "write", real)


# ------------------------------------------------------------------------------------------------
# 1. Concurrent writers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force-on-both"])
def test_second_concurrent_run_fails_at_once_naming_the_first(tmp_path, force):
    """Two real `generate` processes on one output: the second fails with the first's PID and file;
    the first (paused meanwhile with SIGSTOP, so the overlap is certain) still ends with a complete file."""
    extra = ("--force",) if force else ()
    if force:
        generate_dataset(tmp_path / "ds.h5", pairs=2, seed=1, **SMALL)  # an old output for --force to replace
    first = _generate_cli(tmp_path, *extra)
    try:
        _wait_for_lock(first, tmp_path / "ds.h5.lock")
        first.send_signal(signal.SIGSTOP)
        second = _generate_cli(tmp_path, *extra)
        out2, err2 = second.communicate(timeout=120)
        assert second.returncode == 2, err2
        assert f"PID {first.pid}" in err2 and "ds.h5.partial" in err2, err2
        assert "Traceback" not in err2 and len(err2.strip().splitlines()) == 1
        assert (tmp_path / "ds.h5.partial").exists(), "the second run must not touch the first run's partial"
    finally:
        first.send_signal(signal.SIGCONT)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    with h5py.File(tmp_path / "ds.h5", "r") as f:
        noisy = f["noisy"][()]
        assert f.attrs["n_pairs"] == 300 and int(f.attrs["seed"]) == 5
    assert noisy.shape[0] == 300 and (noisy.reshape(300, -1).max(axis=1) > 0).all(), "all-zero samples"
    assert not (tmp_path / "ds.h5.lock").exists() and not (tmp_path / "ds.h5.partial").exists()


def test_lock_released_when_holder_is_killed(tmp_path):
    """The OS lock dies with its holder: a kill -9 leaves no lock that blocks the next run."""
    first = _generate_cli(tmp_path)
    _wait_for_lock(first, tmp_path / "ds.h5.lock")
    first.kill()
    first.wait(timeout=60)
    generate_dataset(tmp_path / "ds.h5", pairs=300, seed=5, card=CARD, patch=32, resume=True, progress=False)
    assert not (tmp_path / "ds.h5.lock").exists()


# ------------------------------------------------------------------------------------------------
# 2. --resume over an existing output
# ------------------------------------------------------------------------------------------------
def test_resume_over_complete_output_checks_settings(tmp_path, caplog):
    out = generate_dataset(tmp_path / "d.h5", pairs=4, seed=3, **SMALL)
    before = out.read_bytes()
    with pytest.raises(DatasetError, match=r"d\.h5 is complete but was made with different settings.*seed: 3 then, 99 now"):
        generate_dataset(out, pairs=4, seed=99, resume=True, **SMALL)
    with pytest.raises(DatasetError, match="pairs: 4 then, 5 now"):
        generate_dataset(out, pairs=5, seed=3, resume=True, **SMALL)
    with caplog.at_level("WARNING"):
        assert generate_dataset(out, pairs=4, seed=3, resume=True, **SMALL) == out
    assert "already complete" in caplog.text
    assert out.read_bytes() == before


def test_killed_force_rebuild_resumes_the_new_run(tmp_path):
    out = generate_dataset(tmp_path / "d.h5", pairs=20, seed=3, **SMALL)
    undo = _interrupt_after(7)
    try:
        with pytest.raises(KeyboardInterrupt):
            generate_dataset(out, pairs=20, seed=99, force=True, checkpoint_every=3, **SMALL)
    finally:
        undo()
    assert (tmp_path / "d.h5.partial").exists()
    generate_dataset(out, pairs=20, seed=99, resume=True, **SMALL)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["seed"]) == 99
    ref = generate_dataset(tmp_path / "ref.h5", pairs=20, seed=99, **SMALL)
    with h5py.File(out, "r") as a, h5py.File(ref, "r") as b:
        assert a["noisy"][()].tobytes() == b["noisy"][()].tobytes()
    assert not (tmp_path / "d.h5.partial").exists()


def test_resume_of_complete_sharded_output_checks_settings(tmp_path):
    out = generate_dataset(tmp_path / "m.h5", pairs=6, seed=3, shards=2, **SMALL)
    with pytest.raises(DatasetError, match="different settings.*seed"):
        generate_dataset(out, pairs=6, seed=4, shards=2, resume=True, **SMALL)
    assert generate_dataset(out, pairs=6, seed=3, shards=2, resume=True, **SMALL) == out


# ------------------------------------------------------------------------------------------------
# 6. Seeds
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_out_of_range_seed_refused_before_anything_is_written(tmp_path, seed):
    p = subprocess.run([sys.executable, "-m", "noisesim", "generate", "--card", CARD, "-o", "d.h5", "-n", "2",
                        "--patch", "32", "--seed", seed, "--no-progress"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "--seed" in p.stderr and "Traceback" not in p.stderr
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception, match="0..2"):
        generate_dataset(tmp_path / "d.h5", pairs=2, seed=int(seed), **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_largest_seed_is_stored(tmp_path):
    out = generate_dataset(tmp_path / "d.h5", pairs=1, seed=2**64 - 1, **SMALL)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["seed"]) == 2**64 - 1
