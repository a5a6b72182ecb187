"""The joint model across ISOs: log-linear fits ln σ = a ln K + b, per gain segment (docs/calibration.md step 8).

A dual-gain sensor (read noise falling as K rises past a switch ISO) gets two segments, split where σ_read
drops by more than 3 SE and 10 % from one ISO to the next.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .estimators import fit_line

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import ISOResult

__all__ = ["fit_joint", "JOINT_FIT_FIELDS", "JointFits"]

log = logging.getLogger("calibration")

# the ISOResult figures [DN] the joint model predicts from K (noisesim.card.JointProfile fields)
JOINT_FIT_FIELDS = ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn")


@dataclass
class JointFits:
    """Log-linear fits ln σ = a ln K + b across ISOs, per segment (two segments for a dual-gain sensor).

    Attributes
    ----------
    segments : list of dict
        Each ``{"isos": [...], "k": [K per ISO, DN/e⁻], "fits": {name: LineFit or None}}``, ascending K, with
        one fit per :data:`JOINT_FIT_FIELDS` name (None for a one-ISO segment).
    dual_gain_switch_iso : float or None
        The first ISO of the second segment.
    """

    segments: list[dict]
    dual_gain_switch_iso: float | None


def fit_joint(results: list[ISOResult]) -> tuple[JointFits | None, list[str]]:
    """Fit the joint model to per-ISO results.

    Parameters
    ----------
    results : list of ISOResult
        Any order.

    Returns
    -------
    (JointFits or None, warnings)
        None with fewer than 2 ISOs. A 2-ISO segment's line passes through both points (slope SE from their
        own SEs, residual scatter unknown, written as 0), which the warnings say.
    """
    warnings: list[str] = []
    if len(results) < 2:
        return None, warnings
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
        for name in JOINT_FIT_FIELDS:
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
            warnings.append(f"joint fit across ISO {seg[0].iso:g} and {seg[1].iso:g}: a log-linear fit needs ≥ 3 ISOs to "
                            "measure its scatter; with 2 the line passes through both points (slope uncertainty from "
                            "their own SEs, residual scatter unknown and written as 0)")
        out.append({"isos": [r.iso for r in seg], "k": [r.gain_k_dn_per_e.value for r in seg], "fits": fits})
    if switch is not None:
        log.info("dual-gain switch detected at ISO %g", switch)
    return JointFits(out, switch), warnings
