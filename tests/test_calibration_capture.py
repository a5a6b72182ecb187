"""Calibrating from real files: DNG capture folders with EXIF, manifests, and bad captures."""

import numpy as np
import pytest

from noisesim.calibration.capture import scan_capture
from noisesim.calibration.pipeline import calibrate
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
from noisesim.dng import write_dng
from noisesim.errors import CalibrationError, InputFileError
from noisesim.params import NoiseParams, Sensor

SENSOR = Sensor("GRBG", 14, (500, 502, 504, 506), 16000)
P = {1600: NoiseParams(1.5, "tukey", 6.0, -0.04, 3.2, 0.8, 0.0, (0.8, -0.4, 0.2, 0.0))}


@pytest.fixture(scope="module")
def dng_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("capture")
    frames = synthetic_frames(P, SENSOR, (128, 192), SyntheticSpec(n_darks=17), rng=21)
    write_capture_dng(frames, folder)
    return folder


def test_calibrate_from_dng_folder(dng_folder):
    res = calibrate(dng_folder, "Maker Model", fidelity=False)
    r = res.iso_results[0]
    assert r.iso == 1600 and r.n_darks == 17  # without the fidelity check no dark is held out
    assert abs(r.gain_k_dn_per_e.value - 1.5) < 5 * r.gain_k_dn_per_e.se
    # per-site levels read through raw_colors: the black-level error comes back per site
    for e, b in zip(r.black_level_error_dn, P[1600].black_level_error_dn):
        assert abs(e.value - b) < 5 * e.se + 1e-9
    card = res.card
    assert card.sensor.cfa.pattern == "GRBG" and card.sensor.black_level_dn == (500, 502, 504, 506)
    assert card.camera.make == "Maker" and card.camera.model == "Model"
    assert card.provenance["n_files"] == 17 + 24


def test_bad_files_are_named_and_skipped(dng_folder, tmp_path):
    import shutil

    folder = tmp_path / "cap"
    shutil.copytree(dng_folder, folder)
    (folder / "darks" / "broken.dng").write_bytes(b"II*\0garbage")
    (folder / "flats" / "notes.txt").write_text("ignored")
    write_dng(folder / "darks" / "noexif.dng", np.full((128, 192), 500, np.uint16), cfa="GRBG", black_level_dn=500)
    write_dng(folder / "darks" / "small.dng", np.full((64, 64), 500, np.uint16), cfa="GRBG", black_level_dn=500, iso=1600, exposure_s=0.001)
    write_dng(folder / "loose.dng", np.full((128, 192), 500, np.uint16), cfa="GRBG", black_level_dn=500, iso=1600, exposure_s=0.001)
    cap = scan_capture(folder)
    msgs = {p.path.split("/")[-1]: p.message for p in cap.problems}
    assert "cannot be read as a raw file" in msgs["broken.dng"], msgs["broken.dng"]
    assert "EXIF" in msgs["noexif.dng"]
    assert "resolution" in msgs["small.dng"]
    assert "classified as dark" in msgs["loose.dng"]
    assert "notes.txt" not in msgs
    res = calibrate(cap, "A B", fidelity=False)  # the rest is still calibrated
    assert res.iso_results and any("broken.dng" in w for w in res.warnings)


def test_single_flat_and_saturated_flats(tmp_path):
    frames = synthetic_frames(P, SENSOR, (64, 64), SyntheticSpec(n_darks=4, flat_levels=(2.0, 3.0)), rng=2)
    with pytest.raises(CalibrationError, match="saturated"):
        calibrate(frames, "A B", fidelity=False)
    frames = synthetic_frames(P, SENSOR, (64, 64), SyntheticSpec(n_darks=4, flat_levels=(0.1, 0.2, 0.3)), rng=2)
    frames = [f for f in frames if not f.path.endswith("l01_0001")]
    res = calibrate(frames, "A B", fidelity=False)
    assert any("l01_0000" in w and "pairs" in w for w in res.warnings)


def test_manifest_of_npy_frames(tmp_path):
    frames = synthetic_frames(P, SENSOR, (64, 96), SyntheticSpec(n_darks=8, flat_levels=(0.05, 0.1, 0.2, 0.4)), rng=7)
    lines = ["path,kind,iso,exposure_s,black_level,white_level,cfa"]
    for i, f in enumerate(frames):
        np.save(tmp_path / f"f{i:03d}.npy", f.load())
        ex = "1/1000" if f.kind == "dark" else repr(f.exposure_s)
        lines.append(f"f{i:03d}.npy,{f.kind},{f.iso:g},{ex},500 502 504 506,16000,GRBG")
    (tmp_path / "manifest.csv").write_text("\n".join(lines))
    res = calibrate(tmp_path / "manifest.csv", "A B", fidelity=False)
    assert res.iso_results[0].n_darks == 8  # every dark used without the fidelity check
    assert res.card.sensor.black_level_dn == (500, 502, 504, 506)


def test_non_raw_file_and_missing_capture(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        scan_capture(tmp_path / "nope")
    (tmp_path / "darks").mkdir()
    (tmp_path / "darks" / "x.dng").write_bytes(b"not a raw file at all")
    with pytest.raises(CalibrationError, match="x.dng"):
        calibrate(tmp_path, "A B")


def test_cli_calibrate_and_validate(dng_folder, tmp_path, capsys):
    from noisesim.cli import main

    card = tmp_path / "cam.toml"
    rc = main(["calibrate", str(dng_folder), "--camera", "Maker Model", "--output", str(card), "--report", str(tmp_path / "r.html")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert card.exists() and (tmp_path / "cam_maps.npz").exists()
    assert "ISO 1600: K =" in out.out
    html = (tmp_path / "r.html").read_text()
    assert "<img" in html and "data:image/png;base64" in html
    rc = main(["validate", str(card), str(dng_folder)])
    out = capsys.readouterr()
    assert rc == 0 and "KL" in out.out and "tukey" in out.out


def test_cli_errors_name_the_file(tmp_path, capsys):
    from noisesim.cli import main

    rc = main(["calibrate", str(tmp_path / "missing"), "--camera", "A B", "--output", str(tmp_path / "c.toml")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing" in err and "Traceback" not in err
    assert not (tmp_path / "c.toml").exists()


def test_manifest_with_one_black_level_for_every_site(tmp_path):
    """A CSV cell "512" is one level for all four sites (it was refused as a list of one value)."""
    from noisesim.calibration.capture import read_manifest

    np.save(tmp_path / "d.npy", np.full((8, 8), 512, np.uint16))
    (tmp_path / "m.csv").write_text("path,kind,iso,exposure_s,black_level,white_level,cfa\n"
                                    "d.npy,dark,100,1/1000,512,16383,RGGB\n")
    cap = read_manifest(tmp_path / "m.csv")
    assert cap.frames[0].black_level_dn == (512.0,) * 4
