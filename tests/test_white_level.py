"""``white_level_dn`` is one type everywhere (issue 10 item 5): 4 floats per colour site in Bayer reading
order, like ``black_level_dn``, in every record; parameters take a scalar or 4 values. Before, it was 4 floats
on a Sensor but one float on RawFrame, DNGMetadata, FrameInfo and DarkFrameBank."""

from __future__ import annotations

import dataclasses
import importlib

import h5py
import numpy as np
import pytest

from noisesim.dng import write_dng, write_linear_dng
from noisesim.errors import ParameterError

from test_api import MODULES

FOUR = "tuple[float, float, float, float]"


def _records():
    out = []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # optional extras
            continue
        for obj in vars(mod).values():
            if dataclasses.is_dataclass(obj) and isinstance(obj, type) and obj.__module__ == name:
                fields = {f.name: str(f.type) for f in dataclasses.fields(obj)}
                if "white_level_dn" in fields:
                    out.append((f"{name}.{obj.__qualname__}", fields))
    return out


def test_every_record_declares_white_level_like_black_level():
    records = _records()
    names = [n for n, _ in records]
    for must in ("noisesim.params.Sensor", "noisesim.rawio.RawFrame", "noisesim.rawio.DNGMetadata",
                 "noisesim.calibration.capture.FrameInfo"):
        assert must in names, names
    bad = []
    for name, fields in records:
        white = fields["white_level_dn"].removesuffix(" | None")  # Sensor: None until __post_init__ fills it
        if not white.startswith("tuple[float") or white != fields.get("black_level_dn", white).removesuffix(" | None"):
            bad.append(f"{name}: white_level_dn {fields['white_level_dn']}, black_level_dn {fields.get('black_level_dn')}")
    assert not bad, bad


def _is4(v):
    return isinstance(v, tuple) and len(v) == 4 and all(type(x) is float for x in v)


def test_values_read_from_files_are_4_per_site_floats(tmp_path):
    from noisesim.calibration.capture import frame_from_array, scan_capture
    from noisesim.darkbank import DarkFrame, DarkFrameBank, build_dark_bank
    from noisesim.params import Sensor
    from noisesim.rawio import read_dng_metadata, read_raw

    raw = np.full((64, 96), 600, np.uint16)
    (tmp_path / "darks").mkdir()
    p = write_dng(tmp_path / "darks" / "a.dng", raw, cfa="RGGB", black_level_dn=512, white_level_dn=(16000,) * 4, iso=100, exposure_s=0.01)
    frame = read_raw(p)
    assert _is4(frame.white_level_dn) and frame.white_level_dn == (16000.0,) * 4
    assert np.allclose(frame.normalized(), 88 / 15488)
    md = read_dng_metadata(p)
    assert _is4(md.white_level_dn) and md.white_level_dn == (16000.0,) * 4
    lin = read_dng_metadata(write_linear_dng(tmp_path / "l.dng", np.full((64, 96, 3), 700, np.uint16),
                                             black_level_dn=64, white_level_dn=4095, iso=100))
    assert lin.white_level_dn == (4095.0,) * 3  # laid out as its black level: per plane
    fi = scan_capture(tmp_path).frames[0]
    assert _is4(fi.white_level_dn) and fi.white_level_dn == (16000.0,) * 4
    assert _is4(frame_from_array(raw, kind="dark", iso=100, exposure_s=0.01, cfa="RGGB", black_level_dn=512,
                                 white_level_dn=16383).white_level_dn)
    assert _is4(Sensor("RGGB", 14, 512, 16383).white_level_dn) and _is4(Sensor("RGGB", 12).white_level_dn)
    bank = build_dark_bank(tmp_path / "b.h5", [DarkFrame(raw, 100, 0.01, (512.0,) * 4, "a")], cfa="RGGB",
                           white_level_dn=(16000, 16000, 16001, 16000))
    assert DarkFrameBank(bank).white_level_dn == (16000.0, 16000.0, 16001.0, 16000.0)


def test_a_bank_with_one_white_level_still_reads(tmp_path):
    """Banks written before the per-site levels hold one white level: read as 4 equal values."""
    from noisesim.darkbank import DarkFrame, DarkFrameBank, build_dark_bank

    path = build_dark_bank(tmp_path / "b.h5", [DarkFrame(np.full((8, 8), 512, np.uint16), 100, 0.01, (512.0,) * 4, "a")],
                           cfa="RGGB", white_level_dn=16383)
    with h5py.File(path, "r+") as f:
        f.attrs["white_level_dn"] = 16383.0
    assert DarkFrameBank(path).white_level_dn == (16383.0,) * 4


def test_manifest_white_level_may_be_per_site(tmp_path):
    from noisesim.calibration.capture import read_manifest

    np.save(tmp_path / "d.npy", np.full((8, 8), 512, np.uint16))
    head = "path,kind,iso,exposure_s,black_level,white_level,cfa\n"
    (tmp_path / "m.csv").write_text(head + "d.npy,dark,100,0.01,512,16383 16383 16000 16383,RGGB\n")
    assert read_manifest(tmp_path / "m.csv").frames[0].white_level_dn == (16383.0, 16383.0, 16000.0, 16383.0)
    (tmp_path / "m.csv").write_text(head + "d.npy,dark,100,0.01,512,16383,RGGB\n")
    assert read_manifest(tmp_path / "m.csv").frames[0].white_level_dn == (16383.0,) * 4


def test_dng_refuses_per_site_whites_it_cannot_store(tmp_path):
    """A CFA DNG has one WhiteLevel: unequal per-site values are an error, not a silent choice of one."""
    raw = np.full((8, 8), 600, np.uint16)
    with pytest.raises(ParameterError, match="one white level"):
        write_dng(tmp_path / "a.dng", raw, cfa="RGGB", black_level_dn=512, white_level_dn=(16383, 16383, 16000, 16383))
    assert not (tmp_path / "a.dng").exists()
