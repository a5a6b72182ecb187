"""Throughput and memory of the noise engine on a 12 MP Bayer frame (4000×3000), at equal thread counts.

Full model: shot + Tukey read + row noise + quantization + clip, Sony A7S2 ISO 1600 parameters (PMN's table),
exposure ratio 100. Three scenes, their mean signal printed in electrons: *mixed* (a smooth pattern over
the whole range, mean ≈ 52 e⁻), *dark* (1–5 e⁻) and *bright* (1000 e⁻).

1. One thread against one thread: CPU time per pixel (``time.thread_time``) of the numba kernel run
   serially, per scene, against the plain-numpy reference of the same kernel and a lean float32 numpy
   pipeline as ELD/PMN code structures it (numpy Poisson + scipy Tukey-lambda + row noise + round + clip).
2. All threads against all threads: wall time of the numba kernel on ``--threads`` threads against the
   numpy pipeline run in parallel row blocks on as many threads (numpy releases the GIL in these calls).
3. Peak memory of one call; with ``--torch-device cuda`` the torch path's Mpix/s and its ratio to the numba
   kernel (skipped, with the reason, when torch or the device is missing).

Every figure is the minimum over ``--reps`` interleaved repetitions and each comparison is a ratio measured
in the same run, so load from other processes affects all contenders alike.

    python benchmarks/bench_noise.py [--height 3000 --width 4000 --reps 3 --threads N --torch-device cuda]

Targets: numba ≤ 15 ns/px per core on the mixed scene (issue 12); peak memory < 3× the float32 frame.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import print_machine  # noqa: E402

K_DN_PER_E = 1.53
LAM, SCALE_DN, ROW_DN = -0.044, 3.23, 0.99
BLACK_DN, WHITE_DN = 512.0, 16383.0


def eld_style_numpy(clean_packed, rng, *, ratio):
    """The field's plain-numpy pipeline (ELD, Wei et al. 2020, as its public code structures it), float32."""
    import scipy.stats as st

    k = K_DN_PER_E
    x = clean_packed * np.float32((WHITE_DN - BLACK_DN) / ratio)
    z = rng.poisson(x / np.float32(k)).astype(np.float32) * np.float32(k)
    z += st.tukeylambda.rvs(LAM, loc=0, scale=SCALE_DN, size=z.shape, random_state=rng).astype(np.float32)
    z += rng.normal(0.0, ROW_DN, size=(z.shape[0], z.shape[1], 1)).astype(np.float32)
    z = np.round(z)
    return np.clip(z + np.float32(BLACK_DN), 0, WHITE_DN)


def eld_style_parallel(clean_packed, pool, n_threads, seed, *, ratio):
    """:func:`eld_style_numpy` on ``n_threads`` row blocks at once (one generator per block)."""
    blocks = np.array_split(np.arange(clean_packed.shape[1]), n_threads)
    seeds = np.random.SeedSequence(seed).spawn(n_threads)
    jobs = [pool.submit(eld_style_numpy, clean_packed[:, b[0]:b[-1] + 1], np.random.default_rng(s), ratio=ratio)
            for b, s in zip(blocks, seeds) if b.size]
    return [j.result() for j in jobs]


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


def timed(fn, clock):
    t0 = clock()
    fn()
    return clock() - t0


