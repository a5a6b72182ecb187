"""Drawing noise parameters from a data card: the joint ISO model (sample first, apply second).

ELD (Wei et al., CVPR 2020, §3.3 / TPAMI 2021) models the noise parameters of a camera jointly over its
gains: ``ln K ~ U(ln K_min, ln K_max)`` and, for each x ∈ {σ_TL, σ_Gauss, σ_row},
``ln σ_x | ln K ~ N(a_x · ln K + b_x, s_x²)`` (natural logarithms). PMN (Feng et al., ACM MM 2022) adds
per-ISO black-level errors. See docs/model.md, "Sampling parameters across ISO".

:func:`sample_params` returns a :class:`~noisesim.params.NoiseParams`; together with a seed it fully
determines a noisy frame, so a clean/noisy pair or a burst can share one draw and a dataset can store it.
"""

from __future__ import annotations

import math

import numpy as np

from .card import Card, ISOEntry, JointProfile, _is_number
from .errors import ParameterError, UnknownISOError
from .params import READ_MODELS, NoiseParams

__all__ = ["sample_params"]

_SIGMAS = ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn")


def _nearest_entry(card: Card, gain_k_dn_per_e: float) -> ISOEntry | None:
    """The ISO-table row nearest to K in ln K (ties → the lower ISO), or None without a table."""
    if not card.iso_table:
        return None
    lk = math.log(gain_k_dn_per_e)
    return min(card.iso_table, key=lambda e: abs(math.log(e.gain_k_dn_per_e) - lk))


def _choose_profile(card: Card, gain_k_dn_per_e: float, u: float) -> JointProfile:
    """A profile covering K, chosen by weight with the uniform ``u``; the nearest in ln K if none covers K."""
    joint = card.joint
    covering = joint.profiles_covering(gain_k_dn_per_e)
    if not covering:  # only for K from an ISO table slightly outside the joint range: extrapolate the nearest fit
        lk = math.log(gain_k_dn_per_e)
        dist = lambda p: max(math.log(p.k_min_dn_per_e) - lk, lk - math.log(p.k_max_dn_per_e))  # noqa: E731
        return min(joint.profiles, key=dist)
    weights = np.array([p.weight for p in covering])
    cum = np.cumsum(weights / weights.sum())
    return covering[int(min(np.searchsorted(cum, u, side="right"), len(covering) - 1))]


def _sigmas_from_table(card: Card, gain_k_dn_per_e: float) -> dict[str, float]:
    """σ's at K interpolated linearly in (ln K, ln σ) between the neighbouring ISO-table rows (no joint model)."""
    ks = np.log([e.gain_k_dn_per_e for e in card.iso_table])
    lk = math.log(gain_k_dn_per_e)
    out = {}
    for name in _SIGMAS:
        vals = np.array([getattr(e, name) for e in card.iso_table])
        if np.any(vals <= 0):  # a zero σ cannot be interpolated in log space: go linear in σ
            out[name] = float(np.interp(lk, ks, vals))
        else:
            out[name] = float(np.exp(np.interp(lk, ks, np.log(vals))))
    return out


def _black_level_error(card: Card, gain_k_dn_per_e: float, nearest: ISOEntry | None) -> tuple:
    """The nearest table row's black-level error, else the joint model's ln K bin holding K, else zeros."""
    if nearest is not None and nearest.black_level_error_dn is not None:
        return nearest.black_level_error_dn
    joint = card.joint
    if joint is not None and joint.black_level_error_bins:
        return joint.black_level_error_bins[joint.black_level_bin(gain_k_dn_per_e)]
    return (0.0, 0.0, 0.0, 0.0)


def _entry_params(card: Card, entry: ISOEntry) -> dict:
    """The measured values of one table row (missing optional terms → 0; black-level error as above)."""
    return dict(
        gain_k_dn_per_e=entry.gain_k_dn_per_e,
        read_sigma_dn=entry.read_sigma_dn,
        tukey_lambda=entry.tukey_lambda,
        tukey_scale_dn=entry.tukey_scale_dn,
        row_sigma_dn=entry.row_sigma_dn,
        col_sigma_dn=entry.col_sigma_dn or 0.0,
        black_level_error_dn=_black_level_error(card, entry.gain_k_dn_per_e, entry),
        dark_current_e_per_s=entry.dark_current_e_per_s or 0.0,
        iso=entry.iso,
        **_per_iso_levels(entry),
    )


def _per_iso_levels(entry: ISOEntry | None) -> dict:
    """The row's own black level and hot-pixel dark current (card schema /2), where it has them."""
    if entry is None:
        return {}
    return dict(black_level_dn=entry.black_level_dn, hot_pixel_dark_current_e_per_s=entry.hot_pixel_dark_current_e_per_s)


