"""Issue 7 item 1: a camera whose files declare another black level at each ISO (phones do).

The synthetic capture declares 89 / 116 / 166 DN at ISO 100 / 200 / 400. Darks simulated from the
calibrated card must have each ISO's own mean; before schema /2 the card kept one black level and they came
out ~+27 DN and ~−50 DN off at ISO 100 and 400.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from noisesim.calibration.pipeline import calibrate
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames
from noisesim.card import load_card
from noisesim.noise import simulate
from noisesim.params import FixedPatternMaps, NoiseParams, Sensor
from noisesim.sampling import sample_params

SHAPE = (128, 128)
BLACK = {100: 89.0, 200: 116.0, 400: 166.0}
SENSORS = {iso: Sensor("RGGB", 12, b, 4095) for iso, b in BLACK.items()}
PARAMS = {
    100: NoiseParams(0.5, "tukey", 2.0, 0.05, 1.2, 0.4, 0.2, (0.0, 0.0, 0.0, 0.0)),
    200: NoiseParams(1.0, "tukey", 2.6, 0.02, 1.6, 0.5, 0.25, (0.0, 0.0, 0.0, 0.0)),
    400: NoiseParams(2.0, "tukey", 3.8, -0.02, 2.3, 0.7, 0.3, (4.0, -2.0, 0.0, 3.0)),
}
SPEC = SyntheticSpec(n_darks=16, flat_levels=(0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8))


@pytest.fixture(scope="module")
def result():
    return calibrate(synthetic_frames(PARAMS, SENSORS, SHAPE, SPEC, rng=3), "Phone Cam", fidelity=False)


def _mean_se(p: NoiseParams, n_pix: float, n_lines: float, n_frames: int) -> float:
    """SE [DN] of one channel's mean over n_frames darks: read noise per pixel, row/column offsets per line."""
    read = p.tukey_scale_dn * 1.9  # ≥ std of a Tukey-λ variable for |λ| ≤ 0.05 (π/√3 ≈ 1.81 at λ = 0)
    return math.sqrt(read**2 / n_pix + (p.row_sigma_dn**2 + p.col_sigma_dn**2) / n_lines) / math.sqrt(n_frames)


def test_darks_simulated_from_the_card_have_each_isos_black_level(result, tmp_path):
    out = tmp_path / "phone.toml"
    result.save(out)
    card = load_card(out)
    assert card.text.startswith('schema = "noisesim.card/2"')
    h, w = SHAPE
    n_sim = 4
    for iso, black in BLACK.items():
        assert card.iso_entry(iso).black_level_dn == (black,) * 4
        assert card.sensor_at(iso).black_level_dn == (black,) * 4
        p = sample_params(card, iso=iso)
        frames = np.stack([card.sensor.cfa.pack(simulate(np.zeros(SHAPE, np.float32), p, card.sensor, output_unit="dn",
                                                         dtype=np.float32, maps=card.maps, rng=7, frame_index=i))
                           for i in range(n_sim)])
        means = frames.mean(axis=(0, 2, 3))
        truth = PARAMS[iso]
        # tolerance from n: the simulated frames' own SE and the card's (its black-level error is a mean of 15 darks)
        se = math.hypot(_mean_se(truth, h * w / 4, h / 2, n_sim), _mean_se(truth, h * w / 4, h / 2, SPEC.n_darks - 1))
        for c, site in enumerate((0, 1, 2, 3)):
            want = black + truth.black_level_error_dn[site]
            assert abs(means[c] - want) < 5 * se + 0.05, f"ISO {iso}: channel {c} mean {means[c]:.2f} DN, want {want:.2f} (5 SE = {5 * se:.3f})"
        # normalized output is relative to the ISO's own black level, as the camera's files are
        norm = simulate(np.zeros(SHAPE, np.float32), p, card.sensor, maps=FixedPatternMaps(), rng=7)
        assert abs(float(norm.mean()) - np.mean(truth.black_level_error_dn) / (4095 - black)) < 5 * se / (4095 - black) + 1e-4


def test_metadata_black_differing_from_the_dark_mean_warns(result):
    text = [w for w in result.warnings if "black level" in w]
    assert len(text) == 1 and "ISO 400" in text[0], result.warnings
    for name in ("R", "G1", "B"):
        assert f"{name}:" in text[0]
    assert "G2:" not in text[0]


def test_validate_applies_each_isos_black_level(result):
    """validate compares the capture's darks with darks simulated at the ISO's own black level."""
    import dataclasses

    from noisesim.calibration.capture import Capture
    from noisesim.calibration.fidelity import validate

    darks = [f for f in synthetic_frames(PARAMS, SENSORS, SHAPE, dataclasses.replace(SPEC, flat_levels=()), rng=8)
             if f.kind == "dark"]
    capture = Capture(darks, [], "<phone darks>")
    report = validate(result.card, capture, max_frames_per_iso=2)
    assert report.passed, [(r.iso, r.channel) for r in report.verdict_rows if not r.passed]
    # the same card with one black level for every ISO (what schema /1 could hold) fails at ISO 100 and 400
    one_black = result.card.replace(iso_table=tuple(dataclasses.replace(e, black_level_dn=None) for e in result.card.iso_table))
    failed = {r.iso for r in validate(one_black, capture, max_frames_per_iso=2).verdict_rows if not r.passed}
    assert failed == {100.0, 400.0}
