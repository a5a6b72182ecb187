"""Closed-form statistics of the noise model: the Tukey-lambda quantile, read-noise std, per-pixel noise σ.

The one definition of the Tukey-lambda quantile (the read-noise distribution of ELD, Wei et al. 2020)::

    Q_λ(u) = (u^λ − (1 − u)^λ) / λ  =  (expm1(λ log u) − expm1(λ log(1 − u))) / λ,
    Q_0(u) = log u − log(1 − u)                      (the logistic quantile, |λ| < TUKEY_LOGISTIC_EPS)

The expm1 form has no cancellation for small |λ|, so the logistic branch is only needed at λ = 0 itself;
calibration's PPCC fit and the torch twin use it with this threshold (the numba noise kernel evaluates the
same formula in float32 rows with the same threshold).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .params import NoiseParams

__all__ = [
    "TUKEY_LOGISTIC_EPS",
    "noise_level_map",
    "read_noise_std_dn",
    "tukey_lambda_ppf",
    "tukey_lambda_ppf_logs",
    "tukey_lambda_std",
]

# |λ| below which Q_λ is evaluated as the logistic quantile; with the expm1 form any tiny threshold works.
TUKEY_LOGISTIC_EPS = 1e-12


@nb.njit(cache=True)
def tukey_lambda_ppf_logs(log_u, log_1mu, lam):
    """Tukey-lambda quantile from ``log u`` and ``log(1 − u)`` (scalars or arrays; callable from numba code).

    Parameters
    ----------
    log_u, log_1mu : float or ndarray
        ``log(u)`` and ``log(1 − u)`` of probabilities u in (0, 1), same shape; passing both lets callers
        that know them exactly (complement words, symmetric order statistics) avoid rounding 1 − u.
    lam : float
        Shape λ.

    Returns
    -------
    float or ndarray
        Q_λ(u), unitless (times σ_TL for DN), same shape as ``log_u``.
    """
    if abs(lam) < TUKEY_LOGISTIC_EPS:
        return log_u - log_1mu
    return (np.expm1(lam * log_u) - np.expm1(lam * log_1mu)) / lam


def tukey_lambda_ppf(u, lam: float) -> np.ndarray:
    """Tukey-lambda quantile Q_λ(u) (= ``scipy.stats.tukeylambda.ppf(u, lam)``) elementwise.

    Parameters
    ----------
    u : array_like
        Probabilities in (0, 1), any shape.
    lam : float
        Shape λ.

    Returns
    -------
    ndarray
        float64, same shape as ``u``, unitless.

    Examples
    --------
    >>> float(tukey_lambda_ppf(0.5, 0.14))
    0.0
    >>> round(float(tukey_lambda_ppf(0.75, 0.0)), 6)   # logistic: log 3
    1.098612
    """
    u = np.asarray(u, dtype=np.float64)
    return np.asarray(tukey_lambda_ppf_logs(np.log(u), np.log1p(-u), float(lam)), dtype=np.float64)


def tukey_lambda_std(lam: float) -> float:
    """Standard deviation of the standard Tukey-lambda distribution (scale 1).

    Parameters
    ----------
    lam : float
        Shape λ.

    Returns
    -------
    float
        ``scipy.stats.tukeylambda.std(lam)``; π/√3 at λ = 0 (logistic) and ``inf`` for λ ≤ −½ (no variance).

    Examples
    --------
    >>> round(tukey_lambda_std(0.0), 6)
    1.813799
    """
    if lam <= -0.5:
        return math.inf
    from scipy.stats import tukeylambda

    return float(tukeylambda.std(lam))


def read_noise_std_dn(params: NoiseParams) -> float:
    """Standard deviation of the read noise of ``params`` [DN].

    Parameters
    ----------
    params : NoiseParams

    Returns
    -------
    float
        σ_read for the Gaussian model, σ_TL · std(TL(λ)) for the Tukey-lambda model [DN].
    """
    if params.read_model == "gaussian":
        return float(params.read_sigma_dn)
    return float(params.tukey_scale_dn) * tukey_lambda_std(params.tukey_lambda)


def noise_level_map(clean_normalized: np.ndarray, params: NoiseParams, ratio: float, channel_range_dn) -> np.ndarray:
    """Per-pixel noise σ of the short exposure, in normalized units (not multiplied by the ratio).

    σ² [DN²] = K · x + σ_read² + σ_row² + σ_col², with x = y · (W − B) / r the expected signal [DN]: the
    heteroscedastic Gaussian approximation of the Poisson–Gaussian model (quantization not included).

    Parameters
    ----------
    clean_normalized : ndarray
        Clean long exposure y, normalized, packed ``(C, h, w)``.
    params : NoiseParams
    ratio : float
        Exposure ratio r ≥ 1.
    channel_range_dn : array_like
        ``(C,)`` white − black per packed channel [DN].

    Returns
    -------
    ndarray
        ``(C, h, w)`` float32, σ / (W − B) (normalized).
    """
    range_dn = np.asarray(channel_range_dn, dtype=np.float64).reshape(-1, 1, 1)
    x_dn = np.clip(np.asarray(clean_normalized, dtype=np.float64), 0, None) * range_dn / ratio
    var = params.gain_k_dn_per_e * x_dn + read_noise_std_dn(params) ** 2 + params.row_sigma_dn**2 + params.col_sigma_dn**2
    return (np.sqrt(var) / range_dn).astype(np.float32)
