"""Writing shard files crash-safely, resuming them, and the master (virtual-dataset) file.

Crash safety: everything is written to ``<output>.partial`` in the same directory and renamed when
complete; a :class:`~noisesim.runlock.RunLock` on ``<output>.lock`` is held from before any file is
touched (:func:`noisesim.dataset.generate_dataset`), so a second run on the same output fails at once
instead of destroying the first one's partial. Progress (a per-sample ``done`` flag) is flushed
periodically; ``resume=True`` continues an interrupted run. Uncompressed files are allocated in full at
creation, so an interrupted-and-resumed run, or a run with any number of workers, gives a byte-identical
file; with compression the content is identical (chunk placement may differ).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_path
from ..errors import DatasetError, NoiseSimError
from ..spawnguard import main_guard_message
from .layout import PARAMS_DTYPE, partial_path, progress_path, samples_durable
from .pool import produce
from .synthesis import SynthesisJob

__all__ = [
    "ShardTask",
    "ShardWriter",
    "bytes_per_sample",
    "write_locked",
    "write_shard",
]

log = logging.getLogger(__name__)


def _dcpl():
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    # Allocate every chunk at creation: the file layout is then fixed, writes only fill raw data in
    # place (nothing in the metadata changes after the first flush, so a kill cannot corrupt it), and
    # the bytes do not depend on the order samples are written in.
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


class ShardWriter:
    """One HDF5 file holding samples [first, first + n) of the dataset, written via ``<name>.partial``.

    Parameters
    ----------
    path : Path
        Final file name.
    first, n : int
        Global index of the first sample and number of samples.
    shape : (C, h, w)
        One packed patch.
    dtype : numpy dtype
        Of clean/noisy.
    kernel_cap : int
        Padded blur-kernel side [px] (0: no blur).
    blur : bool
        Whether kernels are stored.
    compression : str or None
        HDF5 filter.
    attrs : dict
        File attributes.
    config_json : str
        The run's configuration.
    resume : bool
        Continue an existing ``.partial``.
    """

    def __init__(self, path: Path, first: int, n: int, shape: tuple, dtype, kernel_cap: int, blur: bool,
                 compression: str | None, attrs: dict, config_json: str, resume: bool):
        import h5py

        self.path, self.tmp, self.first, self.n = path, partial_path(path), first, n
        self.resumed = False
        if resume and self.tmp.exists():
            try:
                f = h5py.File(self.tmp, "r+")
            except OSError as exc:
                raise DatasetError(f"cannot resume from {self.tmp}: the file is damaged ({exc}); rerun with --force to start over") from None
            old = f.attrs.get("generation_config", "")
            if old != config_json:
                f.close()
                raise DatasetError(f"cannot resume from {self.tmp}: it was started with different settings ({_config_diff(old, config_json)}); "
                                   "rerun with the original settings, or with --force to start over")
            if f["params"].dtype.names != PARAMS_DTYPE.names:  # started by a noisesim whose /params row had other fields
                f.close()
                raise DatasetError(f"cannot resume from {self.tmp}: it was started by another noisesim version (its /params record "
                                   "has other fields); rerun with --force to start over")
            self.f = f
            self.resumed = True
        else:
            f = h5py.File(self.tmp, "w")
            try:
                self._create(f, n, shape, dtype, kernel_cap, blur, compression, attrs, first, config_json)
            except BaseException:
                try:
                    f.close()
                except Exception:  # noqa: BLE001 - a failed flush again; the first error matters
                    pass
                raise
            self.f = f
        self._open_datasets(n)

    def _create(self, f, n, shape, dtype, kernel_cap, blur, compression, attrs, first, config_json) -> None:
        m = n if blur else 0
        k = max(kernel_cap, 1)
        opts = {}
        if compression is not None:
            opts = {"compression": compression}
        f.create_dataset("clean", (n,) + shape, dtype, chunks=(1,) + shape, dcpl=_dcpl(), fill_time="never", **opts)
        f.create_dataset("noisy", (n,) + shape, dtype, chunks=(1,) + shape, dcpl=_dcpl(), fill_time="never", **opts)
        f.create_dataset("params", (n,), PARAMS_DTYPE, dcpl=_dcpl(), fill_time="never")
        f.create_dataset("blur_kernels", (m, k, k), np.float32, chunks=(1, k, k) if m else None, dcpl=_dcpl(), fill_time="never")
        f.create_dataset("blur_kernel_sizes", (m,), np.int32, dcpl=_dcpl(), fill_time="never")
        for key, val in attrs.items():
            f.attrs[key] = val
        f.attrs["first_sample"] = first
        f.attrs["generation_config"] = config_json
        f.flush()

    def _open_datasets(self, n: int) -> None:
        self.ds_clean, self.ds_noisy, self.ds_params = self.f["clean"], self.f["noisy"], self.f["params"]
        self.ds_kern, self.ds_ksize = self.f["blur_kernels"], self.f["blur_kernel_sizes"]
        # Progress flags live in a sidecar of N bytes, never in the HDF5 file: its metadata then never
        # changes after creation (a kill cannot corrupt it, and a resumed file has the same bytes).
        self.progress = progress_path(self.tmp)
        flags = self.progress.read_bytes() if self.resumed and self.progress.exists() else b""
        if len(flags) != n:
            flags = bytes(n)
            self.progress.write_bytes(flags)
        self.done = np.frombuffer(flags, dtype=np.uint8).astype(bool)
        self.unflushed: list[int] = []
        # Parameter rows are kept here and written at each checkpoint in contiguous runs (one h5py call
        # per run instead of ~0.8 ms per compound row); the file bytes are the same.
        self.rec_buf = np.zeros(n, dtype=PARAMS_DTYPE)
        self._sync = None  # background fsync of the last checkpoint (checkpoint(wait=False))
        self._sync_n = 0
        self._sync_error: BaseException | None = None
        self.n_durable = int(self.done.sum())  # samples flagged done, as far as this thread knows
        # Uncompressed patches go straight into their pre-allocated chunks (H5Dwrite_chunk: no selection
        # or conversion machinery, ~4x less CPU than ds[j] = x, same bytes in the same place).
        self.direct = all(
            ds.compression is None and not ds.is_virtual and ds.chunks == (1,) + ds.shape[1:] and ds.dtype.byteorder in "<="
            for ds in (self.ds_clean, self.ds_noisy)
        )
        # h5py queries the dataspace on every .shape / .dtype (~10 µs each); write() reads them per sample
        self._row_shape = tuple(self.ds_clean.shape[1:])
        self._row_dtype = self.ds_clean.dtype
        self._chunk_origin = (0,) * len(self._row_shape)
        self._has_kernels = self.ds_kern.shape[0] > 0
        self._kernel_side = self.ds_kern.shape[1]

    def todo(self) -> list[int]:
        """Global indices of the samples not yet flagged done, in order.

        Returns
        -------
        list of int
        """
        return [self.first + int(j) for j in np.flatnonzero(~self.done)]

    def write(self, i: int, clean, noisy, rec, kernel) -> None:
        """Store sample ``i`` (global index): packed ``clean`` and ``noisy`` (C, h, w), its ``/params`` row and
        blur kernel (or None); durable only after the next :meth:`checkpoint`.

        Parameters
        ----------
        i : int
            Global sample index.
        clean, noisy : (C, h, w) ndarray
            In the storage dtype.
        rec : structured ndarray row
            Its ``/params`` row.
        kernel : (k, k) ndarray or None
            Its blur kernel.
        """
        from ..blur import pad_kernel

        j = i - self.first
        if self.direct:
            at = (j,) + self._chunk_origin
            for ds, x in ((self.ds_clean, clean), (self.ds_noisy, noisy)):
                x = np.ascontiguousarray(x, dtype=self._row_dtype)
                if x.shape != self._row_shape:
                    raise DatasetError(f"internal error: sample {i} has shape {x.shape}, dataset rows are {self._row_shape}")
                ds.id.write_direct_chunk(at, x)
        else:
            self.ds_clean[j] = clean
            self.ds_noisy[j] = noisy
        self.rec_buf[j] = rec
        if self._has_kernels:
            if kernel is None:
                self.ds_kern[j] = 0.0
                self.ds_ksize[j] = 0
            else:
                self.ds_kern[j] = pad_kernel(kernel, self._kernel_side)
                self.ds_ksize[j] = max(kernel.shape)
        self.unflushed.append(j)

    def checkpoint(self, *, wait: bool = True) -> None:
        """Make the samples written so far durable, then mark them done (data first, flags second).

        The parameter rows and HDF5 metadata are flushed here; the ``fsync`` of the file and the
        progress flags follow on a background thread when ``wait`` is False (generation goes on
        meanwhile: samples written later are simply not flagged by this checkpoint). At most one
        such sync runs at a time; its error, if any, is raised by the next checkpoint.

        Parameters
        ----------
        wait : bool
            Wait for the sync (False: on a background thread).
        """
        if not self.unflushed:
            if wait:
                self._join_sync()
            return
        js = np.unique(np.asarray(self.unflushed, dtype=np.int64))
        breaks = np.flatnonzero(np.diff(js) != 1) + 1
        for run in np.split(js, breaks):  # contiguous runs of parameter rows, one write each
            lo, hi = int(run[0]), int(run[-1]) + 1
            self.ds_params[lo:hi] = self.rec_buf[lo:hi]
        self.f.flush()
        self.unflushed = []
        self._join_sync()  # flags are written in order
        fd = self.f.id.get_vfd_handle()
        if wait:
            self._make_durable(fd, js)
            self.n_durable += len(js)
        else:
            import threading

            self._sync = threading.Thread(target=self._sync_body, args=(fd, js), name="noisesim-fsync", daemon=True)
            self._sync_n = len(js)
            self._sync.start()

    def _sync_body(self, fd: int, js: np.ndarray) -> None:
        try:
            self._make_durable(fd, js)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._sync_error = exc

    def _make_durable(self, fd: int, js: np.ndarray) -> None:
        os.fsync(fd)
        self.done[js] = True
        with open(self.progress, "r+b") as fp:
            lo, hi = int(js[0]), int(js[-1]) + 1
            fp.seek(lo)
            fp.write(self.done[lo:hi].astype(np.uint8).tobytes())
            fp.flush()
            os.fsync(fp.fileno())

    def _join_sync(self) -> None:
        if self._sync is not None:
            self._sync.join()
            self._sync = None
            if self._sync_error is None:
                self.n_durable += self._sync_n
        if self._sync_error is not None:
            exc, self._sync_error = self._sync_error, None
            raise exc

    @property
    def complete(self) -> bool:
        """Every sample of the shard is flagged done."""
        return bool(self.done.all())

    def finish(self) -> None:
        """Close and rename to the final name (atomic on POSIX), then drop the progress flags."""
        self.checkpoint()
        if not self.complete:
            raise DatasetError(f"internal error: {self.tmp} finished with samples missing")
        self.f.close()
        os.replace(self.tmp, self.path)
        self.progress.unlink(missing_ok=True)

    def close(self) -> None:
        """Checkpoint what was written and close the partial file, keeping it for a resume."""
        try:
            self.checkpoint()
        finally:
            try:
                self._join_sync()
            finally:
                if self.f.id.valid:
                    self.f.close()


@dataclass(frozen=True)
class ShardTask:
    """One shard file to write: samples [first, first + n) of the dataset (small and picklable: the
    :class:`SynthesisJob` with the card travels separately, once per worker). Used by :func:`write_shard`.

    Attributes
    ----------
    path : Path
        Final name (absolute); written via ``<path>.partial``.
    first, n : int
        Global index of the first sample and number of samples.
    shape : (C, h, w)
        One packed patch.
    dtype : str
        numpy dtype of clean/noisy.
    compression : str or None
        HDF5 filter.
    attrs : dict
        File attributes.
    config_json : str
        The run's configuration, stored in the file.
    checkpoint_every : int
        Samples between checkpoints.
    """

    path: Path  # final name (absolute); written via ``<path>.partial``
    first: int
    n: int
    shape: tuple[int, int, int]  # (C, h, w) of one packed patch
    dtype: str  # numpy dtype string of clean/noisy
    compression: str | None
    attrs: dict
    config_json: str
    checkpoint_every: int = 64


def write_shard(job: SynthesisJob, task: ShardTask, *, report: Callable[[int], None] | None = None) -> dict:
    """Write one shard in this process, continuing its ``.partial`` if one exists, then rename it into place.

    This is the unit of work a Dask worker runs (:mod:`noisesim.distributed`). A partial present here was
    left by an earlier attempt of the same shard (a killed worker, or a killed run being resumed:
    :func:`generate_dataset` removes stale partials before it schedules anything unless resuming), so
    its durable samples are kept and the rest written again; the bytes are those of a single-process run.

    ``report``, when given, is called with the number of the shard's samples written so far (those kept
    from a partial included): once at the start and after every sample (the Dask task throttles what it
    sends on).

    Parameters
    ----------
    job : SynthesisJob
        What to synthesize.
    task : ShardTask
        Which shard.
    report : callable, optional
        ``report(n_written)``, see above.

    Returns
    -------
    dict
        Small record: ``path``, ``first``, ``n``, ``resumed`` (samples already durable), ``seconds``, ``pid``.
    """
    t0 = time.perf_counter()
    writer = ShardWriter(Path(task.path), task.first, task.n, tuple(task.shape), np.dtype(task.dtype), job.kernel_cap,
                          job.blur is not None, task.compression, task.attrs, task.config_json, resume=True)
    resumed = int(writer.done.sum())
    try:
        _run(job, [writer], 1, task.n, False, task.checkpoint_every, report=report)
    except BaseException:
        writer.close()
        raise
    writer.finish()
    return {"path": str(task.path), "first": task.first, "n": task.n, "resumed": resumed,
            "seconds": time.perf_counter() - t0, "pid": os.getpid()}


def _config_diff(old_json: str, new_json: str) -> str:
    try:
        old, new = json.loads(old_json), json.loads(new_json)
    except (TypeError, ValueError):
        return "no readable settings stored"
    diffs = [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(diffs) or "identical"


def _write_master(output: Path, shard_files: list[Path], attrs: dict, config_json: str) -> None:
    """A master file presenting the shards as one dataset through HDF5 virtual datasets (relative paths)."""
    import h5py

    infos = []
    for sp in shard_files:
        with h5py.File(sp, "r") as f:
            infos.append({name: (f[name].shape, f[name].dtype) for name in ("clean", "noisy", "params", "blur_kernels", "blur_kernel_sizes")})
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        for name in ("clean", "noisy", "params", "blur_kernels", "blur_kernel_sizes"):
            shapes = [info[name][0] for info in infos]
            dtype = infos[0][name][1]
            total = sum(s[0] for s in shapes)
            full = (total,) + tuple(shapes[0][1:])
            if total == 0:
                f.create_dataset(name, full, dtype, track_times=False)
                continue
            _virtual_dataset(f, name, full, dtype, [(sp.name, s) for sp, s in zip(shard_files, shapes)])
        for key, val in attrs.items():
            f.attrs[key] = val
        f.attrs["shards"] = json.dumps([sp.name for sp in shard_files])
        f.attrs["first_sample"] = 0
        f.attrs["generation_config"] = config_json


def _virtual_dataset(f, name: str, full: tuple, dtype, sources: list[tuple[str, tuple]]) -> None:
    """Create ``/name`` in ``f`` as the row-wise concatenation of ``/name`` in each source file.

    Built with the low-level API because ``h5py.VirtualLayout`` gives no way to switch off the object
    timestamps, which would make two identical runs write different master files. Source files are
    named relatively: HDF5 looks for them next to the master file.
    """
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    vspace = h5py.h5s.create_simple(full)
    start = 0
    for fname, shape in sources:
        if shape[0]:
            vspace.select_hyperslab((start,) + (0,) * (len(full) - 1), tuple(shape))
            dcpl.set_virtual(vspace, fname.encode(), name.encode(), h5py.h5s.create_simple(tuple(shape)))
        start += shape[0]
    tid = h5py.h5t.py_create(np.dtype(dtype), logical=1)
    h5py.h5d.create(f.id, name.encode(), tid, h5py.h5s.create_simple(full), dcpl=dcpl).close()


def _stored_config(path: Path) -> str:
    """The ``generation_config`` attribute of a dataset file ("" when absent); DatasetError when unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            old = f.attrs.get("generation_config", "")
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                           "rerun with --force to start over") from None
    return old.decode() if isinstance(old, bytes) else str(old)


