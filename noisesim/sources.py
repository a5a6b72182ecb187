"""Clean image sources for paired-data synthesis (docs/datasets.md).

A source hands out random clean patches as **normalized raw mosaics** in the CFA the caller asks for
(the long exposure; exposure ratio and noise are applied later by the engine):

* :class:`DeadLeavesSource` — built in, procedural, no download: the dead-leaves model (occluding discs
  with power-law radii, density ∝ r⁻³), whose images have the scale invariance and ≈ 1/f² power
  spectrum of natural images (Lee, Mumford & Huang, "Occlusion Models for Natural Images", IJCV 2001).
  Discs carry random colours, shading gradients and some sinusoidal texture.
* :class:`ImageFolderSource` — a folder of sRGB images (PNG/JPEG/TIFF, 8 or 16 bit, searched
  recursively), read with OpenCV (BGR → RGB) and unprocessed (:mod:`noisesim.isp`).
* :class:`RawFolderSource` — a folder of long-exposure raw files read with rawpy; patches are cropped
  with the CFA phase kept, then re-expressed in the requested pattern when the two differ only by phase.

Order for sRGB sources (``sample_patch``): random crop → unprocess (sampled :class:`~noisesim.isp.ISPMeta`)
→ blur (:mod:`noisesim.blur`) → mosaic. Every draw uses only the ``rng`` passed in, in a fixed order, so
a patch is reproducible from its seed.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros as _trailing_zeros

from . import isp
from .blur import BlurSpec, apply_blur, sample_kernel
from .cfa import CFA
from .errors import CFAError, DatasetError, InputFileError, ParameterError
from .rng import as_generator

log = logging.getLogger(__name__)

__all__ = [
    "CleanPatch",
    "CleanSource",
    "DeadLeavesSource",
    "ImageFolderSource",
    "RawFolderSource",
    "open_source",
    "render_dead_leaves",
    "IMAGE_EXTENSIONS",
    "DEAD_LEAVES_R_MIN_PX",
    "RAW_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
from .rawio import RAW_EXTENSIONS, raw_cfa_and_black, read_raw  # noqa: E402  (one raw reader)


@dataclass
class CleanPatch:
    """One clean sample.

    Attributes
    ----------
    raw : (patch, patch) float32
        Normalized [0, 1] mosaic in the requested CFA phase (the long exposure).
    rgb_linear : (patch, patch, 3) float32 or None
        Linear camera RGB after blur, before mosaic; only set when blur was applied (without blur the
        sRGB sources unprocess and mosaic in one fused pass, :func:`noisesim.isp.unprocess_mosaic`).
    source_index : int
        Index of the source file in the source's sorted file list (-1 for procedural patches).
    blur_kernel : (k, k) float32 or None
        The kernel applied (sum 1), None for no blur.
    isp : ISPMeta or None
        The unprocessing quantities (None for raw sources).
    origin : (int, int)
        Top-left (row, column) of the crop in the source image (mosaic pixels); (0, 0) for procedural.
    """

    raw: np.ndarray
    rgb_linear: np.ndarray | None
    source_index: int
    blur_kernel: np.ndarray | None
    isp: isp.ISPMeta | None
    origin: tuple[int, int] = (0, 0)


class CleanSource:
    """Base class: a collection of clean images that hands out random patches.

    Parameters
    ----------
    cfa : CFA or str
        The pattern of the returned mosaics.
    cam2rgb : (3, 3) array-like, optional
        Camera RGB → linear sRGB matrix of the target camera (e.g. from its card); sampled as in
        Brooks et al. when None (sRGB and procedural sources only).
    """

    def __init__(self, cfa, *, cam2rgb=None) -> None:
        self.cfa = cfa if isinstance(cfa, CFA) else CFA(cfa)
        self.cam2rgb = None if cam2rgb is None else np.asarray(cam2rgb, dtype=np.float64).reshape(3, 3)

    def __len__(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        """A one-line description (for dataset attributes and logs).

        Returns
        -------
        str
        """
        return type(self).__name__

    def _check_patch(self, patch: int) -> int:
        if not isinstance(patch, (int, np.integer)) or patch <= 0 or patch % self.cfa.period:
            raise ParameterError(
                f"patch size must be a positive multiple of {self.cfa.period} for CFA {self.cfa.pattern}, got {patch!r}"
            )
        return int(patch)

    def sample_patch(self, rng, patch: int, *, blur: BlurSpec | None = None) -> CleanPatch:
        """Draw one random clean patch of ``patch × patch`` mosaic pixels. See the class docs.

        Parameters
        ----------
        rng : int, SeedSequence, Generator or None
            Source of the draws (a Generator is advanced).
        patch : int
            Side [px] of the square mosaic patch, a multiple of the CFA period.
        blur : BlurSpec, optional
            Blur to draw and apply in linear camera RGB.

        Returns
        -------
        CleanPatch
            ``raw``: (patch, patch) float32 normalized mosaic in [0, 1]; the ISP metadata and blur kernel used.
        """
        raise NotImplementedError

    def _finish_rgb(self, srgb: np.ndarray, rng: np.random.Generator, blur: BlurSpec | None, index: int, origin) -> CleanPatch:
        """sRGB crop → unprocess → blur → mosaic (the common tail of sRGB and procedural sources)."""
        meta = isp.sample_isp_meta(rng, cam2rgb=self.cam2rgb)
        kernel = sample_kernel(blur, rng)
        if kernel is None:  # no blur: unprocess and mosaic in one pass, no (H, W, 3) linear image
            raw = isp.unprocess_mosaic(srgb, meta, self.cfa)
            return CleanPatch(raw=raw, rgb_linear=None, source_index=index, blur_kernel=None, isp=meta, origin=origin)
        lin = np.clip(apply_blur(isp.unprocess(srgb, meta, lut=True), kernel), 0.0, 1.0)
        raw = isp.mosaic(lin, self.cfa)
        return CleanPatch(raw=raw, rgb_linear=lin, source_index=index, blur_kernel=kernel, isp=meta, origin=origin)


# --------------------------------------------------------------------------------------------------
# Dead leaves
# --------------------------------------------------------------------------------------------------
# Disc parameters are counter-based: uniform j of disc i is SplitMix64(key + (18 i + j + 1) · φ) (Steele,
# Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), so only the discs that
# are reached cost anything, and only the visible ones draw their colour and texture. One 64-bit key per
# image comes from the caller's Generator.
#: Smallest disc radius [px] of the built-in dead leaves (a 4 px disc, a Bayer 2 × 2 cell): an image must be
#: larger than it.
DEAD_LEAVES_R_MIN_PX = 2.0
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_UNIFORMS_PER_DISC = 18


def _disc_uniform_python(key, i, j):
    """Uniform [0, 1) number j of disc i for image key ``key`` (uint64): the SplitMix64 output at that counter."""
    z = key + np.uint64(i * _UNIFORMS_PER_DISC + j + 1) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return float(z >> _S11) * (1.0 / 9007199254740992.0)


def _ctz_python(m):
    """Index of the lowest set bit of a non-zero uint64 (reference; the compiled one is an LLVM intrinsic)."""
    m = int(m)
    return (m & -m).bit_length() - 1


# The render passes each uniform's index j as np.int64(j), not as the literal j: numba compiles a function
# once per literal argument, and the literals 0 … 17 made 18 copies of _disc_uniform, each its own LLVM
# module (~1.4 s of a fresh environment's first render). Inlining it by numba instead (inline="always")
# cost more than one compiled copy: 3.71–4.20 vs 3.12–3.28 s for a first render, alternating; same images.
# The other small helpers are inlined into the render: as functions of their own they cost as much.
_disc_uniform = numba.njit(cache=True, nogil=True)(_disc_uniform_python)


@numba.njit(cache=True, nogil=True, inline="always")
def _ctz(m):
    return _trailing_zeros(m)


def _disc_radius_python(key, i, lo, hi, inv_a1):
    """Radius [px] of disc i: the inverse CDF of ``p(r) ∝ r^−alpha`` on [r_min, r_max] at its uniform 2
    (``lo``, ``hi`` = r_min^(1−α), r_max^(1−α), ``inv_a1`` = 1/(1−α))."""
    v = lo + _disc_uniform(key, i, np.int64(2)) * (hi - lo)
    return 1.0 / math.sqrt(v) if inv_a1 == -0.5 else v**inv_a1  # alpha = 3: one sqrt instead of a pow


_disc_radius = numba.njit(cache=True, nogil=True, inline="always")(_disc_radius_python)
_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


def _span_bits_python(bits, yy, wi, xa, xb):
    """Mask word ``wi`` of row ``yy`` restricted to columns ``xa … xb``: the uncovered pixels of that span
    within the word's 64 columns (0 when the word is fully covered)."""
    m = bits[yy, wi]
    if m == 0:
        return m
    lo_b = max(xa - (wi << 6), 0)
    hi_b = min(xb - (wi << 6), 63)
    return m & ((_ALL >> np.uint64(63 - hi_b + lo_b)) << np.uint64(lo_b))


