"""Faults around dataset generation (issue 14): concurrent writers, resume over complete outputs,
corruption, orphaned workers, full disks, hostile input, byte determinism."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from noisesim.dataset import generate_dataset
from noisesim.errors import DatasetError, ParameterError

REPO = Path(__file__).resolve().parents[1]
CARD = "SonyA7S2"
SMALL = dict(card=CARD, source="builtin", patch=32, iso=(800, 3200), ratio=(100, 300), progress=False)
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _generate_cli(cwd, *extra, pairs=300):
    args = ["--card", CARD, "--output", "ds.h5", "--pairs", str(pairs), "--patch", "32", "--seed", "5", "--no-progress", *extra]
    return subprocess.Popen([sys.executable, "-m", "noisesim", "generate", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lock(proc, lock: Path, timeout=120.0) -> None:
    """Wait until ``proc`` holds the lock and has created its partial file."""
    t0 = time.monotonic()
    partial = lock.with_name(lock.name.replace(".lock", ".partial"))
    while not (lock.exists() and lock.read_text().strip() and partial.exists()):
        if proc.poll() is not None:
            pytest.fail(f"first run ended before taking the lock: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            pytest.fail("first run never took the lock")
        time.sleep(0.02)


def _interrupt_after(n_writes: int):
    """Patch ShardWriter.write to raise KeyboardInterrupt at its n-th call; returns an undo function."""
    from noisesim.dataset.shards import ShardWriter

    real = ShardWriter.write
    calls = {"n": 0}

    def write(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == n_writes:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    ShardWriter.write = write
    return lambda: setattr(ShardWriter, "write", real)


# ------------------------------------------------------------------------------------------------
# 1. Concurrent writers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["plain", "force-on-both"])
def test_second_concurrent_run_fails_at_once_naming_the_first(tmp_path, force):
    """Two real `generate` processes on one output: the second fails with the first's PID and file;
    the first (paused meanwhile with SIGSTOP, so the overlap is certain) still ends with a complete file."""
    extra = ("--force",) if force else ()
    if force:
        generate_dataset(tmp_path / "ds.h5", pairs=2, seed=1, **SMALL)  # an old output for --force to replace
    first = _generate_cli(tmp_path, *extra)
    try:
        _wait_for_lock(first, tmp_path / "ds.h5.lock")
        first.send_signal(signal.SIGSTOP)
        second = _generate_cli(tmp_path, *extra)
        out2, err2 = second.communicate(timeout=120)
        assert second.returncode == 2, err2
        assert f"PID {first.pid}" in err2 and "ds.h5.partial" in err2, err2
        assert "Traceback" not in err2 and len(err2.strip().splitlines()) == 1
        assert (tmp_path / "ds.h5.partial").exists(), "the second run must not touch the first run's partial"
    finally:
        first.send_signal(signal.SIGCONT)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    with h5py.File(tmp_path / "ds.h5", "r") as f:
        noisy = f["noisy"][()]
        assert f.attrs["n_pairs"] == 300 and int(f.attrs["seed"]) == 5
    assert noisy.shape[0] == 300 and (noisy.reshape(300, -1).max(axis=1) > 0).all(), "all-zero samples"
    assert not (tmp_path / "ds.h5.lock").exists() and not (tmp_path / "ds.h5.partial").exists()


def test_lock_released_when_holder_is_killed(tmp_path):
    """The OS lock dies with its holder: a kill -9 leaves no lock that blocks the next run."""
    first = _generate_cli(tmp_path)
    _wait_for_lock(first, tmp_path / "ds.h5.lock")
    first.kill()
    first.wait(timeout=60)
    generate_dataset(tmp_path / "ds.h5", pairs=300, seed=5, card=CARD, patch=32, resume=True, progress=False)
    assert not (tmp_path / "ds.h5.lock").exists()


# ------------------------------------------------------------------------------------------------
# 2. --resume over an existing output
# ------------------------------------------------------------------------------------------------
def test_a_lock_that_cannot_be_made_is_reported_under_the_output(tmp_path):
    """The error named ``o.h5.lock``, a file the user never asked for."""
    from noisesim.runlock import RunLock

    (tmp_path / "file").write_bytes(b"x")
    output = tmp_path / "file" / "o.h5"  # its folder is a file
    with pytest.raises(OSError) as info:
        RunLock(output).acquire()
    assert info.value.filename == str(output) and "lock" in info.value.strerror


def test_resume_over_complete_output_checks_settings(tmp_path, caplog):
    out = generate_dataset(tmp_path / "d.h5", pairs=4, seed=3, **SMALL)
    before = out.read_bytes()
    with pytest.raises(DatasetError, match=r"d\.h5 is complete but was made with different settings.*seed: 3 then, 99 now"):
        generate_dataset(out, pairs=4, seed=99, resume=True, **SMALL)
    with pytest.raises(DatasetError, match="pairs: 4 then, 5 now"):
        generate_dataset(out, pairs=5, seed=3, resume=True, **SMALL)
    with caplog.at_level("WARNING"):
        assert generate_dataset(out, pairs=4, seed=3, resume=True, **SMALL) == out
    assert "already complete" in caplog.text
    assert out.read_bytes() == before


def test_resume_with_an_empty_partial_never_replaces_a_complete_output(tmp_path):
    """A partial with no finished sample (here: zeros, as a kill while creating it could leave) used to be
    started over as a new run that then replaced the complete output of other settings, exit 0."""
    out = generate_dataset(tmp_path / "d.h5", pairs=6, seed=3, **SMALL)
    before = out.read_bytes()
    (tmp_path / "d.h5.partial").write_bytes(bytes(30000))
    with pytest.raises(DatasetError, match=r"d\.h5 is complete but was made with different settings.*pairs: 6 then, 3 now"):
        generate_dataset(out, pairs=3, seed=3, resume=True, **SMALL)
    assert out.read_bytes() == before
    assert not (tmp_path / "d.h5.partial").exists()  # nothing in it to keep
    (tmp_path / "d.h5.partial").write_bytes(bytes(30000))
    assert generate_dataset(out, pairs=6, seed=3, resume=True, **SMALL) == out  # same settings: complete
    assert out.read_bytes() == before


def test_resume_with_nothing_to_resume_says_so(tmp_path, caplog):
    """--resume on an output with no partial (a mistyped --output, or a partial already deleted) started a
    new run without a word; it still starts one (what the user asked for is there at the end), and says so."""
    with caplog.at_level("WARNING"):
        out = generate_dataset(tmp_path / "d.h5", pairs=2, seed=3, resume=True, **SMALL)
    assert "no partial run with a finished sample to resume; starting a new run" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert generate_dataset(out, pairs=2, seed=3, resume=True, **SMALL) == out  # complete: nothing to resume
    assert "starting a new run" not in caplog.text and "already complete" in caplog.text


def test_killed_force_rebuild_resumes_the_new_run(tmp_path):
    out = generate_dataset(tmp_path / "d.h5", pairs=20, seed=3, **SMALL)
    undo = _interrupt_after(7)
    try:
        with pytest.raises(KeyboardInterrupt):
            generate_dataset(out, pairs=20, seed=99, force=True, checkpoint_every=3, **SMALL)
    finally:
        undo()
    assert (tmp_path / "d.h5.partial").exists()
    generate_dataset(out, pairs=20, seed=99, resume=True, **SMALL)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["seed"]) == 99
    ref = generate_dataset(tmp_path / "ref.h5", pairs=20, seed=99, **SMALL)
    with h5py.File(out, "r") as a, h5py.File(ref, "r") as b:
        assert a["noisy"][()].tobytes() == b["noisy"][()].tobytes()
    assert not (tmp_path / "d.h5.partial").exists()


def test_resume_of_complete_sharded_output_checks_settings(tmp_path):
    out = generate_dataset(tmp_path / "m.h5", pairs=6, seed=3, shards=2, **SMALL)
    with pytest.raises(DatasetError, match="different settings.*seed"):
        generate_dataset(out, pairs=6, seed=4, shards=2, resume=True, **SMALL)
    assert generate_dataset(out, pairs=6, seed=3, shards=2, resume=True, **SMALL) == out


# ------------------------------------------------------------------------------------------------
# 6. Seeds
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_out_of_range_seed_refused_before_anything_is_written(tmp_path, seed):
    p = subprocess.run([sys.executable, "-m", "noisesim", "generate", "--card", CARD, "-o", "d.h5", "-n", "2",
                        "--patch", "32", "--seed", seed, "--no-progress"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "--seed" in p.stderr and "Traceback" not in p.stderr
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception, match="0..2"):
        generate_dataset(tmp_path / "d.h5", pairs=2, seed=int(seed), **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_largest_seed_is_stored(tmp_path):
    out = generate_dataset(tmp_path / "d.h5", pairs=1, seed=2**64 - 1, **SMALL)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["seed"]) == 2**64 - 1


# ------------------------------------------------------------------------------------------------
# 3. Detectable corruption
# ------------------------------------------------------------------------------------------------
def _cli_main(capsys, *argv):
    from noisesim.cli import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def small_ds(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("v") / "v.h5", pairs=6, seed=2, **SMALL)


def _flip_bit_on_disk(path: Path, index: int, name: str = "noisy") -> None:
    """Flip one bit of sample ``index`` of /name in the file's bytes, as a storage fault would."""
    with h5py.File(path, "r") as f:
        offset = f[name].id.get_chunk_info(index).byte_offset
    with open(path, "r+b") as fp:
        fp.seek(offset + 1001)
        b = fp.read(1)
        fp.seek(offset + 1001)
        fp.write(bytes([b[0] ^ 0x10]))


