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
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import ClusterError

__all__ = ["check_workers", "connect", "describe", "EXTRA_HINT", "LOCAL", "map_on_cluster", "REPORT_INTERVAL_S", "run_shards",
           "WORKER_CONFIG"]

log = logging.getLogger(__name__)

LOCAL = "local"
EXTRA_HINT = "pip install 'noisesim[dask]'"
# A task reports its progress to the client at most this often [s]. Each report carries the task's
# absolute count, so one that is late or dropped costs only latency, and a task rerun after its worker died
# moves the bar back to what its partial kept. A few small messages a second per worker keep the scheduler's
# load negligible (a report per pair would be ~30 a second per worker).
REPORT_INTERVAL_S = 0.5
# Dask workers sample their task threads' stacks every 10 ms (the dashboard's profile). Each sample needs
# the GIL, which the synthesis holds most of the time; measured on 600 pairs of 256² in one worker: 5.0 s
# CPU at 10 ms against 3.8 s at 1 s, i.e. +27 % per pair. LocalClusters started here sample once a second;
# workers started elsewhere take it from their environment (docs/distributed.md).
WORKER_CONFIG = {"distributed.worker.profile.interval": "1s", "distributed.worker.profile.cycle": "10s"}


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(f"--scheduler needs Dask distributed, which is not installed ({exc.msg}): {EXTRA_HINT}") from None
    return distributed


def describe(scheduler: str) -> str:
    """What ``scheduler`` names, for messages: 'a LocalCluster', 'scheduler file X' or 'scheduler at X'.

    Parameters
    ----------
    scheduler : str
        As for :func:`connect`.

    Returns
    -------
    str
    """
    kind = _kind(scheduler)
    return {"local": "a LocalCluster", "file": f"scheduler file {scheduler}"}.get(kind, f"the Dask scheduler at {scheduler}")