_span_bits = numba.njit(cache=True, nogil=True, inline="always")(_span_bits_python)


def _render_dead_leaves_python(out, bits, key, lo, hi, inv_a1, texture_probability, max_discs, target):
    """Front-to-back rendering of discs into the pixels not yet covered; returns the covered count.

    Plain reference implementation (slow); :func:`_render_dead_leaves_numba` is the same loop compiled.
    ``out``: (H, W, 3) float32. ``bits``: (H, ceil(W/64)) uint64, bit ``x % 64`` of word ``x // 64`` set
    while pixel (y, x) is uncovered (32 KB for 512², so it stays in cache). Disc i's uniforms come from
    :func:`_disc_uniform_python` (``key``): centre, radius by the inverse CDF of the power law (``lo``,
    ``hi`` = r_min^(1−α), r_max^(1−α), ``inv_a1`` = 1/(1−α)); colour, shading gradient and (with
    probability ``texture_probability``) a sinusoidal texture only once the disc shows. A disc whose
    bounding box holds no uncovered pixel (its rows' mask words, 64 pixels per test) is skipped at once
    (late in the rendering almost every disc is); the others are scanned row by row over their exact
    chords, 64 pixels per bit-mask test, and
    only uncovered pixels are visited (lowest set bit). The texture sine advances along a run by a
    rotation (no sin call per pixel). Drawing stops once ``target`` pixels are covered or after
    ``max_discs`` discs.
    """
    h = out.shape[0]
    w = out.shape[1]
    count = 0
    for i in range(max_discs):
        if count >= target:
            break
        cx = _disc_uniform(key, i, np.int64(0)) * w
        cy = _disc_uniform(key, i, np.int64(1)) * h
        r = _disc_radius(key, i, lo, hi, inv_a1)
        r2 = r * r
        y0 = max(int(math.ceil(cy - r)), 0)
        y1 = min(int(math.floor(cy + r)), h - 1)
        x0 = max(int(math.ceil(cx - r)), 0)
        x1 = min(int(math.floor(cx + r)), w - 1)
        if y0 > y1 or x0 > x1:
            continue
        # The box test reads the bit mask itself: per-8 × 8-block counters of uncovered pixels (updated at
        # every pixel write) cost more than they saved (512²: 3.6 → 3.3 ms per render, same images).
        hidden = True
        for yy in range(y0, y1 + 1):
            for wi in range(x0 >> 6, (x1 >> 6) + 1):
                if _span_bits(bits, yy, wi, x0, x1) != 0:
                    hidden = False
                    break
            if not hidden:
                break
        if hidden:
            continue
        ready = False
        c0 = c1 = c2 = gx0 = gx1 = gx2 = gy0 = gy1 = gy2 = amp = fx = fy = ph = 0.0
        rot_c = rot_s = 0.0
        for yy in range(y0, y1 + 1):
            dy = yy - cy
            s = r2 - dy * dy
            if s < 0.0:
                continue
            half = math.sqrt(s)
            xa = max(int(math.ceil(cx - half)), 0)
            xb = min(int(math.floor(cx + half)), w - 1)
            if xa > xb:
                continue
            last = -2
            sn = cs = 0.0
            for wi in range(xa >> 6, (xb >> 6) + 1):
                m = _span_bits(bits, yy, wi, xa, xb)
                if m == 0:
                    continue
                bits[yy, wi] = bits[yy, wi] ^ m  # all of them are covered now
                if not ready:  # colour and texture only for discs that show (most late ones are hidden)
                    lum = 0.02 + 0.96 * _disc_uniform(key, i, np.int64(3))
                    inv_r = 1.0 / max(r, 1.0)
                    # chroma: a uniform factor of std 0.2 per channel
                    c0 = min(max(lum * (1.0 + 0.7 * (_disc_uniform(key, i, np.int64(4)) - 0.5)), 0.0), 1.0)
                    c1 = min(max(lum * (1.0 + 0.7 * (_disc_uniform(key, i, np.int64(5)) - 0.5)), 0.0), 1.0)
                    c2 = min(max(lum * (1.0 + 0.7 * (_disc_uniform(key, i, np.int64(6)) - 0.5)), 0.0), 1.0)
                    # Shading: a change of at most ~0.35 across the disc.
                    gx0 = 0.35 * (_disc_uniform(key, i, np.int64(7)) - 0.5) * inv_r
                    gx1 = 0.35 * (_disc_uniform(key, i, np.int64(8)) - 0.5) * inv_r
                    gx2 = 0.35 * (_disc_uniform(key, i, np.int64(9)) - 0.5) * inv_r
                    gy0 = 0.35 * (_disc_uniform(key, i, np.int64(10)) - 0.5) * inv_r
                    gy1 = 0.35 * (_disc_uniform(key, i, np.int64(11)) - 0.5) * inv_r
                    gy2 = 0.35 * (_disc_uniform(key, i, np.int64(12)) - 0.5) * inv_r
                    amp = 0.02 + 0.10 * _disc_uniform(key, i, np.int64(14)) if _disc_uniform(key, i, np.int64(13)) < texture_probability else 0.0
                    if amp != 0.0:  # the texture's numbers (5 hashes, 4 trig calls) only for textured discs
                        f = 0.05 + 1.15 * _disc_uniform(key, i, np.int64(15))  # rad/px
                        th = math.pi * _disc_uniform(key, i, np.int64(16))
                        fx = f * math.cos(th)
                        fy = f * math.sin(th)
                        ph = 2.0 * math.pi * _disc_uniform(key, i, np.int64(17))
                        rot_c = math.cos(fx)
                        rot_s = math.sin(fx)
                    ready = True
                while m != 0:
                    xx = (wi << 6) + _ctz(m)
                    m = m & (m - _ONE)
                    dx = xx - cx
                    t = 0.0
                    if amp != 0.0:
                        if xx == last + 1:  # sin(a + fx) by rotation from the previous pixel
                            sn, cs = sn * rot_c + cs * rot_s, cs * rot_c - sn * rot_s
                        else:
                            a = fx * dx + fy * dy + ph
                            sn = math.sin(a)
                            cs = math.cos(a)
                        t = amp * sn
                    last = xx
                    out[yy, xx, 0] = c0 + gx0 * dx + gy0 * dy + t
                    out[yy, xx, 1] = c1 + gx1 * dx + gy1 * dy + t
                    out[yy, xx, 2] = c2 + gx2 * dx + gy2 * dy + t
                    count += 1
    return count


