"""Generate a sharded paired raw dataset on a Dask cluster: a LocalCluster, SLURM, Kubernetes or an address.

Needs the extra ``pip install 'noisesim[dask]'``; for SLURM also ``dask-jobqueue``, for Kubernetes
``dask-kubernetes`` (docs/distributed.md). Runs as written on one machine (a 2-process LocalCluster, 64
pairs in 4 shards, into a temporary folder). On a cluster, ``--out-dir`` must be storage every worker
and this process share, at the same path::

    python examples/generate_on_cluster.py                                    # LocalCluster, 2 workers
    python examples/generate_on_cluster.py --slurm --jobs 8 --out-dir /scratch/$USER/ds
    python examples/generate_on_cluster.py --kubernetes --jobs 8 --out-dir /data/ds   # RWX volume at /data
    python examples/generate_on_cluster.py --scheduler tcp://10.0.0.5:8786 --out-dir /shared/ds

The content is byte-for-byte that of ``noisesim generate`` with the same settings and no scheduler. If
the whole job dies, run it again with ``--resume``: finished shards are kept, partial ones continued.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import ExitStack
from pathlib import Path


def slurm_cluster(jobs: int, stack: ExitStack, *, cores: int = 16, memory: str = "32GB",
                  interface: str | None = None) -> str:
    """Start ``jobs`` SLURM jobs of ``cores`` worker processes each (dask-jobqueue); returns the scheduler address.

    ``interface`` (e.g. ``ib0``) is the network interface the scheduler listens on and the workers use;
    by default dask-jobqueue takes the host's default address, which compute nodes must be able to reach.
    """
    from dask_jobqueue import SLURMCluster  # pip install dask-jobqueue

    # One worker process per core, one thread each: the synthesis is CPU-bound per process.
    cluster = stack.enter_context(SLURMCluster(cores=cores, processes=cores, memory=memory, walltime="02:00:00",
                                               interface=interface, job_extra_directives=[f"--cpus-per-task={cores}"]))
    cluster.scale(jobs=jobs)
    return cluster.scheduler_address


def kubernetes_cluster(jobs: int, stack: ExitStack, *, claim: str = "noisesim-data", mount: str = "/data") -> str:
    """A Dask cluster on Kubernetes through the dask-kubernetes operator; returns the scheduler address.

    The image must have noisesim installed; every worker pod mounts the ReadWriteMany volume claim
    ``claim`` at ``mount``, and this process must see the same volume at the same path (run it in a
    pod that mounts it too): docs/distributed.md.
    """
    from dask_kubernetes.operator import KubeCluster, make_cluster_spec  # pip install dask-kubernetes

    spec = make_cluster_spec(name="noisesim", image="ghcr.io/you/noisesim:latest", n_workers=jobs,
                             resources={"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                             worker_command="dask worker --nthreads 1")
    pod = spec["spec"]["worker"]["spec"]
    pod.setdefault("volumes", []).append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
    pod["containers"][0].setdefault("volumeMounts", []).append({"name": "data", "mountPath": mount})
    cluster = stack.enter_context(KubeCluster(custom_cluster_spec=spec))
    return cluster.scheduler_address


def main() -> None:
    from noisesim.dataset import generate_dataset, inspect_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--slurm", action="store_true", help="start workers as SLURM jobs (dask-jobqueue)")
    where.add_argument("--kubernetes", action="store_true", help="start workers as pods (dask-kubernetes operator)")
    where.add_argument("--scheduler", default=None, help="address or scheduler.json of a running cluster")
    ap.add_argument("--jobs", type=int, default=2, help="SLURM jobs / pods (default 2); LocalCluster processes")
    ap.add_argument("--cores-per-job", type=int, default=16, help="SLURM: cores (= worker processes) per job (default 16)")
    ap.add_argument("--memory-per-job", default="32GB", help="SLURM: memory per job (default 32GB)")
    ap.add_argument("--interface", default=None,
                    help="SLURM: network interface for the scheduler and workers, e.g. ib0 (default: the host's address)")
    ap.add_argument("--out-dir", default=None, help="shared output folder (default: a temporary folder)")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = ap.parse_args()
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="noisesim-cluster-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    with ExitStack() as stack:
        if args.slurm:
            scheduler = slurm_cluster(args.jobs, stack, cores=args.cores_per_job, memory=args.memory_per_job,
                                      interface=args.interface)
        elif args.kubernetes:
            scheduler = kubernetes_cluster(args.jobs, stack)
        else:
            scheduler = args.scheduler or "local"
        # --workers sizes a LocalCluster only; a running cluster has the workers it has.
        local = {"workers": args.jobs} if scheduler == "local" else {}
        out = generate_dataset(out_dir / "train.h5", card="SonyA7S2", source="builtin", pairs=args.pairs, patch=128,
                               iso=(800, 3200), ratio=(100, 300), seed=0, shards=args.shards, scheduler=scheduler,
                               resume=args.resume, **local)
    info = inspect_dataset(out)
    print(f"{out}: {info['n_pairs']} pairs in {args.shards} shards")


if __name__ == "__main__":  # LocalCluster workers are spawned processes: keep the guard
    main()
