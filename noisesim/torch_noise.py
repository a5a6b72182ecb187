"""The noise model of docs/model.md on torch tensors (any device), for training batches.

A **statistical twin** of the numpy engine, not a bit-identical one: it uses torch's own generators
(``torch.poisson``, ``torch.rand``, ``torch.randn``) instead of the counter-based Philox of the engine, so
for the same clean input and parameters the two agree in distribution (each switch of
:class:`~noisesim.params.NoiseComponents` tested against the engine, tests/test_torch_noise.py) and
exactly where the model is deterministic (no random term on). Per pixel, with the engine's symbols
(Wei et al., ELD, CVPR 2020; Feng et al., PMN, ACM MM 2022)::

    μ_e = max(y, 0) · (W_c − B_c) / (r · K) + I_dark · t       expected electrons of the short exposure
    D   = K · Poisson(μ_e)                                     shot noise (photon + dark current)
        + N_read                                               N(0, σ_read²) or σ_TL · Q_λ(U)
        + σ_row · ρ_row + σ_col · ρ_col                        one N(0, 1) per sensor row / column
        + b_c + B_c                                            black-level error and black level
    D   = floor(D + ½)  (quantize)  or  D + U(−½, ½) (dither)  or  D
    D   = clip(D, lo_c, W_c)                                   lo_c = 0 DN, or B_c with clip_at_black
    out = (D − B_c) / (W_c − B_c)                              normalized (or D in DN)

Rounding is half up, as the kernel's. Fixed-pattern maps (dark shading, PRNU, per-pixel dark current, hot
pixels) are not implemented here: their switches have no effect (as in the engine without maps).

Two interfaces, in the style of kornia's augmentations:

* :func:`simulate_torch` — a function: clean batch, parameters (one :class:`~noisesim.params.NoiseParams`,
  one per sample, or a :class:`NoiseParamsBatch`) → noisy batch.
* :class:`RawNoise` — a ``torch.nn.Module`` that draws per-sample parameters from a card on the batch's
  device (:class:`CardParamSampler`), keeps the last draw in ``.params`` and replays given ones:
  ``noisy = aug(clean)``; ``again = aug(clean2, params=aug.params)``.

Device and floating dtype come from the input (float16/bfloat16 are computed in float32 and returned in
the input's dtype); a forward pass of :class:`RawNoise` makes no host round trip.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("noisesim.torch_noise needs PyTorch: pip install 'noisesim[torch]'") from exc

from .card import Card
from .errors import ParameterError, ShapeError
from .params import READ_MODELS, NoiseComponents, NoiseParams, Sensor
from .stats import TUKEY_LOGISTIC_EPS

__all__ = ["CardParamSampler", "NoiseParamsBatch", "RawNoise", "simulate_torch", "tukey_lambda_quantile"]

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

    Build one with :meth:`from_params` or :meth:`CardParamSampler.sample`; :meth:`to_params` goes back.
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

    def __len__(self) -> int:
        return int(self.gain_k_dn_per_e.shape[0])

    @classmethod
    def from_params(cls, params, n: int | None = None, *, ratio=1.0, device=None, dtype=torch.float32) -> "NoiseParamsBatch":
        """Stack host records into a batch.

        Parameters
        ----------
        params : NoiseParams or sequence of NoiseParams
            One record for all ``n`` samples, or one per sample.
        n : int, optional
            Batch size; needed with a single record.
        ratio : float, sequence of floats or torch.Tensor
            Exposure ratio r ≥ 1, one for all or one per sample.
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
        if isinstance(ratio, torch.Tensor):
            r = ratio.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy()
        else:
            r = np.asarray(ratio, dtype=np.float64).reshape(-1)
        if r.size == 1:
            r = np.full(n, float(r[0]))
        if r.shape != (n,):
            raise ShapeError(f"ratio must be a float or have shape ({n},). Got {tuple(r.shape)}.")
        if not np.all(np.isfinite(r) & (r >= 1)):
            raise ParameterError("ratio must be finite and >= 1 for every sample")

        def col(values):
            return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=dtype, device=device)

        return cls(
            gain_k_dn_per_e=col([q.gain_k_dn_per_e for q in plist]),
            tukey=torch.as_tensor([q.read_model == "tukey" for q in plist], dtype=torch.bool, device=device),
            read_sigma_dn=col([q.read_sigma_dn for q in plist]),
            tukey_lambda=col([q.tukey_lambda for q in plist]),
            tukey_scale_dn=col([q.tukey_scale_dn for q in plist]),
            row_sigma_dn=col([q.row_sigma_dn for q in plist]),
            col_sigma_dn=col([q.col_sigma_dn for q in plist]),
            black_level_error_dn=col([q.black_level_error_dn for q in plist]).reshape(n, 4),
            dark_e=col([q.dark_current_e_per_s * q.exposure_s for q in plist]),
            ratio=col(r),
            black_level_dn=col([q.black_level_dn or (math.nan,) * 4 for q in plist]).reshape(n, 4),
        )

    def to(self, device=None, dtype=None) -> "NoiseParamsBatch":
        """The same batch on another device and/or floating dtype (``tukey`` stays bool)."""
        changes = {}
        for f in dataclasses.fields(self):
            t = getattr(self, f.name)
            changes[f.name] = t.to(device=device) if t.dtype == torch.bool else t.to(device=device, dtype=dtype)
        return dataclasses.replace(self, **changes)

    def to_params(self) -> list[NoiseParams]:
        """One :class:`NoiseParams` per sample (host copies; ``dark_e`` becomes dark current over 1 s).

        Returns
        -------
        list of NoiseParams
            The ratios are not part of NoiseParams: read them from ``ratio``.
        """
        host = {f.name: getattr(self, f.name).detach().cpu().numpy() for f in dataclasses.fields(self)}
        return [
            NoiseParams(
                gain_k_dn_per_e=float(host["gain_k_dn_per_e"][i]),
                read_model="tukey" if host["tukey"][i] else "gaussian",
                read_sigma_dn=float(host["read_sigma_dn"][i]),
                tukey_lambda=float(host["tukey_lambda"][i]),
                tukey_scale_dn=float(host["tukey_scale_dn"][i]),
                row_sigma_dn=float(host["row_sigma_dn"][i]),
                col_sigma_dn=float(host["col_sigma_dn"][i]),
                black_level_error_dn=tuple(float(v) for v in host["black_level_error_dn"][i]),
                dark_current_e_per_s=float(host["dark_e"][i]),
                exposure_s=1.0 if host["dark_e"][i] else 0.0,
                black_level_dn=None if np.isnan(host["black_level_dn"][i]).any() else tuple(float(v) for v in host["black_level_dn"][i]),
            )
            for i in range(len(self))
        ]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # DN up to 65535 and Poisson counts need more than float16's 11 bits of mantissa.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _sensor_tiles(sensor: Sensor, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Black and white level per colour site [DN], two (4,) tensors, and the (p, p) site index of the tile."""
    black = torch.as_tensor(sensor.black_level_dn, dtype=dtype, device=device)
    white = torch.as_tensor(sensor.white_level_dn, dtype=dtype, device=device)
    return black, white, torch.as_tensor(sensor.cfa.site_index, dtype=torch.long, device=device)


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


