"""Dark-frame bank and dark-frame noise (issue 13 items 1–2)."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
from scipy.signal import convolve2d

from noisesim.cfa import CFA
from noisesim.darkbank import (DarkFrame, DarkFrameBank, build_dark_bank, phase_preserving_transforms,
                               simulate_dark_frame)
from noisesim.params import NoiseComponents, NoiseParams, Sensor

BLACK = 512.0
WHITE = 16383.0
SENSOR = Sensor(cfa="RGGB", bit_depth=14, black_level_dn=BLACK, white_level_dn=WHITE)


def _darks(n, shape, *, iso=1600, exposure_s=0.01, sigma=3.0, kernel=None, seed=0, black=BLACK):
    g = np.random.default_rng(seed)
    for i in range(n):
        noise = g.normal(0, 1, shape)
        if kernel is not None:
            noise = convolve2d(noise, kernel, mode="same", boundary="wrap")
            noise /= np.sqrt((kernel**2).sum())
        raw = np.round(black + sigma * noise).astype(np.uint16)
        yield DarkFrame(raw, iso=iso, exposure_s=exposure_s, black_level_dn=(black,) * 4, source=f"dark{i}.dng")


def test_bank_round_trip_bytes_and_metadata(tmp_path):
    frames = list(_darks(2, (32, 48), iso=100, seed=1)) + list(_darks(1, (32, 48), iso=400, exposure_s=0.5, seed=2))
    path = build_dark_bank(tmp_path / "bank.h5", iter(frames), cfa="RGGB", white_level_dn=WHITE, camera="Test Cam")
    bank = DarkFrameBank(path)
    assert len(bank) == 3 and bank.isos == [100.0, 400.0] and bank.cfa.pattern == "RGGB"
    assert bank.bit_depth == 14 and bank.white_level_dn == (WHITE,) * 4 and bank.camera == "Test Cam"
    for i, fr in enumerate(frames):
        got = bank.frame(i)
        assert got.dtype == np.uint16 and np.array_equal(got, fr.raw)
        rec = bank.index[i]
        assert rec["iso"] == fr.iso and rec["exposure_s"] == fr.exposure_s
        assert rec["source"].decode() == fr.source
        assert rec["sha256"].decode() == hashlib.sha256(fr.raw.astype(np.uint16).tobytes()).hexdigest()
        assert np.array_equal(rec["black_level_dn"], [BLACK] * 4)
    with h5py.File(path) as f:
        assert f["frames"].chunks[0] == 1  # one frame read never loads another
    assert not list(tmp_path.glob("*.tmp*")) and sorted(p.name for p in tmp_path.iterdir()) == ["bank.h5"]


def test_bank_refuses_mixed_shapes_and_leaves_no_file(tmp_path):
    frames = list(_darks(1, (32, 32))) + list(_darks(1, (32, 48)))
    with pytest.raises(Exception, match="differs from the bank"):
        build_dark_bank(tmp_path / "bank.h5", frames, cfa="RGGB", white_level_dn=WHITE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG", "QUAD_RGGB"])
def test_every_crop_and_flip_keeps_the_cfa_phase(tmp_path, pattern):
    cfa = CFA(pattern)
    shape = (48, 64)
    site_map = cfa.per_pixel(np.arange(4), shape).astype(np.uint16)  # each pixel holds its CFA site
    build_dark_bank(tmp_path / "b.h5", [DarkFrame(site_map, 800, 0.01, (0,) * 4, "sites")], cfa=pattern,
                    white_level_dn=1023)
    bank = DarkFrameBank(tmp_path / "b.h5")
    p = cfa.period
    out_shape = (4 * p, 6 * p)
    target = cfa.per_pixel(np.arange(4), out_shape)
    used = set()
    for seed in range(64):
        ch = bank.choose(out_shape, 800, rng=seed)
        assert ch.y0 >= 0 and ch.x0 >= 0
        assert np.array_equal(bank.dark(ch, out_shape), target), (pattern, ch)
        used.add((ch.transpose, ch.flip_y, ch.flip_x))
    assert used == {t[:3] for t in phase_preserving_transforms(cfa)}  # every allowed transform is drawn
    assert (False, True, False) in used and (False, False, True) in used


def test_transforms_that_would_break_the_phase_are_never_offered():
    for pattern in ("RGGB", "GRBG"):
        ts = phase_preserving_transforms(CFA(pattern))
        assert not any(t[0] for t in ts)  # a transpose swaps G1 and G2 (or R and B)
        assert {(t[1], t[2]) for t in ts} == {(False, False), (True, False), (False, True), (True, True)}
        flip_x = [t for t in ts if t[2] and not t[1]]
        assert all(t[4] % 2 == 1 for t in flip_x)  # a horizontal flip needs an odd source column


def _bank(tmp_path, n=6, shape=(128, 128), **kw):
    return DarkFrameBank(build_dark_bank(tmp_path / "bank.h5", _darks(n, shape, **kw), cfa="RGGB", white_level_dn=WHITE))


def test_dark_frame_mode_is_deterministic_and_thread_independent(tmp_path):
    bank = _bank(tmp_path)
    clean = np.full((64, 64), 0.05, np.float32)
    p = NoiseParams(gain_k_dn_per_e=1.37, iso=1600)
    a, ca = simulate_dark_frame(clean, p, SENSOR, bank, ratio=2, rng=7, return_choice=True)
    b, cb = simulate_dark_frame(clean, p, SENSOR, bank, ratio=2, rng=7, return_choice=True, backend="numpy")
    c = simulate_dark_frame(clean, p, SENSOR, bank, ratio=2, rng=8)
    assert ca == cb and np.array_equal(a, b)
    assert not np.array_equal(a, c)
    packed = simulate_dark_frame(SENSOR.cfa.pack(clean), p, SENSOR, bank, ratio=2, rng=7)
    assert np.array_equal(SENSOR.cfa.unpack(packed), a)


def test_nearest_iso_with_a_warning(tmp_path, caplog):
    bank = _bank(tmp_path, n=2, iso=800)
    with caplog.at_level("WARNING"):
        ch = bank.choose((32, 32), 1000, rng=0)
    assert ch.iso == 800 and "no dark frames at ISO 1000" in caplog.text


def test_mean_and_variance_are_shot_plus_dark(tmp_path):
    """E[D] − B = x_dn, Var[D] = K·x_dn + σ²_dark + 1/12 (quantization of the sum), within 5 SE."""
    sigma, k, x_dn = 3.0, 1.37, 60.0
    bank = _bank(tmp_path, n=4, shape=(256, 256), sigma=sigma, seed=3)
    y = x_dn / (WHITE - BLACK)
    clean = np.full((256, 256), y, np.float32)
    out = simulate_dark_frame(clean, NoiseParams(gain_k_dn_per_e=k, iso=1600), SENSOR, bank, rng=1, output_unit="dn")
    n = out.size
    dark_var = sigma**2 + 1 / 12  # the bank frames are rounded once already
    var = k * x_dn + dark_var + 1 / 12
    assert abs(out.mean() - BLACK - x_dn) < 5 * np.sqrt(var / n) + 0.02
    assert abs(out.var() - var) < 5 * var * np.sqrt(2 / n) + 0.05


def _lag1_corr(frames):
    x = np.stack(frames).astype(np.float64)
    x -= x.mean(axis=(1, 2), keepdims=True)
    return float((x[:, :, 1:] * x[:, :, :-1]).mean() / x.var())


def test_dark_frame_mode_reproduces_spatially_correlated_read_noise(tmp_path):
    """A sensor whose read noise is smoothed by a small 2-D kernel: dark-frame noise matches held-out frames'
    spatial correlation, the parametric model (white read noise of the same σ) cannot."""
    from noisesim.noise import simulate

    kernel = np.array([[0.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 0.0]])
    shape = (128, 128)
    bank = _bank(tmp_path, n=6, shape=shape, sigma=4.0, kernel=kernel, seed=10)
    held_out = [fr.raw for fr in _darks(4, (64, 64), sigma=4.0, kernel=kernel, seed=99)]
    clean = np.zeros((64, 64), np.float32)
    params = NoiseParams(gain_k_dn_per_e=1.37, iso=1600, read_model="gaussian", read_sigma_dn=4.0)
    synth = [simulate_dark_frame(clean, params, SENSOR, bank, rng=s, output_unit="dn") for s in range(4)]
    param = [simulate(clean, params, SENSOR, rng=s, output_unit="dn", components=NoiseComponents.only("read"))
             for s in range(4)]
    real, dark, white = _lag1_corr(held_out), _lag1_corr(synth), _lag1_corr(param)
    se = 5 / np.sqrt(4 * 64 * 63)  # 5 SE of a correlation coefficient from n pairs
    assert real > 0.3
    assert abs(dark - real) < se + 0.03
    assert abs(white) < se and abs(white - real) > 0.25


def test_cli_builds_a_bank_from_a_folder_of_dng_darks(tmp_path, capsys):
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
    from noisesim.card import load_card
    from noisesim.cli import main

    card = load_card("SonyA7S2")
    params = {iso: NoiseParams(gain_k_dn_per_e=k, iso=iso, read_model="gaussian", read_sigma_dn=s)
              for iso, k, s in ((800, 0.77, 3.0), (1600, 1.53, 6.3))}
    frames = [f for f in synthetic_frames(params, card.sensor, (32, 32), SyntheticSpec(n_darks=3), rng=0)
              if f.kind == "dark"]
    write_capture_dng(frames, tmp_path / "cap")
    out = tmp_path / "bank.h5"
    assert main(["darks", "bank", str(tmp_path / "cap"), "--card", "SonyA7S2", "--output", str(out)]) == 0
    bank = DarkFrameBank(out)
    assert len(bank) == len(frames) and bank.isos == [800.0, 1600.0]
    expected = {hashlib.sha256(f.load().astype(np.uint16).tobytes()).hexdigest() for f in frames}
    stored = {hashlib.sha256(bank.frame(i).tobytes()).hexdigest() for i in range(len(bank))}
    assert stored == expected == {r["sha256"].decode() for r in bank.index}  # the very bytes of every dark
    assert main(["darks", "bank", str(tmp_path / "nowhere"), "--card", "SonyA7S2", "--output", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_simulate_noise_dark_frame_is_the_same_engine(tmp_path):
    from noisesim.errors import ParameterError
    from noisesim.noise import simulate

    bank = _bank(tmp_path, n=2, shape=(64, 64))
    clean = np.full((32, 32), 0.1, np.float32)
    p = NoiseParams(gain_k_dn_per_e=1.37, iso=1600)
    a = simulate(clean, p, SENSOR, noise="dark-frame", bank=bank.path, rng=4, output_unit="dn", dtype=np.uint16)
    assert a.dtype == np.uint16
    assert np.array_equal(a, simulate_dark_frame(clean, p, SENSOR, bank, rng=4, output_unit="dn", dtype=np.uint16))
    with pytest.raises(ParameterError, match="needs bank="):
        simulate(clean, p, SENSOR, noise="dark-frame")
    with pytest.raises(ParameterError, match="noise must be one of"):
        simulate(clean, p, SENSOR, noise="darkframe", bank=bank)


def test_generate_with_dark_frame_noise_stores_the_choice_and_resynthesizes(tmp_path):
    import noisesim as ns
    from noisesim.cli import main

    bank = _bank(tmp_path, n=3, shape=(96, 96), iso=1600)
    out = tmp_path / "ds.h5"
    assert main(["generate", "--card", "SonyA7S2", "--output", str(out), "--pairs", "3", "--patch", "32",
                 "--iso", "1600:1600", "--noise", "dark-frame", "--bank", str(bank.path), "--no-progress"]) == 0
    with h5py.File(out) as f:
        rec = f["params"][...]
        assert f.attrs["noise"] == "dark-frame" and f.attrs["dark_bank_sha256"] == bank.content_sha256
        noisy = f["noisy"][...]
    assert (rec["dark_frame"] >= 0).all() and (rec["dark_frame"] < 3).all()
    for i in range(3):
        assert np.array_equal(ns.resynthesize(out, i), noisy[i])
    # the same run without the bank's noise differs; a bank with other content is refused on resynthesis
    other = DarkFrameBank(build_dark_bank(tmp_path / "other.h5", _darks(3, (96, 96), seed=5), cfa="RGGB",
                                          white_level_dn=WHITE))
    with pytest.raises(Exception, match="not the dark-frame bank"):
        ns.resynthesize(out, 0, bank=other.path)
    assert main(["generate", "--card", "SonyA7S2", "--output", str(tmp_path / "x.h5"), "--pairs", "1",
                 "--noise", "dark-frame", "--no-progress"]) == 2


@pytest.mark.parametrize("storage", ["uint16", "float32"])
def test_dataset_record_holds_the_dark_frame_the_noise_used(tmp_path, storage):
    # the record's choice was drawn a second time, keyed by the raw seed, while the noise keyed it by the
    # seed's words: the stored frame, window and transform were not the ones used (sample 0 here already)
    from noisesim.dataset.synthesis import (SynthesisJob, Synthesizer, kernel_capacity, params_from_record, parse_ratio,
                                            resolve_card)

    bank = _bank(tmp_path, n=3, shape=(96, 96), iso=1600)
    job = SynthesisJob(card=resolve_card("SonyA7S2"), source_spec="builtin", patch=32, iso=(1600.0, 1600.0), gain_k=None,
                       ratio=parse_ratio("1"), blur=None, seed=7, storage=storage, components=NoiseComponents(),
                       kernel_cap=kernel_capacity(None), noise="dark-frame", bank_path=str(bank.path))
    synth = Synthesizer(job)
    for i in range(4):
        clean, noisy, rec, _ = synth.sample(i)
        unit = "dn" if storage == "uint16" else "normalized"
        again, used = simulate_dark_frame(clean, params_from_record(rec), synth.sensor, bank, ratio=float(rec["ratio"]),
                                          input_unit=unit, output_unit=unit, dtype=noisy.dtype, rng=int(rec["seed"]),
                                          return_choice=True)
        assert np.array_equal(again, noisy)
        stored = (int(rec["dark_frame"]), int(rec["dark_y0"]), int(rec["dark_x0"]), int(rec["dark_transform"]))
        assert stored == (used.frame, used.y0, used.x0, 4 * used.transpose + 2 * used.flip_y + used.flip_x), f"sample {i}"
        assert synth.sample(i, noise=False)[2].tobytes() == rec.tobytes()  # the record without the noise is the same


@pytest.mark.torch
def test_on_the_fly_dataset_with_dark_frame_noise(tmp_path):
    pytest.importorskip("torch")
    from noisesim.torch_data import OnTheFlyRawDataset

    bank = _bank(tmp_path, n=2, shape=(96, 96), iso=1600)
    ds = OnTheFlyRawDataset("builtin", "SonyA7S2", length=2, patch=32, iso=(1600, 1600), seed=0,
                            noise="dark-frame", bank=bank.path)
    a, b = ds[0], ds[0]
    assert np.array_equal(np.asarray(a["noisy"]), np.asarray(b["noisy"]))


def test_calibrate_dark_bank_is_referenced_by_the_card(tmp_path):
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
    from noisesim.card import load_card
    from noisesim.cli import main
    from noisesim.errors import CardError

    sensor = Sensor(cfa="RGGB", bit_depth=14, black_level_dn=512, white_level_dn=16383)
    truth = {iso: NoiseParams(gain_k_dn_per_e=k, read_model="gaussian", read_sigma_dn=s, iso=iso)
             for iso, k, s in ((800, 0.8, 3.0), (1600, 1.6, 5.0), (3200, 3.2, 8.0))}
    write_capture_dng(synthetic_frames(truth, sensor, (64, 64), SyntheticSpec(n_darks=8), rng=1), tmp_path / "cap")
    card_path = tmp_path / "cards" / "cam.toml"
    card_path.parent.mkdir()
    assert main(["calibrate", str(tmp_path / "cap"), "--camera", "Test Cam", "--output", str(card_path),
                 "--no-fidelity", "--dark-bank", str(tmp_path / "bank.h5")]) == 0
    card = load_card(card_path)
    assert card.dark_bank_file == "../bank.h5" and card.dark_bank.isos == [800.0, 1600.0, 3200.0]
    assert len(card.dark_bank) == 24
    # generate takes the card's bank when none is given
    out = tmp_path / "ds.h5"
    assert main(["generate", "--card", str(card_path), "--output", str(out), "--pairs", "2", "--patch", "32",
                 "--iso", "1600:1600", "--noise", "dark-frame", "--no-progress"]) == 0
    with h5py.File(out) as f:
        assert (f["params"]["dark_frame"] >= 0).all()
    # a bank replaced behind the card's back is refused
    build_dark_bank(tmp_path / "bank.h5", _darks(1, (64, 64)), cfa="RGGB", white_level_dn=WHITE)
    with pytest.raises(CardError, match="checksum mismatch"):
        load_card(card_path).dark_bank


def test_a_stand_in_iso_is_said_once_not_at_every_draw(tmp_path, caplog):
    """A dataset draws ISOs from a range: every sample logged 'no dark frames at ISO …' (hundreds of lines)."""
    bank = _bank(tmp_path, n=2, iso=800)
    with caplog.at_level("WARNING"):
        for k, iso in enumerate((1000, 2317.5, 4805.14, 1000)):
            assert bank.choose((32, 32), iso, rng=k).iso == 800
    assert caplog.text.count("no dark frames at ISO") == 1


def test_exposure_time_is_matched_where_the_bank_has_several(tmp_path):
    frames = list(_darks(2, (32, 32), exposure_s=0.01, seed=1)) + list(_darks(2, (32, 32), exposure_s=2.0, seed=2))
    bank = DarkFrameBank(build_dark_bank(tmp_path / "b.h5", frames, cfa="RGGB", white_level_dn=WHITE))
    for seed in range(8):
        assert bank.choose((16, 16), 1600, exposure_s=1.5, rng=seed).exposure_s == 2.0
        assert bank.choose((16, 16), 1600, exposure_s=0.02, rng=seed).exposure_s == 0.01
    assert set(bank.candidates(1600, 2.0)) == {2, 3}


@pytest.mark.slow
def test_dark_frame_dataset_does_not_depend_on_the_worker_count(tmp_path):
    import noisesim as ns

    bank = _bank(tmp_path, n=3, shape=(96, 96), iso=1600)
    kw = dict(card="SonyA7S2", pairs=6, patch=32, iso=(1600, 1600), noise="dark-frame", bank=bank.path, seed=3,
              progress=False)
    one = ns.generate_dataset(tmp_path / "one.h5", workers=1, **kw)
    two = ns.generate_dataset(tmp_path / "two.h5", workers=2, **kw)
    with h5py.File(one) as a, h5py.File(two) as b:
        for name in ("clean", "noisy", "params"):  # bytes: a record's "none" fields are NaN, and NaN != NaN
            assert a[name][...].tobytes() == b[name][...].tobytes(), name


def test_a_bank_of_another_bit_depth_is_refused(tmp_path):
    """Its dark frames are in another DN scale than the card's sensor: the noise would be wrong, exit 0."""
    from noisesim.dataset import generate_dataset
    from noisesim.errors import ParameterError

    bank = build_dark_bank(tmp_path / "b12.h5", _darks(2, (64, 64), black=64.0), cfa="RGGB", white_level_dn=4095.0,
                           bit_depth=12)
    with pytest.raises(ParameterError, match=r"12-bit, card .* is 14-bit"):
        generate_dataset(tmp_path / "d.h5", card="SonyA7S2", pairs=2, patch=32, noise="dark-frame", bank=bank,
                         progress=False)
    assert not (tmp_path / "d.h5").exists()


def test_a_bank_that_is_not_hdf5_says_so(tmp_path):
    """The message was h5py's 'Unable to synchronously open file (file signature not found)'."""
    from noisesim.errors import InputFileError

    fake = tmp_path / "bank.h5"
    fake.write_text("path,kind\n")
    with pytest.raises(InputFileError, match="not an HDF5 file, so not a dark-frame bank"):
        DarkFrameBank(fake)
