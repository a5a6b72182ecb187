"""Cards from the maker's noise model in DNG files (the ``NoiseProfile`` tag, 51041).

Each DNG gives one ISO (from its EXIF). Per colour plane the tag holds (S, O): variance = S·x + O for the
normalized signal x = (DN − black) / (white − black), one pair for all planes or one per plane
(``CFAPlaneColor`` order). It is converted with the file's own levels (:mod:`noisesim.importers.profile`):
K = (white − black) · S [DN/e⁻], read σ = (white − black) · √O [DN].

A card has one K and one read σ per ISO, so with one pair per plane the green plane is used (half of a
Bayer mosaic's pixels; the pair least disturbed by white balance, which a maker's profile does not include
anyway). The other planes' values are listed in the provenance.

A linear (demosaiced) DNG, such as Apple ProRAW, is recognised: its profile describes the demosaiced
planes, after the maker's interpolation and denoising, so the card says so and its CFA (RGGB) is nominal.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..card import Card
from ..errors import InputFileError
from ..params import Sensor
from ..rawio import DNGMetadata, read_dng_metadata
from .profile import ProfilePoint, bit_depth_for, card_name, gain_and_variance_dn, poisson_gaussian_card

__all__ = ["card_from_dngs", "SOURCE", "LINEAR_NOTE"]

SOURCE = "maker's NoiseProfile, Poisson–Gaussian only"
LINEAR_NOTE = (
    "linear (demosaiced) DNG: the NoiseProfile describes the maker's demosaiced planes, not the sensor's raw "
    "pixels; interpolation and any in-camera denoising have already changed the noise, so the card's K and σ "
    "are those of the demosaiced image and its CFA (RGGB) is nominal"
)


def _plane_ranges(md: DNGMetadata) -> dict[str, float]:
    """White − black [DN] per plane colour (averaged over a CFA's sites of that colour)."""
    if md.linear:
        return {c: w - b for c, w, b in zip("RGB", md.white_level_dn, md.black_level_dn)}
    out: dict[str, list[float]] = {}
    for c, w, b in zip(md.cfa.bayer, md.white_level_dn, md.black_level_dn):
        out.setdefault(c, []).append(w - b)
    return {c: sum(v) / len(v) for c, v in out.items()}


def _point(md: DNGMetadata) -> ProfilePoint:
    path = md.path
    if md.noise_profile is None:
        raise InputFileError(f"{path}: no NoiseProfile tag (51041) in this DNG; the maker wrote no noise model")
    if md.iso is None:
        raise InputFileError(f"{path}: no ISO (ISOSpeedRatings) in its EXIF; cannot place the profile on an ISO axis")
    ranges = _plane_ranges(md)
    pairs = md.noise_profile
    if len(pairs) == 1:
        plane, (s, o) = "G", pairs[0]
        note = "one NoiseProfile pair for all planes"
    else:
        if "G" not in md.plane_colors:
            raise InputFileError(f"{path}: NoiseProfile planes {md.plane_colors!r} have no green plane to take K from")
        i = md.plane_colors.index("G")
        plane, (s, o) = "G", pairs[i]
        others = []
        for c, (si, oi) in zip(md.plane_colors, pairs):
            if c == "G" and (si, oi) == (s, o):
                continue
            k, v = gain_and_variance_dn(si, oi, ranges.get(c, ranges["G"]))
            others.append(f"{c}: K {k:.6g} DN/e⁻, read σ {math.sqrt(max(v, 0)):.6g} DN")
        note = "per-plane NoiseProfile, green plane used" + (f" (other planes: {'; '.join(others)})" if others else "")
    k, var = gain_and_variance_dn(s, o, ranges[plane])
    black = None if md.linear else tuple(md.black_level_dn)
    return ProfilePoint(md.iso, k, var, source=path.name, note=note, black_level_dn=black)


def card_from_dngs(paths: Sequence[str | Path], *, name: str | None = None) -> Card:
    """A Poisson–Gaussian card from the NoiseProfile tags of one or more DNGs of one camera (one ISO each;
    several files at one ISO are averaged).

    Parameters
    ----------
    paths : sequence of str or Path
        DNG files (CFA or linear, not mixed).
    name : str, optional
        The card's name (default: from make and model).

    Returns
    -------
    Card

    Raises
    ------
    InputFileError
        A file without a NoiseProfile or ISO, files of different cameras, levels or kinds (CFA vs linear),
        naming the files.
    """
    metas = [read_dng_metadata(p) for p in paths]
    if not metas:
        raise InputFileError("no DNG files given")
    first = metas[0]
    for md in metas[1:]:
        if (md.make, md.model) != (first.make, first.model):
            raise InputFileError(f"{md.path}: camera {md.make} {md.model!s} differs from {first.path.name}'s "
                                 f"{first.make} {first.model}; one card describes one camera")
        if md.linear != first.linear:
            raise InputFileError(f"{md.path}: a {'linear' if md.linear else 'CFA'} DNG among {'linear' if first.linear else 'CFA'} ones ({first.path.name})")
        if md.white_level_dn != first.white_level_dn or (md.cfa and first.cfa and md.cfa.pattern != first.cfa.pattern):
            raise InputFileError(f"{md.path}: white level or CFA differs from {first.path.name}'s; one card has one raw format")
    points = [_point(md) for md in metas]
    lowest = min(metas, key=lambda m: m.iso)
    if first.linear:
        r, g, b = lowest.black_level_dn
        black4, cfa = (r, g, g, b), "RGGB"
    else:
        black4, cfa = tuple(lowest.black_level_dn), lowest.cfa.pattern
    white = max(first.white_level_dn)  # a DNG states one white level: all values are equal
    sensor = Sensor(cfa=cfa, bit_depth=bit_depth_for(white), black_level_dn=black4, white_level_dn=white)
    notes = [f"Converted with each file's own levels: K = (white − black) · S, read σ = (white − black) · √O, "
             f"white {white:g} DN."]
    if first.linear:
        notes.insert(0, LINEAR_NOTE)
    provenance = {
        "source": SOURCE + (" (linear DNG)" if first.linear else ""),
        "files": [str(md.path.name) for md in metas],
        "date": datetime.date.today().isoformat(),
        "software": f"noisesim {__version__} noisesim.importers.dng_profile",
        "kind": "Poisson–Gaussian: K and Gaussian read σ per ISO; no Tukey-lambda, row, column or fixed-pattern terms",
        "notes": notes,
    }
    return poisson_gaussian_card(
        name=name or card_name(first.make, first.model, "ImportedDNG"),
        make=first.make,
        model=first.model,
        sensor=sensor,
        points=points,
        provenance=provenance,
        where=str(first.path) if len(metas) == 1 else f"{first.path} (and {len(metas) - 1} more)",
    )
