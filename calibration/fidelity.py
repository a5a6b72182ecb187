"""Fidelity of a card against real dark frames (docs/calibration.md): KL divergences of integer-DN histograms.

For each ISO, real dark frames (held out of the calibration, or any darks given to :func:`validate`) are
compared per packed channel with frames synthesized by :func:`noisesim.noise.simulate` from the card's
parameters at that ISO and its maps, over the same sensor region. Forward KL(real‖synthetic) and the
symmetric (Jeffreys) form KL(real‖syn) + KL(syn‖real) are reported in nats, for the Tukey-lambda and the
Gaussian read-noise models.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from noisesim.cfa import CFA

from .estimators import kl_divergences

log = logging.getLogger("calibration")

CROP = 512  # side of the centred region compared (mosaic pixels)


def _crop_box(shape, period: int, side: int = CROP):
    h, w = shape
    ch, cw = min(h, side), min(w, side)
    ch -= ch % period
    cw -= cw % period
    y0 = ((h - ch) // 2) // period * period
    x0 = ((w - cw) // 2) // period * period
    return y0, x0, ch, cw


def params_for(card, iso: float, exposure_s: float, read_model: str):
    """The :class:`~noisesim.params.NoiseParams` of a card's tabled ISO (no joint-model scatter)."""
    from noisesim.params import NoiseParams

    e = card.iso_entry(iso)
    if e is None:
        return None
    return NoiseParams(
        gain_k_dn_per_e=e.gain_k_dn_per_e, read_model=read_model, read_sigma_dn=e.read_sigma_dn,
        tukey_lambda=e.tukey_lambda, tukey_scale_dn=e.tukey_scale_dn, row_sigma_dn=e.row_sigma_dn,
        col_sigma_dn=e.col_sigma_dn or 0.0, black_level_error_dn=e.black_level_error_dn or (0.0,) * 4,
        dark_current_e_per_s=e.dark_current_e_per_s or 0.0, exposure_s=float(exposure_s), iso=float(iso),
        black_level_dn=e.black_level_dn, hot_pixel_dark_current_e_per_s=e.hot_pixel_dark_current_e_per_s,
    )


def compare_frame(card, real: np.ndarray, iso: float, exposure_s: float, *, rng=0, frame_index: int = 0) -> list[dict]:
    """KL divergences per channel and read model between one real dark frame and a synthetic one."""
    from noisesim.noise import simulate

    cfa = CFA(card.sensor.cfa.pattern)
    y0, x0, ch, cw = _crop_box(real.shape, cfa.period)
    real_c = np.asarray(real[y0:y0 + ch, x0:x0 + cw], dtype=np.float64)
    maps = card.maps
    if maps is not None and maps.shape != real.shape:
        log.warning("card maps have shape %s, frames %s: fidelity computed without maps", maps.shape, real.shape)
        maps = None
    rows = []
    for model in ("tukey", "gaussian"):
        params = params_for(card, iso, exposure_s, model)
        if params is None:
            return []
        syn = simulate(np.zeros((ch, cw), np.float32), params, card.sensor, input_unit="normalized", output_unit="dn",
                       dtype=np.float32, maps=maps, origin=(y0, x0), rng=rng, frame_index=frame_index)
        rp, sp = cfa.pack(real_c), cfa.pack(np.asarray(syn, np.float64))
        for c, name in enumerate(cfa.channel_names):
            fwd, sym = kl_divergences(rp[c], sp[c])
            rows.append({"iso": float(iso), "channel": name, "model": model, "kl_forward": fwd, "kl_symmetric": sym,
                         "real_std_dn": float(rp[c].std()), "synthetic_std_dn": float(sp[c].std())})
    return rows


def fidelity_heldout(result, *, rng=0) -> list[dict]:
    """Fidelity table of a :class:`~calibration.pipeline.CalibrationResult` on its held-out darks."""
    rows = []
    for r in result.iso_results:
        for i, frame in enumerate(r.heldout):
            rows += compare_frame(result.card, frame, r.iso, r.heldout_exposure_s, rng=rng, frame_index=10_000 + i)
    return rows


def validate(card, capture, *, max_frames_per_iso: int = 4, rng=0, progress=None) -> list[dict]:
    """Fidelity table of ``card`` on the dark frames of ``capture`` (folder, manifest or Capture).

    Only ISOs the card tables are compared; darks at other ISOs are skipped with a log message.
    """
    from noisesim.card import load_card

    from .capture import Capture, group_frames, scan_capture

    if not hasattr(card, "iso_table"):
        card = load_card(card)
    cap = capture if isinstance(capture, Capture) else scan_capture(capture)
    for p in cap.problems:
        log.warning("%s", p)
    rows = []
    jobs = []
    for (kind, iso, t), frames in group_frames(cap.frames).items():
        if kind != "dark":
            continue
        if card.iso_entry(iso) is None:
            log.warning("ISO %g: not in the card's table; darks skipped", iso)
            continue
        jobs += [(iso, t, f) for f in frames[:max_frames_per_iso]]
    it = progress(jobs) if progress else jobs
    for i, (iso, t, f) in enumerate(it):
        rows += compare_frame(card, f.load(), iso, t, rng=rng, frame_index=20_000 + i)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean KL over channels and frames per (ISO, model)."""
    out = {}
    for r in rows:
        k = (r["iso"], r["model"])
        out.setdefault(k, []).append(r)
    return [
        {"iso": iso, "model": model, "kl_forward": float(np.mean([r["kl_forward"] for r in rs])),
         "kl_symmetric": float(np.mean([r["kl_symmetric"] for r in rs])), "n": len(rs)}
        for (iso, model), rs in sorted(out.items())
    ]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'ISO':>7} {'model':>9} {'KL(real‖syn)':>13} {'KL sym':>9}  n"]
    for s in summarize(rows):
        lines.append(f"{s['iso']:>7g} {s['model']:>9} {s['kl_forward']:>13.5f} {s['kl_symmetric']:>9.5f}  {s['n']}")
    return "\n".join(lines)
