"""``noisesim cards``: list, search, show, compare and import data cards.

    noisesim cards                      # table of shipped cards, with each card's kind
    noisesim cards search canon 6d      # shipped cards whose make/model match (case, punctuation ignored)
    noisesim cards show SonyA7S2        # readable summary (a name or a path to a .toml card)
    noisesim cards show my.toml --toml  # the card's TOML text
    noisesim cards compare SonyA7S2 IMX686 my.toml --output cmp.png   # K and read noise vs ISO
    noisesim cards import a.dng b.dng --output my.toml                # from DNG NoiseProfile tags
    noisesim cards import noiseprofiles.json --camera "Canon EOS 6D" --output 6d.toml   # darktable
    noisesim cards import capture_results.json --output phone.toml   # Android camera2 dump
    noisesim cards import SonyA7S2_params.npy --output a7s2.toml     # ELD-style parameter file
"""

from __future__ import annotations

import argparse
import logging
import textwrap

from pathlib import Path

from ..card import Card, list_cards, load_card, save_card
from . import describe_card, usage_error

log = logging.getLogger("noisesim.cards")

__all__ = ["ACTIONS", "API_OPTIONS", "add_parser", "format_card", "format_card_list", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``cards`` sub-command and its options on ``sub`` (argparse sub-parsers).

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
        "cards",
        help="list, search, show, compare or import data cards",
        description="List or search the shipped camera data cards, show one, plot several against each other, "
        "or import a card from noise profiles you already have (DNG NoiseProfile tags, darktable's "
        "noiseprofiles.json, an Android camera2 capture-result dump, an ELD parameter .npy).",
    )
    p.add_argument("action", nargs="?", choices=ACTIONS, default="list", help="list (default), search, show, compare or import")
    p.add_argument("items", nargs="*", metavar="ARG",
                   help="list/search: search words; show: NAME|PATH; compare: cards; import: source files")
    p.add_argument("--toml", action="store_true", help="with show: print the card's raw TOML text")
    p.add_argument("--output", "-o", type=Path, metavar="PATH",
                   help="compare: the PNG to write; import: the card .toml to write (needed by both)")
    p.add_argument("--camera", metavar='"MAKER MODEL"',
                   help="import from darktable: the camera, e.g. \"Canon EOS 6D\" (needed there: the file holds many)")
    p.add_argument("--name", help="import: the card's name (default: from the camera)")
    p.add_argument("--black-level", type=float, metavar="DN",
                   help="import from darktable or ELD (which carry no levels): the camera's raw black level [DN] "
                        "(needed there)")
    p.add_argument("--white-level", type=float, metavar="DN",
                   help="import from darktable or ELD: the raw white level [DN] (needed there)")
    p.set_defaults(run=run, api_options=API_OPTIONS)
    return p


ACTIONS = ("list", "search", "show", "compare", "import")
# API parameter → option, for error messages (noisesim.cli.cli_message)
API_OPTIONS = {"black_level_dn": "--black-level", "white_level_dn": "--white-level", "camera": "--camera",
               "name": "--name"}


def _usage_error(message: str) -> int:
    return usage_error("noisesim cards", message)


