"""CFA patterns, packing and per-site levels."""

import numpy as np
import pytest

from noisesim.cfa import CFA, PATTERNS
from noisesim.errors import CFAError, ShapeError


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pack_unpack_round_trip(pattern):
    cfa = CFA(pattern)
    p = cfa.period
    raw = np.arange(4 * p * 6 * p).reshape(4 * p, 6 * p)
    packed = cfa.pack(raw)
    assert packed.shape == (p * p, 4, 6)
    np.testing.assert_array_equal(cfa.unpack(packed), raw)


def test_bayer_channel_order_reads_the_pattern():
    raw = np.array([[1, 2], [3, 4]])
    for pattern, names in [("RGGB", ("R", "G1", "G2", "B")), ("BGGR", ("B", "G1", "G2", "R")),
                           ("GRBG", ("G1", "R", "B", "G2")), ("GBRG", ("G1", "B", "R", "G2"))]:
        cfa = CFA(pattern)
        assert cfa.channel_names == names
        # packed channel c is the pixel at tile position c (row-major), whose colour is names[c]
        assert cfa.pack(raw)[:, 0, 0].tolist() == [1, 2, 3, 4]
        assert "".join(n[0] for n in names) == pattern


def test_quad_bayer_layout():
    cfa = CFA("QUAD_RGGB")
    assert cfa.period == 4 and cfa.n_channels == 16
    assert "".join(cfa.colors.ravel()) == "RRGGRRGGGGBBGGBB"
    assert CFA("rrggrrggggbbggbb") == cfa
    assert cfa.channel_names[0] == "R_00" and cfa.channel_names[15] == "B_33"


def test_shifted_patterns():
    assert CFA("RGGB").shifted(0, 1).pattern == "GRBG"
    assert CFA("RGGB").shifted(1, 0).pattern == "GBRG"
    assert CFA("RGGB").shifted(1, 1).pattern == "BGGR"
    assert CFA("RGGB").shifted(2, 4).pattern == "RGGB"
    assert CFA("QUAD_RGGB").shifted(2, 0).pattern == "QUAD_GBRG"
    with pytest.raises(CFAError, match="even"):
        CFA("QUAD_RGGB").shifted(1, 0)


def test_per_pixel_levels():
    cfa = CFA("GRBG")
    m = cfa.per_pixel((10, 20, 30, 40), (4, 6))  # G1, R, B, G2 in reading order
    assert m[0, 0] == 10 and m[0, 1] == 20 and m[1, 0] == 30 and m[1, 1] == 40 and m[2, 3] == 20
    q = CFA("QUAD_RGGB").per_pixel((1, 2, 3, 4), (4, 4))
    np.testing.assert_array_equal(q, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


@pytest.mark.parametrize("bad", ["RGBG", "XTRANS", "", "RGGBB"])
def test_unknown_pattern_names_the_choices(bad):
    with pytest.raises(CFAError, match="expected one of RGGB"):
        CFA(bad)


def test_shape_errors():
    with pytest.raises(ShapeError, match=r"multiples of 2"):
        CFA("RGGB").pack(np.zeros((5, 4)))
    with pytest.raises(ShapeError, match=r"multiples of 4"):
        CFA("QUAD_RGGB").pack(np.zeros((6, 8)))
    with pytest.raises(ShapeError, match=r"Got \(3, 2, 2\)"):
        CFA("RGGB").unpack(np.zeros((3, 2, 2)))
    with pytest.raises(ShapeError, match="4 values"):
        CFA("RGGB").tile_values((1, 2, 3))
