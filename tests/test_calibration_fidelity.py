"""Fidelity scores that cannot be fooled, and the verdict of ``validate`` (issue 7 items 2 and 3)."""

import numpy as np
import pytest

from noisesim.calibration.estimators import kl_divergences, ks_statistic
from noisesim.calibration.fidelity import compare_frames
from noisesim.card import load_card
from noisesim.noise import simulate
from noisesim.sampling import sample_params

SHAPE = (192, 192)


@pytest.fixture(scope="module")
def card_and_real():
    card = load_card("SonyA7S2")
    p = sample_params(card, iso=1600, scatter=False)
    real = [simulate(np.zeros(SHAPE, np.float32), p, card.sensor, output_unit="dn", dtype=np.float32, rng=99, frame_index=i)
            for i in range(2)]
    return card, real


def _scores(rows):
    tk = [r for r in rows if r.model == "tukey"]
    return (np.mean([r.kl_forward for r in tk]), np.mean([r.kl_symmetric for r in tk]),
            np.mean([abs(r.mean_diff_se) for r in tk]), np.mean([abs(r.var_diff_se) for r in tk]),
            np.mean([r.ks_statistic for r in tk]))


def test_shifted_heldout_frames_score_strictly_worse(card_and_real):
    """Old bins (the real frame's 0.1–99.9 % only, synthetic renormalized there): 30 and 100 DN scored alike."""
    card, real = card_and_real
    scores = [_scores(compare_frames(card, [f + d for f in real], 1600, 0.0, rng=1)) for d in (0, 1, 3, 10, 30, 100)]
    for name, i in (("KL forward", 0), ("KL symmetric", 1), ("|Δmean| in SE", 2)):
        seq = [s[i] for s in scores]
        assert all(b > a for a, b in zip(seq, seq[1:])), f"{name} not strictly increasing with the shift: {seq}"
    ks = [s[4] for s in scores]
    # 100 DN apart the distributions are separated but for the odd tail sample (which depends on the draws)
    assert all(b >= a for a, b in zip(ks, ks[1:])) and ks[0] < 0.02 and ks[-1] > 0.999
    rows0 = compare_frames(card, real, 1600, 0.0, rng=1)
    assert all(r.passed for r in rows0 if r.model == "tukey"), [r.failures for r in rows0]
    rows3 = compare_frames(card, [f + 3 for f in real], 1600, 0.0, rng=1)
    assert not any(r.passed for r in rows3)


@pytest.mark.parametrize("scales", [(1.0, 1.25, 1.5, 2.0), (1.0, 0.8, 0.67, 0.5)])
def test_rescaled_heldout_noise_scores_strictly_worse(card_and_real, scales):
    card, real = card_and_real
    black = card.sensor.black_level_dn[0]
    scores = [_scores(compare_frames(card, [np.rint(black + s * (f - black)) for f in real], 1600, 0.0, rng=1)) for s in scales]
    for name, i in (("KL forward", 0), ("KL symmetric", 1), ("|Δvar| in SE", 3), ("KS", 4)):
        seq = [s[i] for s in scores]
        assert all(b > a for a, b in zip(seq, seq[1:])), f"{name} not strictly increasing with the noise scale {scales}: {seq}"


def test_kl_of_a_disjoint_sample_grows_with_its_distance():
    rng = np.random.default_rng(8)
    a = np.rint(rng.normal(0, 5, 200_000))
    b = np.rint(rng.normal(0, 5, 200_000))
    near, far, farther = (kl_divergences(a, a + d)[0] for d in (3, 300, 3000))
    assert near < far < farther
    assert ks_statistic(a, b) < 0.01 and ks_statistic(a, a + 300) == 1.0


# ------------------------------------------------------------------------------------------------
# validate: a verdict, and whether the capture belongs to the card


def test_cli_validate_14_bit_card_against_12_bit_capture_fails(tmp_path, capsys):
    """Before: exit 0 with a KL table and no word about the bit depth."""
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
    from noisesim.card import save_card
    from noisesim.cli import main
    from noisesim.params import NoiseParams, Sensor

    card = load_card("SonyA7S2")  # 14-bit, RGGB
    path = save_card(card, tmp_path / "sony.toml")
    p = sample_params(card, iso=1600, scatter=False)
    s12 = Sensor("RGGB", 12, (128,) * 4, 4095)
    frames = synthetic_frames({1600: p.replace(gain_k_dn_per_e=p.gain_k_dn_per_e / 4)}, s12, (64, 64),
                              SyntheticSpec(n_darks=2, flat_levels=()), rng=2)
    write_capture_dng(frames, tmp_path / "cap12")
    rc = main(["validate", str(path), str(tmp_path / "cap12")])
    out = capsys.readouterr()
    assert rc == 1, out
    assert "12-bit" in out.out and "14-bit" in out.out and "FAIL" in out.out
    rc = main(["validate", str(path), str(tmp_path / "nothing_here")])
    assert rc == 2 and "Traceback" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def unit_cards():
    """A card calibrated on one unit (strong dark shading), darks of that unit and of another unit of the model."""
    from noisesim.calibration.capture import Capture
    from noisesim.calibration.pipeline import calibrate
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames
    from noisesim.params import FixedPatternMaps, NoiseParams, Sensor

    sensor = Sensor("RGGB", 14, (512,) * 4, 16383)
    p = {1600: NoiseParams(1.5, "tukey", 4.0, 0.0, 2.6, 0.5, 0.0)}
    shape = (128, 128)

    def maps(seed):
        g = np.random.default_rng(seed)
        return FixedPatternMaps(np.zeros(shape, np.float32), g.normal(0, 2.0, shape).astype(np.float32))

    res = calibrate(synthetic_frames(p, sensor, shape, SyntheticSpec(n_darks=16), maps=maps(1), rng=3), "Unit One", fidelity=False)
    same = synthetic_frames(p, sensor, shape, SyntheticSpec(n_darks=4, flat_levels=()), maps=maps(1), rng=4)
    other = synthetic_frames(p, sensor, shape, SyntheticSpec(n_darks=4, flat_levels=()), maps=maps(2), rng=4)
    return res.card, Capture(same), Capture(other)


def test_validate_tells_another_unit_of_the_same_model(unit_cards):
    from noisesim.calibration.fidelity import format_report, validate

    card, same, other = unit_cards
    good = validate(card, same)
    assert good.passed, format_report(good)
    assert [m.verdict for m in good.map_checks] == ["match"]
    bad = validate(card, other)
    text = format_report(bad)
    assert not bad.passed and "maps do not match this sensor" in text, text
