"""The hot path: the fused noise kernel (numba) and its plain-numpy reference.

Both implement docs/model.md for one mosaic frame, drawing every random number from the
counter-based Philox of :mod:`noisesim.rng`, and both use the same elementary functions (below), so for the
same inputs they return the same frame bit for bit (tested). Public code calls
:func:`noisesim.noise.simulate`, which validates inputs and prepares the per-tile tables these kernels take.

Per pixel (row y, column x of the frame; global coordinates gy = y + oy, gx = x + ox; tile phase
c = (y mod p, x mod p))::

    μ_e = max(clean − offset_c, 0) · gain_c · (1 + PRNU) + dark_e            expected electrons
    n_e = Poisson(μ_e)                        (shot on) else μ_e
    D   = K · n_e + add_c + N_read + row + col + DS                             add_c = black + black-level error
    D   = round(D)                            (quantize on) else D + U(−½, ½) (dither on) or D
    D   = clip(D, lo_c, hi_c)                 (clip on)
    out = (D − out_offset_c) · out_scale_c                                     DN or normalized

Random streams (counter c3 = stream << 16 | block):

* shot, stream 0: inversion by sequential search for μ < 10 (word 0 of block 0), run for all such pixels
  of a row in lockstep; for μ ≥ 10 PTRS, the transformed rejection method of Hörmann (1993, "The
  transformed rejection method for generating Poisson random variables", Insurance: Math. and Econ. 12),
  as numpy uses, two tries per block (words 0–1, 2–3), evaluated in rounds over the still-pending pixels.
* read, stream 1: Tukey-lambda by its quantile of word 0 (1 − u from the complement word, exactly),
  evaluated in float32 (its ~1e-7 relative error is far below any read-noise figure);
  Gaussian by Box–Muller from words 0 and 1; the float path's U(−½, ½) dither from word 2.

Speed: libm's log/exp are scalar calls (~10 ns each with random arguments). The kernel evaluates them as
branch-free polynomials over whole rows so LLVM vectorizes them (AVX2 here), with ~1e-15 relative accuracy
(tested against numpy). ``error_model="numpy"`` keeps division free of Python's zero checks, which would
block vectorization.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .rng import INV_2_32, STREAM_READ, STREAM_SHOT, philox4x32, philox4x32_np, uniform_np

# Mean below which Poisson draws use inversion; PTRS is valid for μ ≥ 10 (Hörmann 1993).
POISSON_INVERSION_MAX = 10.0
# |λ| below which the Tukey-lambda quantile is the logistic one, log(u / (1 − u)).
TUKEY_LOGISTIC_EPS = 1e-12
READ_NONE, READ_GAUSSIAN, READ_TUKEY = 0, 1, 2
ROWS_PER_BLOCK = 8

LN2 = 0.6931471805599453
LN2_HI = 0.6931471803691238  # ln 2 split so that k·LN2_HI is exact for |k| < 2**20 (Cody–Waite)
LN2_LO = 1.9082149292705877e-10
INV_LN2 = 1.4426950408889634
SQRT2 = 1.4142135623730951
HALF_LOG_2PI = 0.9189385332046728
TWO_PI_INV_2_32 = 2.0 * math.pi * INV_2_32
_FRAC_MASK = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000
# 1/k! for expm1 on |r| ≤ ln2/2 (remainder < 5e-18); 1/(2k+1) for 2·atanh(s), |s| ≤ 0.172 (< 4e-15);
# (−1)^k/(2k)! for cos on [0, π/2] (< 4e-15).
_EXPM1_C = np.array([1.0 / math.factorial(k) for k in range(2, 14)])
_ATANH_C = np.array([1.0 / (2 * k + 1) for k in range(1, 9)])
_COS_C = np.array([(-1.0) ** k / math.factorial(2 * k) for k in range(1, 10)])
# log(k!) for k < 32 (exact to double precision); Stirling's series above.
_LOG_FACTORIAL = np.array([math.lgamma(k + 1.0) for k in range(32)])
# 1/k for the inversion search: a multiply instead of a divide per step.
_INV_K = np.array([0.0] + [1.0 / k for k in range(1, 256)])
_INVERSION_MAX_K = 200.0


# Single-precision forms for the Tukey-lambda quantile: read noise needs ~1e-6 relative accuracy, not 1e-15,
# and float32 rows are twice as wide per AVX2 instruction. 2·atanh to z^4 (|s| ≤ 0.172: < 3e-9) and expm1
# to r^7/7! (|r| ≤ ln2/2: < 6e-9), both below float32's 6e-8.
F32 = np.float32
SQRT2_32 = F32(SQRT2)
LN2_32 = F32(LN2)
LN2_HI32 = F32(0.693145751953125)  # 0x3f317200: k·LN2_HI32 exact in float32 for |k| < 2**9
LN2_LO32 = F32(1.4286068203094173e-06)
INV_LN2_32 = F32(INV_LN2)
_ATANH_C32 = np.array([1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9], dtype=np.float32)
_EXPM1_C32 = np.array([1.0 / math.factorial(k) for k in range(2, 8)], dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# elementary functions (numba, scalar forms inlined into row loops)
# --------------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always", error_model="numpy")
def _log_poly(m, e):
    """log(m · 2^e) for m in [1, 2): fold m to [√½, √2), then 2·atanh(s) with s = (m − 1)/(m + 1)."""
    if m > SQRT2:
        m = m * 0.5
        e = e + 1.0
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    c = _ATANH_C
    p = ((((((c[7] * z + c[6]) * z + c[5]) * z + c[4]) * z + c[3]) * z + c[2]) * z + c[1]) * z + c[0]
    return e * LN2 + 2.0 * s * (1.0 + z * p)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _expm1_reduce(t):
    """Cody–Waite reduction t = k·ln2 + r, |r| ≤ ln2/2; returns (k, expm1(r)). t is floored at −700
    (exp underflows there anyway) so 2^k stays a normal float."""
    t = max(t, -700.0)
    k = math.floor(t * INV_LN2 + 0.5)
    r = (t - k * LN2_HI) - k * LN2_LO
    c = _EXPM1_C
    p = ((((((((((c[11] * r + c[10]) * r + c[9]) * r + c[8]) * r + c[7]) * r + c[6]) * r + c[5]) * r + c[4]) * r
          + c[3]) * r + c[2]) * r + c[1]) * r + c[0]
    return k, r + r * r * p


@nb.njit(cache=True, inline="always", error_model="numpy")
def _cos_poly(a):
    """cos(a) for a in [0, π]: fold to [0, π/2], Taylor series to a^18."""
    neg = a > 0.5 * math.pi
    if neg:
        a = math.pi - a
    z = a * a
    c = _COS_C
    p = (((((((c[8] * z + c[7]) * z + c[6]) * z + c[5]) * z + c[4]) * z + c[3]) * z + c[2]) * z + c[1]) * z + c[0]
    v = 1.0 + z * p
    return -v if neg else v


@nb.njit(cache=True, error_model="numpy")
def _log_row32(x, xi, m, mi, e, n):
    """In place x[:n] = log(x[:n]) in float32 (positive normal floats); xi, mi are int32 views of x and m."""
    c = _ATANH_C32
    for i in range(n):
        b = xi[i]
        e[i] = F32((b >> 23) - 127)
        mi[i] = (b & 0x007FFFFF) | 0x3F800000
    for i in range(n):
        mm = m[i]
        ee = e[i]
        if mm > SQRT2_32:
            mm = mm * F32(0.5)
            ee = ee + F32(1.0)
        f = mm - F32(1.0)
        s = f / (F32(2.0) + f)
        z = s * s
        p = ((c[3] * z + c[2]) * z + c[1]) * z + c[0]
        x[i] = ee * LN2_32 + F32(2.0) * s * (F32(1.0) + z * p)


@nb.njit(cache=True, error_model="numpy")
def _expm1_row32(x, a, ai, n):
    """In place x[:n] = expm1(x[:n]) in float32 for |x| < 80; a/ai are float32/int32 views of one scratch row."""
    c = _EXPM1_C32
    for i in range(n):
        t = x[i]
        k = np.floor(t * INV_LN2_32 + F32(0.5))
        r = (t - k * LN2_HI32) - k * LN2_LO32
        p = ((((c[5] * r + c[4]) * r + c[3]) * r + c[2]) * r + c[1]) * r + c[0]
        x[i] = r + r * r * p
        ai[i] = np.int32(k + F32(127.0)) << 23
    for i in range(n):
        sc = a[i]
        x[i] = sc * x[i] + (sc - F32(1.0))


@nb.njit(cache=True, error_model="numpy")
def _log_row(x, xi, m, mi, e, n):
    """In place x[:n] = log(x[:n]) for positive normal floats; xi, mi are int64 views of x and m."""
    for i in range(n):
        b = xi[i]
        e[i] = np.float64((b >> 52) - 1023)
        mi[i] = (b & _FRAC_MASK) | _ONE_BITS
    for i in range(n):
        x[i] = _log_poly(m[i], e[i])


@nb.njit(cache=True, error_model="numpy")
def _exp_row(x, a, ai, n):
    """In place x[:n] = exp(x[:n]); a/ai are float/int64 views of one scratch row (2^k built from its bits)."""
    for i in range(n):
        k, p = _expm1_reduce(x[i])
        x[i] = p
        ai[i] = np.int64(k + 1023.0) << 52
    for i in range(n):
        x[i] = a[i] * (x[i] + 1.0)


# --------------------------------------------------------------------------------------------------
# Poisson (numba)
# --------------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always", error_model="numpy")
def _ptrs_setup(mu):
    """PTRS constants b, a, v_r and 1/α for mean μ (Hörmann 1993, algorithm PTRS)."""
    b = 0.931 + 2.53 * math.sqrt(mu)
    a = -0.059 + 0.02483 * b
    r = 1.0 / ((b - 2.0) * (b - 3.4))  # one division for both: 1/(b − 2) = (b − 3.4)·r, 1/(b − 3.4) = (b − 2)·r
    return b, a, 0.9277 - 3.6224 * ((b - 3.4) * r), 1.1239 + 1.1328 * ((b - 2.0) * r)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _log_factorial(k, log_z):
    """log k! for integer-valued k ≥ 0: table below 32, Stirling's series at z = k + 1 (log_z = log z) above.

    Both are evaluated and one selected, so row loops calling this stay branch-free (vectorizable).
    """
    z = k + 1.0
    iz = 1.0 / z
    iz2 = iz * iz
    stirling = (z - 0.5) * log_z - z + HALF_LOG_2PI + iz * (1.0 / 12.0 - iz2 * (1.0 / 360.0 - iz2 * (1.0 / 1260.0 - iz2 / 1680.0)))
    table = _LOG_FACTORIAL[min(int(k), 31)]
    return table if k < 32.0 else stirling


@nb.njit(cache=True, inline="always", error_model="numpy")
def _ptrs_prepare(lam, wu, wv):
    """First half of a PTRS try from its two words: (k, u_s, v, v_r, argument of the log test)."""
    bb, aa, vr, inv_alpha = _ptrs_setup(lam)
    uu = (np.float64(wu) + 0.5) * INV_2_32 - 0.5
    vv = (np.float64(wv) + 0.5) * INV_2_32
    us = 0.5 - abs(uu)
    a_us = aa / us
    k = math.floor((2.0 * a_us + bb) * uu + lam + 0.43)
    return k, us, vv, vr, vv * inv_alpha / (a_us / us + bb)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _ptrs_accept(lam, k, us, vv, vr, log_test, log_lam, log_z):
    """Second half: accept k? (squeeze, rejection, then the log test with log k! at z = k + 1)."""
    kc = k if k > 0.0 else 0.0
    accept = (us >= 0.07) & (vv <= vr)
    reject = (k < 0.0) | ((us < 0.013) & (vv > us))
    return accept | ((not reject) & (log_test <= -lam + k * log_lam - _log_factorial(kc, log_z)))


# --------------------------------------------------------------------------------------------------
# the fused kernel
# --------------------------------------------------------------------------------------------------
@nb.njit(cache=True, error_model="numpy")
def _noise_block(
    blk, clean, out, period, oy, ox, fr, kk0, kk1, tiles, xs,
    gain_k, dark_e, shot, read_kind, read_sigma, tukey_lambda, tukey_scale,
    row_offsets, row_per_channel, col_offsets, ds_map, prnu_map, dark_map,
    quantize, dither, clip,
):
    """Rows ``blk · ROWS_PER_BLOCK …`` of the fused kernel: one task of its (parallel or serial) loop."""
    h, w = clean.shape
    has_row = row_offsets.shape[0] > 0
    has_col = col_offsets.shape[0] > 0
    has_ds = ds_map.shape[0] > 0
    has_prnu = prnu_map.shape[0] > 0
    has_dark = dark_map.shape[0] > 0
    s_shot = np.uint64(STREAM_SHOT << 16)
    s_read = np.uint64(STREAM_READ << 16)
    mask32 = np.uint64(0xFFFFFFFF)
    # Row buffers (float64, W each); sm/se are scratch rows of the log/exp passes.
    mu = np.empty(w)
    d = np.empty(w)
    kk = np.empty(w)
    us_r = np.empty(w)
    v_r = np.empty(w)
    l1 = np.empty(w)
    l1i = l1.view(np.int64)
    l2 = np.empty(w)
    l2i = l2.view(np.int64)
    l3 = np.empty(w)
    l3i = l3.view(np.int64)
    ex = np.empty(w)
    sm = np.empty(w)
    smi = sm.view(np.int64)
    se = np.empty(w)
    idx = np.empty(w, dtype=np.int64)
    fa = np.empty(w, dtype=np.float32)
    fai = fa.view(np.int32)
    fb = np.empty(w, dtype=np.float32)
    fbi = fb.view(np.int32)
    fm = np.empty(w, dtype=np.float32)
    fmi = fm.view(np.int32)
    fe = np.empty(w, dtype=np.float32)
    sidx = np.empty(w, dtype=np.int64)
    cm = np.empty(w)
    for y in range(blk * ROWS_PER_BLOCK, min(h, (blk + 1) * ROWS_PER_BLOCK)):
        py = y % period
        gy = np.uint64(y + oy)
        # 1. expected electrons
        for x in range(w):
            v = clean[y, x] - tiles[0, py, x]
            mu[x] = (v if v > 0.0 else 0.0) * tiles[1, py, x]
        if has_prnu:
            for x in range(w):
                mu[x] *= 1.0 + prnu_map[y, x]
        if has_dark:
            for x in range(w):
                mu[x] += dark_map[y, x]
        elif dark_e != 0.0:
            for x in range(w):
                mu[x] += dark_e
        # 2. shot noise (inversion for μ < 10, PTRS above; see the module docstring)
        if shot:
            # Pixels are split into two compact lists (gathered into contiguous rows so the passes
            # vectorize): 0 < μ < 10 for inversion, μ ≥ 10 for PTRS; μ ≤ 0 gives 0.
            n_small = 0
            n_big = 0
            for x in range(w):
                lam = mu[x]
                small = (lam > 0.0) & (lam < POISSON_INVERSION_MAX)
                big = lam >= POISSON_INVERSION_MAX
                sidx[n_small] = x
                n_small += 1 if small else 0
                idx[n_big] = x
                n_big += 1 if big else 0
                d[x] = 0.0
            if n_small > 0:
                # Inversion, all listed pixels in lockstep: step j adds p_j = p_{j−1}·μ/j to the CDF f
                # and counts the steps where u > f_{j−1}. f only grows, so a pixel that has stopped
                # stays stopped: the sequential search, branch-free.
                for i in range(n_small):
                    x = sidx[i]
                    w0, w1, w2, w3 = philox4x32(np.uint64(x + ox), gy, fr, s_shot, kk0, kk1)
                    us_r[i] = (np.float64(w0) + 0.5) * INV_2_32
                    cm[i] = mu[x]
                for i in range(n_small):
                    ex[i] = -cm[i]
                _exp_row(ex, sm, smi, n_small)
                for i in range(n_small):
                    v_r[i] = ex[i]  # the CDF f, from p_0 = exp(−μ)
                    kk[i] = 0.0
                j = 0
                active = 1
                while active > 0 and j < _INVERSION_MAX_K:
                    j += 1
                    inv_j = _INV_K[j]
                    active = 0
                    for i in range(n_small):
                        go = us_r[i] > v_r[i]
                        kk[i] += 1.0 if go else 0.0
                        ex[i] = ex[i] * (cm[i] * inv_j)
                        v_r[i] += ex[i]
                        active += 1 if go else 0
                for i in range(n_small):
                    d[sidx[i]] = kk[i]
            # PTRS for μ ≥ 10 (Hörmann 1993) in rounds: round t evaluates try t (Philox block t // 2,
            # words 0–1 or 2–3) for every listed pixel, its three logs as rows; the rejected ~15 %
            # stay listed for the next round.
            n = n_big
            for i in range(n):
                cm[i] = mu[idx[i]]
            t = 0
            while n > 0:
                blk_t = np.uint64(t // 2)
                second = (t % 2) == 1
                for i in range(n):
                    w0, w1, w2, w3 = philox4x32(np.uint64(idx[i] + ox), gy, fr, s_shot | blk_t, kk0, kk1)
                    k, us, vv, vr, arg = _ptrs_prepare(cm[i], w2 if second else w0, w3 if second else w1)
                    kk[i] = k
                    us_r[i] = us
                    v_r[i] = vv
                    ex[i] = vr
                    l1[i] = arg
                    l2[i] = cm[i]
                    l3[i] = (k if k > 0.0 else 0.0) + 1.0
                _log_row(l1, l1i, sm, smi, se, n)
                _log_row(l2, l2i, sm, smi, se, n)
                _log_row(l3, l3i, sm, smi, se, n)
                for i in range(n):
                    ok = _ptrs_accept(cm[i], kk[i], us_r[i], v_r[i], ex[i], l1[i], l2[i], l3[i])
                    us_r[i] = 1.0 if ok else 0.0
                m = 0
                for i in range(n):
                    if us_r[i] > 0.5:
                        d[idx[i]] = kk[i]
                    else:
                        idx[m] = idx[i]
                        cm[m] = cm[i]
                        m += 1
                n = m
                t += 1
            for x in range(w):
                d[x] = gain_k * d[x] + tiles[2, py, x]
        else:
            for x in range(w):
                d[x] = gain_k * mu[x] + tiles[2, py, x]
        # 3. read noise from the read stream (word 0: Tukey u; words 0, 1: Box–Muller; word 2: dither)
        if read_kind == READ_TUKEY:
            # Q_λ(u) in float32 (see F32 above); log u and log(1 − u) exactly from the word and its complement
            for x in range(w):
                r0, r1, r2, r3 = philox4x32(np.uint64(x + ox), gy, fr, s_read, kk0, kk1)
                fa[x] = F32((np.float64(r0) + 0.5) * INV_2_32)
                fb[x] = F32((np.float64(r0 ^ mask32) + 0.5) * INV_2_32)
                ex[x] = (np.float64(r2) + 0.5) * INV_2_32 - 0.5
            if abs(tukey_lambda) < TUKEY_LOGISTIC_EPS:
                _log_row32(fa, fai, fm, fmi, fe, w)
                _log_row32(fb, fbi, fm, fmi, fe, w)
                for x in range(w):
                    d[x] += tukey_scale * np.float64(fa[x] - fb[x])
            else:
                # Q = (expm1(λ log u) − expm1(λ log(1 − u))) / λ
                lam32 = F32(tukey_lambda)
                _log_row32(fa, fai, fm, fmi, fe, w)
                _log_row32(fb, fbi, fm, fmi, fe, w)
                for x in range(w):
                    fa[x] = fa[x] * lam32
                    fb[x] = fb[x] * lam32
                _expm1_row32(fa, fm, fmi, w)
                _expm1_row32(fb, fm, fmi, w)
                for x in range(w):
                    d[x] += tukey_scale * np.float64((fa[x] - fb[x]) / lam32)
        elif read_kind == READ_GAUSSIAN or dither:
            for x in range(w):
                r0, r1, r2, r3 = philox4x32(np.uint64(x + ox), gy, fr, s_read, kk0, kk1)
                l1[x] = (np.float64(r0) + 0.5) * INV_2_32
                # cos(2πu) = cos(2π·min(u, 1 − u)): an angle in (0, π]
                l2[x] = (min(np.float64(r1), np.float64(r1 ^ mask32)) + 0.5) * TWO_PI_INV_2_32
                ex[x] = (np.float64(r2) + 0.5) * INV_2_32 - 0.5
            if read_kind == READ_GAUSSIAN:
                _log_row(l1, l1i, sm, smi, se, w)
                for x in range(w):
                    d[x] += read_sigma * (math.sqrt(-2.0 * l1[x]) * _cos_poly(l2[x]))
        # 4. line offsets, fixed pattern, quantization, clipping, output scaling
        if has_row:
            if row_per_channel:
                for x in range(w):
                    d[x] += row_offsets[y, xs[x]]
            else:
                rv = row_offsets[y, 0]
                for x in range(w):
                    d[x] += rv
        if has_col:
            for x in range(w):
                d[x] += col_offsets[x]
        if has_ds:
            for x in range(w):
                d[x] += ds_map[y, x]
        if dither:
            for x in range(w):
                d[x] += ex[x]
        for x in range(w):
            v = d[x]
            if quantize:
                v = math.floor(v + 0.5)
            if clip:
                v = min(max(v, tiles[3, py, x]), tiles[4, py, x])
            out[y, x] = (v - tiles[5, py, x]) * tiles[6, py, x]


@nb.njit(cache=True, error_model="numpy")
def _expand_tiles(w, period, offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile):
    """Tile values expanded along a row, (7, p, W), and the column phase of each x: no modulo in inner loops."""
    xs = np.arange(w) % period
    tiles = np.empty((7, period, w))
    for py in range(period):
        for x in range(w):
            px = xs[x]
            tiles[0, py, x] = offset_tile[py, px]
            tiles[1, py, x] = gain_tile[py, px]
            tiles[2, py, x] = add_tile[py, px]
            tiles[3, py, x] = lo_tile[py, px]
            tiles[4, py, x] = hi_tile[py, px]
            tiles[5, py, x] = out_offset_tile[py, px]
            tiles[6, py, x] = out_scale_tile[py, px]
    return tiles, xs


@nb.njit(cache=True, parallel=True, error_model="numpy")
def fused_noise_numba(
    clean, out, period, oy, ox, frame, k0, k1,
    offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile,
    gain_k, dark_e, shot, read_kind, read_sigma, tukey_lambda, tukey_scale,
    row_offsets, row_per_channel, col_offsets, ds_map, prnu_map, dark_map,
    quantize, dither, clip,
):
    """Fused kernel: one pass over the frame, parallel over blocks of rows, vectorized along rows.

    ``clean`` (H, W) float32; ``out`` (H, W) float32; tiles (p, p) float64; ``row_offsets`` (H, 1), or
    (H, p) with ``row_per_channel``, or (0, 1); ``col_offsets`` (W,) or (0,); ``ds_map``, ``prnu_map``,
    ``dark_map`` (H, W) float32 or (0, 0) when absent.
    """
    h, w = clean.shape
    tiles, xs = _expand_tiles(w, period, offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile)
    for blk in nb.prange((h + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK):
        _noise_block(
            blk, clean, out, period, oy, ox, np.uint64(frame), np.uint64(k0), np.uint64(k1), tiles, xs,
            gain_k, dark_e, shot, read_kind, read_sigma, tukey_lambda, tukey_scale,
            row_offsets, row_per_channel, col_offsets, ds_map, prnu_map, dark_map,
            quantize, dither, clip,
        )


@nb.njit(cache=True, error_model="numpy")
def fused_noise_serial(
    clean, out, period, oy, ox, frame, k0, k1,
    offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile,
    gain_k, dark_e, shot, read_kind, read_sigma, tukey_lambda, tukey_scale,
    row_offsets, row_per_channel, col_offsets, ds_map, prnu_map, dark_map,
    quantize, dither, clip,
):
    """:func:`fused_noise_numba` on the calling thread only (small frames, worker processes): the same
    result, without the thread pool's start-up cost."""
    h, w = clean.shape
    tiles, xs = _expand_tiles(w, period, offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile)
    for blk in range((h + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK):
        _noise_block(
            blk, clean, out, period, oy, ox, np.uint64(frame), np.uint64(k0), np.uint64(k1), tiles, xs,
            gain_k, dark_e, shot, read_kind, read_sigma, tukey_lambda, tukey_scale,
            row_offsets, row_per_channel, col_offsets, ds_map, prnu_map, dark_map,
            quantize, dither, clip,
        )


# --------------------------------------------------------------------------------------------------
# numpy reference
# --------------------------------------------------------------------------------------------------
def _tile(tile: np.ndarray, shape) -> np.ndarray:
    p = tile.shape[0]
    h, w = shape
    return np.tile(tile, (h // p + 1, w // p + 1))[:h, :w]


def log_numpy(x: np.ndarray) -> np.ndarray:
    """Reference of the kernels' log (same operations as :func:`_log_poly` on the float's bits)."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.int64)
    e = ((bits >> 52) - 1023).astype(np.float64)
    m = ((bits & _FRAC_MASK) | _ONE_BITS).view(np.float64)
    big = m > SQRT2
    m = np.where(big, m * 0.5, m)
    e = np.where(big, e + 1.0, e)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    c = _ATANH_C
    p = ((((((c[7] * z + c[6]) * z + c[5]) * z + c[4]) * z + c[3]) * z + c[2]) * z + c[1]) * z + c[0]
    return e * LN2 + 2.0 * s * (1.0 + z * p)


def exp_numpy(t: np.ndarray) -> np.ndarray:
    """Reference of the kernels' exp (Cody–Waite reduction, Taylor polynomial of expm1, 2^k from its bits)."""
    t = np.maximum(np.asarray(t, dtype=np.float64), -700.0)
    k = np.floor(t * INV_LN2 + 0.5)
    r = (t - k * LN2_HI) - k * LN2_LO
    c = _EXPM1_C
    p = ((((((((((c[11] * r + c[10]) * r + c[9]) * r + c[8]) * r + c[7]) * r + c[6]) * r + c[5]) * r + c[4]) * r
          + c[3]) * r + c[2]) * r + c[1]) * r + c[0]
    p = r + r * r * p
    scale = ((k + 1023.0).astype(np.int64) << 52).view(np.float64)
    return scale * (p + 1.0)


def cos_numpy(a: np.ndarray) -> np.ndarray:
    """Reference of the kernels' cos on [0, π]."""
    neg = a > 0.5 * math.pi
    a = np.where(neg, math.pi - a, a)
    z = a * a
    c = _COS_C
    p = (((((((c[8] * z + c[7]) * z + c[6]) * z + c[5]) * z + c[4]) * z + c[3]) * z + c[2]) * z + c[1]) * z + c[0]
    v = 1.0 + z * p
    return np.where(neg, -v, v)


def log_factorial_numpy(k: np.ndarray) -> np.ndarray:
    """log k! for integer-valued k ≥ 0 (table below 32, Stirling above), as the kernel computes it."""
    k = np.asarray(k, dtype=np.float64)
    z = k + 1.0
    log_z = log_numpy(z)
    iz = 1.0 / z
    iz2 = iz * iz
    st = (z - 0.5) * log_z - z + HALF_LOG_2PI + iz * (1.0 / 12.0 - iz2 * (1.0 / 360.0 - iz2 * (1.0 / 1260.0 - iz2 / 1680.0)))
    return np.where(k < 32.0, _LOG_FACTORIAL[np.clip(k, 0, 31).astype(np.int64)], st)


def poisson_numpy(mu: np.ndarray, gx: np.ndarray, gy: np.ndarray, frame: int, key) -> np.ndarray:
    """Reference Poisson draws: the algorithms, random words and arithmetic of the numba kernel."""
    mu = np.asarray(mu, dtype=np.float64)
    out = np.zeros(mu.shape, dtype=np.float64)
    s = STREAM_SHOT << 16
    small = (mu > 0) & (mu < POISSON_INVERSION_MAX)
    if small.any():
        m = mu[small]
        u = uniform_np(philox4x32_np(gx[small], gy[small], frame, s, *key)[0])
        p = exp_numpy(-m)
        f = p.copy()
        k = np.zeros_like(m)
        active = u > f
        while active.any():
            i = np.nonzero(active)[0]
            k[i] += 1.0
            p[i] = p[i] * (m[i] * _INV_K[k[i].astype(np.int64)])
            f[i] += p[i]
            active[i] = (u[i] > f[i]) & (k[i] < _INVERSION_MAX_K)
        out[small] = k
    large = mu >= POISSON_INVERSION_MAX
    if large.any():
        pos = np.nonzero(large.ravel())[0]
        m = mu.ravel()[pos]
        gxl, gyl = gx.ravel()[pos], gy.ravel()[pos]
        b = 0.931 + 2.53 * np.sqrt(m)
        a = -0.059 + 0.02483 * b
        r = 1.0 / ((b - 2.0) * (b - 3.4))
        vr = 0.9277 - 3.6224 * ((b - 3.4) * r)
        inv_alpha = 1.1239 + 1.1328 * ((b - 2.0) * r)
        loglam = log_numpy(m)
        result = np.zeros(m.shape)
        pending = np.ones(m.shape, dtype=bool)
        block = 0
        while pending.any():
            i = np.nonzero(pending)[0]
            w = philox4x32_np(gxl[i], gyl[i], frame, s | block, *key)
            block += 1
            still = np.ones(i.size, dtype=bool)
            for t in range(2):  # two tries per Philox block, as in the kernel
                j = np.nonzero(still)[0]
                ii = i[j]
                uu = uniform_np(w[2 * t][j]) - 0.5
                v = uniform_np(w[2 * t + 1][j])
                us = 0.5 - np.abs(uu)
                a_us = a[ii] / us
                k = np.floor((2.0 * a_us + b[ii]) * uu + m[ii] + 0.43)
                accept = (us >= 0.07) & (v <= vr[ii])
                test = ~accept & ~((k < 0) | ((us < 0.013) & (v > us)))
                if test.any():
                    it, kt, ust = ii[test], k[test], us[test]
                    lhs = log_numpy(v[test] * inv_alpha[it] / (a_us[test] / ust + b[it]))
                    accept[test] = lhs <= -m[it] + kt * loglam[it] - log_factorial_numpy(kt)
                result[ii[accept]] = k[accept]
                pending[ii[accept]] = False
                still[j[accept]] = False
        out.ravel()[pos] = result
    return out


def log32_numpy(x: np.ndarray) -> np.ndarray:
    """Reference of the kernel's float32 log (:func:`_log_row32`)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.int32)
    e = ((bits >> 23) - 127).astype(np.float32)
    m = ((bits & 0x007FFFFF) | 0x3F800000).view(np.float32)
    big = m > SQRT2_32
    m = np.where(big, m * F32(0.5), m)
    e = np.where(big, e + F32(1.0), e)
    f = m - F32(1.0)
    s = f / (F32(2.0) + f)
    z = s * s
    c = _ATANH_C32
    p = ((c[3] * z + c[2]) * z + c[1]) * z + c[0]
    return e * LN2_32 + F32(2.0) * s * (F32(1.0) + z * p)


def expm1_32_numpy(t: np.ndarray) -> np.ndarray:
    """Reference of the kernel's float32 expm1 (:func:`_expm1_row32`)."""
    t = np.asarray(t, dtype=np.float32)
    k = np.floor(t * INV_LN2_32 + F32(0.5))
    r = (t - k * LN2_HI32) - k * LN2_LO32
    c = _EXPM1_C32
    p = ((((c[5] * r + c[4]) * r + c[3]) * r + c[2]) * r + c[1]) * r + c[0]
    p = r + r * r * p
    sc = ((k + F32(127.0)).astype(np.int32) << 23).view(np.float32)
    return sc * p + (sc - F32(1.0))


def tukey_read_numpy(word: np.ndarray, lam: float, scale: float) -> np.ndarray:
    """σ_TL · Q_λ(u) from one 32-bit word per pixel, Q_λ(u) = (u^λ − (1−u)^λ)/λ (logistic as λ → 0).

    Q is evaluated in float32 (1 − u exactly from the complement word), as the kernel does.
    """
    word = np.asarray(word, dtype=np.uint64)
    lu = log32_numpy(uniform_np(word).astype(np.float32))
    l1u = log32_numpy(uniform_np(word ^ np.uint64(0xFFFFFFFF)).astype(np.float32))
    if abs(lam) < TUKEY_LOGISTIC_EPS:
        return scale * (lu - l1u).astype(np.float64)
    lam32 = F32(lam)
    return scale * ((expm1_32_numpy(lu * lam32) - expm1_32_numpy(l1u * lam32)) / lam32).astype(np.float64)


def gaussian_read_numpy(w_a: np.ndarray, w_b: np.ndarray, sigma: float) -> np.ndarray:
    """σ · Box–Muller normal from two words per pixel (cosine branch)."""
    w_b = np.asarray(w_b, dtype=np.uint64)
    lu = log_numpy(uniform_np(w_a))
    angle = (np.minimum(w_b, w_b ^ np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) * TWO_PI_INV_2_32
    return sigma * (np.sqrt(-2.0 * lu) * cos_numpy(angle))


def fused_noise_numpy(
    clean, out, period, oy, ox, frame, k0, k1,
    offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile,
    gain_k, dark_e, shot, read_kind, read_sigma, tukey_lambda, tukey_scale,
    row_offsets, row_per_channel, col_offsets, ds_map, prnu_map, dark_map,
    quantize, dither, clip,
):
    """Plain-numpy reference of :func:`fused_noise_numba`: same arguments, same result, whole-frame arrays."""
    h, w = clean.shape
    key = (k0, k1)
    gy, gx = np.meshgrid(np.arange(oy, oy + h, dtype=np.uint64), np.arange(ox, ox + w, dtype=np.uint64), indexing="ij")
    t = lambda tile: _tile(tile, (h, w))  # noqa: E731
    mu = np.maximum(clean.astype(np.float64) - t(offset_tile), 0.0) * t(gain_tile)
    if prnu_map.shape[0] > 0:
        mu = mu * (1.0 + prnu_map.astype(np.float64))
    if dark_map.shape[0] > 0:
        mu = mu + dark_map.astype(np.float64)
    elif dark_e != 0.0:
        mu = mu + dark_e
    ne = poisson_numpy(mu, gx, gy, frame, key) if shot else mu
    d = gain_k * ne + t(add_tile)
    if read_kind != READ_NONE or dither:
        r = philox4x32_np(gx, gy, frame, STREAM_READ << 16, *key)
        if read_kind == READ_TUKEY:
            d = d + tukey_read_numpy(r[0], tukey_lambda, tukey_scale)
        elif read_kind == READ_GAUSSIAN:
            d = d + gaussian_read_numpy(r[0], r[1], read_sigma)
    if row_offsets.shape[0] > 0:
        if row_per_channel:
            d = d + row_offsets[:, np.arange(w) % period]
        else:
            d = d + row_offsets[:, :1]
    if col_offsets.shape[0] > 0:
        d = d + col_offsets[None, :]
    if ds_map.shape[0] > 0:
        d = d + ds_map
    if dither:
        d = d + (uniform_np(r[2]) - 0.5)
    if quantize:
        d = np.floor(d + 0.5)
    if clip:
        d = np.clip(d, t(lo_tile), t(hi_tile))
    out[...] = (d - t(out_offset_tile)) * t(out_scale_tile)
