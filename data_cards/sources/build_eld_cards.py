"""Regenerate the shipped ELD camera cards from the ELD authors' released calibration.

Usage (from the repository root)::

    python data_cards/sources/build_eld_cards.py [--source PATH] [--out data_cards] [--date YYYY-MM-DD]

Source: the noise parameters Wei et al. released for ELD (CVPR 2020 / TPAMI 2021), converted from
their ``.npy`` files to JSON unchanged (``data_cards/sources/eld_released_camera_params.json``; see
``data_cards/sources/README.md``).
The field mapping is that of ``noisesim.importers.eld`` (the importer of ELD-style ``.npy`` files), natural
logarithms throughout, as ELD:

* ``Kmin``/``Kmax`` → ``[joint] k_min_dn_per_e``/``k_max_dn_per_e``;
* ``Profile-1`` → the one ``[[joint.profile]]``: ``G_scale`` → ``tukey_scale_dn``, ``g_scale`` →
  ``read_sigma_dn``, ``R_scale`` → ``row_sigma_dn``; ``slope`` → ``slope``, ``bias`` → ``intercept``,
  ``sigma`` → ``residual_std``. ELD's released sampler (``noise.py``) uses only Profile-1, so NikonD850's
  Profile-2 is kept in the provenance, not sampled;
* ``G_shape`` → ``tukey_lambda_values`` (order kept: one per calibrated ISO, ascending);
* ``color_bias`` → ``black_level_error_bins`` on equal-width ln K bins, **reordered**: ELD packs channels
  by rawpy's ``raw_pattern`` indices 0..3, i.e. R, G(0,1), B(1,1), G(1,0) = "R, G1, B, G2"; our Bayer
  site order for RGGB is R, G1, G2, B, so each vector ``[r, g1, b, g2]`` becomes ``[r, g1, g2, b]``.

SonyA7S2 additionally gets all of PMN's per-ISO entries (ISO 50–25600) (Feng et al., ACM MM 2022; from
``pmn_released_camera_params.json``) as its ``[[iso]]`` table and a dual-gain switch at ISO 2000.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # data_cards/sources/ (not installed: a development script)

from noisesim.card import Card, ISOEntry, save_card
from noisesim.importers.eld import card_from_eld_params
from noisesim.importers.pmn import PMN_CITATION, iso_entry_from_pmn

DEFAULT_SOURCE = HERE / "eld_released_camera_params.json"
PMN_SOURCE = HERE / "pmn_released_camera_params.json"

WHITE_LEVEL_DN = 16383  # 14-bit raw, as the reference states for all five cameras
BIT_DEPTH = 14

_BLACK_UNSOURCED = (
    "NOT SOURCED. ELD's released parameters carry no black level, and ELD's data loaders read it from each "
    "raw file (rawpy black_level_per_channel) instead of fixing one per camera. {value} DN is a nominal "
    "14-bit level for this camera model, not verified against ELD's files: read the level from your own "
    "raw files (noisesim uses Sensor.black_level_dn only to convert between normalized and DN and to clip)."
)

CAMERAS = {
    "CanonEOS5D4": dict(make="Canon", model="Canon EOS 5D Mark IV", black=2048, black_sourced=False),
    "CanonEOS700D": dict(make="Canon", model="Canon EOS 700D", black=2048, black_sourced=False),
    "CanonEOS70D": dict(make="Canon", model="Canon EOS 70D", black=2048, black_sourced=False),
    "NikonD850": dict(make="Nikon", model="NIKON D850", black=400, black_sourced=False),
    "SonyA7S2": dict(make="Sony", model="ILCE-7SM2", black=512, black_sourced=True),
}

SONY_DUAL_GAIN_SWITCH_ISO = 2000  # first high-gain ISO of PMN's per-ISO table


def _sony_pmn_table(pmn: dict) -> tuple[ISOEntry, ...]:
    """PMN's per-ISO entries of the Sony A7S2 (ISO 50–25600), values unchanged."""
    isos = sorted(int(k.split("_")[1]) for k in pmn["per_iso"] if k.startswith("SonyA7S2_"))
    return tuple(iso_entry_from_pmn(pmn["per_iso"][f"SonyA7S2_{iso}"], iso, with_bias=False) for iso in isos)


