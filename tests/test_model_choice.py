"""validate's model comparison: parametric vs per-pixel σ vs dark-frame noise, with noise power spectra (issue 13.4)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve2d

from noisesim.calibration.model_choice import compare_models, noise_power_spectra, nps_distance
from noisesim.card import Camera, Card, ISOEntry
from noisesim.darkbank import DarkFrame, DarkFrameBank, build_dark_bank
from noisesim.params import Sensor
from noisesim.stats import tukey_lambda_std

SENSOR = Sensor(cfa="RGGB", bit_depth=14, black_level_dn=512, white_level_dn=16383)
SIGMA = 4.0
LAM = 0.14


def darks(n, shape, seed, *, correlated):
    g = np.random.default_rng(seed)
    kernel = np.array([[0.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 0.0]])
    out = []
    for _ in range(n):
        z = g.normal(0, 1, shape)
        if correlated:
            z = convolve2d(z, kernel, mode="same", boundary="wrap") / np.sqrt((kernel**2).sum())
        out.append(np.round(512 + SIGMA * z))
    return out


def card():
    entry = ISOEntry(iso=1600, gain_k_dn_per_e=1.37, read_sigma_dn=SIGMA, tukey_lambda=LAM,
                     tukey_scale_dn=SIGMA / tukey_lambda_std(LAM), row_sigma_dn=0.0, col_sigma_dn=0.0,
                     black_level_error_dn=(0.0,) * 4)
    return Card(camera=Camera("Test Cam"), sensor=SENSOR, iso_table=(entry,))


@pytest.mark.parametrize("correlated", [True, False])
def test_the_right_model_wins(tmp_path, correlated):
    shape = (96, 96)
    bank = build_dark_bank(tmp_path / "bank.h5", (DarkFrame(d.astype(np.uint16), 1600, 0.01, (512,) * 4, f"d{i}")
                                                  for i, d in enumerate(darks(6, (128, 128), 1, correlated=correlated))),
                           cfa="RGGB", white_level_dn=16383)
    held_out = darks(4, shape, 2, correlated=correlated)
    cmp = compare_models(card(), held_out, 1600, bank=DarkFrameBank(bank), rng=0)
    by = {s.model: s for s in cmp.scores}
    assert set(by) == {"parametric", "dark-frame"}
    assert by["dark-frame"].nps["2d"] < 0.1
    if correlated:
        # the parametric model's white read noise cannot reproduce the correlated spectrum
        assert cmp.best == "dark-frame" and by["parametric"].nps["2d"] > 0.2 and by["parametric"].nps["row"] > 0.5
    else:
        assert by["parametric"].nps["2d"] < 0.1
    assert "use: " in cmp.format()


def test_nps_distance_is_zero_for_identical_and_grows_with_correlation():
    cfa = SENSOR.cfa
    white = noise_power_spectra(darks(2, (64, 64), 3, correlated=False), cfa)
    assert nps_distance(white, white) == {"row": 0.0, "column": 0.0, "2d": 0.0}
    corr = noise_power_spectra(darks(2, (64, 64), 3, correlated=True), cfa)
    assert nps_distance(white, corr)["2d"] > 0.2


def test_validate_with_a_bank_names_the_best_model(tmp_path, capsys):
    from noisesim.calibration.synthetic import write_capture_dng
    from noisesim.calibration.capture import FrameInfo
    from noisesim.card import save_card
    from noisesim.cli import main

    shape = (64, 64)
    bank_frames = darks(4, (96, 96), 1, correlated=True)
    build_dark_bank(tmp_path / "bank.h5", (DarkFrame(d.astype(np.uint16), 1600, 0.01, (512,) * 4, f"b{i}")
                                           for i, d in enumerate(bank_frames)), cfa="RGGB", white_level_dn=16383)
    held = darks(3, shape, 7, correlated=True)
    infos = [FrameInfo(path=f"h{i}", kind="dark", iso=1600, exposure_s=0.01, shape=shape, cfa="RGGB",
                       black_level_dn=(512.0,) * 4, white_level_dn=16383.0, loader=(lambda d=d: d.astype(np.uint16)))
             for i, d in enumerate(held)]
    write_capture_dng(infos, tmp_path / "cap")
    save_card(card(), tmp_path / "card.toml")
    rc = main(["validate", str(tmp_path / "card.toml"), str(tmp_path / "cap"), "--bank", str(tmp_path / "bank.h5")])
    out = capsys.readouterr().out
    assert rc in (0, 1) and "model comparison" in out and "use: dark-frame" in out
