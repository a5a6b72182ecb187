"""The torch noise model (noisesim.torch_noise) against theory and against the numpy engine.

The two implementations use different generators, so they are compared in distribution: per component,
mean and variance of flat fields, each against the closed form and against each other, with tolerances
of 5 standard errors computed from n (mean: σ/√n; variance: √((μ₄ − σ⁴)/n) from the sample's own fourth
moment, which is σ²·√(2/n) for Gaussian data).
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scipy import stats  # noqa: E402

from noisesim.cfa import CFA  # noqa: E402
from noisesim.errors import ParameterError, ShapeError  # noqa: E402
from noisesim.noise import simulate  # noqa: E402
from noisesim.params import NoiseComponents, NoiseParams, Sensor  # noqa: E402
from noisesim.torch_noise import simulate_torch, tukey_lambda_quantile  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_torch():
    """Calls without a generator draw from torch's global one: seed it so no statistical check is flaky."""
    torch.manual_seed(0)

SENSOR = Sensor("RGGB", bit_depth=14, black_level_dn=512, white_level_dn=16383)
RANGE = 16383 - 512
H = W = 256
N = 4  # torch frames per test → n = 262 144 pixels


def mean_var_se(x):
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    m = x.mean()
    v = x.var()
    m4 = ((x - m) ** 4).mean()
    return m, v, math.sqrt(v / n), math.sqrt(max(m4 - v * v, 0.0) / n)


def run_both(y, params, comps, ratio=1.0, seed=0):
    """Flat field y (normalized): numpy engine (N frames by frame_index) and torch (one batch of N), DN out."""
    clean = np.full((H, W), y, dtype=np.float32)
    np_out = np.stack(
        [simulate(clean, params, SENSOR, ratio=ratio, output_unit="dn", components=comps, rng=seed, frame_index=f) for f in range(N)]
    )
    g = torch.Generator().manual_seed(seed)
    t_out = simulate_torch(torch.from_numpy(clean)[None].repeat(N, 1, 1), params, SENSOR, ratio=ratio, components=comps, generator=g, output_unit="dn")
    return np_out, t_out.numpy()


def check_against(np_out, t_out, mean_theory, var_theory):
    stats_np = mean_var_se(np_out)
    stats_t = mean_var_se(t_out)
    for name, (m, v, se_m, se_v) in (("numpy", stats_np), ("torch", stats_t)):
        assert abs(m - mean_theory) < 5 * se_m, (name, m, mean_theory, se_m)
        assert abs(v - var_theory) < 5 * se_v, (name, v, var_theory, se_v)
    assert abs(stats_np[0] - stats_t[0]) < 5 * math.hypot(stats_np[2], stats_t[2])
    assert abs(stats_np[1] - stats_t[1]) < 5 * math.hypot(stats_np[3], stats_t[3])


FLOAT_PATH = dict(quantize=False, clip=False)  # dither U(−½, ½): variance + 1/12, no rounding bias


@pytest.mark.parametrize("mu_e", [0.5, 6.0, 158.7])  # inversion, small-λ and PTRS regimes of the numpy engine
def test_shot_noise(mu_e):
    k = 2.0
    ratio = 10.0
    y = mu_e * k * ratio / RANGE
    params = NoiseParams(gain_k_dn_per_e=k)
    np_out, t_out = run_both(y, params, NoiseComponents.only("shot", **FLOAT_PATH), ratio=ratio)
    check_against(np_out, t_out, 512 + k * mu_e, k * k * mu_e + 1 / 12)


@pytest.mark.parametrize("lam", [-0.04, 0.0, 0.149])
def test_tukey_read_noise(lam):
    scale = 3.0
    params = NoiseParams(gain_k_dn_per_e=1.0, read_model="tukey", tukey_lambda=lam, tukey_scale_dn=scale)
    np_out, t_out = run_both(0.1, params, NoiseComponents.only("read", **FLOAT_PATH))
    var_tl = stats.tukeylambda.var(lam) if lam != 0 else math.pi**2 / 3
    check_against(np_out, t_out, 512 + 0.1 * RANGE, scale * scale * var_tl + 1 / 12)
    # The shape, not just the variance: the fraction beyond 3 σ (heavy tails for λ < 0.14) agrees.
    sd = scale * math.sqrt(var_tl)
    tail = lambda x: np.mean(np.abs(x - (512 + 0.1 * RANGE)) > 3 * sd)  # noqa: E731
    p_theory = 2 * stats.tukeylambda.sf(3 * math.sqrt(var_tl), lam) if lam != 0 else 2 * stats.logistic.sf(3 * math.sqrt(var_tl))
    se = math.sqrt(p_theory * (1 - p_theory) / np_out.size)
    assert abs(tail(np_out) - p_theory) < 5 * se + 1e-4
    assert abs(tail(t_out) - p_theory) < 5 * se + 1e-4


def test_gaussian_read_noise():
    params = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=4.0)
    np_out, t_out = run_both(0.1, params, NoiseComponents.only("read", **FLOAT_PATH))
    check_against(np_out, t_out, 512 + 0.1 * RANGE, 16.0 + 1 / 12)


