"""Reading a capture: dark and flat frames with their ISO, exposure time, levels and CFA (docs/calibration.md).

Three ways in:

* a **capture folder** of raw files (anything rawpy opens, phone DNGs included): files under a ``darks/``
  (``dark``, ``bias``) or ``flats/`` (``flat``) folder at any depth take that kind; other frames are
  classified by their mean signal against the black level, with a warning. ISO and exposure time come
  from each file's EXIF (exifread; the exposure kept as the stored ratio, never ``eval``); black levels
  (``black_level_per_channel`` indexed through ``raw_colors_visible``), white level and CFA from the file;
* a **manifest** (CSV or TOML) listing ``.npy``/``.tiff`` (or raw) frames with
  ``path, kind, iso, exposure_s, black_level, white_level, cfa``;
* **in memory**: :func:`frame_from_array` / :func:`frame_from_loader` (tests, benchmarks, synthetic runs).

A frame is described by a :class:`FrameInfo` whose ``load()`` returns the (H, W) mosaic in DN; pixels
are read when the estimators stream over them, never all at once. In a folder, files that cannot be used
become :class:`CaptureProblem` entries naming the file and the rest of the capture is still used; in a
manifest, where the user named each file, such a file is an error. A frame with NaN or inf pixels is refused
wherever it is read (:func:`check_finite`).
"""

from __future__ import annotations

import csv
import logging
import math
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "Capture",
    "capture_camera",
    "CaptureProblem",
    "check_consistency",
    "check_finite",
    "check_levels",
    "DARK_FOLDERS",
    "FLAT_FOLDERS",
    "frame_from_array",
    "frame_from_loader",
    "FrameInfo",
    "group_frames",
    "IGNORED_SUFFIXES",
    "KINDS",
    "modal_levels",
    "normalize_camera",
    "pixel_hash",
    "read_camera",
    "read_exif",
    "read_manifest",
    "read_raw_frame",
    "scan_capture",
]

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged (a core dependency there)
    import tomli as tomllib

from noisesim.cfa import CFA, per_site_values
from noisesim.errors import CalibrationError, CFAError, InputFileError, NoiseSimError
from noisesim.rawio import ARRAY_EXTENSIONS, read_array, read_raw

log = logging.getLogger("calibration")

KINDS = ("dark", "flat")
MAX_WHITE_DN = 2**16 - 1  # a card's sensor has 8 to 16 bits (noisesim.params.Sensor)
DARK_FOLDERS = {"dark", "darks", "bias", "biases", "black", "blacks"}
FLAT_FOLDERS = {"flat", "flats", "flatfield", "flatfields", "flat_field", "flat_fields"}
# Files that are never frames; skipped silently when scanning a folder.
IGNORED_SUFFIXES = {
    ".txt", ".md", ".csv", ".toml", ".json", ".xml", ".xmp", ".html", ".pdf", ".py", ".log", ".ini",
    ".yaml", ".yml", ".pp3", ".thm", ".db",
}


