"""The noise model of docs/model.md on torch tensors (any device), for training batches.

A **statistical twin** of the numpy engine, not a bit-identical one: it uses torch's own generators
(``torch.poisson``, ``torch.rand``, ``torch.randn``) instead of the counter-based Philox of the engine, so
for the same clean input and parameters the two agree in distribution (each switch of
:class:`~noisesim.params.NoiseComponents` tested against the engine, tests/test_torch_noise.py) and
exactly where the model is deterministic (no random term on; float64 input follows the engine's float64
arithmetic step by step). Per pixel, with the engine's symbols (Wei et al., ELD, CVPR 2020; Feng et al.,
PMN, ACM MM 2022; EMVA 1288 for DSNU, PRNU and dark current)::

    μ_e = max(y, 0) · (W_c − B_c) / (r · K) · (1 + PRNU) + I_dark · t     expected electrons of the short exposure
    D   = K · Poisson(μ_e) + b_c + B_c                                  shot noise (photon + dark current)
        + s · N_read                                                    N(0, σ_read²) or σ_TL · Q_λ(U); s = per-pixel σ scale
        + σ_row · ρ_row + σ_col · ρ_col                                 one N(0, 1) per sensor row / column
        + DS(iso)                                                       dark shading k · iso + b (DSNU)
    D   = floor(D + ½)  (quantize)  or  D + U(−½, ½) (dither)  or  D
    D   = clip(D, lo_c, W_c)                                            lo_c = 0 DN, or B_c with clip_at_black
    out = (D − B_c) / (W_c − B_c)                                       normalized (or D in DN)

Rounding is half up, as the engine's kernel (``torch.round`` would round half to even). The fixed-pattern
maps (:class:`~noisesim.params.FixedPatternMaps`: dark shading, PRNU, per-pixel dark current, hot pixels
with their own dark current, per-pixel read σ) apply as in the engine, each sample reading the full-sensor
maps at its own ``origin``; :class:`DeviceMaps` holds them on a device.

Two interfaces, in the style of kornia's augmentations:

* :func:`simulate_torch` — a function: clean batch, parameters (one :class:`~noisesim.params.NoiseParams`,
  one per sample, or a :class:`NoiseParamsBatch`) → noisy batch.
* :class:`RawNoise` — a ``torch.nn.Module`` that draws per-sample parameters from a card on the batch's
  device (:class:`CardParamSampler`), keeps the last draw in ``.params`` and replays given ones:
  ``noisy = aug(clean)``; ``again = aug(clean2, params=aug.params)``.

Device and floating dtype come from the input (float16/bfloat16 are computed in float32 and returned in
the input's dtype). A forward pass of :class:`RawNoise`, and :func:`simulate_torch` with a
:class:`NoiseParamsBatch` on the batch's device, make no host round trip (no host → device copy, no read
back; what goes to a device — sensor levels, card tables, maps — goes once): tests/test_torch_device.py.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("noisesim.torch_noise needs PyTorch: pip install 'noisesim[torch]'") from exc

from .card import Card
from .errors import ParameterError, ShapeError
from .params import READ_MODELS, FixedPatternMaps, NoiseComponents, NoiseParams, Sensor
from .stats import TUKEY_LOGISTIC_EPS

__all__ = ["CardParamSampler", "DeviceMaps", "NoiseParamsBatch", "RawNoise", "simulate_torch", "tukey_lambda_quantile"]

# Uniforms are clamped to [U_EPS, 1 − U_EPS]: 2⁻²⁴ is the resolution of a float32 uniform in [0, 1).
U_EPS = 2.0**-24


def tukey_lambda_quantile(u: torch.Tensor, lam) -> torch.Tensor:
    """Tukey-lambda quantile ``Q_λ(u)`` elementwise (the torch twin of :func:`noisesim.stats.tukey_lambda_ppf`).

    Parameters
    ----------
    u : torch.Tensor
        Probabilities in (0, 1), any shape, floating dtype.
    lam : float or torch.Tensor
        Shape λ, broadcastable to ``u``.

    Returns
    -------
    torch.Tensor
        ``(expm1(λ log u) − expm1(λ log(1 − u))) / λ`` (no cancellation for small |λ|), and the logistic
        quantile ``log u − log(1 − u)`` where ``|λ| < TUKEY_LOGISTIC_EPS``; same shape as ``u``, unitless
        (multiply by σ_TL for DN).
    """
    lu = torch.log(u)
    l1u = torch.log1p(-u)
    lam = torch.as_tensor(lam, dtype=u.dtype, device=u.device)
    small = lam.abs() < TUKEY_LOGISTIC_EPS
    safe = torch.where(small, torch.ones_like(lam), lam)
    q = (torch.expm1(safe * lu) - torch.expm1(safe * l1u)) / safe
    return torch.where(small, lu - l1u, q)


@dataclass(frozen=True)
class NoiseParamsBatch:
    """Per-sample noise parameters of a batch, as tensors on one device (the batched :class:`NoiseParams`).

    Every field is a tensor of shape ``(N,)`` (``black_level_error_dn``: ``(N, 4)``, Bayer reading order),
    floating, with the units of the :class:`~noisesim.params.NoiseParams` field of the same name;
    ``tukey`` is a bool ``(N,)`` tensor (True: Tukey-lambda read noise, False: Gaussian) and ``ratio`` the
    exposure ratio r ≥ 1 of each sample. ``dark_e`` is the expected dark charge I_dark · t [e⁻];
    ``black_level_dn`` ``(N, 4)`` the sample's own black level [DN] (a card row's), NaN for the sensor's.
    The fixed-pattern maps read ``iso`` (dark shading DS = k · iso + b; NaN: none), ``exposure_s`` [s]
    (per-pixel dark current × t) and ``hot_pixel_dark_current_e_per_s`` (NaN: none); ``origin``, when
    set, is the ``(N, 2)`` int64 top-left mosaic pixel of each sample in the full sensor, where it reads
    the maps (:class:`RawNoise` draws it). Fields left None read as NaN / 0 s / no origin.
    ``read_model`` ("tukey" or "gaussian"), when every sample has that read model (it must agree with
    ``tukey``), lets a call draw only that read noise; None: each sample's own, both drawn.

    Build one with :meth:`from_params` or :meth:`CardParamSampler.sample`; :meth:`to_params` goes back.

    Attributes
    ----------
    gain_k_dn_per_e, read_sigma_dn, tukey_lambda, tukey_scale_dn, row_sigma_dn, col_sigma_dn : (N,) tensor
        As the :class:`~noisesim.params.NoiseParams` fields [DN/e⁻, DN, 1, DN, DN, DN].
    tukey : (N,) bool tensor
        Tukey-lambda (True) or Gaussian (False) read noise.
    black_level_error_dn : (N, 4) tensor
        [DN], Bayer reading order.
    dark_e : (N,) tensor
        Expected dark charge [e⁻].
    ratio : (N,) tensor
        Exposure ratio r ≥ 1.
    black_level_dn : (N, 4) tensor or None
        [DN]; NaN: the sensor's.
    iso, exposure_s, hot_pixel_dark_current_e_per_s : (N,) tensor or None
        For the maps [ISO, s, e⁻/s].
    origin : (N, 2) int64 tensor or None
        Top-left mosaic pixel of each sample in the full sensor.
    """

    gain_k_dn_per_e: torch.Tensor
    tukey: torch.Tensor
    read_sigma_dn: torch.Tensor
    tukey_lambda: torch.Tensor
    tukey_scale_dn: torch.Tensor
    row_sigma_dn: torch.Tensor
    col_sigma_dn: torch.Tensor
    black_level_error_dn: torch.Tensor
    dark_e: torch.Tensor
    ratio: torch.Tensor
    black_level_dn: torch.Tensor
    iso: torch.Tensor | None = None
    exposure_s: torch.Tensor | None = None
    hot_pixel_dark_current_e_per_s: torch.Tensor | None = None
    origin: torch.Tensor | None = None
    read_model: str | None = None

    def __len__(self) -> int:
        return int(self.gain_k_dn_per_e.shape[0])

    @classmethod
    def from_params(cls, params, n: int | None = None, *, ratio=1.0, device=None, dtype=torch.float32) -> "NoiseParamsBatch":
        """Stack host records into a batch (one host → device copy for all fields).

        Parameters
        ----------
        params : NoiseParams or sequence of NoiseParams
            One record for all ``n`` samples, or one per sample.
        n : int, optional
            Batch size; needed with a single record.
        ratio : float, sequence of floats or torch.Tensor
            Exposure ratio r ≥ 1, one for all or one per sample. A tensor stays on its device (checked for
            r ≥ 1 only when it is on the CPU: a check on another device would wait for it).
        device, dtype
            Where the tensors live and their floating dtype.

        Returns
        -------
        NoiseParamsBatch
        """
        if isinstance(params, NoiseParams):
            if n is None:
                raise ParameterError("NoiseParamsBatch.from_params needs n with a single NoiseParams")
            plist = [params] * n
        else:
            plist = list(params)
        n = len(plist) if n is None else n
        if len(plist) != n or not all(isinstance(q, NoiseParams) for q in plist):
            raise ParameterError(f"params must be one NoiseParams or a sequence of {n} (one per sample), got {len(plist)}")
        r_dev = None
        if isinstance(ratio, torch.Tensor):
            r_dev = ratio.detach().reshape(-1)
            if r_dev.shape[0] == 1:
                r_dev = r_dev.expand(n)
            if r_dev.shape != (n,):
                raise ShapeError(f"ratio must be a float or have shape ({n},). Got {tuple(ratio.shape)}.")
            if r_dev.device.type == "cpu":
                r_host = r_dev.to(torch.float64)
                if not bool((torch.isfinite(r_host) & (r_host >= 1)).all()):
                    raise ParameterError("ratio must be finite and >= 1 for every sample")
            r = np.ones(n)
        else:
            r = np.asarray(ratio, dtype=np.float64).reshape(-1)
            if r.size == 1:
                r = np.full(n, float(r[0]))
            if r.shape != (n,):
                raise ShapeError(f"ratio must be a float or have shape ({n},). Got {tuple(r.shape)}.")
            if not np.all(np.isfinite(r) & (r >= 1)):
                raise ParameterError("ratio must be finite and >= 1 for every sample")

        def opt(v):
            return math.nan if v is None else float(v)

        # One (n, 20) host table, copied to the device once, then split into the fields (views).
        table = np.empty((n, 20), dtype=np.float64)
        for i, q in enumerate(plist):
            table[i, :12] = (q.gain_k_dn_per_e, q.read_model == "tukey", q.read_sigma_dn, q.tukey_lambda, q.tukey_scale_dn,
                             q.row_sigma_dn, q.col_sigma_dn, q.dark_current_e_per_s * q.exposure_s, r[i], opt(q.iso),
                             q.exposure_s, opt(q.hot_pixel_dark_current_e_per_s))
            table[i, 12:16] = q.black_level_error_dn
            table[i, 16:20] = q.black_level_dn if q.black_level_dn is not None else (math.nan,) * 4
        t = torch.as_tensor(table, dtype=dtype, device=device)
        return cls(
            gain_k_dn_per_e=t[:, 0],
            tukey=t[:, 1] > 0.5,
            read_sigma_dn=t[:, 2],
            tukey_lambda=t[:, 3],
            tukey_scale_dn=t[:, 4],
            row_sigma_dn=t[:, 5],
            col_sigma_dn=t[:, 6],
            dark_e=t[:, 7],
            ratio=t[:, 8] if r_dev is None else r_dev.to(device=t.device, dtype=dtype),
            iso=t[:, 9],
            exposure_s=t[:, 10],
            hot_pixel_dark_current_e_per_s=t[:, 11],
            black_level_error_dn=t[:, 12:16],
            black_level_dn=t[:, 16:20],
            read_model=plist[0].read_model if len({q.read_model for q in plist}) == 1 else None,
        )

    def to(self, device=None, dtype=None) -> "NoiseParamsBatch":
        """The same batch on another device and/or floating dtype (``tukey`` stays bool, ``origin`` int64).

        Parameters
        ----------
        device : torch.device or str, optional
        dtype : torch floating dtype, optional

        Returns
        -------
        NoiseParamsBatch
        """
        changes = {}
        for f in dataclasses.fields(self):
            t = getattr(self, f.name)
            if isinstance(t, torch.Tensor):
                changes[f.name] = t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)
        return dataclasses.replace(self, **changes)

    def to_params(self) -> list[NoiseParams]:
        """One :class:`NoiseParams` per sample (host copies).

        Returns
        -------
        list of NoiseParams
            The ratios and origins are not part of NoiseParams: read them from ``ratio`` and ``origin``.
            ``dark_e`` becomes dark current over ``exposure_s`` (over 1 s when the exposure is 0 or unknown).
        """
        host = {f.name: getattr(self, f.name).detach().cpu().numpy() for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}
        nan = np.full(len(self), math.nan)
        iso, hot = host.get("iso", nan), host.get("hot_pixel_dark_current_e_per_s", nan)
        exposure = host.get("exposure_s", np.zeros(len(self)))

        def optional(v):
            return None if np.isnan(v) else float(v)

        out = []
        for i in range(len(self)):
            dark_e, t = float(host["dark_e"][i]), float(exposure[i])
            if t > 0:
                dark = dict(dark_current_e_per_s=dark_e / t, exposure_s=t)
            else:
                dark = dict(dark_current_e_per_s=dark_e, exposure_s=1.0 if dark_e else 0.0)
            out.append(NoiseParams(
                gain_k_dn_per_e=float(host["gain_k_dn_per_e"][i]),
                read_model="tukey" if host["tukey"][i] else "gaussian",
                read_sigma_dn=float(host["read_sigma_dn"][i]),
                tukey_lambda=float(host["tukey_lambda"][i]),
                tukey_scale_dn=float(host["tukey_scale_dn"][i]),
                row_sigma_dn=float(host["row_sigma_dn"][i]),
                col_sigma_dn=float(host["col_sigma_dn"][i]),
                black_level_error_dn=tuple(float(v) for v in host["black_level_error_dn"][i]),
                black_level_dn=None if np.isnan(host["black_level_dn"][i]).any() else tuple(float(v) for v in host["black_level_dn"][i]),
                iso=optional(iso[i]),
                hot_pixel_dark_current_e_per_s=optional(hot[i]),
                **dark,
            ))
        return out


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # DN up to 65535 and Poisson counts need more than float16's 11 bits of mantissa.
    return torch.float64 if dtype == torch.float64 else torch.float32


# Sensor tiles per (sensor, device, dtype): made once, so a call makes no host → device copy for them.
_TILES: dict = {}


def _sensor_tiles(sensor: Sensor, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Black and white level per colour site [DN], two (4,) tensors, and the (p, p) site index of the tile."""
    key = (sensor, torch.device(device) if device is not None else torch.device("cpu"), dtype)
    hit = _TILES.get(key)
    if hit is None:
        if len(_TILES) >= 32:
            _TILES.pop(next(iter(_TILES)))
        levels = torch.as_tensor(np.array([sensor.black_level_dn, sensor.white_level_dn], dtype=np.float64), dtype=dtype, device=device)
        hit = _TILES[key] = (levels[0], levels[1], torch.as_tensor(sensor.cfa.site_index, dtype=torch.long, device=device))
    return hit


