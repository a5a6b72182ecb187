"""Fidelity of a card against real dark frames, and the verdict of ``noisesim validate`` (docs/calibration.md).

For each ISO, real dark frames (held out of the calibration, or any darks given to :func:`validate`) are
compared per packed channel with as many frames synthesized by :func:`noisesim.noise.simulate` from the
card's parameters at that ISO (and its maps), over the same sensor region. Per ISO, channel and read-noise
model (Tukey-lambda, Gaussian) a :class:`ChannelFidelity` holds

* forward KL(real‖synthetic) and symmetric KL [nats] of DN histograms binned over the union of both
  supports with an underflow and an overflow bin and a pseudo-count of
  :data:`~noisesim.calibration.estimators.PSEUDO_COUNT` per bin
  (:func:`~noisesim.calibration.estimators.kl_divergences`), so a synthetic frame far from the real
  one can never score well;
* the two-sample Kolmogorov–Smirnov statistic;
* the mean and variance differences, in DN (DN²) and in standard errors. The standard errors come from
  the spread of blocks of rows (:data:`ROW_BLOCKS` per frame), so row noise is counted.

A channel passes when it stays within every limit of :class:`Thresholds`. :func:`validate` also checks
that the capture belongs to the card (white level / bit depth, CFA, frame size, and whether the darks'
fixed pattern correlates with the card's dark-shading map) and returns a :class:`ValidationReport`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields

import numpy as np

from noisesim.cfa import CFA
from noisesim.errors import CalibrationError, ParameterError

from .estimators import kl_divergences, kl_divergences_sorted, ks_statistic, ks_statistic_sorted
from .pixel_noise import QUANTIZATION_VAR_DN2
from .sorting import merge_sorted, sort_finite

__all__ = [
    "capture_mismatches",
    "ChannelFidelity",
    "compare_channel",
    "compare_frame",
    "compare_frames",
    "CROP",
    "fidelity_heldout",
    "format_report",
    "format_table",
    "map_check",
    "MapCheck",
    "params_for",
    "READ_MODELS",
    "ROW_BLOCKS",
    "summarize",
    "Thresholds",
    "validate",
    "ValidationReport",
]

log = logging.getLogger("calibration")

CROP = 512  # side of the centred region compared (mosaic pixels)
ROW_BLOCKS = 8  # blocks of consecutive rows per channel plane and frame, for the standard errors
READ_MODELS = ("tukey", "gaussian")


@dataclass(frozen=True)
class Thresholds:
    """Limits of a passing channel (the defaults are those of ``noisesim validate``).

    Attributes
    ----------
    kl_symmetric_nats : float
        Largest symmetric KL divergence [nats] (0.05), plus the finite-sample bias (B − 1)(1/n_real + 1/n_syn)
        over the B occupied integer-DN bins.
    ks_statistic : float
        Largest two-sample KS statistic (0.05), or its 99 % point 1.63 √(1/n_real + 1/n_syn) if larger.
    mean_diff_rel : float
        A mean difference fails when it exceeds this fraction of the real frames' std (0.1) *and*
        ``mean_diff_se`` standard errors (5).
    std_diff_rel : float
        A std difference fails when |σ_syn/σ_real − 1| exceeds this (0.05) *and* the variance difference
        exceeds ``var_diff_se`` standard errors (5).
    map_correlation_fraction : float
        The darks' fixed pattern must correlate with the card's dark-shading map by at least this fraction
        (0.5) of the correlation the card's own figures predict for its sensor.
    """

    kl_symmetric_nats: float = 0.05
    ks_statistic: float = 0.05
    mean_diff_rel: float = 0.1
    mean_diff_se: float = 5.0
    std_diff_rel: float = 0.05
    var_diff_se: float = 5.0
    map_correlation_fraction: float = 0.5

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ParameterError(f"{f.name} must be a finite number >= 0, got {value!r}")
        if self.ks_statistic > 1:
            raise ParameterError(f"ks_statistic must lie in 0..1 (a KS statistic), got {self.ks_statistic!r}")


@dataclass
class ChannelFidelity:
    """Real against synthetic darks for one ISO, packed channel and read-noise model.

    Differences are synthetic − real; ``*_se`` are those differences divided by their standard errors.

    Attributes
    ----------
    iso : float
    channel : str
        Packed channel name (e.g. ``"G1"``).
    model : {"tukey", "gaussian"}
        Read-noise model of the synthetic frames.
    n_frames, n_pixels : int
        Frames compared and pixels per frame.
    kl_forward, kl_symmetric : float
        KL(real‖synthetic) and the symmetric sum [nats].
    ks_statistic : float
        Two-sample KS statistic (0 … 1).
    mean_real_dn, mean_synthetic_dn, mean_diff_dn : float
        Means and their difference [DN].
    mean_diff_se : float
        The mean difference in standard errors.
    std_real_dn, std_synthetic_dn : float
        Standard deviations [DN].
    var_diff_dn2 : float
        Variance difference [DN²].
    var_diff_se : float
        The variance difference in standard errors.
    failures : tuple of str
        The thresholds this channel misses.
    """

    iso: float
    channel: str
    model: str
    n_frames: int
    n_pixels: int  # per frame
    kl_forward: float
    kl_symmetric: float
    ks_statistic: float
    mean_real_dn: float
    mean_synthetic_dn: float
    mean_diff_dn: float
    mean_diff_se: float
    std_real_dn: float
    std_synthetic_dn: float
    var_diff_dn2: float
    var_diff_se: float
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when no threshold failed for this ISO, channel and read model."""
        return not self.failures


