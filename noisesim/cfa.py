"""Colour filter arrays: patterns, packing and per-channel levels.

Patterns are read from the top-left pixel, row by row (never OpenCV's reversed naming):

* Bayer, period 2: ``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``.
* Quad Bayer, period 4 (2×2 blocks of one colour): ``"QUAD_RGGB"`` … ``"QUAD_GBRG"``, or spelled out as
  16 letters, e.g. ``"RRGGRRGGGGBBGGBB"``.

**Packed form** is ``(C, H/p, W/p)`` with ``C = p²`` channels, one per position of the ``p × p`` tile in
row-major order. For Bayer that is ``(4, H/2, W/2)`` in the order the pattern string reads
(RGGB → R, G1, G2, B; GRBG → G1, R, B, G2), as in ELD/PMN. For quad Bayer it is ``(16, H/4, W/4)``.

**Level channels**: black and white levels are given per *colour site* of the 2×2 Bayer layout (4 values,
in the order the Bayer string reads: RGGB → R, G1, G2, B), which is also the packed channel order for Bayer.
A quad-Bayer pixel uses the level of the 2×2 block it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import CFAError, ParameterError, ShapeError

__all__ = ["BAYER_PATTERNS", "CFA", "PATTERNS", "per_site_values", "QUAD_PATTERNS"]

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
QUAD_PATTERNS = tuple(f"QUAD_{p}" for p in BAYER_PATTERNS)
PATTERNS = BAYER_PATTERNS + QUAD_PATTERNS


def _quad_letters(bayer: str) -> str:
    """Spell out the 4×4 quad tile of a 2×2 Bayer string: each colour becomes a 2×2 block."""
    rows = []
    for by in range(2):
        row = "".join(bayer[2 * by + bx] * 2 for bx in range(2))
        rows += [row, row]
    return "".join(rows)


_QUAD_SPELLED = {_quad_letters(p): f"QUAD_{p}" for p in BAYER_PATTERNS}


def per_site_values(values, name: str = "per-site values") -> tuple[float, float, float, float]:
    """A scalar or 4 values → 4 floats, one per colour site in Bayer reading order (RGGB → R, G1, G2, B).

    Parameters
    ----------
    values : float or sequence of 4 floats
        The same unit in, the same out (e.g. DN for black levels).
    name : str
        What the values are, for the error message.

    Returns
    -------
    tuple of 4 floats

    Raises
    ------
    ShapeError
        Neither a scalar nor 4 values.
    ParameterError
        A value is not finite.

    Examples
    --------
    >>> per_site_values(512)
    (512.0, 512.0, 512.0, 512.0)
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.repeat(arr, 4)
    if arr.shape != (4,):
        raise ShapeError(f"{name} must be a scalar or 4 values (one per colour site). Got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be finite, got {arr.tolist()}")
    return tuple(float(v) for v in arr)  # type: ignore[return-value]


