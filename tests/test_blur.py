"""Blur kernels (noisesim.blur): normalization, geometry, files, the --blur spec, and blur-before-noise."""

import math

import numpy as np
import pytest
from scipy import ndimage

from noisesim import blur
from noisesim.errors import InputFileError, ParameterError, ShapeError


def moments(k):
    """Centroid (x, y) and covariance [[xx, xy], [xy, yy]] of a kernel; x = columns, y = rows."""
    h, w = k.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    k = k.astype(np.float64) / k.sum()
    mx, my = (k * xx).sum(), (k * yy).sum()
    cxx = (k * (xx - mx) ** 2).sum()
    cyy = (k * (yy - my) ** 2).sum()
    cxy = (k * (xx - mx) * (yy - my)).sum()
    return (mx, my), np.array([[cxx, cxy], [cxy, cyy]])


def check_kernel(k):
    assert k.dtype == np.float32 and k.ndim == 2
    assert k.shape[0] % 2 == 1 and k.shape[0] == k.shape[1]
    assert np.all(k >= 0)
    assert float(k.sum(dtype=np.float64)) == pytest.approx(1.0, abs=1e-6)


# --- kernels -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: blur.gaussian_kernel(0.5),
        lambda: blur.gaussian_kernel(2.7),
        lambda: blur.anisotropic_gaussian_kernel(0.6, 3.0, 0.4),
        lambda: blur.defocus_kernel(0.3),
        lambda: blur.defocus_kernel(3.5),
        lambda: blur.motion_kernel(0, 1.0),
        lambda: blur.motion_kernel(1, 15.0),
    ],
)
def test_every_kind_sums_to_one_and_is_centred(make):
    k = make()
    check_kernel(k)
    (mx, my), _ = moments(k)
    c = (k.shape[0] - 1) / 2
    assert abs(mx - c) < 0.51 and abs(my - c) < 0.51  # no image shift (motion: centroid within half a pixel)


def test_gaussian_second_moment_is_sigma_squared():
    for sigma in (0.8, 1.5, 3.0):
        _, cov = moments(blur.gaussian_kernel(sigma, size=blur._odd(10 * sigma + 1)))
        np.testing.assert_allclose(np.diag(cov), sigma**2, rtol=1e-3)
        assert abs(cov[0, 1]) < 1e-9


@pytest.mark.parametrize("theta", [0.0, math.pi / 6, math.pi / 4, math.pi / 2, 2.0])
def test_anisotropic_orientation(theta):
    sx, sy = 3.0, 1.0
    k = blur.anisotropic_gaussian_kernel(sx, sy, theta, size=31)
    _, cov = moments(k)
    # Principal axis along angle θ from the x axis (columns) towards +y (rows).
    c, s = math.cos(theta), math.sin(theta)
    expect = np.array([[c, -s], [s, c]]) @ np.diag([sx**2, sy**2]) @ np.array([[c, s], [-s, c]])
    np.testing.assert_allclose(cov, expect, atol=2e-3)
    w, v = np.linalg.eigh(cov)
    major = v[:, 1]
    assert abs(abs(major @ np.array([c, s])) - 1) < 1e-3


def test_anisotropic_theta_zero_is_wide_along_columns():
    k = blur.anisotropic_gaussian_kernel(3.0, 0.7, 0.0)
    mid = k.shape[0] // 2
    assert k[mid, :].sum() > 3 * k[:, mid].sum()  # the middle row carries more weight than the middle column


def test_defocus_disk_geometry():
    r = 4.0
    k = blur.defocus_kernel(r)
    _, cov = moments(k)
    # Uniform disk: E[x²] = r²/4 (anti-aliased edge: within 5 %).
    np.testing.assert_allclose(np.diag(cov), r * r / 4, rtol=0.05)
    c = k.shape[0] // 2
    assert k[c, c] == pytest.approx(k[c, c - 2])  # flat inside
    assert k[0, 0] == 0.0  # corners outside the disk


@pytest.mark.parametrize("length", [3.0, 8.0, 15.0, 30.0])
def test_motion_kernels_are_connected_and_deterministic(length):
    eight = np.ones((3, 3), dtype=int)
    for seed in range(20):
        k = blur.motion_kernel(seed, length)
        check_kernel(k)
        _, n = ndimage.label(k > 0, structure=eight)
        assert n == 1, f"seed {seed}: trajectory splits into {n} pieces"
        # The path covers roughly its length (not a blob): at least length/2 pixels are touched.
        assert (k > 0).sum() >= length / 2
    np.testing.assert_array_equal(blur.motion_kernel(3, length), blur.motion_kernel(3, length))
    assert not np.array_equal(blur.motion_kernel(3, length), blur.motion_kernel(4, length))


def test_kernel_parameter_errors():
    with pytest.raises(ParameterError):
        blur.gaussian_kernel(0.0)
    with pytest.raises(ParameterError):
        blur.gaussian_kernel(1.0, size=4)
    with pytest.raises(ParameterError):
        blur.defocus_kernel(-1)
    with pytest.raises(ParameterError):
        blur.motion_kernel(0, 0.5)
    with pytest.raises(ParameterError):
        blur.gaussian_kernel(40.0)  # beyond the maximum kernel size