def _plan_file(fp: Path, config_json: str, *, force: bool, resume: bool) -> str:
    """What to do with one output file: ``"skip"`` (complete, same settings), ``"resume"`` (continue its
    partial) or ``"new"``. Raises :class:`DatasetError` when the existing files forbid the run.

    Called with the run lock held, so deleting a partial here cannot hit another run's live file.
    """
    partial = partial_path(fp)
    if not resume:
        if not force:
            if fp.exists():
                raise DatasetError(f"{fp} already exists; pass --force (force=True) to overwrite it")
            if partial.exists():
                raise DatasetError(f"a partial run exists at {partial}; pass --resume to continue it or --force to start over")
        partial.unlink(missing_ok=True)
        progress_path(partial).unlink(missing_ok=True)
        return "new"
    if partial.exists() and samples_durable(partial) == 0:
        # Killed before any sample was flagged done (possibly while creating the file): nothing to keep. What
        # is under fp is then judged as if there were no partial (a new run must not replace it unasked).
        log.info("%s holds no finished sample; starting it over", partial)
        partial.unlink()
        progress_path(partial).unlink(missing_ok=True)
    if partial.exists():
        old = _stored_config(partial)
        if old == config_json:
            return "resume"  # a killed run (a --force rebuild included) continues, whatever is under fp
        if force:  # start over
            partial.unlink()
            progress_path(partial).unlink(missing_ok=True)
            return "new"
        if fp.exists() and _stored_config(fp) == config_json:
            log.warning("%s is complete with these settings; %s belongs to a run with other settings and was left alone",
                        fp, partial)
            return "skip"
        raise DatasetError(f"cannot resume from {partial}: it was started with different settings "
                           f"({_config_diff(old, config_json)}); rerun with the original settings, or with --force to start over")
    if fp.exists() and not force:
        old = _stored_config(fp)
        if old != config_json:
            raise DatasetError(f"{fp} is complete but was made with different settings ({_config_diff(old, config_json)}); "
                               "rerun with its settings, with --force to replace it, or choose another --output")
        return "skip"
    return "new"


