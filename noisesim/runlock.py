"""An exclusive lock on an output path, held for a whole run (``<output>.lock``).

Two ``noisesim generate`` runs writing the same output would destroy each other's partial file (HDF5's own
lock is taken only after ``h5py.File(..., "w")`` has truncated it, and ``--force`` deletes the other run's
live partial). :class:`RunLock` is taken before anything is touched; the second run fails at once with a
message naming the first run's PID and the file it is writing.

The lock is an OS advisory lock (``fcntl.flock``) on ``<output>.lock``: the kernel releases it when its
holder exits, however it dies (``kill -9`` included), so a stale lock file never blocks a later run. The
file holds ``PID host`` for the message, and is removed when the run ends. Where ``fcntl`` is missing
(Windows), the file is created with ``O_EXCL`` instead; a crash then leaves it behind, and the message
says to delete it once no run is active.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

from .errors import DatasetError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["RunLock", "lock_path"]

LOCK_SUFFIX = ".lock"


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of ``output``: ``ds.h5`` → ``ds.h5.lock`` (same folder).

    Parameters
    ----------
    output : str or PathLike
        The dataset file.

    Returns
    -------
    Path
    """
    output = Path(output)
    return output.with_name(output.name + LOCK_SUFFIX)


class RunLock:
    """Exclusive lock on ``output`` for this process; use as a context manager.

    Parameters
    ----------
    output : path
        The file the run writes (for ``generate``: the output, or the master file of a sharded dataset).
    what : str
        What the holder is doing, for the message (``"writing ds.h5.partial"``).
    """

    def __init__(self, output: str | os.PathLike, *, what: str | None = None):
        self.output = Path(output)
        self.path = lock_path(self.output)
        self.what = what or f"writing {self.output}"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _busy(self, holder: str) -> DatasetError:
        parts = holder.strip().split(" ", 2)
        pid = parts[0] if parts and parts[0].isdigit() else None
        host = parts[1] if len(parts) > 1 else ""
        doing = parts[2] if len(parts) > 2 else f"writing {self.output}"
        who = f"PID {pid}" if pid else "a process whose PID is not recorded"
        if host and host != socket.gethostname():
            who += f" on {host}"
        hint = "" if fcntl is not None else f"; if no run is active, delete {self.path}"
        return DatasetError(f"{self.output} is in use: another run ({who}) is {doing} (lock {self.path}); "
                            f"wait for it to finish or stop it{hint}")

    def _read_holder(self) -> str:
        # The holder writes its PID right after locking; give it a moment if the file is still empty.
        for _ in range(20):
            try:
                text = self.path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            if text.strip():
                return text
            time.sleep(0.01)
        return ""

    def acquire(self) -> None:
        """Take the lock or raise :class:`DatasetError` naming the holder (never waits)."""
        stamp = f"{os.getpid()} {socket.gethostname()} {self.what}\n".encode()
        if fcntl is None:  # pragma: no cover - Windows
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                raise self._busy(self._read_holder()) from None
            os.write(fd, stamp)
            self._fd = fd
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:  # the output's folder is missing or read-only: name the output, not the lock
                raise OSError(exc.errno, f"{exc.strerror or exc} (its lock file {self.path.name} cannot be made)",
                              str(self.output)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._busy(self._read_holder()) from None
                raise
            # A finishing holder unlinks the file while still holding the lock: if we locked a file that
            # is no longer the one under the name, another run may lock the new one; start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, stamp)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: see acquire()
        finally:
            os.close(self._fd)
            self._fd = None
