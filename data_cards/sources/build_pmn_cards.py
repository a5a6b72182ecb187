"""Build the shipped cards of PMN's calibrations that ELD did not cover: IMX686 (a phone sensor) and CRVD.

Usage (from the repository root)::

    python data_cards/sources/build_pmn_cards.py [--source PATH] [--out data_cards] [--date YYYY-MM-DD]

Source: ``data_cards/sources/pmn_released_camera_params.json``, the numbers in PMN's published code
(megvii-research/PMN, ``data_process/process.py``, Apache-2.0), unchanged (see ``data_cards/sources/README.md``).
Field mapping: :mod:`noisesim.importers.pmn`. Every value that is not in the source is marked UNSOURCED
in the card's provenance. The Sony A7S2's 27 per-ISO entries go into ``SonyA7S2.toml``, built by
``build_eld_cards.py`` (its joint model is ELD's).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path

from noisesim.card import Camera, Card, ISOEntry, save_card
from noisesim.importers.pmn import PMN_CITATION, iso_entry_from_pmn, joint_from_pmn
from noisesim.params import Sensor

HERE = Path(__file__).resolve().parent  # data_cards/sources/ (a development script, not installed)
DEFAULT_SOURCE = HERE / "pmn_released_camera_params.json"
CRVD_CITATION = ("H. Yue, C. Cao, L. Liao, R. Chu, J. Yang, 'Supervised Raw Video Denoising with a Benchmark Dataset "
                 "on Dynamic Scenes', CVPR 2020 (the CRVD dataset)")
_CFA_UNSOURCED = ("UNSOURCED: CFA RGGB is nominal; PMN's parameters are per packed channel and do not name the "
                  "sensor's colour filter order. Set sensor.cfa from your raw files.")


def _bits(white: float) -> int:
    return int(math.ceil(math.log2(white + 1)))


def _sensor(model: dict) -> Sensor:
    return Sensor(cfa="RGGB", bit_depth=_bits(model["wp"]), black_level_dn=model["bl"], white_level_dn=model["wp"])


def _provenance(date: str, source: Path, notes: list[str], **extra) -> dict:
    return {
        "source": "PMN's published calibration (Feng et al., ACM MM 2022; megvii-research/PMN)",
        "citation": PMN_CITATION,
        "date": date,
        "software": "noisesim data_cards/sources/build_pmn_cards.py",
        "source_file": f"{source.name} (numbers from PMN's data_process/process.py, unchanged)",
        **extra,
        "notes": notes,
    }


def build_imx686(data: dict, *, source: Path, date: str) -> Card:
    jm = data["joint_models"]["IMX686"]
    joint = joint_from_pmn(jm)
    hi = iso_entry_from_pmn(data["per_iso"]["IMX686_6400"], 6400, with_bias=True)
    pt100 = data["fixed_iso_points"]["IMX686"]["100"]
    pt6400 = data["fixed_iso_points"]["IMX686"]["6400"]
    # ISO 100: PMN gives K and the Gaussian σ only; the Tukey and row terms follow PMN's own ISO 6400 entry
    # for this sensor (σ_TL = σ_Gs, σ_row = 0) and the joint model's λ.
    lo = ISOEntry(iso=100, gain_k_dn_per_e=pt100["K"], read_sigma_dn=pt100["sigGs"], tukey_lambda=jm["lam"],
                  tukey_scale_dn=pt100["sigGs"], row_sigma_dn=0.0)
    notes = [
        f"Joint model: PMN's IMX686 fit, ln K ~ U({jm['Kmin']}, {jm['Kmax']}) (PMN's Kmin/Kmax are ln K), i.e. "
        f"K = {joint.k_min_dn_per_e:.6g}–{joint.k_max_dn_per_e:.6g} DN/e⁻, one λ = {jm['lam']}; the authors' comment "
        "gives ISO 640–6400 for it.",
        "ISO 6400 row: PMN's per-ISO entry IMX686_6400 (K, λ, σ_TL, σ_Gs, σ_row, black-level error = bias at all four sites). "
        f"PMN's fixed ISO points give a different Gaussian σ at ISO 6400 ({pt6400['sigGs']} DN, K {pt6400['K']}); the "
        "per-ISO entry is used because it carries the full model.",
        "ISO 100 row: K and σ_Gs from PMN's fixed ISO points. UNSOURCED at ISO 100: tukey_lambda (the joint model's λ), "
        "tukey_scale_dn (set to σ_Gs, as PMN's IMX686_6400 entry has σ_TL = σ_Gs) and row_sigma_dn (0, as at ISO 6400).",
        "ISO 100's K lies below the joint model's K range: random draws stay inside the joint range; ISO 100 itself "
        "and ISOs between 100 and 6400 use the table.",
        _CFA_UNSOURCED,
    ]
    return Card(camera=Camera(name="IMX686", make="Sony", model="IMX686 (phone sensor)"), sensor=_sensor(jm),
                iso_table=(lo, hi), joint=joint,
                provenance=_provenance(date, source, notes, levels_source="10-bit raw, black 64, white 1023 DN: PMN's bl and wp for IMX686"))


def build_crvd(data: dict, *, source: Path, date: str) -> Card:
    jm = data["joint_models"]["CRVD"]
    joint = joint_from_pmn(jm)
    pts = data["CRVD_points"]
    prof = joint.profiles[0]
    rows = []
    for iso, k, var, bias in zip(pts["iso_list"], pts["a_list"], pts["b_list"], pts["bias_points"]):
        rows.append(ISOEntry(iso=iso, gain_k_dn_per_e=k, read_sigma_dn=math.sqrt(var), tukey_lambda=jm["lam"],
                             tukey_scale_dn=float(prof.tukey_scale_dn.median(k)), row_sigma_dn=float(prof.row_sigma_dn.median(k)),
                             black_level_error_dn=(bias,) * 4))
    notes = [
        f"Joint model: PMN's CRVD fit, ln K ~ U({jm['Kmin']}, {jm['Kmax']}) (ln K), i.e. K = "
        f"{joint.k_min_dn_per_e:.6g}–{joint.k_max_dn_per_e:.6g} DN/e⁻, one λ = {jm['lam']}.",
        "Per-ISO rows from PMN's CRVD points: K = a_list, read σ = √b_list (b is the read variance in DN²), "
        "black-level error = bias_points at all four sites.",
        "UNSOURCED per row: tukey_lambda (the joint model's single λ), tukey_scale_dn and row_sigma_dn (the joint "
        "model's median exp(k · ln K + b) at the row's K; PMN publishes no per-ISO σ_TL or σ_row for CRVD).",
        _CFA_UNSOURCED,
    ]
    return Card(camera=Camera(name="CRVD", make="", model="CRVD dataset camera"), sensor=_sensor(jm),
                iso_table=tuple(rows), joint=joint,
                provenance=_provenance(date, source, notes, dataset_citation=CRVD_CITATION,
                                           levels_source="12-bit raw, black 240, white 4095 DN: PMN's bl and wp for CRVD"))


BUILDERS = {"IMX686": build_imx686, "CRVD": build_crvd}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="PMN parameters as JSON")
    parser.add_argument("--out", type=Path, default=HERE.parent, help="folder for the .toml cards (default: data_cards/)")
    parser.add_argument("--date", default=datetime.date.today().isoformat(), help="conversion date recorded in provenance")
    args = parser.parse_args(argv)
    data = json.loads(args.source.read_text())
    for name, build in BUILDERS.items():
        path = save_card(build(data, source=args.source, date=args.date), args.out / f"{name}.toml")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
