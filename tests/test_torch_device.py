"""issue 12 item 6: the torch path takes device and dtype from its input and makes no host round trip.

Run without a GPU on torch's ``meta`` device (tensors with a shape, a dtype and no data): any read of a
value on the host (``.item()``, ``bool()``, ``.cpu()``, ``.numpy()``, ``.tolist()``, a data-dependent shape
such as a masked selection) fails there, and a dispatch mode records every operation that touches a
CPU tensor or makes one, and every tensor built from host data. A call on a CUDA batch makes the same
operations, so what passes here queues on the GPU without waiting for it.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

from noisesim.card import load_card  # noqa: E402
from noisesim.params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor  # noqa: E402
from noisesim.torch_noise import CardParamSampler, DeviceMaps, NoiseParamsBatch, RawNoise, simulate_torch  # noqa: E402

pytestmark = pytest.mark.torch
META = torch.device("meta")
SENSOR = Sensor("RGGB", bit_depth=14, black_level_dn=512, white_level_dn=16383)


class HostTraffic(TorchDispatchMode):
    """Records host ↔ device traffic of the operations run under it (as readable strings)."""

    def __init__(self):
        super().__init__()
        self.events: list[str] = []
        self.paused = False  # inside a host copy counted by no_host_round_trips

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.paused:
            return func(*args, **kwargs)
        if func is torch.ops.aten._local_scalar_dense.default:  # .item(), bool(t), float(t), int(t)
            self.events.append(f"{func}: a value read on the host")
        out = func(*args, **kwargs)
        for t in tree_leaves((args, kwargs, out)):
            # 0-d CPU tensors are scalars that torch passes to kernels by value (no copy, no sync)
            if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.ndim > 0:
                self.events.append(f"{func}: a CPU tensor of shape {tuple(t.shape)}")
                break
        return out


@contextlib.contextmanager
def no_host_round_trips(monkeypatch, allowed_host_copies=0):
    """Fail if the block reads device values on the host or builds tensors from host data (beyond
    ``allowed_host_copies`` such copies)."""
    mode = HostTraffic()
    copies = []
    for name in ("as_tensor", "tensor", "from_numpy"):
        real = getattr(torch, name)

        def spy(data, *a, _real=real, _name=name, **kw):
            if isinstance(data, torch.Tensor):
                return _real(data, *a, **kw)
            copies.append(f"torch.{_name} of host data {type(data).__name__}")
            mode.paused = True  # the copy itself is counted here, not again op by op
            try:
                return _real(data, *a, **kw)
            finally:
                mode.paused = False

        monkeypatch.setattr(torch, name, spy)
    for name in ("item", "tolist", "numpy", "cpu"):
        def refuse(self, *a, _name=name, **kw):
            raise AssertionError(f"Tensor.{_name}() in the per-batch path")

        monkeypatch.setattr(torch.Tensor, name, refuse)
    with mode:
        yield
    monkeypatch.undo()
    events = mode.events + (copies[allowed_host_copies:] if len(copies) > allowed_host_copies else [])
    assert not events, "host round trips:\n" + "\n".join(events[:20])
    assert len(copies) == allowed_host_copies, copies


def hot_maps(hs=64, ws=64):
    g = np.random.default_rng(0)
    hot = g.random((hs, ws)) < 0.03
    return FixedPatternMaps(
        dark_shading_k_dn_per_iso=(g.random((hs, ws)) * 1e-3).astype(np.float32),
        dark_shading_b_dn=g.normal(0, 2, (hs, ws)).astype(np.float32),
        prnu=g.normal(0, 0.01, (hs, ws)).astype(np.float32),
        dark_current_e_per_s=(g.random((hs, ws)) + 100 * hot).astype(np.float32),
        hot_pixel_mask=hot,
        read_sigma_scale=g.lognormal(0, 0.2, (hs, ws)).astype(np.float32),
    )


@pytest.mark.parametrize("hot_pixels", [True, False])
@pytest.mark.parametrize("quantize", [True, False])
def test_simulate_torch_on_a_device_batch_makes_no_host_round_trip(monkeypatch, hot_pixels, quantize):
    card = load_card("SonyA7S2")
    pb = CardParamSampler(card, ratio_range=(1, 100), exposure_s=0.1).sample(4, device=META)
    dm = DeviceMaps.from_maps(hot_maps(), 2, device=META)
    clean = torch.empty((4, 4, 16, 16), device=META)  # packed; the mosaic path below
    comps = NoiseComponents(hot_pixels=hot_pixels, quantize=quantize, per_pixel_read=True, row_per_channel=not quantize)
    origin = torch.zeros((4, 2), dtype=torch.int64, device=META)
    mosaic64 = torch.empty((4, 32, 32), device=META, dtype=torch.float64)

    def calls():
        out = simulate_torch(clean, pb, card.sensor, maps=dm, origin=origin, components=comps)
        mosaic = simulate_torch(mosaic64, pb, card.sensor, maps=dm, components=comps, output_unit="dn")
        half = simulate_torch(clean.half(), pb, card.sensor, components=comps)
        return out, mosaic, half

    calls()  # first calls: the sensor tiles go to the device once per (device, dtype)
    with no_host_round_trips(monkeypatch):
        out, mosaic, half = calls()
    assert out.device == META and out.shape == clean.shape and out.dtype == torch.float32
    assert mosaic.device == META and mosaic.dtype == torch.float64 and half.dtype == torch.float16


def test_host_records_cost_one_copy_per_call(monkeypatch):
    plist = [NoiseParams(gain_k_dn_per_e=1.0 + i, read_sigma_dn=2.0, row_sigma_dn=0.5) for i in range(3)]
    clean = torch.empty((3, 32, 32), device=META)
    simulate_torch(clean, plist, SENSOR)
    with no_host_round_trips(monkeypatch, allowed_host_copies=1):  # the (N, fields) table of the records, once
        out = simulate_torch(clean, plist, SENSOR, ratio=[1.0, 2.0, 4.0])
    assert out.device == META
    ratio = torch.full((3,), 2.0, device=META)  # a device ratio stays there: no read, no copy back
    with no_host_round_trips(monkeypatch, allowed_host_copies=1):
        simulate_torch(clean, plist, SENSOR, ratio=ratio)


def test_raw_noise_forward_on_a_device_batch_makes_no_host_round_trip(monkeypatch):
    card = load_card("SonyA7S2")
    aug = RawNoise(card.sensor, CardParamSampler(card, ratio_range=(100, 300), exposure_s=0.05), maps=hot_maps(),
                   components=NoiseComponents(per_pixel_read=True))  # fmt: skip
    clean = torch.empty((8, 4, 16, 16), device=META)
    aug(clean)  # first call: the card's tables, the sensor tiles and the maps go to the device once
    with no_host_round_trips(monkeypatch):
        out = aug(clean)  # parameters and origins drawn on the device
        again = aug(clean, params=aug.params)
    assert out.device == again.device == META and aug.params.origin.device == META
    assert all(getattr(aug.params, f).device == META for f in ("gain_k_dn_per_e", "iso", "ratio", "tukey"))


def test_the_checker_catches_round_trips(monkeypatch):
    """The test above can fail: the traffic of the old code's patterns is caught."""
    x = torch.empty((2, 8), device=META)
    for leak in (lambda: x + torch.as_tensor(np.ones(8), device=META),  # host data copied per call
                 lambda: x + torch.ones(8),  # a CPU tensor made and mixed in
                 lambda: bool((x > 0).all()),  # a value read on the host
                 lambda: x[x > 0]):  # a data-dependent shape (a sync on CUDA)
        with pytest.raises((AssertionError, RuntimeError, NotImplementedError)):
            with no_host_round_trips(monkeypatch):
                leak()


