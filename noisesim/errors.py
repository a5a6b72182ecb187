"""The exception tree of noisesim.

Every error a user can cause derives from :class:`NoiseSimError`; the subclasses also derive from the
builtin a caller would naturally catch (``ValueError``, ``KeyError``, ``OSError``). Messages say what was
expected, what was found and, where a file is involved, which file.
"""

from __future__ import annotations

__all__ = [
    "NoiseSimError",
    "CFAError",
    "ShapeError",
    "ParameterError",
    "CardError",
    "UnknownCardError",
    "UnknownISOError",
    "InputFileError",
    "CalibrationError",
    "DatasetError",
    "ClusterError",
]


class NoiseSimError(Exception):
    """Base class of every noisesim error."""


class CFAError(NoiseSimError, ValueError):
    """Unknown CFA pattern, or an image whose shape does not fit its CFA."""


class ShapeError(NoiseSimError, ValueError):
    """Arrays whose shapes do not match what the operation needs."""


class ParameterError(NoiseSimError, ValueError):
    """A noise parameter outside its physical range (negative sigma, K <= 0, ...)."""


class CardError(NoiseSimError, ValueError):
    """A data card that cannot be parsed or fails validation; the message names file and field."""


class UnknownCardError(NoiseSimError, KeyError):
    """A card name that is neither a shipped card nor an existing file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownISOError(NoiseSimError, KeyError):
    """An ISO the card cannot serve (outside its calibrated range, or the card has no ISO table)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputFileError(NoiseSimError, OSError):
    """A file that is missing, corrupted, or of the wrong kind; the message names it."""


class CalibrationError(NoiseSimError, ValueError):
    """Captures from which a figure cannot be estimated soundly."""


class DatasetError(NoiseSimError, ValueError):
    """A dataset that cannot be written or read as documented."""


class ClusterError(NoiseSimError, RuntimeError):
    """A Dask cluster that cannot be used: the ``noisesim[dask]`` extra missing, a scheduler address that
    does not answer, a scheduler file that does not exist, or workers that keep dying."""
