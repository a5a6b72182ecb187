"""Statistical properties of the noise model (docs/model.md).

Fixed seeds; tolerances of 5 standard errors computed from the sample size n:
mean σ/√n, variance √((μ₄ − σ⁴)/n) (σ²·√(2/n) for a Gaussian). Goodness-of-fit tests use p > 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from noisesim.errors import ParameterError, ShapeError
from noisesim.noise import simulate
from noisesim.params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor

Z = 5.0  # standard errors allowed
SENSOR16 = Sensor("RGGB", 16, 0, 65535)
SENSOR14 = Sensor("RGGB", 14, 512, 16383)


def electrons_frame(mu_e, shape=(400, 500)):
    return np.full(shape, mu_e, dtype=np.float32)


def var_se(x):
    """Standard error of the sample variance from the sample's own fourth moment."""
    n = x.size
    m2 = x.var()
    m4 = np.mean((x - x.mean()) ** 4)
    return np.sqrt(max(m4 - m2**2, 0.0) / n)


@pytest.mark.parametrize("mu", [0.05, 0.1, 1.0, 3.0, 9.99, 10.0, 10.5, 30.0, 100.0, 1000.0, 5000.0])
def test_poisson_shot_noise_regimes(mu):
    """Shot noise alone at K = 1: a Poisson(μ) count per pixel — χ², mean and variance, each regime."""
    p = NoiseParams(1.0)
    out = simulate(electrons_frame(mu), p, SENSOR16, input_unit="electrons", output_unit="dn",
                   components=NoiseComponents.only("shot"), rng=int(mu * 100)).ravel().astype(np.float64)
    n = out.size
    assert np.all(out == np.round(out)) and out.min() >= 0
    assert abs(out.mean() - mu) < Z * np.sqrt(mu / n)
    assert abs(out.var() - mu) < Z * np.sqrt((mu + 2 * mu**2) / n)  # Poisson μ₄ − σ⁴ = μ + 2μ²
    # χ² goodness of fit on bins with expected count ≥ 20 (tails merged)
    ks = np.arange(out.max() + 2)
    observed = np.bincount(out.astype(np.int64), minlength=ks.size).astype(float)
    expected = stats.poisson.pmf(ks, mu) * n
    expected[-1] += stats.poisson.sf(ks[-1], mu) * n
    keep = expected >= 20
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] < 20:
        obs[-2] += obs[-1]
        exp[-2] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert stats.chi2.sf(chi2, obs.size - 1) > 1e-4


def test_gaussian_path_total_variance():
    """Var = K·x + σ² + σ_row² + 1/12 for the Gaussian path with quantization (docs/model.md)."""
    k, sigma, row = 2.0, 3.0, 1.5
    x_dn = 400.0
    p = NoiseParams(k, read_model="gaussian", read_sigma_dn=sigma, row_sigma_dn=row)
    comps = NoiseComponents.only("shot", "read", "row")
    h, w = 2000, 500
    clean = np.full((h, w), x_dn / (SENSOR14.white_level_dn[0] - 512), np.float32)
    out = simulate(clean, p, SENSOR14, components=comps, output_unit="dn", rng=2).astype(np.float64)
    expected = k * x_dn + sigma**2 + row**2 + 1.0 / 12.0
    pix_var = k * x_dn + sigma**2 + 1.0 / 12.0
    se = np.sqrt(pix_var**2 * 2 / out.size + row**4 * 2 / h)  # pixel and row parts of the variance's error
    assert abs(out.var() - expected) < Z * se
    assert abs(out.mean() - (512 + x_dn)) < Z * np.sqrt(pix_var / out.size + row**2 / h)


@pytest.mark.parametrize("lam", [-0.2, -0.044, 0.0, 1e-9, 0.149, 0.3])
def test_tukey_samples_match_scipy(lam):
    """Read noise alone (no quantization, no dither): KS test against scipy's tukeylambda(λ, scale=σ_TL)."""
    scale = 2.0
    p = NoiseParams(1.0, tukey_lambda=lam, tukey_scale_dn=scale)
    comps = NoiseComponents.only("read", quantize=False, dither=False, clip=False)
    out = simulate(np.zeros((400, 500), np.float32), p, SENSOR16, components=comps, output_unit="dn", rng=9)
    x = out.ravel().astype(np.float64)
    assert stats.kstest(x, stats.tukeylambda(lam, scale=scale).cdf).pvalue > 1e-4
    # The scale identity: std = σ_TL · std(TukeyLambda(λ)).
    dist = stats.tukeylambda(lam)
    assert abs(x.std() - scale * dist.std()) < Z * var_se(x) / (2 * x.std())


