"""``noisesim inspect``: summary of a generated dataset and an optional PNG contact sheet."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "inspect",
        help="summarize a generated dataset (layout, counts, parameter ranges, card) and draw a contact sheet",
        description="Print the layout, counts, parameter ranges, card and attributes of a noisesim HDF5 dataset.",
    )
    p.add_argument("dataset", help="HDF5 file written by 'noisesim generate' (single file or shard master)")
    p.add_argument("--contact-sheet", metavar="PNG", help="write a PNG of pairs (noisy × ratio | clean) via the forward ISP")
    p.add_argument("--n", type=int, default=8, help="pairs on the contact sheet (default 8)")
    p.add_argument("--card", action="store_true", help="also print the full card text")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..dataset import contact_sheet, format_summary, inspect_dataset

    info = inspect_dataset(args.dataset)
    print(format_summary(info))
    if args.card:
        print("card text:")
        print(info["card_text"])
    if args.contact_sheet:
        out = contact_sheet(args.dataset, args.contact_sheet, n=args.n)
        print(f"contact sheet: {out}")
    return 0
