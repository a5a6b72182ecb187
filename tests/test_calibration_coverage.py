"""Honest uncertainties (issue 7 item 6): over replicate captures of one sensor, the 95 % intervals of K, read σ,
row σ, λ, DSNU and PRNU each cover the truth in at least 90 % of the replicates."""

import math

import numpy as np
import pytest
from scipy import stats

from noisesim.calibration.pipeline import calibrate
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames
from noisesim.cfa import CFA
from noisesim.params import FixedPatternMaps, NoiseParams, Sensor

SENSOR = Sensor("RGGB", 14, (512,) * 4, 16383)
SHAPE = (96, 96)
P = NoiseParams(3.06, "tukey", 3.92, 0.10, 2.04, 1.0, 0.0, (0.5, 0.0, -0.3, 0.2))
REPLICATES = 20


@pytest.mark.slow
def test_95_percent_intervals_cover_the_truth_over_replicate_captures():
    g = np.random.default_rng(1)
    maps = FixedPatternMaps(np.zeros(SHAPE, np.float32), g.normal(0, 1.0, SHAPE).astype(np.float32),
                            prnu=g.normal(0, 0.008, SHAPE).astype(np.float32))
    cfa = CFA("RGGB")
    # the sensor's realized fixed pattern is the truth (one unit, replicate captures of it)
    dsnu_true = [float(x.std()) for x in cfa.pack(maps.dark_shading_b_dn)]
    prnu_true = [float(x.std()) for x in cfa.pack(maps.prnu)]
    truth = {"K": P.gain_k_dn_per_e, "read σ": P.tukey_scale_dn * math.sqrt(stats.tukeylambda.var(P.tukey_lambda)),
             "row σ": P.row_sigma_dn, "λ": P.tukey_lambda}
    cover = {k: [] for k in (*truth, "DSNU", "PRNU")}
    for i in range(REPLICATES):
        frames = synthetic_frames({3200: P}, SENSOR, SHAPE, SyntheticSpec(n_darks=16), maps=maps, rng=100 + i)
        r = calibrate(frames, "A B", fidelity=False).iso_results[0]
        for k, e in (("K", r.gain_k_dn_per_e), ("read σ", r.read_sigma_dn), ("row σ", r.row_sigma_dn), ("λ", r.tukey_lambda)):
            cover[k].append(e.contains(truth[k]))
        cover["DSNU"] += [e.contains(t) for e, t in zip(r.dsnu_dn, dsnu_true)]
        cover["PRNU"] += [e.contains(t) for e, t in zip(r.prnu, prnu_true)]
    rates = {k: float(np.mean(v)) for k, v in cover.items()}
    assert all(v >= 0.9 for v in rates.values()), rates
