"""Streaming per-frame passes of the calibration (numba), each with a plain-numpy reference.

One pass over a raw frame yields everything the accumulators keep from it, without full-frame float
temporaries:

* :func:`dark_batch` — for a batch of dark frames: running per-pixel sums Σx and Σx² (x = raw − black of
  the site), row, column and per-channel sums of x per frame, the maximum, and per-channel ½·var of the
  pair differences (EMVA 1288 §2.2, §6 temporal dark noise);
* :func:`flat_pair_pass` — per-channel sums of A − offset and B − offset (offset = site black + dark mean
  map), the count of pixels at or above the white level in A or B, and ½·var(A − B) (EMVA 1288 §6 PTC);
* :func:`prnu_add` — ``acc += (raw − offset) / level`` with one level per colour site.

Channels are the packed channels of :class:`noisesim.cfa.CFA`: channel ``(y % p)·p + (x % p)`` for CFA
period ``p``. Sums of integer DN in float64 are exact while partial sums stay below 2⁵³ (any uint16 stack
of fewer than ~2 million frames); pair-difference variances use shifted-data sums (the shift is one
difference of the channel, so the sums stay near the mean and nothing cancels). With
``NUMBA_DISABLE_JIT=1`` the numpy references are used.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "channel_counts",
    "dark_batch",
    "dark_batch_reference",
    "flat_pair_pass",
    "flat_pair_pass_reference",
    "pair_diff_var_reference",
    "prnu_add",
    "prnu_add_reference",
    "stack_mean_var",
    "stack_mean_var_reference",
    "USE_NUMBA",
]

USE_NUMBA = not nb.config.DISABLE_JIT


def channel_counts(shape, period: int) -> np.ndarray:
    """Pixels per packed channel of an (H, W) mosaic, (p·p,) float64.

    Parameters
    ----------
    shape : (H, W)
        Mosaic shape [px].
    period : int
        CFA period p.

    Returns
    -------
    (p·p,) ndarray of float64
    """
    h, w = shape
    p = period
    return np.array([len(range(cy, h, p)) * len(range(cx, w, p)) for cy in range(p) for cx in range(p)], dtype=np.float64)


def _views(a: np.ndarray, p: int) -> list[np.ndarray]:
    return [a[cy::p, cx::p] for cy in range(p) for cx in range(p)]


# ------------------------------------------------------------------------------------------------
# references (plain numpy)


def pair_diff_var_reference(a, b, period: int) -> np.ndarray:
    """½ var(A − B) per packed channel (ddof = 1) [DN²], two-pass numpy (EMVA 1288 §6).

    Parameters
    ----------
    a, b : (H, W) ndarray
        The pair [DN].
    period : int
        CFA period p.

    Returns
    -------
    (p·p,) ndarray of float64
        [DN²]
    """
    d = np.subtract(a, b, dtype=np.float64)
    return np.array([v.var(ddof=1) / 2.0 for v in _views(d, period)])


def dark_batch_reference(stack, m, black_tile, s1, s2, row_sum, col_sum, ch_sum, full: bool) -> tuple[float, np.ndarray]:
    """Plain-numpy :func:`dark_batch` (same arguments, same results to rounding).

    Parameters
    ----------
    stack, m, black_tile, s1, s2, row_sum, col_sum, ch_sum, full
        As :func:`dark_batch`.

    Returns
    -------
    (float, ndarray)
        As :func:`dark_batch`.
    """
    p = black_tile.shape[0]
    h, w = stack.shape[1:]
    black = np.tile(black_tile, (h // p + 1, w // p + 1))[:h, :w]
    for k in range(m):
        x = np.subtract(stack[k], black, dtype=np.float64)
        ch_sum[k] += np.array([v.sum() for v in _views(x, p)])
        if full:
            s1 += x
            s2 += x * x
            row_sum[k] += x.sum(axis=1)
            col_sum[k] += x.sum(axis=0)
    pv = np.array([pair_diff_var_reference(stack[2 * j + 1], stack[2 * j], p) for j in range(m // 2)]) if full else np.zeros((0, p * p))
    return float(stack[:m].max()), pv.reshape(-1, p * p)


def flat_pair_pass_reference(a, b, black_tile, mean_map, saturation_dn: float):
    """Plain-numpy :func:`flat_pair_pass`.

    Parameters
    ----------
    a, b, black_tile, mean_map, saturation_dn
        As :func:`flat_pair_pass`.

    Returns
    -------
    tuple of 4 (p·p,) ndarray
        As :func:`flat_pair_pass`.
    """
    p = black_tile.shape[0]
    h, w = a.shape
    offset = np.tile(black_tile, (h // p + 1, w // p + 1))[:h, :w] + mean_map.astype(np.float64)
    xa = np.subtract(a, offset, dtype=np.float64)
    xb = np.subtract(b, offset, dtype=np.float64)
    clipped = (a >= saturation_dn) | (b >= saturation_dn)
    return (np.array([v.sum() for v in _views(xa, p)]), np.array([v.sum() for v in _views(xb, p)]),
            np.array([v.sum() for v in _views(clipped, p)], dtype=np.float64), pair_diff_var_reference(a, b, p))


# ------------------------------------------------------------------------------------------------
# numba kernels


# reassoc lets LLVM vectorize the loops that also sum (a row's sum, the channel sums): 1.8× (dark batch) and
# 1.5× (flat pair) per pixel. Integer DN minus a black level in halves sum exactly in any order; float frames
# move by rounding only.
_SUMMING = {"reassoc"}


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMMING)
def _dark_batch_numba(stack, m, black_tile, s1, s2, row_sum, col_sum, ch_sum, full):  # pragma: no cover - compiled
    # Inner loops run over contiguous pixels of a row (vectorizable); per-channel figures are gathered in
    # per-(row phase, column) buffers and reduced at the end, so no loop strides over the CFA period.
    h, w = stack.shape[1], stack.shape[2]
    p = black_tile.shape[0]
    nc = p * p
    npair = m // 2 if full else 0
    black_rows = np.empty((p, w))
    for py in range(p):
        for x in range(w):
            black_rows[py, x] = black_tile[py, x % p]
    # shifted-data sums of each pair difference (shift: the difference at the channel's first pixel)
    shift_rows = np.zeros((npair, p, w))
    for j in range(npair):
        for py in range(p):
            for x in range(w):
                shift_rows[j, py, x] = np.float64(stack[2 * j + 1, py, x % p]) - np.float64(stack[2 * j, py, x % p])
    colp = np.zeros((m, p, w))  # Σ over rows of one phase, per column
    pe = np.zeros((npair, p, w))
    pee = np.zeros((npair, p, w))
    t1 = np.empty(w)
    t2 = np.empty(w)
    mx = -np.inf
    for y in range(h):
        py = y % p
        bl = black_rows[py]
        if full:
            t1[:] = 0.0
            t2[:] = 0.0
        for k in range(m):
            row = stack[k, y]
            cp = colp[k, py]
            rmax = row[0]
            if full:
                rs = 0.0
                for x in range(w):
                    r = row[x]
                    rmax = max(rmax, r)
                    d = np.float64(r) - bl[x]
                    rs += d
                    cp[x] += d
                    t1[x] += d
                    t2[x] += d * d
                row_sum[k, y] += rs
            else:
                for x in range(w):
                    r = row[x]
                    rmax = max(rmax, r)
                    cp[x] += np.float64(r) - bl[x]
            mx = max(mx, np.float64(rmax))
        if full:
            s1r = s1[y]
            s2r = s2[y]
            for x in range(w):
                s1r[x] += t1[x]
                s2r[x] += t2[x]
            for j in range(npair):
                ra = stack[2 * j, y]
                rb = stack[2 * j + 1, y]
                sh = shift_rows[j, py]
                e1 = pe[j, py]
                e2 = pee[j, py]
                for x in range(w):
                    e = np.float64(rb[x]) - np.float64(ra[x]) - sh[x]
                    e1[x] += e
                    e2[x] += e * e
    cnt = np.zeros(nc)
    for py in range(p):
        for x in range(w):
            c = py * p + x % p
            cnt[c] += len(range(py, h, p))
            for k in range(m):
                ch_sum[k, c] += colp[k, py, x]
                if full:
                    col_sum[k, x] += colp[k, py, x]
    pv = np.empty((npair, nc))
    for j in range(npair):
        ps = np.zeros(nc)
        pss = np.zeros(nc)
        for py in range(p):
            for x in range(w):
                c = py * p + x % p
                ps[c] += pe[j, py, x]
                pss[c] += pee[j, py, x]
        for c in range(nc):
            pv[j, c] = (pss[c] - ps[c] * ps[c] / cnt[c]) / (cnt[c] - 1.0) / 2.0
    return mx, pv


def dark_batch(stack: np.ndarray, m: int, black_tile: np.ndarray, s1: np.ndarray, s2: np.ndarray, row_sum: np.ndarray,
               col_sum: np.ndarray, ch_sum: np.ndarray, full: bool) -> tuple[float, np.ndarray]:
    """Accumulate the first ``m`` dark frames of ``stack`` in place, in one pass over the pixels.

    Reading several frames per pass touches the float64 running sums once per batch instead of once per
    frame (the sums, not the frames, dominate the memory traffic).

    Parameters
    ----------
    stack : (B, H, W) array of DN (any numeric dtype), black level included; frames ``0 .. m-1`` are used
    black_tile : (p, p) float64, black level of each CFA position [DN]
    s1, s2 : (H, W) float64, running Σx and Σx² with x = raw − black (untouched when ``full`` is False)
    row_sum : (B, H), col_sum : (B, W) float64 — Σx of each row / column of frame k is added to row k
    ch_sum : (B, p·p) float64 — Σx of each packed channel of frame k is added to row k
    full : bool — False: channel sums and maximum only

    Returns
    -------
    max_dn : float
        Largest value of the ``m`` frames.
    pair_var_dn2 : (m // 2, p·p) float64
        ½ var(F₂ⱼ₊₁ − F₂ⱼ) per channel (ddof = 1; EMVA 1288 §2.2, §6 temporal dark noise) for the frame pairs
        (0, 1), (2, 3), … — shifted-data sums (shift: the difference at the channel's first pixel), so
        the variance is sound whatever the offset between the frames. Empty when ``full`` is False.
    """
    if USE_NUMBA:
        mx, pv = _dark_batch_numba(np.ascontiguousarray(stack), int(m), black_tile, s1, s2, row_sum, col_sum, ch_sum, full)
        return float(mx), pv
    return dark_batch_reference(stack, m, black_tile, s1, s2, row_sum, col_sum, ch_sum, full)


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=_SUMMING)
def _flat_pair_pass_numba(a, b, black_tile, mean_map, sat):  # pragma: no cover - compiled
    # contiguous inner loops; per-(row phase, column) buffers reduced to channels at the end
    h, w = a.shape
    p = black_tile.shape[0]
    nc = p * p
    black_rows = np.empty((p, w))
    shift_rows = np.empty((p, w))
    for py in range(p):
        for x in range(w):
            black_rows[py, x] = black_tile[py, x % p]
            shift_rows[py, x] = np.float64(a[py, x % p]) - np.float64(b[py, x % p])
    ca = np.zeros((p, w))
    cb = np.zeros((p, w))
    cn = np.zeros((p, w))
    e1 = np.zeros((p, w))
    e2 = np.zeros((p, w))
    for y in range(h):
        py = y % p
        ra = a[y]
        rb = b[y]
        mr = mean_map[y]
        bl = black_rows[py]
        sh = shift_rows[py]
        xa = ca[py]
        xb = cb[py]
        xn = cn[py]
        y1 = e1[py]
        y2 = e2[py]
        for x in range(w):
            va = np.float64(ra[x])
            vb = np.float64(rb[x])
            off = bl[x] + np.float64(mr[x])
            xa[x] += va - off
            xb[x] += vb - off
            xn[x] += 1.0 if (va >= sat or vb >= sat) else 0.0
            e = va - vb - sh[x]
            y1[x] += e
            y2[x] += e * e
    sa = np.zeros(nc)
    sb = np.zeros(nc)
    nclip = np.zeros(nc)
    ps = np.zeros(nc)
    pss = np.zeros(nc)
    cnt = np.zeros(nc)
    for py in range(p):
        for x in range(w):
            c = py * p + x % p
            sa[c] += ca[py, x]
            sb[c] += cb[py, x]
            nclip[c] += cn[py, x]
            ps[c] += e1[py, x]
            pss[c] += e2[py, x]
            cnt[c] += len(range(py, h, p))
    pv = (pss - ps * ps / cnt) / (cnt - 1.0) / 2.0
    return sa, sb, nclip, pv


def flat_pair_pass(a: np.ndarray, b: np.ndarray, black_tile: np.ndarray, mean_map: np.ndarray, saturation_dn: float):
    """One pass over a flat pair: per-channel Σ(A − offset), Σ(B − offset) [DN], count of pixels
    ≥ ``saturation_dn`` in A or B, and ½ var(A − B) [DN²] (ddof = 1, shifted-data sums; EMVA 1288 §6).

    ``offset`` = ``black_tile`` (p, p) tiled + ``mean_map`` (H, W) (the dark stack's mean above black).
    Returns four (p·p,) float64 arrays.

    Parameters
    ----------
    a, b : (H, W) ndarray
        The pair [DN].
    black_tile : (p, p) ndarray
        Declared black level per tile position [DN].
    mean_map : (H, W) ndarray
        Dark stack mean above black [DN].
    saturation_dn : float
        Clipping threshold [DN].

    Returns
    -------
    sum_a, sum_b, n_clipped, pair_var_dn2 : (p·p,) ndarray of float64
    """
    if USE_NUMBA:
        return _flat_pair_pass_numba(np.ascontiguousarray(a), np.ascontiguousarray(b), black_tile,
                                     np.ascontiguousarray(mean_map), float(saturation_dn))
    return flat_pair_pass_reference(a, b, black_tile, mean_map, saturation_dn)


def prnu_add_reference(acc, raw, black_tile, mean_map, level_tile) -> None:
    """Plain-numpy :func:`prnu_add`.

    Parameters
    ----------
    acc, raw, black_tile, mean_map, level_tile
        As :func:`prnu_add`.
    """
    p = black_tile.shape[0]
    h, w = raw.shape
    reps = (h // p + 1, w // p + 1)
    offset = np.tile(black_tile, reps)[:h, :w] + mean_map.astype(np.float64)
    acc += np.subtract(raw, offset, dtype=np.float64) / np.tile(level_tile, reps)[:h, :w]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _prnu_add_numba(acc, raw, black_tile, mean_map, level_tile):  # pragma: no cover - compiled
    h, w = raw.shape
    p = black_tile.shape[0]
    black_rows = np.empty((p, w))
    level_rows = np.empty((p, w))
    for py in range(p):
        for x in range(w):
            black_rows[py, x] = black_tile[py, x % p]
            level_rows[py, x] = level_tile[py, x % p]
    for y in range(h):
        bl = black_rows[y % p]
        lv = level_rows[y % p]
        r = raw[y]
        mr = mean_map[y]
        out = acc[y]
        for x in range(w):
            out[x] += (np.float64(r[x]) - (bl[x] + np.float64(mr[x]))) / lv[x]


def prnu_add(acc: np.ndarray, raw: np.ndarray, black_tile: np.ndarray, mean_map: np.ndarray, level_tile: np.ndarray) -> None:
    """``acc += (raw − black − mean_map) / level`` in place; ``level_tile`` (p, p) is the frame's mean signal
    per CFA position [DN], so each flat enters normalized to 1 (EMVA 1288 §8, PRNU from averaged flats).

    Parameters
    ----------
    acc : (H, W) ndarray of float64
        Running sum, updated in place.
    raw : (H, W) ndarray
        A flat frame [DN].
    black_tile : (p, p) ndarray
        Declared black level per tile position [DN].
    mean_map : (H, W) ndarray
        Dark stack mean above black [DN].
    level_tile : (p, p) ndarray
        The frame's mean signal per tile position [DN].
    """
    if USE_NUMBA:
        _prnu_add_numba(acc, np.ascontiguousarray(raw), black_tile, np.ascontiguousarray(mean_map), level_tile)
    else:
        prnu_add_reference(acc, raw, black_tile, mean_map, level_tile)


# ------------------------------------------------------------------------------------------------
# end of a dark stack


def stack_mean_var_reference(s1: np.ndarray, s2: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain-numpy :func:`stack_mean_var`.

    Parameters
    ----------
    s1, s2, n
        As :func:`stack_mean_var`.

    Returns
    -------
    mean_dn, var_dn2 : (H, W) ndarray of float32
    """
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

    Parameters
    ----------
    s1, s2 : (H, W) ndarray of float64
        Σx [DN] and Σx² [DN²].
    n : int
        Frames summed.

    Returns
    -------
    mean_dn, var_dn2 : (H, W) ndarray of float32
    """
    if USE_NUMBA:
        mean = np.empty(s1.shape, np.float32)
        var = np.empty(s1.shape, np.float32)
        _stack_mean_var_numba(s1, s2, float(n), mean, var)
        return mean, var
    return stack_mean_var_reference(s1, s2, n)
