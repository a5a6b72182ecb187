"""The calibration report: one self-contained HTML page with PNG plots embedded (base64).

Sections: warnings, per-ISO table (every figure with its 95 % interval), EMVA 1288 datasheet figures with SNR
curve and log–log photon transfer (:mod:`calibration.datasheet`), photon transfer curve per channel
with fit and residuals, PPCC curve and Tukey-lambda probability plot, row-noise spectrum, dark shading and
PRNU maps, joint log-linear fits across ISO, and the fidelity table (KL divergences on held-out darks).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from noisesim.atomic import write_text

__all__ = ["write_report"]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}">'


def _fmt(e, spec=".4g") -> str:
    if e is None:
        return "—"
    return f"{e.value:{spec}} <small>[{e.ci[0]:{spec}}, {e.ci[1]:{spec}}]</small>"


def write_report(result, path) -> Path:
    """Write the HTML report of a :class:`~calibration.pipeline.CalibrationResult` (temporary name, then rename).

    Parameters
    ----------
    result : CalibrationResult
    path : str or Path
        The ``.html`` file.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from noisesim.stats import tukey_lambda_ppf

    from .estimators import filliben_medians, ppcc_curve
    from .fidelity import summarize

    res = result
    card = res.card
    out: list[str] = []
    esc = html.escape
    out.append(f"<h1>Calibration report: {esc(card.camera.name)}</h1>")
    prov = res.provenance
    out.append(f"<p>{esc(prov.get('software', ''))}, {esc(prov.get('date', ''))}; capture <code>{esc(prov.get('capture', ''))}</code>, "
               f"{prov.get('n_files', 0)} files. CFA {card.sensor.cfa.pattern}, black {card.sensor.black_level_dn}, "
               f"white {card.sensor.white_level_dn}. Intervals are 95 %.</p>")
    out.append("<h2>Warnings</h2>")
    out.append("<ul>" + "".join(f"<li>{esc(w)}</li>" for w in res.warnings) + "</ul>" if res.warnings else "<p>None.</p>")
    # per-ISO table
    out.append("<h2>Per-ISO estimates</h2><table><tr><th>ISO</th><th>K [DN/e⁻]</th><th>σ Gauss [DN]</th><th>λ</th><th>σ_TL [DN]</th>"
               "<th>r² (TL plot)</th><th>row σ [DN]</th><th>col σ [DN]</th><th>black-level error [DN]</th><th>PRNU</th><th>dark current [e⁻/s]</th>"
               "<th>darks</th><th>flat pairs</th><th>hot px</th></tr>")
    for r in res.iso_results:
        ble = "<br>".join(f"{n}: {_fmt(e, '.3f')}" for n, e in zip(card.sensor.cfa.site_names, r.black_level_error_dn))
        prnu = "—" if r.prnu is None else "<br>".join(f"{n}: {_fmt(e, '.4f')}" for n, e in zip(r.channel_names, r.prnu))
        out.append(f"<tr><td>{r.iso:g}</td><td>{_fmt(r.gain_k_dn_per_e)}</td><td>{_fmt(r.read_sigma_dn)}</td><td>{_fmt(r.tukey_lambda, '.4f')}</td>"
                   f"<td>{_fmt(r.tukey_scale_dn)}</td><td>{r.tukey_r2:.5f}</td><td>{_fmt(r.row_sigma_dn)}</td><td>{_fmt(r.col_sigma_dn)}</td>"
                   f"<td>{ble}</td><td>{prnu}</td><td>{_fmt(r.dark_current_e_per_s)}</td><td>{r.n_darks}</td><td>{r.n_flat_pairs}</td><td>{r.hot_pixels}</td></tr>")
    out.append("</table>")
    from .datasheet import datasheet_html

    out.append(datasheet_html(res, _png))  # EMVA 1288 figures, SNR curve, log-log photon transfer
    out.append("<p>Tukey λ per channel (diagnostic; the card keeps the pooled λ above):</p><table><tr><th>ISO</th>"
               + "".join(f"<th>{esc(n)}</th>" for n in res.iso_results[0].channel_names) + "</tr>")
    for r in res.iso_results:
        out.append(f"<tr><td>{r.iso:g}</td>" + "".join(f"<td>{_fmt(e, '.4f')}</td>" for e in r.tukey_lambda_per_channel) + "</tr>")
    out.append("</table>")
    for r in res.iso_results:
        out.append(f"<h2>ISO {r.iso:g}</h2>")
        # PTC per channel
        nch = len(r.ptc)
        fig, axes = plt.subplots(2, nch, figsize=(3.4 * nch, 5.6), squeeze=False, sharex="col", layout="constrained",
                                 gridspec_kw={"height_ratios": [2, 1]})
        for c, fit in enumerate(r.ptc):
            ax, axr = axes[0, c], axes[1, c]
            ax.plot(fit.mean_dn[fit.used], fit.var_dn2[fit.used], "o", label="used")
            ax.plot(fit.mean_dn[~fit.used], fit.var_dn2[~fit.used], "x", color="gray", label="not used")
            xx = np.linspace(0, fit.mean_dn.max(), 50)
            ax.plot(xx, fit.gain_k_dn_per_e.value * xx, "-", label=f"K = {fit.gain_k_dn_per_e.value:.4g}")
            ax.axvline(0.7 * fit.saturation_mean_dn, ls=":", color="k", label="70 % of saturation")
            ax.set_title(r.channel_names[c])
            ax.legend(fontsize=7)
            axr.plot(fit.mean_dn, fit.residuals_dn2 / np.maximum(fit.gain_k_dn_per_e.value * fit.mean_dn, 1e-9), "o",
                     label="(σ² − K μ) / K μ")
            axr.axhline(0, color="k", lw=0.5, label="0")
            axr.set_xlabel("μ − μ_dark [DN]")
            axr.legend(fontsize=6)
        axes[0, 0].set_ylabel("σ² − σ²_dark [DN²]")
        axes[1, 0].set_ylabel("rel. residual")
        out.append("<h3>Photon transfer (EMVA 1288 pair difference)</h3>" + _png(fig))
        # PPCC and probability plot
        if r.read_samples_dn is not None and r.read_samples_dn.size > 100:
            x = np.sort(r.read_samples_dn.astype(np.float64))
            lams = np.linspace(-0.3, 0.4, 36)
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
            a1.plot(lams, ppcc_curve(x, lams), label="PPCC r(λ) of the residuals")
            a1.axvline(r.tukey_lambda.value, ls=":", color="k", label=f"debiased λ* = {r.tukey_lambda.value:.3f}")
            a1.legend(fontsize=7)
            a1.set_xlabel("λ")
            a1.set_ylabel("PPCC r")
            a1.set_title("PPCC (debiased λ* marked)")
            q = tukey_lambda_ppf(filliben_medians(x.size), r.tukey_lambda.value)
            a2.plot(q, x, ".", ms=2, label="residuals")
            a2.plot(q, q * r.tukey_scale_dn.value, "-", label=f"σ_TL = {r.tukey_scale_dn.value:.3g} DN")
            a2.legend(fontsize=7)
            a2.set_xlabel(f"Tukey-λ quantile (λ = {r.tukey_lambda.value:.3f})")
            a2.set_ylabel("residual [DN]")
            a2.set_title("probability plot")
            out.append("<h3>Read-noise shape</h3>" + _png(fig))
        if r.row_spectrum is not None and r.row_spectrum.size > 2:
            fig, ax = plt.subplots(figsize=(6, 3))
            f = np.fft.rfftfreq(2 * (r.row_spectrum.size - 1))
            ax.semilogy(f[1:], r.row_spectrum[1:], label="row-mean power")
            ax.legend(fontsize=7)
            ax.set_xlabel("cycles / row")
            ax.set_ylabel("power [DN²]")
            ax.set_title("row-mean spectrum (flat = white banding)")
            out.append("<h3>Row noise</h3>" + _png(fig))
        maps = [(m, t) for m, t in ((r.ds_map_dn, "dark shading [DN]"), (r.prnu_map, "PRNU (relative)")) if m is not None]
        if maps:
            fig, axes = plt.subplots(1, len(maps), figsize=(5 * len(maps), 4), squeeze=False)
            for ax, (m, t) in zip(axes[0], maps):
                step = max(1, max(m.shape) // 512)
                v = m[::step, ::step]
                lo, hi = np.percentile(v, [1, 99])
                im = ax.imshow(v, vmin=lo, vmax=hi, cmap="gray")
                ax.set_title(t)
                fig.colorbar(im, ax=ax, shrink=0.8)
            out.append("<h3>Fixed-pattern maps</h3>" + _png(fig))
    if res.joint is not None:
        out.append("<h2>Joint model across ISO</h2>")
        if res.joint.dual_gain_switch_iso:
            out.append(f"<p>Dual-gain switch detected at ISO {res.joint.dual_gain_switch_iso:g} (read noise drops while K rises).</p>")
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
        names = ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn")
        rows = []
        for ax, name in zip(axes, names):
            plotted = []
            for seg in res.joint.segments:
                ks = np.array(seg["k"])
                ys = np.array([max(getattr(next(r for r in res.iso_results if r.iso == i), name).value, 1e-3) for i in seg["isos"]])
                isos = ", ".join(f"{i:g}" for i in seg["isos"])
                pts = ax.loglog(ks, ys, "o", label=f"ISO {isos}")
                plotted.extend(ys)
                lf = seg["fits"][name]
                if lf is not None:
                    kk = np.geomspace(ks.min(), ks.max(), 20)
                    ax.loglog(kk, np.exp(lf.predict(np.log(kk))), "-", color=pts[0].get_color(),
                              label=f"fit, slope {lf.slope.value:.3g}")
                    resid = f"{lf.residual_std:.4g}" if len(seg["isos"]) >= 3 else "needs ≥ 3 ISOs"
                    rows.append(f"<tr><td>{name}</td><td>{isos}</td><td>{_fmt(lf.slope)}</td>"
                                f"<td>{_fmt(lf.intercept)}</td><td>{resid}</td></tr>")
            if plotted and min(plotted) == max(plotted):  # one value at every ISO (e.g. no row noise): a visible range
                ax.set_autoscaley_on(False)  # else set_ylim first runs the pending autoscale on the flat data
                ax.set_ylim(plotted[0] / 2.0, plotted[0] * 2.0)
            ax.legend(fontsize=7)
            ax.set_xlabel("K [DN/e⁻]")
            ax.set_title(f"ln {name} vs ln K")
        out.append(_png(fig))
        out.append("<table><tr><th>σ</th><th>ISOs</th><th>slope</th><th>intercept</th><th>residual std</th></tr>" + "".join(rows) + "</table>")
    out.append("<h2>Fidelity on held-out darks</h2>")
    if res.fidelity:
        from .fidelity import format_table

        out.append("<table><tr><th>ISO</th><th>model</th><th>KL(real‖synthetic) [nats]</th><th>symmetric KL [nats]</th>"
                   "<th>largest KS</th><th>channels passing</th></tr>")
        for s in summarize(res.fidelity):
            out.append(f"<tr><td>{s['iso']:g}</td><td>{s['model']}</td><td>{s['kl_forward']:.5f}</td><td>{s['kl_symmetric']:.5f}</td>"
                       f"<td>{s['ks_max']:.4f}</td><td>{s['passed']} of {s['n']}</td></tr>")
        out.append("</table><p>Per channel (differences synthetic − real; SE from blocks of rows):</p><pre>"
                   + esc(format_table(res.fidelity)) + "</pre>")
    else:
        out.append("<p>No held-out dark frames (need ≥ 8 darks per ISO).</p>")
    if res.problems:
        out.append("<h2>Files not used</h2><ul>" + "".join(f"<li>{esc(str(p))}</li>" for p in res.problems) + "</ul>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>noisesim calibration report</title><style>"
            "body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}img{max-width:100%}</style></head><body>"
            + "\n".join(out) + "</body></html>")
    path = Path(path)
    write_text(path, page)
    return path