def test_verify_finds_flipped_bit_and_nan(small_ds, tmp_path, capsys):
    from noisesim.dataset import verify_dataset

    assert verify_dataset(small_ds) == []
    rc, out, _ = _cli_main(capsys, "inspect", str(small_ds), "--verify")
    assert rc == 0 and "all 6 samples match" in out
    bad = tmp_path / "bad.h5"
    bad.write_bytes(small_ds.read_bytes())
    _flip_bit_on_disk(bad, 2)
    with h5py.File(bad, "r+") as f:
        row = f["noisy"][4]
        row[0, 0, 0] = np.nan
        f["noisy"][4] = row
    assert verify_dataset(bad) == [2, 4]
    rc, _, err = _cli_main(capsys, "inspect", str(bad), "--verify")
    assert rc == 2 and "2 of 6 samples fail their checksum" in err and "indices 2, 4" in err and str(bad) in err
    pytest.importorskip("torch")  # the rest needs the optional torch extra
    from noisesim.torch_data import PairedRawDataset

    ds = PairedRawDataset(bad, verify=True)
    ds[0]
    with pytest.raises(DatasetError, match=r"bad\.h5: sample 4 fails its checksum"):
        ds[4]
    with pytest.raises(DatasetError, match="sample 2 fails"):
        ds[2]
    assert np.isnan(np.asarray(PairedRawDataset(bad)[4]["noisy"])).any()  # verify=False reads what is there


