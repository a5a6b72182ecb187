"""Reading and writing single frames: raw files (rawpy / LibRaw), ``.npy`` and ``.tiff`` arrays.

:func:`read_raw` is the one place noisesim opens camera raw files: ``raw_image_visible`` is copied before
the file closes (it is only valid while open), the CFA is read from ``raw_colors_visible`` and
``color_desc`` (top-left pixel first, never OpenCV's naming), and the black level of each colour site is
``black_level_per_channel`` indexed through the colour index of that site (rawpy's hazard: the 4 values
are per LibRaw colour index, not per position).

:func:`read_dng_metadata` reads what a DNG says about its noise without the pixels: the maker's
``NoiseProfile`` tag (51041), the ISO, camera, CFA or linear (demosaiced) layout, and levels;
:attr:`RawFrame.noise_profile` carries the same tag for a DNG read by :func:`read_raw`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .cfa import CFA, per_site_values
from .errors import CFAError, InputFileError

__all__ = [
    "ARRAY_EXTENSIONS",
    "array_header",
    "check_integer_dn",
    "DNGMetadata",
    "infer_input_unit",
    "NOISE_PROFILE_TAG",
    "NORMALIZED_MAX",
    "NORMALIZED_MIN",
    "raw_cfa_and_black",
    "RAW_EXTENSIONS",
    "RawFrame",
    "read_array",
    "read_dng_metadata",
    "read_raw",
    "write_array",
]

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
        Per colour site in Bayer reading order (RGGB → R, G1, G2, B) [DN].
    white_level_dn : 4 floats
        Saturation level per colour site, same order [DN] (raw files state one value: all four equal).
    path : Path
    noise_profile : tuple of (S, O) pairs or None
        A DNG's NoiseProfile tag (variance = S·x + O for the normalized signal x; one pair or one per
        plane), None for other files or a DNG without one. See :func:`read_dng_metadata`.
    """

    mosaic: np.ndarray
    cfa: CFA
    black_level_dn: tuple[float, float, float, float]
    white_level_dn: tuple[float, float, float, float]
    path: Path
    noise_profile: tuple[tuple[float, float], ...] | None = None

    def normalized(self) -> np.ndarray:
        """(DN − black) / (white − black) per pixel, float32, not clipped.

        Returns
        -------
        (H, W) ndarray of float32
            The mosaic normalized per colour site (0 at black, 1 at white).
        """
        black = self.cfa.per_pixel(self.black_level_dn, self.mosaic.shape)
        white = self.cfa.per_pixel(self.white_level_dn, self.mosaic.shape)
        return ((self.mosaic - black) / (white - black)).astype(np.float32)


def raw_cfa_and_black(r, path) -> tuple[CFA, tuple[float, float, float, float], np.ndarray]:
    """CFA, per-site black levels and the LibRaw colour-index tile of an open rawpy file.

    Raises :class:`InputFileError` for a linear/demosaiced file or a CFA noisesim does not support.

    Parameters
    ----------
    r : rawpy.RawPy
        An open file.
    path : str or Path
        Its path, for error messages.

    Returns
    -------
    cfa : CFA
        Pattern of the top-left visible pixel.
    black_level_dn : 4 floats
        Per colour site, Bayer reading order [DN].
    tile : (2, 2) or (4, 4) ndarray of int
        LibRaw colour indices of the top-left tile.
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

    Parameters
    ----------
    path : str or Path
        Any raw format LibRaw reads (``.dng``, ``.cr2``, ``.nef``, …).

    Returns
    -------
    RawFrame
        The (H, W) mosaic [DN] with its CFA, levels and (for DNG) NoiseProfile.
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
    profile = None
    if path.suffix.lower() == ".dng":
        if not _has_dng_version(path):  # LibRaw reads a plain TIFF too, as RGGB with levels 0 … 65535
            raise InputFileError(f"{path}: not a DNG (no DNGVersion tag): a TIFF renamed .dng? Give a raw file, or "
                                 "the array as .tif with --input-unit")
        try:
            profile = read_dng_metadata(path).noise_profile
        except InputFileError:  # rawpy read the pixels; a tag tifffile cannot parse is simply absent
            profile = None
    return RawFrame(mosaic, cfa, black, per_site_values(white, "white level"), path, profile)


@contextmanager
def _tifffile_quiet():
    """tifffile logs one line per damaged tag of a file it then fails to read (five lines before our one
    error for a truncated TIFF): quiet it while we read; the error we raise says what is wrong."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _reading_array(path: Path):
    """Yield the array file's suffix (``.npy``, ``.tif`` or ``.tiff``; any other is refused); any reader
    failure inside becomes one :class:`InputFileError` naming the file."""
    suffix = path.suffix.lower()
    if suffix not in ARRAY_EXTENSIONS:
        raise InputFileError(f"{path}: unknown array format {suffix!r}; expected one of {ARRAY_EXTENSIONS}")
    try:
        yield suffix
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 — any reader failure means a bad file for the user
        raise InputFileError(f"{path}: cannot be read as an array ({type(exc).__name__}: {exc})") from None


