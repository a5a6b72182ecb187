"""Inverse and forward ISP (noisesim.isp): curves, metadata, mosaic layout, OpenCV demosaic mapping, round trips."""

import os

import numpy as np
import pytest

from noisesim import isp
from noisesim.cfa import BAYER_PATTERNS, PATTERNS, CFA
from noisesim.errors import ParameterError, ShapeError


def smooth_image(seed, h=64, w=64, lo=0.05, hi=0.85):
    """A smooth sRGB test image: a few low-frequency cosines per channel, values in [lo, hi]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(3):
            fy, fx, ph = rng.uniform(0, 2.0), rng.uniform(0, 2.0), rng.uniform(0, 2 * np.pi)
            img[..., c] += np.cos(2 * np.pi * (fy * yy + fx * xx) + ph)
    img = (img - img.min()) / (img.max() - img.min())
    return (lo + (hi - lo) * img).astype(np.float32)


# --- transfer curves -------------------------------------------------------------------------------
def test_srgb_curves_known_values_and_inverse():
    # IEC 61966-2-1: 0.5 encoded → 0.214041 linear; the linear segment below 0.04045.
    assert float(isp.srgb_to_linear(np.float32(0.5))) == pytest.approx(0.2140411, abs=1e-6)
    assert float(isp.srgb_to_linear(np.float32(0.04))) == pytest.approx(0.04 / 12.92, rel=1e-6)
    x = np.linspace(0, 1, 10001, dtype=np.float32)
    np.testing.assert_allclose(isp.linear_to_srgb(isp.srgb_to_linear(x)), x, atol=2e-6)
    np.testing.assert_allclose(isp.srgb_to_linear(isp.linear_to_srgb(x)), x, atol=2e-6)


def test_tone_curve_inverse():
    y = np.linspace(0, 1, 10001, dtype=np.float32)
    np.testing.assert_allclose(isp.tone_curve(isp.inverse_tone_curve(y)), y, atol=3e-6)
    assert float(isp.inverse_tone_curve(np.float32(0.5))) == pytest.approx(0.5, abs=1e-7)
    # Smoothstep: 3x² − 2x³ at x = 0.25 is 0.15625.
    assert float(isp.tone_curve(np.float32(0.25))) == pytest.approx(0.15625, abs=1e-7)


# --- metadata ----------------------------------------------------------------------------------------
def test_sample_isp_meta_ranges_and_determinism():
    metas = [isp.sample_isp_meta(s) for s in range(200)]
    assert isp.sample_isp_meta(7) == isp.sample_isp_meta(7)
    assert isp.sample_isp_meta(7) != isp.sample_isp_meta(8)
    for m in metas:
        assert 1.9 <= m.red_gain <= 2.4 and 1.5 <= m.blue_gain <= 1.9
        assert m.ccm_source == "sampled"
        # White stays white: rows of cam2rgb sum to 1.
        np.testing.assert_allclose(m.cam2rgb_matrix.sum(axis=1), 1.0, atol=1e-9)
    # rgb_gain = 1 / N(0.8, 0.1): the mean of 1/rgb_gain over 200 draws is 0.8 within 5 SE.
    g = np.array([1 / m.rgb_gain for m in metas])
    assert abs(g.mean() - 0.8) < 5 * 0.1 / np.sqrt(len(g))


def test_sample_isp_meta_from_card_matrix():
    m = isp.sample_isp_meta(0, cam2rgb=[[2.0, 0.5, -0.5], [-0.2, 1.6, -0.4], [0.0, -0.6, 1.6]])
    assert m.ccm_source == "card"
    np.testing.assert_allclose(m.cam2rgb_matrix[0], [1.0, 0.25, -0.25])
    with pytest.raises(ShapeError):
        isp.sample_isp_meta(0, cam2rgb=np.eye(2))


def test_ispmeta_validation_and_dict_round_trip():
    m = isp.sample_isp_meta(1)
    assert isp.ISPMeta.from_dict(m.to_dict()) == m
    with pytest.raises(ParameterError, match="red_gain"):
        isp.ISPMeta(rgb_gain=1.0, red_gain=-1.0, blue_gain=1.0, cam2rgb=tuple(np.eye(3).ravel()))
    with pytest.raises(ParameterError, match="singular"):
        isp.ISPMeta(rgb_gain=1.0, red_gain=1.0, blue_gain=1.0, cam2rgb=(0.0,) * 9)
    with pytest.raises(ParameterError, match="ccm_source"):
        isp.ISPMeta(rgb_gain=1.0, red_gain=1.0, blue_gain=1.0, cam2rgb=tuple(np.eye(3).ravel()), ccm_source="x")


# --- unprocess / process -------------------------------------------------------------------------------
def _unclipped_mask(img, meta):
    """Pixels where neither unprocess nor process clips and the safe gains equal the plain gains."""
    cam = isp.srgb_to_linear(isp.inverse_tone_curve(img)).reshape(-1, 3) @ meta.rgb2cam_matrix.T
    inv = cam / meta.wb_gains
    ok = (cam.min(axis=1) >= 0) & (cam.max(axis=1) <= 1) & (inv.max(axis=1) <= 1)
    ok &= cam.mean(axis=1) <= 0.9  # below Brooks' highlight-preservation threshold
    return ok.reshape(img.shape[:2])


@pytest.mark.parametrize("seed", range(5))
def test_unprocess_then_process_rgb_is_identity_on_unclipped_pixels(seed):
    rng = np.random.default_rng(100 + seed)
    img = rng.uniform(0, 1, (64, 64, 3)).astype(np.float32)
    meta = isp.sample_isp_meta(seed)
    mask = _unclipped_mask(img, meta)
    assert mask.mean() > 0.3, "test image must have enough unclipped pixels to mean something"
    back = isp.process_rgb(isp.unprocess(img, meta), meta)
    # float32 arithmetic through asin/sin/pow and two 3×3 products: ~1e-6; 2e-5 leaves margin.
    np.testing.assert_allclose(back[mask], img[mask], atol=2e-5)
    # And the clipped pixels really differ somewhere (the mask is not vacuous).
    if (~mask).any():
        assert np.abs(back[~mask] - img[~mask]).max() > 1e-3


def test_unprocess_lut_path_equals_exact_path_on_16bit_and_8bit_grids():
    meta = isp.sample_isp_meta(3)
    rng = np.random.default_rng(0)
    for levels in (65535, 255):
        img = (rng.integers(0, levels + 1, (32, 32, 3)) / levels).astype(np.float32)
        np.testing.assert_allclose(isp.unprocess(img, meta, lut=True), isp.unprocess(img, meta), atol=1e-6)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_fused_unprocess_mosaic_equals_the_two_steps(pattern):
    img = smooth_image(7, 32, 48, lo=0.0, hi=1.0)
    img[:4, :4] = 1.0  # highlights take the safe-gain branch
    meta = isp.sample_isp_meta(3)
    want = isp.mosaic(isp.unprocess(img, meta, lut=True), pattern)
    got = isp.unprocess_mosaic(img, meta, pattern)
    assert got.shape == (32, 48) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    ref = np.empty_like(got)  # the plain-Python reference loop gives the same
    ktab = np.tile(CFA(pattern).color_index(), (1, 48 // CFA(pattern).period))
    isp._unprocess_mosaic_lut_python(img.astype(np.float32).reshape(32, 3 * 48), isp._decode_lut(),
                                     meta.rgb2cam_matrix.astype(np.float32), np.float32(0.9), ktab,
                                     (1.0 / meta.wb_gains).astype(np.float32)[ktab], *isp._decode_scratch(48), ref)
    np.testing.assert_allclose(ref, got, atol=1e-6)
    with pytest.raises(ShapeError, match="multiples"):
        isp.unprocess_mosaic(img[:31], meta, pattern)


def test_unprocess_keeps_white_white_highlight_preservation():
    meta = isp.sample_isp_meta(4)
    white = np.ones((4, 4, 3), dtype=np.float32)
    cam = isp.unprocess(white, meta)
    np.testing.assert_allclose(cam, 1.0, atol=1e-5)  # safe gains are 1 at full intensity
    np.testing.assert_allclose(isp.process_rgb(cam, meta), 1.0, atol=1e-5)
    # Just above the 0.9 threshold the safe gains lie between the plain inverse gains and 1.
    bright = np.full((4, 4, 3), 0.998, dtype=np.float32)
    linear_cam = isp.srgb_to_linear(isp.inverse_tone_curve(bright)) @ meta.rgb2cam_matrix.T.astype(np.float32)
    assert linear_cam.mean() > 0.9
    plain = linear_cam / meta.wb_gains
    cam = isp.unprocess(bright, meta)
    assert np.all(cam >= plain - 1e-6) and np.all(cam[..., 0] > plain[..., 0] * 1.01)
    assert np.all(cam <= np.minimum(linear_cam, 1.0) + 1e-6)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_full_round_trip_with_mosaic_and_demosaic(pattern):
    """process(mosaic(unprocess(img))) ≈ img for a smooth image on interior, unclipped pixels.

    Tolerance: the demosaic interpolates each missing colour from neighbours 1–2 px away; for this image
    (≤ 2 cycles per 64 px) the linear-interpolation error is ~(2π·2/64)²/8·A ≈ 1e-2·A per channel with
    A ≲ 0.3 in linear camera units, amplified ≲ 2× by the colour matrix and the curves, plus the 1/65535
    quantization of the OpenCV path: mean error < 3e-3, max < 2e-2. Quad Bayer's simple demosaic reaches
    for samples 2–3 px away (spread ~2.5× Bayer's, error ∝ spread²): mean < 1e-2, max < 5e-2.
    """
    cfa = CFA(pattern)
    mean_tol, max_tol = (1e-2, 5e-2) if cfa.is_quad else (3e-3, 2e-2)
    for seed in range(3):
        img = smooth_image(seed)
        meta = isp.sample_isp_meta(seed)
        raw = isp.mosaic(isp.unprocess(img, meta), cfa)
        back = isp.process(raw, meta, cfa)
        mask = _unclipped_mask(img, meta)
        mask[:4], mask[-4:], mask[:, :4], mask[:, -4:] = False, False, False, False
        assert mask.mean() > 0.3
        err = np.abs(back - img)[mask]
        assert err.mean() < mean_tol, err.mean()
        assert err.max() < max_tol, err.max()


# --- mosaic layout -----------------------------------------------------------------------------------------
def _expected_letter(pattern: str, y: int, x: int) -> str:
    """Colour at (y, x) read directly from the pattern name (independent of CFA.color_index)."""
    bayer = pattern[-4:]
    if pattern.startswith("QUAD_"):
        return bayer[2 * ((y % 4) // 2) + (x % 4) // 2]
    return bayer[2 * (y % 2) + (x % 2)]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_mosaic_puts_each_colour_where_the_pattern_says(pattern):
    h, w = 8, 12
    rgb = np.empty((h, w, 3), dtype=np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.1, 0.5, 0.9
    value = {"R": 0.1, "G": 0.5, "B": 0.9}
    raw = isp.mosaic(rgb, pattern)
    assert raw.shape == (h, w) and raw.dtype == np.float32
    for y in range(h):
        for x in range(w):
            assert raw[y, x] == pytest.approx(value[_expected_letter(pattern, y, x)]), (y, x)


def test_mosaic_accepts_16_letter_spelling_and_rejects_bad_shapes():
    rgb = np.random.default_rng(0).uniform(0, 1, (8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(isp.mosaic(rgb, "RRGGRRGGGGBBGGBB"), isp.mosaic(rgb, "QUAD_RGGB"))
    with pytest.raises(ShapeError):
        isp.mosaic(rgb[:6, :6], "QUAD_RGGB")
    with pytest.raises(ShapeError):
        isp.mosaic(rgb[..., :2], "RGGB")


@pytest.mark.parametrize("pattern", BAYER_PATTERNS + ("QUAD_RGGB", "QUAD_GBRG"))
def test_demosaic_flat_colour_comes_back_right(pattern):
    """A flat coloured image mosaicked in our (top-left) naming and demosaicked returns the same colour:
    this pins OpenCV's offset Bayer naming (our RGGB is OpenCV's BG)."""
    colour = np.array([0.2, 0.5, 0.8], dtype=np.float32)
    rgb = np.broadcast_to(colour, (16, 16, 3)).copy()
    for method in ("opencv", "bilinear"):
        out = isp.demosaic(isp.mosaic(rgb, pattern), pattern, method=method)
        np.testing.assert_allclose(out[2:-2, 2:-2], rgb[2:-2, 2:-2], atol=2e-5, err_msg=method)


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_process_flat_colour_through_the_whole_pipeline(pattern):
    img = np.broadcast_to(np.array([0.7, 0.4, 0.2], dtype=np.float32), (16, 16, 3)).copy()
    meta = isp.sample_isp_meta(11)
    back = isp.process(isp.mosaic(isp.unprocess(img, meta), pattern), meta, pattern)
    np.testing.assert_allclose(back[2:-2, 2:-2], img[2:-2, 2:-2], atol=1e-3)
    # A wrong mapping (e.g. treating the mosaic as another pattern) would swap red and blue.
    wrong = {"RGGB": "BGGR", "BGGR": "RGGB", "GRBG": "GBRG", "GBRG": "GRBG"}[pattern]
    bad = isp.process(isp.mosaic(isp.unprocess(img, meta), pattern), meta, wrong)
    assert np.abs(bad[8, 8] - img[8, 8]).max() > 0.05


def test_input_validation():
    meta = isp.sample_isp_meta(0)
    with pytest.raises(ShapeError, match="Got"):
        isp.unprocess(np.zeros((4, 4)), meta)
    with pytest.raises(ShapeError):
        isp.process(np.zeros((5, 4)), meta, "RGGB")
    with pytest.raises(ParameterError):
        isp.demosaic(np.zeros((4, 4)), "RGGB", method="magic")


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing is compiled without JIT")
def test_fused_lut_loops_are_compiled():
    """The per-pixel LUT loops run compiled: a broken decorator once left unprocess_mosaic as a pure-Python
    loop (~200× slower, half a second per 512² patch), with every value still right."""
    from numba.core.registry import CPUDispatcher

    for loop in (isp._unprocess_mosaic_lut_numba, isp._unprocess_lut_numba):
        assert isinstance(loop, CPUDispatcher), loop


def test_ispmeta_rgb2cam_is_the_inverse_computed_once_and_handed_out_as_copies():
    meta = isp.sample_isp_meta(8)
    a = meta.rgb2cam_matrix
    np.testing.assert_array_equal(a, np.linalg.inv(meta.cam2rgb_matrix))
    a[:] = 0.0  # a caller's copy: the cached inverse is untouched
    np.testing.assert_array_equal(meta.rgb2cam_matrix, np.linalg.inv(meta.cam2rgb_matrix))
    assert meta == isp.ISPMeta.from_dict(meta.to_dict())
    with pytest.raises(ParameterError, match="finite"):
        isp.ISPMeta(1.0, 2.0, 1.5, (1.0, 0, 0, 0, float("nan"), 0, 0, 0, 1.0))
    with pytest.raises(ParameterError, match="9 finite"):
        isp.ISPMeta(1.0, 2.0, 1.5, (1.0, 0.0))
    with pytest.raises(ParameterError, match="singular"):
        isp.ISPMeta(1.0, 2.0, 1.5, np.ones((3, 3)))
    with pytest.raises(ParameterError, match="rgb_gain"):
        isp.ISPMeta("x", 2.0, 1.5, np.eye(3))
