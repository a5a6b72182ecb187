"""A minimal writer of uncompressed CFA DNG files (Adobe DNG Specification 1.4, TIFF 6.0 layout).

Enough for tests and calibration round trips: one 16-bit CFA image in a single strip, the CFA pattern,
per-site black levels (``BlackLevelRepeatDim`` 2×2), the white level, and an EXIF sub-IFD with the ISO and
the exposure time (as a rational, the way cameras store it). rawpy/LibRaw and exifread read it back.

Not a general DNG encoder: no compression, no previews, no opcodes, no colour calibration beyond an
identity ``ColorMatrix1``.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .cfa import CFA
from .errors import ParameterError, ShapeError

# TIFF field types
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_TYPE_SIZE = {_BYTE: 1, _ASCII: 1, _SHORT: 2, _LONG: 4, _RATIONAL: 8, _SRATIONAL: 8}
_CFA_CODE = {"R": 0, "G": 1, "B": 2}


def _rational(x: float, max_den: int = 1_000_000) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(max_den)
    return f.numerator, f.denominator


def _entry(tag: int, typ: int, values) -> tuple[int, int, int, bytes]:
    """One IFD entry as (tag, type, count, payload bytes, little endian)."""
    if typ == _ASCII:
        data = values.encode("ascii") + b"\0"
        return tag, typ, len(data), data
    if typ == _BYTE:
        data = bytes(values)
        return tag, typ, len(data), data
    if typ in (_RATIONAL, _SRATIONAL):
        fmt = "<Ii" if typ == _SRATIONAL else "<II"
        data = b"".join(struct.pack(fmt, n, d) for n, d in values)
        return tag, typ, len(values), data
    fmt = {_SHORT: "<H", _LONG: "<I"}[typ]
    data = b"".join(struct.pack(fmt, int(v)) for v in values)
    return tag, typ, len(values), data


def _ifd_bytes(entries, ifd_offset: int, next_ifd: int = 0) -> bytes:
    """Serialize an IFD placed at ``ifd_offset``; payloads over 4 bytes follow the IFD directly."""
    entries = sorted(entries, key=lambda e: e[0])
    n = len(entries)
    data_offset = ifd_offset + 2 + 12 * n + 4
    head = struct.pack("<H", n)
    tail = b""
    for tag, typ, count, payload in entries:
        if len(payload) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\0")
        else:
            if (data_offset + len(tail)) % 2:
                tail += b"\0"
            head += struct.pack("<HHII", tag, typ, count, data_offset + len(tail))
            tail += payload
    head += struct.pack("<I", next_ifd)
    return head + tail


def write_dng(
    path,
    raw: np.ndarray,
    *,
    cfa: str | CFA,
    black_level_dn=0,
    white_level_dn: float | None = None,
    iso: float | None = None,
    exposure_s: float | None = None,
    make: str = "noisesim",
    model: str = "synthetic",
    bit_depth: int = 16,
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
    white_level_dn : float, optional
        Saturation level [DN]; defaults to ``2**bit_depth - 1``.
    iso, exposure_s : float, optional
        Written to the EXIF sub-IFD as ``ISOSpeedRatings`` and ``ExposureTime`` (a rational) [s].
    make, model : str
        TIFF ``Make`` / ``Model`` (``UniqueCameraModel`` is ``"make model"``).
    bit_depth : int
        Nominal bits per sample used for the default white level (the samples are stored in 16 bits).

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
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise ShapeError("DNG image contains non-finite values")
        raw = np.rint(raw)
    if raw.size and (raw.min() < 0 or raw.max() > 65535):
        raise ParameterError(f"DNG samples must lie in 0..65535 DN, got {raw.min()}..{raw.max()}")
    data = np.ascontiguousarray(raw.astype("<u2")).tobytes()
    h, w = raw.shape
    black = np.broadcast_to(np.asarray(black_level_dn, dtype=np.float64), (4,)) if np.ndim(black_level_dn) == 0 else np.asarray(black_level_dn, dtype=np.float64)
    if black.shape != (4,):
        raise ParameterError(f"black_level_dn must be a scalar or 4 values, got shape {black.shape}")
    white = float(2**bit_depth - 1 if white_level_dn is None else white_level_dn)

    cfa_codes = [_CFA_CODE[c] for c in cfa.bayer]
    # Layout: header (8) | IFD0 + its data | EXIF IFD + its data | image strip.
    exif_entries = []
    if iso is not None:
        exif_entries.append(_entry(34855, _SHORT, [int(round(iso))]))  # ISOSpeedRatings
    if exposure_s is not None:
        exif_entries.append(_entry(33434, _RATIONAL, [_rational(float(exposure_s))]))  # ExposureTime
    exif_entries.append(_entry(36864, _BYTE, b"0230"))  # ExifVersion (UNDEFINED stored as bytes)

    def ifd0_entries(exif_offset: int, strip_offset: int):
        black_is_int = bool(np.all(black == np.round(black)))
        return [
            _entry(254, _LONG, [0]),  # NewSubFileType: main image
            _entry(256, _LONG, [w]),
            _entry(257, _LONG, [h]),
            _entry(258, _SHORT, [16]),
            _entry(259, _SHORT, [1]),  # no compression
            _entry(262, _SHORT, [32803]),  # PhotometricInterpretation: CFA
            _entry(271, _ASCII, make),
            _entry(272, _ASCII, model),
            _entry(273, _LONG, [strip_offset]),
            _entry(274, _SHORT, [1]),  # orientation
            _entry(277, _SHORT, [1]),
            _entry(278, _LONG, [h]),
            _entry(279, _LONG, [len(data)]),
            _entry(284, _SHORT, [1]),
            _entry(305, _ASCII, "noisesim.dng"),
            _entry(33421, _SHORT, [2, 2]),  # CFARepeatPatternDim
            _entry(33422, _BYTE, cfa_codes),  # CFAPattern
            _entry(34665, _LONG, [exif_offset]),  # Exif IFD pointer
            _entry(50706, _BYTE, [1, 4, 0, 0]),  # DNGVersion
            _entry(50707, _BYTE, [1, 1, 0, 0]),  # DNGBackwardVersion
            _entry(50708, _ASCII, f"{make} {model}"),
            _entry(50710, _BYTE, [0, 1, 2]),  # CFAPlaneColor
            _entry(50711, _SHORT, [1]),  # CFALayout: rectangular
            _entry(50713, _SHORT, [2, 2]),  # BlackLevelRepeatDim
            (
                _entry(50714, _LONG, [int(b) for b in black])
                if black_is_int
                else _entry(50714, _RATIONAL, [_rational(float(b), 1000) for b in black])
            ),
            _entry(50717, _LONG, [int(round(white))]),
            _entry(50721, _SRATIONAL, [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]),
            _entry(50728, _RATIONAL, [(1, 1), (1, 1), (1, 1)]),  # AsShotNeutral
            _entry(50778, _SHORT, [21]),  # CalibrationIlluminant1: D65
        ]

    # Two passes: sizes do not depend on offsets, so lay out once with zeros and again with real offsets.
    ifd0 = _ifd_bytes(ifd0_entries(0, 0), 8)
    exif_offset = 8 + len(ifd0)
    exif_offset += exif_offset % 2
    exif = _ifd_bytes(exif_entries, exif_offset)
    strip_offset = exif_offset + len(exif)
    strip_offset += (-strip_offset) % 16
    ifd0 = _ifd_bytes(ifd0_entries(exif_offset, strip_offset), 8)
    assert exif_offset >= 8 + len(ifd0)  # layout invariant, not input validation

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", 8))
        f.write(ifd0)
        f.write(b"\0" * (exif_offset - 8 - len(ifd0)))
        f.write(exif)
        f.write(b"\0" * (strip_offset - exif_offset - len(exif)))
        f.write(data)
    return path
