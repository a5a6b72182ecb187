"""Time and peak memory of a calibration: 4 ISOs × (32 darks + 10 flat pairs) of 12 MP (issue 3).

Frames are synthesized lazily by the engine while the calibration streams over them; the time spent
generating them is measured separately (wall and CPU) and subtracted, so the figure is the calibration's
own. CPU time (``time.process_time``, all threads) is printed next to wall time because the machine may be
shared. Numba kernels (calibration and engine) are compiled first by a tiny warm-up calibration, so JIT
compilation is not counted. Peak memory is the process's maximum resident set size
(``resource.getrusage``), generation included.

    python benchmarks/bench_calibrate.py            # 4000×3000, targets: < 60 s, < 2 GB on 2 cores
    python benchmarks/bench_calibrate.py --small    # 1024×768 quick run
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import print_machine  # noqa: E402

from noisesim.calibration.pipeline import calibrate  # noqa: E402
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames  # noqa: E402
from noisesim.card import load_card  # noqa: E402
from noisesim.sampling import sample_params  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="1024×768 frames instead of 4000×3000")
    ap.add_argument("--isos", type=int, default=4)
    ap.add_argument("--no-fidelity", action="store_true")
    args = ap.parse_args()
    shape = (768, 1024) if args.small else (3000, 4000)
    print_machine()
    card = load_card("SonyA7S2")
    isos = (100, 1600, 3200, 6400)[: args.isos]
    params = {iso: sample_params(card, iso=iso, scatter=False) for iso in isos}
    levels = (0.01, 0.02, 0.04, 0.08, 0.15, 0.25, 0.35, 0.45, 0.8, 1.1)
    spec = SyntheticSpec(n_darks=32, flat_levels=levels, pairs_per_level=1)
    # warm-up: compile every numba kernel on a tiny capture (not timed)
    quiet = logging.getLogger("calibration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    calibrate(synthetic_frames(params, card.sensor, (64, 96), SyntheticSpec(n_darks=8, flat_levels=levels), rng=1), "warm up")
    quiet.setLevel(level)
    frames = synthetic_frames(params, card.sensor, shape, spec, rng=0)
    gen_time = [0.0]
    gen_cpu = [0.0]
    wrapped = []
    for f in frames:
        def loader(f=f):
            t, c = time.perf_counter(), time.process_time()
            a = f.loader()
            gen_time[0] += time.perf_counter() - t
            gen_cpu[0] += time.process_time() - c
            return a
        wrapped.append(f.__class__(**{**f.__dict__, "loader": loader}))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    res = calibrate(wrapped, "Sony ILCE-7SM2", fidelity=not args.no_fidelity)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mp = shape[0] * shape[1] / 1e6
    print(f"frames: {len(frames)} of {shape[1]}×{shape[0]} ({mp:.1f} MP), {len(isos)} ISOs × (32 darks + 10 flat pairs)")
    print(f"                       wall      CPU")
    print(f"total                : {total:7.1f} s {cpu:7.1f} s")
    print(f"  frame synthesis    : {gen_time[0]:7.1f} s {gen_cpu[0]:7.1f} s (engine, not calibration)")
    print(f"  calibration itself : {total - gen_time[0]:7.1f} s {cpu - gen_cpu[0]:7.1f} s   (target < 60 s for 12 MP on 2 cores)")
    print(f"  per frame          : {(total - gen_time[0]) / len(frames) * 1e3:7.0f} ms {(cpu - gen_cpu[0]) / len(frames) * 1e3:7.0f} ms"
          f" = {(cpu - gen_cpu[0]) / len(frames) / (mp * 1e6) * 1e9:.1f} ns/px CPU")
    print(f"load average (1 min) : {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"peak RSS             : {rss:7.0f} MB (before calibrate: {rss0:.0f} MB; target < 2048 MB)")
    for r in res.iso_results:
        print(f"  ISO {r.iso:>5g}: K {r.gain_k_dn_per_e.value:.4g} (true {params[int(r.iso)].gain_k_dn_per_e:.4g}), "
              f"λ {r.tukey_lambda.value:+.3f} (true {params[int(r.iso)].tukey_lambda:+.3f}), σ_TL {r.tukey_scale_dn.value:.3f} "
              f"(true {params[int(r.iso)].tukey_scale_dn:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
