"""Capture hygiene (issue 7 item 7): duplicated files and flat 'pairs' that are not pairs."""

import shutil

import numpy as np
import pytest

from noisesim.calibration.pipeline import calibrate
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
from noisesim.params import NoiseParams, Sensor

SENSOR = Sensor("RGGB", 14, (512,) * 4, 16383)
P = {1600: NoiseParams(1.5, "tukey", 6.0, -0.04, 3.2, 0.8, 0.0)}
LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.1)


def test_byte_identical_copy_of_a_flat_is_used_once(tmp_path):
    """Before: a file manager's 'flat (1).dng' paired a frame with itself: K −10 %, a misleading warning."""
    frames = synthetic_frames(P, SENSOR, (96, 96), SyntheticSpec(n_darks=9, flat_levels=LEVELS), rng=3)
    write_capture_dng(frames, tmp_path)
    flats = sorted((tmp_path / "flats").rglob("*.dng"))
    src = flats[8]  # first frame of a mid-level pair
    copy = src.with_name(src.stem + " (1).dng")
    shutil.copyfile(src, copy)
    res = calibrate(tmp_path, "A B", fidelity=False)
    msg = [w for w in res.warnings if "byte-identical" in w]
    assert len(msg) == 1 and str(copy) in msg[0] and str(src) in msg[0], res.warnings
    k = res.iso_results[0].gain_k_dn_per_e
    assert abs(k.value - 1.5) < 5 * k.se and abs(k.value - 1.5) < 0.03 * 1.5, k


@pytest.mark.parametrize("level", [0, 2, 8])
def test_mismatched_flat_pair_is_detected_at_every_level(level):
    """Before: the check was skipped when μ ≤ 10·σ, so a 10 % brighter second frame at low signal got in."""
    spec = SyntheticSpec(n_darks=9, flat_levels=LEVELS)
    frames = synthetic_frames(P, SENSOR, (96, 96), spec, rng=4)
    brighter = synthetic_frames(P, SENSOR, (96, 96), SyntheticSpec(n_darks=0, flat_levels=tuple(v * 1.1 for v in LEVELS)), rng=5)
    name = f"l{level:02d}_0001"
    swap = next(f for f in brighter if f.path.endswith(name))
    frames = [swap.__class__(**{**f.__dict__, "loader": swap.loader}) if f.path.endswith(name) else f for f in frames]
    res = calibrate(frames, "A B", fidelity=False)
    msg = [w for w in res.warnings if "not a pair" in w]
    assert len(msg) == 1 and name in msg[0] and f"l{level:02d}_0000" in msg[0], res.warnings
    if level == 0:  # and true pairs are never flagged
        clean = calibrate(synthetic_frames(P, SENSOR, (96, 96), spec, rng=4), "A B", fidelity=False)
        assert not any("not a pair" in w for w in clean.warnings)