def _uncovered_python(bits, y, x):
    return (bits[y, x >> 6] >> np.uint64(x & 63)) & _ONE != 0


_uncovered = numba.njit(cache=True, nogil=True, inline="always")(_uncovered_python)


def _fill_uncovered_python(out, bits):
    """Give each still-uncovered pixel the value of a covered neighbour, as if a neighbouring leaf reached
    it: a raster pass (left, then above) visiting only uncovered pixels, then, for what is left (the
    top-left corner), a reverse raster pass (right, then below). Returns the number still uncovered."""
    h = out.shape[0]
    w = out.shape[1]
    left = 0
    for yy in range(h):
        for wi in range(bits.shape[1]):
            m = bits[yy, wi]
            while m != 0:
                b = _ctz(m)
                m = m & (m - _ONE)
                xx = (wi << 6) + b
                sy, sx = -1, -1
                if xx > 0 and not _uncovered(bits, yy, xx - 1):
                    sy, sx = yy, xx - 1
                elif yy > 0 and not _uncovered(bits, yy - 1, xx):
                    sy, sx = yy - 1, xx
                if sy >= 0:
                    for c in range(3):
                        out[yy, xx, c] = out[sy, sx, c]
                    bits[yy, wi] = bits[yy, wi] & ~(_ONE << np.uint64(b))
                else:
                    left += 1
    if left == 0:
        return 0
    left = 0
    for yy in range(h - 1, -1, -1):
        for xx in range(w - 1, -1, -1):
            if not _uncovered(bits, yy, xx):
                continue
            sy, sx = -1, -1
            if xx + 1 < w and not _uncovered(bits, yy, xx + 1):
                sy, sx = yy, xx + 1
            elif yy + 1 < h and not _uncovered(bits, yy + 1, xx):
                sy, sx = yy + 1, xx
            if sy >= 0:
                for c in range(3):
                    out[yy, xx, c] = out[sy, sx, c]
                bits[yy, xx >> 6] = bits[yy, xx >> 6] & ~(_ONE << np.uint64(xx & 63))
            else:
                left += 1
    return left


