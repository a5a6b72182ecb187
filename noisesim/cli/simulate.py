"""``noisesim simulate``: add a camera's noise to a clean raw frame (or many).

    noisesim simulate --card SonyA7S2 --iso 1600 --ratio 100 --input clean.npy --output noisy.npy --seed 0

Many frames, one process: ``--input clean/ --output noisy/`` (or a quoted glob, ``'clean/*.dng'``), in sorted
order; frame i gets noise frame index ``--frame-index + i`` and the batch's one parameter draw.

Input: a camera raw file (``.dng`` and anything rawpy reads; levels and CFA from the file), or a ``.npy`` /
``.tiff`` mosaic whose unit ``--input-unit auto`` infers (:func:`noisesim.rawio.infer_input_unit`:
integers → raw DN with the card's levels, floats ≤ 1.5 → normalized, larger floats within the card's
levels → DN, anything else refused; a named unit overrides). Output: ``.npy`` / ``.tiff`` (uint16 DN, or float32 with
``--output-unit normalized``) or ``.dng`` (uint16 with the card's levels and EXIF ISO/exposure).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import sys
from pathlib import Path

import numpy as np

from ..atomic import check_output_path, write_text
from ..card import load_card
from ..errors import CFAError, InputFileError, ParameterError, ShapeError
from ..noise import FRAME_INDEX_LIMIT, simulate
from ..params import NoiseComponents
from ..rawio import (ARRAY_EXTENSIONS, NORMALIZED_MAX, NORMALIZED_MIN, RAW_EXTENSIONS, array_header, check_integer_dn,
                     infer_input_unit, read_array, read_raw, write_array)
from ..sampling import sample_params
from . import describe_card, seed_arg

__all__ = ["add_parser", "API_OPTIONS", "INPUT_EXTENSIONS", "OUTPUT_EXTENSIONS", "run", "SWITCHABLE"]

log = logging.getLogger("noisesim.simulate")
INPUT_EXTENSIONS = ARRAY_EXTENSIONS + RAW_EXTENSIONS
OUTPUT_EXTENSIONS = ARRAY_EXTENSIONS + (".dng",)
# API parameter → option, for error messages (noisesim.cli.cli_message)
API_OPTIONS = {"gain_k_dn_per_e": "--gain-k", "iso": "--iso", "ratio": "--ratio", "read_model": "--read-model",
               "exposure_s": "--exposure-s", "frame_index": "--frame-index", "input_unit": "--input-unit",
               "output_unit": "--output-unit", "seed": "--seed"}
SWITCHABLE = ("shot", "read", "row", "column", "black_level_error", "dark_current", "dark_shading", "prnu", "hot_pixels")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``simulate`` sub-command and its options on ``sub`` (argparse sub-parsers).

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
        "simulate",
        help="add a camera's noise to a clean raw frame",
        description="Add a camera's noise to a clean raw frame, or to every frame of a folder or glob in one "
                    "process. The noise parameters come from the card (sample first, apply second), with its "
                    "fixed-pattern maps.",
    )
    p.add_argument("--card", required=True, metavar="NAME|PATH", help="shipped card name (noisesim cards) or a card file")
    gain = p.add_mutually_exclusive_group()
    gain.add_argument("--iso", type=float,
                      help="ISO within the card's per-ISO table: a tabled ISO gives its measured values; between "
                           "tabled ISOs the table is interpolated in ln K, never across a dual-gain switch. "
                           "ISO speed is a number without unit. Default, without --iso and --gain-k: K and the "
                           "noise σ's are drawn at random from the card's joint model (ELD), reproducibly from --seed")
    gain.add_argument("--gain-k", type=float, metavar="K",
                      help="system gain K [DN/e⁻] within the card's K range: inside the ISO table's span as for "
                           "an ISO, outside it from the joint model (default: from --iso, or the random draw)")
    p.add_argument("--ratio", type=float, default=1.0, help="exposure ratio r ≥ 1 (no unit): the signal is divided by r")
    p.add_argument("--input", required=True, type=Path, metavar="FILE|FOLDER|GLOB",
                   help="clean frame: raw file, .npy or .tiff mosaic; or a folder or a quoted glob ('clean/*.npy') "
                        "of them, processed in one process, in sorted order")
    p.add_argument("--output", required=True, type=Path, metavar="FILE|FOLDER",
                   help="noisy frame: .npy, .tiff or .dng; for a folder or glob --input, the output folder "
                        "(created if missing; one file per input, same stem)")
    p.add_argument("--output-format", choices=(".npy", ".tiff", ".dng"), default=None,
                   help="file type written for a folder or glob --input (default: the input's own type for "
                        ".npy/.tiff, .dng for camera raw files)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the parameter draw and the noise, 0 … 2**64 − 1")
    p.add_argument("--frame-index", type=int, default=0, metavar="N",
                   help="noise frame index (default 0): the same seed with another index gives independent noise. "
                        "Frame i of a folder or glob --input uses index --frame-index + i and the batch's one "
                        "parameter draw, so any frame can be regenerated alone")
    p.add_argument("--no-progress", action="store_true", help="no progress bar for a folder or glob --input")
    p.add_argument("--input-unit", choices=("auto", "normalized", "dn", "electrons"), default="auto",
                   help="unit of a .npy/.tiff input (raw files are always read with their own levels). auto "
                        "(default): integers are raw DN incl. the black level; floats in "
                        f"{NORMALIZED_MIN:g} … {NORMALIZED_MAX:g} are normalized (DN − black)/(white − black); larger floats "
                        "within the card's levels are raw DN (said on stderr); any other range is refused")
    p.add_argument("--output-unit", choices=("dn", "normalized"), default="dn",
                   help="dn: uint16 raw DN incl. black level (default); normalized: float32")
    p.add_argument("--read-model", choices=("tukey", "gaussian"), default=None,
                   help="read-noise model (default: the card's own: tukey, or gaussian for a Poisson–Gaussian card)")
    p.add_argument("--exposure-s", type=float, default=0.0, metavar="SECONDS", help="exposure time of the noisy frame [s], for dark current (default: 0 s, no dark current)")
    p.add_argument("--disable", default="", metavar="A,B", help=f"noise terms to switch off, comma-separated (default: none): {','.join(SWITCHABLE)}")
    p.add_argument("--float-path", action="store_true", help="no rounding: quantization as U(−½, ½) DN")
    p.add_argument("--params-out", type=Path, metavar="JSON", help="also write the sampled NoiseParams as JSON")
    p.set_defaults(run=run, api_options=API_OPTIONS)
    return p


def _check_shape(path: Path, shape: tuple, card) -> None:
    """Refuse a frame shape that is neither a mosaic nor a packed frame of the card's CFA (names the file)."""
    cfa = card.sensor.cfa
    probe = np.broadcast_to(np.zeros((), np.float32), shape)  # a shape to check, no memory
    try:
        cfa.check_packed(probe, "the packed frame") if len(shape) == 3 else cfa.check_mosaic(probe, "the mosaic")
    except ShapeError as exc:
        rgb = " (an RGB image? simulate needs a raw mosaic)" if len(shape) == 3 and shape[-1] in (3, 4) else ""
        raise InputFileError(f"{path}: {exc}{rgb}") from None


