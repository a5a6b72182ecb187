"""Reading and writing single frames: raw files (rawpy / LibRaw), ``.npy`` and ``.tiff`` arrays.

:func:`read_raw` is the one place noisesim opens camera raw files: ``raw_image_visible`` is copied before
the file closes (it is only valid while open), the CFA is read from ``raw_colors_visible`` and
``color_desc`` (top-left pixel first, never OpenCV's naming), and the black level of each colour site is
``black_level_per_channel`` indexed through the colour index of that site (rawpy's hazard: the 4 values
are per LibRaw colour index, not per position).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .cfa import CFA
from .errors import CFAError, InputFileError

RAW_EXTENSIONS = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".rw2", ".orf",
    ".pef", ".srw", ".3fr", ".iiq", ".erf", ".kdc", ".mef", ".mos", ".mrw", ".x3f", ".rwl",
)  # fmt: skip
ARRAY_EXTENSIONS = (".npy", ".tif", ".tiff")


@dataclass(frozen=True)
class RawFrame:
    """One raw mosaic with the metadata needed to interpret it.

    Attributes
    ----------
    mosaic : (H, W) ndarray
        Raw DN, black level included, as stored in the file (uint16 for camera raw).
    cfa : CFA
        Pattern read from the top-left visible pixel.
    black_level_dn : 4 floats
        Per colour site in Bayer reading order (RGGB → R, G1, G2, B).
    white_level_dn : float
        Saturation level [DN].
    path : Path
    """

    mosaic: np.ndarray
    cfa: CFA
    black_level_dn: tuple[float, float, float, float]
    white_level_dn: float
    path: Path

    def normalized(self) -> np.ndarray:
        """(DN − black) / (white − black) per pixel, float32, not clipped."""
        black = self.cfa.per_pixel(self.black_level_dn, self.mosaic.shape)
        return ((self.mosaic - black) / (self.white_level_dn - black)).astype(np.float32)


def raw_cfa_and_black(r, path) -> tuple[CFA, tuple[float, float, float, float], np.ndarray]:
    """CFA, per-site black levels and the LibRaw colour-index tile of an open rawpy file.

    Raises :class:`InputFileError` for a linear/demosaiced file or a CFA noisesim does not support.
    """
    import rawpy

    if r.raw_type != rawpy.RawType.Flat or r.raw_pattern is None:
        raise InputFileError(
            f"{path}: not a CFA mosaic (raw type {r.raw_type.name}); a linear or demosaiced DNG has no "
            "per-pixel sensor noise — use the camera's raw (Bayer) file"
        )
    desc = r.color_desc.decode("ascii", "replace") if isinstance(r.color_desc, bytes) else str(r.color_desc)
    colors = np.asarray(r.raw_colors_visible)
    if colors.shape[0] < 8 or colors.shape[1] < 8:
        raise InputFileError(f"{path}: image too small ({colors.shape[0]}×{colors.shape[1]})")
    tile4 = colors[:4, :4]
    letters = np.array([desc[int(i)] if int(i) < len(desc) else "?" for i in tile4.ravel()]).reshape(4, 4)
    if np.array_equal(np.tile(tile4[:2, :2], (2, 2)), tile4):
        pattern, site_idx, tile = "".join(letters[:2, :2].ravel()), tile4[:2, :2].ravel(), tile4[:2, :2]
    else:
        pattern, site_idx, tile = "".join(letters.ravel()), tile4[::2, ::2].ravel(), tile4
    try:
        cfa = CFA(pattern)
    except CFAError as exc:
        raise InputFileError(f"{path}: unsupported colour filter array {pattern!r} ({exc})") from None
    bl = np.asarray(r.black_level_per_channel, dtype=np.float64)
    black = tuple(float(bl[int(i)]) for i in site_idx)
    return cfa, black, np.asarray(tile)  # type: ignore[return-value]


def read_raw(path) -> RawFrame:
    """Open a camera raw file (DNG from phones included) and copy its visible mosaic and levels.

    Raises :class:`InputFileError` naming the file when it is missing, unreadable, not raw, or linear.
    """
    import rawpy

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        with rawpy.imread(str(path)) as r:
            cfa, black, _ = raw_cfa_and_black(r, path)
            mosaic = np.array(r.raw_image_visible, copy=True)
            white = float(r.white_level)
    except InputFileError:
        raise
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot be read as a raw file ({type(exc).__name__}: {exc})") from None
    if mosaic.ndim != 2:
        raise InputFileError(f"{path}: expected a 2-D CFA mosaic, got shape {mosaic.shape} (linear/demosaiced raw?)")
    if any(white <= b for b in black):
        raise InputFileError(f"{path}: white level {white} is not above the black levels {list(black)}")
    return RawFrame(mosaic, cfa, black, white, path)


def read_array(path) -> np.ndarray:
    """Read a ``.npy`` (no pickles) or ``.tif``/``.tiff`` array; numeric only; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            with open(path, "rb") as f:
                if f.read(6) != b"\x93NUMPY":
                    raise InputFileError(f"{path}: not a .npy file (no NumPy header); corrupted or another format?")
            a = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            a = tifffile.imread(path)
        else:
            raise InputFileError(f"{path}: unknown array format {suffix!r}; expected one of {ARRAY_EXTENSIONS}")
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 — any reader failure means a bad file for the user
        raise InputFileError(f"{path}: cannot be read as an array ({type(exc).__name__}: {exc})") from None
    a = np.asarray(a)
    if a.dtype.kind not in "uif":
        raise InputFileError(f"{path}: expected numeric samples, got dtype {a.dtype}")
    return a


def write_array(path, array: np.ndarray) -> Path:
    """Write ``.npy`` or ``.tif``/``.tiff`` atomically (temporary name in the same folder, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ARRAY_EXTENSIONS:
        raise InputFileError(f"{path}: unknown output format {suffix!r}; expected one of {ARRAY_EXTENSIONS}")
    if not path.parent.exists():
        raise InputFileError(f"{path}: the output folder {path.parent} does not exist")
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, array)
        else:
            import tifffile

            tifffile.imwrite(tmp, array)
    return path