def bytes_per_sample(shape: tuple, dtype: np.dtype, kernel_cap: int, blur: bool) -> int:
    """Bytes one sample occupies on disk, uncompressed (clean + noisy + parameter row + blur kernel).

    Parameters
    ----------
    shape : (C, h, w)
        One packed patch.
    dtype : numpy dtype
        Of clean/noisy.
    kernel_cap : int
        Padded kernel side [px].
    blur : bool
        Whether kernels are stored.

    Returns
    -------
    int
    """
    k = max(kernel_cap, 1)
    return 2 * int(np.prod(shape)) * dtype.itemsize + PARAMS_DTYPE.itemsize + (4 * k * k + 4 if blur else 0)


def _samples_left(fp: Path, n: int) -> int:
    """Samples of a partial not yet flagged done (its progress sidecar), ``n`` when unknown."""
    try:
        flags = progress_path(partial_path(fp)).read_bytes()
    except OSError:
        return n
    return n - int(np.count_nonzero(np.frombuffer(flags, np.uint8))) if len(flags) == n else n


def write_locked(output: Path, files: list[Path], job: SynthesisJob, shape: tuple, dtype: np.dtype, compression, attrs: dict,
                  config_json: str, *, workers: int, force: bool, resume: bool, progress: bool, checkpoint_every: int,
                  scheduler: str | None = None) -> Path:
    """The writing half of :func:`generate_dataset`, run with the output's :class:`RunLock` held.

    Parameters
    ----------
    output : Path
        The dataset (or master) file.
    files : list of Path
        The files to write (one, or the shards).
    job : SynthesisJob
        What to synthesize.
    shape, dtype, compression, attrs, config_json
        As for :class:`ShardWriter`.
    workers : int
        Processes.
    force, resume : bool
        Overwrite / continue.
    progress : bool
        Show a progress bar.
    checkpoint_every : int
        Samples between checkpoints.
    scheduler : str, optional
        Dask scheduler (:mod:`noisesim.distributed`).

    Returns
    -------
    Path
        ``output``.
    """
    pairs = int(attrs["n_pairs"])
    shards = len(files)
    bounds = np.linspace(0, pairs, shards + 1).round().astype(int)
    sizes = [int(bounds[k + 1] - bounds[k]) for k in range(shards)]
    plans = [_plan_file(fp, config_json, force=force, resume=resume) for fp in files]
    if shards > 1:
        master = _plan_file(output, config_json, force=force, resume=resume)
        if master == "skip" and all(pl == "skip" for pl in plans):
            log.warning("%s is already complete with these settings; nothing to do", output)
            return output
    elif plans[0] == "skip":
        log.warning("%s is already complete with these settings; nothing to do", output)
        return output
    if resume and all(pl == "new" for pl in plans):  # e.g. a mistyped --output: say so rather than start silently
        log.warning("%s: no partial run with a finished sample to resume; starting a new run", output)

    # Space check (uncompressed upper bound) before creating anything: only what is left to write (the
    # files are sparse, so a partial stopped by a full disk holds only the samples it wrote).
    left = sum(n if pl == "new" else _samples_left(fp, n) if pl == "resume" else 0 for fp, n, pl in zip(files, sizes, plans))
    need = left * bytes_per_sample(shape, dtype, job.kernel_cap, job.blur is not None)
    free = shutil.disk_usage(output.parent).free
    if need > free:
        raise DatasetError(f"not enough disk space for {output}: {left} samples left to write need about {need / 1e9:.2f} GB, "
                           f"{free / 1e9:.2f} GB free in {output.parent}")

    writers: list[ShardWriter] = []
    try:
        tasks, resuming = [], set()
        for k, fp in enumerate(files):
            if plans[k] == "skip":
                continue
            tasks.append(ShardTask(fp.resolve(), int(bounds[k]), sizes[k], shape, dtype.str, compression, attrs, config_json,
                                   checkpoint_every))
            if plans[k] == "resume":
                resuming.add(tasks[-1].path)
        if scheduler is not None:  # one task per shard on a Dask cluster (workers write their own shard)
            from ..distributed import run_shards

            run_shards(scheduler, job, tasks, workers=workers, pairs=pairs, progress=progress)
        else:
            for t in tasks:
                writers.append(ShardWriter(t.path, t.first, t.n, shape, dtype, job.kernel_cap, job.blur is not None,
                                            compression, attrs, config_json, resume=t.path in resuming))
            _run(job, writers, workers, pairs, progress, checkpoint_every)
            for w in writers:
                w.finish()
        if shards > 1:
            _write_master(output, files, attrs, config_json)
    except BaseException as exc:
        for w in writers:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - the original error matters more
                log.debug("closing %s failed", w.tmp, exc_info=True)
        if isinstance(exc, RuntimeError) and "bootstrapping phase" in str(exc):
            # multiprocessing's refusal inside a spawned child that re-ran an unguarded script.
            raise DatasetError(main_guard_message("generate_dataset(workers > 1)")) from None
        if isinstance(exc, (OSError, RuntimeError)) and not isinstance(exc, NoiseSimError):
            # h5py reports failed writes as OSError, failed flushes as RuntimeError.
            kept = ", ".join(str(partial_path(fp)) for fp in files if partial_path(fp).exists()) or "nothing"
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(f"writing {output} failed: {first} (disk full, quota or file-size limit?). Partial progress kept in: "
                               f"{kept}; free space and rerun with --resume, or with --force to start over") from None
        raise
    return output