def _read_clean(path: Path, unit: str, card):
    """The clean frame and its unit; raw files are normalized with their own levels."""
    suffix = path.suffix.lower()
    if suffix in RAW_EXTENSIONS:
        frame = read_raw(path)
        if frame.cfa != card.sensor.cfa:
            raise CFAError(f"{path}: the file's CFA is {frame.cfa.pattern} but card {card.camera.name} has "
                           f"{card.sensor.cfa.pattern}")
        return frame.normalized(), "normalized"
    if suffix not in ARRAY_EXTENSIONS:
        raise InputFileError(f"{path}: unknown input format {suffix!r}; expected a raw file or one of {ARRAY_EXTENSIONS}")
    clean = read_array(path)
    _check_shape(path, clean.shape, card)
    if unit == "auto":
        unit, note = infer_input_unit(clean, card.sensor, path)
        if note:
            print(f"noisesim simulate: {note}", file=sys.stderr)
        else:
            log.info("%s: %s %s read as %s (--input-unit auto)", path, clean.dtype, "×".join(map(str, clean.shape)), unit)
    if unit == "dn":
        check_integer_dn(clean, card.sensor, path)
    return clean, unit


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _plan(args) -> tuple[list[tuple[Path, Path]], bool]:
    """(input, output) pairs and whether this is a batch (a folder or a glob of frames)."""
    raw_in = str(args.input)
    batch = args.input.is_dir() or (_is_glob(raw_in) and not args.input.exists())
    if not batch:
        if args.output.is_dir():
            raise InputFileError(f"{args.output}: is a folder; a single --input frame needs an output file "
                                 "(a folder or glob --input writes into a folder)")
        if args.output.suffix.lower() not in OUTPUT_EXTENSIONS:
            raise InputFileError(f"{args.output}: unknown output format; expected .npy, .tif, .tiff or .dng")
        if not args.output.parent.exists():
            raise InputFileError(f"{args.output}: the output folder {args.output.parent} does not exist")
        if args.output.exists() and args.output.resolve() == args.input.resolve():
            raise InputFileError(f"{args.output}: would overwrite its own input; choose another --output")
        return [(args.input, args.output)], False
    if args.input.is_dir():
        found = [f for f in args.input.iterdir() if f.is_file() and f.suffix.lower() in INPUT_EXTENSIONS]
        what = f"folder {args.input}"
    else:
        found = [Path(f) for f in glob.glob(raw_in, recursive=True)]
        found = [f for f in found if f.is_file() and f.suffix.lower() in INPUT_EXTENSIONS]
        what = f"pattern {raw_in}"
    inputs = sorted(found)
    if not inputs:
        raise InputFileError(f"{args.input}: no frames in the {what} (expected {', '.join(INPUT_EXTENSIONS[:4])}, … files)")
    out_dir = args.output
    if out_dir.suffix.lower() in OUTPUT_EXTENSIONS and not out_dir.is_dir():
        raise InputFileError(f"{out_dir}: a folder or glob --input needs an output folder, not a file name")
    if not out_dir.is_dir():
        if not out_dir.parent.is_dir():
            raise InputFileError(f"{out_dir}: the output folder's parent {out_dir.parent} does not exist")
    pairs, seen = [], {}
    for src in inputs:
        ext = args.output_format or (src.suffix.lower() if src.suffix.lower() in ARRAY_EXTENSIONS else ".dng")
        dst = out_dir / (src.stem + ext)
        if dst.resolve() == src.resolve():
            raise InputFileError(f"{dst}: would overwrite its own input; choose another --output folder or --output-format")
        if dst in seen:
            raise InputFileError(f"{dst}: both {seen[dst]} and {src} would be written there; give them distinct names")
        seen[dst] = src
        pairs.append((src, dst))
    return pairs, True


