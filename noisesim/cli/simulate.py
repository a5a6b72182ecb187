"""``noisesim simulate``: add a camera's noise to one clean raw frame.

    noisesim simulate --card SonyA7S2 --iso 1600 --ratio 100 --input clean.npy --output noisy.npy --seed 0

Input: a camera raw file (``.dng`` and anything rawpy reads; levels and CFA from the file), or a ``.npy`` /
``.tiff`` mosaic whose unit ``--input-unit auto`` infers (:func:`noisesim.rawio.infer_input_unit`:
integers → raw DN with the card's levels, floats ≤ 1.5 → normalized, larger floats within the card's
levels → DN, anything else refused; a named unit overrides). Output: ``.npy`` / ``.tiff`` (uint16 DN, or float32 with
``--output-unit normalized``) or ``.dng`` (uint16 with the card's levels and EXIF ISO/exposure).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..card import load_card
from ..errors import CFAError, InputFileError, ShapeError
from ..noise import simulate
from ..params import NoiseComponents
from ..rawio import (ARRAY_EXTENSIONS, NORMALIZED_MAX, RAW_EXTENSIONS, check_integer_dn, infer_input_unit, read_array, read_raw,
                     write_array)
from ..sampling import sample_params
from . import seed_arg

log = logging.getLogger("noisesim.simulate")
SWITCHABLE = ("shot", "read", "row", "column", "black_level_error", "dark_current", "dark_shading", "prnu", "hot_pixels")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "simulate",
        help="add a camera's noise to a clean raw frame",
        description=__doc__.split("\n\n", 1)[0] + " Parameters come from the card's ISO model (sample first, apply second).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--card", required=True, metavar="NAME|PATH", help="shipped card name (noisesim cards) or a card file")
    gain = p.add_mutually_exclusive_group()
    gain.add_argument("--iso", type=float,
                      help="ISO within the card's per-ISO table: a tabled ISO gives its measured values; between "
                           "tabled ISOs the table is interpolated in ln K, never across a dual-gain switch. "
                           "Without --iso and --gain-k, K and the noise σ's are drawn at random from the card's "
                           "joint model (ELD), reproducibly from --seed")
    gain.add_argument("--gain-k", type=float, metavar="K",
                      help="system gain K [DN/e⁻] within the card's K range: inside the ISO table's span as for "
                           "an ISO, outside it from the joint model")
    p.add_argument("--ratio", type=float, default=1.0, help="exposure ratio r ≥ 1: signal divided by r (default 1)")
    p.add_argument("--input", required=True, type=Path, help="clean frame: raw file, .npy or .tiff mosaic")
    p.add_argument("--output", required=True, type=Path, help="noisy frame: .npy, .tiff or .dng")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the parameter draw and the noise (default 0)")
    p.add_argument("--input-unit", choices=("auto", "normalized", "dn", "electrons"), default="auto",
                   help="unit of a .npy/.tiff input (raw files are always read with their own levels). auto "
                        "(default): integers are raw DN incl. the black level; floats ≤ "
                        f"{NORMALIZED_MAX:g} are normalized (DN − black)/(white − black); larger floats "
                        "within the card's levels are raw DN (said on stderr); any other range is refused")
    p.add_argument("--output-unit", choices=("dn", "normalized"), default="dn",
                   help="dn: uint16 raw DN incl. black level (default); normalized: float32")
    p.add_argument("--read-model", choices=("tukey", "gaussian"), default=None,
                   help="read-noise model (default: the card's own: tukey, or gaussian for a Poisson–Gaussian card)")
    p.add_argument("--exposure-s", type=float, default=0.0, help="exposure time of the noisy frame, for dark current [s]")
    p.add_argument("--disable", default="", metavar="A,B", help=f"noise terms to switch off: {','.join(SWITCHABLE)}")
    p.add_argument("--float-path", action="store_true", help="no rounding: quantization as U(−½, ½) DN")
    p.add_argument("--params-out", type=Path, help="also write the sampled NoiseParams as JSON")
    p.set_defaults(run=run)
    return p


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
    cfa = card.sensor.cfa
    try:
        cfa.check_packed(clean, "the packed frame") if clean.ndim == 3 else cfa.check_mosaic(clean, "the mosaic")
    except ShapeError as exc:
        rgb = " (an RGB image? simulate needs a raw mosaic)" if clean.ndim == 3 and clean.shape[-1] in (3, 4) else ""
        raise InputFileError(f"{path}: {exc}{rgb}") from None
    if unit == "auto":
        unit, note = infer_input_unit(clean, card.sensor, path)
        if note:
            print(f"noisesim simulate: {note}", file=sys.stderr)
    if unit == "dn":
        check_integer_dn(clean, card.sensor, path)
    return clean, unit


def run(args) -> int:
    card = load_card(args.card)
    disabled = {t.strip() for t in args.disable.split(",") if t.strip()}
    unknown = disabled - set(SWITCHABLE)
    if unknown:
        raise InputFileError(f"--disable: unknown noise terms {sorted(unknown)}; valid: {', '.join(SWITCHABLE)}")
    if args.output.suffix.lower() not in ARRAY_EXTENSIONS + (".dng",):
        raise InputFileError(f"{args.output}: unknown output format; expected .npy, .tif, .tiff or .dng")
    if not args.output.parent.exists():
        raise InputFileError(f"{args.output}: the output folder {args.output.parent} does not exist")
    clean, unit = _read_clean(args.input, args.input_unit, card)
    seeds = np.random.SeedSequence(args.seed).spawn(2)  # one for the parameters, one for the noise
    params = sample_params(card, iso=args.iso, gain_k_dn_per_e=args.gain_k, rng=seeds[0],
                           read_model=args.read_model, exposure_s=args.exposure_s)
    maps = card.maps
    if maps is not None and params.iso is None and "dark_shading" not in disabled:
        log.warning("dark shading needs an ISO; switched off because the gain was not given as --iso")
        disabled.add("dark_shading")
    comps = dataclasses.replace(NoiseComponents(), quantize=not args.float_path, **{t: False for t in disabled})
    as_dng = args.output.suffix.lower() == ".dng"
    out_unit = "dn" if as_dng else args.output_unit
    dtype = np.uint16 if out_unit == "dn" and not args.float_path else np.float32
    noisy = simulate(clean, params, card=card, ratio=args.ratio, input_unit=unit, output_unit=out_unit, dtype=dtype,
                     components=comps, maps=maps, rng=seeds[1])
    if as_dng:
        from ..dng import write_dng
        from ..importers.profile import params_noise_profile

        write_dng(args.output, noisy if noisy.ndim == 2 else card.sensor.cfa.unpack(noisy), cfa=card.sensor.cfa,
                  noise_profile=params_noise_profile(params, card.sensor),
                  black_level_dn=card.sensor.with_black_level(params.black_level_dn).black_level_dn,
                  white_level_dn=max(card.sensor.white_level_dn),
                  iso=params.iso, exposure_s=args.exposure_s or None, make=card.camera.make or "noisesim",
                  model=card.camera.model or card.camera.name, bit_depth=card.sensor.bit_depth)
    else:
        write_array(args.output, noisy)
    if args.params_out:
        write_text(args.params_out, json.dumps(params.to_dict(), indent=2) + "\n")
    shape = "×".join(str(s) for s in noisy.shape)
    iso = f"ISO {params.iso:g}, " if params.iso else ""
    print(f"wrote {args.output}: {shape} {card.sensor.cfa.pattern} {noisy.dtype} {out_unit}; {card.camera.name} "
          f"{iso}K = {params.gain_k_dn_per_e:.4g} DN/e⁻, ratio {args.ratio:g}, seed {args.seed}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(add_parser(argparse.ArgumentParser().add_subparsers()).parse_args()))
