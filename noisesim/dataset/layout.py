"""The dataset file format: schema, the ``/params`` record, per-sample checksums and file names.

Layout (schema ``noisesim.dataset/2``)
--------------------------------------
::

    /clean         (N, C, h, w) float32 normalized, or uint16 raw DN (black included); long exposure
    /noisy         (N, C, h, w) same dtype; short exposure, NOT multiplied by the ratio
    /params        (N,) compound, see PARAMS_DTYPE (iso, K, read noise, row/col σ, ratio, black-level
                   error and black level per site (a card of schema /2 may vary it by ISO; uint16 samples
                   include their own), the hot pixels' own dark current (NaN: none), seed, blur kernel index, source index, map origin, ISP gains/matrix,
                   and the sample's CRC-32 (:func:`sample_crc32`; schema /2), checked by
                   :func:`noisesim.dataset.verify_dataset`)
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

A file being written is ``<output>.partial``, with its per-sample ``done`` flags in
``<output>.partial.progress`` (:mod:`noisesim.dataset.shards`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..params import Sensor

__all__ = [
    "COMPRESSIONS",
    "NOISE_FIELDS",
    "PARAMS_DTYPE",
    "PARTIAL_SUFFIX",
    "SCHEMA",
    "STORAGES",
    "partial_path",
    "progress_path",
    "record_black",
    "record_hot_pixel_dark_current",
    "sample_crc32",
    "samples_durable",
    "sensor_from_attrs",
    "shard_paths",
    "stored_sample_crc32",
]


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
        ("hot_pixel_dark_current_e_per_s", "<f8"),  # the hot pixels' own dark current (card /2 ISO row); NaN: none
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
NOISE_FIELDS = (
    "gain_k_dn_per_e", "read_sigma_dn", "tukey_lambda", "tukey_scale_dn", "row_sigma_dn", "col_sigma_dn",
    "dark_current_e_per_s", "exposure_s",
)


def sample_crc32(clean: np.ndarray, noisy: np.ndarray, rec, kernel_row: np.ndarray | None = None, kernel_size: int | None = None) -> int:
    """CRC-32 of one sample as stored: ``clean`` and ``noisy`` rows (C, h, w) in their stored dtype, the
    ``/params`` row with its ``crc32`` field zeroed and, for blurred datasets, the padded ``/blur_kernels``
    row (k, k) float32 and its ``/blur_kernel_sizes`` entry (int32).

    CRC-32 detects every error burst up to 32 bits and misses random damage with probability 2⁻³²; it
    guards against storage faults, not against deliberate tampering.

    Parameters
    ----------
    clean, noisy : (C, h, w) ndarray
        The stored rows.
    rec : structured ndarray row
        The ``/params`` row.
    kernel_row : (k, k) ndarray of float32, optional
        The padded blur kernel.
    kernel_size : int, optional
        Its true side [px].

    Returns
    -------
    int
        CRC-32, 0 … 2³² − 1.
    """
    import zlib

    # a copy, with the checksum field zeroed; a row of an older /2 file (fewer fields) keeps its own layout
    row = np.array(rec, dtype=PARAMS_DTYPE if rec.dtype.names == PARAMS_DTYPE.names else rec.dtype)
    row["crc32"] = 0
    crc = zlib.crc32(np.ascontiguousarray(clean).data)
    crc = zlib.crc32(np.ascontiguousarray(noisy).data, crc)
    crc = zlib.crc32(row.tobytes(), crc)
    if kernel_row is not None:
        crc = zlib.crc32(np.ascontiguousarray(kernel_row, dtype="<f4").data, crc)
        crc = zlib.crc32(np.int32(kernel_size or 0).astype("<i4").tobytes(), crc)
    return crc


def stored_sample_crc32(f, index: int, rec=None, *, clean=None, noisy=None) -> int:
    """CRC-32 of sample ``index`` recomputed from an open dataset file ``f`` (compare with ``rec["crc32"]``);
    ``rec``, ``clean`` and ``noisy`` may be passed when the caller has already read them.

    Parameters
    ----------
    f : h5py.File
        An open dataset (master or shard).
    index : int
        Sample index.
    rec : structured ndarray row, optional
        Its ``/params`` row, if already read.
    clean, noisy : (C, h, w) ndarray, optional
        Its stored rows, if already read.

    Returns
    -------
    int
    """
    rec = f["params"][index] if rec is None else rec
    clean = f["clean"][index] if clean is None else clean
    noisy = f["noisy"][index] if noisy is None else noisy
    kern = f["blur_kernels"]
    kernel_row = ksize = None
    if kern.shape[0]:
        kernel_row, ksize = kern[index], int(f["blur_kernel_sizes"][index])
    return sample_crc32(clean, noisy, rec, kernel_row, ksize)


def shard_paths(output: str | os.PathLike, shards: int) -> list[Path]:
    """File names of the ``shards`` shard files of ``output`` (``ds.h5`` → ``ds-00000-of-00004.h5`` …).

    Parameters
    ----------
    output : str or PathLike
        The master file.
    shards : int
        Number of shards.

    Returns
    -------
    list of Path
    """
    out = Path(output)
    if shards <= 1:
        return [out]
    return [out.with_name(f"{out.stem}-{k:05d}-of-{shards:05d}{out.suffix}") for k in range(shards)]


def partial_path(path: Path) -> Path:
    """The file ``path`` is written as until it is complete: ``<path>.partial``.

    Parameters
    ----------
    path : Path
        The final file.

    Returns
    -------
    Path
    """
    return path.with_name(path.name + PARTIAL_SUFFIX)


def progress_path(tmp: Path) -> Path:
    """The per-sample ``done`` flags (one byte each) of the partial file ``tmp``: ``<tmp>.progress``.

    Parameters
    ----------
    tmp : Path
        The ``.partial`` file.

    Returns
    -------
    Path
    """
    return tmp.with_name(tmp.name + ".progress")


def samples_durable(partial: Path) -> int:
    """Samples a partial file has flagged done in its progress sidecar (0 when there is none).

    Parameters
    ----------
    partial : Path
        The ``.partial`` file.

    Returns
    -------
    int
    """
    try:
        return int(np.count_nonzero(np.frombuffer(progress_path(partial).read_bytes(), np.uint8)))
    except OSError:
        return 0


def sensor_from_attrs(attrs) -> Sensor:
    """The :class:`Sensor` (CFA, bit depth, levels) recorded in a dataset's attributes.

    Parameters
    ----------
    attrs : h5py attributes or dict
        The dataset file's attributes.

    Returns
    -------
    Sensor
    """
    return Sensor(cfa=str(attrs["cfa"]), bit_depth=int(attrs["bit_depth"]),
                  black_level_dn=tuple(attrs["black_level_dn"]), white_level_dn=tuple(attrs["white_level_dn"]))


def record_black(rec) -> np.ndarray | None:
    """A /params row's black level per site (card schema /2 varies it by ISO), or None (files before it).

    Parameters
    ----------
    rec : structured ndarray row
        One ``/params`` row.

    Returns
    -------
    (4,) ndarray of float64 or None
        Black level per colour site, Bayer reading order [DN].
    """
    if "black_level_dn" not in (rec.dtype.names or ()):
        return None
    b = np.asarray(rec["black_level_dn"], dtype=np.float64)
    return b if np.all(np.isfinite(b)) else None


def record_hot_pixel_dark_current(rec) -> float | None:
    """A /params row's hot-pixel dark current, or None (none on the card's ISO row, or a file before the field).

    Parameters
    ----------
    rec : structured ndarray row
        One ``/params`` row.

    Returns
    -------
    float or None
        The hot pixels' own dark current [e⁻/s].
    """
    if "hot_pixel_dark_current_e_per_s" not in (rec.dtype.names or ()):
        return None
    v = float(rec["hot_pixel_dark_current_e_per_s"])
    return None if math.isnan(v) else v
