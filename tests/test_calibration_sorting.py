"""calibration.sorting: the radix sort (float64 and float32) and the merge give exactly np.sort of the finite values."""

import numpy as np
import pytest

from noisesim.calibration import sorting


@pytest.fixture(params=[True, False], ids=["numba", "numpy"])
def use_numba(request, monkeypatch):
    monkeypatch.setattr(sorting, "USE_NUMBA", request.param)
    return request.param


def _samples(seed: int, n: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    x = np.concatenate([g.standard_normal(n) * 3.0, np.rint(g.standard_normal(n // 4) * 5.0),  # ties
                        g.standard_t(1.5, n // 4) * 1e3, [0.0, -0.0, 1e-310, -1e-310, 1e300, -1e300]])
    g.shuffle(x)
    return x


@pytest.mark.parametrize("n", [0, 1, 7, 1000, 50_000])
def test_sort_finite_equals_numpy(use_numba, n):
    x = _samples(n, n)
    x = np.concatenate([x, [np.nan, np.inf, -np.inf, -np.nan]])
    got = sorting.sort_finite(x)
    want = np.sort(x[np.isfinite(x)])
    assert got.dtype == np.float64 and got.shape == want.shape
    assert np.array_equal(got, want)


def test_sort_finite_of_float32_and_2d(use_numba):
    with np.errstate(over="ignore"):
        x = _samples(3, 4000)[:4000].astype(np.float32).reshape(40, -1)  # ±1e300 overflow to ±inf: dropped
    got = sorting.sort_finite(x)
    assert got.dtype == np.float32  # sorted in its own width
    assert np.array_equal(got, np.sort(x[np.isfinite(x)]))
    x64 = x.astype(np.float64).ravel()
    assert np.array_equal(got.astype(np.float64) * 1.37, np.sort(x64[np.isfinite(x64)] * 1.37))  # convert/scale after


def test_sort_finite_constant_skips_every_pass(use_numba):
    x = np.full(300, 2.5)
    assert np.array_equal(sorting.sort_finite(x), x)


@pytest.mark.parametrize("sizes", [[], [0], [5], [3, 0, 8], [1000, 999, 1, 4000, 17]])
def test_merge_sorted_equals_sort_of_concatenation(use_numba, sizes):
    runs = [np.sort(_samples(10 + i, s)[:s]) for i, s in enumerate(sizes)]
    got = sorting.merge_sorted(runs)
    want = np.sort(np.concatenate(runs)) if runs else np.zeros(0)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("case", ["normal32", "normal64_odd", "ties", "constant", "one", "two", "narrow32", "heavy", "zeros",
                                  "straddle", "straddle32", "straddle_mixed"])
def test_median_equals_numpy(use_numba, case):
    g = np.random.default_rng(20)
    x = {"normal32": g.standard_normal(20_000).astype(np.float32), "normal64_odd": g.standard_normal(20_001),
         "ties": np.rint(g.standard_normal(1001) * 3), "constant": np.full(50, 2.0), "one": np.array([1.0]),
         "two": np.array([3.0, -1.0]),
         "narrow32": (g.standard_normal(300_000) * 1e-3 + 5).astype(np.float32),  # one top-16-bit bucket
         "heavy": np.abs(g.standard_t(2, 10_000)), "zeros": np.array([0.0, -0.0, 0.0, -0.0, 1.0]),
         # the two middle values in different top-16-bit buckets, many values in each (and below them)
         "straddle": np.concatenate([np.full(3000, 1.0), np.full(2000, 1.0 + 2**-40), np.full(5000, 3.0)]),
         "straddle32": np.concatenate([g.random(4000) + 1.0, g.random(6000) * 1e-3 + 7.0]).astype(np.float32),
         "straddle_mixed": np.concatenate([g.random(5000) * 0.01 + 2.0, g.random(5000) * 0.01 + 2.5])}[case]
    got, want = sorting.median(x), np.median(x)
    assert got == want and np.asarray(got).dtype == np.asarray(want).dtype


def test_median_with_nan_is_nan_and_order_statistics_decline(use_numba):
    x = np.concatenate([np.random.default_rng(21).standard_normal(100), [np.nan]])
    assert np.isnan(sorting.median(x))
    assert sorting.middle_order_statistics(x) is None
    assert sorting.middle_order_statistics(np.zeros(0)) is None
