"""Spawned workers and unguarded scripts (issue 11 item 4): a clear error in the parent, before any worker
re-runs the script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_script(tmp_path, text):
    script = tmp_path / "train.py"
    script.write_text(text)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_unguarded_loader_is_refused_in_the_parent(tmp_path):
    # refused before torch is even imported, so this runs without the extra too
    proc = run_script(tmp_path, (
        "import sys\n"
        "from noisesim.torch_data import make_loader\n"
        "loader = make_loader([1, 2, 3], batch_size=1, num_workers=2)\n"
    ))
    assert proc.returncode != 0
    assert 'if __name__ == "__main__":' in proc.stderr and "train.py, line 3" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_unguarded_script_with_loader_workers_gets_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    # the newcomer's script: a dataset generated at top level, then a loader with workers. Spawned workers
    # re-ran generate_dataset and died on the output's lock (BlockingIOError … unable to lock file).
    proc = run_script(tmp_path, (
        "from noisesim.dataset import generate_dataset\n"
        "from noisesim.torch_data import PairedRawDataset, make_loader\n"
        "generate_dataset('train.h5', card='SonyA7S2', pairs=2, patch=32, progress=False)\n"
        "loader = make_loader(PairedRawDataset('train.h5'), batch_size=2, num_workers=1)\n"
        "batch = next(iter(loader))\n"
    ))
    assert proc.returncode != 0
    err = proc.stderr
    assert 'if __name__ == "__main__":' in err and "train.py, line 4" in err and "make_loader(num_workers > 0)" in err, err
    assert "BlockingIOError" not in err and "lock" not in err


@pytest.mark.slow
def test_guarded_script_and_calls_from_functions(tmp_path):
    pytest.importorskip("torch")
    guarded = (
        "from noisesim.torch_data import PairedRawDataset, make_loader\n"
        "def build():\n"
        "    return make_loader([1, 2, 3], batch_size=1, num_workers=1)\n"
        "if __name__ == '__main__':\n"
        "    loader = build()\n"
        "    print('ok', type(loader).__name__)\n"
    )
    proc = run_script(tmp_path, guarded)
    assert proc.returncode == 0 and "ok DataLoader" in proc.stdout, proc.stderr
    # the same function called from the unguarded top level is caught at the top-level call's line
    proc = run_script(tmp_path, guarded.replace("if __name__ == '__main__':\n    loader = build()", "loader = build()\nif True:"))
    assert proc.returncode != 0 and "train.py, line 4" in proc.stderr, proc.stderr
    # no workers, or fork (which does not re-import the script): nothing to refuse
    proc = run_script(tmp_path, (
        "from noisesim.torch_data import make_loader\n"
        "make_loader([1, 2], num_workers=0)\n"
        "make_loader([1, 2], num_workers=1, multiprocessing_context='fork', persistent_workers=False)\n"
        "print('ok')\n"
    ))
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_unguarded_generate_with_workers_is_refused_before_anything_starts(tmp_path):
    proc = run_script(tmp_path, (
        "from noisesim.dataset import generate_dataset\n"
        "generate_dataset('d.h5', card='SonyA7S2', pairs=4, patch=32, workers=2, progress=False)\n"
    ))
    assert proc.returncode != 0
    assert "train.py, line 2" in proc.stderr and 'if __name__ == "__main__":' in proc.stderr
    assert not list(tmp_path.glob("d.h5*"))


def test_detection_without_a_script_file():
    from noisesim.spawnguard import unguarded_main_call

    # under pytest the main module is pytest's own guarded entry point (or has no file): nothing to refuse
    assert unguarded_main_call() is None


def test_package_main_is_not_refused(tmp_path):
    # `python -m noisesim generate --workers 2`: spawn does not re-run a package's __main__
    proc = subprocess.run([sys.executable, "-m", "noisesim", "generate", "--card", "SonyA7S2", "--pairs", "2",
                           "--patch", "32", "--workers", "2", "--no-progress", "--output", str(tmp_path / "d.h5")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
