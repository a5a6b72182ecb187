"""Throughput and memory of the noise engine on a 12 MP Bayer frame (4000×3000).

Prints Mpix/s of the fused numba kernel (full model: shot + Tukey read + row + quantization + clip)
against (a) the plain-numpy reference implementation of the same kernel and (b) a plain-numpy ELD-style
pipeline (numpy Poisson + scipy Tukey-lambda rvs + row noise + round + clip, as ELD/PMN code does), as
ratios measured in the same run, plus the peak memory of one call. Timings are the best of several
interleaved repetitions, so background load affects all contenders alike.

    python benchmarks/bench_noise.py [--height 3000 --width 4000 --reps 3 --threads N]

Target (2-core CI machine): numba ≥ 10× the numpy ELD-style pipeline; peak memory < 3× the frame's
float32 size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np


def eld_style_numpy(clean_packed, rng, *, k, ratio, lam, scale, row_sigma, black, white):
    """The field's plain-numpy pipeline (ELD, Wei et al. 2020, as its public code structures it)."""
    import scipy.stats as st

    x = clean_packed * (white - black) / ratio
    z = rng.poisson(x / k).astype(np.float32) * k
    z += st.tukeylambda.rvs(lam, loc=0, scale=scale, size=z.shape, random_state=rng).astype(np.float32)
    z += rng.normal(0.0, row_sigma, size=(z.shape[0], z.shape[1], 1)).astype(np.float32)
    z = np.round(z)
    return np.clip(z + black, 0, white)


_PEAK_SCRIPT = """
import numpy as np
from noisesim import NoiseComponents, NoiseParams, Sensor
from noisesim.noise import simulate
sensor = Sensor("RGGB", 14, 512, 16383)
params = NoiseParams(1.53, tukey_lambda=-0.044, tukey_scale_dn=3.23, row_sigma_dn=0.99, iso=1600)
full = NoiseComponents.only("shot", "read", "row")
clean = np.full(({h}, {w}), 0.5, np.float32)
simulate(clean[:64, :64], params, sensor, ratio={ratio}, components=full, rng=0)   # compile / load cache
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")   # reset the peak-RSS mark (Linux)
before = status("VmRSS:")
out = simulate(clean, params, sensor, ratio={ratio}, components=full, rng=1)
print(status("VmHWM:") - before)
"""


def peak_rss_of_call(h, w, ratio):
    """Peak resident memory added by one ``simulate`` call, measured in a fresh process (Linux /proc);
    counts numba's own allocations, which tracemalloc does not see. None where /proc is unavailable."""
    import subprocess

    if not os.path.exists("/proc/self/clear_refs"):
        return None
    res = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT.format(h=h, w=w, ratio=ratio)], capture_output=True, text=True)
    if res.returncode != 0:
        return None
    return int(res.stdout.strip().splitlines()[-1])


def best_of(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ratio", type=float, default=100.0, help="exposure ratio (signal ≈ 32 e⁻ at mid grey)")
    ap.add_argument("--skip-reference", action="store_true", help="skip the slow numpy reference kernel")
    args = ap.parse_args(argv)

    import numba

    from noisesim import NoiseComponents, NoiseParams, Sensor
    from noisesim.noise import simulate

    h, w = args.height, args.width
    npix = h * w
    sensor = Sensor("RGGB", 14, 512, 16383)
    # SonyA7S2 at ISO 1600 (PMN's table, data_cards/sources/README.md)
    params = NoiseParams(1.53, read_model="tukey", tukey_lambda=-0.044, tukey_scale_dn=3.23, row_sigma_dn=0.99, iso=1600)
    full = NoiseComponents.only("shot", "read", "row")  # + quantize + clip (defaults)
    rng = np.random.default_rng(0)
    # A smooth clean frame with a spread of signal levels (0 … 1 normalized).
    yy, xx = np.mgrid[0:h, 0:w]
    clean = (0.5 + 0.5 * np.sin(xx / 97.0) * np.cos(yy / 61.0)).astype(np.float32)
    clean_packed = sensor.cfa.pack(clean)

    print(f"frame {w}×{h} ({npix / 1e6:.1f} MP), numba {numba.__version__}, threads {numba.get_num_threads()}, "
          f"cores {os.cpu_count()}, ratio {args.ratio:g}")
    simulate(clean[:64, :64], params, sensor, ratio=args.ratio, components=full, rng=0)  # compile / load cache

    run_numba = lambda: simulate(clean, params, sensor, ratio=args.ratio, components=full, rng=1)  # noqa: E731
    run_eld = lambda: eld_style_numpy(clean_packed, rng, k=1.53, ratio=args.ratio, lam=-0.044, scale=3.23,  # noqa: E731
                                      row_sigma=0.99, black=512.0, white=16383.0)
    t_numba, t_eld = [], []
    for _ in range(args.reps):  # interleaved
        t_numba.append(best_of(run_numba, 1))
        t_eld.append(best_of(run_eld, 1))
    tn, te = min(t_numba), min(t_eld)
    results = {"numba fused kernel": tn, "numpy ELD-style pipeline": te}
    if not args.skip_reference:
        results["numpy reference kernel"] = best_of(
            lambda: simulate(clean, params, sensor, ratio=args.ratio, components=full, rng=1, backend="numpy"), 1)
    for name, t in results.items():
        print(f"  {name:28s} {t * 1e3:9.1f} ms  {npix / t / 1e6:8.1f} Mpix/s  ({t / tn:5.2f}× numba time)")
    print(f"speed-up vs ELD-style numpy: {te / tn:.1f}×   (target ≥ 10×)")
    if "numpy reference kernel" in results:
        print(f"speed-up vs numpy reference: {results['numpy reference kernel'] / tn:.1f}×")

    frame_bytes = npix * 4
    peak = peak_rss_of_call(h, w, args.ratio)
    if peak is not None:
        print(f"peak memory of one call (RSS above the input frame, fresh process): {peak / 2**20:.1f} MiB = "
              f"{peak / frame_bytes:.2f}× the float32 frame (target < 3×)")
    tracemalloc.start()
    run_numba()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"numpy allocations of one call (tracemalloc, output included): {traced / 2**20:.1f} MiB = "
          f"{traced / frame_bytes:.2f}× the frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