# No reference counting or allocation in the compiled loops (_nrt=False): every array comes from Python.
_render_dead_leaves_numba = numba.njit(cache=True, nogil=True, _nrt=False)(_render_dead_leaves_python)
_fill_uncovered_numba = numba.njit(cache=True, nogil=True, _nrt=False)(_fill_uncovered_python)


def render_dead_leaves(
    rng,
    height: int,
    width: int,
    *,
    r_min: float = DEAD_LEAVES_R_MIN_PX,
    r_max: float | None = None,
    alpha: float = 3.0,
    max_discs: int = 1 << 17,
    coverage: float = 0.999,
    texture_probability: float = 0.3,
    smooth_sigma: float = 0.6,
    use_numba: bool = True,
    out: np.ndarray | None = None,
    clip: bool = True,
) -> np.ndarray:
    """A dead-leaves sRGB image, (H, W, 3) float32 in [0, 1].

    Discs are drawn front to back (each new disc only fills pixels no earlier disc covered) until the
    image is covered; radii follow ``p(r) ∝ r^−alpha`` on ``[r_min, r_max]``, which for ``alpha = 3``
    makes the image statistically scale invariant with a power spectrum ≈ 1/f² (Lee, Mumford & Huang,
    IJCV 2001). Each disc gets a random colour (a luminance U(0.02, 0.98) modulated per channel by a
    uniform chroma factor of std 0.2), a small linear shading gradient, and with probability
    ``texture_probability`` a sinusoidal texture; a Gaussian of σ = ``smooth_sigma`` px (truncated at
    3σ) then stands in for the optics (anti-aliased edges). Drawing stops once a fraction ``coverage`` of the pixels is
    covered (the last 0.1 % would cost a quarter of the time: coupon collecting); the few pixels left,
    in holes of a pixel or two, take the value of a covered neighbour, as if that leaf reached them.
    ``r_min`` = 2 px (a 4 px disc, the size of a Bayer 2 × 2 cell) keeps the measured spectral slope at
    −2.2 over 1/128 … 1/4 cycles/px (−2.1 with 1.5 px, for 1.7× the discs).

    Cost: a disc whose bounding box is fully covered is skipped after one mask test per row; the others are scanned over their
    exact chords through a bit mask of uncovered pixels, so each pixel is written once and covered runs
    cost one test per 64 pixels (see :func:`_render_dead_leaves_python`). The disc parameters come from a counter-based hash keyed by one 64-bit draw
    from ``rng`` (so hidden discs cost no random numbers).

    Parameters
    ----------
    rng : int, SeedSequence, Generator or None
    height, width : int
        Image size [px].
    r_min, r_max : float
        Radius range [px]; ``r_max`` defaults to ``max(height, width)``.
    max_discs : int
        Upper bound on the number of discs drawn (the coverage target is normally reached first).
    use_numba : bool
        False runs the plain-Python reference loop (slow; for tests).
    out : (H, W, 3) float32 C-contiguous array, optional
        Render into this buffer (and return it) instead of a new array: a source drawing many patches
        reuses one buffer (no page faults on 3 MB per 512² patch).
    clip : bool
        Clip to [0, 1] (shading, texture and the smoothing can overshoot by a few hundredths). False leaves
        that to a consumer that clamps anyway: the unprocessing's 16-bit table
        (:func:`noisesim.isp.unprocess_mosaic`, ``unprocess(lut=True)``) maps values below 0 and above 1
        to its first and last entries, as it maps 0 and 1, so its output is the same bit for bit.

    Returns
    -------
    (height, width, 3) ndarray of float32
        sRGB in [0, 1] (``out`` when given; with ``clip=False``, slightly beyond at places).
    """
    rng = as_generator(rng)
    if r_max is None:
        r_max = float(max(height, width))
    if not 0 < r_min < r_max:
        raise ParameterError(f"dead leaves radii need 0 < r_min < r_max, got {r_min}, {r_max}")
    key = np.uint64(rng.integers(0, 2**64, dtype=np.uint64))
    if out is None:
        out = np.empty((height, width, 3), dtype=np.float32)
    elif out.shape != (height, width, 3) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ParameterError(f"out must be a C-contiguous float32 array of shape {(height, width, 3)}, got {out.dtype} {out.shape}")
    bits = _coverage_template(height, width).copy()
    render = _render_dead_leaves_numba if use_numba else _render_dead_leaves_python
    a1 = 1.0 - alpha
    lo, hi = r_min**a1, r_max**a1
    target = min(int(math.ceil(coverage * height * width)), height * width)
    count = render(out, bits, key, lo, hi, 1.0 / a1, float(texture_probability), int(max_discs), target)
    if count < height * width:
        left = (_fill_uncovered_numba if use_numba else _fill_uncovered_python)(out, bits)
        if left:  # only if nothing at all was covered
            out[:] = np.float32(0.5)
    if smooth_sigma > 0:
        import cv2

        # Truncated at 3σ (5 taps for 0.6 px): OpenCV's GaussianBlur would take 4σ (7 taps, weights of
        # 3e-6 at ±3 px) and cost 1.5× as much; the images differ by < 1e-5.
        taps = cv2.getGaussianKernel(2 * int(math.ceil(3.0 * smooth_sigma)) + 1, smooth_sigma, cv2.CV_32F)
        cv2.sepFilter2D(out, -1, taps, taps, dst=out, borderType=cv2.BORDER_REFLECT_101)  # in place
    return np.clip(out, 0.0, 1.0, out=out) if clip else out


