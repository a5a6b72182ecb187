"""Every shipped card loads, samples and simulates; the PMN-derived cards (IMX686, CRVD, SonyA7S2's per-ISO
table, ISO 50–25600) hold their source numbers exactly; NikonD850 follows ELD's released sampler (Profile-1 only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from noisesim import simulate
from noisesim.card import list_cards, load_card
from noisesim.sampling import sample_params

REPO = Path(__file__).resolve().parents[1]
PMN = json.loads((REPO / "data_cards" / "sources" / "pmn_released_camera_params.json").read_text())
ELD = json.loads((REPO / "data_cards" / "sources" / "eld_released_camera_params.json").read_text())


@pytest.mark.parametrize("name", list_cards())
def test_every_shipped_card_loads_samples_and_simulates(name):
    card = load_card(name)
    p = sample_params(card, iso=card.isos[-1]) if card.isos else sample_params(card, rng=1)
    clean = np.full((64, 64), 0.1, np.float32)
    noisy = simulate(clean, p, card.sensor, ratio=10, rng=2)
    assert noisy.shape == clean.shape and np.all(np.isfinite(noisy)) and noisy.std() > 0
    r = sample_params(card, rng=3)  # a random K over the card's range
    assert card.k_range_dn_per_e[0] <= r.gain_k_dn_per_e <= card.k_range_dn_per_e[1]


def _fit_equals(fit, model, prefix):
    assert (fit.slope, fit.intercept, fit.residual_std) == (model[f"{prefix}k"], model[f"{prefix}b"], model[f"{prefix}sig"])


def _joint_equals(card, model):
    j = card.joint
    assert (j.k_min_dn_per_e, j.k_max_dn_per_e) == (math.exp(model["Kmin"]), math.exp(model["Kmax"]))
    assert j.tukey_lambda_values == (model["lam"],)
    (p,) = j.profiles
    _fit_equals(p.tukey_scale_dn, model, "sigTL")
    _fit_equals(p.read_sigma_dn, model, "sigGs")
    _fit_equals(p.row_sigma_dn, model, "sigR")
    s = card.sensor
    assert s.black_level_dn == (model["bl"],) * 4 and s.white_level_dn == (model["wp"],) * 4
    assert 2 ** -s.bit_depth == model["q"]


def test_imx686_matches_pmn_exactly():
    card = load_card("IMX686")
    _joint_equals(card, PMN["joint_models"]["IMX686"])
    assert card.sensor.bit_depth == 10 and card.isos == (100.0, 6400.0)
    e, src = card.iso_entry(6400), PMN["per_iso"]["IMX686_6400"]
    assert (e.gain_k_dn_per_e, e.tukey_lambda, e.tukey_scale_dn, e.read_sigma_dn, e.row_sigma_dn) == (
        src["Kmax"], src["lam"], src["sigTL"], src["sigGs"], src["sigR"])
    assert e.black_level_error_dn == (src["bias"],) * 4
    lo, pt = card.iso_entry(100), PMN["fixed_iso_points"]["IMX686"]["100"]
    assert (lo.gain_k_dn_per_e, lo.read_sigma_dn) == (pt["K"], pt["sigGs"])
    notes = " ".join(card.provenance["notes"])
    assert "UNSOURCED at ISO 100" in notes and "UNSOURCED: CFA" in notes


def test_crvd_matches_pmn_exactly():
    card = load_card("CRVD")
    _joint_equals(card, PMN["joint_models"]["CRVD"])
    pts = PMN["CRVD_points"]
    assert card.sensor.bit_depth == 12 and card.isos == tuple(float(i) for i in pts["iso_list"])
    for e, k, var, bias in zip(card.iso_table, pts["a_list"], pts["b_list"], pts["bias_points"]):
        assert (e.gain_k_dn_per_e, e.read_sigma_dn, e.black_level_error_dn) == (k, math.sqrt(var), (bias,) * 4)
    assert "UNSOURCED per row" in " ".join(card.provenance["notes"])


def test_sony_table_has_all_pmn_isos_exactly():
    card = load_card("SonyA7S2")
    entries = {int(k.split("_")[1]): v for k, v in PMN["per_iso"].items() if k.startswith("SonyA7S2_")}
    assert len(entries) >= 27 and card.isos == tuple(float(i) for i in sorted(entries))
    for e in card.iso_table:
        src = entries[int(e.iso)]
        assert (e.gain_k_dn_per_e, e.tukey_lambda, e.tukey_scale_dn, e.read_sigma_dn, e.row_sigma_dn) == (
            src["Kmax"], src["lam"], src["sigTL"], src["sigGs"], src["sigR"])
    # dual gain: the read noise drops between ISO 1600 and 2000, the first high-gain ISO
    assert card.joint.dual_gain_switch_iso == 2000
    assert card.iso_entry(2000).tukey_scale_dn < card.iso_entry(1600).tukey_scale_dn / 2
    assert card.joint.k_max_dn_per_e == ELD["SonyA7S2"]["Kmax"]  # the joint model stays ELD's


def test_nikon_follows_elds_released_sampler():
    card = load_card("NikonD850")
    assert [p.name for p in card.joint.profiles] == ["Profile-1"]
    notes = " ".join(card.provenance["notes"])
    p2 = ELD["NikonD850"]["Profile-2"]["g_scale"]
    assert "Profile-2 (released, not sampled by ELD's code" in notes and repr(p2["slope"]) in notes
    assert "profiles = ['Profile-1']" in notes and "ln K bins" in notes


def test_pmn_cards_are_regenerated_exactly(tmp_path):
    date = load_card("IMX686").provenance["date"]
    subprocess.run([sys.executable, str(REPO / "data_cards" / "sources" / "build_pmn_cards.py"), "--out", str(tmp_path),
                    "--date", date], check=True, capture_output=True)
    for name in ("IMX686", "CRVD"):
        assert (tmp_path / f"{name}.toml").read_text() == (REPO / "data_cards" / f"{name}.toml").read_text(), name
