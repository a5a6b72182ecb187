"""Shipped noisesim data cards (``*.toml``, schema ``noisesim.card/1``), found by :func:`noisesim.card.list_cards`.

This package holds data only; regenerate the ELD cards with ``python data_cards/build_eld_cards.py``.
"""
