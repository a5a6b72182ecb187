"""Inverse and forward camera ISP: sRGB images ↔ normalized raw mosaics.

The inverse ("unprocessing") follows Brooks et al., *Unprocessing Images for Learned Raw Denoising*,
CVPR 2019 [Brooks2019]_ (docs/datasets.md), step by step:

1. inverse tone curve      x = 0.5 − sin(asin(1 − 2y) / 3)        (inverse of the smoothstep 3x² − 2x³)
2. inverse sRGB transfer    the sRGB EOTF of IEC 61966-2-1 [IEC61966]_ (Brooks used a 2.2 power; we use
                            the standard's piecewise curve, of which :func:`linear_to_srgb` is the exact inverse)
3. inverse colour matrix    linear sRGB → camera RGB with ``inv(cam2rgb)``
4. inverse white balance    divide by the white-balance gains, with Brooks' highlight-preserving
                            "safe" gains so bright pixels do not turn into clipped coloured highlights
5. mosaic                   keep one colour per pixel as the CFA says (:mod:`noisesim.cfa`, quad Bayer too)

The forward ISP :func:`process` (previews, round-trip tests) undoes each step: white balance, demosaic
(OpenCV edge-aware Bayer demosaic, or normalized-convolution bilinear for quad Bayer), colour matrix,
sRGB transfer, tone curve.

Every sampled quantity is returned in an :class:`ISPMeta` record (sample first, apply second), so a
dataset can store it and a preview can invert exactly what was applied.

All images are float32. "Normalized" raw is (DN − black) / (white − black), see :mod:`noisesim.params`.

References
----------
.. [Brooks2019] T. Brooks, B. Mildenhall, T. Xue, J. Chen, D. Sharlet, J. T. Barron, "Unprocessing Images
   for Learned Raw Denoising", CVPR 2019, §3.
.. [IEC61966] IEC 61966-2-1:1999, Multimedia systems and equipment — Colour measurement and management —
   Part 2-1: Default RGB colour space — sRGB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from .cfa import CFA
from .errors import ParameterError, ShapeError
from .rng import as_generator

__all__ = [
    "ISPMeta",
    "srgb_to_linear",
    "linear_to_srgb",
    "inverse_tone_curve",
    "tone_curve",
    "sample_isp_meta",
    "cam2rgb_from_xyz2cam",
    "unprocess",
    "unprocess_mosaic",
    "mosaic",
    "demosaic",
    "process",
    "process_rgb",
    "RGB2XYZ_D65",
    "XYZ2CAM_MATRICES",
]

# Linear sRGB (D65) → CIE XYZ, IEC 61966-2-1 §5.2 (rounded to 7 digits as printed in the standard's
# derivations; the rows sum to the D65 white point Xn = 0.9505, Yn = 1, Zn = 1.089).
RGB2XYZ_D65 = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)

# XYZ → camera matrices of four real cameras (D65 DNG ColorMatrix values as tabulated in dcraw's
# adobe_coeff), the set Brooks et al. §3.2 draw random convex combinations from. Only their convex hull
# matters: it spans the colour responses of typical consumer sensors.
XYZ2CAM_MATRICES = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
    ]
)

# Highlight preservation threshold of Brooks' safe inverse gains: pixels whose mean intensity exceeds it
# are blended towards unit gain so they stay below 1 (Brooks et al. §3.2, "inflection" 0.9).
_HIGHLIGHT_INFLECTION = 0.9


# --------------------------------------------------------------------------------------------------
# Transfer curves
# --------------------------------------------------------------------------------------------------
def srgb_to_linear(x):
    """sRGB EOTF: encoded sRGB in [0, 1] → linear sRGB in [0, 1] (IEC 61966-2-1, eq. for R'sRGB → R).

    ``L = x / 12.92`` for ``x ≤ 0.04045``, else ``((x + 0.055) / 1.055) ** 2.4``. Input is clipped to [0, 1].

    >>> float(srgb_to_linear(np.float32(0.5)))  # doctest: +ELLIPSIS
    0.21404...

    Parameters
    ----------
    x : float or ndarray
        Encoded sRGB, any shape.

    Returns
    -------
    float32 ndarray (or scalar)
        Linear values in [0, 1], same shape.
    """
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / np.float32(12.92), ((x + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4)).astype(np.float32)


def linear_to_srgb(x):
    """Inverse sRGB EOTF (the sRGB OETF): linear [0, 1] → encoded sRGB [0, 1] (IEC 61966-2-1).

    ``12.92 L`` for ``L ≤ 0.0031308``, else ``1.055 L^(1/2.4) − 0.055``. Input is clipped to [0, 1].

    Parameters
    ----------
    x : float or ndarray
        Linear values, any shape.

    Returns
    -------
    float32 ndarray (or scalar)
        Encoded sRGB in [0, 1], same shape.
    """
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(
        x <= 0.0031308, x * np.float32(12.92), np.float32(1.055) * x ** np.float32(1 / 2.4) - np.float32(0.055)
    ).astype(np.float32)


def tone_curve(x):
    """Global tone curve of Brooks et al. §3.1: the smoothstep ``3x² − 2x³`` on [0, 1] (input clipped).

    Parameters
    ----------
    x : float or ndarray
        Values in [0, 1], any shape.

    Returns
    -------
    ndarray (or scalar)
        Tone-mapped values in [0, 1], same shape.
    """
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return (3.0 * x * x - 2.0 * x * x * x).astype(np.float32)


def inverse_tone_curve(y):
    """Inverse of :func:`tone_curve`: ``x = 0.5 − sin(asin(1 − 2y) / 3)`` (Brooks et al. §3.1), y clipped to [0, 1].

    Parameters
    ----------
    y : float or ndarray
        Tone-mapped values, any shape.

    Returns
    -------
    ndarray (or scalar)
        Values before the tone curve, in [0, 1], same shape.
    """
    y = np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0)
    return (0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ISPMeta:
    """Every quantity the (un)processing of one image used.

    Attributes
    ----------
    rgb_gain : float
        Overall digital gain (exposure brightening) the camera ISP applied, > 0 (Brooks: 1 / N(0.8, 0.1)).
    red_gain, blue_gain : float
        White-balance gains of the red and blue channels (green gain 1), > 0.
    cam2rgb : tuple of 9 floats
        Camera RGB → linear sRGB colour-correction matrix, row-major 3×3; rows sum to 1 (white stays white).
    ccm_source : {"card", "sampled"}
        Whether the matrix came from the camera's card or was sampled as in Brooks et al. §3.2.
    """

    rgb_gain: float
    red_gain: float
    blue_gain: float
    cam2rgb: tuple
    ccm_source: str = "sampled"

    def __post_init__(self) -> None:
        # plain-float checks: this runs once per synthesized patch (numpy's per-call overhead was ~15 µs)
        for name in ("rgb_gain", "red_gain", "blue_gain"):
            v = getattr(self, name)
            try:
                ok = math.isfinite(v) and v > 0
            except TypeError:
                ok = False
            if not ok:
                raise ParameterError(f"ISPMeta.{name} must be a finite number > 0, got {v!r}")
            object.__setattr__(self, name, float(v))
        m = self.cam2rgb
        if isinstance(m, np.ndarray) or not isinstance(m, (tuple, list)) or len(m) != 9:
            m = np.asarray(m, dtype=np.float64)
            if m.size != 9:
                raise ParameterError(f"ISPMeta.cam2rgb must be 9 finite numbers (3×3 row-major), got shape {m.shape}")
            m = m.ravel().tolist()
        try:
            m = tuple(float(v) for v in m)
        except (TypeError, ValueError):
            raise ParameterError(f"ISPMeta.cam2rgb must be 9 finite numbers (3×3 row-major), got {self.cam2rgb!r}") from None
        if not all(math.isfinite(v) for v in m):
            raise ParameterError("ISPMeta.cam2rgb must be 9 finite numbers (3×3 row-major), got a non-finite one")
        a, b, c, d, e, f, g, h, i = m
        if abs(a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)) < 1e-9:
            raise ParameterError("ISPMeta.cam2rgb is singular; a colour matrix must be invertible")
        object.__setattr__(self, "cam2rgb", m)
        if self.ccm_source not in ("card", "sampled"):
            raise ParameterError(f"ISPMeta.ccm_source must be 'card' or 'sampled', got {self.ccm_source!r}")

    @property
    def cam2rgb_matrix(self) -> np.ndarray:
        """(3, 3) float64 camera RGB → linear sRGB."""
        return np.asarray(self.cam2rgb, dtype=np.float64).reshape(3, 3)

    @property
    def rgb2cam_matrix(self) -> np.ndarray:
        """(3, 3) float64 linear sRGB → camera RGB, the inverse of :attr:`cam2rgb_matrix` (computed once
        per instance; a new array on each access)."""
        inv = self.__dict__.get("_rgb2cam")
        if inv is None:
            inv = np.linalg.inv(self.cam2rgb_matrix)
            object.__setattr__(self, "_rgb2cam", inv)
        return inv.copy()

    @property
    def wb_gains(self) -> np.ndarray:
        """(3,) forward white-balance gains per camera channel, rgb_gain included: ``rgb_gain·(red, 1, blue)``."""
        return np.array([self.red_gain, 1.0, self.blue_gain]) * self.rgb_gain

    def to_dict(self) -> dict:
        """The metadata as a JSON-ready dict (arrays as nested lists).

        Returns
        -------
        dict
        """
        return {
            "rgb_gain": self.rgb_gain,
            "red_gain": self.red_gain,
            "blue_gain": self.blue_gain,
            "cam2rgb": list(self.cam2rgb),
            "ccm_source": self.ccm_source,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ISPMeta":
        """The inverse of :meth:`to_dict`.

        Parameters
        ----------
        d : dict
            As written by :meth:`to_dict`.

        Returns
        -------
        ISPMeta
        """
        return cls(
            rgb_gain=d["rgb_gain"],
            red_gain=d["red_gain"],
            blue_gain=d["blue_gain"],
            cam2rgb=tuple(d["cam2rgb"]),
            ccm_source=d.get("ccm_source", "sampled"),
        )


def cam2rgb_from_xyz2cam(xyz2cam) -> np.ndarray:
    """Camera RGB → linear sRGB matrix from an XYZ → camera matrix (e.g. a DNG ``ColorMatrix``).

    ``rgb2cam = xyz2cam · RGB2XYZ_D65``, rows normalized to sum 1 (so sRGB white maps to camera values with
    equal channels before white balance, as Brooks et al. §3.2 do), then inverted.

    Shape: ``(3, 3) -> (3, 3)``.

    Parameters
    ----------
    xyz2cam : (3, 3) array_like
        XYZ (D65) → camera RGB.

    Returns
    -------
    (3, 3) ndarray
        Camera RGB → linear sRGB.
    """
    xyz2cam = np.asarray(xyz2cam, dtype=np.float64)
    if xyz2cam.shape != (3, 3):
        raise ShapeError(f"xyz2cam must have shape (3, 3). Got {xyz2cam.shape}.")
    rgb2cam = xyz2cam @ RGB2XYZ_D65
    sums = rgb2cam.sum(axis=1, keepdims=True)
    if np.any(np.abs(sums) < 1e-9):
        raise ParameterError("xyz2cam maps white to zero in some channel; not a colour matrix")
    rgb2cam = rgb2cam / sums
    return np.linalg.inv(rgb2cam)


def sample_isp_meta(rng=None, *, cam2rgb=None) -> ISPMeta:
    """Sample the ISP quantities of one image as Brooks et al. §3.2 do.

    * colour matrix: a random convex combination of :data:`XYZ2CAM_MATRICES` (weights U(1e-8, 1e8)
      normalized, i.e. mostly dominated by one camera), turned into camera → sRGB by
      :func:`cam2rgb_from_xyz2cam`; or the given ``cam2rgb`` (e.g. from the camera's card),
      recorded with ``ccm_source="card"``;
    * ``rgb_gain = 1 / g``, ``g ~ N(0.8, 0.1)`` (clamped to g ≥ 0.4, which N(0.8, 0.1) reaches at 4σ);
    * ``red_gain ~ U(1.9, 2.4)``, ``blue_gain ~ U(1.5, 1.9)``.

    Parameters
    ----------
    rng : int, SeedSequence, Generator or None
    cam2rgb : (3, 3) array-like, optional
        Camera RGB → linear sRGB matrix to use instead of sampling one. Its rows are normalized to sum 1.

    Returns
    -------
    ISPMeta
    """
    rng = as_generator(rng)
    if cam2rgb is None:
        weights = rng.uniform(1e-8, 1e8, size=len(XYZ2CAM_MATRICES))
        weights /= weights.sum()
        # np.tensordot(weights, XYZ2CAM_MATRICES, axes=1) without its shape bookkeeping: the same (1, n) · (n, 9) product
        xyz2cam = np.dot(weights.reshape(1, -1), XYZ2CAM_MATRICES.reshape(len(XYZ2CAM_MATRICES), 9)).reshape(3, 3)
        m = cam2rgb_from_xyz2cam(xyz2cam)
        source = "sampled"
    else:
        m = np.asarray(cam2rgb, dtype=np.float64)
        if m.shape != (3, 3):
            raise ShapeError(f"cam2rgb must have shape (3, 3). Got {m.shape}.")
        sums = m.sum(axis=1, keepdims=True)
        if np.any(np.abs(sums) < 1e-9):
            raise ParameterError("cam2rgb has a row summing to 0; cannot normalize it to keep white white")
        m = m / sums
        source = "card"
    g = max(float(rng.normal(0.8, 0.1)), 0.4)
    red = float(rng.uniform(1.9, 2.4))
    blue = float(rng.uniform(1.5, 1.9))
    return ISPMeta(rgb_gain=1.0 / g, red_gain=red, blue_gain=blue, cam2rgb=tuple(m.ravel()), ccm_source=source)


# --------------------------------------------------------------------------------------------------
# Inverse ISP
# --------------------------------------------------------------------------------------------------
def _check_rgb(img, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ShapeError(f"{what} must have shape (H, W, 3). Got {tuple(img.shape)}.")
    return img.astype(np.float32, copy=False)


def _apply_matrix(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(H, W, 3) @ m.T, float32."""
    return (img.reshape(-1, 3) @ m.T.astype(np.float32)).reshape(img.shape).astype(np.float32, copy=False)


_LUT_SIZE = 65536
_lut_cache: dict[str, np.ndarray] = {}


def _decode_lut() -> np.ndarray:
    """srgb_to_linear(inverse_tone_curve(k / 65535)) for k = 0 … 65535, float32 (computed in float64)."""
    if "decode" not in _lut_cache:
        y = np.arange(_LUT_SIZE, dtype=np.float64) / (_LUT_SIZE - 1)
        x = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)
        lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
        _lut_cache["decode"] = np.clip(lin, 0.0, 1.0).astype(np.float32)
    return _lut_cache["decode"]


def _decode_row_python(row, lut, idx, v):
    """One image row through the 16-bit decode table: ``v[j] = lut[round(row[j] · 65535)]`` for the row's
    3·W samples (flattened RGB), float32.

    Two plain loops rather than one: the index loop (float64, exact on 8/16-bit grids; clamped) vectorizes,
    the table reads are scalar loads either way (LLVM judges gathers slower), and the pixel loop that follows
    runs on a contiguous float32 row. Fused into one per-pixel loop, all three stayed scalar (2.7 → 1.0 ms per
    512² patch, same values).
    """
    top = lut.shape[0] - 1
    ftop = float(top)
    n = row.shape[0]
    for j in range(n):
        idx[j] = min(max(int(float(row[j]) * ftop + 0.5), 0), top)
    for j in range(n):
        v[j] = lut[idx[j]]


_decode_row = nb.njit(cache=True, inline="always", error_model="numpy")(_decode_row_python)


def _decode_scratch(w: int) -> tuple[np.ndarray, np.ndarray]:
    """The decode's scratch rows for images W pixels wide: table indices (3W,) int64 and values (3W,) float32.

    Made here, not in the compiled loops: an array allocated in compiled code makes numba compile its
    allocator and reference counting too, which cost ~0.7 s of a fresh environment's first unprocessing
    (1.8–2.1 → 1.2–1.5 s CPU, alternating fresh processes; same values)."""
    return np.empty(3 * w, np.int64), np.empty(3 * w, np.float32)


def _unprocess_lut_python(rows, lut, rgb2cam, inv_gains, inflection, idx, v, out):
    """Fused per-pixel unprocessing through the 16-bit decode table (reference loop; numba-compiled below).

    ``rows``: the (H, W, 3) image viewed as (H, 3W) rows; ``idx``, ``v``: :func:`_decode_scratch`; ``out``
    (H, W, 3). Per row: decode (:func:`_decode_row_python`), inverse colour matrix, highlight mask
    ``((mean − inflection) / (1 − inflection))²`` and safe inverse white-balance gains, clip. float32,
    no divisions.
    """
    h = rows.shape[0]
    w = rows.shape[1] // 3
    one = np.float32(1.0)
    zero = np.float32(0.0)
    third = np.float32(1.0 / 3.0)
    scale = one / (one - inflection)
    for y in range(h):
        _decode_row(rows[y], lut, idx, v)
        o = out[y]
        for x in range(w):
            v0 = v[3 * x]
            v1 = v[3 * x + 1]
            v2 = v[3 * x + 2]
            c0 = rgb2cam[0, 0] * v0 + rgb2cam[0, 1] * v1 + rgb2cam[0, 2] * v2
            c1 = rgb2cam[1, 0] * v0 + rgb2cam[1, 1] * v1 + rgb2cam[1, 2] * v2
            c2 = rgb2cam[2, 0] * v0 + rgb2cam[2, 1] * v1 + rgb2cam[2, 2] * v2
            m = max((c0 + c1 + c2) * third - inflection, zero) * scale
            m = m * m
            g0 = max(m + (one - m) * inv_gains[0], inv_gains[0])
            g1 = max(m + (one - m) * inv_gains[1], inv_gains[1])
            g2 = max(m + (one - m) * inv_gains[2], inv_gains[2])
            o[x, 0] = min(max(c0 * g0, zero), one)
            o[x, 1] = min(max(c1 * g1, zero), one)
            o[x, 2] = min(max(c2 * g2, zero), one)


_unprocess_lut_numba = nb.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)(_unprocess_lut_python)