def _crop_box(shape, period: int, side: int = CROP):
    h, w = shape
    ch, cw = min(h, side), min(w, side)
    ch -= ch % period
    cw -= cw % period
    y0 = ((h - ch) // 2) // period * period
    x0 = ((w - cw) // 2) // period * period
    return y0, x0, ch, cw


def params_for(card, iso: float, exposure_s: float, read_model: str):
    """The :class:`~noisesim.params.NoiseParams` of a card's tabled ISO (its measured row, no scatter), or None.

    Parameters
    ----------
    card : Card
    iso : float
    exposure_s : float
        [s]
    read_model : {"tukey", "gaussian"}

    Returns
    -------
    NoiseParams or None
        None when the card does not table ``iso``.
    """
    from noisesim.sampling import sample_params

    if card.iso_entry(iso) is None:
        return None
    return sample_params(card, iso=float(iso), read_model=read_model, scatter=False, exposure_s=float(exposure_s))


def _block_stats(planes: list[np.ndarray]) -> tuple[float, float, float, float]:
    """(mean, SE of the mean, variance, SE of the variance) of a channel over frames' (h, w) planes [DN, DN²],
    the SEs from the spread over blocks of consecutive rows."""
    bm, bv = [], []
    for p in planes:
        for rows in np.array_split(np.arange(p.shape[0]), min(ROW_BLOCKS, p.shape[0])):
            b = p[rows[0]: rows[-1] + 1]
            bm.append(b.mean())
            bv.append(b.var())
    allv = np.concatenate([p.ravel() for p in planes])
    nb = len(bm)
    se_m = float(np.std(bm, ddof=1) / math.sqrt(nb)) if nb > 1 else float("nan")
    se_v = float(np.std(bv, ddof=1) / math.sqrt(nb)) if nb > 1 else float("nan")
    return float(allv.mean()), se_m, float(allv.var()), se_v


def compare_channel(iso: float, channel: str, model: str, real: list[np.ndarray], synthetic: list[np.ndarray],
                    thresholds: Thresholds = Thresholds()) -> ChannelFidelity:
    """Compare one channel's real and synthetic (h, w) planes [DN] (any number of frames each).

    Parameters
    ----------
    iso : float
    channel : str
        Packed channel name.
    model : str
        Read-noise model of ``synthetic``.
    real, synthetic : list of (h, w) ndarray
        Planes [DN].
    thresholds : Thresholds
        Pass/fail limits.

    Returns
    -------
    ChannelFidelity
    """
    return _compare_samples(iso, channel, model, _Sample.of(real), _Sample.of(synthetic), thresholds)


@dataclass
class _Sample:
    """One side of a comparison: its (h, w) planes' values, sorted when all finite (then the histograms, the
    KS statistic and the bin count are read off the sorted values, and a real sample compared with both read
    models is sorted once), and :func:`_block_stats`."""

    values: np.ndarray
    sorted_values: np.ndarray | None
    n_frames: int
    n_pixels: int
    stats: tuple[float, float, float, float]

    @classmethod
    def of(cls, planes: list[np.ndarray]) -> "_Sample":
        values = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in planes])
        s = sort_finite(values)
        return cls(values, s if s.size == values.size else None, len(planes), int(planes[0].size), _block_stats(planes))


