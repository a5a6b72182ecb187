"""Paired (noisy, clean) raw datasets in HDF5: synthesis, crash-safe writing, shards, inspection.

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

Layout (schema ``noisesim.dataset/2``)
--------------------------------------
::

    /clean         (N, C, h, w) float32 normalized, or uint16 raw DN (black included); long exposure
    /noisy         (N, C, h, w) same dtype; short exposure, NOT multiplied by the ratio
    /params        (N,) compound, see PARAMS_DTYPE (iso, K, read noise, row/col σ, ratio, black-level
                   error and black level per site (a card of schema /2 may vary it by ISO; uint16 samples
                   include their own), seed, blur kernel index, source index, map origin, ISP gains/matrix,
                   and the sample's CRC-32 (:func:`sample_crc32`; schema /2), checked by :func:`verify_dataset`)
    /blur_kernels  (M, k, k) float32, each kernel zero-padded (centred) to the largest possible size k;
                   M = N when blur is on (row i = kernel of sample i), else M = 0
    /blur_kernel_sizes (M,) int32: the unpadded side of each kernel (0: sample not blurred)
    attrs          schema, noisesim_version, card (full text), card_name, cfa, channel_order,
                   black/white levels per site and per packed channel, bit_depth, storage, seed,
                   n_pairs, patch, generation_config (JSON), components (JSON), command

C, h, w = p², patch/p, patch/p for CFA period p (Bayer: 4 channels in the order the pattern reads).
Datasets are chunked one patch per chunk and uncompressed by default: noise does not compress
(docs/datasets.md: lzf 1.07× at 11× the write time); ``compression="lzf"|"gzip"`` is an option, and
``storage="uint16"`` halves the size exactly.

Crash safety: everything is written to ``<output>.partial`` in the same directory and renamed when
complete; a :class:`~noisesim.runlock.RunLock` on ``<output>.lock`` is held from before any file is
touched, so a second run on the same output fails at once instead of destroying the first one's partial. Progress (a per-sample ``done`` flag) is flushed periodically; ``resume=True`` continues an
interrupted run. Uncompressed files are allocated in full at creation, so an interrupted-and-resumed
run, or a run with any number of workers, gives a byte-identical file; with compression the content is
identical (chunk placement may differ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections import deque
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .atomic import atomic_path, write_bytes
from .errors import DatasetError, NoiseSimError, ParameterError, UnknownISOError
from .params import NoiseComponents, NoiseParams, Sensor
from .runlock import RunLock
from .spawnguard import main_guard_message, require_main_guard

__all__ = [
    "channel_levels",
    "check_noise_mode",
    "check_sampling",
    "check_seed",
    "check_shared_memory",
    "COMPRESSIONS",
    "contact_sheet",
    "format_summary",
    "generate_dataset",
    "inspect_dataset",
    "kernel_capacity",
    "open_dataset_file",
    "PARAMS_DTYPE",
    "params_from_record",
    "parse_range",
    "parse_ratio",
    "PARTIAL_SUFFIX",
    "resolve_card",
    "resynthesize",
    "sample_crc32",
    "sample_seeds",
    "SCHEMA",
    "SEED_MAX",
    "sensor_from_attrs",
    "shard_paths",
    "ShardTask",
    "shared_memory_bytes",
    "SHM_DIR",
    "single_threaded_kernels",
    "STORAGES",
    "stored_sample_crc32",
    "SynthesisJob",
    "Synthesizer",
    "to_normalized",
    "verify_dataset",
    "write_shard",
]

log = logging.getLogger(__name__)

SCHEMA = "noisesim.dataset/2"  # /2: per-sample CRC-32 in /params["crc32"]
STORAGES = ("float32", "uint16")
COMPRESSIONS = (None, "lzf", "gzip")
PARTIAL_SUFFIX = ".partial"

PARAMS_DTYPE = np.dtype(
    [
        ("index", "<i8"),  # global sample index
        ("iso", "<f8"),  # NaN when the card has no ISO axis
        ("gain_k_dn_per_e", "<f8"),
        ("read_model", "S8"),  # b"tukey" | b"gaussian"
        ("read_sigma_dn", "<f8"),
        ("tukey_lambda", "<f8"),
        ("tukey_scale_dn", "<f8"),
        ("row_sigma_dn", "<f8"),
        ("col_sigma_dn", "<f8"),
        ("black_level_error_dn", "<f8", (4,)),  # per colour site, Bayer reading order
        ("black_level_dn", "<f8", (4,)),  # black level of the sample's ISO per site (card schema /2 may vary it)
        ("dark_current_e_per_s", "<f8"),
        ("exposure_s", "<f8"),
        ("ratio", "<f8"),  # exposure ratio r >= 1
        ("seed", "<u8"),  # noise seed: simulate(..., rng=int(seed))
        ("blur_kernel_index", "<i8"),  # row of /blur_kernels (global index), -1 = no blur
        ("source_index", "<i8"),  # image index in the source, -1 = procedural
        ("origin_y", "<i4"),  # top-left mosaic pixel in the full sensor (fixed-pattern maps)
        ("origin_x", "<i4"),
        ("isp_rgb_gain", "<f4"),  # NaN when the clean patch did not come from sRGB
        ("isp_red_gain", "<f4"),
        ("isp_blue_gain", "<f4"),
        ("isp_cam2rgb", "<f4", (3, 3)),
        ("dark_frame", "<i8"),  # dark-frame noise: row of the bank's /frames, -1 = parametric noise
        ("dark_y0", "<i4"),  # top-left of the dark window in that frame
        ("dark_x0", "<i4"),
        ("dark_transform", "u1"),  # bits: 4 = transpose, 2 = flip rows, 1 = flip columns
        ("crc32", "<u4"),  # CRC-32 of the sample's stored bytes (see sample_crc32); checked by inspect --verify
    ]
)

# Fields of PARAMS_DTYPE that are NoiseParams fields (same names).
_NOISE_FIELDS = (
    "gain_k_dn_per_e", "read_sigma_dn", "tukey_lambda", "tukey_scale_dn", "row_sigma_dn", "col_sigma_dn",
    "dark_current_e_per_s", "exposure_s",
)


# ------------------------------------------------------------------------------------------------
# Argument parsing shared by the API and the CLI
# ------------------------------------------------------------------------------------------------
def parse_range(value, what: str, *, allow_none: bool = True) -> tuple[float, float] | None:
    """``"800:6400"`` / ``(800, 6400)`` → (800.0, 6400.0); ``"1600"`` / ``1600`` → (1600.0, 1600.0);
    ``None`` / ``"none"`` / ``"card"`` → None (when allowed). Values must be finite and > 0."""
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
    ``"100,250,300"`` (or a list) → uniform choice among the values (as in SID/ELD). All values ≥ 1."""
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
    """``seed`` as an int in 0 .. 2**64 - 1 (what ``SeedSequence`` and the uint64 record fields hold)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"{what} must be an integer in 0..2**64-1, got {seed!r}")
    if not 0 <= int(seed) <= SEED_MAX:
        raise ParameterError(f"{what} must lie in 0..2**64-1 ({SEED_MAX}), got {int(seed)}")
    return int(seed)


def _loguniform(g: np.random.Generator, lo: float, hi: float) -> float:
    return lo if lo == hi else float(math.exp(g.uniform(math.log(lo), math.log(hi))))


# ------------------------------------------------------------------------------------------------
# The per-sample synthesis (runs in the parent or in worker processes)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SynthesisJob:
    """Everything needed to synthesize sample i; picklable (sent once to each worker)."""

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
        from .sources import open_source

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
            from .darkbank import DarkFrameBank

            self.bank = DarkFrameBank(job.bank_path)

    def draw_params(self, g: np.random.Generator) -> tuple[NoiseParams, float]:
        """Draw one sample's NoiseParams and exposure ratio from the job's ranges with generator ``g``."""
        from .sampling import sample_params

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

    def sample(self, i: int, *, spawn_key: tuple[int, ...] | None = None):
        """Synthesize sample ``i``: (clean, noisy, params record, kernel or None).

        When :attr:`timers` is a dict, the wall and CPU seconds of each stage are added to it
        (``{stage: [wall_s, cpu_s]}``; used by ``benchmarks/bench_generate.py``).
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
        from .noise import simulate

        # The noise is drawn on the mosaic and both are packed afterwards: simulate() would unpack a
        # packed input and pack its output, so this saves a transpose; the values are identical
        # (the noise is keyed by mosaic pixel coordinates).
        common = dict(components=job.components, maps=self.maps, origin=origin, rng=noise_seed, parallel=self.parallel)
        if self.bank is not None:
            common.update(noise="dark-frame", bank=self.bank)
        if job.storage == "uint16":
            sensor = self.sensor.with_black_level(params.black_level_dn)  # the ISO's own black level (card /2)
            if self.px_range is None or self.px_levels != sensor.black_level_dn:
                self.px_range = self.cfa.per_pixel(sensor.range_dn, mosaic.shape)
                self.px_black = self.cfa.per_pixel(sensor.black_level_dn, mosaic.shape)
                self.px_levels = sensor.black_level_dn
            clean_m = np.clip(np.rint(mosaic * self.px_range + self.px_black), 0, self.sensor.max_dn).astype(np.uint16)
            noisy_m = simulate(clean_m, params, self.sensor, ratio=ratio, input_unit="dn", output_unit="dn", dtype=np.uint16, **common)
        else:
            clean_m = mosaic
            noisy_m = simulate(mosaic, params, self.sensor, ratio=ratio, **common)
        clock.lap("noise kernel")
        clean, noisy = self.cfa.pack(clean_m), self.cfa.pack(noisy_m)
        rec = np.zeros((), dtype=PARAMS_DTYPE)
        rec["index"] = i
        rec["iso"] = np.nan if params.iso is None else params.iso
        rec["read_model"] = params.read_model.encode()
        for name in _NOISE_FIELDS:
            rec[name] = getattr(params, name)
        rec["black_level_error_dn"] = params.black_level_error_dn
        rec["black_level_dn"] = self.sensor.with_black_level(params.black_level_dn).black_level_dn
        rec["ratio"] = ratio
        rec["seed"] = noise_seed
        kernel = None if cp.blur_kernel is None else np.asarray(cp.blur_kernel, dtype=np.float32)
        rec["blur_kernel_index"] = -1 if kernel is None else i
        rec["source_index"] = cp.source_index
        rec["origin_y"], rec["origin_x"] = origin
        rec["dark_frame"] = -1
        if self.bank is not None:  # which dark frame, where and how it was cut (resynthesize replays the seed)
            ch = self.bank.choice_for(mosaic.shape, params, rng=noise_seed)
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
    """Largest kernel side ``spec`` can produce (the padded size of /blur_kernels); 0 without blur."""
    if spec is None or spec.p_none >= 1.0:
        return 0
    cap = spec.max_kernel_size
    return int(cap() if callable(cap) else cap)


