"""PMN-style calibrations (Feng et al., ACM MM 2022 / TPAMI 2023, code megvii-research/PMN) as card parts.

PMN's published code holds two kinds of parameter dict:

* a **joint model** per camera: ``Kmin``, ``Kmax`` are **ln K** (PMN draws ``ln K ~ U(Kmin, Kmax)``);
  ``sigTLk``, ``sigTLb``, ``sigTLsig`` give ln σ_TL = k · ln K + b with residual std ``sig``; ``sigR*`` the
  row σ, ``sigGs*`` the Gaussian read σ; ``lam`` one Tukey λ; ``wp``, ``bl`` white and black level;
* a **per-ISO** entry: ``Kmax`` (here the *linear* K at that ISO), ``lam``, ``sigTL``, ``sigGs``, ``sigR``,
  ``bias`` (black-level error) and spreads ``*sig``.

:func:`joint_from_pmn` and :func:`iso_entry_from_pmn` map them onto :class:`~noisesim.card.JointModel` and
:class:`~noisesim.card.ISOEntry` unchanged (natural logarithms and DN throughout, as PMN).
"""

from __future__ import annotations

import math
from typing import Mapping

from ..card import ISOEntry, JointModel, JointProfile, LogLinearFit

__all__ = ["PMN_CITATION", "joint_from_pmn", "iso_entry_from_pmn", "pmn_fit"]

PMN_CITATION = (
    "H. Feng, L. Wang, Y. Wang, H. Huang, 'Learnability Enhancement for Low-light Raw Denoising: Where Paired "
    "Real Data Meets Noise Modeling', ACM MM 2022 (PMN), and its IEEE TPAMI extension"
)


def pmn_fit(model: Mapping, prefix: str) -> LogLinearFit:
    """``{prefix}k``, ``{prefix}b``, ``{prefix}sig`` → ln σ = k · ln K + b + N(0, sig²).

    Parameters
    ----------
    model : Mapping
        PMN's dict.
    prefix : str
        Key prefix of one σ (e.g. ``"g"``).

    Returns
    -------
    LogLinearFit
    """
    return LogLinearFit(slope=model[f"{prefix}k"], intercept=model[f"{prefix}b"], residual_std=model[f"{prefix}sig"])


def joint_from_pmn(model: Mapping, *, name: str = "PMN") -> JointModel:
    """A one-profile joint model from a PMN joint-model dict (``Kmin``/``Kmax`` are ln K).

    Parameters
    ----------
    model : Mapping
        PMN's joint-model dict.
    name : str
        Name of the one profile.

    Returns
    -------
    JointModel
    """
    kmin, kmax = math.exp(model["Kmin"]), math.exp(model["Kmax"])
    profile = JointProfile(name=name, k_min_dn_per_e=kmin, k_max_dn_per_e=kmax, tukey_scale_dn=pmn_fit(model, "sigTL"),
                           read_sigma_dn=pmn_fit(model, "sigGs"), row_sigma_dn=pmn_fit(model, "sigR"))
    return JointModel(k_min_dn_per_e=kmin, k_max_dn_per_e=kmax, profiles=(profile,), tukey_lambda_values=(model["lam"],))


def iso_entry_from_pmn(entry: Mapping, iso: float, *, with_bias: bool) -> ISOEntry:
    """One ``[[iso]]`` row from a PMN per-ISO dict (``Kmax`` is the linear K at that ISO).

    ``with_bias`` puts PMN's ``bias`` into ``black_level_error_dn`` (the same value at the four sites).

    Parameters
    ----------
    entry : Mapping
        PMN's per-ISO dict.
    iso : float
        Its ISO.
    with_bias : bool
        Keep PMN's bias as the black-level error.

    Returns
    -------
    ISOEntry
    """
    bias = entry["bias"]
    return ISOEntry(iso=iso, gain_k_dn_per_e=entry["Kmax"], read_sigma_dn=entry["sigGs"], tukey_lambda=entry["lam"],
                    tukey_scale_dn=entry["sigTL"], row_sigma_dn=entry["sigR"],
                    black_level_error_dn=(bias,) * 4 if with_bias else None)