def test_contact_sheet_of_a_sample_with_nan_is_refused(small_ds, tmp_path, capsys):
    """The sheet was written (exit 0) after numpy's raw 'invalid value encountered in cast' warning."""
    bad = tmp_path / "nan.h5"
    bad.write_bytes(small_ds.read_bytes())
    with h5py.File(bad, "r+") as f:
        row = f["clean"][0]
        row[0, 0, 0] = np.nan
        f["clean"][0] = row
    sheet = tmp_path / "s.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning may reach the user
        rc, _, err = _cli_main(capsys, "inspect", str(bad), "--contact-sheet", str(sheet))
    assert rc == 2 and "sample 0 holds NaN" in err and str(bad) in err and len(err.strip().splitlines()) == 1
    assert not sheet.exists()


def test_checksums_hold_for_blur_uint16_and_workers(tmp_path):
    from noisesim.dataset import verify_dataset

    a = generate_dataset(tmp_path / "a.h5", pairs=4, seed=1, blur="gaussian:0.5-1.5,p=0.5", storage="uint16", **SMALL)
    assert verify_dataset(a) == []
    with h5py.File(a, "r+") as f:  # the kernels are covered too
        f["blur_kernel_sizes"][1] = 99
    assert verify_dataset(a) == [1]


@pytest.mark.slow
def test_checksums_written_by_workers(tmp_path):
    from noisesim.dataset import verify_dataset

    a = generate_dataset(tmp_path / "w.h5", pairs=8, seed=1, blur="gaussian:0.5-1.5", workers=2, **SMALL)
    assert verify_dataset(a) == []


