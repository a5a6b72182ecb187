"""Writing uncompressed DNG files (Adobe DNG Specification 1.6) with tifffile.

:func:`write_dng` writes one 16-bit CFA mosaic in a single strip with the CFA pattern, per-site black levels
(``BlackLevelRepeatDim`` 2×2), the white level, ``ISOSpeedRatings`` and ``ExposureTime`` (a rational, as
cameras store it) and, when given, the ``NoiseProfile`` tag (51041). rawpy/LibRaw and exifread read it back.
:func:`write_linear_dng` writes a demosaiced 3-plane ``LinearRaw`` DNG (as phones' ProRAW files are).

The ISO and exposure time sit in IFD 0, where TIFF/EP (the base of DNG) defines them, not in an EXIF
sub-IFD: tifffile does not write EXIF sub-IFDs. exifread reports them as ``Image ISOSpeedRatings`` /
``Image ExposureTime``; LibRaw reads them from either place.

``NoiseProfile`` (DNG 1.3+): per colour plane a pair (S, O) of doubles such that the noise variance of a
pixel with normalized noise-free signal x ∈ [0, 1] is S·x + O; one pair for all planes or one per plane
(``CFAPlaneColor`` order, R, G, B here). :func:`noisesim.importers.profile.params_noise_profile` computes
it from the noise parameters a frame was simulated with.

Not a general DNG encoder: no compression, no previews, no opcodes, no colour calibration beyond an
identity ``ColorMatrix1``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .cfa import CFA, per_site_values
from .errors import ParameterError, ShapeError

__all__ = ["write_dng", "write_linear_dng", "NOISE_PROFILE_TAG"]

NOISE_PROFILE_TAG = 51041
_CFA_CODE = {"R": 0, "G": 1, "B": 2}
# TIFF field types as tifffile takes them in extratags
_RATIONAL, _SRATIONAL, _DOUBLE = 5, 10, 12


def _rational(x: float, max_den: int = 1_000_000) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(max_den)
    return f.numerator, f.denominator


def _flat_rationals(values, max_den: int = 1_000_000) -> tuple[int, ...]:
    return tuple(v for x in values for v in _rational(float(x), max_den))


def _noise_profile_values(noise_profile, n_planes: int) -> tuple[float, ...]:
    """Validate (S, O) pairs: one pair or one per plane; S > 0, all finite. Returns the flat doubles."""
    pairs = np.asarray(noise_profile, dtype=np.float64)
    if pairs.ndim == 1 and pairs.size == 2:
        pairs = pairs[None, :]
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] not in (1, n_planes):
        raise ParameterError(f"noise_profile must be one (S, O) pair or {n_planes} pairs (one per plane), got shape {pairs.shape}")
    if not np.all(np.isfinite(pairs)) or np.any(pairs[:, 0] <= 0):
        raise ParameterError(f"noise_profile pairs must be finite with S > 0, got {pairs.tolist()}")
    return tuple(float(v) for v in pairs.ravel())


def _common_tags(*, make, model, black, white, iso, exposure_s, noise_profile, n_planes):
    black_is_int = bool(np.all(black == np.round(black)))
    tags = [
        (271, "s", 0, make, True),
        (272, "s", 0, model, True),
        (50706, "B", 4, bytes([1, 6, 0, 0]), True),  # DNGVersion
        (50707, "B", 4, bytes([1, 1, 0, 0]), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{make} {model}", True),  # UniqueCameraModel
        (50714, "I", len(black), tuple(int(b) for b in black), True)
        if black_is_int
        else (50714, _RATIONAL, len(black), _flat_rationals(black, 1000), True),
        (50717, "I", 1, int(round(white)), True),
        (50721, _SRATIONAL, 9, _flat_rationals((1, 0, 0, 0, 1, 0, 0, 0, 1)), True),  # ColorMatrix1: identity
        (50728, _RATIONAL, 3, _flat_rationals((1, 1, 1)), True),  # AsShotNeutral
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
    ]
    if iso is not None:
        tags.append((34855, "H", 1, int(round(iso)), True))  # ISOSpeedRatings (TIFF/EP, IFD 0)
    if exposure_s is not None:
        tags.append((33434, _RATIONAL, 1, _rational(float(exposure_s)), True))  # ExposureTime
    if noise_profile is not None:
        values = _noise_profile_values(noise_profile, n_planes)
        tags.append((NOISE_PROFILE_TAG, _DOUBLE, len(values), values, True))
    return tags


def _write(path, data: np.ndarray, photometric: int, tags) -> Path:
    import tifffile

    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, photometric=photometric, planarconfig="contig" if data.ndim == 3 else None,
                         subfiletype=0, software="noisesim.dng", metadata=None, extratags=tags, byteorder="<")
    return path


def _samples(raw: np.ndarray, what: str) -> np.ndarray:
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise ShapeError(f"{what} contains non-finite values")
        raw = np.rint(raw)
    if raw.size and (raw.min() < 0 or raw.max() > 65535):
        raise ParameterError(f"DNG samples must lie in 0..65535 DN, got {raw.min()}..{raw.max()}")
    return np.ascontiguousarray(raw.astype("<u2"))


def _one_white(white_level_dn, n: int) -> float:
    """The single ``WhiteLevel`` a DNG stores, from a scalar or ``n`` equal values."""
    w = np.asarray(white_level_dn, dtype=np.float64).ravel()
    if w.size not in (1, n) or not np.all(np.isfinite(w)):
        raise ParameterError(f"white_level_dn must be a finite scalar or {n} values, got {white_level_dn!r}")
    if np.ptp(w) != 0:
        raise ParameterError(f"a DNG stores one white level, got {w.tolist()} DN")
    return float(w[0])


def write_dng(
    path,
    raw: np.ndarray,
    *,
    cfa: str | CFA,
    black_level_dn=0,
    white_level_dn=None,
    iso: float | None = None,
    exposure_s: float | None = None,
    make: str = "noisesim",
    model: str = "synthetic",
    bit_depth: int = 16,
    noise_profile=None,
) -> Path:
    """Write a mosaic as an uncompressed 16-bit CFA DNG.

    Parameters
    ----------
    path : str or Path
        Output file (conventionally ``.dng``). Written to a temporary name and renamed when complete.
    raw : (H, W) array of integer DN
        The mosaic, black level included; values must fit in uint16.
    cfa : str or CFA
        2×2 Bayer pattern read from the top-left pixel (``"RGGB"`` …). Quad Bayer is not supported here.
    black_level_dn : float or 4 floats
        Per colour site in Bayer reading order (RGGB → R, G1, G2, B) [DN].
    white_level_dn : float or 4 equal floats, optional
        Saturation level [DN]; defaults to ``2**bit_depth - 1``. A CFA DNG stores one white level
        (``WhiteLevel`` has one value per sample), so 4 per-site values (e.g. a :class:`~noisesim.params.Sensor`'s)
        must be equal.
    iso, exposure_s : float, optional
        Written to the EXIF sub-IFD as ``ISOSpeedRatings`` and ``ExposureTime`` (a rational) [s].
    make, model : str
        TIFF ``Make`` / ``Model`` (``UniqueCameraModel`` is ``"make model"``).
    bit_depth : int
        Nominal bits per sample used for the default white level (the samples are stored in 16 bits).
    noise_profile : (S, O) pair or 3 pairs, optional
        The ``NoiseProfile`` tag: variance = S·x + O for the normalized signal x, one pair for all planes or
        one per plane (R, G, B). noisesim's own writers pass
        :func:`noisesim.importers.profile.params_noise_profile` of the parameters they simulated with.

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = write_dng(os.path.join(tempfile.mkdtemp(), "a.dng"), np.full((4, 6), 600, np.uint16),
    ...               cfa="RGGB", black_level_dn=512, white_level_dn=16383, iso=100, exposure_s=1/50)
    >>> p.suffix
    '.dng'
    """
    cfa = cfa if isinstance(cfa, CFA) else CFA(cfa)
    if cfa.is_quad:
        raise ParameterError(f"write_dng supports 2×2 Bayer patterns only, got {cfa.pattern}")
    raw = np.asarray(raw)
    cfa.check_mosaic(raw, "DNG image")
    data = _samples(raw, "DNG image")
    black = np.asarray(per_site_values(black_level_dn, "black_level_dn"))
    white = _one_white(2**bit_depth - 1 if white_level_dn is None else white_level_dn, 4)
    tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, bytes(_CFA_CODE[c] for c in cfa.bayer), True),  # CFAPattern
        (50710, "B", 3, bytes([0, 1, 2]), True),  # CFAPlaneColor: R, G, B
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
    ] + _common_tags(make=make, model=model, black=black, white=white, iso=iso, exposure_s=exposure_s,
                     noise_profile=noise_profile, n_planes=3)
    return _write(path, data, 32803, tags)  # PhotometricInterpretation: CFA


def write_linear_dng(
    path,
    rgb: np.ndarray,
    *,
    black_level_dn=0,
    white_level_dn=65535,
    iso: float | None = None,
    exposure_s: float | None = None,
    noise_profile=None,
    make: str = "noisesim",
    model: str = "synthetic",
) -> Path:
    """Write a demosaiced (H, W, 3) image as an uncompressed 16-bit ``LinearRaw`` DNG (as ProRAW files are).

    Parameters
    ----------
    rgb : (H, W, 3) array of integer DN
        Camera RGB, black level included.
    black_level_dn : float or 3 floats
        Per plane (R, G, B) [DN].
    white_level_dn : float or 3 equal floats
        Saturation level [DN] (the file stores one).
    iso, exposure_s, noise_profile, make, model
        As :func:`write_dng` (a NoiseProfile here describes each of the 3 planes).

    Returns
    -------
    Path
        The written file.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ShapeError(f"a linear DNG image must have shape (H, W, 3), got {rgb.shape}")
    data = _samples(rgb, "linear DNG image")
    black = np.broadcast_to(np.asarray(black_level_dn, dtype=np.float64), (3,)) if np.ndim(black_level_dn) == 0 else np.asarray(black_level_dn, dtype=np.float64)
    if black.shape != (3,):
        raise ParameterError(f"black_level_dn of a linear DNG must be a scalar or 3 values, got shape {black.shape}")
    tags = [(50713, "H", 2, (1, 1), True)] + _common_tags(  # BlackLevelRepeatDim 1×1, one value per sample
        make=make, model=model, black=black, white=_one_white(white_level_dn, 3), iso=iso, exposure_s=exposure_s,
        noise_profile=noise_profile, n_planes=3)
    return _write(path, data, 34892, tags)  # PhotometricInterpretation: LinearRaw
