"""Calibration estimators on plain numpy data with known answers (fixed seeds, ~5 SE tolerances)."""

import math

import numpy as np
import pytest
from scipy import stats

from noisesim.calibration.estimators import (
    Estimate,
    debias_tukey,
    fit_line,
    fit_ptc,
    fit_tukey,
    flatten_illumination,
    hot_pixel_mask,
    kl_divergences,
    ppcc_max_tukey,
    solve_row_col_pixel,
)
from noisesim.errors import CalibrationError
from noisesim.stats import tukey_lambda_ppf


@pytest.mark.parametrize("lam", [-0.1, 0.0, 0.149, 0.3])
def test_ppcc_matches_scipy(lam):
    rng = np.random.default_rng(1)
    x = 2.0 * tukey_lambda_ppf(rng.random(20001), lam)
    ours = ppcc_max_tukey(x)
    ref = stats.ppcc_max(x, brack=(-0.5, 0.5), dist="tukeylambda")
    assert abs(ours - ref) < 2e-4
    fit = fit_tukey(x)
    (_, _), (slope, _, r) = stats.probplot(x, sparams=(fit.tukey_lambda,), dist="tukeylambda")
    assert fit.tukey_scale_dn == pytest.approx(slope, rel=1e-9)
    assert fit.r2 == pytest.approx(r * r, rel=1e-9)


def test_tukey_fit_recovers_shape_and_scale():
    rng = np.random.default_rng(2)
    n = 200_000
    for lam, scale in [(-0.07, 3.0), (0.149, 0.7)]:
        fit = fit_tukey(scale * tukey_lambda_ppf(rng.random(n), lam))
        assert abs(fit.tukey_lambda - lam) < 0.01
        assert fit.tukey_scale_dn == pytest.approx(scale, rel=0.01)


def test_debias_removes_stack_mean_mixing():
    """Residuals against a 12-frame stack mean pull λ towards 0.14; the simulation-based correction undoes it."""
    rng = np.random.default_rng(3)
    n, m, lam, scale = 12, 20000, -0.06, 3.0
    off = rng.random(m) * 30
    x = np.rint(scale * tukey_lambda_ppf(rng.random((n, m)), lam) + off)
    r = (x - x.mean(axis=0)) * math.sqrt(n / (n - 1))
    raw = fit_tukey(r.ravel())
    assert raw.tukey_lambda - lam > 0.01  # the bias is real
    lam_c, scale_c, deriv = debias_tukey(raw.tukey_lambda, raw.tukey_scale_dn, n_frames=n, quantized=True, offsets_dn=off)
    assert abs(lam_c - lam) < 0.008
    assert scale_c == pytest.approx(scale, rel=0.015)
    assert 0.5 < deriv < 1.5


def test_ptc_fit_through_origin_below_70_percent():
    k, n_pix, s2d = 1.5, 100_000, 40.0
    rng = np.random.default_rng(4)
    mu = np.array([20, 50, 100, 200, 400, 800, 1600, 3200, 6000, 9000, 12000.0])
    var = k * mu
    var[-2:] = [k * 9000 * 0.6, k * 12000 * 0.1]  # clipping: the variance collapses
    noisy = var + rng.normal(0, 1, mu.size) * (var + s2d) * math.sqrt(2 / n_pix)
    fit = fit_ptc(mu, noisy, n_pixels=n_pix, sigma2_dark_dn2=s2d)
    assert fit.saturation_found and fit.saturation_mean_dn == 6000
    assert fit.used.sum() == 8  # 0.7 * 6000 = 4200: up to 3200
    assert abs(fit.gain_k_dn_per_e.value - k) < 5 * fit.gain_k_dn_per_e.se
    assert fit.gain_k_dn_per_e.se < 0.01 * k


def test_ptc_needs_two_levels():
    with pytest.raises(CalibrationError, match="below 70"):
        fit_ptc([100.0, 5000.0, 9000.0], [150.0, 1000.0, 10.0], n_pixels=1000)


def test_row_col_pixel_solve_is_exact():
    r2, c2, p2 = 0.8, 0.3, 25.0
    nc, nr = 4000, 3000
    got = solve_row_col_pixel(r2 + p2 / nc, c2 + p2 / nr, p2 + r2 + c2, n_cols=nc, n_rows=nr)
    np.testing.assert_allclose(got, (r2, c2, p2), rtol=1e-12)


def test_hot_pixels_found_and_nothing_else():
    rng = np.random.default_rng(5)
    ds = rng.normal(0, 1.0, (4, 128, 128)).astype(np.float32)
    hot = [(0, 10, 10), (2, 100, 50), (3, 64, 64)]
    for c, y, x in hot:
        ds[c, y, x] += 40
    mask = hot_pixel_mask(ds)
    assert sorted(zip(*np.nonzero(mask))) == sorted(hot)


def test_flatten_illumination_removes_vignetting_keeps_prnu():
    rng = np.random.default_rng(6)
    h, w = 256, 256
    y, x = np.mgrid[0:h, 0:w]
    illum = 1000 * (1 - 0.35 * (((y - 128) / 128) ** 2 + ((x - 100) / 128) ** 2) / 2)
    prnu = rng.normal(0, 0.015, (h, w))
    hp = flatten_illumination(illum * (1 + prnu))
    assert hp.std() == pytest.approx(0.015, rel=0.03)
    assert np.abs(flatten_illumination(illum)).max() < 1e-4


def test_fit_line_and_estimate_ci():
    rng = np.random.default_rng(7)
    x = np.linspace(0, 10, 30)
    y = 2.0 * x + 1.0 + rng.normal(0, 0.5, x.size)
    lf = fit_line(x, y)
    assert abs(lf.slope.value - 2.0) < 5 * lf.slope.se
    assert lf.slope.ci[0] < lf.slope.value < lf.slope.ci[1]
    e = Estimate.normal(1.0, 0.1, "x", dof=5)
    assert e.ci[1] - 1.0 == pytest.approx(stats.t.ppf(0.975, 5) * 0.1)


def test_kl_zero_for_same_and_positive_for_different():
    rng = np.random.default_rng(8)
    a = np.rint(rng.normal(0, 5, 200_000))
    b = np.rint(rng.normal(0, 5, 200_000))
    c = np.rint(rng.normal(0, 7, 200_000))
    fwd_same, sym_same = kl_divergences(a, b)
    fwd_diff, sym_diff = kl_divergences(a, c)
    assert fwd_same < 2e-3 and sym_same < 4e-3
    assert fwd_diff > 0.05 and sym_diff > fwd_diff