def test_master_with_missing_shard_is_an_error(tmp_path, capsys):
    from noisesim.dataset import shard_paths
    from noisesim.torch_data import PairedRawDataset

    out = generate_dataset(tmp_path / "m.h5", pairs=6, seed=1, shards=3, **SMALL)
    shard_paths(out, 3)[1].unlink()
    rc, _, err = _cli_main(capsys, "inspect", str(out))
    assert rc == 2 and "1 of 3 shard files are missing" in err and "m-00001-of-00003.h5" in err
    with pytest.raises(DatasetError, match="shard files are missing"):
        PairedRawDataset(out)


@pytest.mark.parametrize("how", ["copied", "swapped"])
def test_a_copied_or_swapped_shard_is_an_error(tmp_path, capsys, how):
    """A shard of the same run put where another belongs has the right settings and valid checksums:
    inspect and inspect --verify said 'all 4 samples match' (samples 2–3 were copies of 0–1)."""
    from noisesim.dataset import shard_paths

    out = generate_dataset(tmp_path / "m.h5", pairs=4, seed=1, shards=2, **SMALL)
    a, b = shard_paths(out, 2)
    if how == "copied":
        b.write_bytes(a.read_bytes())
    else:
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)
    for extra in ((), ("--verify",)):
        rc, _, err = _cli_main(capsys, "inspect", str(out), *extra)
        assert rc == 2 and "copied or swapped" in err and len(err.strip().splitlines()) == 1, (extra, err)


def test_partial_is_labelled_and_not_read_for_training(tmp_path, capsys):
    from noisesim.torch_data import PairedRawDataset

    undo = _interrupt_after(7)
    try:
        with pytest.raises(KeyboardInterrupt):
            generate_dataset(tmp_path / "d.h5", pairs=20, seed=1, checkpoint_every=3, **SMALL)
    finally:
        undo()
    partial = tmp_path / "d.h5.partial"
    rc, out, _ = _cli_main(capsys, "inspect", str(partial))
    assert rc == 0 and out.startswith("INCOMPLETE: partial file") and "6 of 20 samples done" in out
    with pytest.raises(DatasetError, match="partial file"):
        PairedRawDataset(partial)
    rc, _, err = _cli_main(capsys, "inspect", str(partial), "--verify")
    assert rc == 2 and "partial" in err