def _noise(mosaic, pb: NoiseParamsBatch, black_sites, white_sites, site_index, components: NoiseComponents, generator, output_unit):
    """The model on an (N, H, W) mosaic in its compute dtype; all tensors on one device (no host sync)."""
    n, H, W = mosaic.shape
    dev, dtype = mosaic.device, mosaic.dtype
    p = site_index.shape[0]
    # per-sample black level (a card row's own, NaN: the sensor's), (N, H, W); white level (H, W)
    black_n = torch.where(torch.isnan(pb.black_level_dn), black_sites, pb.black_level_dn)
    black = black_n[:, site_index].repeat(1, H // p, W // p)
    white = white_sites[site_index].repeat(H // p, W // p)

    def per_sample(t):
        return t.reshape(n, 1, 1)

    k = per_sample(pb.gain_k_dn_per_e)
    mu_e = torch.clamp(mosaic, min=0.0) * (white - black) / (per_sample(pb.ratio) * k)
    if components.dark_current:
        mu_e = mu_e + per_sample(pb.dark_e)
    d = k * (torch.poisson(mu_e, generator=generator) if components.shot else mu_e)

    if components.read:
        is_tukey = per_sample(pb.tukey)
        u = torch.rand(mosaic.shape, generator=generator, device=dev, dtype=dtype).clamp_(U_EPS, 1.0 - U_EPS)
        tl = tukey_lambda_quantile(u, per_sample(pb.tukey_lambda)) * per_sample(pb.tukey_scale_dn)
        g = torch.randn(mosaic.shape, generator=generator, device=dev, dtype=dtype) * per_sample(pb.read_sigma_dn)
        d = d + torch.where(is_tukey, tl, g)
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
    if components.black_level_error:
        # (N, 4) in Bayer reading order → (N, p, p) tiles, as CFA.tile_values
        d = d + pb.black_level_error_dn[:, site_index].repeat(1, H // p, W // p)
    d = d + black

    if components.quantize:
        d = torch.floor(d + 0.5)  # half up, as the kernel (torch.round is half to even)
    elif components.dither:
        d = d + (torch.rand(mosaic.shape, generator=generator, device=dev, dtype=dtype) - 0.5)
    if components.clip:
        lo = black if components.clip_at_black else torch.zeros_like(black)
        d = torch.minimum(torch.maximum(d, lo), white)
    return d if output_unit == "dn" else (d - black) / (white - black)


def _check_output_unit(output_unit: str) -> None:
    if output_unit not in ("normalized", "dn"):
        raise ParameterError(f"output_unit must be 'normalized' or 'dn', got {output_unit!r}")


def _run(clean, pb: NoiseParamsBatch, sensor: Sensor, tiles, components, generator, output_unit):
    if not isinstance(clean, torch.Tensor):
        raise ShapeError(f"clean must be a torch.Tensor, got {type(clean).__name__}")
    _check_output_unit(output_unit)
    out_dtype = clean.dtype if torch.is_floating_point(clean) else torch.float32
    cdt = _compute_dtype(out_dtype)
    mosaic = _to_mosaic(clean, sensor).to(cdt)
    n = mosaic.shape[0]
    if len(pb) != n:
        raise ParameterError(f"params describe {len(pb)} samples, the batch has {n}")
    pb = pb.to(device=mosaic.device, dtype=cdt)
    p = sensor.cfa.period
    black, white, site_index = tiles
    dev = mosaic.device
    out = _noise(mosaic, pb, black.to(dev, cdt), white.to(dev, cdt), site_index.to(dev), components, generator, output_unit)
    if clean.ndim == 4:
        hp, wp = clean.shape[2], clean.shape[3]
        out = out.reshape(n, hp, p, wp, p).permute(0, 2, 4, 1, 3).reshape(n, p * p, hp, wp)
    return out.to(out_dtype)


def simulate_torch(
    clean: torch.Tensor,
    params: NoiseParams | Sequence[NoiseParams] | NoiseParamsBatch,
    sensor: Sensor,
    *,
    ratio=1.0,
    components: NoiseComponents = NoiseComponents(),
    generator: torch.Generator | None = None,
    output_unit: str = "normalized",
) -> torch.Tensor:
    """Add sensor noise to a batch of clean normalized raw frames with torch.

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
        Switches; the map-based terms (``dark_shading``, ``prnu``, ``hot_pixels``) have no effect here.
    generator : torch.Generator, optional
        Source of randomness (on the tensor's device); the global torch generator when None.
    output_unit : {"normalized", "dn"}
        Normalized (not multiplied by the ratio) or raw DN including the black level.

    Returns
    -------
    torch.Tensor
        Noisy frames, same shape and device as ``clean``, in its floating dtype (float32 for integer input).

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
    if not isinstance(params, NoiseParamsBatch):
        n = _to_mosaic(clean, sensor).shape[0]
        params = NoiseParamsBatch.from_params(params, n, ratio=ratio, device=clean.device, dtype=_compute_dtype(clean.dtype))
    tiles = _sensor_tiles(sensor, clean.device, _compute_dtype(clean.dtype))
    return _run(clean, params, sensor, tiles, components, generator, output_unit)


class CardParamSampler:
    """Draws per-sample noise parameters from a card's joint ISO model on a torch device.

    The batched twin of :func:`noisesim.sampling.sample_params` with neither ``iso`` nor
    ``gain_k_dn_per_e`` (``ln K ~ U(ln K_min, ln K_max)``, profile by weight, ``ln σ_x`` log-linear in
    ln K plus scatter; λ, black-level error, column σ, dark current and black level from the ISO-table row nearest in
    ln K, or λ uniform over ``joint.tukey_lambda_values`` and the black-level error of the ln K bin
    without a table), and the exposure ratio log-uniform in ``ratio_range``. The card is read once into
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
            names = ("_p_log_k", "_p_weight", "_p_fit", "_t_log_k", "_t_lambda", "_t_ble", "_t_col", "_t_dark", "_t_black", "_lambdas", "_bins")
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
            black = tables["_t_black"][nearest]
        else:
            nl = self._lambdas.numel()
            lam = tables["_lambdas"][(u_lambda * nl).long().clamp_max(nl - 1)]
            col = dark = torch.zeros(n, device=dev, dtype=wdt)
            black = torch.full((n, 4), math.nan, device=dev, dtype=wdt)
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
        )
        return batch.to(dtype=dtype)


class RawNoise(torch.nn.Module):
    """Sensor noise as a ``torch.nn.Module``: per-sample parameters drawn on the batch's device, kept, replayable.

    In the style of kornia's augmentations: :meth:`forward_parameters` draws a :class:`NoiseParamsBatch`
    for a batch; :meth:`forward` applies given parameters or draws new ones, and stores what it used in
    ``self.params``, so ``aug(x2, params=aug.params)`` replays them on another batch (same parameters,
    fresh noise; pass a generator seeded alike for the same noise too).

    Parameters
    ----------
    sensor : Sensor
        CFA and black/white levels [DN] (e.g. ``card.sensor``).
    sampler : CardParamSampler, optional
        Where parameters come from when ``forward`` gets none; without it every call needs ``params``.
    components : NoiseComponents
    output_unit : {"normalized", "dn"}

    Examples
    --------
    >>> import torch
    >>> from noisesim import load_card
    >>> card = load_card("SonyA7S2")
    >>> aug = RawNoise(card.sensor, CardParamSampler(card, ratio_range=(100, 300)))
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
    ):
        super().__init__()
        _check_output_unit(output_unit)
        self.sensor, self.sampler, self.components, self.output_unit = sensor, sampler, components, output_unit
        # Sensor tiles per device, made on first use: one small host → device copy per device, none per batch.
        # (Not buffers: module.half() would round 16383 DN to 16384.)
        self._tiles: dict[tuple, tuple] = {}
        self.params: NoiseParamsBatch | None = None

    def forward_parameters(self, batch_shape, *, device=None, dtype=torch.float32, generator=None) -> NoiseParamsBatch:
        """Draw parameters for a batch of shape ``batch_shape`` (its first entry is N) with the sampler."""
        if self.sampler is None:
            raise ParameterError("RawNoise without a sampler needs params= in every call")
        return self.sampler.sample(int(batch_shape[0]), device=device, dtype=dtype, generator=generator)

    def forward(self, clean: torch.Tensor, params: NoiseParamsBatch | None = None, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy version of ``clean`` (shape, device and dtype kept; see :func:`simulate_torch`).

        Parameters
        ----------
        clean : torch.Tensor
            ``(N, C, h, w)`` packed or ``(N, H, W)`` mosaic, normalized.
        params : NoiseParamsBatch, optional
            Replay these parameters; drawn with the sampler when None.
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
        return _run(clean, params, self.sensor, tiles, self.components, generator, self.output_unit)
