"""Unbiased PRNU and fixed-pattern maps that reproduce the sensor (issue 7 items 4 and 5).

A synthetic ISO 3200 sensor with dark shading, 0.8 % PRNU and hot pixels bright enough to clip in mid-level
flats is calibrated from 8 (and 32) darks; then frames simulated from the card *with its maps* are analysed
with the EMVA 1288 spatial statistics (temporal variance of the averaged stack subtracted), and must give
back the card's own DSNU1288 and PRNU1288.
"""

import math

import numpy as np
import pytest

from noisesim.calibration.pipeline import calibrate
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames
from noisesim.cfa import CFA
from noisesim.noise import simulate
from noisesim.params import FixedPatternMaps, NoiseParams, Sensor
from noisesim.sampling import sample_params

SENSOR = Sensor("RGGB", 14, (512,) * 4, 16383)
SHAPE = (256, 256)
ISO = 3200
PARAMS = NoiseParams(3.06, "tukey", 3.92, 0.10, 2.04, 0.45, 0.0, (0.5, 0.0, -0.3, 0.2))
PRNU_TRUE = 0.008


def sensor_maps(seed=1):
    g = np.random.default_rng(seed)
    b = g.normal(0, 1.5, SHAPE).astype(np.float32)
    hot = np.zeros(SHAPE, bool)
    hot.ravel()[g.choice(b.size, 40, replace=False)] = True
    b[hot] += 9000.0  # clips in every flat above ≈ 40 % of the range
    return FixedPatternMaps(np.zeros(SHAPE, np.float32), b, prnu=g.normal(0, PRNU_TRUE, SHAPE).astype(np.float32),
                            hot_pixel_mask=hot)


@pytest.fixture(scope="module", params=[8, 32], ids=["8darks", "32darks"])
def calibrated(request):
    maps = sensor_maps()
    frames = synthetic_frames({ISO: PARAMS}, SENSOR, SHAPE, SyntheticSpec(n_darks=request.param), maps=maps, rng=7)
    res = calibrate(frames, "Test Cam", fidelity=False)
    return res, maps, request.param


def _within(est, truth, what):
    tol = max(0.03 * abs(truth), 3 * est.se)
    assert abs(est.value - truth) <= tol, f"{what}: {est.value:.5g} vs {truth:.5g} (SE {est.se:.2g}, tolerance {tol:.2g})"


def test_prnu_unbiased_with_few_darks_and_clipping_hot_pixels(calibrated):
    """Before: the dark mean's σ²_d/N stayed in (+11 % with 8 darks) and every pair with a clipped hot pixel
    was dropped (+137…+196 % at ISO 3200)."""
    res, maps, n = calibrated
    r = res.iso_results[0]
    cfa = CFA("RGGB")
    good = ~cfa.pack(maps.hot_pixel_mask)
    truth = [float(p[g].std()) for p, g in zip(cfa.pack(maps.prnu), good)]
    assert r.prnu_frames >= 10  # the mid-level pairs with clipped hot pixels are in
    for c, (e, t) in enumerate(zip(r.prnu, truth)):
        _within(e, t, f"{n} darks, PRNU of {r.channel_names[c]}")


def emva_spatial(card, iso, *, n_frames=32, level=0.5, seed=5):
    """DSNU1288 [DN] and PRNU1288 [relative] per packed channel of frames simulated from ``card`` with its maps.

    s²_y = spatial variance of the frame-averaged stack − (mean per-pixel temporal variance)/L (EMVA 1288 §8),
    hot pixels of the card excluded; PRNU1288 = √(s²_y.50 − s²_y.dark) / (μ_y.50 − μ_y.dark).
    """
    p = sample_params(card, iso=iso, scatter=False)
    cfa = card.sensor.cfa
    good = ~cfa.pack(card.maps.hot_pixel_mask)

    def stack(v):
        x = np.stack([cfa.pack(simulate(np.full(SHAPE, v, np.float32), p, card.sensor, output_unit="dn", dtype=np.float32,
                                        maps=card.maps, rng=seed, frame_index=i + (0 if v == 0 else 10_000)))
                      for i in range(n_frames)]).astype(np.float64)
        mean, tvar = x.mean(axis=0), x.var(axis=0, ddof=1)
        mu = np.array([mean[c][good[c]].mean() for c in range(cfa.n_channels)])
        s2 = np.array([mean[c][good[c]].var() - tvar[c][good[c]].mean() / n_frames for c in range(cfa.n_channels)])
        return mu, s2

    mu_d, s2_d = stack(0.0)
    mu_f, s2_f = stack(level)
    return np.sqrt(s2_d), np.sqrt(s2_f - s2_d) / (mu_f - mu_d)


