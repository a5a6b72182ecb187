"""Estimators on arrays and running sums (docs/calibration.md; EMVA 1288 release 4.0; Wei et al. 2020; Feng et al. 2022).

Every figure is an :class:`Estimate`: value, standard error and a confidence interval at a stated level,
with the method that produced them. Units are in the names of the fields that hold them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from noisesim.errors import CalibrationError
from noisesim.kernels import INV_LN2, LN2_HI, LN2_LO  # the Cody–Waite split of ln 2 the noise kernel uses
from noisesim.stats import TUKEY_LOGISTIC_EPS, tukey_lambda_ppf, tukey_lambda_ppf_logs

from .kernels import USE_NUMBA
from .sorting import median, sort_finite

__all__ = [
    "batch_se",
    "box_lowpass",
    "CONFIDENCE",
    "debias_tukey",
    "Estimate",
    "filliben_medians",
    "fit_line",
    "fit_ptc",
    "fit_tukey",
    "fit_tukey_sorted",
    "flatten_illumination",
    "histogram_bins",
    "hot_pixel_mask",
    "kl_divergences",
    "kl_divergences_sorted",
    "ks_statistic",
    "ks_statistic_sorted",
    "LineFit",
    "MAX_BINS",
    "median5",
    "ppcc_curve",
    "ppcc_max_tukey",
    "PSEUDO_COUNT",
    "PTCFit",
    "solve_row_col_pixel",
    "TAIL_QUANTILE",
    "TukeyFit",
]

CONFIDENCE = 0.95  # level of every interval written into the card (the card schema states 95 %)


@functools.lru_cache(maxsize=256)
def _two_sided_quantile(level: float, dof: int | None) -> float:
    """q with P(|T| ≤ q) = level: Student t with ``dof`` degrees of freedom, or normal when None/0 (cached:
    every figure asks for one of a few)."""
    from scipy import stats  # here, not at import: scipy.stats takes ~0.5 s to import, and every command line
    # start imports this module (the validate sub-command's defaults)

    return float(stats.t.ppf(0.5 + level / 2, dof) if dof and dof > 0 else stats.norm.ppf(0.5 + level / 2))


@dataclass(frozen=True)
class Estimate:
    """A figure with its uncertainty.

    Attributes
    ----------
    value : float
    se : float
        Standard error (same unit as ``value``).
    ci : (low, high)
        Confidence interval at ``level``.
    level : float
    method : str
        How the uncertainty was obtained (e.g. "regression SE, t(6)", "batch means over 8 frame groups").
    n : int
        Number of independent units behind it (points, frames, batches).
    """

    value: float
    se: float
    ci: tuple[float, float]
    level: float = CONFIDENCE
    method: str = ""
    n: int = 0

    @classmethod
    def normal(cls, value: float, se: float, method: str, n: int = 0, dof: int | None = None, level: float = CONFIDENCE) -> "Estimate":
        """value ± q·se with q the normal (or Student-t with ``dof``) quantile of ``level``.

        Parameters
        ----------
        value, se : float
            The figure and its standard error, same unit.
        method : str
            How it was measured.
        n : int
            Sample size.
        dof : int, optional
            Degrees of freedom (Student t); None: normal.
        level : float
            Confidence level of the interval.

        Returns
        -------
        Estimate
        """
        q = _two_sided_quantile(level, dof)
        se = float(se) if math.isfinite(se) else float("nan")
        return cls(float(value), se, (float(value - q * se), float(value + q * se)), level, method, int(n))

    @classmethod
    def positive(cls, value: float, se: float, method: str, n: int = 0, dof: int | None = None, level: float = CONFIDENCE) -> "Estimate":
        """A figure that cannot be negative (a σ, a PRNU): the interval is symmetric in log(value),
        value · exp(±q·se/value), so it never reaches below 0; a zero value gets [0, q·se].

        Parameters
        ----------
        value, se : float
            The figure (≥ 0) and its standard error, same unit.
        method : str
            How it was measured.
        n : int
            Sample size.
        dof : int, optional
            Degrees of freedom (Student t); None: normal.
        level : float
            Confidence level of the interval.

        Returns
        -------
        Estimate
        """
        q = _two_sided_quantile(level, dof)
        value = float(value)
        se = float(se) if math.isfinite(se) else float("nan")
        z = q * se / value if value > 0 and math.isfinite(se) else float("nan")
        if value > 0 and z <= 5.0:
            ci = (value * math.exp(-z), value * math.exp(z))
        elif value > 0 and z > 5.0:  # a figure indistinguishable from 0: the log form would run away
            ci = (0.0, value + q * se)
        elif value > 0:
            ci = (float("nan"), float("nan"))
        else:
            ci = (0.0, q * se)
        return cls(value, se, (float(ci[0]), float(ci[1])), level, method + " (interval on the log scale)", int(n))

    def contains(self, x: float) -> bool:
        """Whether ``value`` lies inside the confidence interval (same unit as the estimate).

        Parameters
        ----------
        x : float
            A value in the estimate's unit.

        Returns
        -------
        bool
        """
        return self.ci[0] <= x <= self.ci[1]

    def to_dict(self) -> dict:
        """The estimate as a plain dict (value, se, ci_low, ci_high, level, method, n) for cards and reports.

        Returns
        -------
        dict
        """
        return {"value": self.value, "se": self.se, "ci_low": self.ci[0], "ci_high": self.ci[1], "level": self.level, "method": self.method, "n": self.n}

    def __float__(self) -> float:
        return self.value

    def __format__(self, spec: str) -> str:
        spec = spec or ".4g"
        return f"{self.value:{spec}} ± {self.se:{spec}}"


def batch_se(values: np.ndarray) -> float:
    """Standard error of the mean of independent batch estimates (batch means / jackknife-free).

    Parameters
    ----------
    values : (B,) array_like
        One estimate per batch, B ≥ 2.

    Returns
    -------
    float
        std(values, ddof=1) / √B, in the unit of the values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan")
    return float(np.std(v, ddof=1) / math.sqrt(v.size))


