"""Producing samples: in this process, or in spawned worker processes that hand them back through
shared memory (the local pool of ``generate --workers N``)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import deque
from typing import Iterator, Sequence

import numpy as np

from ..errors import DatasetError
from .layout import PARAMS_DTYPE
from .synthesis import SynthesisJob, Synthesizer, seal

__all__ = [
    "SHM_DIR",
    "check_shared_memory",
    "produce",
    "shared_memory_bytes",
    "single_threaded_kernels",
]


_W: dict = {}


def single_threaded_kernels() -> None:
    """One numba and one OpenCV thread in this process: parallelism is across worker processes
    (the local pool's and a Dask cluster's), so a worker never oversubscribes its core."""
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):  # pragma: no cover
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def _exit_with_parent(parent_pid: int) -> None:
    """Make this worker exit as soon as the process that started it dies (``kill -9`` included).

    Linux: ``PR_SET_PDEATHSIG`` delivers SIGKILL at the parent's death. Everywhere (and as a fallback): a
    daemon thread that sees the parent PID change. Without this, orphaned workers (~180 MB each) and the
    resource tracker outlived a killed ``generate`` indefinitely, holding a /dev/shm segment.
    """
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the thread below still works
            pass
    if os.getppid() != parent_pid:  # died before we got here
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="noisesim-parent-watch", daemon=True).start()


def _worker_init(job: SynthesisJob, shm_name: str, nslots: int, shape: tuple, dtype: str, parent_pid: int | None = None) -> None:
    import signal
    from multiprocessing import shared_memory

    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: the parent handles it and shuts the pool down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    single_threaded_kernels()
    _W["synth"] = Synthesizer(job)
    shm = shared_memory.SharedMemory(name=shm_name)
    _W["shm"] = shm
    _W["slots"] = np.ndarray((nslots, 2) + tuple(shape), dtype=dtype, buffer=shm.buf)


def _worker_task(i: int, slot: int):
    clean, noisy, rec, kernel = _W["synth"].sample(i)
    seal(_W["synth"].job, clean, noisy, rec, kernel)
    _W["slots"][slot, 0] = clean
    _W["slots"][slot, 1] = noisy
    return i, rec.tobytes(), kernel


SHM_DIR = "/dev/shm"


def shared_memory_bytes(job: SynthesisJob, workers: int) -> int:
    """Bytes of shared memory ``workers`` processes use to hand samples back (3 slots of a pair each).

    Parameters
    ----------
    job : SynthesisJob
        Fixes the size of a sample.
    workers : int
        Worker processes.

    Returns
    -------
    int
    """
    p = job.card.sensor.cfa.period
    itemsize = 2 if job.storage == "uint16" else 4
    return 3 * workers * 2 * job.card.sensor.cfa.n_channels * (job.patch // p) ** 2 * itemsize


def check_shared_memory(job: SynthesisJob, workers: int) -> None:
    """Refuse up front when /dev/shm cannot hold the workers' buffers (a worker would die of SIGBUS).

    Parameters
    ----------
    job : SynthesisJob
        Fixes the size of a sample.
    workers : int
        Worker processes.
    """
    if workers <= 1 or not os.path.isdir(SHM_DIR):
        return
    need = shared_memory_bytes(job, workers)
    free = shutil.disk_usage(SHM_DIR).free
    if need + (1 << 20) > free:
        raise DatasetError(
            f"--workers {workers} with --patch {job.patch} needs {need / 1e6:.1f} MB of shared memory, but {SHM_DIR} has "
            f"{free / 1e6:.1f} MB free (Docker's default is 64 MB): start the container with a larger --shm-size "
            f"(e.g. --shm-size=1g), or use fewer --workers or a smaller --patch"
        )


def produce(job: SynthesisJob, todo: Sequence[int], workers: int) -> Iterator[tuple]:
    """Yield (i, clean, noisy, rec, kernel) for every i in ``todo``, in that order.

    Parameters
    ----------
    job : SynthesisJob
        What to synthesize.
    todo : sequence of int
        Sample indices.
    workers : int
        Processes (1: in this process).

    Yields
    ------
    (int, ndarray, ndarray, structured row, ndarray or None)
        Index, packed clean and noisy (C, h, w), ``/params`` row and blur kernel.
    """
    if workers <= 1 or len(todo) <= 1:
        synth = Synthesizer(job)
        for i in todo:
            clean, noisy, rec, kernel = synth.sample(i)
            seal(job, clean, noisy, rec, kernel)
            yield i, clean, noisy, rec, kernel
        return
    import multiprocessing as mp
    from multiprocessing import shared_memory

    dtype = np.dtype(np.uint16 if job.storage == "uint16" else np.float32)
    p = job.card.sensor.cfa.period
    shape = (job.card.sensor.cfa.n_channels, job.patch // p, job.patch // p)
    nslots = 3 * workers
    check_shared_memory(job, workers)
    shm = shared_memory.SharedMemory(create=True, size=nslots * 2 * int(np.prod(shape)) * dtype.itemsize)
    try:
        slots = np.ndarray((nslots, 2) + shape, dtype=dtype, buffer=shm.buf)
        # spawn, not fork: numba's OpenMP threading layer is not fork-safe (docs/performance.md).
        ctx = mp.get_context("spawn")
        # The job (with its Card: 0.1 ms to unpickle, vs 2 ms to re-parse the card text) goes to each
        # worker once, as an initializer argument.
        wjob = job
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(wjob, shm.name, nslots, shape, dtype.str, os.getpid())) as pool:
            pending: deque = deque()
            it = iter(todo)
            free = list(range(nslots))
            try:
                while True:
                    while free:
                        i = next(it, None)
                        if i is None:
                            break
                        slot = free.pop()
                        pending.append((slot, pool.submit(_worker_task, i, slot)))
                    if not pending:
                        break
                    slot, fut = pending.popleft()
                    try:
                        i, rec_bytes, kernel = fut.result()
                    except BrokenProcessPool as exc:
                        raise DatasetError(f"a worker process died or failed to start ({exc}); rerun with --workers 1 to see the error "
                                           "(from a script: workers are spawned, so call generate_dataset under "
                                           "`if __name__ == \"__main__\":`)") from None
                    rec = np.frombuffer(rec_bytes, dtype=PARAMS_DTYPE)[0]
                    yield i, slots[slot, 0], slots[slot, 1], rec, kernel  # consumer copies before next()
                    free.append(slot)
            finally:
                for _slot, fut in pending:
                    fut.cancel()
    finally:
        slots = None  # release the buffer export before closing
        shm.close()
        shm.unlink()
