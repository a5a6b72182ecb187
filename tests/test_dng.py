"""The DNG writer (tifffile): rawpy and exifread read back pixels, CFA, levels, ISO and exposure."""

import numpy as np
import pytest

from noisesim.cfa import CFA
from noisesim.dng import write_dng
from noisesim.errors import NoiseSimError

rawpy = pytest.importorskip("rawpy")
exifread = pytest.importorskip("exifread")


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_rawpy_reads_back_pixels_cfa_and_levels(tmp_path, pattern):
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 16384, size=(64, 96)).astype(np.uint16)
    black = [512, 513, 514, 515]  # per site, Bayer reading order
    path = write_dng(tmp_path / "a.dng", raw, cfa=pattern, black_level_dn=black, white_level_dn=16000, iso=1600, exposure_s=1 / 125)
    with rawpy.imread(str(path)) as r:
        assert r.raw_type == rawpy.RawType.Flat
        np.testing.assert_array_equal(r.raw_image_visible, raw)
        desc = r.color_desc.decode()
        colors = r.raw_colors_visible[:2, :2]
        assert "".join(desc[i] for i in colors.ravel()) == pattern
        per_site = [r.black_level_per_channel[i] for i in colors.ravel()]
        assert per_site == black
        assert r.white_level == 16000


def test_exif_iso_and_exposure_as_ratio(tmp_path):
    """ISO and exposure in IFD 0 (TIFF/EP placement; tifffile writes no EXIF sub-IFD)."""
    path = write_dng(tmp_path / "b.dng", np.full((32, 32), 600, np.uint16), cfa="RGGB", black_level_dn=512, iso=3200, exposure_s=1 / 250)
    with open(path, "rb") as f:
        tags = exifread.process_file(f, details=False)
    assert int(tags["Image ISOSpeedRatings"].values[0]) == 3200
    ratio = tags["Image ExposureTime"].values[0]
    assert (ratio.numerator, ratio.denominator) == (1, 250)


def test_calibration_reader_maps_levels_per_site(tmp_path):
    from noisesim.calibration.capture import read_exif, read_raw_frame

    raw = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    path = write_dng(tmp_path / "c.dng", raw, cfa="GBRG", black_level_dn=[60, 61, 62, 63], white_level_dn=4095, iso=100, exposure_s=0.5)
    got, cfa, black, white = read_raw_frame(path)
    np.testing.assert_array_equal(got, raw)
    assert cfa == "GBRG" and black == (60.0, 61.0, 62.0, 63.0) and white == (4095.0,) * 4
    assert read_exif(path) == (100.0, 0.5)


def test_bad_input_is_a_noisesim_error(tmp_path):
    with pytest.raises(NoiseSimError):
        write_dng(tmp_path / "d.dng", np.zeros((3, 4)), cfa="RGGB")  # odd height
    with pytest.raises(NoiseSimError):
        write_dng(tmp_path / "e.dng", np.full((4, 4), 70000.0), cfa="RGGB")
    with pytest.raises(NoiseSimError):
        write_dng(tmp_path / "f.dng", np.zeros((8, 8)), cfa="QUAD_RGGB")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_writer_is_atomic_and_float_input_rounds(tmp_path):
    raw = np.full((32, 32), 700.4)
    path = write_dng(tmp_path / "g.dng", raw, cfa=CFA("RGGB"), black_level_dn=512.5, iso=100, exposure_s=0.01)
    assert [p.name for p in tmp_path.iterdir()] == ["g.dng"]
    with rawpy.imread(str(path)) as r:
        assert int(r.raw_image_visible[0, 0]) == 700


def test_a_plain_tiff_named_dng_is_refused(tmp_path):
    """LibRaw reads a plain TIFF as a raw file: it was simulated as RGGB with levels 0 … 65535, exit 0."""
    import tifffile

    from noisesim.errors import InputFileError
    from noisesim.rawio import read_raw

    fake = tmp_path / "plain.dng"
    tifffile.imwrite(fake, np.full((64, 64), 2000, np.uint16))
    with pytest.raises(InputFileError, match="not a DNG"):
        read_raw(fake)