def unprocess(srgb, meta: ISPMeta, *, lut: bool = False) -> np.ndarray:
    """sRGB image → linear camera RGB, normalized raw scale (Brooks et al. §3, steps 1–4 above).

    Parameters
    ----------
    srgb : (H, W, 3) float array in [0, 1]
        Display-referred sRGB image (RGB channel order).
    meta : ISPMeta
        From :func:`sample_isp_meta`.
    lut : bool
        Evaluate the tone and transfer curves through a 65536-entry table in one fused (numba) pass,
        ~10× faster. Exact (to float32 rounding) for 8- and 16-bit images, whose values lie on the
        table's grid; a float image is quantized to 1/65535 first.

    Returns
    -------
    (H, W, 3) float32 in [0, 1]
        Linear camera RGB before white balance, i.e. what the sensor's colour sites saw, normalized
        ((DN − black) / (white − black)). Clipped to [0, 1] as the sensor would.

    Notes
    -----
    Inverse white balance uses the safe gains of Brooks et al. §3.2: with ``g = 1 / wb_gains`` and the
    pixel's mean intensity ``m``, ``mask = (max(m − 0.9, 0) / 0.1)²`` and the applied gain is
    ``max(mask + (1 − mask)·g, g)``, which leaves near-white pixels unchanged instead of producing
    out-of-range colours.
    """
    img = _check_rgb(srgb, "sRGB image")
    inv_gains = (1.0 / meta.wb_gains).astype(np.float32)
    if lut:
        h, w, _ = img.shape
        out = np.empty(img.shape, dtype=np.float32)
        _unprocess_lut_numba(
            np.ascontiguousarray(img).reshape(h, 3 * w), _decode_lut(), meta.rgb2cam_matrix.astype(np.float32),
            inv_gains, np.float32(_HIGHLIGHT_INFLECTION), *_decode_scratch(w), out,
        )
        return out
    x = inverse_tone_curve(img)
    x = srgb_to_linear(x)
    x = _apply_matrix(x, meta.rgb2cam_matrix)
    gray = x.mean(axis=-1, keepdims=True)
    mask = (np.maximum(gray - _HIGHLIGHT_INFLECTION, 0.0) / (1.0 - _HIGHLIGHT_INFLECTION)) ** 2
    safe = np.maximum(mask + (1.0 - mask) * inv_gains, inv_gains)
    x = x * safe
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _unprocess_mosaic_lut_python(rows, lut, rgb2cam, inflection, ktab, gains, idx, v, out):
    """:func:`_unprocess_lut_python` followed by the mosaic in one pass: only the colour the CFA keeps at
    each pixel is written, into ``out`` (H, W). ``ktab``: (p, W) colour index 0/1/2 of each column for
    each row phase (the pattern tiled along a row); ``gains``: (p, W) float32, the inverse white-balance
    gain of each of those columns (looked up once per phase, so the pixel loop has no indexed gain read)."""
    h = rows.shape[0]
    w = rows.shape[1] // 3
    p = ktab.shape[0]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    third = np.float32(1.0 / 3.0)
    scale = one / (one - inflection)
    for y in range(h):
        _decode_row(rows[y], lut, idx, v)
        kr = ktab[y % p]
        gr = gains[y % p]
        o = out[y]
        for x in range(w):
            v0 = v[3 * x]
            v1 = v[3 * x + 1]
            v2 = v[3 * x + 2]
            c0 = rgb2cam[0, 0] * v0 + rgb2cam[0, 1] * v1 + rgb2cam[0, 2] * v2
            c1 = rgb2cam[1, 0] * v0 + rgb2cam[1, 1] * v1 + rgb2cam[1, 2] * v2
            c2 = rgb2cam[2, 0] * v0 + rgb2cam[2, 1] * v1 + rgb2cam[2, 2] * v2
            m = max((c0 + c1 + c2) * third - inflection, zero) * scale
            m = m * m
            k = kr[x]
            c = c0 if k == 0 else (c1 if k == 1 else c2)
            g = max(m + (one - m) * gr[x], gr[x])
            o[x] = min(max(c * g, zero), one)