def _compare_samples(iso: float, channel: str, model: str, real: _Sample, synthetic: _Sample, thresholds: Thresholds) -> ChannelFidelity:
    r_all, s_all = real.values, synthetic.values
    presorted = real.sorted_values is not None and synthetic.sorted_values is not None
    if presorted:
        fwd, sym = kl_divergences_sorted(real.sorted_values, synthetic.sorted_values)
        ks = ks_statistic_sorted(real.sorted_values, synthetic.sorted_values)
    else:
        fwd, sym = kl_divergences(r_all, s_all)
        ks = ks_statistic(r_all, s_all)
    mr, se_mr, vr, se_vr = real.stats
    ms, se_ms, vs, se_vs = synthetic.stats
    dm, dv = ms - mr, vs - vr
    se_dm, se_dv = math.hypot(se_mr, se_ms), math.hypot(se_vr, se_vs)
    z_m = dm / se_dm if se_dm > 0 else (0.0 if dm == 0 else math.copysign(math.inf, dm))
    z_v = dv / se_dv if se_dv > 0 else (0.0 if dv == 0 else math.copysign(math.inf, dv))
    sr, ss = math.sqrt(vr), math.sqrt(vs)
    t = thresholds
    fails = []
    # small samples: the limits never fall below what two samples of one distribution reach, the symmetric KL's
    # bias (B − 1)(1/n_r + 1/n_s) over B occupied bins and the KS statistic's 99 % point 1.63 √(1/n_r + 1/n_s)
    inv_n = 1.0 / r_all.size + 1.0 / s_all.size
    if presorted:  # distinct integer DN of both samples: rint keeps the order, so count the steps of the merge
        both = np.rint(merge_sorted([real.sorted_values, synthetic.sorted_values]))
        n_bins = int(np.count_nonzero(np.diff(both))) + 1 if both.size else 0
    else:
        n_bins = np.unique(np.rint(np.concatenate([r_all, s_all]))).size
    kl_lim = t.kl_symmetric_nats + (n_bins - 1) * inv_n
    ks_lim = max(t.ks_statistic, 1.63 * math.sqrt(inv_n))
    if sym > kl_lim:
        fails.append(f"symmetric KL {sym:.3g} > {kl_lim:.3g} nats")
    if ks > ks_lim:
        fails.append(f"KS {ks:.3g} > {ks_lim:.3g}")
    if abs(dm) > t.mean_diff_rel * sr and abs(z_m) > t.mean_diff_se:
        fails.append(f"mean off by {dm:+.3g} DN ({z_m:+.1f} SE)")
    if abs(ss / sr - 1.0 if sr > 0 else ss) > t.std_diff_rel and abs(z_v) > t.var_diff_se:
        fails.append(f"std {ss:.3g} vs {sr:.3g} DN ({z_v:+.1f} SE in variance)")
    return ChannelFidelity(float(iso), channel, model, real.n_frames, real.n_pixels, fwd, sym, ks, mr, ms, dm, z_m,
                           sr, ss, dv, z_v, tuple(fails))


