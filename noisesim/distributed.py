"""Running noisesim's embarrassingly parallel work on a Dask cluster (optional extra ``noisesim[dask]``).

Dask distributed (https://distributed.dask.org) schedules the tasks; noisesim only cuts the work into
tasks whose results are small and whose side effects are idempotent:

* :func:`run_shards`: one task per shard of :func:`noisesim.dataset.generate_dataset`. Each task writes
  its own shard file with :func:`noisesim.dataset.write_shard` (via ``<shard>.partial``, renamed when
  complete) and returns a record of a few numbers; the caller writes the master file at the end. A task
  whose worker dies is run again by the scheduler and continues the partial its predecessor left, so
  the bytes are those of a run without a scheduler.
* :func:`map_on_cluster`: the general form (``fn(item, shared)`` per item, results in input order),
  used by calibration to run one task per ISO where the frames are read (``calibrate(scheduler=...)``).

A *scheduler* is given as

``"local"``
    a ``LocalCluster`` of ``workers`` processes (one thread each) on this machine, started and closed here;
``"tcp://host:8786"`` or ``"host:8786"``
    the address of a running scheduler (``dask scheduler``, dask-jobqueue, dask-kubernetes);
``path/to/scheduler.json``
    a scheduler file written by ``dask scheduler --scheduler-file`` (the usual way on SLURM).

The connect timeout is Dask's ``distributed.comm.timeouts.connect`` (default 30 s; environment
variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``). docs/distributed.md has cluster recipes.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import ClusterError

__all__ = ["connect", "describe", "EXTRA_HINT", "LOCAL", "map_on_cluster", "run_shards"]

log = logging.getLogger(__name__)

LOCAL = "local"
EXTRA_HINT = "pip install 'noisesim[dask]'"


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(f"--scheduler needs Dask distributed, which is not installed ({exc.msg}): {EXTRA_HINT}") from None
    return distributed


def describe(scheduler: str) -> str:
    """What ``scheduler`` names, for messages: 'a LocalCluster', 'scheduler file X' or 'scheduler at X'."""
    kind = _kind(scheduler)
    return {"local": "a LocalCluster", "file": f"scheduler file {scheduler}"}.get(kind, f"the Dask scheduler at {scheduler}")


def _kind(scheduler: str) -> str:
    s = str(scheduler)
    if s == LOCAL:
        return "local"
    if s.endswith(".json") or os.path.isfile(s):
        return "file"
    return "address"


@contextmanager
def connect(scheduler: str, *, workers: int = 1) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (module docstring), closed on exit.

    ``"local"`` starts a ``LocalCluster`` of ``workers`` processes with one thread each (the synthesis
    is CPU-bound Python + numba; parallelism is across processes), closed on exit as well.

    Raises
    ------
    ClusterError
        The extra is missing, the scheduler file does not exist, or the scheduler does not answer
        within the connect timeout.
    """
    distributed = _distributed()
    kind = _kind(scheduler)
    cluster = None
    try:
        if kind == "local":
            if int(workers) < 1:
                raise ClusterError(f"a LocalCluster needs workers >= 1, got {workers}")
            # Worker processes are started with spawn (Dask's default; numba's OpenMP layer is not fork-safe).
            cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True)
            client = distributed.Client(cluster)
        elif kind == "file":
            if not Path(scheduler).is_file():
                raise ClusterError(f"scheduler file {scheduler} does not exist (written by `dask scheduler --scheduler-file {scheduler}`)")
            client = distributed.Client(scheduler_file=str(scheduler))
        else:
            client = distributed.Client(str(scheduler))
    except ClusterError:
        if cluster is not None:
            cluster.close()
        raise
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ClusterError(f"cannot reach {describe(scheduler)}: {first}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _task(item, shared, fn):
    """``fn(item, shared=shared)`` on a worker; a noisesim error says which worker it happened on (a path
    missing there but present here is the usual cluster mistake), keeping its type for the caller."""
    from .errors import NoiseSimError

    try:
        return fn(item, shared=shared)
    except NoiseSimError as exc:
        import copy
        import socket

        where = copy.copy(exc)
        where.args = (f"on worker {socket.gethostname()} (pid {os.getpid()}): {exc}",)
        raise where from None


def _hold(obj):
    """Identity: makes ``obj`` a task result, sent to each worker once and recomputed if its holder dies."""
    return obj


def map_on_cluster(
    scheduler: str,
    fn: Callable,
    items: Sequence,
    *,
    shared: Any = None,
    workers: int = 1,
    progress: bool = False,
    desc: str = "tasks",
    unit: str = "task",
    weights: Sequence[int] | None = None,
    total: int | None = None,
    name: str = "noisesim",
) -> list:
    """``[fn(item, shared) for item in items]``, each call a task on the cluster; results in input order.

    Parameters
    ----------
    scheduler : str
        ``"local"``, an address or a scheduler file (module docstring).
    fn : callable
        A module-level function (workers import it by name); its result should be small.
    items : sequence
        One task per item (small, picklable objects).
    shared : object
        Passed as the second argument to every call; sent to each worker once (not once per task).
    workers : int
        Processes of the ``LocalCluster`` when ``scheduler="local"``; ignored otherwise.
    progress : bool
        A tqdm bar on stderr, advanced as tasks complete, and the dashboard link printed.
    desc, unit, weights, total :
        Bar label and unit; ``weights[k]`` is what task k adds to the bar (default 1); ``total`` the
        bar's length (default the sum of the weights; more when part of the work was done before).
    name : str
        Prefix of the task keys shown on the dashboard.

    Raises
    ------
    ClusterError
        Connection problems, or a task whose workers kept dying (Dask's ``KilledWorker``).
    Exception
        A task's own error, re-raised here with its type (e.g. :class:`~noisesim.errors.DatasetError`).
    """
    from tqdm.auto import tqdm

    distributed = _distributed()
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    items = list(items)
    weights = [1] * len(items) if weights is None else [int(w) for w in weights]
    todo = sum(weights)
    total = todo if total is None else int(total)
    if not items:
        return []
    with connect(scheduler, workers=workers) as client:
        link = client.dashboard_link
        if progress:
            print(f"noisesim: {len(items)} {name} tasks on {describe(scheduler)}; dashboard: {link}", file=sys.stderr)
        else:
            log.info("%d %s tasks on %s; dashboard: %s", len(items), name, describe(scheduler), link)
        run = uuid.uuid4().hex[:8]
        shared_f = client.submit(_hold, shared, key=f"{name}-shared-{run}", pure=False)
        keys = [f"{name}-{k}-{run}" for k in range(len(items))]
        futures = client.map(_task, items, shared=shared_f, fn=fn, key=keys, pure=False)
        index = {f.key: k for k, f in enumerate(futures)}
        results: list = [None] * len(items)
        try:
            with tqdm(total=total, initial=total - todo, disable=not progress, desc=desc, unit=unit, dynamic_ncols=True) as bar:
                for fut in distributed.as_completed(futures):
                    k = index[fut.key]
                    results[k] = fut.result()  # a task's exception is raised here, with its own type
                    bar.update(weights[k])
        except KilledWorker as exc:
            raise ClusterError(f"the workers running task {exc.task} kept dying ({exc}); look at the worker logs "
                               "(out of memory? raise the worker memory limit)") from None
        except CommClosedError as exc:
            raise ClusterError(f"lost the connection to {describe(scheduler)}: {exc}") from None
        finally:
            client.cancel(futures + [shared_f])
    return results


def _shard_task(task, shared) -> dict:
    from .dataset import single_threaded_kernels, write_shard

    single_threaded_kernels()  # one core per task: the cluster's workers are the parallelism
    return write_shard(shared, task)


def run_shards(scheduler: str, job, tasks: Sequence, *, workers: int = 1, pairs: int | None = None, progress: bool = False) -> list[dict]:
    """Write the shards ``tasks`` (:class:`noisesim.dataset.ShardTask`) on the cluster, one task each.

    ``job`` (the card and sampling settings) goes to each worker once. Returns the tasks' records
    (:func:`noisesim.dataset.write_shard`) in input order; the caller writes the master file.
    ``pairs`` is the dataset's size, for the progress bar (shards finished earlier count as done).
    """
    return map_on_cluster(scheduler, _shard_task, tasks, shared=job, workers=workers, progress=progress, desc="generate",
                          unit="pair", weights=[t.n for t in tasks], total=pairs, name="noisesim-shard")