def interleaved_min(fns: dict, reps: int, clock) -> dict:
    """Minimum time of each callable over ``reps`` rounds, the callables interleaved within each round."""
    best = {name: float("inf") for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            best[name] = min(best[name], timed(fn, clock))
    return best


def scenes(h, w, ratio):
    """Clean normalized frames and the factor from normalized signal to electrons."""
    yy, xx = np.mgrid[0:h, 0:w]
    mixed = (0.5 + 0.5 * np.sin(xx / 97.0) * np.cos(yy / 61.0)).astype(np.float32)
    e_per_unit = (WHITE_DN - BLACK_DN) / (ratio * K_DN_PER_E)
    dark = ((1.0 + 4.0 * mixed) / e_per_unit).astype(np.float32)  # 1 … 5 e⁻
    bright = np.full((h, w), 1000.0 / e_per_unit, np.float32)
    return {"mixed": mixed, "dark": dark, "bright": bright}, e_per_unit


def torch_device_check(device):
    """(torch.device or None, why not): None with a skip reason when torch or the device is missing;
    raises ValueError for a string that names no device."""
    try:
        import torch
    except ImportError:
        return None, f"torch on {device}: skipped (torch is not installed)"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--torch-device {device!r} names no torch device (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        return None, f"torch on {device}: skipped (no CUDA device available)"
    if dev.type not in ("cpu", "cuda"):
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, AssertionError) as exc:
            return None, f"torch on {device}: skipped ({str(exc).splitlines()[0]})"
    return dev, None


def torch_figures(device, clean, params, sensor, ratio, components, reps, t_numba_wall):
    """Mpix/s of :func:`noisesim.torch_noise.simulate_torch` on ``device`` and its ratio to the numba kernel.

    The batch, its parameters (a NoiseParamsBatch) and the generator live on the device, so the timed
    calls are device work only (no host copy), each followed by a synchronization.
    """
    dev, why_not = torch_device_check(device)
    if dev is None:
        return why_not
    import torch

    from noisesim.torch_noise import NoiseParamsBatch, simulate_torch

    x = torch.from_numpy(clean).to(dev)[None]
    pb = NoiseParamsBatch.from_params(params, 1, ratio=ratio, device=dev)
    gen = torch.Generator(device=dev).manual_seed(1)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def run():
        simulate_torch(x, pb, sensor, components=components, generator=gen)
        sync()

    run()  # warm-up (kernels, allocator, the sensor tiles on the device)
    t = interleaved_min({"torch": run}, reps, time.perf_counter)["torch"]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    return (f"torch on {device} ({name}): {clean.size / t / 1e6:8.1f} Mpix/s wall, "
            f"{t_numba_wall / t:.2f}× the numba kernel's speed on all threads")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="threads for the all-threads comparison (default: all cores)")
    ap.add_argument("--ratio", type=float, default=100.0, help="exposure ratio (mixed scene: mean ≈ 52 e⁻ at 100)")
    ap.add_argument("--skip-reference", action="store_true", help="skip the slow numpy reference kernel")
    ap.add_argument("--torch-device", default=None, help="also time simulate_torch on this device (e.g. cuda)")
    args = ap.parse_args(argv)
    if args.torch_device:
        try:
            torch_device_check(args.torch_device)  # a bad name fails now, not after the CPU figures
        except ValueError as exc:
            print(f"bench_noise: {exc}", file=sys.stderr)
            return 2

    import numba

    from noisesim import NoiseComponents, NoiseParams, Sensor
    from noisesim.noise import simulate

    n_threads = args.threads or os.cpu_count()
    if not 1 <= n_threads <= numba.config.NUMBA_NUM_THREADS:
        print(f"bench_noise: --threads must be 1 … {numba.config.NUMBA_NUM_THREADS}, got {n_threads}", file=sys.stderr)
        return 2
    numba.set_num_threads(n_threads)
    h, w = args.height, args.width
    npix = h * w
    sensor = Sensor("RGGB", 14, int(BLACK_DN), int(WHITE_DN))
    params = NoiseParams(K_DN_PER_E, read_model="tukey", tukey_lambda=LAM, tukey_scale_dn=SCALE_DN, row_sigma_dn=ROW_DN,
                         iso=1600)
    full = NoiseComponents.only("shot", "read", "row")  # + quantize + clip (defaults)
    frames, e_per_unit = scenes(h, w, args.ratio)
    mixed_packed = sensor.cfa.pack(frames["mixed"])

    print_machine()
    print(f"frame {w}×{h} ({npix / 1e6:.1f} MP), numba {numba.__version__}, ratio {args.ratio:g}; scenes (mean signal): "
          + ", ".join(f"{k} {float(np.mean(v)) * e_per_unit:.1f} e⁻" for k, v in frames.items()))

    def sim(clean, parallel, **kw):
        return lambda: simulate(clean, params, sensor, ratio=args.ratio, components=full, rng=1, parallel=parallel, **kw)

    simulate(frames["mixed"][:64, :64], params, sensor, ratio=args.ratio, components=full, rng=0, parallel=False)
    simulate(frames["mixed"][:64, :64], params, sensor, ratio=args.ratio, components=full, rng=0, parallel=True)

    # 1. one thread against one thread (CPU time of the calling thread)
    rng = np.random.default_rng(0)
    single = {f"numba kernel, {k}": sim(v, False) for k, v in frames.items()}
    single["numpy pipeline, mixed"] = lambda: eld_style_numpy(mixed_packed, rng, ratio=args.ratio)
    t1 = interleaved_min(single, args.reps, time.thread_time)
    if not args.skip_reference:  # ~40× slower: one run is enough
        t1["numpy reference kernel, mixed"] = timed(sim(frames["mixed"], None, backend="numpy"), time.thread_time)
    base = t1["numba kernel, mixed"]
    print("1 thread vs 1 thread (CPU time per pixel):")
    for name, t in t1.items():
        print(f"  {name:32s} {t / npix * 1e9:7.1f} ns/px  {t / base:6.2f}× numba (mixed)")

    # 2. all threads against all threads (wall time; CPU time per pixel alongside)
    pool = ThreadPoolExecutor(n_threads)
    multi = {"numba kernel, mixed": sim(frames["mixed"], True),
             "numpy pipeline, mixed": lambda: eld_style_parallel(mixed_packed, pool, n_threads, 0, ratio=args.ratio)}
    tw = interleaved_min(multi, args.reps, time.perf_counter)
    tc = interleaved_min(multi, 1, time.process_time)
    print(f"{n_threads} threads vs {n_threads} threads (wall; process CPU per pixel of one run):")
    for name in multi:
        print(f"  {name:32s} {npix / tw[name] / 1e6:7.1f} Mpix/s  {tc[name] / npix * 1e9:6.1f} ns/px CPU  "
              f"{tw[name] / tw['numba kernel, mixed']:6.2f}× numba time")
    pool.shutdown()

    frame_bytes = npix * 4
    peak = peak_rss_of_call(h, w, args.ratio)
    if peak is not None:
        print(f"peak memory of one call (RSS above the input frame, fresh process): {peak / 2**20:.1f} MiB = "
              f"{peak / frame_bytes:.2f}× the float32 frame (target < 3×)")
    tracemalloc.start()
    sim(frames["mixed"], True)()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"numpy allocations of one call (tracemalloc, output included): {traced / 2**20:.1f} MiB = "
          f"{traced / frame_bytes:.2f}× the frame")
    if args.torch_device:
        print(torch_figures(args.torch_device, frames["mixed"], params, sensor, args.ratio, full, args.reps,
                            tw["numba kernel, mixed"]))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
