"""The calibration procedure: capture → per-ISO estimates → joint model → data card (docs/calibration.md).

:func:`calibrate` streams over the frames once (darks of an ISO first, then its flats), so memory is
bounded by a few full-frame float64 buffers whatever the stack depth.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from noisesim.cfa import CFA
from noisesim.errors import CalibrationError, InputFileError, NoiseSimError

from .accumulate import DarkAccumulator, DarkStats, FlatAccumulator, FlatLevel
from .capture import Capture, CaptureProblem, FrameInfo, capture_camera, check_consistency, group_frames, scan_capture
from .estimators import (
    Estimate,
    LineFit,
    PTCFit,
    batch_se,
    box_lowpass,
    debias_tukey,
    fit_line,
    fit_ptc,
    flatten_illumination,
    fit_tukey,
    hot_pixel_mask,
    solve_row_col_pixel,
)
from .pixel_noise import read_sigma_scale_map

__all__ = [
    "calibrate",
    "CalibrationResult",
    "ISOResult",
    "JointFits",
    "MIN_DARKS_RECOMMENDED",
    "MIN_LEVELS_RECOMMENDED",
]

log = logging.getLogger("calibration")

MIN_DARKS_RECOMMENDED = 16
MIN_LEVELS_RECOMMENDED = 8


@dataclass
class ISOResult:
    """Everything estimated at one ISO. Per-channel lists are in packed channel order (``channel_names``);
    ``black_level_error_dn`` is per colour site (Bayer reading order), which is the same for Bayer CFAs."""

    iso: float
    channel_names: tuple[str, ...]
    n_darks: int
    n_flat_pairs: int
    dark_exposure_s: float
    gain_k_dn_per_e: Estimate
    gain_k_per_channel: list[Estimate]
    ptc: list[PTCFit]
    dark_temporal_sigma_dn: list[Estimate]
    black_level_error_dn: list[Estimate]
    read_sigma_dn: Estimate
    read_sigma_per_channel: list[Estimate]
    tukey_lambda: Estimate
    tukey_scale_dn: Estimate
    tukey_r2: float
    tukey_lambda_per_channel: list[Estimate]  # diagnostic: the card keeps the pooled λ
    row_sigma_dn: Estimate
    col_sigma_dn: Estimate
    pixel_sigma_dn: Estimate
    dsnu_dn: list[Estimate]
    prnu: list[Estimate] | None
    dark_current_e_per_s: Estimate | None
    hot_pixels: int
    files: list[str] = field(default_factory=list)
    # diagnostics for the report
    read_samples_dn: np.ndarray | None = field(default=None, repr=False)
    row_spectrum: np.ndarray | None = field(default=None, repr=False)
    dark_levels: list[tuple[float, float, float]] = field(default_factory=list)  # (t, mean DN, se)
    ds_map_dn: np.ndarray | None = field(default=None, repr=False)  # (H, W) zero-mean per channel
    prnu_map: np.ndarray | None = field(default=None, repr=False)
    prnu_frames: int = 0
    hot_mask: np.ndarray | None = field(default=None, repr=False)
    # each pixel's temporal read σ over its site median (calibration.pixel_noise), with that σ's relative SE
    read_sigma_scale: np.ndarray | None = field(default=None, repr=False)
    read_sigma_scale_rel_se: float = float("nan")
    noisy_read_pixels: int = 0
    heldout: list[np.ndarray] = field(default_factory=list, repr=False)
    heldout_exposure_s: float = 0.0
    maps_denoised: bool = False  # ds_map_dn / prnu_map Wiener-shrunk instead of variance-matched
    # black level the files declare at this ISO, per colour site [DN]; the dark mean is this + black_level_error_dn
    black_level_dn: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    # EMVA 1288 datasheet figures (see _emva_figures) and the hot pixels' own dark current
    sigma_y_dark_dn2: float = float("nan")  # σ²_y.dark, temporal dark variance [DN²]
    read_noise_e: Estimate | None = None  # σ_d [e⁻]
    saturation_capacity_e: Estimate | None = None  # μ_e.sat [e⁻]
    dynamic_range_db: Estimate | None = None  # DR_dB [dB]
    hot_pixel_dark_current_e_per_s: Estimate | None = None
    hot_levels: list[tuple[float, float, float]] = field(default_factory=list)  # (t, mean DN of hot pixels, se)

    def summary(self) -> dict:
        """The values of this ISO's figures as a plain dict (keys with units, e.g. ``gain_k_dn_per_e``)."""
        return {
            "iso": self.iso,
            "gain_k_dn_per_e": self.gain_k_dn_per_e.value,
            "read_sigma_dn": self.read_sigma_dn.value,
            "tukey_lambda": self.tukey_lambda.value,
            "tukey_scale_dn": self.tukey_scale_dn.value,
            "row_sigma_dn": self.row_sigma_dn.value,
            "col_sigma_dn": self.col_sigma_dn.value,
            "black_level_error_dn": [e.value for e in self.black_level_error_dn],
            "prnu": None if self.prnu is None else [e.value for e in self.prnu],
            "dark_current_e_per_s": None if self.dark_current_e_per_s is None else self.dark_current_e_per_s.value,
            **{k: None if getattr(self, k) is None else getattr(self, k).value
               for k in ("hot_pixel_dark_current_e_per_s", "read_noise_e", "saturation_capacity_e", "dynamic_range_db")},
        }


@dataclass
class JointFits:
    """Log-linear fits ln σ = a ln K + b across ISOs, per segment (two segments for a dual-gain sensor)."""

    segments: list[dict]  # each: {"isos": [...], "fits": {name: LineFit}}
    dual_gain_switch_iso: float | None


@dataclass
class CalibrationResult:
    """What :func:`calibrate` returns: the card, the per-ISO estimates, the joint fits, the warnings."""

    card: object  # noisesim.card.Card
    iso_results: list[ISOResult]
    joint: JointFits | None
    warnings: list[str]
    problems: list[CaptureProblem]
    provenance: dict
    fidelity: list[dict] = field(default_factory=list)

    def save(self, path, *, report: str | Path | None = None) -> Path:
        """Write the card (+ maps sidecar) and, optionally, the HTML report."""
        from noisesim.card import save_card

        out = save_card(self.card, path)
        if report is not None:
            from .report import write_report

            write_report(self, report)
        return out


def _warn(warnings: list[str], msg: str) -> None:
    log.warning(msg)
    warnings.append(msg)


def _identity(it):
    return it


# ------------------------------------------------------------------------------------------------


