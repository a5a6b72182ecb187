"""Cards from ELD-style noise-parameter files (``<Camera>_params.npy``, as Wei et al. released for ELD).

Such a file is ``np.save`` of a Python dict, i.e. a pickle. Unpickling an untrusted file can run any code,
so it is never loaded with ``allow_pickle=True``: :func:`load_eld_params` reads the ``.npy`` header itself
and unpickles the body with an unpickler that only knows the few numpy constructors an array of floats
and dicts needs (anything else is refused, naming the file and the global it asked for).

Keys (ELD's release): ``Kmin``, ``Kmax`` (linear K range, DN/e⁻), ``Profile-n`` with log-linear fits
``G_scale`` (Tukey-lambda scale σ_TL), ``g_scale`` (Gaussian read σ), ``R_scale`` (row σ), each
``{slope, bias, sigma}`` meaning ln σ = slope · ln K + bias + N(0, sigma²); ``G_shape`` (Tukey λ per
calibrated ISO, ascending) and ``color_bias`` (black-level error per calibrated ISO, packed channel order
R, G1, B, G2).

Two conventions follow the ELD authors' released code (``noise.py``, ``NoiseModel._sample_params``):

* only ``Profile-1`` is sampled (the code fixes ``profiles = ['Profile-1']``), so a second profile (ELD's
  NikonD850) is recorded in the provenance but not put in the joint model;
* the released sampler uses neither ``G_shape`` nor ``color_bias``; noisesim keeps both, one entry per
  calibrated ISO, on equal-width bins of **ln K** over [Kmin, Kmax] (the calibrated ISOs are near-geometric
  in K, so each entry covers one ISO step; equal-width linear-K bins would put most ISOs into the first bin).
"""

from __future__ import annotations

import datetime
import importlib
import io
import math
import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import __version__
from ..card import Camera, Card, JointModel, JointProfile, LogLinearFit
from ..errors import CardError, InputFileError
from ..params import Sensor
from .profile import card_name

__all__ = ["load_eld_params", "card_from_eld_params", "card_from_eld_npy", "ELD_CITATION", "ELD_TO_BAYER_SITES"]

ELD_CITATION = (
    "K. Wei, Y. Fu, J. Yang, H. Huang, 'A Physics-based Noise Formation Model for Extreme Low-light Raw "
    "Denoising', CVPR 2020; K. Wei, Y. Fu, Y. Zheng, J. Yang, 'Physics-based Noise Modeling for Extreme "
    "Low-light Photography', IEEE TPAMI 2021"
)
# ELD's packed channel order is R, G(0,1), B(1,1), G(1,0); the Bayer site order of an RGGB card is R, G1, G2, B.
ELD_TO_BAYER_SITES = (0, 1, 3, 2)
SAMPLED_PROFILE = "Profile-1"

# (module, name) an ELD parameter pickle may reference: array and scalar reconstruction only.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}  # fmt: skip


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise InputFileError(f"{self.where}: refused to unpickle {module}.{name}: an ELD parameter file holds only "
                                 "numbers, lists and dicts (is this file what it claims to be?)")
        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise InputFileError(f"{self.where}: this numpy cannot rebuild {module}.{name}")  # pragma: no cover


