"""Plain parameter records of the noise model (docs/model.md).

* :class:`Sensor` — what the raw file says about the sensor: CFA, bit depth, black and white levels.
* :class:`NoiseParams` — one draw of a camera's noise parameters (sampled by
  :func:`noisesim.sampling.sample_params`, or written by hand). Together with a seed it fully determines
  a noisy frame, so it is stored with every generated sample.
* :class:`NoiseComponents` — which terms of the model are switched on.
* :class:`FixedPatternMaps` — per-pixel maps (dark shading / DSNU, PRNU, dark current, hot pixels).

Units are in the field names: ``_dn`` digital numbers, ``_e`` electrons, ``_dn_per_e`` the system gain K
(EMVA 1288), ``_s`` seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .cfa import CFA, per_site_values
from .errors import ParameterError, ShapeError

__all__ = ["FixedPatternMaps", "is_real_number", "NoiseComponents", "NoiseParams", "READ_MODELS", "Sensor"]

READ_MODELS = ("gaussian", "tukey")


def is_real_number(value) -> bool:
    """Whether ``value`` is a real scalar (Python or NumPy int or float), booleans excluded.

    Parameters
    ----------
    value : object
        Anything (a parsed card field, a keyword argument).

    Returns
    -------
    bool
        True for ``int``, ``float``, ``np.integer`` and ``np.floating`` that are not ``bool``/``np.bool_``;
        NaN and infinities count as numbers (test finiteness separately).

    Examples
    --------
    >>> is_real_number(3), is_real_number(np.float32(0.5)), is_real_number(True), is_real_number("1")
    (True, True, False, False)
    """
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_finite(name: str, value: float, *, positive: bool = False, nonneg: bool = False) -> None:
    if not is_real_number(value) or not math.isfinite(float(value)):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ParameterError(f"{name} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ParameterError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Sensor:
    """The raw format of a sensor.

    Parameters
    ----------
    cfa : str or CFA
        Pattern read from the top-left pixel (see :mod:`noisesim.cfa`).
    bit_depth : int
        8 … 16; the largest representable DN is ``2**bit_depth - 1``.
    black_level_dn, white_level_dn : float or 4 floats
        Per colour site, in Bayer reading order (RGGB → R, G1, G2, B). White defaults to ``2**bit_depth - 1``.
    maps_of_card : str or None
        Set by :class:`noisesim.card.Card` on its own sensor when the card has fixed-pattern maps (the
        card's name), so :func:`noisesim.noise.simulate` can warn when that sensor is used without them.
        Not part of the sensor's identity (ignored by ``==``).
    """

    cfa: CFA
    bit_depth: int = 14
    black_level_dn: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    white_level_dn: tuple[float, float, float, float] | None = None
    maps_of_card: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.cfa, CFA):
            object.__setattr__(self, "cfa", CFA(self.cfa))
        if not isinstance(self.bit_depth, (int, np.integer)) or not 8 <= int(self.bit_depth) <= 16:
            raise ParameterError(f"bit_depth must be an integer from 8 to 16, got {self.bit_depth!r}")
        object.__setattr__(self, "bit_depth", int(self.bit_depth))
        black = per_site_values(self.black_level_dn, "black_level_dn")
        white = per_site_values(self.max_dn if self.white_level_dn is None else self.white_level_dn, "white_level_dn")
        for b, w, name in zip(black, white, self.cfa.site_names):
            if not 0 <= b < w <= self.max_dn:
                raise ParameterError(
                    f"levels of channel {name} must satisfy 0 <= black < white <= {self.max_dn} "
                    f"(bit depth {self.bit_depth}); got black {b}, white {w}"
                )
        object.__setattr__(self, "black_level_dn", black)
        object.__setattr__(self, "white_level_dn", white)

    @property
    def max_dn(self) -> int:
        """Largest representable DN, ``2**bit_depth − 1``."""
        return 2**self.bit_depth - 1

    def with_black_level(self, black_level_dn) -> "Sensor":
        """This sensor with another black level (e.g. :attr:`NoiseParams.black_level_dn`); None keeps it.

        Parameters
        ----------
        black_level_dn : float, 4 floats or None
            Black level per colour site [DN].

        Returns
        -------
        Sensor
            ``self`` when nothing changes, else a copy.
        """
        if black_level_dn is None or tuple(black_level_dn) == self.black_level_dn:
            return self
        return dataclasses.replace(self, black_level_dn=tuple(black_level_dn))

    @property
    def range_dn(self) -> tuple[float, float, float, float]:
        """White − black per colour site: the DN span of normalized [0, 1]."""
        return tuple(w - b for w, b in zip(self.white_level_dn, self.black_level_dn))  # type: ignore[return-value]


@dataclass(frozen=True)
class NoiseParams:
    """One draw of a camera's noise parameters (ELD/PMN model, docs/model.md).

    Attributes
    ----------
    gain_k_dn_per_e : float
        System gain K [DN/e⁻] (EMVA 1288).
    read_model : {"tukey", "gaussian"}
        Which read-noise distribution :func:`noisesim.noise.simulate` uses.
    read_sigma_dn : float
        σ of the Gaussian read noise [DN].
    tukey_lambda : float
        Shape λ of the Tukey-lambda read noise (λ = 0 is the logistic distribution).
    tukey_scale_dn : float
        Scale σ_TL of the Tukey-lambda read noise [DN]; std = σ_TL · std(TukeyLambda(λ)).
    row_sigma_dn : float
        σ of the per-row offset (banding) [DN].
    col_sigma_dn : float
        σ of the per-column offset [DN].
    black_level_error_dn : 4 floats
        Offset of each colour site's black level (colour bias), Bayer reading order [DN].
    dark_current_e_per_s : float
        Mean dark current [e⁻/s], multiplied by ``exposure_s``.
    exposure_s : float
        Exposure time of the (short) frame [s]; only dark current uses it.
    iso : float or None
        The ISO the parameters describe, when known (informational; K already encodes the gain).
    black_level_dn : 4 floats or None
        Black level the raw file declares at this ISO, per colour site [DN], where it differs by ISO (a
        card of schema ``noisesim.card/2``); :func:`noisesim.noise.simulate` then uses it in place of
        ``sensor.black_level_dn`` (offset and normalization). None: the sensor's.
    hot_pixel_dark_current_e_per_s : float or None
        Dark current of the pixels in the hot-pixel map [e⁻/s]; None: the same as every other pixel.
    """

    gain_k_dn_per_e: float
    read_model: str = "tukey"
    read_sigma_dn: float = 0.0
    tukey_lambda: float = 0.0
    tukey_scale_dn: float = 0.0
    row_sigma_dn: float = 0.0
    col_sigma_dn: float = 0.0
    black_level_error_dn: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    dark_current_e_per_s: float = 0.0
    exposure_s: float = 0.0
    iso: float | None = None
    black_level_dn: tuple[float, float, float, float] | None = None
    hot_pixel_dark_current_e_per_s: float | None = None

    def __post_init__(self) -> None:
        _check_finite("gain_k_dn_per_e", self.gain_k_dn_per_e, positive=True)
        if self.read_model not in READ_MODELS:
            raise ParameterError(f"read_model must be one of {READ_MODELS}, got {self.read_model!r}")
        for name in ("read_sigma_dn", "tukey_scale_dn", "row_sigma_dn", "col_sigma_dn", "dark_current_e_per_s", "exposure_s"):
            _check_finite(name, getattr(self, name), nonneg=True)
        _check_finite("tukey_lambda", self.tukey_lambda)
        if not -1.0 < self.tukey_lambda < 1.0:
            # |λ| ≥ 1 is not a plausible read-noise shape (λ = 1 is uniform; λ ≤ −1 has no variance).
            raise ParameterError(f"tukey_lambda must lie in (-1, 1), got {self.tukey_lambda!r}")
        object.__setattr__(self, "black_level_error_dn", per_site_values(self.black_level_error_dn, "black_level_error_dn"))
        if self.iso is not None:
            _check_finite("iso", self.iso, positive=True)
        if self.black_level_dn is not None:
            black = per_site_values(self.black_level_dn, "black_level_dn")
            if min(black) < 0:
                raise ParameterError(f"black_level_dn must be >= 0, got {list(black)}")
            object.__setattr__(self, "black_level_dn", black)
        if self.hot_pixel_dark_current_e_per_s is not None:
            _check_finite("hot_pixel_dark_current_e_per_s", self.hot_pixel_dark_current_e_per_s, nonneg=True)

    def replace(self, **changes) -> "NoiseParams":
        """A copy with some fields changed (validated again).

        Parameters
        ----------
        **changes
            Field names and new values (units as in the names).

        Returns
        -------
        NoiseParams
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The record as a plain dict (JSON/HDF5 ready; units as in the field names).

        Returns
        -------
        dict
            Field name → value (floats, str, lists of 4 floats or None).
        """
        d = dataclasses.asdict(self)
        d["black_level_error_dn"] = list(self.black_level_error_dn)
        if self.black_level_dn is not None:
            d["black_level_dn"] = list(self.black_level_dn)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseParams":
        """The inverse of :meth:`to_dict`; unknown keys raise ParameterError.

        Parameters
        ----------
        d : dict
            As written by :meth:`to_dict` (missing optional fields take their defaults).

        Returns
        -------
        NoiseParams
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ParameterError(f"unknown NoiseParams fields: {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class NoiseComponents:
    """Switches for each term of the noise model; all physical terms on by default.

    ``row_per_channel``: draw one row offset per packed-channel row (each CFA row phase separately)
    instead of one per sensor row. ``quantize=False`` is the float path: no rounding, quantization
    noise added as U(−½, ½) DN unless ``dither=False`` (then no quantization term at all, e.g. to study
    the read-noise distribution alone). ``clip_at_black`` clips the low end at the black level instead of 0 DN.
    ``per_pixel_read``: draw read noise with each pixel's own σ (``FixedPatternMaps.read_sigma_scale`` times
    the card's σ, same Gaussian or Tukey shape) where the maps have one; off: one σ for the whole sensor.

    Parameters
    ----------
    shot, read, row, column, black_level_error, dark_current, dark_shading, prnu, hot_pixels : bool
        The physical terms of docs/model.md: photon shot noise, read noise, row and column offsets, the
        per-site black-level error, dark current, dark shading (DSNU), PRNU and hot pixels.
    row_per_channel : bool
        One row offset per packed-channel row instead of per sensor row.
    quantize : bool
        Round to integer DN (off: the float path).
    dither : bool
        With ``quantize=False``, add U(−½, ½) DN quantization noise.
    clip : bool
        Clip to [0, white] DN (or [black, white] with ``clip_at_black``).
    clip_at_black : bool
        Clip the low end at the black level instead of 0 DN.
    per_pixel_read : bool
        Use each pixel's own read σ where the maps have one.
    """

    shot: bool = True
    read: bool = True
    row: bool = True
    row_per_channel: bool = False
    column: bool = True
    black_level_error: bool = True
    dark_current: bool = True
    dark_shading: bool = True
    prnu: bool = True
    hot_pixels: bool = True
    quantize: bool = True
    dither: bool = True
    clip: bool = True
    clip_at_black: bool = False
    per_pixel_read: bool = False

    @classmethod
    def only(cls, *names: str, **overrides) -> "NoiseComponents":
        """Everything off but the named physical terms (quantize/clip keep their defaults unless given).

        >>> NoiseComponents.only("shot", "read").row
        False

        Parameters
        ----------
        *names : str
            Field names of the physical terms to keep on (``"shot"``, ``"read"``, …).
        **overrides : bool
            Other fields to set (e.g. ``quantize=False``).

        Returns
        -------
        NoiseComponents
        """
        terms = ("shot", "read", "row", "column", "black_level_error", "dark_current", "dark_shading", "prnu", "hot_pixels")
        bad = set(names) - set(terms)
        if bad:
            raise ParameterError(f"unknown noise components {sorted(bad)}; valid: {terms}")
        kw = {t: (t in names) for t in terms}
        kw.update(overrides)
        return cls(**kw)


@dataclass(frozen=True)
class FixedPatternMaps:
    """Per-pixel fixed-pattern maps of a full sensor, shape (H, W) each (mosaic layout), all optional.

    Attributes
    ----------
    dark_shading_k_dn_per_iso, dark_shading_b_dn : (H, W) float32
        Dark shading / DSNU ``DS(iso) = k · iso + b`` in DN (PMN; docs/calibration.md),
        black-level error of the channel excluded (it is a separate term).
    prnu : (H, W) float32
        Relative gain deviation of each pixel (mean 0; 0.01 = 1 %), EMVA 1288 PRNU.
    dark_current_e_per_s : (H, W) float32
        Per-pixel dark current [e⁻/s]; replaces the scalar dark current where given.
    hot_pixel_mask : (H, W) bool
        Pixels flagged as hot/defective. With the ``hot_pixels`` component off their dark shading and
        dark current are replaced by the median of their colour channel.
    read_sigma_scale : (H, W) float32
        Each pixel's temporal read-noise σ relative to the card's σ (median 1 per channel; unitless).
        Used when ``NoiseComponents.per_pixel_read`` is on: small-pixel CMOS sensors have a heavy tail of
        pixels several times noisier than the median (random telegraph noise).
    """

    dark_shading_k_dn_per_iso: np.ndarray | None = None
    dark_shading_b_dn: np.ndarray | None = None
    prnu: np.ndarray | None = None
    dark_current_e_per_s: np.ndarray | None = None
    hot_pixel_mask: np.ndarray | None = None
    read_sigma_scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = None
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            v = np.asarray(v, dtype=bool if f.name == "hot_pixel_mask" else np.float32)
            if v.ndim != 2:
                raise ShapeError(f"map {f.name} must have shape (H, W). Got {v.shape}.")
            if shape is not None and v.shape != shape:
                raise ShapeError(f"map {f.name} has shape {v.shape}, other maps have {shape}")
            if v.dtype != bool and not np.all(np.isfinite(v)):
                raise ShapeError(f"map {f.name} contains non-finite values")
            shape = v.shape
            object.__setattr__(self, f.name, v)
        if (self.dark_shading_k_dn_per_iso is None) != (self.dark_shading_b_dn is None):
            raise ShapeError("dark shading needs both dark_shading_k_dn_per_iso and dark_shading_b_dn")
        # Physical ranges: a PRNU below -1 makes the pixel's gain negative (PRNU = -5 gave all-zero frames).
        for name, lo in (("prnu", -1.0), ("dark_current_e_per_s", 0.0), ("read_sigma_scale", 0.0)):
            v = getattr(self, name)
            if v is not None and v.size and float(v.min()) < lo:
                rule = ">= -1 (a relative gain deviation: below -1 the gain is negative)" if name == "prnu" else ">= 0"
                raise ParameterError(f"map {name} has values down to {float(v.min()):g}; they must be {rule}")

    @property
    def shape(self) -> tuple[int, int] | None:
        """(H, W) of the maps, or None when there are none."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                return v.shape
        return None

    def dark_shading_dn(self, iso: float) -> np.ndarray | None:
        """DS(iso) = k · iso + b, (H, W) float32 DN, or None without a dark-shading map.

        Parameters
        ----------
        iso : float
            ISO the frame is taken at.

        Returns
        -------
        (H, W) ndarray of float32 or None
            Dark shading [DN] (offset above black), or None when the maps have none.
        """
        if self.dark_shading_k_dn_per_iso is None:
            return None
        return (self.dark_shading_k_dn_per_iso * np.float32(iso) + self.dark_shading_b_dn).astype(np.float32)
