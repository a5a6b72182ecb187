"""Standard errors of figures that share terms across channels (docs/calibration.md, "Uncertainty").

The four packed channels of a Bayer sensor are not independent measurements: R and Gr lie on the same
physical rows (Gb and B on others), R and Gb on the same columns, so every realization of row and column
noise enters two channels alike; and one dark stack's temporal variance is subtracted from every flat
level of a channel. The units that *are* independent are frames: each flat pair, each pair of dark frames.
This module turns per-unit quantities into covariances, so a figure combined over channels (K) or formed
as a difference of correlated terms (read σ = pixel variance − row − column) gets the SE of what it is.

Formulas (first-order propagation, "delta method"; units as named):

* Pooled dark variance v_c [DN²] of N frames, from P = ⌊N/2⌋ independent pair variances p_{j,c}:
  ``Cov(v) = Cov_j(p_j) / (N − 1)`` — one pair variance has ~1 degree of freedom per pixel, the pooled
  per-pixel variance N − 1 (exact for Gaussian noise, the correlation between channels carried over as is).
* Photon-transfer K_c = Σ_i w_i x_i y_i / Σ_i w_i x_i² with y_i = p_i − v_c: ``∂K_c/∂v_c = −Σ w x / Σ w x²``;
  ``Cov(K)_cd = ρ_cd se_c se_d + (∂K_c/∂v_c)(∂K_d/∂v_d) Cov(v)_cd`` with se_c the level-wise SE of channel c's
  fit and ρ_cd the correlation of the two channels' standardized PTC residuals over their common levels.
* A fixed-weight combination K = Σ a_c K_c (inverse-variance weights) has ``Var K = aᵀ Cov(K) a``.
* Read variance σ²_pix = v − σ²_row − σ²_col from dark pairs: per pair j the row and column variances are
  solved from the pair difference's row-mean and column-mean variances, which removes the row noise the
  pair realized from its pixel variance (:func:`dark_pair_variances`): ``Var = var_j(σ²_pix,j)/(N − 1)`` plus
  the variance of the frame-to-frame change of the channel means, which v holds and σ²_row does not,
  ``2 Σ_cd S_cd²/(C²(N − 1))``. The row-noise realization common to v and σ²_row cancels instead of being
  counted twice.

Sources: EMVA Standard 1288 release 4.0 (pair differences as the unit of temporal variance); B. Efron &
R. Tibshirani, *An Introduction to the Bootstrap* (1993), ch. 11 (jackknife, independent units);
H. White, Econometrica 48 (1980) (residual-based covariance of a regression).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .estimators import Estimate, PTCFit

__all__ = [
    "channel_gain",
    "combine_channels",
    "DarkPairVariances",
    "dark_pair_variances",
    "gain_covariance",
    "pooled_variance_covariance",
    "ptc_dark_sensitivity",
    "ptc_residual_correlation",
]


def pooled_variance_covariance(pair_var_dn2: np.ndarray, n_frames: int) -> np.ndarray:
    """Covariance across channels [DN⁴] of the pooled per-pixel temporal variance of ``n_frames`` darks.

    Parameters
    ----------
    pair_var_dn2 : (P, C) array
        ½ var(d_{2j+1} − d_{2j}) per disjoint frame pair and channel [DN²].
    n_frames : int
        Frames behind the pooled variance (N; the pooled variance has N − 1 degrees of freedom per pixel).

    Returns
    -------
    (C, C) array; NaN where fewer than 2 pairs exist.
    """
    pv = np.asarray(pair_var_dn2, dtype=np.float64)
    c = pv.shape[1] if pv.ndim == 2 else 0
    if pv.ndim != 2 or pv.shape[0] < 2 or n_frames < 2:
        return np.full((c, c), np.nan)
    return np.atleast_2d(np.cov(pv, rowvar=False, ddof=1)) / (n_frames - 1)


def _ptc_weights(fit: PTCFit, sigma2_dark_dn2: float, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The used levels' μ [DN] and the weights fit_ptc ended with (else 1 / (2 (K μ + σ²_d)² / n))."""
    x = fit.mean_dn[fit.used]
    if fit.weights.size == x.size:
        return x, fit.weights
    s2 = np.maximum(fit.gain_k_dn_per_e.value * x + sigma2_dark_dn2, 1e-12)
    return x, n_pixels / (2.0 * s2**2)


