"""Contact sheets: a PNG of (noisy × ratio | clean) pairs of a dataset, labelled, through the forward ISP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import write_bytes
from ..errors import DatasetError, NoiseSimError, ParameterError
from .inspect import READ_ERRORS, first_line, open_dataset_file, to_normalized
from .layout import sensor_from_attrs

__all__ = ["LABEL_PX", "contact_sheet"]


def contact_sheet(path: str | os.PathLike, out_png: str | os.PathLike, *, n: int = 8, indices: Sequence[int] | None = None) -> Path:
    """Write a PNG of ``n`` pairs (noisy × ratio | clean), each row labelled with its index, ISO, ratio and
    K and the columns titled, rendered by the forward ISP
    (:func:`noisesim.isp.process`) with each sample's recorded white balance and colour matrix
    (neutral gains and the identity matrix when the sample has none, e.g. procedural or raw sources).

    Parameters
    ----------
    path : str or PathLike
        The dataset file.
    out_png : str or PathLike
        The PNG to write.
    n : int
        Pairs shown (≥ 1; spread evenly over the file, unless ``indices``).
    indices : sequence of int, optional
        Which samples (non-empty, each in 0 … N − 1).

    Raises
    ------
    ParameterError
        ``n`` < 1 or not an integer.
    DatasetError
        An unreadable file, no samples to show, or an index outside the file.

    Returns
    -------
    Path
        ``out_png``.
    """
    if indices is None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ParameterError(f"n must be an integer >= 1 (pairs on the contact sheet), got {n!r}")
    out_png = Path(out_png)
    if not out_png.parent.is_dir():
        raise DatasetError(f"cannot write {out_png}: directory {out_png.parent} does not exist")
    f = open_dataset_file(path, allow_partial=True)
    try:
        with f:
            tiles = _sheet_tiles(f, n, indices)
    except NoiseSimError:
        raise
    except READ_ERRORS as exc:
        raise DatasetError(f"{path} cannot be read: {first_line(exc)}") from None
    _write_sheet(tiles, out_png)
    return out_png


def _sheet_tiles(f, n: int, indices) -> list[np.ndarray]:
    """One (h, 2w + 4, 3) RGB tile (noisy × ratio | clean) per chosen sample of the open file ``f``."""
    from ..isp import ISPMeta, process

    attrs = dict(f.attrs)
    N = f["params"].shape[0]
    idx = list(indices) if indices is not None else list(np.linspace(0, N - 1, min(n, N)).round().astype(int))
    if not idx:
        raise DatasetError(f"{f.filename}: no samples to put on a contact sheet ({N} in the file, indices {list(indices or ())})")
    bad = [i for i in idx if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < N]
    if bad:
        raise DatasetError(f"{f.filename}: contact-sheet indices {bad} are not sample indices 0..{N - 1}")
    sensor = sensor_from_attrs(attrs)
    cfa = sensor.cfa
    rows = []
    for i in idx:
        rec = f["params"][i]
        stored = f["clean"][i], f["noisy"][i]
        if not all(np.isfinite(x).all() for x in stored):  # damaged: a sheet of it would show garbage
            raise DatasetError(f"{f.filename}: sample {i} holds NaN or infinite values; the file is damaged "
                               "(noisesim inspect --verify lists every damaged sample)")
        with np.errstate(over="ignore"):  # absurd but finite values (damage too) saturate in the picture
            clean = to_normalized(stored[0], attrs, rec=rec)
            noisy = to_normalized(stored[1], attrs, rec=rec) * float(rec["ratio"])
        if np.isfinite(rec["isp_rgb_gain"]):
            meta = ISPMeta(rgb_gain=float(rec["isp_rgb_gain"]), red_gain=float(rec["isp_red_gain"]),
                           blue_gain=float(rec["isp_blue_gain"]), cam2rgb=tuple(rec["isp_cam2rgb"].ravel().tolist()))
        else:
            meta = ISPMeta(rgb_gain=1.0, red_gain=1.0, blue_gain=1.0, cam2rgb=tuple(np.eye(3).ravel()))
        pair = [process(cfa.unpack(np.clip(x, 0, 1)), meta, cfa) for x in (noisy, clean)]
        sep = np.ones((pair[0].shape[0], 4, 3), np.float32)
        tile = np.concatenate([pair[0], sep, pair[1]], axis=1)
        iso = f"ISO {float(rec['iso']):.0f}  " if np.isfinite(rec["iso"]) else ""
        rows.append((f"#{i}  {iso}x{float(rec['ratio']):.4g}  K {float(rec['gain_k_dn_per_e']):.3g}", tile))
    if not rows:
        return []
    # column titles over the first row; every row labelled with its index, ISO, ratio and K; the sheet is
    # made wide enough for the text (small patches are narrower than a label)
    w = rows[0][1].shape[1]
    half = max((w - 4) // 2 + 4, _text_width("noisy x ratio"))  # the clean column's title starts here
    width = max([w, half + _text_width("clean")] + [_text_width(t) for t, _ in rows])
    head = np.concatenate([_text_strip("noisy x ratio", half), _text_strip("clean", width - half)], axis=1)
    tiles = []
    for k, (label, tile) in enumerate(rows):
        pad = np.ones((tile.shape[0], width - tile.shape[1], 3), np.float32)
        parts = ([head] if k == 0 else []) + [_text_strip(label, width), np.concatenate([tile, pad], axis=1)]
        tiles.append(np.concatenate(parts, axis=0))
    return tiles


LABEL_PX = 14  # height of a contact sheet's text strips
_FONT, _SCALE = 0, 0.35  # cv2.FONT_HERSHEY_SIMPLEX


def _text_width(text: str) -> int:
    import cv2

    return int(cv2.getTextSize(text, _FONT, _SCALE, 1)[0][0]) + 4


def _text_strip(text: str, width: int) -> np.ndarray:
    """A white (LABEL_PX, width, 3) float strip with ``text`` in black."""
    import cv2

    strip = np.full((LABEL_PX, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (2, LABEL_PX - 4), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return strip.astype(np.float32) / 255


def _write_sheet(tiles: list[np.ndarray], out_png: Path) -> None:
    """Stack the tiles with white gaps and write them as an 8-bit image, atomically."""
    import cv2

    gap = np.ones((4, tiles[0].shape[1], 3), np.float32)
    sheet = np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=0)
    img = (np.clip(sheet, 0, 1) * 255 + 0.5).astype(np.uint8)
    try:  # encoded in memory, then written atomically (cv2.imwrite would leave a torn file on a full disk)
        ok, encoded = cv2.imencode(out_png.suffix.lower() or ".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise DatasetError(f"could not write {out_png}: cannot encode an image as {out_png.suffix or 'PNG'!r} (use .png)")
    write_bytes(out_png, encoded.tobytes())
