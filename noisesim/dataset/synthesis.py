"""The per-sample synthesis: option parsing, the job, and sample i made in any process.

Pipeline per sample (docs/datasets.md; Brooks et al. CVPR 2019 for the unprocessing, Wei et al.
ELD CVPR 2020 for the noise): clean patch from a source (unprocess → blur → mosaic, done by
:mod:`noisesim.sources`) → packed long exposure ``clean`` → :func:`noisesim.noise.simulate` with the
sample's :class:`~noisesim.params.NoiseParams` and exposure ratio r → ``noisy`` (short exposure, not
multiplied by r).

Randomness
----------
Sample ``i`` draws **only** from ``SeedSequence(seed, spawn_key=(i,))`` (the i-th child of
``SeedSequence(seed).spawn``), split into three children: parameters (ISO/K, ratio, map origin, via
:func:`noisesim.sampling.sample_params`), clean patch, and the noise seed stored in ``/params["seed"]``.
The content therefore does not depend on ``workers``, ``shards`` or on resuming, and
``simulate(clean[i], params_from_record(params[i]), sensor, ratio=params[i]["ratio"], rng=int(params[i]["seed"]))``
reproduces ``noisy[i]`` exactly (see :func:`resynthesize`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, ParameterError, UnknownISOError
from ..params import NoiseComponents, NoiseParams, Sensor
from ..rng import key_from_seed
from .layout import NOISE_FIELDS, PARAMS_DTYPE, record_black, record_hot_pixel_dark_current, sample_crc32, sensor_from_attrs

log = logging.getLogger(__name__)

__all__ = [
    "SEED_MAX",
    "SynthesisJob",
    "Synthesizer",
    "check_noise_mode",
    "check_sampling",
    "check_seed",
    "kernel_capacity",
    "params_from_record",
    "parse_range",
    "parse_ratio",
    "resolve_card",
    "resynthesize",
    "sample_seeds",
    "seal",
]


def parse_range(value, what: str, *, allow_none: bool = True) -> tuple[float, float] | None:
    """``"800:6400"`` / ``(800, 6400)`` → (800.0, 6400.0); ``"1600"`` / ``1600`` → (1600.0, 1600.0);
    ``None`` / ``"none"`` / ``"card"`` → None (when allowed). Values must be finite and > 0.

    Parameters
    ----------
    value : str, number, pair or None
        The range.
    what : str
        Its name in the error.
    allow_none : bool
        Whether None / ``"none"`` / ``"card"`` are accepted.

    Returns
    -------
    (float, float) or None
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "card", "")):
        if allow_none:
            return None
        raise ParameterError(f"{what} is required")
    try:
        if isinstance(value, str):
            parts = value.replace(" ", "").split(":")
            if len(parts) not in (1, 2):
                raise ValueError
            lo, hi = float(parts[0]), float(parts[-1])
        elif np.ndim(value) == 0:
            lo = hi = float(value)
        else:
            lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} must be LOW:HIGH or a single value, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ParameterError(f"{what} range must satisfy 0 < LOW <= HIGH, got {lo:g}:{hi:g}")
    return lo, hi


def parse_ratio(value) -> tuple[str, tuple[float, ...]]:
    """Exposure-ratio spec: ``"100:300"`` → log-uniform in [100, 300]; ``"100"`` → fixed;
    ``"100,250,300"`` (or a list) → uniform choice among the values (as in SID/ELD). All values ≥ 1.

    Parameters
    ----------
    value : str, number or sequence of numbers
        The ratio spec.

    Returns
    -------
    (kind, values) : (str, tuple of float)
        ``("loguniform", (lo, hi))`` (lo = hi for a fixed ratio) or ``("choice", values)``.
    """
    if isinstance(value, (list, tuple)) and len(value) != 2 or (isinstance(value, str) and "," in value):
        try:
            vals = tuple(float(v) for v in (value.split(",") if isinstance(value, str) else value))
        except ValueError:
            raise ParameterError(f"ratio list must be numbers separated by commas, got {value!r}") from None
        kind = "choice"
    else:
        lo, hi = parse_range(value, "ratio", allow_none=False)
        vals, kind = (lo, hi), "loguniform"
    if not vals or not all(math.isfinite(v) and v >= 1 for v in vals):
        raise ParameterError(f"exposure ratios must be finite numbers >= 1, got {value!r}")
    return kind, vals


SEED_MAX = 2**64 - 1


