"""The fused numba kernel against its plain-numpy reference, the RNG, and determinism.

These tests also run under NUMBA_DISABLE_JIT=1 (``test_kernel_logic_without_jit`` starts that run), so
the kernels' Python logic is exercised line by line, not only their compiled form.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import gammaln

from noisesim import kernels
from noisesim.noise import simulate
from noisesim.params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor
from noisesim.rng import key_from_seed, packed_words_np, philox4x32, philox4x32_np

NO_JIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"
# Small frames when the kernels run as plain Python.
H, W = (16, 24) if NO_JIT else (96, 128)


# Random123's known-answer vectors for Philox4x32-10 (kat_vectors): (counter, key) → output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    assert tuple(int(v) for v in philox4x32_np(*ctr, *key)) == expected
    got = philox4x32(*(np.uint64(c) for c in ctr), np.uint64(key[0]), np.uint64(key[1]))
    assert tuple(int(v) for v in got) == expected


def test_key_from_seed():
    assert key_from_seed(7) == key_from_seed(np.random.SeedSequence(7))
    assert key_from_seed(7) != key_from_seed(8)
    assert key_from_seed(np.random.default_rng(3)) == key_from_seed(np.random.default_rng(3))
    with pytest.raises(TypeError):
        key_from_seed("7")
    with pytest.raises(ValueError):
        key_from_seed(-1)


def test_elementary_functions_match_numpy():
    """The branch-free polynomials the kernel uses are accurate to ~1e-14 relative."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(1e-12, 1.0, 20000), 10.0 ** rng.uniform(-300, 300, 20000)])
    assert np.max(np.abs(kernels.log_numpy(x) - np.log(x)) / np.maximum(np.abs(np.log(x)), 1.0)) < 1e-14
    u = rng.uniform(0, 1, 20000)
    assert np.max(np.abs(kernels.log_numpy(u) / np.log(u) - 1.0)) < 1e-14
    t = np.concatenate([rng.uniform(-30, 30, 20000), rng.uniform(-1e-8, 1e-8, 1000)])
    assert np.max(np.abs(kernels.exp_numpy(t) / np.exp(t) - 1.0)) < 1e-14
    a = rng.uniform(0, np.pi, 20000)
    assert np.max(np.abs(kernels.cos_numpy(a) - np.cos(a))) < 1e-14
    # float32 forms for the Tukey quantile: within a few float32 ulps
    u32 = rng.uniform(0, 1, 20000).astype(np.float32)
    assert np.max(np.abs(kernels.log32_numpy(u32) / np.log(u32.astype(np.float64)) - 1.0)) < 5e-7
    t32 = rng.uniform(-30, 30, 20000).astype(np.float32)
    assert np.max(np.abs(kernels.expm1_32_numpy(t32) / np.expm1(t32.astype(np.float64)) - 1.0)) < 5e-7
    k = np.arange(0, 5000, dtype=np.float64)
    assert np.max(np.abs(kernels.log_factorial_numpy(k) - gammaln(k + 1)) / np.maximum(gammaln(k + 1), 1.0)) < 1e-14


def test_ptrs_try_matches_textbook_form():
    """The one-reciprocal PTRS try equals Hörmann's four-quotient form to rounding (μ from 10 to 1e6)."""
    rng = np.random.default_rng(5)
    lam = 10.0 ** rng.uniform(1, 6, 50000)
    uu = rng.uniform(-0.5, 0.5, lam.size)
    vv = rng.uniform(0, 1, lam.size)
    b = 0.931 + 2.53 * np.sqrt(lam)
    a = -0.059 + 0.02483 * b
    us = 0.5 - np.abs(uu)
    k_ref = np.floor((2 * a / us + b) * uu + lam + 0.43)
    vr_ref = 0.9277 - 3.6224 / (b - 2)
    arg_ref = vv * (1.1239 + 1.1328 / (b - 3.4)) / (a / us**2 + b)
    k, us_got, vr, arg = kernels._ptrs_try_math(lam, uu, vv)
    np.testing.assert_array_equal(us_got, us)
    np.testing.assert_allclose(vr, vr_ref, rtol=1e-14)
    np.testing.assert_allclose(arg, arg_ref, rtol=1e-14)
    assert np.mean(k != k_ref) < 1e-4  # only where the floor's argument is within rounding of an integer


