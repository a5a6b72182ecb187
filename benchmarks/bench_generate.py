"""Dataset generation and loading throughput (issues 4 and 12; docs/datasets.md, docs/performance.md).

Prints, for packed 4 × 256 × 256 patches (512 × 512 mosaic) by default:

1. a per-stage breakdown of one sample in one process, through the real code path
   (``Synthesizer.sample`` with its stage timers, then ``ShardWriter.write`` and the periodic checkpoint):
   seeds + parameter sampling, clean patch (built-in dead leaves: render, unprocess + mosaic), the
   noise kernel, packing + the parameter record, HDF5 write. Each repeat warms up first (compilation,
   page faults of the reused buffers), then times ``--pairs`` samples; repeats are interleaved and the
   minimum CPU time per stage is kept. **Per-core pairs/s** is 1 / (CPU seconds per pair): what one
   worker process delivers on one core whatever else shares the machine;
   ``--reference DIR``: the same breakdown for another checkout of noisesim (e.g. a worktree of the
   commit before a change), run in subprocesses alternating with this checkout's, so both are measured
   in the same run under the same load; prints the per-core ratio per stage and in total. A checkout from
   before the dataset package (e.g. f0f8309, issue 12's baseline) works too; its samples carry no CRC-32,
   which stage "hdf5 write" includes here;
2. the issue's figure, **generation CPU per pair end to end**: one whole ``generate_dataset`` run of
   ``--generate-pairs`` pairs (default 300; one worker, default ISO/ratio/storage) after a warm-up run in the
   same fresh process, the warm-up excluded; with ``--reference`` the two checkouts' processes alternate,
   ``--repeats`` times, the minimum kept, and the per-core ratio is printed. Issue 12 measures at
   ``--patch 256`` (a 256 × 256 mosaic, packed 4 × 128 × 128);
3. the steady state of generation's sample producer (``noisesim.dataset.pool.produce``, what
   ``generate_dataset`` iterates) with 1 and 2 workers: after ``--warmup`` pairs per worker (spawning,
   imports, numba cache loading), ``--pairs`` pairs per worker are timed, wall and CPU (the parent's and
   the live workers' from /proc); then one whole ``generate_dataset`` run per worker count, start-up
   included, whose pairs must be identical. Wall-clock scaling from 1 to 2 workers needs 2 idle cores:
   the load average is printed with each run, and a warning when the machine was busier than that;
4. read throughput of :class:`noisesim.torch_data.PairedRawDataset` through a DataLoader with 0 and 2
   workers (float32 and uint16 storage; ``--loader``, needs torch).

The first line names the machine (CPU model, vector ISA, cores, numba threads, load average).
Run: ``python benchmarks/bench_generate.py [--pairs N] [--repeats R] [--reference DIR] [--patch P]``; issue 12's
configuration against its baseline: ``--patch 256 --reference /path/to/f0f8309-checkout --no-end-to-end``.
About a minute with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import json
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

CARD = "SonyA7S2"
STAGES = ("seeds + params", "clean patch", "noise kernel", "pack + record", "hdf5 write")


def _shard_writer():
    """The dataset's shard writer class: ``noisesim.dataset.shards.ShardWriter`` (the package), or in a
    ``--reference`` checkout from before the split, the single module's ``_ShardWriter``."""
    try:
        from noisesim.dataset.shards import ShardWriter
    except ImportError:
        import noisesim.dataset as module

        return getattr(module, "_ShardWriter")
    return ShardWriter


def _synthesis_classes():
    """(job class, synthesizer class): ``SynthesisJob`` and ``Synthesizer`` of the dataset package, or in a
    ``--reference`` checkout from before the split (e.g. f0f8309), the single module's ``_Job`` and ``_Synth``."""
    import noisesim.dataset as module

    if hasattr(module, "Synthesizer"):
        return module.SynthesisJob, module.Synthesizer
    return getattr(module, "_Job"), getattr(module, "_Synth")