# ------------------------------------------------------------------------------------------------
# Producing samples: in-process, or in spawned workers writing into shared memory
# ------------------------------------------------------------------------------------------------
_W: dict = {}


def single_threaded_kernels() -> None:
    """One numba and one OpenCV thread in this process: parallelism is across worker processes
    (the local pool's and a Dask cluster's), so a worker never oversubscribes its core."""
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):  # pragma: no cover
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def _exit_with_parent(parent_pid: int) -> None:
    """Make this worker exit as soon as the process that started it dies (``kill -9`` included).

    Linux: ``PR_SET_PDEATHSIG`` delivers SIGKILL at the parent's death. Everywhere (and as a fallback): a
    daemon thread that sees the parent PID change. Without this, orphaned workers (~180 MB each) and the
    resource tracker outlived a killed ``generate`` indefinitely, holding a /dev/shm segment.
    """
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the thread below still works
            pass
    if os.getppid() != parent_pid:  # died before we got here
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="noisesim-parent-watch", daemon=True).start()


def _worker_init(job: SynthesisJob, shm_name: str, nslots: int, shape: tuple, dtype: str, parent_pid: int | None = None) -> None:
    import signal
    from multiprocessing import shared_memory

    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: the parent handles it and shuts the pool down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    single_threaded_kernels()
    _W["synth"] = Synthesizer(job)
    shm = shared_memory.SharedMemory(name=shm_name)
    _W["shm"] = shm
    _W["slots"] = np.ndarray((nslots, 2) + tuple(shape), dtype=dtype, buffer=shm.buf)


def _worker_task(i: int, slot: int):
    clean, noisy, rec, kernel = _W["synth"].sample(i)
    _seal(_W["synth"].job, clean, noisy, rec, kernel)
    _W["slots"][slot, 0] = clean
    _W["slots"][slot, 1] = noisy
    return i, rec.tobytes(), kernel


def sample_crc32(clean: np.ndarray, noisy: np.ndarray, rec, kernel_row: np.ndarray | None = None, kernel_size: int | None = None) -> int:
    """CRC-32 of one sample as stored: ``clean`` and ``noisy`` rows (C, h, w) in their stored dtype, the
    ``/params`` row with its ``crc32`` field zeroed and, for blurred datasets, the padded ``/blur_kernels``
    row (k, k) float32 and its ``/blur_kernel_sizes`` entry (int32).

    CRC-32 detects every error burst up to 32 bits and misses random damage with probability 2⁻³²; it
    guards against storage faults, not against deliberate tampering.
    """
    import zlib

    row = np.array(rec, dtype=PARAMS_DTYPE)  # a copy, with the checksum field zeroed
    row["crc32"] = 0
    crc = zlib.crc32(np.ascontiguousarray(clean).data)
    crc = zlib.crc32(np.ascontiguousarray(noisy).data, crc)
    crc = zlib.crc32(row.tobytes(), crc)
    if kernel_row is not None:
        crc = zlib.crc32(np.ascontiguousarray(kernel_row, dtype="<f4").data, crc)
        crc = zlib.crc32(np.int32(kernel_size or 0).astype("<i4").tobytes(), crc)
    return crc


def _seal(job: SynthesisJob, clean, noisy, rec, kernel) -> None:
    """Store the sample's CRC-32 in ``rec`` (done where the sample is made, so workers share the cost)."""
    kernel_row = ksize = None
    if job.blur is not None:  # the layout _ShardWriter.write stores
        from .blur import pad_kernel

        k = max(job.kernel_cap, 1)
        kernel_row = np.zeros((k, k), np.float32) if kernel is None else pad_kernel(np.asarray(kernel, np.float32), k)
        ksize = 0 if kernel is None else max(kernel.shape)
    dt = np.dtype("<u2" if job.storage == "uint16" else "<f4")
    rec["crc32"] = sample_crc32(np.asarray(clean, dt), np.asarray(noisy, dt), rec, kernel_row, ksize)


def stored_sample_crc32(f, index: int, rec=None, *, clean=None, noisy=None) -> int:
    """CRC-32 of sample ``index`` recomputed from an open dataset file ``f`` (compare with ``rec["crc32"]``);
    ``rec``, ``clean`` and ``noisy`` may be passed when the caller has already read them."""
    rec = f["params"][index] if rec is None else rec
    clean = f["clean"][index] if clean is None else clean
    noisy = f["noisy"][index] if noisy is None else noisy
    kern = f["blur_kernels"]
    kernel_row = ksize = None
    if kern.shape[0]:
        kernel_row, ksize = kern[index], int(f["blur_kernel_sizes"][index])
    return sample_crc32(clean, noisy, rec, kernel_row, ksize)


SHM_DIR = "/dev/shm"


