"""The hot pixels' own dark current (card schema /2 ISO rows) is part of each dataset sample's /params record."""

from __future__ import annotations

import dataclasses
import zlib

import h5py
import numpy as np
import pytest

from noisesim.card import load_card
from noisesim.dataset import PARAMS_DTYPE, generate_dataset, params_from_record, resynthesize, verify_dataset
from noisesim.noise import simulate
from noisesim.params import FixedPatternMaps
from noisesim.sampling import sample_params

HOT_E_PER_S = 80.0


def _hot_card():
    """SonyA7S2 with a 64² hot-pixel map and a hot-pixel dark current on its ISO 1600 row."""
    card = load_card("SonyA7S2")
    rows = tuple(dataclasses.replace(e, hot_pixel_dark_current_e_per_s=HOT_E_PER_S) if e.iso == 1600 else e for e in card.iso_table)
    hot = np.zeros((64, 64), bool)
    hot[3::7, 5::9] = True
    return card.replace(iso_table=rows).with_maps(FixedPatternMaps(hot_pixel_mask=hot))


@pytest.fixture(scope="module")
def hot_dataset(tmp_path_factory):
    card = _hot_card()
    path = generate_dataset(tmp_path_factory.mktemp("hot") / "h.h5", card=card, pairs=3, patch=32, iso=(1600, 1600), seed=9,
                            progress=False)
    return card, path


def test_record_keeps_hot_pixel_dark_current_and_resynthesizes_exactly(hot_dataset):
    card, path = hot_dataset
    drawn = sample_params(card, iso=1600)
    with h5py.File(path) as f:
        assert bool(f.attrs["uses_maps"])
        recs, noisy = f["params"][:], f["noisy"][:]
    for i in range(3):
        assert recs[i]["hot_pixel_dark_current_e_per_s"] == HOT_E_PER_S
        p = params_from_record(recs[i])
        # every field of the draw, the hot pixels' dark current included (the record spells out the sensor's black level)
        assert p.replace(black_level_dn=drawn.black_level_dn) == drawn
        np.testing.assert_array_equal(resynthesize(path, i, card=card), noisy[i])
    assert verify_dataset(path) == []


def test_replayed_record_gives_hot_pixels_their_own_dark_current(hot_dataset):
    """The record replayed with an exposure (dark current acts only then) makes the same frame as the draw:
    the hot pixels get HOT_E_PER_S · t, not the bulk figure."""
    card, path = hot_dataset
    with h5py.File(path) as f:
        rec, clean = f["params"][0], f["clean"][0]
    origin = (int(rec["origin_y"]), int(rec["origin_x"]))
    kw = dict(ratio=float(rec["ratio"]), maps=card.maps, origin=origin, rng=int(rec["seed"]))
    want = simulate(clean, sample_params(card, iso=1600, exposure_s=2.0), card.sensor, **kw)
    got = simulate(clean, params_from_record(rec).replace(exposure_s=2.0), card.sensor, **kw)
    np.testing.assert_array_equal(got, want)


def test_torch_items_and_batch_params_carry_it(hot_dataset):
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate

    from noisesim.torch_data import PairedRawDataset, batch_params

    _, path = hot_dataset
    ds = PairedRawDataset(path)
    batch = default_collate([ds[i] for i in range(3)])
    pb = batch_params(batch)
    assert pb.hot_pixel_dark_current_e_per_s is not None
    assert torch.equal(pb.hot_pixel_dark_current_e_per_s, torch.full((3,), HOT_E_PER_S, dtype=torch.float64))
    with h5py.File(path) as f:
        recs = f["params"][:]
    assert [q.hot_pixel_dark_current_e_per_s for q in pb.to_params()] == [HOT_E_PER_S] * 3
    assert pb.to_params()[0].black_level_dn == params_from_record(recs[0]).black_level_dn


def test_file_without_the_field_reads_none_and_still_verifies(tmp_path):
    """A /2 file written before the field: the value reads as None and its checksums (over its own row
    layout) still verify."""
    path = generate_dataset(tmp_path / "old.h5", card="SonyA7S2", pairs=2, patch=32, seed=3, progress=False)
    old_dtype = np.dtype([(n, PARAMS_DTYPE.fields[n][0]) for n in PARAMS_DTYPE.names if n != "hot_pixel_dark_current_e_per_s"])
    with h5py.File(path, "r+") as f:
        recs = f["params"][:]
        old = np.zeros(len(recs), old_dtype)
        for n in old_dtype.names:
            old[n] = recs[n]
        for i in range(len(old)):  # the checksum the code before the field computed
            row = old[i].copy()
            row["crc32"] = 0
            crc = zlib.crc32(np.ascontiguousarray(f["clean"][i]).data)
            crc = zlib.crc32(np.ascontiguousarray(f["noisy"][i]).data, crc)
            old[i]["crc32"] = zlib.crc32(row.tobytes(), crc)
        del f["params"]
        f.create_dataset("params", data=old)
    with h5py.File(path) as f:
        assert params_from_record(f["params"][0]).hot_pixel_dark_current_e_per_s is None
    assert verify_dataset(path) == []
    with h5py.File(path) as f:
        noisy = f["noisy"][1]
    np.testing.assert_array_equal(resynthesize(path, 1), noisy)
