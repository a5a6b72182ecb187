"""Clean sources (noisesim.sources): dead leaves, sRGB image folders, raw folders, the open_source façade."""

import logging
import pickle

import numpy as np
import pytest

from noisesim import isp, sources
from noisesim.blur import BlurSpec
from noisesim.cfa import BAYER_PATTERNS, CFA
from noisesim.errors import CFAError, DatasetError, InputFileError, ParameterError

cv2 = pytest.importorskip("cv2")


# --- dead leaves ---------------------------------------------------------------------------------------------
def test_dead_leaves_is_deterministic_from_the_seed():
    a = sources.render_dead_leaves(5, 64, 96)
    b = sources.render_dead_leaves(np.random.default_rng(5), 64, 96)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 96, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert not np.array_equal(a, sources.render_dead_leaves(6, 64, 96))
    src = sources.DeadLeavesSource("GRBG")
    p1, p2 = src.sample_patch(9, 64), src.sample_patch(9, 64)
    np.testing.assert_array_equal(p1.raw, p2.raw)
    assert p1.isp == p2.isp and p1.source_index == -1


def test_dead_leaves_out_buffer_and_source_reuse():
    buf = np.full((64, 96, 3), -1.0, np.float32)
    got = sources.render_dead_leaves(5, 64, 96, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf, sources.render_dead_leaves(5, 64, 96))
    with pytest.raises(ParameterError, match="out must be"):
        sources.render_dead_leaves(5, 64, 96, out=np.empty((64, 96, 3), np.float64))
    src = sources.DeadLeavesSource("RGGB")
    a = src.sample_patch(1, 64)
    b = src.sample_patch(2, 64)  # the reused render buffer does not leak into earlier patches
    np.testing.assert_array_equal(a.raw, sources.DeadLeavesSource("RGGB").sample_patch(1, 64).raw)
    assert not np.array_equal(a.raw, b.raw)
    assert pickle.loads(pickle.dumps(src))._buffer is None


