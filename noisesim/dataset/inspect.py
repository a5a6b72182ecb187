"""Reading datasets back: opening with the checks every reader needs, summaries, checksum verification,
and stored samples as normalized values."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError, NoiseSimError
from .layout import PARTIAL_SUFFIX, SCHEMA, record_black, samples_durable, stored_sample_crc32

__all__ = [
    "READ_ERRORS",
    "channel_levels",
    "first_line",
    "format_summary",
    "inspect_dataset",
    "open_dataset_file",
    "to_normalized",
    "verify_dataset",
]


def channel_levels(attrs, rec=None) -> tuple[np.ndarray, np.ndarray]:
    """Black and white level per packed channel [DN], (C,) each, of the dataset or of one sample ``rec``.

    A sample drawn at an ISO with its own black level (card schema /2) records it in ``/params``.

    Parameters
    ----------
    attrs : h5py attributes or dict
        The dataset file's attributes.
    rec : structured ndarray row, optional
        One ``/params`` row.

    Returns
    -------
    black_dn, white_dn : (C,) ndarray of float64
    """
    b = np.asarray(attrs["channel_black_level_dn"], dtype=np.float64)
    w = np.asarray(attrs["channel_white_level_dn"], dtype=np.float64)
    own = None if rec is None else record_black(rec)
    if own is not None:
        from ..cfa import CFA

        b = own[CFA(str(attrs["cfa"])).site_index.ravel()]
    return b, w


def to_normalized(x: np.ndarray, attrs, *, channel_axis: int = -3, rec=None) -> np.ndarray:
    """Stored samples → float32 normalized: float32 storage as is; uint16 DN → (x − B) / (W − B) per channel.

    ``rec`` (the sample's ``/params`` row) supplies its own black level where it has one.

    Parameters
    ----------
    x : ndarray
        Stored samples, packed channels on ``channel_axis`` (e.g. (N, C, h, w) or (C, h, w)).
    attrs : h5py attributes or dict
        The dataset file's attributes (levels per channel [DN]).
    channel_axis : int
        Axis of the C packed channels.
    rec : structured ndarray row, optional
        The sample's ``/params`` row.

    Returns
    -------
    ndarray of float32
        Same shape, normalized (0 at black, 1 at white).
    """
    if str(attrs["storage"]) != "uint16":
        return np.asarray(x, dtype=np.float32)
    b, w = (v.astype(np.float32) for v in channel_levels(attrs, rec))
    shape = [1] * np.ndim(x)
    shape[channel_axis] = -1
    return ((np.asarray(x, dtype=np.float32) - b.reshape(shape)) / (w - b).reshape(shape)).astype(np.float32)


# Everything h5py and numpy raise on a damaged or foreign file: reported as one DatasetError line.
READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_dataset_file(path: str | os.PathLike, *, allow_partial: bool = False):
    """Open a generated dataset for reading (an ``h5py.File``), after the checks every reader needs.

    Raises :class:`DatasetError` (one line naming the file) when the file is missing, not HDF5, not a
    noisesim dataset, a ``.partial`` (unless ``allow_partial``), or a shard master whose shards are missing
    or belong to another run: HDF5 would read a missing shard's samples as zeros.

    Parameters
    ----------
    path : str or PathLike
        The dataset file.
    allow_partial : bool
        Accept a ``.partial`` file.

    Returns
    -------
    h5py.File
        Open for reading; the caller closes it.
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
    except READ_ERRORS as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file ({first_line(exc)})") from None
    try:
        for name in ("clean", "noisy", "params"):
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise DatasetError(f"{path} is not a noisesim dataset: /{name} missing")
        _check_shards(path, f)
    except BaseException as exc:
        f.close()
        if isinstance(exc, READ_ERRORS) and not isinstance(exc, NoiseSimError):
            raise DatasetError(f"{path} cannot be read: {first_line(exc)}") from None
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
    first = 0  # where each shard's samples must start: a copied or swapped shard of the same run has the
    for n in names:  # same settings and valid checksums, but starts elsewhere
        try:
            with h5py.File(path.parent / n, "r") as sf:
                same = sf.attrs.get("generation_config", "") == config
                starts, count = int(sf.attrs.get("first_sample", -1)), int(sf["params"].shape[0])
        except READ_ERRORS as exc:
            raise DatasetError(f"{path}: shard {path.parent / n} cannot be read ({first_line(exc)})") from None
        if not same:
            raise DatasetError(f"{path}: shard {path.parent / n} belongs to another run (different settings)")
        if starts != first:
            raise DatasetError(f"{path}: shard {path.parent / n} holds samples {starts}… but sits where samples {first}… "
                               "belong (a copied or swapped shard file?)")
        first += count


def inspect_dataset(path: str | os.PathLike) -> dict:
    """A summary of a dataset: layout, counts, parameter ranges, card and attributes (a plain dict).

    A ``.partial`` file is summarized too, with ``info["partial"]`` True and ``info["samples_done"]``
    (samples flagged done in its progress file). Any damage gives :class:`DatasetError`, never another error.

    Parameters
    ----------
    path : str or PathLike
        A dataset file (or its ``.partial``).

    Returns
    -------
    dict
        ``path``, ``size_bytes``, ``partial``, ``datasets`` (shape (N, C, h, w), dtype, chunks, compression
        of each), ``attrs``, ``card_text``, ``param_ranges`` (K [DN/e⁻], ISO, ratio, σ [DN] …) and ``n_pairs``.
    """
    path = Path(path)
    f = open_dataset_file(path, allow_partial=True)
    try:
        with f:
            return _summarize(path, f)
    except NoiseSimError:
        raise
    except READ_ERRORS as exc:
        raise DatasetError(f"{path} cannot be read: {first_line(exc)}") from None


def _summarize(path: Path, f) -> dict:
    info: dict = {"path": str(path), "size_bytes": path.stat().st_size}
    info["partial"] = path.name.endswith(PARTIAL_SUFFIX)
    if info["partial"]:
        info["samples_done"] = samples_durable(path)
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

    Parameters
    ----------
    path : str or PathLike
        The dataset file.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of int
        Indices of damaged samples; empty when all match.
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
    except READ_ERRORS as exc:
        raise DatasetError(f"{path} cannot be read: {first_line(exc)}") from None
    return bad


def format_summary(info: dict) -> str:
    """Human-readable text of :func:`inspect_dataset`'s dict.

    Parameters
    ----------
    info : dict
        From :func:`inspect_dataset`.

    Returns
    -------
    str
    """
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
