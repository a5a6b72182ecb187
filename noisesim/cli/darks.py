"""``noisesim darks bank DARKS --card CARD --output bank.h5``: a bank of real dark frames for dark-frame noise."""

from __future__ import annotations

import logging
import sys

from . import describe_card

__all__ = ["add_parser", "run"]

log = logging.getLogger("noisesim.darks")


def add_parser(subparsers) -> None:
    """Register the ``darks`` sub-command and its options on ``sub`` (argparse sub-parsers).

    Parameters
    ----------
    subparsers : argparse sub-parsers action
        From ``ArgumentParser.add_subparsers``.
    """
    p = subparsers.add_parser("darks", help="dark-frame banks for dark-frame noise",
                              description="Store a sensor's real dark frames for dark-frame noise "
                                          "(shot noise from K plus a real dark frame of the same ISO).")
    sub = p.add_subparsers(dest="darks_command", metavar="ACTION", required=True)
    b = sub.add_parser("bank", help="build a bank from a folder of dark frames",
                       description="Read every dark frame under DARKS (raw files with EXIF ISO and exposure "
                                   "time, or a CSV/TOML manifest of .npy/.tiff frames) and store them per ISO and "
                                   "exposure as chunked uint16 HDF5 with black level, CFA, source and SHA-256.")
    b.add_argument("darks", metavar="DARKS", help="folder of dark frames (or a capture with a darks/ folder), or a manifest")
    b.add_argument("--card", required=True, metavar="NAME|PATH", help="the card of this camera (name or .toml): CFA and white level are checked against it")
    b.add_argument("--output", "-o", required=True, metavar="BANK", help="bank file to write (.h5)")
    b.set_defaults(run=run)


def run(args) -> int:
    """Run ``noisesim darks`` with parsed ``args``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of the sub-command.

    Returns
    -------
    int
        0 ok, 1 a failed check, 2 bad input.
    """
    from tqdm import tqdm

    from noisesim.calibration.banks import bank_from_capture  # lazy: simulation never imports calibration
    from noisesim.card import load_card
    from noisesim.darkbank import DarkFrameBank

    card = load_card(args.card)
    log.info("%s", describe_card(card))
    out = bank_from_capture(args.darks, args.output, sensor=card.sensor, camera=card.camera.name,
                            progress=lambda it: tqdm(it, desc="darks", unit="frame", leave=False, file=sys.stderr, disable=None))
    bank = DarkFrameBank(out)
    log.info("%s: %.1f MB", out, out.stat().st_size / 1e6)
    print(f"wrote {out}: {len(bank)} dark frames at ISO {', '.join(f'{i:g}' for i in bank.isos)}")
    return 0