@functools.lru_cache(maxsize=8)
def _coverage_template(height: int, width: int) -> np.ndarray:
    """The render's starting bit mask for an image size (copied per render, never written): (H, ceil(W/64))
    uint64, every pixel's bit set (uncovered)."""
    nw = (width + 63) // 64
    bits = np.full((height, nw), 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)  # 1 = uncovered
    if width % 64:
        bits[:, -1] = np.uint64((1 << (width % 64)) - 1)
    bits.flags.writeable = False
    return bits


class DeadLeavesSource(CleanSource):
    """Built-in procedural source: dead-leaves sRGB patches (:func:`render_dead_leaves`), unprocessed.

    Needs no files; deterministic from the ``rng`` of each call. ``len()`` is nominal (the source is
    infinite); ``source_index`` is -1.

    Parameters
    ----------
    cfa : CFA or str
    cam2rgb : (3, 3), optional
    **render_options
        Passed to :func:`render_dead_leaves` (``r_min``, ``alpha``, ``texture_probability`` …).
    """

    def __init__(self, cfa, *, cam2rgb=None, **render_options) -> None:
        super().__init__(cfa, cam2rgb=cam2rgb)
        self.render_options = dict(render_options)
        self._buffer: np.ndarray | None = None  # the sRGB render, reused from patch to patch

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_buffer"] = None
        return state

    def __len__(self) -> int:
        return 1

    def describe(self) -> str:
        """A short text naming the source and its settings (stored with a dataset).

        Returns
        -------
        str
        """
        return "builtin dead leaves (procedural, power-law radii, alpha=3)"

    def sample_patch(self, rng, patch: int, *, blur: BlurSpec | None = None) -> CleanPatch:
        """A random clean patch: see :meth:`CleanSource.sample_patch`.

        Parameters
        ----------
        rng : int, SeedSequence, Generator or None
            Source of the draws.
        patch : int
            Side [px], a multiple of the CFA period.
        blur : BlurSpec, optional
            Blur to draw and apply.

        Returns
        -------
        CleanPatch
        """
        patch = self._check_patch(patch)
        rng = as_generator(rng)
        if self._buffer is None or self._buffer.shape != (patch, patch, 3):
            self._buffer = np.empty((patch, patch, 3), dtype=np.float32)
        # unclipped: the unprocessing's table clamps to [0, 1] itself (same values, one pass less)
        options = {"clip": False, **self.render_options}
        srgb = render_dead_leaves(rng, patch, patch, out=self._buffer, **options)
        return self._finish_rgb(srgb, rng, blur, -1, (0, 0))  # consumes srgb (no reference kept)