def synthesis_job(patch: int, storage: str = "float32"):
    """The benchmarks' generation job: the SonyA7S2 card, built-in dead leaves, ``patch``² mosaics, ISO
    800–3200, exposure ratio 100–300, no blur, seed 0 (also used by ``bench_kernel_ab.py --patches``)."""
    from noisesim.card import load_card
    from noisesim.dataset import parse_ratio
    from noisesim.params import NoiseComponents

    job_cls, _ = _synthesis_classes()
    return job_cls(card=load_card(CARD), source_spec="builtin", patch=patch, iso=(800.0, 3200.0), gain_k=None,
                        ratio=parse_ratio("100:300"), blur=None, seed=0, storage=storage, components=NoiseComponents(),
                        kernel_cap=0)


def stage_breakdown(patch: int, n: int, warmup: int) -> dict:
    """{stage: (wall_s, cpu_s)} per sample through Synthesizer.sample and ShardWriter (one process, the
    noise kernel on the calling thread as generate_dataset runs it), after ``warmup`` untimed samples."""
    _, synth_cls = _synthesis_classes()
    writer_cls = _shard_writer()
    try:
        from noisesim.dataset.synthesis import seal
    except ImportError:
        seal = None
    synth = synth_cls(synthesis_job(patch))
    synth.parallel = False
    with tempfile.TemporaryDirectory() as d:
        w = writer_cls(Path(d) / "w.h5", 0, n + warmup, synth.shape, np.dtype(np.float32), 0, False, None, {}, "{}", resume=False)
        acc: dict = {}
        for i in range(n + warmup):
            if i == warmup:
                acc = {}
            synth.timers = acc
            clean, noisy, rec, kernel = synth.sample(i)
            t0, c0 = time.perf_counter(), time.process_time()
            if seal is not None:  # the sample's CRC-32, made where the sample is (a checkout without one has none)
                seal(synth.job, clean, noisy, rec, kernel)
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
    """CPU seconds per patch of the clean-patch stages: dead-leaves render (incl. its optics smoothing) and
    unprocess + mosaic, after one warm-up patch."""
    from noisesim import isp
    from noisesim.sources import render_dead_leaves

    buf = np.empty((patch, patch, 3), np.float32)
    render_dead_leaves(0, patch, patch, out=buf)
    isp.unprocess_mosaic(buf, isp.sample_isp_meta(0), "RGGB")
    t = {"render": 0.0, "unprocess + mosaic": 0.0}
    for i in range(n):
        g = np.random.default_rng(i)
        c0 = time.process_time()
        srgb = render_dead_leaves(g, patch, patch, out=buf)
        c1 = time.process_time()
        isp.unprocess_mosaic(srgb, isp.sample_isp_meta(g), "RGGB")
        c2 = time.process_time()
        t["render"] += c1 - c0
        t["unprocess + mosaic"] += c2 - c1
    return {k: v / n for k, v in t.items()}


