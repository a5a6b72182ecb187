"""One atomic-write helper: umask honoured, no temporary file left on error (issue 10 item 4, issue 11 item 5)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from noisesim.atomic import atomic_path, current_umask, write_bytes, write_text


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_current_umask_reads_without_changing(umask_027):
    assert current_umask() == 0o027
    assert current_umask() == 0o027


def test_write_honours_umask(tmp_path, umask_027):
    p = write_text(tmp_path / "a.txt", "x")
    assert p.read_text() == "x"
    assert _mode(p) == 0o640
    os.umask(0o022)
    assert _mode(write_bytes(tmp_path / "b.bin", b"y")) == 0o644


def test_error_leaves_no_temporary_and_keeps_old_file(tmp_path):
    dest = tmp_path / "a.npy"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_keyboard_interrupt_leaves_no_temporary(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "x.tif"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_temporary_keeps_suffix(tmp_path):
    with atomic_path(tmp_path / "sheet.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".sheet.png.")
        tmp.write_bytes(b"")


def test_every_atomic_writer_honours_umask(tmp_path, umask_027):
    """Cards, maps sidecars, .npy / .tiff arrays and DNGs: -rw-r----- under umask 027 (was -rw-------)."""
    from noisesim.card import load_card, save_card
    from noisesim.dng import write_dng
    from noisesim.params import FixedPatternMaps
    from noisesim.rawio import write_array

    maps = FixedPatternMaps(prnu=np.zeros((4, 4), np.float32))
    card = load_card("SonyA7S2").with_maps(maps, file="cam_maps.npz")
    out = save_card(card, tmp_path / "card.toml")
    written = [out, write_array(tmp_path / "a.npy", np.zeros((4, 4), np.uint16)),
               write_array(tmp_path / "a.tiff", np.zeros((4, 4), np.uint16)),
               write_dng(tmp_path / "a.dng", np.full((4, 6), 600, np.uint16), cfa="RGGB", black_level_dn=512,
                         white_level_dn=16383)]
    written.append(tmp_path / "card_maps.npz")  # sidecars are named after the card file
    for p in written:
        assert _mode(p) == 0o640, p
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("where", ["missing/a.npy", "file.npy/a.npy"])
def test_an_unwritable_folder_is_reported_under_the_destination_name(tmp_path, where):
    """mkstemp's error named the temporary file (``.a.npy.x1y2.tmp.npy``), which the user never asked for."""
    (tmp_path / "file.npy").write_bytes(b"x")
    dest = tmp_path / where
    with pytest.raises(OSError) as info:
        write_bytes(dest, b"data")
    assert info.value.filename == str(dest)
    assert ".tmp" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.npy"]
