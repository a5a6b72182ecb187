"""The fused noise kernel against another git revision of it, in one process (issue 12): the figure for a
change too small to show between separate runs on a shared machine.

The ``noisesim`` package of ``--against REV`` is extracted with ``git archive`` into a temporary folder as the
package ``noisesim_ab`` (compiled and cached in its own ``__pycache__`` there, apart from this checkout's
kernels). This checkout's ``simulate`` prepares each scene's kernel arguments once; the two kernels (``fused_noise_serial``, one
thread) then run on the same arguments in alternation, ``--reps`` pairs, the order flipped every pair, so
that load from other processes and the CPU's clock drift hit both alike. Printed per scene: each kernel's
CPU time per pixel (``time.thread_time``, minimum over the pairs), the median of the per-pair ratios
(this checkout / REV; below 1 is faster), and whether the two outputs are the same bytes (they must be for
a change that only makes the kernel faster).

Scenes: *mixed*, *dark* and *bright* of ``bench_noise.py`` (full model, Sony A7S2 ISO 1600), and with
``--patches N`` the noise calls of the first N pairs of a dataset (``bench_generate.py``'s job: 256² mosaics,
ISO 800–3200, ratio 100–300), timed as one batch.

    python benchmarks/bench_kernel_ab.py --against HEAD~1 [--height 600 --width 4000 --reps 21 --patches 200]

REV must have the same kernel calling convention (``fused_noise_serial(clean, out, tiles, counter, model,
switches, row_offsets, col_offsets, maps)``); an older one is refused with a message.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import print_machine  # noqa: E402

ROOT = HERE.parent
AB_PACKAGE = "noisesim_ab"


class RevisionError(Exception):
    """The revision cannot be compared (unknown, not a git checkout, another kernel convention)."""


def load_revision(rev: str, into: Path):
    """The ``kernels`` module of ``rev``'s package, imported as ``noisesim_ab.kernels`` from ``into``."""
    res = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "noisesim"], capture_output=True)
    if res.returncode != 0:
        raise RevisionError(f"git archive {rev} failed: {res.stderr.decode(errors='replace').strip()}")
    tar_path = into / "rev.tar"
    tar_path.write_bytes(res.stdout)
    with tarfile.open(tar_path) as tar:
        try:
            tar.extractall(into, filter="data")
        except TypeError:  # a Python without extraction filters (before 3.10.12 / 3.11.4): our own git tree
            tar.extractall(into)
    (into / "noisesim").rename(into / AB_PACKAGE)
    sys.path.insert(0, str(into))
    return importlib.import_module(f"{AB_PACKAGE}.kernels")


def check_convention(theirs, ours) -> None:
    """Refuse a revision whose serial kernel takes other arguments than this checkout's."""
    fn = getattr(theirs, "fused_noise_serial", None)
    if fn is None or list(inspect.signature(fn).parameters) != list(inspect.signature(ours.fused_noise_serial).parameters):
        raise RevisionError("that revision's kernels.fused_noise_serial takes other arguments than this checkout's; "
                            "compare across such a change with bench_noise.py runs per checkout instead")


def captured_calls(run) -> list[tuple]:
    """The arguments of every ``fused_noise_serial`` call that ``run()`` makes through ``simulate``."""
    from noisesim import kernels

    calls: list[tuple] = []
    original = kernels.fused_noise_serial
    kernels.fused_noise_serial = lambda *a: calls.append(a) or 0
    try:
        run()
    finally:
        kernels.fused_noise_serial = original
    return calls


def compare(calls: list[tuple], kernels_by_name: dict, reps: int) -> tuple[dict, dict, bool]:
    """(min CPU s per batch, median ratio to "REV", same bytes) of each kernel over the batch of ``calls``."""
    outs = {name: [np.empty_like(a[1]) for a in calls] for name in kernels_by_name}
    for name, k in kernels_by_name.items():  # compile / load, fault in the outputs
        for a, o in zip(calls, outs[name]):
            k.fused_noise_serial(a[0], o, *a[2:])
    times: dict = {name: [] for name in kernels_by_name}
    names = list(kernels_by_name)
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            k = kernels_by_name[name]
            t0 = time.thread_time()
            for a, o in zip(calls, outs[name]):
                k.fused_noise_serial(a[0], o, *a[2:])
            times[name].append(time.thread_time() - t0)
    best = {name: min(v) for name, v in times.items()}
    ratio = {name: float(np.median(np.array(v) / np.array(times["REV"]))) for name, v in times.items()}
    same = all(np.array_equal(x, y) for x, y in zip(outs["this checkout"], outs["REV"]))
    return best, ratio, same


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="git revision to compare with (e.g. HEAD~1, a commit, a branch)")
    ap.add_argument("--height", type=int, default=600)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=21, help="interleaved pairs per scene (median of the pair ratios)")
    ap.add_argument("--patches", type=int, default=200, help="dataset pairs whose noise calls form one more scene (0: none)")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.height < 8 or args.width < 8 or args.patches < 0:
        print("bench_kernel_ab: --reps must be ≥ 1, the frame at least 8×8 and --patches ≥ 0", file=sys.stderr)
        return 2
    from bench_noise import BLACK_DN, K_DN_PER_E, LAM, ROW_DN, SCALE_DN, WHITE_DN, scenes
    from noisesim import NoiseComponents, NoiseParams, Sensor, kernels
    from noisesim.noise import simulate

    print_machine()
    with tempfile.TemporaryDirectory(prefix="noisesim-ab-") as tmp:
        try:
            theirs = load_revision(args.against, Path(tmp))
            check_convention(theirs, kernels)
        except RevisionError as exc:
            print(f"bench_kernel_ab: {exc}", file=sys.stderr)
            return 2
        both = {"this checkout": kernels, "REV": theirs}
        sensor = Sensor("RGGB", 14, int(BLACK_DN), int(WHITE_DN))
        params = NoiseParams(K_DN_PER_E, read_model="tukey", tukey_lambda=LAM, tukey_scale_dn=SCALE_DN,
                             row_sigma_dn=ROW_DN, iso=1600)
        full = NoiseComponents.only("shot", "read", "row")
        frames, e_per_unit = scenes(args.height, args.width, 100.0)
        batches = {f"{name} ({float(np.mean(f)) * e_per_unit:.1f} e⁻)": captured_calls(
            lambda f=f: simulate(f, params, sensor, ratio=100.0, components=full, rng=1, parallel=False))
            for name, f in frames.items()}
        if args.patches:
            import bench_generate
            from noisesim.dataset import Synthesizer

            synth = Synthesizer(bench_generate.synthesis_job(256))
            synth.parallel = False
            batches[f"dataset, {args.patches} pairs of 256²"] = captured_calls(
                lambda: [synth.sample(i) for i in range(args.patches)])
        print(f"kernel of this checkout vs {args.against} ({args.width}×{args.height} scenes), one thread, "
              f"{args.reps} interleaved pairs each:")
        for label, calls in batches.items():
            n_px = sum(a[0].size for a in calls)
            best, ratio, same = compare(calls, both, args.reps)
            print(f"  {label:32s} {args.against} {best['REV'] / n_px * 1e9:6.2f} ns/px   this checkout "
                  f"{best['this checkout'] / n_px * 1e9:6.2f} ns/px   median ratio ×{ratio['this checkout']:.3f}   "
                  f"{'same bytes' if same else 'OUTPUTS DIFFER'}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
