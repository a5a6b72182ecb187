"""Streaming per-frame passes of the calibration (numba), each with a plain-numpy reference.

One pass over a raw frame yields everything the accumulators keep from it, without full-frame float
temporaries:

* :func:`dark_pass` — running per-pixel sums Σx and Σx² (x = raw − black of the site), row sums, column
  sums and per-channel sums of x, and the frame maximum;
* :func:`pair_diff_var` — per-channel ½·var(A − B) (EMVA 1288 pair difference), two-pass (mean first,
  then squared deviations) so the variance stays exact to rounding whatever the level;
* :func:`flat_pass` — per-channel sums of A − offset and B − offset (offset = site black + dark mean map)
  and the count of pixels at or above the white level in A or B;
* :func:`prnu_add` — ``acc += (raw − offset) / level`` with one level per colour site.

Channels are the packed channels of :class:`noisesim.cfa.CFA`: channel ``(y % p)·p + (x % p)`` for CFA
period ``p``. Sums of integer DN in float64 are exact while partial sums stay below 2⁵³ (any uint16 stack
of fewer than ~2 million frames). With ``NUMBA_DISABLE_JIT=1`` the numpy references are used.
"""

from __future__ import annotations

import numba as nb
import numpy as np

USE_NUMBA = not nb.config.DISABLE_JIT


def channel_counts(shape, period: int) -> np.ndarray:
    """Pixels per packed channel of an (H, W) mosaic, (p·p,) float64."""
    h, w = shape
    p = period
    return np.array([len(range(cy, h, p)) * len(range(cx, w, p)) for cy in range(p) for cx in range(p)], dtype=np.float64)


def _views(a: np.ndarray, p: int) -> list[np.ndarray]:
    return [a[cy::p, cx::p] for cy in range(p) for cx in range(p)]


# ------------------------------------------------------------------------------------------------
# dark pass


