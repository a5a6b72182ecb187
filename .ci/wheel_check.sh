#!/usr/bin/env bash
# Build the wheel, install it (not editable) into a fresh virtual environment with its dependencies, and,
# from a folder that has its own calibration/ directory, use every part of the installed package.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work/dist" "$repo"
wheel=$(ls "$work"/dist/noisesim-*.whl)
# Only the noisesim namespace may be installed.
python - "$wheel" <<'PY'
import sys, zipfile
tops = {n.split("/")[0] for n in zipfile.ZipFile(sys.argv[1]).namelist()}
tops = {t for t in tops if not t.endswith((".dist-info", ".data"))}
assert tops == {"noisesim"}, f"the wheel installs top-level names {sorted(tops)}; only 'noisesim' is allowed"
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert any(n.startswith("noisesim/data_cards/") and n.endswith(".toml") for n in names), "no shipped cards in the wheel"
assert not any("build_eld_cards" in n for n in names), "the card build script must not be installed"
PY
python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"

# A user's folder with its own calibration/ package: it must not shadow noisesim.calibration.
mkdir -p "$work/user/calibration"
echo 'raise ImportError("the user folder calibration/ was imported instead of noisesim.calibration")' \
  > "$work/user/calibration/__init__.py"
cd "$work/user"
export PATH="$work/venv/bin:$PATH"
noisesim cards
python - <<'PY'
import numpy as np
import h5py
import noisesim as ns
from noisesim.calibration import calibrate
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames

card = ns.load_card("SonyA7S2")
clean = np.full((64, 64), 0.2, np.float32)
params = ns.sample_params(card, iso=1600, rng=0)
noisy = ns.simulate(clean, params, card.sensor, ratio=10, rng=0)
assert noisy.shape == clean.shape and np.isfinite(noisy).all()

truth = {iso: ns.sample_params(card, iso=iso, rng=1) for iso in (800, 1600, 3200)}
frames = synthetic_frames(truth, card.sensor, (64, 64), SyntheticSpec(n_darks=8), rng=2)
result = calibrate(frames, "Sony ILCE-7SM2", fidelity=False)
print("calibrated:", result.card.camera.name, "ISOs", [e.iso for e in result.card.iso_table])

ns.generate_dataset(card="SonyA7S2", source="builtin", pairs=4, patch=64, output="ds.h5", seed=0, progress=False)
with h5py.File("ds.h5", "r") as f:
    assert f["noisy"].shape[0] == 4 and np.isfinite(f["noisy"][...]).all()
print("wheel install check: cards, simulate, calibrate and a dataset all work")
PY
# Every module of the installed package imports (a subpackage left out of the wheel fails here); the
# optional extras may be absent in this environment, nothing else may be.
python - <<'PY'
import importlib, pkgutil
import noisesim
for mod in pkgutil.walk_packages(noisesim.__path__, "noisesim."):
    try:
        importlib.import_module(mod.name)
    except ImportError as exc:
        if not any(extra in str(exc) for extra in ("torch", "dask", "distributed")):
            raise
import noisesim.importers
print("wheel install check: every installed module imports")
PY
noisesim inspect ds.h5
