"""A bank of real dark frames, and noise whose signal-independent part is taken from it.

Zhang et al. ("Rethinking Noise Synthesis and Modeling in Raw Denoising", ICCV 2021) keep the physics
where it is exact — shot noise from the system gain K — and take everything else (read noise with its
spatial correlation, banding, random-telegraph pixels, dark shading, the black level itself) from real dark
frames of the same ISO. This module stores such frames (:func:`build_dark_bank`), reads them
(:class:`DarkFrameBank`) and applies them (:func:`simulate_dark_frame`)::

    D = K · Poisson(μ_e) + dark(crop, transform)          [DN, black level included by the dark frame]
    D_out = clip(round(D), 0, W_c)

The dark frame is a crop of a bank frame of the matching ISO (and exposure time), aligned to the CFA
period and optionally flipped, with offsets chosen so that every output pixel comes from a pixel of the
*same CFA site* (level channel): the CFA phase is preserved exactly. Crop, flip and frame are drawn from
the seed, so results are deterministic, and recorded in a :class:`DarkFrameChoice`.

File layout (schema ``noisesim.darkbank/1``)::

    /frames   (N, H, W) uint16 DN, chunked in tiles (one frame read never loads the others)
    /index    (N,) compound: iso, exposure_s, black_level_dn (4, per CFA site), source, sha256
    attrs     schema, cfa, bit_depth, white_level_dn (4, per CFA site; a bank from an earlier
              version stores one value, read as 4 equal ones), camera, noisesim_version
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .atomic import atomic_path
from .cfa import CFA, per_site_values
from .errors import InputFileError, ParameterError, ShapeError
from .params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor
from .rng import key_from_seed

__all__ = [
    "BANK_SCHEMA",
    "DarkFrame",
    "DarkFrameBank",
    "DarkFrameChoice",
    "build_dark_bank",
    "phase_preserving_transforms",
    "simulate_dark_frame",
]

log = logging.getLogger(__name__)

BANK_SCHEMA = "noisesim.darkbank/1"
_TILE = 256
_STREAM_DARK_CHOICE = 0xDA4C  # a stream of its own: the choice never shares draws with the shot noise
INDEX_DTYPE = np.dtype([
    ("iso", np.float64),
    ("exposure_s", np.float64),
    ("black_level_dn", np.float64, (4,)),
    ("source", "S256"),
    ("sha256", "S64"),
])


@dataclass(frozen=True)
class DarkFrame:
    """One dark frame to put in a bank.

    Parameters
    ----------
    raw : ndarray
        (H, W) integer mosaic in DN, black level included.
    iso : float
        ISO (sensitivity) the frame was shot at.
    exposure_s : float
        Exposure time in seconds.
    black_level_dn : sequence of 4 float
        The file's black level per CFA site (R, G1, G2, B order for RGGB).
    source : str
        Where the frame came from (file name).
    """

    raw: np.ndarray
    iso: float
    exposure_s: float
    black_level_dn: Sequence[float]
    source: str = ""


@dataclass(frozen=True)
class DarkFrameChoice:
    """Which bank frame, where and how it was cut for one simulated frame (enough to replay it).

    The source window starts at (``y0``, ``x0``) of bank frame ``frame`` and has the output's shape
    (transposed shape when ``transpose``); the window is transposed first, then flipped.

    Attributes
    ----------
    frame : int
        Bank frame index.
    y0, x0 : int
        Top-left corner of the source window [px].
    transpose, flip_y, flip_x : bool
        Transform applied to the window (transpose first).
    iso : float
        ISO of the bank frame.
    exposure_s : float
        Its exposure time [s].
    """

    frame: int
    y0: int
    x0: int
    transpose: bool
    flip_y: bool
    flip_x: bool
    iso: float
    exposure_s: float


def phase_preserving_transforms(cfa: CFA) -> list[tuple[bool, bool, bool, int, int]]:
    """The dihedral transforms (and source offsets modulo the CFA period) that keep every CFA site.

    Parameters
    ----------
    cfa : CFA
        The mosaic's pattern.

    Returns
    -------
    list of (transpose, flip_y, flip_x, dy, dx)
        With the source window starting at ``(p·a + dy, p·b + dx)`` for any integers a, b, the transformed
        window has, at every pixel, the same CFA site (level channel) as the target mosaic. For Bayer this
        gives the identity and the three flips (a flip needs an odd offset); a transpose would exchange
        G1 and G2 and is never returned for a pattern whose sites it does not preserve.
    """
    p = cfa.period
    site = cfa.site_index
    n = 2 * p  # a window of two periods shows every residue
    big = np.tile(site, (4, 4))
    target = np.tile(site, (2, 2))
    valid = []
    for transpose, flip_y, flip_x in itertools.product((False, True), repeat=3):
        for dy in range(p):
            for dx in range(p):
                win = big[dy : dy + n, dx : dx + n]
                out = _transform(win, transpose, flip_y, flip_x)
                if np.array_equal(out, target):
                    valid.append((transpose, flip_y, flip_x, dy, dx))
    return valid


def _transform(a: np.ndarray, transpose: bool, flip_y: bool, flip_x: bool) -> np.ndarray:
    if transpose:
        a = a.T
    if flip_y:
        a = a[::-1]
    if flip_x:
        a = a[:, ::-1]
    return a


def build_dark_bank(
    output: str | os.PathLike,
    frames: Iterable[DarkFrame],
    *,
    cfa: str | CFA,
    white_level_dn,
    bit_depth: int | None = None,
    camera: str = "",
    progress=None,
) -> Path:
    """Write dark frames into a bank file, one frame in memory at a time.

    Parameters
    ----------
    output : path
        The ``.h5`` file to write (atomically: a partial bank never appears under this name).
    frames : iterable of DarkFrame
        All of the same shape; read lazily, so memory holds one frame.
    cfa : str or CFA
        The mosaic's pattern, read from the top-left pixel.
    white_level_dn : float or 4 floats
        The raw white level [DN], per colour site in Bayer reading order (a scalar is used for all four).
    bit_depth : int, optional
        Default: the smallest that holds ``white_level_dn``.
    camera : str
        Free-form name stored with the bank.
    progress : callable, optional
        Wraps ``frames`` (e.g. ``tqdm``).

    Returns
    -------
    Path
        ``output``.
    """
    import h5py

    from . import __version__

    cfa = CFA(cfa) if isinstance(cfa, str) else cfa
    white = per_site_values(white_level_dn, "white_level_dn")
    bit_depth = int(bit_depth or max(1, math.ceil(math.log2(max(white) + 1))))
    output = Path(output)
    it = progress(frames) if progress is not None else frames
    n = 0
    with atomic_path(output) as tmp:
        with h5py.File(tmp, "w", track_order=False) as f:
            f.attrs.update({"schema": BANK_SCHEMA, "cfa": cfa.pattern, "bit_depth": bit_depth,
                            "white_level_dn": np.asarray(white), "camera": camera,
                            "noisesim_version": __version__})
            dset = index = None
            for fr in it:
                raw = np.asarray(fr.raw)
                where = fr.source or f"frame {n}"
                if raw.ndim != 2:
                    raise ShapeError(f"{where}: a dark frame must be an (H, W) mosaic, got shape {raw.shape}")
                cfa.check_mosaic(raw, where)
                if not np.issubdtype(raw.dtype, np.integer) and not np.array_equal(raw, np.round(raw)):
                    raise InputFileError(f"{where}: dark frames must hold integer DN")
                if raw.min() < 0 or raw.max() > 65535:
                    raise InputFileError(f"{where}: values {raw.min()}..{raw.max()} do not fit uint16 DN")
                data = raw.astype(np.uint16)
                if dset is None:
                    h, w = data.shape
                    dset = f.create_dataset("frames", (0, h, w), np.uint16, maxshape=(None, h, w),
                                            chunks=(1, min(h, _TILE), min(w, _TILE)), track_times=False)
                    index = f.create_dataset("index", (0,), INDEX_DTYPE, maxshape=(None,), chunks=(64,),
                                             track_times=False)
                elif data.shape != dset.shape[1:]:
                    raise ShapeError(f"{where}: shape {data.shape} differs from the bank's {dset.shape[1:]}")
                black = np.broadcast_to(np.asarray(fr.black_level_dn, np.float64), (4,))
                rec = np.zeros((), INDEX_DTYPE)
                rec["iso"], rec["exposure_s"], rec["black_level_dn"] = float(fr.iso), float(fr.exposure_s), black
                rec["source"] = str(fr.source).encode("utf-8")[:256]
                rec["sha256"] = hashlib.sha256(data.tobytes()).hexdigest().encode("ascii")
                dset.resize(n + 1, axis=0)
                index.resize(n + 1, axis=0)
                dset[n] = data
                index[n] = rec
                n += 1
            if n == 0:
                raise InputFileError(f"{output}: no dark frames to put in the bank")
    return output


class DarkFrameBank:
    """Read access to a dark-frame bank (:func:`build_dark_bank`); one h5py handle, opened lazily.

    Parameters
    ----------
    path : path
        The bank file.

    Attributes
    ----------
    cfa : CFA
    bit_depth : int
    white_level_dn : 4 floats
        Per colour site in Bayer reading order [DN].
    camera : str
    index : (N,) structured ndarray
        One record per frame: ``iso``, ``exposure_s``, ``black_level_dn`` (4) [DN], ``source``, ``sha256``.
    frame_shape : (H, W)
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as f:
                if f.attrs.get("schema") != BANK_SCHEMA:
                    raise InputFileError(f"{self.path}: not a noisesim dark-frame bank (schema "
                                         f"{f.attrs.get('schema')!r}, expected {BANK_SCHEMA!r})")
                self.cfa = CFA(str(f.attrs["cfa"]))
                self.bit_depth = int(f.attrs["bit_depth"])
                self.white_level_dn = per_site_values(f.attrs["white_level_dn"], f"{self.path}: white_level_dn")
                self.camera = str(f.attrs.get("camera", ""))
                self.index = f["index"][...]
                self.frame_shape = tuple(f["frames"].shape[1:])
        except OSError as exc:
            if "file signature not found" in str(exc):  # h5py's wording for a file that is not HDF5 at all
                raise InputFileError(f"{self.path}: not an HDF5 file, so not a dark-frame bank (noisesim darks bank "
                                     "makes one)") from None
            raise InputFileError(f"{self.path}: cannot read the dark-frame bank ({exc})") from None
        self._file = None
        self._substitutes_said: set = set()  # (ISO, exposure) stand-ins already logged: once each, not per draw

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # picklable for worker processes: the handle is reopened there
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    @property
    def isos(self) -> list[float]:
        """The ISOs in the bank, ascending."""
        return sorted({float(v) for v in self.index["iso"]})

    def _frames(self):
        if self._file is None:
            import h5py

            self._file = h5py.File(self.path, "r")
        return self._file["frames"]

    def frame(self, i: int) -> np.ndarray:
        """Bank frame ``i``: (H, W) uint16 DN.

        Parameters
        ----------
        i : int
            Frame index, 0 … N − 1.

        Returns
        -------
        (H, W) ndarray of uint16
            The stored dark frame [DN], black level included.
        """
        return self._frames()[int(i)]

    def _say_stand_in(self, key: tuple, what: str) -> None:
        """Log a stand-in ISO or exposure the first time this bank object uses it (not at every draw)."""
        if key not in self._substitutes_said:
            self._substitutes_said.add(key)
            log.warning("%s: %s (later draws that fall back to it are not logged)", self.path, what)

    def candidates(self, iso: float, exposure_s: float | None = None) -> np.ndarray:
        """Indices of the frames to draw from: the nearest ISO (in ln ISO), then the nearest exposure.

        A warning is logged when the ISO or the exposure time is not in the bank exactly (once per stand-in
        used, not at every draw: a dataset draws its ISOs from a continuous range).

        Parameters
        ----------
        iso : float
            ISO of the simulated frame.
        exposure_s : float, optional
            Its exposure time [s]; None: any exposure of the nearest ISO.

        Returns
        -------
        (n,) ndarray of int
            Frame indices into the bank.
        """
        isos = self.index["iso"]
        if not iso or iso <= 0:
            raise ParameterError(f"{self.path}: dark-frame noise needs the ISO of the draw, got {iso!r}")
        d = np.abs(np.log(isos) - math.log(iso))
        nearest = isos[np.argmin(d)]
        if not math.isclose(nearest, iso, rel_tol=1e-9):
            self._say_stand_in(("iso", float(nearest)), f"no dark frames at ISO {iso:g}; using ISO {nearest:g}")
        sel = np.flatnonzero(isos == nearest)
        if exposure_s is not None and len(sel):
            exps = self.index["exposure_s"][sel]
            best = exps[np.argmin(np.abs(exps - exposure_s))]
            if not math.isclose(best, exposure_s, rel_tol=1e-6, abs_tol=1e-9) and len(np.unique(exps)) > 1:
                self._say_stand_in(("exposure", float(nearest), float(best)),
                                   f"no ISO {nearest:g} darks at {exposure_s:g} s; using {best:g} s")
            sel = sel[exps == best]
        return sel

    def choose(self, shape: tuple[int, int], iso: float, *, exposure_s: float | None = None, rng=None,
               frame_index: int = 0) -> DarkFrameChoice:
        """Draw the frame, window and transform for an output of ``shape`` (mosaic pixels).

        The draw depends only on (seed, ``frame_index``), on the bank and on ``shape``.

        Parameters
        ----------
        shape : (h, w)
            Output mosaic shape [px].
        iso : float
            ISO of the simulated frame.
        exposure_s : float, optional
            Its exposure time [s].
        rng : int, SeedSequence, Generator or None
            Seed of the draw.
        frame_index : int
            Index of the frame in its sequence (a different draw per frame).

        Returns
        -------
        DarkFrameChoice
        """
        h, w = (int(v) for v in shape)
        p = self.cfa.period
        if h % p or w % p:
            raise ShapeError(f"output shape {shape} must be a multiple of the CFA period {p}")
        key = key_from_seed(rng)
        g = np.random.default_rng([key[0], key[1], int(frame_index), _STREAM_DARK_CHOICE])
        sel = self.candidates(iso, exposure_s)
        frame = int(sel[g.integers(len(sel))])
        H, W = self.frame_shape
        options = []
        for t in phase_preserving_transforms(self.cfa):
            hs, ws = (w, h) if t[0] else (h, w)
            ny, nx = (H - hs - t[3]) // p + 1, (W - ws - t[4]) // p + 1
            if ny > 0 and nx > 0:
                options.append((t, ny, nx))
        if not options:
            raise ShapeError(f"{self.path}: bank frames {self.frame_shape} are too small for an output of {shape}")
        (transpose, flip_y, flip_x, dy, dx), ny, nx = options[g.integers(len(options))]
        y0 = p * int(g.integers(ny)) + dy
        x0 = p * int(g.integers(nx)) + dx
        rec = self.index[frame]
        return DarkFrameChoice(frame, y0, x0, transpose, flip_y, flip_x, float(rec["iso"]), float(rec["exposure_s"]))

    def choice_for(self, shape: tuple[int, int], params: NoiseParams, *, rng=None, frame_index: int = 0) -> DarkFrameChoice:
        """The choice :func:`simulate_dark_frame` makes for a draw of ``params`` under seed ``rng``.

        Parameters
        ----------
        shape : (h, w)
            Output mosaic shape [px].
        params : NoiseParams
            The draw; its ISO and exposure select the frames.
        rng : int, SeedSequence, Generator or None
            Seed.
        frame_index : int
            Index of the frame in its sequence.

        Returns
        -------
        DarkFrameChoice
        """
        return self.choose(shape, params.iso, exposure_s=params.exposure_s or None,
                           rng=np.random.SeedSequence(list(key_from_seed(rng))), frame_index=frame_index)

    @property
    def content_sha256(self) -> str:
        """SHA-256 of the bank's index (every frame's ISO, exposure, levels, source and SHA-256)."""
        return hashlib.sha256(self.index.tobytes()).hexdigest()

    def dark(self, choice: DarkFrameChoice, shape: tuple[int, int]) -> np.ndarray:
        """The dark frame a choice describes, cut and transformed to ``shape``: (h, w) float32 DN.

        Parameters
        ----------
        choice : DarkFrameChoice
            From :meth:`choose` or :meth:`choice_for`.
        shape : (h, w)
            Output mosaic shape [px].

        Returns
        -------
        (h, w) ndarray of float32
            Dark frame [DN], black level included.
        """
        h, w = shape
        hs, ws = (w, h) if choice.transpose else (h, w)
        win = self._frames()[choice.frame, choice.y0 : choice.y0 + hs, choice.x0 : choice.x0 + ws]
        if win.shape != (hs, ws):
            raise ShapeError(f"{self.path}: the choice {choice} lies outside the bank frames {self.frame_shape}")
        return np.ascontiguousarray(_transform(win, choice.transpose, choice.flip_y, choice.flip_x), dtype=np.float32)

    def close(self) -> None:
        """Close the bank's file, if open."""
        if self._file is not None:
            self._file.close()
            self._file = None


