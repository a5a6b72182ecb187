"""Dark-frame banks from captures: the darks of a capture folder or manifest into :mod:`noisesim.darkbank`."""

from __future__ import annotations

import logging
from pathlib import Path

from noisesim.atomic import check_output_path
from noisesim.darkbank import DarkFrame, build_dark_bank
from noisesim.errors import InputFileError

from .capture import Capture, scan_capture

__all__ = ["bank_from_capture"]

log = logging.getLogger("calibration")


def bank_from_capture(capture, output, *, sensor, camera: str = "", progress=None) -> Path:
    """Store every dark frame of a capture in a bank, one frame in memory at a time.

    Parameters
    ----------
    capture : str, Path or Capture
        A folder of dark frames (or a capture with ``darks/``), or a CSV/TOML manifest.
    output : path
        The bank file (``.h5``), written atomically.
    sensor : Sensor
        The card's sensor: each frame's CFA must match it and its white level fit its bit depth.
    camera : str
        Stored with the bank.
    progress : callable, optional
        Wraps the frames (e.g. ``tqdm``).

    Returns
    -------
    Path
        ``output``.
    """
    output = check_output_path(output, suffixes=(".h5", ".hdf5"), what="bank file")
    cap = capture if isinstance(capture, Capture) else scan_capture(capture)
    for p in cap.problems:  # a folder's skipped files, named (a manifest's are errors)
        log.warning("%s", p)
    darks = cap.by_kind("dark")
    if not darks:
        why = cap.problem_summary()
        raise InputFileError(f"{cap.source}: no dark frames found" + (f": {why}" if why else ""))
    for fr in darks:
        if fr.cfa != sensor.cfa.pattern:
            raise InputFileError(f"{fr.path}: CFA {fr.cfa} differs from the card's {sensor.cfa.pattern}")
        if max(fr.white_level_dn) > sensor.max_dn:
            raise InputFileError(f"{fr.path}: white level {max(fr.white_level_dn):g} DN exceeds the card's {sensor.bit_depth}-bit range")
    frames = (DarkFrame(fr.load(), fr.iso, fr.exposure_s, fr.black_level_dn, Path(fr.path).name) for fr in darks)
    if progress is not None:
        frames = progress(frames)
    return build_dark_bank(output, frames, cfa=sensor.cfa, white_level_dn=sensor.white_level_dn,
                           bit_depth=sensor.bit_depth, camera=camera)
