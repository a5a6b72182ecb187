"""Cards from darktable's noise profiles (``noiseprofiles.json``, from the user's own darktable install).

darktable (GPL-3) ships per camera model and ISO a Poisson–Gaussian fit ``a``, ``b`` for each of R, G, B;
noisesim reads the user's copy of the file and ships none of it. The convention, as established from
darktable's source (details and what stays unsettled: docs/importers.md):

* the brightness x is darktable's pipeline value, scaled so that 0 is black and 1 the white level
  (the raw scale after black subtraction and division by white − black);
* ``a·x + b`` is a *variance* in those units: darktable's profiling tool fits the squared noise σ per
  brightness bin with a straight line, without constraining the intercept — so ``b`` can come out
  negative;
* darktable's denoise module uses the green pair only (and rescales it by the white-balance coefficients
  per channel), so the card is built from green: K = a_G · R [DN/e⁻] and read σ = √b_G · R [DN] for a raw
  range R = white − black. A negative b_G gives read σ = 0, listed in the provenance.

The file carries no black or white levels; unless given, the card uses a nominal 14-bit range
(black 0, white 16383) and marks it so. K and σ in DN scale with that range; the normalized noise
``a·x + b`` the card reproduces does not depend on it.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..card import Card, search_key, camera_matches
from ..errors import InputFileError
from ..params import Sensor
from .profile import ProfilePoint, bit_depth_for, card_name, gain_and_variance_dn, poisson_gaussian_card

__all__ = ["card_from_darktable", "darktable_cameras", "looks_like_darktable", "SOURCE"]

SOURCE = "darktable noiseprofiles.json (the user's copy), Poisson–Gaussian only, green channel"
NOMINAL_BLACK_DN = 0.0
NOMINAL_WHITE_DN = 16383.0


def looks_like_darktable(doc: Any) -> bool:
    """Whether parsed JSON has darktable's layout (a top-level ``noiseprofiles`` list).

    Parameters
    ----------
    doc : object
        Parsed JSON.

    Returns
    -------
    bool
    """
    return isinstance(doc, dict) and isinstance(doc.get("noiseprofiles"), list)


def _label(maker: str, model: str) -> str:
    """``Canon`` + ``EOS 6D`` → ``Canon EOS 6D``; ``NIKON CORPORATION`` + ``NIKON D750`` → ``NIKON D750``."""
    first = maker.split()[0] if maker.split() else ""
    return model if first and search_key(model).startswith(search_key(first)) else f"{maker} {model}".strip()


def darktable_cameras(doc: dict, where: str = "noiseprofiles.json") -> list[tuple[str, str, dict]]:
    """(maker, model, entry) of every camera in a parsed darktable file, entries marked ``skip`` left out.

    Parameters
    ----------
    doc : dict
        Parsed ``noiseprofiles.json``.
    where : str
        The file, for error messages.

    Returns
    -------
    list of (str, str, dict)
    """
    out = []
    for mi, maker_entry in enumerate(doc.get("noiseprofiles", [])):
        if not isinstance(maker_entry, dict) or not isinstance(maker_entry.get("models"), list):
            raise InputFileError(f"{where}: noiseprofiles[{mi}] is not a {{maker, models}} entry")
        maker = str(maker_entry.get("maker", ""))
        for model_entry in maker_entry["models"]:
            if not isinstance(model_entry, dict) or model_entry.get("skip"):
                continue
            out.append((maker, str(model_entry.get("model", "")), model_entry))
    return out


def _choose(cameras, query: str | None, where: str):
    if query is None:
        if len(cameras) == 1:
            return cameras[0]
        some = ", ".join(_label(m, n) for m, n, _ in cameras[:5])
        raise InputFileError(f"{where}: holds {len(cameras)} cameras; choose one with --camera (e.g. {some}, …)")
    hits = [c for c in cameras if camera_matches(query, c[0], c[1])]
    exact = [c for c in hits if search_key(_label(c[0], c[1])) == search_key(query) or search_key(c[1]) == search_key(query)]
    if len(exact) == 1:
        return exact[0]
    # "canon 6d" means the EOS 6D, not the EOS 6D Mark II: prefer the one name that ends with the last word
    last = search_key(query.split()[-1]) if query.split() else ""
    ending = [c for c in hits if last and search_key(_label(c[0], c[1])).endswith(last)]
    if len(ending) == 1:
        return ending[0]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise InputFileError(f"{where}: no camera matches {query!r} (search ignores case and punctuation)")
    names = ", ".join(_label(m, n) for m, n, _ in hits[:8])
    raise InputFileError(f"{where}: {len(hits)} cameras match {query!r}: {names}{', …' if len(hits) > 8 else ''}; be more specific")


def card_from_darktable(
    path: str | Path,
    *,
    camera: str | None = None,
    name: str | None = None,
    black_level_dn: float | None = None,
    white_level_dn: float | None = None,
) -> Card:
    """A Poisson–Gaussian card of one camera from darktable's ``noiseprofiles.json``.

    Parameters
    ----------
    path : path
        The user's ``noiseprofiles.json`` (e.g. ``/usr/share/darktable/noiseprofiles.json``).
    camera : str, optional
        Make and model to pick (case and punctuation ignored, ``"canon 6d"`` finds ``Canon EOS 6D``);
        needed when the file holds more than one camera.
    name : str, optional
        The card's name (default: make and model without spaces).
    black_level_dn, white_level_dn : float, optional
        The camera's raw levels [DN], to express K and σ in its DN; nominal 0 / 16383 when not given.

    Returns
    -------
    Card
        One ISO row per profile, K [DN/e⁻] and Gaussian read σ [DN] in the given levels' DN.

    Raises
    ------
    InputFileError
        Not darktable's layout, no or several matching cameras, a profile without a usable green pair.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: cannot be read as JSON ({type(exc).__name__}: {exc})") from None
    if not looks_like_darktable(doc):
        raise InputFileError(f"{path}: not darktable's noiseprofiles.json (no top-level \"noiseprofiles\" list)")
    maker, model, entry = _choose(darktable_cameras(doc, str(path)), camera, str(path))
    nominal = black_level_dn is None and white_level_dn is None
    black = NOMINAL_BLACK_DN if black_level_dn is None else float(black_level_dn)
    white = NOMINAL_WHITE_DN if white_level_dn is None else float(white_level_dn)
    if not white > black >= 0:
        raise InputFileError(f"{path}: white level {white} must exceed black level {black} >= 0")
    range_dn = white - black
    points, skipped = [], []
    for i, prof in enumerate(entry.get("profiles", [])):
        where = f"{path}: {_label(maker, model)} profile {i}"
        if not isinstance(prof, dict):
            raise InputFileError(f"{where}: not an object")
        if prof.get("skip"):
            skipped.append(str(prof.get("name", i)))
            continue
        try:
            iso = float(prof["iso"])
            a_g, b_g = float(prof["a"][1]), float(prof["b"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise InputFileError(f"{where}: needs iso and a, b lists of 3 numbers (R, G, B)") from None
        if not a_g > 0:
            raise InputFileError(f"{where} (ISO {iso:g}): green slope a = {a_g!r}; darktable's own profiling rejects a green a <= 0")
        k, var = gain_and_variance_dn(a_g, b_g, range_dn)
        r_b = [prof["a"][0], prof["a"][2]]
        points.append(ProfilePoint(iso, k, var, source=str(prof.get("name", f"profile {i}")),
                                   note=f"darktable a = {a_g:.6g}, b = {b_g:.6g} (green); red/blue a = {r_b[0]:.6g}, {r_b[1]:.6g} not used"))
    if not points:
        raise InputFileError(f"{path}: {_label(maker, model)} has no usable profile")
    notes = [
        "darktable's (a, b) are a variance a·x + b of darktable's normalized raw value x ∈ [0, 1] (0 = black, "
        "1 = white); green pair used: K = a_G · (white − black), read σ = √b_G · (white − black).",
        "darktable measures noise on a demosaiced export with a one-level Haar wavelet and fits a line to the "
        "squared σ; its absolute scale relative to per-pixel raw variance is not established (docs/importers.md).",
    ]
    if nominal:
        notes.append(f"UNSOURCED: black {black:g} DN and white {white:g} DN are nominal (14-bit); darktable's profiles "
                     "carry no levels. Pass the camera's levels to express K and σ in its own DN.")
    if skipped:
        notes.append(f"profiles marked skip in the file, left out: {', '.join(skipped)}")
    provenance = {
        "source": SOURCE,
        "camera_entry": f"{maker} / {model}" + (f" ({entry['comment']})" if entry.get("comment") else ""),
        "files": [path.name],
        "date": datetime.date.today().isoformat(),
        "software": f"noisesim {__version__} noisesim.importers.darktable",
        "license": "darktable is GPL-3; the numbers were read from the user's own copy of noiseprofiles.json",
        "kind": "Poisson–Gaussian: K and Gaussian read σ per ISO; no Tukey-lambda, row, column or fixed-pattern terms",
        "notes": notes,
    }
    sensor = Sensor(cfa="RGGB", bit_depth=bit_depth_for(white), black_level_dn=black, white_level_dn=white)
    prov_notes_cfa = "UNSOURCED: CFA RGGB is nominal; darktable's profiles are per colour, not per CFA position."
    provenance["notes"].append(prov_notes_cfa)
    return poisson_gaussian_card(name=name or card_name("", _label(maker, model), "DarktableCamera"), make=maker, model=_label(maker, model),
                                 sensor=sensor, points=points, provenance=provenance, where=str(path))
