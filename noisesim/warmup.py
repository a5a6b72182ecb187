"""Compiling the noise kernels before the work starts, and saying so on a fresh environment.

numba compiles the kernels on their first call and caches the machine code on disk (``cache=True``).
On a fresh environment that first call takes tens of seconds; a command line that starts its progress
bar first shows a frozen bar and a meaningless ETA. :func:`warm_up` makes the first call on a tiny frame
before the real work, announcing "compiling noise kernels (first run only)" when numba compiles for real (its
``numba:compile`` event fires on a cache miss only, so a slow cache load on a busy machine says nothing).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

__all__ = ["MESSAGE", "announce_compiles", "cache_is_cold", "warm_up"]

MESSAGE = "compiling noise kernels (first run only) …"


def cache_is_cold() -> bool | None:
    """True when numba's on-disk cache has no entry for a fused noise kernel yet, False when it has;
    None when that cannot be told (numba internals changed).

    Returns
    -------
    bool or None
    """
    from . import kernels

    known = False
    for kind in (kernels.READ_TUKEY, kernels.READ_GAUSSIAN):  # the kernels _tiny_frame compiles
        cache_file = getattr(getattr(kernels.ROWS_KERNELS.get(kind), "_cache", None), "_cache_file", None)
        if cache_file is None:
            continue
        try:
            entries = cache_file._load_index()  # {} when missing or stale (the source changed since)
        except Exception:  # noqa: BLE001 — numba internals changed: cannot tell
            continue
        known = True
        if not entries:
            return True
    return False if known else None


def _tiny_frame(params=None, sensor=None, components=None, maps=None) -> None:
    from .noise import simulate
    from .params import NoiseComponents, NoiseParams, Sensor

    if params is not None:  # the run's own path: its read-noise kind only
        p = sensor.cfa.period
        n = 4 * p  # a corner of whole CFA tiles, within the maps (a card's cover the whole sensor)
        map_shape = maps.shape if maps is not None else None
        if map_shape is not None:
            n = max(min(n, *map_shape) // p * p, p)
        simulate(np.full((n, n), 0.25, np.float32), params, sensor, output_unit="dn", dtype=np.uint16,
                 components=components or NoiseComponents(), maps=maps, rng=0)
        return
    params = NoiseParams(gain_k_dn_per_e=1.0, read_sigma_dn=1.0, tukey_lambda=0.1, tukey_scale_dn=1.0,
                         row_sigma_dn=0.5, col_sigma_dn=0.5)
    sensor = Sensor("RGGB", bit_depth=12, black_level_dn=64)
    for read_model in ("tukey", "gaussian"):
        p = NoiseParams(**{**params.__dict__, "read_model": read_model})
        simulate(np.full((8, 8), 0.25, np.float32), p, sensor, output_unit="dn", dtype=np.uint16, rng=0)


def warm_up(announce: Callable[[str], None] | None = None, *, params=None, sensor=None, components=None,
            maps=None) -> bool:
    """Compile (or load from the cache) the noise kernels now, on a tiny frame.

    Given a run's ``params`` and ``sensor`` (and its ``components`` and ``maps``), only the kernel that run
    takes is compiled: each read-noise kind is a kernel of its own (:data:`noisesim.kernels.ROWS_KERNELS`),
    and compiling a second one would add a whole kernel's compile to the first run. Without them, the
    Tukey and the Gaussian kernels are both compiled.

    Parameters
    ----------
    announce : callable, optional
        Called with :data:`MESSAGE` when numba really compiles a kernel (a cache miss), never for a
        kernel loaded from the on-disk cache however long that takes on a loaded machine.
    params : NoiseParams, optional
        The run's parameters.
    sensor : Sensor, optional
        The run's sensor; needed with ``params``.
    components : NoiseComponents, optional
        The run's switches (default: all on).
    maps : FixedPatternMaps, optional
        The run's fixed-pattern maps, covering the frame's top-left corner (a card's maps do).

    Returns
    -------
    bool
        Whether the message was given.
    """
    if params is not None and sensor is None:
        raise ValueError("warm_up: params need the run's sensor too")
    with announce_compiles(announce, MESSAGE) as compiled:
        _tiny_frame(params, sensor, components, maps)
    return compiled.is_set()


@contextmanager
def announce_compiles(announce: Callable[[str], None] | None, message: str) -> Iterator[threading.Event]:
    """Within the block, call ``announce(message)`` once, when numba starts compiling a kernel for real.

    numba broadcasts its ``numba:compile`` event only on a cache miss, so loading a kernel from the on-disk
    cache says nothing. Yields an event that is set once the message has been given.

    Parameters
    ----------
    announce : callable or None
        ``announce(text)``, e.g. a print to stderr; None says nothing (the event is still set).
    message : str
        What to say.

    Yields
    ------
    threading.Event
    """
    from numba.core import event

    said = threading.Event()
    lock = threading.Lock()

    class _FirstCompile(event.Listener):
        def on_start(self, ev) -> None:
            with lock:
                if said.is_set():
                    return
                said.set()
            if announce is not None:
                announce(message)

        def on_end(self, ev) -> None:
            pass

    with event.install_listener("numba:compile", _FirstCompile()):
        yield said
