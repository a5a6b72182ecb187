"""Scale-out throughput: one process, the local pool and a Dask LocalCluster, in one run (issue 9).

Prints, for the same dataset (built-in dead leaves, SonyA7S2, ``--patch`` mosaic patches, ``--pairs`` pairs):

1. ``generate_dataset`` pairs/s with 1 process, the local process pool with 2 workers, and a 2-worker
   ``LocalCluster`` (``scheduler=<its address>``), with the ratio cluster / pool (target: within 15 % on
   one machine). The steady rate is the difference of two runs (N and about N/6 pairs) that pay the same
   start-up (the pool spawns its workers in every call; the cluster's stay up, and its start-up is printed
   apart); end-to-end rates are printed too. The bytes are the same in all three. Each run is repeated
   ``--repeat`` times and the best kept (the machine may be shared);
2. the scheduler's overhead per task: round trips of no-op tasks on the same cluster;
3. how the cluster's wall time grows with the number of shards for a fixed number of pairs (more shards:
   more tasks to schedule, more files to create and fsync, but finer load balance).

Other sessions may load the machine: the load average is printed before and after, and only ratios
measured in the same run are meaningful. Run: ``python benchmarks/bench_scale.py [--pairs N] [--patch P]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import print_machine  # noqa: E402

CARD = "SonyA7S2"


def _noop(x):
    return x


def _best_time(fn, repeat: int) -> float:
    """Best wall seconds over ``repeat`` calls of ``fn(run_index)`` (the machine may be shared)."""
    best = float("inf")
    for r in range(repeat):
        t0 = time.perf_counter()
        fn(r)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1200, help="pairs of the long run (default 1200; fewer make the steady rates noisy)")
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shard-counts", default="2,8,32", help="shard counts for the growth table")
    args = ap.parse_args()

    import dask
    from distributed import Client, LocalCluster

    from noisesim.distributed import WORKER_CONFIG

    from noisesim.dataset import generate_dataset

    print_machine()
    n_big, n_small = args.pairs, max(args.shards, args.pairs // 6)
    kw = dict(card=CARD, source="builtin", patch=args.patch, iso=(800, 3200), ratio=(100, 300), seed=0, progress=False, force=True)
    with tempfile.TemporaryDirectory(prefix="noisesim-bench-scale-") as d:
        d = Path(d)
        generate_dataset(d / "warm.h5", pairs=2, **kw)  # numba cache and imports in this process

        def timed(name, pairs, shards=args.shards, **extra):
            return _best_time(lambda r: generate_dataset(d / f"{name}-{pairs}-{shards}-{r}.h5", pairs=pairs, shards=shards, **kw, **extra),
                              args.repeat)

        # Steady rate = extra pairs / extra time between two runs that pay the same start-up (the pool spawns
        # its workers in every call; the cluster's workers stay up between calls).
        t = {"one": (timed("one", n_small), timed("one", n_big))}
        t["pool"] = (timed("pool", n_small, workers=2), timed("pool", n_big, workers=2))
        t0 = time.perf_counter()
        with dask.config.set(WORKER_CONFIG), \
                LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            t_start = time.perf_counter() - t0
            addr = cluster.scheduler_address
            generate_dataset(d / "cwarm.h5", pairs=2, shards=2, scheduler=addr, **kw)  # worker imports + numba cache
            t["cluster"] = (timed("dask", n_small, scheduler=addr), timed("dask", n_big, scheduler=addr))
            n_noop = 400
            t0 = time.perf_counter()
            client.gather(client.map(_noop, range(n_noop), pure=False))
            per_task_ms = (time.perf_counter() - t0) / n_noop * 1e3
            growth = [(s, timed("g", n_big, shards=s, scheduler=addr)) for s in (int(x) for x in args.shard_counts.split(",")) if s <= n_big]
        steady = {k: (n_big - n_small) / max(b - a, 1e-9) for k, (a, b) in t.items()}
        print(f"dataset: {n_small} and {n_big} pairs of {args.patch}² mosaic patches in {args.shards} shards, best of {args.repeat}")
        print("                          steady pairs/s   end to end (N pairs)")
        for k, label in (("one", "1 process"), ("pool", "local pool, 2 workers"), ("cluster", "LocalCluster, 2 workers")):
            print(f"  {label:<24} {steady[k]:8.1f}        {n_big / t[k][1]:6.1f} pairs/s ({t[k][1]:.2f} s)")
        print(f"  LocalCluster start-up, paid once (not in the figures above): {t_start:.1f} s")
        print(f"ratios (steady): pool / one {steady['pool'] / steady['one']:.2f}, cluster / one {steady['cluster'] / steady['one']:.2f}, "
              f"cluster / pool {steady['cluster'] / steady['pool']:.2f} (target >= 0.85)")
        print(f"scheduler overhead: {per_task_ms:.2f} ms per no-op task round trip ({n_noop} tasks on 2 workers)")
        print(f"cluster wall time by number of shards ({n_big} pairs):")
        for s, tw in growth:
            print(f"  {s:4d} shards ({n_big / s:6.1f} pairs each): {tw:6.2f} s  {n_big / tw:6.1f} pairs/s")
        if len(growth) >= 2:
            (s0, t0_), (s1, t1_) = growth[0], growth[-1]
            print(f"  cost per extra shard (task + file create, fsync, rename): {(t1_ - t0_) / (s1 - s0) * 1e3:+.0f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":  # LocalCluster and pool workers are spawned: keep the guard
    main()
