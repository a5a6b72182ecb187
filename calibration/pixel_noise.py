"""Per-pixel temporal read noise from a dark stack (issue 13 item 3).

Small-pixel CMOS sensors have a heavy-tailed distribution of per-pixel temporal noise: a few pixels
(random telegraph noise in the source follower) are several times noisier than the median. The stack's
per-pixel temporal variance, less the terms every pixel shares, gives each pixel's σ; dividing by the
median of its CFA site gives a unitless map that scales the card's σ at any ISO
(:attr:`noisesim.params.FixedPatternMaps.read_sigma_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from noisesim.cfa import CFA

from .kernels import USE_NUMBA
from .sorting import middle_order_statistics

__all__ = ["PixelReadNoise", "PixelNoiseNotMeasurable", "QUANTIZATION_VAR_DN2", "read_sigma_scale_map", "sigma_relative_se"]

QUANTIZATION_VAR_DN2 = 1.0 / 12.0  # EMVA 1288 σ²_q of integer DN
NOISY_PIXEL_N_SE = 6.0


class PixelNoiseNotMeasurable(ValueError):
    """The dark stack cannot resolve each pixel's read σ: the shared row/column variance swamps it."""


def sigma_relative_se(n_frames: int) -> float:
    """Relative standard error of a σ estimated from ``n_frames`` Gaussian samples: 1/√(2(N − 1)).

    Parameters
    ----------
    n_frames : int
        N ≥ 2.

    Returns
    -------
    float
    """
    if n_frames < 2:
        raise ValueError(f"a per-pixel σ needs at least 2 dark frames, got {n_frames}")
    return 1.0 / np.sqrt(2.0 * (n_frames - 1))


@dataclass(frozen=True)
class PixelReadNoise:
    """Per-pixel read noise of one dark stack.

    Attributes
    ----------
    sigma_dn : (H, W) float32
        Each pixel's temporal σ in DN, with the shared line noise and quantization removed.
    scale : (H, W) float32
        ``sigma_dn`` divided by the median of its CFA site (unitless; median 1).
    relative_se : float
        Relative standard error of each pixel's σ (from the number of frames).
    noisy_pixel_mask : (H, W) bool
        Pixels whose σ exceeds their site median by more than 6 standard errors.
    """

    sigma_dn: np.ndarray
    scale: np.ndarray
    relative_se: float
    noisy_pixel_mask: np.ndarray


def read_sigma_scale_map(temporal_var_map_dn2: np.ndarray, n_frames: int, cfa: CFA, *, line_var_dn2: float = 0.0,
                         quantized: bool = True) -> PixelReadNoise:
    """Each pixel's temporal read-noise σ and its scale relative to the site median.

    Parameters
    ----------
    temporal_var_map_dn2 : (H, W) array
        Per-pixel temporal variance of the dark stack (ddof = 1), DN².
    n_frames : int
        Frames in the stack.
    cfa : CFA
        The mosaic's pattern (medians are taken per CFA site).
    line_var_dn2 : float
        Variance every pixel shares (row + column noise, σ²_row + σ²_col), DN², removed first.
    quantized : bool
        Integer DN frames: the quantization variance 1/12 DN² (EMVA 1288) is removed too.

    Returns
    -------
    PixelReadNoise

    Raises
    ------
    PixelNoiseNotMeasurable
        When the median per-pixel σ of a CFA site is not above zero once the shared variance is removed:
        with few darks and strong row noise the per-pixel variances scatter by more than σ²_read itself.
    """
    var = np.asarray(temporal_var_map_dn2)
    if var.dtype not in (np.float32, np.float64):
        var = var.astype(np.float64)
    cfa.check_mosaic(var, "temporal variance map")
    shared = float(line_var_dn2) + (QUANTIZATION_VAR_DN2 if quantized else 0.0)
    medians = _site_sigma_medians(var, cfa, shared)
    if not np.all(np.isfinite(medians)) or np.any(medians <= 0):
        raise PixelNoiseNotMeasurable(
            f"no per-pixel read σ map: with {n_frames} darks the per-pixel temporal variance (median "
            f"{float(np.median(var)):.3g} DN²) is not resolved above the shared row/column and quantization "
            f"variance ({shared:.3g} DN²); more dark frames resolve it")
    rse = sigma_relative_se(n_frames)
    sigma = np.empty(var.shape, np.float32)
    scale = np.empty(var.shape, np.float32)
    noisy = np.empty(var.shape, bool)
    tile, limit = np.ascontiguousarray(cfa.tile_values(medians)), 1.0 + NOISY_PIXEL_N_SE * rse
    if USE_NUMBA:
        _sigma_scale_maps(var, shared, tile, limit, sigma, scale, noisy)
    else:
        sig = np.sqrt(np.maximum(var.astype(np.float64) - shared, 0.0))
        sc = sig / cfa.per_pixel(medians, var.shape)
        sigma[:], scale[:], noisy[:] = sig, sc, sc > limit
    return PixelReadNoise(sigma, scale, float(rse), noisy)


def _sigma_of_variance(v: float, shared_dn2: float) -> float:
    """A pixel's σ [DN] from its temporal variance [DN²]: √max(v − shared, 0) (non-decreasing in v)."""
    return math.sqrt(max(float(v) - shared_dn2, 0.0))


def _site_sigma_medians(var: np.ndarray, cfa: CFA, shared_dn2: float) -> np.ndarray:
    """``np.median`` of each CFA site's pixel σ (4,) [DN], from the site's middle order statistics of the
    variance: σ is a non-decreasing function of it, so the k-th smallest σ is σ of the k-th smallest variance,
    and only those one or two are converted (the variance is partitioned in its own width, not the full
    σ map in float64). NaN when the site has a NaN (as np.median)."""
    packed, site = cfa.pack(var), cfa.site_index.ravel()  # a mosaic of whole periods has every site
    medians = np.empty(4)
    for s in range(4):
        vals = packed[site == s].ravel()
        mid = middle_order_statistics(vals)
        if mid is None:  # a NaN (every site has pixels): NaN, as np.median
            medians[s] = np.nan
            continue
        medians[s] = np.mean(np.array([_sigma_of_variance(v, shared_dn2) for v in mid[0]]))
    return medians


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _sigma_scale_maps(var, shared, median_tile, noisy_above, sigma_out, scale_out, noisy_out):  # pragma: no cover - compiled
    # per pixel: σ = √max(v − shared, 0), scale = σ / its site's median, noisy = scale > limit (one pass)
    h, w = var.shape
    p = median_tile.shape[0]
    for y in range(h):
        med = median_tile[y % p]
        for x in range(w):
            v = np.float64(var[y, x]) - shared
            sig = math.sqrt(v if v > 0.0 else 0.0)
            sc = sig / med[x % p]
            sigma_out[y, x] = sig
            scale_out[y, x] = sc
            noisy_out[y, x] = sc > noisy_above