@dataclass(frozen=True)
class CFA:
    """A colour filter array pattern.

    Parameters
    ----------
    pattern : str
        One of :data:`PATTERNS` (case-insensitive), or a 16-letter quad-Bayer spelling.

    Examples
    --------
    >>> cfa = CFA("GRBG")
    >>> cfa.channel_names
    ('G1', 'R', 'B', 'G2')
    >>> CFA("rrggrrggggbbggbb").pattern
    'QUAD_RGGB'
    """

    pattern: str

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str):
            raise CFAError(f"CFA pattern must be a string, got {type(self.pattern).__name__}")
        p = self.pattern.strip().upper().replace("-", "_")
        p = _QUAD_SPELLED.get(p, p)
        if p not in PATTERNS:
            raise CFAError(
                f"unknown CFA pattern {self.pattern!r}; expected one of {', '.join(PATTERNS)} "
                "(read from the top-left pixel) or a 16-letter quad-Bayer spelling"
            )
        object.__setattr__(self, "pattern", p)

    # --- geometry -------------------------------------------------------------------------------
    @property
    def bayer(self) -> str:
        """The underlying 2×2 Bayer string (``"RGGB"`` for both ``RGGB`` and ``QUAD_RGGB``)."""
        return self.pattern[-4:]

    @property
    def is_quad(self) -> bool:
        """True for a quad Bayer pattern (4×4 tile, 2×2 blocks of one colour)."""
        return self.pattern.startswith("QUAD_")

    @property
    def period(self) -> int:
        """Tile size p in pixels: 2 for Bayer, 4 for quad Bayer."""
        return 4 if self.is_quad else 2

    @property
    def n_channels(self) -> int:
        """Number of packed channels, p²."""
        return self.period**2

    @cached_property
    def site_index(self) -> np.ndarray:
        """(p, p) int array: the level channel (0..3, Bayer order) of each tile position."""
        p = self.period
        block = p // 2
        idx = np.empty((p, p), dtype=np.int64)
        for y in range(p):
            for x in range(p):
                idx[y, x] = 2 * (y // block) + (x // block)
        return idx

    @cached_property
    def site_names(self) -> tuple[str, ...]:
        """Names of the 4 level channels in Bayer reading order, greens numbered: RGGB → R, G1, G2, B."""
        names, greens = [], 0
        for ch in self.bayer:
            if ch == "G":
                greens += 1
                names.append(f"G{greens}")
            else:
                names.append(ch)
        return tuple(names)

    @cached_property
    def channel_names(self) -> tuple[str, ...]:
        """Names of the packed channels in packed order (row-major over the tile)."""
        if not self.is_quad:
            return self.site_names
        return tuple(
            f"{self.site_names[self.site_index[y, x]]}_{y}{x}"
            for y in range(self.period)
            for x in range(self.period)
        )

    @cached_property
    def colors(self) -> np.ndarray:
        """(p, p) array of colour letters 'R', 'G', 'B'."""
        sites = np.array(list(self.bayer))
        return sites[self.site_index]

    def color_index(self) -> np.ndarray:
        """(p, p) int array: 0 = R, 1 = G, 2 = B at each tile position (for mosaicking RGB).

        Returns
        -------
        (p, p) ndarray of int
            Colour of each tile position: 0 = R, 1 = G, 2 = B.
        """
        return self._color_codes.copy()

    @cached_property
    def _color_codes(self) -> np.ndarray:
        # computed once per CFA: the unprocessing asks for it per synthesized patch
        lut = {"R": 0, "G": 1, "B": 2}
        codes = np.array([[lut[c] for c in row] for row in self.colors], dtype=np.int64)
        codes.flags.writeable = False
        return codes

    def shifted(self, dy: int, dx: int) -> "CFA":
        """The pattern seen by a crop whose top-left pixel is at (dy, dx) of this mosaic.

        Parameters
        ----------
        dy, dx : int
            Crop origin [px] (rows, columns); only their values modulo the period matter.

        Returns
        -------
        CFA
            The crop's pattern, read from its top-left pixel.
        """
        p = self.period
        b = self.bayer
        if self.is_quad:
            # A quad pattern shifted by an odd amount has no name: half-blocks at the border.
            if dy % 2 or dx % 2:
                raise CFAError(f"a quad-Bayer crop must start on even coordinates, got ({dy}, {dx})")
            dy, dx = (dy % p) // 2, (dx % p) // 2
        else:
            dy, dx = dy % 2, dx % 2
        tile = np.array(list(b)).reshape(2, 2)
        tile = np.roll(tile, (-dy, -dx), axis=(0, 1))
        name = "".join(tile.ravel())
        return CFA(f"QUAD_{name}" if self.is_quad else name)

    # --- validation -----------------------------------------------------------------------------
    def check_mosaic(self, raw: np.ndarray, what: str = "raw image") -> None:
        """Raise :class:`ShapeError` unless ``raw`` is (H, W) with H and W multiples of the period.

        Parameters
        ----------
        raw : ndarray
            The array to check.
        what : str
            What it is, for the error message.
        """
        if raw.ndim != 2:
            raise ShapeError(f"{what} must have shape (H, W) for CFA {self.pattern}. Got {tuple(raw.shape)}.")
        h, w = raw.shape
        p = self.period
        if h % p or w % p or h == 0 or w == 0:
            raise ShapeError(
                f"{what} of shape ({h}, {w}) does not fit CFA {self.pattern}: "
                f"height and width must be positive multiples of {p}"
            )

    def check_packed(self, packed: np.ndarray, what: str = "packed raw") -> None:
        """Raise :class:`ShapeError` unless ``packed`` is (C, h, w) with C = p².

        Parameters
        ----------
        packed : ndarray
            The array to check.
        what : str
            What it is, for the error message.
        """
        if packed.ndim != 3 or packed.shape[0] != self.n_channels:
            raise ShapeError(
                f"{what} must have shape ({self.n_channels}, H/{self.period}, W/{self.period}) for CFA "
                f"{self.pattern}. Got {tuple(packed.shape)}."
            )

    # --- pack / unpack --------------------------------------------------------------------------
    def pack(self, raw: np.ndarray) -> np.ndarray:
        """(H, W) mosaic → (C, H/p, W/p) packed, channel order :attr:`channel_names`.

        Shape: ``(H, W) -> (p², H/p, W/p)``. Returns a new contiguous array of the same dtype.

        Parameters
        ----------
        raw : (H, W) ndarray
            Mosaic, any unit; H and W multiples of the period p.

        Returns
        -------
        (p², H/p, W/p) ndarray
            One plane per tile position.
        """
        raw = np.asarray(raw)
        self.check_mosaic(raw)
        p = self.period
        h, w = raw.shape
        return np.ascontiguousarray(raw.reshape(h // p, p, w // p, p).transpose(1, 3, 0, 2).reshape(p * p, h // p, w // p))

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """(C, H/p, W/p) packed → (H, W) mosaic; inverse of :meth:`pack`.

        Parameters
        ----------
        packed : (p², H/p, W/p) ndarray
            One plane per tile position, in :attr:`channel_names` order.

        Returns
        -------
        (H, W) ndarray
            The mosaic, same dtype.
        """
        packed = np.asarray(packed)
        self.check_packed(packed)
        p = self.period
        _, hp, wp = packed.shape
        return np.ascontiguousarray(packed.reshape(p, p, hp, wp).transpose(2, 0, 3, 1).reshape(hp * p, wp * p))

    # --- levels ---------------------------------------------------------------------------------
    def tile_values(self, per_site) -> np.ndarray:
        """Expand 4 per-site values (Bayer order) or a scalar to a (p, p) float64 tile.

        Parameters
        ----------
        per_site : float or 4 floats
            One value per colour site in Bayer reading order (see :func:`per_site_values`).

        Returns
        -------
        ndarray
            ``(p, p)`` float64, the value of each tile position's site.
        """
        v = np.asarray(per_site_values(per_site, f"per-channel values for CFA {self.pattern} ({', '.join(self.site_names)})"))
        return v[self.site_index]

    def per_pixel(self, per_site, shape: tuple[int, int]) -> np.ndarray:
        """A (H, W) float64 map of a per-site value (e.g. black level) tiled over the mosaic.

        Parameters
        ----------
        per_site : float or 4 floats
            One value per colour site in Bayer reading order (a scalar for all), any unit (e.g. DN).
        shape : (H, W)
            Mosaic shape [px], multiples of the period.

        Returns
        -------
        (H, W) ndarray of float64
            Each pixel's site value, same unit.
        """
        h, w = shape
        p = self.period
        tile = self.tile_values(per_site)
        return np.tile(tile, (h // p + 1, w // p + 1))[:h, :w]

    def __str__(self) -> str:
        return self.pattern
