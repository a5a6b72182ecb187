"""``noisesim calibrate CAPTURE --camera "Maker Model" --output CARD [--report report.html]``."""

from __future__ import annotations

import logging
import sys

from ..atomic import check_output_path
from . import seed_arg

log = logging.getLogger("noisesim.calibrate")

__all__ = ["API_OPTIONS", "add_parser", "run"]

# API parameter → option, for error messages (noisesim.cli.cli_message)
API_OPTIONS = {"camera": "--camera", "workers": "--workers", "scheduler": "--scheduler", "rng": "--seed",
               "denoise_maps": "--denoise-maps", "dark_bank": "--dark-bank"}


def add_parser(subparsers) -> None:
    """Register the ``calibrate`` sub-command and its options on ``sub`` (argparse sub-parsers).

    Parameters
    ----------
    subparsers : argparse sub-parsers action
        From ``ArgumentParser.add_subparsers``.
    """
    p = subparsers.add_parser(
        "calibrate",
        help="estimate a data card from dark and flat frames",
        description="Estimate a noisesim data card from a capture folder (darks/ and flats/ of raw files with EXIF) "
        "or a CSV/TOML manifest of .npy/.tiff frames (docs/calibration.md). Writes the card (+ maps sidecar) and, "
        "optionally, a self-contained HTML report.",
    )
    p.add_argument("capture", metavar="CAPTURE_DIR_OR_MANIFEST",
                   help="capture folder (darks/ and flats/ of raw files) or a .csv/.toml manifest of frames")
    p.add_argument("--camera", metavar='"MAKER MODEL"',
                   help='camera name for the card, e.g. "Sony ILCE-7SM2" (default: make and model from the files\' EXIF, '
                   'normalized: "NIKON CORPORATION" + "NIKON D850" → "Nikon D850")')
    p.add_argument("--output", "-o", required=True, metavar="CARD",
                   help="card file to write (.toml); the maps go into a .npz sidecar next to it")
    p.add_argument("--report", metavar="HTML", help="also write the self-contained HTML calibration report here")
    p.add_argument("--no-fidelity", action="store_true",
                   help="skip the fidelity check on held-out darks; every dark frame is then used for the estimates")
    p.add_argument("--denoise-maps", action="store_true",
                   help="Wiener-shrink the dark-shading and PRNU maps (best per-pixel estimate; simulations then carry "
                   "less fixed pattern than the sensor). Default: maps reproduce the card's DSNU and PRNU")
    p.add_argument("--dark-bank", default=None, metavar="BANK.h5",
                   help="also store the capture's dark frames in this dark-frame bank (for --noise dark-frame) and "
                   "reference it from the card (path relative to the card, with its checksum)")
    p.add_argument("--seed", type=seed_arg, default=0,
                   help="seed, an integer, of the read-noise sample pixels and the fidelity check's synthetic frames")
    p.add_argument("--scheduler", default=None, metavar="local|ADDRESS|FILE.json",
                   help="estimate each ISO as a task on a Dask cluster (extra noisesim[dask]); workers read the frames "
                        "themselves (same paths on every worker); the card is identical to the local run "
                        "(default: none, every ISO in this process)")
    p.add_argument("--workers", "-j", type=int, default=1, metavar="N",
                   help="LocalCluster worker processes with --scheduler local (a count)")
    p.set_defaults(run=run, api_options=API_OPTIONS)


def run(args) -> int:
    """Run ``noisesim calibrate`` with parsed ``args``; returns the exit status.

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

    from noisesim.calibration.pipeline import calibrate  # lazy: noisesim never imports calibration at import time
    from noisesim.errors import CalibrationError

    if args.workers < 1:
        raise CalibrationError(f"--workers must be ≥ 1, got {args.workers}")
    # every output (the maps sidecar goes next to the card) before the calibration, which takes minutes
    out = check_output_path(args.output, suffixes=(".toml",), what="card file")
    if args.report:
        check_output_path(args.report, what="report")
    if args.dark_bank:
        check_output_path(args.dark_bank, suffixes=(".h5", ".hdf5"), what="bank file")

    def progress(it):
        return tqdm(it, desc="reading frames", unit="frame", leave=False, file=sys.stderr, disable=None)

    res = calibrate(args.capture, args.camera, progress=progress, fidelity=not args.no_fidelity, rng=args.seed,
                    denoise_maps=args.denoise_maps, scheduler=args.scheduler, workers=args.workers)
    if args.dark_bank:
        from noisesim.calibration.banks import bank_from_capture

        bank = bank_from_capture(args.capture, args.dark_bank, sensor=res.card.sensor, camera=res.card.camera.name,
                                 progress=lambda it: tqdm(it, desc="dark bank", unit="frame", leave=False, file=sys.stderr,
                                                          disable=None))
        res.card = res.card.with_dark_bank(bank, relative_to=out.parent)
    res.save(out, report=args.report)
    for r in res.iso_results:
        log.info("ISO %g: %d dark frames, %d flat pairs", r.iso, r.n_darks, r.n_flat_pairs)
    log.info("%d capture problem(s), %d warning(s); maps: %s", len(res.problems), len(res.warnings),
             res.card.maps_file or "none")
    if args.camera is None and not any("no camera make/model" in w for w in res.warnings):
        print(f"camera: {res.card.camera.make} {res.card.camera.model}".rstrip() + " (from EXIF; --camera to set it)")
    for r in res.iso_results:
        print(f"ISO {r.iso:g}: K = {r.gain_k_dn_per_e.value:.4g} ± {r.gain_k_dn_per_e.se:.2g} DN/e-, "
              f"σ = {r.read_sigma_dn.value:.3g} DN, λ = {r.tukey_lambda.value:+.3f}, σ_TL = {r.tukey_scale_dn.value:.3g} DN, "
              f"row σ = {r.row_sigma_dn.value:.3g} DN")
    if res.warnings:
        print(f"{len(res.warnings)} warning(s); see the log above" + (" and the report" if args.report else ""), file=sys.stderr)
    print(f"wrote {out}" + (f" and {args.report}" if args.report else ""))
    return 0
