"""Per-ISO black levels and hot-pixel dark current (card schema noisesim.card/2) through simulate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from noisesim.noise import simulate
from noisesim.params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor

SENSOR = Sensor("RGGB", 12, 116, 4095)


def test_params_black_level_replaces_the_sensors():
    """A draw's own black level sets the dark mean (DN) and the zero of normalized output."""
    p = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=3.0, black_level_dn=(89, 90, 91, 92))
    n = 256 * 256
    dn = SENSOR.cfa.pack(simulate(np.zeros((256, 256), np.float32), p, SENSOR, output_unit="dn", dtype=np.float32, rng=1))
    se = 3.0 / math.sqrt(n / 4)
    for c, b in enumerate((89, 90, 91, 92)):
        assert abs(dn[c].mean() - b) < 5 * se + 0.01
    norm = simulate(np.zeros((256, 256), np.float32), p, SENSOR, output_unit="normalized", rng=1)
    assert abs(float(norm.mean())) < 5 * 3.0 / math.sqrt(n) / (4095 - 90)
    assert NoiseParams.from_dict(p.to_dict()) == p


def test_hot_pixels_keep_their_own_dark_current():
    """Hot pixels of the map accumulate hot_pixel_dark_current_e_per_s; the rest the bulk figure."""
    h = w = 128
    hot = np.zeros((h, w), bool)
    hot[::8, ::8] = True
    maps = FixedPatternMaps(hot_pixel_mask=hot)
    k, t = 2.0, 4.0
    p = NoiseParams(gain_k_dn_per_e=k, read_model="gaussian", read_sigma_dn=1.0, dark_current_e_per_s=0.5,
                    hot_pixel_dark_current_e_per_s=50.0, exposure_s=t, black_level_dn=(100,) * 4)
    out = simulate(np.zeros((h, w), np.float32), p, SENSOR, output_unit="dn", dtype=np.float32, maps=maps, rng=2) - 100
    n_hot = int(hot.sum())
    mu_hot, mu_bulk = k * 50.0 * t, k * 0.5 * t
    assert abs(out[hot].mean() - mu_hot) < 5 * math.sqrt(k * mu_hot + 1) / math.sqrt(n_hot)
    assert abs(out[~hot].mean() - mu_bulk) < 5 * math.sqrt(k * mu_bulk + 1) / math.sqrt(h * w - n_hot)
    # without the figure (a /1 card) hot pixels get the bulk dark current, as before
    out1 = simulate(np.zeros((h, w), np.float32), p.replace(hot_pixel_dark_current_e_per_s=None), SENSOR, output_unit="dn",
                    dtype=np.float32, maps=maps, rng=2) - 100
    assert abs(out1[hot].mean() - mu_bulk) < 5 * math.sqrt(k * mu_bulk + 1) / math.sqrt(n_hot)
    # hot_pixels off: hot pixels are ordinary pixels
    out2 = simulate(np.zeros((h, w), np.float32), p, SENSOR, output_unit="dn", dtype=np.float32, maps=maps, rng=2,
                    components=NoiseComponents(hot_pixels=False)) - 100
    assert abs(out2[hot].mean() - mu_bulk) < 5 * math.sqrt(k * mu_bulk + 1) / math.sqrt(n_hot)


def test_bad_params_black_level():
    with pytest.raises(Exception, match="black_level_dn"):
        NoiseParams(gain_k_dn_per_e=1.0, black_level_dn=(1, 2, 3))


def _card_with_iso_black():
    import dataclasses

    from noisesim.card import load_card

    card = load_card("SonyA7S2")
    rows = tuple(dataclasses.replace(e, black_level_dn=(600.0, 601.0, 602.0, 603.0)) if e.iso == 1600 else e for e in card.iso_table)
    return card.replace(iso_table=rows)


def test_generate_uses_the_isos_black_level_in_both_storages(tmp_path):
    import h5py

    from noisesim.dataset import generate_dataset, resynthesize, to_normalized

    card = _card_with_iso_black()
    common = dict(card=card, pairs=3, patch=32, iso=(1600, 1600), seed=4, progress=False)
    f32 = generate_dataset(tmp_path / "f.h5", **common)
    u16 = generate_dataset(tmp_path / "u.h5", storage="uint16", **common)
    with h5py.File(f32) as a, h5py.File(u16) as b:
        attrs = dict(b.attrs)
        for i in range(3):
            rec = b["params"][i]
            assert list(rec["black_level_dn"]) == [600.0, 601.0, 602.0, 603.0]
            # the same draw stored as DN (with the ISO's black level) and as normalized values agree
            for name in ("clean", "noisy"):
                got = to_normalized(b[name][i], attrs, rec=rec)
                # uint16 storage simulates from the DN-rounded clean frame, so a rare pixel's Poisson count
                # can differ by one electron: K DN more than the rounding
                slack = 0.0 if name == "clean" else float(rec["gain_k_dn_per_e"])
                np.testing.assert_allclose(got, a[name][i], atol=(0.51 + slack) / (16383 - 603))
                assert np.mean(np.abs(got - a[name][i]) > 0.51 / (16383 - 603)) < 0.01
            assert int(b["noisy"][i].min()) > 400  # dark pixels sit at ~600 DN, not at the sensor's 512
            np.testing.assert_array_equal(resynthesize(u16, i), b["noisy"][i])
