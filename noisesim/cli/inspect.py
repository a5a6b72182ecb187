"""``noisesim inspect``: summary of a generated dataset and an optional PNG contact sheet."""

from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["API_OPTIONS", "add_parser", "run"]

log = logging.getLogger("noisesim.inspect")

# API parameter → option, for error messages (noisesim.cli.cli_message)
API_OPTIONS = {"n": "--n", "card": "--card"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``inspect`` sub-command and its options on ``sub`` (argparse sub-parsers).

    Parameters
    ----------
    subparsers : argparse sub-parsers action
        From ``ArgumentParser.add_subparsers``.

    Returns
    -------
    argparse.ArgumentParser
        The sub-command's parser.
    """
    p = subparsers.add_parser(
        "inspect",
        help="summarize a generated dataset (layout, counts, parameter ranges, card) and draw a contact sheet",
        description="Print the layout, counts, parameter ranges, card and attributes of a noisesim HDF5 dataset.",
    )
    p.add_argument("dataset", metavar="DATASET.h5", help="HDF5 file written by 'noisesim generate' (single file or shard master)")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a PNG of pairs (noisy × ratio | clean) via the forward ISP, each row labelled with its "
                        "index, ISO, ratio and K, the columns titled")
    p.add_argument("--n", type=int, default=8, help="pairs on the contact sheet (a count)")
    p.add_argument("--card", nargs="?", const=True, default=False, metavar="NAME|PATH",
                   help="also print the card text stored in the file (a dataset carries its own card, so none is "
                        "needed to read it); with a card NAME or PATH, also say whether the stored card is that one")
    p.add_argument("--verify", action="store_true",
                   help="recompute every sample's CRC-32 and compare it with the stored one (reads the whole file); "
                        "exit status 2 if any sample is damaged")
    p.set_defaults(run=run, api_options=API_OPTIONS)
    return p


def run(args) -> int:
    """Run ``noisesim inspect`` with parsed ``args``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of the sub-command.

    Returns
    -------
    int
        0 ok, 1 a failed check, 2 bad input.
    """
    from ..dataset import contact_sheet, format_summary, inspect_dataset
    from ..errors import ParameterError

    if args.contact_sheet and args.n < 1:
        raise ParameterError(f"--n must be >= 1 (pairs on the contact sheet), got {args.n}")
    info = inspect_dataset(args.dataset)
    log.info("%s: %.1f MB on disk (this file; shards are counted in the summary)", args.dataset,
             os.path.getsize(args.dataset) / 1e6)
    print(format_summary(info))
    if args.card:
        print("card text:")
        print(info["card_text"])
    if isinstance(args.card, str):
        from ..card import load_card, parse_card

        other = load_card(args.card)
        stored = parse_card(info["card_text"], f"{args.dataset}: stored card") if info["card_text"] else None
        if stored is not None and stored == other:
            print(f"stored card: the same as {other.name} ({other.source_path})")
        else:
            name = stored.name if stored is not None else "none"
            print(f"stored card: {name}, which differs from {other.name} ({other.source_path}); the dataset was "
                  "generated with the stored one")
    if args.contact_sheet:
        out = contact_sheet(args.dataset, args.contact_sheet, n=args.n)
        print(f"contact sheet: {out}")
    if args.verify:
        from ..dataset import verify_dataset
        from ..errors import DatasetError

        bad = verify_dataset(args.dataset, progress=sys.stderr.isatty())
        if bad:
            shown = ", ".join(str(i) for i in bad[:20]) + (", …" if len(bad) > 20 else "")
            raise DatasetError(f"{args.dataset}: {len(bad)} of {info['n_pairs']} samples fail their checksum "
                               f"(damaged on storage): indices {shown}")
        print(f"verify: all {info['n_pairs']} samples match their checksums")
    return 0
