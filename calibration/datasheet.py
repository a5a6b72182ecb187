"""EMVA 1288 datasheet section of the calibration report: per-ISO figures, SNR curve, photon transfer (log–log).

The figures themselves are computed by :mod:`calibration.emva_figures` and kept in
:class:`~calibration.pipeline.ISOResult` (``read_noise_e`` σ_d, ``saturation_capacity_e`` μ_e.sat,
``dynamic_range_db`` DR_dB, ``hot_pixel_dark_current_e_per_s``); this module only presents them, as EMVA 1288 release 4.0 asks of a datasheet. The SNR is the temporal one of the
linear camera model, SNR(μ_e) = μ_e / √(σ²_y.dark / K² + μ_e), plotted against the measured flats' μ/σ.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = ["datasheet_html", "snr_model"]


def _fmt(e, spec=".4g") -> str:
    if e is None or not math.isfinite(e.value):
        return "—"
    return f"{e.value:{spec}} <small>[{e.ci[0]:{spec}}, {e.ci[1]:{spec}}]</small>"


def snr_model(mu_e: np.ndarray, sigma_y_dark_dn2: float, gain_k_dn_per_e: float) -> np.ndarray:
    """Temporal SNR of the linear camera model at mean signals ``mu_e`` [e⁻] (EMVA 1288): μ_e / √(σ²_y.dark/K² + μ_e).

    Parameters
    ----------
    mu_e : ndarray
        Mean signal [e⁻], any shape.
    sigma_y_dark_dn2 : float
        Temporal dark variance σ²_y.dark [DN²].
    gain_k_dn_per_e : float
        System gain K [DN/e⁻].

    Returns
    -------
    ndarray
        SNR (unit 1), same shape as ``mu_e``.
    """
    mu_e = np.asarray(mu_e, dtype=np.float64)
    return mu_e / np.sqrt(sigma_y_dark_dn2 / gain_k_dn_per_e**2 + mu_e)


def datasheet_html(result, png: Callable) -> str:
    """HTML of the EMVA 1288 datasheet section for a :class:`~calibration.pipeline.CalibrationResult`.

    ``png`` turns a matplotlib figure into an ``<img>`` tag (the report's own helper).

    Parameters
    ----------
    result : CalibrationResult
        A calibration.
    png : callable
        ``png(figure) -> str``.

    Returns
    -------
    str
        An HTML fragment.
    """
    import matplotlib.pyplot as plt

    from .emva_figures import FIGURES

    def head(name: str, note: str = "") -> str:  # from the figure's own metadata (symbol, description, unit)
        f = FIGURES[name]
        return f"<th>{f.symbol} {f.short.lower()}{note} [{f.unit}]</th>"

    rs = result.iso_results
    out = ["<h2>EMVA 1288 datasheet figures</h2>",
           "<table><tr><th>ISO</th>" + head("system_gain") + head("temporal_dark_noise_e") + head("saturation_capacity")
           + head("dynamic_range") + "<th>SNR_max [dB]</th>" + head("dark_current", ", bulk") + head("dark_current", ", hot pixels")
           + "</tr>"]
    for r in rs:
        sat = r.saturation_capacity_e
        snr_max = f"{10 * math.log10(sat.value):.4g}" if sat is not None and sat.value > 0 else "—"
        out.append(f"<tr><td>{r.iso:g}</td><td>{_fmt(r.gain_k_dn_per_e)}</td><td>{_fmt(r.read_noise_e)}</td><td>{_fmt(sat)}</td>"
                   f"<td>{_fmt(r.dynamic_range_db)}</td><td>{snr_max}</td><td>{_fmt(r.dark_current_e_per_s)}</td>"
                   f"<td>{_fmt(r.hot_pixel_dark_current_e_per_s)} <small>({r.hot_pixels} px)</small></td></tr>")
    out.append("</table><p>σ_d = √(σ²_y.dark − σ²_q)/K; μ_e.sat = μ_y.sat/K at the photon-transfer variance peak; "
               "DR_dB = 20 log₁₀(μ_e.sat/μ_e.min) with μ_e.min = ½ + √(¼ + σ²_y.dark/K²) (SNR = 1); SNR_max = 10 log₁₀ μ_e.sat.</p>")
    fig, (ax_snr, ax_ptc) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(rs):
        col = colors[i % len(colors)]
        k = r.gain_k_dn_per_e.value
        sat_e = r.saturation_capacity_e.value if r.saturation_capacity_e is not None else np.nan
        mu_all, snr_all, ptc_mu, ptc_var = [], [], [], []
        for fit in r.ptc:
            ok = (fit.mean_dn > 0) & (fit.var_dn2 + r.sigma_y_dark_dn2 > 0)
            mu_all.append(fit.mean_dn[ok] / k)
            snr_all.append(fit.mean_dn[ok] / np.sqrt(fit.var_dn2[ok] + r.sigma_y_dark_dn2))
            pos = ok & (fit.var_dn2 > 0)
            ptc_mu.append(fit.mean_dn[pos])
            ptc_var.append(fit.var_dn2[pos])
        mu_all, snr_all = np.concatenate(mu_all), np.concatenate(snr_all)
        lo = 0.3  # down to the read-noise floor (SNR < 1), below the darkest flat
        hi = sat_e if math.isfinite(sat_e) else (float(mu_all.max()) if mu_all.size else 1e4)
        xx = np.geomspace(lo, hi, 200)
        ax_snr.loglog(mu_all, snr_all, "o", ms=3, color=col, label=f"ISO {r.iso:g} measured (all channels)")
        ax_snr.loglog(xx, snr_model(xx, r.sigma_y_dark_dn2, k), "-", color=col, label=f"ISO {r.iso:g} model")
        pm, pv = np.concatenate(ptc_mu), np.concatenate(ptc_var)
        ax_ptc.loglog(pm, pv, "o", ms=3, color=col, label=f"ISO {r.iso:g} flats (all channels)")
        if pm.size:
            xd = np.geomspace(float(pm.min()), float(pm.max()), 50)
            ax_ptc.loglog(xd, k * xd, "-", color=col, label=f"ISO {r.iso:g} σ² = K·μ, K = {k:.4g}")
        if r.sigma_y_dark_dn2 > 0:
            ax_ptc.axhline(r.sigma_y_dark_dn2, ls=":", color=col, label=f"ISO {r.iso:g} σ²_y.dark")
    xx = np.geomspace(0.3, max([r.saturation_capacity_e.value for r in rs if r.saturation_capacity_e is not None] or [1e4]), 100)
    ax_snr.loglog(xx, np.sqrt(xx), "--", color="gray", label="ideal (shot noise only)")
    ax_snr.set_xlabel("mean signal μ_e [e⁻]")
    ax_snr.set_ylabel("SNR (temporal)")
    ax_snr.set_title("SNR curve")
    ax_snr.legend(fontsize=6)
    ax_ptc.set_xlabel("μ_y − μ_y.dark [DN]")
    ax_ptc.set_ylabel("σ²_y − σ²_y.dark [DN²]")
    ax_ptc.set_title("Photon transfer (log–log)")
    ax_ptc.legend(fontsize=6)
    fig.tight_layout()
    out.append(png(fig))
    return "".join(out)