def check_workers(scheduler: str | None, workers: int) -> None:
    """Refuse ``workers`` > 1 with a scheduler other than ``"local"``: the count sizes only a LocalCluster
    started here; a running cluster has its own workers, and ignoring the option silently would mislead.

    Parameters
    ----------
    scheduler : str or None
        As for :func:`connect`; None: no cluster.
    workers : int
        The ``--workers`` value.

    Raises
    ------
    ClusterError
        ``workers != 1`` together with a scheduler address or scheduler file.
    """
    if scheduler is not None and _kind(scheduler) != "local" and int(workers) != 1:
        raise ClusterError(f"--workers {workers} sizes a LocalCluster (--scheduler local) only; {describe(scheduler)} "
                           "runs on its own workers: leave --workers out and scale the cluster itself "
                           "(e.g. dask-jobqueue's cluster.scale)")


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

    Parameters
    ----------
    scheduler : str
        ``"local"``, a scheduler address (``tcp://host:8786``) or a scheduler file.
    workers : int
        Processes of the ``LocalCluster`` for ``"local"``; ignored otherwise.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ClusterError
        The extra is missing, the scheduler file does not exist, the scheduler does not answer within the
        connect timeout, or ``workers`` > 1 is given with an address or a scheduler file
        (:func:`check_workers`).
    """
    check_workers(scheduler, workers)
    distributed = _distributed()
    kind = _kind(scheduler)
    cluster = None
    try:
        if kind == "local":
            if int(workers) < 1:
                raise ClusterError(f"a LocalCluster needs workers >= 1, got {workers}")
            # Worker processes are started with spawn (Dask's default; numba's OpenMP layer is not fork-safe).
            import dask

            with dask.config.set(WORKER_CONFIG):  # the nannies hand the config on to their workers
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


class _Reporter:
    """What a task calls with its absolute progress (e.g. samples of its shard done): sent to the client as
    a Dask event ``[k, done]`` on ``topic``, at most every ``interval_s`` seconds (the worker's batched
    stream carries it; nothing waits for an answer)."""

    def __init__(self, topic: str, k: int, interval_s: float, send: Callable[[str, Any], None] | None = None):
        self.topic, self.k, self.interval_s = topic, int(k), float(interval_s)
        self.send = send
        self.last: float | None = None

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if self.last is not None and now - self.last < self.interval_s:
            return
        self.last = now
        send = self.send
        if send is None:
            try:
                send = _distributed().get_worker().log_event
            except ValueError:  # not running on a worker (the function was called directly)
                return
        send(self.topic, [self.k, int(done)])


def _task(item, report, shared, fn):
    """``fn(item, shared=shared)`` on a worker (with ``report=`` a :class:`_Reporter` when ``report`` is
    ``(topic, k, interval_s)``); a noisesim error says which worker it happened on (a path missing there but
    present here is the usual cluster mistake), keeping its type for the caller."""
    from .errors import NoiseSimError

    try:
        if report is None:
            return fn(item, shared=shared)
        return fn(item, shared=shared, report=_Reporter(*report))
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
    reports: bool = False,
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
    reports : bool
        ``fn`` also takes ``report=``, a callable it calls with how much of its task is done, in the bar's
        units (0 .. ``weights[k]``, counting what an earlier attempt kept): with ``progress`` the bar then
        moves within tasks (Dask events, at most every :data:`REPORT_INTERVAL_S` per task), not only when
        a task ends. Without ``progress`` nothing is reported.

    Returns
    -------
    list
        ``fn``'s results, in the order of ``items``.

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
        topic = f"{name}-progress-{run}"
        results: list = [None] * len(items)
        futures: list = []
        shared_f = None
        try:
            with tqdm(total=total, initial=total - todo, disable=not progress, desc=desc, unit=unit, dynamic_ncols=True) as bar:
                tally = _Tally(bar, weights)
                report_args = [None] * len(items)
                if reports and progress:
                    client.subscribe_topic(topic, tally.event)
                    report_args = [(topic, k, REPORT_INTERVAL_S) for k in range(len(items))]
                shared_f = client.submit(_hold, shared, key=f"{name}-shared-{run}", pure=False)
                keys = [f"{name}-{k}-{run}" for k in range(len(items))]
                futures = client.map(_task, items, report_args, shared=shared_f, fn=fn, key=keys, pure=False)
                index = {f.key: k for k, f in enumerate(futures)}
                for fut in distributed.as_completed(futures):
                    k = index[fut.key]
                    results[k] = fut.result()  # a task's exception is raised here, with its own type
                    tally.finished(k)
        except KilledWorker as exc:
            raise ClusterError(f"the workers running task {exc.task} kept dying ({exc}); look at the worker logs "
                               "(out of memory? raise the worker memory limit)") from None
        except CommClosedError as exc:
            raise ClusterError(f"lost the connection to {describe(scheduler)}: {exc}") from None
        finally:
            if reports and progress:
                client.unsubscribe_topic(topic)
            client.cancel(futures + ([shared_f] if shared_f is not None else []))
    return results


class _Tally:
    """The bar's position from the tasks' reports: what finished tasks weigh, plus the latest count each
    running task reported (a rerun task's first report moves its share back to what its partial kept).
    ``event`` runs on the client's event-loop thread, ``finished`` on the caller's: one lock serializes them."""

    def __init__(self, bar, weights: Sequence[int]):
        self.bar, self.weights = bar, list(weights)
        self.current = [0] * len(self.weights)
        self.done = [False] * len(self.weights)
        self.lock = threading.Lock()

    def _set(self, k: int, value: int) -> None:
        value = min(max(int(value), 0), self.weights[k])
        delta, self.current[k] = value - self.current[k], value
        if delta:
            self.bar.update(delta)

    def event(self, event) -> None:
        """A Dask event ``(timestamp, [k, done])`` from a task's :class:`_Reporter`."""
        try:
            k, value = (int(v) for v in event[1])
        except (TypeError, ValueError):
            return
        with self.lock:
            if 0 <= k < len(self.done) and not self.done[k]:
                self._set(k, value)

    def finished(self, k: int) -> None:
        """Task ``k`` ended: it counts in full (a late report from it is ignored)."""
        with self.lock:
            self.done[k] = True
            self._set(k, self.weights[k])


def _shard_task(task, shared, report=None) -> dict:
    from .dataset import single_threaded_kernels, write_shard

    single_threaded_kernels()  # one core per task: the cluster's workers are the parallelism
    return write_shard(shared, task, report=report)


def run_shards(scheduler: str, job, tasks: Sequence, *, workers: int = 1, pairs: int | None = None, progress: bool = False) -> list[dict]:
    """Write the shards ``tasks`` (:class:`noisesim.dataset.ShardTask`) on the cluster, one task each.

    ``job`` (the card and sampling settings) goes to each worker once. Returns the tasks' records
    (:func:`noisesim.dataset.write_shard`) in input order; the caller writes the master file.
    ``pairs`` is the dataset's size, for the progress bar (shards finished earlier count as done). The bar
    counts pairs as the workers write them (each task reports its shard's count, :data:`REPORT_INTERVAL_S`).

    Parameters
    ----------
    scheduler : str
        As for :func:`connect`.
    job : object
        The shared synthesis settings (card, sampling, source).
    tasks : sequence of ShardTask
        The shards to write.
    workers : int
        Processes of a ``LocalCluster``.
    pairs : int, optional
        Pairs in the whole dataset.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of dict
        One shard record per task.
    """
    return map_on_cluster(scheduler, _shard_task, tasks, shared=job, workers=workers, progress=progress, desc="generate",
                          unit="pair", weights=[t.n for t in tasks], total=pairs, name="noisesim-shard", reports=True)
