"""Cold start against warm start: the first run of a fresh process with an empty numba cache (everything
compiled) and with a warm one (the kernels loaded from disk), in the same run, for three jobs:

* ``api``: a process that imports noisesim, makes the *mixed* scene of ``bench_noise.py`` (``--height`` ×
  ``--width``) and simulates it once with the full model (shot + Tukey read + row noise + quantization +
  clip, Sony A7S2 ISO 1600 parameters);
* ``simulate``: the command line on that scene, ``noisesim simulate --card SonyA7S2 --iso 1600 --ratio 100``
  on a ``.npy`` file (its warm-up, the frame, the write);
* ``generate``: the README's main job, ``noisesim generate --card SonyA7S2 --source builtin --pairs 64
  --patch 256`` (dead leaves, unprocessing, noise, HDF5).

Each start's CPU time (user + system, all threads, from ``getrusage`` of the children) and wall time are
measured from here; cold and warm starts alternate and the minimum over ``--reps`` of each is kept, so load
from other processes affects both alike.

    python benchmarks/bench_coldstart.py [--reps 2 --height 1000 --width 1000 --jobs api,simulate,generate]

Target (issue 12): cold start ≤ 4× the warm start (CPU time).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import print_machine  # noqa: E402
from bench_noise import scenes  # noqa: E402

JOBS = {
    "api": "simulate() called from Python",
    "simulate": "noisesim simulate on a .npy frame",
    "generate": "noisesim generate, the README's main job (64 pairs of 256²)",
}

_CHILD = """
import sys
sys.path.insert(0, {bench_dir!r})
import numpy as np
from bench_noise import BLACK_DN, K_DN_PER_E, LAM, ROW_DN, SCALE_DN, WHITE_DN, scenes
from noisesim import NoiseComponents, NoiseParams, Sensor
from noisesim.noise import simulate
sensor = Sensor("RGGB", 14, int(BLACK_DN), int(WHITE_DN))
params = NoiseParams(K_DN_PER_E, read_model="tukey", tukey_lambda=LAM, tukey_scale_dn=SCALE_DN, row_sigma_dn=ROW_DN, iso=1600)
frames, _ = scenes({h}, {w}, 100.0)
simulate(frames["mixed"], params, sensor, ratio=100.0, components=NoiseComponents.only("shot", "read", "row"), rng=1)
"""


def run_child(argv: list[str], cache_dir: str, cwd: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fresh process running ``argv`` with ``NUMBA_CACHE_DIR=cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"bench_coldstart: the child process {argv[1:4]} failed:\n{res.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def job_commands(h: int, w: int, work: Path) -> dict[str, list[str]]:
    """The command line of each job; ``work`` holds the simulate job's input and every output."""
    bench_dir = str(Path(__file__).resolve().parent)
    frames, _ = scenes(h, w, 100.0)
    np.save(work / "mixed.npy", frames["mixed"])
    noisesim = [sys.executable, "-m", "noisesim"]
    return {
        "api": [sys.executable, "-c", _CHILD.format(bench_dir=bench_dir, h=h, w=w)],
        "simulate": noisesim + ["simulate", "--card", "SonyA7S2", "--iso", "1600", "--ratio", "100", "--input",
                                str(work / "mixed.npy"), "--output", str(work / "noisy.npy"), "--seed", "1"],
        "generate": noisesim + ["generate", "--card", "SonyA7S2", "--source", "builtin", "--pairs", "64", "--patch",
                                "256", "--output", str(work / "demo.h5"), "--force", "--no-progress"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2, help="cold and warm starts each (alternating; minimum kept)")
    ap.add_argument("--height", type=int, default=1000, help="the api and simulate jobs' frame")
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, of {', '.join(JOBS)}")
    args = ap.parse_args(argv)
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    if args.reps < 1 or args.height < 8 or args.width < 8 or not jobs or set(jobs) - set(JOBS):
        print(f"bench_coldstart: --reps must be ≥ 1, the frame at least 8×8 and --jobs among {', '.join(JOBS)}",
              file=sys.stderr)
        return 2
    print_machine()
    print(f"first run of a fresh process; api and simulate: mixed scene {args.width}×{args.height}, full model; "
          f"{args.reps} cold and {args.reps} warm starts per job, alternating (min kept)")
    with tempfile.TemporaryDirectory(prefix="noisesim-coldstart-") as work:
        commands = job_commands(args.height, args.width, Path(work))
        for job in jobs:
            argv = commands[job]
            warm_dir = tempfile.mkdtemp(prefix="warm-cache-", dir=work)
            run_child(argv, warm_dir, work)  # fills the warm cache
            cold, warm = [], []
            for _ in range(args.reps):
                cold.append(run_child(argv, tempfile.mkdtemp(prefix="cold-cache-", dir=work), work))
                warm.append(run_child(argv, warm_dir, work))
            c_cpu, c_wall = min(c for c, _ in cold), min(w for _, w in cold)
            w_cpu, w_wall = min(c for c, _ in warm), min(w for _, w in warm)
            print(f"{job}: {JOBS[job]}")
            print(f"  cold start (empty NUMBA_CACHE_DIR): {c_cpu:6.2f} s CPU  {c_wall:6.2f} s wall")
            print(f"  warm start (cache filled):          {w_cpu:6.2f} s CPU  {w_wall:6.2f} s wall")
            print(f"  cold / warm: {c_cpu / w_cpu:5.2f}× CPU, {c_wall / w_wall:5.2f}× wall (target ≤ 4×)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