def test_tukey_quantile_matches_scipy_and_clamps():
    u = torch.tensor([1e-6, 0.1, 0.5, 0.9, 1 - 1e-6], dtype=torch.float64)
    for lam in (-0.3, -0.04, 0.0, 1e-13, 0.149, 0.5):
        np.testing.assert_allclose(tukey_lambda_quantile(u, lam).numpy(), stats.tukeylambda.ppf(u.numpy(), lam), rtol=1e-9, atol=1e-12)
    # λ = −0.5 has very heavy tails; a float32 uniform of exactly 0 must not produce inf.
    params = NoiseParams(gain_k_dn_per_e=1.0, read_model="tukey", tukey_lambda=-0.5, tukey_scale_dn=1.0)
    out = simulate_torch(torch.zeros(8, 256, 256), params, SENSOR, components=NoiseComponents.only("read", **FLOAT_PATH))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("per_channel", [False, True])
def test_row_noise(per_channel):
    row_sigma, read_sigma = 2.0, 1.0
    params = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=read_sigma, row_sigma_dn=row_sigma)
    comps = NoiseComponents.only("read", "row", row_per_channel=per_channel, **FLOAT_PATH)
    np_out, t_out = run_both(0.1, params, comps)
    for name, out in (("numpy", np_out), ("torch", t_out)):
        even, odd = out[:, :, 0::2].mean(axis=2).ravel(), out[:, :, 1::2].mean(axis=2).ravel()
        row_means = (even + odd) / 2
        n_rows = row_means.size
        pix_var = read_sigma**2 + 1 / 12
        if per_channel:  # each column phase has its own offset: row means average two of them
            expect = row_sigma**2 / 2 + pix_var / W
        else:
            expect = row_sigma**2 + pix_var / W
        v = row_means.var()
        assert abs(v - expect) < 5 * expect * math.sqrt(2 / n_rows), (name, v, expect)
        # Correlation of the two column phases' row means: 0 per channel, ≈ σ_row² / (σ_row² + 2σ²/W) otherwise.
        rho = np.corrcoef(even, odd)[0, 1]
        if per_channel:
            assert abs(rho) < 5 / math.sqrt(n_rows), (name, rho)
        else:
            assert rho > 0.95, (name, rho)


def test_column_noise():
    params = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=1.0, col_sigma_dn=1.5)
    np_out, t_out = run_both(0.1, params, NoiseComponents.only("read", "column", **FLOAT_PATH))
    for name, out in (("numpy", np_out), ("torch", t_out)):
        col_means = out.mean(axis=1).ravel()
        expect = 1.5**2 + (1.0 + 1 / 12) / H
        assert abs(col_means.var() - expect) < 5 * expect * math.sqrt(2 / col_means.size), name