# --- files ---------------------------------------------------------------------------------------------
def test_load_kernel_npy_png_tiff(tmp_path):
    import cv2

    k = np.zeros((4, 6), dtype=np.float64)  # even sizes: padded to odd
    k[1:3, 1:5] = [[1, 2, 3, 4], [4, 3, 2, 1]]
    np.save(tmp_path / "k.npy", k)
    k8 = (k / k.max() * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "k.png"), k8)
    k16 = (k / k.max() * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "k.tif"), k16)
    for name in ("k.npy", "k.png", "k.tif"):
        out = blur.load_kernel(tmp_path / name)
        check_kernel(out)
        assert out.shape == (7, 7)
        nz = out[out > 0]
        assert nz.max() / nz.min() == pytest.approx(4.0, rel=0.02)  # the weights survive the round trip


def test_load_kernel_errors_name_the_file(tmp_path):
    with pytest.raises(InputFileError, match="nope.npy"):
        blur.load_kernel(tmp_path / "nope.npy")
    np.save(tmp_path / "neg.npy", -np.ones((3, 3)))
    with pytest.raises(InputFileError, match="neg.npy"):
        blur.load_kernel(tmp_path / "neg.npy")
    np.save(tmp_path / "flat.npy", np.ones(5))
    with pytest.raises(InputFileError, match="flat.npy"):
        blur.load_kernel(tmp_path / "flat.npy")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputFileError, match="bad.png"):
        blur.load_kernel(tmp_path / "bad.png")
    (tmp_path / "k.txt").write_text("1")
    with pytest.raises(InputFileError, match="extension"):
        blur.load_kernel(tmp_path / "k.txt")


def test_pad_kernel():
    k = blur.gaussian_kernel(1.0)
    p = blur.pad_kernel(k, 15)
    assert p.shape == (15, 15) and p.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.unravel_index(p.argmax(), p.shape) == (7, 7)
    with pytest.raises(ShapeError):
        blur.pad_kernel(p, 9)


# --- spec ------------------------------------------------------------------------------------------------
def test_parse_blur_spec_full_example(tmp_path):
    np.save(tmp_path / "user.npy", np.ones((3, 3)))
    spec = blur.parse_blur_spec(
        f"gaussian:0.5-2.0, anisotropic:0.5-3,defocus:1-4,motion:5-15,file:{tmp_path / 'user.npy'},p=0.5"
    )
    assert spec.kinds == (("gaussian", 0.5, 2.0), ("anisotropic", 0.5, 3.0), ("defocus", 1.0, 4.0), ("motion", 5.0, 15.0))
    assert spec.kernel_files == (str(tmp_path / "user.npy"),)
    assert spec.p_none == 0.5
    assert blur.parse_blur_spec(spec.to_string()) == spec
    assert blur.parse_blur_spec("gaussian:1.5").kinds == (("gaussian", 1.5, 1.5),)
    assert blur.parse_blur_spec("gaussian:1-2,p=0.8").p_none == pytest.approx(0.2)
    assert blur.parse_blur_spec("gaussian:1-2,none=0.8").p_none == pytest.approx(0.8)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("box:1-2", "unknown kind 'box'"),
        ("gaussian", "expected KIND"),
        ("gaussian:2-1", "LOW <= HIGH"),
        ("gaussian:a-b", "range"),
        ("gaussian:1-2,p=1.5", r"\[0, 1\]"),
        ("gaussian:1-2,p=0.5,none=0.5", "twice"),
        ("gaussian:1-2,q=0.5", "unknown option"),
        ("motion:0.5-2", ">= 1"),
        ("file:", "missing file"),
    ],
)
def test_parse_blur_spec_errors(text, match):
    with pytest.raises(ParameterError, match=match):
        blur.parse_blur_spec(text)


def test_parse_blur_spec_missing_kernel_file(tmp_path):
    with pytest.raises(InputFileError, match="missing.npy"):
        blur.parse_blur_spec(f"file:{tmp_path / 'missing.npy'}")


