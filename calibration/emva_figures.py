"""One function per measured figure of one ISO: the EMVA 1288 figures and the noise model's own.

Each function takes the streamed statistics of :mod:`.accumulate` (a :class:`~.accumulate.DarkStats`, the flat
levels) and returns :class:`~.estimators.Estimate` objects, per packed channel where the figure is per
channel. :func:`noisesim.calibration.pipeline.calibrate` calls them in order; they read no files and warn
about nothing (the pipeline does both).

Every docstring names, in the manner of the ``emva1288`` package's results, the figure's section, symbol
and unit. Sections refer to EMVA Standard 1288 release 4.0 *Linear* (the successor of release 3.1 that
keeps the photon transfer method): §2 sensitivity, linearity and noise (§2.4 saturation and absolute
sensitivity threshold), §3 dark current, §4 spatial nonuniformity and defect pixels, §6 their measurement
by the photon transfer method, §7 dark current measurement, §8 nonuniformity measurement. The read-noise
shape (Tukey λ, σ_TL) and the temporal row and column noise are not EMVA 1288 figures: they come from
Wei et al., CVPR 2020 (ELD, §3) and are marked as such. docs/calibration.md gives the procedure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np

from noisesim.cfa import CFA

from .accumulate import DarkStats, FlatAccumulator, FlatLevel
from .estimators import (
    Estimate,
    PTCFit,
    batch_se,
    debias_tukey,
    fit_line,
    fit_ptc,
    fit_tukey_sorted,
    flatten_illumination,
    solve_row_col_pixel,
)
from .pixel_noise import QUANTIZATION_VAR_DN2  # EMVA 1288 σ²_q = 1/12 DN² of integer data
from .sorting import median, sort_finite
from .uncertainty import channel_gain, dark_pair_variances

__all__ = [
    "black_level_error",
    "column_noise",
    "DarkVariances",
    "Figure",
    "FIGURES",
    "dark_current",
    "dark_signal_nonuniformity",
    "dynamic_range",
    "LineNoise",
    "line_noise_variances",
    "map_scale",
    "photo_response_nonuniformity",
    "photon_transfer",
    "pixel_noise",
    "read_noise",
    "read_noise_per_channel",
    "ReadNoiseShape",
    "read_noise_shape",
    "row_noise",
    "row_noise_spectrum",
    "saturation_capacity",
    "sigma_from_variance",
    "system_gain",
    "temporal_dark_noise",
    "temporal_dark_noise_e",
    "temporal_dark_variance",
    "temporal_dark_variance_mean",
    "tukey_lambda_per_channel",
]



@dataclass(frozen=True)
class Figure:
    """What a measured figure is, as the ``emva1288`` package's results record it for its report.

    Attributes
    ----------
    name : str
        The function that measures it (in this module).
    short : str
        A short description ("System gain").
    symbol : str
        Its symbol (EMVA 1288's where it has one: "K", "σ_y.dark", "DSNU1288").
    unit : str
        Unit of the value ("DN/e⁻", "DN", "e⁻", "dB"; "1" for a ratio or a shape parameter).
    section : str
        Where it is defined: "EMVA 1288 §…" (release 4.0 Linear) or another source ("ELD §3").
    """

    name: str
    short: str
    symbol: str
    unit: str
    section: str


FIGURES: dict[str, Figure] = {}  # function name -> Figure, in the order the functions are defined

_F = TypeVar("_F", bound=Callable)


def _figure(short: str, symbol: str, unit: str, section: str) -> Callable[[_F], _F]:
    """Register a figure function in :data:`FIGURES` and attach its :class:`Figure` as ``fn.figure``."""

    def register(fn: _F) -> _F:
        fig = Figure(fn.__name__, short, symbol, unit, section)
        FIGURES[fn.__name__] = fig
        fn.figure = fig
        return fn

    return register


def sigma_from_variance(var: float, se_var: float, method: str, n: int, dof: int | None = None) -> Estimate:
    """A standard deviation √var with its SE carried from the variance's: se_σ = se_var / (2σ).

    A negative variance (noise larger than the signal it is subtracted from) gives σ = 0 with SE √se_var.
    The interval is on the log scale (:meth:`Estimate.positive`); ``dof`` selects Student t.

    Parameters
    ----------
    var : float
        The variance [unit²].
    se_var : float
        Its standard error [unit²].
    method : str
        How it was measured (recorded in the Estimate).
    n : int
        Sample size behind it.
    dof : int, optional
        Degrees of freedom for a Student-t interval.

    Returns
    -------
    Estimate
        σ [unit].
    """
    s = math.sqrt(max(var, 0.0))
    se = se_var / (2 * s) if s > 0 else math.sqrt(max(se_var, 0.0))
    return Estimate.positive(s, se, method, n, dof=dof)


def map_scale(signal_var: float, total_var: float, denoise: bool) -> float:
    """Factor for a noisy per-pixel map whose spatial variance is ``total_var`` of which ``signal_var`` is the
    sensor's: √(signal/total) makes the map's variance the sensor's (simulations reproduce DSNU1288 and
    PRNU1288); with ``denoise`` the Wiener factor signal/total (best per-pixel estimate, too little variance).

    Parameters
    ----------
    signal_var : float
        The sensor's spatial variance (the map's noise removed), any squared unit.
    total_var : float
        The measured map's spatial variance, same unit.
    denoise : bool
        Wiener factor instead of the variance-preserving one.

    Returns
    -------
    float
        Multiplier of the map's deviations, in [0, 1].
    """
    if not total_var > 0 or not signal_var > 0:
        return 0.0
    f = min(1.0, signal_var / total_var)
    return f if denoise else math.sqrt(f)


def _tiles(plane: np.ndarray, n: int = 4):
    """The finite values of each of n × n tiles of a plane (for SEs over tiles)."""
    h, w = plane.shape
    for ys in np.array_split(np.arange(h), n):
        for xs in np.array_split(np.arange(w), n):
            t = plane[ys[0]: ys[-1] + 1, xs[0]: xs[-1] + 1]
            t = t[np.isfinite(t)]
            if t.size > 1:
                yield t


# ------------------------------------------------------------------------------------------------
# temporal dark noise and black level


@dataclass(frozen=True)
class DarkVariances:
    """Temporal dark variance per packed channel, pooled over the pixels of the dark stack.

    Attributes
    ----------
    all_pixels_dn2 : (C,) float64
        σ²_y.dark [DN²] over every pixel (what flat pairs contain).
    good_pixels_dn2 : (C,) float64
        The same without the hot pixels [DN²] (what the read-noise figures describe).
    quantization_dn2 : float
        σ²_q [DN²]: 1/12 for integer-valued frames, else 0.
    pixels_per_channel : int
        Pixels of one packed channel.
    """

    all_pixels_dn2: np.ndarray
    good_pixels_dn2: np.ndarray
    quantization_dn2: float
    pixels_per_channel: int


@_figure('Temporal dark variance per channel', 'σ²_y.dark', 'DN²', 'EMVA 1288 §2.2, §6')
def temporal_dark_variance(ds: DarkStats, hot_packed: np.ndarray) -> DarkVariances:
    """Temporal dark variance σ²_y.dark per packed channel [DN²], with and without hot pixels.

    EMVA 1288: section §2.2 / §6 (sensitivity, noise); symbol σ²_y.dark; unit DN². The mean over the
    channel's pixels of each pixel's variance over the stack (ddof = 1).

    Parameters
    ----------
    ds : DarkStats
        The dark stack at the shortest exposure.
    hot_packed : (C, h, w) bool
        Hot pixels, packed.

    Returns
    -------
    DarkVariances
        Per packed channel σ²_y.dark [DN²] (all pixels and without hot pixels), σ²_q [DN²] and pair SEs.
    """
    cfa = ds.cfa
    var_packed = cfa.pack(ds.temporal_var_map_dn2)
    nch = cfa.n_channels
    v_chan = np.array([float(var_packed[c].mean()) for c in range(nch)])
    v_chan_good = np.array([float(var_packed[c][~hot_packed[c]].mean()) for c in range(nch)])
    return DarkVariances(v_chan, v_chan_good, QUANTIZATION_VAR_DN2 if ds.integer_valued else 0.0, int(var_packed[0].size))


@_figure('Temporal dark noise per channel', 'σ_y.dark', 'DN', 'EMVA 1288 §2.2, §6')
def temporal_dark_noise(ds: DarkStats, dv: DarkVariances) -> list[Estimate]:
    """Temporal dark noise σ_y.dark per packed channel [DN].

    EMVA 1288: section §2.2 / §6 (sensitivity, noise); symbol σ_y.dark; unit DN. √σ²_y.dark over all pixels;
    SE from the spread of ½ var(d₁ − d₂) over consecutive frame pairs (from the pixel count when there is
    one pair).

    Parameters
    ----------
    ds : DarkStats
        The dark stack.
    dv : DarkVariances
        :func:`temporal_dark_variance`.

    Returns
    -------
    list of Estimate, one per packed channel (``cfa.channel_names`` order)
    """
    n = ds.n_frames
    pv = ds.pair_var_dn2  # (P, C)
    out = []
    for c in range(ds.cfa.n_channels):
        v = dv.all_pixels_dn2[c]
        se_v = batch_se(pv[:, c]) if pv.shape[0] >= 2 else v * math.sqrt(2.0 / max(1, (n - 1) * dv.pixels_per_channel))
        s = math.sqrt(max(v, 0.0))
        out.append(Estimate.positive(s, se_v / (2 * max(s, 1e-12)), f"pooled per-pixel variance of {n} darks; SE over {pv.shape[0]} frame pairs", pv.shape[0]))
    return out


@_figure('Dark signal minus the declared black level', 'μ_y.dark', 'DN', 'EMVA 1288 §2.1')
def black_level_error(ds: DarkStats, mean_packed: np.ndarray, hot_packed: np.ndarray) -> list[Estimate]:
    """Dark signal μ_y.dark minus the black level the files declare, per colour site [DN].

    EMVA 1288: section §2.1 (linear signal model, dark signal); symbol μ_y.dark (here minus the declared
    black level, PMN's black-level error, Feng et al. 2022); unit DN. Mean over the site's channels of the
    mean dark without hot pixels; SE from the frame-to-frame spread of the channel means, t(N − 1).

    Parameters
    ----------
    ds : DarkStats
    mean_packed : (C, h, w)
        ``ds.mean_map_dn`` packed.
    hot_packed : (C, h, w) bool

    Returns
    -------
    list of 4 Estimate, per colour site (Bayer reading order)
    """
    n = ds.n_frames
    site = ds.cfa.site_index.ravel()
    fm = ds.frame_channel_means_dn
    out = []
    for s_ in range(4):
        chans = np.flatnonzero(site == s_)
        val = float(np.mean([mean_packed[c][~hot_packed[c]].mean() for c in chans]))
        se = float(np.std(fm[:, chans].mean(axis=1), ddof=1) / math.sqrt(n))
        out.append(Estimate.normal(val, se, f"channel mean of {n} darks; SE from frame-to-frame spread", n, dof=n - 1))
    return out


@_figure('Temporal dark variance', 'σ²_y.dark', 'DN²', 'EMVA 1288 §2.2')
def temporal_dark_variance_mean(dv: DarkVariances, dark_sigma: list[Estimate]) -> Estimate:
    """Temporal dark variance σ²_y.dark of the sensor, the mean over channels [DN²].

    EMVA 1288: section §2.2 (noise model); symbol σ²_y.dark; unit DN². Pooled per-pixel variance of the darks
    (all pixels). The SE is the mean of the channels' SEs: the channels share row noise, so averaging
    them gains no √C.

    Parameters
    ----------
    dv : DarkVariances
        :func:`temporal_dark_variance`.
    dark_sigma : list of Estimate
        :func:`temporal_dark_noise` (their SEs).

    Returns
    -------
    Estimate
        σ²_y.dark [DN²].
    """
    sy2 = float(np.mean(dv.all_pixels_dn2))
    se_sy2 = float(np.mean([2.0 * e.value * e.se for e in dark_sigma]))
    return Estimate.normal(sy2, se_sy2, "mean over channels of the pooled per-pixel dark variance", len(dark_sigma))


@_figure('Temporal dark noise', 'σ_d', 'e⁻', 'EMVA 1288 §2.2, §6')
def temporal_dark_noise_e(sigma_y_dark2: Estimate, dv: DarkVariances, gain: Estimate) -> Estimate:
    """Temporal dark noise σ_d in electrons [e⁻].

    EMVA 1288: section §2.2 / §6 (sensitivity, noise); symbol σ_d; unit e⁻. σ_d = √(σ²_y.dark − σ²_q) / K.

    Parameters
    ----------
    sigma_y_dark2 : Estimate
        :func:`temporal_dark_variance_mean` [DN²].
    dv : DarkVariances
        For σ²_q.
    gain : Estimate
        K [DN/e⁻] (:func:`system_gain`).

    Returns
    -------
    Estimate
        σ_d [e⁻].
    """
    sy2, se_sy2 = sigma_y_dark2.value, sigma_y_dark2.se
    kval, rel_k = gain.value, gain.se / gain.value
    d2 = max(sy2 - dv.quantization_dn2, 0.0)
    sd = math.sqrt(d2) / kval
    se_sd = sd * math.hypot(se_sy2 / (2.0 * d2) if d2 > 0 else 0.0, rel_k)
    return Estimate.normal(sd, se_sd, "EMVA 1288 σ_d = √(σ²_y.dark − σ²_q) / K", sigma_y_dark2.n)


# ------------------------------------------------------------------------------------------------
# row, column and pixel noise (temporal)


@dataclass(frozen=True)
class LineNoise:
    """Temporal row, column and pixel variances of a dark stack [DN²] with their SEs.

    ``row_var_dn2`` σ²_r, ``col_var_dn2`` σ²_c, ``pixel_var_dn2`` σ²_pix (row and column parts removed, hot
    pixels excluded, quantization included); ``n_frames`` N behind the frame-spread SEs. ``pixel_var_dof`` the
    degrees of freedom of σ²_pix's SE (None: normal), ``pixel_var_se_per_channel_dn2`` / ``pixel_var_dof_per_channel``
    the same for each channel's σ²_y.dark,c − σ²_r − σ²_c (:mod:`.uncertainty`); ``frame_shape`` (H, W).

    Attributes
    ----------
    row_var_dn2, col_var_dn2, pixel_var_dn2 : float
        σ²_r, σ²_c, σ²_pix [DN²].
    row_var_se_dn2, col_var_se_dn2, pixel_var_se_dn2 : float
        Their standard errors [DN²].
    n_frames : int
        N, frames of the dark stack.
    pixel_var_dof : int or None
        Degrees of freedom of σ²_pix's SE.
    pixel_var_se_per_channel_dn2 : list of float
        SE of each channel's σ²_y.dark,c − σ²_r − σ²_c [DN²]; ``pixel_var_dof_per_channel`` their dof.
    frame_shape : (H, W)
        [px]
    """

    row_var_dn2: float
    col_var_dn2: float
    pixel_var_dn2: float
    row_var_se_dn2: float
    col_var_se_dn2: float
    pixel_var_se_dn2: float
    n_frames: int
    pixel_var_dof: float | None = None
    pixel_var_se_per_channel_dn2: tuple[float, ...] = ()
    pixel_var_dof_per_channel: tuple[float | None, ...] = ()
    frame_shape: tuple[int, int] = (0, 0)


def line_noise_variances(ds: DarkStats, dv: DarkVariances) -> LineNoise:
    """Row, column and pixel parts of the temporal dark variance (docs/calibration.md step 4).

    The variance of each frame's row means (column means) about the stack's is σ²_r + σ²_pix/N_cols
    (σ²_c + σ²_pix/N_rows); with the pooled pixel variance (hot pixels excluded) the three parts are
    solved for (:func:`~.estimators.solve_row_col_pixel`), the same decomposition as EMVA 1288 §4.3 (column,
    row and pixel variances) applied to the temporal residuals. SEs from the spread over frames (σ²_r,
    σ²_c) and over independent frame pairs (σ²_pix, each pair's realized row and column noise removed so
    that it cancels as in the estimate: :func:`~.uncertainty.dark_pair_variances`).

    Parameters
    ----------
    ds : DarkStats
        The dark stack.
    dv : DarkVariances
        :func:`temporal_dark_variance`.

    Returns
    -------
    LineNoise
    """
    n = ds.n_frames
    h, w = ds.shape
    corr = 1.0 / (1.0 - 1.0 / n)  # residuals against the stack mean lose a 1/N of the variance
    vr_f = ds.row_resid.var(axis=1, ddof=1) * corr
    vc_f = ds.col_resid.var(axis=1, ddof=1) * corr
    v_all = float(np.mean(dv.good_pixels_dn2))
    r2, c2, p2 = solve_row_col_pixel(float(vr_f.mean()), float(vc_f.mean()), v_all, n_cols=w, n_rows=h)
    se_r2, se_c2 = batch_se(vr_f), batch_se(vc_f)
    pv = ds.pair_var_dn2
    # the row noise a pair realized is common to v_all and r2: adding their SEs in quadrature overstated
    # read σ's SE 4–10× (benchmarks/study_uncertainty.py)
    dpv = dark_pair_variances(pv, ds.frame_channel_means_dn, ds.row_resid, ds.col_resid, ds.cfa.period)
    se_p2, dof = dpv.read_variance_se()
    nch = ds.cfa.n_channels
    if math.isfinite(se_p2):
        per = [dpv.read_variance_se(c) for c in range(nch)]
    else:  # fewer than 2 dark pairs: each term's SE, as if independent (conservative)
        pv_all = pv.mean(axis=1) if pv.shape[0] else np.array([v_all])
        se_v_all = batch_se(pv_all) if pv_all.size >= 2 else v_all * math.sqrt(2.0 / (n * h * w))
        se_p2, dof = math.sqrt(se_v_all**2 + se_r2**2 + se_c2**2), None
        per = [(se_p2 * math.sqrt(nch), None)] * nch
    return LineNoise(r2, c2, p2, se_r2, se_c2, se_p2, n, dof, tuple(p[0] for p in per), tuple(p[1] for p in per), (h, w))


@_figure('Temporal row noise', 'σ_r', 'DN', 'ELD §3')
def row_noise(lines: LineNoise) -> Estimate:
    """Temporal row noise σ_r [DN].

    Not an EMVA 1288 figure: ELD (Wei et al. 2020) §3, "row noise"; symbol σ_r; unit DN.
    √(var of row means − σ²_pix / N_cols); SE over N frames, Student t(N − 1).

    Parameters
    ----------
    lines : LineNoise
        :func:`line_noise_variances`.

    Returns
    -------
    Estimate
        [DN], with SE and 95 % interval.
    """
    n = lines.n_frames
    return sigma_from_variance(lines.row_var_dn2, lines.row_var_se_dn2,
                               f"var of row means − σ²_pix/N_cols; SE over {n} frames, t({n - 1})", n, dof=n - 1)


@_figure('Temporal column noise', 'σ_c', 'DN', 'ELD §3')
def column_noise(lines: LineNoise) -> Estimate:
    """Temporal column noise σ_c [DN].

    Not an EMVA 1288 figure: ELD (Wei et al. 2020) §3, as :func:`row_noise` along columns; symbol σ_c; unit DN.
    √(var of column means − σ²_pix / N_rows); SE over N frames, Student t(N − 1).

    Parameters
    ----------
    lines : LineNoise
        :func:`line_noise_variances`.

    Returns
    -------
    Estimate
        [DN], with SE and 95 % interval.
    """
    n = lines.n_frames
    return sigma_from_variance(lines.col_var_dn2, lines.col_var_se_dn2,
                               f"var of column means − σ²_pix/N_rows; SE over {n} frames, t({n - 1})", n, dof=n - 1)


@_figure('Temporal pixel noise', 'σ_pix', 'DN', 'EMVA 1288 §4.3')
def pixel_noise(lines: LineNoise) -> Estimate:
    """Temporal pixel noise σ_pix [DN]: the dark noise without its row and column parts (quantization kept).

    EMVA 1288 §4.3 (column, row and pixel variances, here of the temporal residuals); symbol σ_pix; unit DN.
    SE over dark frame pairs (:func:`line_noise_variances`).

    Parameters
    ----------
    lines : LineNoise
        :func:`line_noise_variances`.

    Returns
    -------
    Estimate
        [DN], with SE and 95 % interval.
    """
    return sigma_from_variance(lines.pixel_var_dn2, lines.pixel_var_se_dn2,
                               "pooled temporal variance minus row and column parts; SE over dark pairs", lines.n_frames,
                               dof=lines.pixel_var_dof)


@_figure('Read noise of the noise model', 'σ_read', 'DN', 'ELD §3')
def read_noise(lines: LineNoise, dv: DarkVariances) -> Estimate:
    """Gaussian read noise σ_read [DN] of the noise model: √(σ²_pix − σ²_q).

    ELD (Wei et al. 2020) §3; symbol σ_read; unit DN. EMVA 1288 counts it in σ_d (§2.2); here the row and
    column parts are apart, so it is the per-pixel share only. SE over dark frame pairs (:func:`line_noise_variances`).

    Parameters
    ----------
    lines : LineNoise
        :func:`line_noise_variances`.
    dv : DarkVariances
        For σ²_q (1/12 DN² on integer samples).

    Returns
    -------
    Estimate
        σ_read [DN].
    """
    q = dv.quantization_dn2
    return sigma_from_variance(lines.pixel_var_dn2 - q, lines.pixel_var_se_dn2,
                               "√(σ²_pix − 1/12 DN² quantization); SE over dark pairs" if q else "√σ²_pix; SE over dark pairs",
                               lines.n_frames, dof=lines.pixel_var_dof)


@_figure('Read noise per channel', 'σ_read', 'DN', 'ELD §3')
def read_noise_per_channel(lines: LineNoise, dv: DarkVariances) -> list[Estimate]:
    """σ_read [DN] of each packed channel: √(σ²_y.dark,c − σ²_r − σ²_c − σ²_q), hot pixels excluded.

    ELD (Wei et al. 2020) §3, per channel; symbol σ_read; unit DN. The SE is the pooled one × √C.

    Parameters
    ----------
    lines : LineNoise
        :func:`line_noise_variances`.
    dv : DarkVariances
        Per-channel σ²_y.dark and σ²_q.

    Returns
    -------
    list of Estimate
        σ_read [DN], one per packed channel.
    """
    nch = dv.good_pixels_dn2.size
    se = lines.pixel_var_se_per_channel_dn2 or (lines.pixel_var_se_dn2 * math.sqrt(nch),) * nch
    dof = lines.pixel_var_dof_per_channel or (None,) * nch
    return [sigma_from_variance(dv.good_pixels_dn2[c] - lines.row_var_dn2 - lines.col_var_dn2 - dv.quantization_dn2,
                                se[c], "per channel; SE over dark pairs", lines.n_frames, dof=dof[c]) for c in range(nch)]


def row_noise_spectrum(ds: DarkStats) -> np.ndarray:
    """Power spectrum of the row means' temporal fluctuation, mean over frames [DN² per frequency bin].

    Shape ``(H // 2 + 1,)``; for the report (banding shows as peaks; white row noise is flat), in the spirit
    of the EMVA 1288 §8 vertical spectrogram, but of the temporal residuals.

    Parameters
    ----------
    ds : DarkStats
        The dark stack (its row-mean residuals).

    Returns
    -------
    (H // 2 + 1,) ndarray
        [DN²] per frequency bin.
    """
    rs = np.fft.rfft(ds.row_resid, axis=1)
    return (np.abs(rs) ** 2).mean(axis=0) / ds.row_resid.shape[1]


# ------------------------------------------------------------------------------------------------
# read-noise shape (Tukey λ)


@dataclass(frozen=True)
class ReadNoiseShape:
    """Tukey-lambda fit of the residual read noise.

    Attributes
    ----------
    tukey_lambda : Estimate
        λ (unitless), debiased.
    tukey_scale_dn : Estimate
        σ_TL [DN], debiased.
    r2 : float
        r² of the probability plot.
    tukey_lambda_per_channel : list of Estimate
        λ of each packed channel (diagnostic).
    samples_dn : (≤ ~20 000,) float32
        A subsample of the residuals, for the report.
    """

    tukey_lambda: Estimate
    tukey_scale_dn: Estimate
    r2: float
    tukey_lambda_per_channel: list[Estimate]
    samples_dn: np.ndarray


@_figure('Read-noise shape (Tukey lambda) and scale', 'λ, σ_TL', '1, DN', 'ELD §3.2')
def read_noise_shape(ds: DarkStats, hot: np.ndarray, sample_black_dn: np.ndarray, *, n_sim: int = 200_000) -> ReadNoiseShape:
    """Tukey-lambda shape λ and scale σ_TL of the read noise.

    Not an EMVA 1288 figure: ELD (Wei et al. 2020) §3.2; symbols λ (unit 1) and σ_TL (unit DN).
    λ = argmax of the probability-plot correlation on the residual samples (hot pixels removed), σ_TL the
    plot's slope, both debiased by simulating the residual construction (:func:`~.estimators.debias_tukey`);
    SEs from frame batches, inflated by the simulation's own sampling noise.

    Parameters
    ----------
    ds : DarkStats
    hot : (H, W) bool
        Hot pixels.
    sample_black_dn : (S,) float
        The black level at each sample pixel (``DarkAccumulator.sample_black_dn``): the quantization phase.
    n_sim : int
        Samples of the debiasing simulation.

    Returns
    -------
    ReadNoiseShape
        λ and σ_TL [DN] as :class:`~.estimators.Estimate`, per-channel λ, the probability-plot r² and the samples [DN].
    """
    n = ds.n_frames
    corr = 1.0 / (1.0 - 1.0 / n)
    good = ~hot.ravel()[ds.sample_index]
    samples = ds.sample_resid_dn[:, good]
    resid = samples.astype(np.float64) * math.sqrt(corr)
    nb = min(8, n)
    # sorted as the float32 samples they are, then scaled (an increasing map: the same sorted values)
    groups = _SortedResiduals(samples, ds.sample_index[good], ds.shape[1], ds.cfa, nb, scale=math.sqrt(corr))
    tk = fit_tukey_sorted(groups.pooled())
    lam_b, sc_b = [], []
    if nb >= 2:
        for b in range(nb):
            tb = fit_tukey_sorted(groups.batch(b))
            lam_b.append(tb.tukey_lambda)
            sc_b.append(tb.tukey_scale_dn)
    # remove the bias of the residual construction (stack-mean mixing, quantization) by indirect inference
    lam_c, scale_c, dlam = debias_tukey(tk.tukey_lambda, tk.tukey_scale_dn, n_frames=n, quantized=ds.integer_valued, n_sim=n_sim,
                                        offsets_dn=(ds.mean_map_dn.ravel()[ds.sample_index] + sample_black_dn)[good])
    sim_share = math.sqrt(1.0 + resid.size / n_sim)  # the simulation's own sampling noise, added in quadrature
    se_lam = batch_se(lam_b) / max(dlam, 0.2) * sim_share
    se_sc = batch_se(sc_b) * (scale_c / tk.tukey_scale_dn) * sim_share
    lam = Estimate.normal(lam_c, se_lam, f"PPCC maximum on {resid.size} residuals, debiased by simulation; SE from {nb} frame batches", nb, dof=nb - 1)
    scale = Estimate.positive(scale_c, se_sc, f"probability-plot slope (r² = {tk.r2:.5f}), debiased by simulation; SE from {nb} frame batches", nb, dof=nb - 1)
    per_channel = tukey_lambda_per_channel(resid, ds.sample_index[good], ds.shape[1], ds.cfa, tk.tukey_lambda, lam_c, dlam, sim_share,
                                           groups=groups)
    rsub = resid.ravel()
    if rsub.size > 20000:
        rsub = rsub[:: rsub.size // 20000]
    return ReadNoiseShape(lam, scale, tk.r2, per_channel, rsub.astype(np.float32))


class _SortedResiduals:
    """Read-noise residuals (N frames, S samples) sorted for the 1 + nb + C + nb·C Tukey fits of an ISO: the
    pooled samples, each frame batch, each packed channel and each (batch, channel) group, each sorted by
    :func:`~.sorting.sort_finite` in the samples' own width (float32 radix passes are cheaper than merging
    the groups) and then converted to float64 and scaled by ``scale`` (an increasing map, so the sorted
    values are those of the scaled samples).

    Batches are ``np.array_split`` of the frames into ``n_batches`` (one batch when fewer than 2)."""

    def __init__(self, resid: np.ndarray, index: np.ndarray, width: int, cfa: CFA, n_batches: int, *, scale: float | None = None):
        p = cfa.period
        r_idx, c_idx = np.divmod(index, width)
        chan = (r_idx % p) * p + (c_idx % p)
        n = resid.shape[0]
        self.resid, self.scale = resid, scale
        self.batches = [slice(int(b[0]), int(b[-1]) + 1) for b in (np.array_split(np.arange(n), n_batches) if n_batches >= 2 else [np.arange(n)])]
        self.cols = [np.flatnonzero(chan == c) for c in range(cfa.n_channels)]
        self.channel_sizes = [n * cc.size for cc in self.cols]  # samples per channel, non-finite ones included

    def _sorted(self, x: np.ndarray) -> np.ndarray:
        s = sort_finite(x).astype(np.float64)
        return s * self.scale if self.scale is not None else s

    def leaf(self, batch: int, channel: int) -> np.ndarray:
        return self._sorted(self.resid[self.batches[batch]][:, self.cols[channel]])

    def batch(self, batch: int) -> np.ndarray:
        return self._sorted(self.resid[self.batches[batch]])

    def channel(self, channel: int) -> np.ndarray:
        return self._sorted(self.resid[:, self.cols[channel]])

    def pooled(self) -> np.ndarray:
        return self._sorted(self.resid)


def tukey_lambda_per_channel(resid: np.ndarray, index: np.ndarray, width: int, cfa: CFA, lam_pooled_meas: float,
                             lam_pooled: float, dlam: float, sim_share: float, *, groups: _SortedResiduals | None = None) -> list[Estimate]:
    """Tukey-λ of each packed channel (diagnostic; the card keeps the pooled λ).

    PPCC maximum on the channel's residual samples, shifted by the pooled debiasing to first order:
    λ_c = λ_pooled + (λ̂_c − λ̂_pooled) / (dλ̂/dλ). SE from frame batches, as for the pooled λ.
    ``resid`` is (N frames, S samples), ``index`` the samples' flat pixel indices.

    Parameters
    ----------
    resid : (N, S) ndarray
        Read-noise residual samples [DN].
    index : (S,) ndarray of int
        Flat pixel index of each sample.
    width : int
        Frame width [px].
    cfa : CFA
        Mosaic pattern.
    lam_pooled_meas, lam_pooled : float
        Pooled λ as measured and debiased.
    dlam : float
        dλ̂/dλ of the debiasing.
    sim_share : float
        Share of the SE due to the debiasing simulation.
    groups : optional
        The same residuals already sorted by (frame batch, channel), as :func:`read_noise_shape` has them.

    Returns
    -------
    list of Estimate
        λ (unit 1), one per packed channel.
    """
    n = resid.shape[0]
    nb = min(8, n)
    if groups is None:
        groups = _SortedResiduals(resid, index, width, cfa, nb)
    slope = max(dlam, 0.2)
    out = []
    for c in range(cfa.n_channels):
        size = groups.channel_sizes[c]
        if size < 1000:
            out.append(Estimate.normal(float("nan"), float("nan"), f"too few samples ({size})", 0))
            continue
        lam = lam_pooled + (fit_tukey_sorted(groups.channel(c)).tukey_lambda - lam_pooled_meas) / slope
        lb = [fit_tukey_sorted(groups.leaf(b, c)).tukey_lambda for b in range(nb)] if nb >= 2 else []
        out.append(Estimate.normal(lam, batch_se(lb) / slope * sim_share,
                                   f"PPCC maximum on {size} residuals of the channel, pooled debiasing; SE from {nb} frame batches",
                                   nb, dof=nb - 1))
    return out


# ------------------------------------------------------------------------------------------------
# spatial nonuniformity


@_figure('Dark signal nonuniformity', 'DSNU1288', 'DN', 'EMVA 1288 §4.2, §8')
def dark_signal_nonuniformity(mean_packed: np.ndarray, hot_packed: np.ndarray, black_error: list[Estimate], dv: DarkVariances,
                              lines: LineNoise, cfa: CFA, *, denoise: bool = False) -> tuple[list[Estimate], np.ndarray]:
    """Dark signal nonuniformity DSNU1288 per packed channel [DN] and the dark-shading map.

    EMVA 1288: section §4.2 / §8 (spatial nonuniformity); symbol DSNU1288 = s_y.dark; unit DN. The spatial
    standard deviation of the mean dark (hot pixels excluded) with the temporal share σ²_y.dark/N removed.
    SE over 16 tiles, plus the scatter of the N-averaged row and column offsets left in the mean.

    Parameters
    ----------
    mean_packed : (C, h, w)
        The dark stack's mean minus the declared black level, packed [DN].
    hot_packed : (C, h, w) bool
    black_error : list of 4 Estimate
        :func:`black_level_error` (subtracted per site: the map is zero-mean per channel).
    dv, lines : DarkVariances, LineNoise
    cfa : CFA
    denoise : bool
        Wiener-shrink the map (best per-pixel estimate) instead of scaling it so that its variance is DSNU²
        (what simulations must reproduce). Hot pixels keep their full offset either way.

    Returns
    -------
    (dsnu, map) : list of Estimate per packed channel, (H, W) float32 dark-shading map [DN]
    """
    n = lines.n_frames
    r2, c2 = lines.row_var_dn2, lines.col_var_dn2
    site = cfa.site_index.ravel()
    nch = cfa.n_channels
    site_vals = np.array([e.value for e in black_error])
    ds_packed = mean_packed.astype(np.float64)
    ds_packed -= site_vals[site][:, None, None]  # each packed channel minus its site's black-level error
    dsnu = []
    scale = np.ones(nch)
    for c in range(nch):
        vals = ds_packed[c][~hot_packed[c]]
        noise = dv.good_pixels_dn2[c] / n
        tot = float(vals.var())
        d2 = tot - noise
        tiles = [t_.var() - noise for t_ in _tiles(np.where(hot_packed[c], np.nan, ds_packed[c]))]
        # the mean dark keeps the N-averaged row and column offsets; their realized variance over the channel's
        # rows (columns) scatters by √(2/rows)·σ²_row/N, which tiles sharing those rows do not see
        hc, wc = ds_packed[c].shape
        se_rc = math.sqrt(2.0 / hc * (max(r2, 0.0) / n) ** 2 + 2.0 / wc * (max(c2, 0.0) / n) ** 2)
        dsnu.append(sigma_from_variance(d2, math.hypot(batch_se(tiles), se_rc),
                                        "spatial std of the mean dark minus temporal σ²/N; SE over 16 tiles and from the row/column "
                                        "offsets left in the mean", 16))
        scale[c] = map_scale(d2, tot, denoise)
    # The mean of N darks has variance d² + σ²/N per pixel: scaled so simulations from the map carry DSNU² (d²),
    # not the stack's temporal noise as extra fixed pattern (Wiener-shrunk instead with denoise)
    for c in range(nch):  # hot pixels keep their full offset
        ds_packed[c][~hot_packed[c]] *= scale[c]
    return dsnu, cfa.unpack(ds_packed.astype(np.float32))


@_figure('Photo response nonuniformity', 'PRNU1288', '1', 'EMVA 1288 §4.2, §8')
def photo_response_nonuniformity(facc: FlatAccumulator, hot_packed: np.ndarray, dv: DarkVariances, n_darks: int, *,
                                 denoise: bool = False) -> tuple[list[Estimate], np.ndarray] | None:
    """Photo response nonuniformity PRNU1288 per packed channel (a fraction; ×100 for EMVA's %) and its map.

    EMVA 1288: section §4.2 / §8 (spatial nonuniformity, correction for uneven illumination); symbol
    PRNU1288 = s_y / (μ_y − μ_y.dark); unit % (here the fraction). The mean of the normalized flats between
    5 % and 70 % of the range, divided by its box low-pass (vignetting and illumination), spatial std per
    channel with every temporal share removed: the flats' own Σ σ²_f/μ²/L² and the dark mean's σ²_d/N,
    common to every frame, through the mean of 1/μ. Hot and clipped pixels are masked, frames kept.
    SE over 16 tiles.

    Consumes ``facc.prnu_sum`` (the running sum is normalized in place and released, to save a full-size
    buffer).

    Parameters
    ----------
    facc : FlatAccumulator
        After every flat pair was added.
    hot_packed : (C, h, w) bool
    dv : DarkVariances
    n_darks : int
        Frames in the dark mean subtracted from the flats.
    denoise : bool
        Wiener-shrink the map instead of matching its variance to PRNU².

    Returns
    -------
    (prnu, map) or None : list of Estimate per packed channel (fractions), (H, W) float32 map (relative
    deviation, 0 at masked pixels, clipped to ±0.5); None when no flat is in the PRNU range.
    """
    if not (facc.prnu_n >= 1 and facc.prnu_sum is not None):
        return None
    cfa = facc.cfa
    nch = cfa.n_channels
    facc.prnu_sum /= facc.prnu_n
    mflat = cfa.pack(facc.prnu_sum)
    facc.prnu_sum = None
    masked = hot_packed | cfa.pack(facc.prnu_clipped)  # hot and clipped pixels: masked, frames kept
    l_ = facc.prnu_n
    temporal = facc.prnu_temporal_rel_var / l_**2 + (dv.good_pixels_dn2 / n_darks) * (facc.prnu_inv_level / l_) ** 2
    hp_planes = np.empty(mflat.shape, np.float32)
    prnu = []
    box = max(3, min(31, (min(mflat.shape[1:]) // 4) | 1))
    cfac = 1.0 / (1.0 - 1.0 / box**2)  # white variance the box low-pass takes away
    for c in range(nch):
        plane = mflat[c]
        plane[masked[c]] = float(median(plane[~masked[c]]))  # masked pixels must not bend the low-pass
        hp = flatten_illumination(plane, box=box)
        vals = hp[~masked[c]]
        raw_var = float(vals.var())
        v = raw_var * cfac - temporal[c]
        tiles = [(t_.var() * cfac) - temporal[c] for t_ in _tiles(np.where(masked[c], np.nan, hp))]
        prnu.append(sigma_from_variance(v, batch_se(tiles), f"std of flat/low-pass({box}) over {l_} flats minus the flats' and "
                                                            f"the dark mean's temporal parts; SE over 16 tiles", 16))
        hp_planes[c] = hp * np.float32(map_scale(v, raw_var, denoise))
    hp_planes[masked] = 0.0
    del mflat
    np.clip(hp_planes, -0.5, 0.5, out=hp_planes)
    return prnu, cfa.unpack(hp_planes)


# ------------------------------------------------------------------------------------------------
# sensitivity: photon transfer, system gain, saturation, dynamic range


@_figure('Photon transfer curve per channel', 'K', 'DN/e⁻', 'EMVA 1288 §6')
def photon_transfer(levels: list[FlatLevel], span_dn: np.ndarray, black_error: list[Estimate], dv: DarkVariances,
                    cfa: CFA, lines: LineNoise | None = None) -> list[PTCFit]:
    """Photon-transfer fit of each packed channel: σ²_y − σ²_y.dark = K (μ_y − μ_y.dark) below 70 % of saturation.

    EMVA 1288: section §6 (photon transfer method); symbol K (the slope); unit DN/e⁻. The points
    (μ_y − μ_y.dark [DN], σ²_y − σ²_y.dark [DN²]) per exposure level from flat pairs. Where the variance peak is not reached, saturation is taken at the
    white level less the dark mean (``span_dn`` minus the black-level error).

    Parameters
    ----------
    levels : list of FlatLevel
        One per exposure level (``FlatAccumulator.levels``).
    span_dn : (C,) float
        White − declared black per packed channel [DN].
    black_error : list of 4 Estimate
        :func:`black_level_error`.
    dv : DarkVariances
    cfa : CFA
    lines : LineNoise, optional
        Row and column noise of the darks: a flat pair's spatial variance over a channel's M rows holds
        σ²_r (1 − 1/M) of it where the darks' per-pixel variance holds σ²_r, so σ²_r/M (σ²_c likewise) is
        taken off the subtracted dark variance (:func:`_flat_dark_variance`), and each point's variance gets
        the 2σ⁴_r/M + 2σ⁴_c/M_c its pair's realized row and column noise adds (the fit's weights).

    Returns
    -------
    list of PTCFit
        One per packed channel (``cfa.channel_names`` order): K [DN/e⁻], the points and saturation.
    """
    site = cfa.site_index.ravel()
    site_vals = np.array([e.value for e in black_error])
    mu = np.array([lv.mean_dn for lv in levels])  # (L, C)
    pvar = np.array([lv.pair_var_dn2 for lv in levels])
    v_chan, line_var = _flat_dark_variance(dv, lines, cfa)
    npx = levels[0].n_pixels
    out = []
    for c in range(cfa.n_channels):
        sat_proxy = float(span_dn[c] - site_vals[site[c]])
        out.append(fit_ptc(mu[:, c], pvar[:, c] - v_chan[c], n_pixels=npx, sigma2_dark_dn2=v_chan[c], saturation_mean_dn=sat_proxy,
                           line_var_dn4=line_var))
    return out


def _flat_dark_variance(dv: DarkVariances, lines: LineNoise | None, cfa: CFA) -> tuple[np.ndarray, float]:
    """The dark variance a flat pair's ½ var(A − B) holds per channel [DN²], and the variance its row and column
    noise adds to that point [DN⁴] (see :func:`photon_transfer`); without ``lines``: σ²_y.dark and 0."""
    if lines is None or not lines.frame_shape[0]:
        return dv.all_pixels_dn2, 0.0
    mr = max(lines.frame_shape[0] // cfa.period, 1)
    mc = max(lines.frame_shape[1] // cfa.period, 1)
    r2, c2 = max(lines.row_var_dn2, 0.0), max(lines.col_var_dn2, 0.0)
    return dv.all_pixels_dn2 - r2 / mr - c2 / mc, 2.0 * (r2 * r2 / mr + c2 * c2 / mc)


@_figure('System gain', 'K', 'DN/e⁻', 'EMVA 1288 §6, §2.1')
def system_gain(ptcs: list[PTCFit], *, dark: DarkStats | None = None, dv: DarkVariances | None = None,
                lines: LineNoise | None = None) -> Estimate:
    """Overall system gain K [DN/e⁻].

    EMVA 1288: section §6 (photon transfer method), §2.1 (linear signal model); symbol K; unit DN/e⁻. The
    inverse-variance mean of the channels' photon-transfer slopes; its SE scaled up by the channels' scatter
    where they disagree beyond their own SEs (χ²/dof > 1).

    With the dark stack (``dark``, ``dv``, and ``lines`` as given to :func:`photon_transfer`), the channels are
    combined with their covariance (:func:`~.uncertainty.channel_gain`: shared row/column noise, the one dark
    variance subtracted from every level), and each fit's ``gain_k_dn_per_e`` gets the dark variance's share
    of its SE (the PTCFit objects are updated in place). Without: as independent channels.

    Parameters
    ----------
    ptcs : list of PTCFit
        :func:`photon_transfer`, one per packed channel.

    Returns
    -------
    Estimate
        K [DN/e⁻].
    """
    if dark is not None and dv is not None and ptcs:
        v_flat, _ = _flat_dark_variance(dv, lines, dark.cfa)
        gain, per = channel_gain(ptcs, v_flat, dark.pair_var_dn2, dark.n_frames, int(ptcs[0].n_pixels))
        for p, k in zip(ptcs, per):
            p.gain_k_dn_per_e = k
        return gain
    kc = [p.gain_k_dn_per_e for p in ptcs]
    nch = len(kc)
    kv = np.array([k.value for k in kc])
    ks = np.array([k.se for k in kc])
    wts = 1.0 / np.maximum(ks, 1e-30) ** 2
    kval = float(np.sum(wts * kv) / wts.sum())
    kse = float(1.0 / math.sqrt(wts.sum()))
    chi2 = float(np.sum(wts * (kv - kval) ** 2) / max(nch - 1, 1))
    kse *= math.sqrt(max(chi2, 1.0))
    return Estimate.normal(kval, kse, f"inverse-variance mean of {nch} channel PTC fits (SE scaled by the channels' scatter)", nch)


@_figure('Saturation capacity', 'μ_e.sat', 'e⁻', 'EMVA 1288 §2.4')
def saturation_capacity(ptcs: list[PTCFit], gain: Estimate) -> Estimate:
    """Saturation capacity μ_e.sat [e⁻].

    EMVA 1288: section §2.4 (signal saturation); symbol μ_e.sat; unit e⁻. μ_y.sat / K, μ_y.sat the dark-subtracted
    mean at the peak of the photon-transfer variance (mean over channels), or the white level less the
    dark mean where the flats do not reach the peak. SE from K only.

    Parameters
    ----------
    ptcs : list of PTCFit
        :func:`photon_transfer`.
    gain : Estimate
        K [DN/e⁻].

    Returns
    -------
    Estimate
        μ_e.sat [e⁻].
    """
    kval, rel_k = gain.value, gain.se / gain.value
    sat_dn = float(np.mean([p.saturation_mean_dn for p in ptcs]))
    found = all(p.saturation_found for p in ptcs)
    sat_e = sat_dn / kval
    se_sat = sat_e * rel_k
    sat_how = "mean at the photon-transfer variance peak ÷ K" if found else "white level − dark mean ÷ K (variance peak not reached)"
    return Estimate.normal(sat_e, se_sat, f"EMVA 1288 μ_e.sat: {sat_how}; SE from K only", len(ptcs))


@_figure('Dynamic range', 'DR_dB', 'dB', 'EMVA 1288 §2.4')
def dynamic_range(sigma_y_dark2: Estimate, saturation: Estimate, gain: Estimate) -> Estimate:
    """Dynamic range DR_dB [dB].

    EMVA 1288: section §2.4 (saturation and absolute sensitivity threshold); symbol DR_dB; unit dB.
    DR_dB = 20 log₁₀(μ_e.sat / μ_e.min) with μ_e.min = ½ + √(¼ + σ²_y.dark / K²), the signal at SNR = 1 [e⁻].

    Parameters
    ----------
    sigma_y_dark2 : Estimate
        :func:`temporal_dark_variance_mean` [DN²].
    saturation : Estimate
        :func:`saturation_capacity` [e⁻].
    gain : Estimate
        K [DN/e⁻].

    Returns
    -------
    Estimate
        DR_dB [dB].
    """
    sy2, se_sy2 = sigma_y_dark2.value, sigma_y_dark2.se
    kval, rel_k = gain.value, gain.se / gain.value
    sat_e, se_sat = saturation.value, saturation.se
    e_min = 0.5 + math.sqrt(0.25 + sy2 / kval**2)
    # d μ_e.min / d(σ²_y.dark/K²) = 1 / (2 √(¼ + σ²_y.dark/K²))
    se_min = (sy2 / kval**2) * math.hypot(se_sy2 / sy2 if sy2 > 0 else 0.0, 2 * rel_k) / (2.0 * (e_min - 0.5))
    dr = 20.0 * math.log10(sat_e / e_min)
    se_dr = 20.0 / math.log(10.0) * math.hypot(se_sat / sat_e, se_min / e_min)  # K's share largely cancels: conservative
    return Estimate.normal(dr, se_dr, "EMVA 1288 DR_dB = 20 log₁₀(μ_e.sat / μ_e.min), μ_e.min = ½ + √(¼ + σ²_y.dark/K²)", saturation.n)


# ------------------------------------------------------------------------------------------------
# dark current


@_figure('Dark current', 'μ_I', 'e⁻/s', 'EMVA 1288 §3.1, §7.1')
def dark_current(levels: list[tuple[float, float, float]], gain: Estimate, *, what: str = "dark current",
                 signal: str = "mean dark signal") -> Estimate | None:
    """Dark current μ_I [e⁻/s] from the mean dark signal at several exposure times.

    EMVA 1288: section §3.1 / §7.1 (dark current from the mean); symbol μ_I (the ``emva1288`` package's
    μ_I.mean); unit e⁻/s. The weighted slope of μ_y.dark [DN] over exposure time, ÷ K; the SE combines the
    slope's and K's.

    Parameters
    ----------
    levels : list of (exposure_s, mean_dn, se_dn)
        The dark signal per exposure time (bulk pixels, or the hot pixels on their own).
    gain : Estimate
        K [DN/e⁻].
    what, signal : str
        For the fit's error message and the method text.

    Returns
    -------
    Estimate or None
        None with fewer than two exposure times.
    """
    if len(levels) < 2:
        return None
    kval, kse = gain.value, gain.se
    t_arr = np.array([d[0] for d in levels])
    m_arr = np.array([d[1] for d in levels])
    se_arr = np.array([d[2] for d in levels])
    wts = 1.0 / np.maximum(se_arr, 1e-9) ** 2 if np.all(np.isfinite(se_arr)) else None
    lf = fit_line(t_arr, m_arr, weights=wts, what=what)
    rate = lf.slope.value / kval
    se_rate = abs(rate) * math.sqrt((lf.slope.se / lf.slope.value) ** 2 + (kse / kval) ** 2) if lf.slope.value else lf.slope.se / kval
    return Estimate.normal(rate, se_rate, f"slope of the {signal} over {len(t_arr)} exposure times ÷ K", len(t_arr))
