"""Per-pixel read noise: simulated with each pixel's own σ, and recovered from 32 darks (issue 13 item 3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import noisesim as ns
from noisesim.calibration.pixel_noise import read_sigma_scale_map, sigma_relative_se
from noisesim.params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor

SENSOR = Sensor(cfa="RGGB", bit_depth=14, black_level_dn=512, white_level_dn=16383)
READ = NoiseComponents.only("read")
PER_PIXEL = NoiseComponents.only("read", per_pixel_read=True)


def heavy_tailed_scale(shape, *, frac_noisy=0.02, seed=0):
    """Median-1 scales: a narrow log-normal bulk and a few pixels 3–6× noisier (random telegraph noise)."""
    g = np.random.default_rng(seed)
    s = np.exp(g.normal(0.0, 0.1, shape))
    noisy = g.random(shape) < frac_noisy
    s[noisy] = g.uniform(3.0, 6.0, noisy.sum())
    return s.astype(np.float32), noisy


def stack(params, maps, comps, n, shape, seed=1):
    clean = np.zeros(shape, np.float32)
    return np.stack([ns.simulate(clean, params, SENSOR, output_unit="dn", components=comps, maps=maps, rng=seed,
                                 frame_index=i) for i in range(n)])


def test_each_pixel_gets_its_own_sigma():
    shape = (32, 32)
    scale = np.ones(shape, np.float32)
    scale[::4, ::4] = 4.0
    maps = FixedPatternMaps(read_sigma_scale=scale)
    p = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=5.0)
    n = 400
    frames = stack(p, maps, NoiseComponents.only("read", per_pixel_read=True, quantize=False, dither=False), n, shape)
    sd = frames.std(axis=0, ddof=1)
    rse = sigma_relative_se(n)
    assert abs(np.median(sd[scale == 4.0]) / 20.0 - 1) < 5 * rse / np.sqrt((scale == 4).sum())
    assert abs(np.median(sd[scale == 1.0]) / 5.0 - 1) < 5 * rse
    # the option is off by default, and without a map the single σ applies
    plain = stack(p, maps, NoiseComponents.only("read", quantize=False, dither=False), 50, shape).std(axis=0)
    assert plain[scale == 4.0].mean() < 6.5


def test_per_pixel_tukey_shape_and_crop_identity():
    shape = (64, 64)
    scale = np.full(shape, 2.0, np.float32)
    maps = FixedPatternMaps(read_sigma_scale=scale)
    lam, s_tl = -0.05, 1.5
    p = NoiseParams(gain_k_dn_per_e=1.0, read_model="tukey", tukey_lambda=lam, tukey_scale_dn=s_tl)
    comps = NoiseComponents.only("read", per_pixel_read=True, quantize=False, dither=False, clip=False)
    full = ns.simulate(np.zeros(shape, np.float32), p, SENSOR, output_unit="dn", components=comps, maps=maps, rng=3)
    z = (full.ravel() - 512.0) / (2.0 * s_tl)
    assert stats.kstest(z, stats.tukeylambda(lam).cdf).pvalue > 1e-3
    crop = ns.simulate(np.zeros((16, 32), np.float32), p, SENSOR, output_unit="dn", components=comps, maps=maps, rng=3,
                       origin=(8, 16))
    assert np.array_equal(crop, full[8:24, 16:48])


def test_heavy_tailed_sigma_map_recovered_from_32_darks():
    shape = (128, 128)
    truth, noisy = heavy_tailed_scale(shape)
    sigma = 3.0
    p = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=sigma)
    n = 32
    frames = stack(p, FixedPatternMaps(read_sigma_scale=truth), PER_PIXEL, n, shape)
    res = read_sigma_scale_map(frames.var(axis=0, ddof=1), n, SENSOR.cfa, quantized=True)
    # what a perfect estimator gives from 32 frames: truth × sqrt(χ²_{N−1}/(N−1))
    g = np.random.default_rng(5)
    expected = sigma * truth.ravel() * np.sqrt(g.chisquare(n - 1, truth.size) / (n - 1))
    assert stats.ks_2samp(res.sigma_dn.ravel(), expected).pvalue > 1e-3
    # the model without the tail is rejected by the same test
    assert stats.ks_2samp(res.sigma_dn.ravel(), sigma * np.sqrt(g.chisquare(n - 1, truth.size) / (n - 1))).pvalue < 1e-6
    found = res.noisy_pixel_mask
    assert found[noisy].mean() > 0.95
    assert found[~noisy].mean() < 0.005
    assert abs(np.median(res.scale) - 1) < 0.01


def test_no_temporal_noise_is_refused():
    with pytest.raises(ValueError, match="no per-pixel read σ map"):
        read_sigma_scale_map(np.zeros((8, 8)), 16, SENSOR.cfa, quantized=False)


def test_calibrate_stores_the_per_pixel_sigma_map_in_the_card_maps():
    from noisesim.calibration import calibrate
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames

    shape = (64, 64)
    truth, noisy = heavy_tailed_scale(shape, frac_noisy=0.03, seed=2)
    params = {iso: NoiseParams(gain_k_dn_per_e=k, read_model="gaussian", read_sigma_dn=s, iso=iso)
              for iso, k, s in ((800, 0.8, 3.0), (1600, 1.6, 5.0), (3200, 3.2, 8.0))}
    frames = synthetic_frames(params, SENSOR, shape, SyntheticSpec(n_darks=32), rng=4,
                              maps=FixedPatternMaps(read_sigma_scale=truth),
                              components=NoiseComponents(per_pixel_read=True))
    res = calibrate(frames, "Test Cam", fidelity=False)
    est = res.card.maps.read_sigma_scale
    assert est is not None and est.shape == shape
    # averaged over 3 ISOs × 32 darks: relative SE ≈ 1/√(2·31·3) ≈ 7 %
    rel_se = sigma_relative_se(32) / np.sqrt(3)
    bulk = ~noisy
    assert abs(np.median(est[bulk] / truth[bulk]) - 1) < 0.02
    assert np.std(est[bulk] / truth[bulk]) < 1.5 * rel_se + 0.02
    assert np.corrcoef(est.ravel(), truth.ravel())[0, 1] > 0.95
    assert all(r.noisy_read_pixels >= 0.9 * noisy.sum() for r in res.iso_results)


def test_row_noise_that_swamps_the_per_pixel_variance_leaves_the_map_out_with_a_warning():
    # 6 darks, row σ 4 DN over read σ 1 DN: the per-pixel variances (5 degrees of freedom) scatter by more
    # than σ²_read, so the site median of σ²_pix − σ²_row is 0. calibrate() crashed with a bare ValueError.
    from noisesim.calibration import calibrate
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames

    params = {800: NoiseParams(gain_k_dn_per_e=0.8, read_model="gaussian", read_sigma_dn=1.0, row_sigma_dn=4.0, iso=800),
              1600: NoiseParams(gain_k_dn_per_e=1.6, read_model="gaussian", read_sigma_dn=3.0, row_sigma_dn=0.2, iso=1600)}
    frames = synthetic_frames(params, SENSOR, (64, 64), SyntheticSpec(n_darks=6), rng=5)
    res = calibrate(frames, "Test Cam", fidelity=False)
    assert any(w.startswith("ISO 800: no per-pixel read σ map") and "6 darks" in w for w in res.warnings)
    assert not any(w.startswith("ISO 1600: no per-pixel read σ map") for w in res.warnings)
    assert [e.iso for e in res.card.iso_table] == [800, 1600]  # every other figure is still measured
