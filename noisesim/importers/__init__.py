"""Importers: cards from the noise profiles users already have.

One module per source, each returning a :class:`~noisesim.card.Card`:

* :mod:`.dng_profile` — the maker's ``NoiseProfile`` tag of DNG files (phones, Adobe's converter);
* :mod:`.android` — ``SENSOR_NOISE_PROFILE`` in a JSON dump of Android camera2 capture results;
* :mod:`.darktable` — darktable's ``noiseprofiles.json`` (the user's copy);
* :mod:`.eld` — ELD-style parameter ``.npy`` files (restricted unpickling);
* :mod:`.profile` — the Poisson–Gaussian (S, O) ↔ (K, σ) conversion they share.

:func:`import_card` picks the importer from the files given (``noisesim cards import`` calls it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from ..card import Card
from ..errors import InputFileError

__all__ = ["import_card"]


def import_card(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    camera: str | None = None,
    name: str | None = None,
    black_level_dn: float | None = None,
    white_level_dn: float | None = None,
) -> Card:
    """A card from one or more source files, the importer chosen by their kind.

    ``.dng`` files (one or more, one camera) → NoiseProfile; one ``.json`` → darktable's
    ``noiseprofiles.json`` (``camera`` picks the model) or an Android capture-result dump; one ``.npy`` →
    ELD-style parameters. ``black_level_dn`` / ``white_level_dn`` give the raw levels where the source has
    none (darktable, ELD); DNGs and Android dumps carry their own.

    Parameters
    ----------
    paths : path or sequence of paths
        The source files (all of one kind).
    camera : str, optional
        Which camera of a darktable file.
    name : str, optional
        The card's name (default: from make and model).
    black_level_dn, white_level_dn : float, optional
        Raw levels [DN] for sources without them.

    Returns
    -------
    Card

    Raises
    ------
    InputFileError
        Missing files, mixed kinds, or a file no importer recognises (naming it).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputFileError("no source files given")
    for p in paths:
        if not p.is_file():
            raise InputFileError(f"{p}: {'is a folder, not a source file' if p.is_dir() else 'no such file'}")
    kinds = {p.suffix.lower() for p in paths}
    if camera is not None and kinds != {".json"}:
        raise InputFileError(f"{paths[0]}: --camera picks a model in darktable's noiseprofiles.json; this source names its own camera")
    if kinds == {".dng"}:
        from .dng_profile import card_from_dngs

        return card_from_dngs(paths, name=name)
    if len(paths) > 1:
        raise InputFileError(f"{paths[1]}: several files are read together only as DNGs; give one {', '.join(sorted(kinds))} file")
    path = paths[0]
    suffix = path.suffix.lower()
    if suffix == ".npy":
        from .eld import card_from_eld_npy

        return card_from_eld_npy(path, name=name, black_level_dn=black_level_dn, white_level_dn=white_level_dn)
    if suffix == ".json":
        from .android import card_from_android_dump, looks_like_android_dump
        from .darktable import card_from_darktable, looks_like_darktable

        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputFileError(f"{path}: cannot be read as JSON ({type(exc).__name__}: {exc})") from None
        if looks_like_darktable(doc):
            return card_from_darktable(path, camera=camera, name=name, black_level_dn=black_level_dn, white_level_dn=white_level_dn)
        if looks_like_android_dump(doc):
            return card_from_android_dump(path, name=name)
        raise InputFileError(f"{path}: neither darktable's noiseprofiles.json nor an Android capture-result dump "
                             "(no \"noiseprofiles\" list, no android.sensor.noiseProfile)")
    raise InputFileError(f"{path}: cannot import a card from a {suffix or 'suffix-less'} file; give DNGs "
                         "(NoiseProfile), a .json (darktable or Android dump) or an ELD .npy")
