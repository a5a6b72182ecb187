"""Poisson–Gaussian noise profiles: the one model behind a DNG NoiseProfile, Android's
``SENSOR_NOISE_PROFILE`` and darktable's profiles, and its conversion to and from a card's units.

A profile gives, per colour plane, a pair (S, O) such that the noise variance of a pixel whose noise-free
normalized signal is x = (DN − black) / (white − black) ∈ [0, 1] is ``S · x + O`` (both in normalized²).
In DN of the raw scale, with R = white − black [DN] and the signal x_DN = R · x above black::

    Var[DN²] = R² · (S · x + O) = (R · S) · x_DN + R² · O

so the system gain is K = R · S [DN/e⁻] (EMVA 1288: the slope of the photon-transfer curve) and the
signal-independent variance is R² · O [DN²], the Gaussian read σ being its square root.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..card import Camera, Card, ISOEntry
from ..cfa import per_site_values
from ..errors import InputFileError
from ..params import NoiseParams, Sensor

__all__ = ["ProfilePoint", "bit_depth_for", "card_name", "gain_and_variance_dn", "normalized_pair", "params_noise_profile", "poisson_gaussian_card"]


def gain_and_variance_dn(s: float, o: float, range_dn: float) -> tuple[float, float]:
    """(K [DN/e⁻], signal-independent variance [DN²]) of a normalized pair (S, O) on a span of ``range_dn``
    = white − black [DN]. The variance is returned as given, negative included.

    Parameters
    ----------
    s, o : float
        NoiseProfile pair: variance = S·x + O for the normalized signal x.
    range_dn : float
        White − black [DN].

    Returns
    -------
    gain_k_dn_per_e : float
        K [DN/e⁻].
    variance_dn2 : float
        Signal-independent variance [DN²].
    """
    return s * range_dn, o * range_dn * range_dn


def normalized_pair(gain_k_dn_per_e: float, variance_dn2: float, range_dn: float) -> tuple[float, float]:
    """The inverse of :func:`gain_and_variance_dn`: (S, O) in normalized units.

    Parameters
    ----------
    gain_k_dn_per_e : float
        K [DN/e⁻].
    variance_dn2 : float
        Signal-independent variance [DN²].
    range_dn : float
        White − black [DN].

    Returns
    -------
    s, o : float
        Normalized NoiseProfile pair.
    """
    return gain_k_dn_per_e / range_dn, variance_dn2 / (range_dn * range_dn)


def params_noise_profile(params: NoiseParams, sensor: Sensor) -> tuple[tuple[float, float], ...]:
    """Per colour plane (R, G, B, the DNG ``CFAPlaneColor`` order) the (S, O) of the DNG NoiseProfile tag that
    describes a frame simulated with ``params`` on ``sensor``.

    S = K / R and O = (σ_read² + σ_row² + σ_col²) / R², with σ_read the standard deviation of the read-noise
    model in use (Tukey-lambda or Gaussian): the Poisson–Gaussian summary of the full model, as a maker's
    NoiseProfile is. R = white − black of the plane's sites (averaged over the plane's sites; the per-ISO
    black level of ``params`` when it has one). The 1/12 DN² of integer quantization is left out, as the
    importers do not remove it: a card written into a DNG and imported back keeps its K and read σ.

    Parameters
    ----------
    params : NoiseParams
        The parameters a frame is simulated with.
    sensor : Sensor
        Its levels give R.

    Returns
    -------
    tuple of 3 (S, O) pairs
        Normalized units, planes R, G, B.
    """
    from ..stats import read_noise_std_dn

    range_dn = sensor.with_black_level(params.black_level_dn).range_dn
    var_dn = read_noise_std_dn(params) ** 2 + params.row_sigma_dn**2 + params.col_sigma_dn**2
    out = []
    for plane in "RGB":
        spans = [r for c, r in zip(sensor.cfa.bayer, range_dn) if c == plane]
        r = sum(spans) / len(spans)
        out.append(normalized_pair(params.gain_k_dn_per_e, var_dn, r))
    return tuple(out)


@dataclass(frozen=True)
class ProfilePoint:
    """One ISO of a Poisson–Gaussian profile, converted to DN of the raw scale.

    Attributes
    ----------
    iso : float
    gain_k_dn_per_e : float
        K = R · S of the plane used [DN/e⁻].
    variance_dn2 : float
        R² · O [DN²], as the source gives it (negative where the source's fit went below zero).
    source : str
        Where the point came from (a file name, a camera entry), for provenance.
    note : str
        Anything the importer had to decide for this point (which plane, what was averaged).
    black_level_dn : 4 floats or None
        The black level the source declares at this ISO (Bayer reading order), where it differs by ISO.
    """

    iso: float
    gain_k_dn_per_e: float
    variance_dn2: float
    source: str = ""
    note: str = ""
    black_level_dn: tuple[float, float, float, float] | None = None


def _merge(points: Sequence[ProfilePoint]) -> tuple[list[ProfilePoint], list[str]]:
    """One point per ISO: repeated ISOs (several files) are averaged, K and variance alike."""
    by_iso: dict[float, list[ProfilePoint]] = {}
    for p in points:
        by_iso.setdefault(float(p.iso), []).append(p)
    out, notes = [], []
    for iso in sorted(by_iso):
        group = by_iso[iso]
        if len(group) == 1:
            out.append(group[0])
            continue
        k = sum(p.gain_k_dn_per_e for p in group) / len(group)
        v = sum(p.variance_dn2 for p in group) / len(group)
        ks = [p.gain_k_dn_per_e for p in group]
        notes.append(f"ISO {iso:g}: {len(group)} profiles averaged (K {min(ks):.6g}–{max(ks):.6g} DN/e⁻) from "
                     + ", ".join(p.source for p in group))
        out.append(ProfilePoint(iso, k, v, source=", ".join(p.source for p in group), note=group[0].note,
                                black_level_dn=group[0].black_level_dn))
    return out, notes


def poisson_gaussian_card(
    *,
    name: str,
    make: str,
    model: str,
    sensor: Sensor,
    points: Sequence[ProfilePoint],
    provenance: dict,
    where: str,
) -> Card:
    """A Poisson–Gaussian card (K and Gaussian read σ per ISO) from profile points.

    A negative signal-independent variance cannot be a σ: the row gets read σ = 0 and the provenance
    lists the ISO and the variance the source gave. ``where`` names the source in errors.

    Parameters
    ----------
    name, make, model : str
        Camera identity.
    sensor : Sensor
        Raw format and levels.
    points : sequence of ProfilePoint
        One per ISO: K [DN/e⁻] and signal-independent variance [DN²].
    provenance : dict
        The card's provenance (notes are added).
    where : str
        The source, for error messages.

    Returns
    -------
    Card
    """
    if not points:
        raise InputFileError(f"{where}: no noise profile found")
    bad = [p for p in points if not (math.isfinite(p.gain_k_dn_per_e) and p.gain_k_dn_per_e > 0 and math.isfinite(p.variance_dn2))]
    if bad:
        p = bad[0]
        raise InputFileError(f"{where}: ISO {p.iso:g} ({p.source}): the profile's slope gives K = {p.gain_k_dn_per_e!r} DN/e⁻; "
                             "a usable profile has a positive, finite signal-dependent term")
    merged, notes = _merge(points)
    rows = []
    for p in merged:
        if p.variance_dn2 < 0:
            notes.append(f"ISO {p.iso:g}: the profile's signal-independent variance is negative ({p.variance_dn2:.6g} DN²); "
                         "read σ set to 0 DN (a negative offset is a fit artefact, not a physical variance)")
        black = p.black_level_dn if p.black_level_dn is not None and tuple(p.black_level_dn) != sensor.black_level_dn else None
        rows.append(ISOEntry(iso=p.iso, gain_k_dn_per_e=p.gain_k_dn_per_e, read_sigma_dn=math.sqrt(max(p.variance_dn2, 0.0)),
                             black_level_dn=black))
        if p.note:
            notes.append(f"ISO {p.iso:g}: {p.note}")
    prov = dict(provenance)
    prov["notes"] = list(prov.get("notes", [])) + notes
    return Card(camera=Camera(name=name, make=make, model=model), sensor=sensor, iso_table=tuple(rows), provenance=prov)


def card_name(make: str, model: str, fallback: str = "Imported") -> str:
    """A card name from make and model: ``"Canon", "Canon EOS 6D"`` → ``"CanonEOS6D"`` (letters and digits).

    Parameters
    ----------
    make, model : str
        Camera identity (model may repeat the make).
    fallback : str
        Name when neither has letters or digits.

    Returns
    -------
    str
    """
    label = model if model.lower().startswith(make.lower()) else f"{make} {model}"
    name = "".join(c for c in label if c.isalnum())
    return name or fallback


def bit_depth_for(white_level_dn) -> int:
    """The smallest bit depth (8…16) whose largest DN holds the white level.

    Parameters
    ----------
    white_level_dn : float or 4 floats
        White level [DN], one or per colour site (the largest counts).

    Returns
    -------
    int
        Bits, 8 … 16.
    """
    return int(min(16, max(8, math.ceil(math.log2(max(per_site_values(white_level_dn, "white_level_dn")) + 1)))))
