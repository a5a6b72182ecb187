"""Shipped noisesim data cards (``*.toml``), installed as ``noisesim.data_cards`` and found by
:func:`noisesim.card.list_cards` through :mod:`importlib.resources`.

This package holds data only. The published numbers the cards are built from, and the script that
rebuilds them, live in ``data_cards/sources/`` of the repository (not installed).
"""
