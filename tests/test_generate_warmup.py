"""``generate`` compiles every kernel its run uses before the progress bar, and says so only when it
compiles (issue 11 item 8): the dead-leaves, unprocessing and noise kernels used to compile after the bar
had started, skewing its ETA."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import pytest

from noisesim.warmup import announce_compiles

# Runs in a fresh interpreter: in the test process, earlier tests have already compiled or loaded every
# kernel. Prints the (dispatcher, signature) pairs first used after the sample loop started (must be none),
# those in use when it started, the number of real compiles and whether the message was printed.
PROBE = r"""
import json, sys
from numba.core import event
from numba.core.dispatcher import Dispatcher
import noisesim.dataset.shards as shards
from noisesim.dataset import generate_dataset

def compiled():
    out = set()
    for name, mod in list(sys.modules.items()):
        if name.startswith("noisesim"):
            for attr, obj in list(vars(mod).items()):
                if isinstance(obj, Dispatcher):
                    out |= {(f"{name}.{attr}", str(sig)) for sig in obj.signatures}
    return out

at_start = {}
real_produce = shards.produce
def produce(*args, **kwargs):  # called by the writer's loop once its progress bar exists
    at_start["set"] = compiled()
    return real_produce(*args, **kwargs)
shards.produce = produce

with event.install_recorder("numba:compile") as rec:
    generate_dataset(sys.argv[1], card="SonyA7S2", source="builtin", pairs=int(sys.argv[3]), patch=64, seed=1,
                     blur="gaussian:1-2,p=0.5", storage=sys.argv[2], progress=True)
after = compiled() - at_start["set"]
print(json.dumps({"late": sorted(map(list, after)), "start": sorted(k for k, _ in at_start["set"]),
                  "compiles": len(rec.buffer)}))
"""


def _run_probe(tmp_path, storage: str, pairs: int = 8) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / f"{storage}.h5"), storage, str(pairs)],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize("storage", ["float32", pytest.param("uint16", marks=pytest.mark.slow)])
def test_every_kernel_of_the_run_is_ready_before_the_first_sample(tmp_path, storage):
    # 8 pairs with p=0.5 blur: both the blurred and the unblurred clean path occur (seed 1)
    result, stderr = _run_probe(tmp_path, storage)
    assert result["late"] == [], f"compiled or loaded after the progress bar started: {result['late']}"
    started = set(result["start"])
    # the card's read model is Tukey-lambda: its row kernel (one is compiled per read-noise kind)
    assert {"noisesim.kernels.fused_noise_rows_tukey", "noisesim.sources._render_dead_leaves_numba"} <= started, started
    # the message appears exactly when numba really compiled something (not on a cache load)
    said = "compiling noise, dead-leaves and unprocessing kernels (first run only)" in stderr
    assert said == (result["compiles"] > 0), (result["compiles"], stderr)


def test_announce_compiles_only_on_a_real_compile():
    @numba.njit(cache=False)
    def twice(x):
        return 2 * x

    said: list[str] = []
    with announce_compiles(said.append, "compiling test kernels (first run only) …") as event:
        assert twice(3) == 6 and twice(4) == 8  # one compile, announced once
    assert said == ["compiling test kernels (first run only) …"] and event.is_set()
    with announce_compiles(said.append, "again") as event:
        assert twice(5) == 10  # already compiled: nothing to say
    assert said == ["compiling test kernels (first run only) …"] and not event.is_set()


@pytest.mark.slow
def test_cold_cache_generate_says_compiling_once(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}  # a fresh, empty cache
    cmd = [sys.executable, "-m", "noisesim", "generate", "--card", "SonyA7S2", "--pairs", "3", "--patch", "32",
           "--output", str(tmp_path / "d.h5"), "--force"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stderr
    message = "noisesim: compiling noise, dead-leaves and unprocessing kernels (first run only)"
    assert message in first.stderr
    # said before the bar's first line
    assert first.stderr.index(message) < first.stderr.index("generate:")
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert second.returncode == 0 and "first run only" not in second.stderr, second.stderr
