"""Drawing noise parameters from a data card: the joint ISO model (sample first, apply second).

ELD (Wei et al., CVPR 2020, §3.3 / TPAMI 2021) models the noise parameters of a camera jointly over its
gains: ``ln K ~ U(ln K_min, ln K_max)`` and, for each x ∈ {σ_TL, σ_Gauss, σ_row},
``ln σ_x | ln K ~ N(a_x · ln K + b_x, s_x²)`` (natural logarithms). PMN (Feng et al., ACM MM 2022) adds
per-ISO black-level errors. See docs/model.md, "Sampling parameters across ISO".

A card's measured per-ISO table takes precedence over the joint fit wherever it covers the requested
gain: between tabled ISOs it is interpolated in ln K within each gain mode, so the parameters do not jump
between a tabled ISO and its neighbours. The joint fit serves random draws and gains outside the table.

:func:`sample_params` returns a :class:`~noisesim.params.NoiseParams`; together with a seed it fully
determines a noisy frame, so a clean/noisy pair or a burst can share one draw and a dataset can store it.
"""

from __future__ import annotations

import math

import numpy as np

from .card import Card, ISOEntry, JointProfile
from .errors import ParameterError, UnknownISOError
from .params import READ_MODELS, NoiseParams, is_real_number

__all__ = ["sample_params"]

_SIGMAS = ("tukey_scale_dn", "read_sigma_dn", "row_sigma_dn")


class _TableLogs:
    """Logarithms of one ISO table's gains and ISOs, computed once per table (a draw used to redo them per
    sample): exactly the expressions the functions below evaluated each time, so the values are the same."""

    __slots__ = ("table", "log_k", "log_k_array", "log_iso_array", "k_min", "k_max", "modes")

    def __init__(self, table: tuple) -> None:
        self.table = table  # held, so the id() key below cannot be reused while this entry lives
        self.log_k = tuple(math.log(e.gain_k_dn_per_e) for e in table)
        self.log_k_array = np.log([e.gain_k_dn_per_e for e in table])
        self.log_iso_array = np.log(tuple(e.iso for e in table))
        ks = [e.gain_k_dn_per_e for e in table]
        self.k_min, self.k_max = (min(ks), max(ks)) if ks else (math.nan, math.nan)
        self.modes: dict = {}  # (switch ISO, high side) → (rows, ln K array) of one gain mode
        for a in (self.log_k_array, self.log_iso_array):
            a.flags.writeable = False

    def mode_rows(self, switch, high: bool) -> tuple[tuple, np.ndarray]:
        key = (switch, high)
        if key not in self.modes:
            rows = tuple(e for e in self.table if (e.iso >= switch) == high) or self.table
            ks = np.log([e.gain_k_dn_per_e for e in rows])
            ks.flags.writeable = False
            self.modes[key] = (rows, ks)
        return self.modes[key]


_TABLE_LOGS: dict[int, _TableLogs] = {}


def _table_logs(card: Card) -> _TableLogs:
    """The cached :class:`_TableLogs` of ``card.iso_table`` (cards are frozen: the table tuple never changes)."""
    table = card.iso_table
    logs = _TABLE_LOGS.get(id(table))
    if logs is None or logs.table is not table:
        if len(_TABLE_LOGS) >= 64:
            _TABLE_LOGS.clear()
        logs = _TABLE_LOGS[id(table)] = _TableLogs(table)
    return logs


def _nearest_entry(card: Card, gain_k_dn_per_e: float) -> ISOEntry | None:
    """The ISO-table row nearest to K in ln K (ties → the lower ISO), or None without a table."""
    if not card.iso_table:
        return None
    lk = math.log(gain_k_dn_per_e)
    log_k = _table_logs(card).log_k
    return card.iso_table[min(range(len(log_k)), key=lambda j: abs(log_k[j] - lk))]


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


_TABLE_SCALARS = ("tukey_lambda", "col_sigma_dn", "dark_current_e_per_s")  # interpolated linearly in ln K


