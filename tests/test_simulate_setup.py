"""simulate()'s Python-side setup (noisesim.noise): the shortcuts it takes per call give the same numbers
as the plain definitions they replace."""

from __future__ import annotations

import numpy as np
import pytest

from noisesim.noise import _phase_row_normals, simulate
from noisesim.params import NoiseComponents, NoiseParams, Sensor
from noisesim.rng import STREAM_ROW, key_from_seed, line_normals


@pytest.mark.parametrize("h, oy, p, frame, seed", [(256, 0, 2, 0, 1), (7, 6, 4, 3, 2**40), (1, 2**20, 2, 1, 0)])
def test_phase_row_normals_are_line_normals_per_phase(h, oy, p, frame, seed):
    key = key_from_seed(seed)
    ref = np.stack([line_normals(h, oy, ph, line_is_row=True, frame=frame, stream=STREAM_ROW, key=key) for ph in range(p)], axis=1)
    got = _phase_row_normals(h, oy, p, frame, key)
    assert got.shape == (h, p) and got.dtype == np.float64
    assert got.tobytes() == ref.tobytes()


def test_per_channel_row_noise_still_differs_between_phases_and_matches_numpy_backend():
    sensor = Sensor(cfa="RGGB", black_level_dn=512.0, white_level_dn=16383.0)
    params = NoiseParams(gain_k_dn_per_e=2.0, read_model="gaussian", read_sigma_dn=0.0, row_sigma_dn=5.0)
    comps = NoiseComponents(shot=False, read=False, column=False, quantize=False, dither=False, row_per_channel=True)
    clean = np.full((64, 64), 0.25, np.float32)
    a = simulate(clean, params, sensor, components=comps, rng=3, output_unit="dn")
    b = simulate(clean, params, sensor, components=comps, rng=3, output_unit="dn", backend="numpy")
    assert a.tobytes() == b.tobytes()
    # row noise only: each row is constant within a phase, and the two column phases draw their own values
    assert np.ptp(a[:, 0::2], axis=1).max() == 0 and np.ptp(a[:, 1::2], axis=1).max() == 0
    assert not np.array_equal(a[:, 0], a[:, 1])