def test_disc_hash_matches_splitmix64():
    """The counter-based disc uniforms are SplitMix64 outputs (checked against plain Python integers)."""
    def splitmix(z):
        m = (1 << 64) - 1
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & m
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & m
        return (z ^ (z >> 31)) >> 11

    key = 0xDEADBEEF12345678
    for i, j in ((0, 0), (1, 17), (12345, 3)):
        z = (key + (i * 18 + j + 1) * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
        assert sources._disc_uniform(np.uint64(key), i, j) == splitmix(z) / 2.0**53


@pytest.mark.parametrize("alpha", [3.0, 2.5])
def test_dead_leaves_radii_follow_the_power_law(alpha):
    """The radii the renderer draws (its own counter-based draws) follow p(r) ∝ r^−alpha on [r_min, r_max]:
    KS against the exact CDF, n = 20000 (critical D at p = 0.001 is 1.95/√n = 0.014); the same draws are
    far from the law of a neighbouring exponent (the test can fail)."""
    from scipy import stats

    r_min, r_max, n = 2.0, 512.0, 20000
    a1 = 1.0 - alpha
    lo, hi = r_min**a1, r_max**a1
    key = np.uint64(0x0123456789ABCDEF)
    r = np.array([sources._disc_radius(key, i, lo, hi, 1.0 / a1) for i in range(n)])
    assert r.min() >= r_min and r.max() <= r_max

    def cdf(x, a=alpha):
        b = 1.0 - a
        return (np.asarray(x) ** b - r_min**b) / (r_max**b - r_min**b)

    assert stats.kstest(r, cdf).pvalue > 1e-3
    assert stats.kstest(r, lambda x: cdf(x, alpha + 0.25)).pvalue < 1e-6
    # the compiled and the reference radius agree
    assert sources._disc_radius_python(key, 7, lo, hi, 1.0 / a1) == pytest.approx(r[7], rel=1e-15)


def test_dead_leaves_numba_kernel_matches_python_reference():
    kw = dict(smooth_sigma=0.0)
    ref = sources.render_dead_leaves(3, 40, 48, use_numba=False, **kw)
    fast = sources.render_dead_leaves(3, 40, 48, use_numba=True, **kw)
    np.testing.assert_allclose(fast, ref, atol=1e-6)


def _spectrum_slope(images):
    n = images[0].shape[0]
    win = np.outer(np.hanning(n), np.hanning(n))
    power = 0.0
    for im in images:
        lum = im @ np.array([0.2126, 0.7152, 0.0722])
        power = power + np.abs(np.fft.fft2((lum - lum.mean()) * win)) ** 2
    f = np.fft.fftfreq(n)
    fr = np.hypot(*np.meshgrid(f, f))
    edges = np.geomspace(2 / n, 0.25, 12)
    idx = np.digitize(fr, edges)
    pm = np.array([power[idx == i].mean() for i in range(1, len(edges))])
    centres = np.sqrt(edges[1:] * edges[:-1])
    return np.polyfit(np.log(centres), np.log(pm), 1)[0]


def test_dead_leaves_has_a_natural_power_spectrum():
    """Natural images have power ∝ 1/f^(2±0.3) (van der Schaaf & van Hateren 1996); dead leaves with
    r⁻³ radii should too. A flat-colour or white-noise source would give 0, a blurry one ≪ −3."""
    slope = _spectrum_slope([sources.render_dead_leaves(s, 256, 256) for s in range(6)])
    assert -2.4 < slope < -1.6, slope
    noise = np.random.default_rng(0).uniform(0, 1, (2, 256, 256, 3))
    assert _spectrum_slope(list(noise)) > -0.5  # the measurement can tell the difference


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG", "QUAD_BGGR"])
def test_dead_leaves_patch_pipeline(pattern):
    src = sources.open_source("builtin", cfa=pattern)
    assert isinstance(src, sources.DeadLeavesSource)
    p = src.sample_patch(1, 64, blur=BlurSpec(kinds=(("defocus", 2.0, 2.0),)))
    assert p.raw.shape == (64, 64) and p.raw.dtype == np.float32
    assert p.rgb_linear.shape == (64, 64, 3)
    assert 0.0 <= p.raw.min() and p.raw.max() <= 1.0
    np.testing.assert_array_equal(p.raw, isp.mosaic(p.rgb_linear, pattern))  # mosaic comes last
    assert p.blur_kernel is not None and p.blur_kernel.sum() == pytest.approx(1.0, abs=1e-6)
    assert isinstance(p.isp, isp.ISPMeta)
    with pytest.raises(ParameterError, match="multiple"):
        src.sample_patch(0, 66 if CFA(pattern).is_quad else 63)


def test_card_matrix_is_used():
    m = np.array([[1.5, -0.3, -0.2], [-0.2, 1.4, -0.2], [0.0, -0.5, 1.5]])
    p = sources.DeadLeavesSource("RGGB", cam2rgb=m).sample_patch(0, 32)
    assert p.isp.ccm_source == "card"
    np.testing.assert_allclose(p.isp.cam2rgb_matrix, m)


# --- image folders -----------------------------------------------------------------------------------------------
def _write_rgb(path, rgb_int):
    """Write an integer RGB image with OpenCV (which wants BGR)."""
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb_int[..., ::-1]))


@pytest.mark.parametrize(
    "name, dtype, scale", [("a.png", np.uint8, 255), ("b.png", np.uint16, 65535), ("c.tif", np.uint16, 65535), ("d.tiff", np.uint8, 255)]
)
def test_read_srgb_image_channel_order_and_depth(tmp_path, name, dtype, scale):
    rgb = np.zeros((8, 10, 3), dtype=dtype)
    rgb[..., 0] = int(0.8 * scale)  # red
    rgb[..., 1] = int(0.4 * scale)
    rgb[..., 2] = int(0.1 * scale)  # blue
    _write_rgb(tmp_path / name, rgb)
    img = sources.read_srgb_image(tmp_path / name)
    assert img.shape == (8, 10, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img[0, 0], rgb[0, 0] / scale, atol=1e-6)
    assert sources._image_size(tmp_path / name) == (8, 10)