@dataclass(frozen=True)
class CaptureProblem:
    """Something wrong with one file (or group) of a capture; ``path`` names it.

    Attributes
    ----------
    path : str
        The file or group.
    message : str
        What is wrong and what was done about it.
    """

    path: str
    message: str

    def __str__(self) -> str:
        named = self.message.split(": ", 1)[0]
        if named == self.path or named.endswith(f"/{self.path}"):  # the message names the file already
            return self.message
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class FrameInfo:
    """One frame of a capture and what is known about it.

    Attributes
    ----------
    path : str
        File path, or a label for in-memory frames.
    kind : {"dark", "flat"}
    iso : float
    exposure_s : float
        Exposure time [s].
    shape : (H, W)
        Mosaic shape in pixels.
    cfa : str
        CFA pattern read from the top-left pixel of the visible image.
    black_level_dn : 4 floats
        Per colour site, Bayer reading order [DN].
    white_level_dn : 4 floats
        Saturation level per colour site, same order [DN] (raw files state one value: all four equal).
    kind_source : {"folder", "manifest", "signal", "given"}
        How ``kind`` was decided ("signal": classified from the mean signal, with a warning).
    loader : callable
        ``loader() -> (H, W)`` array of DN (black level included). Reads the file each call.
    integer_valued : bool
        Whether samples are integer DN (quantized); the read-noise estimators then remove 1/12 DN².
    camera : str, optional
        "Make Model" from the file's EXIF, normalized by :func:`normalize_camera`.
    content_hash : str, optional
        BLAKE2b digest of the pixels (set when the file was read while scanning): byte-identical copies of
        one frame are used once (:func:`check_consistency`).
    """

    path: str
    kind: str
    iso: float
    exposure_s: float
    shape: tuple[int, int]
    cfa: str
    black_level_dn: tuple[float, float, float, float]
    white_level_dn: tuple[float, float, float, float]
    kind_source: str = "given"
    loader: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)
    integer_valued: bool = True
    content_hash: str | None = field(default=None, repr=False, compare=False)
    camera: str | None = None

    def load(self) -> np.ndarray:
        """The (H, W) mosaic in DN (black level included).

        Returns
        -------
        (H, W) ndarray
            Integer or float DN.

        Raises
        ------
        InputFileError
            No loader, a shape other than scanned, or NaN/inf pixels (:func:`check_finite`), naming the file.
        """
        if self.loader is None:
            raise InputFileError(f"{self.path}: no way to load this frame")
        a = self.loader()
        if a.shape != self.shape:
            raise InputFileError(f"{self.path}: frame shape changed from {self.shape} to {a.shape} since it was scanned")
        check_finite(a, self.path)
        return a


@dataclass
class Capture:
    """The usable frames of a capture plus the problems met while reading it.

    Attributes
    ----------
    frames : list of FrameInfo
        The usable frames.
    problems : list of CaptureProblem
        Files skipped or doubtful, each with the reason.
    source : str
        The folder or manifest read.
    """

    frames: list[FrameInfo]
    problems: list[CaptureProblem] = field(default_factory=list)
    source: str = "<memory>"

    def problem_summary(self, limit: int = 3) -> str:
        """The first ``limit`` problems on one line (``"a.dng: …; b.dng: … (and 4 more)"``), for an error
        that says why no frame was usable; "" when there were none.

        Parameters
        ----------
        limit : int
            Problems shown.

        Returns
        -------
        str
        """
        shown = "; ".join(str(p) for p in self.problems[:limit])
        more = len(self.problems) - limit
        return shown + (f" (and {more} more)" if more > 0 else "")

    def by_kind(self, kind: str) -> list[FrameInfo]:
        """The frames of one kind (``"dark"`` or ``"flat"``), in the capture's order.

        Parameters
        ----------
        kind : {"dark", "flat"}
            Frame kind.

        Returns
        -------
        list of FrameInfo
        """
        return [f for f in self.frames if f.kind == kind]

    @property
    def isos(self) -> list[float]:
        """The ISOs of the capture, ascending."""
        return sorted({f.iso for f in self.frames})


# ------------------------------------------------------------------------------------------------
# raw files


def _fraction_value(v) -> float:
    """An exifread value (Ratio, int, or a list of them) as a float, without eval."""
    if isinstance(v, (list, tuple)):
        if not v:
            raise ValueError("empty value")
        v = v[0]
    if hasattr(v, "numerator") and hasattr(v, "denominator"):
        if v.denominator == 0:
            raise ValueError("zero denominator")
        return float(Fraction(int(v.numerator), int(v.denominator)))
    return float(v)


def read_exif(path) -> tuple[float | None, float | None]:
    """ISO and exposure time [s] from a file's EXIF (exifread); None where absent or unreadable.

    Parameters
    ----------
    path : str or Path
        A raw file.

    Returns
    -------
    iso : float or None
    exposure_s : float or None
        [s]
    """
    import exifread

    try:
        with open(path, "rb") as f:
            tags = exifread.process_file(f, details=False)
    except Exception as exc:  # exifread raises many types on odd files
        log.debug("exifread failed on %s: %s", path, exc)
        return None, None
    iso = exposure = None
    for key in ("EXIF ISOSpeedRatings", "EXIF PhotographicSensitivity", "Image ISOSpeedRatings", "EXIF RecommendedExposureIndex"):
        if key in tags:
            try:
                iso = _fraction_value(tags[key].values)
                if iso > 0:
                    break
                iso = None
            except (ValueError, TypeError, ZeroDivisionError):
                iso = None
    for key in ("EXIF ExposureTime", "Image ExposureTime"):
        if key in tags:
            try:
                exposure = _fraction_value(tags[key].values)
                if exposure > 0:
                    break
                exposure = None
            except (ValueError, TypeError, ZeroDivisionError):
                exposure = None
    return iso, exposure


