"""noisesim: physics-based camera RAW noise simulation, calibration and paired raw-data synthesis.

Quick tour::

    import noisesim as ns
    card = ns.load_card("SonyA7S2")
    noisy = ns.simulate(clean, card=card, iso=1600, ratio=100, rng=0)   # the card's maps included
    params = ns.sample_params(card, iso=1600, rng=0)                     # or sample first …
    noisy = ns.simulate(clean, params, card=card, ratio=100, rng=0)     # … apply second
"""

__version__ = "0.1.0"

from .cfa import CFA, PATTERNS  # noqa: E402
from .errors import (  # noqa: E402,F401
    CalibrationError, CardError, CFAError, ClusterError, DatasetError, InputFileError, NoiseSimError, ParameterError,
    ShapeError, UnknownCardError, UnknownISOError,
)
from .params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor  # noqa: E402
from .card import Card, list_cards, load_card, save_card  # noqa: E402
from .noise import simulate  # noqa: E402
from .sampling import sample_params  # noqa: E402

__all__ = [
    "CFA", "PATTERNS", "Card", "FixedPatternMaps", "NoiseComponents", "NoiseParams", "Sensor", "list_cards", "load_card",
    "save_card", "simulate", "sample_params", "generate_dataset", "inspect_dataset", "resynthesize",
    "CalibrationError", "CardError", "CFAError", "ClusterError", "DatasetError", "InputFileError", "NoiseSimError",
    "ParameterError", "ShapeError", "UnknownCardError", "UnknownISOError", "__version__",
]

_LAZY = {
    "generate_dataset": "noisesim.dataset",
    "inspect_dataset": "noisesim.dataset",
    "resynthesize": "noisesim.dataset",
}


def __getattr__(name):  # dataset helpers import h5py: load them on first use only
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'noisesim' has no attribute {name!r}")