def run(args) -> int:
    """Run ``noisesim cards`` with parsed ``args``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of the sub-command.

    Returns
    -------
    int
        0 ok, 1 a failed check, 2 bad input.
    """
    if args.action in ("list", "search"):
        if args.action == "search" and not args.items:
            return _usage_error("'search' needs words to look for, e.g. noisesim cards search canon 6d")
        query = " ".join(args.items)
        log.info("%d shipped cards: %s", len(list_cards()), ", ".join(list_cards()))
        text = format_card_list(query or None)
        print(text)
        return 0 if text.startswith("NAME") or not query else 1
    if args.action == "show":
        if len(args.items) != 1:
            return _usage_error("'show' needs a card: one NAME or PATH (the list: noisesim cards)")
        card = load_card(args.items[0])
        log.info("%s", describe_card(card))
        print(card.text if args.toml else format_card(card), end="" if args.toml else "\n")
        return 0
    if args.output is None:
        return _usage_error(f"'{args.action}' needs --output ({'a .png' if args.action == 'compare' else 'a card .toml'})")
    if not args.items:
        return _usage_error(f"'{args.action}' needs at least one {'card' if args.action == 'compare' else 'source file'}")
    if args.action == "compare":
        from ..cardplot import plot_cards

        cards = [load_card(c) for c in args.items]
        for card in cards:
            log.info("%s", describe_card(card))
        path = plot_cards(cards, args.output)
        print(f"wrote {path}")
        return 0
    from ..importers import import_card

    card = import_card(args.items, camera=args.camera, name=args.name, black_level_dn=args.black_level,
                       white_level_dn=args.white_level)
    save_card(card, args.output)
    log.info("imported from %s: %s", ", ".join(args.items), describe_card(card))
    print(f"wrote {args.output}: {card.name} ({card.kind}, {len(card.iso_table)} ISO rows); "
          f"source: {card.provenance.get('source', '')}")
    return 0