def compare_frames(card, frames: list[np.ndarray], iso: float, exposure_s: float, *, rng=0, frame_index: int = 0,
                   thresholds: Thresholds = Thresholds()) -> list[ChannelFidelity]:
    """Real dark frames (H, W) [DN] of one ISO against as many frames synthesized from the card.

    The centred :data:`CROP`² region is compared; each synthetic frame has its own ``frame_index``
    (``frame_index + i``) under ``rng``. Returns one :class:`ChannelFidelity` per read model and channel,
    or an empty list when the card does not table ``iso``.

    Parameters
    ----------
    card : Card
        The card to simulate from.
    frames : list of (H, W) ndarray
        Dark frames [DN] of one ISO and exposure.
    iso : float
    exposure_s : float
        [s]
    rng : int, SeedSequence, Generator or None
        Seed of the synthetic frames.
    frame_index : int
        Index of the first synthetic frame.
    thresholds : Thresholds
        Pass/fail limits.

    Returns
    -------
    list of ChannelFidelity
    """
    from noisesim.noise import simulate

    if not frames:
        return []
    cfa = CFA(card.sensor.cfa.pattern)
    shape = frames[0].shape
    y0, x0, ch, cw = _crop_box(shape, cfa.period)
    real_p = [cfa.pack(np.asarray(f[y0:y0 + ch, x0:x0 + cw], dtype=np.float64)) for f in frames]
    real_samples = [_Sample.of([p[c] for p in real_p]) for c in range(cfa.n_channels)]  # shared by both read models
    maps = card.maps
    if maps is not None and maps.shape != tuple(shape):
        log.warning("card maps have shape %s, frames %s: fidelity computed without maps", maps.shape, shape)
        maps = None
    out = []
    for model in READ_MODELS:
        params = params_for(card, iso, exposure_s, model)
        if params is None:
            return []
        syn_p = []
        for i in range(len(frames)):
            syn = simulate(np.zeros((ch, cw), np.float32), params, card.sensor, input_unit="normalized", output_unit="dn",
                           dtype=np.float32, maps=maps, origin=(y0, x0), rng=rng, frame_index=frame_index + i)
            syn_p.append(cfa.pack(np.asarray(syn, np.float64)))
        for c, name in enumerate(cfa.channel_names):
            out.append(_compare_samples(iso, name, model, real_samples[c], _Sample.of([p[c] for p in syn_p]), thresholds))
    return out


def compare_frame(card, real: np.ndarray, iso: float, exposure_s: float, *, rng=0, frame_index: int = 0) -> list[ChannelFidelity]:
    """:func:`compare_frames` for one real frame.

    Parameters
    ----------
    card : Card
        The card to simulate from.
    real : (H, W) ndarray
        A dark frame [DN].
    iso : float
    exposure_s : float
        [s]
    rng : int, SeedSequence, Generator or None
        Seed of the synthetic frames.
    frame_index : int
        Index of the first synthetic frame.

    Returns
    -------
    list of ChannelFidelity
    """
    return compare_frames(card, [real], iso, exposure_s, rng=rng, frame_index=frame_index)


def fidelity_heldout(result, *, rng=0, thresholds: Thresholds = Thresholds()) -> list[ChannelFidelity]:
    """Fidelity table of a :class:`~calibration.pipeline.CalibrationResult` on its held-out darks.

    Parameters
    ----------
    result : CalibrationResult
        With held-out darks per ISO.
    rng : int, SeedSequence, Generator or None
        Seed of the synthetic frames.
    thresholds : Thresholds
        Pass/fail limits.

    Returns
    -------
    list of ChannelFidelity
    """
    rows = []
    for r in result.iso_results:
        rows += compare_frames(result.card, list(r.heldout), r.iso, r.heldout_exposure_s, rng=rng, frame_index=10_000,
                               thresholds=thresholds)
    return rows


# ------------------------------------------------------------------------------------------------
# validate: does a capture belong to the card, and does the card simulate it?


@dataclass
class MapCheck:
    """Correlation of a capture's mean dark (fixed pattern) with the card's dark-shading map at one ISO.

    Attributes
    ----------
    iso : float
    correlation : float
        Measured ρ.
    expected : float
        ρ the card predicts.
    n_frames : int
        Darks averaged.
    verdict : {"match", "mismatch", "too weak to tell"}
    """

    iso: float
    correlation: float
    expected: float  # predicted from the card's figures for its own sensor
    n_frames: int
    verdict: str  # "match", "mismatch" or "too weak to tell"

    @property
    def passed(self) -> bool:
        """True when the map correlates with the real frames above its threshold."""
        return self.verdict != "mismatch"


