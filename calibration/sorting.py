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
are equal, whatever their order). With ``NUMBA_DISABLE_JIT=1`` numpy does the work.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .kernels import USE_NUMBA

__all__ = ["merge_sorted", "sort_finite"]

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