def _table_at_k(card: Card, gain_k_dn_per_e: float, iso: float) -> dict:
    """The card's per-ISO table at K (equivalent ISO ``iso``), continuous in ISO within each gain mode.

    Rows are interpolated linearly in ln K, σ's in ln σ (linearly in σ where a σ is 0), between the two
    neighbouring rows *of the same gain mode*: with ``joint.dual_gain_switch_iso``, rows below it and rows
    from it on are separate tables, since a dual-gain sensor's read noise drops at the switch. In the gap
    between a mode's last row and the switch, a σ is extrapolated along that mode's nearest segment with
    the log-log slope clamped to [0, 1] (σ_DN = √(K²σ_pre² + σ_post²) with fixed σ_pre [e⁻] and σ_post [DN]
    can rise no faster than K); with a single row in the mode, the slope of the joint fit covering K (or 0
    without a joint model). Other terms (λ, column σ, dark current, black-level error) hold the mode's
    nearest row there. A tabled K gives its row's values exactly.

    Returns the σ's, ``tukey_lambda``, ``col_sigma_dn``, ``dark_current_e_per_s`` (missing → 0) and
    ``black_level_error_dn`` (None where the rows involved have none).
    """
    rows = card.iso_table
    switch = card.joint.dual_gain_switch_iso if card.joint is not None else None
    if switch is not None:
        rows, ks = _table_logs(card).mode_rows(switch, iso >= switch * (1 - 1e-9))
    else:
        ks = _table_logs(card).log_k_array
    lk = math.log(gain_k_dn_per_e)
    for e in rows:
        if math.isclose(e.gain_k_dn_per_e, gain_k_dn_per_e, rel_tol=1e-12):
            rows, ks = (e,), np.array([lk])
            break
    i = int(np.searchsorted(ks, lk))  # rows[i-1] <= K < rows[i]
    if 0 < i < len(rows):
        lo, hi = rows[i - 1], rows[i]
        t = (lk - ks[i - 1]) / (ks[i] - ks[i - 1])
        out = {}
        for name in _SIGMAS:
            a, b = getattr(lo, name) or 0.0, getattr(hi, name) or 0.0  # None: a Poisson–Gaussian card
            out[name] = a + t * (b - a) if a <= 0 or b <= 0 else math.exp(math.log(a) + t * math.log(b / a))
        for name in _TABLE_SCALARS:
            a, b = getattr(lo, name) or 0.0, getattr(hi, name) or 0.0
            out[name] = a + t * (b - a)
        a, b = lo.black_level_error_dn, hi.black_level_error_dn
        both = a is not None and b is not None
        out["black_level_error_dn"] = tuple(x + t * (y - x) for x, y in zip(a, b)) if both else (a if b is None else b)
        return out
    # at a tabled K, or beyond the mode's rows (the gap up to a dual-gain switch, or a table end)
    end = 0 if i == 0 else len(rows) - 1
    e = rows[end]
    dlk = lk - ks[end]
    out = {name: getattr(e, name) or 0.0 for name in _TABLE_SCALARS}
    out["black_level_error_dn"] = e.black_level_error_dn
    for name in _SIGMAS:
        v = getattr(e, name) or 0.0
        if dlk == 0.0 or v <= 0:
            out[name] = v
            continue
        if len(rows) >= 2:
            nb = rows[1] if end == 0 else rows[-2]
            w = getattr(nb, name) or 0.0
            slope = math.log(v / w) / (ks[end] - math.log(nb.gain_k_dn_per_e)) if w > 0 else 0.0
        elif card.joint is not None:
            slope = _choose_profile(card, gain_k_dn_per_e, 0.0).fit(name).slope
        else:
            slope = 0.0
        out[name] = v * math.exp(min(max(slope, 0.0), 1.0) * dlk)
    return out


def _in_table_span(card: Card, gain_k_dn_per_e: float) -> bool:
    if not card.iso_table:
        return False
    logs = _table_logs(card)
    return logs.k_min * (1 - 1e-12) <= gain_k_dn_per_e <= logs.k_max * (1 + 1e-12)


def _black_level_error(card: Card, gain_k_dn_per_e: float, nearest: ISOEntry | None) -> tuple:
    """The nearest table row's black-level error, else the joint model's ln K bin holding K, else zeros."""
    if nearest is not None and nearest.black_level_error_dn is not None:
        return nearest.black_level_error_dn
    joint = card.joint
    if joint is not None and joint.black_level_error_bins:
        return joint.black_level_error_bins[joint.black_level_bin(gain_k_dn_per_e)]
    return (0.0, 0.0, 0.0, 0.0)


def _table_params(card: Card, gain_k_dn_per_e: float, iso: float) -> dict:
    """Everything but the read model from the interpolated ISO table (:func:`_table_at_k`); no random draw."""
    values = _table_at_k(card, gain_k_dn_per_e, iso)
    if values["black_level_error_dn"] is None:
        values["black_level_error_dn"] = _black_level_error(card, gain_k_dn_per_e, None)
    return dict(gain_k_dn_per_e=float(gain_k_dn_per_e), iso=float(iso), **values,
                **_per_iso_levels(_nearest_entry(card, gain_k_dn_per_e)))