# --------------------------------------------------------------------------------------------------
def _g(x, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def _short(text, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _camera_label(card: Card) -> str:
    make, model = card.camera.make, card.camera.model
    if model.lower().startswith(make.lower()):  # "Canon" + "Canon EOS 70D"
        make = ""
    return " ".join(x for x in (make, model) if x) or card.camera.name


def _range_text(card: Card) -> str:
    if card.iso_table:
        return f"ISO {card.isos[0]:g}–{card.isos[-1]:g} ({len(card.iso_table)} rows)"
    lo, hi = card.k_range_dn_per_e
    return f"K {_g(lo, 3)}–{_g(hi, 3)} DN/e⁻"


def format_card_list(query: str | None = None) -> str:
    """The table ``noisesim cards`` prints: one line per shipped card (those matching ``query``, if given;
    see :func:`noisesim.card.camera_matches`).

    Parameters
    ----------
    query : str, optional
        Search words.

    Returns
    -------
    str
    """
    rows = [("NAME", "CAMERA", "KIND", "CFA", "BITS", "RANGE", "SOURCE")]
    for name in list_cards():
        card = load_card(name)
        if query is not None and not card.matches(query):
            continue
        camera = _camera_label(card)
        source = card.provenance.get("source", "")
        rows.append((name, camera, card.kind, card.sensor.cfa.pattern, str(card.sensor.bit_depth), _range_text(card), _short(source, 64)))
    if len(rows) == 1:
        if query is not None:
            return f"no shipped card matches {query!r} (the list: noisesim cards; import your own: noisesim cards import)"
        return "no shipped cards found (data_cards/ is missing from this installation)"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows)


def format_card(card: Card) -> str:
    """A readable multi-line summary of a card: levels, per-ISO table, joint fits, maps, provenance.

    Parameters
    ----------
    card : Card

    Returns
    -------
    str
    """
    s = card.sensor
    sites = ", ".join(s.cfa.site_names)
    lines = [f"{card.name}: {_camera_label(card)}"]
    if card.source_path is not None:
        lines.append(f"  file:   {card.source_path}")
    lines += [
        f"  kind:   {card.kind}" + (" (K and Gaussian read σ only: no Tukey-lambda, row or map terms)" if card.kind == "poisson-gaussian" else ""),
        f"  sensor: CFA {s.cfa.pattern}, {s.bit_depth}-bit",
        f"          black level [{', '.join(_g(v, 6) for v in s.black_level_dn)}] DN, "
        f"white level [{', '.join(_g(v, 6) for v in s.white_level_dn)}] DN  (sites {sites})",
    ]
    if card.iso_table:
        lines += ["", f"Per-ISO table ({len(card.iso_table)} rows; σ in DN, K in DN/e⁻, dark current in e⁻/s):"]
        head = f"  {'ISO':>7} {'K':>8} {'σ_read':>7} {'λ':>7} {'σ_TL':>7} {'σ_row':>7} {'σ_col':>7} {'dark':>7}  black-level error ({sites})"
        lines.append(head)
        for e in card.iso_table:
            opt = lambda v: "–" if v is None else _g(v)  # noqa: E731
            lam = "–" if e.tukey_lambda is None else f"{e.tukey_lambda:.3f}"
            ble = "–" if e.black_level_error_dn is None else ", ".join(f"{v:+.3f}" for v in e.black_level_error_dn)
            lines.append(
                f"  {e.iso:>7g} {_g(e.gain_k_dn_per_e):>8} {_g(e.read_sigma_dn):>7} {lam:>7} "
                f"{opt(e.tukey_scale_dn):>7} {opt(e.row_sigma_dn):>7} {opt(e.col_sigma_dn):>7} {opt(e.dark_current_e_per_s):>7}  {ble}"
            )
            v2 = [f"{label} {_g(v)}{unit}" for label, v, unit in (  # schema /2 keys, where present
                ("EMVA 1288 σ_d", e.read_noise_e, " e⁻"), ("μ_e.sat", e.saturation_capacity_e, " e⁻"),
                ("DR", e.dynamic_range_db, " dB"), ("hot-pixel dark current", e.hot_pixel_dark_current_e_per_s, " e⁻/s")) if v is not None]
            if e.black_level_dn is not None:
                v2.insert(0, f"black level [{', '.join(_g(v, 6) for v in e.black_level_dn)}] DN")
            if v2:
                lines.append(f"  {'':>7} " + "; ".join(v2))
            for key, ci in e.ci.items():
                text = "; ".join(f"[{_g(a)}, {_g(b)}]" for a, b in ci) if key == "black_level_error_dn" else f"[{_g(ci[0])}, {_g(ci[1])}]"
                lines.append(f"  {'':>7} 95 % CI {key}: {text}")
    j = card.joint
    if j is not None:
        lines += ["", f"Joint model: ln K ~ U(ln {_g(j.k_min_dn_per_e)}, ln {_g(j.k_max_dn_per_e)}), K in DN/e⁻"]
        if j.dual_gain_switch_iso is not None:
            lines.append(f"  dual-gain sensor: first high-gain ISO {j.dual_gain_switch_iso:g}")
        for p in j.profiles:
            lines.append(f"  profile {p.name!r}: weight {_g(p.weight)}, K {_g(p.k_min_dn_per_e)}–{_g(p.k_max_dn_per_e)}")
            for label, name in (("σ_TL  ", "tukey_scale_dn"), ("σ_read", "read_sigma_dn"), ("σ_row ", "row_sigma_dn")):
                f = p.fit(name)
                lines.append(f"    ln {label} = {f.slope:.4f} · ln K {'+' if f.intercept >= 0 else '−'} {abs(f.intercept):.4f}   (residual std {f.residual_std:.4f})")
        if j.tukey_lambda_values:
            vals = ", ".join(f"{v:.3f}" for v in j.tukey_lambda_values)
            lines += textwrap.wrap(f"Tukey λ values ({len(j.tukey_lambda_values)}): {vals}", 100, initial_indent="  ", subsequent_indent="    ")
        if j.black_level_error_bins:
            lines.append(f"  black-level error bins over ln K ({len(j.black_level_error_bins)}; {sites}, DN):")
            lines += [f"    {i:>2}: " + ", ".join(f"{v:+.3f}" for v in b) for i, b in enumerate(j.black_level_error_bins)]
    lines.append("")
    if card.maps_file is not None:
        lines.append(f"Maps: {card.maps_file} (sha256 {card.maps_sha256[:16]}…), loaded on use")
    else:
        lines.append("Maps: none")
    if card.provenance:
        lines += ["", "Provenance:"]
        for key, value in card.provenance.items():
            if isinstance(value, (list, tuple)):
                lines.append(f"  {key}:")
                for item in value:
                    lines += textwrap.wrap(str(item), 100, initial_indent="    - ", subsequent_indent="      ")
            else:
                lines += textwrap.wrap(f"{key}: {value}", 100, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(lines)
