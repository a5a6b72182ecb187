"""Sorted samples for the probability-plot fits: a radix sort of float64 and a merge of sorted runs (numba).

The Tukey-λ fits (:func:`~.estimators.fit_tukey`) sort every sample they fit: the pooled read-noise
residuals, each frame batch, each channel, each channel's batches and every debiasing simulation, a few
million values per ISO. Two things make that cheap without changing any sorted value:

* :func:`sort_finite` — an LSD radix sort on the IEEE-754 bit patterns (8-bit digits; passes whose digit is
  the same for every key are skipped), about twice as fast as ``np.sort``'s comparison sort on 10⁵–10⁶
  doubles;
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

_SIGN = np.uint64(1) << np.uint64(63)
_DIGIT_BITS = 8


@nb.njit(cache=True, nogil=True)
def _radix_sort_numba(x):  # pragma: no cover - compiled
    n = x.size
    keys = np.empty(n, np.uint64)
    m = 0
    bits = x.view(np.uint64)
    for i in range(n):
        v = x[i]
        if np.isfinite(v):  # order-preserving map of the bit pattern: negatives flipped, positives signed
            k = bits[i]
            keys[m] = ~k if k & _SIGN else k | _SIGN
            m += 1
    keys = keys[:m]
    nbins = 1 << _DIGIT_BITS
    npass = 64 // _DIGIT_BITS
    mask = np.uint64(nbins - 1)
    hist = np.zeros((npass, nbins), np.int64)
    for i in range(m):
        k = keys[i]
        for p in range(npass):
            hist[p, (k >> np.uint64(p * _DIGIT_BITS)) & mask] += 1
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
        sh = np.uint64(p * _DIGIT_BITS)
        for i in range(m):
            k = src[i]
            d = (k >> sh) & mask
            dst[off[d]] = k
            off[d] += 1
        src, dst = dst, src
    for i in range(m):
        k = src[i]
        src[i] = k & ~_SIGN if k & _SIGN else ~k
    return src.view(np.float64)


def sort_finite(x: np.ndarray) -> np.ndarray:
    """The finite values of ``x``, ascending (= ``np.sort(x[np.isfinite(x)])``).

    Parameters
    ----------
    x : ndarray
        Samples, any shape (flattened), any unit.

    Returns
    -------
    (m,) ndarray of float64
        Same unit.
    """
    x = np.ascontiguousarray(x, dtype=np.float64).ravel()
    if USE_NUMBA:
        return _radix_sort_numba(x)
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
