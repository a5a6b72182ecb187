"""Counter-based random numbers: Philox4x32-10, in numba and in plain numpy.

Why counter-based: numba's ``np.random`` inside ``prange`` is a per-thread Mersenne Twister seeded from the
OS, so results change with the thread count. Philox (Salmon et al., "Parallel random numbers: as easy as
1, 2, 3", SC 2011) maps a 128-bit counter and a 64-bit key to four 32-bit words with no state, so every
pixel's draws are a pure function of (seed, frame, stream, pixel coordinate): bit-identical output for any
thread count, and any crop regenerated on its own.

Counter layout used by the noise kernels (all 32-bit words):

    c0 = column in the full sensor, c1 = row in the full sensor, c2 = frame index,
    c3 = stream << 16 | block      (stream: what the draw is for; block: rejection attempts)

A draw that needs one word per pixel takes it from a *packed* stream: pixel column gx uses word gx mod 4 of
the block at c0 = gx // 4, so one Philox call serves four neighbouring pixels (the generator's cost per
pixel is then a quarter; the words of one block are as independent as those of consecutive blocks).

The numpy implementation (:func:`philox4x32_np`) is the reference that the numba one is tested against.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "as_generator",
    "INV_2_32",
    "key_from_seed",
    "line_normals",
    "normal_np",
    "packed_words_np",
    "philox4x32_np",
    "ROUNDS",
    "STREAM_COL",
    "STREAM_DITHER",
    "STREAM_READ",
    "STREAM_READ_PIXEL",
    "STREAM_READ_TUKEY",
    "STREAM_ROW",
    "STREAM_SHOT",
    "STREAM_SHOT_INVERSION",
    "uniform_np",
]

# Philox4x32 constants (Salmon et al. 2011, Random123).
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
ROUNDS = 10

# Streams: each random quantity has its own stream, so switching one component never changes another's draws.
STREAM_SHOT = 0  # PTRS (μ ≥ 10), paired: try t of pixel column gx from words 2·(gx mod 2), +1 of block t at gx // 2
STREAM_READ = 1  # Gaussian read noise: words 0 and 1 of one block per pixel
STREAM_ROW = 2
STREAM_COL = 3
STREAM_READ_PIXEL = 4  # read noise with a per-pixel σ (FixedPatternMaps.read_sigma_scale)
STREAM_SHOT_INVERSION = 5  # packed: the inversion's uniform (μ < 10)
STREAM_READ_TUKEY = 6  # packed: the Tukey-lambda quantile's uniform
STREAM_DITHER = 7  # packed: the U(−½, ½) dither of unquantized output

# 2**-32: word w maps to the open-interval uniform (w + 0.5) * 2**-32, never exactly 0 or 1, so log(u)
# and negative Tukey-lambda powers stay finite (docs/performance.md).
INV_2_32 = 2.3283064365386963e-10


def as_generator(rng=None) -> np.random.Generator:
    """A numpy Generator from a seed, SeedSequence or Generator (returned as is).

    Parameters
    ----------
    rng : int, numpy.random.SeedSequence, numpy.random.Generator or None
        As :func:`numpy.random.default_rng`; None takes fresh OS entropy, the global RNG is never used.

    Returns
    -------
    numpy.random.Generator
    """
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def key_from_seed(rng=None) -> tuple[int, int]:
    """Derive the 64-bit Philox key (two 32-bit words) from a seed.

    Parameters
    ----------
    rng : int, numpy.random.SeedSequence, numpy.random.Generator or None
        An int or SeedSequence gives a reproducible key; a Generator is advanced by one draw; None takes
        fresh OS entropy (not reproducible).

    Returns
    -------
    (k0, k1) : (int, int)
        The two 32-bit key words.
    """
    if isinstance(rng, np.random.Generator):
        words = rng.integers(0, 2**32, size=2, dtype=np.uint64)
    else:
        if isinstance(rng, np.random.SeedSequence):
            ss = rng
        elif rng is None or isinstance(rng, (int, np.integer)):
            if rng is not None and int(rng) < 0:
                raise ValueError(f"seed must be a non-negative integer, got {rng}")
            ss = np.random.SeedSequence(None if rng is None else int(rng))
        else:
            raise TypeError(f"rng must be an int seed, SeedSequence, Generator or None, got {type(rng).__name__}")
        words = ss.generate_state(2, dtype=np.uint32).astype(np.uint64)
    return int(words[0]), int(words[1])


def _philox4x32_rounds(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 rounds on uint64 scalars or arrays holding 32-bit values: the one implementation,
    compiled by numba as :func:`philox4x32` and run on numpy arrays by :func:`philox4x32_np`."""
    for _ in range(ROUNDS):
        p0 = _M0 * c0
        p1 = _M1 * c2
        n0 = ((p1 >> _SHIFT) ^ c1 ^ k0) & _MASK32
        n2 = ((p0 >> _SHIFT) ^ c3 ^ k1) & _MASK32
        c1 = p1 & _MASK32
        c3 = p0 & _MASK32
        c0 = n0
        c2 = n2
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


