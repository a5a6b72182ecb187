"""``noisesim validate CARD CAPTURE_DIR``: KL fidelity of a card against real dark frames (docs/calibration.md)."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "validate",
        help="compare a card's simulated darks with real dark frames (KL divergence table)",
        description="For each ISO the card tables, compare the integer-DN histograms of real dark frames from "
        "CAPTURE_DIR (or a manifest) with frames synthesized from the card: forward KL(real‖synthetic) and "
        "symmetric KL per read-noise model, averaged over channels and frames.",
    )
    p.add_argument("card", metavar="CARD")
    p.add_argument("capture", metavar="CAPTURE_DIR")
    p.add_argument("--max-frames", type=int, default=4, help="dark frames compared per ISO (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args) -> int:
    from tqdm import tqdm

    from noisesim.calibration.fidelity import format_table, validate
    from noisesim.card import load_card
    from noisesim.errors import CalibrationError

    card = load_card(args.card)
    rows = validate(card, args.capture, max_frames_per_iso=args.max_frames, rng=args.seed,
                    progress=lambda it: tqdm(it, desc="darks", unit="frame", leave=False, file=sys.stderr, disable=None))
    if not rows:
        raise CalibrationError(f"{args.capture}: no dark frames at an ISO of the card ({', '.join(f'{i:g}' for i in card.isos)})")
    print(format_table(rows))
    return 0