# ------------------------------------------------------------------------------------------------
# photon transfer (EMVA 1288 §6, pair difference)


@dataclass
class PTCFit:
    """Photon-transfer fit of one channel: σ² = K · μ through the origin below 70 % of saturation.

    ``mean_dn`` (μ, dark-subtracted mean) and ``var_dn2`` (σ², dark-temporal-subtracted variance of the pair
    difference / 2) are per exposure level, sorted by μ; ``used`` marks the points of the fit.

    Attributes
    ----------
    gain_k_dn_per_e : Estimate
        K [DN/e⁻], the slope.
    mean_dn : (L,) ndarray
        μ_y − μ_y.dark per level [DN].
    var_dn2 : (L,) ndarray
        σ²_y − σ²_y.dark per level [DN²].
    used : (L,) ndarray of bool
        Points of the fit.
    saturation_mean_dn : float
        μ_y − μ_y.dark at saturation [DN].
    saturation_found : bool
        Whether the variance peak was reached (else the white level stands in).
    residuals_dn2 : (L,) ndarray
        Variance minus the fitted line [DN²].
    """

    gain_k_dn_per_e: Estimate
    mean_dn: np.ndarray
    var_dn2: np.ndarray
    used: np.ndarray
    saturation_mean_dn: float
    saturation_found: bool
    residuals_dn2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))  # final 1/var(σ̂²) of the used points [1/DN⁴]
    n_pixels: int = 0  # pixels per channel behind each point


def fit_ptc(mean_dn, var_dn2, *, n_pixels: int, sigma2_dark_dn2: float = 0.0, saturation_mean_dn: float | None = None,
            fraction: float = 0.70, line_var_dn4: float = 0.0) -> PTCFit:
    """K [DN/e⁻] from photon-transfer points by a weighted fit through the origin (EMVA 1288 §6).

    Parameters
    ----------
    mean_dn, var_dn2 : (L,) arrays
        μ_y − μ_dark [DN] and ½var(A − B) − σ²_dark [DN²] per exposure level.
    n_pixels : int
        Pixels per channel behind each variance (sets the weights: var(σ̂²) ≈ 2σ⁴/n).
    sigma2_dark_dn2 : float
        Temporal dark variance subtracted from each point [DN²] (enters the weights).
    saturation_mean_dn : float, optional
        Where saturation is if the variance peak cannot show it (not reached); default: the variance peak.
    fraction : float
        Points with μ below ``fraction`` × saturation are used (EMVA: 70 %).
    line_var_dn4 : float
        Variance every point's σ̂² has from the row and column noise its pair realized [DN⁴]: a pair
        difference holds 2σ²_row per row, so its ½var has 2σ⁴_row/M_rows + 2σ⁴_col/M_cols on top of the
        pixels' 2σ⁴/n; it enters the weights.

    Returns
    -------
    PTCFit
        The SE comes from the weighted residuals (t-distribution with L − 1 degrees of freedom), and is
        never below the SE expected from pixel counts alone.
    """
    mu = np.asarray(mean_dn, dtype=np.float64)
    var = np.asarray(var_dn2, dtype=np.float64)
    order = np.argsort(mu)
    mu, var = mu[order], var[order]
    if mu.size == 0:
        raise CalibrationError("no flat-field levels to fit the photon transfer curve")
    peak = int(np.argmax(var))
    found = peak < mu.size - 1 and var[-1] < var[peak] * 0.9
    sat = float(mu[peak]) if found or saturation_mean_dn is None else float(saturation_mean_dn)
    used = (mu > 0) & (mu <= fraction * sat)
    if found:
        used &= np.arange(mu.size) < peak
    n_used = int(used.sum())
    if n_used < 2:
        raise CalibrationError(
            f"only {n_used} flat-field level(s) below {fraction:.0%} of saturation ({sat:.1f} DN above dark); "
            "need at least 2 (8 or more recommended)"
        )
    x, y = mu[used], var[used]
    k0 = float(np.sum(x * y) / np.sum(x * x))
    for _ in range(3):  # iteratively reweighted: var(σ̂²_i) ≈ 2 (K μ_i + σ²_d)² / n + line part
        s2 = np.maximum(k0 * x + sigma2_dark_dn2, 1e-12)
        w = 1.0 / (2.0 * s2**2 / n_pixels + line_var_dn4)
        k = float(np.sum(w * x * y) / np.sum(w * x * x))
        if abs(k - k0) < 1e-12 * abs(k0):
            break
        k0 = k
    resid = y - k * x
    se_model = math.sqrt(1.0 / np.sum(w * x * x))
    if n_used > 1:
        chi2 = float(np.sum(w * resid**2) / (n_used - 1))
        se = se_model * math.sqrt(max(chi2, 1.0))
    else:
        se = se_model
    est = Estimate.normal(k, se, f"weighted LS through origin, {n_used} levels, t({n_used - 1})", n_used, dof=n_used - 1)
    full_resid = var - k * mu
    return PTCFit(est, mu, var, used, sat, bool(found), full_resid, w, int(n_pixels))


