"""A data card from calibration results: the ISO table, the joint model, the fixed-pattern maps, provenance.

:func:`build_card` turns per-ISO estimates (:class:`~.pipeline.ISOResult`) and the joint fits
(:class:`~.joint_fit.JointFits`) into a :class:`noisesim.card.Card` with its maps in memory; it estimates
nothing. :func:`build_maps` combines the per-ISO maps, :func:`build_provenance` records how the card was made.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from typing import TYPE_CHECKING

import numpy as np

from noisesim.cfa import CFA

from .capture import Capture, modal_levels
from .estimators import Estimate
from .joint_fit import JOINT_FIT_FIELDS, JointFits

if TYPE_CHECKING:  # pragma: no cover
    from noisesim.card import Card
    from noisesim.params import FixedPatternMaps

    from .pipeline import ISOResult

__all__ = ["build_card", "build_maps", "build_provenance"]


def build_provenance(capture: Capture, results: list[ISOResult], camera: str) -> dict:
    """The card's ``provenance`` table: source, capture, date (UTC), software, frame counts, files, per-channel figures.

    Parameters
    ----------
    capture : Capture
        What was calibrated (its source and problems are recorded).
    results : list of ISOResult
    camera : str
        "Maker Model" as given or read from EXIF.

    Returns
    -------
    dict
        TOML-ready (str, numbers, lists, tables).
    """
    from noisesim import __version__

    files = sorted({p for r in results for p in r.files})
    return {
        "source": "calibrated by noisesim calibration (docs/calibration.md; EMVA 1288 PTC)",
        "capture": str(capture.source),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": f"noisesim {__version__}",
        "camera_label": camera,
        "counts": {f"iso_{r.iso:g}": {"darks": r.n_darks, "flat_pairs": r.n_flat_pairs, "prnu_flats": r.prnu_frames, "hot_pixels": r.hot_pixels} for r in results},
        "files": files[:5000],
        "n_files": len(files),
        "problems": [str(p) for p in capture.problems],
        "prnu": {f"iso_{r.iso:g}": [e.value for e in r.prnu] for r in results if r.prnu is not None},
        "tukey_lambda_per_channel": {f"iso_{r.iso:g}": [e.value for e in r.tukey_lambda_per_channel] for r in results},
        "dsnu_dn": {f"iso_{r.iso:g}": [e.value for e in r.dsnu_dn] for r in results},
        "confidence_level": 0.95,
    }


def _interval(e: Estimate, lo_floor: float | None = None) -> list[float]:
    """``[low, high]`` of an estimate's interval for the card: the value where the interval is not finite, and
    no lower than ``lo_floor`` (a σ's interval starts at 0)."""
    lo, hi = e.ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo = hi = e.value
    if lo_floor is not None:
        lo = max(lo, lo_floor)
        hi = max(hi, lo)
    return [lo, hi]


def _iso_entry(r: ISOResult):
    """One row of the card's ISO table (values and 95 % intervals) from one ISO's estimates."""
    from noisesim.card import ISOEntry

    ci = _interval
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
    return ISOEntry(
        iso=r.iso, gain_k_dn_per_e=r.gain_k_dn_per_e.value, read_sigma_dn=max(r.read_sigma_dn.value, 0.0),
        tukey_lambda=r.tukey_lambda.value, tukey_scale_dn=max(r.tukey_scale_dn.value, 0.0),
        row_sigma_dn=max(r.row_sigma_dn.value, 0.0), black_level_error_dn=tuple(e.value for e in r.black_level_error_dn),
        col_sigma_dn=max(r.col_sigma_dn.value, 0.0), dark_current_e_per_s=dc, ci=cis, **extra,
    )


def _joint_model(results: list[ISOResult], joint: JointFits):
    """The card's joint model: one profile per gain segment over its K range, the per-ISO λ, black-level bins."""
    from noisesim.card import JointModel, JointProfile, LogLinearFit

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
        for name in JOINT_FIT_FIELDS:
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
    return JointModel(kmin, kmax, tuple(profiles), dual_gain_switch_iso=joint.dual_gain_switch_iso,
                      tukey_lambda_values=tuple(r.tukey_lambda.value for r in sorted(results, key=lambda r: r.iso)),
                      black_level_error_bins=tuple(bins))


def build_card(results: list[ISOResult], joint: JointFits | None, capture: Capture, camera: str, provenance: dict) -> Card:
    """The data card of a calibration.

    Parameters
    ----------
    results : list of ISOResult
        Per-ISO estimates, ascending ISO (one row of the ISO table each).
    joint : JointFits or None
        The joint model's fits (:func:`~.joint_fit.fit_joint`); None (one ISO): no joint model.
    capture : Capture
        The sensor's CFA, most common black level (per colour site) and white level, and the bit depth that
        holds the white level, are taken from its frames.
    camera : str
        "Maker Model": the card is named after it without spaces; the first word is the make.
    provenance : dict
        :func:`build_provenance`.

    Returns
    -------
    noisesim.card.Card
        With the maps of :func:`build_maps` in memory (saved as a sidecar by ``save_card``). Where the files
        declare another black level at some ISO, every row keeps its own (schema ``noisesim.card/2``).
    """
    from noisesim.card import Camera, Card
    from noisesim.params import Sensor

    f0 = capture.frames[0]
    black, white = modal_levels(capture.frames)
    bit_depth = max(8, min(16, int(math.ceil(math.log2(max(*white, max(black) + 1) + 1)))))
    sensor = Sensor(CFA(f0.cfa), bit_depth, black, white)
    parts = camera.split(None, 1)
    cam = Camera(name=camera.replace(" ", ""), make=parts[0] if parts else "", model=parts[1] if len(parts) > 1 else "")
    entries = [_iso_entry(r) for r in results]
    jm = None if joint is None else _joint_model(results, joint)
    if any(r.black_level_dn != sensor.black_level_dn for r in results):
        # the files declare another black level at some ISO: every row keeps its own (schema /2)
        entries = [dataclasses.replace(e, black_level_dn=r.black_level_dn) for e, r in zip(entries, results)]
    card = Card(camera=cam, sensor=sensor, iso_table=tuple(entries), joint=jm, provenance=provenance)
    maps = build_maps(results)
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


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric 2 × 2 matrix, negative eigenvalues clipped to 0."""
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _match_dark_shading_variance(k: np.ndarray, b: np.ndarray, rs: list[ISOResult]) -> None:
    """Transform the least-squares maps k, b in place, per packed channel, so that the spatial variance of
    ``k·ISO + b`` at each ISO is that ISO's DSNU1288² (least squares over ≥ 3 ISOs).

    Each per-ISO map is noisy and scaled to variance DSNU²; a line fitted through ≥ 3 of them averages part of
    their independent noise away, so the fitted map alone reproduces too little DSNU (2 ISOs: the line passes
    through both maps, nothing is lost). Per channel, with t = (ISO − mean)/sd and DS = α·t + β, the variance
    at t is [t, 1] Σ [t, 1]ᵀ for the 2 × 2 covariance Σ of (α, β): Σ is fitted to the DSNU² values (projected
    onto the positive semidefinite matrices) and (α, β) are moved by the smallest linear map (the Gaussian
    optimal-transport map) that turns their covariance into Σ. Hot pixels keep their offsets.
    """
    p = math.isqrt(len(rs[0].channel_names))
    isos = np.array([r.iso for r in rs], dtype=np.float64)
    xm, sx = float(isos.mean()), float(isos.std())
    t = (isos - xm) / sx
    design = np.stack([t * t, 2 * t, np.ones_like(t)], axis=1)
    hot = np.zeros(k.shape, bool)
    for r in rs:
        hot |= r.hot_mask
    for c in range(p * p):
        target = np.array([r.dsnu_dn[c].value for r in rs], dtype=np.float64) ** 2
        if not np.all(np.isfinite(target)):
            continue
        cy, cx = divmod(c, p)
        kv, bv, good = k[cy::p, cx::p], b[cy::p, cx::p], ~hot[cy::p, cx::p]
        z = np.stack([kv[good] * sx, bv[good] + kv[good] * xm]).astype(np.float64)  # (α, β) per good pixel
        mean = z.mean(axis=1, keepdims=True)
        s = np.cov(z, bias=True)
        if not np.linalg.det(s) > 1e-12 * np.trace(s) ** 2:
            continue
        a_, b_, c_ = np.linalg.lstsq(design, target, rcond=None)[0]
        sig = np.array([[a_, b_], [b_, c_]])
        sig = _sqrtm_psd(sig) @ _sqrtm_psd(sig)  # nearest PSD (eigenvalues clipped)
        sh = _sqrtm_psd(s)
        shi = np.linalg.inv(sh)
        tmap = shi @ _sqrtm_psd(sh @ sig @ sh) @ shi  # T S Tᵀ = Σ, T closest to the identity
        z = tmap @ (z - mean) + mean
        kv[good] = (z[0] / sx).astype(np.float32)
        bv[good] = (z[1] - z[0] / sx * xm).astype(np.float32)


def build_maps(results: list[ISOResult]) -> FixedPatternMaps | None:
    """The card's fixed-pattern maps from the per-ISO maps.

    * dark shading: a least-squares line per pixel over ISO, DS = k·ISO + b [DN] (one ISO: k = 0); with ≥ 3
      ISOs transformed per channel so that the variance at each ISO is that ISO's DSNU1288² (least squares;
      unless the maps are Wiener-shrunk);
    * PRNU: the mean of the per-ISO maps weighted by their flats, rescaled per channel so that its variance
      is the weighted mean of the ISOs' PRNU² (unless the maps are Wiener-shrunk);
    * read σ scale: the mean of the per-ISO maps weighted by dark frames;
    * hot pixels: hot at any ISO.

    Parameters
    ----------
    results : list of ISOResult

    Returns
    -------
    FixedPatternMaps or None
        All (H, W) float32 (the hot-pixel mask bool); None when no ISO has a dark-shading map.
    """
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
    if len(rs) >= 3 and not any(r.maps_denoised for r in rs):
        _match_dark_shading_variance(k, b, rs)
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