_MAKE_NOISE = re.compile(r"\b(corporation|corp|co|ltd|inc|imaging|company|electronics|optical|mobile)\b\.?", re.I)


def normalize_camera(make: str | None, model: str | None) -> str | None:
    """"Make Model" from EXIF Make/Model: corporate suffixes dropped ("NIKON CORPORATION" → "Nikon"), all-caps
    makes of more than 3 letters title-cased, the make not repeated in the model ("Canon" + "Canon EOS R5" →
    "Canon EOS R5"), whitespace collapsed. None when both are empty.

    Parameters
    ----------
    make, model : str or None
        EXIF ``Make`` and ``Model``.

    Returns
    -------
    str or None
    """
    mk = " ".join(_MAKE_NOISE.sub(" ", (make or "").replace(",", " ")).split()).strip(" .")
    if mk.isupper() and len(mk) > 3 or mk.islower():
        mk = mk.title()
    md = " ".join((model or "").split())
    for prefix in (mk, ((make or "").split() or [""])[0]):  # "NIKON D850" under make "NIKON CORPORATION"
        if prefix and md.lower().startswith(prefix.lower() + " "):
            md = md[len(prefix):].strip()
            break
    out = f"{mk} {md}".strip()
    return out or None


def read_camera(path) -> str | None:
    """Normalized "Make Model" of a file's EXIF (:func:`normalize_camera`), None where absent or unreadable.

    Parameters
    ----------
    path : str or Path
        A raw file.

    Returns
    -------
    str or None
    """
    import exifread

    try:
        with open(path, "rb") as f:
            tags = exifread.process_file(f, details=False)
    except Exception as exc:  # exifread raises many types on odd files
        log.debug("exifread failed on %s: %s", path, exc)
        return None
    make, model = tags.get("Image Make"), tags.get("Image Model")
    return normalize_camera(str(make.printable if make else ""), str(model.printable if model else ""))


def capture_camera(frames) -> str | None:
    """The most common camera name among frames that carry one.

    Parameters
    ----------
    frames : iterable of FrameInfo
        Frames of a capture.

    Returns
    -------
    str or None
    """
    names = Counter(f.camera for f in frames if f.camera)
    return names.most_common(1)[0][0] if names else None


def read_raw_frame(path) -> tuple[np.ndarray, str, tuple[float, float, float, float], tuple[float, float, float, float]]:
    """(mosaic, CFA pattern, per-site black levels, per-site white levels) of a raw file, read by
    :func:`noisesim.rawio.read_raw` (errors name the file: unreadable, not raw, linear/demosaiced).

    Parameters
    ----------
    path : str or Path
        A raw file.

    Returns
    -------
    mosaic : (H, W) ndarray of uint16
        [DN], black level included.
    cfa : str
        Pattern of the top-left visible pixel.
    black_level_dn, white_level_dn : 4 floats
        Per colour site, Bayer reading order [DN].
    """
    rf = read_raw(path)
    return rf.mosaic, rf.cfa.pattern, rf.black_level_dn, rf.white_level_dn


