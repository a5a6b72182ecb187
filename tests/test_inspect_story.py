"""inspect and the contact sheet tell the whole story (issue 11 item 7)."""

from __future__ import annotations

import numpy as np
import pytest

from noisesim.dataset import LABEL_PX, contact_sheet, format_summary, generate_dataset, inspect_dataset
from noisesim.params import NoiseComponents


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    d = tmp_path_factory.mktemp("story")
    one = generate_dataset(d / "one.h5", card="SonyA7S2", pairs=4, patch=32, iso="800:3200", progress=False,
                           components=NoiseComponents(row=False))
    sharded = generate_dataset(d / "sharded.h5", card="SonyA7S2", pairs=4, patch=32, shards=2, progress=False)
    return one, sharded


def test_summary_names_layout_components_ratio_and_sources(datasets):
    one, _ = datasets
    info = inspect_dataset(one)
    text = format_summary(info)
    assert "packed (4, 16, 16) per sample" in text and "32×32 mosaic" in text
    assert "NOT multiplied by the ratio" in text
    on, off = text.split("noise terms on: ")[1].split("\n")[0].split("; off: ")
    assert "shot" in on and "read" in on and "row" in off and "row" not in on.split(", ")
    assert "fixed-pattern maps (DSNU, PRNU, hot pixels): not used" in text
    # procedural dead leaves: a new image per sample, not "1 distinct source"
    assert info["n_sources"] == 4 and "distinct sources: 4 (4 procedural, one per sample)" in text


def test_size_of_a_sharded_dataset_counts_its_shards(datasets):
    _, sharded = datasets
    info = inspect_dataset(sharded)
    shards = sorted(sharded.parent.glob("sharded*.h5"))
    assert len(shards) == 3  # master + 2 shards
    assert info["size_bytes"] == sum(p.stat().st_size for p in shards)
    assert info["size_bytes"] > 2 * sharded.stat().st_size


def test_contact_sheet_labels_rows_and_columns(datasets, tmp_path):
    import cv2

    one, _ = datasets
    png = contact_sheet(one, tmp_path / "sheet.png", n=3)
    img = cv2.imread(str(png))
    tile_h = 32  # the ISP renders the 32×32 mosaic at full size
    assert img.shape[0] == LABEL_PX + 3 * (LABEL_PX + tile_h) + 2 * 4  # header, three labelled rows, gaps
    # every text strip (header and each row's label) carries dark text on white
    starts = [0] + [LABEL_PX + k * (LABEL_PX + tile_h + 4) for k in range(3)]
    for y in starts:
        strip = img[y:y + LABEL_PX].astype(int)
        assert (strip.min(axis=2) < 100).sum() > 20 and np.median(strip) > 200, y


def test_contact_sheet_bad_count_or_indices_is_a_clear_error(datasets, tmp_path):
    """n = 0 used to raise a bare IndexError from the PNG writer; bad counts and indices now name the problem
    and leave no file behind."""
    from noisesim.errors import DatasetError, ParameterError

    one, _ = datasets
    out = tmp_path / "sheet.png"
    for n in (0, -2, 1.5, True):
        with pytest.raises(ParameterError, match=r"n must be an integer >= 1"):
            contact_sheet(one, out, n=n)
    with pytest.raises(DatasetError, match="no samples to put on a contact sheet"):
        contact_sheet(one, out, indices=[])
    with pytest.raises(DatasetError, match=r"indices \[99\] are not sample indices"):
        contact_sheet(one, out, indices=[0, 99])
    assert not out.exists()
