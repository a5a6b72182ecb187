"""Sorted samples for the probability-plot fits: a radix sort of float64 and a merge of sorted runs (numba).

The Tukey-λ fits (:func:`~.estimators.fit_tukey`) sort every sample they fit: the pooled read-noise
residuals, each frame batch, each channel, each channel's batches and every debiasing simulation, a few
million values per ISO. Two things make that cheap without changing any sorted value:

* :func:`sort_finite` — an LSD radix sort on the IEEE-754 bit patterns (8-bit digits; passes whose digit is
  the same for every key are skipped), about twice as fast as ``np.sort``'s comparison sort on 10⁵–10⁶
  doubles, twice that on float32 (the read-noise samples are kept as float32);
* :func:`merge_sorted` — the samples of a channel, of a frame batch and of the whole stack are unions of
  the same (batch, channel) groups, so each group is sorted once and the larger sets are merged from
  them (a branch-free two-way merge, a balanced tree of them for several runs).

Both drop non-finite values (the fits do), and give exactly ``np.sort`` of the finite values (equal values
are equal, whatever their order). :func:`median` (= ``np.median``) selects the middle order statistics by
the same bit patterns, most significant 16 bits first (hot-pixel MADs, PRNU fills, read-σ site medians on
full-size planes). With ``NUMBA_DISABLE_JIT=1`` numpy does the work.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .kernels import USE_NUMBA

__all__ = ["median", "merge_sorted", "middle_order_statistics", "sort_finite"]

_DIGIT_BITS = 8


@nb.njit(cache=True, nogil=True)
def _radix_sort_bits(x, bits, sign):  # pragma: no cover - compiled
    # x: float32 or float64; bits: the same memory as uint32 / uint64; sign: that width's sign bit.
    # Returns the sorted finite values' bit patterns (one 8-bit digit per pass, LSD first).
    n = x.size
    keys = np.empty_like(bits)
    m = 0
    for i in range(n):
        if np.isfinite(x[i]):  # order-preserving map of the bit pattern: negatives flipped, positives signed
            k = bits[i]
            keys[m] = ~k if k & sign else k | sign
            m += 1
    keys = keys[:m]
    npass = bits.itemsize
    nbins = 1 << _DIGIT_BITS
    mask = nbins - 1
    hist = np.zeros((npass, nbins), np.int64)
    for i in range(m):
        k = keys[i]
        for p in range(npass):
            hist[p, (k >> (p * _DIGIT_BITS)) & mask] += 1
    tmp = np.empty_like(keys)
    src, dst = keys, tmp
    off = np.empty(nbins, np.int64)
    for p in range(npass):
        h = hist[p]
        trivial = False
        for b in range(nbins):
            trivial |= h[b] == m
        if trivial:  # every key has this digit: the pass would not move anything
            continue
        s = 0
        for b in range(nbins):
            off[b] = s
            s += h[b]
        sh = p * _DIGIT_BITS
        for i in range(m):
            k = src[i]
            d = (k >> sh) & mask
            dst[off[d]] = k
            off[d] += 1
        src, dst = dst, src
    for i in range(m):
        k = src[i]
        src[i] = k & ~sign if k & sign else ~k
    return src


def sort_finite(x: np.ndarray) -> np.ndarray:
    """The finite values of ``x``, ascending (= ``np.sort(x[np.isfinite(x)])``).

    float32 samples are sorted as float32 (4 passes instead of 8; converting after sorting gives the same
    values in the same order, as does any increasing map such as a positive scale), anything else as float64.

    Parameters
    ----------
    x : ndarray
        Samples, any shape (flattened), any unit.

    Returns
    -------
    (m,) ndarray of float32 (float32 input) or float64
        Same unit.
    """
    dtype = np.float32 if np.asarray(x).dtype == np.float32 else np.float64
    x = np.ascontiguousarray(x, dtype=dtype).ravel()
    if USE_NUMBA:
        key = np.uint32 if dtype == np.float32 else np.uint64
        sign = key(1) << key(8 * x.itemsize - 1)
        return _radix_sort_bits(x, x.view(key), sign).view(dtype)
    return np.sort(x[np.isfinite(x)])


@nb.njit(cache=True, nogil=True)
def _merge2_numba(a, b, out):  # pragma: no cover - compiled
    # a and b end with a +inf sentinel (not copied); branch-free: the comparison picks the source
    n = a.size + b.size - 2
    i = 0
    j = 0
    for k in range(n):
        va = a[i]
        vb = b[j]
        take_b = vb < va
        out[k] = vb if take_b else va
        j += take_b
        i += 1 - take_b
    out[n] = np.inf


def merge_sorted(runs: list[np.ndarray]) -> np.ndarray:
    """One ascending array from ascending runs of finite float64 (= ``np.sort(np.concatenate(runs))``).

    Parameters
    ----------
    runs : list of (n_i,) ndarray of float64
        Each ascending and finite (e.g. from :func:`sort_finite`).

    Returns
    -------
    (Σ n_i,) ndarray of float64
    """
    if not runs:
        return np.zeros(0)
    if not USE_NUMBA:
        return np.sort(np.concatenate(runs))
    level = [np.append(r, np.inf) for r in runs]  # each with its sentinel
    while len(level) > 1:
        nxt = []
        for a, b in zip(level[0::2], level[1::2]):
            out = np.empty(a.size + b.size - 1)
            _merge2_numba(a, b, out)
            nxt.append(out)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0][:-1]


@nb.njit(cache=True, nogil=True)
def _select_bits(x, bits, sign, lo, hi):  # pragma: no cover - compiled
    # The values of ranks lo ≤ hi ≤ lo + 1 (0-based) among the finite x, by MSD radix selection on 16-bit
    # digits: a histogram pass over the candidates per digit, then only the bucket holding rank lo is kept
    # (no copy when it holds them all), so every candidate shares the digits above. When rank hi falls in
    # a later bucket, lo is the largest key of its bucket and hi the smallest key above it: one pass.
    # Returns their bit patterns; empty when x has a non-finite value.
    n = x.size
    keys = np.empty_like(bits)
    for i in range(n):
        if not np.isfinite(x[i]):
            return keys[:0]
        k = bits[i]
        keys[i] = ~k if k & sign else k | sign
    out = np.empty(2, keys.dtype)
    cand = keys
    shift = 8 * bits.itemsize - 16
    hist = np.zeros(1 << 16, np.int64)
    while True:
        hist[:] = 0
        for i in range(cand.size):
            hist[(cand[i] >> shift) & 0xFFFF] += 1
        below = 0
        b = 0
        while below + hist[b] <= lo:
            below += hist[b]
            b += 1
        lo -= below
        hi -= below
        m = hist[b]
        if hi >= m:  # straddles: the largest key of bucket b, and the smallest key above the bucket
            largest = cand[0] ^ cand[0]
            smallest = ~largest
            for i in range(cand.size):
                d = (cand[i] >> shift) & 0xFFFF
                if d == b:
                    largest = max(largest, cand[i])
                elif d > b:
                    smallest = min(smallest, cand[i])
            out[0] = largest
            out[1] = smallest
            break
        if m < cand.size:
            kept = np.empty(m, keys.dtype)
            j = 0
            for i in range(cand.size):
                if ((cand[i] >> shift) & 0xFFFF) == b:
                    kept[j] = cand[i]
                    j += 1
            cand = kept
        if shift == 0:  # every digit fixed: the candidates are one key
            out[0] = cand[0]
            out[1] = cand[0]
            break
        if cand.size <= 64:  # insertion sort of the few left
            for i in range(1, cand.size):
                v = cand[i]
                j = i - 1
                while j >= 0 and cand[j] > v:
                    cand[j + 1] = cand[j]
                    j -= 1
                cand[j + 1] = v
            out[0] = cand[lo]
            out[1] = cand[hi]
            break
        shift -= 16
    for r in range(2):
        k = out[r]
        out[r] = k & ~sign if k & sign else ~k
    return out


def middle_order_statistics(x: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """The middle order statistic(s) of an array's n values: ranks (n − 1)/2 for odd n, n/2 − 1 and n/2 for
    even n, by radix selection for finite float32/float64 (a few passes instead of numpy's introselect),
    by ``np.partition`` otherwise (numba disabled, other dtypes, infinities).

    Parameters
    ----------
    x : ndarray
        Any shape (flattened), any unit.

    Returns
    -------
    (values, odd) or None
        ``values`` (1,) or (2,) of x's dtype, ascending, and whether n is odd; None when x is empty or has a
        NaN (np.median's own rules apply then).
    """
    x = np.ascontiguousarray(x).ravel()
    n = x.size
    if n == 0:
        return None
    lo, hi = (n // 2, n // 2) if n % 2 else (n // 2 - 1, n // 2)
    odd = bool(n % 2)
    if USE_NUMBA and x.dtype in (np.float32, np.float64):
        key = np.uint32 if x.dtype == np.float32 else np.uint64
        got = _select_bits(x, x.view(key), key(1) << key(8 * x.itemsize - 1), lo, hi)
        if got.size:
            return got.view(x.dtype)[:1] if odd else got.view(x.dtype), odd
    if x.dtype.kind in "fc" and np.isnan(x).any():
        return None
    return np.partition(x, lo if odd else (lo, hi))[lo: hi + 1], odd


def median(x: np.ndarray):
    """``np.median(x)`` (the same value and dtype) from :func:`middle_order_statistics`.

    Parameters
    ----------
    x : ndarray
        Any shape (flattened), any unit.

    Returns
    -------
    numpy scalar
        Same unit; NaN when ``x`` has a NaN (as ``np.median``).
    """
    mid = middle_order_statistics(x)
    if mid is None:  # numpy's own rules (NaN propagates, integers, empty)
        return np.median(x)
    return np.mean(mid[0])  # as np.median: the mean of the middle one or two, in their dtype
