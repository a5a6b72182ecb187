"""``noisesim validate CARD CAPTURE_DIR``: does the card simulate this capture? A verdict with an exit status.

Exit status 0: the card passes; 1: the card fails on the capture (a channel beyond a limit, the capture
from another sensor mode, or maps of another unit); 2: bad input (unreadable card or capture, no darks at
an ISO of the card).
"""

from __future__ import annotations

import logging
import sys

from . import describe_card, seed_arg

log = logging.getLogger("noisesim.validate")

__all__ = ["API_OPTIONS", "add_parser", "run"]

# API parameter → option, for error messages (noisesim.cli.cli_message)
API_OPTIONS = {"max_frames_per_iso": "--max-frames", "model": "--model", "kl_symmetric_nats": "--max-kl",
               "ks_statistic": "--max-ks", "mean_diff_rel": "--max-mean-diff", "mean_diff_se": "--max-mean-se",
               "std_diff_rel": "--max-std-diff", "var_diff_se": "--max-var-se",
               "map_correlation_fraction": "--min-map-correlation", "rng": "--seed", "bank": "--bank"}


def add_parser(subparsers) -> None:
    """Register the ``validate`` sub-command and its options on ``sub`` (argparse sub-parsers).

    Parameters
    ----------
    subparsers : argparse sub-parsers action
        From ``ArgumentParser.add_subparsers``.
    """
    from noisesim.calibration.fidelity import Thresholds

    t = Thresholds()
    p = subparsers.add_parser(
        "validate",
        help="check a card against real dark frames: pass/fail per ISO and channel (exit 1 when it fails)",
        description="For each ISO the card tables, compare real dark frames from CAPTURE_DIR (or a manifest) with "
        "frames synthesized from the card, per CFA channel: forward and symmetric KL divergence of the DN "
        "histograms, the two-sample KS statistic, and the mean and variance differences (DN and standard errors). "
        "Also checks that the capture belongs to the card (white level / bit depth, CFA, frame size, and the "
        "correlation of the darks' fixed pattern with the card's maps). Exit status: 0 pass, 1 the card fails, "
        "2 bad input.",
    )
    p.add_argument("card", metavar="CARD", help="card name or .toml path")
    p.add_argument("capture", metavar="CAPTURE_DIR", help="capture folder (darks/ …) or a .csv/.toml manifest")
    p.add_argument("--max-frames", type=int, default=4, metavar="N", help="dark frames compared per ISO (a count)")
    p.add_argument("--model", choices=("tukey", "gaussian"), default="tukey",
                   help="read-noise model whose comparisons decide the verdict (both are shown)")
    p.add_argument("--max-kl", type=float, default=t.kl_symmetric_nats, metavar="NATS",
                   help="largest symmetric KL divergence of a passing channel [nats]")
    p.add_argument("--max-ks", type=float, default=t.ks_statistic, metavar="D",
                   help="largest two-sample KS statistic of a passing channel (a fraction, 0–1)")
    p.add_argument("--max-mean-diff", type=float, default=t.mean_diff_rel, metavar="SIGMAS",
                   help="a mean difference fails when larger than this many of the real darks' std [σ] "
                   "and than --max-mean-se standard errors")
    p.add_argument("--max-mean-se", type=float, default=t.mean_diff_se, metavar="SE",
                   help="a mean difference fails when larger than this many standard errors [SE] and than "
                        "--max-mean-diff")
    p.add_argument("--max-std-diff", type=float, default=t.std_diff_rel, metavar="FRACTION",
                   help="a noise level fails when |σ_syn/σ_real − 1| exceeds this fraction and the variance "
                   "difference exceeds --max-var-se standard errors")
    p.add_argument("--max-var-se", type=float, default=t.var_diff_se, metavar="SE",
                   help="a variance difference fails when larger than this many standard errors [SE] and "
                        "--max-std-diff is exceeded")
    p.add_argument("--min-map-correlation", type=float, default=t.map_correlation_fraction, metavar="FRACTION",
                   help="the darks' fixed pattern must correlate with the card's dark-shading map by at least this "
                   "fraction of what the card predicts for its own sensor")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the synthetic frames, an integer")
    p.add_argument("--bank", default=None, metavar="BANK.h5",
                   help="also compare the parametric model, the per-pixel-σ model (when the card's maps have one) and "
                   "dark-frame noise from this bank on the capture's darks (KL and noise power spectra), and say which "
                   "fits best; darks that are in the bank are not used")
    p.set_defaults(run=run, api_options=API_OPTIONS)


def run(args) -> int:
    """Run ``noisesim validate`` with parsed ``args``; returns the exit status.

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

    from noisesim.calibration.fidelity import Thresholds, format_report, validate
    from noisesim.card import load_card
    from noisesim.errors import CalibrationError

    if args.max_frames < 1:
        raise CalibrationError(f"--max-frames must be ≥ 1, got {args.max_frames}")
    thresholds = Thresholds(args.max_kl, args.max_ks, args.max_mean_diff, args.max_mean_se, args.max_std_diff,
                            args.max_var_se, args.min_map_correlation)
    card = load_card(args.card)
    bank = None
    if args.bank:  # opened (exists, is a dark-frame bank) before the validation, which takes a while
        from pathlib import Path

        from noisesim.darkbank import DarkFrameBank
        from noisesim.errors import InputFileError

        if not Path(args.bank).is_file():  # h5py's own message for a missing file is a paragraph
            raise InputFileError(f"{args.bank}: --bank {'is a folder' if Path(args.bank).is_dir() else 'not found'}")
        bank = DarkFrameBank(args.bank)
    log.info("%s", describe_card(card))
    log.info("thresholds: %s; verdict from the %s model, %d dark frame(s) per ISO", thresholds, args.model,
             args.max_frames)
    report = validate(card, args.capture, max_frames_per_iso=args.max_frames, rng=args.seed, thresholds=thresholds,
                      model=args.model,
                      progress=lambda it: tqdm(it, desc="darks", unit="frame", leave=False, file=sys.stderr, disable=None))
    if not report.rows and not report.mismatches:
        raise CalibrationError(f"{args.capture}: no dark frames at an ISO of the card ({', '.join(f'{i:g}' for i in card.isos)})")
    print(format_report(report))
    if bank is not None:
        from noisesim.calibration.model_choice import compare_models_on_capture

        for comparison in compare_models_on_capture(card, args.capture, bank=bank,
                                                    max_frames_per_iso=args.max_frames, rng=args.seed):
            print(comparison.format())
    return 0 if report.passed else 1
