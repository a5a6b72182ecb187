"""``noisesim darks bank DARKS --card CARD --output bank.h5``: a bank of real dark frames for dark-frame noise."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("darks", help="dark-frame banks for dark-frame noise",
                              description="Store a sensor's real dark frames for dark-frame noise "
                                          "(shot noise from K plus a real dark frame of the same ISO).")
    sub = p.add_subparsers(dest="darks_command", metavar="ACTION", required=True)
    b = sub.add_parser("bank", help="build a bank from a folder of dark frames",
                       description="Read every dark frame under DARKS (raw files with EXIF ISO and exposure "
                                   "time, or a CSV/TOML manifest of .npy/.tiff frames) and store them per ISO and "
                                   "exposure as chunked uint16 HDF5 with black level, CFA, source and SHA-256.")
    b.add_argument("darks", metavar="DARKS", help="folder of dark frames (or a capture with a darks/ folder), or a manifest")
    b.add_argument("--card", required=True, help="the card of this camera (name or .toml): CFA and white level are checked against it")
    b.add_argument("--output", "-o", required=True, metavar="BANK", help="bank file to write (.h5)")
    b.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from noisesim.calibration.capture import scan_capture  # lazy: simulation never imports calibration
    from noisesim.card import load_card
    from noisesim.darkbank import DarkFrame, build_dark_bank
    from noisesim.errors import InputFileError

    card = load_card(args.card)
    out = Path(args.output)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise InputFileError(f"{out}: the bank file must end in .h5")
    capture = scan_capture(args.darks)
    darks = capture.by_kind("dark")
    if not darks:
        raise InputFileError(f"{args.darks}: no dark frames found")
    for fr in darks:
        if fr.cfa != card.sensor.cfa.pattern:
            raise InputFileError(f"{fr.path}: CFA {fr.cfa} differs from card {card.camera.name}'s {card.sensor.cfa.pattern}")
        if float(fr.white_level_dn) > card.sensor.max_dn:
            raise InputFileError(f"{fr.path}: white level {fr.white_level_dn:g} DN exceeds card {card.camera.name}'s "
                                 f"{card.sensor.bit_depth}-bit range")

    def frames():
        for fr in tqdm(darks, desc="darks", unit="frame", leave=False, file=sys.stderr, disable=None):
            yield DarkFrame(fr.load(), fr.iso, fr.exposure_s, fr.black_level_dn, Path(fr.path).name)

    build_dark_bank(out, frames(), cfa=card.sensor.cfa, white_level_dn=max(card.sensor.white_level_dn),
                    bit_depth=card.sensor.bit_depth, camera=card.camera.name)
    isos = sorted({fr.iso for fr in darks})
    print(f"wrote {out}: {len(darks)} dark frames at ISO {', '.join(f'{i:g}' for i in isos)}")
    return 0
