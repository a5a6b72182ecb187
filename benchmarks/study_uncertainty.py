"""Replicate study of the calibration's standard errors (issue 7 item 6): spread of each figure against its SE.

One simulated sensor unit (fixed dark-shading and PRNU maps, known parameters with strong row noise) is
"captured" R times as a phone user would (a few ISOs, few darks, a few flat levels, darks at two longer
exposures), each capture with its own seed, and calibrated. For every reported figure, per channel and
combined, it prints

* ``std(est)/rms(SE)``: the empirical spread over the replicates against the typical reported SE (1 for an
  honest SE; the issue reported 1.9 for K);
* ``std(z)``, ``mean(z)`` of z = (estimate − truth)/SE, and how often the reported 95 % interval holds the truth.

With R replicates, std(z) of an honest SE lies within ``sqrt(chi2.ppf([0.025, 0.975], R − 1) / (R − 1))``
(printed). Not a timing benchmark: run it to check the uncertainties after changing an estimator.

    python benchmarks/study_uncertainty.py                 # 24 replicates, 3 ISOs, 64×64 frames
    python benchmarks/study_uncertainty.py -R 40 --size 96
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from noisesim.calibration.pipeline import calibrate  # noqa: E402
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames  # noqa: E402
from noisesim.cfa import CFA  # noqa: E402
from noisesim.params import FixedPatternMaps, NoiseParams, Sensor  # noqa: E402

SENSOR = Sensor("RGGB", 12, (64,) * 4, 4095)
# phone-like: K from 0.5 to 4 DN/e⁻, row noise comparable to the read noise, visible dark current
PARAMS = {
    100: NoiseParams(0.5, "tukey", 0.0, 0.10, 1.0, 0.8, 0.1, (0.3, 0.0, -0.2, 0.1), dark_current_e_per_s=20.0),
    400: NoiseParams(2.0, "tukey", 0.0, 0.10, 1.6, 1.5, 0.15, (0.3, 0.0, -0.2, 0.1), dark_current_e_per_s=20.0),
    1600: NoiseParams(4.0, "tukey", 0.0, 0.10, 2.4, 2.5, 0.2, (0.3, 0.0, -0.2, 0.1), dark_current_e_per_s=20.0),
}
SPEC = SyntheticSpec(n_darks=8, dark_exposure_s=1 / 1000, dark_current_exposures_s=(0.25, 0.5), n_darks_per_exposure=4,
                     flat_levels=(0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.9), pairs_per_level=1)


def sensor_maps(shape, *, dsnu_dn: float = 0.6, prnu: float = 0.01, seed: int = 1) -> FixedPatternMaps:
    """The one sensor unit of the study: white dark shading (no ISO slope) and PRNU maps."""
    g = np.random.default_rng(seed)
    return FixedPatternMaps(np.zeros(shape, np.float32), g.normal(0, dsnu_dn, shape).astype(np.float32),
                            prnu=g.normal(0, prnu, shape).astype(np.float32))


def truths(params: NoiseParams, maps: FixedPatternMaps, cfa: CFA, dark_exposure_s: float) -> dict[str, list[float] | float]:
    """The figures a calibration of this unit should find (its realized fixed pattern is the truth)."""
    # the darks' temporal variance also holds the shot noise of their dark signal, K² μ_I t (0.3 DN² at ISO 1600 here)
    read = math.sqrt((params.tukey_scale_dn * params.tukey_scale_dn * stats.tukeylambda.var(params.tukey_lambda))
                     + params.gain_k_dn_per_e**2 * params.dark_current_e_per_s * dark_exposure_s)
    site = cfa.site_index.ravel()
    ds = cfa.pack(maps.dark_shading_b_dn)
    dark_dn = params.gain_k_dn_per_e * params.dark_current_e_per_s * dark_exposure_s
    return {
        "K": params.gain_k_dn_per_e, "K[c]": [params.gain_k_dn_per_e] * cfa.n_channels,
        "read σ": read, "read σ[c]": [read] * cfa.n_channels, "row σ": params.row_sigma_dn, "λ": params.tukey_lambda,
        "dark current": params.dark_current_e_per_s,
        "DSNU[c]": [float(x.std()) for x in ds], "PRNU[c]": [float(x.std()) for x in cfa.pack(maps.prnu)],
        "black[c]": [params.black_level_error_dn[site[c]] + float(ds[c].mean()) + dark_dn for c in range(cfa.n_channels)],
    }


def figures(r) -> dict[str, list]:
    """The Estimates of one ISOResult under the study's names (lists for per-channel figures)."""
    return {
        "K": r.gain_k_dn_per_e, "K[c]": r.gain_k_per_channel, "read σ": r.read_sigma_dn, "read σ[c]": r.read_sigma_per_channel,
        "row σ": r.row_sigma_dn, "λ": r.tukey_lambda, "dark current": r.dark_current_e_per_s, "DSNU[c]": r.dsnu_dn,
        "PRNU[c]": r.prnu, "black[c]": r.black_level_error_dn,
    }


