"""Generation on a Dask cluster (noisesim.distributed): the same bytes as one process, a worker killed by
its PID mid-run, the whole run killed then resumed, clear errors for an unreachable scheduler and for the
missing extra. Skipped when the dask extra is not installed (the missing-extra test runs regardless)."""

from __future__ import annotations

import filecmp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from noisesim.cli import main
from noisesim.dataset import generate_dataset, shard_paths
from noisesim.errors import ClusterError

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(card="SonyA7S2", source="builtin", patch=32, iso=(800, 3200), ratio=(100, 300), progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same_dataset(a: Path, b: Path, shards: int) -> None:
    """Shard files byte-identical; the master (if any) identical in content and attributes."""
    for sa, sb in zip(shard_paths(a, shards), shard_paths(b, shards)):
        assert filecmp.cmp(sa, sb, shallow=False), f"{sb} differs from {sa}"
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert sorted(fa) == sorted(fb)
        for name in fa:
            assert fa[name][()].tobytes() == fb[name][()].tobytes(), f"/{name} differs"
        assert dict(fa.attrs).keys() == dict(fb.attrs).keys()
        for k in fa.attrs:
            assert np.array_equal(np.asarray(fa.attrs[k]), np.asarray(fb.attrs[k])), k
    left = sorted(p.name for p in b.parent.iterdir() if p.name.endswith((".partial", ".progress")))
    assert not left, f"leftover partial files: {left}"


# ------------------------------------------------------------------------------------------------
# Errors (no cluster needed)
# ------------------------------------------------------------------------------------------------
def test_missing_extra_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    out = tmp_path / "d.h5"
    with pytest.raises(ClusterError, match=r"noisesim\[dask\]"):
        generate_dataset(out, pairs=2, scheduler="local", **SMALL)
    rc = main(["generate", "--card", "SonyA7S2", "--output", str(out), "--pairs", "2", "--patch", "32",
               "--scheduler", "local", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "noisesim[dask]" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir()), "nothing may be written when the extra is missing"


def test_unreachable_scheduler_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("distributed")
    import dask

    out = tmp_path / "d.h5"
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        t0 = time.monotonic()
        rc = main(["generate", "--card", "SonyA7S2", "--output", str(out), "--pairs", "2", "--patch", "32",
                   "--scheduler", address, "--no-progress"])
        assert time.monotonic() - t0 < 20
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot reach the Dask scheduler at {address}" in err and "Traceback" not in err
    assert not out.exists() and not shard_paths(out, 1)[0].with_name("d.h5.partial").exists()
    rc = main(["generate", "--card", "SonyA7S2", "--output", str(out), "--pairs", "2", "--patch", "32",
               "--scheduler", str(tmp_path / "nope.json"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "scheduler file" in err and "nope.json" in err and "does not exist" in err


def test_workers_with_a_running_cluster_is_refused(tmp_path, capsys):
    """--workers sizes only a LocalCluster; with an address or a scheduler file it used to be silently ignored."""
    from noisesim.distributed import connect

    out = tmp_path / "d.h5"
    address = f"tcp://127.0.0.1:{_free_port()}"
    for scheduler in (address, str(tmp_path / "scheduler.json")):
        rc = main(["generate", "--card", "SonyA7S2", "--output", str(out), "--pairs", "2", "--patch", "32",
                   "--scheduler", scheduler, "--workers", "4", "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and "--workers 4" in err and "LocalCluster" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and scheduler in err
    assert not list(tmp_path.iterdir()), "nothing may be written"
    with pytest.raises(ClusterError, match="--workers 3"):
        generate_dataset(out, pairs=2, scheduler=address, workers=3, **SMALL)
    with pytest.raises(ClusterError, match="--workers 2"):  # calibrate's path (map_on_cluster) too
        with connect(address, workers=2):
            pass


def test_progress_tally_counts_pairs_and_moves_back_on_a_rerun():
    from noisesim.distributed import _Reporter, _Tally

    class Bar:
        n = 0

        def update(self, d):
            self.n += d

    bar = Bar()
    tally = _Tally(bar, [4, 4])
    for k, done, want in ((0, 2, 2), (1, 3, 5), (0, 1, 4), (0, 9, 7)):  # (0, 1): shard 0 rerun from its partial
        tally.event((0.0, [k, done]))
        assert bar.n == want
    tally.finished(0)
    tally.event((0.0, [0, 1]))  # late report of a finished task: ignored
    tally.finished(1)
    assert bar.n == 8
    sent: list = []
    every = _Reporter("t", 3, 0.0, send=lambda topic, msg: sent.append((topic, msg)))
    for i in range(5):
        every(i)
    assert sent == [("t", [3, i]) for i in range(5)]
    sent.clear()
    throttled = _Reporter("t", 3, 3600.0, send=lambda topic, msg: sent.append(msg))
    for i in range(100):
        throttled(i)
    assert sent == [[3, 0]], "at most one report per interval"


# ------------------------------------------------------------------------------------------------
# On a cluster
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster shared by this module's tests (start-up costs seconds on 2 cores)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        yield c, client


def test_cluster_gives_the_same_bytes_as_one_process(cluster, tmp_path):
    c, _client = cluster
    (tmp_path / "one").mkdir()
    (tmp_path / "dask").mkdir()
    kw = dict(pairs=9, shards=3, seed=11, blur="gaussian:0.5-1.5", **SMALL)
    ref = generate_dataset(tmp_path / "one" / "d.h5", **kw)
    out = generate_dataset(tmp_path / "dask" / "d.h5", scheduler=c.scheduler_address, **kw)
    _same_dataset(ref, out, 3)
    # One shard: the single file itself is byte-identical.
    ref1 = generate_dataset(tmp_path / "one" / "s.h5", pairs=3, seed=2, storage="uint16", **SMALL)
    out1 = generate_dataset(tmp_path / "dask" / "s.h5", pairs=3, seed=2, storage="uint16", scheduler=c.scheduler_address, **SMALL)
    assert filecmp.cmp(ref1, out1, shallow=False)


@pytest.mark.slow
def test_cli_local_cluster_same_bytes_and_dashboard(tmp_path):
    pytest.importorskip("distributed")
    args = ["--card", "SonyA7S2", "--pairs", "6", "--patch", "32", "--shards", "2", "--seed", "4"]
    for d in ("one", "dask"):
        (tmp_path / d).mkdir()
    ref = tmp_path / "one" / "d.h5"
    # The same relative --output: the recorded command is then the same.
    subprocess.run([sys.executable, "-m", "noisesim", "generate", *args, "--output", "d.h5", "--no-progress"],
                   check=True, cwd=tmp_path / "one", capture_output=True)
    out = tmp_path / "dask" / "d.h5"
    res = subprocess.run([sys.executable, "-m", "noisesim", "generate", *args, "--output", "d.h5", "--scheduler", "local",
                          "--workers", "2"], cwd=tmp_path / "dask", capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "dashboard: http" in res.stderr and "pair" in res.stderr  # link printed, tqdm bar drawn
    _same_dataset(ref, out, 2)


@pytest.mark.slow
def test_killed_worker_task_is_rerun_and_bytes_are_identical(cluster, tmp_path):
    """SIGKILL the worker process writing a shard while its partial is incomplete: the scheduler re-runs the
    task on a (restarted) worker, which continues the partial; output identical, no partial left behind."""
    c, client = cluster
    kw = dict(card="SonyA7S2", source="builtin", patch=128, iso=(800, 3200), pairs=120, shards=2, seed=21, progress=False,
              checkpoint_every=4)
    (tmp_path / "one").mkdir()
    (tmp_path / "dask").mkdir()
    ref = generate_dataset(tmp_path / "one" / "d.h5", **kw)
    out = tmp_path / "dask" / "d.h5"
    killed: list = []

    def killer():
        pids = client.run(os.getpid)  # {worker address: pid}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = {w: keys for w, keys in client.processing().items() if any("noisesim-shard-" in str(k) and "shared" not in str(k) for k in keys)}
            partials = [p for p in (tmp_path / "dask").glob("*.h5.partial.progress") if p.read_bytes().count(1) >= 4]
            if busy and partials:
                shard = partials[0].name.removesuffix(".partial.progress")
                if not (tmp_path / "dask" / shard).exists():
                    w = sorted(busy)[0]
                    os.kill(pids[w], signal.SIGKILL)
                    killed.append((pids[w], shard))
                    return
            time.sleep(0.01)

    t = threading.Thread(target=killer)
    t.start()
    generate_dataset(out, scheduler=c.scheduler_address, **kw)
    t.join()
    assert killed, "no worker was killed mid-shard (the tasks finished too fast?)"
    _same_dataset(ref, out, 2)
    client.wait_for_workers(2, timeout=60)
    assert killed[0][0] not in client.run(os.getpid).values(), "the killed worker is gone; its nanny started a new one"


@pytest.mark.slow
def test_whole_run_killed_then_resume_finishes_it(cluster, tmp_path, monkeypatch):
    """kill -9 of the whole process group (client, LocalCluster, workers) after the first shard is complete;
    --resume (here on another cluster) finishes it with the same bytes."""
    c, _client = cluster
    args = ["--card", "SonyA7S2", "--pairs", "90", "--patch", "128", "--shards", "3", "--seed", "8", "--checkpoint-every", "4"]
    for d in ("one", "dask"):
        (tmp_path / d).mkdir()
    ref = tmp_path / "one" / "d.h5"
    monkeypatch.chdir(tmp_path / "one")  # the same relative --output everywhere: the recorded command is the same
    assert main(["generate", *args, "--output", "d.h5", "--no-progress"]) == 0
    out = tmp_path / "dask" / "d.h5"
    monkeypatch.chdir(tmp_path / "dask")
    proc = subprocess.Popen([sys.executable, "-m", "noisesim", "generate", *args, "--output", "d.h5", "--scheduler", "local",
                             "--workers", "2", "--no-progress"], cwd=tmp_path / "dask", start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = shard_paths(out, 3)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(s.exists() for s in shards) >= 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    time.sleep(0.5)  # let the killed group's file handles go
    assert not out.exists(), "the master must not exist after a kill"
    assert any(s.exists() for s in shards) and not all(s.exists() for s in shards)
    assert main(["generate", *args, "--output", "d.h5", "--no-progress", "--scheduler", c.scheduler_address]) == 2, \
        "without --resume the partial run is refused"
    assert main(["generate", *args, "--output", "d.h5", "--no-progress", "--resume", "--scheduler", c.scheduler_address]) == 0
    _same_dataset(ref, out, 3)


# ------------------------------------------------------------------------------------------------
# Calibration: one task per ISO, frames read on the workers
# ------------------------------------------------------------------------------------------------
def _capture_manifest(folder: Path) -> Path:
    """Two ISOs of small .npy darks and flats (with fixed-pattern maps) and a CSV manifest naming them."""
    from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames
    from noisesim.params import FixedPatternMaps, NoiseParams, Sensor

    sensor = Sensor("RGGB", 14, (512, 512, 512, 512), 16383)
    params = {1600: NoiseParams(1.53, "tukey", 6.3, -0.044, 3.23, 0.99, 0.3, (1.0, -0.5, 0.5, 0.0)),
              3200: NoiseParams(3.06, "tukey", 3.92, 0.10, 2.04, 0.45, 0.2, (0.5, 0.0, -0.3, 0.2))}
    shape = (64, 64)
    g = np.random.default_rng(1)
    maps = FixedPatternMaps(dark_shading_k_dn_per_iso=np.zeros(shape, np.float32),
                            dark_shading_b_dn=g.normal(0, 1.5, shape).astype(np.float32),
                            prnu=g.normal(0, 0.01, shape).astype(np.float32))
    spec = SyntheticSpec(n_darks=10, flat_levels=(0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9))
    frames = synthetic_frames(params, sensor, shape, spec, maps=maps, rng=3)
    rows = ["path,kind,iso,exposure_s,black_level,white_level,cfa"]
    for k, f in enumerate(frames):
        name = f"f{k:03d}.npy"
        np.save(folder / name, f.load())
        rows.append(f"{name},{f.kind},{f.iso:g},{f.exposure_s!r},512,{max(f.white_level_dn):g},RGGB")
    (folder / "capture.csv").write_text("\n".join(rows) + "\n")
    return folder / "capture.csv"


def _card_files(card: Path) -> dict:
    """The card's text without its creation date, and every sidecar file's bytes."""
    text = "\n".join(line for line in card.read_text().splitlines() if not line.lstrip().startswith("date"))
    side = {p.name: p.read_bytes() for p in card.parent.iterdir() if p != card and p.name.startswith(card.stem)}
    return {"text": text, **side}


@pytest.mark.slow
def test_calibrate_on_cluster_gives_the_same_card(cluster, tmp_path, monkeypatch):
    c, client = cluster
    (tmp_path / "cap").mkdir()
    manifest = _capture_manifest(tmp_path / "cap")
    # The client must not read pixel data: every frame (the held-out darks of the fidelity check included)
    # is loaded on a worker.
    from noisesim.calibration import capture as capture_mod

    cards = {}
    for where, sched in (("one", None), ("dask", c.scheduler_address)):
        (tmp_path / where).mkdir()
        args = ["calibrate", str(manifest), "--camera", "Test Cam", "--output", str(tmp_path / where / "cam.toml"), "--seed", "2"]
        if sched:
            seen = []
            real = capture_mod.FrameInfo.load
            monkeypatch.setattr(capture_mod.FrameInfo, "load", lambda self: seen.append(self.path) or real(self))
            args += ["--scheduler", sched]
        assert main(args) == 0
        cards[where] = _card_files(tmp_path / where / "cam.toml")
    monkeypatch.undo()
    assert len(seen) == 0, f"frames read by the client: {seen[:3]}"
    assert cards["one"].keys() == cards["dask"].keys(), (sorted(cards["one"]), sorted(cards["dask"]))
    for name in cards["one"]:
        assert cards["one"][name] == cards["dask"][name], f"{name} differs between the local and the cluster run"


@pytest.mark.slow
def test_tukey_fit_does_not_depend_on_blas_threads():
    """Dask workers run with OMP_NUM_THREADS=1; a threaded BLAS dot in the Tukey fit made the card differ in
    the 10th digit between a worker and the local run."""
    code = ("import numpy as np; from noisesim.calibration.estimators import fit_tukey; "
            "x = np.random.default_rng(0).standard_t(8, 60_000); f = fit_tukey(x); "
            "print(repr((f.tukey_lambda, f.tukey_scale_dn, f.r2)))")
    outs = set()
    for threads in ("1", "4"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1, outs


def _fails_on_worker(item, shared):
    from noisesim.errors import InputFileError

    raise InputFileError(f"{item}: not found")


def test_worker_errors_keep_their_type_and_name_the_worker(cluster):
    import cloudpickle

    from noisesim.distributed import map_on_cluster
    from noisesim.errors import InputFileError

    c, _client = cluster
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the test module
    try:
        with pytest.raises(InputFileError, match=r"on worker .*\(pid \d+\): /data/images: not found"):
            map_on_cluster(c.scheduler_address, _fails_on_worker, ["/data/images"])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_cluster_progress_bar_counts_pairs_not_shards(cluster, tmp_path, monkeypatch):
    """The bar moved by a whole shard when its task ended; the workers now report each pair (issue 9)."""
    import tqdm.auto

    import noisesim.distributed as dist

    positions: list[float] = []

    class Recording(tqdm.auto.tqdm):
        def update(self, n=1):
            out = super().update(n)
            positions.append(self.n)
            return out

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    monkeypatch.setattr(dist, "REPORT_INTERVAL_S", 0.0, raising=False)  # every pair (the default sends at most 2 a second)
    c, _client = cluster
    generate_dataset(tmp_path / "d.h5", pairs=12, shards=2, seed=5, scheduler=c.scheduler_address,
                     **{**SMALL, "progress": True})
    assert positions and positions[-1] == 12
    within = sorted({p for p in positions if p % 6})  # not a multiple of the shard size: mid-shard
    assert len(within) >= 4, positions


def test_local_cluster_workers_sample_their_profile_once_a_second():
    # At Dask's default 10 ms the stack sampling cost +27 % CPU per pair in a worker (docs/distributed.md).
    pytest.importorskip("dask.distributed")
    from noisesim.distributed import connect

    with connect("local", workers=1) as client:
        interval = list(client.run(lambda: __import__("dask").config.get("distributed.worker.profile.interval")).values())
    assert interval == ["1s"]
