"""Streaming accumulators: frames are added one at a time and only running sums are kept.

A dark stack of N frames of H×W pixels needs two float64 sums per pixel (sum and sum of squares of the
black-subtracted signal, so cancellation stays small), the row and column means of each frame, the
per-channel means of each frame, one held frame for the pair difference, and a fixed random sample of
pixels for the read-noise shape — never the N×H×W stack. Flat pairs are reduced to per-channel means and
pair-difference variances as each pair arrives (EMVA 1288 §6), plus one normalized running sum for PRNU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from noisesim.cfa import CFA, per_site_values
from noisesim.errors import CalibrationError

from .capture import FrameInfo
from .kernels import channel_counts, dark_batch, flat_pair_pass, prnu_add, stack_mean_var

__all__ = ["DarkAccumulator", "DarkStats", "FlatAccumulator", "FlatLevel"]


def _channel_site(cfa: CFA) -> np.ndarray:
    """Level site (0..3, Bayer order) of each packed channel."""
    return cfa.site_index.ravel()


@dataclass
class DarkStats:
    """What a dark stack yields (all in DN, black level of the file subtracted).

    Attributes
    ----------
    n_frames : int
    mean_map_dn : (H, W) float32
        Per-pixel mean of the stack minus the file's black level: dark shading + black-level error (+ dark signal).
    temporal_var_map_dn2 : (H, W) float32
        Per-pixel temporal variance (ddof = 1).
    frame_channel_means_dn : (N, C) float64
        Mean of each frame per packed channel.
    pair_var_dn2 : (P, C) float64
        ½ var(d₁ − d₂) per consecutive frame pair and channel (EMVA 1288 §2.2, §6 temporal dark noise).
    row_resid : (N, H) float64 and col_resid : (N, W) float64
        Row / column means of each frame minus their stack average.
    sample_resid_dn : (N, S) float32
        Residual read noise at S fixed pixels: value − stack mean − row residual − column residual.
    sample_index : (S,) int64
        Flat pixel indices of the samples.
    """

    n_frames: int
    shape: tuple[int, int]
    cfa: CFA
    exposure_s: float
    mean_map_dn: np.ndarray
    temporal_var_map_dn2: np.ndarray
    frame_channel_means_dn: np.ndarray
    pair_var_dn2: np.ndarray
    row_resid: np.ndarray
    col_resid: np.ndarray
    sample_resid_dn: np.ndarray
    sample_index: np.ndarray
    integer_valued: bool
    paths: list[str] = field(default_factory=list)
    max_dn: float = 0.0


class DarkAccumulator:
    """Running sums over a dark (bias) stack of one ISO and exposure.

    Parameters
    ----------
    shape : (H, W)
    cfa : CFA
    black_level_dn : 4 floats, per site (Bayer order)
    sample_pixels : int
        How many fixed pixels are kept from every frame for the read-noise shape fit.
    rng : seed for the choice of sample pixels
    keep_full_stats : bool
        False for dark groups used only for dark current (channel means only, no per-pixel sums).
    """

    def __init__(self, shape, cfa: CFA, black_level_dn, *, sample_pixels: int = 16384, rng=0, keep_full_stats: bool = True):
        self.shape = tuple(shape)
        self.cfa = cfa
        self.black_tile = np.ascontiguousarray(cfa.tile_values(black_level_dn), dtype=np.float64)
        self.full = keep_full_stats
        self._counts = channel_counts(self.shape, cfa.period)
        h, w = self.shape
        if self.full:
            self.s1 = np.zeros(self.shape, np.float64)
            self.s2 = np.zeros(self.shape, np.float64)
            gen = np.random.default_rng(rng)
            s = min(int(sample_pixels), h * w)
            self.sample_index = np.sort(gen.choice(h * w, size=s, replace=False))
            r_idx, c_idx = np.divmod(self.sample_index, w)
            p = cfa.period
            self.sample_black_dn = self.black_tile[r_idx % p, c_idx % p]
        else:
            self.s1 = self.s2 = np.zeros((0, 0))
        self.n = 0
        self.channel_means: list[np.ndarray] = []
        self.row_means: list[np.ndarray] = []
        self.col_means: list[np.ndarray] = []
        self.samples: list[np.ndarray] = []
        self.pair_var: list[np.ndarray] = []
        self._buf: np.ndarray | None = None  # frames waiting for the next batched pass
        self._m = 0
        self.integer_valued = True
        self.paths: list[str] = []
        self.max_dn = 0.0

    BATCH = 4  # frames per pass over the running sums (even, so frame pairs never straddle two passes)

    def add(self, raw: np.ndarray, frame: FrameInfo | None = None) -> None:
        """Add one (H, W) frame in DN; frames are summed in batches by :func:`calibration.kernels.dark_batch`.

        Parameters
        ----------
        raw : (H, W) ndarray
            Dark frame [DN], black level included.
        frame : FrameInfo, optional
            Its description (whether its samples are integer DN).
        """
        raw = np.asarray(raw)
        if raw.shape != self.shape:
            raise CalibrationError(f"{frame.path if frame else 'frame'}: shape {raw.shape} differs from the stack's {self.shape}")
        if frame is not None:
            self.paths.append(frame.path)
            self.integer_valued &= frame.integer_valued
        self.n += 1
        if not self.full:
            self._pass(raw[None], 1)
            return
        self.samples.append((raw.ravel()[self.sample_index] - self.sample_black_dn).astype(np.float32))
        if self._buf is None:
            self._buf = np.empty((self.BATCH if raw.dtype.itemsize <= 2 else 2,) + self.shape, raw.dtype)
        elif not np.can_cast(raw.dtype, self._buf.dtype, "safe"):
            self._buf = self._buf.astype(np.result_type(self._buf.dtype, raw.dtype))
        self._buf[self._m] = raw
        self._m += 1
        if self._m == self._buf.shape[0]:
            self._flush()

    def _flush(self) -> None:
        if self._m:
            self._pass(self._buf, self._m)
            self._m = 0

    def _pass(self, stack: np.ndarray, m: int) -> None:
        h, w = self.shape
        nb = stack.shape[0]
        row_sum = np.zeros((nb, h if self.full else 0))
        col_sum = np.zeros((nb, w if self.full else 0))
        ch_sum = np.zeros((nb, self.cfa.n_channels))
        mx, pv = dark_batch(stack, m, self.black_tile, self.s1, self.s2, row_sum, col_sum, ch_sum, self.full)
        self.max_dn = max(self.max_dn, mx)
        self.pair_var.extend(pv)
        for k in range(m):
            self.channel_means.append(ch_sum[k] / self._counts)
            if self.full:
                self.row_means.append(row_sum[k] / w)
                self.col_means.append(col_sum[k] / h)

    def finish(self, exposure_s: float) -> DarkStats:
        """The statistics of every dark frame added so far, taken at ``exposure_s`` [s]; CalibrationError without frames.

        Parameters
        ----------
        exposure_s : float
            Exposure time of the stack [s].

        Returns
        -------
        DarkStats
            Per-pixel mean [DN] and temporal variance [DN²] maps (H, W), row/column residuals and samples.
        """
        n = self.n
        if n == 0:
            raise CalibrationError("no dark frames")
        self._flush()
        self._buf = None
        cm = np.array(self.channel_means)
        if not self.full:
            empty = np.zeros((0, 0))
            return DarkStats(n, self.shape, self.cfa, exposure_s, None, None, cm, empty, empty, empty, empty, np.zeros(0, np.int64), self.integer_valued, self.paths, self.max_dn)  # type: ignore[arg-type]
        if n > 1:
            mean32, var32 = stack_mean_var(self.s1, self.s2, n)
        else:
            mean32, var32 = self.s1.astype(np.float32), np.full(self.shape, np.nan, np.float32)
        rows = np.array(self.row_means)
        cols = np.array(self.col_means)
        row_resid = rows - rows.mean(axis=0)
        col_resid = cols - cols.mean(axis=0)
        h, w = self.shape
        r_idx, c_idx = np.divmod(self.sample_index, w)
        samples = np.array(self.samples, dtype=np.float64)
        sample_mean = self.s1.ravel()[self.sample_index] / n
        resid = samples - sample_mean[None, :] - row_resid[:, r_idx] - col_resid[:, c_idx]
        pv = np.array(self.pair_var) if self.pair_var else np.zeros((0, self.cfa.n_channels))
        stats = DarkStats(n, self.shape, self.cfa, exposure_s, mean32, var32, cm, pv,
                          row_resid, col_resid, resid.astype(np.float32), self.sample_index, self.integer_valued, self.paths, self.max_dn)
        # release the big buffers
        self.s1 = self.s2 = None  # type: ignore[assignment]
        return stats


@dataclass
class FlatLevel:
    """One flat pair at one exposure level: per-channel statistics (DN, dark-subtracted).

    Attributes
    ----------
    exposure_s : float
        Exposure time [s].
    paths : (str, str)
        The two frames.
    mean_dn : (C,) ndarray
        Per packed channel μ_y − μ_y.dark = mean(A + B)/2 − dark mean [DN].
    pair_var_dn2 : (C,) ndarray
        ½ var(A − B) [DN²], the dark's temporal variance not yet subtracted.
    clipped_fraction : (C,) ndarray
        Fraction of pixels at or above the white level in A or B.
    n_pixels : int
        Pixels per channel.
    """

    exposure_s: float
    paths: tuple[str, str]
    mean_dn: np.ndarray  # (C,) μ = mean(A + B)/2 − dark mean
    pair_var_dn2: np.ndarray  # (C,) ½ var(A − B), dark temporal variance NOT yet subtracted
    clipped_fraction: np.ndarray  # (C,) fraction of pixels at or above the white level in A or B
    n_pixels: int


class FlatAccumulator:
    """Flat pairs of one ISO against that ISO's dark stack: PTC points and a normalized sum for PRNU.

    Frames are fed in pairs of equal exposure (A then B); only A is held while B is awaited.
    Frames whose mean lies between ``prnu_range`` of the white−black span (and with fewer than
    ``PRNU_MAX_CLIPPED`` of a channel's pixels clipped) enter the PRNU sum normalized by their channel means
    (EMVA 1288 §8: PRNU from averaged flats); their clipped pixels are collected in ``prnu_clipped``.
    ``prnu_inv_level`` (Σ 1/μ) carries the dark mean's temporal noise, which is common to every frame of
    the sum, into the PRNU estimate.

    Parameters
    ----------
    dark : DarkStats
        The dark stack of this ISO (its per-pixel mean is subtracted from every flat).
    black_level_dn : 4 floats
        Declared black level per colour site, Bayer reading order [DN].
    white_level_dn : float or 4 floats
        White level [DN], per colour site or one for all.
    prnu_range : (float, float)
        Fraction of white − black between which a pair enters the PRNU sum.
    """

    def __init__(self, dark: DarkStats, black_level_dn, white_level_dn, *, prnu_range=(0.05, 0.70)):
        self.dark = dark
        self.cfa = dark.cfa
        self.shape = dark.shape
        self.black_tile = np.ascontiguousarray(self.cfa.tile_values(black_level_dn), dtype=np.float64)
        white = per_site_values(white_level_dn, "white_level_dn")
        self.white = min(white)  # one clipping threshold for the kernels; raw files state one white level
        self._mean_map = np.ascontiguousarray(dark.mean_map_dn)  # offset = black + dark shading + bias
        self._counts = channel_counts(self.shape, self.cfa.period)
        site = _channel_site(self.cfa)
        self.span = np.array([white[s] - float(np.asarray(black_level_dn)[s]) for s in site])
        self.prnu_range = prnu_range
        self.levels: list[FlatLevel] = []
        self.prnu_sum: np.ndarray | None = None
        self.prnu_n = 0
        self.prnu_temporal_rel_var = np.zeros(self.cfa.n_channels)  # Σ σ²_t / μ² over frames in the sum
        self.prnu_inv_level = np.zeros(self.cfa.n_channels)  # Σ 1/μ over frames in the sum [1/DN]
        self.prnu_clipped: np.ndarray | None = None  # (H, W) bool: pixels at the white level in a summed frame
        self.mismatched: list[tuple[str, str, float, float]] = []  # (A, B, relative difference, difference in SE)
        # temporal row-mean variance of the darks [DN²] (row noise + pixel noise / width) and rows per channel
        self._row_var = float(np.mean(np.var(dark.row_resid, axis=1, ddof=1))) if dark.row_resid.size > 1 else 0.0
        self._rows_per_channel = max(1, self.shape[0] // self.cfa.period)

    def add_pair(self, a_raw: np.ndarray, b_raw: np.ndarray, a: FrameInfo, b: FrameInfo) -> FlatLevel:
        """Add one pair of flat frames (H, W) [DN] at one illumination level; returns that level's FlatLevel.

        Parameters
        ----------
        a_raw, b_raw : (H, W) ndarray
            The two frames of one exposure [DN], black level included.
        a, b : FrameInfo
            Their descriptions (paths, exposure time).

        Returns
        -------
        FlatLevel
            Kept in :attr:`levels` unless the two frames are not a pair (then listed in :attr:`mismatched`).
        """
        a_raw, b_raw = np.asarray(a_raw), np.asarray(b_raw)
        if a_raw.shape != self.shape or b_raw.shape != self.shape:
            raise CalibrationError(f"{b.path}: flat shape differs from the dark stack {self.shape}")
        sa, sb, nclip, pv = flat_pair_pass(a_raw, b_raw, self.black_tile, self._mean_map, self.white - 0.5)
        ma = sa / self._counts
        mb = sb / self._counts
        cf = nclip / self._counts
        mu = (ma + mb) / 2.0
        npx = int(self._counts.min())
        # Frames that are not a pair (light changed between them) make the difference variance meaningless.
        # At every level: the means' difference against its expected SE, √(2·σ²_pair/n + 2·σ²_rowmean/n_rows)
        # (pixel and row noise of each frame), and beyond PAIR_MAX_REL (a few % of illumination drift is tolerated).
        diff = np.abs(ma - mb)
        se = np.sqrt(2.0 * np.maximum(pv, 0.0) / max(npx, 1) + 2.0 * self._row_var / self._rows_per_channel)
        rel = diff / np.maximum(np.abs(mu), 1e-9)
        lvl = FlatLevel(a.exposure_s, (a.path, b.path), mu, pv, cf, npx)
        bad = (diff > self.PAIR_MAX_SE * se) & (rel > self.PAIR_MAX_REL)
        if np.any(bad):
            self.mismatched.append((a.path, b.path, float(np.max(rel)), float(np.max(diff / np.maximum(se, 1e-12)))))
            return lvl
        self.levels.append(lvl)
        frac = mu / self.span
        # A few clipped pixels (hot pixels, dust glints) are masked in the PRNU map, not the pair dropped.
        if np.all((frac > self.prnu_range[0]) & (frac < self.prnu_range[1])) and np.all(cf < self.PRNU_MAX_CLIPPED):
            if self.prnu_sum is None:
                self.prnu_sum = np.zeros(self.shape, np.float64)
                self.prnu_clipped = np.zeros(self.shape, bool)
            if np.any(cf > 0):
                sat = self.white - 0.5
                self.prnu_clipped |= (a_raw >= sat) | (b_raw >= sat)
            for x, m in ((a_raw, ma), (b_raw, mb)):
                prnu_add(self.prnu_sum, x, self.black_tile, self._mean_map, self.cfa.tile_values(self._site_values(m)))
                self.prnu_n += 1
                self.prnu_temporal_rel_var += pv / (m * m)
                self.prnu_inv_level += 1.0 / m
        return lvl

    PAIR_MAX_SE = 6.0  # a pair whose means differ by more standard errors than this …
    PAIR_MAX_REL = 0.02  # … and by more than this fraction of the mean is not a pair
    PRNU_MAX_CLIPPED = 0.01  # flats with more clipped pixels (per channel) stay out of the PRNU sum

    def _site_values(self, per_channel: np.ndarray) -> np.ndarray:
        """Packed-channel values → 4 per-site values (Bayer); for quad Bayer the mean over each site."""
        site = _channel_site(self.cfa)
        if self.cfa.n_channels == 4:
            out = np.empty(4)
            out[site] = per_channel
            return out
        return np.array([per_channel[site == s].mean() for s in range(4)])
