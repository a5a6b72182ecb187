"""``generate_dataset``: check every argument, describe the run, then write it under the run lock."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import DatasetError, ParameterError
from ..params import NoiseComponents
from ..runlock import RunLock
from ..sources import DEAD_LEAVES_R_MIN_PX
from ..spawnguard import require_main_guard
from ..warmup import announce_compiles
from .layout import COMPRESSIONS, SCHEMA, STORAGES, partial_path, shard_paths
from .pool import check_shared_memory
from .shards import write_locked
from .synthesis import (
    SynthesisJob,
    Synthesizer,
    check_noise_mode,
    check_sampling,
    check_seed,
    kernel_capacity,
    parse_range,
    parse_ratio,
    resolve_card,
)

__all__ = ["generate_dataset"]

log = logging.getLogger(__name__)


# float32 (patch, patch) planes alive at once while one sample is made (source image, blur, mosaic,
# noise scratch, packed copies): a generous upper bound, measured peak ≈ 10.
_PLANES_PER_SAMPLE = 16

#: Most pairs one dataset may hold: the shards' bounds are computed in float64, exact up to 2⁵³ (far beyond
#: any disk: the up-front space check refuses sizes long before).
PAIRS_MAX = 2**53


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
        ``scheduler="local"``; the content does not depend on it. With a scheduler address or file it must
        stay 1 (:class:`~noisesim.errors.ClusterError` otherwise: that cluster has its own workers).
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
    from .. import __version__
    from ..blur import BlurSpec, parse_blur_spec

    output = Path(output)
    if not output.parent.is_dir():
        raise DatasetError(f"cannot write {output}: directory {output.parent} does not exist")
    if output.is_dir():
        raise DatasetError(f"cannot write {output}: it is a directory")
    pairs, patch, workers, shards = int(pairs), int(patch), int(workers), int(shards)
    if not 1 <= pairs <= PAIRS_MAX:
        raise ParameterError(f"pairs must lie in 1 … 2⁵³, got {pairs}")
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    if scheduler is not None:
        from ..distributed import check_workers

        check_workers(scheduler, workers)  # a running cluster's size is its own: refused, not ignored
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
    if str(source) == "builtin" and patch <= DEAD_LEAVES_R_MIN_PX:
        smallest = p * (int(DEAD_LEAVES_R_MIN_PX) // p + 1)
        raise ParameterError(f"patch {patch} is too small for the built-in dead leaves (their smallest disc has a radius "
                             f"of {DEAD_LEAVES_R_MIN_PX:g} px): use a patch of at least {smallest}")
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
    # Open the source and take every path of the synthesis once now: an empty folder or images smaller
    # than the patch fail here, before any file is created, and every kernel the run uses is compiled
    # (first run, said on stderr) or loaded before the progress bar, so its ETA starts after it.
    probe = Synthesizer(job)
    say = (lambda message: print(f"noisesim: {message}", file=sys.stderr, flush=True)) if progress else log.info
    with announce_compiles(say, probe.compile_message()):
        probe.warm_up()
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
    what = f"writing {partial_path(output)}" if shards == 1 else f"writing the {shards} shards of {output}"
    with RunLock(output, what=what):  # before any file is touched (issue: concurrent runs)
        return write_locked(output, files, job, shape, dtype, compression, attrs, config_json,
                             workers=workers, force=force, resume=resume, progress=progress, checkpoint_every=checkpoint_every,
                             scheduler=scheduler)
