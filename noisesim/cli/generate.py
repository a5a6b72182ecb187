"""``noisesim generate``: synthesize a paired (noisy, clean) raw HDF5 dataset (thin shell over
:func:`noisesim.dataset.generate_dataset`)."""

from __future__ import annotations

import argparse
import logging
import shlex

from . import seed_arg

__all__ = ["API_OPTIONS", "add_parser", "canonical_command", "run"]

# API parameter → option, for error messages (noisesim.cli.cli_message)
API_OPTIONS = {"gain_k_dn_per_e": "--gain-k", "gain_k": "--gain-k", "iso": "--iso", "ratio": "--ratio",
               "pairs": "--pairs", "patch": "--patch", "noise": "--noise", "bank": "--bank", "blur spec": "--blur",
               "seed": "--seed", "workers": "--workers", "shards": "--shards", "storage": "--storage",
               "compression": "--compression", "source": "--source", "scheduler": "--scheduler"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``generate`` sub-command and its options on ``sub`` (argparse sub-parsers).

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
        "generate",
        help="synthesize paired (noisy, clean) raw training data into HDF5",
        description=(
            "Synthesize N (noisy, clean) packed raw patch pairs from clean images and a camera card. "
            "Written to OUTPUT.partial and renamed when complete; docs/datasets.md describes the layout."
        ),
    )
    p.add_argument("--card", required=True, metavar="NAME|PATH", help="shipped card name (noisesim cards) or path to a card .toml")
    p.add_argument("--source", default="builtin", metavar="FOLDER|builtin",
                   help="folder of sRGB images or long-exposure raw files, or 'builtin' (procedural dead leaves; default)")
    p.add_argument("--output", "-o", required=True, metavar="OUTPUT.h5", help="output .h5 file (its directory must exist)")
    p.add_argument("--pairs", "-n", type=int, required=True, metavar="N", help="number of pairs N (a count)")
    p.add_argument("--patch", type=int, default=256, metavar="PX", help="mosaic patch side [px] (stored packed, C × patch/p × patch/p)")
    p.add_argument("--iso", default=None, metavar="LOW:HIGH|ISO",
                   help="ISO range LOW:HIGH drawn log-uniformly, or one ISO (ISO speed, no unit; needs the card's "
                        "ISO table); default: K over the card's whole range")
    p.add_argument("--gain-k", default=None, metavar="KMIN:KMAX",
                   help="system-gain range K [DN/e⁻] drawn log-uniformly (alternative to --iso, for cards without an "
                        "ISO table; default: --iso, or the card's whole K range)")
    p.add_argument("--ratio", default="100:300", metavar="LOW:HIGH|R|R1,R2,…",
                   help="exposure ratio (no unit): LOW:HIGH log-uniform, one value, or a list 100,250,300")
    p.add_argument("--blur", default=None, metavar="SPEC",
                   help="blur of the clean patches: kinds with a size range [px] (gaussian σ, anisotropic σ, defocus "
                        "radius, motion length) or a kernel file, and the probability p of blurring a pair, e.g. "
                        "'gaussian:0.5-2,motion:3-9,defocus:1-3,file:k.npy,p=0.5' (default: no blur)")
    p.add_argument("--seed", type=seed_arg, default=0, help="dataset seed, 0 … 2**64 − 1")
    p.add_argument("--workers", "-j", type=int, default=1, metavar="N",
                   help="worker processes, a count, or the LocalCluster's size with --scheduler local; refused with a "
                        "scheduler address or file (that cluster has its own workers); the content does not depend on it")
    p.add_argument("--scheduler", default=None, metavar="local|ADDRESS|FILE.json",
                   help="run one task per shard on a Dask cluster (extra noisesim[dask]): 'local' starts a LocalCluster of "
                        "--workers processes; tcp://host:8786 or a scheduler.json joins a running one (shards go to "
                        "storage all workers share); content identical to the run without it (default: none, "
                        "--workers local processes)")
    p.add_argument("--noise", choices=("parametric", "dark-frame"), default="parametric",
                   help="parametric: the card's noise model (default); dark-frame: shot noise from the card's K plus "
                        "real dark frames of the matching ISO from --bank")
    p.add_argument("--bank", default=None, metavar="BANK.h5",
                   help="dark-frame bank for --noise dark-frame, needed there (build one with 'noisesim darks bank')")
    p.add_argument("--shards", type=int, default=1, metavar="N", help="shard files (a count) + a virtual-dataset master at OUTPUT")
    p.add_argument("--storage", choices=("float32", "uint16"), default="float32",
                   help="float32 normalized (default) or uint16 raw DN incl. black level (half the size)")
    p.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none",
                   help="HDF5 compression of clean/noisy (default none: noise does not compress)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output / discard a partial run")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUTPUT.partial")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Also accepted after the command (``noisesim generate … -v``); SUPPRESS keeps a global -v intact.
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log progress details to stderr (same as noisesim -v generate …)")
    p.add_argument("--checkpoint-every", type=int, default=64, help=argparse.SUPPRESS)
    p.set_defaults(run=run, api_options=API_OPTIONS)
    return p


def run(args) -> int:
    """Run ``noisesim generate`` with parsed ``args``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of the sub-command.

    Returns
    -------
    int
        0 ok, 1 a failed check, 2 bad input.
    """
    from ..dataset import generate_dataset

    command = canonical_command(args)
    logging.getLogger("noisesim.generate").info("recorded command: %s", command)
    # generate_dataset compiles (first run: said on stderr) or loads every kernel the run uses before the
    # progress bar starts, so its ETA is not skewed
    out = generate_dataset(
        args.output,
        card=args.card,
        source=args.source,
        pairs=args.pairs,
        patch=args.patch,
        iso=args.iso,
        gain_k=args.gain_k,
        ratio=args.ratio,
        noise=args.noise,
        bank=args.bank,
        blur=args.blur,
        seed=args.seed,
        workers=args.workers,
        shards=args.shards,
        storage=args.storage,
        compression=None if args.compression == "none" else args.compression,
        force=args.force,
        resume=args.resume,
        progress=not args.no_progress,
        command=command,
        checkpoint_every=args.checkpoint_every,
        scheduler=args.scheduler,
    )
    print(out)
    return 0


def canonical_command(args) -> str:
    """The command recorded in the file, rebuilt from the parsed options in a fixed order.

    Flags that do not change the content (--resume, --force, --workers, --scheduler, progress) are left out, so an
    interrupted-and-resumed run, or one with another worker count, writes the same bytes.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``generate`` options.

    Returns
    -------
    str
    """
    parts = ["noisesim", "generate", "--card", args.card, "--source", args.source, "--output", args.output,
             "--pairs", str(args.pairs), "--patch", str(args.patch)]
    for flag, value in (("--iso", args.iso), ("--gain-k", args.gain_k), ("--ratio", args.ratio), ("--blur", args.blur)):
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--seed", str(args.seed), "--shards", str(args.shards), "--storage", args.storage,
              "--compression", args.compression]
    return " ".join(shlex.quote(p) for p in parts)
