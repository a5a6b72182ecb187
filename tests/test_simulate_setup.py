"""simulate()'s Python-side setup (noisesim.noise): the shortcuts it takes per call give the same numbers
as the plain definitions they replace."""

from __future__ import annotations

import numpy as np
import pytest

from noisesim.noise import simulate
from noisesim.params import NoiseComponents, NoiseParams, Sensor
from noisesim.rng import STREAM_ROW, key_from_seed, line_normals


@pytest.mark.parametrize("line_is_row", [True, False])
@pytest.mark.parametrize("h, oy, p, frame, seed", [(256, 0, 2, 0, 1), (7, 6, 4, 3, 2**40), (1, 2**20, 2, 1, 0)])
def test_line_normals_of_several_phases_are_line_normals_per_phase(h, oy, p, frame, seed, line_is_row):
    key = key_from_seed(seed)
    ref = np.stack([line_normals(h, oy, ph, line_is_row=line_is_row, frame=frame, stream=STREAM_ROW, key=key)
                    for ph in range(p)], axis=1)
    got = line_normals(h, oy, range(p), line_is_row=line_is_row, frame=frame, stream=STREAM_ROW, key=key)
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


def _tiles_by_arrays(cfa, sensor, params, k, ratio, input_unit, output_unit, components):
    """The level tiles as simulate() built them before (numpy on (p, p) tiles): the reference."""
    black = cfa.tile_values(sensor.black_level_dn)
    white = cfa.tile_values(sensor.white_level_dn)
    if input_unit == "normalized":
        offset, gain = np.zeros_like(black), (white - black) / (ratio * k)
    elif input_unit == "dn":
        offset, gain = black, np.full_like(black, 1.0 / (ratio * k))
    else:
        offset, gain = np.zeros_like(black), np.full_like(black, 1.0 / ratio)
    ble = cfa.tile_values(params.black_level_error_dn) if components.black_level_error else np.zeros_like(black)
    lo = black.copy() if components.clip_at_black else np.zeros_like(black)
    out_offset, out_scale = (np.zeros_like(black), np.ones_like(black)) if output_unit == "dn" else (black, 1.0 / (white - black))
    return np.stack([offset, gain, black + ble, lo, white, out_offset, out_scale])


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG", "QUAD_BGGR"])
@pytest.mark.parametrize("input_unit", ["normalized", "dn", "electrons"])
@pytest.mark.parametrize("output_unit", ["normalized", "dn"])
@pytest.mark.parametrize("ble_on, clip_at_black", [(True, True), (False, False)])
def test_level_tiles_equal_the_array_formulas(pattern, input_unit, output_unit, ble_on, clip_at_black):
    from noisesim.noise import _level_tiles

    sensor = Sensor(cfa=pattern, black_level_dn=(511.5, 512.0, 513.25, 510.0), white_level_dn=(16383.0, 16000.0, 16383.0, 15800.5))
    params = NoiseParams(gain_k_dn_per_e=1.7, black_level_error_dn=(-0.3, 0.2, 1.1, -1.4))
    comps = NoiseComponents(black_level_error=ble_on, clip_at_black=clip_at_black)
    cfa = sensor.cfa
    got = _level_tiles(cfa, sensor, params, 1.7, 137.0, input_unit, output_unit, comps)
    ref = _tiles_by_arrays(cfa, sensor, params, 1.7, 137.0, input_unit, output_unit, comps)
    assert got.shape == ref.shape == (7, cfa.period, cfa.period) and got.flags.c_contiguous
    assert got.tobytes() == ref.tobytes()


@pytest.mark.parametrize("index", [-1, 2**32, 2**63])
def test_frame_index_outside_the_counter_word_is_refused(index):
    """The index is one 32-bit word of the Philox counter: 2**32 was accepted (a word outside its range)."""
    from noisesim.errors import ParameterError

    with pytest.raises(ParameterError, match="frame_index"):
        simulate(np.zeros((8, 8), np.float32), NoiseParams(1.0), Sensor("RGGB", 12, 64, 4095), frame_index=index)