def ptc_dark_sensitivity(fit: PTCFit, sigma2_dark_dn2: float, n_pixels: int) -> float:
    """∂K/∂σ²_dark [DN/e⁻ per DN²] of a photon-transfer fit through the origin: −Σ w μ / Σ w μ².

    Parameters
    ----------
    fit : PTCFit
        One channel's fit.
    sigma2_dark_dn2 : float
        σ²_y.dark [DN²].
    n_pixels : int
        Pixels per channel.

    Returns
    -------
    float
        [DN/e⁻ per DN²]
    """
    x, w = _ptc_weights(fit, sigma2_dark_dn2, n_pixels)
    return float(-np.sum(w * x) / np.sum(w * x * x))


def ptc_residual_correlation(fits: list[PTCFit], sigma2_dark_dn2, n_pixels: int) -> np.ndarray:
    """(C, C) correlation of the channels' standardized PTC residuals √w·(y − K μ) over the levels all fits used.

    Flat pairs are independent, but within a pair the channels that share rows or columns see one
    realization of row / column noise: their residuals move together. The residuals are those of a weighted
    line with intercept, so the dark variance's error (a common offset) is left to :func:`gain_covariance`;
    identity where fewer than 4 common levels exist.

    Parameters
    ----------
    fits : list of PTCFit
        One per packed channel.
    sigma2_dark_dn2 : (C,) array_like
        σ²_y.dark per channel [DN²].
    n_pixels : int
        Pixels per channel.

    Returns
    -------
    (C, C) ndarray
        Correlation (unit 1).
    """
    c = len(fits)
    common = np.logical_and.reduce([f.used for f in fits])
    if common.sum() < 4:
        return np.eye(c)
    u = np.empty((c, int(common.sum())))
    for k, (f, v) in enumerate(zip(fits, np.broadcast_to(np.asarray(sigma2_dark_dn2, dtype=np.float64), (c,)))):
        x, w = _ptc_weights(f, v, n_pixels)
        keep = common[f.used]  # the common levels among this fit's used ones
        x, w, y = x[keep], w[keep], f.var_dn2[common]
        # residuals of a line with intercept: a constant offset of every point (the dark variance's error,
        # common to a channel's levels and counted by gain_covariance on its own) does not enter ρ
        a = np.stack([np.ones_like(x), x], axis=1) * np.sqrt(w)[:, None]
        coef = np.linalg.lstsq(a, y * np.sqrt(w), rcond=None)[0]
        u[k] = y * np.sqrt(w) - a @ coef
    norm = np.sqrt(np.sum(u * u, axis=1))
    if np.any(norm <= 0):
        return np.eye(c)
    rho = (u @ u.T) / np.outer(norm, norm)
    np.fill_diagonal(rho, 1.0)
    return rho


def gain_covariance(fits: list[PTCFit], sigma2_dark_dn2, cov_dark_dn4: np.ndarray, n_pixels: int) -> np.ndarray:
    """(C, C) covariance [(DN/e⁻)²] of the per-channel K from their flat levels and the shared dark variance.

    ``ρ_cd se_c se_d`` (level noise; se_c each fit's own SE) plus ``g_c g_d Cov(σ²_dark)_cd`` with
    g_c = ∂K_c/∂σ²_dark,c (:func:`ptc_dark_sensitivity`). A NaN dark covariance (fewer than two dark pairs)
    contributes nothing.

    Parameters
    ----------
    fits : list of PTCFit
        One per packed channel.
    sigma2_dark_dn2 : (C,) array_like
        σ²_y.dark per channel [DN²].
    cov_dark_dn4 : (C, C) ndarray
        Covariance of σ²_y.dark [DN⁴].
    n_pixels : int
        Pixels per channel.

    Returns
    -------
    (C, C) ndarray
        [(DN/e⁻)²]
    """
    v = np.broadcast_to(np.asarray(sigma2_dark_dn2, dtype=np.float64), (len(fits),))
    se = np.array([f.gain_k_dn_per_e.se for f in fits])
    cov = ptc_residual_correlation(fits, v, n_pixels) * np.outer(se, se)
    cd = np.asarray(cov_dark_dn4, dtype=np.float64)
    if cd.shape == cov.shape and np.all(np.isfinite(cd)):
        g = np.array([ptc_dark_sensitivity(f, vc, n_pixels) for f, vc in zip(fits, v)])
        cov = cov + np.outer(g, g) * cd
    return cov