def test_tukey_scale_reference_value():
    """docs/model.md: λ = 0.149, σ_TL = 0.70 gives std ≈ 1.01 DN."""
    p = NoiseParams(1.0, tukey_lambda=0.149, tukey_scale_dn=0.70)
    comps = NoiseComponents.only("read", quantize=False, dither=False, clip=False)
    x = simulate(np.zeros((500, 500), np.float32), p, SENSOR16, components=comps, output_unit="dn", rng=1).ravel().astype(float)
    assert abs(x.std() - 1.01) < 0.01 + Z * var_se(x) / (2 * x.std())


def test_dither_is_uniform_quantization_noise():
    comps = NoiseComponents.only(quantize=False, clip=False)
    out = simulate(np.full((300, 400), 100.0, np.float32), NoiseParams(1.0), SENSOR16, input_unit="electrons",
                   components=comps, output_unit="dn", rng=4).ravel().astype(float)
    assert out.min() >= 99.5 and out.max() <= 100.5
    assert abs(out.var() - 1 / 12) < Z * np.sqrt((1 / 80 - 1 / 144) / out.size)  # U(−½, ½): μ₄ = 1/80


@pytest.mark.parametrize("per_channel", [False, True])
def test_row_noise_in_row_means_not_column_means(per_channel):
    sigma = 2.0
    h, w = 1000, 800
    p = NoiseParams(1.0, row_sigma_dn=sigma)
    comps = NoiseComponents.only("row", quantize=False, dither=False, clip=False, row_per_channel=per_channel)
    out = simulate(np.zeros((h, w), np.float32), p, SENSOR16, components=comps, output_unit="dn", rng=6).astype(float)
    if per_channel:
        # each (row, column phase) has its own offset: the two phases of a row differ
        even, odd = out[:, 0::2].mean(axis=1), out[:, 1::2].mean(axis=1)
        assert abs(np.var(even - odd) - 2 * sigma**2) < Z * 2 * sigma**2 * np.sqrt(2 / h)
        row_means = even
    else:
        row_means = out.mean(axis=1)
        np.testing.assert_allclose(out, row_means[:, None] * np.ones((1, w)), atol=1e-4)
    assert abs(row_means.var() - sigma**2) < Z * sigma**2 * np.sqrt(2 / h)
    col_means = out.mean(axis=0)
    assert col_means.var() < sigma**2 / h * (1 + Z * np.sqrt(2 / w))  # only the average of h row offsets


def test_column_noise_in_column_means():
    sigma = 1.5
    h, w = 600, 1000
    p = NoiseParams(1.0, col_sigma_dn=sigma)
    comps = NoiseComponents.only("column", quantize=False, dither=False, clip=False)
    out = simulate(np.zeros((h, w), np.float32), p, SENSOR16, components=comps, output_unit="dn", rng=6).astype(float)
    col = out.mean(axis=0)
    assert abs(col.var() - sigma**2) < Z * sigma**2 * np.sqrt(2 / w)
    assert out.mean(axis=1).var() < sigma**2 / w * (1 + Z * np.sqrt(2 / h))


def test_prnu_scales_with_signal_dsnu_does_not():
    rng = np.random.default_rng(0)
    h, w = 256, 256
    prnu_std, dsnu_std = 0.02, 3.0
    maps = FixedPatternMaps(
        prnu=rng.normal(0, prnu_std, (h, w)).astype(np.float32),
        dark_shading_k_dn_per_iso=np.zeros((h, w), np.float32),
        dark_shading_b_dn=rng.normal(0, dsnu_std, (h, w)).astype(np.float32),
    )
    comps = NoiseComponents.only("prnu", "dark_shading", quantize=False, dither=False, clip=False)
    p = NoiseParams(1.0, iso=100)

    def frame(level_e):
        return simulate(np.full((h, w), level_e, np.float32), p, SENSOR16, input_unit="electrons",
                        components=comps, maps=maps, output_unit="dn").astype(np.float64)

    dark = frame(0.0)
    np.testing.assert_allclose(dark, maps.dark_shading_b_dn, atol=1e-3)  # DSNU: present with no signal
    for level in (1000.0, 4000.0):
        signal_part = frame(level) - dark
        # PRNU: relative spread of the signal part is the map's spread, whatever the level
        np.testing.assert_allclose(signal_part / level - 1.0, maps.prnu, atol=1e-5)
        assert abs((frame(level) - level - dark).std() / level - maps.prnu.std()) < 1e-5