def run(replicates: int, shape, *, params=PARAMS, spec=SPEC, seed0: int = 100, maps_seed: int = 1, progress=None):
    """Calibrate ``replicates`` captures; returns {(iso, figure, channel or -1): (values, SEs, truth in the
    95 % interval, truth)}."""
    cfa = SENSOR.cfa
    maps = sensor_maps(shape, seed=maps_seed)
    out: dict[tuple, tuple[list, list, float]] = {}
    for i in range(replicates):
        frames = synthetic_frames(params, SENSOR, shape, spec, maps=maps, rng=seed0 + i)
        res = calibrate(frames, "Study Phone", fidelity=False)
        for r in res.iso_results:
            t = truths(params[r.iso], maps, cfa, r.dark_exposure_s)
            for name, est in figures(r).items():
                if est is None:
                    continue
                ests = est if isinstance(est, list) else [est]
                tv = t[name] if isinstance(t[name], list) else [t[name]]
                for c, (e, tc) in enumerate(zip(ests, tv)):
                    key = (r.iso, name, c if isinstance(est, list) else -1)
                    vals, ses, inside, _ = out.setdefault(key, ([], [], [], tc))
                    vals.append(e.value)
                    ses.append(e.se)
                    inside.append(e.contains(tc))
        if progress:
            progress(i)
    return out


def summarize(out) -> list[dict]:
    """Per (ISO, figure, channel): std(est)/rms(SE), std(z), mean(z), coverage of the reported 95 % intervals."""
    rows = []
    for (iso, name, c), (vals, ses, inside, truth) in sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        v, s = np.array(vals), np.array(ses)
        z = (v - truth) / s
        rows.append({"iso": iso, "figure": name, "channel": c, "n": v.size, "truth": truth, "mean": float(v.mean()),
                     "spread_over_se": float(v.std(ddof=1) / math.sqrt(np.mean(s**2))), "std_z": float(z.std(ddof=1)),
                     "mean_z": float(z.mean()), "cover95": float(np.mean(inside))})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-R", "--replicates", type=int, default=24, help="replicate captures (default 24)")
    ap.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = run(args.replicates, (args.size, args.size), progress=lambda i: print(f"  replicate {i + 1}/{args.replicates}", file=sys.stderr))
    rows = summarize(out)
    r = args.replicates
    lo, hi = np.sqrt(stats.chi2.ppf([0.025, 0.975], r - 1) / (r - 1))
    print(f"{r} replicates of {args.size}×{args.size}, {time.perf_counter() - t0:.0f} s; an honest SE gives std(z) in [{lo:.2f}, {hi:.2f}] (95 %)")
    print(f"{'ISO':>5} {'figure':<13} {'ch':>2} {'truth':>9} {'mean':>9} {'spread/SE':>9} {'std z':>6} {'mean z':>6} {'cover':>5}")
    for row in rows:
        ch = "" if row["channel"] < 0 else str(row["channel"])
        print(f"{row['iso']:>5g} {row['figure']:<13} {ch:>2} {row['truth']:>9.4g} {row['mean']:>9.4g} {row['spread_over_se']:>9.2f} "
              f"{row['std_z']:>6.2f} {row['mean_z']:>+6.2f} {row['cover95']:>5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