def shared_memory_bytes(job: SynthesisJob, workers: int) -> int:
    """Bytes of shared memory ``workers`` processes use to hand samples back (3 slots of a pair each)."""
    p = job.card.sensor.cfa.period
    itemsize = 2 if job.storage == "uint16" else 4
    return 3 * workers * 2 * job.card.sensor.cfa.n_channels * (job.patch // p) ** 2 * itemsize


def check_shared_memory(job: SynthesisJob, workers: int) -> None:
    """Refuse up front when /dev/shm cannot hold the workers' buffers (a worker would die of SIGBUS)."""
    if workers <= 1 or not os.path.isdir(SHM_DIR):
        return
    need = shared_memory_bytes(job, workers)
    free = shutil.disk_usage(SHM_DIR).free
    if need + (1 << 20) > free:
        raise DatasetError(
            f"--workers {workers} with --patch {job.patch} needs {need / 1e6:.1f} MB of shared memory, but {SHM_DIR} has "
            f"{free / 1e6:.1f} MB free (Docker's default is 64 MB): start the container with a larger --shm-size "
            f"(e.g. --shm-size=1g), or use fewer --workers or a smaller --patch"
        )


def _produce(job: SynthesisJob, todo: Sequence[int], workers: int) -> Iterator[tuple]:
    """Yield (i, clean, noisy, rec, kernel) for every i in ``todo``, in that order."""
    if workers <= 1 or len(todo) <= 1:
        synth = Synthesizer(job)
        for i in todo:
            clean, noisy, rec, kernel = synth.sample(i)
            _seal(job, clean, noisy, rec, kernel)
            yield i, clean, noisy, rec, kernel
        return
    import multiprocessing as mp
    from multiprocessing import shared_memory

    dtype = np.dtype(np.uint16 if job.storage == "uint16" else np.float32)
    p = job.card.sensor.cfa.period
    shape = (job.card.sensor.cfa.n_channels, job.patch // p, job.patch // p)
    nslots = 3 * workers
    check_shared_memory(job, workers)
    shm = shared_memory.SharedMemory(create=True, size=nslots * 2 * int(np.prod(shape)) * dtype.itemsize)
    try:
        slots = np.ndarray((nslots, 2) + shape, dtype=dtype, buffer=shm.buf)
        # spawn, not fork: numba's OpenMP threading layer is not fork-safe (docs/performance.md).
        ctx = mp.get_context("spawn")
        # The job (with its Card: 0.1 ms to unpickle, vs 2 ms to re-parse the card text) goes to each
        # worker once, as an initializer argument.
        wjob = job
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(wjob, shm.name, nslots, shape, dtype.str, os.getpid())) as pool:
            pending: deque = deque()
            it = iter(todo)
            free = list(range(nslots))
            try:
                while True:
                    while free:
                        i = next(it, None)
                        if i is None:
                            break
                        slot = free.pop()
                        pending.append((slot, pool.submit(_worker_task, i, slot)))
                    if not pending:
                        break
                    slot, fut = pending.popleft()
                    try:
                        i, rec_bytes, kernel = fut.result()
                    except BrokenProcessPool as exc:
                        raise DatasetError(f"a worker process died or failed to start ({exc}); rerun with --workers 1 to see the error "
                                           "(from a script: workers are spawned, so call generate_dataset under "
                                           "`if __name__ == \"__main__\":`)") from None
                    rec = np.frombuffer(rec_bytes, dtype=PARAMS_DTYPE)[0]
                    yield i, slots[slot, 0], slots[slot, 1], rec, kernel  # consumer copies before next()
                    free.append(slot)
            finally:
                for _slot, fut in pending:
                    fut.cancel()
    finally:
        slots = None  # release the buffer export before closing
        shm.close()
        shm.unlink()


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def shard_paths(output: str | os.PathLike, shards: int) -> list[Path]:
    """File names of the ``shards`` shard files of ``output`` (``ds.h5`` → ``ds-00000-of-00004.h5`` …)."""
    out = Path(output)
    if shards <= 1:
        return [out]
    return [out.with_name(f"{out.stem}-{k:05d}-of-{shards:05d}{out.suffix}") for k in range(shards)]


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _dcpl():
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    # Allocate every chunk at creation: the file layout is then fixed, writes only fill raw data in
    # place (nothing in the metadata changes after the first flush, so a kill cannot corrupt it), and
    # the bytes do not depend on the order samples are written in.
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


class _ShardWriter:
    """One HDF5 file holding samples [first, first + n) of the dataset, written via ``<name>.partial``."""

    def __init__(self, path: Path, first: int, n: int, shape: tuple, dtype, kernel_cap: int, blur: bool,
                 compression: str | None, attrs: dict, config_json: str, resume: bool):
        import h5py

        self.path, self.tmp, self.first, self.n = path, _partial(path), first, n
        self.resumed = False
        if resume and self.tmp.exists():
            try:
                f = h5py.File(self.tmp, "r+")
            except OSError as exc:
                raise DatasetError(f"cannot resume from {self.tmp}: the file is damaged ({exc}); rerun with --force to start over") from None
            old = f.attrs.get("generation_config", "")
            if old != config_json:
                f.close()
                raise DatasetError(f"cannot resume from {self.tmp}: it was started with different settings ({_config_diff(old, config_json)}); "
                                   "rerun with the original settings, or with --force to start over")
            self.f = f
            self.resumed = True
        else:
            f = h5py.File(self.tmp, "w")
            try:
                self._create(f, n, shape, dtype, kernel_cap, blur, compression, attrs, first, config_json)
            except BaseException:
                try:
                    f.close()
                except Exception:  # noqa: BLE001 - a failed flush again; the first error matters
                    pass
                raise
            self.f = f
        self._open_datasets(n)

    def _create(self, f, n, shape, dtype, kernel_cap, blur, compression, attrs, first, config_json) -> None:
        m = n if blur else 0
        k = max(kernel_cap, 1)
        opts = {}
        if compression is not None:
            opts = {"compression": compression}
        f.create_dataset("clean", (n,) + shape, dtype, chunks=(1,) + shape, dcpl=_dcpl(), fill_time="never", **opts)
        f.create_dataset("noisy", (n,) + shape, dtype, chunks=(1,) + shape, dcpl=_dcpl(), fill_time="never", **opts)
        f.create_dataset("params", (n,), PARAMS_DTYPE, dcpl=_dcpl(), fill_time="never")
        f.create_dataset("blur_kernels", (m, k, k), np.float32, chunks=(1, k, k) if m else None, dcpl=_dcpl(), fill_time="never")
        f.create_dataset("blur_kernel_sizes", (m,), np.int32, dcpl=_dcpl(), fill_time="never")
        for key, val in attrs.items():
            f.attrs[key] = val
        f.attrs["first_sample"] = first
        f.attrs["generation_config"] = config_json
        f.flush()

    def _open_datasets(self, n: int) -> None:
        self.ds_clean, self.ds_noisy, self.ds_params = self.f["clean"], self.f["noisy"], self.f["params"]
        self.ds_kern, self.ds_ksize = self.f["blur_kernels"], self.f["blur_kernel_sizes"]
        # Progress flags live in a sidecar of N bytes, never in the HDF5 file: its metadata then never
        # changes after creation (a kill cannot corrupt it, and a resumed file has the same bytes).
        self.progress = _progress(self.tmp)
        flags = self.progress.read_bytes() if self.resumed and self.progress.exists() else b""
        if len(flags) != n:
            flags = bytes(n)
            self.progress.write_bytes(flags)
        self.done = np.frombuffer(flags, dtype=np.uint8).astype(bool)
        self.unflushed: list[int] = []
        # Parameter rows are kept here and written at each checkpoint in contiguous runs (one h5py call
        # per run instead of ~0.8 ms per compound row); the file bytes are the same.
        self.rec_buf = np.zeros(n, dtype=PARAMS_DTYPE)
        self._sync = None  # background fsync of the last checkpoint (checkpoint(wait=False))
        self._sync_n = 0
        self._sync_error: BaseException | None = None
        self.n_durable = int(self.done.sum())  # samples flagged done, as far as this thread knows
        # Uncompressed patches go straight into their pre-allocated chunks (H5Dwrite_chunk: no selection
        # or conversion machinery, ~4x less CPU than ds[j] = x, same bytes in the same place).
        self.direct = all(
            ds.compression is None and not ds.is_virtual and ds.chunks == (1,) + ds.shape[1:] and ds.dtype.byteorder in "<="
            for ds in (self.ds_clean, self.ds_noisy)
        )

    def todo(self) -> list[int]:
        return [self.first + int(j) for j in np.flatnonzero(~self.done)]

    def write(self, i: int, clean, noisy, rec, kernel) -> None:
        from .blur import pad_kernel

        j = i - self.first
        if self.direct:
            for ds, x in ((self.ds_clean, clean), (self.ds_noisy, noisy)):
                x = np.ascontiguousarray(x, dtype=ds.dtype)
                if x.shape != ds.shape[1:]:
                    raise DatasetError(f"internal error: sample {i} has shape {x.shape}, dataset rows are {ds.shape[1:]}")
                ds.id.write_direct_chunk((j,) + (0,) * x.ndim, x)
        else:
            self.ds_clean[j] = clean
            self.ds_noisy[j] = noisy
        self.rec_buf[j] = rec
        if self.ds_kern.shape[0]:
            if kernel is None:
                self.ds_kern[j] = 0.0
                self.ds_ksize[j] = 0
            else:
                self.ds_kern[j] = pad_kernel(kernel, self.ds_kern.shape[1])
                self.ds_ksize[j] = max(kernel.shape)
        self.unflushed.append(j)

    def checkpoint(self, *, wait: bool = True) -> None:
        """Make the samples written so far durable, then mark them done (data first, flags second).

        The parameter rows and HDF5 metadata are flushed here; the ``fsync`` of the file and the
        progress flags follow on a background thread when ``wait`` is False (generation goes on
        meanwhile: samples written later are simply not flagged by this checkpoint). At most one
        such sync runs at a time; its error, if any, is raised by the next checkpoint.
        """
        if not self.unflushed:
            if wait:
                self._join_sync()
            return
        js = np.unique(np.asarray(self.unflushed, dtype=np.int64))
        breaks = np.flatnonzero(np.diff(js) != 1) + 1
        for run in np.split(js, breaks):  # contiguous runs of parameter rows, one write each
            lo, hi = int(run[0]), int(run[-1]) + 1
            self.ds_params[lo:hi] = self.rec_buf[lo:hi]
        self.f.flush()
        self.unflushed = []
        self._join_sync()  # flags are written in order
        fd = self.f.id.get_vfd_handle()
        if wait:
            self._make_durable(fd, js)
            self.n_durable += len(js)
        else:
            import threading

            self._sync = threading.Thread(target=self._sync_body, args=(fd, js), name="noisesim-fsync", daemon=True)
            self._sync_n = len(js)
            self._sync.start()

    def _sync_body(self, fd: int, js: np.ndarray) -> None:
        try:
            self._make_durable(fd, js)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._sync_error = exc

    def _make_durable(self, fd: int, js: np.ndarray) -> None:
        os.fsync(fd)
        self.done[js] = True
        with open(self.progress, "r+b") as fp:
            lo, hi = int(js[0]), int(js[-1]) + 1
            fp.seek(lo)
            fp.write(self.done[lo:hi].astype(np.uint8).tobytes())
            fp.flush()
            os.fsync(fp.fileno())

    def _join_sync(self) -> None:
        if self._sync is not None:
            self._sync.join()
            self._sync = None
            if self._sync_error is None:
                self.n_durable += self._sync_n
        if self._sync_error is not None:
            exc, self._sync_error = self._sync_error, None
            raise exc

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def finish(self) -> None:
        """Close and rename to the final name (atomic on POSIX), then drop the progress flags."""
        self.checkpoint()
        if not self.complete:
            raise DatasetError(f"internal error: {self.tmp} finished with samples missing")
        self.f.close()
        os.replace(self.tmp, self.path)
        self.progress.unlink(missing_ok=True)

    def close(self) -> None:
        try:
            self.checkpoint()
        finally:
            try:
                self._join_sync()
            finally:
                if self.f.id.valid:
                    self.f.close()


@dataclass(frozen=True)
class ShardTask:
    """One shard file to write: samples [first, first + n) of the dataset (small and picklable: the
    :class:`SynthesisJob` with the card travels separately, once per worker). Used by :func:`write_shard`."""

    path: Path  # final name (absolute); written via ``<path>.partial``
    first: int
    n: int
    shape: tuple[int, int, int]  # (C, h, w) of one packed patch
    dtype: str  # numpy dtype string of clean/noisy
    compression: str | None
    attrs: dict
    config_json: str
    checkpoint_every: int = 64


def write_shard(job: SynthesisJob, task: ShardTask) -> dict:
    """Write one shard in this process, continuing its ``.partial`` if one exists, then rename it into place.

    This is the unit of work a Dask worker runs (:mod:`noisesim.distributed`). A partial present here was
    left by an earlier attempt of the same shard (a killed worker, or a killed run being resumed:
    :func:`generate_dataset` removes stale partials before it schedules anything unless resuming), so
    its durable samples are kept and the rest written again; the bytes are those of a single-process run.

    Returns
    -------
    dict
        Small record: ``path``, ``first``, ``n``, ``resumed`` (samples already durable), ``seconds``, ``pid``.
    """
    t0 = time.perf_counter()
    writer = _ShardWriter(Path(task.path), task.first, task.n, tuple(task.shape), np.dtype(task.dtype), job.kernel_cap,
                          job.blur is not None, task.compression, task.attrs, task.config_json, resume=True)
    resumed = int(writer.done.sum())
    try:
        _run(job, [writer], 1, task.n, False, task.checkpoint_every)
    except BaseException:
        writer.close()
        raise
    writer.finish()
    return {"path": str(task.path), "first": task.first, "n": task.n, "resumed": resumed,
            "seconds": time.perf_counter() - t0, "pid": os.getpid()}


def _progress(tmp: Path) -> Path:
    return tmp.with_name(tmp.name + ".progress")


def _config_diff(old_json: str, new_json: str) -> str:
    try:
        old, new = json.loads(old_json), json.loads(new_json)
    except (TypeError, ValueError):
        return "no readable settings stored"
    diffs = [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(diffs) or "identical"


def _write_master(output: Path, shard_files: list[Path], attrs: dict, config_json: str) -> None:
    """A master file presenting the shards as one dataset through HDF5 virtual datasets (relative paths)."""
    import h5py

    infos = []
    for sp in shard_files:
        with h5py.File(sp, "r") as f:
            infos.append({name: (f[name].shape, f[name].dtype) for name in ("clean", "noisy", "params", "blur_kernels", "blur_kernel_sizes")})
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        for name in ("clean", "noisy", "params", "blur_kernels", "blur_kernel_sizes"):
            shapes = [info[name][0] for info in infos]
            dtype = infos[0][name][1]
            total = sum(s[0] for s in shapes)
            full = (total,) + tuple(shapes[0][1:])
            if total == 0:
                f.create_dataset(name, full, dtype, track_times=False)
                continue
            _virtual_dataset(f, name, full, dtype, [(sp.name, s) for sp, s in zip(shard_files, shapes)])
        for key, val in attrs.items():
            f.attrs[key] = val
        f.attrs["shards"] = json.dumps([sp.name for sp in shard_files])
        f.attrs["first_sample"] = 0
        f.attrs["generation_config"] = config_json


def _virtual_dataset(f, name: str, full: tuple, dtype, sources: list[tuple[str, tuple]]) -> None:
    """Create ``/name`` in ``f`` as the row-wise concatenation of ``/name`` in each source file.

    Built with the low-level API because ``h5py.VirtualLayout`` gives no way to switch off the object
    timestamps, which would make two identical runs write different master files. Source files are
    named relatively: HDF5 looks for them next to the master file.
    """
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    vspace = h5py.h5s.create_simple(full)
    start = 0
    for fname, shape in sources:
        if shape[0]:
            vspace.select_hyperslab((start,) + (0,) * (len(full) - 1), tuple(shape))
            dcpl.set_virtual(vspace, fname.encode(), name.encode(), h5py.h5s.create_simple(tuple(shape)))
        start += shape[0]
    tid = h5py.h5t.py_create(np.dtype(dtype), logical=1)
    h5py.h5d.create(f.id, name.encode(), tid, h5py.h5s.create_simple(full), dcpl=dcpl).close()


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------
def resolve_card(card):
    """A :class:`~noisesim.card.Card` from a card, a shipped card's name or a path (loaded); ParameterError otherwise."""
    from .card import load_card

    if isinstance(card, (str, os.PathLike)):
        return load_card(card)
    if not hasattr(card, "sensor"):
        raise ParameterError(f"card must be a Card, a card name or a path, got {type(card).__name__}")
    return card


# float32 (patch, patch) planes alive at once while one sample is made (source image, blur, mosaic,
# noise scratch, packed copies): a generous upper bound, measured peak ≈ 10.
_PLANES_PER_SAMPLE = 16


def _available_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def _check_patch_memory(patch: int, workers: int) -> None:
    """Refuse a patch whose working memory cannot fit, before anything is allocated (was a MemoryError)."""
    need = _PLANES_PER_SAMPLE * 4 * patch * patch * max(workers, 1)
    avail = _available_memory_bytes()
    if avail is not None and need > avail:
        raise ParameterError(f"--patch {patch} needs about {need / 1e9:.1f} GB of memory to synthesize "
                             f"({max(workers, 1)} worker(s) × {_PLANES_PER_SAMPLE} planes of {patch}² float32), "
                             f"{avail / 1e9:.1f} GB available; use a smaller --patch or fewer --workers")


def check_sampling(card, iso, gain_k) -> None:
    """Fail before writing anything if the card cannot serve the requested ISO / K range."""
    from .sampling import sample_params

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
    """
    from .noise import NOISE_MODES

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
    from .darkbank import DarkFrameBank

    b = DarkFrameBank(bank)
    if b.cfa.pattern != cfa.pattern:
        raise ParameterError(f"{bank}: bank CFA {b.cfa.pattern} differs from the card's {cfa.pattern}")
    return str(Path(bank).resolve()), b.content_sha256


def generate_dataset(
    output: str | os.PathLike,
    *,
    card,
    source: str | os.PathLike = "builtin",
    pairs: int,
    patch: int = 256,
    iso=None,
    gain_k=None,
    ratio=(100.0, 300.0),
    blur=None,
    seed: int = 0,
    workers: int = 1,
    shards: int = 1,
    storage: str = "float32",
    compression: str | None = None,
    components: NoiseComponents | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
    checkpoint_every: int = 64,
    scheduler: str | None = None,
    noise: str = "parametric",
    bank: str | os.PathLike | None = None,
) -> Path:
    """Synthesize ``pairs`` (noisy, clean) raw patch pairs into an HDF5 file (layout: module docstring).

    Parameters
    ----------
    output : path
        The ``.h5`` file to write; its directory must exist. With ``shards > 1`` this is the master
        file and the shards are written next to it (:func:`shard_paths`).
    card : Card, card name or path
        The camera's noise card (:func:`noisesim.card.load_card`).
    source : path or "builtin"
        Clean images: a folder of sRGB images, a folder of raw files, or ``"builtin"`` (procedural dead
        leaves, no download); see :func:`noisesim.sources.open_source`.
    pairs : int
        Number of samples N.
    patch : int
        Mosaic patch side in pixels (multiple of the CFA period); stored packed as (C, patch/p, patch/p).
    iso : (low, high), single value, "LOW:HIGH" or None
        ISO drawn log-uniformly in the range (rounded to an integer), parameters from the card's per-ISO
        model via :func:`noisesim.sampling.sample_params`. ``None`` (default): K is drawn over the card's
        whole calibrated range (ELD's ``log K ~ U(log K_min, log K_max)``).
    gain_k : (low, high) or None
        Alternative to ``iso`` for cards without an ISO table: K [DN/e⁻] drawn log-uniformly.
    ratio : (low, high), value, list or "100:300" / "100,250,300"
        Exposure ratio r ≥ 1: log-uniform in a range, fixed, or a uniform choice among listed values.
    blur : BlurSpec, str or None
        Blur drawn per sample (:func:`noisesim.blur.parse_blur_spec` syntax), applied to linear camera
        RGB before mosaic and noise.
    seed : int
        Dataset seed; sample i uses only ``SeedSequence(seed, spawn_key=(i,))``.
    workers : int
        Processes synthesizing samples (spawn start method), or the size of the ``LocalCluster`` with
        ``scheduler="local"``; the content does not depend on it.
    shards : int
        Number of shard files (+ one virtual-dataset master file at ``output``).
    storage : {"float32", "uint16"}
        float32 normalized, or uint16 raw DN including the black level (half the size; the clean patch
        is then rounded to DN before the noise is drawn from it, so re-synthesis stays exact).
    compression : {None, "lzf", "gzip"}
        HDF5 filter for clean and noisy (default none: noise does not compress, docs/datasets.md).
    components : NoiseComponents, optional
        Noise terms to simulate (default: all).
    force : bool
        Overwrite an existing output (it is replaced only once the new one is complete) and discard
        any partial run.
    resume : bool
        Continue an interrupted run from ``<output>.partial`` (same settings required).
    progress : bool
        Show a tqdm progress bar on stderr.
    command : str, optional
        The command line to record in the attributes.
    checkpoint_every : int
        Samples between progress checkpoints (flush + done flags); also at least every 5 s.
    scheduler : {"local", address, scheduler-file path} or None
        Run one task per shard on a Dask cluster (extra ``noisesim[dask]``, :mod:`noisesim.distributed`):
        ``"local"`` starts a ``LocalCluster`` of ``workers`` processes, ``"tcp://host:8786"`` or a
        ``scheduler.json`` joins a running one. Each worker writes its own shard (the output folder must
        be storage every worker and this process share) and the master file is written here at the
        end; the bytes are those of the run without a scheduler. None (default): this process and its pool.
    noise : {"parametric", "dark-frame"}
        ``dark-frame``: shot noise from K plus real dark frames of the matching ISO from ``bank``
        (:mod:`noisesim.darkbank`); each sample's dark frame, window and flip are stored in ``/params``.
    bank : path, optional
        The dark-frame bank (``noisesim darks bank``) for ``noise="dark-frame"``.

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    DatasetError, UnknownCardError, UnknownISOError, InputFileError, ParameterError
        Before anything is written, for bad arguments; :class:`DatasetError` if writing fails (the
        partial file is kept for ``resume``; nothing appears under the final name).
    """
    from . import __version__
    from .blur import BlurSpec, parse_blur_spec

    output = Path(output)
    if not output.parent.is_dir():
        raise DatasetError(f"cannot write {output}: directory {output.parent} does not exist")
    if output.is_dir():
        raise DatasetError(f"cannot write {output}: it is a directory")
    pairs, patch, workers, shards = int(pairs), int(patch), int(workers), int(shards)
    if pairs < 1:
        raise ParameterError(f"pairs must be >= 1, got {pairs}")
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    if workers > 1:
        require_main_guard("generate_dataset(workers > 1)")  # before the spawned workers re-run the script
    seed = check_seed(seed)
    if not 1 <= shards <= pairs:
        raise ParameterError(f"shards must lie in 1..pairs ({pairs}), got {shards}")
    if storage not in STORAGES:
        raise ParameterError(f"storage must be one of {STORAGES}, got {storage!r}")
    if isinstance(compression, str) and compression.lower() == "none":
        compression = None
    if compression not in COMPRESSIONS:
        raise ParameterError(f"compression must be one of none, lzf, gzip; got {compression!r}")
    if iso is not None and gain_k is not None and parse_range(iso, "iso") is not None and parse_range(gain_k, "gain_k") is not None:
        raise ParameterError("give either an ISO range or a gain range, not both")
    iso_r, gain_r, ratio_s = parse_range(iso, "iso"), parse_range(gain_k, "gain_k"), parse_ratio(ratio)
    if isinstance(blur, str):
        blur = None if blur.strip().lower() in ("", "none") else parse_blur_spec(blur)
    if blur is not None and not isinstance(blur, BlurSpec):
        raise ParameterError(f"blur must be a BlurSpec, a spec string or None, got {type(blur).__name__}")
    components = components or NoiseComponents()
    if storage == "uint16" and not (components.quantize and components.clip):
        raise ParameterError("uint16 storage needs quantization and clipping on (components.quantize, components.clip)")

    card = resolve_card(card)
    sensor = card.sensor
    cfa = sensor.cfa
    p = cfa.period
    bank_path, bank_sha = check_noise_mode(noise, bank, cfa, card=card)
    if patch < p or patch % p:
        raise ParameterError(f"patch must be a positive multiple of the CFA period {p} ({cfa.pattern}), got {patch}")
    _check_patch_memory(patch, workers)
    maps = getattr(card, "maps", None)
    if maps is not None and maps.shape is not None and (maps.shape[0] < patch or maps.shape[1] < patch):
        raise ParameterError(f"patch {patch} is larger than the card's fixed-pattern maps {maps.shape}")
    check_sampling(card, iso_r, gain_r)
    source_spec = str(source) if str(source) == "builtin" else str(Path(source).resolve())
    job = SynthesisJob(card=card, source_spec=source_spec, patch=patch, iso=iso_r, gain_k=gain_r, ratio=ratio_s, blur=blur,
               seed=int(seed), storage=storage, components=components, kernel_cap=kernel_capacity(blur),
               noise=noise, bank_path=bank_path)
    if scheduler is None:
        check_shared_memory(job, workers)  # before any file exists (a worker would die of SIGBUS)
    # Open the source and draw one patch now: an empty folder or images smaller than the patch fail
    # here, before any file is created.
    probe = Synthesizer(job)
    probe.source.sample_patch(np.random.default_rng(0), patch, blur=blur)
    del probe

    dtype = np.dtype(np.uint16 if storage == "uint16" else np.float32)
    shape = (cfa.n_channels, patch // p, patch // p)
    card_text = getattr(card, "text", "") or ""
    config = {
        "schema": SCHEMA,
        "card_sha256": hashlib.sha256(card_text.encode()).hexdigest(),
        "source": source_spec,
        "pairs": pairs,
        "patch": patch,
        "iso": list(iso_r) if iso_r else None,
        "gain_k_dn_per_e": list(gain_r) if gain_r else None,
        "ratio": {"kind": ratio_s[0], "values": list(ratio_s[1])},
        "blur": None if blur is None else blur.to_string(),
        "seed": int(seed),
        "storage": storage,
        "compression": compression,
        "shards": shards,
        "components": dataclasses.asdict(components),
    }
    if noise != "parametric":  # (absent for parametric noise: files written before the option resume as before)
        config.update(noise=noise, dark_bank_sha256=bank_sha)
    config_json = json.dumps(config, sort_keys=True)
    site = cfa.site_index.ravel()
    attrs = {
        "schema": SCHEMA,
        "noisesim_version": __version__,
        "card": card_text,
        "card_name": str(getattr(card, "name", "")),
        "cfa": cfa.pattern,
        "channel_order": ",".join(cfa.channel_names),
        "layout": "packed (N, C, H/p, W/p)",
        "bit_depth": sensor.bit_depth,
        "black_level_dn": np.asarray(sensor.black_level_dn, dtype=np.float64),
        "white_level_dn": np.asarray(sensor.white_level_dn, dtype=np.float64),
        "channel_black_level_dn": np.asarray(sensor.black_level_dn, dtype=np.float64)[site],
        "channel_white_level_dn": np.asarray(sensor.white_level_dn, dtype=np.float64)[site],
        "level_site_order": ",".join(cfa.site_names),
        "storage": storage,
        "unit": "dn" if storage == "uint16" else "normalized",
        "seed": np.uint64(seed),  # int64 cannot hold seeds >= 2**63
        "n_pairs": pairs,
        "patch": patch,
        "n_shards": shards,
        "uses_maps": bool(maps is not None and maps.shape is not None),
        "components": json.dumps(dataclasses.asdict(components), sort_keys=True),
        "command": command if command is not None else "noisesim.dataset.generate_dataset (Python API)",
        "noise": noise,
    }
    if bank_path is not None:
        attrs.update(dark_bank=bank_path, dark_bank_sha256=bank_sha)
    files = shard_paths(output, shards)
    what = f"writing {_partial(output)}" if shards == 1 else f"writing the {shards} shards of {output}"
    with RunLock(output, what=what):  # before any file is touched (issue: concurrent runs)
        return _write_locked(output, files, job, shape, dtype, compression, attrs, config_json,
                             workers=workers, force=force, resume=resume, progress=progress, checkpoint_every=checkpoint_every,
                             scheduler=scheduler)


def _stored_config(path: Path) -> str:
    """The ``generation_config`` attribute of a dataset file ("" when absent); DatasetError when unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            old = f.attrs.get("generation_config", "")
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                           "rerun with --force to start over") from None
    return old.decode() if isinstance(old, bytes) else str(old)


def _plan_file(fp: Path, config_json: str, *, force: bool, resume: bool) -> str:
    """What to do with one output file: ``"skip"`` (complete, same settings), ``"resume"`` (continue its
    partial) or ``"new"``. Raises :class:`DatasetError` when the existing files forbid the run.

    Called with the run lock held, so deleting a partial here cannot hit another run's live file.
    """
    partial = _partial(fp)
    if not resume:
        if not force:
            if fp.exists():
                raise DatasetError(f"{fp} already exists; pass --force (force=True) to overwrite it")
            if partial.exists():
                raise DatasetError(f"a partial run exists at {partial}; pass --resume to continue it or --force to start over")
        partial.unlink(missing_ok=True)
        _progress(partial).unlink(missing_ok=True)
        return "new"
    if partial.exists():
        if _samples_durable(partial) == 0:
            # Killed before any sample was flagged done (possibly while creating the file): nothing to keep.
            log.info("%s holds no finished sample; starting it over", partial)
            partial.unlink()
            _progress(partial).unlink(missing_ok=True)
            return "new"
        old = _stored_config(partial)
        if old == config_json:
            return "resume"  # a killed run (a --force rebuild included) continues, whatever is under fp
        if force:  # start over
            partial.unlink()
            _progress(partial).unlink(missing_ok=True)
            return "new"
        if fp.exists() and _stored_config(fp) == config_json:
            log.warning("%s is complete with these settings; %s belongs to a run with other settings and was left alone",
                        fp, partial)
            return "skip"
        raise DatasetError(f"cannot resume from {partial}: it was started with different settings "
                           f"({_config_diff(old, config_json)}); rerun with the original settings, or with --force to start over")
    if fp.exists() and not force:
        old = _stored_config(fp)
        if old != config_json:
            raise DatasetError(f"{fp} is complete but was made with different settings ({_config_diff(old, config_json)}); "
                               "rerun with its settings, with --force to replace it, or choose another --output")
        return "skip"
    return "new"


def _bytes_per_sample(shape: tuple, dtype: np.dtype, kernel_cap: int, blur: bool) -> int:
    """Bytes one sample occupies on disk, uncompressed (clean + noisy + parameter row + blur kernel)."""
    k = max(kernel_cap, 1)
    return 2 * int(np.prod(shape)) * dtype.itemsize + PARAMS_DTYPE.itemsize + (4 * k * k + 4 if blur else 0)


def _samples_durable(partial: Path) -> int:
    """Samples a partial file has flagged done in its progress sidecar (0 when there is none)."""
    try:
        return int(np.count_nonzero(np.frombuffer(_progress(partial).read_bytes(), np.uint8)))
    except OSError:
        return 0


def _samples_left(fp: Path, n: int) -> int:
    """Samples of a partial not yet flagged done (its progress sidecar), ``n`` when unknown."""
    try:
        flags = _progress(_partial(fp)).read_bytes()
    except OSError:
        return n
    return n - int(np.count_nonzero(np.frombuffer(flags, np.uint8))) if len(flags) == n else n


def _write_locked(output: Path, files: list[Path], job: SynthesisJob, shape: tuple, dtype: np.dtype, compression, attrs: dict,
                  config_json: str, *, workers: int, force: bool, resume: bool, progress: bool, checkpoint_every: int,
                  scheduler: str | None = None) -> Path:
    """The writing half of :func:`generate_dataset`, run with the output's :class:`RunLock` held."""
    pairs = int(attrs["n_pairs"])
    shards = len(files)
    bounds = np.linspace(0, pairs, shards + 1).round().astype(int)
    sizes = [int(bounds[k + 1] - bounds[k]) for k in range(shards)]
    plans = [_plan_file(fp, config_json, force=force, resume=resume) for fp in files]
    if shards > 1:
        master = _plan_file(output, config_json, force=force, resume=resume)
        if master == "skip" and all(pl == "skip" for pl in plans):
            log.warning("%s is already complete with these settings; nothing to do", output)
            return output
    elif plans[0] == "skip":
        log.warning("%s is already complete with these settings; nothing to do", output)
        return output

    # Space check (uncompressed upper bound) before creating anything: only what is left to write (the
    # files are sparse, so a partial stopped by a full disk holds only the samples it wrote).
    left = sum(n if pl == "new" else _samples_left(fp, n) if pl == "resume" else 0 for fp, n, pl in zip(files, sizes, plans))
    need = left * _bytes_per_sample(shape, dtype, job.kernel_cap, job.blur is not None)
    free = shutil.disk_usage(output.parent).free
    if need > free:
        raise DatasetError(f"not enough disk space for {output}: {left} samples left to write need about {need / 1e9:.2f} GB, "
                           f"{free / 1e9:.2f} GB free in {output.parent}")

    writers: list[_ShardWriter] = []
    try:
        tasks, resuming = [], set()
        for k, fp in enumerate(files):
            if plans[k] == "skip":
                continue
            tasks.append(ShardTask(fp.resolve(), int(bounds[k]), sizes[k], shape, dtype.str, compression, attrs, config_json,
                                   checkpoint_every))
            if plans[k] == "resume":
                resuming.add(tasks[-1].path)
        if scheduler is not None:  # one task per shard on a Dask cluster (workers write their own shard)
            from .distributed import run_shards

            run_shards(scheduler, job, tasks, workers=workers, pairs=pairs, progress=progress)
        else:
            for t in tasks:
                writers.append(_ShardWriter(t.path, t.first, t.n, shape, dtype, job.kernel_cap, job.blur is not None,
                                            compression, attrs, config_json, resume=t.path in resuming))
            _run(job, writers, workers, pairs, progress, checkpoint_every)
            for w in writers:
                w.finish()
        if shards > 1:
            _write_master(output, files, attrs, config_json)
    except BaseException as exc:
        for w in writers:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - the original error matters more
                log.debug("closing %s failed", w.tmp, exc_info=True)
        if isinstance(exc, RuntimeError) and "bootstrapping phase" in str(exc):
            # multiprocessing's refusal inside a spawned child that re-ran an unguarded script.
            raise DatasetError(main_guard_message("generate_dataset(workers > 1)")) from None
        if isinstance(exc, (OSError, RuntimeError)) and not isinstance(exc, NoiseSimError):
            # h5py reports failed writes as OSError, failed flushes as RuntimeError.
            kept = ", ".join(str(_partial(fp)) for fp in files if _partial(fp).exists()) or "nothing"
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(f"writing {output} failed: {first} (disk full, quota or file-size limit?). Partial progress kept in: "
                               f"{kept}; free space and rerun with --resume, or with --force to start over") from None
        raise
    return output


def _run(job: SynthesisJob, writers: list[_ShardWriter], workers: int, pairs: int, progress: bool, checkpoint_every: int) -> None:
    from tqdm.auto import tqdm

    todo = [i for w in writers for i in w.todo()]
    owner = {}
    for w in writers:
        for i in range(w.first, w.first + w.n):
            owner[i] = w
    n_done = pairs - len(todo)
    if n_done:
        log.info("resuming: %d of %d samples already done", n_done, pairs)
    last = time.monotonic()
    since = 0
    with tqdm(total=pairs, initial=n_done, disable=not progress, unit="pair", desc="generate", dynamic_ncols=True) as bar:
        with closing(_produce(job, todo, workers)) as produced:
            for i, clean, noisy, rec, kernel in produced:
                owner[i].write(i, clean, noisy, rec, kernel)
                n_done += 1
                since += 1
                bar.update(1)
                now = time.monotonic()
                if since >= checkpoint_every or now - last > 5.0:
                    for w in writers:
                        w.checkpoint(wait=False)  # fsync + flags in the background
                    # Durable = flagged done on disk: up to the previous checkpoint (this one is syncing).
                    durable = pairs - sum(w.n for w in writers) + sum(w.n_durable for w in writers)
                    log.info("checkpoint: %d/%d samples durable (%d written)", durable, pairs, n_done)
                    since, last = 0, now


# ------------------------------------------------------------------------------------------------
# Reading back
# ------------------------------------------------------------------------------------------------
def params_from_record(rec) -> NoiseParams:
    """The :class:`NoiseParams` stored in one ``/params`` row."""
    iso = float(rec["iso"])
    black = _record_black(rec)
    return NoiseParams(
        read_model=bytes(rec["read_model"]).decode().strip("\x00") or "tukey",
        black_level_error_dn=tuple(float(v) for v in rec["black_level_error_dn"]),
        iso=None if math.isnan(iso) else iso,
        black_level_dn=None if black is None else tuple(float(v) for v in black),
        **{name: float(rec[name]) for name in _NOISE_FIELDS},
    )


def sensor_from_attrs(attrs) -> Sensor:
    """The :class:`Sensor` (CFA, bit depth, levels) recorded in a dataset's attributes."""
    return Sensor(cfa=str(attrs["cfa"]), bit_depth=int(attrs["bit_depth"]),
                  black_level_dn=tuple(attrs["black_level_dn"]), white_level_dn=tuple(attrs["white_level_dn"]))


def resynthesize(path: str | os.PathLike, index: int, *, card=None, bank=None) -> np.ndarray:
    """Re-draw ``noisy[index]`` from ``clean[index]`` and the stored parameters and seed (bit-exact).

    ``card`` is needed only when the dataset used the card's fixed-pattern maps (``attrs["uses_maps"]``);
    ``bank`` only for dark-frame noise when the bank has moved from the path stored in the file.
    """
    import h5py

    from .noise import simulate

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
        from .darkbank import DarkFrameBank

        b = DarkFrameBank(bank if bank is not None else str(attrs["dark_bank"]))
        if b.content_sha256 != str(attrs["dark_bank_sha256"]):
            raise DatasetError(f"{b.path}: not the dark-frame bank {path} was generated with (content differs)")
        kw.update(noise="dark-frame", bank=b)
    if attrs["storage"] == "uint16":
        return simulate(clean, params_from_record(rec), sensor, input_unit="dn", output_unit="dn", dtype=np.uint16, **kw)
    return simulate(clean, params_from_record(rec), sensor, **kw)


def _record_black(rec) -> np.ndarray | None:
    """A /params row's black level per site (card schema /2 varies it by ISO), or None (files before it)."""
    if "black_level_dn" not in (rec.dtype.names or ()):
        return None
    b = np.asarray(rec["black_level_dn"], dtype=np.float64)
    return b if np.all(np.isfinite(b)) else None


def channel_levels(attrs, rec=None) -> tuple[np.ndarray, np.ndarray]:
    """Black and white level per packed channel [DN], (C,) each, of the dataset or of one sample ``rec``.

    A sample drawn at an ISO with its own black level (card schema /2) records it in ``/params``.
    """
    b = np.asarray(attrs["channel_black_level_dn"], dtype=np.float64)
    w = np.asarray(attrs["channel_white_level_dn"], dtype=np.float64)
    own = None if rec is None else _record_black(rec)
    if own is not None:
        from .cfa import CFA

        b = own[CFA(str(attrs["cfa"])).site_index.ravel()]
    return b, w


def to_normalized(x: np.ndarray, attrs, *, channel_axis: int = -3, rec=None) -> np.ndarray:
    """Stored samples → float32 normalized: float32 storage as is; uint16 DN → (x − B) / (W − B) per channel.

    ``rec`` (the sample's ``/params`` row) supplies its own black level where it has one.
    """
    if str(attrs["storage"]) != "uint16":
        return np.asarray(x, dtype=np.float32)
    b, w = (v.astype(np.float32) for v in channel_levels(attrs, rec))
    shape = [1] * np.ndim(x)
    shape[channel_axis] = -1
    return ((np.asarray(x, dtype=np.float32) - b.reshape(shape)) / (w - b).reshape(shape)).astype(np.float32)


# Everything h5py and numpy raise on a damaged or foreign file: reported as one DatasetError line.
_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_dataset_file(path: str | os.PathLike, *, allow_partial: bool = False):
    """Open a generated dataset for reading (an ``h5py.File``), after the checks every reader needs.

    Raises :class:`DatasetError` (one line naming the file) when the file is missing, not HDF5, not a
    noisesim dataset, a ``.partial`` (unless ``allow_partial``), or a shard master whose shards are missing
    or belong to another run: HDF5 would read a missing shard's samples as zeros.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if path.is_dir():
        raise DatasetError(f"{path} is a directory, not a dataset file")
    if not allow_partial and path.name.endswith(PARTIAL_SUFFIX):
        raise DatasetError(f"{path} is the partial file of an interrupted or running generate, not a dataset; "
                           "finish it with --resume")
    try:
        f = h5py.File(path, "r")
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file ({_first_line(exc)})") from None
    try:
        for name in ("clean", "noisy", "params"):
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise DatasetError(f"{path} is not a noisesim dataset: /{name} missing")
        _check_shards(path, f)
    except BaseException as exc:
        f.close()
        if isinstance(exc, _READ_ERRORS) and not isinstance(exc, NoiseSimError):
            raise DatasetError(f"{path} cannot be read: {_first_line(exc)}") from None
        raise
    return f


def _check_shards(path: Path, f) -> None:
    """A shard master's shards exist beside it and were written by the same run."""
    import h5py

    if "shards" not in f.attrs:
        return
    names = json.loads(f.attrs["shards"])
    config = f.attrs.get("generation_config", "")
    missing = [n for n in names if not (path.parent / n).is_file()]
    if missing:
        raise DatasetError(f"{path}: {len(missing)} of {len(names)} shard files are missing ({', '.join(missing[:3])}"
                           f"{', …' if len(missing) > 3 else ''}); their samples would read as zeros")
    for n in names:
        try:
            with h5py.File(path.parent / n, "r") as sf:
                same = sf.attrs.get("generation_config", "") == config
        except _READ_ERRORS as exc:
            raise DatasetError(f"{path}: shard {path.parent / n} cannot be read ({_first_line(exc)})") from None
        if not same:
            raise DatasetError(f"{path}: shard {path.parent / n} belongs to another run (different settings)")


def inspect_dataset(path: str | os.PathLike) -> dict:
    """A summary of a dataset: layout, counts, parameter ranges, card and attributes (a plain dict).

    A ``.partial`` file is summarized too, with ``info["partial"]`` True and ``info["samples_done"]``
    (samples flagged done in its progress file). Any damage gives :class:`DatasetError`, never another error.
    """
    path = Path(path)
    f = open_dataset_file(path, allow_partial=True)
    try:
        with f:
            return _summarize(path, f)
    except NoiseSimError:
        raise
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path} cannot be read: {_first_line(exc)}") from None


def _summarize(path: Path, f) -> dict:
    info: dict = {"path": str(path), "size_bytes": path.stat().st_size}
    info["partial"] = path.name.endswith(PARTIAL_SUFFIX)
    if info["partial"]:
        info["samples_done"] = _samples_durable(path)
    info["datasets"] = {}
    for name, ds in f.items():
        info["datasets"][name] = {
            "shape": tuple(ds.shape), "dtype": str(ds.dtype), "chunks": ds.chunks, "compression": ds.compression,
            "virtual": ds.is_virtual,
        }
    info["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items() if k != "card"}
    info["card_text"] = f.attrs.get("card", "")
    rec = f["params"][:]
    ranges = {}
    for name in ("iso", "gain_k_dn_per_e", "ratio", "read_sigma_dn", "tukey_lambda", "tukey_scale_dn", "row_sigma_dn"):
        v = rec[name].astype(np.float64)
        v = v[np.isfinite(v)]
        ranges[name] = (float(v.min()), float(v.max())) if v.size else None
    info["param_ranges"] = ranges
    info["n_pairs"] = len(rec)
    info["n_blurred"] = int((rec["blur_kernel_index"] >= 0).sum())
    src = rec["source_index"]
    # a procedural source (index -1) renders a new image for every sample: each one is a distinct source
    info["n_procedural"] = int((src < 0).sum())
    info["n_sources"] = int(np.unique(src[src >= 0]).size) + info["n_procedural"]
    # a shard master holds no pixels: its size is the shards' (and its own)
    shard_names = json.loads(f.attrs["shards"]) if "shards" in f.attrs else []
    info["n_shard_files"] = len(shard_names)
    info["size_bytes"] += sum((path.parent / n).stat().st_size for n in shard_names if (path.parent / n).is_file())
    comps = f.attrs.get("components")
    info["components"] = json.loads(comps) if isinstance(comps, str) else None
    info["uses_maps"] = bool(f.attrs.get("uses_maps", False))
    return info


def verify_dataset(path: str | os.PathLike, *, progress: bool = False) -> list[int]:
    """Recompute every sample's CRC-32 (:func:`sample_crc32`) and return the indices that do not match.

    Raises :class:`DatasetError` for a file that cannot be checked: unreadable, a partial, a master with
    missing shards, or a file written before checksums were stored (schema ``noisesim.dataset/1``).
    """
    from tqdm.auto import tqdm

    path = Path(path)
    f = open_dataset_file(path)
    bad: list[int] = []
    try:
        with f:
            params = f["params"]
            if "crc32" not in (params.dtype.names or ()):
                raise DatasetError(f"{path} has no per-sample checksums (schema {f.attrs.get('schema', '?')}, "
                                   f"written before {SCHEMA}); it cannot be verified")
            recs = params[:]
            for i in tqdm(range(len(recs)), disable=not progress, unit="pair", desc="verify"):
                if stored_sample_crc32(f, i, recs[i]) != int(recs[i]["crc32"]):
                    bad.append(i)
    except NoiseSimError:
        raise
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path} cannot be read: {_first_line(exc)}") from None
    return bad


def format_summary(info: dict) -> str:
    """Human-readable text of :func:`inspect_dataset`'s dict."""
    a = info["attrs"]
    lines = []
    if info.get("partial"):
        lines.append(f"INCOMPLETE: partial file of an interrupted or running generate ({info.get('samples_done', 0)} of "
                     f"{info['n_pairs']} samples done); finish it with --resume. Samples not done read as zeros.")
    lines += [
        f"{info['path']}  ({info['size_bytes'] / 1e6:.1f} MB, schema {a.get('schema')}, noisesim {a.get('noisesim_version')})",
        f"pairs: {info['n_pairs']}  patch: {a.get('patch')} px  CFA: {a.get('cfa')}  channels: {a.get('channel_order')}  "
        f"storage: {a.get('storage')} ({a.get('unit')})",
        f"card: {a.get('card_name')}  bit depth {a.get('bit_depth')}  black {a.get('black_level_dn')}  white {a.get('white_level_dn')}",
        f"seed: {a.get('seed')}  shards: {a.get('n_shards')}  blurred: {info['n_blurred']}  distinct sources: {info['n_sources']}"
        + (f" ({info['n_procedural']} procedural, one per sample)" if info.get("n_procedural") else ""),
        f"command: {a.get('command')}",
    ]
    patch, cfa = a.get("patch"), str(a.get("cfa") or "")
    if patch and cfa:
        p = int(round(math.sqrt(len(cfa))))
        lines.append(f"layout: /clean and /noisy are packed ({p * p}, {patch // p}, {patch // p}) per sample, one channel "
                     f"per CFA site ({a.get('channel_order')}), from a {patch}×{patch} mosaic; CFA.unpack gives the mosaic")
    lines.append("noisy: the short exposure, NOT multiplied by the ratio (multiply by /params['ratio'] to match /clean)")
    comps = info.get("components")
    if comps:
        terms = [k for k in ("shot", "read", "row", "column", "black_level_error", "dark_current", "dark_shading", "prnu",
                             "hot_pixels", "quantize", "clip") if k in comps]
        on = [k for k in terms if comps[k]]
        off = [k for k in terms if not comps[k]]
        lines.append(f"noise terms on: {', '.join(on) or 'none'}; off: {', '.join(off) or 'none'}")
    lines.append("fixed-pattern maps (DSNU, PRNU, hot pixels): " + ("used, from the card's sidecar" if info.get("uses_maps")
                                                                  else "not used (the card has none)"))
    lines.append("datasets:")
    for name, d in info["datasets"].items():
        extra = " virtual" if d["virtual"] else f" chunks={d['chunks']} compression={d['compression']}"
        lines.append(f"  /{name:<18} {str(d['shape']):<22} {'compound' if d['dtype'].startswith(('[', '{')) else d['dtype']}{extra}")
    lines.append("parameter ranges:")
    for name, r in info["param_ranges"].items():
        lines.append(f"  {name:<16} " + ("n/a" if r is None else f"{r[0]:.4g} .. {r[1]:.4g}"))
    return "\n".join(lines)


def contact_sheet(path: str | os.PathLike, out_png: str | os.PathLike, *, n: int = 8, indices: Sequence[int] | None = None) -> Path:
    """Write a PNG of ``n`` pairs (noisy × ratio | clean), each row labelled with its index, ISO, ratio and
    K and the columns titled, rendered by the forward ISP
    (:func:`noisesim.isp.process`) with each sample's recorded white balance and colour matrix
    (neutral gains and the identity matrix when the sample has none, e.g. procedural or raw sources)."""
    out_png = Path(out_png)
    if not out_png.parent.is_dir():
        raise DatasetError(f"cannot write {out_png}: directory {out_png.parent} does not exist")
    f = open_dataset_file(path, allow_partial=True)
    try:
        with f:
            tiles = _sheet_tiles(f, n, indices)
    except NoiseSimError:
        raise
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path} cannot be read: {_first_line(exc)}") from None
    _write_sheet(tiles, out_png)
    return out_png


