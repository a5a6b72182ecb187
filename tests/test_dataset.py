"""Paired HDF5 datasets: layout, statistics against the stored parameters, exact re-synthesis,
determinism across workers/shards, crash safety and resume, bad input."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from noisesim.card import load_card
from noisesim.dataset import (
    PARAMS_DTYPE,
    SCHEMA,
    generate_dataset,
    inspect_dataset,
    params_from_record,
    resynthesize,
    shard_paths,
)
from noisesim.stats import read_noise_std_dn
from noisesim.errors import DatasetError, InputFileError, NoiseSimError, UnknownCardError, UnknownISOError

REPO = Path(__file__).resolve().parents[1]
CARD = "SonyA7S2"
SMALL = dict(card=CARD, source="builtin", patch=32, iso=(800, 3200), ratio=(100, 300), progress=False)


def _datasets(path) -> dict:
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in f}


def _assert_same_content(a, b) -> None:
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        assert da[name].dtype == db[name].dtype, name
        assert da[name].shape == db[name].shape, name
        assert da[name].tobytes() == db[name].tobytes(), f"/{name} differs"


@pytest.fixture(scope="module")
def blurred(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "blur.h5"
    return generate_dataset(out, pairs=12, blur="gaussian:0.5-1.5,motion:2-5", seed=3, **SMALL)


# ------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------
def test_layout_matches_design(blurred):
    card = load_card(CARD)
    with h5py.File(blurred, "r") as f:
        assert sorted(f) == ["blur_kernel_sizes", "blur_kernels", "clean", "noisy", "params"]
        for name in ("clean", "noisy"):
            ds = f[name]
            assert ds.shape == (12, 4, 16, 16) and ds.dtype == np.float32
            assert ds.chunks == (1, 4, 16, 16), "one patch per chunk"
            assert ds.compression is None, "noise does not compress: no filter by default (docs/datasets.md)"
        assert f["params"].dtype == PARAMS_DTYPE and f["params"].shape == (12,)
        k = f["blur_kernels"]
        assert k.shape[0] == 12 and k.shape[1] == k.shape[2] and k.shape[1] % 2 == 1
        sizes = f["blur_kernel_sizes"][:]
        kernels = k[:]
        rec = f["params"][:]
        a = dict(f.attrs)
    assert np.array_equal(rec["index"], np.arange(12))
    assert np.array_equal(rec["blur_kernel_index"], np.arange(12))
    for kern, s in zip(kernels, sizes):
        assert 1 <= s <= kernels.shape[1]
        assert abs(kern.sum() - 1) < 1e-5
        inner = (kernels.shape[1] - s) // 2
        assert kern[:inner].sum() == 0 and kern[:, :inner].sum() == 0, "kernel padded centred"
    assert a["schema"] == SCHEMA
    assert a["card"] == card.text and a["card_name"] == CARD
    assert a["cfa"] == "RGGB" and a["channel_order"] == "R,G1,G2,B"
    assert list(a["black_level_dn"]) == list(card.sensor.black_level_dn)
    assert list(a["white_level_dn"]) == list(card.sensor.white_level_dn)
    assert a["seed"] == 3 and a["n_pairs"] == 12 and a["patch"] == 32 and a["storage"] == "float32"
    assert "command" in a and json.loads(a["generation_config"])["blur"].startswith("gaussian")
    assert np.all((rec["iso"] >= 800) & (rec["iso"] <= 3200))
    assert np.all((rec["ratio"] >= 100) & (rec["ratio"] <= 300))
    assert np.all(rec["source_index"] == -1), "procedural source"


def test_inspect_summary_and_contact_sheet(blurred, tmp_path):
    from noisesim.cli import main

    info = inspect_dataset(blurred)
    assert info["n_pairs"] == 12 and info["n_blurred"] == 12
    lo, hi = info["param_ranges"]["iso"]
    assert 800 <= lo <= hi <= 3200
    png = tmp_path / "sheet.png"
    assert main(["inspect", str(blurred), "--contact-sheet", str(png), "--n", "3"]) == 0
    import cv2

    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 3 * 32 and img.shape[1] > 2 * 32


# ------------------------------------------------------------------------------------------------
# Statistics and exact re-synthesis
# ------------------------------------------------------------------------------------------------
def test_noisy_consistent_with_clean_and_params(tmp_path):
    """Per sample and channel: residual mean = black-level error, row-demeaned variance =
    K·x + σ_read² + σ_col² + 1/12 (docs/model.md), each within 5 standard errors."""
    out = generate_dataset(tmp_path / "s.h5", pairs=16, **{**SMALL, "patch": 64}, seed=11)
    with h5py.File(out, "r") as f:
        clean, noisy, rec = f["clean"][:].astype(np.float64), f["noisy"][:].astype(np.float64), f["params"][:]
        rng_dn = np.asarray(f.attrs["channel_white_level_dn"]) - np.asarray(f.attrs["channel_black_level_dn"])
    rng_dn = rng_dn[:, None, None]
    z_mean, z_var = [], []
    for i in range(len(rec)):
        p = params_from_record(rec[i])
        r = float(rec["ratio"][i])
        x = clean[i] * rng_dn / r  # expected short-exposure signal [DN]
        e = noisy[i] * rng_dn - x  # residual [DN] (black level removed by normalization)
        v = p.gain_k_dn_per_e * x + read_noise_std_dn(p) ** 2 + 1 / 12  # per-pixel variance without row/col
        c, h, w = e.shape
        for ch in range(c):
            n = h * w
            m_se = np.sqrt(v[ch].mean() / n + p.row_sigma_dn**2 / h + p.col_sigma_dn**2 / w)
            z_mean.append((e[ch].mean() - p.black_level_error_dn[ch]) / m_se)
            d = e[ch] - e[ch].mean(axis=1, keepdims=True)  # removes the row offsets exactly
            expect = (1 - 1 / w) * (v[ch].sum() + h * w * p.col_sigma_dn**2) / n
            got = (d**2).sum() / n
            # Tukey-lambda near λ = 0 is logistic-like: excess kurtosis ≈ 1.2 → Var(s²) ≈ σ⁴ (2 + 1.2) / n.
            z_var.append((got - expect) / (expect * np.sqrt(3.2 / n)))
    z_mean, z_var = np.array(z_mean), np.array(z_var)
    assert np.all(np.abs(z_mean) < 5), z_mean
    assert np.all(np.abs(z_var) < 5), z_var
    # and the aggregate is unbiased: the mean of 64 z-scores has SE 1/8
    assert abs(z_var.mean()) < 5 / 8 and abs(z_mean.mean()) < 5 / 8


def test_resynthesis_from_stored_seed_is_exact(blurred):
    with h5py.File(blurred, "r") as f:
        noisy = f["noisy"][:]
    for i in (0, 5, 11):
        assert np.array_equal(resynthesize(blurred, i), noisy[i])


def test_uint16_storage_halves_size_and_resynthesizes(tmp_path):
    a = generate_dataset(tmp_path / "f.h5", pairs=6, seed=5, **SMALL)
    b = generate_dataset(tmp_path / "u.h5", pairs=6, seed=5, storage="uint16", **SMALL)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert fb["noisy"].dtype == np.uint16 and fb["clean"].dtype == np.uint16
        assert fb.attrs["unit"] == "dn"
        assert fb["noisy"].id.get_storage_size() * 2 == fa["noisy"].id.get_storage_size()
        # same parameters, and clean agrees to the DN rounding
        pa, pb = fa["params"][:], fb["params"][:]
        same = [n for n in PARAMS_DTYPE.names if n != "crc32"]  # the checksum covers the stored bytes
        for name in same:  # field by field: NaN (no hot-pixel dark current, no ISP) equals NaN
            np.testing.assert_array_equal(pa[name], pb[name])
        assert (pa["crc32"] != pb["crc32"]).all()
        black = fb.attrs["channel_black_level_dn"][:, None, None]
        span = fb.attrs["channel_white_level_dn"][:, None, None] - black
        assert np.max(np.abs((fb["clean"][:] - black) / span - fa["clean"][:])) <= 0.5 / span.min() + 1e-7
        noisy = fb["noisy"][2]
    assert np.array_equal(resynthesize(b, 2), noisy)


# ------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------
def test_same_bytes_whatever_workers(tmp_path):
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    a = generate_dataset(tmp_path / "w1" / "d.h5", pairs=10, seed=7, workers=1, blur="defocus:1-2", **SMALL)
    b = generate_dataset(tmp_path / "w2" / "d.h5", pairs=10, seed=7, workers=2, blur="defocus:1-2", **SMALL)
    assert a.read_bytes() == b.read_bytes()


def test_shards_master_reads_as_single_file(tmp_path):
    single = generate_dataset(tmp_path / "one.h5", pairs=10, seed=9, blur="gaussian:1-2,p=0.5", **SMALL)
    master = generate_dataset(tmp_path / "many.h5", pairs=10, seed=9, shards=3, blur="gaussian:1-2,p=0.5", **SMALL)
    parts = shard_paths(master, 3)
    assert all(p.exists() for p in parts) and not any(tmp_path.glob("*.partial"))
    with h5py.File(master) as f:
        assert all(f[n].is_virtual for n in ("clean", "noisy", "params", "blur_kernels"))
        assert json.loads(f.attrs["shards"]) == [p.name for p in parts]
    _assert_same_content(single, master)
    with h5py.File(parts[1]) as f:  # each shard is a complete dataset of its own slice
        first, n = int(f.attrs["first_sample"]), f["params"].shape[0]
        assert np.array_equal(f["params"]["index"], np.arange(first, first + n))


def test_compression_changes_bytes_not_content(tmp_path):
    a = generate_dataset(tmp_path / "a.h5", pairs=5, seed=1, **SMALL)
    b = generate_dataset(tmp_path / "b.h5", pairs=5, seed=1, compression="lzf", **SMALL)
    with h5py.File(b) as f:
        assert f["noisy"].compression == "lzf"
    _assert_same_content(a, b)


def test_different_seeds_differ(tmp_path):
    a = generate_dataset(tmp_path / "a.h5", pairs=3, seed=1, **SMALL)
    b = generate_dataset(tmp_path / "b.h5", pairs=3, seed=2, **SMALL)
    assert not np.array_equal(_datasets(a)["noisy"], _datasets(b)["noisy"])


# ------------------------------------------------------------------------------------------------
# Crash safety and resume
# ------------------------------------------------------------------------------------------------
CLI_ARGS = ["--card", CARD, "--output", "ds.h5", "--pairs", "400", "--patch", "32", "--iso", "800:3200",
            "--seed", "4", "--checkpoint-every", "10", "--no-progress"]


def _cli(cwd, *extra, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "noisesim", "-v", "generate", *CLI_ARGS, *extra], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_resume_after_kill_gives_identical_file(tmp_path):
    ref_dir, crash_dir = tmp_path / "ref", tmp_path / "crash"
    ref_dir.mkdir()
    crash_dir.mkdir()
    proc = _cli(crash_dir)
    seen = None
    for line in proc.stderr:
        if "checkpoint:" in line:
            seen = int(line.split("checkpoint:")[1].split("/")[0])
            if seen >= 50:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (crash_dir / "ds.h5").exists(), "no file under the final name after a crash"
    assert (crash_dir / "ds.h5.partial").exists()
    done = np.frombuffer((crash_dir / "ds.h5.partial.progress").read_bytes(), np.uint8).sum()
    assert 50 <= done < 400

    # a plain rerun refuses to clobber the partial run
    again = _cli(crash_dir)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2 and "--resume" in err

    ref = _cli(ref_dir)
    resumed = _cli(crash_dir, "--resume")
    for p in (ref, resumed):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert "resuming" in err
    assert not (crash_dir / "ds.h5.partial").exists() and not (crash_dir / "ds.h5.partial.progress").exists()
    assert (crash_dir / "ds.h5").read_bytes() == (ref_dir / "ds.h5").read_bytes()


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "d.h5"
    with pytest.raises(KeyboardInterrupt):
        _interrupted(out)
    assert (tmp_path / "d.h5.partial").exists() and not out.exists()
    with pytest.raises(DatasetError, match="different settings.*seed"):
        generate_dataset(out, pairs=20, seed=99, resume=True, **SMALL)
    # with the original settings the run completes to the same content as an uninterrupted one
    generate_dataset(out, pairs=20, seed=1, resume=True, **SMALL)
    ref = generate_dataset(tmp_path / "ref.h5", pairs=20, seed=1, **SMALL)
    _assert_same_content(out, ref)


def test_sharded_run_resumes_to_same_content(tmp_path):
    out = tmp_path / "m.h5"
    with pytest.raises(KeyboardInterrupt):
        _interrupted(out, shards=3)
    assert not out.exists() and any(tmp_path.glob("*.partial"))
    generate_dataset(out, pairs=20, seed=1, shards=3, resume=True, **SMALL)
    assert not any(tmp_path.glob("*.partial*"))
    _assert_same_content(out, generate_dataset(tmp_path / "ref.h5", pairs=20, seed=1, **SMALL))


def _interrupted(out, **kw):
    """Run generation and raise KeyboardInterrupt from inside the loop after a few samples."""
    from noisesim.dataset.shards import ShardWriter

    real = ShardWriter.write
    calls = {"n": 0}

    def write(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    ShardWriter.write = write
    try:
        generate_dataset(out, pairs=20, seed=1, checkpoint_every=3, **kw, **SMALL)
    finally:
        ShardWriter.write = real


def test_existing_output_refused_without_force_and_replaced_with_it(tmp_path):
    out = generate_dataset(tmp_path / "d.h5", pairs=2, seed=1, **SMALL)
    before = out.read_bytes()
    with pytest.raises(DatasetError, match="already exists.*--force"):
        generate_dataset(out, pairs=2, seed=2, **SMALL)
    assert out.read_bytes() == before
    generate_dataset(out, pairs=2, seed=2, force=True, **SMALL)
    assert out.read_bytes() != before


def test_disk_full_gives_clear_error_and_no_final_file(tmp_path):
    """A tiny file-size quota (RLIMIT_FSIZE, SIGXFSZ ignored so writes fail with EFBIG)."""

    def quota():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["--card", CARD, "--output", "d.h5", "--pairs", "200", "--patch", "32", "--no-progress"]
    p = subprocess.run([sys.executable, "-m", "noisesim", "generate", *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, preexec_fn=quota, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "d.h5" in p.stderr
    assert "disk full" in p.stderr or "too large" in p.stderr.lower()
    assert not (tmp_path / "d.h5").exists()


# ------------------------------------------------------------------------------------------------
# Bad input: clear errors, nothing written
# ------------------------------------------------------------------------------------------------
def _nothing_written(d: Path) -> bool:
    return not any(p.suffix in (".h5", ".partial") for p in d.iterdir())


def test_empty_source_folder(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(NoiseSimError, match="src"):
        generate_dataset(tmp_path / "d.h5", pairs=2, **{**SMALL, "source": tmp_path / "src"})
    assert _nothing_written(tmp_path)


def test_images_smaller_than_patch(tmp_path):
    import cv2

    src = tmp_path / "src"
    src.mkdir()
    for k in range(2):
        cv2.imwrite(str(src / f"tiny{k}.png"), np.full((20, 24, 3), 100, np.uint8))
    with pytest.raises(NoiseSimError, match="smaller|patch"):
        generate_dataset(tmp_path / "d.h5", pairs=2, **{**SMALL, "source": src})
    assert _nothing_written(tmp_path)


def test_image_folder_source_records_isp(tmp_path):
    import cv2

    src = tmp_path / "src"
    src.mkdir()
    g = np.random.default_rng(0)
    for k in range(3):
        cv2.imwrite(str(src / f"img{k}.png"), g.integers(0, 255, (80, 96, 3), dtype=np.uint8))
    out = generate_dataset(tmp_path / "d.h5", pairs=6, **{**SMALL, "source": src})
    with h5py.File(out) as f:
        rec = f["params"][:]
    assert set(rec["source_index"]) <= {0, 1, 2}
    assert np.all(np.isfinite(rec["isp_rgb_gain"])) and np.all(rec["isp_red_gain"] > 1)


def test_unknown_card(tmp_path):
    with pytest.raises(UnknownCardError, match="NoSuchCamera"):
        generate_dataset(tmp_path / "d.h5", pairs=2, **{**SMALL, "card": "NoSuchCamera"})
    assert _nothing_written(tmp_path)


def test_missing_output_directory(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        generate_dataset(tmp_path / "nope" / "d.h5", pairs=2, **SMALL)
    assert not (tmp_path / "nope").exists()


def test_iso_range_on_card_without_iso_table(tmp_path):
    with pytest.raises(UnknownISOError, match="--gain-k"):
        generate_dataset(tmp_path / "d.h5", pairs=2, **{**SMALL, "card": "CanonEOS70D"})
    out = generate_dataset(tmp_path / "d.h5", pairs=2, **{**SMALL, "card": "CanonEOS70D", "iso": None})
    with h5py.File(out) as f:
        assert np.all(np.isnan(f["params"]["iso"]))
    assert _nothing_written(tmp_path) is False


def test_iso_outside_card_range(tmp_path):
    with pytest.raises(UnknownISOError):
        generate_dataset(tmp_path / "d.h5", pairs=2, **{**SMALL, "iso": (800, 51200)})  # the card's table ends at 25600
    assert _nothing_written(tmp_path)


def test_cli_errors_are_one_line(tmp_path):
    from noisesim.cli import main

    assert main(["generate", "--card", "NoSuchCamera", "--output", str(tmp_path / "d.h5"), "--pairs", "2"]) == 2
    assert main(["generate", "--card", CARD, "--output", str(tmp_path / "x" / "d.h5"), "--pairs", "2"]) == 2
    assert main(["generate", "--card", CARD, "--output", str(tmp_path / "d.h5"), "--pairs", "2", "--ratio", "0.5:2"]) == 2
    assert _nothing_written(tmp_path)


def test_unguarded_script_with_workers_gets_a_clear_error(tmp_path):
    """Spawned workers re-run an unguarded main script; the error must say what to do."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from noisesim.dataset import generate_dataset\n"
        f"generate_dataset({str(tmp_path / 'd.h5')!r}, card='SonyA7S2', pairs=4, patch=32, workers=2, progress=False)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0
    assert "__main__" in proc.stderr and "disk full" not in proc.stderr
    assert not (tmp_path / "d.h5").exists()