def pixel_hash(a: np.ndarray) -> str:
    """Content hash of a frame's pixels (shape, dtype and bytes; BLAKE2b-128, hex).

    Parameters
    ----------
    a : ndarray
        Pixels.

    Returns
    -------
    str
        32 hex digits.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.shape}{a.dtype.str}".encode())
    h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def check_finite(a: np.ndarray, path: str) -> None:
    """Refuse a frame with NaN or ±inf pixels: corrupt data, which the estimators would drop or spread silently.

    Integer frames cannot hold them and cost nothing; a float frame costs one ``isfinite`` over its pixels.

    Parameters
    ----------
    a : ndarray
        A frame [DN].
    path : str
        Named in the error.

    Raises
    ------
    InputFileError
        Naming the file and how many values are not finite.
    """
    if a.dtype.kind in "fc":
        finite = np.isfinite(a)
        if not finite.all():
            n = a.size - int(np.count_nonzero(finite))
            raise InputFileError(f"{path}: {n} non-finite value{'s' if n != 1 else ''} (NaN or inf) of {a.size} pixels; "
                                 "a frame must hold finite DN")


def check_levels(black_level_dn, white_level_dn, path: str) -> None:
    """Refuse per-site levels outside ``0 <= black < white <= 65535`` (a swapped or mistyped manifest column;
    a card holds at most 16-bit DN).

    Parameters
    ----------
    black_level_dn, white_level_dn : 4 floats
        Per colour site, Bayer reading order [DN].
    path : str
        The file (or manifest row) named in the error.

    Raises
    ------
    CalibrationError
    """
    for site, (b, w) in enumerate(zip(black_level_dn, white_level_dn)):
        if not (0 <= b < w):
            raise CalibrationError(f"{path}: black level {b:g} DN and white level {w:g} DN (site {site} in Bayer reading "
                                   "order) must satisfy 0 <= black < white")
        if w > MAX_WHITE_DN:
            raise CalibrationError(f"{path}: white level {w:g} DN (site {site}) exceeds the 16-bit range of a card "
                                   f"({MAX_WHITE_DN} DN)")


def _raw_loader(path: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return read_raw(path).mosaic

    return load


def _read_mosaic_array(path) -> np.ndarray:
    """A ``.npy``/``.tiff`` frame via :func:`noisesim.rawio.read_array`, which must be a 2-D mosaic."""
    a = read_array(path)
    if a.ndim != 2:
        raise InputFileError(f"{path}: expected a 2-D CFA mosaic (H, W), got shape {a.shape}")
    return a


def _array_loader(path: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return _read_mosaic_array(path)

    return load


# ------------------------------------------------------------------------------------------------
# in memory


def frame_from_array(array: np.ndarray, *, kind: str, iso: float, exposure_s: float, cfa: str, black_level_dn,
                     white_level_dn, label: str = "<array>") -> FrameInfo:
    """A :class:`FrameInfo` over an in-memory (H, W) mosaic in DN.

    Parameters
    ----------
    array : (H, W) ndarray
        Mosaic [DN], black level included.
    kind : {"dark", "flat"}
        Frame kind.
    iso : float
        ISO.
    exposure_s : float
        Exposure time [s].
    cfa : str
        Pattern of the top-left pixel.
    black_level_dn, white_level_dn : float or 4 floats
        Levels per colour site, Bayer reading order [DN].
    label : str
        Stands for the path in messages.

    Returns
    -------
    FrameInfo
    """
    a = np.asarray(array)
    f = frame_from_loader(lambda: a, shape=a.shape, kind=kind, iso=iso, exposure_s=exposure_s, cfa=cfa,
                          black_level_dn=black_level_dn, white_level_dn=white_level_dn, label=label,
                          integer_valued=a.dtype.kind in "ui")
    return replace(f, content_hash=pixel_hash(a))


def frame_from_loader(loader: Callable[[], np.ndarray], *, shape, kind: str, iso: float, exposure_s: float, cfa: str,
                      black_level_dn, white_level_dn, label: str = "<generated>",
                      integer_valued: bool = True) -> FrameInfo:
    """A :class:`FrameInfo` whose pixels come from ``loader()`` (e.g. a simulator), read when needed.

    Parameters
    ----------
    loader : callable
        ``loader() -> (H, W) ndarray`` [DN], called each time the frame is read.
    shape : (H, W)
        Shape of what ``loader`` returns [px].
    kind : {"dark", "flat"}
        Frame kind.
    iso : float
        ISO.
    exposure_s : float
        Exposure time [s].
    cfa : str
        Pattern of the top-left pixel.
    black_level_dn, white_level_dn : float or 4 floats
        Levels per colour site, Bayer reading order [DN].
    label : str
        Stands for the path in messages.
    integer_valued : bool
        Whether the samples are integer DN (quantized).

    Returns
    -------
    FrameInfo
    """
    if kind not in KINDS:
        raise CalibrationError(f"{label}: kind must be one of {KINDS}, got {kind!r}")
    black, white = _four_levels(black_level_dn, label), _four_levels(white_level_dn, label, "white_level")
    check_levels(black, white, label)
    return FrameInfo(
        path=label, kind=kind, iso=float(iso), exposure_s=float(exposure_s), shape=tuple(int(s) for s in shape),
        cfa=CFA(cfa).pattern, black_level_dn=black, white_level_dn=white,
        kind_source="given", loader=loader, integer_valued=integer_valued,
    )


def _four_levels(v, where: str, key: str = "black_level") -> tuple[float, float, float, float]:
    if isinstance(v, str):
        parts = [p for p in v.replace(";", " ").replace(",", " ").split() if p]
        try:
            v = [float(p) for p in parts]
        except ValueError:
            raise CalibrationError(f"{where}: {key} {v!r} is not a number or 4 numbers") from None
        if len(v) == 1:  # a CSV cell "512": one level for every site
            v = v[0]
    try:
        return per_site_values(v, key)
    except (NoiseSimError, ValueError, TypeError):
        raise CalibrationError(f"{where}: {key} must be one value or 4 per-site values, got {v!r}") from None


def _white_levels(v, where: str) -> tuple[float, float, float, float]:
    """A manifest's ``white_level``: one number > 0 (the usual case) or 4 per-site values."""
    if isinstance(v, (list, tuple)) or (isinstance(v, str) and len(v.replace(";", " ").replace(",", " ").split()) > 1):
        levels = _four_levels(v, where, "white_level")
        if min(levels) <= 0:
            raise CalibrationError(f"{where}: white_level must be > 0, got {list(levels)}")
        return levels
    return (_manifest_number(v, "white_level", where),) * 4


