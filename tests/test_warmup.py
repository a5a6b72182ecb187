"""The first run explains its wait (issue 11 item 8)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from noisesim.warmup import MESSAGE, cache_is_cold, warm_up


def test_warm_cache_says_nothing():
    warm_up()  # compiled in this process (or loaded from the worktree's cache)
    said = []
    assert warm_up(announce=said.append) is False and said == []
    assert cache_is_cold() is False


@pytest.mark.slow
def test_cold_cache_announces_compiling_once(tmp_path):
    np.save(tmp_path / "clean.npy", np.full((16, 16), 0.2, np.float32))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}  # a fresh, empty cache
    cmd = [sys.executable, "-m", "noisesim", "simulate", "--card", "SonyA7S2", "--iso", "800",
           "--input", str(tmp_path / "clean.npy"), "--output", str(tmp_path / "n.npy")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr
    assert "compiling noise kernels (first run only)" in first.stderr
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0 and MESSAGE not in second.stderr, second.stderr


def test_slow_cache_load_on_a_busy_machine_says_nothing(monkeypatch):
    # The message once also came when loading the cached kernels took longer than 2 s (a loaded CI
    # machine): it said "compiling" when nothing was compiled. Only a real compile (a cache miss) speaks.
    import time

    import noisesim.warmup as warmup

    warm_up()
    real = warmup._tiny_frame
    monkeypatch.setattr(warmup, "SLOW_S", 0.05, raising=False)  # the old heuristic's threshold, made short
    monkeypatch.setattr(warmup, "_tiny_frame", lambda *run: (time.sleep(0.3), real(*run)))
    said = []
    assert warm_up(announce=said.append) is False and said == []


def _spy_read_kinds(monkeypatch) -> list[int]:
    """Record the read-noise kind of every row-kernel call from now on (each kind is a compiled kernel of
    its own, :data:`noisesim.kernels.ROWS_KERNELS`)."""
    from noisesim import kernels

    called = []
    for kind, kernel in list(kernels.ROWS_KERNELS.items()):
        def spy(*args, _kind=kind, _kernel=kernel):
            called.append(_kind)
            return _kernel(*args)
        monkeypatch.setitem(kernels.ROWS_KERNELS, kind, spy)
    return called


@pytest.mark.parametrize("disable, kind", [("", "READ_TUKEY"), ("read", "READ_NONE")])
def test_simulate_cli_warms_up_only_the_kernel_its_run_takes(tmp_path, monkeypatch, disable, kind):
    # The CLI's warm-up compiled both the Tukey and the Gaussian kernel whatever the card: a Tukey card's
    # first run compiled a whole kernel it never used (10.3 → 7.2 s CPU for a 1 Mpix first run), and a
    # run without read noise compiled two kernels and then a third.
    from noisesim import kernels
    from noisesim.cli import main

    np.save(tmp_path / "clean.npy", np.full((16, 16), 0.2, np.float32))
    called = _spy_read_kinds(monkeypatch)
    argv = ["simulate", "--card", "SonyA7S2", "--iso", "1600", "--input", str(tmp_path / "clean.npy"),
            "--output", str(tmp_path / "n.npy")] + (["--disable", disable] if disable else [])
    assert main(argv) == 0
    assert set(called) == {getattr(kernels, kind)} and len(called) == 2  # the warm-up, then the frame


def test_warm_up_without_a_run_takes_both_read_models(monkeypatch):
    from noisesim import kernels

    called = _spy_read_kinds(monkeypatch)
    warm_up()
    assert sorted(set(called)) == sorted({kernels.READ_TUKEY, kernels.READ_GAUSSIAN})


def test_warm_up_params_need_the_sensor():
    from noisesim import NoiseParams

    with pytest.raises(ValueError, match="sensor"):
        warm_up(params=NoiseParams(gain_k_dn_per_e=1.0))


def test_warm_up_on_maps_smaller_than_its_corner():
    # The run's warm-up corner (4 CFA periods) must stay inside the run's maps: a sensor whose maps (and
    # frames) are 6×6 still warms up, on a 6×6 corner, instead of failing before the first frame.
    from noisesim import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor

    maps = FixedPatternMaps(prnu=np.full((6, 6), 0.01, np.float32), read_sigma_scale=np.ones((6, 6), np.float32))
    params = NoiseParams(gain_k_dn_per_e=1.0, read_sigma_dn=1.0)
    warm_up(params=params, sensor=Sensor("RGGB", bit_depth=12, black_level_dn=64),
            components=NoiseComponents(per_pixel_read=True), maps=maps)


def test_a_command_line_start_does_not_import_scipy_stats():
    # Every command-line start imported scipy.stats (~0.6 s of a warm `noisesim simulate` start: 2.04 →
    # 1.44 s CPU) through the validate sub-command's defaults, for one quantile of the calibration.
    code = ("import contextlib, io, sys\n"
            "from noisesim.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main(['simulate', '--help'])  # builds every sub-command's parser\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('scipy.stats' in sys.modules)")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing is compiled without JIT")
def test_the_compiled_loops_allocate_nothing():
    """Every compiled loop of simulation and generation gets its arrays from Python (``_nrt=False``: numba then
    refuses to compile an allocation). The unprocessing loops once made their scratch rows with ``np.empty``,
    which made a fresh environment compile numba's allocator and reference counting with them (~0.7 s of the
    first unprocessing)."""
    from noisesim import isp, kernels, sources

    loops = [isp._unprocess_lut_numba, isp._unprocess_mosaic_lut_numba, sources._render_dead_leaves_numba,
             sources._fill_uncovered_numba, *kernels.ROWS_KERNELS.values()]
    for loop in loops:
        assert loop.targetoptions.get("_nrt") is False, loop.py_func.__qualname__