def combine_channels(values, cov) -> tuple[float, float, float]:
    """Inverse-variance mean of correlated channel estimates with its SE from the full covariance.

    The weights are a_c ∝ 1/Cov_cc (the channels' own variances, so the figure is the usual weighted mean);
    the SE is √(aᵀ Cov a), which is the independent-channel SE only when Cov is diagonal.

    Parameters
    ----------
    values : (C,) array_like
        Per-channel estimates, one unit.
    cov : (C, C) array_like
        Their covariance [unit²].

    Returns
    -------
    (value, se, chi2) — chi2 = Σ (v_c − value)² / Cov_cc / (C − 1), the channels' scatter against their own
    SEs (above 1: the channels disagree by more than their noise, e.g. a real colour dependence of K).
    """
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(cov, dtype=np.float64)
    var = np.maximum(np.diag(c), 1e-300)
    a = (1.0 / var) / np.sum(1.0 / var)
    value = float(a @ v)
    se = math.sqrt(max(float(a @ c @ a), 0.0))
    chi2 = float(np.sum((v - value) ** 2 / var) / max(v.size - 1, 1))
    return value, se, chi2


@dataclass(frozen=True)
class DarkPairVariances:
    """Row, column and pixel variances [DN²] measured on each disjoint pair of dark frames, and the
    frame-to-frame covariance of the channel means, for the SE of the read variance.

    Attributes
    ----------
    row_dn2, col_dn2 : (P,) arrays
        σ²_row and σ²_col seen by pair j's difference.
    pixel_per_channel_dn2 : (P, C) array
        Pair j's version of a channel's ``v_c − σ²_row − σ²_col`` without the frame-mean term (below).
    frame_mean_var_dn2 : float
        Variance over frames of the frame mean (ddof = 1).
    n_frames : int
        Frames in the stack (the pooled figures have N − 1 degrees of freedom).
    """

    row_dn2: np.ndarray
    col_dn2: np.ndarray
    pixel_per_channel_dn2: np.ndarray
    frame_mean_var_dn2: float
    n_frames: int

    @property
    def n_pairs(self) -> int:
        """P, the number of independent units."""
        return int(self.row_dn2.size)

    def read_variance_se(self, channel: int | None = None) -> tuple[float, float]:
        """SE [DN²] and degrees of freedom of the pooled ``v − σ²_row − σ²_col`` of one channel (None: channel mean).

        Two independent parts: ``var_j(x_j) / (N − 1)`` over the P pairs' versions x_j of the figure, and the
        frame-to-frame change of the frame mean F, which the per-pixel temporal variance holds and the row
        and column variances (spatial, about each frame's mean) do not: F is a sum of many row, column and
        pixel offsets, so Gaussian, and its N-frame variance s²_F has variance ``2 s²_F² / (N − 1)``.
        Degrees of freedom by Welch–Satterthwaite. NaN below 2 pairs.

        Parameters
        ----------
        channel : int, optional
            Packed channel index; None: the mean over channels.

        Returns
        -------
        se_dn2 : float
            [DN²]
        dof : float
            Welch–Satterthwaite degrees of freedom.
        """
        n = self.n_frames
        pix = self.pixel_per_channel_dn2 if channel is None else self.pixel_per_channel_dn2[:, [channel]]
        x = pix.mean(axis=1)
        x = x[np.isfinite(x)]
        if x.size < 2 or n < 2:
            return float("nan"), float("nan")
        a = float(np.var(x, ddof=1)) / (n - 1)
        b = 2.0 * self.frame_mean_var_dn2**2 / (n - 1)
        dof = (a + b) ** 2 / (a * a / (x.size - 1) + b * b / (n - 1)) if a + b > 0 else float(x.size - 1)
        return math.sqrt(a + b), float(dof)


