"""Regenerate the shipped ELD camera cards from the ELD authors' released calibration.

Usage (from the repository root)::

    python data_cards/sources/build_eld_cards.py [--source PATH] [--out data_cards] [--date YYYY-MM-DD]

Source: the noise parameters Wei et al. released for ELD (CVPR 2020 / TPAMI 2021), converted from
their ``.npy`` files to JSON unchanged (``data_cards/sources/eld_released_camera_params.json``; see
``data_cards/sources/README.md``).
Mapping, field by field (natural logarithms throughout, as ELD):

* ``Kmin``/``Kmax`` → ``[joint] k_min_dn_per_e``/``k_max_dn_per_e``;
* ``Profile-n`` → ``[[joint.profile]] name = "Profile-n"``: ``G_scale`` → ``tukey_scale_dn``,
  ``g_scale`` → ``read_sigma_dn``, ``R_scale`` → ``row_sigma_dn``; ``slope`` → ``slope``,
  ``bias`` → ``intercept``, ``sigma`` → ``residual_std``; every profile covers the full K range
  with weight 1 (ELD picks one of NikonD850's two profiles uniformly at random);
* ``G_shape`` → ``tukey_lambda_values`` (order kept: one per calibrated ISO, ascending);
* ``color_bias`` → ``black_level_error_bins``, **reordered**: ELD packs channels by rawpy's
  ``raw_pattern`` indices 0..3, i.e. R, G(0,1), B(1,1), G(1,0) = "R, G1, B, G2"; our Bayer site order
  for RGGB is R, G1, G2, B, so each vector ``[r, g1, b, g2]`` becomes ``[r, g1, g2, b]``.

SonyA7S2 additionally gets PMN's published per-ISO values (Feng et al., ACM MM 2022; listed in
``data_cards/sources/README.md``) as its ``[[iso]]`` table and a dual-gain switch at ISO 3200.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # data_cards/sources/ (not installed: a development script)

from noisesim.card import Camera, Card, ISOEntry, JointModel, JointProfile, LogLinearFit, save_card
from noisesim.params import Sensor

DEFAULT_SOURCE = HERE / "eld_released_camera_params.json"

ELD_CITATION = (
    "K. Wei, Y. Fu, J. Yang, H. Huang, 'A Physics-based Noise Formation Model for Extreme Low-light Raw "
    "Denoising', CVPR 2020; K. Wei, Y. Fu, Y. Zheng, J. Yang, 'Physics-based Noise Modeling for Extreme "
    "Low-light Photography', IEEE TPAMI 2021"
)
PMN_CITATION = (
    "H. Feng, L. Wang, Y. Wang, H. Huang, 'Learnability Enhancement for Low-light Raw Denoising: "
    "Where Paired Real Data Meets Noise Modeling', ACM MM 2022 (PMN)"
)

# ELD's packed channel order is R, G(0,1), B(1,1), G(1,0); ours (RGGB sites) is R, G1, G2, B.
ELD_TO_BAYER_SITES = (0, 1, 3, 2)

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

# PMN's published per-ISO values for the Sony A7S2 (data_cards/sources/README.md), black level 512.
SONY_A7S2_PMN_TABLE = (
    # iso, K [DN/e-], lambda, sigma_TL [DN], sigma_Gauss [DN], sigma_row [DN]
    (100, 0.0956, 0.149, 0.70, 1.01, 0.14),
    (1600, 1.53, -0.044, 3.23, 6.30, 0.99),
    (3200, 3.06, -0.035, 2.04, 3.92, 0.45),
    (6400, 6.12, -0.075, 3.45, 7.12, 0.72),
)
SONY_DUAL_GAIN_SWITCH_ISO = 3200


def _fit(d: dict) -> LogLinearFit:
    return LogLinearFit(slope=d["slope"], intercept=d["bias"], residual_std=d["sigma"])


def convert(name: str, eld: dict, *, source: Path, date: str) -> Card:
    """The card of one camera from its ELD entry (see the module docstring for the mapping)."""
    meta = CAMERAS[name]
    kmin, kmax = eld["Kmin"], eld["Kmax"]
    profile_names = sorted(k for k in eld if k.startswith("Profile-"))
    profiles = tuple(
        JointProfile(
            name=p,
            weight=1.0,
            k_min_dn_per_e=kmin,
            k_max_dn_per_e=kmax,
            tukey_scale_dn=_fit(eld[p]["G_scale"]),
            read_sigma_dn=_fit(eld[p]["g_scale"]),
            row_sigma_dn=_fit(eld[p]["R_scale"]),
        )
        for p in profile_names
    )
    bins = tuple(tuple(v[i] for i in ELD_TO_BAYER_SITES) for v in eld["color_bias"])
    iso_table: tuple[ISOEntry, ...] = ()
    switch = None
    notes = [
        f"Joint model converted from ELD's released parameters for {name}: {len(profiles)} "
        f"profile{'s' if len(profiles) > 1 else ''} "
        f"over K = {kmin:.6g}–{kmax:.6g} DN/e⁻, {len(eld['G_shape'])} Tukey-lambda shapes and "
        f"{len(bins)} black-level-error vectors (one per calibrated ISO, ascending; used as equal-width ln K bins).",
        "black_level_error_bins reordered from ELD's packed order R, G1, B, G2 (rawpy raw_pattern indices 0,1,2,3) "
        "to the Bayer site order R, G1, G2, B of this card's RGGB CFA.",
        "CFA RGGB: ELD packs each file via rawpy's raw_pattern, and the four cameras' raw files (CR2, NEF, ARW) "
        "are RGGB with R at the top-left pixel (the SID Sony A7S2 loader packs R, G, B, G from (0,0), (0,1), "
        "(1,1), (1,0)).",
    ]
    if len(profiles) > 1:
        notes.append(
            "The profiles overlap over the whole K range; ELD chooses one uniformly at random per draw, "
            "hence equal weights."
        )
    prov: dict = {
        "source": "ELD released noise parameters (Wei et al., CVPR 2020 / TPAMI 2021)",
        "citation": ELD_CITATION,
        "date": date,
        "software": "noisesim data_cards/build_eld_cards.py",
        "source_file": f"{source.name} (the authors' released .npy converted to JSON unchanged)",
    }
    if name == "SonyA7S2":
        iso_table = tuple(
            ISOEntry(iso=iso, gain_k_dn_per_e=k, tukey_lambda=lam, tukey_scale_dn=tl, read_sigma_dn=g, row_sigma_dn=r)
            for iso, k, lam, tl, g, r in SONY_A7S2_PMN_TABLE
        )
        switch = SONY_DUAL_GAIN_SWITCH_ISO
        prov["iso_table_citation"] = PMN_CITATION
        prov["black_level_source"] = "512 DN, PMN's published Sony A7S2 calibration (listed in data_cards/sources/README.md)"
        notes += [
            "Per-ISO table (ISO 100, 1600, 3200, 6400): PMN's published values; no black-level error or column "
            "noise was published with them, so black-level errors come from the ELD bins.",
            "Dual-gain sensor: read noise drops above ISO 1600 (σ_TL 3.23 → 2.04 DN from ISO 1600 to 3200), so "
            "dual_gain_switch_iso = 3200 records the first high-gain ISO. ELD's release has a single profile over "
            "the whole K range; the drop shows in the per-ISO table, not in the joint fit.",
            "The table's K at ISO 6400 (6.12) lies just above ELD's K_max (6.01); K sampled by ISO between 3200 "
            "and 6400 extrapolates the joint fit slightly.",
        ]
    else:
        prov["black_level_source"] = _BLACK_UNSOURCED.format(value=meta["black"])
    prov["notes"] = notes
    return Card(
        camera=Camera(name=name, make=meta["make"], model=meta["model"]),
        sensor=Sensor(cfa="RGGB", bit_depth=BIT_DEPTH, black_level_dn=meta["black"], white_level_dn=WHITE_LEVEL_DN),
        iso_table=iso_table,
        joint=JointModel(
            k_min_dn_per_e=kmin,
            k_max_dn_per_e=kmax,
            profiles=profiles,
            dual_gain_switch_iso=switch,
            tukey_lambda_values=tuple(eld["G_shape"]),
            black_level_error_bins=bins,
        ),
        provenance=prov,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="ELD parameters as JSON")
    parser.add_argument("--out", type=Path, default=HERE.parent, help="folder for the .toml cards (default: data_cards/)")
    parser.add_argument("--date", default=datetime.date.today().isoformat(), help="conversion date recorded in provenance")
    args = parser.parse_args(argv)
    data = json.loads(args.source.read_text())
    unknown = set(data) - set(CAMERAS)
    if unknown:
        parser.error(f"no metadata for cameras {sorted(unknown)}; add them to CAMERAS")
    for name in sorted(data):
        path = save_card(convert(name, data[name], source=args.source, date=args.date), args.out / f"{name}.toml")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