def _damaged_variants(src: Path, d: Path) -> dict[str, Path]:
    data = src.read_bytes()
    rng = np.random.default_rng(0)
    v = {}
    v["tail"] = d / "tail.h5"
    v["tail"].write_bytes(data[: len(data) - 4096] + rng.bytes(4096))
    v["truncated"] = d / "trunc.h5"
    v["truncated"].write_bytes(data[: len(data) // 2])
    v["head"] = d / "head.h5"
    v["head"].write_bytes(data[:8] + rng.bytes(2000) + data[2008:])
    v["empty"] = d / "empty.h5"
    v["empty"].write_bytes(b"")
    v["text"] = d / "text.h5"
    v["text"].write_text("not hdf5\n")
    v["dir"] = d / "dir.h5"
    v["dir"].mkdir()
    v["foreign"] = d / "foreign.h5"
    with h5py.File(v["foreign"], "w") as f:
        f["clean"] = np.zeros(3)
        f["noisy"] = np.zeros(3)
        f.create_group("params")
    v["wrong_params"] = d / "wrongp.h5"
    with h5py.File(v["wrong_params"], "w") as f:
        f["clean"] = np.zeros((2, 4, 2, 2))
        f["noisy"] = np.zeros((2, 4, 2, 2))
        f["params"] = np.zeros(2)
        f.attrs["shards"] = "not json"
    for k in range(5):  # random 4 KiB blocks overwritten anywhere
        p = d / f"blocks{k}.h5"
        b = bytearray(data)
        for _ in range(3):
            at = int(rng.integers(0, len(b) - 4096))
            b[at : at + 4096] = rng.bytes(4096)
        p.write_bytes(bytes(b))
        v[f"blocks{k}"] = p
    return v


def test_no_input_makes_inspect_print_a_traceback(small_ds, tmp_path, capsys):
    for name, p in _damaged_variants(small_ds, tmp_path).items():
        for extra in ((), ("--verify",), ("--contact-sheet", str(tmp_path / "s.png"))):
            rc, out, err = _cli_main(capsys, "inspect", str(p), *extra)  # an exception here is a traceback
            assert rc in (0, 2), (name, extra)
            if rc == 2:
                assert len(err.strip().splitlines()) == 1 and str(p) in err, (name, extra, err)
            if extra == ("--verify",) and (name in ("tail", "head") or name.startswith("blocks")):
                assert rc == 2 or "all 6 samples match" in out, (name, err)


# ------------------------------------------------------------------------------------------------
# 7. Determinism to the byte
# ------------------------------------------------------------------------------------------------
def test_crop_without_hot_pixels_equals_full_frame_window():
    """Hot pixels off, maps on: their replacement is the full-sensor median of their CFA phase, so a crop
    is the same window of the full frame (it differed in 2–41 pixels with the crop's own median)."""
    import dataclasses

    from noisesim.card import load_card
    from noisesim.noise import simulate
    from noisesim.params import FixedPatternMaps, NoiseComponents
    from noisesim.sampling import sample_params

    card = load_card(CARD)
    g = np.random.default_rng(0)
    H = W = 48
    hot = g.random((H, W)) < 0.03
    maps = FixedPatternMaps(dark_shading_k_dn_per_iso=g.normal(0, 1e-3, (H, W)).astype(np.float32),
                            dark_shading_b_dn=(g.normal(0, 1, (H, W)) + 40 * hot).astype(np.float32),
                            prnu=g.normal(0, 0.01, (H, W)).astype(np.float32),
                            dark_current_e_per_s=(g.gamma(2, 0.5, (H, W)) + 300 * hot).astype(np.float32),
                            hot_pixel_mask=hot)
    params = dataclasses.replace(sample_params(card, iso=1600, rng=0), exposure_s=2.0)
    comps = dataclasses.replace(NoiseComponents(), hot_pixels=False)
    clean = g.random((H, W)).astype(np.float32) * 0.2
    full = simulate(clean, params, card.sensor, ratio=10, maps=maps, components=comps, rng=7)
    for oy, ox, h, w in ((0, 0, 16, 16), (6, 10, 20, 24), (30, 2, 18, 46)):
        crop = simulate(clean[oy:oy + h, ox:ox + w], params, card.sensor, ratio=10, maps=maps, origin=(oy, ox),
                        components=comps, rng=7)
        assert np.array_equal(crop, full[oy:oy + h, ox:ox + w]), (oy, ox, int((crop != full[oy:oy + h, ox:ox + w]).sum()))


def test_sharded_master_identical_between_identical_runs(tmp_path):
    """The master's virtual datasets carry no creation timestamps (they differed between runs)."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    generate_dataset(a / "m.h5", pairs=4, seed=1, shards=2, **SMALL)
    time.sleep(1.1)  # HDF5 timestamps have a resolution of one second
    generate_dataset(b / "m.h5", pairs=4, seed=1, shards=2, **SMALL)
    assert (a / "m.h5").read_bytes() == (b / "m.h5").read_bytes()
    for name in ("m-00000-of-00002.h5", "m-00001-of-00002.h5"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


# ------------------------------------------------------------------------------------------------
# 4. Orphaned workers, SIGTERM, small /dev/shm
# ------------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (our container's PID 1 may not reap it)


def _start_with_workers(cwd: Path):
    args = ["--card", CARD, "--output", "ds.h5", "--pairs", "5000", "--patch", "64", "--seed", "5", "--no-progress",
            "--workers", "2", "--checkpoint-every", "10"]
    proc = subprocess.Popen([sys.executable, "-m", "noisesim", "-v", "generate", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "checkpoint:" in line:
            break
    else:
        pytest.fail(f"no checkpoint before exit: rc {proc.wait()}")
    kids = _children(proc.pid)
    assert len(kids) >= 3, f"expected 2 workers and the resource tracker, found {kids}"
    return proc, kids


def _wait_gone(pids, timeout=20.0) -> list[int]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return left


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_workers_exit_when_parent_is_killed(tmp_path):
    proc, kids = _start_with_workers(tmp_path)
    segments = set()  # the /dev/shm segments our workers have mapped
    for k in kids:
        try:
            segments |= {line.split()[-1] for line in Path(f"/proc/{k}/maps").read_text().splitlines() if "/dev/shm/" in line}
        except OSError:
            pass
    assert segments, "the workers map no /dev/shm segment"
    proc.kill()  # kill -9: no cleanup code runs in the parent
    proc.wait(timeout=30)
    assert _wait_gone(kids) == [], "workers or the resource tracker outlived a kill -9 of their parent"
    assert not [s for s in segments if os.path.exists(s)], "a shared-memory segment was left behind"
    assert (tmp_path / "ds.h5.partial").exists() and not (tmp_path / "ds.h5").exists()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    proc, kids = _start_with_workers(tmp_path)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated" in err and "Traceback" not in err
    assert _wait_gone(kids) == []
    done = int(np.count_nonzero(np.frombuffer((tmp_path / "ds.h5.partial.progress").read_bytes(), np.uint8)))
    assert done >= 1  # the samples written before the signal were flushed and kept for --resume


def test_small_dev_shm_is_refused_up_front(tmp_path):
    """Docker's 64 MB /dev/shm, scaled down: a private 2 MB tmpfs on /dev/shm (needs a mount namespace)."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=2m tmpfs /dev/shm"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a small tmpfs on /dev/shm here (needs unshare -m and mount rights)")
    cmd = (f"mount -t tmpfs -o size=2m tmpfs /dev/shm && exec {sys.executable} -m noisesim generate --card {CARD} "
           "-o ds.h5 -n 20 --patch 512 --workers 2 --no-progress")
    p = subprocess.run(["unshare", "-m", "sh", "-c", cmd], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "/dev/shm" in p.stderr and "--shm-size" in p.stderr and "Traceback" not in p.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# 5. Disk full, read-only places, file-size limits
# ------------------------------------------------------------------------------------------------
def _fsize_limit(limit: int):
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("suffix", [".npy", ".tiff", ".dng"])
def test_simulate_under_file_size_limit_is_one_line_and_leaves_no_temporary(tmp_path, suffix):
    clean = tmp_path / "clean.npy"
    np.save(clean, np.full((256, 256), 0.2, np.float32))
    p = subprocess.run([sys.executable, "-m", "noisesim", "simulate", "--card", CARD, "--iso", "1600", "--input", str(clean),
                        "--output", str(tmp_path / f"noisy{suffix}")], env=ENV, capture_output=True, text=True, timeout=120,
                       preexec_fn=_fsize_limit(60_000))
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "noisy" in p.stderr and "file-size limit" in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["clean.npy"], "a temporary or partial output was left behind"


def test_resume_after_disk_full_counts_only_what_is_left(tmp_path, monkeypatch):
    import shutil as _shutil

    from noisesim.dataset.shards import bytes_per_sample

    undo = _interrupt_after(12)
    try:
        with pytest.raises(KeyboardInterrupt):
            generate_dataset(tmp_path / "d.h5", pairs=20, seed=1, checkpoint_every=5, **SMALL)
    finally:
        undo()
    done = int(np.count_nonzero(np.frombuffer((tmp_path / "d.h5.partial.progress").read_bytes(), np.uint8)))
    assert 5 <= done < 20
    per_sample = bytes_per_sample((4, 16, 16), np.dtype(np.float32), 0, False)
    real = _shutil.disk_usage
    free = (20 - done) * per_sample + per_sample // 2  # room for what is left, not for the whole dataset

    def small_disk(path):
        return real(path)._replace(free=free)

    monkeypatch.setattr(_shutil, "disk_usage", small_disk)
    with pytest.raises(DatasetError, match="not enough disk space"):
        generate_dataset(tmp_path / "other.h5", pairs=20, seed=1, **SMALL)
    generate_dataset(tmp_path / "d.h5", pairs=20, seed=1, resume=True, **SMALL)
    assert (tmp_path / "d.h5").exists()


# ------------------------------------------------------------------------------------------------
# 6. Inputs refused with a message naming the file and the field
# ------------------------------------------------------------------------------------------------
def _sony_text() -> str:
    from noisesim.card import load_card

    return load_card(CARD).text


@pytest.mark.parametrize("field, value, match", [
    ("gain_k_dn_per_e", "1e-300", r"iso\[0\]\.gain_k_dn_per_e: 1e-300 DN/e- is not physically plausible"),
    ("read_sigma_dn", "1e300", r"iso\[0\]\.read_sigma_dn: 1e\+300 DN is not physically plausible"),
])
def test_absurd_card_values_refused(tmp_path, field, value, match):
    import re

    from noisesim.card import load_card
    from noisesim.errors import CardError

    text = re.sub(rf"^{field} = .*$", f"{field} = {value}", _sony_text(), count=1, flags=re.M)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CardError, match=r"bad\.toml: " + match):
        load_card(path)


def test_negative_prnu_map_refused_naming_the_sidecar(tmp_path):
    from noisesim.card import load_card, save_card
    from noisesim.errors import CardError
    from noisesim.params import FixedPatternMaps

    with pytest.raises(Exception, match=r"map prnu has values down to -5"):
        FixedPatternMaps(prnu=np.full((4, 4), -5.0, np.float32))
    card = load_card(CARD).with_maps(FixedPatternMaps(prnu=np.zeros((4, 4), np.float32)), file="m.npz")
    path = save_card(card, tmp_path / "c.toml")
    import io
    import zipfile

    buf = io.BytesIO()  # a sidecar whose PRNU is -5 (checksum updated, so only the range check can catch it)
    with zipfile.ZipFile(buf, "w") as zf:
        member = io.BytesIO()
        np.lib.format.write_array(member, np.full((4, 4), -5.0, np.float32))
        zf.writestr("prnu.npy", member.getvalue())
    import hashlib

    saved = load_card(path)
    (tmp_path / saved.maps_file).write_bytes(buf.getvalue())
    path.write_text(path.read_text().replace(saved.maps_sha256, hashlib.sha256(buf.getvalue()).hexdigest()))
    with pytest.raises(CardError, match=re.escape(saved.maps_file) + r".*prnu has values down to -5"):
        load_card(path).maps


def test_deeply_nested_toml_card_is_a_card_error(tmp_path):
    from noisesim.card import load_card
    from noisesim.errors import CardError

    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(CardError, match=r"deep\.toml: .*nested too deeply"):
        load_card(path)


def test_zero_variance_darks_are_a_calibration_error():
    from noisesim.calibration.estimators import fit_tukey
    from noisesim.errors import CalibrationError

    with pytest.raises(CalibrationError, match="zero read-noise variance"):
        fit_tukey(np.full(5000, 3.0))  # was ZeroDivisionError


@pytest.mark.parametrize("line, match", [
    ('white_level = "abc"', r"white_level 'abc' is not a number"),
    ("iso = true", r"iso must be a number, got True"),
])
def test_manifest_fields_of_the_wrong_type(tmp_path, line, match):
    from noisesim.calibration.capture import read_manifest

    np.save(tmp_path / "d.npy", np.full((8, 8), 512, np.uint16))
    fields = {"path": '"d.npy"', "kind": '"dark"', "iso": "100", "exposure_s": "0.01", "black_level": "512",
              "white_level": "16383", "cfa": '"RGGB"'}
    key = line.split(" = ")[0]
    fields[key] = line.split(" = ")[1]
    (tmp_path / "m.toml").write_text("[[frame]]\n" + "\n".join(f"{k} = {v}" for k, v in fields.items()) + "\n")
    from noisesim.errors import InputFileError

    with pytest.raises(InputFileError, match=r"m\.toml \(entry 1\): .*d\.npy: " + match):  # a manifest's bad entry is an error
        read_manifest(tmp_path / "m.toml")


def test_manifest_frame_not_a_table(tmp_path):
    from noisesim.calibration.capture import read_manifest
    from noisesim.errors import CalibrationError

    (tmp_path / "m.toml").write_text("frame = [1, 2, 3]\n")
    with pytest.raises(CalibrationError, match=r"m\.toml: frame: a TOML manifest needs a \[\[frame\]\] array of tables"):
        read_manifest(tmp_path / "m.toml")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_eight_bit_npy_input_refused(tmp_path, dtype, capsys):
    np.save(tmp_path / "c.npy", np.full((64, 64), 100, dtype))
    rc, _, err = _cli_main(capsys, "simulate", "--card", CARD, "--iso", "1600", "--input", str(tmp_path / "c.npy"),
                           "--output", str(tmp_path / "n.npy"))
    assert rc == 2 and "c.npy" in err and np.dtype(dtype).name in err and "black level" in err
    assert not (tmp_path / "n.npy").exists()


def test_huge_patch_refused_before_allocating(tmp_path, capsys):
    rc, _, err = _cli_main(capsys, "generate", "--card", CARD, "-o", str(tmp_path / "d.h5"), "-n", "2", "--patch", "100000",
                           "--no-progress")
    assert rc == 2 and "--patch 100000 needs about" in err and "GB" in err
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder_is_one_line_for_every_writing_command(tmp_path):
    """A read-only bind mount (root ignores permission bits, so chmod cannot make one)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    np.save(tmp_path / "clean.npy", np.full((64, 64), 0.2, np.float32))
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a read-only bind mount here (needs unshare -m and mount rights)")
    py = f"{sys.executable} -m noisesim"
    commands = {
        "simulate": f"{py} simulate --card {CARD} --iso 1600 --input {tmp_path}/clean.npy --output {ro}/n.npy",
        "simulate-dng": f"{py} simulate --card {CARD} --iso 1600 --input {tmp_path}/clean.npy --output {ro}/n.dng",
        "generate": f"{py} generate --card {CARD} -o {ro}/d.h5 -n 2 --patch 32 --no-progress",
    }
    for name, cmd in commands.items():
        p = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} && exec {cmd}"],
                           env=ENV, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, (name, p.stderr)
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, (name, p.stderr)
        assert str(ro) in p.stderr and "read-only" in p.stderr.lower(), (name, p.stderr)
    assert list(ro.iterdir()) == []


def test_a_patch_smaller_than_the_dead_leaves_discs_names_the_patch(tmp_path):
    """--patch 2 said only 'dead leaves radii need 0 < r_min < r_max, got 2.0, 2.0'."""
    with pytest.raises(ParameterError, match="patch 2 is too small.*at least 4"):
        generate_dataset(tmp_path / "d.h5", pairs=2, seed=1, **{**SMALL, "patch": 2})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pairs", [2**53 + 1, 10**20])  # 10**20 was a numpy casting traceback
def test_a_pair_count_beyond_the_limit_is_refused_before_anything_is_written(tmp_path, pairs):
    with pytest.raises(ParameterError, match="pairs must lie in 1"):
        generate_dataset(tmp_path / "d.h5", pairs=pairs, seed=1, **SMALL)
    assert list(tmp_path.iterdir()) == []