# ------------------------------------------------------------------------------------------------
# row / column / pixel decomposition (docs/calibration.md step 4)


def solve_row_col_pixel(v_row: float, v_col: float, v_total: float, n_cols: int, n_rows: int) -> tuple[float, float, float]:
    """Row, column and pixel variances [DN²] from the variance of row means, of column means, and per pixel.

    With independent row offsets (σ²_r), column offsets (σ²_c) and pixel noise (σ²_p):
    ``v_row = σ²_r + σ²_p / N_cols``, ``v_col = σ²_c + σ²_p / N_rows``, ``v_total = σ²_p + σ²_r + σ²_c``
    (docs/calibration.md step 4: the pixel noise averaged into each row mean is removed).

    Parameters
    ----------
    v_row, v_col : float
        Variance of the row means and of the column means [DN²].
    v_total : float
        Per-pixel variance [DN²].
    n_cols, n_rows : int
        Pixels per row and per column.

    Returns
    -------
    row_var_dn2, col_var_dn2, pixel_var_dn2 : float
        σ²_r, σ²_c, σ²_p [DN²].
    """
    a = np.array([[1.0, 0.0, 1.0 / n_cols], [0.0, 1.0, 1.0 / n_rows], [1.0, 1.0, 1.0]])
    r, c, p = np.linalg.solve(a, np.array([v_row, v_col, v_total]))
    return float(r), float(c), float(p)


# ------------------------------------------------------------------------------------------------
# read-noise shape (Wei et al. 2020 §3; scipy.stats.ppcc_max / probplot)


@dataclass
class TukeyFit:
    """Tukey-lambda shape λ (PPCC maximum), scale σ_TL (probability-plot slope) and r² of the plot.

    Attributes
    ----------
    tukey_lambda : float
        λ (unit 1).
    tukey_scale_dn : float
        σ_TL [DN].
    r2 : float
        Squared correlation of the probability plot.
    n : int
        Samples.
    """

    tukey_lambda: float
    tukey_scale_dn: float
    r2: float
    n: int


def filliben_medians(n: int) -> np.ndarray:
    """Filliben's order-statistic medians of U(0, 1) (as scipy.stats.probplot uses).

    Parameters
    ----------
    n : int
        Sample size, ≥ 2.

    Returns
    -------
    (n,) ndarray of float64
        Median of the i-th order statistic of ``n`` uniform draws, ascending, in (0, 1); the quantile
        function of a distribution applied to it gives the x positions of a probability plot.
    """
    m = np.empty(n)
    m[-1] = 0.5 ** (1.0 / n)
    m[0] = 1.0 - m[-1]
    i = np.arange(2, n)
    m[1:-1] = (i - 0.3175) / (n + 0.365)
    return m


@functools.lru_cache(maxsize=32)
def _log_filliben_medians(n: int) -> np.ndarray:
    """log of :func:`filliben_medians` (read-only, cached: the ~50 fits of an ISO use a dozen sample sizes)."""
    lu = np.log(filliben_medians(n))
    lu.flags.writeable = False
    return lu


@functools.lru_cache(maxsize=32)
def _log_filliben_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(log u_i, log u_{n−1−i}) = (log u_i, log(1 − u_i)) for i < n/2, contiguous (read-only, cached)."""
    lu = _log_filliben_medians(n)
    a, b = np.ascontiguousarray(lu[: n // 2]), np.ascontiguousarray(lu[::-1][: n // 2])
    a.flags.writeable = b.flags.writeable = False
    return a, b


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b of two 1-D float64 arrays by numpy's pairwise sum, not BLAS: a threaded BLAS ``ddot`` splits the
    sum by its thread count, so the figures (and the card) would change with the machine's BLAS threads
    (a Dask worker runs with OMP_NUM_THREADS=1)."""
    return float(np.multiply(a, b).sum())


class _PPCC:
    """PPCC r(λ) of sorted data against Tukey-λ quantiles of Filliben medians, precomputed for speed.

    The medians are symmetric (u_i = 1 − u_{n−1−i}), so Q_λ(u) = (u^λ − reversed(u^λ))/λ needs one power.
    """

    def __init__(self, x_sorted: np.ndarray):
        self.xc = x_sorted - x_sorted.mean()
        self.xx = _dot(self.xc, self.xc)
        self.lu = _log_filliben_medians(x_sorted.size)
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def quantiles(self, lam: float) -> np.ndarray:
        return tukey_lambda_ppf_logs(self.lu, self.lu[::-1], float(lam))

    def sums(self, lam: float) -> tuple[float, float]:
        """(Σ q·xc, Σ q²) of the probability plot at λ: r = Σ q·xc / √(Σ q² Σ xc²), slope = Σ q·xc / Σ q²."""
        if USE_NUMBA:
            if self._pairs is None:  # q_{n−1−i} = −q_i: the pairs' logs and data differences, contiguous
                h = self.xc.size // 2
                self._pairs = _log_filliben_pairs(self.xc.size) + (self.xc[:h] - self.xc[::-1][:h],)
            sxq, sqq = _ppcc_sums_numba(*self._pairs, float(lam))
            return float(sxq), float(sqq)
        q = self.quantiles(lam)  # mean 0 by symmetry
        return _dot(q, self.xc), _dot(q, q)

    def r(self, lam: float) -> float:
        sxq, sqq = self.sums(lam)
        return sxq / math.sqrt(sqq) / math.sqrt(self.xx)