def _write(path: Path, noisy: np.ndarray, params, card, args) -> None:
    if path.suffix.lower() == ".dng":
        from ..dng import write_dng
        from ..importers.profile import params_noise_profile

        write_dng(path, noisy if noisy.ndim == 2 else card.sensor.cfa.unpack(noisy), cfa=card.sensor.cfa,
                  noise_profile=params_noise_profile(params, card.sensor),
                  black_level_dn=card.sensor.with_black_level(params.black_level_dn).black_level_dn,
                  white_level_dn=max(card.sensor.white_level_dn),
                  iso=params.iso, exposure_s=args.exposure_s or None, make=card.camera.make or "noisesim",
                  model=card.camera.model or card.camera.name, bit_depth=card.sensor.bit_depth)
    else:
        write_array(path, noisy)


def run(args) -> int:
    """Run ``noisesim simulate`` with parsed ``args``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of the sub-command.

    Returns
    -------
    int
        0 ok, 1 a failed check, 2 bad input.
    """
    card = load_card(args.card)
    log.info("%s", describe_card(card))
    disabled = {t.strip() for t in args.disable.split(",") if t.strip()}
    unknown = disabled - set(SWITCHABLE)
    if unknown:
        raise InputFileError(f"--disable: unknown noise terms {sorted(unknown)}; valid: {', '.join(SWITCHABLE)}")
    if args.frame_index < 0:
        raise InputFileError(f"--frame-index must be >= 0, got {args.frame_index}")
    pairs, batch = _plan(args)
    if args.frame_index + len(pairs) > FRAME_INDEX_LIMIT:  # frame i of a batch gets index --frame-index + i
        raise InputFileError(f"--frame-index {args.frame_index}: frame indices must stay below 2³² = {FRAME_INDEX_LIMIT} "
                             f"({len(pairs)} frame(s) from it)")
    if args.params_out is not None:  # before any frame: a failure after them would leave them written
        check_output_path(args.params_out, what="--params-out file")
    seeds = np.random.SeedSequence(args.seed).spawn(2)  # one for the parameters, one for the noise
    if not (np.isfinite(args.ratio) and args.ratio >= 1):
        raise ParameterError(f"--ratio must be a finite number >= 1, got {args.ratio:g}")
    params = sample_params(card, iso=args.iso, gain_k_dn_per_e=args.gain_k, rng=seeds[0],
                           read_model=args.read_model, exposure_s=args.exposure_s)
    log.info("parameters (%s): %s", "random draw from the joint model" if args.iso is None and args.gain_k is None
             else "from the card's ISO table" if params.iso is not None and card.iso_table else "from the card",
             ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.to_dict().items()
                       if v is not None))
    log.info("maps: %s", "none" if card.maps is None else ", ".join(
        f.name for f in dataclasses.fields(card.maps) if getattr(card.maps, f.name) is not None))
    maps = card.maps
    if maps is not None and params.iso is None and "dark_shading" not in disabled:
        log.warning("dark shading needs an ISO; switched off because the gain was not given as --iso")
        disabled.add("dark_shading")
    comps = dataclasses.replace(NoiseComponents(), quantize=not args.float_path, **{t: False for t in disabled})
    if batch:  # every array input's header and size first, so a bad one stops the batch before any output
        for src, _ in pairs:
            if src.suffix.lower() in ARRAY_EXTENSIONS:
                _check_shape(src, array_header(src)[0], card)
        args.output.mkdir(exist_ok=True)
    from tqdm import tqdm

    from ..warmup import warm_up

    # compile (first run) or load the kernels before the first frame, so the bar's ETA starts after it
    warm_up(announce=lambda message: print(f"noisesim simulate: {message}", file=sys.stderr, flush=True),
            params=params, sensor=card.sensor, components=comps, maps=maps)
    shown = batch and not args.no_progress and len(pairs) > 1
    with tqdm(pairs, disable=not shown, unit="frame", desc="simulate", dynamic_ncols=True) as bar:
        for i, (src, dst) in enumerate(bar):
            clean, unit = _read_clean(src, args.input_unit, card)
            out_unit = "dn" if dst.suffix.lower() == ".dng" else args.output_unit
            dtype = np.uint16 if out_unit == "dn" and not args.float_path else np.float32
            # frame i of a batch: the batch's one parameter draw, noise of frame index --frame-index + i
            try:
                noisy = simulate(clean, params, card=card, ratio=args.ratio, input_unit=unit, output_unit=out_unit,
                                 dtype=dtype, components=comps, maps=maps, rng=seeds[1], frame_index=args.frame_index + i)
            except ShapeError as exc:  # e.g. the card's maps do not cover this frame: say which frame and card
                raise InputFileError(f"{src}: {exc} (card {args.card})") from None
            _write(dst, noisy, params, card, args)
            log.info("wrote %s (frame index %d)", dst, args.frame_index + i)
    if args.params_out:
        write_text(args.params_out, json.dumps(params.to_dict(), indent=2) + "\n")
    shape = "×".join(str(s) for s in noisy.shape)
    iso = f"ISO {params.iso:g}, " if params.iso else ""
    what = f"{len(pairs)} frames to {args.output}" if batch else f"{args.output}: {shape}"
    print(f"wrote {what} {card.sensor.cfa.pattern} {noisy.dtype} {out_unit}; {card.camera.name} "
          f"{iso}K = {params.gain_k_dn_per_e:.4g} DN/e⁻, ratio {args.ratio:g}, seed {args.seed}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(add_parser(argparse.ArgumentParser().add_subparsers()).parse_args()))
