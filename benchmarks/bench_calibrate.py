"""CPU per frame and peak memory of a calibration, and emva1288's CPU on the same frames (issues 3 and 12).

The frames (per ISO: darks and 10 flat pairs, Sony A7S II parameters) are synthesized once by the engine and
written as ``.npy`` files to a temporary folder; both tools then read them from there, frame by frame, as
they would read a capture, so neither pays for the synthesis. The calibration and, when the ``emva1288``
package is installed, its processing of the same frames (sum and pseudo-variance images, then every EMVA
1288 figure of ``Results1288``) run in alternation ``--repeat`` times; the least CPU time
(``time.process_time``, all threads) of each is kept, and their ratio per frame is printed, since other jobs
on a shared machine change wall time but hardly CPU time. Numba kernels are compiled first by a tiny
warm-up calibration, so JIT compilation is not counted. Peak memory is the process's maximum resident set
size (``resource.getrusage``, the synthesis included), read after the first calibration and at the end.

Also printed: the CPU spent compressing the card's maps while the in-memory card is built (none is
expected: the sidecar is compressed when saved, and saving is timed on its own), and the machine (CPU model,
vector ISA, threads, load) before and after.

    python benchmarks/bench_calibrate.py --small            # 1024×768, 2 ISOs × (32 darks + 10 pairs), ~1 min
    python benchmarks/bench_calibrate.py --isos 2 --darks 16  # 12 MP (4000×3000), ~2 min on 2 cores
    python benchmarks/bench_calibrate.py                    # 12 MP, 4 ISOs × (32 darks + 10 pairs): < 60 s, < 2 GB
    python benchmarks/bench_calibrate.py --small --no-emva1288
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe, print_machine  # noqa: E402

import numpy as np  # noqa: E402

import noisesim.card as card_module  # noqa: E402
from noisesim.calibration.pipeline import calibrate  # noqa: E402
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames  # noqa: E402
from noisesim.card import load_card  # noqa: E402
from noisesim.sampling import sample_params  # noqa: E402


class _LazyFrames:
    """A sized, re-iterable sequence of frames loaded one at a time (emva1288 iterates over a list of
    images; holding 32 frames of 12 MP would need 770 MB)."""

    def __init__(self, frames):
        self.frames = list(frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self):
        return (f.load() for f in self.frames)


def emva1288_run(frames, shape) -> tuple[float, int] | str:
    """CPU seconds of emva1288's processing of the same stack, ISO by ISO, and the number of frames it read;
    or a sentence saying why it did not run.

    Per ISO it gets what its file loader would hand it (``emva1288.process.routines.get_int_imgs``: sum and
    pseudo-variance images): the temporal set is one dark pair and each flat level's pair (photon variation at
    one exposure label), the spatial set all darks and the pair nearest half saturation; then
    ``Data1288`` and every figure of ``Results1288.results``. The frames are read from the files the caller
    wrote, as the calibration reads them.
    """
    try:
        from emva1288.process import routines
        from emva1288.process.data import Data1288
        from emva1288.process.results import Results1288
    except ImportError:
        return "emva1288 is not installed (pip install emva1288): comparison skipped"
    import warnings

    if not hasattr(np, "asfarray"):  # emva1288 1.0.2 calls it; NumPy 2 removed it (same meaning)
        np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)
    logging.getLogger("Results").setLevel(logging.ERROR)
    logging.getLogger("Data").setLevel(logging.ERROR)
    c0 = time.process_time()
    used = 0
    for iso in sorted({f.iso for f in frames}):
        darks = [f for f in frames if f.iso == iso and f.kind == "dark"]
        flats = [f for f in frames if f.iso == iso and f.kind == "flat"]
        levels = sorted({f.exposure_s for f in flats})
        pairs = {t: [f for f in flats if f.exposure_s == t][:2] for t in levels}
        temporal = {0.0: _temporal(routines, _LazyFrames(darks[:2]))}
        for t in levels:  # photon counts ∝ exposure at constant irradiance
            temporal[float(1000.0 * t / levels[0])] = _temporal(routines, _LazyFrames(pairs[t]))
        mid = levels[len(levels) // 2]
        spatial = {0.0: routines.get_int_imgs(_LazyFrames(darks)), float(1000.0 * mid / levels[0]): routines.get_int_imgs(_LazyFrames(pairs[mid]))}
        data = {"temporal": {1.0: temporal}, "spatial": {1.0: spatial}, "height": shape[0], "width": shape[1]}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Results1288(Data1288(data).data, loglevel=logging.ERROR).results
        except Exception as exc:  # noqa: BLE001 - a third-party package: say why and go on
            return f"emva1288 failed on ISO {iso:g} ({type(exc).__name__}: {exc}): comparison skipped"
        used += 2 + sum(len(p) for p in pairs.values()) + len(darks) + len(pairs[mid])
    return time.process_time() - c0, used


def _temporal(routines, imgs) -> dict:
    d = routines.get_int_imgs(imgs)
    return {"sum": np.sum(d["sum"]), "pvar": np.sum(d["pvar"]), "dmean": d["dmean"]}


class _CompressionSpy:
    """Counts the calls and CPU seconds of the card's sidecar compression (``noisesim.card._npz_bytes``)."""

    def __init__(self) -> None:
        self.calls, self.cpu = 0, 0.0
        self.real = getattr(card_module, "_npz_bytes")

    def __call__(self, maps):
        c = time.process_time()
        try:
            return self.real(maps)
        finally:
            self.calls += 1
            self.cpu += time.process_time() - c

    def __enter__(self):
        setattr(card_module, "_npz_bytes", self)
        return self

    def __exit__(self, *exc):
        setattr(card_module, "_npz_bytes", self.real)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="1024×768 frames instead of 4000×3000")
    ap.add_argument("--isos", type=int, default=None, help="ISOs calibrated (default 2 with --small, else 4)")
    ap.add_argument("--darks", type=int, default=32, help="dark frames per ISO (default 32)")
    ap.add_argument("--repeat", type=int, default=None, help="alternating runs of each tool, least CPU kept "
                                                             "(default 3 with --small, else 1)")
    ap.add_argument("--no-fidelity", action="store_true")
    ap.add_argument("--no-emva1288", action="store_true", help="skip the emva1288 comparison")
    args = ap.parse_args()
    shape = (768, 1024) if args.small else (3000, 4000)
    n_isos = args.isos if args.isos is not None else (2 if args.small else 4)
    repeat = max(1, args.repeat if args.repeat is not None else (3 if args.small else 1))
    print_machine()
    card = load_card("SonyA7S2")
    isos = (100, 1600, 3200, 6400)[:n_isos]
    params = {iso: sample_params(card, iso=iso, scatter=False) for iso in isos}
    levels = (0.01, 0.02, 0.04, 0.08, 0.15, 0.25, 0.35, 0.45, 0.8, 1.1)
    spec = SyntheticSpec(n_darks=args.darks, flat_levels=levels, pairs_per_level=1)
    # warm-up: compile every numba kernel on a tiny capture (not timed)
    quiet = logging.getLogger("calibration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    calibrate(synthetic_frames(params, card.sensor, (64, 96), SyntheticSpec(n_darks=8, flat_levels=levels), rng=1), "warm up")
    with tempfile.TemporaryDirectory(prefix="bench_calibrate_") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        frames = []
        for i, f in enumerate(synthetic_frames(params, card.sensor, shape, spec, rng=0)):
            path = Path(tmp) / f"{i:04d}.npy"
            np.save(path, f.load())
            frames.append(f.__class__(**{**f.__dict__, "path": str(path), "loader": lambda path=path: np.load(path)}))
        gen_wall, gen_cpu = time.perf_counter() - t0, time.process_time() - c0
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mp = shape[0] * shape[1] / 1e6
        print(f"frames: {len(frames)} of {shape[1]}×{shape[0]} ({mp:.1f} MP), {len(isos)} ISOs × ({args.darks} darks + "
              f"{len(levels)} flat pairs); synthesized and written once: {gen_wall:.1f} s wall, {gen_cpu:.1f} s CPU (not counted)",
              flush=True)
        runs, emva = [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            with _CompressionSpy() as spy:
                res = calibrate(frames, "Sony ILCE-7SM2", fidelity=not args.no_fidelity)
                runs.append((time.process_time() - c0, time.perf_counter() - t0))
                build_calls, build_cpu = spy.calls, spy.cpu
            if len(runs) == 1:  # before emva1288 has run
                rss_calib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            if not args.no_emva1288:
                emva.append(emva1288_run(frames, shape))
        quiet.setLevel(level)
        with _CompressionSpy() as spy, tempfile.TemporaryDirectory() as d:
            s0 = time.process_time()
            res.save(Path(d) / "card.toml")
            save_cpu, save_calls = time.process_time() - s0, spy.calls
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu, wall = min(runs)
    per_frame = cpu / len(frames)
    print(f"noisesim calibration : {cpu:7.2f} s CPU ({wall:.2f} s wall) = {per_frame * 1e3:.1f} ms CPU per frame "
          f"= {per_frame / (mp * 1e6) * 1e9:.1f} ns/px (least of {len(runs)}; fidelity {'off' if args.no_fidelity else 'on'}; "
          f"target < 60 s for 4 ISOs × 42 frames of 12 MP on 2 cores)")
    print(f"  maps compression   : {build_cpu:.2f} s CPU in {build_calls} call(s) while building the in-memory card "
          f"(expected 0); saving the card: {save_cpu:.2f} s CPU, {save_calls} compression(s)")
    if emva:
        if isinstance(emva[0], str):
            print(f"emva1288             : {emva[0]}")
        else:
            e_cpu, e_frames = min(e[0] for e in emva), emva[0][1]
            e_per = e_cpu / e_frames
            print(f"emva1288 {_emva_version():<11} : {e_cpu:7.2f} s CPU on the same files ({e_frames} frame reads) = "
                  f"{e_per * 1e3:.1f} ms CPU per frame read (least of {len(emva)}; K, σ_y.dark, DSNU1288, PRNU1288 …; "
                  f"no Tukey shape, row noise, maps or card)")
            print(f"  emva1288 / noisesim CPU per frame: {e_per / per_frame:.2f}")
    print(f"peak RSS             : {rss_calib:7.0f} MB after the first calibration (synthesis included; {rss0:.0f} MB after it; "
          f"target < 2048 MB), {rss:.0f} MB at the end (emva1288 included)")
    print(describe())
    for r in res.iso_results:
        print(f"  ISO {r.iso:>5g}: K {r.gain_k_dn_per_e.value:.4g} (true {params[int(r.iso)].gain_k_dn_per_e:.4g}), "
              f"λ {r.tukey_lambda.value:+.3f} (true {params[int(r.iso)].tukey_lambda:+.3f}), σ_TL {r.tukey_scale_dn.value:.3f} "
              f"(true {params[int(r.iso)].tukey_scale_dn:.3f})")
    return 0


def _emva_version() -> str:
    from importlib.metadata import version

    return version("emva1288")


if __name__ == "__main__":
    sys.exit(main())
