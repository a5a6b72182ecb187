"""PyTorch datasets: worker safety, exactly-once delivery, noise maps, on-the-fly streams."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from noisesim.dataset import generate_dataset  # noqa: E402
from noisesim.errors import DatasetError  # noqa: E402
from noisesim.torch_data import OnTheFlyRawDataset, PairedRawDataset, make_loader  # noqa: E402

pytestmark = pytest.mark.torch
SMALL = dict(card="SonyA7S2", source="builtin", iso=(800, 3200), ratio=(100, 300), progress=False)


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("td") / "d.h5", pairs=24, patch=32, seed=2, **SMALL)


def test_item_contents_match_file(ds_path):
    ds = PairedRawDataset(ds_path, amplify=True)
    with h5py.File(ds_path) as f:
        clean, noisy, rec = f["clean"][5], f["noisy"][5], f["params"][5]
    item = ds[5]
    assert item["clean"].dtype == torch.float32 and tuple(item["clean"].shape) == (4, 16, 16)
    assert np.array_equal(item["clean"].numpy(), clean)
    assert np.allclose(item["noisy"].numpy(), noisy * np.float32(rec["ratio"]), rtol=1e-6)
    assert item["index"].item() == 5 and item["ratio"].item() == rec["ratio"]
    assert item["gain_k_dn_per_e"].item() == rec["gain_k_dn_per_e"]
    with pytest.raises(IndexError):
        ds[24]


def test_dataloader_two_workers_every_sample_once_per_epoch(ds_path):
    ds = PairedRawDataset(ds_path)
    ds[0]  # open a handle in the parent: it must not be used by the forked workers
    with h5py.File(ds_path) as f:
        clean, noisy = f["clean"][:], f["noisy"][:]
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    for _epoch in range(2):
        seen = []
        for batch in loader:
            for k, i in enumerate(batch["index"].tolist()):
                seen.append(i)
                assert np.array_equal(batch["clean"][k].numpy(), clean[i]), f"clean {i} corrupted"
                assert np.array_equal(batch["noisy"][k].numpy(), noisy[i]), f"noisy {i} corrupted"
        assert sorted(seen) == list(range(24))


def test_pickled_dataset_carries_no_handle(ds_path):
    import pickle

    ds = PairedRawDataset(ds_path)
    ds[1]
    assert ds._h5 is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._h5 is None
    assert np.array_equal(clone[1]["noisy"].numpy(), ds[1]["noisy"].numpy())


def test_uint16_file_reads_normalized(tmp_path, ds_path):
    u = generate_dataset(tmp_path / "u.h5", pairs=4, patch=32, seed=2, storage="uint16", **SMALL)
    a, b = PairedRawDataset(ds_path)[2], PairedRawDataset(u)[2]
    assert b["noisy"].dtype == torch.float32
    assert torch.allclose(a["clean"], b["clean"], atol=1 / 15871)


def test_noise_map_predicts_residual_spread(tmp_path):
    """Σ ((noisy − E[noisy]) / σ_map)² / n ≈ 1: the map is the noise σ (amplified along with noisy)."""
    path = generate_dataset(tmp_path / "m.h5", pairs=8, patch=64, seed=4, **SMALL)
    ds = PairedRawDataset(path, amplify=True, noise_map=True)
    z2, n = 0.0, 0
    for i in range(len(ds)):
        it = ds[i]
        r = it["ratio"].item()
        span = torch.tensor(ds.channel_range_dn).view(-1, 1, 1)
        expect = it["clean"].double() + it["black_level_error_dn"].view(-1, 1, 1) / span * r
        z = (it["noisy"].double() - expect) / it["noise_map"].double()
        z2 += float((z**2).sum())
        n += z.numel()
    # quantization (1/12 DN²) is not in the map; SE of the mean of z² ≈ sqrt(3.2 / n) ≈ 0.009
    assert abs(z2 / n - 1) < 0.06


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        PairedRawDataset(tmp_path / "nope.h5")


# ------------------------------------------------------------------------------------------------
# On the fly
# ------------------------------------------------------------------------------------------------
def _residuals(batch) -> np.ndarray:
    r = batch["ratio"].view(-1, 1, 1, 1)
    return (batch["noisy"] * r - batch["clean"]).double().numpy()


def test_on_the_fly_deterministic_and_epoch_dependent():
    ds = OnTheFlyRawDataset("builtin", "SonyA7S2", length=4, patch=32, iso=(800, 3200), seed=5)
    a0 = ds[2]["noisy"]
    assert torch.equal(a0, ds[2]["noisy"]), "deterministic given (seed, epoch, index)"
    ds.set_epoch(1)
    a1 = ds[2]["noisy"]
    assert not torch.equal(a0, a1)
    ds.set_epoch(0)
    assert torch.equal(a0, ds[2]["noisy"])


@pytest.mark.slow
def test_on_the_fly_workers_draw_different_noise():
    """Two spawned workers: items equal the single-process ones (per (seed, epoch, index) streams), no two
    items share noise (residual correlations within 5/√n of 0), and epochs differ, persistent workers included."""
    ds = OnTheFlyRawDataset("builtin", "SonyA7S2", length=8, patch=64, iso=(800, 3200), seed=3)
    loader = make_loader(ds, batch_size=2, num_workers=2)
    ref = [ds[i]["noisy"] for i in range(8)]
    epochs = []
    for e in range(2):
        ds.set_epoch(e)
        batches = list(loader)
        idx = torch.cat([b["index"] for b in batches]).tolist()
        assert sorted(idx) == list(range(8))
        assert all(int(b["epoch"][0]) == e for b in batches)
        epochs.append(torch.cat([b["noisy"] for b in batches]))
        res = np.concatenate([_residuals(b) for b in batches]).reshape(8, -1)
        res -= res.mean(axis=1, keepdims=True)
        corr = np.corrcoef(res)
        off = corr[~np.eye(8, dtype=bool)]
        assert np.all(np.abs(off) < 5 / np.sqrt(res.shape[1])), off
        if e == 0:
            for k, i in enumerate(idx):
                assert torch.equal(epochs[0][k], ref[i])
    assert not torch.equal(epochs[0], epochs[1])


# ---- issue 12 item 6: noise on the training device ---------------------------------------------------------


def _collate(items):
    return torch.utils.data.default_collate(items)


def test_noise_on_device_same_draws_and_the_twin_noise():
    """noise_on="device": the same clean patches and parameters as the worker path, no noisy in the items;
    add_noise gives the worker's noisy exactly where nothing is random, and the same noise statistics."""
    from noisesim.params import NoiseComponents

    kw = dict(length=8, patch=64, seed=3, iso=(800, 3200), ratio=(20, 40))
    worker = _collate([OnTheFlyRawDataset("builtin", "SonyA7S2", **kw)[i] for i in range(8)])
    ds = OnTheFlyRawDataset("builtin", "SonyA7S2", noise_on="device", **kw)
    dev = _collate([ds[i] for i in range(8)])
    assert "noisy" not in dev and "noisy" in worker
    for k in dev:  # NaN (no hot-pixel dark current) equals NaN
        torch.testing.assert_close(dev[k], worker[k], rtol=0, atol=0, equal_nan=True, msg=k)
    noisy = ds.add_noise(dev, generator=torch.Generator().manual_seed(0))
    assert noisy.shape == dev["clean"].shape and noisy.dtype == torch.float32
    ratio = dev["ratio"].reshape(-1, 1, 1, 1).float()
    res_d, res_w = (noisy - dev["clean"] / ratio).double().numpy(), (worker["noisy"] - dev["clean"] / ratio).double().numpy()
    diff = (res_d - res_w).ravel()
    assert abs(diff.mean()) < 5 * diff.std() / np.sqrt(diff.size)
    for i in range(8):  # per sample (own K, σ's, ratio): residual variance, 5 SE from the fourth moment
        a, b = res_d[i].ravel(), res_w[i].ravel()
        se = np.hypot(*(np.sqrt(max(np.mean((x - x.mean()) ** 4) - x.var() ** 2, 0) / x.size) for x in (a, b)))
        assert abs(a.var() - b.var()) < 5 * se, i
    # nothing random: the twin reproduces the worker's frame
    comps = NoiseComponents.only("black_level_error", "dark_current", quantize=False, dither=False, clip=False)
    exact_w = _collate([OnTheFlyRawDataset("builtin", "SonyA7S2", components=comps, **kw)[i] for i in range(8)])
    ds_c = OnTheFlyRawDataset("builtin", "SonyA7S2", components=comps, noise_on="device", amplify=True, **kw)
    out = ds_c.add_noise(_collate([ds_c[i] for i in range(8)]))
    np.testing.assert_allclose(out.numpy(), exact_w["noisy"].numpy() * ratio.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="noise_on"):
        OnTheFlyRawDataset("builtin", "SonyA7S2", noise_on="gpu", **kw)