def test_maps_reproduce_the_cards_dsnu_and_prnu(calibrated):
    """Before: Wiener-shrunk maps gave 6–40 % less DSNU and 40–63 % less PRNU than the card's own figures."""
    res, _, n = calibrated
    r = res.iso_results[0]
    dsnu, prnu = emva_spatial(res.card, ISO)
    for c in range(4):
        _within(r.dsnu_dn[c], dsnu[c], f"{n} darks, DSNU1288 of {r.channel_names[c]} simulated from the card")
        _within(r.prnu[c], prnu[c], f"{n} darks, PRNU1288 of {r.channel_names[c]} simulated from the card")


def test_denoised_maps_stay_an_option():
    shape = (128, 128)
    ds = np.random.default_rng(3).normal(0, 1.5, shape).astype(np.float32)
    frames = synthetic_frames({ISO: PARAMS}, SENSOR, shape, SyntheticSpec(n_darks=8),
                              maps=FixedPatternMaps(np.zeros(shape, np.float32), ds), rng=8)
    plain = calibrate(frames, "A B", fidelity=False)
    wiener = calibrate(frames, "A B", fidelity=False, denoise_maps=True)
    sp = float(plain.card.maps.dark_shading_b_dn.std())
    sw = float(wiener.card.maps.dark_shading_b_dn.std())
    d = math.sqrt(np.mean([e.value**2 for e in plain.iso_results[0].dsnu_dn]))
    assert sp == pytest.approx(d, rel=0.02) and sw < 0.9 * sp


def test_calibration_builds_its_card_without_compressing_the_maps(tmp_path, monkeypatch):
    """The in-memory card of a calibration carries its maps uncompressed; they are compressed (and
    checksummed) once, when the card is saved (issue 12: 31 % of a 12 MP calibration went there)."""
    import noisesim.card as card_mod

    calls = []
    real = card_mod._npz_bytes
    monkeypatch.setattr(card_mod, "_npz_bytes", lambda maps: calls.append(1) or real(maps))
    frames = synthetic_frames({800.0: PARAMS}, SENSOR, (32, 48), SyntheticSpec(n_darks=8, flat_levels=(0.05, 0.2, 0.5)), rng=3)
    res = calibrate(frames, "Test Camera", fidelity=False)
    assert res.card.maps is not None and res.card.maps_sha256 is None
    assert calls == []
    res.save(tmp_path / "card.toml")
    assert calls == [1] and (tmp_path / "card_maps.npz").is_file()


def _per_iso_ds_results(isos, *, noise_dn, shape=(128, 128), seed=5):
    """Per-ISO results as the pipeline makes them: the true DS = k·ISO + b plus the N-averaged temporal noise,
    scaled per channel to variance DSNU² (the true per-ISO DSNU, known exactly here)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    cfa = CFA("RGGB")
    b_true = rng.normal(0, 1.5, shape).astype(np.float32)
    k_true = rng.normal(0, 4e-4, shape).astype(np.float32)
    out, truth = [], {}
    for iso in isos:
        ds = k_true * np.float32(iso) + b_true
        truth[iso] = [float(x.std()) for x in cfa.pack(ds)]
        packed = cfa.pack(ds + rng.normal(0, noise_dn, shape).astype(np.float32)).astype(np.float64)
        for c in range(4):
            packed[c] -= packed[c].mean()
            packed[c] *= truth[iso][c] / packed[c].std()
        out.append(SimpleNamespace(iso=float(iso), ds_map_dn=cfa.unpack(packed.astype(np.float32)), hot_mask=np.zeros(shape, bool),
                                   channel_names=("R", "G1", "G2", "B"), dsnu_dn=[SimpleNamespace(value=v) for v in truth[iso]],
                                   prnu_map=None, read_sigma_scale=None, maps_denoised=False))
    return out, truth


@pytest.mark.parametrize("isos", [(800, 1600, 3200), (800, 1600, 3200, 6400)])
def test_joint_dark_shading_keeps_each_isos_dsnu(isos):
    # the least-squares line through ≥ 3 noisy per-ISO maps averages part of their noise away: with the old
    # fit the card reproduced DSNU 5-15 % low at the inner ISOs. The per-ISO DSNU of this construction is an
    # exact quadratic in ISO, so the match is exact up to float32 rounding
    from noisesim.calibration.card_builder import build_maps

    rs, truth = _per_iso_ds_results(isos, noise_dn=1.5)
    maps = build_maps(rs)
    cfa = CFA("RGGB")
    for iso in isos:
        got = [float(x.std()) for x in cfa.pack(maps.dark_shading_dn(iso))]
        np.testing.assert_allclose(got, truth[iso], rtol=2e-3, err_msg=f"ISO {iso}")