def test_black_level_error_and_dark_current():
    ble = (1.5, -0.5, 0.25, 2.0)
    p = NoiseParams(1.0, black_level_error_dn=ble, dark_current_e_per_s=20.0, exposure_s=0.5)
    comps = NoiseComponents.only("shot", "black_level_error", "dark_current", quantize=False, dither=False)
    out = simulate(np.zeros((400, 400), np.float32), p, SENSOR14, components=comps, output_unit="dn", rng=8)
    packed = SENSOR14.cfa.pack(out).astype(np.float64)  # R, G1, G2, B
    n = packed[0].size
    for c in range(4):
        x = packed[c] - 512.0 - ble[c]
        assert abs(x.mean() - 10.0) < Z * np.sqrt(10.0 / n)  # dark shot: Poisson(I·t)
        assert abs(x.var() - 10.0) < Z * np.sqrt((10.0 + 2 * 100.0) / n)


def test_clipping_and_clip_at_black():
    p = NoiseParams(2.0, read_model="gaussian", read_sigma_dn=20.0)
    out = simulate(np.full((64, 64), 0.0, np.float32), p, SENSOR14, output_unit="dn", rng=1)
    assert out.min() < 512 - 20  # clipped at 0 DN only: below-black values survive
    out = simulate(np.full((64, 64), 0.0, np.float32), p, SENSOR14, output_unit="dn", rng=1,
                   components=NoiseComponents(clip_at_black=True))
    assert out.min() == 512
    out = simulate(np.full((64, 64), 1.5, np.float32), p, SENSOR14, output_unit="dn", rng=1)
    assert out.max() == 16383


def test_hot_pixels_switch():
    h, w = 64, 64
    b = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), bool)
    b[10, 10] = 500.0
    mask[10, 10] = True
    maps = FixedPatternMaps(dark_shading_k_dn_per_iso=np.zeros((h, w), np.float32), dark_shading_b_dn=b, hot_pixel_mask=mask)
    p = NoiseParams(1.0, iso=100)
    comps = NoiseComponents.only("dark_shading", "hot_pixels")
    on = simulate(np.zeros((h, w), np.float32), p, SENSOR14, components=comps, maps=maps, output_unit="dn")
    off = simulate(np.zeros((h, w), np.float32), p, SENSOR14, components=NoiseComponents.only("dark_shading"), maps=maps, output_unit="dn")
    assert on[10, 10] == 1012 and off[10, 10] == 512


def test_units_layouts_and_dtypes_agree():
    rng = np.random.default_rng(3)
    p = NoiseParams(1.7, tukey_lambda=0.1, tukey_scale_dn=2.0, row_sigma_dn=0.5)
    y = rng.uniform(0, 0.8, (64, 96)).astype(np.float32)
    dn = (y * (16383 - 512) + 512).astype(np.float32)
    a = simulate(y, p, SENSOR14, ratio=4, rng=1, output_unit="dn")
    b = simulate(dn, p, SENSOR14, ratio=4, rng=1, output_unit="dn", input_unit="dn")
    # the same expected signal up to float rounding: (nearly) every pixel identical
    assert np.mean(a == b) > 0.999
    u16 = simulate(y, p, SENSOR14, ratio=4, rng=1, output_unit="dn", dtype=np.uint16)
    assert u16.dtype == np.uint16
    np.testing.assert_array_equal(u16, a.astype(np.uint16))
    norm = simulate(y, p, SENSOR14, ratio=4, rng=1)
    np.testing.assert_allclose(norm, (a - 512) / (16383 - 512), atol=1e-6)
    packed = simulate(SENSOR14.cfa.pack(y), p, SENSOR14, ratio=4, rng=1, output_unit="dn")
    np.testing.assert_array_equal(packed, SENSOR14.cfa.pack(a))


