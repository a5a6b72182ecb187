"""The noise model of docs/model.md on torch tensors (any device), for noise on training batches.

A **statistical twin** of :func:`noisesim.noise.simulate`, not a bit-identical one: it uses torch's own
generators (``torch.poisson``, ``torch.rand``, ``torch.randn``) instead of the counter-based Philox of
the numpy engine, so for the same clean input and parameters the two agree in distribution (tested per
component against theory and against the numpy engine, tests/test_torch_noise.py), not pixel by pixel.
Per pixel, with the same symbols as the engine (Wei et al., ELD, CVPR 2020; Feng et al., PMN, ACM MM 2022)::

    μ_e = max(y, 0) · (W_c − B_c) / (r · K) + I_dark · t       expected electrons of the short exposure
    D   = K · Poisson(μ_e)                                     shot noise (photon + dark current)
        + N_read                                               N(0, σ_read²) or σ_TL · Q_λ(U)
        + σ_row · ρ_row + σ_col · ρ_col                        one N(0, 1) per sensor row / column
        + b_c + B_c                                            black-level error and black level
    D   = clip(round(D), lo_c, W_c)                            quantization (or + U(−½, ½)) and clipping
    out = (D − B_c) / (W_c − B_c)                              normalized (or D in DN)

Fixed-pattern maps (dark shading, PRNU, per-pixel dark current) are not implemented here; switch them
off in the numpy engine when comparing. Torch is optional (``pip install noisesim[torch]``): it is
imported inside the functions.

Tukey-lambda quantile: Q_λ(u) = (u^λ − (1 − u)^λ) / λ, and log(u / (1 − u)) as λ → 0; u is clamped to
[2⁻²⁴, 1 − 2⁻²⁴] so a negative λ never gives ±inf from a float32 uniform.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import ParameterError, ShapeError
from .params import NoiseComponents, NoiseParams, Sensor

__all__ = ["simulate_torch", "tukey_lambda_quantile"]

# Uniforms are clamped to [U_EPS, 1 − U_EPS]: 2⁻²⁴ is the resolution of a float32 uniform in [0, 1).
U_EPS = 2.0**-24
# |λ| below which the Tukey-lambda quantile is the logistic one (same threshold as noisesim.kernels).
TUKEY_LOGISTIC_EPS = 1e-12


def tukey_lambda_quantile(u, lam):
    """Tukey-lambda quantile ``Q_λ(u)`` elementwise (torch), ``lam`` broadcastable to ``u``.

    Computed as ``(expm1(λ log u) − expm1(λ log(1 − u))) / λ`` (no cancellation for small |λ|), and
    ``log u − log(1 − u)`` where ``|λ| < 1e-12``.
    """
    import torch

    lu = torch.log(u)
    l1u = torch.log1p(-u)
    lam = torch.as_tensor(lam, dtype=u.dtype, device=u.device)
    small = lam.abs() < TUKEY_LOGISTIC_EPS
    safe = torch.where(small, torch.ones_like(lam), lam)
    q = (torch.expm1(safe * lu) - torch.expm1(safe * l1u)) / safe
    return torch.where(small, lu - l1u, q)


def _per_sample(values: Sequence[float], like, n: int):
    import torch

    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=like.dtype, device=like.device).reshape(n, 1, 1)


def simulate_torch(
    clean,
    params: NoiseParams | Sequence[NoiseParams],
    sensor: Sensor,
    *,
    ratio=1.0,
    components: NoiseComponents = NoiseComponents(),
    generator=None,
    output_unit: str = "normalized",
):
    """Add sensor noise to a batch of clean normalized raw frames with torch.

    Parameters
    ----------
    clean : torch.Tensor
        Clean long exposure, normalized ((DN − B) / (W − B)), float; ``(N, C, h, w)`` packed
        (C = p², channel order of :mod:`noisesim.cfa`) or ``(N, H, W)`` mosaic. Any device.
    params : NoiseParams or sequence of N NoiseParams
        One record for the whole batch, or one per sample (e.g. each drawn with
        :func:`noisesim.sampling.sample_params`).
    sensor : Sensor
        CFA and per-site black/white levels [DN].
    ratio : float or (N,) tensor
        Exposure ratio r ≥ 1 per sample: the expected signal is divided by r.
    components : NoiseComponents
        Switches; the map-based terms (``dark_shading``, ``prnu``, per-pixel dark current) have no
        effect here.
    generator : torch.Generator, optional
        Source of randomness (on the tensor's device); the global torch generator when None.
    output_unit : {"normalized", "dn"}
        Normalized (not multiplied by the ratio) or raw DN including the black level.

    Returns
    -------
    torch.Tensor
        Noisy frames, same shape, device and (floating) dtype as ``clean``.

    Shape
    -----
    (N, C, h, w) → (N, C, h, w); (N, H, W) → (N, H, W).
    """
    import torch

    if not isinstance(clean, torch.Tensor):
        raise ShapeError(f"clean must be a torch.Tensor, got {type(clean).__name__}")
    cfa = sensor.cfa
    p = cfa.period
    if not torch.is_floating_point(clean):
        clean = clean.float()
    dtype = clean.dtype
    if clean.ndim == 4:
        n, c, hp, wp = clean.shape
        if c != cfa.n_channels:
            raise ShapeError(
                f"packed clean must have shape (N, {cfa.n_channels}, H/{p}, W/{p}) for CFA {cfa.pattern}. "
                f"Got {tuple(clean.shape)}."
            )
        mosaic = clean.reshape(n, p, p, hp, wp).permute(0, 3, 1, 4, 2).reshape(n, hp * p, wp * p)
    elif clean.ndim == 3:
        n, hh, ww = clean.shape
        if hh % p or ww % p:
            raise ShapeError(f"mosaic clean of shape {tuple(clean.shape)} does not fit CFA {cfa.pattern} (period {p})")
        mosaic = clean
    else:
        raise ShapeError(f"clean must have shape (N, C, h, w) or (N, H, W). Got {tuple(clean.shape)}.")
    if output_unit not in ("normalized", "dn"):
        raise ParameterError(f"output_unit must be 'normalized' or 'dn', got {output_unit!r}")
    plist = [params] * n if isinstance(params, NoiseParams) else list(params)
    if len(plist) != n or not all(isinstance(q, NoiseParams) for q in plist):
        raise ParameterError(f"params must be one NoiseParams or a sequence of {n} (one per sample), got {len(plist)}")
    if isinstance(ratio, torch.Tensor):
        r = ratio.to(device=clean.device, dtype=dtype).reshape(-1)
        if r.numel() == 1:
            r = r.expand(n)
    else:
        r = torch.as_tensor(np.broadcast_to(np.asarray(ratio, dtype=np.float64), (n,)).copy(), dtype=dtype, device=clean.device)
    if r.shape != (n,):
        raise ShapeError(f"ratio must be a float or have shape ({n},). Got {tuple(r.shape)}.")
    if not bool(torch.all(torch.isfinite(r) & (r >= 1))):
        raise ParameterError("ratio must be finite and >= 1 for every sample")
    r = r.reshape(n, 1, 1)

    _, H, W = mosaic.shape
    dev = mosaic.device

    def tiled(per_site):
        """(p, p) tile of 4 per-site values → (1 or N, H, W) tensor."""
        t = torch.as_tensor(np.asarray(per_site, dtype=np.float64), dtype=dtype, device=dev)
        return t.repeat(1, H // p, W // p) if t.ndim == 3 else t.repeat(H // p, W // p)[None]

    black = tiled(cfa.tile_values(sensor.black_level_dn))
    white = tiled(cfa.tile_values(sensor.white_level_dn))
    k = _per_sample([q.gain_k_dn_per_e for q in plist], mosaic, n)

    mu_e = torch.clamp(mosaic, min=0.0) * (white - black) / (r * k)
    if components.dark_current:
        mu_e = mu_e + _per_sample([q.dark_current_e_per_s * q.exposure_s for q in plist], mosaic, n)
    if components.shot:
        signal = torch.poisson(mu_e, generator=generator)
    else:
        signal = mu_e
    d = k * signal

    if components.read:
        kinds = [q.read_model for q in plist]
        if any(kd == "tukey" for kd in kinds):
            u = torch.rand(mosaic.shape, generator=generator, device=dev, dtype=dtype).clamp_(U_EPS, 1.0 - U_EPS)
            lam = _per_sample([q.tukey_lambda for q in plist], mosaic, n)
            tl = tukey_lambda_quantile(u, lam) * _per_sample([q.tukey_scale_dn for q in plist], mosaic, n)
        if any(kd == "gaussian" for kd in kinds):
            g = torch.randn(mosaic.shape, generator=generator, device=dev, dtype=dtype)
            g = g * _per_sample([q.read_sigma_dn for q in plist], mosaic, n)
        if all(kd == "tukey" for kd in kinds):
            d = d + tl
        elif all(kd == "gaussian" for kd in kinds):
            d = d + g
        else:
            is_tukey = torch.as_tensor([kd == "tukey" for kd in kinds], device=dev).reshape(n, 1, 1)
            d = d + torch.where(is_tukey, tl, g)

    row_sigma = [q.row_sigma_dn for q in plist]
    if components.row and any(s > 0 for s in row_sigma):
        if components.row_per_channel:
            # One offset per packed-channel row: each column phase of each sensor row draws its own value.
            rows = torch.randn((n, H, p), generator=generator, device=dev, dtype=dtype).repeat(1, 1, W // p)
        else:
            rows = torch.randn((n, H, 1), generator=generator, device=dev, dtype=dtype)
        d = d + rows * _per_sample(row_sigma, mosaic, n)
    col_sigma = [q.col_sigma_dn for q in plist]
    if components.column and any(s > 0 for s in col_sigma):
        cols = torch.randn((n, 1, W), generator=generator, device=dev, dtype=dtype)
        d = d + cols * _per_sample(col_sigma, mosaic, n)
    if components.black_level_error:
        ble = np.stack([cfa.tile_values(q.black_level_error_dn) for q in plist])  # (N, p, p)
        d = d + tiled(ble)
    d = d + black

    if components.quantize:
        d = torch.round(d)
    else:
        d = d + (torch.rand(mosaic.shape, generator=generator, device=dev, dtype=dtype) - 0.5)
    if components.clip:
        lo = black if components.clip_at_black else torch.zeros_like(black)
        d = torch.minimum(torch.maximum(d, lo), white)
    out = d if output_unit == "dn" else (d - black) / (white - black)

    if clean.ndim == 4:
        out = out.reshape(n, hp, p, wp, p).permute(0, 2, 4, 1, 3).reshape(n, p * p, hp, wp)
    return out