def test_sample_kernel_probability_and_determinism():
    spec = blur.parse_blur_spec("gaussian:0.5-2,anisotropic:0.5-3,defocus:1-4,motion:5-15,none=0.3")
    rng = np.random.default_rng(0)
    n = 2000
    draws = [blur.sample_kernel(spec, rng) for _ in range(n)]
    frac_none = sum(d is None for d in draws) / n
    assert abs(frac_none - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    for d in draws:
        if d is not None:
            check_kernel(d)
    a = [blur.sample_kernel(spec, s) for s in range(10)]
    b = [blur.sample_kernel(spec, s) for s in range(10)]
    for x, y in zip(a, b):
        assert (x is None and y is None) or np.array_equal(x, y)
    assert blur.sample_kernel(None, 0) is None
    assert blur.sample_kernel(blur.BlurSpec(p_none=1.0), 0) is None


# --- application -------------------------------------------------------------------------------------------
def test_apply_blur_is_a_convolution_and_preserves_flat_fields():
    k = blur.motion_kernel(5, 9.0)
    img = np.zeros((41, 41, 3), dtype=np.float32)
    img[20, 20] = 1.0
    out = blur.apply_blur(img, k)
    r = k.shape[0] // 2
    # The impulse response of a convolution is the kernel itself (a correlation would flip it).
    np.testing.assert_allclose(out[20 - r : 21 + r, 20 - r : 21 + r, 1], k, atol=1e-7)
    flat = np.full((32, 32, 3), 0.3, dtype=np.float32)
    np.testing.assert_allclose(blur.apply_blur(flat, k), 0.3, atol=1e-6)  # sum 1 + reflected border
    np.testing.assert_array_equal(blur.apply_blur(flat, None), flat)
    assert blur.apply_blur(flat[..., 0], k).shape == (32, 32)


def _lag1_autocorrelation(r):
    """Mean lag-1 autocorrelation along rows and columns of each packed channel, and its standard error."""
    r = r - r.mean()
    num = (r[:, :-1] * r[:, 1:]).sum() + (r[:-1, :] * r[1:, :]).sum()
    n = r[:, :-1].size + r[:-1, :].size
    return num / n / r.var(), 1 / math.sqrt(n)


@pytest.mark.parametrize("textured", [False, True])
def test_blur_comes_before_noise_so_the_noise_is_white(textured):
    """A blurred clean patch plus engine noise: noisy − clean has no spatial correlation (lag-1 ≈ 0 within
    5 SE); blurring after the noise (the wrong order) gives a large correlation, so the test can fail."""
    from noisesim.cfa import CFA
    from noisesim.noise import simulate
    from noisesim.params import NoiseComponents, NoiseParams, Sensor
    from noisesim.sources import DeadLeavesSource

    cfa = CFA("RGGB")
    kernel = blur.gaussian_kernel(2.0)
    if textured:
        patch = DeadLeavesSource(cfa).sample_patch(7, 256, blur=blur.BlurSpec(kinds=(("gaussian", 2.0, 2.0),)))
        assert patch.blur_kernel is not None
        clean = patch.raw
    else:
        rgb = np.broadcast_to(np.array([0.3, 0.5, 0.2], dtype=np.float32), (256, 256, 3))
        clean = np.ascontiguousarray(blur.apply_blur(rgb, kernel)[..., 1])
    # Black level well above 0 and σ ≫ 1 DN: neither clipping nor rounding depends on the signal.
    sensor = Sensor(cfa, bit_depth=14, black_level_dn=1024, white_level_dn=16383)
    params = NoiseParams(gain_k_dn_per_e=2.0, read_model="gaussian", read_sigma_dn=4.0)
    comps = NoiseComponents.only("shot", "read")
    noisy = simulate(clean, params, sensor, ratio=4.0, components=comps, rng=3)
    resid = cfa.pack(noisy - clean / 4.0)  # noisy is the short exposure: its mean is clean / r
    rho, se = zip(*(_lag1_autocorrelation(ch) for ch in resid))
    for r_c, se_c in zip(rho, se):
        assert abs(r_c) < 5 * se_c, (rho, se)
    wrong = cfa.pack(blur.apply_blur(noisy - clean / 4.0, kernel))
    rho_wrong, se_wrong = _lag1_autocorrelation(wrong[0])
    assert rho_wrong > 50 * se_wrong


@pytest.mark.parametrize(
    "kernel",
    [blur.gaussian_kernel(2.0), blur.gaussian_kernel(0.7), blur.anisotropic_gaussian_kernel(3.0, 1.0, 0.5), blur.motion_kernel(0, 15.0)],
)
def test_apply_blur_fast_path_matches_direct_2d_filter(kernel):
    """Rank-1 kernels go through two 1-D passes; the result equals OpenCV's direct 2-D filtering."""
    import cv2

    img = np.random.default_rng(0).uniform(0, 1, (64, 80, 3)).astype(np.float32)
    ref = cv2.filter2D(img, cv2.CV_32F, np.ascontiguousarray(kernel[::-1, ::-1]), borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(blur.apply_blur(img, kernel), ref, atol=1e-6)


def test_max_kernel_size_bounds_every_sampled_kernel():
    spec = blur.parse_blur_spec("gaussian:0.5-2.0,anisotropic:0.5-3,defocus:1-4,motion:5-57")
    cap = spec.max_kernel_size
    assert cap <= blur.MAX_KERNEL_SIZE
    rng = np.random.default_rng(0)
    sizes = [blur.sample_kernel(spec, rng).shape[0] for _ in range(300)]
    assert max(sizes) <= cap
    # Motion: a straight path is the worst case (extent L/2 each side of the centroid).
    straight = blur.motion_kernel(0, 57.0, inertia=1.0, shake=0.0)
    assert straight.shape[0] <= blur.default_kernel_size("motion", 57.0)
    assert blur.BlurSpec(p_none=1.0).max_kernel_size == 1
    with pytest.raises(ParameterError, match="maximum"):
        blur.parse_blur_spec("gaussian:1-12")
    with pytest.raises(ParameterError, match="maximum"):
        blur.parse_blur_spec("motion:5-80")
