"""Importers: DNG NoiseProfile (read, write, round trip, linear DNG), Android camera2 dumps, darktable's
noiseprofiles.json (the documented convention, checked by simulation) and ELD parameter .npy files
(restricted unpickling)."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from noisesim import NoiseComponents, simulate
from noisesim.card import KIND_POISSON_GAUSSIAN, load_card, parse_card, save_card
from noisesim.cli import main
from noisesim.dng import write_dng, write_linear_dng
from noisesim.errors import InputFileError, ParameterError
from noisesim.importers import import_card
from noisesim.importers.android import card_from_android_dump
from noisesim.importers.darktable import card_from_darktable
from noisesim.importers.dng_profile import card_from_dngs
from noisesim.importers.eld import card_from_eld_npy, load_eld_params
from noisesim.importers.profile import params_noise_profile
from noisesim.rawio import read_dng_metadata, read_raw
from noisesim.sampling import sample_params

PG_TEXT = """schema = "noisesim.card/1"
[camera]
name = "TestPG"
make = "Acme"
model = "Acme One"
[sensor]
cfa = "RGGB"
bit_depth = 14
black_level_dn = [512, 512, 512, 512]
white_level_dn = [16383, 16383, 16383, 16383]
[[iso]]
iso = 200
gain_k_dn_per_e = 0.75
read_sigma_dn = 2.5
[[iso]]
iso = 1600
gain_k_dn_per_e = 6.0
read_sigma_dn = 9.0
"""
RANGE = 16383 - 512


@pytest.fixture
def pg_card():
    return parse_card(PG_TEXT, "pg.toml")


def _dng_from_card(card, iso, path, *, per_plane=False, value=1000):
    p = sample_params(card, iso=iso)
    prof = params_noise_profile(p, card.sensor)
    if not per_plane:
        prof = prof[:1]
    return write_dng(path, np.full((32, 32), value, np.uint16), cfa=card.sensor.cfa, black_level_dn=card.sensor.black_level_dn,
                     white_level_dn=card.sensor.white_level_dn[0], iso=iso, make=card.camera.make, model=card.camera.model,
                     noise_profile=prof)


# ------------------------------------------------------------------------------------------------------
# DNG NoiseProfile
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_plane", [False, True], ids=["one-pair", "per-plane"])
def test_noise_profile_round_trip(pg_card, tmp_path, per_plane):
    """Card → DNG NoiseProfile → card gives the same K and read σ per ISO (both tag forms)."""
    paths = [_dng_from_card(pg_card, iso, tmp_path / f"i{iso}.dng", per_plane=per_plane) for iso in (200, 1600)]
    md = read_dng_metadata(paths[1])
    assert len(md.noise_profile) == (3 if per_plane else 1)
    s, o = md.noise_profile[0]
    assert s == pytest.approx(6.0 / RANGE, rel=1e-15) and o == pytest.approx(81.0 / RANGE**2, rel=1e-15)
    assert read_raw(paths[1]).noise_profile == md.noise_profile  # the raw reader carries it too
    card = card_from_dngs(paths)
    assert card.kind == KIND_POISSON_GAUSSIAN and card.isos == (200.0, 1600.0)
    for got, want in zip(card.iso_table, pg_card.iso_table):
        assert got.gain_k_dn_per_e == pytest.approx(want.gain_k_dn_per_e, rel=1e-12)
        assert got.read_sigma_dn == pytest.approx(want.read_sigma_dn, rel=1e-12)
    assert card.sensor.black_level_dn == (512.0,) * 4 and card.sensor.white_level_dn == (16383.0,) * 4
    assert card.provenance["source"] == "maker's NoiseProfile, Poisson–Gaussian only"
    assert (card.camera.make, card.camera.model) == ("Acme", "Acme One")


def test_per_plane_profile_uses_green_and_lists_the_others(tmp_path):
    prof = [(4e-4, 9e-7), (2e-4, 4e-7), (3e-4, 6e-7)]  # R, G, B
    p = write_dng(tmp_path / "a.dng", np.full((32, 32), 300, np.uint16), cfa="BGGR", black_level_dn=[60, 61, 62, 63],
                  white_level_dn=4095, iso=800, noise_profile=prof)
    assert read_dng_metadata(p).noise_profile == tuple(prof)
    card = card_from_dngs([p])
    green_range = 4095 - (61 + 62) / 2  # the G sites of BGGR are sites 1 and 2
    assert card.iso_table[0].gain_k_dn_per_e == pytest.approx(2e-4 * green_range, rel=1e-12)
    assert card.iso_table[0].read_sigma_dn == pytest.approx(math.sqrt(4e-7) * green_range, rel=1e-12)
    assert card.sensor.cfa.pattern == "BGGR" and card.sensor.bit_depth == 12
    assert any("green plane used" in n and "R: K" in n for n in card.provenance["notes"])


def test_noise_profile_describes_the_simulated_noise(pg_card, tmp_path, capsys):
    """noisesim simulate → DNG: its NoiseProfile predicts the variance of its own pixels (+1/12 DN² quantization)."""
    card_path = save_card(pg_card, tmp_path / "pg.toml")
    clean = tmp_path / "clean.npy"
    x = 0.2  # normalized signal
    np.save(clean, np.full((128, 128), x, np.float32))
    out = tmp_path / "noisy.dng"
    assert main(["simulate", "--card", str(card_path), "--iso", "1600", "--input", str(clean), "--input-unit", "normalized",
                 "--output", str(out), "--seed", "3"]) == 0
    md = read_dng_metadata(out)
    assert md.iso == 1600 and len(md.noise_profile) == 3
    s, o = md.noise_profile[1]
    frame = read_raw(out).mosaic.astype(np.float64)
    var = ((frame - 512) / RANGE).var()
    want = s * x + o + 1 / 12 / RANGE**2
    assert abs(var - want) < 5 * want * math.sqrt(2 / frame.size)


def test_linear_dng_recognised_and_said(tmp_path):
    p = write_linear_dng(tmp_path / "pro.dng", np.full((32, 32, 3), 900, np.uint16), black_level_dn=64, white_level_dn=4095,
                         iso=320, noise_profile=[(1e-4, 1e-6)] * 3, make="Apple", model="iPhone")
    md = read_dng_metadata(p)
    assert md.linear and md.cfa is None
    with pytest.raises(InputFileError, match="not a CFA mosaic"):
        read_raw(p)  # the mosaic reader still refuses it for calibration
    card = card_from_dngs([p])
    assert "linear" in card.provenance["source"] and "demosaiced" in card.provenance["notes"][0]
    assert card.iso_table[0].gain_k_dn_per_e == pytest.approx(1e-4 * (4095 - 64))


def test_repeated_iso_is_averaged_and_cameras_must_agree(pg_card, tmp_path):
    a = _dng_from_card(pg_card, 200, tmp_path / "a.dng")
    b = write_dng(tmp_path / "b.dng", np.full((32, 32), 900, np.uint16), cfa="RGGB", black_level_dn=512, white_level_dn=16383,
                  iso=200, make="Acme", model="Acme One", noise_profile=[(1.25 * 0.75 / RANGE, 2.5**2 / RANGE**2)])
    card = card_from_dngs([a, b])
    assert len(card.iso_table) == 1 and card.iso_table[0].gain_k_dn_per_e == pytest.approx(0.75 * 1.125)
    other = write_dng(tmp_path / "c.dng", np.full((32, 32), 900, np.uint16), cfa="RGGB", black_level_dn=512,
                      white_level_dn=16383, iso=400, make="Other", model="Cam", noise_profile=[(1e-4, 1e-7)])
    with pytest.raises(InputFileError, match="c.dng: camera Other Cam differs"):
        card_from_dngs([a, other])


def test_cli_import_dng_and_bad_files(pg_card, tmp_path, capsys):
    paths = [_dng_from_card(pg_card, iso, tmp_path / f"i{iso}.dng") for iso in (200, 1600)]
    out = tmp_path / "imported.toml"
    assert main(["cards", "import", *map(str, paths), "--output", str(out)]) == 0
    card = load_card(out)
    assert card.kind == KIND_POISSON_GAUSSIAN and card.isos == (200.0, 1600.0)
    assert sample_params(card, iso=1600).read_model == "gaussian"
    bare = write_dng(tmp_path / "bare.dng", np.full((32, 32), 600, np.uint16), cfa="RGGB", black_level_dn=512, iso=100)
    noiso = write_dng(tmp_path / "noiso.dng", np.full((32, 32), 600, np.uint16), cfa="RGGB", black_level_dn=512, noise_profile=[(1e-4, 1e-7)])
    capsys.readouterr()
    for bad, msg in ((bare, "no NoiseProfile tag"), (noiso, "no ISO")):
        assert main(["cards", "import", str(bad), "--output", str(tmp_path / "x.toml")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and bad.name in err[0] and msg in err[0]
    assert not (tmp_path / "x.toml").exists()


def test_write_dng_rejects_a_bad_noise_profile(tmp_path):
    with pytest.raises(ParameterError, match="noise_profile"):
        write_dng(tmp_path / "a.dng", np.zeros((4, 4), np.uint16), cfa="RGGB", noise_profile=[(1e-4, 0), (1e-4, 0)])
    with pytest.raises(ParameterError, match="S > 0"):
        write_dng(tmp_path / "a.dng", np.zeros((4, 4), np.uint16), cfa="RGGB", noise_profile=[(-1e-4, 0)])
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------------
# Android camera2
# ------------------------------------------------------------------------------------------------------
def test_android_dump_import(tmp_path):
    dump = {
        "make": "Google", "model": "Pixel Test",
        "characteristics": {"android.sensor.info.colorFilterArrangement": 1, "android.sensor.blackLevelPattern": [[64, 64], [64, 64]],
                            "android.sensor.info.whiteLevel": 1023},
        "captureResults": [
            {"android.sensor.sensitivity": 800,
             "android.sensor.noiseProfile": [[3e-3, 2e-5], [2e-3, 1e-5], [2.2e-3, 1.2e-5], [3.2e-3, 2.2e-5]]},
            {"SENSOR_SENSITIVITY": 100, "SENSOR_DYNAMIC_BLACK_LEVEL": [63, 64, 65, 66], "SENSOR_DYNAMIC_WHITE_LEVEL": 1023,
             "SENSOR_NOISE_PROFILE": [{"first": 4e-4, "second": 3e-6}, {"first": 2.5e-4, "second": 2e-6},
                                      {"first": 2.5e-4, "second": 2e-6}, {"first": 4e-4, "second": 3e-6}]},
            {"android.sensor.sensitivity": 400},  # a partial result without a profile is skipped
        ],
    }
    path = tmp_path / "capture.json"
    path.write_text(json.dumps(dump))
    card = card_from_android_dump(path)
    assert card.kind == KIND_POISSON_GAUSSIAN and card.isos == (100.0, 800.0) and card.sensor.cfa.pattern == "GRBG"
    assert (card.camera.make, card.camera.model, card.sensor.bit_depth) == ("Google", "Pixel Test", 10)
    # GRBG: greens are channels 0 and 3; ISO 800 with black 64: K = mean(S_G) · (1023 − 64)
    hi = card.iso_entry(800)
    assert hi.gain_k_dn_per_e == pytest.approx((3e-3 + 3.2e-3) / 2 * 959, rel=1e-12)
    assert hi.read_sigma_dn == pytest.approx(math.sqrt((2e-5 + 2.2e-5) / 2 * 959**2), rel=1e-12)
    lo = card.iso_entry(100)  # per-result dynamic black level: G sites 0 (63) and 3 (66)
    assert lo.gain_k_dn_per_e == pytest.approx((4e-4 * (1023 - 63) + 4e-4 * (1023 - 66)) / 2, rel=1e-12)
    assert card.sensor.black_level_dn == (63.0, 64.0, 65.0, 66.0) and lo.black_level_dn is None
    assert card.iso_entry(800).black_level_dn == (64.0,) * 4  # differs from the lowest ISO's: kept per ISO
    assert import_card([path]).iso_table == card.iso_table
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"captureResults": [{"android.sensor.sensitivity": 100}]}))
    with pytest.raises(InputFileError, match="neither darktable"):
        import_card(bad)


# ------------------------------------------------------------------------------------------------------
# darktable (an excerpt written here in darktable's layout; the numbers are made up)
# ------------------------------------------------------------------------------------------------------
DT = {
    "version": 0,
    "noiseprofiles": [
        {"maker": "Canon", "models": [
            {"comment": "test", "model": "EOS 6D", "profiles": [
                {"name": "EOS 6D iso 100", "iso": 100, "a": [4e-6, 2e-6, 3e-6], "b": [3e-8, 2e-8, 3e-8]},
                {"name": "EOS 6D iso 1600", "iso": 1600, "a": [6.4e-5, 3.2e-5, 4.8e-5], "b": [3e-7, 2.5e-7, 3e-7]},
                {"name": "EOS 6D iso 1600", "iso": 1600, "a": [6.4e-5, 3.0e-5, 4.8e-5], "b": [3e-7, 2.7e-7, 3e-7]},
                {"name": "EOS 6D iso 25600", "iso": 25600, "a": [1e-3, 5e-4, 8e-4], "b": [-2e-6, -1e-6, -2e-6]},
            ]},
            {"comment": "test", "model": "EOS 6D Mark II", "profiles": [
                {"name": "EOS 6D Mark II iso 100", "iso": 100, "a": [3e-6, 1.5e-6, 2e-6], "b": [2e-8, 1e-8, 2e-8]}]},
            {"comment": "test", "model": "EOS 5D", "skip": True, "profiles": [
                {"name": "EOS 5D iso 100", "iso": 100, "a": [3e-6, 1.5e-6, 2e-6], "b": [2e-8, 1e-8, 2e-8]}]},
        ]},
        {"maker": "NIKON CORPORATION", "models": [
            {"comment": "test", "model": "NIKON D750", "profiles": [
                {"name": "D750 iso 200", "iso": 200, "a": [5e-6, 2.5e-6, 4e-6], "b": [4e-8, 3e-8, 4e-8]}]},
        ]},
    ],
}


@pytest.fixture
def dt_file(tmp_path):
    path = tmp_path / "noiseprofiles.json"
    path.write_text(json.dumps(DT))
    return path


def test_darktable_green_variance_is_reproduced(dt_file):
    """At several signal levels the simulated variance, in darktable's units (normalized raw), is a_G·x + b_G."""
    card = card_from_darktable(dt_file, camera="canon 6d")
    assert (card.camera.make, card.camera.model, card.isos) == ("Canon", "Canon EOS 6D", (100.0, 1600.0, 25600.0))
    a, b = 3.1e-5, 2.6e-7  # ISO 1600: two profiles, averaged
    params = sample_params(card, iso=1600)
    comps = NoiseComponents(quantize=False, dither=False)  # darktable's units have no DN quantization
    n = 256 * 256
    for x in (0.005, 0.05, 0.3, 0.7):
        noisy = simulate(np.full((256, 256), x, np.float32), params, card.sensor, components=comps, rng=int(x * 1000))
        want = a * x + b
        got = noisy.astype(np.float64).var()
        assert abs(got - want) < 5 * want * math.sqrt(2 / n), (x, got, want)
    assert any("UNSOURCED" in n and "16383" in n for n in card.provenance["notes"])