def _check_npy_magic(f, path: Path) -> None:
    """Refuse a ``.npy`` file without NumPy's magic bytes; leaves ``f`` at its start."""
    if f.read(6) != b"\x93NUMPY":
        raise InputFileError(f"{path}: not a .npy file (no NumPy header); corrupted or another format?")
    f.seek(0)


def _check_numeric(dtype: np.dtype, path: Path) -> None:
    if dtype.kind not in "uif":
        raise InputFileError(f"{path}: expected numeric samples, got dtype {dtype}")


def array_header(path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` or uncompressed ``.tif``/``.tiff`` array from its header, without reading
    its samples; a file too short for them is refused (so a batch can check every input before it starts).

    Parameters
    ----------
    path : str or Path
        A ``.npy``, ``.tif`` or ``.tiff`` file.

    Returns
    -------
    shape : tuple of int
    dtype : numpy dtype

    Raises
    ------
    InputFileError
        Not such a file, an unreadable header, a non-numeric dtype or a truncated file; names the file.
    """
    path = Path(path)
    with _reading_array(path) as suffix:
        size = path.stat().st_size
        if suffix == ".npy":
            with open(path, "rb") as f:
                _check_npy_magic(f, path)
                major, _ = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
                end = f.tell() + int(np.prod(shape)) * dtype.itemsize
        else:
            import tifffile

            with _tifffile_quiet(), tifffile.TiffFile(path) as tf:
                page = tf.pages[0]
                shape, dtype = tuple(tf.series[0].shape), np.dtype(tf.series[0].dtype)
                end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts)), default=0)
    _check_numeric(np.dtype(dtype), path)
    if size < end:
        raise InputFileError(f"{path}: truncated ({size} bytes, its header needs {end})")
    return tuple(int(n) for n in shape), np.dtype(dtype)


def read_array(path) -> np.ndarray:
    """Read a ``.npy`` (no pickles) or ``.tif``/``.tiff`` array; numeric only; errors name the file.

    Parameters
    ----------
    path : str or Path
        A ``.npy``, ``.tif`` or ``.tiff`` file.

    Returns
    -------
    ndarray
        Its samples (integer or float dtype), unit as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    with _reading_array(path) as suffix:
        if suffix == ".npy":
            with open(path, "rb") as f:
                _check_npy_magic(f, path)
            a = np.load(path, allow_pickle=False)
        else:
            import tifffile

            with _tifffile_quiet():
                a = tifffile.imread(path)
    a = np.asarray(a)
    _check_numeric(a.dtype, path)
    return a


def write_array(path, array: np.ndarray) -> Path:
    """Write ``.npy`` or ``.tif``/``.tiff`` atomically (temporary name in the same folder, then rename).

    Parameters
    ----------
    path : str or Path
        ``.npy``, ``.tif`` or ``.tiff``; its folder must exist.
    array : ndarray
        Any shape and dtype the format holds.

    Returns
    -------
    Path
        ``path``.
    """
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


# --------------------------------------------------------------------------------------------------
# DNG metadata: the maker's NoiseProfile and what is needed to convert it
# --------------------------------------------------------------------------------------------------
NOISE_PROFILE_TAG = 51041  # DNG 1.3: per plane (S, O), variance = S·x + O for the normalized signal x
_PHOTOMETRIC_CFA, _PHOTOMETRIC_LINEAR_RAW = 32803, 34892


@dataclass(frozen=True)
class DNGMetadata:
    """What a DNG says about its noise and levels (no pixels are read).

    Attributes
    ----------
    path : Path
    noise_profile : tuple of (S, O) pairs, or None
        The NoiseProfile tag (51041) as stored: one pair for all planes or one per plane; normalized units
        (variance = S·x + O for x = (DN − black) / (white − black)). None when the file has no such tag.
    plane_colors : str
        Colour of each plane in NoiseProfile order: ``CFAPlaneColor`` of a CFA DNG (``"RGB"`` by default),
        ``"RGB"`` for a 3-plane linear DNG.
    linear : bool
        True for a demosaiced ``LinearRaw`` DNG (such as Apple ProRAW), False for a CFA mosaic.
    iso : float or None
        ``ISOSpeedRatings`` / ``PhotographicSensitivity`` from IFD 0 or the EXIF sub-IFD.
    make, model : str
        TIFF ``Make`` and ``Model`` (``UniqueCameraModel`` when they are absent).
    cfa : CFA or None
        Pattern from the top-left pixel (None for a linear DNG).
    black_level_dn : tuple of float
        Per colour site in Bayer reading order (4 values) for a CFA DNG; per plane (R, G, B) for a linear one [DN].
    white_level_dn : tuple of float
        Saturation level laid out as ``black_level_dn`` (4 or 3 values; the file states one, so all are equal) [DN].
    bits_per_sample : int
    """

    path: Path
    noise_profile: tuple[tuple[float, float], ...] | None
    plane_colors: str
    linear: bool
    iso: float | None
    make: str
    model: str
    cfa: CFA | None
    black_level_dn: tuple[float, ...]
    white_level_dn: tuple[float, ...]
    bits_per_sample: int


def _has_dng_version(path: Path) -> bool:
    """Whether the TIFF structure of ``path`` carries a DNGVersion tag (50706) in IFD 0 or a SubIFD."""
    import tifffile

    try:
        with _tifffile_quiet(), tifffile.TiffFile(path) as tf:
            return _tag(_tiff_pages(tf), 50706) is not None
    except Exception:  # noqa: BLE001 — not even a TIFF: rawpy, which read it, judged the file
        return True


def _tiff_pages(tf):
    """IFD 0 and its SubIFDs (a DNG keeps the raw image in a SubIFD when IFD 0 is a preview)."""
    first = tf.pages[0]
    pages = [first]
    try:
        pages += list(first.pages or ())
    except Exception:  # noqa: BLE001 — an unreadable SubIFD leaves IFD 0, which rawpy then judges
        pass
    return pages


def _tag(pages, code):
    for page in pages:
        tag = page.tags.get(code)
        if tag is not None:
            return tag.value
    return None


def _iso_from_tags(pages) -> float | None:
    value = _tag(pages, 34855)
    if value is None:
        exif = _tag(pages, 34665)
        if isinstance(exif, dict):
            value = exif.get("ISOSpeedRatings", exif.get("PhotographicSensitivity"))
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    try:
        iso = float(value)
    except (TypeError, ValueError):
        return None
    return iso if iso > 0 else None


def read_dng_metadata(path) -> DNGMetadata:
    """Read a DNG's NoiseProfile, ISO, camera, CFA and levels (tifffile for the tags, rawpy for the levels).

    Raises :class:`InputFileError` naming the file when it is missing, not a TIFF/DNG, or has a
    NoiseProfile whose length fits neither form (2 values, or 2 per plane).

    Parameters
    ----------
    path : str or Path
        A ``.dng`` file.

    Returns
    -------
    DNGMetadata
    """
    import rawpy
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        with _tifffile_quiet(), tifffile.TiffFile(path) as tf:
            pages = _tiff_pages(tf)
            if _tag(pages, 50706) is None:
                raise InputFileError(f"{path}: not a DNG (no DNGVersion tag)")
            raw_page = next((p for p in pages if int(getattr(p, "subfiletype", 0) or 0) & 1 == 0), pages[0])
            photometric = int(raw_page.tags[262].value) if 262 in raw_page.tags else None
            profile = _tag([raw_page] + pages, NOISE_PROFILE_TAG)
            plane_codes = _tag([raw_page] + pages, 50710)
            samples = int(raw_page.samplesperpixel)
            bits = int(np.max(raw_page.bitspersample))
            iso = _iso_from_tags(pages)
            make = str(_tag(pages, 271) or "").strip("\0 ")
            model = str(_tag(pages, 272) or "").strip("\0 ")
            unique = str(_tag(pages, 50708) or "").strip("\0 ")
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 — any TIFF parser failure means a bad file for the user
        raise InputFileError(f"{path}: cannot be read as a DNG ({type(exc).__name__}: {exc})") from None
    linear = photometric == _PHOTOMETRIC_LINEAR_RAW
    if photometric not in (_PHOTOMETRIC_CFA, _PHOTOMETRIC_LINEAR_RAW):
        raise InputFileError(f"{path}: the raw image is neither a CFA mosaic nor LinearRaw (PhotometricInterpretation {photometric})")
    letters = "RGBCMYW"
    if linear:
        plane_colors = "RGB"[:samples] if samples <= 3 else "".join(f"{i}" for i in range(samples))
    elif plane_codes is not None:
        codes = bytes(plane_codes) if not isinstance(plane_codes, (tuple, list)) else bytes(int(c) for c in plane_codes)
        plane_colors = "".join(letters[c] if c < len(letters) else "?" for c in codes)
    else:
        plane_colors = "RGB"
    pairs = None
    if profile is not None:
        values = np.atleast_1d(np.asarray(profile, dtype=np.float64))
        if values.size not in (2, 2 * len(plane_colors)):
            raise InputFileError(
                f"{path}: NoiseProfile holds {values.size} values; expected 2 (one pair for all planes) or "
                f"{2 * len(plane_colors)} (one pair per plane, {plane_colors})"
            )
        if not np.all(np.isfinite(values)):
            raise InputFileError(f"{path}: NoiseProfile holds non-finite values {values.tolist()}")
        pairs = tuple((float(s), float(o)) for s, o in values.reshape(-1, 2))
    try:
        with rawpy.imread(str(path)) as r:
            white = float(r.white_level)
            if linear:
                cfa = None
                black = tuple(float(b) for b in np.asarray(r.black_level_per_channel, dtype=np.float64)[:3])
            else:
                cfa, black, _ = raw_cfa_and_black(r, path)
    except InputFileError:
        raise
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot be read as a raw file ({type(exc).__name__}: {exc})") from None
    if not make and not model and unique:
        model = unique
    return DNGMetadata(path, pairs, plane_colors, linear, iso, make, model, cfa, black, (white,) * len(black), bits)


#: Largest value a float array may hold and still be read as normalized by :func:`infer_input_unit`
#: (highlights of a normalized frame may exceed 1 a little; raw DN of any real sensor exceed it by far).
NORMALIZED_MAX = 1.5
#: Smallest value a float array may hold and still be read as normalized (the same margin below 0: a
#: black-subtracted frame may dip below 0 a little; a frame reaching −0.5 of the range is not normalized).
NORMALIZED_MIN = -0.5


def check_integer_dn(array: np.ndarray, sensor, source="array") -> None:
    """Refuse integer samples that cannot be the sensor's raw DN: a dtype whose largest value does not
    exceed the black level (uint8 / int8 for any camera with a black level above 255, e.g. an 8-bit image),
    which would otherwise be read as a frame below black (a pure dark frame, silently), and values outside
    the sensor's codes 0 … 2^bit_depth − 1 (they were clipped at the white level or read as below black).

    Parameters
    ----------
    array : ndarray
        Samples that are about to be read as raw DN.
    sensor : Sensor
        Its black level is the bound.
    source : str
        The file or label named in the error.

    Raises
    ------
    InputFileError
        The dtype cannot hold a value above the black level, or a value is outside the sensor's codes.
    """
    a = np.asarray(array)
    if a.dtype.kind not in "ui":
        return
    black = min(sensor.black_level_dn)
    top = np.iinfo(a.dtype).max
    if top <= black:
        raise InputFileError(
            f"{source}: {a.dtype} samples (at most {top}) cannot be raw DN of this {sensor.bit_depth}-bit sensor "
            f"(black level {black:g} DN): an 8-bit image? Give uint16 raw DN, or floats in [0, 1] with --input-unit normalized"
        )
    if a.size == 0:
        return
    lo, hi, codes = int(a.min()), int(a.max()), (1 << sensor.bit_depth) - 1
    if lo < 0 or hi > codes:
        raise InputFileError(
            f"{source}: integer values {lo}…{hi} cannot be raw DN of this {sensor.bit_depth}-bit sensor (codes 0…{codes}, "
            f"white level {max(sensor.white_level_dn):g}); give its raw DN, or floats with --input-unit normalized or electrons"
        )


def infer_input_unit(array: np.ndarray, sensor, source="array") -> tuple[str, str | None]:
    """The unit of a clean frame from its dtype and range (``--input-unit auto``).

    * integer samples → ``"dn"`` (raw DN including the black level);
    * floating point with every value in :data:`NORMALIZED_MIN` … :data:`NORMALIZED_MAX` → ``"normalized"``;
    * floating point above that, within the sensor's levels (0 ≤ values ≤ white level, maximum above the
      black level) → ``"dn"``, with a note saying so;
    * anything else is ambiguous and refused.

    Parameters
    ----------
    array : ndarray
        (H, W) mosaic or (C, H/p, W/p) packed frame.
    sensor : noisesim.params.Sensor
        Its black and white levels [DN] bound the DN reading.
    source : str or path
        Names the frame in the note and the error (the file name).

    Returns
    -------
    (unit, note)
        ``"dn"`` or ``"normalized"``, and a sentence for the user when a float frame was read as DN (else None).

    Raises
    ------
    InputFileError
        Non-finite values, or a float range that is neither normalized nor the sensor's DN; the message
        names the file, its range and ``--input-unit``.
    """
    a = np.asarray(array)
    if a.dtype.kind in "ui":
        return "dn", None
    if a.size == 0:
        return "normalized", None
    lo, hi = float(np.min(a)), float(np.max(a))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputFileError(f"{source}: contains NaN or infinite values")
    if NORMALIZED_MIN <= lo and hi <= NORMALIZED_MAX:
        return "normalized", None
    black, white = min(sensor.black_level_dn), max(sensor.white_level_dn)
    if lo >= 0 and hi <= white + 0.5 and hi > black:
        return "dn", (f"{source}: float values {lo:g}…{hi:g} exceed {NORMALIZED_MAX:g}, so they are read as raw DN "
                      f"(black level {black:g}, white level {white:g}); pass --input-unit to choose")
    raise InputFileError(
        f"{source}: cannot tell the unit of float values {lo:g}…{hi:g}: not normalized ({NORMALIZED_MIN:g} … "
        f"{NORMALIZED_MAX:g}) and "
        f"not raw DN of this sensor (black level {black:g}, white level {white:g}); "
        "pass --input-unit normalized, dn or electrons"
    )