def convert(name: str, eld: dict, *, source: Path, date: str, pmn: dict | None = None) -> Card:
    """The card of one camera from its ELD entry (mapping: noisesim.importers.eld; Sony table from PMN)."""
    meta = CAMERAS[name]
    extra: dict = {
        "source": "ELD released noise parameters (Wei et al., CVPR 2020 / TPAMI 2021)",
        "date": date,
        "software": "noisesim data_cards/build_eld_cards.py",
        "source_file": f"{source.name} (the authors' released .npy converted to JSON unchanged)",
        "notes": [
            "CFA RGGB: ELD packs each file via rawpy's raw_pattern, and the four cameras' raw files (CR2, NEF, ARW) "
            "are RGGB with R at the top-left pixel (the SID Sony A7S2 loader packs R, G, B, G from (0,0), (0,1), "
            "(1,1), (1,0)).",
        ],
    }
    if name != "SonyA7S2":
        extra["black_level_source"] = _BLACK_UNSOURCED.format(value=meta["black"])
    card = card_from_eld_params(eld, name=name, make=meta["make"], model=meta["model"], black_level_dn=meta["black"],
                                white_level_dn=WHITE_LEVEL_DN, bit_depth=BIT_DEPTH, source=name, extra_provenance=extra)
    if name != "SonyA7S2":
        return card
    table = _sony_pmn_table(pmn)
    at = {e.iso: e for e in table}
    prov = dict(card.provenance)
    prov["iso_table_citation"] = PMN_CITATION
    prov["black_level_source"] = "512 DN, PMN's published Sony A7S2 calibration (bl of every per-ISO entry)"
    prov["notes"] = list(prov["notes"]) + [
        f"Per-ISO table: PMN's {len(table)} per-ISO entries SonyA7S2_50 … SonyA7S2_25600 (pmn_released_camera_params.json, "
        "per_iso), values unchanged: K = Kmax (linear K), λ = lam, σ_TL = sigTL, σ_Gauss = sigGs, σ_row = sigR.",
        "PMN gives bias = 0 DN (with spreads biassig) at every Sony ISO; the rows carry no black-level error, so "
        "black-level errors come from ELD's bins.",
        f"Dual-gain sensor: read noise drops between ISO 1600 and 2000 (σ_TL {at[1600].tukey_scale_dn} → "
        f"{at[2000].tukey_scale_dn} DN), so dual_gain_switch_iso = {SONY_DUAL_GAIN_SWITCH_ISO} records the first "
        "high-gain ISO; PMN's two joint models (SonyA7S2_lowISO/_highISO) split there too. ELD's release has a "
        "single profile over the whole K range; the drop shows in the per-ISO table, not in the joint fit.",
        "The table spans K = 0.0478–24.5 DN/e⁻, beyond ELD's joint range (0.0939–6.01): ISOs in the table are served "
        "from it; random K draws stay in ELD's range.",
    ]
    joint = dataclasses.replace(card.joint, dual_gain_switch_iso=SONY_DUAL_GAIN_SWITCH_ISO)
    return card.replace(iso_table=table, joint=joint, provenance=prov)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="ELD parameters as JSON")
    parser.add_argument("--out", type=Path, default=HERE.parent, help="folder for the .toml cards (default: data_cards/)")
    parser.add_argument("--date", default=datetime.date.today().isoformat(), help="conversion date recorded in provenance")
    args = parser.parse_args(argv)
    data = json.loads(args.source.read_text())
    pmn = json.loads(PMN_SOURCE.read_text())
    unknown = set(data) - set(CAMERAS)
    if unknown:
        parser.error(f"no metadata for cameras {sorted(unknown)}; add them to CAMERAS")
    for name in sorted(data):
        path = save_card(convert(name, data[name], source=args.source, date=args.date, pmn=pmn), args.out / f"{name}.toml")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