def dark_pair_variances(pair_var_dn2: np.ndarray, frame_channel_means_dn: np.ndarray, row_resid: np.ndarray,
                        col_resid: np.ndarray, period: int) -> DarkPairVariances:
    """Each dark pair's own row, column and pixel variances.

    For pair j (frames 2j, 2j+1) with row-mean difference Δr (H,) and column-mean difference Δc (W,):
    ``½var(Δr) = σ²_row + σ²_pix/W``, ``½var(Δc) = σ²_col + σ²_pix/H`` and, in channel c (M_r × M_c pixels),
    the pair's spatial variance ``p_{j,c} = σ²_pix + σ²_row (1 − 1/M_r) + σ²_col (1 − 1/M_c)`` give the pair's
    σ²_row,j and σ²_col,j. The pooled per-pixel variance v_c also holds the frame-to-frame change of the
    channel mean m_c = F + d_c (F the frame mean): the pair's version of ``v_c − σ²_row − σ²_col`` is
    ``x_{j,c} = p_{j,c} + ½Δd_c² − σ²_row,j − σ²_col,j``, plus ½ΔF², which :meth:`DarkPairVariances.read_variance_se`
    treats apart. The row and column noise the pair realized cancels in x as in the pooled figure.

    Parameters
    ----------
    pair_var_dn2 : (P, C) array, ½ var of each pair's difference per channel [DN²]
    frame_channel_means_dn : (N, C) array, mean of each frame per channel [DN]
    row_resid : (N, H) array, row means minus their stack average [DN]
    col_resid : (N, W) array, column means minus their stack average [DN]
    period : CFA period (2 for Bayer)

    Returns
    -------
    DarkPairVariances
    """
    pv = np.asarray(pair_var_dn2, dtype=np.float64)
    fm = np.asarray(frame_channel_means_dn, dtype=np.float64)
    rr = np.asarray(row_resid, dtype=np.float64)
    cr = np.asarray(col_resid, dtype=np.float64)
    n, nc = fm.shape
    p_ = min(pv.shape[0], n // 2, rr.shape[0] // 2)
    h, w = (rr.shape[1], cr.shape[1]) if p_ else (1, 1)
    mr, mc = max(h // period, 1), max(w // period, 1)
    a = np.array([[1.0, 0.0, 1.0 / w], [0.0, 1.0, 1.0 / h], [1.0 - 1.0 / mr, 1.0 - 1.0 / mc, 1.0]])
    rows, cols = np.full(p_, np.nan), np.full(p_, np.nan)
    pix_c = np.full((p_, nc), np.nan)
    for j in range(p_):
        vr = 0.5 * float(np.var(rr[2 * j + 1] - rr[2 * j], ddof=1)) if h > 1 else 0.0
        vc = 0.5 * float(np.var(cr[2 * j + 1] - cr[2 * j], ddof=1)) if w > 1 else 0.0
        rows[j], cols[j], _ = np.linalg.solve(a, np.array([vr, vc, float(pv[j].mean())]))
        dm = fm[2 * j + 1] - fm[2 * j]
        pix_c[j] = pv[j] + 0.5 * (dm - dm.mean()) ** 2 - rows[j] - cols[j]
    var_f = float(np.var(fm.mean(axis=1), ddof=1)) if n >= 2 else float("nan")
    return DarkPairVariances(rows, cols, pix_c, var_f, n)

def channel_gain(fits: list[PTCFit], sigma2_dark_dn2, pair_var_dn2: np.ndarray, n_dark_frames: int,
                 n_pixels: int) -> tuple[Estimate, list[Estimate]]:
    """K [DN/e⁻] of every channel and combined, with SEs that carry the shared dark variance and row/column noise.

    Parameters
    ----------
    fits : per-channel :func:`~calibration.estimators.fit_ptc` results (their SEs: level noise only)
    sigma2_dark_dn2 : (C,) dark variance subtracted from each channel's flat points [DN²]
    pair_var_dn2 : (P, C) the dark stack's pair variances (:attr:`DarkStats.pair_var_dn2`) [DN²]
    n_dark_frames : frames behind ``sigma2_dark_dn2``
    n_pixels : pixels per channel behind each flat point

    Returns
    -------
    (combined, per channel) — the combined figure is the inverse-variance mean with SE √(aᵀ Cov a), scaled
    by √χ² where the channels scatter by more than their SEs; per channel, the fit's SE with the dark
    variance's share added.
    """
    cov = gain_covariance(fits, sigma2_dark_dn2, pooled_variance_covariance(pair_var_dn2, n_dark_frames), n_pixels)
    per = []
    for f, s2 in zip(fits, np.diag(cov)):
        e = f.gain_k_dn_per_e
        dof = max(e.n - 1, 1)
        per.append(Estimate.normal(e.value, math.sqrt(s2), e.method + f"; SE with the dark variance of {n_dark_frames} frames",
                                   e.n, dof=dof))
    value, se, chi2 = combine_channels([f.gain_k_dn_per_e.value for f in fits], cov)
    se *= math.sqrt(max(chi2, 1.0))
    comb = Estimate.normal(value, se, f"inverse-variance mean of {len(fits)} channel PTC fits; SE from their covariance "
                                      "(shared row/column noise, shared dark variance), scaled by the channels' scatter", len(fits))
    return comb, per
