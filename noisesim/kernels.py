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

* shot: for μ < 10 inversion by sequential search (packed stream 5: one word per pixel, four pixels per
  Philox block, :mod:`noisesim.rng`), run for all such pixels of a row in lockstep; for μ ≥ 10 PTRS, the
  transformed rejection method of Hörmann (1993, "The transformed rejection method for generating Poisson
  random variables", Insurance: Math. and Econ. 12), as numpy uses, from stream 0 (paired: try t of pixel
  column gx takes words 2·(gx mod 2) and 2·(gx mod 2) + 1 of block t at column gx // 2), evaluated in rounds
  over the still-pending pixels.
* read: Tukey-lambda by its quantile of one word (packed stream 6; 1 − u from the complement word,
  exactly), evaluated in float32 (its ~1e-7 relative error is far below any read-noise figure);
  Gaussian by Box–Muller from words 0 and 1 of stream 1; the float path's U(−½, ½) dither from packed
  stream 7.

Speed: libm's log/exp are scalar calls (~10 ns each with random arguments). The kernel evaluates them as
branch-free polynomials over whole rows so LLVM vectorizes them (AVX2 here), with ~1e-15 relative accuracy
(tested against numpy). ``error_model="numpy"`` keeps division free of Python's zero checks, which would
block vectorization. LLVM vectorizes a loop over several rows only when its run-time checks that the rows do
not overlap are few (about 8 pairs), so hot loops write at most two rows: the PTRS decision is coded into
the log test's argument, and the inversion steps run on groups copied to one flat scratch. Each stage
(inversion, PTRS, Tukey, Gaussian) is its own function with its own scratch rows.
"""

from __future__ import annotations

import math
import sys
import threading

import numba as nb
import numpy as np

from .rng import (INV_2_32, STREAM_DITHER, STREAM_READ, STREAM_READ_TUKEY, STREAM_SHOT, STREAM_SHOT_INVERSION,
                  packed_words_np, philox4x32, philox4x32_np, uniform_np)
from .stats import TUKEY_LOGISTIC_EPS  # |λ| below which Q_λ is the logistic quantile (one threshold everywhere)

__all__ = [
    "C_FRAME",
    "C_KEY0",
    "C_KEY1",
    "C_OX",
    "C_OY",
    "cos_numpy",
    "exp_numpy",
    "expand_tiles",
    "expm1_32_numpy",
    "F32",
    "fused_noise_numba",
    "fused_noise_numpy",
    "fused_noise_rows",
    "fused_noise_rows_gaussian",
    "fused_noise_rows_none",
    "fused_noise_rows_tukey",
    "fused_noise_serial",
    "gaussian_read_numpy",
    "HALF_LOG_2PI",
    "INV_LN2",
    "INV_LN2_32",
    "INVERSION_GROUP",
    "LN2",
    "LN2_32",
    "LN2_HI",
    "LN2_HI32",
    "LN2_LO",
    "LN2_LO32",
    "log32_numpy",
    "log_factorial_numpy",
    "log_numpy",
    "M_DARK_E",
    "M_GAIN_K",
    "M_READ_SIGMA",
    "M_TUKEY_LAMBDA",
    "M_TUKEY_SCALE",
    "MAP_DARK",
    "MAP_DS",
    "MAP_PRNU",
    "PACKED",
    "POISSON_INVERSION_MAX",
    "poisson_numpy",
    "READ_GAUSSIAN",
    "READ_NONE",
    "READ_TUKEY",
    "ROWS_KERNELS",
    "ROWS_PER_TASK",
    "S_CLIP",
    "S_DITHER",
    "S_QUANTIZE",
    "S_READ_KIND",
    "S_ROW_PER_CHANNEL",
    "S_SHOT",
    "SQRT2",
    "SQRT2_32",
    "T_ADD",
    "T_GAIN",
    "T_HI",
    "T_LO",
    "T_OFFSET",
    "T_OUT_OFFSET",
    "T_OUT_SCALE",
    "tukey_read_numpy",
    "TWO_PI_INV_2_32",
]

# Mean below which Poisson draws use inversion; PTRS is valid for μ ≥ 10 (Hörmann 1993).
POISSON_INVERSION_MAX = 10.0
READ_NONE, READ_GAUSSIAN, READ_TUKEY = 0, 1, 2
# Rows per task of the threaded driver: small enough that a thread slowed by other load does not hold
# up the frame, large enough that the ~20 µs per task stays far below the task's work.
ROWS_PER_TASK = 32

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


# The compiled functions that only the row kernels call: no Python or C entry point and no cache of their
# own (each row kernel's cache holds them, linked in), so a cold start neither makes nor saves their
# separate wrappers. Each compiled function costs a cold start a fixed ~0.2-0.4 s (its own LLVM module,
# optimized and turned into machine code, then again inside each caller), so a row pass with a single
# call site (one per kernel: each pass runs once over all its values, e.g. the three logs of the PTRS
# test in one row) is inlined into its caller (_INLINED) rather than compiled on its own; a function
# called from several sites stays compiled once (inlining types it again at every site).
_CALLEE = dict(no_cpython_wrapper=True, no_cfunc_wrapper=True, _nrt=False)
_INLINED = dict(inline="always")
# No reference counting (_nrt=False): the kernels allocate nothing (every array, scratch included, comes from
# Python and outlives the call), so the increments and decrements numba emits for each row view are dead
# weight (a quarter of the LLVM IR a cold start optimizes).
# min, max and int of scalars are written out as conditional expressions and casts: numba compiles its
# overloads of them as functions of their own (~0.1 s of a cold start each).


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
    t = -700.0 if -700.0 > t else t  # max(t, −700), without compiling numba's min/max overloads
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


@nb.njit(**_INLINED, error_model="numpy")
def _log_row32(x, xi, m, mi, e, n, factor):
    """In place x[:n] = log(x[:n]) · factor in float32 (positive normal floats; the log rounded to float32, then
    the product: what a pass of its own would give); xi, mi are int32 views of x and m."""
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
        log_x = ee * LN2_32 + F32(2.0) * s * (F32(1.0) + z * p)
        x[i] = log_x * factor


@nb.njit(**_INLINED, error_model="numpy")
def _expm1_row32_reduced(x, a, ai, n):
    """First half of an in-place float32 expm1 for |x| < 80: x[:n] = expm1(r) and a[:n] = 2^k with
    x = k·ln 2 + r (a/ai float32/int32 views of one scratch row); expm1(x) is then a·x + (a − 1), made where
    it is used (:func:`_tukey_add`, one pass for both halves of a row)."""
    c = _EXPM1_C32
    for i in range(n):
        t = x[i]
        k = np.floor(t * INV_LN2_32 + F32(0.5))
        r = (t - k * LN2_HI32) - k * LN2_LO32
        p = ((((c[5] * r + c[4]) * r + c[3]) * r + c[2]) * r + c[1]) * r + c[0]
        x[i] = r + r * r * p
        ai[i] = np.int32(k + F32(127.0)) << 23


@nb.njit(**_INLINED, error_model="numpy")
def _log_row(x, xi, m, mi, e, n):
    """In place x[:n] = log(x[:n]) for positive normal floats; xi, mi are int64 views of x and m."""
    for i in range(n):
        b = xi[i]
        e[i] = np.float64((b >> 52) - 1023)
        mi[i] = (b & _FRAC_MASK) | _ONE_BITS
    for i in range(n):
        x[i] = _log_poly(m[i], e[i])


@nb.njit(**_INLINED, error_model="numpy")
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
def _log_factorial(k, log_z):
    """log k! for integer-valued k ≥ 0: table below 32, Stirling's series at z = k + 1 (log_z = log z) above.

    Both are evaluated and one selected, so row loops calling this stay branch-free (vectorizable).
    """
    z = k + 1.0
    iz = 1.0 / z
    iz2 = iz * iz
    stirling = (z - 0.5) * log_z - z + HALF_LOG_2PI + iz * (1.0 / 12.0 - iz2 * (1.0 / 360.0 - iz2 * (1.0 / 1260.0 - iz2 / 1680.0)))
    ik = np.int64(k)
    table = _LOG_FACTORIAL[31 if ik > 31 else ik]
    return table if k < 32.0 else stirling


def _ptrs_try_math(lam, uu, vv):
    """First half of a PTRS try (Hörmann 1993) for mean μ = ``lam`` from u − ½ = ``uu`` and v = ``vv``:
    (k, u_s, v_r, the log test's argument v/α / (a/u_s² + b)). Plain arithmetic on scalars or arrays: compiled
    as :func:`_ptrs_try` for the kernel and run on numpy arrays by the reference, so both round alike.

    The four quotients of the textbook form cost more than the rest of the try (a vector division is ~10
    multiplies' time): one reciprocal serves all, 1/p = u_s·q·r, 1/u_s = p·q·r, 1/q = p·u_s·r with
    p = (b − 2)(b − 3.4), q = a + b·u_s², r = 1/(p·u_s·q) (all positive for μ ≥ 10).
    """
    bb = 0.931 + 2.53 * np.sqrt(lam)
    aa = -0.059 + 0.02483 * bb
    pp = (bb - 2.0) * (bb - 3.4)
    us = 0.5 - np.abs(uu)
    us2 = us * us
    qq = aa + bb * us2
    r = 1.0 / (pp * us * qq)
    inv_p = us * qq * r
    v_r = 0.9277 - 3.6224 * ((bb - 3.4) * inv_p)
    inv_alpha = 1.1239 + 1.1328 * ((bb - 2.0) * inv_p)
    a_us = aa * (pp * qq * r)
    k = np.floor((2.0 * a_us + bb) * uu + lam + 0.43)
    return k, us, v_r, vv * inv_alpha * us2 * (pp * us * r)


_ptrs_try = nb.njit(cache=True, inline="always", error_model="numpy")(_ptrs_try_math)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _ptrs_prepare(lam, wu, wv):
    """First half of a PTRS try from its two words: (k, u_s, v, v_r, argument of the log test)."""
    uu = (np.float64(wu) + 0.5) * INV_2_32 - 0.5
    vv = (np.float64(wv) + 0.5) * INV_2_32
    k, us, vr, arg = _ptrs_try(lam, uu, vv)
    return k, us, vv, vr, arg


# --------------------------------------------------------------------------------------------------
# the fused kernel
# --------------------------------------------------------------------------------------------------
# Its grouped arguments (the same for the numba kernels and the numpy reference):
#   tiles    (7, p, p) float64, one CFA tile per row T_*: offset [input unit], gain [e⁻ per input unit],
#            add = black + black-level error [DN], clip lo/hi [DN], output offset [DN] and scale
#   counter  (5,) int64, fields C_*: origin row/column in the full sensor, frame index, Philox key words
#   model    (5,) float64, entries M_*: K [DN/e⁻], dark signal [e⁻], Gaussian σ [DN], Tukey λ, Tukey σ_TL [DN]
#   switches (6,) int64, entries S_*: shot, read kind (READ_*), per-channel row offsets, quantize, dither, clip
#   row_offsets (H, 1), or (H, p) per channel, or (0, 1) [DN]; col_offsets (W,) or (0,) [DN]
#   maps     tuple of three (H, W) float32 maps, MAP_*: dark shading [DN], PRNU [1], dark signal [e⁻];
#            (0, 0) where absent
T_OFFSET, T_GAIN, T_ADD, T_LO, T_HI, T_OUT_OFFSET, T_OUT_SCALE = range(7)
C_OY, C_OX, C_FRAME, C_KEY0, C_KEY1 = range(5)
M_GAIN_K, M_DARK_E, M_READ_SIGMA, M_TUKEY_LAMBDA, M_TUKEY_SCALE = range(5)
S_SHOT, S_READ_KIND, S_ROW_PER_CHANNEL, S_QUANTIZE, S_DITHER, S_CLIP = range(6)
MAP_DS, MAP_PRNU, MAP_DARK = range(3)
# Packed streams: one Philox block serves this many neighbouring pixels (one word each).
PACKED = 4
# Pixels searched in lockstep by the inversion: a group stops at its own largest count, not the row's.
INVERSION_GROUP = 32
# A count that starts at 0 and is passed to a compiled callee starts as np.int64, not the literal 0: numba
# would otherwise compile the callee a second time for the literal type (doubling the cold start).
_ZERO = np.int64(0)
# Two consecutive 32-bit words read as one 64-bit word (PTRS takes a pixel's two words so: one contiguous
# load instead of two strided ones, which LLVM left scalar): where each word sits depends on byte order.
_FIRST_WORD_SHIFT, _SECOND_WORD_SHIFT = ((np.uint64(0), np.uint64(32)) if sys.byteorder == "little"
                                         else (np.uint64(32), np.uint64(0)))
_ACCEPT, _REJECT = -1.0, -2.0  # PTRS decisions, coded where the log test's (positive) argument goes


@nb.njit(**_CALLEE, error_model="numpy")
def _philox_blocks(cols, j0, n, gy, stream, counter, flat):
    """flat[4·i + r] = word r of the Philox block at counter column j0 + cols[i], i < n (row gy, frame, stream).

    The one Philox loop of the kernels (each copy compiled costs a cold start ~0.3 s): runs of consecutive
    blocks pass ``cols`` = 0, 1, 2, … (the ``iota`` scratch row) and their first column as j0; scattered
    blocks pass their columns and j0 = 0. A packed stream's row: j0 = ox // 4, and pixel x's word is
    flat[x + ox − 4·j0]. The PTRS stream's first try: j0 = gx_first // 2, and pixel column gx's two words are
    flat[2·gx − 4·j0] and the next. ``flat`` (4·W + 8,) uint32.
    """
    fr = np.uint64(counter[C_FRAME])
    k0 = np.uint64(counter[C_KEY0])
    k1 = np.uint64(counter[C_KEY1])
    for i in range(n):
        a, b, c, d = philox4x32(np.uint64(j0 + cols[i]), gy, fr, stream, k0, k1)
        flat[PACKED * i] = np.uint32(a)
        flat[PACKED * i + 1] = np.uint32(b)
        flat[PACKED * i + 2] = np.uint32(c)
        flat[PACKED * i + 3] = np.uint32(d)


@nb.njit(**_CALLEE, error_model="numpy")
def _poisson_inversion(mu, cols, n, gy, counter, counts, iota, flat, s, si, grp):
    """counts[cols[i]] = Poisson(μ) for the n listed pixels (0 < μ < 10): sequential search from the
    pixel's word of the packed inversion stream (``flat``, its blocks; ``iota`` (W + 2,) int64: 0, 1, 2, …).

    All pixels of a group step in lockstep: step j adds p_j = p_{j−1}·μ/j to the CDF f and counts the steps
    where u > f_{j−1}. f only grows, so a pixel that has stopped stays stopped: the search, branch-free.
    ``s`` (4, W + INVERSION_GROUP) float64 scratch rows: u, μ, p_0 = exp(−μ) (each padded to whole groups),
    and the exp pass's own row; ``si`` its int64 view; ``grp`` (5·INVERSION_GROUP,) float64 scratch.
    """
    u, lam, p, exp_scratch = s[0], s[1], s[2], s[3]
    ox = counter[C_OX]
    j0 = ox // PACKED
    _philox_blocks(iota, j0, (ox + cols[n - 1]) // PACKED - j0 + 1, gy, np.uint64(STREAM_SHOT_INVERSION << 16), counter,
                   flat)
    off = ox - PACKED * j0
    for i in range(n):
        u[i] = (np.float64(flat[cols[i] + off]) + 0.5) * INV_2_32
        lam[i] = mu[cols[i]]
        p[i] = -lam[i]
    _exp_row(p, exp_scratch, si[3], n)  # p_0 = exp(−μ)
    G = INVERSION_GROUP
    for i in range(n, n + G):  # the last group's padding lanes: u = 0 ≤ f stops at once
        u[i] = 0.0
        p[i] = 1.0
        lam[i] = 0.0
    # Each group is copied into one flat scratch at fixed offsets (u, f, p_j, μ, count) with a fixed trip
    # count, so LLVM sees that its rows cannot overlap and vectorizes the steps (over rows of the (5, W + G)
    # scratch it does not: it cannot rule out aliasing); padded rows make the copy a plain one (a copy
    # choosing per lane between a row's value and a padding value compiled to scalar loads).
    for g0 in range(0, n, G):
        m = G if G < n - g0 else n - g0
        for i in range(G):
            grp[i] = u[g0 + i]
            grp[G + i] = p[g0 + i]
            grp[2 * G + i] = p[g0 + i]
            grp[3 * G + i] = lam[g0 + i]
            grp[4 * G + i] = 0.0
        j = 0
        active = 1
        while active > 0 and j < _INVERSION_MAX_K:
            j += 1
            inv_j = _INV_K[j]
            active = 0
            for i in range(G):
                go = grp[i] > grp[G + i]
                grp[4 * G + i] += 1.0 if go else 0.0
                active += 1 if go else 0
                pj = grp[2 * G + i] * (grp[3 * G + i] * inv_j)
                grp[2 * G + i] = pj
                grp[G + i] += pj
        for i in range(m):
            counts[cols[g0 + i]] = grp[4 * G + i]


@nb.njit(**_CALLEE, error_model="numpy")
def _poisson_ptrs(mu, w, n_big, gy, counter, counts, words, iota, flat, flat64, s, logs, logsi, cols, tpos):
    """counts[x] = Poisson(μ_x) for the pixels of the row with μ ≥ 10 by PTRS (Hörmann 1993), in rounds; 0 for
    the others (the inversion fills those with 0 < μ < 10 afterwards).

    Round t is try t for every pixel still pending, from Philox block t (two pixels per block; ``words``
    (2, W) uint32: each pending pixel's two words, ``iota`` (W + 2,) int64: 0, 1, 2, …). In a row where at
    least half the pixels (``n_big`` of ``w``) have μ ≥ 10, the first round runs on the whole row
    (contiguous rows, no gathers; pixels with μ < 10 make a dummy try that decides nothing and writes
    nothing) from the row's blocks made at once into ``flat`` (read through ``flat64``, its uint64 view: a
    pixel's two words in one load); in a row with fewer, as on dark dataset patches, it runs on their list
    (the dummy tries cost more than the gathers: 256² patches ×0.94, same bytes). Later rounds run on the
    compact list of pending pixels, one block each. The squeeze decides 39 % of the tries at μ = 10, 64 % at
    50, 78 % at 1000 (a try is accepted with probability 0.75, 0.84, 0.88); the three logs of the exact test
    are evaluated only for the undecided ones, gathered into contiguous rows. One loop of each kind serves
    every round (each compiled loop costs a cold start time).
    ``s`` (5, W) float64 scratch rows: μ, k and the log test's argument (or decision) per pending pixel, μ and
    k per undecided one; ``logs`` (3, 3·W) float64: the undecided ones' three log arguments one after the
    other (one log pass for all three; the first then holds the decision), the log pass's mantissa and
    exponent; ``logsi`` its int64 view; ``cols`` (W,) int64: the pending pixels; ``tpos`` (W,) int64: the
    undecided ones' positions among them.
    """
    lam, kk, arg, t_lam, t_k = s[0], s[1], s[2], s[3], s[4]
    log_x, log_m, log_e = logs[0], logs[1], logs[2]
    ox = counter[C_OX]
    wu, wv = words[0], words[1]
    listed = 2 * n_big < w
    if listed:  # few of the row's pixels: round 0 too runs on their list (same blocks, same words)
        n = _ZERO
        for x in range(w):
            counts[x] = 0.0
            cols[n] = x
            n += 1 if mu[x] >= POISSON_INVERSION_MAX else 0
        for i in range(n):
            lam[i] = mu[cols[i]]
    else:
        j0 = ox // 2
        _philox_blocks(iota, j0, (ox + w - 1) // 2 - j0 + 1, gy, np.uint64(STREAM_SHOT << 16), counter, flat)
        base = ox - 2 * j0  # pixel x's two words: flat[2·(x + base)] and the next, i.e. flat64[x + base]
        for x in range(w):  # round 0: every pixel of the row, its two words of the row's blocks, contiguous
            pair = flat64[x + base]
            wu[x] = np.uint32(pair >> _FIRST_WORD_SHIFT)
            wv[x] = np.uint32(pair >> _SECOND_WORD_SHIFT)
            lam[x] = mu[x]
        n = w
    t = 0
    while n > 0:
        if listed:
            for i in range(n):
                tpos[i] = (cols[i] + ox) // 2
            _philox_blocks(tpos, _ZERO, n, gy, np.uint64(STREAM_SHOT << 16 | t), counter, flat)
            for i in range(n):  # the pixel's two words of its block
                pair = flat64[2 * i + ((cols[i] + ox) & 1)]
                wu[i] = np.uint32(pair >> _FIRST_WORD_SHIFT)
                wv[i] = np.uint32(pair >> _SECOND_WORD_SHIFT)
        # The try and the squeeze; the decision is coded in arg (the log test's argument, > 0 when the
        # test is still to be made), so this loop writes two rows only and LLVM vectorizes it.
        for i in range(n):
            lam_i = lam[i]
            small = lam_i < POISSON_INVERSION_MAX  # round 0 only: not this algorithm's pixel, decided at once
            k, u_s, v, v_r, a = _ptrs_prepare(POISSON_INVERSION_MAX if small else lam_i, wu[i], wv[i])
            kk[i] = k
            accept = ((u_s >= 0.07) & (v <= v_r)) | small
            reject = (k < 0.0) | ((u_s < 0.013) & (v > u_s))
            arg[i] = _ACCEPT if accept else (_REJECT if reject else a)
        nt = _ZERO
        for i in range(n):  # positions of the undecided (branch-free), then their values gathered into rows
            tpos[nt] = i
            nt += 1 if arg[i] > 0.0 else 0
        for j in range(nt):  # one pass of gathers (they are scalar loads whatever the loop)
            i = tpos[j]
            log_x[j] = arg[i]
            lam_i = lam[i]
            t_lam[j] = lam_i
            log_x[nt + j] = lam_i
            k = kk[i]
            t_k[j] = k
            log_x[2 * nt + j] = k + 1.0  # k ≥ 0 here (k < 0 is rejected)
        _log_row(log_x, logsi[0], log_m, logsi[1], log_e, 3 * nt)
        for j in range(nt):  # the exact test, vectorized over the gathered rows (decision into log_x[:nt])
            k = t_k[j]
            ok = log_x[j] <= -t_lam[j] + k * log_x[nt + j] - _log_factorial(k, log_x[2 * nt + j])
            log_x[j] = _ACCEPT if ok else _REJECT
        for j in range(nt):
            arg[tpos[j]] = log_x[j]
        # Accepted counts out, the rest compacted for the next try (branch-free: every count of this
        # algorithm's pixels is written, a rejected one is overwritten when its pixel is accepted later).
        # A whole-row round 0 writes the whole row, 0 where μ < 10 (the inversion, run after, fills its
        # pixels): a select between kk and the count already there compiled to a load through a selected
        # pointer, scalar with a branch per pixel (17 % of this function's time on dataset patches).
        m = _ZERO
        if not listed:
            listed = True  # the pixels still pending are listed from here on
            for x in range(w):
                counts[x] = kk[x] if lam[x] >= POISSON_INVERSION_MAX else 0.0
            for x in range(w):
                cols[m] = x
                lam[m] = lam[x]
                m += 0 if arg[x] == _ACCEPT else 1
        else:
            for i in range(n):
                c = cols[i]
                counts[c] = kk[i]
                cols[m] = c
                lam[m] = lam[i]
                m += 0 if arg[i] == _ACCEPT else 1
        n = m
        t += 1


@nb.njit(**_CALLEE, error_model="numpy")
def _tukey_add(flat, off, w, lam, scale, d, f32, f32i):
    """d[:w] += σ_TL · Q_λ(u), u from pixel x's word flat[x + off], in float32 (log u and log(1 − u) from the
    word and its complement).

    ``f32`` (3, 2·W) float32 scratch rows: log u then log(1 − u) (one row, so each pass below runs once over
    both), and the log/expm1 passes' mantissa and exponent; ``f32i`` its int32 view.
    """
    mask32 = np.uint32(0xFFFFFFFF)
    ab, fm, fe = f32[0], f32[1], f32[2]
    abi, fmi = f32i[0], f32i[1]
    for x in range(w):
        wx = flat[x + off]
        ab[x] = F32((np.float64(wx) + 0.5) * INV_2_32)
        ab[w + x] = F32((np.float64(wx ^ mask32) + 0.5) * INV_2_32)
    logistic = abs(lam) < TUKEY_LOGISTIC_EPS
    lam32 = F32(lam)
    _log_row32(ab, abi, fm, fmi, fe, 2 * w, F32(1.0) if logistic else lam32)  # λ·log u, λ·log(1 − u)
    if logistic:
        for x in range(w):
            d[x] += scale * np.float64(ab[x] - ab[w + x])
    else:
        # Q = (expm1(λ log u) − expm1(λ log(1 − u))) / λ; each expm1 finished here, both in one pass
        _expm1_row32_reduced(ab, fm, fmi, 2 * w)
        for x in range(w):
            s_u, s_v = fm[x], fm[w + x]
            e_u = s_u * ab[x] + (s_u - F32(1.0))
            e_v = s_v * ab[w + x] + (s_v - F32(1.0))
            d[x] += scale * np.float64((e_u - e_v) / lam32)


@nb.njit(**_CALLEE, error_model="numpy")
def _gaussian_add(flat, w, sigma, d, s, si):
    """d[:w] += σ · Box–Muller normal from words 0 and 1 of pixel x's block, flat[4·x] and flat[4·x + 1]
    (cosine branch). ``s`` (4, W) float64 scratch rows, ``si`` its int64 view."""
    mask32 = np.uint32(0xFFFFFFFF)
    lu, angle, log_m, log_e = s[0], s[1], s[2], s[3]
    for x in range(w):
        lu[x] = (np.float64(flat[PACKED * x]) + 0.5) * INV_2_32
        # cos(2πu) = cos(2π·min(u, 1 − u)): an angle in (0, π]
        w1 = flat[PACKED * x + 1]
        wa, wb = np.float64(w1), np.float64(w1 ^ mask32)
        angle[x] = ((wb if wb < wa else wa) + 0.5) * TWO_PI_INV_2_32
    _log_row(lu, si[0], log_m, si[2], log_e, w)
    for x in range(w):
        d[x] += sigma * (math.sqrt(-2.0 * lu[x]) * _cos_poly(angle[x]))


def _rows_kernel(read_kind: int):
    """The row kernel compiled for one read-noise kind (a constant of it, so the other kinds' code is pruned
    before typing: a call compiles only the path it uses; each kind is cached on its own)."""

    @nb.njit(cache=True, nogil=True, error_model="numpy", no_cfunc_wrapper=True, _nrt=False)
    def fused_noise_rows_kind(clean, out, tiles, xs, counter, model, switches, row_offsets, col_offsets, maps, y0, y1,
                              scratch):
        """:func:`fused_noise_rows` for this read-noise kind."""
        h, w = clean.shape
        period = tiles.shape[1]
        gain_k = model[M_GAIN_K]
        dark_e = model[M_DARK_E]
        shot = switches[S_SHOT] != 0
        dither = switches[S_DITHER] != 0
        quantize = switches[S_QUANTIZE] != 0
        clip = switches[S_CLIP] != 0
        ds_map, prnu_map, dark_map = maps[MAP_DS], maps[MAP_PRNU], maps[MAP_DARK]
        has_row = row_offsets.shape[0] > 0
        has_col = col_offsets.shape[0] > 0
        has_ds = ds_map.shape[0] > 0
        has_prnu = prnu_map.shape[0] > 0
        has_dark = dark_map.shape[0] > 0
        # Rows of W: expected electrons, the DN value being built, and each stage's own scratch.
        (rows, words, flat, flat64, int_rows, iota, inversion_s, inversion_si, ptrs_s, ptrs_logs, ptrs_logsi, gauss_s,
         gauss_si, tukey_f32, tukey_f32i, grp) = scratch
        mu, d = rows[0], rows[1]
        small_cols, big_cols, ptrs_tpos = int_rows[0], int_rows[1], int_rows[2]
        # a packed stream's row: n_row_blocks blocks from column j_row, pixel x's word at flat[x + off]
        j_row = counter[C_OX] // PACKED
        n_row_blocks = (counter[C_OX] + w - 1) // PACKED - j_row + 1
        off = counter[C_OX] - PACKED * j_row
        non_finite = _ZERO
        for y in range(y0, h if h < y1 else y1):
            py = y % period
            gy = np.uint64(y + counter[C_OY])
            offset, gain, add = tiles[T_OFFSET, py], tiles[T_GAIN, py], tiles[T_ADD, py]
            # 1. expected electrons; the clean values that are NaN or ±inf are counted on the way (c − c is NaN
            # for them only) and make μ = 0 (an infinite mean would never be accepted), so the caller needs no
            # pass of its own over the frame to refuse them
            for x in range(w):
                c = clean[y, x]
                finite = c - c == 0.0
                non_finite += 0 if finite else 1
                v = c - offset[x]
                mu[x] = (v if (v > 0.0) & finite else 0.0) * gain[x]
            if has_prnu:
                for x in range(w):
                    mu[x] *= 1.0 + prnu_map[y, x]
            if has_dark:
                for x in range(w):
                    mu[x] += dark_map[y, x]
            elif dark_e != 0.0:
                for x in range(w):
                    mu[x] += dark_e
            # 2. shot noise: PTRS for μ ≥ 10 (it writes the whole row, 0 elsewhere), then inversion for
            # 0 < μ < 10 on its compact list of columns; μ ≤ 0 or NaN: 0
            if shot:
                n_small = _ZERO
                n_big = _ZERO
                # Counted first, in a loop of its own that vectorizes; the inversion's columns are listed (a
                # scalar loop) only in a row that has some (counting while listing was 2.5 % slower on the
                # mixed scene, 5 % on the bright one).
                for x in range(w):
                    lam = mu[x]
                    n_small += 1 if (lam > 0.0) & (lam < POISSON_INVERSION_MAX) else 0
                    n_big += 1 if lam >= POISSON_INVERSION_MAX else 0
                if n_big > 0:
                    _poisson_ptrs(mu, w, n_big, gy, counter, d, words, iota, flat, flat64, ptrs_s, ptrs_logs, ptrs_logsi,
                                  big_cols, ptrs_tpos)
                else:
                    for x in range(w):
                        d[x] = 0.0
                if n_small > 0:
                    n_listed = _ZERO
                    for x in range(w):
                        lam = mu[x]
                        small_cols[n_listed] = x
                        n_listed += 1 if (lam > 0.0) & (lam < POISSON_INVERSION_MAX) else 0
                    _poisson_inversion(mu, small_cols, n_small, gy, counter, d, iota, flat, inversion_s, inversion_si,
                                       grp)
                for x in range(w):
                    d[x] = gain_k * d[x] + add[x]
            else:
                for x in range(w):
                    d[x] = gain_k * mu[x] + add[x]
            # 3. read noise (Tukey: packed stream; Box–Muller: words 0, 1 of the Gaussian read stream)
            if read_kind == READ_TUKEY:  # a constant of this kernel: the other branch is not compiled
                _philox_blocks(iota, j_row, n_row_blocks, gy, np.uint64(STREAM_READ_TUKEY << 16), counter, flat)
                _tukey_add(flat, off, w, model[M_TUKEY_LAMBDA], model[M_TUKEY_SCALE], d, tukey_f32, tukey_f32i)
            elif read_kind == READ_GAUSSIAN:
                _philox_blocks(iota, counter[C_OX], w, gy, np.uint64(STREAM_READ << 16), counter, flat)
                _gaussian_add(flat, w, model[M_READ_SIGMA], d, gauss_s, gauss_si)
            # 4. line offsets, fixed pattern, dither, quantization, clipping, output scaling
            if has_row:
                if switches[S_ROW_PER_CHANNEL] != 0:
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
                _philox_blocks(iota, j_row, n_row_blocks, gy, np.uint64(STREAM_DITHER << 16), counter, flat)
                for x in range(w):
                    d[x] += (np.float64(flat[x + off]) + 0.5) * INV_2_32 - 0.5
            lo, hi = tiles[T_LO, py], tiles[T_HI, py]
            out_offset, out_scale = tiles[T_OUT_OFFSET, py], tiles[T_OUT_SCALE, py]
            for x in range(w):
                v = d[x]
                if quantize:
                    v = math.floor(v + 0.5)
                if clip:
                    v = lo[x] if lo[x] > v else v
                    v = hi[x] if hi[x] < v else v
                out[y, x] = (v - out_offset[x]) * out_scale[x]
        return non_finite

    return fused_noise_rows_kind


# One compiled kernel per read-noise kind, each compiled on its first use.
fused_noise_rows_none = _rows_kernel(READ_NONE)
fused_noise_rows_gaussian = _rows_kernel(READ_GAUSSIAN)
fused_noise_rows_tukey = _rows_kernel(READ_TUKEY)
ROWS_KERNELS = {READ_NONE: fused_noise_rows_none, READ_GAUSSIAN: fused_noise_rows_gaussian, READ_TUKEY: fused_noise_rows_tukey}


def fused_noise_rows(clean, out, tiles, xs, counter, model, switches, row_offsets, col_offsets, maps, y0, y1):
    """Rows ``y0 … y1 − 1`` of the fused kernel, on the calling thread with the GIL released, by the compiled
    kernel of ``switches[S_READ_KIND]`` (:data:`ROWS_KERNELS`).

    Parameters
    ----------
    clean, out : (H, W) ndarray of float32
        Clean signal in the input unit; the noisy frame in the output unit (written in place).
    tiles : (7, p, W) ndarray of float64
        The tile table expanded along a row (:func:`expand_tiles`).
    xs : (W,) ndarray of int64
        The column phase of each x.
    counter, model, switches, row_offsets, col_offsets, maps
        The grouped arguments described above :func:`_philox_blocks`.
    y0, y1 : int
        First row and one past the last row to make.

    Returns
    -------
    int
        How many values of ``clean`` in these rows are NaN or ±inf (their output is meaningless; the caller
        refuses the frame).
    """
    return ROWS_KERNELS[int(switches[S_READ_KIND])](clean, out, tiles, xs, counter, model, switches, row_offsets,
                                                   col_offsets, maps, y0, y1, _scratch(clean.shape[1]))


_SCRATCH = threading.local()  # this thread's scratch rows: (width, rows)


def _scratch(w: int) -> tuple:
    """This thread's scratch rows for rows of ``w`` pixels (:func:`_new_scratch`), kept for the next call of
    the same width: a 256² patch in 32-row tasks allocated ~15 arrays per task (0.05 ms each time).
    The kernel writes every scratch value before it reads it, so reuse cannot change a result (tested)."""
    kept = getattr(_SCRATCH, "rows", None)
    if kept is None or kept[0] != w:
        kept = (w, _new_scratch(w))
        _SCRATCH.rows = kept
    return kept[1]


def _new_scratch(w: int) -> tuple:
    """The row kernel's scratch rows for rows of ``w`` pixels, made here rather than in compiled code (each
    numpy allocation or view compiled into the kernel costs ~0.1–0.2 s of a cold start), with the integer
    views the bit-level log/exp passes read."""
    f64 = lambda r: np.empty((r, w))  # noqa: E731
    inversion_s, gauss_s = np.empty((4, w + INVERSION_GROUP)), f64(4)
    ptrs_logs = np.empty((3, 3 * w))
    tukey_f32 = np.empty((3, 2 * w), dtype=np.float32)
    flat = np.empty(PACKED * w + 2 * PACKED, dtype=np.uint32)
    return (f64(2), np.empty((2, w), dtype=np.uint32), flat, flat.view(np.uint64),
            np.empty((3, w), dtype=np.int64), np.arange(w + 2, dtype=np.int64), inversion_s, inversion_s.view(np.int64), f64(5), ptrs_logs,
            ptrs_logs.view(np.int64), gauss_s, gauss_s.view(np.int64), tukey_f32, tukey_f32.view(np.int32),
            np.empty(5 * INVERSION_GROUP))


def expand_tiles(tiles: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The (7, p, p) tile table expanded along a row, (7, p, W), and the column phase of each x, (W,) int64:
    no modulo in the kernel's inner loops.

    Parameters
    ----------
    tiles : (7, p, p) ndarray
        The kernel's tile table.
    w : int
        Frame width W [px].

    Returns
    -------
    row_tiles : (7, p, W) ndarray
    col_phase : (W,) ndarray of int64
    """
    xs = np.arange(w, dtype=np.int64) % tiles.shape[1]
    return np.ascontiguousarray(tiles[:, :, xs], dtype=np.float64), xs


_POOL: list = []  # [ThreadPoolExecutor, its size], made on first parallel use
_POOL_LOCK = threading.Lock()


def _pool(n_threads: int):
    from concurrent.futures import ThreadPoolExecutor

    with _POOL_LOCK:
        if not _POOL or _POOL[1] != n_threads:
            if _POOL:
                _POOL[0].shutdown(wait=False)
            _POOL[:] = [ThreadPoolExecutor(n_threads, thread_name_prefix="noisesim-kernel"), n_threads]
        return _POOL[0]


def fused_noise_serial(clean, out, tiles, counter, model, switches, row_offsets, col_offsets, maps):
    """Fused kernel on the calling thread: one pass over the frame, vectorized along rows.

    ``clean`` (H, W) float32 in the input unit; ``out`` (H, W) float32 in the output unit; the grouped
    arguments are described above :func:`_philox_blocks`.

    Parameters
    ----------
    clean : (H, W) ndarray of float32
        Clean signal in the input unit (normalized, DN or e⁻; ``tiles`` converts it to e⁻).
    out : (H, W) ndarray of float32
        Written in place: the noisy frame in the output unit.
    tiles : (7, p, p) ndarray of float64
        Per CFA tile position: input offset, gain [e⁻ per input unit], black + black-level error [DN],
        clip low / high [DN], output offset [DN] and scale (rows ``T_*``).
    counter : (5,) ndarray of int64
        Origin row and column in the full sensor, frame index, the two Philox key words (``C_*``).
    model : (5,) ndarray of float64
        K [DN/e⁻], dark signal [e⁻], Gaussian σ [DN], Tukey λ, Tukey σ_TL [DN] (``M_*``).
    switches : (6,) ndarray of int64
        Shot noise, read kind (``READ_*``), per-channel row offsets, quantize, dither, clip (``S_*``).
    row_offsets : (H, 1), (H, p) or (0, 1) ndarray of float64
        Row offsets [DN] (per channel with p columns; none with 0 rows).
    col_offsets : (W,) or (0,) ndarray of float64
        Column offsets [DN].
    maps : tuple of three (H, W) or (0, 0) float32 ndarrays
        Dark shading [DN], PRNU [1], dark signal [e⁻] (``MAP_*``); (0, 0) where absent.

    Returns
    -------
    int
        How many values of ``clean`` are NaN or ±inf (their output is meaningless; the caller refuses the
        frame).
    """
    row_tiles, xs = expand_tiles(tiles, clean.shape[1])
    return fused_noise_rows(clean, out, row_tiles, xs, counter, model, switches, row_offsets, col_offsets, maps, 0,
                            clean.shape[0])


def fused_noise_numba(clean, out, tiles, counter, model, switches, row_offsets, col_offsets, maps):
    """:func:`fused_noise_serial` on ``numba.get_num_threads()`` threads, ``ROWS_PER_TASK`` rows per task.

    Python threads rather than a ``parallel=True`` kernel: the compiled code is the serial kernel's, so a
    fresh environment compiles it once (a parallel kernel compiles and optimizes it all again), and the
    result is the same bit for bit (each pixel's random numbers depend on its coordinates only).

    Parameters
    ----------
    clean : (H, W) ndarray of float32
        Clean signal in the input unit (normalized, DN or e⁻; ``tiles`` converts it to e⁻).
    out : (H, W) ndarray of float32
        Written in place: the noisy frame in the output unit.
    tiles : (7, p, p) ndarray of float64
        Per CFA tile position: input offset, gain [e⁻ per input unit], black + black-level error [DN],
        clip low / high [DN], output offset [DN] and scale (rows ``T_*``).
    counter : (5,) ndarray of int64
        Origin row and column in the full sensor, frame index, the two Philox key words (``C_*``).
    model : (5,) ndarray of float64
        K [DN/e⁻], dark signal [e⁻], Gaussian σ [DN], Tukey λ, Tukey σ_TL [DN] (``M_*``).
    switches : (6,) ndarray of int64
        Shot noise, read kind (``READ_*``), per-channel row offsets, quantize, dither, clip (``S_*``).
    row_offsets : (H, 1), (H, p) or (0, 1) ndarray of float64
        Row offsets [DN] (per channel with p columns; none with 0 rows).
    col_offsets : (W,) or (0,) ndarray of float64
        Column offsets [DN].
    maps : tuple of three (H, W) or (0, 0) float32 ndarrays
        Dark shading [DN], PRNU [1], dark signal [e⁻] (``MAP_*``); (0, 0) where absent.

    Returns
    -------
    int
        How many values of ``clean`` are NaN or ±inf (their output is meaningless; the caller refuses the
        frame).
    """
    h, w = clean.shape
    n_threads = nb.get_num_threads()
    row_tiles, xs = expand_tiles(tiles, w)
    args = (clean, out, row_tiles, xs, counter, model, switches, row_offsets, col_offsets, maps)
    if n_threads == 1 or h <= ROWS_PER_TASK:
        return fused_noise_rows(*args, 0, h)
    jobs = [_pool(n_threads).submit(fused_noise_rows, *args, y, y + ROWS_PER_TASK) for y in range(0, h, ROWS_PER_TASK)]
    return sum(job.result() for job in jobs)


# --------------------------------------------------------------------------------------------------
# numpy reference
# --------------------------------------------------------------------------------------------------
def _tile(tile: np.ndarray, shape) -> np.ndarray:
    p = tile.shape[0]
    h, w = shape
    return np.tile(tile, (h // p + 1, w // p + 1))[:h, :w]


def log_numpy(x: np.ndarray) -> np.ndarray:
    """Reference of the kernels' log (same operations as :func:`_log_poly` on the float's bits).

    Parameters
    ----------
    x : ndarray of float64
        Positive arguments.

    Returns
    -------
    ndarray of float64
        ln x, same shape.
    """
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
    """Reference of the kernels' exp (Cody–Waite reduction, Taylor polynomial of expm1, 2^k from its bits).

    Parameters
    ----------
    t : ndarray of float64
        Arguments.

    Returns
    -------
    ndarray of float64
        exp(t), same shape.
    """
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
    """Reference of the kernels' cos on [0, π].

    Parameters
    ----------
    a : ndarray
        Angles in [0, π] [rad].

    Returns
    -------
    ndarray
        Same shape and dtype.
    """
    neg = a > 0.5 * math.pi
    a = np.where(neg, math.pi - a, a)
    z = a * a
    c = _COS_C
    p = (((((((c[8] * z + c[7]) * z + c[6]) * z + c[5]) * z + c[4]) * z + c[3]) * z + c[2]) * z + c[1]) * z + c[0]
    v = 1.0 + z * p
    return np.where(neg, -v, v)


def log_factorial_numpy(k: np.ndarray) -> np.ndarray:
    """log k! for integer-valued k ≥ 0 (table below 32, Stirling above), as the kernel computes it.

    Parameters
    ----------
    k : ndarray
        Counts.

    Returns
    -------
    ndarray of float64
        ln k!, same shape.
    """
    k = np.asarray(k, dtype=np.float64)
    z = k + 1.0
    log_z = log_numpy(z)
    iz = 1.0 / z
    iz2 = iz * iz
    st = (z - 0.5) * log_z - z + HALF_LOG_2PI + iz * (1.0 / 12.0 - iz2 * (1.0 / 360.0 - iz2 * (1.0 / 1260.0 - iz2 / 1680.0)))
    return np.where(k < 32.0, _LOG_FACTORIAL[np.clip(k, 0, 31).astype(np.int64)], st)


def poisson_numpy(mu: np.ndarray, gx: np.ndarray, gy: np.ndarray, frame: int, key) -> np.ndarray:
    """Reference Poisson draws: the algorithms, random words and arithmetic of the numba kernel.

    Parameters
    ----------
    mu : ndarray of float64
        Mean [e⁻] per pixel.
    gx, gy : ndarray of int
        Pixel column and row in sensor coordinates, same shape as ``mu``.
    frame : int
        Frame index.
    key : (int, int)
        Philox key words.

    Returns
    -------
    ndarray of float64
        Counts [e⁻], same shape.
    """
    mu = np.asarray(mu, dtype=np.float64)
    out = np.zeros(mu.shape, dtype=np.float64)
    s = STREAM_SHOT << 16
    small = (mu > 0) & (mu < POISSON_INVERSION_MAX)
    if small.any():
        m = mu[small]
        u = uniform_np(packed_words_np(gx[small], gy[small], frame, STREAM_SHOT_INVERSION, key))
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
        loglam = log_numpy(m)
        result = np.zeros(m.shape)
        pending = np.ones(m.shape, dtype=bool)
        block = 0
        while pending.any():  # try t from block t, two pixels per block
            ii = np.nonzero(pending)[0]
            w = philox4x32_np(gxl[ii] >> np.uint64(1), gyl[ii], frame, s | block, *key)
            block += 1
            odd = (gxl[ii] & np.uint64(1)) == 1
            uu = uniform_np(np.where(odd, w[2], w[0])) - 0.5
            v = uniform_np(np.where(odd, w[3], w[1]))
            k, us, vr, arg = _ptrs_try_math(m[ii], uu, v)
            accept = (us >= 0.07) & (v <= vr)
            test = ~accept & ~((k < 0) | ((us < 0.013) & (v > us)))
            if test.any():
                it, kt = ii[test], k[test]
                lhs = log_numpy(arg[test])
                accept[test] = lhs <= -m[it] + kt * loglam[it] - log_factorial_numpy(kt)
            result[ii[accept]] = k[accept]
            pending[ii[accept]] = False
        out.ravel()[pos] = result
    return out


def log32_numpy(x: np.ndarray) -> np.ndarray:
    """Reference of the kernel's float32 log (:func:`_log_row32`).

    Parameters
    ----------
    x : ndarray of float32
        Positive arguments.

    Returns
    -------
    ndarray of float32
        ln x, same shape.
    """
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
    """Reference of the kernel's float32 expm1 (:func:`_expm1_row32_reduced` and its finish in :func:`_tukey_add`).

    Parameters
    ----------
    t : ndarray of float32
        Arguments.

    Returns
    -------
    ndarray of float32
        expm1(t), same shape.
    """
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

    Parameters
    ----------
    word : ndarray of uint
        One 32-bit word per pixel.
    lam : float
        Tukey λ.
    scale : float
        σ_TL [DN].

    Returns
    -------
    ndarray of float32
        Read noise [DN], same shape.
    """
    word = np.asarray(word, dtype=np.uint64)
    lu = log32_numpy(uniform_np(word).astype(np.float32))
    l1u = log32_numpy(uniform_np(word ^ np.uint64(0xFFFFFFFF)).astype(np.float32))
    if abs(lam) < TUKEY_LOGISTIC_EPS:
        return scale * (lu - l1u).astype(np.float64)
    lam32 = F32(lam)
    return scale * ((expm1_32_numpy(lu * lam32) - expm1_32_numpy(l1u * lam32)) / lam32).astype(np.float64)


def gaussian_read_numpy(w_a: np.ndarray, w_b: np.ndarray, sigma: float) -> np.ndarray:
    """σ · Box–Muller normal from two words per pixel (cosine branch).

    Parameters
    ----------
    w_a, w_b : ndarray of uint
        32-bit words, same shape.
    sigma : float
        σ [DN].

    Returns
    -------
    ndarray
        Read noise [DN], same shape.
    """
    w_b = np.asarray(w_b, dtype=np.uint64)
    lu = log_numpy(uniform_np(w_a))
    angle = (np.minimum(w_b, w_b ^ np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) * TWO_PI_INV_2_32
    return sigma * (np.sqrt(-2.0 * lu) * cos_numpy(angle))


def fused_noise_numpy(clean, out, tiles, counter, model, switches, row_offsets, col_offsets, maps):
    """Plain-numpy reference of :func:`fused_noise_numba`: same arguments, same result, whole-frame arrays.

    Parameters
    ----------
    clean : (H, W) ndarray of float32
        Clean signal in the input unit (normalized, DN or e⁻; ``tiles`` converts it to e⁻).
    out : (H, W) ndarray of float32
        Written in place: the noisy frame in the output unit.
    tiles : (7, p, p) ndarray of float64
        Per CFA tile position: input offset, gain [e⁻ per input unit], black + black-level error [DN],
        clip low / high [DN], output offset [DN] and scale (rows ``T_*``).
    counter : (5,) ndarray of int64
        Origin row and column in the full sensor, frame index, the two Philox key words (``C_*``).
    model : (5,) ndarray of float64
        K [DN/e⁻], dark signal [e⁻], Gaussian σ [DN], Tukey λ, Tukey σ_TL [DN] (``M_*``).
    switches : (6,) ndarray of int64
        Shot noise, read kind (``READ_*``), per-channel row offsets, quantize, dither, clip (``S_*``).
    row_offsets : (H, 1), (H, p) or (0, 1) ndarray of float64
        Row offsets [DN] (per channel with p columns; none with 0 rows).
    col_offsets : (W,) or (0,) ndarray of float64
        Column offsets [DN].
    maps : tuple of three (H, W) or (0, 0) float32 ndarrays
        Dark shading [DN], PRNU [1], dark signal [e⁻] (``MAP_*``); (0, 0) where absent.

    Returns
    -------
    int
        How many values of ``clean`` are NaN or ±inf (their output is meaningless; the caller refuses the
        frame).
    """
    non_finite = int(np.count_nonzero(~np.isfinite(clean)))
    if non_finite:  # refused by the caller; an infinite mean would never be accepted
        return non_finite
    h, w = clean.shape
    oy, ox, frame, k0, k1 = (int(v) for v in counter)
    key = (k0, k1)
    gain_k, dark_e, read_sigma, tukey_lambda, tukey_scale = (float(v) for v in model)
    shot, read_kind, row_per_channel, quantize, dither, clip = (int(v) for v in switches)
    ds_map, prnu_map, dark_map = maps
    period = tiles.shape[1]
    offset_tile, gain_tile, add_tile, lo_tile, hi_tile, out_offset_tile, out_scale_tile = tiles
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
    if read_kind == READ_TUKEY:
        d = d + tukey_read_numpy(packed_words_np(gx, gy, frame, STREAM_READ_TUKEY, key), tukey_lambda, tukey_scale)
    elif read_kind == READ_GAUSSIAN:
        r = philox4x32_np(gx, gy, frame, STREAM_READ << 16, *key)
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
        d = d + (uniform_np(packed_words_np(gx, gy, frame, STREAM_DITHER, key)) - 0.5)
    if quantize:
        d = np.floor(d + 0.5)
    if clip:
        d = np.clip(d, t(lo_tile), t(hi_tile))
    out[...] = (d - t(out_offset_tile)) * t(out_scale_tile)
    return 0
