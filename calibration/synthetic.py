"""Synthetic capture sets from known parameters (round-trip tests, benchmarks, demos).

Frames are produced lazily by :func:`noisesim.noise.simulate` when the calibration streams over them, so a
realistic stack never sits in memory. Every frame has its own ``frame_index`` under one seed, so the set is
reproducible bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisesim.params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor

from .capture import FrameInfo, frame_from_loader

__all__ = ["synthetic_frames", "SyntheticSpec", "vignette", "write_capture_dng"]


def vignette(shape, strength: float = 0.3) -> np.ndarray:
    """A smooth radial illumination falloff (1 at the centre, 1 − strength at the corners), float32.

    Parameters
    ----------
    shape : (H, W)
        [px]
    strength : float
        Falloff at the corners (fraction).

    Returns
    -------
    (H, W) ndarray of float32
    """
    h, w = shape
    y = (np.arange(h) - (h - 1) / 2) / (h / 2)
    x = (np.arange(w) - (w - 1) / 2) / (w / 2)
    r2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2
    return (1.0 - strength * r2).astype(np.float32)


@dataclass
class SyntheticSpec:
    """What to shoot per ISO: darks, optional darks at longer exposures, flat pairs at normalized levels.

    Attributes
    ----------
    n_darks : int
        Darks at ``dark_exposure_s`` [s].
    dark_current_exposures_s : tuple of float
        Further dark exposures [s], ``n_darks_per_exposure`` frames each.
    flat_levels : tuple of float
        Normalized mean signals of the flat pairs; ``pairs_per_level`` pairs each.
    flat_base_exposure_s : float
        Exposure of the first level [s].
    vignetting : float
        Illumination falloff at the corners (fraction).
    """

    n_darks: int = 16
    dark_exposure_s: float = 1 / 1000
    dark_current_exposures_s: tuple[float, ...] = ()
    n_darks_per_exposure: int = 4
    flat_levels: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.1)
    pairs_per_level: int = 1
    flat_base_exposure_s: float = 1 / 100
    vignetting: float = 0.3


def synthetic_frames(params_by_iso: dict[float, NoiseParams], sensor: Sensor | Mapping[float, Sensor], shape,
                     spec: SyntheticSpec = SyntheticSpec(),
                     *, maps: FixedPatternMaps | None = None, components: NoiseComponents = NoiseComponents(), rng: int = 0,
                     prefix: str = "syn") -> list[FrameInfo]:
    """Lazy dark and flat frames (uint16 DN) for each ISO, simulated from the given parameters.

    Flat level ``v`` is a normalized mean signal (fraction of white − black) at the image centre, shot at
    exposure ``flat_base_exposure_s · v / levels[0]`` so exposure labels differ per level.

    ``sensor`` may be a mapping ISO → :class:`Sensor`, for a camera whose files declare another black level
    at each ISO (as phones do); each frame's metadata then carries its ISO's levels.

    Parameters
    ----------
    params_by_iso : dict of float to NoiseParams
        The parameters to simulate at each ISO.
    sensor : Sensor or mapping of ISO to Sensor
        Raw format and levels.
    shape : (H, W)
        Frame shape [px].
    spec : SyntheticSpec
        What to shoot.
    maps : FixedPatternMaps, optional
        (H, W) fixed-pattern maps.
    components : NoiseComponents, optional
        Model terms.
    rng : int, SeedSequence or None
        Seed.
    prefix : str
        Label prefix of the frames.

    Returns
    -------
    list of FrameInfo
        Lazy frames: pixels are simulated when loaded.
    """
    from noisesim.noise import simulate

    h, w = shape
    frames: list[FrameInfo] = []
    vig = vignette(shape, spec.vignetting)
    counter = [0]

    def make(iso, p, clean_level, exposure, kind, label):
        sen = sensor[iso] if isinstance(sensor, Mapping) else sensor
        idx = counter[0]
        counter[0] += 1
        pp = p.replace(exposure_s=float(exposure), iso=float(iso))

        def load():
            clean = np.zeros(shape, np.float32) if clean_level == 0 else (vig * np.float32(clean_level))
            return simulate(clean, pp, sen, input_unit="normalized", output_unit="dn", dtype=np.uint16,
                            components=components, maps=maps, rng=rng, frame_index=idx)

        frames.append(frame_from_loader(load, shape=shape, kind=kind, iso=iso, exposure_s=exposure, cfa=sen.cfa.pattern,
                                        black_level_dn=sen.black_level_dn, white_level_dn=sen.white_level_dn,
                                        label=label))

    for iso, p in sorted(params_by_iso.items()):
        for i in range(spec.n_darks):
            make(iso, p, 0, spec.dark_exposure_s, "dark", f"{prefix}/iso{iso:g}/darks/d_{i:04d}")
        for t in spec.dark_current_exposures_s:
            for i in range(spec.n_darks_per_exposure):
                make(iso, p, 0, t, "dark", f"{prefix}/iso{iso:g}/darks/t{t:g}_{i:04d}")
        for j, v in enumerate(spec.flat_levels):
            t = spec.flat_base_exposure_s * v / spec.flat_levels[0]
            for i in range(2 * spec.pairs_per_level):
                make(iso, p, v, t, "flat", f"{prefix}/iso{iso:g}/flats/l{j:02d}_{i:04d}")
    return frames


def write_capture_dng(frames: list[FrameInfo], folder, *, make: str = "noisesim", model: str = "synthetic") -> Path:
    """Write frames as DNG files into ``folder/darks/...`` and ``folder/flats/...`` with EXIF ISO/exposure.

    Parameters
    ----------
    frames : list of FrameInfo
        Frames to write (loaded one at a time).
    folder : str or Path
        Capture folder, created as needed.
    make, model : str
        EXIF camera.

    Returns
    -------
    Path
        ``folder``.
    """
    from noisesim.dng import write_dng

    folder = Path(folder)
    for i, f in enumerate(frames):
        sub = folder / ("darks" if f.kind == "dark" else "flats") / f"iso{f.iso:g}"
        sub.mkdir(parents=True, exist_ok=True)
        write_dng(sub / f"IMG_{i:05d}.dng", f.load(), cfa=f.cfa, black_level_dn=f.black_level_dn, white_level_dn=f.white_level_dn,
                  iso=f.iso, exposure_s=f.exposure_s, make=make, model=model)
    return folder