def test_black_level_error_per_site_packed_input():
    ble = (0.5, -1.0, 2.0, 3.0)  # R, G1, G2, B of RGGB = packed channel order
    params = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=1.0, black_level_error_dn=ble)
    comps = NoiseComponents.only("read", "black_level_error", **FLOAT_PATH)
    cfa = CFA("RGGB")
    clean = np.full((H, W), 0.1, dtype=np.float32)
    np_out = cfa.pack(simulate(clean, params, SENSOR, output_unit="dn", components=comps, rng=1))
    packed = torch.from_numpy(cfa.pack(clean))[None].repeat(N, 1, 1, 1)
    t_out = simulate_torch(packed, params, SENSOR, components=comps, output_unit="dn", generator=torch.Generator().manual_seed(1))
    assert t_out.shape == (N, 4, H // 2, W // 2)
    base = 512 + 0.1 * RANGE
    for c in range(4):
        for name, x in (("numpy", np_out[c]), ("torch", t_out[:, c].numpy())):
            m, v, se_m, _ = mean_var_se(x)
            assert abs(m - base - ble[c]) < 5 * se_m, (name, c, m - base)


def test_quantization_and_clipping():
    params = NoiseParams(gain_k_dn_per_e=2.0, read_model="gaussian", read_sigma_dn=3.0)
    out = simulate_torch(torch.full((2, 64, 64), 0.3), params, SENSOR, output_unit="dn")
    assert torch.equal(out, torch.round(out))  # integer DN
    sat = simulate_torch(torch.full((2, 64, 64), 1.2), params, SENSOR)
    assert float(sat.max()) == 1.0 and float(sat.min()) == 1.0  # clipped at white, normalized 1
    dark = simulate_torch(torch.zeros(2, 64, 64), params.replace(black_level_error_dn=-20.0), SENSOR, output_unit="dn")
    assert float(dark.min()) >= 0 and float(dark.min()) < 512  # clipped at 0 DN by default, below black allowed
    ble3 = params.replace(black_level_error_dn=-3.0)  # about 84 % of pixels fall below black
    at_black = simulate_torch(
        torch.zeros(2, 64, 64), ble3, SENSOR, components=NoiseComponents(clip_at_black=True), output_unit="dn"
    )
    assert float(at_black.min()) == 512
    # The numpy engine clips the same way: same fraction of pixels at black (binomial SE).
    np_at = simulate(np.zeros((128, 128), np.float32), ble3, SENSOR,
                     components=NoiseComponents(clip_at_black=True), output_unit="dn", rng=0)  # fmt: skip
    f_np, f_t = np.mean(np_at == 512), float((at_black == 512).float().mean())
    assert 0.5 < f_np < 0.99
    assert abs(f_np - f_t) < 5 * math.sqrt(f_np * (1 - f_np) * (1 / np_at.size + 1 / at_black.numel()))


def test_full_model_per_sample_params_and_ratio():
    """A batch with one parameter record and one ratio per sample; each sample against theory and numpy."""
    plist = [
        NoiseParams(gain_k_dn_per_e=0.5, read_model="gaussian", read_sigma_dn=2.0, black_level_error_dn=1.0),
        NoiseParams(gain_k_dn_per_e=1.5, read_model="tukey", tukey_lambda=-0.04, tukey_scale_dn=3.2),
        NoiseParams(gain_k_dn_per_e=3.0, read_model="gaussian", read_sigma_dn=6.0, dark_current_e_per_s=5.0, exposure_s=0.5),
    ]
    ratios = torch.tensor([1.0, 50.0, 200.0])
    y = 0.4
    comps = NoiseComponents(row=False, column=False)
    t_out = simulate_torch(torch.full((3, H, W), y), plist, SENSOR, ratio=ratios, components=comps, output_unit="dn",
                           generator=torch.Generator().manual_seed(5)).numpy()  # fmt: skip
    for i, (p, r) in enumerate(zip(plist, ratios.tolist())):
        mu_e = y * RANGE / (r * p.gain_k_dn_per_e) + p.dark_current_e_per_s * p.exposure_s
        read_var = p.read_sigma_dn**2 if p.read_model == "gaussian" else p.tukey_scale_dn**2 * stats.tukeylambda.var(p.tukey_lambda)
        mean = 512 + p.gain_k_dn_per_e * mu_e + p.black_level_error_dn[0]
        var = p.gain_k_dn_per_e**2 * mu_e + read_var + 1 / 12  # rounding adds 1/12 when σ ≫ 1 DN
        np_out = simulate(np.full((H, W), y, np.float32), p, SENSOR, ratio=r, components=comps, output_unit="dn", rng=i)
        for name, x in (("numpy", np_out), ("torch", t_out[i])):
            m, v, se_m, se_v = mean_var_se(x)
            assert abs(m - mean) < 5 * se_m, (name, i, m, mean)
            assert abs(v - var) < 5 * se_v, (name, i, v, var)


def test_packed_and_mosaic_inputs_give_the_same_draws_and_generator_is_reproducible():
    cfa = CFA("GBRG")
    sensor = Sensor(cfa, bit_depth=12, black_level_dn=(64, 65, 66, 67), white_level_dn=4095)
    params = NoiseParams(gain_k_dn_per_e=1.0, read_model="tukey", tukey_lambda=0.1, tukey_scale_dn=2.0, row_sigma_dn=1.0)
    mosaic = torch.rand(2, 32, 48, generator=torch.Generator().manual_seed(0))
    packed = torch.stack([torch.from_numpy(cfa.pack(m.numpy())) for m in mosaic])
    a = simulate_torch(mosaic, params, sensor, generator=torch.Generator().manual_seed(3))
    b = simulate_torch(packed, params, sensor, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(np.stack([cfa.pack(x) for x in a.numpy()]), b.numpy())
    c = simulate_torch(mosaic, params, sensor, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)
    assert a.dtype == mosaic.dtype and a.device == mosaic.device


def test_input_errors():
    params = NoiseParams(gain_k_dn_per_e=1.0)
    with pytest.raises(ShapeError, match="Got"):
        simulate_torch(torch.zeros(3, 3, 4, 4), params, SENSOR)  # C = 3 is not a packed Bayer layout
    with pytest.raises(ShapeError):
        simulate_torch(torch.zeros(4, 4), params, SENSOR)
    with pytest.raises(ShapeError):
        simulate_torch(torch.zeros(1, 5, 4), params, SENSOR)
    with pytest.raises(ShapeError):
        simulate_torch(np.zeros((1, 4, 4)), params, SENSOR)
    with pytest.raises(ParameterError, match="one per sample"):
        simulate_torch(torch.zeros(3, 4, 4), [params, params], SENSOR)
    with pytest.raises(ParameterError, match=">= 1"):
        simulate_torch(torch.zeros(2, 4, 4), params, SENSOR, ratio=0.5)
    with pytest.raises(ShapeError):
        simulate_torch(torch.zeros(2, 4, 4), params, SENSOR, ratio=torch.ones(3))
    with pytest.raises(ParameterError):
        simulate_torch(torch.zeros(2, 4, 4), params, SENSOR, output_unit="electrons")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_device_generator():
    params = NoiseParams(gain_k_dn_per_e=2.0, read_model="tukey", tukey_lambda=0.149, tukey_scale_dn=0.7, row_sigma_dn=0.5)
    clean = torch.full((N, H, W), 0.05, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    out = simulate_torch(clean, params, SENSOR, ratio=4.0, output_unit="dn", generator=g)
    assert out.device.type == "cuda"
    mu_e = 0.05 * RANGE / (4.0 * 2.0)
    var = 4.0 * mu_e + 0.7**2 * stats.tukeylambda.var(0.149) + 0.5**2 + 1 / 12
    m, v, se_m, _ = mean_var_se(out.cpu().numpy())
    assert abs(m - (512 + 2.0 * mu_e)) < 5 * math.sqrt(se_m**2 + 0.5**2 / (N * H))  # row offsets add to the mean's SE
    assert abs(v - var) < 0.05 * var


# ---- issue 10 item 3: dither=False, half-up rounding, every switch, the nn.Module --------------------

import dataclasses  # noqa: E402

from noisesim.card import load_card  # noqa: E402
from noisesim.sampling import sample_params  # noqa: E402
from noisesim.torch_noise import CardParamSampler, NoiseParamsBatch, RawNoise  # noqa: E402

# Range 4096 DN, black 0: y = (j + ½) / 4096 is exact in float32, so D = j + ½ exactly (a rounding tie).
POW2 = Sensor("RGGB", bit_depth=13, black_level_dn=0, white_level_dn=4096)


def test_deterministic_model_matches_numpy_exactly_and_rounds_half_up():
    params = NoiseParams(gain_k_dn_per_e=1.0)
    ties = ((np.arange(64 * 64, dtype=np.float32) % 200) + 0.5) / 4096  # D = 0.5, 1.5, …, 199.5 DN
    clean = ties.reshape(64, 64)
    comps = NoiseComponents.only()  # nothing random: quantize and clip only
    ref = simulate(clean, params, POW2, output_unit="dn", components=comps, rng=0)
    out = simulate_torch(torch.from_numpy(clean)[None], params, POW2, components=comps, output_unit="dn")[0].numpy()
    np.testing.assert_array_equal(ref, np.floor(clean * 4096 + 0.5))  # the engine rounds half up …
    np.testing.assert_array_equal(out, ref)  # … and so does the twin (torch.round would give 0, 2, 2, 4, …)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_path_without_dither_is_exact(dtype):
    # quantize=False, dither=False: no quantization term at all, so a noise-free model is the affine map.
    params = NoiseParams(gain_k_dn_per_e=2.0, black_level_error_dn=(0.25, -0.5, 1.0, 0.0))
    clean = np.random.default_rng(0).random((32, 48)).astype(np.float32) * 1.2 - 0.1
    for clip in (False, True):
        comps = NoiseComponents.only("black_level_error", quantize=False, dither=False, clip=clip)
        ref = simulate(clean, params, SENSOR, ratio=3.0, output_unit="dn", components=comps, rng=0)
        out = simulate_torch(torch.from_numpy(clean).to(dtype)[None], params, SENSOR, ratio=3.0, components=comps, output_unit="dn")
        assert out.dtype == dtype
        np.testing.assert_allclose(out[0].numpy(), ref, rtol=1e-6, atol=1e-3)
    comps = NoiseComponents.only(quantize=False, dither=True, clip=False)  # the dither is there when asked for
    out = simulate_torch(torch.from_numpy(clean).to(dtype)[None], params, SENSOR, components=comps, output_unit="dn",
                         generator=torch.Generator().manual_seed(1))  # seeded: the test must not be flaky
    ref = simulate(clean, params, SENSOR, output_unit="dn", components=dataclasses.replace(comps, dither=False))
    diff = out[0].numpy().astype(np.float64) - ref
    # |dither| <= ½ DN, plus the float32 rounding of values up to the white level (a few ulp at 16383 DN)
    ulp = 4 * float(np.spacing(np.float32(np.abs(ref).max())))
    assert np.all(np.abs(diff) <= 0.5 + ulp) and abs(diff.var() - 1 / 12) < 5 * (1 / 12) * math.sqrt(0.8 / diff.size)


SWEEP = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=1.5, row_sigma_dn=0.6, col_sigma_dn=0.4,
                    black_level_error_dn=(0.5, -0.5, 1.0, 0.0), dark_current_e_per_s=4.0, exposure_s=0.5, iso=1600,
                    hot_pixel_dark_current_e_per_s=200.0)  # fmt: skip
SWITCHES = [f.name for f in dataclasses.fields(NoiseComponents)]


@pytest.mark.parametrize("quantize", [True, False])
@pytest.mark.parametrize("switch", SWITCHES)
def test_every_switch_agrees_with_the_engine(switch, quantize):
    """Each switch flipped from the defaults: per-frame mean and variance, engine vs twin (5 SE over frames).

    With fixed-pattern maps, so the map switches (dark_shading, prnu, hot_pixels, per_pixel_read) act: a
    per-pixel dark-current map in the quantized runs, the hot pixels' own dark current in the others."""
    maps = make_maps(32, 32, seed=5, dark_map=quantize)
    base = NoiseComponents(quantize=quantize)
    comps = dataclasses.replace(base, **{switch: not getattr(base, switch)})
    n, h, w = 96, 32, 32
    y = np.float32(8.0 / RANGE)  # 8 e⁻: low light, where dark current, rounding and clipping at 0 matter
    sensor = Sensor("RGGB", bit_depth=14, black_level_dn=2, white_level_dn=16383)  # black near 0: clip_at_black matters
    clean = np.full((h, w), y, dtype=np.float32)
    e = np.stack([simulate(clean, SWEEP, sensor, output_unit="dn", components=comps, maps=maps, rng=3, frame_index=f)
                  for f in range(n)])  # fmt: skip
    t = simulate_torch(torch.from_numpy(clean)[None].repeat(n, 1, 1), SWEEP, sensor, components=comps, output_unit="dn",
                       maps=maps, generator=torch.Generator().manual_seed(3)).numpy()  # fmt: skip
    for stat in (lambda x: x.mean(axis=(1, 2)), lambda x: x.var(axis=(1, 2)), lambda x: x[:, 0::2, 0::2].mean(axis=(1, 2))):
        a, b = stat(e), stat(t)
        se = math.sqrt(a.var() / n + b.var() / n)
        assert abs(a.mean() - b.mean()) <= 5 * se + 1e-9, (switch, a.mean(), b.mean(), se)


def test_params_batch_round_trip_and_replay():
    plist = [NoiseParams(gain_k_dn_per_e=1.0 + i, read_model=("tukey", "gaussian")[i % 2], read_sigma_dn=2.0, tukey_lambda=0.1,
                         tukey_scale_dn=1.5, black_level_error_dn=(i, 0, 0, 0)) for i in range(3)]  # fmt: skip
    pb = NoiseParamsBatch.from_params(plist, ratio=[1.0, 2.0, 3.0], dtype=torch.float64)
    back = pb.to_params()
    assert [q.replace(iso=None) for q in back] == plist
    assert pb.ratio.tolist() == [1.0, 2.0, 3.0] and pb.tukey.tolist() == [True, False, True]
    clean = torch.rand(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    a = simulate_torch(clean, pb, SENSOR, generator=torch.Generator().manual_seed(1))
    b = simulate_torch(clean, plist, SENSOR, ratio=torch.tensor([1.0, 2.0, 3.0]), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ParameterError, match="3 samples"):
        simulate_torch(clean[:2], pb, SENSOR)


def test_raw_noise_module_samples_keeps_and_replays_parameters():
    card = load_card("SonyA7S2")
    aug = RawNoise(card.sensor, CardParamSampler(card, ratio_range=(100, 300)))
    assert isinstance(aug, torch.nn.Module)
    clean = torch.rand(5, 4, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    noisy = aug(clean, generator=torch.Generator().manual_seed(7))
    assert noisy.shape == clean.shape and noisy.dtype == torch.float64
    p = aug.params
    assert len(p) == 5 and p.gain_k_dn_per_e.dtype == torch.float64 and p.gain_k_dn_per_e.device == clean.device
    assert bool(((p.ratio >= 100) & (p.ratio <= 300)).all()) and len(set(p.gain_k_dn_per_e.tolist())) == 5
    again = aug(clean, params=p, generator=torch.Generator().manual_seed(7))  # replay: same parameters …
    assert aug.params is p
    drawn_again = aug(clean, generator=torch.Generator().manual_seed(7))  # … and the same generator state
    assert torch.equal(again, noisy) is False  # replay does not consume the parameter draw: other noise
    assert torch.equal(drawn_again, noisy)
    np.testing.assert_array_equal(aug.params.gain_k_dn_per_e.numpy(), p.gain_k_dn_per_e.numpy())
    # half-precision input: computed in float32, returned as float16
    assert aug(clean.half(), params=p.to(dtype=torch.float32)).dtype == torch.float16
    with pytest.raises(ParameterError, match="params="):
        RawNoise(card.sensor)(clean)


def test_card_sampler_follows_the_joint_model_without_scatter():
    """Random-K draws as sample_params makes them: σ's from the joint fit at K, the rest from the nearest row."""
    card = load_card("SonyA7S2")  # ISO table and one profile: every field a function of K
    s = CardParamSampler(card, scatter=False, exposure_s=0.5)
    pb = s.sample(200, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    prof = card.joint.profiles[0]
    for got in pb.to_params():
        k = got.gain_k_dn_per_e
        for name in ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn"):
            assert getattr(got, name) == pytest.approx(float(prof.fit(name).median(k)), rel=1e-12), name
        row = min(card.iso_table, key=lambda e: abs(math.log(e.gain_k_dn_per_e / k)))
        assert got.tukey_lambda == row.tukey_lambda and got.col_sigma_dn == (row.col_sigma_dn or 0.0)
        j = card.joint
        ble = row.black_level_error_dn if row.black_level_error_dn is not None else j.black_level_error_bins[j.black_level_bin(k)]
        assert got.black_level_error_dn == pytest.approx(ble)
        assert got.black_level_dn == (None if row.black_level_dn is None else pytest.approx(row.black_level_dn))
        assert got.dark_current_e_per_s * got.exposure_s == pytest.approx((row.dark_current_e_per_s or 0.0) * 0.5)
    # the same recipe as sample_params' random draw: same ranges of every field over many draws
    ref = [sample_params(card, rng=i, scatter=False) for i in range(300)]
    for name in ("tukey_lambda", "col_sigma_dn"):
        assert set(getattr(q, name) for q in pb.to_params()) <= set(getattr(q, name) for q in ref) | {0.0}, name
    lk = np.log(pb.gain_k_dn_per_e.numpy())  # ln K ~ U(ln K_min, ln K_max)
    lo, hi = np.log(card.k_range_dn_per_e)
    assert lo <= lk.min() and lk.max() <= hi
    assert abs(lk.mean() - (lo + hi) / 2) < 5 * (hi - lo) / math.sqrt(12 * lk.size)


def test_per_sample_black_level_as_the_engine():
    """A record's own black level (card schema /2) sets offset and normalization per sample, as in simulate."""
    plist = [NoiseParams(gain_k_dn_per_e=1.0, black_level_dn=(600, 601, 602, 603)), NoiseParams(gain_k_dn_per_e=1.0)]
    clean = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    comps = NoiseComponents.only()
    for unit in ("dn", "normalized"):
        out = simulate_torch(torch.from_numpy(clean)[None].repeat(2, 1, 1), plist, SENSOR, components=comps, output_unit=unit)
        for i, q in enumerate(plist):
            np.testing.assert_allclose(out[i].numpy(), simulate(clean, q, SENSOR, components=comps, output_unit=unit), rtol=1e-6)


def test_card_sampler_without_table_and_with_overlapping_profiles():
    n = 4000
    import dataclasses

    from noisesim.card import LogLinearFit

    card = load_card("NikonD850")  # no ISO table; give it a second profile over the same K range, equal weights
    p1 = card.joint.profiles[0]
    fit = p1.tukey_scale_dn
    p2 = dataclasses.replace(p1, name="Profile-2", tukey_scale_dn=LogLinearFit(fit.slope, fit.intercept + 0.5, fit.residual_std))
    card = card.replace(joint=dataclasses.replace(card.joint, profiles=(p1, p2)))
    joint = card.joint
    pb = CardParamSampler(card, scatter=False).sample(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    k = pb.gain_k_dn_per_e.numpy()
    first = np.isclose(pb.tukey_scale_dn.numpy(), joint.profiles[0].tukey_scale_dn.median(k), rtol=1e-9)
    second = np.isclose(pb.tukey_scale_dn.numpy(), joint.profiles[1].tukey_scale_dn.median(k), rtol=1e-9)
    assert np.all(first | second)
    assert abs(first.mean() - 0.5) < 5 * math.sqrt(0.25 / n)
    lam = pb.tukey_lambda.numpy()  # λ uniform over the card's values
    vals = np.asarray(joint.tukey_lambda_values)
    assert np.all(np.isclose(lam[:, None], vals[None, :]).any(axis=1))
    ble = pb.black_level_error_dn.numpy()
    for i in range(0, n, 97):
        assert tuple(ble[i]) == pytest.approx(joint.black_level_error_bins[joint.black_level_bin(float(k[i]))])
    # scatter: standardized residuals of ln σ are N(0, 1) (SonyA7S2, one profile)
    card = load_card("SonyA7S2")
    pb = CardParamSampler(card, ratio_range=(1, 1)).sample(n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    prof, k = card.joint.profiles[0], pb.gain_k_dn_per_e.numpy()
    for name in ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn"):
        fit = prof.fit(name)
        z = (np.log(getattr(pb, name).numpy()) - fit.mean_log(k)) / fit.residual_std
        assert abs(z.mean()) < 5 / math.sqrt(n) and abs(z.var() - 1) < 5 * math.sqrt(2 / n), name
    assert torch.all(pb.ratio == 1)
    with pytest.raises(ParameterError):
        CardParamSampler(card, ratio_range=(0.5, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_raw_noise_forward_makes_no_host_sync_on_cuda():
    card = load_card("SonyA7S2")
    aug = RawNoise(card.sensor, CardParamSampler(card, ratio_range=(100, 300)))
    clean = torch.rand(4, 4, 64, 64, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    aug(clean, generator=g)  # first call: the card's tables and sensor tiles are copied to the device once
    with_maps = RawNoise(card.sensor, CardParamSampler(card, exposure_s=0.1), maps=make_maps(),
                         components=NoiseComponents(hot_pixels=False, per_pixel_read=True))  # fmt: skip
    small = torch.rand(4, 4, 8, 8, device="cuda")
    with_maps(small, generator=g)
    pb = CardParamSampler(card).sample(4, device="cuda", generator=g)
    simulate_torch(clean, pb, card.sensor, generator=g)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = aug(clean, generator=g)
        out = aug(clean, params=aug.params, generator=g)
        mapped = with_maps(small, generator=g)
        direct = simulate_torch(clean, pb, card.sensor, generator=g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda" and aug.params.gain_k_dn_per_e.device.type == "cuda"
    assert mapped.device.type == direct.device.type == "cuda" and bool(torch.isfinite(mapped).all())


# ---- issue 10 item 3: the fixed-pattern maps (DSNU, PRNU, per-pixel dark current and read σ, hot pixels) ----

from noisesim.params import FixedPatternMaps  # noqa: E402
from noisesim.torch_noise import DeviceMaps  # noqa: E402

MAP_SENSOR = Sensor("RGGB", bit_depth=14, black_level_dn=512, white_level_dn=16383)
MAP_PARAMS = NoiseParams(gain_k_dn_per_e=1.7, dark_current_e_per_s=2.0, exposure_s=0.3, iso=1600,
                         hot_pixel_dark_current_e_per_s=700.0, black_level_error_dn=(0.3, -0.2, 0.1, 0.0))  # fmt: skip


def make_maps(hs=48, ws=64, seed=0, dark_map=True):
    g = np.random.default_rng(seed)
    hot = g.random((hs, ws)) < 0.05
    return FixedPatternMaps(
        dark_shading_k_dn_per_iso=(g.random((hs, ws)) * 1e-3).astype(np.float32),
        dark_shading_b_dn=(g.normal(0, 2, (hs, ws)) + hot * 40).astype(np.float32),
        prnu=g.normal(0, 0.02, (hs, ws)).astype(np.float32),
        dark_current_e_per_s=(g.random((hs, ws)) * 3 + hot * 300).astype(np.float32) if dark_map else None,
        hot_pixel_mask=hot,
        read_sigma_scale=g.lognormal(0, 0.3, (hs, ws)).astype(np.float32),
    )


@pytest.mark.parametrize("dark_map", [True, False])  # per-pixel dark current, or the hot pixels' own figure
@pytest.mark.parametrize("hot_pixels", [True, False])  # off: hot pixels take their CFA phase's median
def test_maps_on_the_mean_match_the_engine_exactly(dark_map, hot_pixels):
    """No random term on: dark shading, PRNU, dark current and hot pixels at per-sample origins, quantized or
    not, clipped or not, DN or normalized — float64 twin output equals both engine backends bit for bit."""
    maps = make_maps(dark_map=dark_map)
    clean = np.random.default_rng(1).random((3, 32, 32)).astype(np.float32) * 1.1 - 0.05
    origins = [(0, 0), (16, 32), (8, 2)]
    terms = ["dark_current", "dark_shading", "prnu", "black_level_error"] + (["hot_pixels"] if hot_pixels else [])
    for quantize, clip, unit in [(True, True, "dn"), (False, False, "dn"), (True, False, "normalized"), (False, True, "normalized")]:
        comps = NoiseComponents.only(*terms, quantize=quantize, dither=False, clip=clip)
        t = simulate_torch(torch.from_numpy(clean).double(), MAP_PARAMS, MAP_SENSOR, maps=maps, origin=torch.tensor(origins),
                           components=comps, output_unit=unit, ratio=2.5).float().numpy()  # fmt: skip
        for i, o in enumerate(origins):
            for backend in ("numpy", "numba"):
                e = simulate(clean[i], MAP_PARAMS, MAP_SENSOR, maps=maps, origin=o, components=comps, output_unit=unit,
                             ratio=2.5, backend=backend)  # fmt: skip
                np.testing.assert_array_equal(t[i], e, err_msg=f"{quantize=} {clip=} {unit} origin {o} {backend}")
    # the maps matter (a twin ignoring them fails above): dark shading alone moves the mean by > 1 DN
    comps = NoiseComponents.only("dark_shading", quantize=False, dither=False, clip=False)
    with_maps = simulate_torch(torch.from_numpy(clean[:1]), MAP_PARAMS, MAP_SENSOR, maps=maps, components=comps, output_unit="dn")
    without = simulate_torch(torch.from_numpy(clean[:1]), MAP_PARAMS, MAP_SENSOR, maps=FixedPatternMaps(), components=comps, output_unit="dn")
    assert float((with_maps - without).abs().mean()) > 1.0


def test_maps_single_origin_float32_and_device_maps():
    maps = make_maps()
    clean = np.random.default_rng(2).random((2, 16, 24)).astype(np.float32)
    comps = NoiseComponents.only("dark_current", "dark_shading", "prnu", "hot_pixels", quantize=False, dither=False, clip=False)
    ref = np.stack([simulate(c, MAP_PARAMS, MAP_SENSOR, maps=maps, origin=(10, 40), components=comps, output_unit="dn") for c in clean])
    dm = DeviceMaps.from_maps(maps, 2)
    for m in (maps, dm):
        out = simulate_torch(torch.from_numpy(clean), MAP_PARAMS, MAP_SENSOR, maps=m, origin=(10, 40), components=comps, output_unit="dn")
        assert out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6, atol=2e-3)
    with pytest.raises(ShapeError, match="do not cover"):
        simulate_torch(torch.from_numpy(clean), MAP_PARAMS, MAP_SENSOR, maps=maps, origin=(40, 0))
    with pytest.raises(ShapeError, match="multiple"):
        simulate_torch(torch.from_numpy(clean), MAP_PARAMS, MAP_SENSOR, maps=maps, origin=torch.tensor([[0, 0], [1, 2]]))
    with pytest.raises(ParameterError, match="iso"):
        simulate_torch(torch.from_numpy(clean), MAP_PARAMS.replace(iso=None), MAP_SENSOR, maps=maps)


def test_prnu_with_shot_noise_and_per_pixel_read_sigma_against_the_engine():
    """Random terms through the maps: per-pixel mean K·μ(1 + PRNU) and variance K²μ(1 + PRNU) + (s·σ)² + 1/12,
    twin and engine each against it over n frames (5 SE, SE from n) and against each other."""
    hs = ws = 16
    g = np.random.default_rng(3)
    prnu = np.where(g.random((hs, ws)) < 0.5, -0.2, 0.3).astype(np.float32)
    scale = np.where(g.random((hs, ws)) < 0.5, 1.0, 3.0).astype(np.float32)
    maps = FixedPatternMaps(prnu=prnu, read_sigma_scale=scale)
    k, mu, sigma, n = 2.0, 20.0, 1.5, 2000
    params = NoiseParams(gain_k_dn_per_e=k, read_model="gaussian", read_sigma_dn=sigma)
    comps = NoiseComponents.only("shot", "read", "prnu", per_pixel_read=True, quantize=False, clip=False)
    clean = np.full((hs, ws), mu * k / RANGE, np.float32)
    e = np.stack([simulate(clean, params, SENSOR, maps=maps, components=comps, output_unit="dn", rng=4, frame_index=f) for f in range(n)])
    t = simulate_torch(torch.from_numpy(clean)[None].repeat(n, 1, 1), params, SENSOR, maps=maps, components=comps,
                       output_unit="dn", generator=torch.Generator().manual_seed(4)).numpy()  # fmt: skip
    mean = 512 + k * mu * (1 + prnu)
    var = k * k * mu * (1 + prnu) + (scale * sigma) ** 2 + 1 / 12
    for group in ((prnu < 0) & (scale == 1), (prnu > 0) & (scale == 3)):  # pixels alike pooled: n · pixels draws
        for name, x in (("engine", e), ("twin", t)):
            z = (x - mean) / np.sqrt(var)  # standardized per pixel: mean 0, variance 1
            vals = z[:, group].ravel()
            m4 = np.mean(vals**4)
            assert abs(vals.mean()) < 5 / math.sqrt(vals.size), name
            assert abs(vals.var() - 1) < 5 * math.sqrt((m4 - 1) / vals.size), name
    # without the switch the scale map is ignored, as in the engine
    off = simulate_torch(torch.from_numpy(clean)[None].repeat(200, 1, 1), params, SENSOR, maps=maps, output_unit="dn",
                         components=dataclasses.replace(comps, per_pixel_read=False, shot=False, prnu=False))  # fmt: skip
    v = off.numpy()[:, scale == 3].var()
    assert abs(v - (sigma**2 + 1 / 12)) < 5 * (sigma**2 + 1 / 12) * math.sqrt(2 / off.numpy()[:, scale == 3].size)


def test_raw_noise_passes_maps_draws_and_replays_origins():
    maps = make_maps()
    card = load_card("SonyA7S2")
    comps = NoiseComponents.only("dark_current", "dark_shading", "prnu", "hot_pixels", quantize=False, dither=False, clip=False)
    aug = RawNoise(MAP_SENSOR, CardParamSampler(card, exposure_s=0.2), maps=maps, components=comps, output_unit="dn")
    clean = torch.rand(6, 4, 8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # 16 × 24 mosaic
    out = aug(clean, generator=torch.Generator().manual_seed(1))
    p = aug.params
    o = p.origin
    assert o.shape == (6, 2) and o.dtype == torch.int64 and bool((o % 2 == 0).all())
    assert bool((o[:, 0] + 16 <= 48).all() and (o[:, 1] + 24 <= 64).all()) and len(set(map(tuple, o.tolist()))) > 1
    assert bool(torch.isfinite(p.iso).all()) and bool((p.exposure_s == 0.2).all())
    # each sample is the engine's frame at its origin, with its own parameters (float64: exact)
    for i, q in enumerate(p.to_params()):
        ref = simulate(clean[i].numpy(), q, MAP_SENSOR, maps=maps, origin=tuple(o[i].tolist()), ratio=float(p.ratio[i]),
                       components=comps, output_unit="dn")  # fmt: skip
        np.testing.assert_allclose(out[i].numpy(), ref, rtol=1e-6)
    again = aug(clean, params=p)  # replay keeps the origins (no random term here: the same output)
    assert aug.params.origin is o
    assert torch.equal(again, out)
    assert not torch.equal(aug(clean), out)  # a new draw: other origins and parameters
    with pytest.warns(UserWarning, match="without the card's fixed-pattern maps"):
        RawNoise(dataclasses.replace(MAP_SENSOR, maps_of_card="X"))


def test_one_read_model_per_batch_draws_only_that_noise(monkeypatch):
    """A batch whose samples share a read model (from_params, the card sampler) skips the other draw."""
    import noisesim.torch_noise as tn

    g = NoiseParams(gain_k_dn_per_e=1.0, read_model="gaussian", read_sigma_dn=2.0)
    t = NoiseParams(gain_k_dn_per_e=1.0, read_model="tukey", tukey_lambda=0.1, tukey_scale_dn=2.0)
    assert NoiseParamsBatch.from_params([g, g]).read_model == "gaussian"
    assert NoiseParamsBatch.from_params([g, t]).read_model is None
    assert CardParamSampler(load_card("SonyA7S2")).sample(2).read_model == "tukey"
    assert NoiseParamsBatch.from_params([t, t]).to(dtype=torch.float64).read_model == "tukey"
    comps = NoiseComponents.only("read", quantize=False, dither=False, clip=False)
    clean = torch.full((2, 64, 64), 0.1)
    real = tn.tukey_lambda_quantile
    calls = []
    monkeypatch.setattr(tn, "tukey_lambda_quantile", lambda *a: calls.append(1) or real(*a))
    out = simulate_torch(clean, [g, g], SENSOR, components=comps, output_unit="dn", generator=torch.Generator().manual_seed(0))
    assert not calls  # Gaussian only: no Tukey quantile evaluated
    base = 512 + 0.1 * RANGE
    v = float(((out - base) ** 2).mean())
    assert abs(v - 4.0) < 5 * 4.0 * math.sqrt(2 / out.numel())
    simulate_torch(clean, [g, t], SENSOR, components=comps, output_unit="dn")
    assert calls  # mixed: both drawn, chosen per sample