def test_darktable_negative_b_skip_and_levels(dt_file):
    card = card_from_darktable(dt_file, camera="Canon EOS 6D", black_level_dn=2048, white_level_dn=15000)
    top = card.iso_entry(25600)
    assert top.read_sigma_dn == 0 and top.gain_k_dn_per_e == pytest.approx(5e-4 * 12952)
    assert any("ISO 25600" in n and "negative" in n for n in card.provenance["notes"])
    assert not any("UNSOURCED: black" in n for n in card.provenance["notes"])
    with pytest.raises(InputFileError, match="2 cameras match 'canon eos 6'"):
        card_from_darktable(dt_file, camera="canon eos 6")
    with pytest.raises(InputFileError, match="holds 3 cameras; choose one with --camera"):
        card_from_darktable(dt_file)  # EOS 5D is marked skip
    with pytest.raises(InputFileError, match="no camera matches 'EOS 5D'"):
        card_from_darktable(dt_file, camera="EOS 5D")
    assert card_from_darktable(dt_file, camera="nikon d750").camera.model == "NIKON D750"


def test_cli_import_darktable(dt_file, tmp_path, capsys):
    out = tmp_path / "6d.toml"
    assert main(["cards", "import", str(dt_file), "--camera", "Canon EOS 6D", "--output", str(out)]) == 0
    assert load_card(out).kind == KIND_POISSON_GAUSSIAN
    assert main(["cards", "import", str(dt_file), "--output", str(out)]) == 2
    assert "--camera" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------