def test_bench_noise_torch_device_option(capsys, load_benchmark):
    """benchmarks/bench_noise.py --torch-device: a name that is no device exits 2 at once with one line;
    a missing CUDA device is a skip line; the CPU figure is Mpix/s and the ratio to the numba kernel."""
    bench = load_benchmark("bench_noise")
    assert bench.main(["--torch-device", "nodevice"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names no torch device" in err[0]
    dev, why = bench.torch_device_check("cuda")
    if torch.cuda.is_available():
        assert dev.type == "cuda" and why is None
    else:
        assert dev is None and why == "torch on cuda: skipped (no CUDA device available)"
    clean = np.full((32, 32), 0.3, np.float32)
    line = bench.torch_figures("cpu", clean, NoiseParams(gain_k_dn_per_e=1.5, read_sigma_dn=2.0), SENSOR, 10.0,
                               NoiseComponents(), 1, 1e-3)  # fmt: skip
    assert line.startswith("torch on cpu (") and "Mpix/s" in line and "× the numba kernel" in line


def test_on_the_fly_dataset_adds_noise_on_the_batch_device_without_round_trips(monkeypatch):
    from noisesim.torch_data import OnTheFlyRawDataset

    ds = OnTheFlyRawDataset("builtin", "SonyA7S2", length=4, patch=32, seed=1, noise_on="device", amplify=True)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    on_meta = {k: v.to(META) for k, v in batch.items()}
    ds.add_noise(on_meta)  # first call: sensor tiles to the device once
    with no_host_round_trips(monkeypatch):
        noisy = ds.add_noise(on_meta)
    assert noisy.device == META and noisy.shape == batch["clean"].shape and noisy.dtype == torch.float32
    half = {**on_meta, "clean": on_meta["clean"].half()}
    assert ds.add_noise(half).dtype == torch.float16
