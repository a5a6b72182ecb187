"""The physics-based raw noise model: public façade over the fused kernels.

Implements docs/model.md (Wei et al., ELD, CVPR 2020 / TPAMI 2021; Feng et al., PMN, ACM MM 2022;
EMVA Standard 1288 release 4.0 for the linear camera model, DSNU, PRNU and dark current)::

    x_dn = y · (W_c − B_c) / r                  expected signal of the short exposure [DN]
    μ_e  = x_dn / K · (1 + PRNU) + I_dark · t   expected electrons
    D    = K · Poisson(μ_e) + N_read + σ_row ρ_row + σ_col ρ_col + DS + b_c + B_c
    D_out = clip(round(D), 0, W_c)

Every random number comes from Philox keyed by (seed, frame_index, stream, pixel coordinate in the full
sensor), so output is bit-identical for any thread count and a crop at ``origin`` reproduces the same
pixels as the full frame.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import kernels
from .errors import ParameterError, ShapeError
from .params import FixedPatternMaps, NoiseComponents, NoiseParams, Sensor
from .rng import STREAM_COL, STREAM_READ_PIXEL, STREAM_ROW, key_from_seed, line_normals, normal_np, philox4x32_np, uniform_np

__all__ = ["BACKENDS", "FRAME_INDEX_LIMIT", "INPUT_UNITS", "NOISE_MODES", "OUTPUT_UNITS", "PARALLEL_MIN_PIXELS", "simulate"]

INPUT_UNITS = ("normalized", "dn", "electrons")
OUTPUT_UNITS = ("normalized", "dn")
BACKENDS = ("numba", "numpy")
NOISE_MODES = ("parametric", "dark-frame")
#: One past the largest frame index: the index is one 32-bit word of the noise's Philox counter.
FRAME_INDEX_LIMIT = 1 << 32
# Frames smaller than this run on the calling thread: starting the thread pool costs more than it saves
# (measured: 0.4 ms serial vs 16 ms parallel for a 32×32 frame on a busy 2-core machine, and 41 vs 32 ms
# wall per 512² dataset pair), while a 1 Mpix frame takes ~50 ms of kernel time.
PARALLEL_MIN_PIXELS = 1 << 20


def _crop_map(m: np.ndarray | None, origin, shape, name: str) -> np.ndarray | None:
    if m is None:
        return None
    oy, ox = origin
    h, w = shape
    if oy + h > m.shape[0] or ox + w > m.shape[1]:
        raise ShapeError(
            f"map {name} of shape {m.shape} does not cover the frame: frame ({h}, {w}) at origin {tuple(origin)} "
            f"needs at least ({oy + h}, {ox + w})"
        )
    return np.ascontiguousarray(m[oy : oy + h, ox : ox + w])


def _phase_medians(full: np.ndarray, mask: np.ndarray, period: int) -> np.ndarray:
    """(p, p) median of the unmasked pixels of each CFA phase of a full-sensor map (NaN where all are masked)."""
    med = np.full((period, period), np.nan, np.float32)
    for py in range(period):
        for px in range(period):
            sub, msk = full[py::period, px::period], mask[py::period, px::period]
            if (~msk).any():
                med[py, px] = np.median(sub[~msk])
    return med


# Last few full-sensor medians, keyed by the identity of the arrays they came from (checked through weak
# references, so a new map at a recycled address is never mistaken for an old one) and the ISO.
_MEDIANS: dict = {}


def _cached_phase_medians(key_arrays: tuple, extra, full_fn, mask: np.ndarray, period: int) -> np.ndarray:
    import weakref

    key = tuple(id(a) for a in key_arrays) + (id(mask), extra, period)
    hit = _MEDIANS.get(key)
    if hit is not None and all(r() is a for r, a in zip(hit[0], key_arrays + (mask,))):
        return hit[1]
    med = _phase_medians(full_fn(), mask, period)
    if len(_MEDIANS) >= 8:
        _MEDIANS.pop(next(iter(_MEDIANS)))
    _MEDIANS[key] = (tuple(weakref.ref(a) for a in key_arrays + (mask,)), med)
    return med


def _without_hot_pixels(m: np.ndarray | None, mask: np.ndarray | None, medians: np.ndarray | None, origin) -> np.ndarray | None:
    """Replace masked (hot) pixels of the crop ``m`` at ``origin`` by the full-sensor median of their CFA
    phase (``medians``, (p, p), from :func:`_phase_medians`), so the hot-pixel term can be switched off and
    a crop still equals the same window of the full frame."""
    if m is None or mask is None or not mask.any():
        return m
    m = m.copy()
    p = medians.shape[0]
    oy, ox = origin
    for py in range(p):
        for px in range(p):
            sub, msk = m[py::p, px::p], mask[py::p, px::p]
            v = medians[(oy + py) % p, (ox + px) % p]
            if msk.any() and np.isfinite(v):
                sub[msk] = v
    return m


def _per_pixel_read_noise_dn(scale: np.ndarray, params: NoiseParams, origin, frame_index: int, key) -> np.ndarray:
    """Read noise whose σ is ``scale`` × the draw's σ at every pixel: (h, w) float32 DN.

    Gaussian: σ_read · s(p) · N(0, 1); Tukey: σ_TL · s(p) · Q_λ(U). Counters are full-sensor pixel
    coordinates on their own stream, so a crop draws the same values as the full frame.
    """
    h, w = scale.shape
    rows = np.arange(origin[0], origin[0] + h, dtype=np.uint64)[:, None]
    cols = np.arange(origin[1], origin[1] + w, dtype=np.uint64)[None, :]
    words = philox4x32_np(cols, rows, np.uint64(frame_index), np.uint64(STREAM_READ_PIXEL << 16), *key)
    if params.read_model == "tukey":
        from .stats import tukey_lambda_ppf

        z = tukey_lambda_ppf(uniform_np(words[0]), params.tukey_lambda) * params.tukey_scale_dn
    else:
        z = normal_np(words[0], words[1]) * params.read_sigma_dn
    return (z * scale).astype(np.float32)


def _resolve_card(params, sensor, card, iso, gain_k_dn_per_e, maps, rng):
    """(params, sensor, maps, noise rng) of a :func:`simulate` call, drawing the parameters from a card."""
    if card is None:
        if params is None or sensor is None:
            raise ParameterError("simulate needs params and sensor, or card= (e.g. simulate(clean, card=card, iso=1600))")
        if iso is not None or gain_k_dn_per_e is not None:
            raise ParameterError("iso= and gain_k_dn_per_e= choose the draw from card=; without a card pass params")
        if maps is None and sensor.maps_of_card is not None:
            warnings.warn(
                f"the sensor of card {sensor.maps_of_card!r} is used without the card's fixed-pattern maps (DSNU, "
                "PRNU, hot pixels): they are left out. Pass card=card (or maps=card.maps; "
                "maps=FixedPatternMaps() to leave them out knowingly)",
                UserWarning,
                stacklevel=3,
            )
        return params, sensor, maps, rng
    from .card import Card

    if not isinstance(card, Card):
        raise ParameterError(f"card must be a Card (see noisesim.load_card), got {type(card).__name__}")
    if sensor is not None and sensor != card.sensor:
        raise ParameterError(f"give card= or sensor=, not both: the sensor of card {card.name!r} is card.sensor")
    if maps is None:
        maps = card.maps
    if params is None:
        from .sampling import sample_params

        if isinstance(rng, np.random.Generator):
            param_rng = rng
        else:  # the children SeedSequence(seed).spawn(2) would give, without mutating a caller's SeedSequence
            ss = rng if isinstance(rng, np.random.SeedSequence) else np.random.SeedSequence(None if rng is None else int(rng))
            param_rng, rng = (np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (i,),
                                                     pool_size=ss.pool_size) for i in (0, 1))
        params = sample_params(card, iso=iso, gain_k_dn_per_e=gain_k_dn_per_e, rng=param_rng)
    elif iso is not None or gain_k_dn_per_e is not None:
        raise ParameterError("give params or iso=/gain_k_dn_per_e= (which draw params from the card), not both")
    return params, card.sensor, maps, rng


def _level_tiles(cfa, sensor: Sensor, params: NoiseParams, k: float, ratio: float, input_unit: str, output_unit: str,
                 components: NoiseComponents) -> np.ndarray:
    """The kernels' per-site level tiles, (7, p, p) float64 C-contiguous: input offset, gain to expected
    electrons of the short exposure, DN added back (black + black-level error), clip low and high [DN],
    output offset and scale (``noisesim.kernels``, "the fused kernel").

    Evaluated on the four per-site Python floats, then tiled: the same float64 operations as on (p, p)
    arrays, without ~15 small numpy calls per frame.
    """
    # Sensor and NoiseParams hold these as 4 validated floats already (their __post_init__)
    black, white = sensor.black_level_dn, sensor.white_level_dn
    ble = params.black_level_error_dn if components.black_level_error else (0.0,) * 4
    rows = []
    for b, w, e in zip(black, white, ble):
        if input_unit == "normalized":
            offset, gain = 0.0, (w - b) / (ratio * k)
        elif input_unit == "dn":
            offset, gain = b, 1.0 / (ratio * k)
        else:
            offset, gain = 0.0, 1.0 / ratio
        lo = b if components.clip_at_black else 0.0
        out_offset, out_scale = (0.0, 1.0) if output_unit == "dn" else (b, 1.0 / (w - b))
        rows.append((offset, gain, b + e, lo, w, out_offset, out_scale))
    per_site = np.array(rows, dtype=np.float64).T  # (7, 4): one column per colour site, Bayer reading order
    return np.ascontiguousarray(per_site[:, cfa.site_index])


def simulate(
    clean: np.ndarray,
    params: NoiseParams | None = None,
    sensor: Sensor | None = None,
    *,
    card=None,
    iso: float | None = None,
    gain_k_dn_per_e: float | None = None,
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
    parallel: bool | None = None,
    noise: str = "parametric",
    bank=None,
) -> np.ndarray:
    """Add physically modelled sensor noise to a clean raw frame.

    Two ways to call it:

    * with a card: ``simulate(clean, card=card, iso=1600, ratio=100, rng=0)`` draws the parameters
      (:func:`noisesim.sampling.sample_params` with ``iso`` / ``gain_k_dn_per_e``, or a random K without
      either) and applies them with the card's sensor **and its fixed-pattern maps** (DSNU, PRNU, hot
      pixels, dark current); ``simulate(clean, params, card=card, …)`` applies parameters drawn before.
      An int ``rng`` seeds the parameter draw and the noise as ``noisesim simulate --seed`` does, so the
      two give the same frame.
    * with explicit parts: ``simulate(clean, params, sensor, maps=…)``. Passing a card's ``sensor`` while
      the card has maps, without ``maps=``, leaves the maps out and warns (``maps=FixedPatternMaps()``
      leaves them out knowingly).

    Parameters
    ----------
    clean : ndarray
        Clean (long-exposure) raw, shape (H, W) mosaic or (C, H/p, W/p) packed (see :mod:`noisesim.cfa`),
        in ``input_unit``. An expected signal below zero (e.g. a black-subtracted clean frame with its
        own noise) is taken as 0 e⁻: Poisson needs a non-negative mean.
    params : NoiseParams, optional
        Noise parameters, e.g. from :func:`noisesim.sampling.sample_params`; drawn from ``card`` when omitted.
    sensor : Sensor, optional
        CFA, bit depth and per-site black/white levels [DN]; ``card.sensor`` when a card is given.
    card : noisesim.card.Card, optional
        The camera: sensor, maps and (without ``params``) the parameter draw.
    iso, gain_k_dn_per_e : float, optional
        The gain of the parameter draw from ``card`` (ISO, or K [DN/e⁻]); neither: K drawn at random.
    ratio : float
        Exposure ratio r ≥ 1: the expected signal is divided by r (low-light synthesis; ELD eq. 1).
    input_unit : {"normalized", "dn", "electrons"}
        ``normalized``: (DN − B) / (W − B); ``dn``: raw DN including the black level; ``electrons``:
        expected photo-electrons of the long exposure.
    output_unit : {"normalized", "dn"}
        ``normalized`` (not multiplied by the ratio; negative values possible unless clipped at black)
        or raw ``dn`` including the black level.
    dtype : numpy dtype
        ``float32`` or ``uint16`` (needs ``output_unit="dn"`` with quantization and clipping on).
    components : NoiseComponents
        Which terms are on.
    maps : FixedPatternMaps, optional
        Full-sensor (H_s, W_s) maps; the frame reads them at ``origin``. Default: ``card.maps`` with a
        card, else none.
    origin : (int, int)
        Top-left mosaic pixel of ``clean`` in the full sensor; sets map indexing and the RNG counters, so a
        crop reproduces the matching pixels of the full frame. Must be a multiple of the CFA period.
    rng : int, SeedSequence, Generator or None
        Seed of the noise (and, with a card and no ``params``, of the parameter draw: an int or
        SeedSequence is split in two, the first child for the parameters, the second for the noise).
    frame_index : int
        Frame of a burst, 0 … 2³² − 1: the same seed with another index gives independent noise.
    backend : {"numba", "numpy"}
        The fused numba kernel (default) or the plain-numpy reference (slow; for tests).
    parallel : bool, optional
        Run the numba kernel on numba's thread pool. Default: for frames of at least
        ``PARALLEL_MIN_PIXELS`` pixels. The output is the same either way.
    noise : {"parametric", "dark-frame"}
        ``parametric``: the model above. ``dark-frame``: shot noise from K (and PRNU) plus a real dark frame
        of the matching ISO from ``bank`` (Zhang et al., ICCV 2021; :func:`noisesim.darkbank.simulate_dark_frame`).
    bank : DarkFrameBank or path, optional
        The dark frames for ``noise="dark-frame"``.

    Returns
    -------
    ndarray
        Noisy frame in ``output_unit``, same layout as ``clean``.

    Shape
    -----
    (H, W) → (H, W); (C, H/p, W/p) → (C, H/p, W/p).
    """
    params, sensor, maps, rng = _resolve_card(params, sensor, card, iso, gain_k_dn_per_e, maps, rng)
    if noise not in NOISE_MODES:
        raise ParameterError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    if noise == "dark-frame":
        if bank is None:
            raise ParameterError("noise='dark-frame' needs bank= (a DarkFrameBank or the path of a bank file)")
        from .darkbank import simulate_dark_frame

        return simulate_dark_frame(clean, params, sensor, bank, ratio=ratio, input_unit=input_unit,
                                   output_unit=output_unit, dtype=dtype, components=components, maps=maps,
                                   origin=origin, rng=rng, frame_index=frame_index, backend=backend)
    cfa = sensor.cfa
    clean = np.asarray(clean)
    packed = clean.ndim == 3
    if packed:
        cfa.check_packed(clean, "clean")
        mosaic = cfa.unpack(clean)
    else:
        cfa.check_mosaic(clean, "clean")
        mosaic = clean
    if not np.issubdtype(mosaic.dtype, np.number):
        raise ShapeError(f"clean must be numeric, got dtype {mosaic.dtype}")
    mosaic = np.ascontiguousarray(mosaic, dtype=np.float32)
    if input_unit not in INPUT_UNITS:
        raise ParameterError(f"input_unit must be one of {INPUT_UNITS}, got {input_unit!r}")
    if output_unit not in OUTPUT_UNITS:
        raise ParameterError(f"output_unit must be one of {OUTPUT_UNITS}, got {output_unit!r}")
    if backend not in BACKENDS:
        raise ParameterError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not np.isfinite(ratio) or ratio < 1.0:
        raise ParameterError(f"ratio must be a finite number >= 1, got {ratio!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.uint16)):
        raise ParameterError(f"dtype must be float32 or uint16, got {dtype}")
    if dtype == np.uint16 and not (output_unit == "dn" and components.quantize and components.clip and sensor.max_dn <= 65535):
        raise ParameterError("uint16 output needs output_unit='dn' with quantize and clip on")
    oy, ox = (int(v) for v in origin)
    p = cfa.period
    if oy < 0 or ox < 0 or oy % p or ox % p:
        raise ShapeError(f"origin {tuple(origin)} must be non-negative multiples of the CFA period {p}")
    if not 0 <= frame_index < FRAME_INDEX_LIMIT:
        raise ParameterError(f"frame_index must be an integer in 0 … 2³² − 1 (a 32-bit word of the noise's counter), "
                             f"got {frame_index}")

    # a per-ISO black level (card schema /2) travels with the parameters of that ISO
    sensor = sensor.with_black_level(params.black_level_dn)
    k = float(params.gain_k_dn_per_e)
    tiles = _level_tiles(cfa, sensor, params, k, ratio, input_unit, output_unit, components)

    h, w = mosaic.shape
    key = key_from_seed(rng)
    empty2 = np.zeros((0, 0), dtype=np.float32)
    if components.row and params.row_sigma_dn > 0:
        if components.row_per_channel:
            # One offset per packed-channel row: each tile column phase of each row draws its own value.
            rows = line_normals(h, oy, range(p), line_is_row=True, frame=frame_index, stream=STREAM_ROW, key=key)
        else:
            rows = line_normals(h, oy, 0, line_is_row=True, frame=frame_index, stream=STREAM_ROW, key=key)[:, None]
        rows = np.ascontiguousarray(rows * params.row_sigma_dn)
    else:
        rows = np.zeros((0, 1))
    if components.column and params.col_sigma_dn > 0:
        cols = line_normals(w, ox, 0, line_is_row=False, frame=frame_index, stream=STREAM_COL, key=key) * params.col_sigma_dn
    else:
        cols = np.zeros(0)

    maps = maps or FixedPatternMaps()
    hot = _crop_map(maps.hot_pixel_mask, (oy, ox), (h, w), "hot_pixel_mask") if not components.hot_pixels else None
    ds = None
    if components.dark_shading and maps.dark_shading_k_dn_per_iso is not None:
        if params.iso is None:
            raise ParameterError("dark shading DS(iso) = k·iso + b needs params.iso; set it or switch dark_shading off")
        k_map = _crop_map(maps.dark_shading_k_dn_per_iso, (oy, ox), (h, w), "dark_shading_k_dn_per_iso")
        b_map = _crop_map(maps.dark_shading_b_dn, (oy, ox), (h, w), "dark_shading_b_dn")
        ds = (k_map * np.float32(params.iso) + b_map).astype(np.float32)
        if hot is not None and hot.any():
            k_full, b_full, iso32 = maps.dark_shading_k_dn_per_iso, maps.dark_shading_b_dn, np.float32(params.iso)
            med = _cached_phase_medians((k_full, b_full), float(iso32), lambda: (k_full * iso32 + b_full).astype(np.float32),
                                        maps.hot_pixel_mask, sensor.cfa.period)
            ds = _without_hot_pixels(ds, hot, med, (oy, ox))
    prnu = _crop_map(maps.prnu, (oy, ox), (h, w), "prnu") if components.prnu else None
    dark_map = None
    dark_e = 0.0
    if components.dark_current:
        dark_e = params.dark_current_e_per_s * params.exposure_s
        if maps.dark_current_e_per_s is not None:
            dc = _crop_map(maps.dark_current_e_per_s, (oy, ox), (h, w), "dark_current_e_per_s")
            if hot is not None and hot.any():
                dc_full = maps.dark_current_e_per_s
                med = _cached_phase_medians((dc_full,), None, lambda: dc_full, maps.hot_pixel_mask, sensor.cfa.period)
                dc = _without_hot_pixels(dc, hot, med, (oy, ox))
            dark_map = (dc * np.float32(params.exposure_s)).astype(np.float32)
        elif (params.hot_pixel_dark_current_e_per_s is not None and components.hot_pixels and maps.hot_pixel_mask is not None
              and params.exposure_s > 0):
            # hot pixels carry their own dark current (it dominates long exposures); the rest the bulk figure
            hot_m = _crop_map(maps.hot_pixel_mask, (oy, ox), (h, w), "hot_pixel_mask")
            if hot_m.any():
                dark_map = np.where(hot_m, np.float32(params.hot_pixel_dark_current_e_per_s * params.exposure_s),
                                    np.float32(dark_e)).astype(np.float32)

    if not components.read:
        read_kind = kernels.READ_NONE
    elif params.read_model == "tukey":
        read_kind = kernels.READ_TUKEY if params.tukey_scale_dn > 0 else kernels.READ_NONE
    else:
        read_kind = kernels.READ_GAUSSIAN if params.read_sigma_dn > 0 else kernels.READ_NONE
    if read_kind != kernels.READ_NONE and components.per_pixel_read and maps.read_sigma_scale is not None:
        # each pixel's own temporal σ: drawn here, added before quantization like dark shading
        scale = _crop_map(maps.read_sigma_scale, (oy, ox), (h, w), "read_sigma_scale")
        read = _per_pixel_read_noise_dn(scale, params, (oy, ox), int(frame_index), key)
        ds = read if ds is None else (ds + read).astype(np.float32)
        read_kind = kernels.READ_NONE

    out = np.empty((h, w), dtype=np.float32)
    if backend == "numpy":
        kernel = kernels.fused_noise_numpy
    elif parallel or (parallel is None and h * w >= PARALLEL_MIN_PIXELS):
        kernel = kernels.fused_noise_numba
    else:
        kernel = kernels.fused_noise_serial
    # The kernels' grouped arguments (noisesim.kernels, "the fused kernel"); contiguous arrays of fixed
    # dtypes, so every call reuses one compiled specialisation.
    counter = np.array([oy, ox, int(frame_index), key[0], key[1]], dtype=np.int64)
    model = np.array([k, dark_e, params.read_sigma_dn, params.tukey_lambda, params.tukey_scale_dn], dtype=np.float64)
    switches = np.array([components.shot, read_kind, components.row_per_channel, components.quantize,
                         components.dither and not components.quantize, components.clip], dtype=np.int64)
    maps_in = tuple(empty2 if m is None else np.ascontiguousarray(m, dtype=np.float32) for m in (ds, prnu, dark_map))
    # The kernels count the NaN and infinite clean values as they read them (a separate pass cost 1.5–3 % of
    # a 12 MP call): a frame holding any is refused after the fact, its output discarded.
    non_finite = kernel(mosaic, out, tiles, counter, model, switches, np.ascontiguousarray(rows, dtype=np.float64),
                        np.ascontiguousarray(cols, dtype=np.float64), maps_in)
    if non_finite:
        raise ParameterError(f"clean contains NaN or infinite values ({non_finite} of {mosaic.size})")
    if dtype == np.uint16:
        out = out.astype(np.uint16)
    return cfa.pack(out) if packed else out