_unprocess_mosaic_lut_numba = nb.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)(_unprocess_mosaic_lut_python)


def unprocess_mosaic(srgb, meta: ISPMeta, cfa) -> np.ndarray:
    """``mosaic(unprocess(srgb, meta, lut=True), cfa)`` in one fused pass, without the (H, W, 3) linear image.

    Shape: ``(H, W, 3)`` sRGB in [0, 1] → ``(H, W)`` float32 normalized raw mosaic. Same values as the
    two-step path (tested); used by the sources when no blur needs the linear RGB image.

    Parameters
    ----------
    srgb : (H, W, 3) array_like
        Display sRGB in [0, 1].
    meta : ISPMeta
        The ISP parameters to invert (colour matrix, white-balance gains, …).
    cfa : CFA or str
        Mosaic pattern.

    Returns
    -------
    (H, W) ndarray of float32
        Normalized raw mosaic.
    """
    cfa = _as_cfa(cfa)
    img = _check_rgb(srgb, "sRGB image")
    cfa.check_mosaic(img[..., 0], "sRGB image")
    h, w, _ = img.shape
    inv_gains = (1.0 / meta.wb_gains).astype(np.float32)
    out = np.empty((h, w), dtype=np.float32)
    ktab = np.tile(cfa.color_index(), (1, w // cfa.period))
    _unprocess_mosaic_lut_numba(
        np.ascontiguousarray(img).reshape(h, 3 * w), _decode_lut(), meta.rgb2cam_matrix.astype(np.float32),
        np.float32(_HIGHLIGHT_INFLECTION), ktab, inv_gains[ktab], *_decode_scratch(w), out,
    )
    return out


def _as_cfa(cfa) -> CFA:
    return cfa if isinstance(cfa, CFA) else CFA(cfa)


def mosaic(rgb, cfa) -> np.ndarray:
    """Keep at each pixel the colour the CFA puts there. Shape: ``(H, W, 3) -> (H, W)`` float32.

    Any pattern of :mod:`noisesim.cfa` (Bayer, quad Bayer), read from the top-left pixel; H and W must be
    multiples of the pattern's period.

    Parameters
    ----------
    rgb : (H, W, 3) array_like
        Camera RGB, any unit.
    cfa : CFA or str
        Mosaic pattern.

    Returns
    -------
    (H, W) ndarray of float32
        The mosaic, same unit.
    """
    cfa = _as_cfa(cfa)
    img = _check_rgb(rgb, "RGB image")
    cfa.check_mosaic(img[..., 0], "RGB image")
    h, w, _ = img.shape
    p = cfa.period
    idx = cfa.color_index()
    out = np.empty((h, w), dtype=np.float32)
    for y in range(p):
        for x in range(p):
            out[y::p, x::p] = img[y::p, x::p, idx[y, x]]
    return out


# --------------------------------------------------------------------------------------------------
# Forward ISP
# --------------------------------------------------------------------------------------------------
# OpenCV names Bayer patterns by the 2nd and 3rd pixels of the 2nd row, not the top-left 2×2 as we do:
# our RGGB is OpenCV's "BG" (checked in tests/test_isp.py with flat colours for all four patterns).
_OPENCV_BAYER = {"RGGB": "BG", "BGGR": "RG", "GRBG": "GB", "GBRG": "GR"}


def _demosaic_bayer_opencv(raw: np.ndarray, bayer: str) -> np.ndarray:
    import cv2

    code = getattr(cv2, f"COLOR_Bayer{_OPENCV_BAYER[bayer]}2RGB_EA")
    u16 = np.round(np.clip(raw, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return cv2.cvtColor(u16, code).astype(np.float32) * np.float32(1.0 / 65535.0)


def _demosaic_normalized_convolution(raw: np.ndarray, cfa: CFA) -> np.ndarray:
    """Bilinear-like demosaic for any CFA: per colour, blur(raw·mask) / blur(mask), measured samples kept."""
    import cv2

    h, w = raw.shape
    p = cfa.period
    idx = np.tile(cfa.color_index(), (h // p, w // p))
    # A tent kernel wide enough that every pixel of a quad-Bayer tile sees each colour.
    t = np.array([1, 2, 3, 4, 3, 2, 1], dtype=np.float32) if cfa.is_quad else np.array([1, 2, 1], dtype=np.float32)
    k = np.outer(t, t)
    out = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        m = (idx == c).astype(np.float32)
        num = cv2.filter2D(raw * m, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT_101)
        den = cv2.filter2D(m, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT_101)
        plane = num / np.maximum(den, 1e-12)
        plane[m > 0] = raw[m > 0]
        out[..., c] = plane
    return out


def demosaic(raw, cfa, *, method: str = "opencv") -> np.ndarray:
    """Demosaic a normalized mosaic to camera RGB. Shape: ``(H, W) -> (H, W, 3)`` float32.

    Parameters
    ----------
    raw : (H, W) float, normalized [0, 1] (values outside are clipped for the OpenCV path)
    cfa : CFA or str
    method : {"opencv", "bilinear"}
        ``"opencv"``: OpenCV's edge-aware Bayer demosaic (``COLOR_Bayer**2RGB_EA`` on a 16-bit copy, i.e.
        quantized to 1/65535); quad Bayer falls back to ``"bilinear"``. ``"bilinear"``: normalized
        convolution with a tent kernel, any CFA, exact float.

    Returns
    -------
    (H, W, 3) ndarray of float32
        Camera RGB, normalized.
    """
    cfa = _as_cfa(cfa)
    raw = np.asarray(raw, dtype=np.float32)
    cfa.check_mosaic(raw)
    if method not in ("opencv", "bilinear"):
        raise ParameterError(f"demosaic method must be 'opencv' or 'bilinear', got {method!r}")
    if method == "opencv" and not cfa.is_quad:
        return _demosaic_bayer_opencv(raw, cfa.bayer)
    return _demosaic_normalized_convolution(raw, cfa)


def process_rgb(rgb_linear, meta: ISPMeta) -> np.ndarray:
    """Forward ISP after demosaicking: white balance, clip, colour matrix, clip, sRGB transfer, tone curve.

    Shape: ``(H, W, 3) -> (H, W, 3)``; linear camera RGB (normalized) → display sRGB in [0, 1], float32.
    The exact inverse of :func:`unprocess` on pixels that neither step clipped and that lie below the
    highlight-preservation threshold.

    Parameters
    ----------
    rgb_linear : (H, W, 3) array_like
        Linear camera RGB, normalized.
    meta : ISPMeta
        White-balance gains, colour matrix and the rest of the forward ISP.

    Returns
    -------
    (H, W, 3) ndarray of float32
        Display sRGB in [0, 1].
    """
    x = _check_rgb(rgb_linear, "linear RGB image")
    x = np.clip(x * meta.wb_gains.astype(np.float32), 0.0, 1.0)
    x = np.clip(_apply_matrix(x, meta.cam2rgb_matrix), 0.0, 1.0)
    return tone_curve(linear_to_srgb(x))


def process(raw, meta: ISPMeta, cfa, *, demosaic_method: str = "opencv") -> np.ndarray:
    """Forward ISP for previews: normalized raw mosaic → sRGB.

    Steps: white balance (``meta.wb_gains`` per CFA site), clip, demosaic (:func:`demosaic`), colour
    matrix, clip, sRGB transfer (IEC 61966-2-1), tone curve (Brooks et al. §3.1). Black level is already
    removed in normalized raw; for DN input subtract black and divide by (white − black) first.

    Parameters
    ----------
    raw : (H, W) float, normalized
    meta : ISPMeta
    cfa : CFA or str

    Returns
    -------
    (H, W, 3) float32 sRGB in [0, 1]
    """
    cfa = _as_cfa(cfa)
    raw = np.asarray(raw, dtype=np.float32)
    cfa.check_mosaic(raw, "raw mosaic")
    h, w = raw.shape
    p = cfa.period
    gains = meta.wb_gains.astype(np.float32)[cfa.color_index()]
    balanced = np.clip(raw * np.tile(gains, (h // p, w // p)), 0.0, 1.0)
    rgb = demosaic(balanced, cfa, method=demosaic_method)
    x = np.clip(_apply_matrix(rgb, meta.cam2rgb_matrix), 0.0, 1.0)
    return tone_curve(linear_to_srgb(x))