def _phase_medians(values: torch.Tensor, keep: tuple) -> torch.Tensor:
    """(…, p, p) median of each CFA phase of full-sensor ``values`` (…, H_s, W_s) over the pixels ``keep``.

    ``keep[py][px]`` holds the flat indices (into the phase's own (H_s/p · W_s/p) grid) of its unmasked
    pixels, or None when every pixel is masked (then NaN, as ``np.median`` of nothing). Even counts take
    the mean of the two middle values, as ``np.median``; everything stays on the device (no masked
    selection: its size would need a host sync).
    """
    p = len(keep)
    rows = []
    for py in range(p):
        cols = []
        for px in range(p):
            idx = keep[py][px]
            sub = values[..., py::p, px::p].reshape(*values.shape[:-2], -1)
            if idx is None:
                cols.append(torch.full(values.shape[:-2], math.nan, dtype=values.dtype, device=values.device))
                continue
            sel = sub.index_select(-1, idx)
            m = idx.shape[0]
            hi = torch.kthvalue(sel, m // 2 + 1, dim=-1).values
            cols.append(hi if m % 2 else (torch.kthvalue(sel, m // 2, dim=-1).values + hi) / 2)
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


@dataclass(frozen=True)
class DeviceMaps:
    """:class:`~noisesim.params.FixedPatternMaps` as float32 tensors on one device, for :func:`simulate_torch`.

    Made once per device (:meth:`from_maps`); each call then crops them on the device at the samples'
    origins. Fields as in FixedPatternMaps, full-sensor ``(H_s, W_s)`` tensors or None, plus what the
    engine derives from them: ``dark_current_cold_e_per_s`` (the dark-current map with its hot pixels
    replaced by the median of their CFA phase, used with the ``hot_pixels`` switch off) and the unmasked
    pixels of each phase (for the dark-shading medians, which depend on each sample's ISO).

    Attributes
    ----------
    shape : (H_s, W_s)
        Full-sensor shape [px].
    period : int
        CFA period p.
    dark_shading_k_dn_per_iso, dark_shading_b_dn : (H_s, W_s) tensor or None
        Dark shading DS = k · iso + b [DN per ISO, DN].
    prnu : (H_s, W_s) tensor or None
        Relative gain deviation [1].
    dark_current_e_per_s : (H_s, W_s) tensor or None
        [e⁻/s]; ``dark_current_cold_e_per_s`` the same with hot pixels replaced.
    hot_pixel_mask : (H_s, W_s) bool tensor or None
    read_sigma_scale : (H_s, W_s) tensor or None
        Each pixel's read σ over the card's [1].
    unmasked : tuple of tensors
        Indices of the pixels of each CFA phase outside the hot-pixel mask.
    """

    shape: tuple[int, int]
    period: int
    dark_shading_k_dn_per_iso: torch.Tensor | None
    dark_shading_b_dn: torch.Tensor | None
    prnu: torch.Tensor | None
    dark_current_e_per_s: torch.Tensor | None
    hot_pixel_mask: torch.Tensor | None
    read_sigma_scale: torch.Tensor | None
    dark_current_cold_e_per_s: torch.Tensor | None
    unmasked: tuple | None  # [py][px] flat indices into the phase grid, None: all masked

    @classmethod
    def from_maps(cls, maps: FixedPatternMaps, period: int, *, device=None) -> "DeviceMaps":
        """Copy ``maps`` (full sensor, mosaic layout) to ``device``.

        Parameters
        ----------
        maps : FixedPatternMaps
        period : int
            CFA period p of the sensor (``sensor.cfa.period``); the maps' shape must be a multiple of it.
        device : torch.device or str, optional

        Returns
        -------
        DeviceMaps
        """
        if isinstance(maps, DeviceMaps):
            return maps.to(device)
        if not isinstance(maps, FixedPatternMaps):
            raise ParameterError(f"maps must be FixedPatternMaps (e.g. card.maps), got {type(maps).__name__}")
        shape = maps.shape or (0, 0)
        if shape[0] % period or shape[1] % period:
            raise ShapeError(f"maps of shape {shape} do not fit the CFA period {period}")

        def dev(a, dtype=torch.float32):
            return None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

        mask = dev(maps.hot_pixel_mask, torch.bool)
        unmasked = cold = None
        if maps.hot_pixel_mask is not None:
            m = maps.hot_pixel_mask
            unmasked = tuple(
                tuple(
                    (dev(np.flatnonzero(~m[py::period, px::period]), torch.long) if (~m[py::period, px::period]).any() else None)
                    for px in range(period)
                )
                for py in range(period)
            )
        dc = dev(maps.dark_current_e_per_s)
        if dc is not None and mask is not None:
            cold = _replace_hot(dc, mask, _phase_medians(dc, unmasked))
        return cls(shape=tuple(shape), period=int(period), dark_shading_k_dn_per_iso=dev(maps.dark_shading_k_dn_per_iso),
                   dark_shading_b_dn=dev(maps.dark_shading_b_dn), prnu=dev(maps.prnu), dark_current_e_per_s=dc,
                   hot_pixel_mask=mask, read_sigma_scale=dev(maps.read_sigma_scale), dark_current_cold_e_per_s=cold,
                   unmasked=unmasked)

    def to(self, device) -> "DeviceMaps":
        """The same maps on ``device``.

        Parameters
        ----------
        device : torch.device or str

        Returns
        -------
        DeviceMaps
        """
        def move(v):
            if isinstance(v, torch.Tensor):
                return v.to(device=device)
            if isinstance(v, tuple) and v and isinstance(v[0], tuple):
                return tuple(tuple(None if i is None else i.to(device=device) for i in row) for row in v)
            return v

        return dataclasses.replace(self, **{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)})

    @property
    def device(self) -> torch.device | None:
        """Where the maps live (None: no maps)."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                return v.device
        return None


def _replace_hot(values: torch.Tensor, hot: torch.Tensor, medians: torch.Tensor) -> torch.Tensor:
    """``values`` (…, H, W) with the pixels ``hot`` (H, W) or (N, H, W) replaced by the (…, p, p) median of
    their phase (NaN medians, a phase all hot, keep their values, as the engine)."""
    p = medians.shape[-1]
    H, W = values.shape[-2:]
    tile = medians.repeat(*([1] * (medians.ndim - 2)), H // p, W // p)
    return torch.where(hot & ~torch.isnan(tile), tile, values)


def _crop(m: torch.Tensor, origin, H: int, W: int) -> torch.Tensor:
    """Window (H, W) of a full-sensor map: (H, W) at one origin (oy, ox), (N, H, W) at (N, 2) origins."""
    if isinstance(origin, torch.Tensor):
        rows = origin[:, 0:1] + torch.arange(H, device=m.device)  # (N, H)
        cols = origin[:, 1:2] + torch.arange(W, device=m.device)  # (N, W)
        return m[rows[:, :, None], cols[:, None, :]]
    oy, ox = origin
    return m[oy : oy + H, ox : ox + W]


def _check_origin(origin, n: int, H: int, W: int, p: int, maps: DeviceMaps | None, device):
    """Origin of each sample: (oy, ox) ints or an (N, 2) int64 tensor on ``device``; checked on the host
    when it is host data (a tensor on another device is used as given: checking it would wait for it)."""
    need = maps.shape if maps is not None else None
    if isinstance(origin, torch.Tensor):
        if origin.dtype.is_floating_point or origin.dtype == torch.bool:
            raise ParameterError(f"origin must be an integer tensor, got {origin.dtype}")
        o = origin.reshape(-1, 2) if origin.ndim == 1 else origin
        if o.shape not in ((1, 2), (n, 2)):
            raise ShapeError(f"origin must have shape (2,) or ({n}, 2). Got {tuple(origin.shape)}.")
        if o.device.type == "cpu":
            oh = o.to(torch.int64)
            bad = (oh < 0).any() or (oh % p != 0).any()
            if need is not None:
                bad = bad or (oh[:, 0] + H > need[0]).any() or (oh[:, 1] + W > need[1]).any()
            if bool(bad):
                raise ShapeError(f"every origin must be a non-negative multiple of the CFA period {p} with the frame "
                                 f"({H}, {W}) inside the maps {need}")
        return o.to(device=device, dtype=torch.int64).expand(n, 2)
    oy, ox = (int(v) for v in origin)
    if oy < 0 or ox < 0 or oy % p or ox % p:
        raise ShapeError(f"origin {tuple(origin)} must be non-negative multiples of the CFA period {p}")
    if need is not None and (oy + H > need[0] or ox + W > need[1]):
        raise ShapeError(f"maps of shape {need} do not cover the frame: frame ({H}, {W}) at origin {(oy, ox)} "
                         f"needs at least ({oy + H}, {ox + W})")
    return (oy, ox)


def _to_mosaic(clean: torch.Tensor, sensor: Sensor) -> torch.Tensor:
    """(N, C, h, w) packed or (N, H, W) mosaic → (N, H, W) mosaic, shapes checked."""
    cfa = sensor.cfa
    p = cfa.period
    if clean.ndim == 4:
        n, c, hp, wp = clean.shape
        if c != cfa.n_channels:
            raise ShapeError(
                f"packed clean must have shape (N, {cfa.n_channels}, H/{p}, W/{p}) for CFA {cfa.pattern}. "
                f"Got {tuple(clean.shape)}."
            )
        return clean.reshape(n, p, p, hp, wp).permute(0, 3, 1, 4, 2).reshape(n, hp * p, wp * p)
    if clean.ndim == 3:
        if clean.shape[1] % p or clean.shape[2] % p:
            raise ShapeError(f"mosaic clean of shape {tuple(clean.shape)} does not fit CFA {cfa.pattern} (period {p})")
        return clean
    raise ShapeError(f"clean must have shape (N, C, h, w) or (N, H, W). Got {tuple(clean.shape)}.")


def _map_terms(pb: NoiseParamsBatch, maps: DeviceMaps | None, origin, components: NoiseComponents, n, H, W, dtype):
    """(PRNU, dark charge [e⁻], dark shading [DN], read σ scale) of each pixel from the maps, each None when
    off, (H, W) or (N, H, W), in ``dtype`` — the engine's choices (noisesim.noise.simulate) term by term."""
    if maps is None or maps.device is None:
        return None, None, None, None
    f32 = torch.float32

    def per_sample(t):
        return t.reshape(n, 1, 1)

    def crop(m):
        return _crop(m, origin, H, W)

    cold = maps.hot_pixel_mask is not None and not components.hot_pixels  # hot pixels take their phase's median
    hot = crop(maps.hot_pixel_mask) if maps.hot_pixel_mask is not None else None
    prnu = crop(maps.prnu).to(dtype) if components.prnu and maps.prnu is not None else None
    nan = torch.full((n,), math.nan, dtype=dtype, device=pb.gain_k_dn_per_e.device)
    exposure = pb.exposure_s if pb.exposure_s is not None else torch.zeros_like(nan)
    dark = None
    if components.dark_current:
        if maps.dark_current_e_per_s is not None:
            dc = crop(maps.dark_current_cold_e_per_s if cold else maps.dark_current_e_per_s)
            dark = (dc * per_sample(exposure.to(f32))).to(dtype)  # float32 product, as the engine
        elif components.hot_pixels and hot is not None and pb.hot_pixel_dark_current_e_per_s is not None:
            # hot pixels carry their own dark current (it dominates long exposures); the rest the bulk figure
            rate = pb.hot_pixel_dark_current_e_per_s
            any_hot = hot.reshape(-1, H * W).any(dim=1) if hot.ndim == 3 else hot.any()
            has = per_sample(~torch.isnan(rate) & (exposure > 0) & any_hot)
            hot_e = per_sample(rate * exposure).to(f32).to(dtype)
            dark = torch.where(has & hot, hot_e, per_sample(pb.dark_e).to(f32).to(dtype))
            dark = torch.where(has, dark, per_sample(pb.dark_e))  # samples without it: the scalar, as no map
    ds = None
    if components.dark_shading and maps.dark_shading_k_dn_per_iso is not None:
        iso = (pb.iso if pb.iso is not None else nan).to(f32)
        ds = crop(maps.dark_shading_k_dn_per_iso) * per_sample(iso) + crop(maps.dark_shading_b_dn)  # float32, as the engine
        if cold:  # the medians depend on each sample's ISO: one full-sensor map at a time (memory)
            k_full, b_full = maps.dark_shading_k_dn_per_iso, maps.dark_shading_b_dn
            med = torch.stack([_phase_medians(k_full * iso[i] + b_full, maps.unmasked) for i in range(n)])
            ds = _replace_hot(ds, hot, med)
        ds = ds.to(dtype)
    scale = None
    if components.read and components.per_pixel_read and maps.read_sigma_scale is not None:
        scale = crop(maps.read_sigma_scale).to(dtype)
    return prnu, dark, ds, scale


def _noise(mosaic, pb: NoiseParamsBatch, black_sites, white_sites, site_index, components: NoiseComponents, generator,
           output_unit, maps=None, origin=(0, 0)):
    """The model on an (N, H, W) mosaic in its compute dtype; all tensors on one device (no host sync).

    The arithmetic follows the engine's reference kernel (noisesim.kernels.fused_noise_numpy) step by
    step, so float64 input reproduces its deterministic terms exactly.
    """
    n, H, W = mosaic.shape
    dev, dtype = mosaic.device, mosaic.dtype
    p = site_index.shape[0]
    # per-sample black level (a card row's own, NaN: the sensor's), (N, H, W); white level (H, W)
    black_n = torch.where(torch.isnan(pb.black_level_dn), black_sites, pb.black_level_dn)
    black = black_n[:, site_index].repeat(1, H // p, W // p)
    white = white_sites[site_index].repeat(H // p, W // p)

    def per_sample(t):
        return t.reshape(n, 1, 1)

    prnu, dark, ds, scale = _map_terms(pb, maps, origin, components, n, H, W, dtype)
    k = per_sample(pb.gain_k_dn_per_e)
    mu_e = torch.clamp(mosaic, min=0.0) * ((white - black) / (per_sample(pb.ratio) * k))
    if prnu is not None:
        mu_e = mu_e * (1.0 + prnu)
    if dark is not None:
        mu_e = mu_e + dark
    elif components.dark_current:
        mu_e = mu_e + per_sample(pb.dark_e)
    add = black + pb.black_level_error_dn[:, site_index].repeat(1, H // p, W // p) if components.black_level_error else black
    d = k * (torch.poisson(mu_e, generator=generator) if components.shot else mu_e) + add

    if components.read:
        # one read model for the whole batch (a host-side hint): only its draw; else both, chosen per sample
        tl = g = None
        if pb.read_model != "gaussian":
            u = torch.rand(mosaic.shape, generator=generator, device=dev, dtype=dtype).clamp_(U_EPS, 1.0 - U_EPS)
            tl = tukey_lambda_quantile(u, per_sample(pb.tukey_lambda)) * per_sample(pb.tukey_scale_dn)
        if pb.read_model != "tukey":
            g = torch.randn(mosaic.shape, generator=generator, device=dev, dtype=dtype) * per_sample(pb.read_sigma_dn)
        read = g if tl is None else tl if g is None else torch.where(per_sample(pb.tukey), tl, g)
        d = d + (read if scale is None else read * scale)
    if components.row:
        if components.row_per_channel:
            # One offset per packed-channel row: each column phase of each sensor row draws its own value.
            rows = torch.randn((n, H, p), generator=generator, device=dev, dtype=dtype).repeat(1, 1, W // p)
        else:
            rows = torch.randn((n, H, 1), generator=generator, device=dev, dtype=dtype)
        d = d + rows * per_sample(pb.row_sigma_dn)
    if components.column:
        cols = torch.randn((n, 1, W), generator=generator, device=dev, dtype=dtype)
        d = d + cols * per_sample(pb.col_sigma_dn)
    if ds is not None:
        d = d + ds

    if components.quantize:
        d = torch.floor(d + 0.5)  # half up, as the kernel (torch.round is half to even)
    elif components.dither:
        d = d + (torch.rand(mosaic.shape, generator=generator, device=dev, dtype=dtype) - 0.5)
    if components.clip:
        lo = black if components.clip_at_black else torch.zeros_like(black)
        d = torch.minimum(torch.maximum(d, lo), white)
    return d if output_unit == "dn" else (d - black) * (1.0 / (white - black))


def _check_output_unit(output_unit: str) -> None:
    if output_unit not in ("normalized", "dn"):
        raise ParameterError(f"output_unit must be 'normalized' or 'dn', got {output_unit!r}")


def _run(clean, pb: NoiseParamsBatch, sensor: Sensor, tiles, components, generator, output_unit, maps=None, origin=None):
    if not isinstance(clean, torch.Tensor):
        raise ShapeError(f"clean must be a torch.Tensor, got {type(clean).__name__}")
    _check_output_unit(output_unit)
    out_dtype = clean.dtype if torch.is_floating_point(clean) else torch.float32
    cdt = _compute_dtype(out_dtype)
    mosaic = _to_mosaic(clean, sensor).to(cdt)
    n, H, W = mosaic.shape
    if len(pb) != n:
        raise ParameterError(f"params describe {len(pb)} samples, the batch has {n}")
    pb = pb.to(device=mosaic.device, dtype=cdt)
    p = sensor.cfa.period
    if maps is not None and maps.device is not None and maps.device != mosaic.device:
        raise ParameterError(f"maps are on {maps.device}, the batch on {mosaic.device}: DeviceMaps.from_maps(maps, p, device=…)")
    if maps is not None and maps.device is not None and maps.period != p:
        raise ParameterError(f"maps made for CFA period {maps.period}, the sensor's is {p}")
    if origin is None:
        origin = pb.origin if pb.origin is not None else (0, 0)
    origin = _check_origin(origin, n, H, W, p, maps if maps is not None and maps.device is not None else None, mosaic.device)
    if (components.dark_shading and maps is not None and maps.dark_shading_k_dn_per_iso is not None
            and pb.iso is not None and pb.iso.device.type == "cpu" and bool(torch.isnan(pb.iso).any())):
        raise ParameterError("dark shading DS(iso) = k·iso + b needs each sample's iso; set it or switch dark_shading off")
    if components.dark_shading and maps is not None and maps.dark_shading_k_dn_per_iso is not None and pb.iso is None:
        raise ParameterError("dark shading DS(iso) = k·iso + b needs each sample's iso; set it or switch dark_shading off")
    black, white, site_index = tiles
    dev = mosaic.device
    out = _noise(mosaic, pb, black.to(dev, cdt), white.to(dev, cdt), site_index.to(dev), components, generator, output_unit,
                 maps, origin)
    if clean.ndim == 4:
        hp, wp = clean.shape[2], clean.shape[3]
        out = out.reshape(n, hp, p, wp, p).permute(0, 2, 4, 1, 3).reshape(n, p * p, hp, wp)
    return out.to(out_dtype)


def _warn_without_maps(sensor: Sensor, maps, stacklevel: int) -> None:
    if maps is None and sensor.maps_of_card is not None:
        warnings.warn(
            f"the sensor of card {sensor.maps_of_card!r} is used without the card's fixed-pattern maps (DSNU, PRNU, "
            "hot pixels): they are left out. Pass maps=card.maps (maps=FixedPatternMaps() to leave them out knowingly)",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


# Maps copied to a device once per (maps object, device); checked by identity through weak references.
_MAPS: dict = {}


def _device_maps(maps, period: int, device) -> DeviceMaps | None:
    if maps is None or isinstance(maps, DeviceMaps):
        return maps
    if not isinstance(maps, FixedPatternMaps):
        raise ParameterError(f"maps must be FixedPatternMaps or DeviceMaps, got {type(maps).__name__}")
    key = (id(maps), period, torch.device(device))
    hit = _MAPS.get(key)
    if hit is not None and hit[0]() is maps:
        return hit[1]
    dm = DeviceMaps.from_maps(maps, period, device=device)
    if len(_MAPS) >= 8:
        _MAPS.pop(next(iter(_MAPS)))
    _MAPS[key] = (weakref.ref(maps), dm)
    return dm


def simulate_torch(
    clean: torch.Tensor,
    params: NoiseParams | Sequence[NoiseParams] | NoiseParamsBatch,
    sensor: Sensor,
    *,
    ratio=1.0,
    components: NoiseComponents = NoiseComponents(),
    maps: FixedPatternMaps | DeviceMaps | None = None,
    origin=None,
    generator: torch.Generator | None = None,
    output_unit: str = "normalized",
) -> torch.Tensor:
    """Add sensor noise to a batch of clean normalized raw frames with torch.

    Device and dtype come from ``clean``: every tensor of the computation is made on its device. With a
    :class:`NoiseParamsBatch` on that device (and maps as :class:`DeviceMaps`, or FixedPatternMaps, copied
    on their first use per device) a call makes no host round trip: no host → device copy, no device →
    host read, so it queues on a CUDA stream without waiting. Host records (:class:`NoiseParams`) cost one
    small host → device copy per call.

    Parameters
    ----------
    clean : torch.Tensor
        Clean long exposure, normalized ((DN − B) / (W − B)); ``(N, C, h, w)`` packed (C = p², channel
        order of :mod:`noisesim.cfa`) or ``(N, H, W)`` mosaic. Any device.
    params : NoiseParams, sequence of N NoiseParams, or NoiseParamsBatch
        One record for the whole batch, one per sample (e.g. each drawn with
        :func:`noisesim.sampling.sample_params`), or a batch (its own ``ratio`` is used, ``ratio`` ignored).
    sensor : Sensor
        CFA and per-site black/white levels [DN].
    ratio : float, sequence or (N,) tensor
        Exposure ratio r ≥ 1 per sample: the expected signal is divided by r.
    components : NoiseComponents
        Switches, as :func:`noisesim.noise.simulate`.
    maps : FixedPatternMaps or DeviceMaps, optional
        Full-sensor (H_s, W_s) maps (e.g. ``card.maps``): dark shading (needs each sample's ``iso``), PRNU,
        per-pixel dark current, hot pixels and their dark current, per-pixel read σ. None: no maps (a card's
        own sensor without them warns, as the engine).
    origin : (int, int), (N, 2) integer tensor or None
        Top-left mosaic pixel of each sample in the full sensor, where it reads the maps (multiples of the
        CFA period). None: ``params.origin`` of a batch that has one, else (0, 0).
    generator : torch.Generator, optional
        Source of randomness (on the tensor's device); the global torch generator when None.
    output_unit : {"normalized", "dn"}
        Normalized (not multiplied by the ratio) or raw DN including the black level.

    Returns
    -------
    torch.Tensor
        Noisy frames, same shape and device as ``clean``, in its floating dtype (float32 for integer input;
        float16/bfloat16 computed in float32).

    Shape
    -----
    (N, C, h, w) → (N, C, h, w); (N, H, W) → (N, H, W).

    Examples
    --------
    >>> import torch
    >>> from noisesim import NoiseComponents, NoiseParams, Sensor
    >>> sensor = Sensor("RGGB", bit_depth=12, black_level_dn=64)
    >>> noisy = simulate_torch(torch.full((2, 8, 8), 0.5), NoiseParams(gain_k_dn_per_e=2.0), sensor,
    ...                        components=NoiseComponents.only(), output_unit="dn")
    >>> float(noisy[0, 0, 0])   # no random term on: floor(0.5 · (4095 − 64) + 64 + ½)
    2080.0
    """
    if not isinstance(clean, torch.Tensor):
        raise ShapeError(f"clean must be a torch.Tensor, got {type(clean).__name__}")
    _check_output_unit(output_unit)
    _warn_without_maps(sensor, maps, stacklevel=2)
    cdt = _compute_dtype(clean.dtype)
    if not isinstance(params, NoiseParamsBatch):
        n = _to_mosaic(clean, sensor).shape[0]
        params = NoiseParamsBatch.from_params(params, n, ratio=ratio, device=clean.device, dtype=cdt)
    tiles = _sensor_tiles(sensor, clean.device, cdt)
    dmaps = _device_maps(maps, sensor.cfa.period, clean.device)
    return _run(clean, params, sensor, tiles, components, generator, output_unit, dmaps, origin)


def _equivalent_iso(log_k: torch.Tensor, table_log_k: torch.Tensor, table_log_iso: torch.Tensor) -> torch.Tensor:
    """The card's equivalent ISO of each K (as :func:`noisesim.sampling.sample_params` gives it): linear in
    (ln K, ln ISO) between the table's rows, K ∝ ISO beyond its ends (analogue gain). (n,) → (n,), on the device."""
    m = table_log_k.shape[0]
    if m == 1:
        return torch.exp(table_log_iso[0] + log_k - table_log_k[0])
    j = torch.searchsorted(table_log_k, log_k).clamp(1, m - 1)  # segment [j − 1, j]
    x0, x1, y0, y1 = table_log_k[j - 1], table_log_k[j], table_log_iso[j - 1], table_log_iso[j]
    inside = y0 + (log_k - x0) * (y1 - y0) / (x1 - x0)
    below = table_log_iso[0] + log_k - table_log_k[0]
    above = table_log_iso[-1] + log_k - table_log_k[-1]
    return torch.exp(torch.where(log_k <= table_log_k[0], below, torch.where(log_k >= table_log_k[-1], above, inside)))


class CardParamSampler:
    """Draws per-sample noise parameters from a card's joint ISO model on a torch device.

    The batched twin of :func:`noisesim.sampling.sample_params` with neither ``iso`` nor
    ``gain_k_dn_per_e`` (``ln K ~ U(ln K_min, ln K_max)``, profile by weight, ``ln σ_x`` log-linear in
    ln K plus scatter; λ, black-level error, column σ, dark current, hot-pixel dark current and black level
    from the ISO-table row nearest in ln K, or λ uniform over ``joint.tukey_lambda_values`` and the
    black-level error of the ln K bin without a table; the equivalent ISO of K, for dark shading), and the
    exposure ratio log-uniform in ``ratio_range``. The card is read once into
    small tensors; :meth:`sample` runs on the device only.

    Parameters
    ----------
    card : Card
        Needs a joint model (``[joint]``); a card with only an ISO table raises ParameterError.
    ratio_range : (float, float)
        Exposure ratio bounds, 1 ≤ lo ≤ hi (log-uniform; lo == hi fixes it).
    read_model : {"tukey", "gaussian"}
    scatter : bool
        Add the residual scatter of the log-linear fits (as ELD) or use the fitted σ's.
    exposure_s : float
        Exposure time [s] of the short frame, for dark current.
    """

    def __init__(self, card: Card, *, ratio_range=(1.0, 1.0), read_model: str = "tukey", scatter: bool = True, exposure_s: float = 0.0):
        if not isinstance(card, Card):
            raise ParameterError(f"CardParamSampler needs a Card (see noisesim.load_card), got {type(card).__name__}")
        if card.joint is None:
            raise ParameterError(f"card {card.name!r} has no joint model: draw NoiseParams with sample_params per sample")
        if read_model not in READ_MODELS:
            raise ParameterError(f"read_model must be one of {READ_MODELS}, got {read_model!r}")
        lo, hi = (float(v) for v in ratio_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and 1.0 <= lo <= hi):
            raise ParameterError(f"ratio_range must satisfy 1 <= lo <= hi, got {tuple(ratio_range)}")
        self.card, self.read_model, self.scatter, self.exposure_s = card, read_model, bool(scatter), float(exposure_s)
        self.ratio_range = (lo, hi)
        joint = card.joint
        f64 = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64))  # noqa: E731
        self._log_k = (math.log(joint.k_min_dn_per_e), math.log(joint.k_max_dn_per_e))
        profs = joint.profiles
        self._p_log_k = f64([[math.log(q.k_min_dn_per_e), math.log(q.k_max_dn_per_e)] for q in profs])  # (P, 2)
        self._p_weight = f64([q.weight for q in profs])
        # (P, 3, 3): profile, σ (tukey_scale, read_sigma, row_sigma), (slope, intercept, residual_std)
        names = ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn")
        self._p_fit = f64([[[q.fit(nm).slope, q.fit(nm).intercept, q.fit(nm).residual_std] for nm in names] for q in profs])
        table = card.iso_table or ()
        self._t_log_k = f64([math.log(e.gain_k_dn_per_e) for e in table])
        self._t_lambda = f64([e.tukey_lambda for e in table])
        bins = joint.black_level_error_bins
        # NaN: the row has none, take the joint model's ln K bin (as sample_params)
        self._t_ble = f64([e.black_level_error_dn if e.black_level_error_dn is not None else (math.nan,) * 4 for e in table])
        self._t_col = f64([e.col_sigma_dn or 0.0 for e in table])
        self._t_dark = f64([e.dark_current_e_per_s or 0.0 for e in table])
        self._t_black = f64([e.black_level_dn or (math.nan,) * 4 for e in table])
        self._t_hot = f64([math.nan if e.hot_pixel_dark_current_e_per_s is None else e.hot_pixel_dark_current_e_per_s
                           for e in table])
        self._t_log_iso = f64([math.log(e.iso) for e in table])
        self._lambdas = f64(joint.tukey_lambda_values or (0.0,))
        self._bins = f64(bins or ((0.0,) * 4,))
        self._on_device: dict[tuple, dict[str, torch.Tensor]] = {}  # the tables above, copied once per device

    def sample(self, n: int, *, device=None, dtype=torch.float32, generator: torch.Generator | None = None) -> NoiseParamsBatch:
        """Draw ``n`` parameter sets on ``device``.

        Parameters
        ----------
        n : int
            Batch size.
        device, dtype
            Where the result lives and its floating dtype (the draw runs in float64 on that device, float32
            on devices without float64 such as Apple MPS).
        generator : torch.Generator, optional
            On ``device``; the global generator when None.

        Returns
        -------
        NoiseParamsBatch
        """
        dev = torch.device(device) if device is not None else torch.device("cpu")
        wdt = torch.float32 if dev.type == "mps" else torch.float64

        def rand(*shape):
            return torch.rand(shape, generator=generator, device=dev, dtype=wdt)

        tables = self._on_device.get((dev, wdt))
        if tables is None:
            names = ("_p_log_k", "_p_weight", "_p_fit", "_t_log_k", "_t_lambda", "_t_ble", "_t_col", "_t_dark", "_t_black",
                     "_t_hot", "_t_log_iso", "_lambdas", "_bins")
            tables = self._on_device[(dev, wdt)] = {nm: getattr(self, nm).to(device=dev, dtype=wdt) for nm in names}

        lo, hi = self._log_k
        lk = lo + (hi - lo) * rand(n)
        u_profile, u_lambda = rand(n), rand(n)
        z = torch.randn((n, 3), generator=generator, device=dev, dtype=wdt)
        # Profile: among those covering K by weight; the nearest in ln K when none covers (extrapolation).
        plk = tables["_p_log_k"]
        covers = (plk[:, 0] <= lk[:, None]) & (lk[:, None] <= plk[:, 1])  # (n, P)
        w = covers * tables["_p_weight"]
        cum = torch.cumsum(w, dim=1) / w.sum(dim=1, keepdim=True).clamp_min(1e-300)
        chosen = (cum <= u_profile[:, None]).sum(dim=1).clamp_max(plk.shape[0] - 1)
        dist = torch.maximum(plk[:, 0] - lk[:, None], lk[:, None] - plk[:, 1])
        prof = torch.where(covers.any(dim=1), chosen, dist.argmin(dim=1))
        fit = tables["_p_fit"][prof]  # (n, 3, 3)
        log_sigma = fit[:, :, 0] * lk[:, None] + fit[:, :, 1] + (fit[:, :, 2] * z if self.scatter else 0.0)
        sigma = torch.exp(log_sigma)
        nb = self._bins.shape[0]
        ble = tables["_bins"][((lk - lo) / (hi - lo) * nb).floor().long().clamp(0, nb - 1)]  # (n, 4)
        if self._t_log_k.numel():
            nearest = (tables["_t_log_k"][None, :] - lk[:, None]).abs().argmin(dim=1)  # first = lower ISO on ties
            lam, row_ble = tables["_t_lambda"][nearest], tables["_t_ble"][nearest]
            ble = torch.where(torch.isnan(row_ble), ble, row_ble)
            col, dark = tables["_t_col"][nearest], tables["_t_dark"][nearest] * self.exposure_s
            black, hot = tables["_t_black"][nearest], tables["_t_hot"][nearest]
            iso = _equivalent_iso(lk, tables["_t_log_k"], tables["_t_log_iso"])
        else:
            nl = self._lambdas.numel()
            lam = tables["_lambdas"][(u_lambda * nl).long().clamp_max(nl - 1)]
            col = dark = torch.zeros(n, device=dev, dtype=wdt)
            black = torch.full((n, 4), math.nan, device=dev, dtype=wdt)
            hot = iso = torch.full((n,), math.nan, device=dev, dtype=wdt)
        rlo, rhi = (math.log(v) for v in self.ratio_range)
        ratio = torch.exp(rlo + (rhi - rlo) * rand(n))
        batch = NoiseParamsBatch(
            gain_k_dn_per_e=torch.exp(lk),
            tukey=torch.full((n,), self.read_model == "tukey", dtype=torch.bool, device=dev),
            read_sigma_dn=sigma[:, 1],
            tukey_lambda=lam,
            tukey_scale_dn=sigma[:, 0],
            row_sigma_dn=sigma[:, 2],
            col_sigma_dn=col,
            black_level_error_dn=ble,
            dark_e=dark,
            ratio=ratio,
            black_level_dn=black,
            iso=iso,
            exposure_s=torch.full((n,), self.exposure_s, device=dev, dtype=wdt),
            hot_pixel_dark_current_e_per_s=hot,
            read_model=self.read_model,
        )
        return batch.to(dtype=dtype)


class RawNoise(torch.nn.Module):
    """Sensor noise as a ``torch.nn.Module``: per-sample parameters drawn on the batch's device, kept, replayable.

    In the style of kornia's augmentations: :meth:`forward_parameters` draws a :class:`NoiseParamsBatch`
    for a batch; :meth:`forward` applies given parameters or draws new ones, and stores what it used in
    ``self.params``, so ``aug(x2, params=aug.params)`` replays them on another batch (same parameters,
    fresh noise; pass a generator seeded alike for the same noise too). With ``maps``, each sample also
    draws where it lies on the full sensor (``params.origin``, uniform over the positions that keep the
    frame inside the maps, multiples of the CFA period), which a replay keeps too.

    Parameters
    ----------
    sensor : Sensor
        CFA and black/white levels [DN] (e.g. ``card.sensor``).
    sampler : CardParamSampler, optional
        Where parameters come from when ``forward`` gets none; without it every call needs ``params``.
    components : NoiseComponents
    output_unit : {"normalized", "dn"}
    maps : FixedPatternMaps or DeviceMaps, optional
        Full-sensor fixed-pattern maps (e.g. ``card.maps``), copied to each device once, on first use.

    Examples
    --------
    >>> import torch
    >>> from noisesim import load_card
    >>> card = load_card("SonyA7S2")
    >>> aug = RawNoise(card.sensor, CardParamSampler(card, ratio_range=(100, 300)), maps=card.maps)
    >>> clean = torch.rand(2, 4, 16, 16)          # (N, C, h, w) packed RGGB, normalized
    >>> noisy = aug(clean)
    >>> p = aug.params                            # the per-sample K, σ's, λ, ratio … as tensors
    >>> again = aug(clean, params=p)              # replay: same parameters, new noise
    >>> noisy.shape, len(p), bool((p.ratio >= 100).all())
    (torch.Size([2, 4, 16, 16]), 2, True)
    """

    def __init__(
        self,
        sensor: Sensor,
        sampler: CardParamSampler | None = None,
        *,
        components: NoiseComponents = NoiseComponents(),
        output_unit: str = "normalized",
        maps: FixedPatternMaps | DeviceMaps | None = None,
    ):
        super().__init__()
        _check_output_unit(output_unit)
        if maps is not None and not isinstance(maps, (FixedPatternMaps, DeviceMaps)):
            raise ParameterError(f"maps must be FixedPatternMaps or DeviceMaps, got {type(maps).__name__}")
        _warn_without_maps(sensor, maps, stacklevel=2)
        self.sensor, self.sampler, self.components, self.output_unit = sensor, sampler, components, output_unit
        self.maps = maps
        # Sensor tiles and maps per device, made on first use: one host → device copy per device, none per batch.
        # (Not buffers: module.half() would round 16383 DN to 16384.)
        self._tiles: dict[tuple, tuple] = {}
        self._maps: dict[torch.device, DeviceMaps] = {}
        self.params: NoiseParamsBatch | None = None

    def _maps_on(self, device) -> DeviceMaps | None:
        if self.maps is None or (isinstance(self.maps, FixedPatternMaps) and self.maps.shape is None):
            return None
        dm = self._maps.get(device)
        if dm is None:
            dm = self._maps[device] = DeviceMaps.from_maps(self.maps, self.sensor.cfa.period, device=device)
        return dm

    def forward_parameters(self, batch_shape, *, device=None, dtype=torch.float32, generator=None) -> NoiseParamsBatch:
        """Draw parameters for a batch of shape ``batch_shape`` ((N, C, h, w) packed or (N, H, W) mosaic)
        with the sampler, and with maps each sample's ``origin`` on the sensor.

        Parameters
        ----------
        batch_shape : tuple of int
            (N, C, h, w) or (N, H, W).
        device : torch.device, optional
            Where the parameters go.
        dtype : torch floating dtype
        generator : torch.Generator, optional
            Source of the draws.

        Returns
        -------
        NoiseParamsBatch
        """
        if self.sampler is None:
            raise ParameterError("RawNoise without a sampler needs params= in every call")
        n = int(batch_shape[0])
        pb = self.sampler.sample(n, device=device, dtype=dtype, generator=generator)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        dm = self._maps_on(dev)
        if dm is not None:
            p = self.sensor.cfa.period
            H, W = (batch_shape[-2] * p, batch_shape[-1] * p) if len(batch_shape) == 4 else tuple(batch_shape[-2:])
            (hs, ws) = dm.shape
            if H > hs or W > ws:
                raise ShapeError(f"maps of shape {dm.shape} do not cover a frame of ({H}, {W})")
            oy = torch.randint(0, (hs - H) // p + 1, (n,), generator=generator, device=dev)
            ox = torch.randint(0, (ws - W) // p + 1, (n,), generator=generator, device=dev)
            pb = dataclasses.replace(pb, origin=torch.stack([oy, ox], dim=1) * p)
        return pb

    def forward(self, clean: torch.Tensor, params: NoiseParamsBatch | None = None, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy version of ``clean`` (shape, device and dtype kept; see :func:`simulate_torch`).

        Parameters
        ----------
        clean : torch.Tensor
            ``(N, C, h, w)`` packed or ``(N, H, W)`` mosaic, normalized.
        params : NoiseParamsBatch, optional
            Replay these parameters (and their ``origin``; (0, 0) when they have none); drawn with the
            sampler when None.
        generator : torch.Generator, optional
            On ``clean``'s device; used for the parameter draw and the noise.

        Returns
        -------
        torch.Tensor
            Same shape, device and dtype as ``clean``; the parameters used are in ``self.params``.
        """
        if not isinstance(clean, torch.Tensor):
            raise ShapeError(f"clean must be a torch.Tensor, got {type(clean).__name__}")
        if params is None:
            params = self.forward_parameters(clean.shape, device=clean.device, dtype=_compute_dtype(clean.dtype), generator=generator)
        elif not isinstance(params, NoiseParamsBatch):
            raise ParameterError(f"params must be a NoiseParamsBatch, got {type(params).__name__}")
        self.params = params
        key = (clean.device, _compute_dtype(clean.dtype))
        tiles = self._tiles.get(key)
        if tiles is None:
            tiles = self._tiles[key] = _sensor_tiles(self.sensor, *key)
        return _run(clean, params, self.sensor, tiles, self.components, generator, self.output_unit, self._maps_on(clean.device))
