"""Calibration streaming kernels (numba) against their plain-numpy references, on pre-drawn random frames."""

import numpy as np
import pytest

from noisesim.calibration import kernels as K
from noisesim.calibration.accumulate import DarkAccumulator, FlatAccumulator
from noisesim.calibration.capture import frame_from_array
from noisesim.cfa import CFA



@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch):
    """Run the numba kernels even under NUMBA_DISABLE_JIT=1, where they are plain Python (so coverage sees
    their bodies, tests/test_numba_disabled.py): the wrappers would otherwise fall back to the references."""
    from noisesim.calibration import estimators

    monkeypatch.setattr(K, "USE_NUMBA", True)
    monkeypatch.setattr(estimators, "USE_NUMBA", True)

# odd sizes so the channels have unequal pixel counts; 2×2 and quad (4×4) periods
CASES = [("RGGB", (37, 50)), ("GBRG", (40, 33)), ("RRGGRRGGGGBBGGBB", (42, 61))]


def _frames(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        a = rng.integers(400, 16000, size=shape).astype(dtype)
        b = rng.integers(400, 16000, size=shape).astype(dtype)
    else:
        a = (rng.normal(600.0, 40.0, size=shape)).astype(dtype)
        b = (rng.normal(600.0, 40.0, size=shape)).astype(dtype)
    return a, b


@pytest.mark.parametrize("pattern,shape", CASES)
@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("m", [1, 3, 4])
def test_dark_batch_matches_reference(pattern, shape, dtype, full, m):
    cfa = CFA(pattern)
    black = cfa.tile_values((510.0, 512.0, 511.5, 509.0))
    rng = np.random.default_rng(1)
    stack = np.stack([_frames(shape, dtype, i)[0] for i in range(4)])
    stack[m:] = stack.max() + 1  # frames past m must be ignored (they would raise the maximum)
    out = []
    for fn in (K._dark_batch_numba, K.dark_batch_reference):
        rng = np.random.default_rng(7)
        s1 = rng.normal(size=shape)
        s2 = rng.random(shape) * 10
        rows, cols, ch = np.ones((4, shape[0])), np.ones((4, shape[1])), np.ones((4, cfa.n_channels))
        mx, pv = fn(stack, m, black, s1, s2, rows, cols, ch, full)
        out.append((float(mx), pv, s1, s2, rows, cols, ch))
    assert out[0][1].shape == ((m // 2, cfa.n_channels) if full else (0, cfa.n_channels))
    for x, y in zip(out[0], out[1]):
        np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-9)


def test_pair_variances_are_sound_far_from_zero():
    """Shifted sums: a huge offset between the frames of a pair does not cancel the variance away."""
    rng = np.random.default_rng(3)
    d = rng.normal(0.0, 1.0, size=(64, 64))
    ref = K.pair_diff_var_reference(d, np.zeros_like(d), 2)
    b = np.zeros_like(d)
    _, pv = K.dark_batch(np.stack([b, 1e9 + d]), 2, np.zeros((2, 2)), np.zeros((64, 64)), np.zeros((64, 64)),
                         np.zeros((2, 64)), np.zeros((2, 64)), np.zeros((2, 4)), True)
    np.testing.assert_allclose(pv[0], ref, rtol=1e-6)
    got = K.flat_pair_pass(1e9 + d, b, np.zeros((2, 2)), np.zeros((64, 64), np.float32), 1e12)[3]
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("pattern,shape", CASES)
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_flat_pair_pass_and_prnu_add_match_reference(pattern, shape, dtype):
    cfa = CFA(pattern)
    black = cfa.tile_values((510.0, 512.0, 511.5, 509.0))
    a, b = _frames(shape, dtype, 4)
    mean_map = np.random.default_rng(5).normal(0, 2, size=shape).astype(np.float32)
    sat = float(np.percentile(a, 95))
    got = K.flat_pair_pass(a, b, black, mean_map, sat)
    ref = K.flat_pair_pass_reference(a, b, black, mean_map, sat)
    for x, y in zip(got, ref):
        np.testing.assert_allclose(x, y, rtol=1e-11)
    assert got[2].sum() > 0  # the clip count is exercised
    level = cfa.tile_values((3000.0, 5000.0, 5100.0, 2500.0))
    acc1 = np.ones(shape)
    acc2 = np.ones(shape)
    K.prnu_add(acc1, a, black, mean_map, level)
    K.prnu_add_reference(acc2, a, black, mean_map, level)
    np.testing.assert_allclose(acc1, acc2, rtol=1e-14)


def test_channel_counts():
    assert K.channel_counts((5, 7), 2).tolist() == [12, 9, 8, 6]
    assert K.channel_counts((8, 8), 4).sum() == 64


def _old_dark_stats(frames, cfa, black):
    """The accumulator's figures computed the obvious way on the whole stack."""
    x = np.stack([f.astype(np.float64) for f in frames]) - cfa.per_pixel(black, frames[0].shape)
    p = cfa.period
    views = lambda a: [a[..., y::p, xx::p] for y in range(p) for xx in range(p)]  # noqa: E731
    ch = np.stack([[v.mean() for v in views(f)] for f in x])
    pv = np.array([[v.var(ddof=1) / 2 for v in views(frames[i].astype(np.float64) - frames[i + 1])] for i in range(0, len(frames) - 1, 2)])
    return x.mean(axis=0), x.var(axis=0, ddof=1), ch, pv, x.mean(axis=2), x.mean(axis=1)


@pytest.mark.parametrize("pattern,n_frames", [("RGGB", 7), ("RGGB", 9), ("RRGGRRGGGGBBGGBB", 8)])
def test_dark_accumulator_equals_whole_stack_statistics(pattern, n_frames):
    cfa = CFA(pattern)
    black = (512.0, 510.0, 511.0, 509.0)
    rng = np.random.default_rng(11)
    frames = [rng.integers(480, 560, size=(24, 40)).astype(np.uint16) for _ in range(n_frames)]
    acc = DarkAccumulator((24, 40), cfa, black, sample_pixels=50, rng=0)
    for f in frames:
        acc.add(f)
    ds = acc.finish(0.001)
    mean, var, ch, pv, rows, cols = _old_dark_stats(frames, cfa, black)
    np.testing.assert_allclose(ds.mean_map_dn, mean, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ds.temporal_var_map_dn2, var, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.frame_channel_means_dn, ch, rtol=1e-12)
    np.testing.assert_allclose(ds.pair_var_dn2, pv, rtol=1e-12)
    np.testing.assert_allclose(ds.row_resid, rows - rows.mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(ds.col_resid, cols - cols.mean(axis=0), atol=1e-10)
    assert ds.max_dn == max(float(f.max()) for f in frames)
    # residual samples: value − stack mean − row and column residuals, at the chosen pixels
    r_idx, c_idx = np.divmod(ds.sample_index, 40)
    x = np.stack(frames).astype(np.float64) - cfa.per_pixel(black, (24, 40))
    expect = x[:, r_idx, c_idx] - mean[r_idx, c_idx] - ds.row_resid[:, r_idx] - ds.col_resid[:, c_idx]
    np.testing.assert_allclose(ds.sample_resid_dn, expect, atol=1e-4)


def test_flat_accumulator_levels_and_prnu_sum():
    cfa = CFA("RGGB")
    black = (512.0, 512.0, 512.0, 512.0)
    rng = np.random.default_rng(12)
    shape = (20, 30)
    darks = [rng.integers(500, 525, size=shape).astype(np.uint16) for _ in range(4)]
    acc = DarkAccumulator(shape, cfa, black, sample_pixels=20)
    for d in darks:
        acc.add(d)
    ds = acc.finish(0.001)
    fa = FlatAccumulator(ds, black, 16383.0)
    a = rng.poisson(3000, size=shape).astype(np.uint16) + 512
    b = rng.poisson(3000, size=shape).astype(np.uint16) + 512
    fi = frame_from_array(a, kind="flat", iso=100, exposure_s=0.01, cfa="RGGB", black_level_dn=black, white_level_dn=16383, label="a")
    lvl = fa.add_pair(a, b, fi, fi)
    off = cfa.per_pixel(black, shape) + ds.mean_map_dn.astype(np.float64)
    xa, xb = a - off, b - off
    p = 2
    views = lambda z: [z[y::p, x::p] for y in range(p) for x in range(p)]  # noqa: E731
    ma = np.array([v.mean() for v in views(xa)])
    mb = np.array([v.mean() for v in views(xb)])
    np.testing.assert_allclose(lvl.mean_dn, (ma + mb) / 2, rtol=1e-12)
    np.testing.assert_allclose(lvl.pair_var_dn2, [v.var(ddof=1) / 2 for v in views(xa - xb)], rtol=1e-9)
    assert fa.prnu_n == 2
    expect = xa / cfa.per_pixel(ma, shape) + xb / cfa.per_pixel(mb, shape)
    np.testing.assert_allclose(fa.prnu_sum, expect, rtol=1e-12)


def test_stack_mean_var_matches_reference():
    rng = np.random.default_rng(8)
    s1 = rng.normal(5.0, 30.0, size=(33, 47))
    s2 = s1**2 / 9 + rng.random((33, 47)) * 50
    for x, y in zip(K.stack_mean_var(s1, s2, 9), K.stack_mean_var_reference(s1, s2, 9)):
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("n", [1000, 1001])
@pytest.mark.parametrize("lam", [-0.2, 0.0, 0.14])
def test_ppcc_r_numba_matches_numpy(n, lam, monkeypatch):
    from noisesim.calibration import estimators
    from noisesim.calibration.estimators import _PPCC

    monkeypatch.setattr(estimators, "USE_NUMBA", True)  # the pairs kernel (run by Python under NUMBA_DISABLE_JIT)
    from noisesim.stats import tukey_lambda_ppf

    x = np.sort(tukey_lambda_ppf(np.random.default_rng(9).random(n), 0.1))
    pp = _PPCC(x)
    q = pp.quantiles(lam)
    ref = float(np.dot(q, pp.xc) / np.sqrt(np.dot(q, q) * pp.xx))
    sxq, sqq = pp.sums(lam)
    got = sxq / np.sqrt(sqq) / np.sqrt(pp.xx)
    assert abs(got - ref) < 1e-13


def test_flatten_illumination_surface_is_the_polynomial():
    """The separable evaluation equals the term-by-term sum of the fitted polynomial."""
    from noisesim.calibration.estimators import flatten_illumination

    h, w = 64, 96
    yf = (2.0 * np.arange(h) / (h - 1) - 1.0)[:, None]
    xf = (2.0 * np.arange(w) / (w - 1) - 1.0)[None, :]
    surf = 100.0 + 20 * xf - 15 * yf + 8 * xf * yf - 30 * xf**2 + 5 * yf**4 + 3 * xf**3 * yf
    hp = flatten_illumination(surf, degree=4, box=15)
    np.testing.assert_allclose(hp, 0.0, atol=1e-9)


def test_vectorized_expm1_within_two_ulp_of_libm():
    """The PPCC's expm1 (a polynomial LLVM vectorizes) against numpy's over the range the fits use."""
    import numba as nb

    from noisesim.calibration.estimators import _EXPM1_MAX_ABS, _expm1_vec

    @nb.njit
    def apply(t):
        out = np.empty_like(t)
        for i in range(t.size):
            out[i] = _expm1_vec(t[i])
        return out

    g = np.random.default_rng(4)
    t = np.concatenate([np.linspace(-_EXPM1_MAX_ABS, _EXPM1_MAX_ABS, 200_001), g.uniform(-1e-3, 1e-3, 20_000),
                        g.uniform(-0.35, 0.35, 20_000), [0.0, -0.0, 1e-300, -1e-300, 5e-324]])
    got, want = apply(t), np.expm1(t)
    ulp = np.abs(got - want) / np.spacing(np.abs(want))
    assert ulp.max() <= 2.0
    assert np.array_equal(np.signbit(got[want != 0]), np.signbit(want[want != 0]))


@pytest.mark.parametrize("quantized", [False, True])
@pytest.mark.parametrize("lam", [-0.3, 0.0, 0.14, 0.9])
def test_simulated_residuals_match_numpy(quantized, lam):
    from noisesim.calibration import estimators as E

    g = np.random.default_rng(5)
    u = np.clip(g.random((9, 700)), 1e-9, 1 - 1e-9)
    logs = (np.log(u), np.log1p(-u))
    offsets = g.random(700) * 8.0
    got = np.empty(u.shape)
    E._simulated_residuals_numba(logs[0], logs[1], lam, 2.5, offsets, quantized, got)
    x = 2.5 * E.tukey_lambda_ppf_logs(logs[0], logs[1], lam) + offsets[None, :]
    if quantized:
        x = np.rint(x)
    want = (x - x.mean(axis=0)) * np.sqrt(9 / 8)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12)


def test_ks_and_kl_of_sorted_samples_equal_the_unsorted_forms():
    from noisesim.calibration import estimators as E

    g = np.random.default_rng(6)
    for a, b in [(np.rint(g.normal(0, 3, 5000)), np.rint(g.normal(0.3, 3, 4000))),  # ties
                 (g.normal(0, 3, 3000).astype(np.float32), g.standard_t(3, 2500)),
                 (np.arange(10.0), np.arange(10.0) + 100)]:
        sa, sb = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
        grid = np.concatenate([sa, sb])
        ks_ref = float(np.max(np.abs(sa.searchsorted(grid, "right") / sa.size - sb.searchsorted(grid, "right") / sb.size)))
        assert E.ks_statistic_sorted(sa, sb) == ks_ref == E.ks_statistic(a, b)
        assert E.kl_divergences_sorted(sa, sb) == E.kl_divergences(a, b)


def test_flatten_illumination_fused_pass_equals_numpy(monkeypatch):
    """The one-pass surface/ratio kernels give the numpy lines' result bit for bit."""
    from noisesim.calibration import estimators as E

    g = np.random.default_rng(10)
    plane = 800.0 * (1.0 + 0.01 * g.standard_normal((90, 140))) * np.linspace(0.6, 1.0, 140)[None, :]
    got = E.flatten_illumination(plane, box=15)
    monkeypatch.setattr(E, "USE_NUMBA", False)
    np.testing.assert_array_equal(got, E.flatten_illumination(plane, box=15))