# expm1 that LLVM vectorizes: libm's is a scalar call, 4–6× slower, and the PPCC evaluates ~10⁷ of them per
# ISO. t = k·ln 2 + r (Cody–Waite, |r| ≤ ln2/2), expm1(r) by its Taylor series to r¹⁵ (truncation < 1e-18·|r|,
# Estrin's scheme), expm1(t) = 2^k·expm1(r) + (2^k − 1) with 2^k from a table; within 2 ulp of libm for
# |t| < _EXPM1_MAX_ABS (callers check), which the PPCC's |λ·log u| stays far below.
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(2, 16))  # 1/2!, …, 1/15!
_POW2 = np.array([2.0**k for k in range(-64, 65)])  # 2^k at index k + 64
_EXPM1_MAX_ABS = 40.0


@nb.njit(inline="always", error_model="numpy")
def _expm1_vec(t):  # pragma: no cover - compiled
    k = np.rint(t * INV_LN2)
    r = (t - k * LN2_HI) - k * LN2_LO
    c = _EXPM1_TAYLOR
    r2 = r * r
    r4 = r2 * r2
    b0 = (c[0] + c[1] * r) + (c[2] + c[3] * r) * r2
    b1 = (c[4] + c[5] * r) + (c[6] + c[7] * r) * r2
    b2 = (c[8] + c[9] * r) + (c[10] + c[11] * r) * r2
    b3 = c[12] + c[13] * r
    p = (b0 + b1 * r4) + (b2 + b3 * r4) * (r4 * r4)  # Σ c_i r^i, i = 0 … 13
    scale = _POW2[np.int64(k) + 64]
    return scale * (r + r2 * p) + (scale - 1.0)


_PPCC_BLOCK = 512
_LANES = 8


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _ppcc_sums_numba(log_u, log_1mu, xd, lam):  # pragma: no cover - compiled
    """(Σ q·xc, Σ q²) over all n points from the n/2 pairs (q_{n−1−i} = −q_i): ``log_u``, ``log_1mu`` the
    pairs' log u and log(1 − u), ``xd`` = xc_i − xc_{n−1−i}. The quantiles of a block of pairs in a
    vectorized loop, then the two sums in 8 interleaved partial sums (vectorized too)."""
    h = log_u.size
    buf = np.empty(_PPCC_BLOCK)
    s1 = np.zeros(_LANES)
    s2 = np.zeros(_LANES)
    logistic = abs(lam) < TUKEY_LOGISTIC_EPS
    fast = h == 0 or abs(lam) * abs(log_u[0]) < _EXPM1_MAX_ABS
    inv = 0.0 if logistic else 1.0 / lam
    for s in range(0, h, _PPCC_BLOCK):
        m = min(_PPCC_BLOCK, h - s)
        a = log_u[s: s + m]
        b = log_1mu[s: s + m]
        d = xd[s: s + m]
        if logistic:
            for t in range(m):
                buf[t] = a[t] - b[t]
        elif fast:
            for t in range(m):
                buf[t] = (_expm1_vec(lam * a[t]) - _expm1_vec(lam * b[t])) * inv
        else:
            for t in range(m):
                buf[t] = tukey_lambda_ppf_logs(a[t], b[t], lam)
        t = 0
        while t + _LANES <= m:
            for k in range(_LANES):
                q = buf[t + k]
                s1[k] += q * d[t + k]
                s2[k] += q * q
            t += _LANES
        for k in range(m - t):
            q = buf[t + k]
            s1[k] += q * d[t + k]
            s2[k] += q * q
    sxq = 0.0
    sqq = 0.0
    for k in range(_LANES):
        sxq += s1[k]
        sqq += s2[k]
    return sxq, 2.0 * sqq


def ppcc_max_tukey(x: np.ndarray, bounds=(-0.5, 0.5)) -> float:
    """λ maximizing the Tukey-lambda probability-plot correlation coefficient (Filliben 1975).

    The same objective as ``scipy.stats.ppcc_max(x, dist="tukeylambda")`` (Filliben order-statistic medians,
    Pearson r of the probability plot), maximized by bounded Brent search on data sorted once, so it is
    several times faster on large samples; tested against scipy.

    Parameters
    ----------
    x : (n,) ndarray
        Samples, any unit.
    bounds : (float, float)
        Search interval of λ.

    Returns
    -------
    float
        λ (unit 1).
    """
    return _ppcc_argmax(_PPCC(np.sort(np.asarray(x, dtype=np.float64).ravel())), bounds)