def _measure_json(patch: int, n: int, warmup: int) -> dict:
    import noisesim

    st = stage_breakdown(patch, n, warmup)
    split = clean_split(patch, max(8, n // 2))
    return {"stages": st, "split": split, "noisesim": str(Path(noisesim.__file__).resolve().parent)}


def _generate_json(patch: int, n: int, warmup: int) -> dict:
    """CPU and wall seconds per pair of one ``generate_dataset`` run of ``n`` pairs in this process (one
    worker: the default), after a ``warmup``-pair run in the same process (imports, numba cache loads,
    first-touch page faults), with the same call in every checkout: card, pairs, patch, seed, no progress
    bar; ISO, ratio, source (built-in dead leaves) and storage (float32) at their defaults."""
    import noisesim
    from noisesim.dataset import generate_dataset

    with tempfile.TemporaryDirectory() as d:
        generate_dataset(Path(d) / "warm.h5", card=CARD, pairs=max(1, warmup), patch=patch, seed=0, progress=False)
        t0, c0 = time.perf_counter(), time.process_time()
        generate_dataset(Path(d) / "timed.h5", card=CARD, pairs=n, patch=patch, seed=0, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall": wall / n, "cpu": cpu / n, "noisesim": str(Path(noisesim.__file__).resolve().parent)}


def _subprocess_measure(code_dir: Path | None, patch: int, n: int, warmup: int, mode: str = "--stages-json") -> dict:
    """One stage breakdown (``mode="--generate-json"``: one timed generate_dataset run) in a fresh interpreter
    whose ``noisesim`` comes from ``code_dir`` (None: this checkout)."""
    env = dict(os.environ)
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, __file__, mode, "--patch", str(patch), "--pairs", str(n), "--warmup", str(warmup)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench_generate: the run against {code_dir or 'this checkout'} failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if code_dir is not None and Path(res["noisesim"]) != (Path(code_dir) / "noisesim").resolve():
        raise SystemExit(f"bench_generate: --reference {code_dir} did not take effect (noisesim imported from {res['noisesim']})")
    return res


def _min_merge(runs: list[dict]) -> dict:
    """Per-stage minimum over repeats (CPU and wall separately) of the stage dicts in ``runs``."""
    st = {k: (min(r["stages"][k][0] for r in runs), min(r["stages"][k][1] for r in runs)) for k in runs[0]["stages"]}
    split = {k: min(r["split"][k] for r in runs) for k in runs[0]["split"]}
    return {"stages": st, "split": split}


def _print_stages(st: dict, title: str) -> float:
    total_w = sum(v[0] for v in st.values())
    total_c = sum(v[1] for v in st.values())
    print(title)
    print(f"   {'stage':<18} {'wall ms':>8} {'CPU ms':>8} {'% of CPU':>9}")
    for k, (w, c) in st.items():
        print(f"   {k:<18} {w * 1e3:8.2f} {c * 1e3:8.2f} {100 * c / total_c:8.1f} %")
    kc = st["noise kernel"][1]
    print(f"   {'total':<18} {total_w * 1e3:8.2f} {total_c * 1e3:8.2f}   → {1 / total_c:.1f} pairs/s per core (1 / CPU per pair)")
    print(f"   noise kernel {100 * kc / total_c:.0f} % of CPU; clean patch {100 * st['clean patch'][1] / total_c:.0f} %; "
          f"everything else {1e3 * (total_c - kc):.1f} ms CPU = {(total_c - kc) / kc:.2f} × the kernel")
    return total_c


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def end_to_end(patch: int, pairs: int, workers: int, out: Path, storage: str = "float32") -> tuple[float, float]:
    """(wall s, CPU s incl. worker processes) of one whole generate_dataset run, start-up included."""
    from noisesim.dataset import generate_dataset

    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    generate_dataset(out, card=CARD, source="builtin", pairs=pairs, patch=patch, iso=(800, 3200), seed=0,
                     workers=workers, storage=storage, progress=False, force=True)
    return time.perf_counter() - t0, time.process_time() - c0 + _children_cpu() - k0


def _live_children_cpu() -> float | None:
    """CPU seconds used so far by this process's live multiprocessing children (Linux /proc), or None."""
    import multiprocessing as mp

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for child in mp.active_children():
        try:
            with open(f"/proc/{child.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def steady_state(patch: int, workers: int, warm: int, n: int) -> tuple[float, float | None]:
    """(pairs/s wall, CPU s per pair of parent + workers or None) of the sample producer generate_dataset
    uses (``noisesim.dataset.pool.produce``: in-process for 1 worker, spawned workers writing shared memory
    otherwise), timed over ``n`` pairs per worker after ``warm`` pairs per worker (spawn, imports, caches)."""
    from noisesim.dataset.pool import produce

    todo = range((warm + n) * workers)
    start = warm * workers
    t0 = c0 = k0 = None
    for k, _sample in enumerate(produce(synthesis_job(patch), todo, workers)):
        if k == start:
            t0, c0, k0 = time.perf_counter(), time.process_time(), _live_children_cpu()
        if k == len(todo) - 1:
            t1, c1, k1 = time.perf_counter(), time.process_time(), _live_children_cpu()
    done = len(todo) - 1 - start
    cpu = None if k0 is None or k1 is None else (c1 - c0 + k1 - k0) / done
    return done / (t1 - t0), cpu


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


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=48, help="timed pairs per breakdown repeat and per worker in the end-to-end runs")
    ap.add_argument("--warmup", type=int, default=4, help="untimed pairs before each breakdown")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the breakdown (the minimum is kept)")
    ap.add_argument("--patch", type=int, default=512, help="mosaic side (512 → packed 4 × 256 × 256)")
    ap.add_argument("--reference", type=Path, default=None,
                    help="another noisesim checkout (its root folder) to measure against in the same run")
    ap.add_argument("--no-end-to-end", action="store_true", help="skip the generate_dataset runs")
    ap.add_argument("--loader", action="store_true", help="also measure DataLoader reads (needs torch)")
    ap.add_argument("--no-loader", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    ap.add_argument("--generate-pairs", type=int, default=300,
                    help="pairs of each timed generate_dataset run (section 2; 0 skips it)")
    ap.add_argument("--stages-json", action="store_true", help=argparse.SUPPRESS)  # internal: one breakdown as JSON
    ap.add_argument("--generate-json", action="store_true", help=argparse.SUPPRESS)  # internal: one timed generate_dataset
    args = ap.parse_args()
    p = args.patch
    if args.stages_json:
        print(json.dumps(_measure_json(p, args.pairs, args.warmup)))
        return
    if args.generate_json:
        print(json.dumps(_generate_json(p, args.pairs, args.warmup)))
        return
    import numba

    print_machine()
    print(f"numba {numba.__version__}; generation runs the noise kernel on the calling thread (1 thread per worker)")
    print("Other processes may share these cores: CPU times (process_time; workers' rusage) are the figures to compare.")
    print(f"patch: {p} × {p} mosaic → packed 4 × {p // 2} × {p // 2}; breakdown: {args.warmup} warm-up + {args.pairs} timed "
          f"pairs × {args.repeats} interleaved repeats (minimum kept)\n")

    mine, ref = [], []
    for _ in range(args.repeats):
        mine.append(_subprocess_measure(None, p, args.pairs, args.warmup))
        if args.reference is not None:
            ref.append(_subprocess_measure(args.reference, p, args.pairs, args.warmup))
    cur = _min_merge(mine)
    total_c = _print_stages(cur["stages"], "1. per-sample stages, one process (as one generate_dataset worker runs them):")
    print("   clean patch split (CPU): " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in cur["split"].items()))
    if ref:
        old = _min_merge(ref)
        old_c = sum(v[1] for v in old["stages"].values())
        print(f"\n1b. the same stages against --reference {args.reference} (same run, interleaved; CPU ms per pair, old / new):")
        for k in cur["stages"]:
            o, n_ = old["stages"][k][1], cur["stages"][k][1]
            print(f"   {k:<18} {o * 1e3:8.2f} {n_ * 1e3:8.2f}   ×{o / n_:.2f}")
        for k in cur["split"]:
            print(f"     {k:<16} {old['split'][k] * 1e3:8.2f} {cur['split'][k] * 1e3:8.2f}   ×{old['split'][k] / cur['split'][k]:.2f}")
        print(f"   {'total':<18} {old_c * 1e3:8.2f} {total_c * 1e3:8.2f}   ×{old_c / total_c:.2f}  "
              f"({1 / old_c:.1f} → {1 / total_c:.1f} pairs/s per core)")

    if args.generate_pairs > 0:
        n = args.generate_pairs
        print(f"\n2. whole generate_dataset runs, one worker (defaults: ISO over the card's range, ratio 100:300, float32), "
              f"{n} pairs after a {args.warmup}-pair warm-up run in the same process; fresh processes"
              + (", alternating with the reference" if args.reference is not None else "")
              + f", {args.repeats} repeats, minimum kept:")
        gen_mine, gen_ref = [], []
        for _ in range(args.repeats):
            gen_mine.append(_subprocess_measure(None, p, n, args.warmup, "--generate-json"))
            if args.reference is not None:
                gen_ref.append(_subprocess_measure(args.reference, p, n, args.warmup, "--generate-json"))
        cm = min(r["cpu"] for r in gen_mine)
        wm = min(r["wall"] for r in gen_mine)
        if gen_ref:
            co = min(r["cpu"] for r in gen_ref)
            wo = min(r["wall"] for r in gen_ref)
            print(f"   reference  CPU {co * 1e3:6.2f} ms/pair = {1 / co:6.1f} pairs/s per core (wall {wo * 1e3:6.2f} ms/pair)")
        print(f"   this code  CPU {cm * 1e3:6.2f} ms/pair = {1 / cm:6.1f} pairs/s per core (wall {wm * 1e3:6.2f} ms/pair)")
        if gen_ref:
            print(f"   per-core ratio (reference CPU / this CPU): ×{co / cm:.2f}  at {p}² (issue 12's target: ×2 at 256²)")

    if not args.no_end_to_end:
        print(f"\n3. steady state of generation's sample producer: {args.warmup} warm-up + {args.pairs} timed pairs per worker "
              "(start-up excluded; the writer is stage 'hdf5 write' above):")
        rates = {}
        for w in (1, 2):
            la = _load()
            rate, cpu = steady_state(p, w, args.warmup, args.pairs)
            lb = _load()
            rates[w] = rate
            per_core = "" if cpu is None else f"; CPU {cpu * 1e3:5.1f} ms/pair (parent + workers) = {1 / cpu:.1f} pairs/s per core"
            print(f"   workers={w}: {rate:6.1f} pairs/s wall{per_core}; load {la:.1f} → {lb:.1f}")
            if max(la, lb) > os.cpu_count() - w + 0.5:
                print(f"   (load {max(la, lb):.1f} on {os.cpu_count()} cores: {w} worker(s) could not each have a core, "
                      "so the wall rate is the machine's, not this code's)")
        print(f"   2 vs 1 workers: ×{rates[2] / rates[1]:.2f} wall (×2 is the ideal on 2 idle cores)")
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            mb = 2 * 4 * (p // 2) ** 2 * 4 / 1e6
            print(f"   whole generate_dataset runs of {2 * args.pairs} pairs (start-up, writing and checkpoints included):")
            for w in (1, 2):
                t, c = end_to_end(p, 2 * args.pairs, w, d / f"w{w}.h5")
                print(f"   workers={w}: {t:5.1f} s wall ({2 * args.pairs / t * mb:.0f} MB/s written), CPU {c / (2 * args.pairs) * 1e3:.1f} ms/pair")
            print(f"   identical files' pairs: {_same_pairs(d / 'w1.h5', d / 'w2.h5', 2 * args.pairs)}")
            if args.loader:
                print("\n4. DataLoader read throughput (batch 8, shuffled, amplified):")
                end_to_end(p, 2 * args.pairs, 1, d / "u16.h5", storage="uint16")
                for name in ("w1.h5", "u16.h5"):
                    for w in (0, 2):
                        print(f"   {name:<7} num_workers={w}: {read_throughput(d / name, w):7.1f} pairs/s")
    load1 = os.getloadavg()
    print(f"\nload average at the end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


def _same_pairs(a: Path, b: Path, n: int) -> bool:
    """The first ``n`` clean and noisy pairs of two datasets are equal (workers split the work differently)."""
    import h5py

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return all(np.array_equal(fa[k][:n], fb[k][:n]) for k in ("clean", "noisy"))


if __name__ == "__main__":
    main()
