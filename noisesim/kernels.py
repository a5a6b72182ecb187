"""The hot path: the fused noise kernel (numba) and its plain-numpy reference.

Both implement ../shared/DESIGN.md §1 for one mosaic frame, drawing every random number from the
counter-based Philox of :mod:`noisesim.rng`, so for the same inputs they produce the same frame (up to
libm rounding in a handful of pixels, tested). Public code calls :func:`noisesim.noise.simulate`, which
validates inputs and prepares the per-tile tables these kernels take.

Per pixel (row y, column x of the frame; global coordinates gy = y + oy, gx = x + ox; tile phase
c = (y mod p, x mod p))::

    μ_e = max(clean − offset_c, 0) · gain_c · (1 + PRNU) + dark_e            expected electrons
    n_e = Poisson(μ_e)                        (shot on) else μ_e
    D   = K · n_e + N_read + row[y] + col[x] + DS + add_c                      add_c = black + black-level error
    D   = round(D)                            (quantize on) else D + U(−½, ½)
    D   = clip(D, lo_c, hi_c)                 (clip on)
    out = (D − out_offset_c) · out_scale_c                                     DN or normalized

Random streams (counter c3 = stream << 16 | block): shot noise uses stream 0 (inversion for μ < 10 with one
word; PTRS rejection for μ ≥ 10 with two words per try, Hörmann 1993, "The transformed rejection method for
generating Poisson random variables"); read noise and dither use stream 1 (Tukey: word 0; Gaussian: words
0 and 1 by Box–Muller; dither: word 2).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from scipy.special import gammaln

from .rng import INV_2_32, STREAM_READ, STREAM_SHOT, philox4x32, philox4x32_np, uniform_np

# Mean below which Poisson draws use inversion by sequential search; PTRS needs μ ≥ 10 (Hörmann 1993).
POISSON_INVERSION_MAX = 10.0
# |λ| below which the Tukey-lambda quantile is the logistic one, log(u / (1 − u)).
TUKEY_LOGISTIC_EPS = 1e-12

READ_NONE, READ_GAUSSIAN, READ_TUKEY = 0, 1, 2


# --------------------------------------------------------------------------------------------------
# numba
# --------------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always")
def _poisson_numba(mu, gx, gy, frame, k0, k1):
    """One Poisson(μ) draw for pixel (gx, gy) from the shot stream."""
    if mu <= 0.0:
        return 0.0
    s = np.uint64(STREAM_SHOT << 16)
    if mu < POISSON_INVERSION_MAX:
        w0, w1, w2, w3 = philox4x32(gx, gy, frame, s, k0, k1)
        u = (np.float64(w0) + 0.5) * INV_2_32
        p = math.exp(-mu)
        f = p
        k = 0.0
        # The cumulative reaches 1 − 2e-16 long before k = 200 for μ < 10.
        while u > f and k < 200.0:
            k += 1.0
            p *= mu / k
            f += p
        return k
    slam = math.sqrt(mu)
    loglam = math.log(mu)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    block = np.uint64(0)
    while True:
        w0, w1, w2, w3 = philox4x32(gx, gy, frame, s | block, k0, k1)
        block += np.uint64(1)
        for t in range(2):
            if t == 0:
                uu = (np.float64(w0) + 0.5) * INV_2_32 - 0.5
                v = (np.float64(w1) + 0.5) * INV_2_32
            else:
                uu = (np.float64(w2) + 0.5) * INV_2_32 - 0.5
                v = (np.float64(w3) + 0.5) * INV_2_32
            us = 0.5 - abs(uu)
            k = math.floor((2.0 * a / us + b) * uu + mu + 0.43)
            if us >= 0.07 and v <= vr:
                return k
            if k < 0.0 or (us < 0.013 and v > us):
                continue
            if math.log(v) + log_invalpha - math.log(a / (us * us) + b) <= -mu + k * loglam - math.lgamma(k + 1.0):
                return k


@nb.njit(cache=True, inline="always")
def _tukey_quantile(u, lam):
    """Tukey-lambda quantile Q_λ(u) = (u^λ − (1−u)^λ)/λ, via expm1 so small |λ| keeps full precision."""
    lu = math.log(u)
    l1u = math.log1p(-u)
    if abs(lam) < TUKEY_LOGISTIC_EPS:
        return lu - l1u
    return (math.expm1(lam * lu) - math.expm1(lam * l1u)) / lam


@nb.njit(cache=True, parallel=True)
def fused_noise_numba(
    clean, out, period, oy, ox, frame, k0, k1,
    offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile,
    gain_k, dark_e, shot, read_kind, read_sigma, tukey_lambda, tukey_scale,
    row_offsets, row_per_channel, col_offsets, ds_map, prnu_map, dark_map,
    quantize, clip,
):
    """Fused kernel: one pass over the frame, parallel over rows. See the module docstring.

    ``row_offsets`` is (H,) or, with ``row_per_channel``, (H, p); ``col_offsets`` (W,) or (0,);
    ``ds_map``/``prnu_map``/``dark_map`` are (H, W) or (0, 0) when absent. Tiles are (p, p) float64.
    """
    h, w = clean.shape
    has_row = row_offsets.shape[0] > 0
    has_col = col_offsets.shape[0] > 0
    has_ds = ds_map.shape[0] > 0
    has_prnu = prnu_map.shape[0] > 0
    has_dark = dark_map.shape[0] > 0
    s_read = np.uint64(STREAM_READ << 16)
    fr = np.uint64(frame)
    kk0 = np.uint64(k0)
    kk1 = np.uint64(k1)
    for y in nb.prange(h):
        py = y % period
        gy = np.uint64(y + oy)
        for x in range(w):
            px = x % period
            gx = np.uint64(x + ox)
            mu = clean[y, x] - offset_tile[py, px]
            if mu < 0.0:
                mu = 0.0
            mu *= gain_tile[py, px]
            if has_prnu:
                mu *= 1.0 + prnu_map[y, x]
            if has_dark:
                mu += dark_map[y, x]
            else:
                mu += dark_e
            if shot:
                ne = _poisson_numba(mu, gx, gy, fr, kk0, kk1)
            else:
                ne = mu
            d = gain_k * ne + add_tile[py, px]
            if read_kind != READ_NONE or not quantize:
                r0, r1, r2, r3 = philox4x32(gx, gy, fr, s_read, kk0, kk1)
                if read_kind == READ_TUKEY:
                    d += tukey_scale * _tukey_quantile((np.float64(r0) + 0.5) * INV_2_32, tukey_lambda)
                elif read_kind == READ_GAUSSIAN:
                    u1 = (np.float64(r0) + 0.5) * INV_2_32
                    u2 = (np.float64(r1) + 0.5) * INV_2_32
                    d += read_sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
                if not quantize:
                    d += (np.float64(r2) + 0.5) * INV_2_32 - 0.5
            if has_row:
                if row_per_channel:
                    d += row_offsets[y, px]
                else:
                    d += row_offsets[y, 0]
            if has_col:
                d += col_offsets[x]
            if has_ds:
                d += ds_map[y, x]
            if quantize:
                d = math.floor(d + 0.5)
            if clip:
                lo = lo_tile[py, px]
                hi = hi_tile[py, px]
                if d < lo:
                    d = lo
                elif d > hi:
                    d = hi
            out[y, x] = (d - out_offset_tile[py, px]) * out_scale_tile[py, px]


# --------------------------------------------------------------------------------------------------
# numpy reference
# --------------------------------------------------------------------------------------------------
def _tile(tile: np.ndarray, shape) -> np.ndarray:
    p = tile.shape[0]
    h, w = shape
    return np.tile(tile, (h // p + 1, w // p + 1))[:h, :w]


def poisson_numpy(mu: np.ndarray, gx: np.ndarray, gy: np.ndarray, frame: int, key) -> np.ndarray:
    """Reference Poisson draws with the same algorithms and random words as :func:`_poisson_numba`."""
    mu = np.asarray(mu, dtype=np.float64)
    out = np.zeros(mu.shape, dtype=np.float64)
    s = STREAM_SHOT << 16
    small = (mu > 0) & (mu < POISSON_INVERSION_MAX)
    if small.any():
        m = mu[small]
        w = philox4x32_np(gx[small], gy[small], frame, s, *key)
        u = uniform_np(w[0])
        p = np.exp(-m)
        f = p.copy()
        k = np.zeros_like(m)
        active = u > f
        while active.any():
            idx = np.nonzero(active)[0]
            k[idx] += 1.0
            p[idx] *= m[idx] / k[idx]
            f[idx] += p[idx]
            active[idx] = (u[idx] > f[idx]) & (k[idx] < 200.0)
        out[small] = k
    large = mu >= POISSON_INVERSION_MAX
    if large.any():
        pos = np.nonzero(large.ravel())[0]
        m = mu.ravel()[pos]
        gxl, gyl = gx.ravel()[pos], gy.ravel()[pos]
        b = 0.931 + 2.53 * np.sqrt(m)
        a = -0.059 + 0.02483 * b
        log_invalpha = np.log(1.1239 + 1.1328 / (b - 3.4))
        vr = 0.9277 - 3.6224 / (b - 2.0)
        loglam = np.log(m)
        result = np.zeros(m.shape)
        pending = np.ones(m.shape, dtype=bool)
        block = 0
        while pending.any():
            i = np.nonzero(pending)[0]
            w = philox4x32_np(gxl[i], gyl[i], frame, s | block, *key)
            block += 1
            still = np.ones(i.size, dtype=bool)
            for t in range(2):  # two tries per Philox block, as in the numba kernel
                j = np.nonzero(still)[0]
                ii = i[j]
                uu = uniform_np(w[2 * t][j]) - 0.5
                v = uniform_np(w[2 * t + 1][j])
                us = 0.5 - np.abs(uu)
                k = np.floor((2.0 * a[ii] / us + b[ii]) * uu + m[ii] + 0.43)
                accept = (us >= 0.07) & (v <= vr[ii])
                test = ~accept & ~((k < 0) | ((us < 0.013) & (v > us)))
                if test.any():
                    it = ii[test]
                    kt = k[test]
                    lhs = np.log(v[test]) + log_invalpha[it] - np.log(a[it] / (us[test] ** 2) + b[it])
                    rhs = -m[it] + kt * loglam[it] - gammaln(kt + 1.0)
                    accept[test] = lhs <= rhs
                result[ii[accept]] = k[accept]
                pending[ii[accept]] = False
                still[j[accept]] = False
        out.ravel()[pos] = result
    return out


def tukey_quantile_numpy(u: np.ndarray, lam: float) -> np.ndarray:
    """Reference Tukey-lambda quantile (same formula as the kernel)."""
    lu, l1u = np.log(u), np.log1p(-u)
    if abs(lam) < TUKEY_LOGISTIC_EPS:
        return lu - l1u
    return (np.expm1(lam * lu) - np.expm1(lam * l1u)) / lam


def fused_noise_numpy(
    clean, out, period, oy, ox, frame, k0, k1,
    offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile,
    gain_k, dark_e, shot, read_kind, read_sigma, tukey_lambda, tukey_scale,
    row_offsets, row_per_channel, col_offsets, ds_map, prnu_map, dark_map,
    quantize, clip,
):
    """Plain-numpy reference of :func:`fused_noise_numba`: same arguments, same result, whole-frame arrays."""
    h, w = clean.shape
    key = (k0, k1)
    gy, gx = np.meshgrid(np.arange(oy, oy + h, dtype=np.uint64), np.arange(ox, ox + w, dtype=np.uint64), indexing="ij")
    t = lambda tile: _tile(tile, (h, w))  # noqa: E731
    mu = np.maximum(clean.astype(np.float64) - t(offset_tile), 0.0) * t(gain_tile)
    if prnu_map.shape[0] > 0:
        mu = mu * (1.0 + prnu_map.astype(np.float64))
    mu = mu + (dark_map.astype(np.float64) if dark_map.shape[0] > 0 else dark_e)
    ne = poisson_numpy(mu, gx, gy, frame, key) if shot else mu
    d = gain_k * ne + t(add_tile)
    if read_kind != READ_NONE or not quantize:
        r = philox4x32_np(gx, gy, frame, STREAM_READ << 16, *key)
        if read_kind == READ_TUKEY:
            d = d + tukey_scale * tukey_quantile_numpy(uniform_np(r[0]), tukey_lambda)
        elif read_kind == READ_GAUSSIAN:
            u1, u2 = uniform_np(r[0]), uniform_np(r[1])
            d = d + read_sigma * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        if not quantize:
            d = d + (uniform_np(r[2]) - 0.5)
    if row_offsets.shape[0] > 0:
        if row_per_channel:
            d = d + row_offsets[:, np.arange(w) % period]
        else:
            d = d + row_offsets[:, :1]
    if col_offsets.shape[0] > 0:
        d = d + col_offsets[None, :]
    if ds_map.shape[0] > 0:
        d = d + ds_map
    if quantize:
        d = np.floor(d + 0.5)
    if clip:
        d = np.clip(d, t(lo_tile), t(hi_tile))
    out[...] = (d - t(out_offset_tile)) * t(out_scale_tile)