# --------------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------------
def _list_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    files = [
        Path(root) / name
        for root, _dirs, names in os.walk(folder, followlinks=True)
        for name in names
        if name.lower().endswith(extensions) and not name.startswith(".")
    ]
    return sorted(files, key=lambda p: str(p.relative_to(folder)))


def _check_folder(folder) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise InputFileError(f"source folder {folder} does not exist")
    if not folder.is_dir():
        raise InputFileError(f"source {folder} is not a folder")
    return folder


class _LRU:
    """A tiny least-recently-used cache of decoded images (not pickled: each worker builds its own)."""

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self.items: OrderedDict = OrderedDict()

    def get(self, key, load):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = load()
        if self.size:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


def _image_size(path: Path) -> tuple[int, int] | None:
    """(H, W) from the file header without decoding (Pillow, tifffile), or None when it cannot be read."""
    ext = path.suffix.lower()
    try:
        if ext in (".png", ".jpg", ".jpeg"):
            import warnings

            from PIL import Image

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a very large image is fine here: only its header is read
                with Image.open(path) as im:
                    w, h = im.size
            return int(h), int(w)
        if ext in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                page = tf.pages[0]
                return int(page.imagelength), int(page.imagewidth)
    except Exception:  # noqa: BLE001 - any parse failure: fall back to decoding
        return None
    return None


def read_srgb_image(path) -> np.ndarray:
    """Read an 8- or 16-bit (or float TIFF) image with OpenCV as RGB float32 in [0, 1], shape (H, W, 3).

    Grey images are replicated to three channels, alpha is dropped, OpenCV's BGR order is turned into RGB.
    Errors name the file.
    """
    import cv2

    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    if img is None:
        raise InputFileError(f"cannot read image {path}: OpenCV could not decode it (corrupt or unsupported)")
    if img.dtype == np.uint8:
        scale = 1.0 / 255.0
    elif img.dtype == np.uint16:
        scale = 1.0 / 65535.0
    elif img.dtype in (np.float32, np.float64):
        scale = 1.0
    else:
        raise InputFileError(f"image {path} has unsupported sample type {img.dtype} (use 8/16-bit or float)")
    rgb = img[..., ::-1].astype(np.float32) * np.float32(scale)
    return np.clip(rgb, 0.0, 1.0)


class _FolderSource(CleanSource):
    kind = "files"
    extensions: tuple[str, ...] = ()

    def __init__(self, folder, cfa, *, cam2rgb=None, cache_size: int = 4) -> None:
        super().__init__(cfa, cam2rgb=cam2rgb)
        self.folder = _check_folder(folder)
        self.files = _list_files(self.folder, self.extensions)
        if not self.files:
            raise DatasetError(
                f"source folder {self.folder} contains no {self.kind} (looked for {', '.join(self.extensions)}, recursively)"
            )
        self.cache_size = cache_size
        self._cache = _LRU(cache_size)
        self._sizes: list[tuple[int, int] | None] | None = None
        self._usable: dict[int, np.ndarray] = {}

    def __getstate__(self):  # do not ship decoded images to worker processes
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = _LRU(self.cache_size)

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        return f"{self.kind} in {self.folder} ({len(self.files)} files)"

    def _size_of(self, i: int) -> tuple[int, int]:
        raise NotImplementedError

    def _margin(self) -> int:
        return 0

    def usable_indices(self, patch: int) -> np.ndarray:
        """Indices of files at least ``patch`` (+ CFA phase margin) in both dimensions; warns about the rest."""
        if patch in self._usable:
            return self._usable[patch]
        if self._sizes is None:
            self._sizes = [self._size_of(i) for i in range(len(self.files))]
        need = patch + self._margin()
        ok = [i for i, s in enumerate(self._sizes) if s[0] >= need and s[1] >= need]
        ok_set = set(ok)
        small = [i for i in range(len(self.files)) if i not in ok_set]
        if small and ok:  # (with none usable, the error below says it all in one line)
            names = ", ".join(f"{self.files[i].name} {self._sizes[i][0]}×{self._sizes[i][1]}" for i in small[:5])
            more = f" and {len(small) - 5} more" if len(small) > 5 else ""
            log.warning(
                "skipping %d of %d %s in %s smaller than the %d px patch: %s%s",
                len(small), len(self.files), self.kind, self.folder, need, names, more,
            )  # fmt: skip
        if not ok:
            largest = max(self._sizes, key=lambda s: min(s))
            raise DatasetError(
                f"no usable {self.kind} in {self.folder}: all {len(self.files)} are smaller than the "
                f"{need} px patch (largest is {largest[0]}×{largest[1]}); use a smaller --patch"
            )
        arr = np.asarray(ok, dtype=np.int64)
        self._usable[patch] = arr
        return arr


