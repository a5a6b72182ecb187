"""The calibration procedure: capture → per-ISO estimates → joint model → data card (docs/calibration.md).

:func:`calibrate` streams over the frames once (darks of an ISO first, then its flats), so memory is
bounded by a few full-frame float64 buffers whatever the stack depth.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from noisesim.cfa import CFA
from noisesim.errors import CalibrationError, InputFileError, NoiseSimError

from . import emva_figures as fig
from .accumulate import DarkAccumulator, DarkStats, FlatAccumulator
from .capture import Capture, CaptureProblem, FrameInfo, capture_camera, check_consistency, group_frames, modal_levels, scan_capture
from .card_builder import build_card, build_provenance
from .estimators import Estimate, PTCFit, hot_pixel_mask
from .joint_fit import JointFits, fit_joint
from .pixel_noise import PixelNoiseNotMeasurable, read_sigma_scale_map

__all__ = [
    "calibrate",
    "CalibrationResult",
    "ISOResult",
    "ISOSettings",
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
    ``black_level_error_dn`` is per colour site (Bayer reading order), which is the same for Bayer CFAs.

    Attributes
    ----------
    iso : float
    channel_names : tuple of str
    n_darks, n_flat_pairs : int
    dark_exposure_s : float
        Exposure of the dark stack [s].
    gain_k_dn_per_e : Estimate
        K [DN/e⁻]; ``gain_k_per_channel`` per packed channel.
    ptc : list of PTCFit
        Photon transfer per packed channel.
    dark_temporal_sigma_dn : list of Estimate
        σ_y.dark per packed channel [DN].
    black_level_error_dn : list of Estimate
        Dark mean − declared black per colour site [DN].
    read_sigma_dn : Estimate
        σ_read [DN]; ``read_sigma_per_channel`` per packed channel.
    tukey_lambda, tukey_scale_dn : Estimate
        λ (unit 1) and σ_TL [DN]; ``tukey_r2`` the probability plot's r², ``tukey_lambda_per_channel`` a diagnostic.
    row_sigma_dn, col_sigma_dn, pixel_sigma_dn : Estimate
        σ_r, σ_c, σ_pix [DN].
    dsnu_dn : list of Estimate
        DSNU₁₂₈₈ per packed channel [DN].
    prnu : list of Estimate or None
        PRNU₁₂₈₈ per packed channel (fraction).
    dark_current_e_per_s : Estimate or None
        μ_I [e⁻/s].
    hot_pixels : int
    files : list of str
    read_samples_dn, row_spectrum : ndarray or None
        Residual read-noise samples [DN] and the row-mean power spectrum [DN²], for the report.
    dark_levels, hot_levels : list of (t [s], mean [DN], se [DN])
        Dark signal against exposure, all pixels but hot ones / hot pixels only.
    ds_map_dn, prnu_map, hot_mask : (H, W) ndarray or None
        Dark-shading map [DN], PRNU map (fraction), hot pixels.
    prnu_frames : int
        Flats in the PRNU sum.
    read_sigma_scale : (H, W) ndarray or None
        Each pixel's read σ over its site median; ``read_sigma_scale_rel_se`` its relative SE,
        ``noisy_read_pixels`` the pixels far above the median.
    heldout : list of (H, W) ndarray
        Darks kept out of the fit, for the fidelity check; ``heldout_exposure_s`` their exposure [s].
    maps_denoised : bool
        Maps Wiener-shrunk instead of variance-matched.
    black_level_dn : 4 floats
        Black level the files declare at this ISO, per colour site [DN].
    sigma_y_dark_dn2 : float
        σ²_y.dark [DN²].
    read_noise_e, saturation_capacity_e, dynamic_range_db : Estimate or None
        σ_d [e⁻], μ_e.sat [e⁻], DR_dB [dB] (EMVA 1288).
    hot_pixel_dark_current_e_per_s : Estimate or None
        Dark current of the hot pixels [e⁻/s].
    """

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
    # EMVA 1288 datasheet figures (see emva_figures) and the hot pixels' own dark current
    sigma_y_dark_dn2: float = float("nan")  # σ²_y.dark, temporal dark variance [DN²]
    read_noise_e: Estimate | None = None  # σ_d [e⁻]
    saturation_capacity_e: Estimate | None = None  # μ_e.sat [e⁻]
    dynamic_range_db: Estimate | None = None  # DR_dB [dB]
    hot_pixel_dark_current_e_per_s: Estimate | None = None
    hot_levels: list[tuple[float, float, float]] = field(default_factory=list)  # (t, mean DN of hot pixels, se)

    def summary(self) -> dict:
        """The values of this ISO's figures as a plain dict (keys with units, e.g. ``gain_k_dn_per_e``).

        Returns
        -------
        dict
        """
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
class CalibrationResult:
    """What :func:`calibrate` returns: the card, the per-ISO estimates, the joint fits, the warnings.

    Attributes
    ----------
    card : Card
        The calibrated card (maps attached).
    iso_results : list of ISOResult
        One per calibrated ISO, ascending.
    joint : JointFits or None
        The joint ISO model's fits (several ISOs).
    warnings : list of str
    problems : list of CaptureProblem
        Files skipped or doubtful.
    provenance : dict
        The card's provenance table.
    fidelity : list of dict
        :func:`~.fidelity.summarize` of the held-out comparison.
    """

    card: object  # noisesim.card.Card
    iso_results: list[ISOResult]
    joint: JointFits | None
    warnings: list[str]
    problems: list[CaptureProblem]
    provenance: dict
    fidelity: list[dict] = field(default_factory=list)

    def save(self, path, *, report: str | Path | None = None) -> Path:
        """Write the card (+ maps sidecar) and, optionally, the HTML report.

        Parameters
        ----------
        path : str or Path
            The ``.toml`` card file.
        report : str or Path, optional
            The ``.html`` report file.

        Returns
        -------
        Path
            The card file.
        """
        from noisesim.card import save_card

        from noisesim.atomic import check_output_path

        check_output_path(path, suffixes=(".toml",), what="card file")
        if report is None:
            return save_card(self.card, path)
        from .report import write_report

        # the report first: a card is never left behind by a report that cannot be written
        report = write_report(self, check_output_path(report, what="report"))
        try:
            return save_card(self.card, path)
        except BaseException:
            Path(report).unlink(missing_ok=True)  # no report of a card that was not written
            raise


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
    if camera is not None and not str(camera).strip():  # the card's name check came only after the whole calibration
        raise CalibrationError(f"camera must not be empty, got {camera!r} (give \"Maker Model\", or leave it out to use the files' EXIF)")
    progress = progress or _identity
    if isinstance(capture, Capture):
        cap = capture
    elif isinstance(capture, (list, tuple)):
        cap = check_consistency(Capture(list(capture), [], "<frames>"))
    else:
        cap = scan_capture(capture, progress=progress)
    if not cap.frames:  # the problems go into the error itself, not into warnings logged before it
        raise CalibrationError(f"{cap.source}: no usable frames" + "".join(f"\n  {p}" for p in cap.problems))
    warnings: list[str] = []
    for p in cap.problems:
        _warn(warnings, str(p))
    cfa = CFA(cap.frames[0].cfa)
    shape = cap.frames[0].shape
    groups = group_frames(cap.frames)
    isos = sorted({k[1] for k in groups})
    results: list[ISOResult] = []
    failures: list[str] = []
    per_iso = [(iso, {k[2]: v for k, v in groups.items() if k[0] == "dark" and k[1] == iso},
                {k[2]: v for k, v in groups.items() if k[0] == "flat" and k[1] == iso}) for iso in isos]
    settings = ISOSettings(cfa, shape, sample_pixels, holdout_darks if fidelity else 0, rng, denoise_maps)
    if scheduler is None:
        outcomes = (_iso_task(item, shared=settings, progress=progress) for item in per_iso)
    else:  # one task per ISO; the frames are read by the worker that accumulates them
        from noisesim.distributed import map_on_cluster

        outcomes = map_on_cluster(scheduler, _iso_task, per_iso, shared=settings, workers=workers, progress=progress is not _identity,
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
    joint, joint_warnings = fit_joint(results)
    for msg in joint_warnings:
        _warn(warnings, msg)
    provenance = build_provenance(cap, results, camera)
    card = build_card(results, joint, cap, camera, provenance)
    out = CalibrationResult(card, results, joint, warnings, list(cap.problems), provenance)
    if fidelity:
        from .fidelity import fidelity_heldout

        out.fidelity = fidelity_heldout(out, rng=rng)
    return out


# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ISOSettings:
    """What the estimation of every ISO shares (one per :func:`calibrate` call; sent once to Dask workers).

    Attributes
    ----------
    cfa : CFA
    shape : (H, W)
        Frame size [pixels].
    sample_pixels : int or None
        Pixels per dark frame kept for the read-noise shape fit (None: ~400 000 samples in all).
    holdout_darks : int
        Dark frames kept out of the estimates for the fidelity check (used when an ISO has ≥ 8 darks).
    rng : seed
        Choice of the sample pixels.
    denoise_maps : bool
        Wiener-shrink the dark-shading and PRNU maps instead of matching their variance.
    """

    cfa: CFA
    shape: tuple[int, int]
    sample_pixels: int | None = None
    holdout_darks: int = 0
    rng: object = 0
    denoise_maps: bool = False


def _iso_task(item, shared: ISOSettings, *, progress=_identity) -> tuple[ISOResult | None, list[str], str | None]:
    """Estimate one ISO: ``item`` = (iso, darks by exposure, flats by exposure), ``shared`` the settings (the
    keyword :func:`noisesim.distributed.map_on_cluster` passes). Returns (result or None, this ISO's warnings,
    the skip message or None). Runs in this process or as a Dask task (then frames are read where they are
    accumulated)."""
    iso, darks, flats = item
    warnings: list[str] = []
    try:
        return _calibrate_iso(iso, darks, flats, shared, warnings, progress), warnings, None
    except CalibrationError as exc:
        msg = f"ISO {iso:g}: skipped: {exc}"
        _warn(warnings, msg)
        return None, warnings, msg


def _calibrate_iso(iso: float, darks: dict[float, list[FrameInfo]], flats: dict[float, list[FrameInfo]], settings: ISOSettings,
                   warnings: list[str], progress=_identity) -> ISOResult:
    """Every figure of one ISO (:mod:`.emva_figures`), from its darks and flats by exposure time [s]."""
    cfa = settings.cfa
    used, held, t_bias, black, white = _select_darks(iso, darks, flats, settings.holdout_darks, warnings)
    ds, sample_black_dn = _accumulate_darks(used, t_bias, black, settings, progress)
    heldout = [np.asarray(_load(f)) for f in held]
    # dark frames: hot pixels first (their dark current is measured apart), then the temporal and spatial figures
    mean_packed = cfa.pack(ds.mean_map_dn)
    hot_packed = hot_pixel_mask(mean_packed)
    hot = cfa.unpack(hot_packed)
    dark_levels, hot_levels = _dark_signal_levels(ds, t_bias, darks, hot, black, progress)
    dv = fig.temporal_dark_variance(ds, hot_packed)
    dark_sigma = fig.temporal_dark_noise(ds, dv)
    ble = fig.black_level_error(ds, mean_packed, hot_packed)
    lines = fig.line_noise_variances(ds, dv)
    pixel_read = None
    if ds.n_frames >= 2 and lines.pixel_var_dn2 > 0:
        try:
            pixel_read = read_sigma_scale_map(ds.temporal_var_map_dn2, ds.n_frames, cfa,
                                              line_var_dn2=max(lines.row_var_dn2, 0.0) + max(lines.col_var_dn2, 0.0),
                                              quantized=ds.integer_valued)
        except PixelNoiseNotMeasurable as exc:  # the card still gets every other figure; the map is left out
            _warn(warnings, f"ISO {iso:g}: {exc}")
    shape_fit = fig.read_noise_shape(ds, hot, sample_black_dn)
    dsnu, ds_map = fig.dark_signal_nonuniformity(mean_packed, hot_packed, ble, dv, lines, cfa, denoise=settings.denoise_maps)
    del mean_packed
    # flats: photon transfer per channel → K, saturation; PRNU
    facc, n_pairs, files = _accumulate_flats(iso, flats, ds, black, white, warnings, progress)
    ptcs = fig.photon_transfer(facc.levels, facc.span, ble, dv, cfa, lines)
    _check_ptc(iso, ptcs, facc, warnings)
    gain = fig.system_gain(ptcs, dark=ds, dv=dv, lines=lines)  # channels with their covariance (shared dark, rows)
    prnu_fit = fig.photo_response_nonuniformity(facc, hot_packed, dv, ds.n_frames, denoise=settings.denoise_maps)
    if prnu_fit is None:
        _warn(warnings, f"ISO {iso:g}: no unclipped flats between 5 % and 70 % of the range; PRNU not measured")
    prnu, prnu_map = prnu_fit if prnu_fit is not None else (None, None)
    n_hot = int(hot.sum())
    dc = fig.dark_current(dark_levels, gain, what=f"ISO {iso:g} dark current",
                          signal="mean dark signal" + (f" without the {n_hot} hot pixels" if n_hot else ""))
    hot_dc = fig.dark_current(hot_levels, gain, what=f"ISO {iso:g} hot-pixel dark current", signal=f"mean signal of the {n_hot} hot pixels")
    sy2 = fig.temporal_dark_variance_mean(dv, dark_sigma)
    saturation = fig.saturation_capacity(ptcs, gain)
    return ISOResult(
        iso=float(iso), channel_names=cfa.channel_names, n_darks=ds.n_frames, n_flat_pairs=n_pairs, dark_exposure_s=t_bias,
        gain_k_dn_per_e=gain, gain_k_per_channel=[p.gain_k_dn_per_e for p in ptcs], ptc=ptcs, dark_temporal_sigma_dn=dark_sigma,
        black_level_error_dn=ble, read_sigma_dn=fig.read_noise(lines, dv), read_sigma_per_channel=fig.read_noise_per_channel(lines, dv),
        tukey_lambda=shape_fit.tukey_lambda, tukey_scale_dn=shape_fit.tukey_scale_dn, tukey_r2=shape_fit.r2,
        tukey_lambda_per_channel=shape_fit.tukey_lambda_per_channel,
        row_sigma_dn=fig.row_noise(lines), col_sigma_dn=fig.column_noise(lines), pixel_sigma_dn=fig.pixel_noise(lines),
        dsnu_dn=dsnu, prnu=prnu, dark_current_e_per_s=dc,
        hot_pixels=n_hot, files=files, read_samples_dn=shape_fit.samples_dn, row_spectrum=fig.row_noise_spectrum(ds),
        dark_levels=dark_levels, ds_map_dn=ds_map, prnu_map=prnu_map, prnu_frames=facc.prnu_n, hot_mask=hot,
        heldout=heldout, heldout_exposure_s=t_bias, maps_denoised=settings.denoise_maps,
        read_sigma_scale=None if pixel_read is None else pixel_read.scale,
        read_sigma_scale_rel_se=float("nan") if pixel_read is None else pixel_read.relative_se,
        noisy_read_pixels=0 if pixel_read is None else int(pixel_read.noisy_pixel_mask.sum()),
        black_level_dn=tuple(float(b) for b in black), hot_pixel_dark_current_e_per_s=hot_dc, hot_levels=hot_levels,
        sigma_y_dark_dn2=sy2.value, read_noise_e=fig.temporal_dark_noise_e(sy2, dv, gain), saturation_capacity_e=saturation,
        dynamic_range_db=fig.dynamic_range(sy2, saturation, gain),
    )


def _select_darks(iso, darks, flats, holdout_darks: int, warnings):
    """The dark stack of an ISO (its shortest exposure), split into used and held-out frames, and the ISO's
    most common declared black and white levels. Raises CalibrationError when the ISO cannot be calibrated."""
    if not darks:
        raise CalibrationError("no dark frames at this ISO")
    if not flats:
        raise CalibrationError("no flat frames at this ISO (K cannot be measured)")
    t_bias = min(darks)
    bias_frames = darks[t_bias]
    iso_frames = bias_frames + [f for v in flats.values() for f in v]
    black, white = modal_levels(iso_frames)
    declared = sorted({tuple(f.black_level_dn) for f in iso_frames})
    if len(declared) > 1:
        _warn(warnings, f"ISO {iso:g}: the frames declare {len(declared)} different black levels "
                        f"({'; '.join(str(list(b)) for b in declared[:4])} DN); the most common, {list(black)}, is used for all")
    declared_white = sorted({tuple(f.white_level_dn) for f in iso_frames})
    if len(declared_white) > 1:
        odd = [f.path for f in iso_frames if f.white_level_dn != white]
        _warn(warnings, f"ISO {iso:g}: the frames declare {len(declared_white)} different white levels "
                        f"({'; '.join(str(list(w)) for w in declared_white[:4])} DN); the most common, {list(white)}, is used "
                        f"for all (others: {', '.join(odd[:3])}{' …' if len(odd) > 3 else ''})")
    n_total = len(bias_frames)
    if n_total < 2:
        raise CalibrationError(f"only {n_total} dark frame at {t_bias:g} s ({bias_frames[0].path}); need at least 2 (≥ {MIN_DARKS_RECOMMENDED} recommended)")
    n_hold = holdout_darks if n_total >= 8 else 0
    used, held = bias_frames[: n_total - n_hold], bias_frames[n_total - n_hold:]
    if n_total < MIN_DARKS_RECOMMENDED:  # judged on what was shot: holding one out for fidelity is our choice
        _warn(warnings, f"ISO {iso:g}: only {n_total} dark frames at {t_bias:g} s ({len(used)} used, {n_hold} held out "
                        f"for fidelity); ≥ {MIN_DARKS_RECOMMENDED} recommended (read-noise figures will be loose)")
    return used, held, t_bias, black, white


def _accumulate_darks(used: list[FrameInfo], t_bias: float, black, settings: ISOSettings, progress) -> tuple[DarkStats, np.ndarray]:
    """Stream the dark stack: its statistics and the black level at each read-noise sample pixel [DN]."""
    h, w = settings.shape
    sample_pixels = settings.sample_pixels
    if sample_pixels is None:
        sample_pixels = int(min(h * w, max(2048, 400_000 // len(used))))
    acc = DarkAccumulator(settings.shape, settings.cfa, black, sample_pixels=sample_pixels, rng=settings.rng)
    for f in progress(used):
        acc.add(_load(f), f)
    return acc.finish(t_bias), acc.sample_black_dn


def _dark_signal_levels(ds: DarkStats, t_bias: float, darks, hot: np.ndarray, black, progress):
    """The mean dark signal [DN] at each dark exposure time, for the dark current: (bulk, hot pixels), each a
    list of (exposure_s, mean_dn, se_dn). A hot pixel's dark current is many times the bulk's (EMVA 1288 §4.4
    defect pixels), so the bulk excludes them and they get their own list (empty without hot pixels)."""
    cfa, shape, n = ds.cfa, ds.shape, ds.n_frames
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
    return dark_levels, hot_levels


def _se_of_mean(m: np.ndarray) -> float:
    return float(np.std(m, ddof=1) / math.sqrt(m.size)) if m.size > 1 else float("nan")


def _accumulate_flats(iso, flats, ds: DarkStats, black, white, warnings, progress) -> tuple[FlatAccumulator, int, list[str]]:
    """Stream the flat pairs of an ISO: the accumulator, the number of pairs and every file used (darks first).
    Raises CalibrationError when no pair is usable or every flat is saturated."""
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
    clipped = np.array([lv.clipped_fraction for lv in levels])
    if np.all(clipped > 0.5):
        names = ", ".join(p for lv in levels for p in lv.paths)
        raise CalibrationError(f"all flat frames are saturated (more than half the pixels at the white level {max(white):g} DN): {names}")
    return facc, n_pairs, files


def _check_ptc(iso, ptcs: list[PTCFit], facc: FlatAccumulator, warnings) -> None:
    """Warn where the flats fall short of what EMVA 1288 asks: levels below 70 % of saturation, the saturation
    point, clipped pixels at levels that should have none."""
    levels = facc.levels
    n_used = min(int(p.used.sum()) for p in ptcs)
    if n_used < MIN_LEVELS_RECOMMENDED:
        _warn(warnings, f"ISO {iso:g}: only {n_used} flat levels below 70 % of saturation; ≥ {MIN_LEVELS_RECOMMENDED} recommended between ~1 % and ~90 %")
    if not all(p.saturation_found for p in ptcs):
        _warn(warnings, f"ISO {iso:g}: the variance peak (saturation) is not reached by the flats; 70 % taken of the white level instead")
    mu = np.array([lv.mean_dn for lv in levels])
    clipped = np.array([lv.clipped_fraction for lv in levels])
    below = [lv.exposure_s for lv, cl, m in zip(levels, clipped, mu) if np.any(cl > 1e-4) and np.all(m < 0.7 * facc.span)]
    if below:
        _warn(warnings, f"ISO {iso:g}: flats at {', '.join(f'{t:g}' for t in below)} s have clipped pixels below 70 % of the range (hot spots or uneven light?)")


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
