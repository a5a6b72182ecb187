"""Data cards: a camera's calibrated noise model in a versioned, human-readable TOML file.

A card holds what :func:`noisesim.sampling.sample_params` needs to draw :class:`~noisesim.params.NoiseParams`
for a camera, and what :func:`noisesim.noise.simulate` needs to know about its raw format:

* ``[camera]`` — identity (``name``, ``make``, ``model``).
* ``[sensor]`` — ``cfa``, ``bit_depth``, ``black_level_dn`` and ``white_level_dn`` (4 values each, per
  colour site in Bayer reading order of :mod:`noisesim.cfa`: RGGB → R, G1, G2, B). Exposed as
  :attr:`Card.sensor`, a :class:`noisesim.params.Sensor`.
* ``[[iso]]`` — the per-ISO table (explicit ISO axis, strictly ascending): ``iso``, ``gain_k_dn_per_e``,
  ``read_sigma_dn``, ``tukey_lambda``, ``tukey_scale_dn``, ``row_sigma_dn``, ``black_level_error_dn`` (4),
  optional ``col_sigma_dn`` and ``dark_current_e_per_s``, and an optional ``ci`` table of 95 % confidence
  intervals ``field = [lo, hi]`` (``black_level_error_dn = [[lo, hi], …]``, one pair per site).
  Schema ``/2`` adds, all optional: ``black_level_dn`` (4; the black level raw files declare at this ISO,
  replacing ``sensor.black_level_dn`` there), ``hot_pixel_dark_current_e_per_s`` (the hot pixels' own mean
  dark current) and the EMVA 1288 datasheet figures ``read_noise_e`` (σ_d), ``saturation_capacity_e``
  (μ_e.sat) and ``dynamic_range_db`` (DR_dB). A ``/1`` file is read with its meaning unchanged: one black
  level for every ISO.
  The Tukey pair (``tukey_lambda``, ``tukey_scale_dn``) and ``row_sigma_dn`` may be left out of every row:
  such a card is a *Poisson–Gaussian* card (:attr:`Card.kind`), the model of a DNG NoiseProfile, of
  darktable's profiles and of Android's noise profile: K and a Gaussian read σ, nothing else (written
  as schema ``/2``: older readers require the Tukey and row keys).
* ``[joint]`` — the joint ISO model of ELD (Wei et al., CVPR 2020 / TPAMI 2021; docs/model.md):
  the K range ``k_min_dn_per_e`` … ``k_max_dn_per_e``, optional ``dual_gain_switch_iso``,
  ``tukey_lambda_values`` and ``black_level_error_bins`` (4-vectors over equal-width ln K bins spanning the
  K range), and one or more ``[[joint.profile]]`` with ``name``, ``weight``, the K range it covers, and
  log-linear fits ``tukey_scale_dn``, ``read_sigma_dn``, ``row_sigma_dn`` = ``{slope, intercept,
  residual_std}`` meaning ``ln σ = slope · ln K + intercept + N(0, residual_std²)`` (natural logarithms,
  σ in DN, K in DN/e⁻).
* ``[maps]`` — optional fixed-pattern maps in a checksummed ``.npz`` sidecar next to the card
  (``file``, ``sha256``), loaded lazily by :attr:`Card.maps`.
* ``[provenance]`` — free-form: source, citation, date, software, notes.

Every other key is an error, so a typo never passes silently; every error names the file and the field
(``cards/x.toml: iso[2].gain_k_dn_per_e: must be > 0, got -1``).

Shipped cards live in the repository's top-level ``data_cards/`` folder (installed as the ``data_cards``
package data); :func:`list_cards` names them and :func:`load_card` accepts a name (case-insensitive) or a path.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import math
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .atomic import write_bytes, write_text
from .cfa import CFA
from .errors import CardError, CFAError, ParameterError, UnknownCardError
from .params import FixedPatternMaps, Sensor, is_real_number

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "SCHEMA",
    "Camera",
    "ISOEntry",
    "LogLinearFit",
    "JointProfile",
    "JointModel",
    "Card",
    "KIND_PHYSICS",
    "KIND_POISSON_GAUSSIAN",
    "camera_matches",
    "search_key",
    "load_card",
    "save_card",
    "card_to_toml",
    "parse_card",
    "list_cards",
    "shipped_cards_dir",
]

SCHEMA = "noisesim.card/2"
_SCHEMA_PREFIX = "noisesim.card/"
SCHEMA_VERSION = 2
#: Schema versions this noisesim reads (a /1 card is a /2 card without the /2 keys).
READABLE_VERSIONS = (1, 2)

#: :attr:`Card.kind` values. ``physics``: the ELD/PMN model (Tukey-lambda read noise, row noise, …);
#: ``poisson-gaussian``: shot noise and Gaussian read noise only (K and read σ per ISO).
KIND_PHYSICS = "physics"
KIND_POISSON_GAUSSIAN = "poisson-gaussian"

#: Arrays a maps sidecar may hold (the fields of :class:`~noisesim.params.FixedPatternMaps`).
MAP_KEYS = tuple(f.name for f in dataclasses.fields(FixedPatternMaps))


# --------------------------------------------------------------------------------------------------
# validation helpers: raise _Invalid(field, message); the loader prefixes the file and the table path
# --------------------------------------------------------------------------------------------------
class _Invalid(CardError):
    """A validation failure of one field; ``str`` is ``"field: message"``."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _number(name: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    if not is_real_number(value):
        raise _Invalid(name, f"must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise _Invalid(name, f"must be finite, got {value!r}")
    if positive and not v > 0:
        raise _Invalid(name, f"must be > 0, got {value!r}")
    if nonneg and v < 0:
        raise _Invalid(name, f"must be >= 0, got {value!r}")
    return v


# Physically possible ranges, deliberately wide: a value outside is a typo or a unit error, and would
# simulate all-zero or all-clipped frames (K = 1e-300 DN/e⁻, σ = 1e300 DN were accepted).
GAIN_K_LIMITS_DN_PER_E = (1e-4, 1e3)  # a 16-bit ADC over 650 Me⁻ .. 1000 DN per electron
NOISE_SIGMA_MAX_DN = 65536.0  # no raw format spans more than 16 bits
DARK_CURRENT_MAX_E_PER_S = 1e7


def _within(name: str, v: float | None, lo: float | None, hi: float, unit: str) -> float | None:
    """``v`` unchanged when it lies in [lo, hi] (None passes); else the error naming the field."""
    if v is not None and ((lo is not None and v < lo) or v > hi):
        span = f"{lo:g} .. {hi:g}" if lo is not None else f"at most {hi:g}"
        raise _Invalid(name, f"{v:g} {unit} is not physically plausible (expected {span} {unit})")
    return v


def _optional_number(name: str, value: Any, **kw) -> float | None:
    return None if value is None else _number(name, value, **kw)


def _tukey_lambda(name: str, value: Any) -> float:
    v = _number(name, value)
    if not -1.0 < v < 1.0:
        raise _Invalid(name, f"must lie in (-1, 1), got {value!r}")
    return v


def _string(name: str, value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _Invalid(name, f"must be a string, got {type(value).__name__} {value!r}")
    if not allow_empty and not value.strip():
        raise _Invalid(name, "must not be empty")
    return value


def _sequence(name: str, value: Any) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise _Invalid(name, f"must be a list, got {type(value).__name__} {value!r}")
    return list(value)


def _vec4(name: str, value: Any) -> tuple[float, float, float, float]:
    items = _sequence(name, value)
    if len(items) != 4:
        raise _Invalid(name, f"must hold 4 values (one per colour site, Bayer order), got {len(items)}")
    return tuple(_number(f"{name}[{i}]", v) for i, v in enumerate(items))  # type: ignore[return-value]


def _interval(name: str, value: Any) -> tuple[float, float]:
    items = _sequence(name, value)
    if len(items) != 2:
        raise _Invalid(name, f"must be [lo, hi], got {len(items)} values")
    lo, hi = (_number(f"{name}[{i}]", v) for i, v in enumerate(items))
    if lo > hi:
        raise _Invalid(name, f"lower bound {lo} exceeds upper bound {hi}")
    return lo, hi


class FrozenDict(dict):
    """A read-only dict (for a card's ``provenance`` and confidence intervals): pickles, deep-copies and
    works with :func:`dataclasses.asdict`, unlike ``types.MappingProxyType``."""

    __slots__ = ()

    def _read_only(self, *args, **kwargs):
        """Cards are immutable: every mutating method raises TypeError."""
        raise TypeError("card tables are read-only; make a changed copy with Card.replace(...)")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __deepcopy__(self, memo):
        return type(self)(copy.deepcopy(dict(self), memo))


def _frozen_mapping(value: Mapping) -> FrozenDict:
    return FrozenDict(value)


# --------------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    """Identity of the camera a card describes (``name`` is the display name, e.g. ``"SonyA7S2"``).

    Attributes
    ----------
    name : str
        Display name and shipped-card name (letters and digits).
    make, model : str
        As the raw files' EXIF states them (may be empty).
    """

    name: str
    make: str = ""
    model: str = ""

    def __post_init__(self) -> None:
        _string("name", self.name)
        _string("make", self.make, allow_empty=True)
        _string("model", self.model, allow_empty=True)


_ISO_SCALARS = (
    "gain_k_dn_per_e",
    "read_sigma_dn",
    "tukey_lambda",
    "tukey_scale_dn",
    "row_sigma_dn",
    "col_sigma_dn",
    "dark_current_e_per_s",
    "hot_pixel_dark_current_e_per_s",
    "read_noise_e",
    "saturation_capacity_e",
    "dynamic_range_db",
)
#: ``[[iso]]`` keys that need schema /2.
ISO_KEYS_V2 = ("black_level_dn", "hot_pixel_dark_current_e_per_s", "read_noise_e", "saturation_capacity_e", "dynamic_range_db")


@dataclass(frozen=True)
class ISOEntry:
    """One row of a card's per-ISO table: the measured noise parameters at one ISO.

    Attributes
    ----------
    iso : float
        ISO setting.
    gain_k_dn_per_e : float
        System gain K [DN/e⁻] (EMVA 1288).
    read_sigma_dn : float
        σ of the Gaussian read-noise model [DN].
    tukey_lambda, tukey_scale_dn : float or None
        Shape λ ∈ (−1, 1) and scale σ_TL [DN] of the Tukey-lambda read-noise model (ELD); both None in a
        Poisson–Gaussian card.
    row_sigma_dn : float or None
        σ of the per-row offset [DN]; None in a Poisson–Gaussian card.
    black_level_error_dn : 4 floats or None
        Black-level error per colour site, Bayer reading order (RGGB → R, G1, G2, B) [DN], where measured.
    col_sigma_dn, dark_current_e_per_s : float or None
        σ of the per-column offset [DN] and mean dark current [e⁻/s], where measured.
    black_level_dn : 4 floats or None
        Black level the raw files declare at this ISO, per colour site [DN] (schema /2); None: the card's
        ``sensor.black_level_dn``. The dark-frame mean is ``black_level_dn + black_level_error_dn``.
    hot_pixel_dark_current_e_per_s : float or None
        Mean dark current of the pixels in the card's hot-pixel map [e⁻/s] (schema /2); the bulk figure
        ``dark_current_e_per_s`` then excludes them.
    read_noise_e, saturation_capacity_e, dynamic_range_db : float or None
        EMVA 1288 datasheet figures (schema /2): temporal dark noise σ_d = σ_y.dark / K [e⁻], saturation
        capacity μ_e.sat = μ_y.sat / K [e⁻] and dynamic range DR_dB = 20 log₁₀(μ_e.sat / μ_e.min) [dB].
    ci : mapping
        95 % confidence intervals: ``{field: (lo, hi)}``; for ``black_level_error_dn`` a tuple of 4 pairs.
    """

    iso: float
    gain_k_dn_per_e: float
    read_sigma_dn: float
    tukey_lambda: float | None = None
    tukey_scale_dn: float | None = None
    row_sigma_dn: float | None = None
    black_level_error_dn: tuple[float, float, float, float] | None = None
    col_sigma_dn: float | None = None
    dark_current_e_per_s: float | None = None
    black_level_dn: tuple[float, float, float, float] | None = None
    hot_pixel_dark_current_e_per_s: float | None = None
    read_noise_e: float | None = None
    saturation_capacity_e: float | None = None
    dynamic_range_db: float | None = None
    ci: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("iso", _number("iso", self.iso, positive=True))
        set_("gain_k_dn_per_e", _within("gain_k_dn_per_e", _number("gain_k_dn_per_e", self.gain_k_dn_per_e, positive=True),
                                        *GAIN_K_LIMITS_DN_PER_E, "DN/e-"))
        set_("read_sigma_dn", _within("read_sigma_dn", _number("read_sigma_dn", self.read_sigma_dn, nonneg=True), None,
                                      NOISE_SIGMA_MAX_DN, "DN"))
        if (self.tukey_lambda is None) != (self.tukey_scale_dn is None):
            missing = "tukey_scale_dn" if self.tukey_scale_dn is None else "tukey_lambda"
            raise _Invalid(missing, "missing: tukey_lambda and tukey_scale_dn come together (or neither, in a Poisson–Gaussian card)")
        if self.tukey_lambda is not None:
            set_("tukey_lambda", _tukey_lambda("tukey_lambda", self.tukey_lambda))
        for name in ("tukey_scale_dn", "row_sigma_dn", "col_sigma_dn", "dark_current_e_per_s", "hot_pixel_dark_current_e_per_s", "read_noise_e"):
            set_(name, _optional_number(name, getattr(self, name), nonneg=True))
        for name in ("tukey_scale_dn", "row_sigma_dn", "col_sigma_dn"):
            _within(name, getattr(self, name), None, NOISE_SIGMA_MAX_DN, "DN")
        for name in ("dark_current_e_per_s", "hot_pixel_dark_current_e_per_s"):
            _within(name, getattr(self, name), None, DARK_CURRENT_MAX_E_PER_S, "e-/s")
        set_("saturation_capacity_e", _optional_number("saturation_capacity_e", self.saturation_capacity_e, positive=True))
        set_("dynamic_range_db", _optional_number("dynamic_range_db", self.dynamic_range_db))
        if self.black_level_error_dn is not None:
            set_("black_level_error_dn", _vec4("black_level_error_dn", self.black_level_error_dn))
        if self.black_level_dn is not None:
            black = _vec4("black_level_dn", self.black_level_dn)
            if any(b < 0 for b in black):
                raise _Invalid("black_level_dn", f"must be >= 0, got {list(black)}")
            set_("black_level_dn", black)
        if not isinstance(self.ci, Mapping):
            raise _Invalid("ci", f"must be a table of field = [lo, hi], got {type(self.ci).__name__}")
        ci = {}
        for key, value in self.ci.items():
            where = f"ci.{key}"
            if key == "black_level_error_dn":
                if self.black_level_error_dn is None:
                    raise _Invalid(where, "confidence interval given for black_level_error_dn, which this entry does not have")
                pairs = _sequence(where, value)
                if len(pairs) != 4:
                    raise _Invalid(where, f"must hold 4 [lo, hi] pairs (one per colour site), got {len(pairs)}")
                ci[key] = tuple(_interval(f"{where}[{i}]", p) for i, p in enumerate(pairs))
            elif key in _ISO_SCALARS:
                if getattr(self, key) is None:
                    raise _Invalid(where, f"confidence interval given for {key}, which this entry does not have")
                ci[key] = _interval(where, value)
            else:
                raise _Invalid(where, f"unknown field; intervals may be given for {', '.join(_ISO_SCALARS + ('black_level_error_dn',))}")
        set_("ci", _frozen_mapping(ci))



@dataclass(frozen=True)
class LogLinearFit:
    """``ln σ = slope · ln K + intercept + ε``, ``ε ~ N(0, residual_std²)``; natural logs, σ in DN, K in DN/e⁻ (ELD).

    Attributes
    ----------
    slope : float
        d ln σ / d ln K.
    intercept : float
        ln σ [ln DN] at K = 1 DN/e⁻.
    residual_std : float
        Standard deviation of the residual ε [ln DN]; 0 for a deterministic fit.
    """

    slope: float
    intercept: float
    residual_std: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "slope", _number("slope", self.slope))
        object.__setattr__(self, "intercept", _number("intercept", self.intercept))
        object.__setattr__(self, "residual_std", _number("residual_std", self.residual_std, nonneg=True))

    def mean_log(self, gain_k_dn_per_e):
        """E[ln σ] at K (scalar or array).

        Parameters
        ----------
        gain_k_dn_per_e : float or ndarray
            System gain K [DN/e⁻].

        Returns
        -------
        float or ndarray
            ``slope · ln K + intercept`` [ln DN], same shape as K.
        """
        return self.slope * np.log(gain_k_dn_per_e) + self.intercept

    def median(self, gain_k_dn_per_e):
        """Median σ [DN] at K: exp(slope · ln K + intercept).

        Parameters
        ----------
        gain_k_dn_per_e : float or ndarray
            System gain K [DN/e⁻].

        Returns
        -------
        float or ndarray
            σ [DN], same shape as K.
        """
        return np.exp(self.mean_log(gain_k_dn_per_e))


def search_key(text: str) -> str:
    """Lower-case letters and digits of ``text``: what camera search compares (``"EOS-6D"`` → ``"eos6d"``).

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    str
    """
    return "".join(c for c in text.lower() if c.isalnum())


def camera_matches(query: str, *names: str) -> bool:
    """Case- and punctuation-insensitive search: every word of ``query`` occurs in the joined ``names``.

    >>> camera_matches("canon 6d", "Canon", "Canon EOS 6D")
    True
    >>> camera_matches("EOS-6d", "Canon", "Canon EOS 6D"), camera_matches("nikon", "Canon", "Canon EOS 6D")
    (True, False)

    Parameters
    ----------
    query : str
        Search words.
    *names : str
        The texts searched (e.g. card name, make, model).

    Returns
    -------
    bool
    """
    hay = search_key(" ".join(names))
    words = [search_key(w) for w in query.split()]
    words = [w for w in words if w]
    return bool(words) and all(w in hay for w in words)


def _set_k_range(record) -> tuple[float, float]:
    """Validate and normalize a record's k_min_dn_per_e < k_max_dn_per_e (both > 0)."""
    kmin = _within("k_min_dn_per_e", _number("k_min_dn_per_e", record.k_min_dn_per_e, positive=True),
                   *GAIN_K_LIMITS_DN_PER_E, "DN/e-")
    kmax = _within("k_max_dn_per_e", _number("k_max_dn_per_e", record.k_max_dn_per_e, positive=True),
                   *GAIN_K_LIMITS_DN_PER_E, "DN/e-")
    if not kmin < kmax:
        raise _Invalid("k_max_dn_per_e", f"must exceed k_min_dn_per_e = {kmin}, got {kmax}")
    object.__setattr__(record, "k_min_dn_per_e", kmin)
    object.__setattr__(record, "k_max_dn_per_e", kmax)
    return kmin, kmax


_FIT_NAMES = ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn")


@dataclass(frozen=True)
class JointProfile:
    """One instantiation of the joint model over a K range (ELD's ``Profile-n``).

    A dual-gain sensor has two adjacent profiles; several profiles may also overlap (ELD's NikonD850),
    in which case :func:`~noisesim.sampling.sample_params` picks one at random by ``weight``.

    Attributes
    ----------
    name : str
        E.g. ``"Profile-1"``.
    k_min_dn_per_e, k_max_dn_per_e : float
        The K range it covers [DN/e⁻].
    tukey_scale_dn, read_sigma_dn, row_sigma_dn : LogLinearFit
        ln σ against ln K of the Tukey-lambda scale, the Gaussian read σ and the row σ [DN].
    weight : float
        Relative probability of this profile where profiles overlap.
    """

    name: str
    k_min_dn_per_e: float
    k_max_dn_per_e: float
    tukey_scale_dn: LogLinearFit
    read_sigma_dn: LogLinearFit
    row_sigma_dn: LogLinearFit
    weight: float = 1.0

    def __post_init__(self) -> None:
        _string("name", self.name)
        object.__setattr__(self, "weight", _number("weight", self.weight, positive=True))
        kmin, kmax = _set_k_range(self)
        for name in _FIT_NAMES:
            if not isinstance(getattr(self, name), LogLinearFit):
                raise _Invalid(name, f"must be a LogLinearFit, got {type(getattr(self, name)).__name__}")

    def covers(self, gain_k_dn_per_e: float) -> bool:
        """Whether K [DN/e⁻] lies in this profile's K range (ends included).

        Parameters
        ----------
        gain_k_dn_per_e : float
            System gain K [DN/e⁻].

        Returns
        -------
        bool
        """
        return self.k_min_dn_per_e <= gain_k_dn_per_e <= self.k_max_dn_per_e

    def fit(self, name: str) -> LogLinearFit:
        """The log-linear fit of one σ (``tukey_scale_dn``, ``read_sigma_dn`` or ``row_sigma_dn``).

        Parameters
        ----------
        name : {"tukey_scale_dn", "read_sigma_dn", "row_sigma_dn"}
            Which σ.

        Returns
        -------
        LogLinearFit
        """
        return getattr(self, name)


@dataclass(frozen=True)
class JointModel:
    """The joint ISO model: K range, profiles of log-linear fits, and the per-K tables of ELD.

    Attributes
    ----------
    k_min_dn_per_e, k_max_dn_per_e : float
        The calibrated K range [DN/e⁻]; :func:`~noisesim.sampling.sample_params` draws ln K uniformly in it.
    profiles : tuple of JointProfile
        The log-linear fits, each over its own K range.
    dual_gain_switch_iso : float or None
        ISO at which a dual-gain sensor switches conversion gain, when known.
    tukey_lambda_values : tuple of float or None
        Tukey-lambda shapes, one per equal-width ln K bin over the K range (ascending K).
    black_level_error_bins : tuple of 4-float tuples or None
        Black-level error per colour site [DN], one vector per ln K bin, Bayer reading order.
    """

    k_min_dn_per_e: float
    k_max_dn_per_e: float
    profiles: tuple[JointProfile, ...]
    dual_gain_switch_iso: float | None = None
    tukey_lambda_values: tuple[float, ...] | None = None
    black_level_error_bins: tuple[tuple[float, float, float, float], ...] | None = None

    def __post_init__(self) -> None:
        kmin, kmax = _set_k_range(self)
        profiles = tuple(_sequence("profile", self.profiles))
        if not profiles:
            raise _Invalid("profile", "at least one [[joint.profile]] is required")
        names = set()
        tol = 1e-9 * kmax
        for i, p in enumerate(profiles):
            if not isinstance(p, JointProfile):
                raise _Invalid(f"profile[{i}]", f"must be a JointProfile, got {type(p).__name__}")
            if p.name in names:
                raise _Invalid(f"profile[{i}].name", f"duplicate profile name {p.name!r}")
            names.add(p.name)
            if p.k_min_dn_per_e < kmin - tol or p.k_max_dn_per_e > kmax + tol:
                raise _Invalid(
                    f"profile[{i}]",
                    f"K range [{p.k_min_dn_per_e}, {p.k_max_dn_per_e}] lies outside the joint range [{kmin}, {kmax}]",
                )
        # every K of the joint range must be covered by some profile
        reach = kmin
        for p in sorted(profiles, key=lambda p: p.k_min_dn_per_e):
            if p.k_min_dn_per_e > reach + tol:
                break
            reach = max(reach, p.k_max_dn_per_e)
        if reach < kmax - tol:
            raise _Invalid("profile", f"the profiles leave part of the K range uncovered, from K = {reach} DN/e⁻ up to {kmax}")
        object.__setattr__(self, "profiles", profiles)
        object.__setattr__(
            self, "dual_gain_switch_iso", _optional_number("dual_gain_switch_iso", self.dual_gain_switch_iso, positive=True)
        )
        for name, check_item in (("tukey_lambda_values", _tukey_lambda), ("black_level_error_bins", _vec4)):
            if getattr(self, name) is not None:
                items = _sequence(name, getattr(self, name))
                if not items:
                    raise _Invalid(name, "must not be empty (omit the key instead)")
                object.__setattr__(self, name, tuple(check_item(f"{name}[{i}]", v) for i, v in enumerate(items)))

    def profiles_covering(self, gain_k_dn_per_e: float) -> tuple[JointProfile, ...]:
        """The profiles whose K range holds K [DN/e⁻] (several where they overlap).

        Parameters
        ----------
        gain_k_dn_per_e : float
            System gain K [DN/e⁻].

        Returns
        -------
        tuple of JointProfile
            Empty when K is outside every profile.
        """
        return tuple(p for p in self.profiles if p.covers(gain_k_dn_per_e))

    def black_level_bin(self, gain_k_dn_per_e: float) -> int:
        """Index of the equal-width ln K bin over [k_min, k_max] that holds K (clamped to the ends).

        Parameters
        ----------
        gain_k_dn_per_e : float
            System gain K [DN/e⁻].

        Returns
        -------
        int
            Bin index, 0 … (number of bins − 1), of :attr:`black_level_error_bins` / :attr:`tukey_lambda_values`.
        """
        n = len(self.black_level_error_bins or ())
        if n == 0:
            raise ParameterError("this joint model has no black_level_error_bins")
        lo, hi = math.log(self.k_min_dn_per_e), math.log(self.k_max_dn_per_e)
        pos = (math.log(gain_k_dn_per_e) - lo) / (hi - lo) * n
        return int(min(max(math.floor(pos), 0), n - 1))


@dataclass(frozen=True)
class Card:
    """A camera's data card (schema ``noisesim.card/2``; ``/1`` is read too), see the module docstring.

    Attributes
    ----------
    camera : Camera
    sensor : noisesim.params.Sensor
        CFA, bit depth, black/white levels per colour site (Bayer reading order).
    iso_table : tuple of ISOEntry
        Strictly ascending in ISO; may be empty.
    joint : JointModel or None
        The joint ISO model; a card needs an ISO table, a joint model, or both.
    maps_file, maps_sha256 : str or None
        File name of the ``.npz`` sidecar (next to the card) and its SHA-256; see :attr:`maps`. A card
        given maps in memory (:meth:`with_maps`) has no checksum until :func:`save_card` writes the sidecar.
    dark_bank_file, dark_bank_sha256 : str or None
        A dark-frame bank of this camera (``noisesim darks bank``; path relative to the card) and the SHA-256
        of its index (:attr:`noisesim.darkbank.DarkFrameBank.content_sha256`); see :attr:`dark_bank`.
    provenance : mapping
        Free-form (source, citation, date, software, notes …).
    """

    camera: Camera
    sensor: Sensor
    iso_table: tuple[ISOEntry, ...] = ()
    joint: JointModel | None = None
    maps_file: str | None = None
    maps_sha256: str | None = None
    dark_bank_file: str | None = None
    dark_bank_sha256: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Not part of the card's identity: the file it came from (to find the sidecar) and in-memory maps.
    source_path: Path | None = field(default=None, compare=False, repr=False)
    _maps: FixedPatternMaps | None = field(default=None, compare=False, repr=False, hash=False)
    _text: str | None = field(default=None, init=False, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.camera, Camera):
            raise _Invalid("camera", f"must be a Camera, got {type(self.camera).__name__}")
        if not isinstance(self.sensor, Sensor):
            raise _Invalid("sensor", f"must be a Sensor, got {type(self.sensor).__name__}")
        table = tuple(_sequence("iso", self.iso_table))
        for i, e in enumerate(table):
            if not isinstance(e, ISOEntry):
                raise _Invalid(f"iso[{i}]", f"must be an ISOEntry, got {type(e).__name__}")
            if i and not e.iso > table[i - 1].iso:
                raise _Invalid(f"iso[{i}].iso", f"ISO values must be strictly ascending, got {e.iso:g} after {table[i - 1].iso:g}")
            if e.black_level_dn is not None:
                for b, w_, name in zip(e.black_level_dn, self.sensor.white_level_dn, self.sensor.cfa.site_names):
                    if not b < w_:
                        raise _Invalid(f"iso[{i}].black_level_dn", f"black level {b:g} of site {name} must be below the white level {w_:g}")
        object.__setattr__(self, "iso_table", table)
        if self.joint is not None and not isinstance(self.joint, JointModel):
            raise _Invalid("joint", f"must be a JointModel, got {type(self.joint).__name__}")
        if not table and self.joint is None:
            raise _Invalid("iso", "a card needs a per-ISO table ([[iso]]), a joint model ([joint]), or both")
        if not table and not self.joint.tukey_lambda_values:
            raise _Invalid("joint.tukey_lambda_values", "required when the card has no per-ISO table (λ must come from somewhere)")
        for name in ("tukey_lambda", "row_sigma_dn"):
            have = [getattr(e, name) is not None for e in table]
            if any(have) and not all(have):
                i = have.index(False)
                raise _Invalid(f"iso[{i}].{name}", "missing: every row of a table gives it, or none does (a Poisson–Gaussian card)")
            if table and not any(have) and self.joint is not None:
                raise _Invalid(f"iso[0].{name}", "missing: a card with a joint model needs the full model in its table too")
        if self.maps_file is not None:
            _check_sidecar_name("maps.file", self.maps_file)
            if self.maps_sha256 is None and self._maps is None:
                raise _Invalid("maps.sha256", "missing (required with maps.file)")
            sha = self.maps_sha256 and _string("maps.sha256", self.maps_sha256)
            if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
                raise _Invalid("maps.sha256", f"must be 64 lowercase hex digits, got {sha!r}")
        elif self.maps_sha256 is not None:
            raise _Invalid("maps.file", "missing (maps.sha256 given without a file)")
        if (self.dark_bank_file is None) != (self.dark_bank_sha256 is None):
            raise _Invalid("dark_bank", "needs both file and sha256")
        if self.dark_bank_file is not None:
            _string("dark_bank.file", self.dark_bank_file)
            sha = _string("dark_bank.sha256", self.dark_bank_sha256)
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise _Invalid("dark_bank.sha256", f"must be 64 lowercase hex digits, got {sha!r}")
        if self._maps is not None and not isinstance(self._maps, FixedPatternMaps):
            raise _Invalid("maps", f"must be FixedPatternMaps, got {type(self._maps).__name__}")
        # mark the card's own sensor, so simulate can warn when it is used without the card's maps
        marker = self.name if (self.maps_file is not None or self._maps is not None) else None
        if self.sensor.maps_of_card != marker:
            object.__setattr__(self, "sensor", dataclasses.replace(self.sensor, maps_of_card=marker))
        if not isinstance(self.provenance, Mapping):
            raise _Invalid("provenance", f"must be a table, got {type(self.provenance).__name__}")
        object.__setattr__(self, "provenance", _frozen_mapping(self.provenance))
        if self.source_path is not None:
            object.__setattr__(self, "source_path", Path(self.source_path))

    # --- convenience ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The camera's display name, e.g. ``"SonyA7S2"``."""
        return self.camera.name

    @property
    def kind(self) -> str:
        """What the card can simulate: :data:`KIND_POISSON_GAUSSIAN` (K and Gaussian read σ per ISO, no
        Tukey-lambda, row or map terms) or :data:`KIND_PHYSICS` (the ELD/PMN model)."""
        if self.joint is None and self.iso_table and self.iso_table[0].tukey_lambda is None and self.iso_table[0].row_sigma_dn is None:
            return KIND_POISSON_GAUSSIAN
        return KIND_PHYSICS

    @property
    def read_models(self) -> tuple[str, ...]:
        """Read-noise models the card has parameters for, the default first."""
        if self.joint is None and self.iso_table and self.iso_table[0].tukey_lambda is None:
            return ("gaussian",)
        return ("tukey", "gaussian")

    def check_read_model(self, read_model: str) -> None:
        """Raise :class:`~noisesim.errors.ParameterError`, naming the card, for a read model it lacks.

        Parameters
        ----------
        read_model : {"tukey", "gaussian"}
            The read-noise model asked for.
        """
        if read_model not in self.read_models:
            raise ParameterError(
                f"card {self.name!r} is a {self.kind} card: it has no {read_model} read-noise parameters "
                f"(it has {' and '.join(self.read_models)}); use read_model={self.read_models[0]!r}"
            )

    def matches(self, query: str) -> bool:
        """Whether a search text names this card (see :func:`camera_matches`).

        Parameters
        ----------
        query : str
            Words to find in the card's name, make and model (case and punctuation ignored).

        Returns
        -------
        bool
        """
        return camera_matches(query, self.camera.name, self.camera.make, self.camera.model)

    @property
    def isos(self) -> tuple[float, ...]:
        """The tabled ISOs, ascending."""
        return tuple(e.iso for e in self.iso_table)

    @property
    def k_range_dn_per_e(self) -> tuple[float, float]:
        """K range the card can serve: the joint model's, else the ISO table's."""
        if self.joint is not None:
            return self.joint.k_min_dn_per_e, self.joint.k_max_dn_per_e
        ks = [e.gain_k_dn_per_e for e in self.iso_table]
        return min(ks), max(ks)

    def black_level_at(self, iso: float | None) -> tuple[float, float, float, float]:
        """Black level per colour site [DN] that raw files of this camera declare at ``iso``.

        The ISO-table row nearest in ln ISO gives it where that row has one (schema /2); otherwise (and for
        ``iso=None``) it is ``sensor.black_level_dn``.

        Parameters
        ----------
        iso : float or None
            ISO of the frame.

        Returns
        -------
        4 floats
            Black level per colour site, Bayer reading order [DN].
        """
        if iso is None or not self.iso_table:
            return self.sensor.black_level_dn
        li = math.log(float(iso))
        row = min(self.iso_table, key=lambda e: abs(math.log(e.iso) - li))
        return row.black_level_dn if row.black_level_dn is not None else self.sensor.black_level_dn

    def sensor_at(self, iso: float | None) -> Sensor:
        """:attr:`sensor` with the black level of ``iso`` (see :meth:`black_level_at`).

        Parameters
        ----------
        iso : float or None
            ISO of the frame.

        Returns
        -------
        Sensor
        """
        black = self.black_level_at(iso)
        if black == self.sensor.black_level_dn:
            return self.sensor
        return dataclasses.replace(self.sensor, black_level_dn=black)

    @property
    def black_varies_with_iso(self) -> bool:
        """True when some ISO row declares a black level other than ``sensor.black_level_dn``."""
        return any(e.black_level_dn is not None and e.black_level_dn != self.sensor.black_level_dn for e in self.iso_table)

    def iso_entry(self, iso: float) -> ISOEntry | None:
        """The table row of a tabled ISO (relative tolerance 1e-9), else None.

        Parameters
        ----------
        iso : float
            ISO to look up.

        Returns
        -------
        ISOEntry or None
        """
        for e in self.iso_table:
            if math.isclose(e.iso, float(iso), rel_tol=1e-9):
                return e
        return None

    @property
    def text(self) -> str:
        """The card's full TOML text (the file's own text when loaded and unchanged)."""
        return self._text if self._text is not None else card_to_toml(self)

    @property
    def maps(self) -> FixedPatternMaps | None:
        """The fixed-pattern maps (loaded from the sidecar on first use, checksum verified), or None."""
        if self._maps is not None or self.maps_file is None:
            return self._maps
        if self.source_path is None:
            raise CardError(f"card {self.name!r}: maps file {self.maps_file!r} cannot be located (the card was not loaded from a file)")
        maps = _load_sidecar(self.source_path.parent / self.maps_file, self.maps_sha256, self.source_path)
        object.__setattr__(self, "_maps", maps)
        return maps

    @property
    def dark_bank(self):
        """The card's dark-frame bank (:class:`noisesim.darkbank.DarkFrameBank`, checksum verified), or None."""
        if self.dark_bank_file is None:
            return None
        from .darkbank import DarkFrameBank

        path = Path(self.dark_bank_file)
        if not path.is_absolute():
            if self.source_path is None:
                raise CardError(f"card {self.name!r}: dark bank {self.dark_bank_file!r} cannot be located "
                                "(the card was not loaded from a file)")
            path = self.source_path.parent / path
        bank = DarkFrameBank(path)
        if bank.content_sha256 != self.dark_bank_sha256:
            raise CardError(f"{path}: dark-frame bank checksum mismatch (card {self.name!r} references another bank)")
        return bank

    def with_dark_bank(self, path: str | os.PathLike | None, *, relative_to: str | os.PathLike | None = None) -> "Card":
        """A copy referencing the dark-frame bank at ``path`` with its checksum; None removes it.

        ``relative_to`` (the folder the card will be saved in) stores the path relative to it.

        Parameters
        ----------
        path : str, PathLike or None
            The bank file (:func:`noisesim.darkbank.build_dark_bank`); None removes the reference.
        relative_to : str or PathLike, optional
            Folder the card will be saved in.

        Returns
        -------
        Card
        """
        if path is None:
            return dataclasses.replace(self, dark_bank_file=None, dark_bank_sha256=None)
        from .darkbank import DarkFrameBank

        sha = DarkFrameBank(path).content_sha256
        stored = os.path.relpath(Path(path).resolve(), Path(relative_to).resolve()) if relative_to is not None else str(path)
        return dataclasses.replace(self, dark_bank_file=stored, dark_bank_sha256=sha)

    def with_maps(self, maps: FixedPatternMaps | None, file: str | None = None) -> "Card":
        """A copy carrying ``maps`` in memory; :func:`save_card` writes them to the sidecar ``file``.

        ``file`` defaults to ``"<camera name>_maps.npz"`` (:func:`save_card` names the sidecar after the card
        file it writes, whatever ``file`` says); ``maps=None`` removes the maps. The sidecar is
        compressed and checksummed only when saved (seconds for 12 MP maps), so ``maps_sha256`` is None here.

        Parameters
        ----------
        maps : FixedPatternMaps or None
            (H, W) maps of the full sensor, or None to remove them.
        file : str, optional
            Sidecar file name.

        Returns
        -------
        Card
        """
        if maps is None:
            return dataclasses.replace(self, maps_file=None, maps_sha256=None, _maps=None)
        if not isinstance(maps, FixedPatternMaps):
            raise ParameterError(f"maps must be FixedPatternMaps, got {type(maps).__name__}")
        file = file or self.maps_file or f"{_safe_stem(self.name)}_maps.npz"
        return dataclasses.replace(self, maps_file=file, maps_sha256=None, _maps=maps)

    def replace(self, **changes) -> "Card":
        """A copy with some fields changed (validated again).

        Parameters
        ----------
        **changes
            Field names and new values.

        Returns
        -------
        Card
        """
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------------
# maps sidecar
# --------------------------------------------------------------------------------------------------
def _safe_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "card"


def _check_sidecar_name(where: str, name: Any) -> str:
    name = _string(where, name)
    if Path(name).name != name or name in (".", "..") or not name.endswith(".npz"):
        raise _Invalid(where, f"must be a plain .npz file name next to the card (no folders), got {name!r}")
    return name


def _npz_bytes(maps: FixedPatternMaps) -> bytes:
    """Deterministic ``.npz`` bytes of the maps (fixed zip timestamps, sorted keys) so the checksum is stable."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in MAP_KEYS:
            arr = getattr(maps, key)
            if arr is None:
                continue
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            # level 1: float maps barely compress; the default level costs seconds on 12 MP maps
            zf.writestr(info, member.getvalue(), compresslevel=1)
    return buf.getvalue()


def _load_sidecar(path: Path, sha256: str | None, card_path: Path) -> FixedPatternMaps:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CardError(f"{card_path}: maps.file: cannot read the sidecar {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise CardError(f"{card_path}: maps.sha256: checksum mismatch for the sidecar {path}: expected {sha256}, file has {digest}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            keys = set(npz.files)
            unknown = keys - set(MAP_KEYS)
            if unknown:
                raise CardError(f"{path}: unknown maps {sorted(unknown)}; valid: {', '.join(MAP_KEYS)}")
            arrays = {k: npz[k] for k in keys}
        return FixedPatternMaps(**arrays)
    except CardError:
        raise
    except Exception as exc:  # corrupt zip, bad npy header, wrong shapes
        raise CardError(f"{path}: cannot read the maps sidecar: {exc}") from None


# --------------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------------
_SENSOR_KEYS = ("cfa", "bit_depth", "black_level_dn", "white_level_dn")
_ISO_REQUIRED = ("iso", "gain_k_dn_per_e", "read_sigma_dn")
_ISO_OPTIONAL = ("tukey_lambda", "tukey_scale_dn", "row_sigma_dn", "black_level_error_dn", "col_sigma_dn", "dark_current_e_per_s") + ISO_KEYS_V2 + ("ci",)
_JOINT_REQUIRED = ("k_min_dn_per_e", "k_max_dn_per_e", "profile")
_JOINT_OPTIONAL = ("dual_gain_switch_iso", "tukey_lambda_values", "black_level_error_bins")
_PROFILE_REQUIRED = ("name", "tukey_scale_dn", "read_sigma_dn", "row_sigma_dn")
_PROFILE_OPTIONAL = ("weight", "k_min_dn_per_e", "k_max_dn_per_e")
_MAPS_KEYS = ("file", "sha256")


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> CardError:
        return CardError(f"{self.source}: {where}: {message}")

    def table(self, doc: Mapping, key: str, where: str, *, required: bool = True) -> dict | None:
        if key not in doc:
            if required:
                raise self.fail(where, "missing (required table)")
            return None
        value = doc[key]
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a table, got {type(value).__name__} {value!r}")
        return value

    def keys(self, tbl: Mapping, where: str, required: tuple, optional: tuple = ()) -> None:
        prefix = f"{where}." if where else ""
        for k in tbl:
            if k not in required and k not in optional:
                valid = ", ".join(required + optional)
                raise self.fail(f"{prefix}{k}", f"unknown key (valid keys in {where or 'the top level'}: {valid})")
        for k in required:
            if k not in tbl:
                raise self.fail(f"{prefix}{k}", "missing (required)")

    def build(self, where: str, cls, **kwargs):
        """Construct a record, turning its field errors into ``file: where.field: message``."""
        try:
            return cls(**kwargs)
        except _Invalid as exc:
            prefix = f"{where}." if where else ""
            raise self.fail(f"{prefix}{exc.field}", exc.message) from None

    def parse(self, doc: Mapping, source_path: Path | None) -> Card:
        schema = doc.get("schema")
        if schema is None:
            raise self.fail("schema", f'missing; expected schema = "{SCHEMA}" as the first line')
        if not isinstance(schema, str) or not schema.startswith(_SCHEMA_PREFIX):
            raise self.fail("schema", f"not a noisesim card schema: {schema!r} (expected {SCHEMA!r})")
        version = schema[len(_SCHEMA_PREFIX):]
        if not (version.isdigit() and int(version) in READABLE_VERSIONS and version == str(int(version))):
            newer = version.isdigit() and int(version) > SCHEMA_VERSION
            hint = "; it was written by a newer noisesim — upgrade noisesim to read it" if newer else ""
            readable = ", ".join(repr(f"{_SCHEMA_PREFIX}{v}") for v in READABLE_VERSIONS)
            raise self.fail("schema", f"unsupported schema {schema!r}: this noisesim reads {readable}{hint}")
        self.version = int(version)
        self.keys(doc, "", ("schema", "camera", "sensor"), ("iso", "joint", "maps", "dark_bank", "provenance"))

        cam = self.table(doc, "camera", "camera")
        self.keys(cam, "camera", ("name",), ("make", "model"))
        camera = self.build("camera", Camera, **cam)

        sen = self.table(doc, "sensor", "sensor")
        self.keys(sen, "sensor", _SENSOR_KEYS)
        sensor = self._sensor(sen)

        iso_rows = doc.get("iso", [])
        if not isinstance(iso_rows, list):
            raise self.fail("iso", f"must be an array of tables ([[iso]]), got {type(iso_rows).__name__}")
        table = []
        for i, row in enumerate(iso_rows):
            where = f"iso[{i}]"
            if not isinstance(row, dict):
                raise self.fail(where, f"must be a table, got {type(row).__name__}")
            self.keys(row, where, _ISO_REQUIRED, _ISO_OPTIONAL)
            if self.version < 2:
                for k in ISO_KEYS_V2:
                    if k in row:
                        raise self.fail(f"{where}.{k}", f"needs schema = \"{SCHEMA}\" (this file declares {schema!r})")
            table.append(self.build(where, ISOEntry, **row))

        joint = None
        jt = self.table(doc, "joint", "joint", required=False)
        if jt is not None:
            joint = self._joint(jt)

        maps_file = maps_sha = None
        mp = self.table(doc, "maps", "maps", required=False)
        if mp is not None:
            self.keys(mp, "maps", _MAPS_KEYS)
            maps_file, maps_sha = mp["file"], mp["sha256"]

        bank_file = bank_sha = None
        bk = self.table(doc, "dark_bank", "dark_bank", required=False)
        if bk is not None:
            self.keys(bk, "dark_bank", _MAPS_KEYS)
            bank_file, bank_sha = bk["file"], bk["sha256"]

        prov = self.table(doc, "provenance", "provenance", required=False) or {}
        return self.build(
            "",
            Card,
            camera=camera,
            sensor=sensor,
            iso_table=tuple(table),
            joint=joint,
            maps_file=maps_file,
            maps_sha256=maps_sha,
            dark_bank_file=bank_file,
            dark_bank_sha256=bank_sha,
            provenance=prov,
            source_path=source_path,
        )

    def _sensor(self, sen: Mapping) -> Sensor:
        cfa = sen["cfa"]
        if not isinstance(cfa, str):
            raise self.fail("sensor.cfa", f"must be a string such as \"RGGB\", got {type(cfa).__name__} {cfa!r}")
        try:
            cfa = CFA(cfa)
        except CFAError as exc:
            raise self.fail("sensor.cfa", str(exc)) from None
        bit_depth = sen["bit_depth"]
        if isinstance(bit_depth, bool) or not isinstance(bit_depth, int):
            raise self.fail("sensor.bit_depth", f"must be an integer, got {type(bit_depth).__name__} {bit_depth!r}")
        try:
            black = _vec4("black_level_dn", sen["black_level_dn"])
            white = _vec4("white_level_dn", sen["white_level_dn"])
        except _Invalid as exc:
            raise self.fail(f"sensor.{exc.field}", exc.message) from None
        try:
            return Sensor(cfa=cfa, bit_depth=bit_depth, black_level_dn=black, white_level_dn=white)
        except ParameterError as exc:
            msg = str(exc)
            where = "sensor.bit_depth" if msg.startswith("bit_depth") else "sensor.black_level_dn / white_level_dn"
            raise self.fail(where, msg) from None

    def _fit(self, value: Any, where: str) -> LogLinearFit:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a table {{slope, intercept, residual_std}}, got {type(value).__name__} {value!r}")
        self.keys(value, where, ("slope", "intercept"), ("residual_std",))
        return self.build(where, LogLinearFit, **value)

    def _joint(self, jt: Mapping) -> JointModel:
        self.keys(jt, "joint", _JOINT_REQUIRED, _JOINT_OPTIONAL)
        rows = jt["profile"]
        if not isinstance(rows, list):
            raise self.fail("joint.profile", f"must be an array of tables ([[joint.profile]]), got {type(rows).__name__}")
        # the joint range is needed as the default range of a profile
        try:
            kmin = _number("k_min_dn_per_e", jt["k_min_dn_per_e"], positive=True)
            kmax = _number("k_max_dn_per_e", jt["k_max_dn_per_e"], positive=True)
        except _Invalid as exc:
            raise self.fail(f"joint.{exc.field}", exc.message) from None
        profiles = []
        for i, row in enumerate(rows):
            where = f"joint.profile[{i}]"
            if not isinstance(row, dict):
                raise self.fail(where, f"must be a table, got {type(row).__name__}")
            self.keys(row, where, _PROFILE_REQUIRED, _PROFILE_OPTIONAL)
            fits = {name: self._fit(row[name], f"{where}.{name}") for name in _FIT_NAMES}
            profiles.append(
                self.build(
                    where,
                    JointProfile,
                    name=row["name"],
                    weight=row.get("weight", 1.0),
                    k_min_dn_per_e=row.get("k_min_dn_per_e", kmin),
                    k_max_dn_per_e=row.get("k_max_dn_per_e", kmax),
                    **fits,
                )
            )
        kwargs = {k: jt[k] for k in _JOINT_OPTIONAL if k in jt}
        return self.build("joint", JointModel, k_min_dn_per_e=kmin, k_max_dn_per_e=kmax, profiles=tuple(profiles), **kwargs)


def parse_card(text: str, source: str | os.PathLike = "<string>", *, source_path: Path | None = None) -> Card:
    """Parse and validate card text; ``source`` names it in error messages.

    Parameters
    ----------
    text : str
        TOML text of a card.
    source : str or PathLike
        Where it came from, for error messages.
    source_path : Path, optional
        The card file, against which a relative maps sidecar or dark bank is resolved.

    Returns
    -------
    Card

    Raises
    ------
    CardError
        Invalid TOML or card fields; the message names ``source`` and the field.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays/tables recursively
        raise CardError(f"{source}: arrays or tables nested too deeply to be a card") from None
    card = _Parser(str(source)).parse(doc, source_path)
    object.__setattr__(card, "_text", text)
    return card


# --------------------------------------------------------------------------------------------------
# shipped cards and loading
# --------------------------------------------------------------------------------------------------
def shipped_cards_dir() -> Path | None:
    """The folder of shipped cards: ``data_cards/`` beside the package in a checkout, else the installed
    ``data_cards`` package data; None when neither exists.

    Returns
    -------
    Path or None
    """
    here = Path(__file__).resolve().parent.parent / "data_cards"
    if here.is_dir() and any(here.glob("*.toml")):
        return here
    try:
        from importlib.resources import files

        installed = Path(str(files("noisesim.data_cards")))
    except (ModuleNotFoundError, TypeError):
        return None
    return installed if installed.is_dir() else None


def _shipped() -> dict[str, Path]:
    folder = shipped_cards_dir()
    if folder is None:
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def list_cards() -> list[str]:
    """Names of the shipped cards (file stems in ``data_cards/``), sorted.

    Returns
    -------
    list of str
        Names :func:`load_card` accepts.
    """
    return sorted(_shipped(), key=str.lower)


def _resolve(name_or_path: str | os.PathLike) -> Path:
    if isinstance(name_or_path, Card):
        raise TypeError("load_card takes a name or a path; you already have a Card")
    raw = os.fspath(name_or_path)
    path = Path(raw).expanduser()
    looks_like_path = isinstance(name_or_path, os.PathLike) or os.sep in raw or "/" in raw or raw.lower().endswith(".toml")
    if path.is_file():
        return path
    if looks_like_path:
        if path.is_dir():
            raise CardError(f"{path}: is a folder, not a card file")
        raise UnknownCardError(f"no card file {path}; shipped cards: {', '.join(list_cards()) or '(none found)'}")
    shipped = _shipped()
    matches = [p for stem, p in shipped.items() if stem.lower() == raw.strip().lower()]
    if matches:
        return matches[0]
    if path.is_dir():
        raise CardError(f"{path}: is a folder, not a card file (nor a shipped card name)")
    raise UnknownCardError(
        f"unknown card {raw!r}: not a shipped card and no such file. Shipped cards: {', '.join(list_cards()) or '(none found)'}"
    )


def load_card(name_or_path: str | os.PathLike) -> Card:
    """Load and validate a card.

    Parameters
    ----------
    name_or_path : str or path
        A shipped card name (case-insensitive, see :func:`list_cards`) or a path to a ``.toml`` card.

    Returns
    -------
    Card
        Validated; its fixed-pattern maps (if any) are loaded on first use.

    Raises
    ------
    UnknownCardError
        Neither a shipped name nor an existing file (the message lists the shipped cards).
    CardError
        The file is not a valid card; the message names the file and the field.

    Examples
    --------
    >>> card = load_card("SonyA7S2")
    >>> card.sensor.cfa.pattern, card.isos[:2]
    ('RGGB', (50.0, 64.0))
    """
    path = _resolve(name_or_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CardError(f"{path}: cannot read the card: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CardError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); is this a card?") from None
    return parse_card(text, path, source_path=path.resolve())


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    """One TOML value: numbers (integral floats as integers), strings, flat or nested lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_real_number(value):
        v = float(value)
        if v.is_integer() and abs(v) < 2**53:
            return str(int(v))
        return repr(v)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_fmt(v)}" for k, v in value.items()) + " }"
    raise CardError(f"cannot write {type(value).__name__} {value!r} into a card")


def _toml_string(text: str) -> str:
    """A TOML basic string, escaped by tomli_w (json.dumps left DEL, U+007F, raw: TOML forbids it)."""
    import tomli_w

    return tomli_w.dumps({"v": text})[len("v = "):].rstrip("\n")


def _key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "-_") for c in k) else _toml_string(k)


def _fit_dict(fit: LogLinearFit) -> dict:
    return {"slope": fit.slope, "intercept": fit.intercept, "residual_std": fit.residual_std}


def card_to_toml(card: Card) -> str:
    """The TOML text of a card; :func:`parse_card` of it gives an equal card.

    The schema line is the oldest version that holds the card: ``noisesim.card/1`` when no ISO row uses a
    ``/2`` key and the card is not a Poisson–Gaussian one (so such files stay readable by older noisesim),
    else ``noisesim.card/2``.

    Parameters
    ----------
    card : Card
        The card.

    Returns
    -------
    str
        TOML text (units in the key names, as in the records).
    """
    import tomli_w

    needs_v2 = card.kind == KIND_POISSON_GAUSSIAN or any(getattr(e, k) is not None for e in card.iso_table for k in ISO_KEYS_V2)
    schema = SCHEMA if needs_v2 else f"{_SCHEMA_PREFIX}1"
    out: list[str] = [f'schema = "{schema}"', ""]
    out.append("# Units are in the key names: _dn digital numbers, _e electrons, _dn_per_e system gain K (EMVA 1288).")
    out.append("# Per-site vectors are in Bayer reading order of the CFA (RGGB -> R, G1, G2, B).")
    out += ["", "[camera]", f"name = {_fmt(card.camera.name)}"]
    if card.camera.make:
        out.append(f"make = {_fmt(card.camera.make)}")
    if card.camera.model:
        out.append(f"model = {_fmt(card.camera.model)}")
    s = card.sensor
    out += [
        "",
        "[sensor]",
        f"cfa = {_fmt(s.cfa.pattern)}",
        f"bit_depth = {s.bit_depth}",
        f"black_level_dn = {_fmt(s.black_level_dn)}",
        f"white_level_dn = {_fmt(s.white_level_dn)}",
    ]
    for e in card.iso_table:
        out += ["", "[[iso]]"]
        for name in ("iso",) + _ISO_REQUIRED[1:] + _ISO_OPTIONAL[:-1]:
            v = getattr(e, name)
            if v is not None:
                out.append(f"{name} = {_fmt(v)}")
        if e.ci:
            out.append(f"ci = {_fmt(dict(e.ci))}")
    j = card.joint
    if j is not None:
        out += ["", "[joint]", f"k_min_dn_per_e = {_fmt(j.k_min_dn_per_e)}", f"k_max_dn_per_e = {_fmt(j.k_max_dn_per_e)}"]
        if j.dual_gain_switch_iso is not None:
            out.append(f"dual_gain_switch_iso = {_fmt(j.dual_gain_switch_iso)}")
        if j.tukey_lambda_values is not None:
            out.append(f"tukey_lambda_values = {_fmt(j.tukey_lambda_values)}")
        if j.black_level_error_bins is not None:
            out.append("black_level_error_bins = [")
            out += [f"    {_fmt(b)}," for b in j.black_level_error_bins]
            out.append("]")
        for p in j.profiles:
            out += [
                "",
                "[[joint.profile]]",
                f"name = {_fmt(p.name)}",
                f"weight = {_fmt(p.weight)}",
                f"k_min_dn_per_e = {_fmt(p.k_min_dn_per_e)}",
                f"k_max_dn_per_e = {_fmt(p.k_max_dn_per_e)}",
            ]
            out += [f"{name} = {_fmt(_fit_dict(p.fit(name)))}" for name in _FIT_NAMES]
    if card.maps_file is not None:
        sha = card.maps_sha256 or hashlib.sha256(_npz_bytes(card.maps)).hexdigest()  # in-memory maps: as saved
        out += ["", "[maps]", f"file = {_fmt(card.maps_file)}", f"sha256 = {_fmt(sha)}"]
    if card.dark_bank_file is not None:
        out += ["", "[dark_bank]", f"file = {_fmt(card.dark_bank_file)}", f"sha256 = {_fmt(card.dark_bank_sha256)}"]
    if card.provenance:
        out += ["", tomli_w.dumps({"provenance": _plain(card.provenance)}).rstrip("\n")]
    return "\n".join(out) + "\n"


def _plain(value: Any) -> Any:
    """Mapping proxies and tuples → dicts and lists, for tomli_w."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _referenced_by_other_card(folder: Path, sidecar: str, card_path: Path) -> bool:
    """Whether a card file in ``folder`` other than ``card_path`` names ``sidecar`` as its maps file."""
    for other in folder.glob("*.toml"):
        if other.resolve() == card_path.resolve():
            continue
        try:
            maps = tomllib.loads(other.read_text(encoding="utf-8")).get("maps")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue  # not a card: it references nothing
        if isinstance(maps, dict) and maps.get("file") == sidecar:
            return True
    return False


def _sidecar_name(card_path: Path, digest: str) -> str:
    """The maps sidecar name for a card saved at ``card_path`` (see :func:`save_card`)."""
    stem = _safe_stem(card_path.stem)
    name = f"{stem}_maps.npz"
    existing = _file_sha256(card_path.parent / name)
    if existing is None or existing == digest or not _referenced_by_other_card(card_path.parent, name, card_path):
        return name
    return f"{stem}_maps-{digest[:12]}.npz"


def save_card(card: Card, path: str | os.PathLike) -> Path:
    """Write a card as TOML (and its maps sidecar next to it when it has maps); returns the card's path.

    Both files are written to temporary names and renamed, the sidecar first, so a crash never leaves a
    card that points at a missing or half-written sidecar.

    The sidecar is named after the card file: ``<card stem>_maps.npz`` (so two cards of one camera can share
    a folder). A sidecar of that name with other content that another card in the folder references is
    never overwritten: the maps then go to ``<card stem>_maps-<first 12 hex digits of their SHA-256>.npz``.

    Parameters
    ----------
    card : Card
        The card to write.
    path : str or PathLike
        The ``.toml`` file; its folder must exist.

    Returns
    -------
    Path
        The card file.
    """
    if not isinstance(card, Card):
        raise TypeError(f"save_card needs a Card, got {type(card).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".toml":
        raise CardError(f"{path}: a card file must end in .toml")
    if not path.parent.is_dir():
        raise CardError(f"{path}: folder {path.parent} does not exist")
    if card.maps_file is not None:
        maps = card.maps  # loads from the source sidecar if needed (checksum verified)
        data = _npz_bytes(maps)
        digest = hashlib.sha256(data).hexdigest()
        name = _sidecar_name(path, digest)
        # the checksum of the bytes written (in-memory maps, or a sidecar written by other software)
        card = dataclasses.replace(card, maps_file=name, maps_sha256=digest)
        if _file_sha256(path.parent / name) != digest:
            write_bytes(path.parent / name, data)
    write_text(path, card_to_toml(card))
    return path