# ELD parameter files
# ------------------------------------------------------------------------------------------------------
def _fit(s, b, r):
    return {"slope": np.float64(s), "bias": np.float64(b), "sigma": np.float64(r)}


ELD = {
    "Kmin": 0.5, "Kmax": 8.0,
    "Profile-1": {"G_scale": _fit(0.8, 0.3, 0.1), "g_scale": _fit(0.9, 0.5, 0.1), "R_scale": _fit(0.85, -1.5, 0.2)},
    "Profile-2": {"G_scale": _fit(1.0, -1.2, 0.01), "g_scale": _fit(0.95, 0.2, 0.02), "R_scale": _fit(0.97, -2.7, 0.03)},
    "G_shape": np.array([0.1, 0.05, 0.0, -0.05]),
    "color_bias": [np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.1, 0.2, 0.3, 0.4]),
                   np.array([-1.0, -2.0, -3.0, -4.0]), np.array([5.0, 6.0, 7.0, 8.0])],
}


def test_eld_npy_import_follows_the_released_sampler(tmp_path):
    path = tmp_path / "TestCam_params.npy"
    np.save(path, ELD)  # as the ELD authors did (a pickled dict)
    card = card_from_eld_npy(path)
    j = card.joint
    assert [p.name for p in j.profiles] == ["Profile-1"]  # ELD's sampler: profiles = ['Profile-1']
    assert j.profiles[0].read_sigma_dn.slope == 0.9 and j.profiles[0].read_sigma_dn.intercept == 0.5
    assert j.tukey_lambda_values == (0.1, 0.05, 0.0, -0.05)
    assert j.black_level_error_bins[0] == (1.0, 2.0, 4.0, 3.0)  # R, G1, B, G2 → R, G1, G2, B
    # equal-width ln K bins: K = 1.9 lies in bin 1 of ln 0.5 … ln 8 (it would be bin 0 in linear K)
    assert j.black_level_bin(1.9) == 1 and int((1.9 - 0.5) / (7.5 / 4)) == 0
    notes = " ".join(card.provenance["notes"])
    assert "Profile-2 (released, not sampled" in notes and "ln K bins" in notes
    assert card.provenance["black_level_source"].startswith("UNSOURCED")
    assert sample_params(card, rng=0).read_model == "tukey"
    assert card.name == "TestCam"


def test_eld_npy_refuses_arbitrary_pickles(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil_params.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(pickle.dumps(Evil(), protocol=3))
    with pytest.raises(InputFileError, match=r"evil_params.npy: refused to unpickle (posix|os|nt)\.mkdir"):
        load_eld_params(path)
    assert not marker.exists()
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(InputFileError, match="plain float64 array"):
        load_eld_params(plain)
    text = tmp_path / "text.npy"
    text.write_bytes(b"hello")
    with pytest.raises(InputFileError, match="not a .npy file"):
        load_eld_params(text)


def test_cli_import_eld_npy_with_levels(tmp_path, capsys):
    path = tmp_path / "TestCam_params.npy"
    np.save(path, ELD)
    out = tmp_path / "eld.toml"
    assert main(["cards", "import", str(path), "--black-level", "512", "--output", str(out)]) == 0
    card = load_card(out)
    assert card.sensor.black_level_dn == (512.0,) * 4 and "black_level_source" not in card.provenance
    assert [p.name for p in card.joint.profiles] == ["Profile-1"]
    capsys.readouterr()
    assert main(["cards", "import", str(path), "--camera", "x", "--output", str(tmp_path / "y.toml")]) == 2
    assert "--camera picks a model in darktable" in capsys.readouterr().err