def _sheet_tiles(f, n: int, indices) -> list[np.ndarray]:
    """One (h, 2w + 4, 3) RGB tile (noisy × ratio | clean) per chosen sample of the open file ``f``."""
    from .isp import ISPMeta, process

    attrs = dict(f.attrs)
    N = f["params"].shape[0]
    idx = list(indices) if indices is not None else list(np.linspace(0, N - 1, min(n, N)).round().astype(int))
    sensor = sensor_from_attrs(attrs)
    cfa = sensor.cfa
    rows = []
    for i in idx:
        rec = f["params"][i]
        clean = to_normalized(f["clean"][i], attrs, rec=rec)
        noisy = to_normalized(f["noisy"][i], attrs, rec=rec) * float(rec["ratio"])
        if np.isfinite(rec["isp_rgb_gain"]):
            meta = ISPMeta(rgb_gain=float(rec["isp_rgb_gain"]), red_gain=float(rec["isp_red_gain"]),
                           blue_gain=float(rec["isp_blue_gain"]), cam2rgb=tuple(rec["isp_cam2rgb"].ravel().tolist()))
        else:
            meta = ISPMeta(rgb_gain=1.0, red_gain=1.0, blue_gain=1.0, cam2rgb=tuple(np.eye(3).ravel()))
        pair = [process(cfa.unpack(np.clip(x, 0, 1)), meta, cfa) for x in (noisy, clean)]
        sep = np.ones((pair[0].shape[0], 4, 3), np.float32)
        tile = np.concatenate([pair[0], sep, pair[1]], axis=1)
        iso = f"ISO {float(rec['iso']):.0f}  " if np.isfinite(rec["iso"]) else ""
        rows.append((f"#{i}  {iso}x{float(rec['ratio']):.4g}  K {float(rec['gain_k_dn_per_e']):.3g}", tile))
    if not rows:
        return []
    # column titles over the first row; every row labelled with its index, ISO, ratio and K; the sheet is
    # made wide enough for the text (small patches are narrower than a label)
    w = rows[0][1].shape[1]
    half = max((w - 4) // 2 + 4, _text_width("noisy x ratio"))  # the clean column's title starts here
    width = max([w, half + _text_width("clean")] + [_text_width(t) for t, _ in rows])
    head = np.concatenate([_text_strip("noisy x ratio", half), _text_strip("clean", width - half)], axis=1)
    tiles = []
    for k, (label, tile) in enumerate(rows):
        pad = np.ones((tile.shape[0], width - tile.shape[1], 3), np.float32)
        parts = ([head] if k == 0 else []) + [_text_strip(label, width), np.concatenate([tile, pad], axis=1)]
        tiles.append(np.concatenate(parts, axis=0))
    return tiles


LABEL_PX = 14  # height of a contact sheet's text strips
_FONT, _SCALE = 0, 0.35  # cv2.FONT_HERSHEY_SIMPLEX


def _text_width(text: str) -> int:
    import cv2

    return int(cv2.getTextSize(text, _FONT, _SCALE, 1)[0][0]) + 4


def _text_strip(text: str, width: int) -> np.ndarray:
    """A white (LABEL_PX, width, 3) float strip with ``text`` in black."""
    import cv2

    strip = np.full((LABEL_PX, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (2, LABEL_PX - 4), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return strip.astype(np.float32) / 255


def _write_sheet(tiles: list[np.ndarray], out_png: Path) -> None:
    """Stack the tiles with white gaps and write them as an 8-bit image, atomically."""
    import cv2

    gap = np.ones((4, tiles[0].shape[1], 3), np.float32)
    sheet = np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=0)
    img = (np.clip(sheet, 0, 1) * 255 + 0.5).astype(np.uint8)
    try:  # encoded in memory, then written atomically (cv2.imwrite would leave a torn file on a full disk)
        ok, encoded = cv2.imencode(out_png.suffix.lower() or ".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise DatasetError(f"could not write {out_png}: cannot encode an image as {out_png.suffix or 'PNG'!r} (use .png)")
    write_bytes(out_png, encoded.tobytes())