def calibrate(
    capture,
    camera: str | None = None,
    *,
    sample_pixels: int | None = None,
    holdout_darks: int = 1,
    fidelity: bool = True,
    denoise_maps: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
    rng=0,
    scheduler: str | None = None,
    workers: int = 1,
) -> CalibrationResult:
    """Estimate a noisesim data card from dark and flat frames (docs/calibration.md).

    Parameters
    ----------
    capture : str, Path, Capture or list of FrameInfo
        A capture folder (``darks/``, ``flats/``), a CSV/TOML manifest, or frames already described.
    camera : str, optional
        "Maker Model"; the first word is the make, the rest the model. Default: the make and model in the
        files' EXIF (normalized, e.g. "NIKON CORPORATION" / "NIKON D850" → "Nikon D850"), else
        "Unknown Camera" with a warning.
    sample_pixels : int, optional
        Pixels per dark frame kept for the read-noise shape fit (default: ~400 000 samples in all).
    holdout_darks : int
        Dark frames per ISO kept out of the estimation for the fidelity check (when ≥ 8 darks).
    fidelity : bool
        Compare held-out darks with frames synthesized from the new card (:mod:`.fidelity`). Without it no
        dark is held out: every dark is used for the estimates.
    denoise_maps : bool
        Wiener-shrink the dark-shading and PRNU maps (the best estimate of each pixel, but simulations from
        them carry too little fixed pattern). Default: maps scaled so that simulations reproduce the card's
        DSNU1288 and PRNU1288.
    progress : callable, optional
        Wraps iterables of frames (e.g. ``tqdm``).
    rng : seed
        Choice of sample pixels and of the synthetic frames' seeds; results are deterministic.
    scheduler : {"local", address, scheduler-file path} or None
        Estimate each ISO as a task on a Dask cluster (:mod:`noisesim.distributed`, extra
        ``noisesim[dask]``): the worker reads that ISO's frames itself (the capture must be at the same
        path on every worker) and returns the ISO's estimates; the joint fits and the card are made
        here. The card is identical to the run without a scheduler (for an integer ``rng``).
        ``progress`` then advances per ISO. None (default): everything in this process.
    workers : int
        Processes of the ``LocalCluster`` when ``scheduler="local"``.

    Returns
    -------
    CalibrationResult
        ``card`` (a :class:`noisesim.card.Card` with maps in memory), per-ISO results with a 95 %
        confidence interval for every figure, the joint fits, warnings (also logged) and capture problems.

    Raises
    ------
    CalibrationError
        When no ISO has both usable darks and flats; the message lists what was wrong.
    """
    progress = progress or _identity
    if isinstance(capture, Capture):
        cap = capture
    elif isinstance(capture, (list, tuple)):
        cap = check_consistency(Capture(list(capture), [], "<frames>"))
    else:
        cap = scan_capture(capture, progress=progress)
    warnings: list[str] = []
    for p in cap.problems:
        _warn(warnings, str(p))
    if not cap.frames:
        raise CalibrationError(f"{cap.source}: no usable frames" + "".join(f"\n  {p}" for p in cap.problems))
    cfa = CFA(cap.frames[0].cfa)
    shape = cap.frames[0].shape
    groups = group_frames(cap.frames)
    isos = sorted({k[1] for k in groups})
    results: list[ISOResult] = []
    failures: list[str] = []
    per_iso = [(iso, {k[2]: v for k, v in groups.items() if k[0] == "dark" and k[1] == iso},
                {k[2]: v for k, v in groups.items() if k[0] == "flat" and k[1] == iso}) for iso in isos]
    shared = (cfa, shape, sample_pixels, holdout_darks if fidelity else 0, rng, denoise_maps)
    if scheduler is None:
        outcomes = (_iso_task(item, shared, progress=progress) for item in per_iso)
    else:  # one task per ISO; the frames are read by the worker that accumulates them
        from noisesim.distributed import map_on_cluster

        outcomes = map_on_cluster(scheduler, _iso_task, per_iso, shared=shared, workers=workers, progress=progress is not _identity,
                                  desc="ISOs", unit="ISO", name="noisesim-iso")
    for res, iso_warnings, failure in outcomes:
        for msg in iso_warnings:
            if scheduler is not None:
                log.warning(msg)  # logged on the worker; again here, where the user sees it
            warnings.append(msg)
        if res is not None:
            results.append(res)
        else:
            failures.append(failure)
    if not results:
        raise CalibrationError(f"{cap.source}: no ISO could be calibrated" + "".join(f"\n  {m}" for m in failures))
    if camera is None:
        camera = capture_camera(cap.frames)
        if camera is None:
            camera = "Unknown Camera"
            _warn(warnings, "no camera make/model in the files' EXIF; the card is named 'Unknown Camera' (give camera=, "
                            "CLI --camera \"Maker Model\")")
    _check_gain_order(results, warnings)
    joint = _joint_fits(results, warnings)
    provenance = _provenance(cap, results, camera)
    card = _build_card(results, joint, cap, camera, provenance)
    out = CalibrationResult(card, results, joint, warnings, list(cap.problems), provenance)
    if fidelity:
        from .fidelity import fidelity_heldout

        out.fidelity = fidelity_heldout(out, rng=rng)
    return out


# ------------------------------------------------------------------------------------------------


def _iso_task(item, shared, *, progress=_identity) -> tuple[ISOResult | None, list[str], str | None]:
    """Estimate one ISO: ``item`` = (iso, darks by exposure, flats by exposure), ``shared`` = (cfa, shape,
    sample_pixels, holdout_darks, rng, denoise_maps). Returns (result or None, this ISO's warnings, the skip message or
    None). Runs in this process or as a Dask task (then frames are read where they are accumulated)."""
    iso, darks, flats = item
    cfa, shape, sample_pixels, holdout_darks, rng, denoise_maps = shared
    warnings: list[str] = []
    try:
        return (_calibrate_iso(iso, darks, flats, cfa, shape, warnings, sample_pixels, holdout_darks, progress, rng, denoise_maps),
                warnings, None)
    except CalibrationError as exc:
        msg = f"ISO {iso:g}: skipped: {exc}"
        _warn(warnings, msg)
        return None, warnings, msg


def _levels_of(frames: list[FrameInfo]) -> tuple[tuple[float, ...], float]:
    blacks = [f.black_level_dn for f in frames]
    black = max(set(blacks), key=blacks.count)
    whites = [f.white_level_dn for f in frames]
    return black, max(set(whites), key=whites.count)


