"""The examples run as the README says, with small settings (each takes its size from the command line)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_example(name, *args, tmp_path, timeout=240):
    proc = subprocess.run([sys.executable, str(REPO / "examples" / name), *args, "--out-dir", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_generate_dataset_example(tmp_path):
    out = run_example("generate_dataset.py", "--pairs", "8", tmp_path=tmp_path)
    assert "re-synthesis of sample 0 from its stored seed: exact" in out
    assert (tmp_path / "pairs.h5").exists() and (tmp_path / "pairs.png").exists()


def test_calibrate_and_generate_example(tmp_path):
    out = run_example("calibrate_and_generate.py", "--size", "128", "--pairs", "8", tmp_path=tmp_path)
    assert "calibrated card written to" in out and (tmp_path / "example.toml").exists()
    rows = [line.split() for line in out.splitlines() if line.strip().split(" ")[0] in ("800", "1600", "3200")]
    assert len(rows) == 3
    for iso, k_true, k_est, *_ in rows:  # the card recovers K within 5 % even from 128² frames
        assert abs(float(k_est) / float(k_true) - 1) < 0.05, (iso, k_true, k_est)


@pytest.mark.slow
def test_train_denoiser_example(tmp_path):
    pytest.importorskip("torch")
    out = run_example("train_denoiser.py", "--steps", "60", "--pairs", "64", tmp_path=tmp_path)
    assert "held-out PSNR after 60 steps" in out  # and it exits 0 only if training improved on the input


@pytest.mark.slow
def test_generate_on_cluster_example(tmp_path):
    pytest.importorskip("dask.distributed")
    out = run_example("generate_on_cluster.py", "--jobs", "1", "--pairs", "8", "--shards", "2", tmp_path=tmp_path)
    assert out


FAKE_SBATCH = """#!/bin/bash
# Stands in for SLURM's sbatch: runs the job script dask-jobqueue wrote, detached, as the batch job. Like
# sbatch it runs its own copy: dask-jobqueue deletes its temporary script as soon as sbatch returns, which
# can be before a detached bash has opened it (a loaded CI machine lost that race).
echo "$@" >> "{log}"
cp "${{@: -1}}" "{log}.script"
setsid bash "{log}.script" > "{log}.job" 2>&1 < /dev/null &
echo "Submitted batch job $!"
"""
FAKE_SCANCEL = """#!/bin/bash
for id in "$@"; do kill -- -"$id" 2>/dev/null || true; done
"""


@pytest.mark.slow
def test_generate_on_cluster_example_slurm(tmp_path):
    """The --slurm path end to end: dask-jobqueue writes the job script, a stand-in sbatch runs it, the
    workers it starts join the scheduler and write the shards (no SLURM here, everything else is real)."""
    pytest.importorskip("dask.distributed")
    pytest.importorskip("dask_jobqueue")
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    for name, text in (("sbatch", FAKE_SBATCH.format(log=log)), ("scancel", FAKE_SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    out_dir = tmp_path / "out"
    job_log_path = tmp_path / "sbatch.log.job"
    # Loopback: a machine whose firewall drops traffic to its own external address (CI's did) would leave
    # the worker unable to reach a scheduler on the default interface, and the run waiting for workers.
    cmd = [sys.executable, str(REPO / "examples" / "generate_on_cluster.py"), "--slurm", "--jobs", "1",
           "--cores-per-job", "1", "--memory-per-job", "2GB", "--interface", "lo", "--pairs", "8", "--shards", "2",
           "--out-dir", str(out_dir)]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired as exc:
        job_log = job_log_path.read_text() if job_log_path.exists() else "(no job log: sbatch never ran)"
        pytest.fail(f"the SLURM example did not finish in 240 s; its stderr: {exc.stderr!r}; the job's log: {job_log}")
    job_log = job_log_path.read_text() if job_log_path.exists() else ""
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:] + job_log[-2000:]
    script = (tmp_path / "sbatch.log.script").read_text()
    assert "#SBATCH --cpus-per-task=1" in script and "--nthreads 1" in script and "--interface lo" in script
    assert "8 pairs in 2 shards" in proc.stdout
    assert sorted(p.name for p in out_dir.glob("*.h5")) == ["train-00000-of-00002.h5", "train-00001-of-00002.h5",
                                                              "train.h5"]
