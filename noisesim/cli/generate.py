"""``noisesim generate``: synthesize a paired (noisy, clean) raw HDF5 dataset (thin shell over
:func:`noisesim.dataset.generate_dataset`)."""

from __future__ import annotations

import argparse
import shlex
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "generate",
        help="synthesize paired (noisy, clean) raw training data into HDF5",
        description=(
            "Synthesize N (noisy, clean) packed raw patch pairs from clean images and a camera card. "
            "Written to OUTPUT.partial and renamed when complete; see noisesim.dataset for the layout."
        ),
    )
    p.add_argument("--card", required=True, help="shipped card name (noisesim cards) or path to a card .toml")
    p.add_argument("--source", default="builtin",
                   help="folder of sRGB images or long-exposure raw files, or 'builtin' (procedural dead leaves; default)")
    p.add_argument("--output", "-o", required=True, help="output .h5 file (its directory must exist)")
    p.add_argument("--pairs", "-n", type=int, required=True, help="number of pairs N")
    p.add_argument("--patch", type=int, default=256, help="mosaic patch side in px (stored packed, C × patch/p × patch/p); default 256")
    p.add_argument("--iso", default=None,
                   help="ISO range LOW:HIGH drawn log-uniformly, or one ISO (needs the card's ISO table); "
                        "default: K over the card's whole range")
    p.add_argument("--gain-k", default=None, metavar="KMIN:KMAX",
                   help="system-gain range in DN/e- drawn log-uniformly (alternative to --iso, for cards without an ISO table)")
    p.add_argument("--ratio", default="100:300",
                   help="exposure ratio: LOW:HIGH log-uniform, one value, or a list 100,250,300 (default 100:300)")
    p.add_argument("--blur", default=None, help="blur spec, e.g. 'gaussian:0.5-2,motion:3-9,defocus:1-3,file:k.npy,p=0.5'")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--workers", "-j", type=int, default=1, help="worker processes (content does not depend on it)")
    p.add_argument("--shards", type=int, default=1, help="shard files + a virtual-dataset master at OUTPUT (default 1)")
    p.add_argument("--storage", choices=("float32", "uint16"), default="float32",
                   help="float32 normalized (default) or uint16 raw DN (half the size)")
    p.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none",
                   help="HDF5 compression of clean/noisy (default none: noise does not compress)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output / discard a partial run")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUTPUT.partial")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint-every", type=int, default=64, help=argparse.SUPPRESS)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..dataset import generate_dataset

    command = "noisesim " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and sys.argv[0] else None
    out = generate_dataset(
        args.output,
        card=args.card,
        source=args.source,
        pairs=args.pairs,
        patch=args.patch,
        iso=args.iso,
        gain_k=args.gain_k,
        ratio=args.ratio,
        blur=args.blur,
        seed=args.seed,
        workers=args.workers,
        shards=args.shards,
        storage=args.storage,
        compression=None if args.compression == "none" else args.compression,
        force=args.force,
        resume=args.resume,
        progress=not args.no_progress,
        command=_strip_resume(command),
        checkpoint_every=args.checkpoint_every,
    )
    print(out)
    return 0


def _strip_resume(command: str | None) -> str | None:
    """The recorded command is that of the original run: a resumed run must write the same bytes."""
    if command is None:
        return None
    parts = shlex.split(command)
    return " ".join(shlex.quote(a) for a in parts if a not in ("--resume", "--force", "--no-progress"))
