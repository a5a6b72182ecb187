"""simulate(clean, card=card, iso=…): the common path applies the card's fixed-pattern maps (issue 11 item 2)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import noisesim as ns
from noisesim.card import save_card
from noisesim.cli import main
from noisesim.errors import ParameterError
from noisesim.params import FixedPatternMaps

from test_card import make_card  # tests/ is on sys.path (pytest rootdir import mode)

SHAPE = (512, 512)
DSNU_SIGMA_DN = 2.0


def card_with_dsnu():
    """The test card (ISO 100: K 0.25, σ_TL 1.1, λ 0.12, row 0.2, column 0.05 DN) with a 2 DN DSNU map."""
    g = np.random.default_rng(5)
    maps = FixedPatternMaps(dark_shading_k_dn_per_iso=np.zeros(SHAPE, np.float32),
                            dark_shading_b_dn=g.normal(0, DSNU_SIGMA_DN, SHAPE).astype(np.float32))
    return make_card(joint=None).with_maps(maps)


def tukey_variance(lam: float) -> float:
    """Variance of the standard Tukey-lambda distribution (closed form, λ > −½, λ ≠ 0)."""
    return 2 / lam**2 * (1 / (1 + 2 * lam) - math.gamma(lam + 1) ** 2 / math.gamma(2 * lam + 2))


def channel_variance(frame, cfa):
    """Mean over colour sites of the spatial variance of a dark frame (removes the per-site black levels)."""
    return float(np.mean([np.var(c.astype(np.float64)) for c in cfa.pack(frame)]))


def test_card_path_applies_the_maps_and_matches_the_true_dark_noise():
    card = card_with_dsnu()
    dark = np.zeros(SHAPE, np.float32)
    noisy = ns.simulate(dark, card=card, iso=100, output_unit="dn", rng=0)
    p = ns.sample_params(card, iso=100)
    ds = card.maps.dark_shading_dn(100)
    dsnu_var = channel_variance(ds, card.sensor.cfa)
    temporal_var = p.tukey_scale_dn**2 * tukey_variance(p.tukey_lambda) + p.row_sigma_dn**2 + p.col_sigma_dn**2 + 1 / 12  # + rounding
    truth = dsnu_var + temporal_var
    got = channel_variance(noisy, card.sensor.cfa)
    n = noisy.size / 4  # pixels per site; variance of a variance estimate ≈ 2σ⁴/n
    assert abs(got - truth) < 5 * truth * math.sqrt(2 / n), (got, truth)
    # the README's old path dropped the maps: the dark std falls to the temporal part alone, with a warning
    with pytest.warns(UserWarning, match="without the card's fixed-pattern maps"):
        without = ns.simulate(dark, p, card.sensor, output_unit="dn", rng=0)
    assert abs(channel_variance(without, card.sensor.cfa) - temporal_var) < 5 * temporal_var * math.sqrt(2 / n)
    assert dsnu_var > 20 * temporal_var * math.sqrt(2 / n)  # so the two cannot be confused


def test_card_path_is_sample_first_apply_second_with_the_cli_seeding(tmp_path):
    card = card_with_dsnu()
    clean = np.random.default_rng(1).uniform(0, 1, SHAPE).astype(np.float32)
    a = ns.simulate(clean, card=card, iso=400, ratio=10, rng=7, output_unit="dn", dtype=np.uint16)
    s_params, s_noise = np.random.SeedSequence(7).spawn(2)
    params = ns.sample_params(card, iso=400, rng=s_params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # maps given: no warning
        b = ns.simulate(clean, params, card.sensor, maps=card.maps, ratio=10, rng=s_noise, output_unit="dn", dtype=np.uint16)
        c = ns.simulate(clean, params, card=card, ratio=10, rng=s_noise, output_unit="dn", dtype=np.uint16)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    # and the command line gives the same frame for the same seed
    path = save_card(card, tmp_path / "cam.toml")
    np.save(tmp_path / "clean.npy", clean)
    assert main(["simulate", "--card", str(path), "--iso", "400", "--ratio", "10", "--seed", "7",
                 "--input", str(tmp_path / "clean.npy"), "--output", str(tmp_path / "noisy.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "noisy.npy"), a)
    # a SeedSequence given twice gives the same frame (it is not advanced)
    ss = np.random.SeedSequence(7)
    np.testing.assert_array_equal(ns.simulate(clean, card=card, iso=400, ratio=10, rng=ss, output_unit="dn", dtype=np.uint16), a)


def test_no_warning_without_maps_or_when_left_out_knowingly():
    clean = np.zeros((8, 8), np.float32)
    plain = make_card()
    params = ns.sample_params(plain, iso=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ns.simulate(clean, params, plain.sensor, rng=0)  # a card without maps
        card = card_with_dsnu()
        ns.simulate(np.zeros(SHAPE, np.float32), params, card.sensor, maps=FixedPatternMaps(), rng=0)
        ns.simulate(clean, params, card.with_maps(None).sensor, rng=0)
    assert card.sensor == plain.sensor  # the marker is not part of the sensor's identity


def test_card_path_errors():
    card = make_card()
    clean = np.zeros((8, 8), np.float32)
    with pytest.raises(ParameterError, match="card="):
        ns.simulate(clean)
    with pytest.raises(ParameterError, match="not both"):
        ns.simulate(clean, ns.sample_params(card, iso=100), card=card, iso=100)
    with pytest.raises(ParameterError, match="without a card"):
        ns.simulate(clean, ns.sample_params(card, iso=100), card.sensor, iso=100)