def dark_pass_reference(raw, black_tile, s1, s2, row_sum, col_sum, ch_sum, full: bool) -> float:
    """Plain-numpy :func:`dark_pass` (same arguments, same results to rounding)."""
    p = black_tile.shape[0]
    h, w = raw.shape
    black = np.tile(black_tile, (h // p + 1, w // p + 1))[:h, :w]
    x = np.subtract(raw, black, dtype=np.float64)
    ch_sum += np.array([v.sum() for v in _views(x, p)])
    if full:
        s1 += x
        s2 += x * x
        row_sum += x.sum(axis=1)
        col_sum += x.sum(axis=0)
    return float(raw.max())


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _dark_pass_numba(raw, black_tile, s1, s2, row_sum, col_sum, ch_sum, full):  # pragma: no cover - compiled
    h, w = raw.shape
    p = black_tile.shape[0]
    mx = -np.inf
    csum = np.zeros(p * p)
    for y in range(h):
        py = y % p
        rs = 0.0
        for px in range(p):  # one colour column of the period at a time: no modulo in the inner loop
            bl = black_tile[py, px]
            cs = 0.0
            for x in range(px, w, p):
                v = np.float64(raw[y, x])
                if v > mx:
                    mx = v
                d = v - bl
                cs += d
                if full:
                    col_sum[x] += d
                    s1[y, x] += d
                    s2[y, x] += d * d
            csum[py * p + px] += cs
            rs += cs
        if full:
            row_sum[y] += rs
    for c in range(p * p):
        ch_sum[c] += csum[c]
    return mx


def dark_pass(raw: np.ndarray, black_tile: np.ndarray, s1: np.ndarray, s2: np.ndarray, row_sum: np.ndarray,
              col_sum: np.ndarray, ch_sum: np.ndarray, full: bool) -> float:
    """Accumulate one dark frame in place; returns the frame's maximum DN.

    Parameters
    ----------
    raw : (H, W) array of DN (any numeric dtype), black level included
    black_tile : (p, p) float64, black level of each CFA position [DN]
    s1, s2 : (H, W) float64, running Σx and Σx² with x = raw − black (untouched when ``full`` is False)
    row_sum : (H,), col_sum : (W,) float64 — Σx of each row / column of this frame is added
    ch_sum : (p·p,) float64 — Σx of each packed channel is added
    full : bool — False: channel sums and maximum only
    """
    if USE_NUMBA:
        return float(_dark_pass_numba(np.ascontiguousarray(raw), black_tile, s1, s2, row_sum, col_sum, ch_sum, full))
    return dark_pass_reference(raw, black_tile, s1, s2, row_sum, col_sum, ch_sum, full)


# ------------------------------------------------------------------------------------------------
# pair difference


def pair_diff_var_reference(a, b, period: int) -> np.ndarray:
    """Plain-numpy :func:`pair_diff_var`."""
    d = np.subtract(a, b, dtype=np.float64)
    return np.array([v.var(ddof=1) / 2.0 for v in _views(d, period)])


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _pair_diff_var_numba(a, b, p, counts):  # pragma: no cover - compiled
    h, w = a.shape
    nc = p * p
    s = np.zeros(nc)
    for y in range(h):
        py = y % p
        for px in range(p):
            cs = 0.0
            for x in range(px, w, p):
                cs += np.float64(a[y, x]) - np.float64(b[y, x])
            s[py * p + px] += cs
    m = s / counts
    ss = np.zeros(nc)
    for y in range(h):
        py = y % p
        for px in range(p):
            mc = m[py * p + px]
            cs = 0.0
            for x in range(px, w, p):
                d = np.float64(a[y, x]) - np.float64(b[y, x]) - mc
                cs += d * d
            ss[py * p + px] += cs
    return ss / (counts - 1.0) / 2.0


def pair_diff_var(a: np.ndarray, b: np.ndarray, period: int) -> np.ndarray:
    """½ var(A − B) per packed channel (ddof = 1) [DN²], (p·p,) float64 (EMVA 1288 §6.2).

    Two passes (channel means of A − B, then squared deviations), computed in float64.
    """
    if USE_NUMBA:
        counts = channel_counts(a.shape, period)
        return _pair_diff_var_numba(np.ascontiguousarray(a), np.ascontiguousarray(b), period, counts)
    return pair_diff_var_reference(a, b, period)


# ------------------------------------------------------------------------------------------------
# flats


def flat_pass_reference(a, b, black_tile, mean_map, saturation_dn: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain-numpy :func:`flat_pass`."""
    p = black_tile.shape[0]
    h, w = a.shape
    offset = np.tile(black_tile, (h // p + 1, w // p + 1))[:h, :w] + mean_map.astype(np.float64)
    xa = np.subtract(a, offset, dtype=np.float64)
    xb = np.subtract(b, offset, dtype=np.float64)
    clipped = (a >= saturation_dn) | (b >= saturation_dn)
    return (np.array([v.sum() for v in _views(xa, p)]), np.array([v.sum() for v in _views(xb, p)]),
            np.array([v.sum() for v in _views(clipped, p)], dtype=np.float64))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _flat_pass_numba(a, b, black_tile, mean_map, sat):  # pragma: no cover - compiled
    h, w = a.shape
    p = black_tile.shape[0]
    nc = p * p
    sa = np.zeros(nc)
    sb = np.zeros(nc)
    nclip = np.zeros(nc)
    for y in range(h):
        py = y % p
        for px in range(p):
            bl = black_tile[py, px]
            ca = 0.0
            cb = 0.0
            cn = 0.0
            for x in range(px, w, p):
                va = np.float64(a[y, x])
                vb = np.float64(b[y, x])
                off = bl + np.float64(mean_map[y, x])
                ca += va - off
                cb += vb - off
                if va >= sat or vb >= sat:
                    cn += 1.0
            c = py * p + px
            sa[c] += ca
            sb[c] += cb
            nclip[c] += cn
    return sa, sb, nclip


def flat_pass(a: np.ndarray, b: np.ndarray, black_tile: np.ndarray, mean_map: np.ndarray,
              saturation_dn: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel Σ(A − offset), Σ(B − offset) [DN] and count of pixels ≥ ``saturation_dn`` in A or B.

    ``offset`` = ``black_tile`` (p, p) tiled + ``mean_map`` (H, W) (the dark stack's mean above black).
    Returns three (p·p,) float64 arrays.
    """
    if USE_NUMBA:
        return _flat_pass_numba(np.ascontiguousarray(a), np.ascontiguousarray(b), black_tile,
                                np.ascontiguousarray(mean_map), float(saturation_dn))
    return flat_pass_reference(a, b, black_tile, mean_map, saturation_dn)


def prnu_add_reference(acc, raw, black_tile, mean_map, level_tile) -> None:
    """Plain-numpy :func:`prnu_add`."""
    p = black_tile.shape[0]
    h, w = raw.shape
    reps = (h // p + 1, w // p + 1)
    offset = np.tile(black_tile, reps)[:h, :w] + mean_map.astype(np.float64)
    acc += np.subtract(raw, offset, dtype=np.float64) / np.tile(level_tile, reps)[:h, :w]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _prnu_add_numba(acc, raw, black_tile, mean_map, level_tile):  # pragma: no cover - compiled
    h, w = raw.shape
    p = black_tile.shape[0]
    for y in range(h):
        py = y % p
        for px in range(p):
            bl = black_tile[py, px]
            lv = level_tile[py, px]
            for x in range(px, w, p):
                acc[y, x] += (np.float64(raw[y, x]) - (bl + np.float64(mean_map[y, x]))) / lv


def prnu_add(acc: np.ndarray, raw: np.ndarray, black_tile: np.ndarray, mean_map: np.ndarray, level_tile: np.ndarray) -> None:
    """``acc += (raw − black − mean_map) / level`` in place; ``level_tile`` (p, p) is the frame's mean signal
    per CFA position [DN], so each flat enters normalized to 1 (EMVA 1288 §8, PRNU from averaged flats)."""
    if USE_NUMBA:
        _prnu_add_numba(acc, np.ascontiguousarray(raw), black_tile, np.ascontiguousarray(mean_map), level_tile)
    else:
        prnu_add_reference(acc, raw, black_tile, mean_map, level_tile)


# ------------------------------------------------------------------------------------------------
# end of a dark stack


def stack_mean_var_reference(s1: np.ndarray, s2: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain-numpy :func:`stack_mean_var`."""
    mean = s1 / n
    var = (s2 - s1 * mean) / (n - 1)
    np.maximum(var, 0.0, out=var)
    return mean.astype(np.float32), var.astype(np.float32)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _stack_mean_var_numba(s1, s2, n, mean_out, var_out):  # pragma: no cover - compiled
    h, w = s1.shape
    for y in range(h):
        for x in range(w):
            a = s1[y, x]
            m = a / n
            v = (s2[y, x] - a * m) / (n - 1)
            mean_out[y, x] = m
            var_out[y, x] = v if v > 0.0 else 0.0


def stack_mean_var(s1: np.ndarray, s2: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean Σx/n and temporal variance (Σx² − Σx·mean)/(n − 1) (clipped at 0), both (H, W) float32.

    ``s1``, ``s2`` are float64 running sums of x and x² (x = raw − black, so values are small and, for
    integer DN, the sums exact). Needs n ≥ 2.
    """
    if USE_NUMBA:
        mean = np.empty(s1.shape, np.float32)
        var = np.empty(s1.shape, np.float32)
        _stack_mean_var_numba(s1, s2, float(n), mean, var)
        return mean, var
    return stack_mean_var_reference(s1, s2, n)
