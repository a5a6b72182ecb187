"""Dataset generation and loading throughput (issue 4; ../shared/DESIGN.md §4–5).

Prints, for packed 4 × 256 × 256 patches (512 × 512 mosaic) by default:

1. a per-stage time breakdown of one sample in one process (parameter sampling, clean patch from the
   built-in source incl. unprocessing, the noise kernel, HDF5 write), to show where the time goes;
2. end-to-end ``generate_dataset`` pairs/s with 1 and 2 worker processes (same bytes either way);
3. read throughput of :class:`noisesim.torch_data.PairedRawDataset` through a DataLoader with 0 and 2
   workers (float32 and uint16 storage).

All ratios are measured in the same run. Run: ``python benchmarks/bench_generate.py [--pairs N] [--patch P]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def stage_breakdown(patch: int, n: int) -> dict:
    from noisesim.card import load_card
    from noisesim.dataset import _Job, _Synth, parse_ratio, sample_seeds
    from noisesim.noise import simulate
    from noisesim.params import NoiseComponents

    card = load_card("SonyA7S2")
    job = _Job(card=card, source_spec="builtin", patch=patch, iso=(800.0, 3200.0), gain_k=None, ratio=parse_ratio("100:300"),
               blur=None, seed=0, storage="float32", components=NoiseComponents(), kernel_cap=0)
    synth = _Synth(job)
    synth.sample(0)  # compile / warm up
    t = {"params": 0.0, "clean patch": 0.0, "noise kernel": 0.0, "hdf5 write": 0.0}
    with tempfile.TemporaryDirectory() as d:
        with h5py.File(Path(d) / "w.h5", "w") as f:
            ds_c = f.create_dataset("clean", (n,) + synth.shape, np.float32, chunks=(1,) + synth.shape)
            ds_n = f.create_dataset("noisy", (n,) + synth.shape, np.float32, chunks=(1,) + synth.shape)
            for i in range(n):
                t0 = time.perf_counter()
                ss_p, ss_c, noise_seed = sample_seeds(0, i)
                params, ratio = synth.draw_params(np.random.default_rng(ss_p))
                t1 = time.perf_counter()
                cp = synth.source.sample_patch(np.random.default_rng(ss_c), patch)
                clean = synth.cfa.pack(cp.raw)
                t2 = time.perf_counter()
                noisy = simulate(clean, params, synth.sensor, ratio=ratio, rng=noise_seed)
                t3 = time.perf_counter()
                ds_c[i] = clean
                ds_n[i] = noisy
                f.flush()
                t4 = time.perf_counter()
                t["params"] += t1 - t0
                t["clean patch"] += t2 - t1
                t["noise kernel"] += t3 - t2
                t["hdf5 write"] += t4 - t3
    return {k: v / n for k, v in t.items()}


def end_to_end(patch: int, pairs: int, workers: int, out: Path, storage: str = "float32") -> float:
    from noisesim.dataset import generate_dataset

    t0 = time.perf_counter()
    generate_dataset(out, card="SonyA7S2", source="builtin", pairs=pairs, patch=patch, iso=(800, 3200), seed=0,
                     workers=workers, storage=storage, progress=False, force=True)
    return pairs / (time.perf_counter() - t0)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=120)
    ap.add_argument("--patch", type=int, default=512, help="mosaic side (512 → packed 4 × 256 × 256)")
    args = ap.parse_args()
    import numba

    p = args.patch
    print(f"machine: {os.cpu_count()} CPUs, numba {numba.__version__} threads {numba.get_num_threads()} ({numba.threading_layer() if numba.get_num_threads() else ''})")
    print(f"patch: {p} × {p} mosaic → packed 4 × {p // 2} × {p // 2}; {args.pairs} pairs per run\n")

    st = stage_breakdown(p, max(8, args.pairs // 2))
    total = sum(st.values())
    print("1. per-sample stages, one process:")
    for k, v in st.items():
        print(f"   {k:<13} {v * 1e3:7.2f} ms  {100 * v / total:5.1f} %")
    print(f"   {'total':<13} {total * 1e3:7.2f} ms  → {1 / total:.1f} pairs/s; noise kernel {p * p / st['noise kernel'] / 1e6:.1f} Mpix/s")

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        end_to_end(p, 4, 1, d / "warm.h5")  # numba cache load, source set-up
        r1 = end_to_end(p, args.pairs, 1, d / "w1.h5")
        r2 = end_to_end(p, args.pairs, 2, d / "w2.h5")
        same = (d / "w1.h5").read_bytes() == (d / "w2.h5").read_bytes()
        mb = 2 * 4 * (p // 2) ** 2 * 4 / 1e6
        print("\n2. generate_dataset end to end (incl. worker start-up):")
        print(f"   workers=1: {r1:6.1f} pairs/s ({r1 * mb:.0f} MB/s written)")
        print(f"   workers=2: {r2:6.1f} pairs/s ({r2 * mb:.0f} MB/s written)  speed-up ×{r2 / r1:.2f}; identical bytes: {same}")
        ru = end_to_end(p, args.pairs, 1, d / "u16.h5", storage="uint16")
        print(f"   uint16 storage, workers=1: {ru:6.1f} pairs/s, file {os.path.getsize(d / 'u16.h5') / 1e6:.1f} MB "
              f"vs float32 {os.path.getsize(d / 'w1.h5') / 1e6:.1f} MB")

        print("\n3. DataLoader read throughput (batch 8, shuffled, amplified):")
        for name in ("w1.h5", "u16.h5"):
            for w in (0, 2):
                print(f"   {name:<7} num_workers={w}: {read_throughput(d / name, w):7.1f} pairs/s")


if __name__ == "__main__":
    main()