def _run(job: SynthesisJob, writers: list[ShardWriter], workers: int, pairs: int, progress: bool, checkpoint_every: int,
         report: Callable[[int], None] | None = None) -> None:
    from tqdm.auto import tqdm

    todo = [i for w in writers for i in w.todo()]
    owner = {}
    for w in writers:
        for i in range(w.first, w.first + w.n):
            owner[i] = w
    n_done = pairs - len(todo)
    if n_done:
        log.info("resuming: %d of %d samples already done", n_done, pairs)
    last = time.monotonic()
    since = 0
    if report is not None:
        report(n_done)
    with tqdm(total=pairs, initial=n_done, disable=not progress, unit="pair", desc="generate", dynamic_ncols=True) as bar:
        with closing(produce(job, todo, workers)) as produced:
            for i, clean, noisy, rec, kernel in produced:
                owner[i].write(i, clean, noisy, rec, kernel)
                n_done += 1
                since += 1
                bar.update(1)
                if report is not None:
                    report(n_done)
                now = time.monotonic()
                if since >= checkpoint_every or now - last > 5.0:
                    for w in writers:
                        w.checkpoint(wait=False)  # fsync + flags in the background
                    # Durable = flagged done on disk: up to the previous checkpoint (this one is syncing).
                    durable = pairs - sum(w.n for w in writers) + sum(w.n_durable for w in writers)
                    log.info("checkpoint: %d/%d samples durable (%d written)", durable, pairs, n_done)
                    since, last = 0, now
