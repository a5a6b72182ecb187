"""PyTorch datasets over noisesim data (optional extra ``noisesim[torch]``; torch is imported lazily).

* :class:`PairedRawDataset` reads an HDF5 file written by :func:`noisesim.dataset.generate_dataset`
  (single file or shard master). Safe with ``num_workers > 0``: the h5py handle is opened lazily in the
  process that reads, re-opened after a fork (the pid is checked), and never pickled (``__getstate__``).
* :class:`OnTheFlyRawDataset` synthesizes pairs inside the DataLoader workers. Sample ``index`` of epoch
  ``e`` draws only from ``SeedSequence(seed, spawn_key=(e, index))``, and on rank ``r`` of a multi-rank
  job (``torch.distributed``, DDP) from ``SeedSequence(seed, spawn_key=(e, index, r))``: deterministic
  given (seed, epoch, index, rank), whatever the worker that serves it, and distinct across indices
  (hence across workers), epochs and ranks (also for the indices ``DistributedSampler`` repeats to even
  out the ranks). Call :meth:`OnTheFlyRawDataset.set_epoch` before each epoch; the epoch lives in
  shared memory, so persistent workers see it too. docs/distributed.md, "Training across ranks".

numba's OpenMP threading layer is not fork-safe (docs/performance.md): for the on-the-fly dataset use
``multiprocessing_context="spawn"`` (what :func:`make_loader` does). Reading HDF5 is fork-safe here.

Each item is a dict of tensors::

    noisy       (C, h, w) float32, normalized; multiplied by the ratio if ``amplify`` (absent with
                ``noise_on="device"``: :meth:`OnTheFlyRawDataset.add_noise` makes it on the batch's device)
    clean       (C, h, w) float32, normalized long exposure
    noise_map   (C, h, w) float32 per-pixel noise σ of ``noisy`` (same scaling), if ``noise_map``
    ratio, iso, gain_k_dn_per_e, read_sigma_dn, tukey_lambda, tukey_scale_dn, row_sigma_dn, col_sigma_dn,
    dark_current_e_per_s, exposure_s, hot_pixel_dark_current_e_per_s (NaN: none), read_std_dn  float64 scalars;  tukey bool (Tukey-lambda read noise);
    black_level_error_dn, black_level_dn (4,) float64;  origin (2,) int64 (on the sensor);  index int64

Noise on the training device: ``OnTheFlyRawDataset(..., noise_on="device")`` makes the clean patches and
draws the parameters in the workers (the same as with the default ``noise_on="worker"``) and
:meth:`OnTheFlyRawDataset.add_noise` applies them to the collated batch with
:func:`noisesim.torch_noise.simulate_torch` wherever the batch lives (docs/datasets.md, "Noise on the
training device").
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DatasetError, ParameterError
from .spawnguard import require_main_guard

__all__ = ["batch_params", "make_loader", "NOISE_ON", "OnTheFlyRawDataset", "PairedRawDataset"]

_SCALARS = ("ratio", "iso", "gain_k_dn_per_e", "read_sigma_dn", "tukey_lambda", "tukey_scale_dn", "row_sigma_dn", "col_sigma_dn",
            "dark_current_e_per_s", "exposure_s")
NOISE_ON = ("worker", "device")


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("noisesim.torch_data needs PyTorch: pip install 'noisesim[torch]'") from exc
    return torch


def _item(clean: np.ndarray, noisy: np.ndarray, rec, channel_range_dn: np.ndarray, *, amplify: bool, noise_map: bool) -> dict:
    from .dataset import params_from_record
    from .stats import noise_level_map, read_noise_std_dn

    torch = _torch()
    ratio = float(rec["ratio"])
    params = params_from_record(rec)
    out: dict[str, Any] = {}
    scale = ratio if amplify else 1.0
    if noisy is not None:
        out["noisy"] = torch.from_numpy(np.ascontiguousarray(noisy * np.float32(scale), dtype=np.float32))
    out["clean"] = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))
    if noise_map:
        sigma = noise_level_map(clean, params, ratio, channel_range_dn) * np.float32(scale)
        out["noise_map"] = torch.from_numpy(sigma)
    for name in _SCALARS:
        out[name] = torch.tensor(float(rec[name]), dtype=torch.float64)
    out["read_std_dn"] = torch.tensor(read_noise_std_dn(params), dtype=torch.float64)
    out["black_level_error_dn"] = torch.tensor(np.asarray(rec["black_level_error_dn"], dtype=np.float64))
    names = rec.dtype.names or ()
    black = rec["black_level_dn"] if "black_level_dn" in names else np.full(4, np.nan)  # older schemas: the sensor's
    out["black_level_dn"] = torch.tensor(np.asarray(black, dtype=np.float64))
    hot = params.hot_pixel_dark_current_e_per_s  # NaN: none (older files too)
    out["hot_pixel_dark_current_e_per_s"] = torch.tensor(np.nan if hot is None else hot, dtype=torch.float64)
    out["tukey"] = torch.tensor(params.read_model == "tukey")
    origin = (int(rec["origin_y"]), int(rec["origin_x"])) if "origin_y" in names else (0, 0)
    out["origin"] = torch.tensor(origin, dtype=torch.int64)
    out["index"] = torch.tensor(int(rec["index"]), dtype=torch.int64)
    return out


class PairedRawDataset:
    """Map-style dataset over a generated HDF5 file.

    Parameters
    ----------
    path : path
        File written by :func:`noisesim.dataset.generate_dataset` (or its shard master).
    amplify : bool
        Multiply ``noisy`` (and the noise map) by the sample's exposure ratio, as low-light networks
        take it (SID/ELD); default False (the short exposure as stored).
    noise_map : bool
        Add ``noise_map``: per-pixel σ from the stored parameters, √(K·x + σ_read² + σ_row² + σ_col²)
        with x the expected short-exposure signal [DN], in normalized units (see
        :func:`noisesim.stats.noise_level_map`).
    transform : callable, optional
        Applied to the item dict (e.g. a joint random crop/flip of noisy and clean).
    verify : bool
        Check each sample's stored CRC-32 when it is read (:func:`noisesim.dataset.sample_crc32`; about
        0.5 ms per 256² float32 pair) and raise :class:`DatasetError` naming the file and index on a
        mismatch, so a damaged sample never reaches training. Default False.

    Shape
    -----
    noisy, clean, noise_map: (C, h, w); uint16 files are converted to normalized float32.

    Raises
    ------
    DatasetError
        The file is missing, damaged, a ``.partial``, or a shard master with a missing shard.
    """

    def __init__(self, path, *, amplify: bool = False, noise_map: bool = False, transform: Callable | None = None,
                 verify: bool = False):
        from .dataset import open_dataset_file

        self.path = Path(path)
        self.amplify, self.noise_map, self.transform = bool(amplify), bool(noise_map), transform
        self.verify = bool(verify)
        with open_dataset_file(self.path) as f:
            self.attrs = {k: (v if not isinstance(v, bytes) else v.decode()) for k, v in f.attrs.items() if k != "card"}
            self.params = f["params"][:]  # small: read once, shipped to workers with the dataset
            self._len = f["clean"].shape[0]
        if self.verify and "crc32" not in (self.params.dtype.names or ()):
            raise DatasetError(f"{self.path} has no per-sample checksums (schema {self.attrs.get('schema', '?')}); "
                               "open it with verify=False")
        self.channel_range_dn = np.asarray(self.attrs["channel_white_level_dn"], np.float64) - np.asarray(
            self.attrs["channel_black_level_dn"], np.float64
        )
        self._h5 = None
        self._pid = None

    def __len__(self) -> int:
        return self._len

    def _file(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            # A handle inherited through fork is never used: each process opens its own.
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        return state

    def __getitem__(self, index: int) -> dict:
        from .dataset import channel_levels, to_normalized

        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} out of range for a dataset of {self._len} pairs")
        index = int(index) % self._len
        f = self._file()
        rec = self.params[index]
        clean, noisy = f["clean"][index], f["noisy"][index]
        if self.verify:
            from .dataset import stored_sample_crc32

            if stored_sample_crc32(f, index, rec, clean=clean, noisy=noisy) != int(rec["crc32"]):
                raise DatasetError(f"{self.path}: sample {index} fails its checksum (damaged on storage); "
                                   "run noisesim inspect --verify on the file")
        clean = to_normalized(clean, self.attrs, rec=rec)
        noisy = to_normalized(noisy, self.attrs, rec=rec)
        black, white = channel_levels(self.attrs, rec)  # the sample's ISO may have its own black level (card /2)
        item = _item(clean, noisy, rec, white - black, amplify=self.amplify, noise_map=self.noise_map)
        return self.transform(item) if self.transform is not None else item

    def close(self) -> None:
        """Close this process's h5py handle (opened again by the next item read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class OnTheFlyRawDataset:
    """Map-style dataset that synthesizes (noisy, clean) pairs on access (in the DataLoader workers).

    Parameters
    ----------
    source : path or "builtin"
        Clean images (see :func:`noisesim.sources.open_source`).
    card : Card, name or path
    length : int
        Items per epoch.
    patch, iso, gain_k, ratio, blur, components :
        As :func:`noisesim.dataset.generate_dataset`.
    seed : int
        Item ``index`` of epoch ``e`` uses only ``SeedSequence(seed, spawn_key=(e, index))``; on rank ``r``
        of a multi-rank job ``SeedSequence(seed, spawn_key=(e, index, r))``.
    amplify, noise_map, transform :
        As :class:`PairedRawDataset`.
    rank : int, optional
        The rank whose streams to draw. Default: ``torch.distributed.get_rank()`` when a process group of
        more than one rank is initialized in the process that reads the items or builds the DataLoader
        (the rank then travels to its spawned workers), else single-process streams.
    noise : {"parametric", "dark-frame"}
        ``dark-frame``: shot noise from the card's K plus real dark frames from ``bank``
        (:mod:`noisesim.darkbank`), drawn in the workers like the parametric noise.
    bank : path, optional
        The dark-frame bank for ``noise="dark-frame"``.
    noise_on : {"worker", "device"}
        ``worker``: items carry ``noisy`` made by the numba engine in the DataLoader worker. ``device``:
        items carry the clean patch and the drawn parameters only (the noise kernel is skipped), and
        :meth:`add_noise` draws the noise on the collated batch wherever it lives (e.g. the GPU), with
        :func:`noisesim.torch_noise.simulate_torch` — the same parameters, the torch twin's noise.
        Parametric noise only.
    """

    def __init__(self, source, card, *, length: int, patch: int = 256, iso=None, gain_k=None, ratio=(100.0, 300.0),
                 blur=None, seed: int = 0, components=None, amplify: bool = False, noise_map: bool = False,
                 transform: Callable | None = None, rank: int | None = None, noise: str = "parametric", bank=None,
                 noise_on: str = "worker"):
        from .blur import parse_blur_spec
        from .dataset import check_sampling, SynthesisJob, kernel_capacity, resolve_card, parse_range, parse_ratio
        from .params import NoiseComponents

        if int(length) < 1:
            raise ParameterError(f"length must be >= 1, got {length}")
        if noise_on not in NOISE_ON:
            raise ParameterError(f"noise_on must be one of {NOISE_ON}, got {noise_on!r}")
        if noise_on == "device" and noise != "parametric":
            raise ParameterError("noise_on='device' draws parametric noise with torch; dark-frame noise runs in the workers")
        self.noise_on = noise_on
        self._device_maps: dict = {}  # card maps per torch device, for add_noise (not pickled)
        card = resolve_card(card)
        iso_r, gain_r = parse_range(iso, "iso"), parse_range(gain_k, "gain_k")
        check_sampling(card, iso_r, gain_r)
        if isinstance(blur, str):
            blur = None if blur.strip().lower() in ("", "none") else parse_blur_spec(blur)
        p = card.sensor.cfa.period
        if int(patch) < p or int(patch) % p:
            raise ParameterError(f"patch must be a positive multiple of the CFA period {p}, got {patch}")
        from .dataset import check_noise_mode

        bank_path, _ = check_noise_mode(noise, bank, card.sensor.cfa, card=card)
        source_spec = str(source) if str(source) == "builtin" else str(Path(source).resolve())
        self._job = SynthesisJob(card=card, source_spec=source_spec, patch=int(patch), iso=iso_r, gain_k=gain_r, ratio=parse_ratio(ratio),
                         blur=blur, seed=int(seed), storage="float32", components=components or NoiseComponents(),
                         kernel_cap=kernel_capacity(blur), noise=noise, bank_path=bank_path)
        self.length = int(length)
        self.amplify, self.noise_map, self.transform = bool(amplify), bool(noise_map), transform
        self._epoch = multiprocessing.get_context("spawn").RawValue("q", 0)
        if rank is not None and int(rank) < 0:
            raise ParameterError(f"rank must be >= 0, got {rank}")
        self._rank = None if rank is None else int(rank)
        self._synth = None
        self._pid = None
        # Fail now (empty folder, images smaller than the patch), not inside a worker.
        self._get_synth().source.sample_patch(np.random.default_rng(0), int(patch), blur=blur)

    def __len__(self) -> int:
        return self.length

    @property
    def epoch(self) -> int:
        """The current epoch (shared with the DataLoader workers; see :meth:`set_epoch`)."""
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose noise the next items draw (visible to already started workers).

        Parameters
        ----------
        epoch : int
            Epoch number, ≥ 0.
        """
        if int(epoch) < 0:
            raise ParameterError(f"epoch must be >= 0, got {epoch}")
        self._epoch.value = int(epoch)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_synth"] = None
        state["_pid"] = None
        state["_device_maps"] = {}
        # The shared epoch travels only to processes being spawned (DataLoader workers); any other
        # pickling (a copy) gets the current value.
        if multiprocessing.context.get_spawning_popen() is None:
            state["_epoch"] = int(self._epoch.value)
        # DataLoader workers have no process group of their own: they take the rank of the process that spawns them.
        state["_rank"] = self.rank
        return state

    @property
    def rank(self) -> int | None:
        """The rank in the streams' key: the ``rank`` given, else that of an initialized multi-rank
        ``torch.distributed`` process group, else None (single-process streams)."""
        if self._rank is not None:
            return self._rank
        dist = sys.modules.get("torch.distributed")  # never imports torch itself
        if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return int(dist.get_rank())
        return None

    def spawn_key(self, index: int) -> tuple[int, ...]:
        """The ``SeedSequence`` spawn key of item ``index`` in the current epoch and rank.

        Parameters
        ----------
        index : int
            Item index.

        Returns
        -------
        tuple of int
        """
        rank = self.rank
        return (self.epoch, int(index)) if rank is None else (self.epoch, int(index), rank)

    def __setstate__(self, state):
        if isinstance(state["_epoch"], int):
            value = state["_epoch"]
            state["_epoch"] = multiprocessing.get_context("spawn").RawValue("q", value)
        self.__dict__.update(state)

    def _get_synth(self):
        from .dataset import Synthesizer

        if self._synth is None or self._pid != os.getpid():
            self._synth = Synthesizer(self._job)
            self._pid = os.getpid()
        return self._synth

    def __getitem__(self, index: int) -> dict:
        if not 0 <= int(index) < self.length:
            raise IndexError(f"index {index} out of range for length {self.length}")
        synth = self._get_synth()
        clean, noisy, rec, _kernel = synth.sample(int(index), spawn_key=self.spawn_key(index), noise=self.noise_on == "worker")
        range_dn = synth.ch_range.ravel()
        item = _item(clean, noisy, rec, range_dn, amplify=self.amplify, noise_map=self.noise_map)
        item["epoch"] = _torch().tensor(self.epoch, dtype=_torch().int64)
        return self.transform(item) if self.transform is not None else item

    def add_noise(self, batch: dict, *, generator=None):
        """Noisy twin of a collated batch of this dataset, drawn where the batch lives (``noise_on="device"``).

        Parameters
        ----------
        batch : dict of tensors
            A batch of items (``clean`` (N, C, h, w) normalized and the parameters each item carries), on
            any one device, e.g. after ``{k: v.to("cuda", non_blocking=True) for k, v in batch.items()}``.
        generator : torch.Generator, optional
            On the batch's device; torch's global generator when None.

        Returns
        -------
        torch.Tensor
            ``noisy`` (N, C, h, w), normalized (multiplied by the ratio if ``amplify``), on ``clean``'s device
            in its dtype. Device and dtype come from the batch; the card's maps go to a device once; nothing
            is read back to the host (no synchronization).
        """
        from .torch_noise import DeviceMaps, simulate_torch

        clean = batch["clean"]
        card = self._job.card
        maps = None
        if card.maps is not None and card.maps.shape is not None:
            maps = self._device_maps.get(clean.device)
            if maps is None:
                maps = self._device_maps[clean.device] = DeviceMaps.from_maps(card.maps, card.sensor.cfa.period, device=clean.device)
        pb = batch_params(batch)
        noisy = simulate_torch(clean, pb, card.sensor, components=self._job.components, maps=maps, generator=generator)
        return noisy * pb.ratio.to(noisy.dtype).reshape(-1, 1, 1, 1) if self.amplify else noisy


def batch_params(batch: dict):
    """The per-sample parameters of a collated batch of items, as a
    :class:`~noisesim.torch_noise.NoiseParamsBatch` on the batch's device (no copy, no host read).

    Parameters
    ----------
    batch : dict of tensors
        Collated items of :class:`OnTheFlyRawDataset` or :class:`PairedRawDataset` (the keys listed in this
        module's docstring), all on one device.

    Returns
    -------
    NoiseParamsBatch
        float64 fields, ``origin`` (N, 2) int64 from the items.
    """
    from .torch_noise import NoiseParamsBatch

    torch = _torch()
    f = {k: batch[k] for k in ("gain_k_dn_per_e", "read_sigma_dn", "tukey_lambda", "tukey_scale_dn", "row_sigma_dn",
                               "col_sigma_dn", "black_level_error_dn", "ratio", "black_level_dn", "iso", "exposure_s")}
    return NoiseParamsBatch(tukey=batch["tukey"].to(torch.bool), dark_e=batch["dark_current_e_per_s"] * batch["exposure_s"],
                            origin=batch["origin"], hot_pixel_dark_current_e_per_s=batch.get("hot_pixel_dark_current_e_per_s"), **f)


def make_loader(dataset, *, batch_size: int = 8, num_workers: int = 0, shuffle: bool = False, **kwargs):
    """A ``torch.utils.data.DataLoader`` with the spawn start method for its workers (numba's OpenMP
    layer is not fork-safe) and persistent workers; other keyword arguments pass through.

    Spawned workers re-import the main script and re-run its top level, so a script that builds a
    loader with ``num_workers > 0`` must keep its work under ``if __name__ == "__main__":``; called from
    an unguarded top level, this raises :class:`~noisesim.errors.ParameterError` naming the script and
    line (:func:`noisesim.spawnguard.require_main_guard`) instead of letting the workers re-run it.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        E.g. :class:`PairedRawDataset` or :class:`OnTheFlyRawDataset`.
    batch_size : int
        Items per batch.
    num_workers : int
        Worker processes (spawned).
    shuffle : bool
        Shuffle the items each epoch.
    **kwargs
        Passed to ``DataLoader``.

    Returns
    -------
    torch.utils.data.DataLoader
    """
    ctx = kwargs.get("multiprocessing_context", "spawn")
    method = ctx if isinstance(ctx, str) else getattr(ctx, "get_start_method", lambda: "spawn")()
    if num_workers > 0 and method != "fork":  # spawn and forkserver re-import the main script
        require_main_guard("make_loader(num_workers > 0)")
    torch = _torch()
    if num_workers > 0:
        kwargs.setdefault("multiprocessing_context", "spawn")
        kwargs.setdefault("persistent_workers", True)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=shuffle, **kwargs)