def _params_at_k(card: Card, gain_k_dn_per_e: float, rng: np.random.Generator, *, scatter: bool) -> dict:
    """σ's, λ, black-level error and the optional terms at a given K (the shared part of all three paths).

    Draw order (fixed, so ``scatter=False`` changes no other draw): profile uniform, three standard normals
    (σ_TL, σ_Gauss, σ_row), λ index.
    """
    u_profile = rng.random()
    z = rng.standard_normal(3)
    u_lambda = rng.random()
    joint = card.joint
    if joint is not None:
        profile = _choose_profile(card, gain_k_dn_per_e, u_profile)
        sig = {}
        for x, name in zip(z, _SIGMAS):
            fit = profile.fit(name)
            log_sigma = fit.mean_log(gain_k_dn_per_e) + (fit.residual_std * x if scatter else 0.0)
            sig[name] = float(np.exp(log_sigma))
    else:
        sig = _sigmas_from_table(card, gain_k_dn_per_e)

    nearest = _nearest_entry(card, gain_k_dn_per_e)
    if nearest is not None:
        lam = nearest.tukey_lambda
    elif joint.tukey_lambda_values:  # no table → joint is not None
        vals = joint.tukey_lambda_values
        lam = vals[min(int(u_lambda * len(vals)), len(vals) - 1)]
    else:  # unreachable: Card validation requires tukey_lambda_values when there is no table
        raise ParameterError(f"card {card.name!r} has no Tukey λ (no ISO table, no joint.tukey_lambda_values)")

    return dict(
        gain_k_dn_per_e=float(gain_k_dn_per_e),
        tukey_lambda=lam,
        black_level_error_dn=_black_level_error(card, gain_k_dn_per_e, nearest),
        col_sigma_dn=(nearest.col_sigma_dn or 0.0) if nearest is not None else 0.0,
        dark_current_e_per_s=(nearest.dark_current_e_per_s or 0.0) if nearest is not None else 0.0,
        **_per_iso_levels(nearest),
        **sig,
    )


def _equivalent_iso(card: Card, gain_k_dn_per_e: float) -> float | None:
    """The ISO at which the card's table gives this K: interpolated in (ln K, ln ISO) inside the table, and
    K ∝ ISO from the nearest end outside it (analogue gain; EMVA 1288). None without a table.

    Needed wherever a term is defined per ISO, such as dark shading DS(iso) = k·iso + b.
    """
    if not card.iso_table:
        return None
    ks = np.log([e.gain_k_dn_per_e for e in card.iso_table])
    isos = np.log(card.isos)
    lk = math.log(gain_k_dn_per_e)
    if lk <= ks[0]:
        return float(np.exp(isos[0] + lk - ks[0]))
    if lk >= ks[-1]:
        return float(np.exp(isos[-1] + lk - ks[-1]))
    return float(np.exp(np.interp(lk, ks, isos)))


def _fmt_isos(card: Card) -> str:
    return ", ".join(f"{iso:g}" for iso in card.isos)


def _iso_params(card: Card, iso: float, rng: np.random.Generator, scatter: bool) -> dict:
    if not card.iso_table:
        kmin, kmax = card.k_range_dn_per_e
        raise UnknownISOError(
            f"card {card.name!r} has no per-ISO table, so it cannot serve iso={iso:g}; "
            f"pass gain_k_dn_per_e= (K range {kmin:.4g}–{kmax:.4g} DN/e⁻) or neither to draw a random K"
        )
    entry = card.iso_entry(iso)
    if entry is not None:
        return _entry_params(card, entry)
    isos = card.isos
    if not isos[0] < iso < isos[-1]:
        raise UnknownISOError(
            f"card {card.name!r} cannot serve iso={iso:g}: calibrated ISOs are {_fmt_isos(card)} "
            f"(ISOs between them are interpolated; outside {isos[0]:g}–{isos[-1]:g} is not extrapolated)"
        )
    log_k = np.interp(math.log(iso), np.log(isos), np.log([e.gain_k_dn_per_e for e in card.iso_table]))
    out = _params_at_k(card, float(np.exp(log_k)), rng, scatter=scatter)
    out["iso"] = float(iso)
    return out


