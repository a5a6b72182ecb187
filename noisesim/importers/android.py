"""Cards from Android camera2 capture results (``SENSOR_NOISE_PROFILE`` with ``SENSOR_SENSITIVITY``).

``android.sensor.noiseProfile`` holds, per CFA channel in the order of the 2×2 colour filter arrangement
(``android.sensor.info.colorFilterArrangement``: RGGB, GRBG, GBRG, BGGR, read row by row), a pair (S, O)
with the meaning of the DNG NoiseProfile tag: noise σ = √(S·x + O) for the channel's signal normalized to
[0, 1]. ``android.sensor.sensitivity`` is the ISO of the capture.

Accepted JSON (a dump of capture results): one result object, a list of them, or an object with a list
under ``captureResults`` / ``results`` / ``captures`` and the camera characteristics under
``characteristics``. Keys may be the metadata names (``android.sensor.noiseProfile``) or the Java field
names (``SENSOR_NOISE_PROFILE``); a pair may be ``[S, O]`` or ``{"first": S, "second": O}`` (Gson's
``Pair``). Levels come from ``android.sensor.dynamicBlackLevel`` / ``dynamicWhiteLevel`` of a result, else
``android.sensor.blackLevelPattern`` / ``android.sensor.info.whiteLevel`` of the characteristics; the CFA
from ``android.sensor.info.colorFilterArrangement``; make and model from ``android.build.manufacturer`` /
``model`` or ``make`` / ``model`` where the dump has them.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

from .. import __version__
from ..card import Card
from ..errors import InputFileError
from ..params import Sensor
from .profile import ProfilePoint, bit_depth_for, card_name, gain_and_variance_dn, poisson_gaussian_card

__all__ = ["card_from_android_dump", "looks_like_android_dump", "SOURCE"]

SOURCE = "Android camera2 SENSOR_NOISE_PROFILE (maker's noise model), Poisson–Gaussian only"
_ARRANGEMENTS = {0: "RGGB", 1: "GRBG", 2: "GBRG", 3: "BGGR"}
_KEYS = {
    "noise": ("android.sensor.noiseProfile", "SENSOR_NOISE_PROFILE"),
    "iso": ("android.sensor.sensitivity", "SENSOR_SENSITIVITY"),
    "black": ("android.sensor.dynamicBlackLevel", "SENSOR_DYNAMIC_BLACK_LEVEL"),
    "white": ("android.sensor.dynamicWhiteLevel", "SENSOR_DYNAMIC_WHITE_LEVEL"),
    "black_pattern": ("android.sensor.blackLevelPattern", "SENSOR_BLACK_LEVEL_PATTERN"),
    "white_char": ("android.sensor.info.whiteLevel", "SENSOR_INFO_WHITE_LEVEL"),
    "cfa": ("android.sensor.info.colorFilterArrangement", "SENSOR_INFO_COLOR_FILTER_ARRANGEMENT"),
    "make": ("android.build.manufacturer", "manufacturer", "make", "MANUFACTURER"),
    "model": ("android.build.model", "model", "MODEL"),
}
_LISTS = ("captureResults", "capture_results", "results", "captures")


def _get(obj: dict, what: str):
    for key in _KEYS[what]:
        if key in obj:
            return obj[key]
    return None


def looks_like_android_dump(doc: Any) -> bool:
    """Whether parsed JSON holds at least one capture result with a noise profile.

    Parameters
    ----------
    doc : object
        Parsed JSON.

    Returns
    -------
    bool
    """
    try:
        return any(_get(r, "noise") is not None for r in _results(doc)[1])
    except InputFileError:
        return False


def _results(doc: Any) -> tuple[dict, list[dict]]:
    chars: dict = {}
    if isinstance(doc, dict):
        chars = doc.get("characteristics") or doc.get("cameraCharacteristics") or {}
        for key in _LISTS:
            if isinstance(doc.get(key), list):
                return chars, [r for r in doc[key] if isinstance(r, dict)]
        return chars, [doc]
    if isinstance(doc, list):
        return chars, [r for r in doc if isinstance(r, dict)]
    raise InputFileError("not a capture-result dump (expected a JSON object or list)")


def _pairs(value, where: str) -> list[tuple[float, float]]:
    if not isinstance(value, list) or not value:
        raise InputFileError(f"{where}: SENSOR_NOISE_PROFILE must be a list of (S, O) pairs, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, dict) and "first" in item and "second" in item:
            item = [item["first"], item["second"]]
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise InputFileError(f"{where}: SENSOR_NOISE_PROFILE entry {item!r} is not an (S, O) pair")
        try:
            s, o = float(item[0]), float(item[1])
        except (TypeError, ValueError):
            raise InputFileError(f"{where}: SENSOR_NOISE_PROFILE entry {item!r} is not numeric") from None
        if not (math.isfinite(s) and math.isfinite(o)):
            raise InputFileError(f"{where}: SENSOR_NOISE_PROFILE entry {item!r} is not finite")
        out.append((s, o))
    if len(out) not in (1, 4):
        raise InputFileError(f"{where}: SENSOR_NOISE_PROFILE has {len(out)} pairs; expected 4 (one per CFA channel)")
    return out


def _four(value, where: str, what: str) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    if isinstance(value, dict):  # BlackLevelPattern as {"pattern": [...]} or similar
        value = next((v for v in value.values() if isinstance(v, list)), None)
    if isinstance(value, (int, float)):
        value = [value] * 4
    flat = [v for row in value for v in (row if isinstance(row, list) else [row])] if isinstance(value, list) else None
    if not flat or len(flat) != 4:
        raise InputFileError(f"{where}: {what} must hold 4 values (2×2 CFA order), got {value!r}")
    return tuple(float(v) for v in flat)  # type: ignore[return-value]


def card_from_android_dump(path: str | Path, *, name: str | None = None) -> Card:
    """A Poisson–Gaussian card from a JSON dump of camera2 capture results (one or more ISOs).

    Parameters
    ----------
    path : str or Path
        The JSON dump.
    name : str, optional
        The card's name (default: from make and model).

    Returns
    -------
    Card

    Raises
    ------
    InputFileError
        Not JSON, no result with a noise profile and sensitivity, no levels or CFA, naming the file.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: cannot be read as JSON ({type(exc).__name__}: {exc})") from None
    chars, results = _results(doc)
    where = str(path)
    results = [r for r in results if _get(r, "noise") is not None]
    if not results:
        raise InputFileError(f"{path}: no capture result with android.sensor.noiseProfile (SENSOR_NOISE_PROFILE)")
    top = doc if isinstance(doc, dict) else {}
    cfa_code = _get(chars, "cfa") if _get(chars, "cfa") is not None else _get(top, "cfa")
    if cfa_code is None:
        cfa_code = next((_get(r, "cfa") for r in results if _get(r, "cfa") is not None), None)
    if isinstance(cfa_code, str) and cfa_code.upper() in _ARRANGEMENTS.values():
        cfa = cfa_code.upper()
    elif cfa_code in _ARRANGEMENTS:
        cfa = _ARRANGEMENTS[cfa_code]
    else:
        raise InputFileError(f"{path}: android.sensor.info.colorFilterArrangement is {cfa_code!r}; expected 0–3 "
                             "(RGGB, GRBG, GBRG, BGGR) — a monochrome or RGB sensor has no Bayer noise profile")
    points, blacks, whites = [], [], []
    for i, r in enumerate(results):
        at = f"{path}: result {i}"
        iso = _get(r, "iso")
        if not isinstance(iso, (int, float)) or isinstance(iso, bool) or iso <= 0:
            raise InputFileError(f"{at}: android.sensor.sensitivity (SENSOR_SENSITIVITY) is {iso!r}; need a positive ISO")
        pairs = _pairs(_get(r, "noise"), at)
        black = _four(_get(r, "black"), at, "android.sensor.dynamicBlackLevel") or _four(_get(chars, "black_pattern"), where, "android.sensor.blackLevelPattern")
        white = _get(r, "white") if _get(r, "white") is not None else _get(chars, "white_char")
        if black is None or white is None:
            raise InputFileError(f"{at}: no black or white level (android.sensor.dynamicBlackLevel / dynamicWhiteLevel, "
                                 "or characteristics android.sensor.blackLevelPattern / info.whiteLevel)")
        white = float(white)
        ranges = [white - b for b in black]
        if len(pairs) == 1:
            pairs = pairs * 4
        greens = [j for j, c in enumerate(cfa) if c == "G"]
        ks_vs = [gain_and_variance_dn(s, o, rg) for (s, o), rg in zip(pairs, ranges)]
        k = sum(ks_vs[j][0] for j in greens) / 2
        var = sum(ks_vs[j][1] for j in greens) / 2
        others = "; ".join(f"{c}: K {kv[0]:.6g} DN/e⁻, σ² {kv[1]:.6g} DN²" for c, kv in zip(cfa, ks_vs) if c != "G")
        points.append(ProfilePoint(float(iso), k, var, source=f"result {i}", black_level_dn=black,
                                   note=f"mean of the two green channels ({others})"))
        blacks.append((float(iso), black))
        whites.append(white)
    if len(set(whites)) != 1:
        raise InputFileError(f"{path}: white levels differ between results ({sorted(set(whites))}); one card has one white level")
    black4 = min(blacks)[1]
    sensor = Sensor(cfa=cfa, bit_depth=bit_depth_for(whites[0]), black_level_dn=black4, white_level_dn=whites[0])
    make = str(_get(top, "make") or _get(chars, "make") or "")
    model = str(_get(top, "model") or _get(chars, "model") or "")
    provenance = {
        "source": SOURCE,
        "files": [path.name],
        "date": datetime.date.today().isoformat(),
        "software": f"noisesim {__version__} noisesim.importers.android",
        "kind": "Poisson–Gaussian: K and Gaussian read σ per ISO; no Tukey-lambda, row, column or fixed-pattern terms",
        "notes": ["K = (white − black) · S and read σ = (white − black) · √O per channel with the capture's own levels; "
                  "the card's K and σ² are the means over the two green channels."],
    }
    return poisson_gaussian_card(name=name or card_name(make, model, "AndroidCamera"), make=make, model=model,
                                 sensor=sensor, points=points, provenance=provenance, where=where)
