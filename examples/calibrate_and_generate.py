"""From frames to training data: calibrate a card from dark and flat frames, then generate pairs with it.

No camera needed: a synthetic capture (DNG files in ``darks/`` and ``flats/`` folders, as a user would
lay them out) is simulated from known parameters, calibrated with :func:`noisesim.calibration.calibrate`
(docs/calibration.md), compared with the truth, saved as a card, and used by
:func:`noisesim.dataset.generate_dataset` exactly like a shipped card.

With real captures, replace step 1 by your own folder::

    noisesim calibrate my_capture/ --camera "Maker Model" --output my.toml
    noisesim generate --card my.toml --source builtin --output pairs.h5 --pairs 1000 --iso 800:3200
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from noisesim.calibration import calibrate
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
from noisesim.card import load_card
from noisesim.dataset import format_summary, generate_dataset, inspect_dataset
from noisesim.params import NoiseParams, Sensor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--size", type=int, default=256, help="frame side in pixels (the test suite runs 128)")
    ap.add_argument("--pairs", type=int, default=32, help="training pairs generated with the card")
    args = ap.parse_args()
    work = Path(args.out_dir or tempfile.mkdtemp(prefix="noisesim-calib-"))

    # 1. A synthetic capture from known parameters (values of the order of ELD's SonyA7S2).
    sensor = Sensor(cfa="RGGB", bit_depth=14, black_level_dn=512, white_level_dn=16383)
    truth = {
        800: NoiseParams(gain_k_dn_per_e=0.77, read_model="tukey", read_sigma_dn=3.4, tukey_lambda=-0.03,
                         tukey_scale_dn=1.8, row_sigma_dn=0.5, iso=800),
        1600: NoiseParams(gain_k_dn_per_e=1.53, read_model="tukey", read_sigma_dn=6.3, tukey_lambda=-0.044,
                          tukey_scale_dn=3.23, row_sigma_dn=0.99, iso=1600),
        3200: NoiseParams(gain_k_dn_per_e=3.06, read_model="tukey", read_sigma_dn=8.0, tukey_lambda=-0.035,
                          tukey_scale_dn=4.1, row_sigma_dn=1.2, iso=3200),
    }
    spec = SyntheticSpec(n_darks=10, flat_levels=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 1.1))
    frames = synthetic_frames(truth, sensor, (args.size, args.size), spec, rng=7)
    capture = write_capture_dng(frames, work / "capture", make="Example", model="Synthetic")
    print(f"1. wrote {len(frames)} synthetic DNG frames to {capture}")

    # 2. Calibrate and compare with the truth.
    result = calibrate(capture, camera="Example Synthetic", fidelity=False)
    card_path = result.save(work / "example.toml")
    card = load_card(card_path)
    print(f"2. calibrated card written to {card_path}")
    print("   ISO   K true   K est    read σ true  read σ est")
    for e in card.iso_table:
        t = truth[int(e.iso)]
        print(f"   {e.iso:<5g} {t.gain_k_dn_per_e:<8.3f} {e.gain_k_dn_per_e:<8.3f} {t.read_sigma_dn:<12.2f} {e.read_sigma_dn:.2f}")

    # 3. Generate training pairs with the new card, like any shipped card.
    out = generate_dataset(work / "pairs.h5", card=card_path, source="builtin", pairs=args.pairs, patch=min(128, args.size),
                           iso=(800, 3200), ratio=(100, 300), seed=0, force=True)
    print("3. generated a dataset with the calibrated card:")
    print(format_summary(inspect_dataset(out)))


if __name__ == "__main__":
    main()