# Philox4x32-10 of one counter in compiled code; all arguments and results are uint64 holding 32-bit values.
philox4x32 = nb.njit(inline="always", cache=True)(_philox4x32_rounds)


def philox4x32_np(c0, c1, c2, c3, k0: int, k1: int):
    """Vectorized numpy Philox4x32-10 (the reference). Counters broadcast; returns four uint64 arrays.

    Parameters
    ----------
    c0, c1, c2, c3 : int or ndarray
        The four 32-bit counter words (broadcast together).
    k0, k1 : int
        The 32-bit key words.

    Returns
    -------
    tuple of 4 ndarray of uint64
        The four output words (values below 2³²), broadcast shape.
    """
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in np.broadcast_arrays(c0, c1, c2, c3))
    return _philox4x32_rounds(c0, c1, c2, c3, np.uint64(k0), np.uint64(k1))


def packed_words_np(gx, gy, frame: int, stream: int, key) -> np.ndarray:
    """The word of each pixel in a packed stream (word gx mod 4 of the block at column gx // 4), uint64.

    Parameters
    ----------
    gx, gy : int or ndarray
        Pixel column and row in sensor coordinates (broadcast together).
    frame : int
        Frame index.
    stream : int
        Stream number (which noise term).
    key : (int, int)
        Philox key from :func:`key_from_seed`.

    Returns
    -------
    ndarray of uint64
        One 32-bit word per pixel, broadcast shape.
    """
    gx = np.asarray(gx, dtype=np.uint64)
    words = philox4x32_np(gx >> np.uint64(2), gy, np.uint64(frame), np.uint64(stream << 16), *key)
    return np.choose((gx & np.uint64(3)).astype(np.intp), words)


def uniform_np(word) -> np.ndarray:
    """32-bit words → float64 uniforms on the open interval (0, 1).

    Parameters
    ----------
    word : ndarray of uint
        32-bit random words.

    Returns
    -------
    ndarray of float64
        Same shape.
    """
    return (np.asarray(word, dtype=np.float64) + 0.5) * INV_2_32


def normal_np(w_a, w_b) -> np.ndarray:
    """Two words → one standard normal by Box–Muller (the cosine branch).

    Parameters
    ----------
    w_a, w_b : ndarray of uint
        32-bit random words, same shape.

    Returns
    -------
    ndarray of float64
        N(0, 1) draws, same shape.
    """
    u1, u2 = uniform_np(w_a), uniform_np(w_b)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def line_normals(n: int, start: int, fixed: int, *, line_is_row: bool, frame: int, stream: int, key) -> np.ndarray:
    """Standard normals for ``n`` consecutive rows (or columns) starting at global index ``start``.

    Row ``y`` is the counter (fixed, y, frame, stream<<16); column ``x`` is (x, fixed, frame, stream<<16).
    Used for row and column noise by both the numba kernel's wrapper and the numpy reference.

    Parameters
    ----------
    n : int
        Number of rows (or columns).
    start : int
        Global index of the first one (sensor coordinates, not the crop's).
    fixed : int or (m,) sequence of int
        The counter word that is held fixed (the packed channel or phase); several at once give one column
        of normals each, in one vectorized Philox call (each numpy call costs ~0.1 ms whatever its size).
    line_is_row : bool
        Rows (True) or columns (False).
    frame : int
        Frame index.
    stream : int
        Stream number (which noise term).
    key : (int, int)
        Philox key from :func:`key_from_seed`.

    Returns
    -------
    (n,) or (n, m) ndarray of float64
        Standard normals; column j is what ``fixed[j]`` alone gives.
    """
    idx = np.arange(start, start + n, dtype=np.uint64)
    if np.ndim(fixed):
        fixed, idx = np.asarray(fixed, dtype=np.uint64)[None, :], idx[:, None]
    else:
        fixed = np.uint64(fixed)
    c0, c1 = (fixed, idx) if line_is_row else (idx, fixed)
    w = philox4x32_np(c0, c1, np.uint64(frame), np.uint64(stream << 16), *key)
    return normal_np(w[0], w[1])