def _per_iso_levels(entry: ISOEntry | None) -> dict:
    """The row's own black level and hot-pixel dark current (card schema /2), where it has them."""
    if entry is None:
        return {}
    return dict(black_level_dn=entry.black_level_dn, hot_pixel_dark_current_e_per_s=entry.hot_pixel_dark_current_e_per_s)


def _params_at_k(card: Card, gain_k_dn_per_e: float, rng: np.random.Generator, *, scatter: bool) -> dict:
    """σ's from the joint model, λ, black-level error and the optional terms at a given K.

    Draw order (fixed, so ``scatter=False`` changes no other draw): profile uniform, three standard normals
    (σ_TL, σ_Gauss, σ_row), λ index.
    """
    u_profile = rng.random()
    z = rng.standard_normal(3)
    u_lambda = rng.random()
    joint = card.joint
    profile = _choose_profile(card, gain_k_dn_per_e, u_profile)
    sig = {}
    for x, name in zip(z, _SIGMAS):
        fit = profile.fit(name)
        log_sigma = fit.mean_log(gain_k_dn_per_e) + (fit.residual_std * x if scatter else 0.0)
        sig[name] = float(np.exp(log_sigma))

    nearest = _nearest_entry(card, gain_k_dn_per_e)
    if nearest is not None:
        lam = nearest.tukey_lambda
    elif joint.tukey_lambda_values:
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
    for e in card.iso_table:  # a tabled K gives its own ISO, not exp(log(ISO)) with rounding
        if math.isclose(e.gain_k_dn_per_e, gain_k_dn_per_e, rel_tol=1e-12):
            return e.iso
    logs = _table_logs(card)
    ks, isos = logs.log_k_array, logs.log_iso_array
    lk = math.log(gain_k_dn_per_e)
    if lk <= ks[0]:
        return float(np.exp(isos[0] + lk - ks[0]))
    if lk >= ks[-1]:
        return float(np.exp(isos[-1] + lk - ks[-1]))
    return float(np.exp(np.interp(lk, ks, isos)))


def _fmt_isos(card: Card) -> str:
    return ", ".join(f"{iso:g}" for iso in card.isos)


def _iso_gain(card: Card, iso: float) -> tuple[float, float]:
    """(K, ISO) for a requested ISO: a tabled row's own K, else interpolated in (ln ISO, ln K) inside the table."""
    if not card.iso_table:
        kmin, kmax = card.k_range_dn_per_e
        raise UnknownISOError(
            f"card {card.name!r} has no per-ISO table, so it cannot serve iso={iso:g}; "
            f"pass gain_k_dn_per_e= (K range {kmin:.4g}–{kmax:.4g} DN/e⁻) or neither to draw a random K"
        )
    entry = card.iso_entry(iso)
    if entry is not None:
        return entry.gain_k_dn_per_e, entry.iso
    isos = card.isos
    if not isos[0] < iso < isos[-1]:
        raise UnknownISOError(
            f"card {card.name!r} cannot serve iso={iso:g}: calibrated ISOs are {_fmt_isos(card)} "
            f"(ISOs between them are interpolated; outside {isos[0]:g}–{isos[-1]:g} is not extrapolated)"
        )
    logs = _table_logs(card)
    log_k = np.interp(math.log(iso), logs.log_iso_array, logs.log_k_array)
    return float(np.exp(log_k)), iso


MODELS = ("auto", "joint")


