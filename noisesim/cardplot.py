"""A comparison plot of several data cards: system gain K and read noise against ISO (PNG).

Cards with a per-ISO table are drawn as points joined by lines in each panel; a card with only a joint
model (no ISO axis) appears in the third panel only, as the median read σ of its fit over its K range.
K and σ are in DN of each card's own raw scale (a 10-bit and a 14-bit camera differ by 16× in DN).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_path
from .card import Card
from .errors import InputFileError

__all__ = ["plot_cards"]


def plot_cards(cards: Sequence[Card], output: str | os.PathLike) -> Path:
    """Write a PNG with three panels: K [DN/e⁻] vs ISO, Gaussian read σ [DN] vs ISO, read σ vs K.

    Parameters
    ----------
    cards : sequence of Card
        At least one.
    output : path
        ``.png`` file, written atomically (temporary name, then rename).

    Returns
    -------
    Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    if output.suffix.lower() != ".png":
        raise InputFileError(f"{output}: the comparison plot is written as PNG; name it *.png")
    if not output.parent.is_dir():
        raise InputFileError(f"{output}: the output folder {output.parent} does not exist")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax_k, ax_r, ax_rk = axes
    for i, card in enumerate(cards):
        colour = f"C{i % 10}"
        label = f"{card.name} ({card.kind}, {card.sensor.bit_depth}-bit)"
        if card.iso_table:
            iso = np.array(card.isos)
            k = np.array([e.gain_k_dn_per_e for e in card.iso_table])
            r = np.array([e.read_sigma_dn for e in card.iso_table])
            ax_k.plot(iso, k, "o-", color=colour, label=label, ms=4)
            ax_r.plot(iso, r, "o-", color=colour, label=label, ms=4)
            ax_rk.plot(k, r, "o", color=colour, label=label, ms=4)
        if card.joint is not None:
            for p in card.joint.profiles:
                ks = np.geomspace(p.k_min_dn_per_e, p.k_max_dn_per_e, 64)
                ax_rk.plot(ks, p.read_sigma_dn.median(ks), "-", color=colour,
                           label=f"{card.name} joint {p.name}" if not card.iso_table else None)
    for ax, (xl, yl) in zip(axes, (("ISO", "K [DN/e⁻]"), ("ISO", "Gaussian read σ [DN]"), ("K [DN/e⁻]", "Gaussian read σ [DN]"))):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
    ax_k.set_title("System gain K (EMVA 1288) vs ISO")
    ax_r.set_title("Read noise vs ISO")
    ax_rk.set_title("Read noise vs K (joint fits as lines)")
    ax_rk.legend(fontsize=7, loc="best")
    fig.suptitle("DN of each card's own raw scale", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(output) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return output