def _plain(value: Any) -> Any:
    """numpy scalars/arrays inside the dict → Python floats and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_eld_params(path: str | Path) -> dict:
    """The parameter dict of an ELD-style ``.npy`` file, unpickled with a restricted unpickler.

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file.

    Returns
    -------
    dict

    Raises
    ------
    InputFileError
        Not a ``.npy`` file, not a pickled dict, or a pickle that references anything but numpy's array
        and scalar constructors.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise InputFileError(f"{path}: not a .npy file ({exc})") from None
    if dtype != np.dtype(object):
        raise InputFileError(f"{path}: a plain {dtype} array of shape {shape}; an ELD parameter file is a saved dict")
    try:
        obj = _RestrictedUnpickler(f, str(path)).load()
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 — a corrupt pickle stream is a bad file for the user
        raise InputFileError(f"{path}: cannot be read as a saved dict ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, np.ndarray) and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict):
        raise InputFileError(f"{path}: holds a {type(obj).__name__}, not the dict of an ELD parameter file")
    return _plain(obj)


def _fit(d: Mapping, where: str) -> LogLinearFit:
    try:
        return LogLinearFit(slope=float(d["slope"]), intercept=float(d["bias"]), residual_std=float(d["sigma"]))
    except (KeyError, TypeError, ValueError):
        raise InputFileError(f"{where}: needs slope, bias and sigma") from None


def card_from_eld_params(
    params: Mapping,
    *,
    name: str,
    make: str = "",
    model: str = "",
    black_level_dn: float | None = None,
    white_level_dn: float = 16383,
    bit_depth: int = 14,
    source: str = "",
    extra_provenance: Mapping | None = None,
) -> Card:
    """A physics card (joint model) from an ELD parameter dict; see the module docstring for the mapping.

    ``black_level_dn`` None means unknown (ELD's files carry none): 0 DN is used and marked unsourced.
    ``source`` names the file in errors and provenance.

    Parameters
    ----------
    params : Mapping
        ELD's dict (``Kmin``, ``Kmax``, ``G_shape``, ``color_bias``, ``Profile-1`` …).
    name : str
        The card's name.
    make, model : str
        Camera identity.
    black_level_dn : float or 4 floats, optional
        Black level [DN]; None: unknown.
    white_level_dn : float or 4 floats
        White level [DN].
    bit_depth : int
        Bits per raw sample.
    source : str
        The source file.
    extra_provenance : Mapping, optional
        Added to the card's provenance (``notes`` appended).

    Returns
    -------
    Card
    """
    where = source or name
    try:
        kmin, kmax = float(params["Kmin"]), float(params["Kmax"])
        shapes = [float(v) for v in params["G_shape"]]
        bias = [[float(x) for x in v] for v in params["color_bias"]]
    except (KeyError, TypeError, ValueError):
        raise InputFileError(f"{where}: an ELD parameter dict needs Kmin, Kmax, G_shape and color_bias") from None
    if SAMPLED_PROFILE not in params:
        raise InputFileError(f"{where}: no {SAMPLED_PROFILE} (ELD's sampler uses {SAMPLED_PROFILE})")
    if any(len(v) != 4 for v in bias):
        raise InputFileError(f"{where}: color_bias entries must hold 4 values (R, G1, B, G2)")
    fits = {k: _fit(params[SAMPLED_PROFILE][v], f"{where}: {SAMPLED_PROFILE}.{v}")
            for k, v in (("tukey_scale_dn", "G_scale"), ("read_sigma_dn", "g_scale"), ("row_sigma_dn", "R_scale"))}
    others = sorted(k for k in params if k.startswith("Profile-") and k != SAMPLED_PROFILE)
    notes = [
        f"Joint model: {SAMPLED_PROFILE} over K = {kmin:.6g}–{kmax:.6g} DN/e⁻ (ln K uniform), {len(shapes)} Tukey-lambda "
        f"shapes and {len(bias)} black-level-error vectors (one per calibrated ISO, ascending).",
        f"Following the ELD authors' released sampler (noise.py, NoiseModel._sample_params: profiles = ['{SAMPLED_PROFILE}']), "
        f"only {SAMPLED_PROFILE} is sampled.",
        "ELD's released sampler uses neither G_shape nor color_bias, so its code does not fix their binning; noisesim "
        "puts the entries on equal-width ln K bins over [Kmin, Kmax] (one calibrated ISO each, the ISOs being "
        "near-geometric in K), not on the equal-width linear K bins of LED's sampler.",
        "ELD's released sampler draws ln K over [ln 0.1, ln 30] for all cameras (its Kmin/Kmax line is commented out); "
        "the card keeps this camera's calibrated range [Kmin, Kmax].",
        "black_level_error_bins reordered from ELD's packed order R, G1, B, G2 to the Bayer site order R, G1, G2, B "
        "of this card's RGGB CFA.",
    ]
    for other in others:
        p = params[other]
        txt = "; ".join(f"{k}: slope {p[k]['slope']!r}, bias {p[k]['bias']!r}, sigma {p[k]['sigma']!r}" for k in ("G_scale", "g_scale", "R_scale") if k in p)
        notes.append(f"{other} (released, not sampled by ELD's code, so not in this card's joint model): {txt}")
    prov: dict = {
        "source": f"ELD-style noise parameters{f' ({Path(source).name})' if source else ''}",
        "citation": ELD_CITATION,
        "date": datetime.date.today().isoformat(),
        "software": f"noisesim {__version__} noisesim.importers.eld",
    }
    black = black_level_dn
    if black is None:
        black = 0.0
        prov["black_level_source"] = ("UNSOURCED: ELD's parameters carry no black level; 0 DN is a placeholder "
                                      "(read the level from your raw files)")
    prov.update(extra_provenance or {})
    prov["notes"] = notes + list((extra_provenance or {}).get("notes", []))
    try:
        return Card(
            camera=Camera(name=name, make=make, model=model),
            sensor=Sensor(cfa="RGGB", bit_depth=bit_depth, black_level_dn=black, white_level_dn=white_level_dn),
            joint=JointModel(
                k_min_dn_per_e=kmin,
                k_max_dn_per_e=kmax,
                profiles=(JointProfile(name=SAMPLED_PROFILE, k_min_dn_per_e=kmin, k_max_dn_per_e=kmax, **fits),),
                tukey_lambda_values=tuple(shapes),
                black_level_error_bins=tuple(tuple(v[i] for i in ELD_TO_BAYER_SITES) for v in bias),
            ),
            provenance=prov,
        )
    except (CardError, ValueError) as exc:
        raise InputFileError(f"{where}: {exc}") from None


def card_from_eld_npy(path: str | Path, *, name: str | None = None, black_level_dn: float | None = None,
                      white_level_dn: float | None = None) -> Card:
    """A card from an ELD-style ``<Camera>_params.npy`` (restricted unpickling; 14-bit range by default).

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file.
    name : str, optional
        The card's name (default: from the file name).
    black_level_dn : float, optional
        Black level [DN]; None: unknown (0, marked unsourced).
    white_level_dn : float, optional
        White level [DN]; default 16383.

    Returns
    -------
    Card
    """
    path = Path(path)
    params = load_eld_params(path)
    stem = path.stem[: -len("_params")] if path.stem.endswith("_params") else path.stem
    white = 16383.0 if white_level_dn is None else float(white_level_dn)
    bits = max(8, min(16, math.ceil(math.log2(white + 1))))
    return card_from_eld_params(params, name=name or card_name("", stem, "ELDCamera"), model=stem,
                                black_level_dn=black_level_dn, white_level_dn=white, bit_depth=bits, source=str(path))