@dataclass
class ValidationReport:
    """What :func:`validate` finds. ``passed`` is False when the capture does not belong to the card
    (``mismatches``), the maps do not match it, or any channel of the verdict model fails.

    Attributes
    ----------
    rows : list of ChannelFidelity
    model : str
        The read-noise model the verdict is about.
    thresholds : Thresholds
    mismatches : list of str
        :func:`capture_mismatches`.
    map_checks : list of MapCheck
    skipped : list of str
        ISOs that could not be compared, with the reason.
    """

    rows: list[ChannelFidelity]
    model: str
    thresholds: Thresholds
    mismatches: list[str] = field(default_factory=list)
    map_checks: list[MapCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def verdict_rows(self) -> list[ChannelFidelity]:
        """The rows of the card's read model (one per ISO and channel): those the verdict is made of."""
        return [r for r in self.rows if r.model == self.model]

    @property
    def passed(self) -> bool:
        """True when every ISO passes with the card's read model and every map check passes."""
        return (not self.mismatches and all(m.passed for m in self.map_checks)
                and bool(self.verdict_rows) and all(r.passed for r in self.verdict_rows))


def _bits(white: float) -> int:
    return int(math.ceil(math.log2(float(white) + 1.0)))


def capture_mismatches(card, frames) -> list[str]:
    """Why frames (:class:`~calibration.capture.FrameInfo`) cannot come from the card's sensor, one line each:
    white level / bit depth, CFA pattern, and frame size (against the card's maps).

    Parameters
    ----------
    card : Card
        The card to check against.
    frames : list of FrameInfo
        The capture's frames.

    Returns
    -------
    list of str
        Empty when the capture fits the card.
    """
    out = []
    sen = card.sensor
    white_card = max(sen.white_level_dn)
    whites = sorted({max(f.white_level_dn) for f in frames})  # per site; a raw file states one value
    bad = [w for w in whites if abs(w - white_card) > 0.5]
    if bad:
        w = bad[0]
        out.append(f"white level {w:g} DN ({_bits(w)}-bit) differs from the card's {white_card:g} DN "
                   f"({sen.bit_depth}-bit): the capture is not from this card's sensor mode")
    cfas = sorted({f.cfa for f in frames})
    if any(c != sen.cfa.pattern for c in cfas):
        out.append(f"CFA {'/'.join(c for c in cfas if c != sen.cfa.pattern)} differs from the card's {sen.cfa.pattern}")
    maps = card.maps
    if maps is not None:
        shapes = sorted({f.shape for f in frames})
        bad_s = [s for s in shapes if s != maps.shape]
        if bad_s:
            out.append(f"frame size {bad_s[0][1]}×{bad_s[0][0]} differs from the card's maps ({maps.shape[1]}×{maps.shape[0]})")
    return out


def map_check(card, frames: list[np.ndarray], iso: float, *, thresholds: Thresholds = Thresholds()) -> MapCheck | None:
    """Correlate the mean of dark frames with the card's dark-shading map at ``iso`` (hot pixels out).

    Both are made zero-mean per packed channel over the centred region. A map that is variance-matched to
    the card's DSNU D [DN] estimated from N_cal darks, against a mean of F darks with temporal variance σ²,
    predicts ρ ≈ √(D² / (D² + σ²/N_cal)) · √(D² / (D² + σ²/F)); a different unit of the same model gives
    ρ ≈ 0. None when the card has no dark-shading map or the shapes differ.

    Parameters
    ----------
    card : Card
        With fixed-pattern maps.
    frames : list of (H, W) ndarray
        Dark frames [DN] of one ISO.
    iso : float
    thresholds : Thresholds
        ``map_correlation_fraction`` of the predicted ρ is required.

    Returns
    -------
    MapCheck or None
    """
    maps = card.maps
    if maps is None or maps.dark_shading_b_dn is None or maps.shape != frames[0].shape:
        return None
    cfa = CFA(card.sensor.cfa.pattern)
    y0, x0, ch, cw = _crop_box(frames[0].shape, cfa.period, side=2 * CROP)
    sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
    mean = np.zeros((ch, cw))
    for f in frames:
        mean += np.asarray(f[sl], dtype=np.float64)
    mean /= len(frames)
    ds = np.asarray(maps.dark_shading_dn(iso), dtype=np.float64)[sl]
    hot = maps.hot_pixel_mask[sl] if maps.hot_pixel_mask is not None else np.zeros(ds.shape, bool)
    mp, dp, hp = cfa.pack(mean), cfa.pack(ds), cfa.pack(hot)
    num = den_a = den_b = 0.0
    d2 = []
    for c in range(cfa.n_channels):
        g = ~hp[c]
        a = mp[c][g] - mp[c][g].mean()
        b = dp[c][g] - dp[c][g].mean()
        num += float(a @ b)
        den_a += float(a @ a)
        den_b += float(b @ b)
        d2.append(float(b.var()))
    rho = num / math.sqrt(den_a * den_b) if den_a > 0 and den_b > 0 else 0.0
    e = card.iso_entry(iso)
    sig2 = e.read_sigma_dn**2 + e.row_sigma_dn**2 + (e.col_sigma_dn or 0.0) ** 2 + QUANTIZATION_VAR_DN2
    n_cal = (card.provenance or {}).get("counts", {}).get(f"iso_{iso:g}", {}).get("darks") or 1e9
    dd = float(np.mean(d2))
    expected = math.sqrt(dd / (dd + sig2 / float(n_cal))) * math.sqrt(dd / (dd + sig2 / len(frames))) if dd > 0 else 0.0
    if expected < 0.2:
        verdict = "too weak to tell"
    elif rho < thresholds.map_correlation_fraction * expected:
        verdict = "mismatch"
    else:
        verdict = "match"
    return MapCheck(float(iso), float(rho), float(expected), len(frames), verdict)


def validate(card, capture, *, max_frames_per_iso: int = 4, thresholds: Thresholds = Thresholds(), model: str = "tukey",
             rng=0, progress=None) -> ValidationReport:
    """Validate ``card`` on the dark frames of ``capture`` (folder, manifest or Capture).

    Parameters
    ----------
    card : Card or str
        A card or its name/path.
    capture : str, Path or Capture
    max_frames_per_iso : int
        Dark frames compared per ISO (the first, by path).
    thresholds : Thresholds
        Limits of a passing channel.
    model : {"tukey", "gaussian"}
        Read-noise model whose rows decide the verdict (both are reported).
    rng : seed of the synthetic frames.
    progress : callable, optional
        Wraps the iterable of frames read (e.g. ``tqdm``).

    Returns
    -------
    ValidationReport
        Only ISOs the card tables are compared; darks at other ISOs are listed in ``skipped``.
    """
    from noisesim.card import load_card

    from .capture import Capture, group_frames, scan_capture

    if model not in READ_MODELS:
        raise ValueError(f"model must be one of {READ_MODELS}, got {model!r}")
    if not hasattr(card, "iso_table"):
        card = load_card(card)
    cap = capture if isinstance(capture, Capture) else scan_capture(capture)
    darks = [f for f in cap.frames if f.kind == "dark"]
    if not darks and cap.problems:  # say why, instead of an empty report
        raise CalibrationError(f"{cap.source}: no usable dark frames: {cap.problem_summary()}")
    for p in cap.problems:
        log.warning("%s", p)
    report = ValidationReport([], model, thresholds, capture_mismatches(card, darks) if darks else [])
    jobs = []
    for (kind, iso, t), frames in group_frames(darks).items():
        if card.iso_entry(iso) is None:
            report.skipped.append(f"ISO {iso:g}: not in the card's table; {len(frames)} dark(s) skipped")
            continue
        jobs.append((iso, t, frames[:max_frames_per_iso]))
    total = sum(len(j[2]) for j in jobs)
    it = iter(progress(range(total)) if progress else range(total))
    cfa_ok = not any(m.startswith("CFA") for m in report.mismatches)
    by_iso: dict[float, list[np.ndarray]] = {}
    for iso, t, frames in jobs:
        arrays = []
        for f in frames:
            arrays.append(f.load())
            next(it, None)
        if cfa_ok:
            report.rows += compare_frames(card, arrays, iso, t, rng=rng, frame_index=20_000 + 100 * len(report.rows),
                                          thresholds=thresholds)
        by_iso.setdefault(iso, []).extend(arrays)
    for iso, arrays in sorted(by_iso.items()):
        mc = map_check(card, arrays, iso, thresholds=thresholds)
        if mc is not None:
            report.map_checks.append(mc)
    return report


def summarize(rows: list[ChannelFidelity]) -> list[dict]:
    """Per (ISO, model): mean KL over channels, the worst KS, and how many channels pass.

    Parameters
    ----------
    rows : list of ChannelFidelity

    Returns
    -------
    list of dict
        Keys ``iso``, ``model``, ``kl_forward`` and ``kl_symmetric`` [nats], ``ks_max``, ``n`` (channels)
        and ``passed`` (how many pass).
    """
    out: dict = {}
    for r in rows:
        out.setdefault((r.iso, r.model), []).append(r)
    return [
        {"iso": iso, "model": model, "kl_forward": float(np.mean([r.kl_forward for r in rs])),
         "kl_symmetric": float(np.mean([r.kl_symmetric for r in rs])), "ks_max": float(max(r.ks_statistic for r in rs)),
         "n": len(rs), "passed": sum(r.passed for r in rs)}
        for (iso, model), rs in sorted(out.items())
    ]


def format_table(rows: list[ChannelFidelity]) -> str:
    """A text table, one line per ISO, channel and model.

    Parameters
    ----------
    rows : list of ChannelFidelity

    Returns
    -------
    str
    """
    lines = [f"{'ISO':>7} {'ch':>3} {'model':>8} {'KL fwd':>8} {'KL sym':>8} {'KS':>6} {'Δmean DN':>9} {'(SE)':>7} "
             f"{'σ real':>7} {'σ syn':>7} {'(SE)':>7}  verdict"]
    for r in sorted(rows, key=lambda r: (r.iso, r.model != "tukey", r.model, r.channel)):
        lines.append(f"{r.iso:>7g} {r.channel:>3} {r.model:>8} {r.kl_forward:>8.4f} {r.kl_symmetric:>8.4f} {r.ks_statistic:>6.3f} "
                     f"{r.mean_diff_dn:>+9.3f} {r.mean_diff_se:>+7.1f} {r.std_real_dn:>7.3f} {r.std_synthetic_dn:>7.3f} "
                     f"{r.var_diff_se:>+7.1f}  {'pass' if r.passed else 'FAIL: ' + '; '.join(r.failures)}")
    return "\n".join(lines)


def format_report(report: ValidationReport) -> str:
    """The text ``noisesim validate`` prints: capture checks, map checks, the table and the verdict.

    Parameters
    ----------
    report : ValidationReport

    Returns
    -------
    str
    """
    t = report.thresholds
    lines = []
    for m in report.mismatches:
        lines.append(f"capture does not match the card: {m}")
    for s in report.skipped:
        lines.append(s)
    for mc in report.map_checks:
        what = {"match": "maps match this sensor", "mismatch": "maps do not match this sensor",
                "too weak to tell": "fixed pattern too weak to tell whether the maps match"}[mc.verdict]
        lines.append(f"ISO {mc.iso:g}: {what} (correlation of the mean of {mc.n_frames} dark(s) with the dark-shading map "
                     f"{mc.correlation:.3f}; {mc.expected:.3f} expected for the card's own sensor)")
    if report.rows:
        lines.append(format_table(report.rows))
    lines.append(f"limits: symmetric KL ≤ {t.kl_symmetric_nats:g} nats, KS ≤ {t.ks_statistic:g}, |Δmean| ≤ "
                 f"{t.mean_diff_rel:g}·σ or ≤ {t.mean_diff_se:g} SE, |σ_syn/σ_real − 1| ≤ {t.std_diff_rel:g} or ≤ "
                 f"{t.var_diff_se:g} SE; verdict on the {report.model} model")
    vr = report.verdict_rows
    n_fail = sum(not r.passed for r in vr)
    if report.passed:
        lines.append(f"PASS: the card simulates this capture ({len(vr)} ISO × channel comparisons)")
    else:
        why = []
        if report.mismatches:
            why.append("the capture does not belong to the card")
        if any(not m.passed for m in report.map_checks):
            why.append("maps do not match this sensor")
        if n_fail:
            why.append(f"{n_fail} of {len(vr)} ISO × channel comparisons fail")
        if not vr and not report.mismatches:
            why.append("nothing compared")
        lines.append("FAIL: " + "; ".join(why))
    return "\n".join(lines)
