"""Time and peak memory of a calibration: 4 ISOs × (32 darks + 10 flat pairs) of 12 MP (issues 3 and 12).

Frames are synthesized lazily by the engine while the calibration streams over them; the time spent
generating them is measured separately (wall and CPU) and subtracted, so the figure is the calibration's
own. CPU time (``time.process_time``, all threads) is printed next to wall time because the machine may be
shared. Numba kernels (calibration and engine) are compiled first by a tiny warm-up calibration, so JIT
compilation is not counted. Peak memory is the process's maximum resident set size
(``resource.getrusage``), generation included.

Also printed: the CPU spent compressing the card's maps while the in-memory card is built (none is
expected: the sidecar is compressed when saved, and saving is timed on its own), and, when the
``emva1288`` package is installed, its processing of the same frames (sum and pseudo-variance images,
then every EMVA 1288 figure of ``Results1288``), per frame and as a ratio to this calibration's CPU.

    python benchmarks/bench_calibrate.py            # 4000×3000, targets: < 60 s, < 2 GB on 2 cores
    python benchmarks/bench_calibrate.py --small    # 1024×768 quick run (about a minute)
    python benchmarks/bench_calibrate.py --small --no-emva1288
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
    ``Data1288`` and every figure of ``Results1288.results``. The frames' synthesis inside is measured by the
    caller's wrapped loaders and subtracted.
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
    ap.add_argument("--isos", type=int, default=4)
    ap.add_argument("--no-fidelity", action="store_true")
    ap.add_argument("--no-emva1288", action="store_true", help="skip the emva1288 comparison")
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
    with _CompressionSpy() as spy:
        res = calibrate(wrapped, "Sony ILCE-7SM2", fidelity=not args.no_fidelity)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        build_calls, build_cpu = spy.calls, spy.cpu
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            s0 = time.process_time()
            res.save(Path(d) / "card.toml")
            save_cpu = time.process_time() - s0
        save_calls = spy.calls - build_calls
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mp = shape[0] * shape[1] / 1e6
    print(f"frames: {len(frames)} of {shape[1]}×{shape[0]} ({mp:.1f} MP), {len(isos)} ISOs × (32 darks + 10 flat pairs)")
    print(f"                       wall      CPU")
    print(f"total                : {total:7.1f} s {cpu:7.1f} s")
    print(f"  frame synthesis    : {gen_time[0]:7.1f} s {gen_cpu[0]:7.1f} s (engine, not calibration)")
    print(f"  calibration itself : {total - gen_time[0]:7.1f} s {cpu - gen_cpu[0]:7.1f} s   (target < 60 s for 12 MP on 2 cores)")
    print(f"  per frame          : {(total - gen_time[0]) / len(frames) * 1e3:7.0f} ms {(cpu - gen_cpu[0]) / len(frames) * 1e3:7.0f} ms"
          f" = {(cpu - gen_cpu[0]) / len(frames) / (mp * 1e6) * 1e9:.1f} ns/px CPU")
    print(f"  maps compression   : {build_cpu:7.1f} s CPU in {build_calls} call(s) while building the in-memory card "
          f"(expected 0); saving the card: {save_cpu:.1f} s CPU, {save_calls} compression(s)")
    calib_cpu = cpu - gen_cpu[0]
    if not args.no_emva1288:
        gen_cpu[0] = 0.0
        out = emva1288_run(wrapped, shape)
        if isinstance(out, str):
            print(f"  emva1288           : {out}")
        else:
            e_cpu, e_frames = out[0] - gen_cpu[0], out[1]
            print(f"  emva1288 {_emva_version()} : {e_cpu:7.1f} s CPU on the same frames ({e_frames} frame reads), "
                  f"{e_cpu / e_frames * 1e3:.0f} ms CPU per frame read = {e_cpu / calib_cpu:.2f} × this calibration's CPU "
                  f"(it estimates K, σ_y.dark, DSNU1288, PRNU1288 …; no Tukey, row noise, maps or card)")
    print(f"load average (1 min) : {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"peak RSS             : {rss:7.0f} MB (before calibrate: {rss0:.0f} MB; target < 2048 MB)")
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