class ImageFolderSource(_FolderSource):
    """sRGB images (PNG, JPEG, TIFF; 8 or 16 bit) found recursively under ``folder``, unprocessed to raw.

    Files are sorted by relative path; ``source_index`` indexes that list (:attr:`files`). Images smaller
    than the patch are skipped with one warning; if none is large enough a :class:`DatasetError` names the
    folder. Decoded images are kept in a small LRU cache (``cache_size`` images per process).
    """

    kind = "images"
    extensions = IMAGE_EXTENSIONS

    def _size_of(self, i: int) -> tuple[int, int]:
        path = self.files[i]
        s = _image_size(path)
        if s is None:
            s = self._load(i).shape[:2]
        return int(s[0]), int(s[1])

    def _load(self, i: int) -> np.ndarray:
        return self._cache.get(i, lambda: read_srgb_image(self.files[i]))

    def sample_patch(self, rng, patch: int, *, blur: BlurSpec | None = None) -> CleanPatch:
        """A random clean patch from a random image: see :meth:`CleanSource.sample_patch`.

        Parameters
        ----------
        rng : int, SeedSequence, Generator or None
            Source of the draws.
        patch : int
            Side [px], a multiple of the CFA period.
        blur : BlurSpec, optional
            Blur to draw and apply.

        Returns
        -------
        CleanPatch
        """
        patch = self._check_patch(patch)
        rng = as_generator(rng)
        usable = self.usable_indices(patch)
        i = int(usable[rng.integers(len(usable))])
        img = self._load(i)
        h, w = img.shape[:2]
        if h < patch or w < patch:  # header and decoded sizes disagree (EXIF rotation of a non-square crop)
            raise InputFileError(f"image {self.files[i]} decodes to {h}×{w}, smaller than the {patch} px patch")
        y0 = int(rng.integers(h - patch + 1))
        x0 = int(rng.integers(w - patch + 1))
        crop = img[y0 : y0 + patch, x0 : x0 + patch]
        return self._finish_rgb(crop, rng, blur, i, (y0, x0))