def test_mean_signal_follows_ratio():
    """E[D − B] = y·(W − B)/r (docs/model.md), here with shot + read + quantization."""
    p = NoiseParams(1.2, tukey_lambda=0.05, tukey_scale_dn=2.0)
    y, r = 0.5, 50.0
    out = simulate(np.full((300, 400), y, np.float32), p, SENSOR14, ratio=r, output_unit="dn", rng=2).astype(float)
    x_dn = y * (16383 - 512) / r
    sd = np.sqrt(1.2 * x_dn + (2.0 * stats.tukeylambda(0.05).std()) ** 2 + 1 / 12)
    assert abs(out.mean() - 512 - x_dn) < Z * sd / np.sqrt(out.size)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(clean=np.zeros((63, 64))), ShapeError, "multiples of 2"),
        (dict(clean=np.zeros((3, 32, 32))), ShapeError, r"\(4, H/2, W/2\)"),
        (dict(ratio=0.5), ParameterError, "ratio"),
        (dict(input_unit="photons"), ParameterError, "input_unit"),
        (dict(dtype=np.uint16), ParameterError, "uint16"),
        (dict(origin=(1, 0)), ShapeError, "origin"),
        (dict(clean=np.full((64, 64), np.nan)), ParameterError, "NaN"),
        (dict(maps=FixedPatternMaps(prnu=np.zeros((32, 32)))), ShapeError, "does not cover"),
        (dict(maps=FixedPatternMaps(dark_shading_k_dn_per_iso=np.zeros((64, 64)), dark_shading_b_dn=np.zeros((64, 64)))),
         ParameterError, "iso"),
    ],
)
def test_bad_input_errors(kwargs, exc, match):
    args = dict(clean=np.zeros((64, 64), np.float32), params=NoiseParams(1.0), sensor=SENSOR14)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        simulate(args.pop("clean"), args.pop("params"), args.pop("sensor"), **args)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("backend,parallel", [("numba", False), ("numba", True), ("numpy", None)])
def test_one_non_finite_clean_value_is_refused_by_every_kernel(bad, backend, parallel):
    # the kernels count non-finite clean values as they read them (no separate pass): a single one anywhere,
    # in any row task of the threaded kernel, with or without shot noise, is refused
    for y, x, components in [(0, 0, NoiseComponents()), (97, 61, NoiseComponents()), (127, 63, NoiseComponents.only("read"))]:
        clean = np.full((128, 64), 0.25, np.float32)
        clean[y, x] = bad
        with pytest.raises(ParameterError, match=r"NaN or infinite values \(1 of 8192\)"):
            simulate(clean, NoiseParams(1.0, read_sigma_dn=1.0), SENSOR14, components=components, rng=0, backend=backend,
                     parallel=parallel)


def test_parameter_validation():
    with pytest.raises(ParameterError, match="gain_k_dn_per_e"):
        NoiseParams(0.0)
    with pytest.raises(ParameterError, match="read_sigma_dn"):
        NoiseParams(1.0, read_sigma_dn=-1)
    with pytest.raises(ParameterError, match="tukey_lambda"):
        NoiseParams(1.0, tukey_lambda=1.5)
    with pytest.raises(ParameterError, match="read_model"):
        NoiseParams(1.0, read_model="poisson")
    with pytest.raises(ParameterError, match="black < white"):
        Sensor("RGGB", 12, 5000, 4095)
    with pytest.raises(ParameterError, match="bit_depth"):
        Sensor("RGGB", 17)
    assert NoiseParams.from_dict(NoiseParams(1.5, iso=100).to_dict()) == NoiseParams(1.5, iso=100)


def test_one_tukey_quantile_definition_agrees_with_scipy():
    """noisesim.stats is the one Tukey-λ quantile: scipy's ppf, no loss of precision near λ = 0 (issue 10)."""
    from noisesim import kernels, stats as ns_stats

    assert kernels.TUKEY_LOGISTIC_EPS == ns_stats.TUKEY_LOGISTIC_EPS
    u = np.array([1e-6, 0.1, 0.5, 0.9, 1 - 1e-6])
    for lam in (-0.3, -0.04, 0.0, 1e-10, 1e-8, 0.149, 0.5):
        np.testing.assert_allclose(ns_stats.tukey_lambda_ppf(u, lam), stats.tukeylambda.ppf(u, lam), rtol=1e-9, atol=1e-12)
    # Small λ: Q_λ(u) = logit(u) + λ/2 · (log²u − log²(1 − u)) + O(λ²). The power form (u^λ − (1 − u)^λ)/λ
    # that calibration used (with its own 1e-9 threshold) is off by ~1e-8 relative at λ = 2e-9.
    lam = 2e-9
    series = np.log(u) - np.log1p(-u) + lam / 2 * (np.log(u) ** 2 - np.log1p(-u) ** 2)
    np.testing.assert_allclose(ns_stats.tukey_lambda_ppf(u[[0, 1, 3, 4]], lam), series[[0, 1, 3, 4]], rtol=1e-12)
    assert abs(ns_stats.tukey_lambda_std(0.0) - math.pi / math.sqrt(3)) < 1e-12
    assert ns_stats.tukey_lambda_std(-0.5) == math.inf and ns_stats.tukey_lambda_std(-0.7) == math.inf
    for lam in (-0.2, 0.05, 0.14, 0.5):
        assert ns_stats.tukey_lambda_std(lam) == pytest.approx(stats.tukeylambda.std(lam), rel=1e-12)