def test_read_jpeg_and_grey(tmp_path):
    rgb = np.zeros((16, 24, 3), dtype=np.uint8)
    rgb[..., 0] = 220
    _write_rgb(tmp_path / "x.jpg", rgb)
    img = sources.read_srgb_image(tmp_path / "x.jpg")
    assert img[8, 8, 0] > 0.8 and img[8, 8, 2] < 0.1  # red stays red
    assert sources._image_size(tmp_path / "x.jpg") == (16, 24)
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 6), 128, np.uint8))
    g = sources.read_srgb_image(tmp_path / "g.png")
    assert g.shape == (5, 6, 3) and np.allclose(g, 128 / 255)


def test_corrupt_image_error_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputFileError, match="broken.png"):
        sources.read_srgb_image(tmp_path / "broken.png")


def test_image_folder_source_recursive_and_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    paths = [tmp_path / "z.png", tmp_path / "sub" / "a.tif", tmp_path / "sub" / "deeper" / "m.jpg"]
    for p in paths:
        _write_rgb(p, rng.integers(0, 256, (70, 90, 3)).astype(np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    src = sources.open_source(tmp_path, cfa="BGGR")
    assert isinstance(src, sources.ImageFolderSource) and len(src) == 3
    assert [p.name for p in src.files] == ["a.tif", "m.jpg", "z.png"]  # sorted by relative path
    seen = set()
    for s in range(30):
        patch = src.sample_patch(s, 32)
        seen.add(patch.source_index)
        assert patch.raw.shape == (32, 32)
        y0, x0 = patch.origin
        assert 0 <= y0 <= 70 - 32 and 0 <= x0 <= 90 - 32
    assert seen == {0, 1, 2}
    a, b = src.sample_patch(4, 32), src.sample_patch(4, 32)
    np.testing.assert_array_equal(a.raw, b.raw)
    # A fresh source object (another worker) gives the same patch for the same seed.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(src)).sample_patch(4, 32).raw, a.raw)


def test_image_crop_is_unprocessed_from_the_right_pixels(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 65536, (48, 40, 3)).astype(np.uint16)
    _write_rgb(tmp_path / "im.png", rgb)
    src = sources.ImageFolderSource(tmp_path, "RGGB")
    p = src.sample_patch(2, 16)
    y0, x0 = p.origin
    crop = rgb[y0 : y0 + 16, x0 : x0 + 16].astype(np.float32) / 65535
    assert p.rgb_linear is None  # no blur: unprocess and mosaic are fused
    np.testing.assert_allclose(p.raw, isp.mosaic(isp.unprocess(crop, p.isp), "RGGB"), atol=1e-6)


def test_small_images_are_skipped_with_a_warning(tmp_path, caplog):
    _write_rgb(tmp_path / "big.png", np.zeros((64, 64, 3), np.uint8))
    _write_rgb(tmp_path / "small.png", np.zeros((20, 80, 3), np.uint8))
    src = sources.ImageFolderSource(tmp_path, "RGGB")
    with caplog.at_level(logging.WARNING, logger="noisesim.sources"):
        idx = {src.sample_patch(s, 32).source_index for s in range(10)}
    assert idx == {0}  # big.png only
    assert any("small.png" in r.getMessage() and "skipping 1 of 2" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="noisesim.sources"):
        with pytest.raises(DatasetError, match=str(tmp_path.name)):
            src.sample_patch(0, 128)  # nothing is large enough
    assert not caplog.records  # the error alone: a 'skipping 2 of 2' line before it said the same twice


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        sources.open_source(tmp_path / "empty", cfa="RGGB")
    with pytest.raises(DatasetError, match="empty"):
        sources.ImageFolderSource(tmp_path / "empty", "RGGB")
    with pytest.raises(InputFileError, match="missing"):
        sources.open_source(tmp_path / "missing", cfa="RGGB")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(InputFileError, match="not a folder"):
        sources.open_source(tmp_path / "f.png", cfa="RGGB")


def test_mixed_folder_is_refused(tmp_path):
    _write_rgb(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.dng").write_bytes(b"")
    with pytest.raises(DatasetError, match="mixes"):
        sources.open_source(tmp_path, cfa="RGGB")


# --- raw folders -------------------------------------------------------------------------------------------------
SITE_VALUE = {"R": 1000, "G": 2000, "B": 3000}


def _raw_with_site_values(pattern, h, w):
    """A mosaic whose value says the colour and the site: R 1000, G1 2000, G2 2001, B 3000 (+ row index)."""
    tile = np.array([[SITE_VALUE[pattern[0]], SITE_VALUE[pattern[1]]], [SITE_VALUE[pattern[2]], SITE_VALUE[pattern[3]]]])
    tile = tile + np.array([[0, 0], [1, 1]]) * (tile == 2000)  # second green row: 2001
    return np.tile(tile, (h // 2, w // 2)).astype(np.uint16)


@pytest.fixture
def dng_folder(tmp_path):
    dng = pytest.importorskip("noisesim.dng")
    pytest.importorskip("rawpy")
    folder = tmp_path / "raws"
    folder.mkdir()
    raw = _raw_with_site_values("RGGB", 40, 48)
    dng.write_dng(folder / "long.dng", raw, cfa="RGGB", black_level_dn=(100, 110, 120, 130), white_level_dn=16000)
    return folder


@pytest.mark.parametrize("want", BAYER_PATTERNS)
def test_raw_folder_source_keeps_cfa_phase(dng_folder, want):
    src = sources.open_source(dng_folder, cfa=want)
    assert isinstance(src, sources.RawFolderSource)
    black = {1000: 100, 2000: 110, 2001: 120, 3000: 130}  # per site of the RGGB file
    for s in range(8):
        p = src.sample_patch(s, 16)
        assert p.raw.shape == (16, 16) and p.isp is None and p.source_index == 0
        y0, x0 = p.origin
        assert CFA("RGGB").shifted(y0, x0).pattern == want
        for y in range(2):
            for x in range(2):
                letter = want[2 * y + x]
                vals = p.raw[y::2, x::2]
                # Invert the normalization to find which site the pixel came from.
                dn_candidates = [v for v in black if (v // 1000) * 1000 == SITE_VALUE[letter]]
                ok = any(np.allclose(vals, (v - black[v]) / (16000 - black[v]), atol=1e-6) for v in dn_candidates)
                assert ok, (want, letter, vals[0, 0])


def test_raw_folder_source_with_blur_and_errors(dng_folder, caplog):
    src = sources.RawFolderSource(dng_folder, "GRBG")
    p = src.sample_patch(0, 16, blur=BlurSpec(kinds=(("gaussian", 1.0, 1.0),)))
    assert p.blur_kernel is not None and p.rgb_linear.shape == (16, 16, 3)
    np.testing.assert_array_equal(p.raw, isp.mosaic(p.rgb_linear, "GRBG"))
    with pytest.raises(CFAError, match="long.dng"):
        sources.RawFolderSource(dng_folder, "QUAD_RGGB").sample_patch(0, 16)
    with caplog.at_level(logging.WARNING, logger="noisesim.sources"), pytest.raises(DatasetError, match="raws"):
        src.sample_patch(0, 48)  # 40 rows < 48


def test_raw_folder_corrupt_file(tmp_path):
    pytest.importorskip("rawpy")
    (tmp_path / "bad.nef").write_bytes(b"garbage" * 10)
    with pytest.raises(InputFileError, match="bad.nef"):
        sources.RawFolderSource(tmp_path, "RGGB").sample_patch(0, 16)


class _FakeRaw:
    """A stand-in for rawpy.RawPy with a quad-Bayer layout (no quad DNG writer is available)."""

    def __init__(self, pattern16, img):
        lut = {"R": 0, "G": 1, "B": 2}
        tile = np.array([lut[c] for c in pattern16]).reshape(4, 4)
        import rawpy

        self.raw_colors_visible = np.tile(tile, (img.shape[0] // 4, img.shape[1] // 4))
        self.raw_pattern = tile
        self.raw_type = rawpy.RawType.Flat
        self.color_desc = b"RGBG"
        self.raw_image_visible = img
        self.black_level_per_channel = [64, 64, 64, 64]
        self.white_level = 1023

        class sizes:
            height, width = img.shape

        self.sizes = sizes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_quad_bayer_raw_phase_with_mocked_rawpy(tmp_path, monkeypatch):
    import rawpy

    (tmp_path / "q.dng").write_bytes(b"")
    letters = "RRGGRRGGGGBBGGBB"
    value = {"R": 100, "G": 500, "B": 900}
    img = np.tile(np.array([value[c] for c in letters]).reshape(4, 4), (8, 8)).astype(np.uint16)
    monkeypatch.setattr(rawpy, "imread", lambda path: _FakeRaw(letters, img))
    for want in ("QUAD_RGGB", "QUAD_BGGR", "QUAD_GBRG"):
        src = sources.RawFolderSource(tmp_path, want)
        p = src.sample_patch(3, 16)
        assert p.origin[0] % 2 == 0 and p.origin[1] % 2 == 0
        expect = isp.mosaic(np.broadcast_to(np.array([36, 436, 836]) / 959.0, (16, 16, 3)).astype(np.float32), want)
        np.testing.assert_allclose(p.raw, expect, atol=1e-6)
    with pytest.raises(CFAError, match="different CFA family"):
        sources.RawFolderSource(tmp_path, "RGGB").sample_patch(0, 8)


def test_unclipped_render_unprocesses_to_the_same_bits_as_the_clipped_one():
    # DeadLeavesSource renders with clip=False (one pass less): the 16-bit decode table must clamp values
    # beyond [0, 1] exactly as np.clip does, in the fused and in the two-step (blur) path
    meta = isp.sample_isp_meta(3)
    raw = sources.render_dead_leaves(11, 96, 96, clip=False, texture_probability=1.0)
    assert raw.min() < 0.0 or raw.max() > 1.0  # the overshoot exists, so the comparison tests something
    clipped = sources.render_dead_leaves(11, 96, 96, texture_probability=1.0)
    np.testing.assert_array_equal(np.clip(raw, 0.0, 1.0), clipped)
    assert isp.unprocess_mosaic(raw, meta, "RGGB").tobytes() == isp.unprocess_mosaic(clipped, meta, "RGGB").tobytes()
    assert isp.unprocess(raw, meta, lut=True).tobytes() == isp.unprocess(clipped, meta, lut=True).tobytes()


def test_dead_leaves_coverage_templates_are_not_shared_state():
    # the render copies the cached starting masks: a second render of the same seed is the same image
    a = sources.render_dead_leaves(4, 70, 130).copy()
    b = sources.render_dead_leaves(4, 70, 130)
    np.testing.assert_array_equal(a, b)
    bits = sources._coverage_template(70, 130)
    assert not bits.flags.writeable and sum(bin(int(v)).count("1") for v in bits.ravel()) == 70 * 130


def test_render_compiles_its_uniform_helper_once_not_per_literal_index():
    # _disc_uniform(key, i, j) was called with the literals j = 0 … 17, and numba compiled one function for
    # each literal (18 copies: ~1.4 s of a fresh environment's first render). One signature now.
    sources.render_dead_leaves(np.random.default_rng(0), 64, 64)
    assert len(sources._disc_uniform.signatures) <= 1