def sample_params(
    card: Card,
    *,
    iso: float | None = None,
    gain_k_dn_per_e: float | None = None,
    rng=None,
    read_model: str | None = None,
    scatter: bool = True,
    exposure_s: float = 0.0,
    model: str = "auto",
) -> NoiseParams:
    """Draw one set of noise parameters from a card's joint ISO model (ELD; docs/model.md).

    Three ways to pick the gain, and where the σ's come from:

    * ``iso=N``: needs the card's per-ISO table. A tabled ISO returns that row's measured values exactly;
      between tabled ISOs, K is interpolated linearly in (ln ISO, ln K) and every term is interpolated
      from the table in ln K (:func:`_table_at_k`), never across a dual-gain switch, so the parameters are
      continuous in ISO within each gain mode. No random draw; ``scatter`` does not apply.
    * ``gain_k_dn_per_e=K``: K fixed (must lie in the card's K range). Inside the table's K span, as for
      an ISO (the equivalent ISO decides the gain mode); outside it, the joint model below.
    * neither: a random draw, ELD's: ``ln K ~ U(ln K_min, ln K_max)`` over the card's K range and the σ's
      from the joint model (from the table for a card without one).

    The joint model at a given K: a profile covering K is chosen by weight (ELD's NikonD850 has two; a
    dual-gain sensor has one per side of its switch); ``ln σ_x = slope_x · ln K + intercept_x + ε_x``,
    ``ε_x ~ N(0, s_x²)`` independently for x ∈ {σ_TL, σ_Gauss, σ_row} (``scatter=False`` drops ε, giving
    the median σ); λ, the black-level error, column σ, dark current (bulk and hot-pixel) and the black
    level (card schema /2) come from the ISO-table row nearest in ln K; a card without a table draws λ uniformly from ``joint.tukey_lambda_values`` and takes the
    black-level error of the equal-width ln K bin holding K (ELD's ``color_bias``).

    Parameters
    ----------
    card : Card
    iso : float, optional
        ISO setting (needs the card's per-ISO table).
    gain_k_dn_per_e : float, optional
        System gain K [DN/e⁻]; exclusive with ``iso``.
    rng : int, numpy.random.SeedSequence, numpy.random.Generator or None
        As :func:`numpy.random.default_rng`; the global RNG is never used.
    read_model : {"tukey", "gaussian"}, optional
        Read-noise distribution recorded in the result (a physics card fills both σ_TL/λ and σ_Gauss).
        Default: the card's first (:attr:`~noisesim.card.Card.read_models`): ``"tukey"`` for a physics card,
        ``"gaussian"`` for a Poisson–Gaussian card, which has no Tukey or row terms (they are 0).
    scatter : bool
        Where the joint model is used: add the residual scatter of its log-linear fits (True, as ELD) or
        use the fitted σ's. Table values (ISO path, K inside the table) have no scatter.
    exposure_s : float
        Exposure time [s] of the (short) frame, for dark current.
    model : {"auto", "joint"}
        ``"auto"``: the table where it covers the gain, as above. ``"joint"``: the joint model (with
        ``scatter``) for every gain, tabled ISOs included — ELD's sampler at a chosen ISO or K.

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
        ``read_model``, or a read model the card has no parameters for (naming the card).

    Examples
    --------
    >>> from noisesim.card import load_card
    >>> card = load_card("SonyA7S2")
    >>> round(sample_params(card, iso=1600).gain_k_dn_per_e, 2)
    1.53
    >>> p = sample_params(card, rng=0)   # random K over the card's range
    >>> card.k_range_dn_per_e[0] <= p.gain_k_dn_per_e <= card.k_range_dn_per_e[1]
    True
    """
    if not isinstance(card, Card):
        raise ParameterError(f"sample_params needs a Card (see noisesim.load_card), got {type(card).__name__}")
    if read_model is None:
        read_model = card.read_models[0]
    if read_model not in READ_MODELS:
        raise ParameterError(f"read_model must be one of {READ_MODELS}, got {read_model!r}")
    card.check_read_model(read_model)
    if iso is not None and gain_k_dn_per_e is not None:
        raise ParameterError("give iso or gain_k_dn_per_e, not both (an ISO fixes K through the card's table)")
    if model not in MODELS:
        raise ParameterError(f"model must be one of {MODELS}, got {model!r}")
    if model == "joint" and card.joint is None:
        raise ParameterError(f"model='joint': card {card.name!r} has no joint model (it has only its ISO table)")
    rng = np.random.default_rng(rng)

    if iso is not None:
        if not is_real_number(iso) or not math.isfinite(iso) or iso <= 0:
            raise ParameterError(f"iso must be a positive number, got {iso!r}")
        k, iso_of_k = _iso_gain(card, float(iso))
        use_table = model == "auto"
    else:
        kmin, kmax = card.k_range_dn_per_e
        if gain_k_dn_per_e is None:
            k = float(np.exp(rng.uniform(math.log(kmin), math.log(kmax))))
        else:
            k = gain_k_dn_per_e
            if not is_real_number(k) or not math.isfinite(k):
                raise ParameterError(f"gain_k_dn_per_e must be a finite number, got {k!r}")
            tol = 1e-9 * kmax
            if not kmin - tol <= k <= kmax + tol:
                raise ParameterError(
                    f"gain_k_dn_per_e={k:g} is outside the K range of card {card.name!r}: {kmin:.6g}–{kmax:.6g} DN/e⁻"
                )
            k = float(min(max(k, kmin), kmax))
        iso_of_k = _equivalent_iso(card, k)
        use_table = card.joint is None or (model == "auto" and gain_k_dn_per_e is not None and _in_table_span(card, k))
    if use_table:
        values = _table_params(card, k, iso_of_k)
    else:
        values = _params_at_k(card, k, rng, scatter=scatter)
        values["iso"] = iso_of_k
    return NoiseParams(read_model=read_model, exposure_s=exposure_s, **values)
