"""Estimating a noisesim data card from a camera's flat and dark frames (docs/calibration.md).

>>> from noisesim.calibration import calibrate                                     # doctest: +SKIP
>>> result = calibrate("capture/", camera="Sony ILCE-7SM2")                # doctest: +SKIP
>>> result.save("sony.toml", report="sony.html")                          # doctest: +SKIP

Modules: :mod:`.capture` (reading folders, manifests, EXIF), :mod:`.accumulate` (streaming sums),
:mod:`.estimators` (PTC, PPCC, row/column, line fits, KL), :mod:`.emva_figures` (one function per measured
figure, named by its EMVA 1288 section, symbol and unit), :mod:`.pipeline` (:func:`calibrate`), :mod:`.joint_fit`
(fits across ISOs), :mod:`.card_builder` (the card from the results),
:mod:`.fidelity` (KL against real darks, :func:`validate`), :mod:`.report` (HTML), :mod:`.synthetic`
(synthetic captures from known parameters).
"""

from .capture import Capture, CaptureProblem, FrameInfo, frame_from_array, frame_from_loader, read_manifest, scan_capture
from .estimators import Estimate
from .fidelity import validate
from .pipeline import CalibrationResult, ISOResult, calibrate

__all__ = [
    "calibrate",
    "validate",
    "CalibrationResult",
    "ISOResult",
    "Estimate",
    "Capture",
    "CaptureProblem",
    "FrameInfo",
    "frame_from_array",
    "frame_from_loader",
    "read_manifest",
    "scan_capture",
]