def simulate_dark_frame(
    clean: np.ndarray,
    params: NoiseParams,
    sensor: Sensor,
    bank: DarkFrameBank | str | os.PathLike,
    *,
    ratio: float = 1.0,
    input_unit: str = "normalized",
    output_unit: str = "normalized",
    dtype=np.float32,
    components: NoiseComponents = NoiseComponents(),
    maps: FixedPatternMaps | None = None,
    origin: tuple[int, int] = (0, 0),
    rng=None,
    frame_index: int = 0,
    backend: str = "numba",
    return_choice: bool = False,
):
    """Shot noise from K (and PRNU) plus a real dark frame of the matching ISO (Zhang et al., ICCV 2021).

    Parameters
    ----------
    clean, params, sensor, ratio, input_unit, output_unit, dtype, maps, origin, rng, frame_index, backend
        As in :func:`noisesim.noise.simulate`. ``params.iso`` selects the dark frames and
        ``params.exposure_s`` the exposure time among them.
    bank : DarkFrameBank or path
        The dark frames.
    components : NoiseComponents
        ``shot``, ``prnu``, ``quantize`` and ``clip``/``clip_at_black`` apply; read, row, column, dark
        shading, black-level error and dark current are *in* the dark frame and are never added on top.
    return_choice : bool
        Also return the :class:`DarkFrameChoice` (to store with a dataset sample).

    Returns
    -------
    ndarray, or (ndarray, DarkFrameChoice)
        The noisy frame in ``output_unit``, same layout as ``clean``.

    Shape
    -----
    (H, W) → (H, W); (C, H/p, W/p) → (C, H/p, W/p).
    """
    from .noise import simulate

    bank = bank if isinstance(bank, DarkFrameBank) else DarkFrameBank(bank)
    if bank.cfa.pattern != sensor.cfa.pattern:
        raise ParameterError(f"{bank.path}: bank CFA {bank.cfa.pattern} differs from the sensor's {sensor.cfa.pattern}")
    dtype = np.dtype(dtype)
    if dtype == np.uint16 and not (output_unit == "dn" and components.quantize and components.clip):
        raise ParameterError("uint16 output needs output_unit='dn' with quantize and clip on")
    seed_words = key_from_seed(rng)  # one key for the shot noise and the choice (a Generator advances once)
    terms = [t for t in ("shot", "prnu") if getattr(components, t)]
    # the signal part only, unquantized and unclipped: rounding and clipping act on signal + dark together
    shot_only = NoiseComponents.only(*terms, quantize=False, dither=False, clip=False)
    signal = simulate(clean, params, sensor, ratio=ratio, input_unit=input_unit, output_unit="dn", dtype=np.float32,
                      components=shot_only, maps=maps, origin=origin, rng=np.random.SeedSequence(list(seed_words)),
                      frame_index=frame_index, backend=backend)
    cfa = sensor.cfa
    packed = signal.ndim == 3
    mosaic = cfa.unpack(signal) if packed else signal
    sensor = sensor.with_black_level(params.black_level_dn)
    black = cfa.per_pixel(sensor.black_level_dn, mosaic.shape).astype(np.float32)
    white = cfa.per_pixel(sensor.white_level_dn, mosaic.shape).astype(np.float32)
    choice = bank.choice_for(mosaic.shape, params, rng=np.random.SeedSequence(list(seed_words)), frame_index=frame_index)
    d = bank.dark(choice, mosaic.shape) + (mosaic - black)
    if components.quantize:
        d = np.floor(d + np.float32(0.5))  # half up, as the kernel rounds
    if components.clip:
        d = np.clip(d, black if components.clip_at_black else 0.0, white)
    if output_unit == "normalized":
        d = (d - black) / (white - black)
    elif output_unit != "dn":
        raise ParameterError(f"output_unit must be 'normalized' or 'dn', got {output_unit!r}")
    out = d.astype(dtype)
    out = cfa.pack(out) if packed else out
    return (out, choice) if return_choice else out