def sample_params(
    card: Card,
    *,
    iso: float | None = None,
    gain_k_dn_per_e: float | None = None,
    rng=None,
    read_model: str = "tukey",
    scatter: bool = True,
    exposure_s: float = 0.0,
) -> NoiseParams:
    """Draw one set of noise parameters from a card's joint ISO model (ELD; docs/model.md).

    Three ways to pick the gain:

    * neither ``iso`` nor ``gain_k_dn_per_e``: ``ln K ~ U(ln K_min, ln K_max)`` over the card's K range;
    * ``gain_k_dn_per_e=K``: K fixed (must lie in the card's K range);
    * ``iso=N``: needs the card's per-ISO table. A tabled ISO returns that row's measured values exactly
      (no scatter); between tabled ISOs, K is interpolated linearly in (ln ISO, ln K) and the σ's come from
      the joint model at that K.

    At a given K: a profile covering K is chosen by weight (ELD's NikonD850 has two; a dual-gain sensor has
    one per side of its switch); ``ln σ_x = slope_x · ln K + intercept_x + ε_x``, ``ε_x ~ N(0, s_x²)``
    independently for x ∈ {σ_TL, σ_Gauss, σ_row} (``scatter=False`` drops ε, giving the median σ); λ, the
    black-level error, column σ, dark current (bulk and hot-pixel) and the black level (card schema /2)
    come from the ISO-table row nearest in ln K; a card
    without a table draws λ uniformly from ``joint.tukey_lambda_values`` and takes the black-level error
    of the equal-width ln K bin holding K (ELD's ``color_bias``). A card without a joint model interpolates
    the σ's between table rows in (ln K, ln σ).

    Parameters
    ----------
    card : Card
    iso : float, optional
        ISO setting (needs the card's per-ISO table).
    gain_k_dn_per_e : float, optional
        System gain K [DN/e⁻]; exclusive with ``iso``.
    rng : int, numpy.random.SeedSequence, numpy.random.Generator or None
        As :func:`numpy.random.default_rng`; the global RNG is never used.
    read_model : {"tukey", "gaussian"}
        Read-noise distribution recorded in the result (both σ_TL/λ and σ_Gauss are always filled).
    scatter : bool
        Add the residual scatter of the log-linear fits (True, as ELD) or use the fitted σ's.
    exposure_s : float
        Exposure time [s] of the (short) frame, for dark current.

    Returns
    -------
    NoiseParams
        ``iso`` is the requested ISO on the ISO path; on the other paths the card's equivalent ISO of K
        (see :func:`_equivalent_iso`), or None for a card without an ISO table.

    Raises
    ------
    UnknownISOError
        ``iso`` outside the card's table, or a card without a table.
    ParameterError
        ``gain_k_dn_per_e`` outside the card's K range, both ``iso`` and ``gain_k_dn_per_e`` given, or a bad
        ``read_model``.

    Examples
    --------
    >>> from noisesim.card import load_card
    >>> card = load_card("SonyA7S2")
    >>> sample_params(card, iso=1600).gain_k_dn_per_e
    1.53
    >>> p = sample_params(card, rng=0)   # random K over the card's range
    >>> card.k_range_dn_per_e[0] <= p.gain_k_dn_per_e <= card.k_range_dn_per_e[1]
    True
    """
    if not isinstance(card, Card):
        raise ParameterError(f"sample_params needs a Card (see noisesim.load_card), got {type(card).__name__}")
    if read_model not in READ_MODELS:
        raise ParameterError(f"read_model must be one of {READ_MODELS}, got {read_model!r}")
    if iso is not None and gain_k_dn_per_e is not None:
        raise ParameterError("give iso or gain_k_dn_per_e, not both (an ISO fixes K through the card's table)")
    rng = np.random.default_rng(rng)

    if iso is not None:
        if not _is_number(iso) or not math.isfinite(iso) or iso <= 0:
            raise ParameterError(f"iso must be a positive number, got {iso!r}")
        values = _iso_params(card, float(iso), rng, scatter)
    else:
        kmin, kmax = card.k_range_dn_per_e
        if gain_k_dn_per_e is None:
            k = float(np.exp(rng.uniform(math.log(kmin), math.log(kmax))))
        else:
            k = gain_k_dn_per_e
            if not _is_number(k) or not math.isfinite(k):
                raise ParameterError(f"gain_k_dn_per_e must be a finite number, got {k!r}")
            tol = 1e-9 * kmax
            if not kmin - tol <= k <= kmax + tol:
                raise ParameterError(
                    f"gain_k_dn_per_e={k:g} is outside the K range of card {card.name!r}: {kmin:.6g}–{kmax:.6g} DN/e⁻"
                )
            k = float(min(max(k, kmin), kmax))
        values = _params_at_k(card, k, rng, scatter=scatter)
        values["iso"] = _equivalent_iso(card, k)
    return NoiseParams(read_model=read_model, exposure_s=exposure_s, **values)
