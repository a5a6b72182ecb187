"""Output locations checked before the work: a calibration takes minutes, and an output that cannot be
written should fail at the start, naming the real path, not after the card is written."""

from __future__ import annotations

import os
from pathlib import Path

from noisesim.errors import InputFileError

__all__ = ["check_output_path"]


def check_output_path(path, *, suffixes: tuple[str, ...] = (), what: str = "output file") -> Path:
    """Refuse an output path that cannot be written: a wrong suffix, a folder, a missing or read-only folder.

    Parameters
    ----------
    path : str or Path
        The file to write.
    suffixes : tuple of str
        Accepted suffixes, lower case with the dot (``(".h5", ".hdf5")``); empty: any.
    what : str
        Names the file in the error ("card file", "report").

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputFileError
        Naming ``path`` and what is wrong.
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputFileError(f"{path}: the {what} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder; the {what} needs a file name")
    folder = path.parent
    if not folder.is_dir():
        raise InputFileError(f"{path}: folder {folder} does not exist" if not folder.exists() else
                             f"{path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputFileError(f"{path}: folder {folder} is not writable")
    return path
