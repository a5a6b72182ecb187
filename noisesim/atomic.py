"""Atomic file writes: the one implementation every writer of noisesim uses.

A file is written under a temporary name in the destination folder and renamed over the destination
only once it is complete and on disk, so a reader (or a crash) never sees a half-written file under the
final name. The temporary file is removed whatever goes wrong (disk full, a file-size limit, an
exception in the caller's code, Ctrl-C), and the finished file gets the permissions an ordinary
``open(path, "w")`` would give it (``0o666`` less the process umask), not ``mkstemp``'s ``0o600``.

    with atomic_path("card.toml") as tmp:      # any writer that takes a file name
        tifffile.imwrite(tmp, array)
    write_bytes("maps.npz", data)              # or bytes / text directly
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputFileError

__all__ = ["atomic_path", "write_bytes", "write_text", "check_output_path", "current_umask", "default_file_mode"]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``).

    Returns
    -------
    int
        Permission bits the process masks from new files (e.g. ``0o022``).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore (not thread-safe for the instant it lasts)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Permission bits of a newly created regular file: ``0o666 & ~umask``.

    Returns
    -------
    int
        Mode bits, e.g. ``0o644`` under umask ``0o022``.
    """
    return 0o666 & ~current_umask()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on normal exit it is renamed to ``path``.

    The temporary name keeps the destination's suffix (``.name.XXXX.tmp.png``), for writers that pick
    the format from it. On any exception (including ``KeyboardInterrupt``) the temporary file is deleted
    and the exception propagates; ``path`` is untouched.

    Parameters
    ----------
    path : path
        Destination; its folder must exist.
    fsync : bool
        Flush the file to disk before the rename (default), so a power loss cannot leave an empty file
        under the final name.

    Yields
    ------
    Path
        The temporary file to write (same folder and suffix as ``path``).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    except OSError as exc:  # a missing or read-only folder: name the destination, not the temporary name
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_file_mode())
        if fsync:
            _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            # e.g. numpy's "65536 requested and 29936 written", or the rename onto a folder: say which file
            # (the destination, not the temporary name), and the likely cause
            reason = exc.strerror or str(exc) or type(exc).__name__
            if exc.errno is None:
                reason += " (short write: disk full or file-size limit?)"
            raise OSError(exc.errno, reason, str(path)) from exc
        raise


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``.

    Parameters
    ----------
    path : str or PathLike
        Destination; its folder must exist.
    data : bytes
        The whole file content.
    fsync : bool
        Flush to disk before the rename (see :func:`atomic_path`).

    Returns
    -------
    Path
        ``path``, now complete.
    """
    path = Path(path)
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``.

    Parameters
    ----------
    path : str or PathLike
        Destination; its folder must exist.
    text : str
        The whole file content.
    encoding : str
        Text encoding.
    fsync : bool
        Flush to disk before the rename (see :func:`atomic_path`).

    Returns
    -------
    Path
        ``path``, now complete.
    """
    return write_bytes(path, text.encode(encoding), fsync=fsync)


def check_output_path(path, *, suffixes: tuple[str, ...] = (), what: str = "output file") -> Path:
    """Refuse an output path that cannot be written: a wrong suffix, a folder, a missing or read-only folder
    (called before long work, so that it fails at the start naming the real path, not after other outputs).

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
