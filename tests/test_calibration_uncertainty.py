"""calibration.uncertainty: covariances of figures that share terms across channels (issue 7 item 6)."""

import math

import numpy as np
from scipy import stats

from noisesim.calibration.accumulate import DarkAccumulator
from noisesim.calibration.estimators import fit_ptc
from noisesim.calibration.uncertainty import (
    combine_channels,
    dark_pair_variances,
    gain_covariance,
    pooled_variance_covariance,
    ptc_dark_sensitivity,
)
from noisesim.cfa import CFA


def test_combining_identical_channels_does_not_shrink_the_se():
    # four channels that are one measurement (fully correlated): the mean is no better than one of them
    cov = np.full((4, 4), 0.01**2)
    value, se, chi2 = combine_channels([2.0] * 4, cov)
    assert value == 2.0 and math.isclose(se, 0.01, rel_tol=1e-12)
    # independent channels: 1/√4
    assert math.isclose(combine_channels([2.0] * 4, np.eye(4) * 0.01**2)[1], 0.005, rel_tol=1e-12)


def test_pooled_dark_variance_covariance_keeps_the_channels_correlation():
    g = np.random.default_rng(0)
    shared = g.normal(0, 1, (50, 1))
    pv = 10 + np.hstack([shared, shared, g.normal(0, 1, (50, 2))])
    cov = pooled_variance_covariance(pv, 100)
    assert cov.shape == (4, 4)
    assert math.isclose(cov[0, 1], cov[0, 0], rel_tol=1e-12)  # R and Gr: one realization
    assert abs(cov[2, 3]) < 0.5 * cov[2, 2]
    assert math.isclose(cov[0, 0], np.var(shared, ddof=1) / 99, rel_tol=1e-12)
    assert np.all(np.isnan(pooled_variance_covariance(pv[:1], 2)))


def test_gain_covariance_adds_the_shared_dark_variance():
    k, n = 2.0, 4096
    mu = np.array([50.0, 100, 200, 400, 800, 1600])
    fits = [fit_ptc(mu, k * mu, n_pixels=n, sigma2_dark_dn2=5.0) for _ in range(2)]
    g = ptc_dark_sensitivity(fits[0], 5.0, n)
    assert g < 0  # a larger dark variance subtracted lowers every point, and K
    cov_v = np.array([[0.04, 0.04], [0.04, 0.04]])  # one shared dark error
    no_dark = gain_covariance(fits, 5.0, np.full((2, 2), np.nan), n)
    with_dark = gain_covariance(fits, 5.0, cov_v, n)
    assert np.allclose(with_dark - no_dark, g * g * 0.04)


def test_read_variance_se_matches_the_spread_over_stacks_with_strong_row_noise():
    # 8 darks of 64×64 with row noise 3 DN over pixel noise 1.5 DN: the pooled v − σ²_row scatters by the
    # pixel noise and the frame-mean offsets only; the pair SE must follow it (not the row noise's 9 DN²)
    cfa, shape, n, reps = CFA("RGGB"), (64, 64), 8, 60
    g = np.random.default_rng(3)
    est, ses = [], []
    for _ in range(reps):
        acc = DarkAccumulator(shape, cfa, (0,) * 4, sample_pixels=256)
        for _ in range(n):
            acc.add(g.normal(100, 1.5, shape) + g.normal(0, 3.0, (shape[0], 1)))
        ds = acc.finish(0.001)
        corr = n / (n - 1)
        r2 = ds.row_resid.var(axis=1, ddof=1).mean() * corr
        c2 = ds.col_resid.var(axis=1, ddof=1).mean() * corr
        est.append(float(ds.temporal_var_map_dn2.mean()) - r2 - c2)
        ses.append(dark_pair_variances(ds.pair_var_dn2, ds.frame_channel_means_dn, ds.row_resid, ds.col_resid, 2).read_variance_se()[0])
    ratio = np.std(est, ddof=1) / math.sqrt(np.mean(np.square(ses)))
    lo, hi = np.sqrt(stats.chi2.ppf([0.001, 0.999], reps - 1) / (reps - 1))
    assert 0.8 * lo < ratio < 1.25 * hi, ratio