def test_packed_stream_layout():
    """Packed streams: pixel column gx takes word gx mod 4 of the Philox block at column gx // 4."""
    gx = np.arange(3, 40, dtype=np.uint64)
    got = packed_words_np(gx, np.uint64(7), 2, 6, (11, 12))
    for x, word in zip(gx, got):
        assert word == philox4x32_np(x // 4, 7, 2, 6 << 16, 11, 12)[int(x) % 4]


def _case(name):
    """Parameter sets that together reach every branch of the kernel."""
    rng = np.random.default_rng(1)
    base = dict(gain_k_dn_per_e=1.3, tukey_lambda=-0.06, tukey_scale_dn=2.5, read_sigma_dn=3.0, row_sigma_dn=0.8,
                col_sigma_dn=0.4, black_level_error_dn=(0.3, -0.2, 0.1, 0.4), dark_current_e_per_s=2.0,
                exposure_s=0.5, iso=800.0)
    sensor = Sensor("RGGB", 14, 512, 16383)
    comps = NoiseComponents()
    maps = None
    ratio = 1.0
    # Signals spanning 0 … ~2000 e⁻: inversion, the μ = 10 boundary, PTRS, clipping.
    clean = (rng.uniform(0, 1, (H, W)) ** 4).astype(np.float32)
    clean[0, :8] = np.float32(10.0 * 1.3 / 15871.0)  # μ exactly at the algorithm switch
    clean[1, :4] = [0.0, -0.1, 1.0, 1.2]
    if name == "gaussian":
        base["read_model"] = "gaussian"
    elif name == "logistic":
        base["tukey_lambda"] = 0.0
    elif name == "positive_lambda_float_path":
        base["tukey_lambda"] = 0.149
        comps = NoiseComponents(quantize=False, row_per_channel=True, clip_at_black=True)
    elif name == "no_dither":
        comps = NoiseComponents(quantize=False, dither=False, clip=False)
    elif name == "grbg_maps":
        sensor = Sensor("GRBG", 12, (240, 256, 256, 250), (4000, 4095, 4095, 4000))
        hs, ws = H + 8, W + 8
        maps = FixedPatternMaps(
            dark_shading_k_dn_per_iso=rng.normal(0, 1e-3, (hs, ws)).astype(np.float32),
            dark_shading_b_dn=rng.normal(0, 2, (hs, ws)).astype(np.float32),
            prnu=rng.normal(0, 0.02, (hs, ws)).astype(np.float32),
            dark_current_e_per_s=rng.gamma(2, 1, (hs, ws)).astype(np.float32),
            hot_pixel_mask=rng.uniform(0, 1, (hs, ws)) < 0.01,
        )
        comps = NoiseComponents(hot_pixels=False)
        ratio = 3.0
    elif name == "quad_low_light":
        sensor = Sensor("QUAD_BGGR", 10, 64, 1023)
        ratio = 300.0
    elif name == "ptrs_minority_rows":
        # Dark rows with a share of bright pixels growing from 0 to all down the frame: below half, PTRS's
        # first round runs on its own list of pixels instead of the whole row (both must give these bytes).
        share = np.linspace(0.0, 1.0, H)[:, None]
        bright = rng.uniform(0, 1, (H, W)) < share
        clean = np.where(bright, rng.uniform(0.002, 0.2, (H, W)), rng.uniform(0, 6e-4, (H, W))).astype(np.float32)
    elif name == "shot_only_dark":
        comps = NoiseComponents.only("shot", "dark_current")
        clean[:] = 0
    return clean, NoiseParams(**base), sensor, comps, maps, ratio


CASES = ["tukey", "gaussian", "logistic", "positive_lambda_float_path", "no_dither", "grbg_maps", "quad_low_light", "ptrs_minority_rows", "shot_only_dark"]


@pytest.mark.parametrize("name", CASES)
def test_kernel_matches_numpy_reference(name):
    """Same inputs, same random words → the numba kernel and the numpy reference agree bit for bit."""
    clean, params, sensor, comps, maps, ratio = _case(name)
    origin = (4, 8) if maps is not None else (0, 0)
    kw = dict(ratio=ratio, components=comps, maps=maps, origin=origin, rng=11, output_unit="dn", frame_index=2)
    fast = simulate(clean, params, sensor, **kw)
    ref = simulate(clean, params, sensor, backend="numpy", **kw)
    assert fast.dtype == ref.dtype == np.float32
    np.testing.assert_array_equal(fast, ref)


def test_serial_and_parallel_drivers_agree():
    clean, params, sensor, comps, _, _ = _case("tukey")
    a = simulate(clean, params, sensor, rng=2, parallel=True)
    np.testing.assert_array_equal(a, simulate(clean, params, sensor, rng=2, parallel=False))


def test_crop_reproduces_full_frame():
    clean, params, sensor, comps, _, _ = _case("tukey")
    full = simulate(clean, params, sensor, rng=5)
    crop = simulate(clean[8:40, 16:48], params, sensor, rng=5, origin=(8, 16))
    # Row noise depends only on the global row, column noise on the global column: the crop matches.
    np.testing.assert_array_equal(crop, full[8:40, 16:48])


def test_seed_and_frame_index():
    clean, params, sensor, *_ = _case("tukey")
    a = simulate(clean, params, sensor, rng=3)
    np.testing.assert_array_equal(a, simulate(clean, params, sensor, rng=3))
    assert not np.array_equal(a, simulate(clean, params, sensor, rng=4))
    assert not np.array_equal(a, simulate(clean, params, sensor, rng=3, frame_index=1))


def test_components_have_independent_streams():
    """Switching row noise off leaves the pixel noise identical (each term has its own stream)."""
    clean, params, sensor, *_ = _case("tukey")
    comps = NoiseComponents(quantize=False, dither=False, clip=False, column=False)
    with_row = simulate(clean, params, sensor, rng=3, components=comps, output_unit="dn")
    without = simulate(clean, params, sensor, rng=3, components=NoiseComponents(quantize=False, dither=False, clip=False, column=False, row=False), output_unit="dn")
    diff = with_row - without
    # A pure per-row offset, up to float32 rounding of values below 2**14 DN (ulp ≤ 2**-10).
    np.testing.assert_allclose(diff, diff[:, :1] * np.ones((1, W)), atol=2 * 2.0**-9)


_DETERMINISM_SCRIPT = """
import hashlib, numpy as np, numba
from noisesim.noise import simulate
from noisesim.params import NoiseParams, Sensor
s = Sensor("RGGB", 14, 512, 16383)
p = NoiseParams(1.5, tukey_lambda=-0.04, tukey_scale_dn=3.2, row_sigma_dn=1.0, col_sigma_dn=0.5)
y, x = np.mgrid[0:{h}, 0:{w}]
clean = ((x * 7 + y * 13) % 101 / 100.0).astype(np.float32) ** 2
out = simulate(clean, p, s, ratio=20, rng=123)
print(numba.get_num_threads(), hashlib.sha256(out.tobytes()).hexdigest())
"""


@pytest.mark.skipif(NO_JIT, reason="thread counts do not apply without JIT")
def test_bit_identical_across_thread_counts():
    script = _DETERMINISM_SCRIPT.format(h=400, w=600)
    digests = {}
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        n, digest = out.stdout.split()
        assert n == threads
        digests[threads] = digest
    assert digests["1"] == digests["2"]


@pytest.mark.skipif(NO_JIT or os.environ.get("NOISESIM_NOJIT_CHILD") == "1", reason="this test starts the no-JIT run")
def test_kernel_logic_without_jit():
    """Run this file's kernel ≡ reference tests with NUMBA_DISABLE_JIT=1 (pure-Python kernels)."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", NOISESIM_NOJIT_CHILD="1")
    here = Path(__file__)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here), "-k", "reference or crop or seed or known"],
        env=env, capture_output=True, text=True, cwd=here.parent.parent,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert " passed" in res.stdout


def test_scratch_reuse_never_changes_a_result():
    """Each thread keeps its scratch rows for the next call of the same width: a result must not depend on
    what earlier calls (other scenes, widths, read models, maps) left in them."""
    clean, params, sensor, comps, maps, ratio = _case("grbg_maps")
    kw = dict(ratio=ratio, components=comps, maps=maps, rng=3, output_unit="dn", parallel=False)
    ref = simulate(clean, params, sensor, backend="numpy", **kw)
    for other in ("gaussian", "quad_low_light", "shot_only_dark", "tukey"):  # leave other values in the rows
        c2, p2, s2, comps2, maps2, r2 = _case(other)
        simulate(c2, p2, s2, ratio=r2, components=comps2, maps=maps2, rng=4, parallel=False)
        simulate(np.full_like(clean, 0.9), params, sensor, **kw)
        np.testing.assert_array_equal(simulate(clean, params, sensor, **kw), ref)