def _ppcc_argmax(pp: _PPCC, bounds) -> float:
    """λ maximizing ``pp.r`` by bounded Brent search (the search of :func:`ppcc_max_tukey`)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda l: -pp.r(l), bounds=bounds, method="bounded", options={"xatol": 1e-4})
    return float(res.x)


def fit_tukey(x: np.ndarray, *, bounds=(-0.5, 0.5)) -> TukeyFit:
    """λ* = argmax PPCC, σ_TL = slope of the Tukey-λ* probability plot, and its r² (Wei et al. 2020 §3.2).

    Parameters
    ----------
    x : 1-D array
        Residual read noise samples [DN] (row/column means and fixed pattern removed).

    Returns
    -------
    TukeyFit
        λ (unit 1), σ_TL [DN], r² and n.
    """
    return fit_tukey_sorted(sort_finite(x), bounds=bounds)


def fit_tukey_sorted(x: np.ndarray, *, bounds=(-0.5, 0.5)) -> TukeyFit:
    """:func:`fit_tukey` of samples already sorted and finite (:func:`~.sorting.sort_finite`,
    :func:`~.sorting.merge_sorted`): fits of several unions of the same groups sort each group once.

    Parameters
    ----------
    x : (n,) ndarray of float64
        Ascending, finite residual read-noise samples [DN].

    Returns
    -------
    TukeyFit
    """
    if x.size < 100:
        raise CalibrationError(f"too few read-noise samples for a Tukey-lambda fit ({x.size}; need ≥ 100)")
    if x[0] == x[-1]:  # sorted: every sample equal (was a ZeroDivisionError in the PPCC)
        raise CalibrationError(f"the dark frames have zero read-noise variance (all {x.size} residuals equal {x[0]:g} DN): "
                               "constant or clipped frames, not raw darks; a read-noise fit is impossible")
    pp = _PPCC(x)  # sorted once: the search and the slope share it
    lam = _ppcc_argmax(pp, bounds)
    sxq, sqq = pp.sums(lam)
    r = sxq / math.sqrt(sqq) / math.sqrt(pp.xx)
    return TukeyFit(lam, sxq / sqq, float(r * r), int(x.size))


def _simulated_fit(lam: float, scale: float, logs_u: tuple[np.ndarray, np.ndarray], offsets: np.ndarray, quantized: bool) -> TukeyFit:
    """Run the residual construction of the dark-stack pipeline on synthetic Tukey noise (common random numbers
    u, given as (log u, log(1 − u)): :func:`~noisesim.stats.tukey_lambda_ppf` of u without its two logs)."""
    if USE_NUMBA:
        r = np.empty(logs_u[0].shape)
        _simulated_residuals_numba(logs_u[0], logs_u[1], float(lam), float(scale), offsets, bool(quantized), r)
        return fit_tukey(r)
    x = scale * tukey_lambda_ppf_logs(logs_u[0], logs_u[1], float(lam)) + offsets[None, :]
    if quantized:
        x = np.rint(x)
    n = x.shape[0]
    r = (x - x.mean(axis=0)) * math.sqrt(n / (n - 1))
    return fit_tukey(r.ravel())


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _simulated_residuals_numba(log_u, log_1mu, lam, scale, offsets, quantized, out):  # pragma: no cover - compiled
    # the numpy lines of _simulated_fit in two passes: x = σ·Q_λ(u) + offset (rounded), its frame sum per
    # pixel in frame order, then (x − mean)·√(n/(n − 1)); Q_λ by the vectorized expm1
    n, m = log_u.shape
    mean = np.zeros(m)
    logistic = abs(lam) < TUKEY_LOGISTIC_EPS
    fast = abs(lam) * max(-log_u.min(), -log_1mu.min()) < _EXPM1_MAX_ABS
    inv = 0.0 if logistic else 1.0 / lam
    for f in range(n):
        lu = log_u[f]
        l1 = log_1mu[f]
        row = out[f]
        for p in range(m):
            if logistic:
                q = lu[p] - l1[p]
            elif fast:
                q = (_expm1_vec(lam * lu[p]) - _expm1_vec(lam * l1[p])) * inv
            else:
                q = tukey_lambda_ppf_logs(lu[p], l1[p], lam)
            x = scale * q + offsets[p]
            if quantized:
                x = np.rint(x)
            row[p] = x
            mean[p] += x
    c = math.sqrt(n / (n - 1))
    for p in range(m):
        mean[p] /= n
    for f in range(n):
        row = out[f]
        for p in range(m):
            row[p] = (row[p] - mean[p]) * c


def debias_tukey(lam_meas: float, scale_meas: float, *, n_frames: int, quantized: bool, n_sim: int = 200_000,
                 offsets_dn: np.ndarray | None = None, rng=12345) -> tuple[float, float, float]:
    """Indirect-inference correction of the PPCC estimates for the residual construction.

    The residual ``x_f − mean of the stack`` mixes a 1/N share of near-Gaussian variance into the
    Tukey-lambda noise (pulling λ towards the Gaussian-like 0.14), and integer quantization flattens it.
    The same construction is simulated with common random numbers and (λ, σ_TL) are solved so that the
    simulated estimates equal the measured ones.

    ``offsets_dn`` are per-pixel mean levels (DN, black included) whose fractional parts fix the
    quantization phase; without them uniform phases are assumed.

    Parameters
    ----------
    lam_meas : float
        λ̂ of the probability-plot fit (unit 1).
    scale_meas : float
        σ̂_TL [DN].
    n_frames : int
        Frames in the stack the residuals are taken from.
    quantized : bool
        Whether the samples are integer DN.
    n_sim : int
        Samples per simulation.
    offsets_dn : (S,) ndarray, optional
        Per-pixel mean levels [DN].
    rng : int, SeedSequence or Generator
        Seed of the common random numbers.

    Returns
    -------
    (λ, σ_TL, dλ_meas/dλ) — the corrected values and the sensitivity (to carry the standard error over).
    """
    gen = np.random.default_rng(rng)
    m = max(100, n_sim // n_frames)
    u = gen.random((n_frames, m))
    u = np.clip(u, 1e-9, 1 - 1e-9)
    if offsets_dn is not None and np.size(offsets_dn) > 0:
        # the real per-pixel offsets (black + dark shading) set the quantization phase of each pixel
        offsets = np.resize(np.asarray(offsets_dn, dtype=np.float64).ravel(), m)
    else:
        offsets = gen.random(m) * 8.0
    u = (np.log(u), np.log1p(-u))  # what tukey_lambda_ppf takes of u, once for every simulation
    lam, scale = lam_meas, scale_meas
    deriv = 1.0
    for it in range(4):
        f0 = _simulated_fit(lam, scale, u, offsets, quantized)
        if it == 0:
            h = 0.02
            f1 = _simulated_fit(lam + h, scale, u, offsets, quantized)
            deriv = (f1.tukey_lambda - f0.tukey_lambda) / h
            if not deriv > 0.2:
                deriv = 1.0
        step = (lam_meas - f0.tukey_lambda) / deriv
        lam_new = float(np.clip(lam + step, -0.9, 0.9))
        scale = scale * scale_meas / f0.tukey_scale_dn
        done = abs(lam_new - lam) < 5e-4
        lam = lam_new
        if done:
            break
    f = _simulated_fit(lam, scale, u, offsets, quantized)
    scale = scale * scale_meas / f.tukey_scale_dn
    return lam, scale, deriv


def ppcc_curve(x: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """PPCC r(λ) on a grid (for the report).

    Parameters
    ----------
    x : (n,) ndarray
        Samples [DN].
    lambdas : (L,) ndarray
        Tukey-λ values.

    Returns
    -------
    (L,) ndarray
        Correlation coefficient r at each λ.
    """
    x = np.sort(np.asarray(x, dtype=np.float64).ravel())
    u = filliben_medians(x.size)
    return np.array([np.corrcoef(tukey_lambda_ppf(u, float(l)), x)[0, 1] for l in lambdas])


# ------------------------------------------------------------------------------------------------
# hot pixels and smoothing on packed channels


def median5(plane: np.ndarray) -> np.ndarray:
    """5×5 median of one packed channel plane (float32).

    Parameters
    ----------
    plane : (h, w) ndarray
        One packed channel, any unit.

    Returns
    -------
    (h, w) ndarray of float32
        Same unit.
    """
    import cv2

    return cv2.medianBlur(np.ascontiguousarray(plane, dtype=np.float32), 5)


def box_lowpass(plane: np.ndarray, size: int) -> np.ndarray:
    """Box filter of side ``size`` (reflecting borders), float64.

    Parameters
    ----------
    plane : (h, w) ndarray
        Any unit.
    size : int
        Box side [px].

    Returns
    -------
    (h, w) ndarray of float64
        Same unit.
    """
    import cv2

    size = max(3, int(size) | 1)
    return cv2.blur(np.ascontiguousarray(plane, dtype=np.float64), (size, size), borderType=cv2.BORDER_REFLECT)


@functools.lru_cache(maxsize=8)
def _illumination_basis(h: int, w: int, degree: int):
    """What :func:`flatten_illumination` needs of a plane's shape alone (cached: every channel and ISO of a
    capture shares it): the subsampling steps, the pseudo-inverse (T, S) of the polynomial design on the
    subsampled grid (the least-squares solution of any subsample is ``pinv @ subsample``), and the powers of
    the normalized coordinates, y^i (h, degree + 1) and x^j (degree + 1, w)."""
    sy, sx = max(1, h // 128), max(1, w // 128)
    yy, xx = np.mgrid[0:h:sy, 0:w:sx]
    ys, xs = 2.0 * yy / max(h - 1, 1) - 1.0, 2.0 * xx / max(w - 1, 1) - 1.0
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    a = np.stack([(ys**i * xs**j).ravel() for i, j in terms], axis=1)
    pinv = np.linalg.pinv(a)
    yf = 2.0 * np.arange(h) / max(h - 1, 1) - 1.0
    xf = 2.0 * np.arange(w) / max(w - 1, 1) - 1.0
    py = np.stack([yf**i for i in range(degree + 1)], axis=1)
    xpow = np.stack([xf**j for j in range(degree + 1)], axis=0)
    for arr in (pinv, py, xpow):
        arr.flags.writeable = False
    return sy, sx, pinv, py, xpow


def flatten_illumination(plane: np.ndarray, *, degree: int = 4, box: int = 31) -> np.ndarray:
    """Relative pixel response of a flat: plane / smooth illumination − 1 (EMVA 1288 §8 PRNU high-pass).

    The illumination and vignetting are removed in two stages: a 2-D polynomial surface of ``degree``
    (least squares on a subsample), then a ``box`` low-pass of the ratio, which is then nearly flat so the
    reflected borders of the box filter add no bias. Shape: (h, w) → (h, w), float64.

    Parameters
    ----------
    plane : (h, w) ndarray
        One packed channel of a flat, dark-subtracted [DN].
    degree : int
        Degree of the polynomial illumination surface.
    box : int
        Side [px] of the box low-pass.

    Returns
    -------
    (h, w) ndarray of float64
        Relative response (unit 1, mean ≈ 0).
    """
    h, w = plane.shape
    p = np.asarray(plane, dtype=np.float64)
    sy, sx, pinv, py, xpow = _illumination_basis(h, w, degree)
    # coefficients = pinv · subsample, summed by numpy (not a threaded BLAS: on a busy machine its spinning
    # threads cost 10× the arithmetic, and the sum would depend on the thread count)
    coef = np.multiply(pinv, p[::sy, ::sx].ravel()[None, :]).sum(axis=1)
    # separable evaluation: surf = Σ_i y^i · (Σ_j c_ij x^j)
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    px = np.zeros((degree + 1, w))
    for (i, j), c in zip(terms, coef):
        px[i] += c * xpow[j]
    if USE_NUMBA:  # the same sums and quotients in one pass, without full-size temporaries
        ratio = np.empty((h, w))
        _surface_ratio_numba(np.ascontiguousarray(p), py, px, ratio)
        low = box_lowpass(ratio, box)
        _relative_to_numba(ratio, low)
        return ratio
    surf = py[:, 0:1] * px[0]
    for i in range(1, degree + 1):
        surf += py[:, i:i + 1] * px[i]
    ratio = p / np.where(np.abs(surf) > 1e-12, surf, 1e-12)
    return ratio / box_lowpass(ratio, box) - 1.0


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _surface_ratio_numba(p, py, px, out):  # pragma: no cover - compiled
    # out = p / surf (surf = Σ_i py[:, i] · px[i], summed in i order; |surf| ≤ 1e-12 replaced by 1e-12)
    h, w = p.shape
    d = px.shape[0]
    for y in range(h):
        for x in range(w):
            sv = py[y, 0] * px[0, x]
            for i in range(1, d):
                sv += py[y, i] * px[i, x]
            out[y, x] = p[y, x] / (sv if abs(sv) > 1e-12 else 1e-12)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _relative_to_numba(ratio, low):  # pragma: no cover - compiled
    # ratio ← ratio / low − 1, in place
    h, w = ratio.shape
    for y in range(h):
        for x in range(w):
            ratio[y, x] = ratio[y, x] / low[y, x] - 1.0


def hot_pixel_mask(ds_packed: np.ndarray, *, threshold: float = 6.0) -> np.ndarray:
    """Pixels whose dark shading departs from the 5×5 median of its channel by > ``threshold`` robust σ.

    Shape: ``(C, h, w) -> (C, h, w)`` bool. σ is 1.4826 × MAD of (DS − median₅ DS) per channel (docs/calibration.md step 3).

    Parameters
    ----------
    ds_packed : (C, h, w) ndarray
        Dark shading per packed channel [DN].
    threshold : float
        In robust σ.

    Returns
    -------
    (C, h, w) ndarray of bool
    """
    mask = np.zeros(ds_packed.shape, dtype=bool)
    for c in range(ds_packed.shape[0]):
        d = ds_packed[c].astype(np.float32) - median5(ds_packed[c])
        mad = float(median(np.abs(d - median(d)))) * 1.4826
        mad = max(mad, 1e-6)
        mask[c] = np.abs(d) > threshold * mad
    return mask


# ------------------------------------------------------------------------------------------------
# line fits


@dataclass
class LineFit:
    """y = slope · x + intercept with SEs, residual std and the points.

    Attributes
    ----------
    slope, intercept : Estimate
        [y unit / x unit] and [y unit].
    residual_std : float
        Standard deviation of the residuals [y unit].
    x, y : (n,) ndarray
        The points.
    """

    slope: Estimate
    intercept: Estimate
    residual_std: float
    x: np.ndarray
    y: np.ndarray

    def predict(self, x):
        """The fitted line at ``x`` (array_like, same unit as the fit's x): intercept + slope · x.

        Parameters
        ----------
        x : array_like
            Any shape.

        Returns
        -------
        ndarray or float
            Same shape, in the unit of y.
        """
        return self.slope.value * np.asarray(x) + self.intercept.value


def fit_line(x, y, *, weights=None, what: str = "fit") -> LineFit:
    """Ordinary (or weighted) least squares with standard errors (t with n − 2 dof when n > 2).

    With two points the line is exact; its SE is then taken from ``weights`` (1/σ² of y) when given,
    else reported as NaN.

    Parameters
    ----------
    x, y : (n,) array_like
        The points, n ≥ 2, any units.
    weights : (n,) array_like, optional
        1/σ² of each y.
    what : str
        What is fitted, for error messages.

    Returns
    -------
    LineFit
        Slope [y unit / x unit] and intercept [y unit] as Estimates.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 2 or np.ptp(x) == 0:
        raise CalibrationError(f"{what}: need at least 2 distinct x values, got {n}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    sw = w.sum()
    xm, ym = np.sum(w * x) / sw, np.sum(w * y) / sw
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * (y - ym)) / sxx
    icpt = ym - slope * xm
    resid = y - (slope * x + icpt)
    dof = n - 2
    if dof > 0:
        s2 = np.sum(w * resid**2) / dof
        if weights is not None:
            s2 = max(s2, 1.0)  # weights are 1/σ²: never claim less than the measurement errors give
        method = f"{'weighted ' if weights is not None else ''}LS, t({dof})"
    elif weights is not None:
        s2 = 1.0
        method = "exact line through 2 points, SE from the points' SEs"
        dof = None
    else:
        s2 = float("nan")
        method = "exact line through 2 points (no SE)"
        dof = None
    se_slope = math.sqrt(s2 / sxx)
    se_icpt = math.sqrt(s2 * (1.0 / sw + xm**2 / sxx))
    rstd = float(np.sqrt(np.sum(resid**2) / dof)) if dof else 0.0
    return LineFit(Estimate.normal(slope, se_slope, method, n, dof), Estimate.normal(icpt, se_icpt, method, n, dof), rstd, x, y)


# ------------------------------------------------------------------------------------------------
# fidelity (docs/calibration.md)


PSEUDO_COUNT = 0.5  # added to every bin of both histograms (Krichevsky–Trofimov): empty bins stay finite
TAIL_QUANTILE = 1e-3  # the binned range is the union of both samples' [0.1 %, 99.9 %]; beyond it, one tail bin each side
MAX_BINS = 4096


def histogram_bins(real: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Bin edges [DN] for comparing two samples: integer-DN bins over the union of both samples' 0.1–99.9 %
    ranges, plus an underflow bin (−∞, lo) and an overflow bin (hi, +∞), so that no sample is dropped and
    mass outside the other's support always costs. Bins widen (integer width) beyond ``MAX_BINS``.

    Parameters
    ----------
    real, synthetic : ndarray
        Samples [DN], any shape (flattened).

    Returns
    -------
    (B + 1,) ndarray of float64
        Bin edges [DN], the outer ones ±∞.
    """
    qa = np.quantile(real, [TAIL_QUANTILE, 1.0 - TAIL_QUANTILE])
    qb = np.quantile(synthetic, [TAIL_QUANTILE, 1.0 - TAIL_QUANTILE])
    lo = math.floor(min(qa[0], qb[0])) - 0.5
    hi = math.ceil(max(qa[1], qb[1])) + 0.5
    width = max(1, math.ceil((hi - lo) / MAX_BINS))
    inner = lo + width * np.arange(int(math.ceil((hi - lo) / width)) + 1)
    return np.concatenate([[-np.inf], inner, [np.inf]])


def kl_divergences(real: np.ndarray, synthetic: np.ndarray, *, pseudo_count: float = PSEUDO_COUNT) -> tuple[float, float]:
    """Forward KL(real‖synthetic) and symmetric KL(real‖syn) + KL(syn‖real) of DN histograms [nats].

    Bins from :func:`histogram_bins` (union of both supports, under- and overflow bins). In each direction
    the reference histogram (the second argument of KL) gets ``pseudo_count`` counts in every bin before
    normalizing, the other is the plain empirical distribution: the divergence is finite, never negative,
    and a sample lying wholly outside the other scores worse the further away it lies (the pseudo-count
    mass spreads over more bins), never better than a nearby one.

    Parameters
    ----------
    real, synthetic : ndarray
        Samples [DN], any shape.
    pseudo_count : float
        Counts added per bin of the reference histogram.

    Returns
    -------
    kl_forward, kl_symmetric : float
        [nats]
    """
    real = np.asarray(real, dtype=np.float64).ravel()
    synthetic = np.asarray(synthetic, dtype=np.float64).ravel()
    edges = histogram_bins(real, synthetic)
    n_r = np.histogram(real, edges)[0].astype(np.float64)
    n_s = np.histogram(synthetic, edges)[0].astype(np.float64)
    return _kl_of_counts(n_r, n_s, pseudo_count)


def kl_divergences_sorted(real: np.ndarray, synthetic: np.ndarray, *, pseudo_count: float = PSEUDO_COUNT) -> tuple[float, float]:
    """:func:`kl_divergences` of samples already sorted and finite (:func:`~.sorting.sort_finite`): the same
    bins and counts, each histogram read off its sorted sample by binary search instead of sorting it again.

    Parameters
    ----------
    real, synthetic : (n,) ndarray of float64
        Ascending, finite samples [DN].
    pseudo_count : float
        As :func:`kl_divergences`.

    Returns
    -------
    (kl_forward, kl_symmetric) : (float, float)
        As :func:`kl_divergences` [nats].
    """
    edges = histogram_bins(real, synthetic)
    return _kl_of_counts(_sorted_histogram(real, edges), _sorted_histogram(synthetic, edges), pseudo_count)


def _sorted_histogram(x_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(x, edges)[0]`` (float64) of an ascending sample: the last bin closed, as numpy's."""
    cum = np.concatenate([x_sorted.searchsorted(edges[:-1], "left"), x_sorted.searchsorted(edges[-1:], "right")])
    return np.diff(cum).astype(np.float64)


def _kl_of_counts(n_r: np.ndarray, n_s: np.ndarray, pseudo_count: float) -> tuple[float, float]:
    def kl(a, b):
        pa = a / a.sum()
        qb = (b + pseudo_count) / (b + pseudo_count).sum()
        m = pa > 0
        return float(np.sum(pa[m] * np.log(pa[m] / qb[m])))

    fwd = kl(n_r, n_s)
    return fwd, fwd + kl(n_s, n_r)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic sup |F_a − F_b| (exact, ties handled; 0 … 1).

    Parameters
    ----------
    a, b : ndarray
        Samples, any shape, same unit.

    Returns
    -------
    float
        In [0, 1].
    """
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if USE_NUMBA and a.size and b.size and np.isfinite(a[[0, -1]]).all() and np.isfinite(b[[0, -1]]).all():
        return float(_ks_sorted_numba(a, b))
    return _ks_by_search(a, b)


def _ks_by_search(a: np.ndarray, b: np.ndarray) -> float:
    """sup |F_a − F_b| of two ascending samples over their pooled values, by binary search (numpy)."""
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(a.searchsorted(grid, "right") / a.size - b.searchsorted(grid, "right") / b.size)))


def ks_statistic_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`ks_statistic` of samples already sorted and finite, in one merge of the two (no binary searches).

    Parameters
    ----------
    a, b : (n,) ndarray of float64
        Ascending, finite samples, same unit.

    Returns
    -------
    float
        In [0, 1].
    """
    return float(_ks_sorted_numba(a, b)) if USE_NUMBA else _ks_by_search(a, b)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _ks_sorted_numba(a, b):  # pragma: no cover - compiled
    # at each distinct value v of either sample: |#(a ≤ v)/n_a − #(b ≤ v)/n_b|, as the searchsorted form computes it
    na, nb_ = a.size, b.size
    i = 0
    j = 0
    d = 0.0
    while i < na or j < nb_:
        if j >= nb_ or (i < na and a[i] <= b[j]):
            v = a[i]
        else:
            v = b[j]
        while i < na and a[i] <= v:
            i += 1
        while j < nb_ and b[j] <= v:
            j += 1
        d = max(d, abs(i / na - j / nb_))
    return d