def check_seed(seed, what: str = "seed") -> int:
    """``seed`` as an int in 0 .. 2**64 - 1 (what ``SeedSequence`` and the uint64 record fields hold).

    Parameters
    ----------
    seed : int
        Candidate seed.
    what : str
        Its name in the error.

    Returns
    -------
    int
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"{what} must be an integer in 0..2**64-1, got {seed!r}")
    if not 0 <= int(seed) <= SEED_MAX:
        raise ParameterError(f"{what} must lie in 0..2**64-1 ({SEED_MAX}), got {int(seed)}")
    return int(seed)


def _loguniform(g: np.random.Generator, lo: float, hi: float) -> float:
    return lo if lo == hi else float(math.exp(g.uniform(math.log(lo), math.log(hi))))


@dataclass(frozen=True)
class SynthesisJob:
    """Everything needed to synthesize sample i; picklable (sent once to each worker).

    Attributes
    ----------
    card : Card
    source_spec : str
        ``--source`` value (:func:`noisesim.sources.open_source`).
    patch : int
        Patch side [px].
    iso, gain_k : (float, float) or None
        ISO range or K range [DN/e⁻] (one of them).
    ratio : (str, tuple of float)
        :func:`parse_ratio`.
    blur : BlurSpec or None
    seed : int
    storage : str
        ``"uint16"`` (DN) or ``"float32"`` (normalized).
    components : NoiseComponents
    kernel_cap : int
        Padded blur-kernel side [px].
    noise : {"parametric", "dark-frame"}
    bank_path : str or None
        Dark-frame bank for ``noise="dark-frame"``.
    """

    card: Any
    source_spec: str
    patch: int
    iso: tuple[float, float] | None
    gain_k: tuple[float, float] | None
    ratio: tuple[str, tuple[float, ...]]
    blur: Any
    seed: int
    storage: str
    components: NoiseComponents
    kernel_cap: int
    noise: str = "parametric"
    bank_path: str | None = None  # dark-frame bank for noise="dark-frame"


def sample_seeds(seed: int, index: int, *, spawn_key: tuple[int, ...] | None = None) -> tuple[np.random.SeedSequence, np.random.SeedSequence, int]:
    """The three random streams of sample ``index``: (parameter seq, clean-patch seq, noise seed int).

    ``SeedSequence(seed, spawn_key=(index,))`` equals ``SeedSequence(seed).spawn(index + 1)[index]``;
    ``spawn_key`` replaces ``(index,)`` (the on-the-fly loader uses ``(epoch, index)``).

    Parameters
    ----------
    seed : int
        The dataset's seed.
    index : int
        Sample index.
    spawn_key : tuple of int, optional
        Replaces ``(index,)``.

    Returns
    -------
    params_seq, clean_seq : numpy.random.SeedSequence
    noise_seed : int
    """
    key = (int(index),) if spawn_key is None else tuple(int(k) for k in spawn_key)
    ss = np.random.SeedSequence(int(seed), spawn_key=key)
    ss_params, ss_clean, ss_noise = ss.spawn(3)
    return ss_params, ss_clean, int(ss_noise.generate_state(1, np.uint64)[0])


class Synthesizer:
    """Makes sample i of a :class:`SynthesisJob` (clean patch, noisy twin, parameter row), in any process.

    Parameters
    ----------
    job : SynthesisJob
        The card, source and sampling ranges; each sample draws only from its own seed.
    """

    def __init__(self, job: SynthesisJob):
        from ..sources import open_source

        self.job = job
        self.card = job.card
        self.sensor: Sensor = job.card.sensor
        self.cfa = self.sensor.cfa
        self.maps = getattr(job.card, "maps", None)
        self.source = open_source(job.source_spec, cfa=self.cfa, cam2rgb=_card_cam2rgb(job.card))
        p = self.cfa.period
        self.shape = (self.cfa.n_channels, job.patch // p, job.patch // p)
        range_b = np.asarray(self.sensor.range_dn, dtype=np.float64)
        blk = np.asarray(self.sensor.black_level_dn, dtype=np.float64)
        site = self.cfa.site_index.ravel()
        self.ch_range = range_b[site][:, None, None]
        self.ch_black = blk[site][:, None, None]
        self.px_range = self.px_black = self.px_levels = None  # (patch, patch) levels per mosaic pixel, for uint16 storage
        # The noise kernel runs on the calling thread: generation scales by worker processes, and numba's
        # OpenMP pool costs more than it gains between the serial stages (measured on 2 busy cores,
        # 512² patches: 31.9 vs 40.9 ms wall and 28 vs 37 ms CPU per pair, idle threads spin).
        # The output is the same either way (parallel=None restores the engine's default).
        self.parallel: bool | None = False
        self.timers: dict | None = None
        self.bank = None
        if job.noise == "dark-frame":
            from ..darkbank import DarkFrameBank

            self.bank = DarkFrameBank(job.bank_path)

    def compile_message(self) -> str:
        """What :meth:`warm_up` says when it compiles, naming the kernel families this job uses, e.g.
        ``"compiling noise, dead-leaves and unprocessing kernels (first run only) …"``.

        Returns
        -------
        str
        """
        from ..sources import DeadLeavesSource, ImageFolderSource

        names = ["noise"]
        if isinstance(self.source, DeadLeavesSource):
            names.append("dead-leaves")
        if isinstance(self.source, (DeadLeavesSource, ImageFolderSource)):
            names.append("unprocessing")
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"compiling {listed} kernels (first run only) …"

    def warm_up(self) -> None:
        """Take once every code path this job's samples can take, on throw-away draws, so that each numba
        kernel the run uses is compiled (first run) or loaded from numba's cache now, not after the progress
        bar has started.

        The paths: sample 0 as the run makes it (the noise kernel for the storage dtype, the card's maps, the
        dark-frame bank); an unblurred and, with blur, a blurred patch (the fused unprocess-and-mosaic pass
        vs unprocess → blur → mosaic); for the procedural source, a render whose discs stop short of covering
        it (the hole filler runs only then). A source that cannot serve the patch (an empty folder, images
        smaller than it) fails here.
        """
        job = self.job
        g = np.random.default_rng(0)
        self.sample(0)
        self.source.sample_patch(g, job.patch, blur=None)
        if job.blur is not None and job.blur.p_none < 1.0:
            self.source.sample_patch(g, job.patch, blur=dataclasses.replace(job.blur, p_none=0.0))
        from ..sources import DeadLeavesSource, render_dead_leaves

        if isinstance(self.source, DeadLeavesSource):
            render_dead_leaves(g, 16, 16, r_max=3.0, max_discs=1)

    def draw_params(self, g: np.random.Generator) -> tuple[NoiseParams, float]:
        """Draw one sample's NoiseParams and exposure ratio from the job's ranges with generator ``g``.

        Parameters
        ----------
        g : numpy.random.Generator
            The sample's parameter stream.

        Returns
        -------
        params : NoiseParams
        ratio : float
            Exposure ratio r ≥ 1.
        """
        from ..sampling import sample_params

        job = self.job
        kind, vals = job.ratio
        ratio = _loguniform(g, *vals) if kind == "loguniform" else float(vals[int(g.integers(len(vals)))])
        if job.iso is not None:
            iso = float(round(_loguniform(g, *job.iso)))
            params = sample_params(self.card, iso=iso, rng=g)
        elif job.gain_k is not None:
            params = sample_params(self.card, gain_k_dn_per_e=_loguniform(g, *job.gain_k), rng=g)
        else:
            params = sample_params(self.card, rng=g)
        return params, ratio

    def sample(self, i: int, *, spawn_key: tuple[int, ...] | None = None, noise: bool = True):
        """Synthesize sample ``i``: (clean, noisy, params record, kernel or None).

        ``noise=False`` skips the noise kernel (``noisy`` is None; the record, origin included, is the same):
        for noise added elsewhere from the record, e.g. on the training device (:mod:`noisesim.torch_data`).

        When :attr:`timers` is a dict, the wall and CPU seconds of each stage are added to it
        (``{stage: [wall_s, cpu_s]}``; used by ``benchmarks/bench_generate.py``).

        Parameters
        ----------
        i : int
            Sample index.
        spawn_key : tuple of int, optional
            Replaces ``(i,)`` in the seed derivation.
        noise : bool
            Apply the noise kernel.

        Returns
        -------
        clean, noisy : (C, h, w) ndarray
            Packed, in the storage dtype (``noisy`` None without noise).
        rec : structured ndarray row
            The ``/params`` row.
        kernel : (k, k) ndarray of float32 or None
        """
        job = self.job
        clock = _StageClock(self.timers)
        ss_params, ss_clean, noise_seed = sample_seeds(job.seed, i, spawn_key=spawn_key)
        g = np.random.default_rng(ss_params)
        params, ratio = self.draw_params(g)
        origin = (0, 0)
        if self.maps is not None and self.maps.shape is not None:
            p = self.cfa.period
            mh, mw = self.maps.shape
            origin = (p * int(g.integers((mh - job.patch) // p + 1)), p * int(g.integers((mw - job.patch) // p + 1)))
        clock.lap("seeds + params")
        cp = self.source.sample_patch(np.random.default_rng(ss_clean), job.patch, blur=job.blur)
        mosaic = np.asarray(cp.raw, dtype=np.float32)
        if mosaic.shape != (job.patch, job.patch):
            raise DatasetError(f"source {job.source_spec} returned a patch of shape {mosaic.shape}, expected {(job.patch, job.patch)}")
        clock.lap("clean patch")
        from ..noise import simulate

        # The noise is drawn on the mosaic and both are packed afterwards: simulate() would unpack a
        # packed input and pack its output, so this saves a transpose; the values are identical
        # (the noise is keyed by mosaic pixel coordinates).
        common = dict(components=job.components, maps=self.maps, origin=origin, rng=noise_seed)
        choice = None
        if self.bank is not None:
            from ..darkbank import simulate_dark_frame

            # one draw of the dark frame, window and transform: the one the noise used goes into the record
            def add_noise(*args, **kw):
                nonlocal choice
                out, choice = simulate_dark_frame(*args, bank=self.bank, return_choice=True, **kw)
                return out
        else:
            add_noise = functools.partial(simulate, parallel=self.parallel)
        if job.storage == "uint16":
            sensor = self.sensor.with_black_level(params.black_level_dn)  # the ISO's own black level (card /2)
            if self.px_range is None or self.px_levels != sensor.black_level_dn:
                self.px_range = self.cfa.per_pixel(sensor.range_dn, mosaic.shape)
                self.px_black = self.cfa.per_pixel(sensor.black_level_dn, mosaic.shape)
                self.px_levels = sensor.black_level_dn
            clean_m = np.clip(np.rint(mosaic * self.px_range + self.px_black), 0, self.sensor.max_dn).astype(np.uint16)
            noisy_m = (add_noise(clean_m, params, self.sensor, ratio=ratio, input_unit="dn", output_unit="dn", dtype=np.uint16,
                                **common) if noise else None)  # fmt: skip
        else:
            clean_m = mosaic
            noisy_m = add_noise(mosaic, params, self.sensor, ratio=ratio, **common) if noise else None
        clock.lap("noise kernel")
        clean, noisy = self.cfa.pack(clean_m), (None if noisy_m is None else self.cfa.pack(noisy_m))
        rec = np.zeros((), dtype=PARAMS_DTYPE)
        rec["index"] = i
        rec["iso"] = np.nan if params.iso is None else params.iso
        rec["read_model"] = params.read_model.encode()
        for name in NOISE_FIELDS:
            rec[name] = getattr(params, name)
        rec["black_level_error_dn"] = params.black_level_error_dn
        rec["black_level_dn"] = self.sensor.with_black_level(params.black_level_dn).black_level_dn
        hot = params.hot_pixel_dark_current_e_per_s
        rec["hot_pixel_dark_current_e_per_s"] = np.nan if hot is None else hot
        rec["ratio"] = ratio
        rec["seed"] = noise_seed
        kernel = None if cp.blur_kernel is None else np.asarray(cp.blur_kernel, dtype=np.float32)
        rec["blur_kernel_index"] = -1 if kernel is None else i
        rec["source_index"] = cp.source_index
        rec["origin_y"], rec["origin_x"] = origin
        rec["dark_frame"] = -1
        if self.bank is not None:  # which dark frame, where and how it was cut (resynthesize replays the seed)
            # without noise, the choice simulate_dark_frame would make: it keys it by the seed's words
            ch = choice if choice is not None else self.bank.choice_for(
                mosaic.shape, params, rng=np.random.SeedSequence(list(key_from_seed(noise_seed))))
            rec["dark_frame"], rec["dark_y0"], rec["dark_x0"] = ch.frame, ch.y0, ch.x0
            rec["dark_transform"] = 4 * ch.transpose + 2 * ch.flip_y + ch.flip_x
        isp = cp.isp
        if isp is None:
            for f in ("isp_rgb_gain", "isp_red_gain", "isp_blue_gain", "isp_cam2rgb"):
                rec[f] = np.nan
        else:
            rec["isp_rgb_gain"], rec["isp_red_gain"], rec["isp_blue_gain"] = isp.rgb_gain, isp.red_gain, isp.blue_gain
            rec["isp_cam2rgb"] = np.asarray(isp.cam2rgb, dtype=np.float32).reshape(3, 3)
        if kernel is not None and max(kernel.shape) > job.kernel_cap:
            raise DatasetError(f"blur kernel of sample {i} has shape {kernel.shape}, larger than the {job.kernel_cap} px reserved")
        clock.lap("pack + record")
        return clean, noisy, rec, kernel


class _StageClock:
    """Adds wall and CPU seconds per stage to ``timers`` (a dict or None: then it does nothing)."""

    __slots__ = ("timers", "wall", "cpu")

    def __init__(self, timers):
        self.timers = timers
        if timers is not None:
            self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        if self.timers is None:
            return
        wall, cpu = time.perf_counter(), time.process_time()
        acc = self.timers.setdefault(stage, [0.0, 0.0])
        acc[0] += wall - self.wall
        acc[1] += cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def _card_cam2rgb(card):
    for name in ("cam2rgb", "cam2rgb_matrix", "color_matrix"):
        m = getattr(card, name, None)
        if m is not None and not callable(m):
            return np.asarray(m, dtype=np.float64).reshape(3, 3)
    return None


def kernel_capacity(spec) -> int:
    """Largest kernel side ``spec`` can produce (the padded size of /blur_kernels); 0 without blur.

    Parameters
    ----------
    spec : BlurSpec or None

    Returns
    -------
    int
        [px]
    """
    if spec is None or spec.p_none >= 1.0:
        return 0
    cap = spec.max_kernel_size
    return int(cap() if callable(cap) else cap)


def seal(job: SynthesisJob, clean, noisy, rec, kernel) -> None:
    """Store the sample's CRC-32 in ``rec`` (done where the sample is made, so workers share the cost).

    Parameters
    ----------
    job : SynthesisJob
        Fixes whether a kernel is stored.
    clean, noisy : (C, h, w) ndarray
        The sample as stored.
    rec : structured ndarray row
        Its ``/params`` row (``crc32`` set in place).
    kernel : (k, k) ndarray or None
    """
    kernel_row = ksize = None
    if job.blur is not None:  # the layout ShardWriter.write stores
        from ..blur import pad_kernel

        k = max(job.kernel_cap, 1)
        kernel_row = np.zeros((k, k), np.float32) if kernel is None else pad_kernel(np.asarray(kernel, np.float32), k)
        ksize = 0 if kernel is None else max(kernel.shape)
    dt = np.dtype("<u2" if job.storage == "uint16" else "<f4")
    rec["crc32"] = sample_crc32(np.asarray(clean, dt), np.asarray(noisy, dt), rec, kernel_row, ksize)


def resolve_card(card):
    """A :class:`~noisesim.card.Card` from a card, a shipped card's name or a path (loaded); ParameterError otherwise.

    Parameters
    ----------
    card : Card, str or PathLike

    Returns
    -------
    Card
    """
    from ..card import load_card

    if isinstance(card, (str, os.PathLike)):
        return load_card(card)
    if not hasattr(card, "sensor"):
        raise ParameterError(f"card must be a Card, a card name or a path, got {type(card).__name__}")
    return card


def check_sampling(card, iso, gain_k) -> None:
    """Fail before writing anything if the card cannot serve the requested ISO / K range.

    Parameters
    ----------
    card : Card
    iso : (float, float) or None
        ISO range.
    gain_k : (float, float) or None
        K range [DN/e⁻].
    """
    from ..sampling import sample_params

    name = getattr(card, "name", "card")
    if iso is not None:
        if not getattr(card, "iso_table", None):
            raise UnknownISOError(
                f"card {name!r} has no per-ISO table, so an ISO range cannot be sampled; "
                "give a gain range (--gain-k KMIN:KMAX, DN/e-) or omit --iso to sample K over the card's whole range"
            )
        for v in iso:
            sample_params(card, iso=float(round(v)), rng=0)
    elif gain_k is not None:
        for v in gain_k:
            sample_params(card, gain_k_dn_per_e=v, rng=0)
    else:
        sample_params(card, rng=0)


def check_noise_mode(noise: str, bank, cfa, *, card=None) -> tuple[str | None, str | None]:
    """Validate the noise mode; for dark-frame noise, the bank's absolute path and content hash.

    Without ``bank``, dark-frame noise uses the card's own bank (``[dark_bank]``) where it has one.

    Parameters
    ----------
    noise : {"parametric", "dark-frame"}
    bank : str, PathLike or None
        Dark-frame bank file.
    cfa : CFA
        The card's pattern (the bank's must match).
    card : Card, optional
        Its own bank is the default.

    Returns
    -------
    bank_path, bank_sha256 : str or None
    """
    from ..noise import NOISE_MODES

    if noise not in NOISE_MODES:
        raise ParameterError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    if noise == "parametric":
        if bank is not None:
            raise ParameterError("a dark-frame bank is used only with noise='dark-frame' (--noise dark-frame)")
        return None, None
    if bank is None and card is not None and card.dark_bank_file is not None:
        bank = card.dark_bank.path
    if bank is None:
        raise ParameterError("noise='dark-frame' needs a dark-frame bank (--bank BANK.h5; noisesim darks bank)")
    from ..darkbank import DarkFrameBank

    b = DarkFrameBank(bank)
    if b.cfa.pattern != cfa.pattern:
        raise ParameterError(f"{bank}: bank CFA {b.cfa.pattern} differs from the card's {cfa.pattern}")
    if card is not None:
        if b.bit_depth != card.sensor.bit_depth:  # its frames are in another DN scale
            raise ParameterError(f"{bank}: its dark frames are {b.bit_depth}-bit, card {card.camera.name} is "
                                 f"{card.sensor.bit_depth}-bit; use a bank made with this camera's card")
        if b.camera and b.camera != card.camera.name:
            log.warning("%s: dark frames of %s used with card %s (made with another card)", bank, b.camera,
                        card.camera.name)
    return str(Path(bank).resolve()), b.content_sha256


def params_from_record(rec) -> NoiseParams:
    """The :class:`NoiseParams` stored in one ``/params`` row.

    Parameters
    ----------
    rec : structured ndarray row
        One ``/params`` row.

    Returns
    -------
    NoiseParams
    """
    iso = float(rec["iso"])
    black = record_black(rec)
    return NoiseParams(
        read_model=bytes(rec["read_model"]).decode().strip("\x00") or "tukey",
        black_level_error_dn=tuple(float(v) for v in rec["black_level_error_dn"]),
        iso=None if math.isnan(iso) else iso,
        black_level_dn=None if black is None else tuple(float(v) for v in black),
        hot_pixel_dark_current_e_per_s=record_hot_pixel_dark_current(rec),
        **{name: float(rec[name]) for name in NOISE_FIELDS},
    )


def resynthesize(path: str | os.PathLike, index: int, *, card=None, bank=None) -> np.ndarray:
    """Re-draw ``noisy[index]`` from ``clean[index]`` and the stored parameters and seed (bit-exact).

    ``card`` is needed only when the dataset used the card's fixed-pattern maps (``attrs["uses_maps"]``);
    ``bank`` only for dark-frame noise when the bank has moved from the path stored in the file.

    Parameters
    ----------
    path : str or PathLike
        The dataset file.
    index : int
        Sample index.
    card : Card, str or PathLike, optional
        The card with the maps.
    bank : str or PathLike, optional
        The dark-frame bank's new path.

    Returns
    -------
    (C, h, w) ndarray
        ``noisy[index]`` as stored (dtype of the file).
    """
    import h5py

    from ..noise import simulate

    with h5py.File(path, "r") as f:
        clean = f["clean"][index]
        rec = f["params"][index]
        attrs = dict(f.attrs)
    sensor = sensor_from_attrs(attrs)
    components = NoiseComponents(**json.loads(attrs["components"]))
    maps = None
    if attrs.get("uses_maps"):
        if card is None:
            raise DatasetError(f"{path} was generated with the card's fixed-pattern maps; pass card= to resynthesize")
        maps = resolve_card(card).maps
    kw = dict(ratio=float(rec["ratio"]), components=components, maps=maps,
              origin=(int(rec["origin_y"]), int(rec["origin_x"])), rng=int(rec["seed"]))
    if str(attrs.get("noise", "parametric")) == "dark-frame":
        from ..darkbank import DarkFrameBank

        b = DarkFrameBank(bank if bank is not None else str(attrs["dark_bank"]))
        if b.content_sha256 != str(attrs["dark_bank_sha256"]):
            raise DatasetError(f"{b.path}: not the dark-frame bank {path} was generated with (content differs)")
        kw.update(noise="dark-frame", bank=b)
    if attrs["storage"] == "uint16":
        return simulate(clean, params_from_record(rec), sensor, input_unit="dn", output_unit="dn", dtype=np.uint16, **kw)
    return simulate(clean, params_from_record(rec), sensor, **kw)