# ------------------------------------------------------------------------------------------------
# manifests


def _manifest_number(v, key: str, where: str) -> float:
    """A manifest field that must be a finite number > 0 (``true`` is not ISO 1, ``"abc"`` not a level)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise CalibrationError(f"{where}: {key} must be a number, got {v!r}")
    try:
        t = float(v)
    except ValueError:
        raise CalibrationError(f"{where}: {key} {v!r} is not a number") from None
    if not (math.isfinite(t) and t > 0):
        raise CalibrationError(f"{where}: {key} must be a finite number > 0, got {v!r}")
    return t


def _parse_exposure(v, where: str) -> float:
    if isinstance(v, bool):
        raise CalibrationError(f"{where}: exposure_s must be a number, got {v!r}")
    if isinstance(v, (int, float)):
        t = float(v)
    else:
        s = str(v).strip()
        try:
            t = float(Fraction(s))  # "1/125", "0.008", "2" — parsed, never evaluated
        except (ValueError, ZeroDivisionError):
            raise CalibrationError(f"{where}: exposure_s {v!r} is not a number or a ratio like 1/125") from None
    if not math.isfinite(t) or t <= 0:
        raise CalibrationError(f"{where}: exposure_s must be > 0, got {v!r}")
    return t


def read_manifest(path, *, progress: Callable[[Iterable], Iterable] | None = None) -> Capture:
    """Read a CSV or TOML manifest of frames.

    CSV: a header row with ``path, kind, iso, exposure_s`` and, for arrays, ``black_level`` (one value or
    4 separated by spaces/semicolons, Bayer reading order), ``white_level`` (likewise), ``cfa``. TOML: a list
    ``[[frame]]`` (or ``[[frames]]``) of tables with the same keys; top-level keys of the same names are
    defaults for every frame. Paths are relative to the manifest. For raw files the levels and CFA may be
    omitted (read from the file) and ISO/exposure are taken from EXIF when not given.

    Parameters
    ----------
    path : str or Path
        The ``.csv`` or ``.toml`` manifest.
    progress : callable, optional
        Wraps the row iterable (e.g. ``tqdm``).

    Returns
    -------
    Capture
        Every listed frame (byte-identical copies used once, in ``problems``).

    Raises
    ------
    InputFileError
        When a listed frame cannot be used (missing, unreadable, truncated, not a 2-D mosaic, non-finite
        pixels, a resolution or CFA unlike the rest, bad levels): the first such entry, naming the manifest
        row and the file, and how many more there are.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: Excel's "CSV UTF-8" starts with a byte-order mark
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder, not a manifest file") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                             "save the manifest as UTF-8") from None
    rows: list[dict] = []
    defaults: dict = {}
    if path.suffix.lower() == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputFileError(f"{path}: not valid TOML ({exc})") from None
        except RecursionError:
            raise InputFileError(f"{path}: arrays or tables nested too deeply to be a manifest") from None
        entries = doc.get("frame", doc.get("frames"))
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise CalibrationError(f"{path}: frame: a TOML manifest needs a [[frame]] array of tables, got {entries!r:.80}")
        defaults = {k: v for k, v in doc.items() if not isinstance(v, (list, dict))}
        rows = [dict(e) for e in entries]
    else:
        reader = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
        if reader.fieldnames is None or "path" not in [f.strip() for f in reader.fieldnames]:
            raise CalibrationError(f"{path}: a CSV manifest needs a header row with at least 'path' and 'kind'")
        rows = [{(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items()} for r in reader]
    frames: list[FrameInfo] = []
    problems: list[CaptureProblem] = []
    for i, row in enumerate(progress(rows) if progress else rows):
        row = {**defaults, **{k: v for k, v in row.items() if v not in (None, "")}}
        where = f"{path} (entry {i + 1})"
        try:
            frames.append(_manifest_frame(row, path.parent, where))
        except (CalibrationError, InputFileError) as exc:
            problems.append(CaptureProblem(where, str(exc)))
    if problems:  # the user named each file: one that cannot be used is an error, not a frame quietly left out
        more = f" (and {len(problems) - 1} more unusable entr{'ies' if len(problems) > 2 else 'y'})" if len(problems) > 1 else ""
        raise InputFileError(f"{problems[0]}{more}")
    capture = Capture(frames, problems, source=str(path))
    return check_consistency(capture, strict=True)


def _manifest_frame(row: dict, base: Path, where: str) -> FrameInfo:
    if "path" not in row:
        raise CalibrationError(f"{where}: missing 'path'")
    fpath = Path(str(row["path"]))
    if not fpath.is_absolute():
        fpath = base / fpath
    if not fpath.exists():
        raise InputFileError(f"{fpath}: listed in the manifest but not found")
    if fpath.is_dir():
        raise InputFileError(f"{fpath}: listed in the manifest but is a folder, not a frame file")
    kind = str(row.get("kind", "")).strip().lower()
    kind = {"darks": "dark", "bias": "dark", "flats": "flat"}.get(kind, kind)
    if kind not in KINDS:
        raise CalibrationError(f"{fpath}: kind must be 'dark' or 'flat', got {row.get('kind')!r}")
    is_array = fpath.suffix.lower() in ARRAY_EXTENSIONS
    if is_array:
        a = _read_mosaic_array(fpath)
        check_finite(a, str(fpath))
        shape, integer = a.shape, a.dtype.kind in "ui" or bool(np.all(a == np.round(a)))
        digest = pixel_hash(a)
        missing = [k for k in ("iso", "exposure_s", "black_level", "white_level", "cfa") if k not in row]
        if missing:
            raise CalibrationError(f"{fpath}: an array frame needs {', '.join(missing)} in the manifest")
        cfa, black = str(row["cfa"]), _four_levels(row["black_level"], str(fpath))
        white = _white_levels(row["white_level"], str(fpath))
        loader = _array_loader(str(fpath))
        iso, exposure = row["iso"], row["exposure_s"]
        camera = None
    else:
        raw, cfa, black, white = read_raw_frame(fpath)
        shape, integer = raw.shape, True
        digest = pixel_hash(raw)
        if "cfa" in row:
            cfa = str(row["cfa"])
        if "black_level" in row:
            black = _four_levels(row["black_level"], str(fpath))
        if "white_level" in row:
            white = _white_levels(row["white_level"], str(fpath))
        e_iso, e_exp = read_exif(fpath)
        iso = row.get("iso", e_iso)
        exposure = row.get("exposure_s", e_exp)
        if iso is None or exposure is None:
            raise CalibrationError(f"{fpath}: no ISO/exposure time in the manifest or the file's EXIF")
        loader = _raw_loader(str(fpath))
        camera = read_camera(fpath)
    iso_f = _manifest_number(iso, "iso", str(fpath))
    check_levels(black, white, str(fpath))
    try:
        cfa = CFA(cfa).pattern
    except CFAError as exc:
        raise CalibrationError(f"{fpath}: {exc}") from None
    return FrameInfo(str(fpath), kind, iso_f, _parse_exposure(exposure, str(fpath)), tuple(shape), cfa, black,
                     white, "manifest", loader, integer, digest, camera)


# ------------------------------------------------------------------------------------------------
# capture folders


def _kind_from_folders(rel: Path) -> str | None:
    for part in rel.parts[:-1]:
        p = part.lower()
        if p in DARK_FOLDERS:
            return "dark"
        if p in FLAT_FOLDERS:
            return "flat"
    return None


def _classify_by_signal(raw: np.ndarray, cfa: str, black, white) -> str:
    """'dark' when the mean signal above black is small against the frame's spread and the range."""
    c = CFA(cfa)
    packed = c.pack(raw).astype(np.float64)
    bl = np.asarray(black)[c.site_index.ravel()][:, None, None] if c.n_channels == 4 else c.tile_values(black).ravel()[:, None, None]
    sig = packed - bl
    above = float(np.mean(sig))
    spread = float(np.median(np.std(sig.reshape(sig.shape[0], -1), axis=1)))
    range_dn = float(np.mean(white)) - float(np.mean(black))
    return "flat" if above > max(3.0 * spread, 0.002 * range_dn) else "dark"


def scan_capture(path, *, progress: Callable[[Iterable], Iterable] | None = None) -> Capture:
    """Scan a capture folder (or read a manifest file) into a :class:`Capture`.

    Parameters
    ----------
    path : str or Path
        A folder with ``darks/`` and ``flats/`` subfolders (any nesting, any raw format rawpy opens), or a
        ``.csv``/``.toml`` manifest.
    progress : callable, optional
        Wraps the file iterable (e.g. ``tqdm``) for a progress bar.

    Returns
    -------
    Capture
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: capture folder or manifest not found")
    if path.is_file():
        if path.suffix.lower() in (".csv", ".toml"):
            return read_manifest(path, progress=progress)
        raise CalibrationError(f"{path}: expected a capture folder or a .csv/.toml manifest")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts))
    manifests = [p for p in files if p.suffix.lower() in (".csv", ".toml") and p.parent == path and p.stem.lower() in ("manifest", "capture")]
    if manifests:
        log.info("using manifest %s", manifests[0])
        return read_manifest(manifests[0], progress=progress)
    frames: list[FrameInfo] = []
    problems: list[CaptureProblem] = []
    candidates = [p for p in files if p.suffix.lower() not in IGNORED_SUFFIXES]
    iterable = progress(candidates) if progress else candidates
    for p in iterable:
        rel = p.relative_to(path)
        if p.suffix.lower() in ARRAY_EXTENSIONS:
            problems.append(CaptureProblem(str(p), "array files (.npy/.tiff) carry no ISO, exposure or levels: list them in a manifest (CSV/TOML); skipped"))
            continue
        try:
            raw, cfa, black, white = read_raw_frame(p)
        except InputFileError as exc:
            problems.append(CaptureProblem(str(p), str(exc).removeprefix(f"{p}: ") + "; skipped"))
            continue
        iso, exposure = read_exif(p)
        if iso is None or exposure is None:
            missing = " and ".join(n for n, v in (("ISO", iso), ("exposure time", exposure)) if v is None)
            problems.append(CaptureProblem(str(p), f"no {missing} in the EXIF; give a manifest (CSV/TOML) with iso and exposure_s; skipped"))
            continue
        kind = _kind_from_folders(rel)
        source = "folder"
        if kind is None:
            kind = _classify_by_signal(raw, cfa, black, white)
            source = "signal"
            problems.append(CaptureProblem(str(p), f"not under a darks/ or flats/ folder; classified as {kind} from its mean signal"))
        frames.append(FrameInfo(str(p), kind, float(iso), float(exposure), tuple(raw.shape), cfa, black, white, source,
                                _raw_loader(str(p)), True, pixel_hash(raw), read_camera(p)))
        del raw
    capture = Capture(frames, problems, source=str(path))
    return check_consistency(capture)


def check_consistency(capture: Capture, *, strict: bool = False) -> Capture:
    """Drop byte-identical copies of a frame (a file manager's ``flat (1).dng``: it would pair a frame with
    itself) and frames whose resolution or CFA disagrees with the majority, naming each file.

    Parameters
    ----------
    capture : Capture
        As scanned.
    strict : bool
        A frame whose resolution or CFA disagrees is an error instead (a manifest, where the user listed it).

    Returns
    -------
    Capture
        The kept frames; each dropped one is added to ``problems``.
    """
    if not capture.frames:
        return capture
    first: dict[str, FrameInfo] = {}
    unique = []
    for f in sorted(capture.frames, key=lambda f: (len(f.path), f.path)):  # the shortest name is the original
        if f.content_hash is not None and f.content_hash in first:
            capture.problems.append(CaptureProblem(f.path, f"byte-identical to {first[f.content_hash].path} (a copy?); "
                                                   "that frame is used once"))
            continue
        if f.content_hash is not None:
            first[f.content_hash] = f
        unique.append(f)
    dropped = {id(f) for f in capture.frames} - {id(f) for f in unique}
    capture.frames = [f for f in capture.frames if id(f) not in dropped]
    keyed = Counter((f.shape, f.cfa) for f in capture.frames)
    (shape, cfa), _ = keyed.most_common(1)[0]
    keep = []
    for f in capture.frames:
        if (f.shape, f.cfa) == (shape, cfa):
            keep.append(f)
            continue
        what = (f"resolution {f.shape[1]}×{f.shape[0]} differs from the rest of the capture ({shape[1]}×{shape[0]})"
                if f.shape != shape else f"CFA {f.cfa} differs from the rest of the capture ({cfa})")
        if strict:
            raise InputFileError(f"{capture.source}: {f.path}: {what}")
        capture.problems.append(CaptureProblem(f.path, f"{what}; skipped"))
    capture.frames = keep
    return capture


def group_frames(frames: Iterable[FrameInfo]) -> dict[tuple[str, float, float], list[FrameInfo]]:
    """Group frames by (kind, iso, exposure_s), each group sorted by path (capture order for most cameras).

    Exposure times are compared to 6 significant digits (EXIF ratios such as 1/125 are exact).

    Parameters
    ----------
    frames : iterable of FrameInfo
        Frames of a capture.

    Returns
    -------
    dict
        (kind, iso, exposure_s [s]) → frames of that group.
    """
    groups: dict[tuple[str, float, float], list[FrameInfo]] = {}
    for f in frames:
        key = (f.kind, f.iso, float(f"{f.exposure_s:.6g}"))
        groups.setdefault(key, []).append(f)
    return {k: sorted(v, key=lambda f: f.path) for k, v in sorted(groups.items())}


def modal_levels(frames: Iterable[FrameInfo]) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """The most common declared black level and white level of some frames, per colour site [DN].

    Parameters
    ----------
    frames : iterable of FrameInfo
        Frames that should share their levels.

    Returns
    -------
    (black_level_dn, white_level_dn) : (4 floats, 4 floats)
    """
    frames = list(frames)
    blacks = [f.black_level_dn for f in frames]
    whites = [f.white_level_dn for f in frames]
    return max(set(blacks), key=blacks.count), max(set(whites), key=whites.count)
