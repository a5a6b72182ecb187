"""Dataset generation and loading throughput (issue 4; docs/datasets.md).

Prints, for packed 4 × 256 × 256 patches (512 × 512 mosaic) by default:

1. a per-stage breakdown of one sample in one process, through the real code path
   (``Synthesizer.sample`` with its stage timers, then ``ShardWriter.write`` and the periodic checkpoint):
   seeds + parameter sampling, clean patch (built-in dead leaves: render, unprocess + mosaic), the
   noise kernel, packing + the parameter record, HDF5 write — wall and CPU time, and the fraction of
   the time spent in the noise kernel (run on the calling thread, as generation does; also timed on
   numba's thread pool for comparison);
2. end-to-end ``generate_dataset`` pairs/s with 1 and 2 worker processes (same bytes either way),
   wall and CPU seconds per pair (parent + worker processes), against the bound set by the kernel alone.
   The steady rate is the difference of two runs (N and N/5 pairs, both paying the same start-up: worker
   spawn, imports, numba cache loading), with N large enough for about ``--seconds`` of work per run;
3. read throughput of :class:`noisesim.torch_data.PairedRawDataset` through a DataLoader with 0 and 2
   workers (float32 and uint16 storage).

Other sessions may load the machine: CPU time (``time.process_time`` and the children's rusage) is
printed next to wall time, and the load average before and after. All ratios are measured in one run.
Run: ``python benchmarks/bench_generate.py [--pairs N] [--seconds S] [--patch P]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import print_machine  # noqa: E402

CARD = "SonyA7S2"


def _job(patch: int, storage: str = "float32"):
    from noisesim.card import load_card
    from noisesim.dataset import SynthesisJob, parse_ratio
    from noisesim.params import NoiseComponents

    return SynthesisJob(card=load_card(CARD), source_spec="builtin", patch=patch, iso=(800.0, 3200.0), gain_k=None,
                ratio=parse_ratio("100:300"), blur=None, seed=0, storage=storage, components=NoiseComponents(), kernel_cap=0)


def stage_breakdown(patch: int, n: int, parallel: bool | None) -> dict:
    """{stage: (wall_s, cpu_s)} per sample through Synthesizer.sample and ShardWriter (one process)."""
    from noisesim.dataset import Synthesizer
    from noisesim.dataset.shards import ShardWriter

    synth = Synthesizer(_job(patch))
    synth.parallel = parallel
    synth.sample(0)  # compile / warm up
    synth.timers = {}
    with tempfile.TemporaryDirectory() as d:
        w = ShardWriter(Path(d) / "w.h5", 0, n, synth.shape, np.dtype(np.float32), 0, False, None, {}, "{}", resume=False)
        acc = synth.timers
        for i in range(n):
            clean, noisy, rec, kernel = synth.sample(i)
            t0, c0 = time.perf_counter(), time.process_time()
            w.write(i, clean, noisy, rec, kernel)
            if (i + 1) % 64 == 0:  # generate_dataset's default checkpoint_every; fsync in the background as there
                w.checkpoint(wait=False)
            a = acc.setdefault("hdf5 write", [0.0, 0.0])
            a[0] += time.perf_counter() - t0
            a[1] += time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        w.finish()
        acc["hdf5 write"][0] += time.perf_counter() - t0
        acc["hdf5 write"][1] += time.process_time() - c0
    return {k: (v[0] / n, v[1] / n) for k, v in acc.items()}


def clean_split(patch: int, n: int) -> dict:
    """The clean-patch stage split: dead-leaves render (incl. optics blur) vs unprocess + mosaic."""
    from noisesim import isp
    from noisesim.sources import render_dead_leaves

    render_dead_leaves(0, patch, patch)
    t = {"render": 0.0, "unprocess + mosaic": 0.0}
    for i in range(n):
        g = np.random.default_rng(i)
        c0 = time.process_time()
        srgb = render_dead_leaves(g, patch, patch)
        c1 = time.process_time()
        isp.unprocess_mosaic(srgb, isp.sample_isp_meta(g), "RGGB")
        c2 = time.process_time()
        t["render"] += c1 - c0
        t["unprocess + mosaic"] += c2 - c1
    return {k: v / n for k, v in t.items()}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def end_to_end(patch: int, pairs: int, workers: int, out: Path, storage: str = "float32") -> tuple[float, float]:
    """(pairs/s wall, CPU s per pair incl. worker processes)."""
    from noisesim.dataset import generate_dataset

    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    generate_dataset(out, card=CARD, source="builtin", pairs=pairs, patch=patch, iso=(800, 3200), seed=0,
                     workers=workers, storage=storage, progress=False, force=True)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0 + _children_cpu() - k0
    return pairs / wall, cpu / pairs


def read_throughput(path: Path, workers: int, epochs: int = 2) -> float:
    import torch

    from noisesim.torch_data import PairedRawDataset

    ds = PairedRawDataset(path, amplify=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    for _ in loader:  # warm up (workers start, page cache)
        pass
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for b in loader:
            n += len(b["index"])
    return n / (time.perf_counter() - t0)


def _print_stages(st: dict, title: str) -> float:
    total_w = sum(v[0] for v in st.values())
    total_c = sum(v[1] for v in st.values())
    print(title)
    print(f"   {'stage':<18} {'wall ms':>8} {'CPU ms':>8} {'% of CPU':>9}")
    for k, (w, c) in st.items():
        print(f"   {k:<18} {w * 1e3:8.2f} {c * 1e3:8.2f} {100 * c / total_c:8.1f} %")
    kw, kc = st["noise kernel"]
    print(f"   {'total':<18} {total_w * 1e3:8.2f} {total_c * 1e3:8.2f}   → {1 / total_w:.1f} pairs/s wall")
    print(f"   noise kernel share: {100 * kw / total_w:.0f} % of wall, {100 * kc / total_c:.0f} % of CPU; "
          f"everything else {1e3 * (total_c - kc):.1f} ms CPU = {(total_c - kc) / kc:.2f} × the kernel")
    return kc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=120, help="pairs of the breakdown; the minimum per end-to-end run")
    ap.add_argument("--seconds", type=float, default=10.0, help="about this much work per end-to-end run (steady-state figure)")
    ap.add_argument("--patch", type=int, default=512, help="mosaic side (512 → packed 4 × 256 × 256)")
    ap.add_argument("--no-loader", action="store_true", help="skip the DataLoader part (no torch needed)")
    args = ap.parse_args()
    import numba

    p = args.patch
    print_machine()
    print(f"numba {numba.__version__}")
    print("Other processes may share these cores: compare CPU times (process_time; workers' rusage) more than wall times.")
    print(f"patch: {p} × {p} mosaic → packed 4 × {p // 2} × {p // 2}; {args.pairs} pairs per run\n")

    n_st = max(16, args.pairs // 2)
    st1 = stage_breakdown(p, n_st, parallel=False)
    kc1 = _print_stages(st1, "1. per-sample stages, one process, noise kernel on the calling thread (as generate_dataset runs it):")
    split = clean_split(p, max(8, n_st // 2))
    print("   clean patch split (CPU): " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in split.items()))
    stp = stage_breakdown(p, n_st, parallel=None)
    print(f"   for comparison, the noise kernel on numba's thread pool ({numba.get_num_threads()} threads; generation keeps it on one): "
          f"{stp['noise kernel'][0] * 1e3:.2f} ms wall, {stp['noise kernel'][1] * 1e3:.2f} ms CPU "
          f"(one thread: {st1['noise kernel'][0] * 1e3:.2f} ms wall)")

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        end_to_end(p, 4, 1, d / "warm.h5")  # numba cache load, source set-up
        mb = 2 * 4 * (p // 2) ** 2 * 4 / 1e6
        print("\n2. generate_dataset end to end (checkpoints included):")
        rates = {}
        per_pair_s = sum(v[0] for v in st1.values())
        # both worker counts write the same pairs (bytes compared below), enough for --seconds on 2 workers
        pairs = max(args.pairs, int(2 * args.seconds / per_pair_s))
        for w in (1, 2):
            # Runs of N and N/5 pairs pay the same fixed cost (spawning and importing in each worker, numba
            # cache loading, file creation); the steady rate is their difference in pairs over their difference in time.
            n0 = max(2 * w, pairs // 5)
            r0, c0 = end_to_end(p, n0, w, d / f"s{w}.h5")
            r, c = end_to_end(p, pairs, w, d / f"w{w}.h5")
            t0, t = n0 / r0, pairs / r
            steady = (pairs - n0) / max(t - t0, 1e-9)
            cpu_steady = (c * pairs - c0 * n0) / (pairs - n0)
            rates[w] = steady
            print(f"   workers={w}: {r:6.1f} pairs/s over {pairs} pairs in {t:.1f} s ({r * mb:.0f} MB/s written); "
                  f"start-up ≈ {t0 - n0 / steady:.2f} s wall; steady {steady:6.1f} pairs/s, CPU {cpu_steady * 1e3:5.1f} ms/pair "
                  f"(parent + workers), kernel {100 * kc1 / cpu_steady:.0f} % of it")
        same = (d / "w1.h5").read_bytes() == (d / "w2.h5").read_bytes()
        print(f"   steady speed-up 2 vs 1 workers ×{rates[2] / rates[1]:.2f}; identical bytes: {same}; "
              f"bound if only the kernel ran, one per core: {os.cpu_count() / kc1:.1f} pairs/s")
        ru, cu = end_to_end(p, pairs, 1, d / "u16.h5", storage="uint16")
        print(f"   uint16 storage, workers=1: {ru:6.1f} pairs/s, CPU {cu * 1e3:.1f} ms/pair, file "
              f"{os.path.getsize(d / 'u16.h5') / 1e6:.1f} MB vs float32 {os.path.getsize(d / 'w1.h5') / 1e6:.1f} MB")

        if not args.no_loader:
            print("\n3. DataLoader read throughput (batch 8, shuffled, amplified):")
            for name in ("w1.h5", "u16.h5"):
                for w in (0, 2):
                    print(f"   {name:<7} num_workers={w}: {read_throughput(d / name, w):7.1f} pairs/s")
    load1 = os.getloadavg()
    print(f"\nload average at the end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