def _calibrate_iso(iso, darks, flats, cfa: CFA, shape, warnings, sample_pixels, holdout_darks, progress, rng,
                   denoise_maps=False) -> ISOResult:
    if not darks:
        raise CalibrationError("no dark frames at this ISO")
    if not flats:
        raise CalibrationError("no flat frames at this ISO (K cannot be measured)")
    t_bias = min(darks)
    bias_frames = darks[t_bias]
    iso_frames = bias_frames + [f for v in flats.values() for f in v]
    black, white = _levels_of(iso_frames)
    declared = sorted({tuple(f.black_level_dn) for f in iso_frames})
    if len(declared) > 1:
        _warn(warnings, f"ISO {iso:g}: the frames declare {len(declared)} different black levels "
                        f"({'; '.join(str(list(b)) for b in declared[:4])} DN); the most common, {list(black)}, is used for all")
    n_total = len(bias_frames)
    if n_total < 2:
        raise CalibrationError(f"only {n_total} dark frame at {t_bias:g} s ({bias_frames[0].path}); need at least 2 (≥ {MIN_DARKS_RECOMMENDED} recommended)")
    n_hold = holdout_darks if n_total >= 8 else 0
    used, held = bias_frames[: n_total - n_hold], bias_frames[n_total - n_hold:]
    if n_total < MIN_DARKS_RECOMMENDED:  # judged on what was shot: holding one out for fidelity is our choice
        _warn(warnings, f"ISO {iso:g}: only {n_total} dark frames at {t_bias:g} s ({len(used)} used, {n_hold} held out "
                        f"for fidelity); ≥ {MIN_DARKS_RECOMMENDED} recommended (read-noise figures will be loose)")
    n = len(used)
    h, w = shape
    if sample_pixels is None:
        sample_pixels = int(min(h * w, max(2048, 400_000 // n)))
    acc = DarkAccumulator(shape, cfa, black, sample_pixels=sample_pixels, rng=rng)
    for f in progress(used):
        acc.add(_load(f), f)
    ds = acc.finish(t_bias)
    heldout = []
    for f in held:
        heldout.append(np.asarray(_load(f)))
    # --- per-pixel dark statistics (hot pixels first: their dark current is measured apart) ------------
    mean_packed = cfa.pack(ds.mean_map_dn)
    hot_packed = hot_pixel_mask(mean_packed)
    hot = cfa.unpack(hot_packed)
    # --- dark current from darks at other exposure times: the bulk without hot pixels, and the hot pixels
    # on their own (a hot pixel's dark current is many times the bulk's, EMVA 1288 §8.3 defect pixels)
    n_hot = int(hot.sum())
    fm_all = ds.frame_channel_means_dn.mean(axis=1)
    se0 = float(np.std(fm_all, ddof=1) / math.sqrt(n))
    if n_hot:
        dark_levels = [(t_bias, float(ds.mean_map_dn[~hot].mean()), se0)]
        hot_levels = [(t_bias, float(ds.mean_map_dn[hot].mean()),
                       math.sqrt(float(ds.temporal_var_map_dn2[hot].mean()) / (n * n_hot)))]
        black_px = cfa.per_pixel(black, shape)
    else:
        dark_levels, hot_levels = [(t_bias, float(fm_all.mean()), se0)], []
    for t, frames in sorted(darks.items()):
        if t == t_bias:
            continue
        la = DarkAccumulator(shape, cfa, black, keep_full_stats=False)
        bulk_m, hot_m = [], []
        for f in progress(frames):
            raw = _load(f)
            la.add(raw, f)
            if n_hot:
                x = np.subtract(raw, black_px, dtype=np.float64)
                hot_sum = float(x[hot].sum())
                hot_m.append(hot_sum / n_hot)
                bulk_m.append((float(x.sum()) - hot_sum) / (x.size - n_hot))
        st = la.finish(t)
        m = np.array(bulk_m) if n_hot else st.frame_channel_means_dn.mean(axis=1)
        dark_levels.append((t, float(m.mean()), _se_of_mean(m)))
        if n_hot:
            hot_levels.append((t, float(np.mean(hot_m)), _se_of_mean(np.array(hot_m))))
    var_packed = cfa.pack(ds.temporal_var_map_dn2)
    nch = cfa.n_channels
    q = 1.0 / 12.0 if ds.integer_valued else 0.0
    # temporal dark variance per channel: pooled per-pixel variance (all pixels: what flat pairs contain)
    v_chan = np.array([float(var_packed[c].mean()) for c in range(nch)])
    v_chan_good = np.array([float(var_packed[c][~hot_packed[c]].mean()) for c in range(nch)])
    pv = ds.pair_var_dn2  # (P, C)
    dark_sigma = []
    for c in range(nch):
        se_v = batch_se(pv[:, c]) if pv.shape[0] >= 2 else v_chan[c] * math.sqrt(2.0 / max(1, (n - 1) * var_packed[c].size))
        s = math.sqrt(max(v_chan[c], 0.0))
        dark_sigma.append(Estimate.positive(s, se_v / (2 * max(s, 1e-12)), f"pooled per-pixel variance of {n} darks; SE over {pv.shape[0]} frame pairs", pv.shape[0]))
    del var_packed
    # black-level error per site (mean dark shading of the channel, hot pixels excluded)
    site = cfa.site_index.ravel()
    fm = ds.frame_channel_means_dn
    ble = []
    for s_ in range(4):
        chans = np.flatnonzero(site == s_)
        val = float(np.mean([mean_packed[c][~hot_packed[c]].mean() for c in chans]))
        se = float(np.std(fm[:, chans].mean(axis=1), ddof=1) / math.sqrt(n))
        ble.append(Estimate.normal(val, se, f"channel mean of {n} darks; SE from frame-to-frame spread", n, dof=n - 1))
    # --- row / column / pixel decomposition (docs/calibration.md step 4) --------------------------------------------
    corr = 1.0 / (1.0 - 1.0 / n)  # residuals against the stack mean lose a 1/N of the variance
    vr_f = ds.row_resid.var(axis=1, ddof=1) * corr
    vc_f = ds.col_resid.var(axis=1, ddof=1) * corr
    v_all = float(np.mean(v_chan_good))
    r2, c2, p2 = solve_row_col_pixel(float(vr_f.mean()), float(vc_f.mean()), v_all, n_cols=w, n_rows=h)
    se_r2, se_c2 = batch_se(vr_f), batch_se(vc_f)
    pv_all = pv.mean(axis=1) if pv.shape[0] else np.array([v_all])
    se_v_all = batch_se(pv_all) if pv_all.size >= 2 else v_all * math.sqrt(2.0 / (n * h * w))
    se_p2 = math.sqrt(se_v_all**2 + se_r2**2 + se_c2**2)

    def sigma_est(var, se_var, method, nn, dof=None):
        s = math.sqrt(max(var, 0.0))
        se = se_var / (2 * s) if s > 0 else math.sqrt(max(se_var, 0.0))
        return Estimate.positive(s, se, method, nn, dof=dof)

    # SEs from the spread over n frames: Student t with n − 1 degrees of freedom
    row_sigma = sigma_est(r2, se_r2, f"var of row means − σ²_pix/N_cols; SE over {n} frames, t({n - 1})", n, dof=n - 1)
    pixel_read = read_sigma_scale_map(ds.temporal_var_map_dn2, ds.n_frames, cfa, line_var_dn2=max(r2, 0.0) + max(c2, 0.0),
                                      quantized=ds.integer_valued) if ds.n_frames >= 2 and p2 > 0 else None
    col_sigma = sigma_est(c2, se_c2, f"var of column means − σ²_pix/N_rows; SE over {n} frames, t({n - 1})", n, dof=n - 1)
    pixel_sigma = sigma_est(p2, se_p2, "pooled temporal variance minus row and column parts", n)
    g2 = p2 - q
    read_sigma = sigma_est(g2, se_p2, "√(σ²_pix − 1/12 DN² quantization); SE over frame pairs" if q else "√σ²_pix; SE over frame pairs", n)
    read_pc = [sigma_est(v_chan_good[c] - r2 - c2 - q, se_p2 * math.sqrt(nch), "per channel", n) for c in range(nch)]
    # --- Tukey-lambda shape on residual samples (hot pixels removed) ----------------------------------
    good = ~hot.ravel()[ds.sample_index]
    resid = ds.sample_resid_dn[:, good].astype(np.float64) * math.sqrt(corr)
    tk = fit_tukey(resid.ravel())
    nb = min(8, n)
    lam_b, sc_b = [], []
    if nb >= 2:
        for idx in np.array_split(np.arange(n), nb):
            tb = fit_tukey(resid[idx].ravel())
            lam_b.append(tb.tukey_lambda)
            sc_b.append(tb.tukey_scale_dn)
    # remove the bias of the residual construction (stack-mean mixing, quantization) by indirect inference
    n_sim = 200_000
    lam_c, scale_c, dlam = debias_tukey(tk.tukey_lambda, tk.tukey_scale_dn, n_frames=n, quantized=ds.integer_valued, n_sim=n_sim,
                                        offsets_dn=(ds.mean_map_dn.ravel()[ds.sample_index] + acc.sample_black_dn)[good])
    sim_share = math.sqrt(1.0 + resid.size / n_sim)  # the simulation's own sampling noise, added in quadrature
    se_lam = batch_se(lam_b) / max(dlam, 0.2) * sim_share
    se_sc = batch_se(sc_b) * (scale_c / tk.tukey_scale_dn) * sim_share
    tukey_lambda = Estimate.normal(lam_c, se_lam, f"PPCC maximum on {resid.size} residuals, debiased by simulation; SE from {nb} frame batches", nb, dof=nb - 1)
    tukey_scale = Estimate.positive(scale_c, se_sc, f"probability-plot slope (r² = {tk.r2:.5f}), debiased by simulation; SE from {nb} frame batches", nb, dof=nb - 1)
    tukey_lambda_pc = _tukey_lambda_per_channel(resid, ds.sample_index[good], w, cfa, tk.tukey_lambda, lam_c, dlam, sim_share)
    # --- dark shading map, DSNU, hot pixels ----------------------------------------------------------
    site_vals = np.array([e.value for e in ble])
    ds_packed = mean_packed.astype(np.float64)
    ds_packed -= site_vals[site][:, None, None]  # each packed channel minus its site's black-level error
    del mean_packed
    dsnu = []
    scale = np.ones(nch)
    for c in range(nch):
        vals = ds_packed[c][~hot_packed[c]]
        noise = v_chan_good[c] / n
        tot = float(vals.var())
        d2 = tot - noise
        tiles = [t_.var() - noise for t_ in _tiles(np.where(hot_packed[c], np.nan, ds_packed[c]))]
        # the mean dark keeps the N-averaged row and column offsets; their realized variance over the channel's
        # rows (columns) scatters by √(2/rows)·σ²_row/N, which tiles sharing those rows do not see
        hc, wc = ds_packed[c].shape
        se_rc = math.sqrt(2.0 / hc * (max(r2, 0.0) / n) ** 2 + 2.0 / wc * (max(c2, 0.0) / n) ** 2)
        dsnu.append(sigma_est(d2, math.hypot(batch_se(tiles), se_rc),
                              "spatial std of the mean dark minus temporal σ²/N; SE over 16 tiles and from the row/column "
                              "offsets left in the mean", 16))
        scale[c] = _map_scale(d2, tot, denoise_maps)
    # The mean of N darks has variance d² + σ²/N per pixel: scaled so simulations from the map carry DSNU² (d²),
    # not the stack's temporal noise as extra fixed pattern (Wiener-shrunk instead with denoise_maps)
    for c in range(nch):  # hot pixels keep their full offset
        ds_packed[c][~hot_packed[c]] *= scale[c]
    ds_map_out = cfa.unpack(ds_packed.astype(np.float32))
    del ds_packed
    # --- flats: PTC per channel and PRNU -------------------------------------------------------------
    facc = FlatAccumulator(ds, black, white)
    n_pairs = 0
    files = list(ds.paths)
    for t, frames in progress(sorted(flats.items())):
        if len(frames) < 2:
            _warn(warnings, f"{frames[0].path}: the only flat at ISO {iso:g}, {t:g} s; flats are needed in pairs (EMVA 1288), level skipped")
            continue
        if len(frames) % 2:
            _warn(warnings, f"{frames[-1].path}: odd flat out at ISO {iso:g}, {t:g} s; not used")
        for a, b in zip(frames[0::2], frames[1::2]):
            facc.add_pair(_load(a), _load(b), a, b)
            files += [a.path, b.path]
            n_pairs += 1
    for a, b, rel, z in facc.mismatched:
        _warn(warnings, f"{a} and {b}: flat 'pair' means differ by {rel:.1%} ({z:.0f} standard errors); not a pair "
                        "(light or exposure changed?), skipped")
    levels = facc.levels
    if not levels:
        raise CalibrationError("no usable flat pairs")
    mu = np.array([lv.mean_dn for lv in levels])  # (L, C)
    pvar = np.array([lv.pair_var_dn2 for lv in levels])
    clipped = np.array([lv.clipped_fraction for lv in levels])
    if np.all(clipped > 0.5):
        names = ", ".join(p for lv in levels for p in lv.paths)
        raise CalibrationError(f"all flat frames are saturated (more than half the pixels at the white level {white:g} DN): {names}")
    npx = levels[0].n_pixels
    ptcs, kc = [], []
    for c in range(nch):
        sat_proxy = float(facc.span[c] - site_vals[site[c]])
        fit = fit_ptc(mu[:, c], pvar[:, c] - v_chan[c], n_pixels=npx, sigma2_dark_dn2=v_chan[c], saturation_mean_dn=sat_proxy)
        ptcs.append(fit)
        kc.append(fit.gain_k_dn_per_e)
    n_used = min(int(p.used.sum()) for p in ptcs)
    if n_used < MIN_LEVELS_RECOMMENDED:
        _warn(warnings, f"ISO {iso:g}: only {n_used} flat levels below 70 % of saturation; ≥ {MIN_LEVELS_RECOMMENDED} recommended between ~1 % and ~90 %")
    if not all(p.saturation_found for p in ptcs):
        _warn(warnings, f"ISO {iso:g}: the variance peak (saturation) is not reached by the flats; 70 % taken of the white level instead")
    below = [lv.exposure_s for lv, cl, m in zip(levels, clipped, mu) if np.any(cl > 1e-4) and np.all(m < 0.7 * facc.span)]
    if below:
        _warn(warnings, f"ISO {iso:g}: flats at {', '.join(f'{t:g}' for t in below)} s have clipped pixels below 70 % of the range (hot spots or uneven light?)")
    kv = np.array([k.value for k in kc])
    ks = np.array([k.se for k in kc])
    wts = 1.0 / np.maximum(ks, 1e-30) ** 2
    kval = float(np.sum(wts * kv) / wts.sum())
    kse = float(1.0 / math.sqrt(wts.sum()))
    chi2 = float(np.sum(wts * (kv - kval) ** 2) / max(nch - 1, 1))
    kse *= math.sqrt(max(chi2, 1.0))
    gain = Estimate.normal(kval, kse, f"inverse-variance mean of {nch} channel PTC fits (SE scaled by the channels' scatter)", nch)
    # --- PRNU ------------------------------------------------------------------------------------------
    prnu = None
    prnu_map = None
    if facc.prnu_n >= 1 and facc.prnu_sum is not None:
        facc.prnu_sum /= facc.prnu_n
        mflat = cfa.pack(facc.prnu_sum)
        facc.prnu_sum = None
        masked = hot_packed | cfa.pack(facc.prnu_clipped)  # hot and clipped pixels: masked, frames kept
        # temporal variance left in the mean of L normalized flats: the flats' own Σ σ²_f/μ²/L², and the dark
        # mean's σ²_d/N, common to every frame, through the mean of 1/μ (EMVA 1288 PRNU1288, both subtracted)
        l_ = facc.prnu_n
        temporal = facc.prnu_temporal_rel_var / l_**2 + (v_chan_good / n) * (facc.prnu_inv_level / l_) ** 2
        hp_planes = np.empty(mflat.shape, np.float32)
        prnu = []
        box = max(3, min(31, (min(mflat.shape[1:]) // 4) | 1))
        cfac = 1.0 / (1.0 - 1.0 / box**2)  # white variance the box low-pass takes away
        for c in range(nch):
            plane = mflat[c]
            plane[masked[c]] = float(np.median(plane[~masked[c]]))  # masked pixels must not bend the low-pass
            hp = flatten_illumination(plane, box=box)
            vals = hp[~masked[c]]
            raw_var = float(vals.var())
            v = raw_var * cfac - temporal[c]
            tiles = [(t_.var() * cfac) - temporal[c] for t_ in _tiles(np.where(masked[c], np.nan, hp))]
            prnu.append(sigma_est(v, batch_se(tiles), f"std of flat/low-pass({box}) over {l_} flats minus the flats' and "
                                                     f"the dark mean's temporal parts; SE over 16 tiles", 16))
            hp_planes[c] = hp * np.float32(_map_scale(v, raw_var, denoise_maps))
        hp_planes[masked] = 0.0
        del mflat
        np.clip(hp_planes, -0.5, 0.5, out=hp_planes)
        prnu_map = cfa.unpack(hp_planes)
        del hp_planes
    else:
        _warn(warnings, f"ISO {iso:g}: no unclipped flats between 5 % and 70 % of the range; PRNU not measured")
    # --- dark current ---------------------------------------------------------------------------------
    dc = _dark_rate(dark_levels, kval, kse, f"ISO {iso:g} dark current",
                    "mean dark signal" + (f" without the {n_hot} hot pixels" if n_hot else ""))
    hot_dc = _dark_rate(hot_levels, kval, kse, f"ISO {iso:g} hot-pixel dark current", f"mean signal of the {n_hot} hot pixels")
    # --- EMVA 1288 datasheet figures ---------------------------------------------------------------------
    emva = _emva_figures(v_chan, dark_sigma, q, ptcs, kval, kse)
    # --- report diagnostics -----------------------------------------------------------------------------
    rs = np.fft.rfft(ds.row_resid, axis=1)
    spectrum = (np.abs(rs) ** 2).mean(axis=0) / ds.row_resid.shape[1]
    rsub = resid.ravel()
    if rsub.size > 20000:
        rsub = rsub[:: rsub.size // 20000]
    return ISOResult(
        iso=float(iso), channel_names=cfa.channel_names, n_darks=n, n_flat_pairs=n_pairs, dark_exposure_s=t_bias,
        gain_k_dn_per_e=gain, gain_k_per_channel=kc, ptc=ptcs, dark_temporal_sigma_dn=dark_sigma,
        black_level_error_dn=ble, read_sigma_dn=read_sigma, read_sigma_per_channel=read_pc,
        tukey_lambda=tukey_lambda, tukey_scale_dn=tukey_scale, tukey_r2=tk.r2, tukey_lambda_per_channel=tukey_lambda_pc,
        row_sigma_dn=row_sigma,
        col_sigma_dn=col_sigma, pixel_sigma_dn=pixel_sigma, dsnu_dn=dsnu, prnu=prnu, dark_current_e_per_s=dc,
        hot_pixels=int(hot.sum()), files=files, read_samples_dn=rsub.astype(np.float32), row_spectrum=spectrum,
        dark_levels=dark_levels, ds_map_dn=ds_map_out, prnu_map=prnu_map, prnu_frames=facc.prnu_n, hot_mask=hot,
        heldout=heldout, heldout_exposure_s=t_bias, maps_denoised=denoise_maps,
        read_sigma_scale=None if pixel_read is None else pixel_read.scale,
        read_sigma_scale_rel_se=float("nan") if pixel_read is None else pixel_read.relative_se,
        noisy_read_pixels=0 if pixel_read is None else int(pixel_read.noisy_pixel_mask.sum()),
        black_level_dn=tuple(float(b) for b in black), hot_pixel_dark_current_e_per_s=hot_dc, hot_levels=hot_levels,
        **emva,
    )


def _se_of_mean(m: np.ndarray) -> float:
    return float(np.std(m, ddof=1) / math.sqrt(m.size)) if m.size > 1 else float("nan")


def _dark_rate(levels, kval: float, kse: float, what: str, signal: str) -> Estimate | None:
    """Dark current [e⁻/s]: slope of the mean dark signal [DN] over exposure time ÷ K (EMVA 1288 §8.3)."""
    if len(levels) < 2:
        return None
    t_arr = np.array([d[0] for d in levels])
    m_arr = np.array([d[1] for d in levels])
    se_arr = np.array([d[2] for d in levels])
    wts = 1.0 / np.maximum(se_arr, 1e-9) ** 2 if np.all(np.isfinite(se_arr)) else None
    lf = fit_line(t_arr, m_arr, weights=wts, what=what)
    rate = lf.slope.value / kval
    se_rate = abs(rate) * math.sqrt((lf.slope.se / lf.slope.value) ** 2 + (kse / kval) ** 2) if lf.slope.value else lf.slope.se / kval
    return Estimate.normal(rate, se_rate, f"slope of the {signal} over {len(t_arr)} exposure times ÷ K", len(t_arr))


def _emva_figures(v_chan: np.ndarray, dark_sigma: list[Estimate], q: float, ptcs: list[PTCFit], kval: float, kse: float) -> dict:
    """The EMVA 1288 datasheet figures of one ISO (release 4.0, linear camera model), as Estimates.

    * σ²_y.dark [DN²]: temporal dark variance (pooled per-pixel variance of the darks, all pixels, mean over
      channels); σ_d = √(σ²_y.dark − σ²_q) / K [e⁻], σ²_q = 1/12 DN² for integer data.
    * μ_e.sat = μ_y.sat / K [e⁻]: μ_y.sat the dark-subtracted mean at the peak of the photon-transfer
      variance (mean over channels; the white level where the flats do not reach the peak).
    * μ_e.min = ½ + √(¼ + σ²_y.dark / K²) [e⁻], the signal at SNR = 1 (absolute sensitivity threshold);
      DR_dB = 20 log₁₀(μ_e.sat / μ_e.min).
    """
    sy2 = float(np.mean(v_chan))
    se_sy2 = float(np.mean([2.0 * e.value * e.se for e in dark_sigma]))  # channels share row noise: no √C gain
    rel_k = kse / kval
    d2 = max(sy2 - q, 0.0)
    sd = math.sqrt(d2) / kval
    se_sd = sd * math.hypot(se_sy2 / (2.0 * d2) if d2 > 0 else 0.0, rel_k)
    sat_dn = float(np.mean([p.saturation_mean_dn for p in ptcs]))
    found = all(p.saturation_found for p in ptcs)
    sat_e = sat_dn / kval
    se_sat = sat_e * rel_k
    e_min = 0.5 + math.sqrt(0.25 + sy2 / kval**2)
    # d μ_e.min / d(σ²_y.dark/K²) = 1 / (2 √(¼ + σ²_y.dark/K²))
    se_min = (sy2 / kval**2) * math.hypot(se_sy2 / sy2 if sy2 > 0 else 0.0, 2 * rel_k) / (2.0 * (e_min - 0.5))
    dr = 20.0 * math.log10(sat_e / e_min)
    se_dr = 20.0 / math.log(10.0) * math.hypot(se_sat / sat_e, se_min / e_min)  # K's share largely cancels: conservative
    sat_how = "mean at the photon-transfer variance peak ÷ K" if found else "white level − dark mean ÷ K (variance peak not reached)"
    return dict(
        sigma_y_dark_dn2=sy2,
        read_noise_e=Estimate.normal(sd, se_sd, "EMVA 1288 σ_d = √(σ²_y.dark − σ²_q) / K", len(dark_sigma)),
        saturation_capacity_e=Estimate.normal(sat_e, se_sat, f"EMVA 1288 μ_e.sat: {sat_how}; SE from K only", len(ptcs)),
        dynamic_range_db=Estimate.normal(dr, se_dr, "EMVA 1288 DR_dB = 20 log₁₀(μ_e.sat / μ_e.min), μ_e.min = ½ + √(¼ + σ²_y.dark/K²)", len(ptcs)),
    )


def _map_scale(signal_var: float, total_var: float, denoise: bool) -> float:
    """Factor for a noisy per-pixel map whose spatial variance is ``total_var`` of which ``signal_var`` is the
    sensor's: √(signal/total) makes the map's variance the sensor's (simulations reproduce DSNU1288 and
    PRNU1288); with ``denoise`` the Wiener factor signal/total (best per-pixel estimate, too little variance)."""
    if not total_var > 0 or not signal_var > 0:
        return 0.0
    f = min(1.0, signal_var / total_var)
    return f if denoise else math.sqrt(f)


def _tukey_lambda_per_channel(resid: np.ndarray, index: np.ndarray, width: int, cfa: CFA, lam_pooled_meas: float,
                              lam_pooled: float, dlam: float, sim_share: float) -> list[Estimate]:
    """Tukey-λ of each packed channel (diagnostic; the card keeps the pooled λ).

    PPCC maximum on the channel's residual samples, shifted by the pooled debiasing to first order:
    λ_c = λ_pooled + (λ̂_c − λ̂_pooled) / (dλ̂/dλ). SE from frame batches, as for the pooled λ.
    ``resid`` is (N frames, S samples), ``index`` the samples' flat pixel indices.
    """
    p = cfa.period
    r_idx, c_idx = np.divmod(index, width)
    chan = (r_idx % p) * p + (c_idx % p)
    n = resid.shape[0]
    nb = min(8, n)
    slope = max(dlam, 0.2)
    out = []
    for c in range(cfa.n_channels):
        sel = resid[:, chan == c]
        if sel.size < 1000:
            out.append(Estimate.normal(float("nan"), float("nan"), f"too few samples ({sel.size})", 0))
            continue
        lam = lam_pooled + (fit_tukey(sel.ravel()).tukey_lambda - lam_pooled_meas) / slope
        lb = [fit_tukey(sel[idx].ravel()).tukey_lambda for idx in np.array_split(np.arange(n), nb)] if nb >= 2 else []
        out.append(Estimate.normal(lam, batch_se(lb) / slope * sim_share,
                                   f"PPCC maximum on {sel.size} residuals of the channel, pooled debiasing; SE from {nb} frame batches",
                                   nb, dof=nb - 1))
    return out


def _tiles(plane: np.ndarray, n: int = 4):
    h, w = plane.shape
    for ys in np.array_split(np.arange(h), n):
        for xs in np.array_split(np.arange(w), n):
            t = plane[ys[0]: ys[-1] + 1, xs[0]: xs[-1] + 1]
            t = t[np.isfinite(t)]
            if t.size > 1:
                yield t


def _load(f: FrameInfo) -> np.ndarray:
    try:
        return f.load()
    except NoiseSimError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(f"{f.path}: cannot be read ({type(exc).__name__}: {exc})") from None


def _check_gain_order(results: list[ISOResult], warnings) -> None:
    for a, b in zip(results, results[1:]):
        ka, kb = a.gain_k_dn_per_e, b.gain_k_dn_per_e
        if kb.value <= ka.value + 2 * math.hypot(ka.se, kb.se):
            _warn(warnings, f"K does not rise with ISO: ISO {a.iso:g} K = {ka.value:.4g}, ISO {b.iso:g} K = {kb.value:.4g} DN/e⁻ (mislabelled ISO, or flats of the wrong ISO?)")
    for r in results:
        # the dark-frame mean against the black level the files declare, per colour site, in its own SE
        bad = [f"{r.channel_names[i] if i < len(r.channel_names) else i}: {e.value:+.2f} DN ({e.value / e.se:+.1f} SE)" for i, e in enumerate(r.black_level_error_dn)
               if e.se > 0 and abs(e.value) > 3.0 * e.se]
        if bad:
            _warn(warnings, f"ISO {r.iso:g}: the dark-frame mean differs from the black level the files declare "
                            f"({', '.join(f'{b:g}' for b in r.black_level_dn)} DN) by more than 3 SE: {', '.join(bad)}; "
                            f"the card keeps the declared level and the difference as black_level_error_dn")


_FIT_FIELDS = ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn")


def _joint_fits(results: list[ISOResult], warnings) -> JointFits | None:
    if len(results) < 2:
        return None
    rs = sorted(results, key=lambda r: r.gain_k_dn_per_e.value)
    switch = None
    cut = None
    for i in range(len(rs) - 1):
        a, b = rs[i].read_sigma_dn, rs[i + 1].read_sigma_dn
        if b.value < a.value - 3 * math.hypot(a.se, b.se) and b.value < 0.9 * a.value:
            switch, cut = rs[i + 1].iso, i + 1
            break
    segs = [rs] if cut is None else [rs[:cut], rs[cut:]]
    out = []
    for seg in segs:
        fits = {}
        for name in _FIT_FIELDS:
            x = np.log([r.gain_k_dn_per_e.value for r in seg])
            y = np.log([max(getattr(r, name).value, 1e-3) for r in seg])
            if len(seg) >= 3:
                fits[name] = fit_line(x, y, what=f"joint fit of {name}")
            elif len(seg) == 2:  # exact through both points; slope SE from their own SEs (ln σ has SE se/σ)
                se_y = np.array([max(getattr(r, name).se, 1e-9) / max(getattr(r, name).value, 1e-3) for r in seg])
                fits[name] = fit_line(x, y, weights=1.0 / se_y**2, what=f"joint fit of {name}")
            else:
                fits[name] = None
        if len(seg) == 2:
            _warn(warnings, f"joint fit across ISO {seg[0].iso:g} and {seg[1].iso:g}: a log-linear fit needs ≥ 3 ISOs to "
                            "measure its scatter; with 2 the line passes through both points (slope uncertainty from "
                            "their own SEs, residual scatter unknown and written as 0)")
        out.append({"isos": [r.iso for r in seg], "k": [r.gain_k_dn_per_e.value for r in seg], "fits": fits})
    if switch is not None:
        log.info("dual-gain switch detected at ISO %g", switch)
    return JointFits(out, switch)


def _provenance(cap: Capture, results: list[ISOResult], camera: str) -> dict:
    from noisesim import __version__

    files = sorted({p for r in results for p in r.files})
    return {
        "source": "calibrated by noisesim calibration (docs/calibration.md; EMVA 1288 PTC)",
        "capture": str(cap.source),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": f"noisesim {__version__}",
        "camera_label": camera,
        "counts": {f"iso_{r.iso:g}": {"darks": r.n_darks, "flat_pairs": r.n_flat_pairs, "prnu_flats": r.prnu_frames, "hot_pixels": r.hot_pixels} for r in results},
        "files": files[:5000],
        "n_files": len(files),
        "problems": [str(p) for p in cap.problems],
        "prnu": {f"iso_{r.iso:g}": [e.value for e in r.prnu] for r in results if r.prnu is not None},
        "tukey_lambda_per_channel": {f"iso_{r.iso:g}": [e.value for e in r.tukey_lambda_per_channel] for r in results},
        "dsnu_dn": {f"iso_{r.iso:g}": [e.value for e in r.dsnu_dn] for r in results},
        "confidence_level": 0.95,
    }


def _build_card(results: list[ISOResult], joint: JointFits | None, cap: Capture, camera: str, provenance: dict):
    from noisesim.card import Camera, Card, ISOEntry, JointModel, JointProfile, LogLinearFit
    from noisesim.params import FixedPatternMaps, Sensor

    f0 = cap.frames[0]
    black, white = _levels_of(cap.frames)
    bit_depth = max(8, min(16, int(math.ceil(math.log2(max(white, max(black) + 1) + 1)))))
    sensor = Sensor(CFA(f0.cfa), bit_depth, black, white)
    parts = camera.split(None, 1)
    cam = Camera(name=camera.replace(" ", ""), make=parts[0] if parts else "", model=parts[1] if len(parts) > 1 else "")
    entries = []
    for r in results:
        def ci(e: Estimate, lo_floor=None):
            lo, hi = e.ci
            if not (math.isfinite(lo) and math.isfinite(hi)):
                lo = hi = e.value
            if lo_floor is not None:
                lo = max(lo, lo_floor)
                hi = max(hi, lo)
            return [lo, hi]

        cis = {
            "gain_k_dn_per_e": ci(r.gain_k_dn_per_e, 0.0),
            "read_sigma_dn": ci(r.read_sigma_dn, 0.0),
            "tukey_lambda": [max(-0.999, ci(r.tukey_lambda)[0]), min(0.999, ci(r.tukey_lambda)[1])],
            "tukey_scale_dn": ci(r.tukey_scale_dn, 0.0),
            "row_sigma_dn": ci(r.row_sigma_dn, 0.0),
            "col_sigma_dn": ci(r.col_sigma_dn, 0.0),
            "black_level_error_dn": [ci(e) for e in r.black_level_error_dn],
        }
        dc = None
        if r.dark_current_e_per_s is not None:
            dc = max(r.dark_current_e_per_s.value, 0.0)
            cis["dark_current_e_per_s"] = ci(r.dark_current_e_per_s, 0.0)
        extra = {}  # schema /2 figures, where measured
        for name, floor in (("hot_pixel_dark_current_e_per_s", 0.0), ("read_noise_e", 0.0), ("saturation_capacity_e", None),
                            ("dynamic_range_db", None)):
            e = getattr(r, name)
            if e is not None and math.isfinite(e.value) and (name != "saturation_capacity_e" or e.value > 0):
                extra[name] = max(e.value, floor) if floor is not None else e.value
                cis[name] = ci(e, floor)
        entries.append(ISOEntry(
            iso=r.iso, gain_k_dn_per_e=r.gain_k_dn_per_e.value, read_sigma_dn=max(r.read_sigma_dn.value, 0.0),
            tukey_lambda=r.tukey_lambda.value, tukey_scale_dn=max(r.tukey_scale_dn.value, 0.0),
            row_sigma_dn=max(r.row_sigma_dn.value, 0.0), black_level_error_dn=tuple(e.value for e in r.black_level_error_dn),
            col_sigma_dn=max(r.col_sigma_dn.value, 0.0), dark_current_e_per_s=dc, ci=cis, **extra,
        ))
    jm = None
    if joint is not None:
        ks = sorted(r.gain_k_dn_per_e.value for r in results)
        kmin, kmax = ks[0], ks[-1]
        profiles = []
        segs = joint.segments
        bounds = [kmin]
        for a, b in zip(segs, segs[1:]):
            bounds.append(math.sqrt(a["k"][-1] * b["k"][0]))
        bounds.append(kmax)
        fallback = next((s["fits"] for s in segs if all(s["fits"].values())), None)
        for i, s in enumerate(segs):
            fits = {}
            for name in _FIT_FIELDS:
                lf = s["fits"][name]
                if lf is None:  # a one-ISO segment: the other segment's slope through this point
                    slope = fallback[name].slope.value if fallback else 1.0
                    r = next(r for r in results if r.iso == s["isos"][0])
                    y = math.log(max(getattr(r, name).value, 1e-3))
                    fits[name] = LogLinearFit(slope, y - slope * math.log(r.gain_k_dn_per_e.value), 0.0)
                else:
                    fits[name] = LogLinearFit(lf.slope.value, lf.intercept.value, lf.residual_std)
            profiles.append(JointProfile(name=f"gain{i + 1}" if len(segs) > 1 else "calibrated", k_min_dn_per_e=bounds[i],
                                         k_max_dn_per_e=bounds[i + 1], **fits))
        rk = sorted(results, key=lambda r: r.gain_k_dn_per_e.value)
        nb = len(rk)
        lk = np.log([r.gain_k_dn_per_e.value for r in rk])
        centers = np.log(kmin) + (np.arange(nb) + 0.5) * (np.log(kmax) - np.log(kmin)) / nb
        bins = [tuple(e.value for e in rk[int(np.argmin(np.abs(lk - c)))].black_level_error_dn) for c in centers]
        jm = JointModel(kmin, kmax, tuple(profiles), dual_gain_switch_iso=joint.dual_gain_switch_iso,
                        tukey_lambda_values=tuple(r.tukey_lambda.value for r in sorted(results, key=lambda r: r.iso)),
                        black_level_error_bins=tuple(bins))
    if any(r.black_level_dn != sensor.black_level_dn for r in results):
        # the files declare another black level at some ISO: every row keeps its own (schema /2)
        entries = [dataclasses.replace(e, black_level_dn=r.black_level_dn) for e, r in zip(entries, results)]
    card = Card(camera=cam, sensor=sensor, iso_table=tuple(entries), joint=jm, provenance=provenance)
    maps = _build_maps(results)
    if maps is not None:
        card = card.with_maps(maps)
    return card


def _match_prnu_variance(prnu: np.ndarray, prs: list[ISOResult], wsum: float) -> None:
    """Rescale the frame-weighted mean of per-ISO PRNU maps in place, per packed channel, so its variance is the
    frame-weighted mean of the ISOs' PRNU² (averaging maps with independent noise lowers their variance)."""
    p = math.isqrt(len(prs[0].channel_names))
    hot = np.zeros(prnu.shape, bool)
    for r in prs:
        hot |= r.hot_mask
    for c in range(p * p):
        cy, cx = divmod(c, p)
        view, good = prnu[cy::p, cx::p], ~hot[cy::p, cx::p]
        target = sum(r.prnu_frames / wsum * max(r.prnu[c].value, 0.0) ** 2 for r in prs)
        have = float(view[good].var())
        if have > 0:
            view *= np.float32(math.sqrt(target / have))


def _build_maps(results: list[ISOResult]):
    from noisesim.params import FixedPatternMaps

    rs = [r for r in results if r.ds_map_dn is not None]
    if not rs:
        return None
    isos = np.array([r.iso for r in rs], dtype=np.float64)
    # least-squares line per pixel, ds = k·ISO + b, written as weighted sums of the per-ISO maps
    # (k = Σ (ISO_r − mean) / Sxx · ds_r, b = Σ (1/R − mean·(ISO_r − mean)/Sxx) · ds_r), accumulated in float32:
    # one full-size buffer per output instead of float64 stacks
    if len(rs) >= 2:
        xm = isos.mean()
        wk = (isos - xm) / float(np.sum((isos - xm) ** 2))
        wb = 1.0 / len(rs) - xm * wk
    else:
        wk, wb = np.zeros(1), np.ones(1)
    shape = rs[0].ds_map_dn.shape
    k = np.zeros(shape, np.float32)
    b = np.zeros(shape, np.float32)
    tmp = np.empty(shape, np.float32)
    for r, a_k, a_b in zip(rs, wk, wb):
        k += np.multiply(r.ds_map_dn, np.float32(a_k), out=tmp)
        b += np.multiply(r.ds_map_dn, np.float32(a_b), out=tmp)
    prs = [r for r in results if r.prnu_map is not None]
    prnu = None
    if prs:
        wsum = sum(r.prnu_frames for r in prs)
        prnu = np.zeros(shape, np.float32)
        for r in prs:
            prnu += np.multiply(r.prnu_map, np.float32(r.prnu_frames / wsum), out=tmp)
        if len(prs) > 1 and not any(r.maps_denoised for r in prs):
            _match_prnu_variance(prnu, prs, wsum)
    # per-pixel read σ scale: the mean over ISOs weighted by dark frames (each ISO's estimate is independent)
    srs = [r for r in rs if r.read_sigma_scale is not None]
    read_scale = None
    if srs:
        read_scale = np.zeros(shape, np.float32)
        nsum = sum(r.n_darks for r in srs)
        for r in srs:
            read_scale += np.multiply(r.read_sigma_scale, np.float32(r.n_darks / nsum), out=tmp)
    del tmp
    hot = np.zeros(rs[0].ds_map_dn.shape, bool)
    for r in rs:
        hot |= r.hot_mask
    return FixedPatternMaps(dark_shading_k_dn_per_iso=k, dark_shading_b_dn=b, prnu=prnu, hot_pixel_mask=hot,
                            read_sigma_scale=read_scale)