class RawFolderSource(_FolderSource):
    """Long-exposure raw files (any format rawpy/LibRaw reads) found recursively under ``folder``.

    Each file is read once per cache slot: ``raw_image_visible`` is copied while the file is open, the
    per-channel black level is ``black_level_per_channel`` indexed through ``raw_colors_visible`` and the
    white level is ``white_level``; patches are normalized ``(DN − black) / (white − black)`` and clipped to
    [0, 1].

    Crops keep the CFA phase: the crop origin is a multiple of the period (2, or 4 for quad Bayer) plus a
    fixed phase offset chosen so that the crop's pattern equals the requested one (e.g. an RGGB file gives
    BGGR patches by starting at odd rows and columns). A file of another CFA family (Bayer vs quad Bayer,
    or X-Trans) raises :class:`CFAError` naming it.

    With blur, the crop is demosaicked (bilinear), blurred in camera RGB and mosaicked again.

    Parameters
    ----------
    folder : str or Path
        Searched recursively for raw files.
    cfa : CFA or str
        Pattern of the patches to produce.
    cam2rgb : (3, 3) array_like, optional
        Camera RGB → linear sRGB, used when blurring.
    cache_size : int
        Decoded files kept in memory.
    """

    kind = "raw files"
    extensions = RAW_EXTENSIONS

    def __init__(self, folder, cfa, *, cam2rgb=None, cache_size: int = 2) -> None:
        super().__init__(folder, cfa, cam2rgb=cam2rgb, cache_size=cache_size)
        self._meta: dict[int, tuple[CFA, tuple[int, int]]] = {}

    def _open(self, i: int):
        import rawpy

        path = self.files[i]
        try:
            return rawpy.imread(str(path))
        except Exception as exc:  # rawpy raises its own LibRawError tree
            raise InputFileError(f"{path}: cannot be read as a raw file ({type(exc).__name__}: {exc})") from exc

    def _phase(self, file_cfa: CFA, path: Path) -> tuple[int, int]:
        want = self.cfa
        if file_cfa.is_quad != want.is_quad:
            raise CFAError(
                f"raw file {path} has CFA {file_cfa.pattern}, which cannot be re-expressed as the requested "
                f"{want.pattern} by cropping (different CFA family)"
            )
        step = 2 if want.is_quad else 1
        for dy in range(0, want.period, step):
            for dx in range(0, want.period, step):
                if file_cfa.shifted(dy, dx) == want:
                    return dy, dx
        raise CFAError(f"raw file {path}: CFA {file_cfa.pattern} cannot be cropped to {want.pattern}")  # pragma: no cover

    def _file_meta(self, i: int) -> tuple[CFA, tuple[int, int]]:
        if i not in self._meta:
            with self._open(i) as raw:
                cfa, _, _ = raw_cfa_and_black(raw, self.files[i])
                size = (int(raw.sizes.height), int(raw.sizes.width))
            self._meta[i] = (cfa, size)
        return self._meta[i]

    def _margin(self) -> int:
        return self.cfa.period - 1 if not self.cfa.is_quad else 2

    def _size_of(self, i: int) -> tuple[int, int]:
        cfa, size = self._file_meta(i)
        self._phase(cfa, self.files[i])  # wrong family → clear error at scan time
        return size

    def _load(self, i: int):
        def load():
            frame = read_raw(self.files[i])
            tile = frame.cfa.tile_values
            return frame.mosaic, frame.cfa, tile(frame.black_level_dn), tile(frame.white_level_dn)

        return self._cache.get(i, load)

    def sample_patch(self, rng, patch: int, *, blur: BlurSpec | None = None) -> CleanPatch:
        """A random clean patch from a random raw file: see :meth:`CleanSource.sample_patch`.

        Parameters
        ----------
        rng : int, SeedSequence, Generator or None
            Source of the draws.
        patch : int
            Side [px], a multiple of the CFA period.
        blur : BlurSpec, optional
            Blur to draw and apply.

        Returns
        -------
        CleanPatch
            ``raw`` normalized by the file's own levels and clipped to [0, 1].
        """
        patch = self._check_patch(patch)
        rng = as_generator(rng)
        usable = self.usable_indices(patch)
        i = int(usable[rng.integers(len(usable))])
        img, file_cfa, black_tile, white_tile = self._load(i)
        dy, dx = self._phase(file_cfa, self.files[i])
        p = file_cfa.period
        h, w = img.shape
        ny = (h - dy - patch) // p + 1
        nx = (w - dx - patch) // p + 1
        if ny <= 0 or nx <= 0:
            raise InputFileError(f"raw file {self.files[i]} ({h}×{w}) is too small for a {patch} px patch")
        y0 = dy + p * int(rng.integers(ny))
        x0 = dx + p * int(rng.integers(nx))
        crop = img[y0 : y0 + patch, x0 : x0 + patch].astype(np.float32)
        # Levels per pixel of the crop, from the file's tile at the crop's phase.
        black_map, white_map = (np.tile(np.roll(t, (-(y0 % p), -(x0 % p)), axis=(0, 1)), (patch // p, patch // p)).astype(np.float32)
                                for t in (black_tile, white_tile))
        raw_norm = np.clip((crop - black_map) / (white_map - black_map), 0.0, 1.0).astype(np.float32)
        kernel = sample_kernel(blur, rng)
        lin = None
        if kernel is not None:
            lin = np.clip(apply_blur(isp.demosaic(raw_norm, self.cfa, method="bilinear"), kernel), 0.0, 1.0)
            raw_norm = isp.mosaic(lin, self.cfa)
        return CleanPatch(raw=raw_norm, rgb_linear=lin, source_index=i, blur_kernel=kernel, isp=None, origin=(y0, x0))


# --------------------------------------------------------------------------------------------------
# Façade
# --------------------------------------------------------------------------------------------------
def open_source(spec, *, cfa, cam2rgb=None) -> CleanSource:
    """Open a clean source from the CLI's ``--source`` value.

    ``"builtin"`` → :class:`DeadLeavesSource`; a folder → :class:`ImageFolderSource` if it holds sRGB
    images, :class:`RawFolderSource` if it holds raw files. A folder with both kinds, an empty folder or a
    missing path raises an error naming it.

    Parameters
    ----------
    spec : str or Path
        ``"builtin"`` or a folder.
    cfa : CFA or str
        Pattern of the patches.
    cam2rgb : (3, 3) array_like, optional
        Camera RGB → linear sRGB.

    Returns
    -------
    CleanSource
    """
    if isinstance(spec, str) and spec.strip().lower() == "builtin":
        return DeadLeavesSource(cfa, cam2rgb=cam2rgb)
    folder = _check_folder(spec)
    images = _list_files(folder, IMAGE_EXTENSIONS)
    raws = _list_files(folder, RAW_EXTENSIONS)
    if images and raws:
        raise DatasetError(
            f"source folder {folder} mixes {len(images)} sRGB images and {len(raws)} raw files; "
            "put them in separate folders (they are processed differently)"
        )
    if raws:
        return RawFolderSource(folder, cfa, cam2rgb=cam2rgb)
    if images:
        return ImageFolderSource(folder, cfa, cam2rgb=cam2rgb)
    raise DatasetError(
        f"source folder {folder} contains no images ({', '.join(IMAGE_EXTENSIONS)}) and no raw files "
        f"({', '.join(RAW_EXTENSIONS[:6])} …), searched recursively"
    )
