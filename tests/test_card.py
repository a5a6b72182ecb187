"""Data cards: round trips, the shipped ELD cards against the released JSON, precise validation errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from noisesim.card import (
    SCHEMA,
    Camera,
    Card,
    ISOEntry,
    JointModel,
    JointProfile,
    LogLinearFit,
    card_to_toml,
    list_cards,
    load_card,
    parse_card,
    save_card,
)
from noisesim.errors import CardError, NoiseSimError, UnknownCardError
from noisesim.params import FixedPatternMaps, Sensor

REPO = Path(__file__).resolve().parent.parent
ELD_JSON = REPO / "data_cards" / "sources" / "eld_released_camera_params.json"
SHIPPED = ("CanonEOS5D4", "CanonEOS700D", "CanonEOS70D", "NikonD850", "SonyA7S2")


def _fit(slope, intercept, s=0.2):
    return LogLinearFit(slope=slope, intercept=intercept, residual_std=s)


def make_card(**changes) -> Card:
    """A small card exercising every section (table with CIs, two profiles, bins, provenance)."""
    card = Card(
        camera=Camera(name="TestCam", make="Acme", model="T-1"),
        sensor=Sensor(cfa="GRBG", bit_depth=12, black_level_dn=(64, 65, 66, 67), white_level_dn=4095),
        iso_table=(
            ISOEntry(
                iso=100,
                gain_k_dn_per_e=0.25,
                read_sigma_dn=1.5,
                tukey_lambda=0.12,
                tukey_scale_dn=1.1,
                row_sigma_dn=0.2,
                black_level_error_dn=(0.1, -0.2, 0.3, -0.4),
                col_sigma_dn=0.05,
                dark_current_e_per_s=0.8,
                ci={"gain_k_dn_per_e": (0.24, 0.26), "black_level_error_dn": [(0, 0.2), (-0.3, -0.1), (0.2, 0.4), (-0.5, -0.3)]},
            ),
            ISOEntry(iso=800, gain_k_dn_per_e=2.0, read_sigma_dn=4.0, tukey_lambda=-0.05, tukey_scale_dn=3.0, row_sigma_dn=0.7),
        ),
        joint=JointModel(
            k_min_dn_per_e=0.2,
            k_max_dn_per_e=2.5,
            dual_gain_switch_iso=400,
            tukey_lambda_values=(0.1, 0.0, -0.1),
            black_level_error_bins=((1, 2, 3, 4), (5, 6, 7, 8.5)),
            profiles=(
                JointProfile("low", 0.2, 1.0, _fit(0.5, 0.1), _fit(0.6, 0.4), _fit(0.5, -1.5), weight=1.0),
                JointProfile("high", 1.0, 2.5, _fit(0.4, -0.2), _fit(0.5, 0.1), _fit(0.45, -1.8), weight=2.0),
            ),
        ),
        provenance={"source": "unit test", "date": "2024-01-01", "notes": ["one", "two"], "extra": {"frames": 16}},
    )
    return card.replace(**changes) if changes else card


def small_maps(seed=0, shape=(6, 8)) -> FixedPatternMaps:
    g = np.random.default_rng(seed)
    return FixedPatternMaps(
        dark_shading_k_dn_per_iso=g.normal(0, 1e-3, shape),
        dark_shading_b_dn=g.normal(0, 0.5, shape),
        prnu=g.normal(0, 0.01, shape),
        hot_pixel_mask=g.random(shape) < 0.1,
    )


# --------------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------------
def test_round_trip_without_maps(tmp_path):
    card = make_card()
    path = save_card(card, tmp_path / "test.toml")
    loaded = load_card(path)
    assert loaded == card
    assert loaded.text == path.read_text()
    assert parse_card(card_to_toml(card)) == card
    assert loaded.maps is None
    assert loaded.iso_table[0].ci["gain_k_dn_per_e"] == (0.24, 0.26)
    assert loaded.provenance["extra"] == {"frames": 16}
    assert loaded.sensor.cfa.pattern == "GRBG" and loaded.sensor.black_level_dn == (64, 65, 66, 67)
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


def test_round_trip_of_strings_toml_must_escape(tmp_path):
    """DEL (U+007F) and other control characters are escaped on writing, so the card reloads (issue 10)."""
    from noisesim.card import Camera

    card = make_card()
    card = card.replace(camera=Camera(name="Cam\x7fera", make="Mäk\x01er \"x\" \\", model="é"),
                        provenance={"note": "tab\tdel\x7f", "clé": {"naïve key": "v"}})
    text = card_to_toml(card)
    assert "\x7f" not in text and "\x01" not in text
    again = load_card(save_card(card, tmp_path / "strings.toml"))
    assert again.camera == card.camera and again.provenance == card.provenance


def test_round_trip_with_maps(tmp_path):
    maps = small_maps()
    card = make_card().with_maps(maps, file="testcam_maps.npz")
    path = save_card(card, tmp_path / "test.toml")
    assert (tmp_path / "test_maps.npz").is_file()  # named after the card file (issue 7 item 8)
    loaded = load_card(path)
    assert card.maps_sha256 is None  # in memory: checksummed when saved
    assert loaded == card.replace(maps_file="test_maps.npz", maps_sha256=loaded.maps_sha256)
    assert f'sha256 = "{loaded.maps_sha256}"' in card.text  # the in-memory card's text names the saved sidecar
    got = loaded.maps
    for name in ("dark_shading_k_dn_per_iso", "dark_shading_b_dn", "prnu", "hot_pixel_mask"):
        np.testing.assert_array_equal(getattr(got, name), getattr(maps, name))
    assert got.dark_current_e_per_s is None
    # saving a loaded card elsewhere copies the sidecar, same checksum
    out = tmp_path / "copy"
    out.mkdir()
    again = load_card(save_card(loaded, out / "again.toml"))
    assert again == loaded.replace(maps_file="again_maps.npz") and (out / "again_maps.npz").is_file()


def test_with_maps_compresses_only_when_saving(tmp_path, monkeypatch):
    """Building an in-memory card (calibration) must not pay for the sidecar's compression (issue 12)."""
    import noisesim.card as card_mod

    calls = []
    real = card_mod._npz_bytes
    monkeypatch.setattr(card_mod, "_npz_bytes", lambda maps: calls.append(1) or real(maps))
    card = make_card().with_maps(small_maps(), file="lazy_maps.npz")
    assert calls == [] and card.maps is not None
    save_card(card, tmp_path / "lazy.toml")
    assert calls == [1]
    assert load_card(tmp_path / "lazy.toml").maps_sha256 is not None


def test_maps_checksum_mismatch_and_missing_sidecar(tmp_path):
    card = make_card().with_maps(small_maps(), file="m.npz")
    path = save_card(card, tmp_path / "c.toml")
    sidecar = tmp_path / "c_maps.npz"
    data = bytearray(sidecar.read_bytes())
    data[-30] ^= 0xFF
    sidecar.write_bytes(bytes(data))
    loaded = load_card(path)  # maps load lazily: the card itself is fine
    with pytest.raises(CardError, match=r"c\.toml: maps\.sha256: checksum mismatch.*c_maps\.npz"):
        loaded.maps
    sidecar.unlink()
    with pytest.raises(CardError, match=r"maps\.file: cannot read the sidecar .*c_maps\.npz"):
        load_card(path).maps


def test_sidecar_name_must_be_plain(tmp_path):
    text = card_to_toml(make_card()) + '\n[maps]\nfile = "../elsewhere/m.npz"\nsha256 = "' + "0" * 64 + '"\n'
    with pytest.raises(CardError, match=r"maps\.file: must be a plain \.npz file name"):
        parse_card(text, "x.toml")


def test_card_is_frozen():
    card = make_card()
    with pytest.raises(AttributeError):
        card.camera = Camera("Other")
    with pytest.raises(TypeError):
        card.provenance["source"] = "changed"


# --------------------------------------------------------------------------------------------------
# shipped cards
# --------------------------------------------------------------------------------------------------
def test_list_cards_has_the_five_eld_cameras():
    assert set(SHIPPED) <= set(list_cards())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_matches_released_json(name):
    eld = json.loads(ELD_JSON.read_text())[name]
    card = load_card(name.upper())  # names are case-insensitive
    assert card.name == name
    assert card.sensor.cfa.pattern == "RGGB"
    assert card.sensor.bit_depth == 14 and card.sensor.white_level_dn == (16383.0,) * 4
    j = card.joint
    assert j.k_min_dn_per_e == eld["Kmin"] and j.k_max_dn_per_e == eld["Kmax"]
    assert j.tukey_lambda_values == tuple(eld["G_shape"])
    assert [p.name for p in j.profiles] == ["Profile-1"]  # ELD's released sampler uses Profile-1 only
    for p in j.profiles:
        assert (p.k_min_dn_per_e, p.k_max_dn_per_e) == (eld["Kmin"], eld["Kmax"])
        for ours, theirs in (("tukey_scale_dn", "G_scale"), ("read_sigma_dn", "g_scale"), ("row_sigma_dn", "R_scale")):
            f = p.fit(ours)
            assert (f.slope, f.intercept, f.residual_std) == (
                eld[p.name][theirs]["slope"],
                eld[p.name][theirs]["bias"],
                eld[p.name][theirs]["sigma"],
            )
    # ELD packs R, G1, B, G2; the card is in Bayer site order R, G1, G2, B
    assert len(j.black_level_error_bins) == len(eld["color_bias"])
    for ours, (r, g1, b, g2) in zip(j.black_level_error_bins, eld["color_bias"]):
        assert ours == (r, g1, g2, b)
    assert card.provenance["citation"].startswith("K. Wei")
    assert "black_level_source" in card.provenance


def test_channel_reorder_spot_check():
    # CanonEOS5D4 bin 8 in ELD's order is (R, G1, B, G2) = (0.956, 0.067, 0.898, 0.218)
    bins = load_card("CanonEOS5D4").joint.black_level_error_bins
    assert bins[8] == pytest.approx((0.9560468196868896, 0.06725019216537476, 0.21799524128437042, 0.8979965448379517))


def test_sony_card_has_pmn_table_and_dual_gain_switch():
    card = load_card("SonyA7S2")
    assert card.sensor.black_level_dn == (512.0,) * 4
    assert card.isos[0] == 50 and card.isos[-1] == 25600 and 1600 in card.isos
    e = card.iso_entry(1600)  # PMN's per-ISO entry SonyA7S2_1600, unrounded
    assert (e.gain_k_dn_per_e, e.tukey_lambda, e.tukey_scale_dn, e.read_sigma_dn, e.row_sigma_dn) == (
        1.53008, -0.0441045, 3.2283993, 6.29925, 0.988786)
    assert card.joint.dual_gain_switch_iso == 2000
    assert card.iso_entry(2000).read_sigma_dn < card.iso_entry(1600).read_sigma_dn


def test_shipped_cards_are_regenerated_exactly(tmp_path):
    """The committed cards are what build_eld_cards.py writes (only the conversion date may differ)."""
    import subprocess
    import sys

    date = load_card("SonyA7S2").provenance["date"]
    subprocess.run(
        [sys.executable, str(REPO / "data_cards" / "sources" / "build_eld_cards.py"), "--out", str(tmp_path), "--date", date],
        check=True,
        capture_output=True,
    )
    for name in SHIPPED:
        assert (tmp_path / f"{name}.toml").read_text() == (REPO / "data_cards" / f"{name}.toml").read_text(), name


def test_unknown_card_lists_available():
    with pytest.raises(UnknownCardError) as info:
        load_card("CanonEOS1000D")
    msg = str(info.value)
    assert "CanonEOS1000D" in msg
    for name in SHIPPED:
        assert name in msg
    assert isinstance(info.value, NoiseSimError) and isinstance(info.value, KeyError)


def test_missing_card_path(tmp_path):
    with pytest.raises(UnknownCardError, match=r"no card file .*nope\.toml"):
        load_card(tmp_path / "nope.toml")


# --------------------------------------------------------------------------------------------------
# malformed cards: every error names the file and the field
# --------------------------------------------------------------------------------------------------
BASE = card_to_toml(make_card())


def _load_text(tmp_path, text) -> Card:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return load_card(path)


def _replace_once(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "old, new, pattern",
    [
        ("gain_k_dn_per_e = 0.25\n", "", r"bad\.toml: iso\[0\]\.gain_k_dn_per_e: missing"),
        ("read_sigma_dn = 4\n", 'read_sigma_dn = "4"\n', r"bad\.toml: iso\[1\]\.read_sigma_dn: must be a number, got str '4'"),
        ("gain_k_dn_per_e = 2\n", "gain_k_dn_per_e = -1\n", r"bad\.toml: iso\[1\]\.gain_k_dn_per_e: must be > 0, got -1"),
        ("row_sigma_dn = 0.7\n", "row_sigma_dn = -0.7\n", r"bad\.toml: iso\[1\]\.row_sigma_dn: must be >= 0, got -0.7"),
        ('cfa = "GRBG"', 'cfa = "RGBX"', r"bad\.toml: sensor\.cfa: unknown CFA pattern 'RGBX'"),
        ("cfa = ", "cfa = 3\nxcfa = ", r"bad\.toml: sensor\.xcfa: unknown key"),
        ("row_sigma_dn = 0.2\n", "row_sigma_dn = 0.2\nrow_sigma = 0.2\n", r"bad\.toml: iso\[0\]\.row_sigma: unknown key \(valid keys in iso\[0\]: iso, gain_k_dn_per_e"),
        ("noisesim.card/1", "noisesim.card/3", r"bad\.toml: schema: unsupported schema .noisesim.card/3..*newer noisesim"),
        ('schema = "noisesim.card/1"', 'schema = "other/1"', r"bad\.toml: schema: not a noisesim card schema"),
        ('schema = "noisesim.card/1"', "", r"bad\.toml: schema: missing"),
        ("iso = 800\n", "iso = 50\n", r"bad\.toml: iso\[1\]\.iso: ISO values must be strictly ascending, got 50 after 100"),
        ("iso = 800\n", "iso = 100\n", r"bad\.toml: iso\[1\]\.iso: ISO values must be strictly ascending"),
        ("tukey_lambda = -0.05\n", "tukey_lambda = 1.5\n", r"bad\.toml: iso\[1\]\.tukey_lambda: must lie in \(-1, 1\)"),
        ("black_level_dn = [64, 65, 66, 67]", "black_level_dn = [64, 65, 66]", r"bad\.toml: sensor\.black_level_dn: must hold 4 values"),
        ("black_level_dn = [64, 65, 66, 67]", "black_level_dn = [64, 65, 66, 5000]", r"bad\.toml: sensor\.black_level_dn / white_level_dn: levels of channel"),
        ("bit_depth = 12", "bit_depth = 12.5", r"bad\.toml: sensor\.bit_depth: must be an integer"),
        ("bit_depth = 12", "bit_depth = 20", r"bad\.toml: sensor\.bit_depth: bit_depth must be an integer from 8 to 16"),
        ("bit_depth = 12\n", "", r"bad\.toml: sensor\.bit_depth: missing"),
        ("slope = 0.5, intercept = 0.1,", "slop = 0.5, intercept = 0.1,", r"bad\.toml: joint\.profile\[0\]\.tukey_scale_dn\.slop: unknown key"),
        ("residual_std = 0.2 }", "residual_std = -0.2 }", r"bad\.toml: joint\.profile\[0\]\.tukey_scale_dn\.residual_std: must be >= 0"),
        ('name = "high"\nweight = 2', 'name = "high"\nweight = 0', r"bad\.toml: joint\.profile\[1\]\.weight: must be > 0, got 0"),
        ('name = "high"', 'name = "low"', r"bad\.toml: joint\.profile\[1\]\.name: duplicate profile name 'low'"),
        ("k_min_dn_per_e = 1\n", "k_min_dn_per_e = 1.5\n", r"bad\.toml: joint\.profile: the profiles leave part of the K range uncovered, from K = 1"),
        ("k_max_dn_per_e = 2.5\n", "k_max_dn_per_e = 0.1\n", r"bad\.toml: joint\.k_max_dn_per_e: must exceed k_min_dn_per_e"),
        ("black_level_error_bins = [\n", "black_level_error_bins = [\n    [1, 2],\n", r"bad\.toml: joint\.black_level_error_bins\[0\]: must hold 4 values"),
        ("dual_gain_switch_iso = 400", "dual_gain_switch_iso = -400", r"bad\.toml: joint\.dual_gain_switch_iso: must be > 0"),
        ("[camera]\n", "[camera]\nserial = 1\n", r"bad\.toml: camera\.serial: unknown key"),
        ("[camera]\n", "colour = 1\n[camera]\n", r"bad\.toml: colour: unknown key \(valid keys in the top level"),
        ('name = "TestCam"', 'name = ""', r"bad\.toml: camera\.name: must not be empty"),
        ("ci = { gain_k_dn_per_e = [0.24, 0.26]", "ci = { gain_k_dn_per_e = [0.26, 0.24]", r"bad\.toml: iso\[0\]\.ci\.gain_k_dn_per_e: lower bound 0.26 exceeds upper bound 0.24"),
        ("ci = { gain_k_dn_per_e", "ci = { gain = [0, 1], gain_k_dn_per_e", r"bad\.toml: iso\[0\]\.ci\.gain: unknown field"),
        ("[[iso]]\n", "[[iso]\n", r"bad\.toml: not valid TOML"),
    ],
)
def test_malformed_card_errors_name_file_and_field(tmp_path, old, new, pattern):
    with pytest.raises(CardError, match=pattern):
        _load_text(tmp_path, _replace_once(BASE, old, new))


def test_missing_sections(tmp_path):
    no_sensor = BASE[: BASE.index("[sensor]")] + BASE[BASE.index("[[iso]]"):]
    with pytest.raises(CardError, match=r"bad\.toml: sensor: missing"):
        _load_text(tmp_path, no_sensor)
    table_only = BASE[: BASE.index("[joint]")] + BASE[BASE.index("[provenance]"):]
    assert _load_text(tmp_path, table_only).joint is None
    nothing = BASE[: BASE.index("[[iso]]")]
    with pytest.raises(CardError, match=r"bad\.toml: iso: a card needs a per-ISO table"):
        _load_text(tmp_path, nothing)


def test_joint_only_card_needs_lambda_values(tmp_path):
    joint_only = BASE[: BASE.index("[[iso]]")] + BASE[BASE.index("[joint]"):]
    assert _load_text(tmp_path, joint_only).iso_table == ()
    with pytest.raises(CardError, match=r"joint\.tukey_lambda_values: required when the card has no per-ISO table"):
        _load_text(tmp_path, _replace_once(joint_only, "tukey_lambda_values = [0.1, 0, -0.1]\n", ""))


def test_not_utf8(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CardError, match=r"binary\.toml: not UTF-8"):
        load_card(path)


def test_programmatic_errors_name_the_field():
    with pytest.raises(CardError, match=r"^gain_k_dn_per_e: must be > 0, got -1$"):
        ISOEntry(iso=100, gain_k_dn_per_e=-1, read_sigma_dn=1, tukey_lambda=0, tukey_scale_dn=1, row_sigma_dn=0)
    with pytest.raises(CardError, match=r"iso\[1\]\.iso: ISO values must be strictly ascending"):
        make_card(iso_table=tuple(reversed(make_card().iso_table)))


# --------------------------------------------------------------------------------------------------
# CLI: noisesim cards
# --------------------------------------------------------------------------------------------------
def test_cli_cards_list_and_show(capsys, tmp_path):
    from noisesim.cli import main

    assert main(["cards"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert "ISO 50–25600" in out and "RGGB" in out

    assert main(["cards", "show", "sonya7s2"]) == 0
    out = capsys.readouterr().out
    assert "black level [512, 512, 512, 512] DN" in out and "first high-gain ISO 2000" in out
    assert "ln σ_TL   = 0.4621 · ln K + 0.5657" in out and "Provenance:" in out

    path = save_card(make_card().with_maps(small_maps()), tmp_path / "mine.toml")
    assert main(["cards", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "95 % CI gain_k_dn_per_e: [0.24, 0.26]" in out and "Maps: mine_maps.npz" in out

    assert main(["cards", "show", str(path), "--toml"]) == 0
    assert capsys.readouterr().out == path.read_text()


def test_cli_cards_bad_name_is_one_line_on_stderr(capsys):
    from noisesim.cli import main

    assert main(["cards", "show", "NoSuchCamera"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "NoSuchCamera" in lines[0] and "SonyA7S2" in lines[0]
    assert main(["cards", "show"]) == 2
    assert "needs a card" in capsys.readouterr().err


def test_card_pickles_and_deep_copies():
    """Dataset workers receive cards by pickling (spawn start method); reports use dataclasses.asdict."""
    import copy
    import dataclasses
    import pickle

    card = make_card()
    assert pickle.loads(pickle.dumps(card)) == card
    assert copy.deepcopy(card) == card
    d = dataclasses.asdict(card.iso_table[0])
    assert d["ci"]["gain_k_dn_per_e"] == (0.24, 0.26)
    shipped = load_card("SonyA7S2")
    assert pickle.loads(pickle.dumps(shipped)) == shipped


# --------------------------------------------------------------------------------------------------
# schema /2: per-ISO black levels, hot-pixel dark current, EMVA 1288 datasheet figures
# --------------------------------------------------------------------------------------------------
def _card_v2() -> Card:
    card = make_card()
    rows = (
        dataclasses.replace(card.iso_table[0], black_level_dn=(89, 89, 89, 89), read_noise_e=6.0, saturation_capacity_e=16000.0,
                            dynamic_range_db=68.5, hot_pixel_dark_current_e_per_s=120.0,
                            ci={"read_noise_e": (5.9, 6.1), "hot_pixel_dark_current_e_per_s": (110, 130)}),
        dataclasses.replace(card.iso_table[1], black_level_dn=(166, 166, 166, 167)),
    )
    return card.replace(iso_table=rows)


def test_schema_v2_round_trip_and_per_iso_black(tmp_path):
    card = _card_v2()
    text = card_to_toml(card)
    assert text.startswith('schema = "noisesim.card/2"')
    back = parse_card(text)
    assert back == card
    assert back.black_level_at(100) == (89,) * 4 and back.black_level_at(800) == (166, 166, 166, 167)
    assert back.black_level_at(300) == (166, 166, 166, 167)  # nearest in ln ISO
    assert back.black_level_at(None) == card.sensor.black_level_dn
    assert back.sensor_at(100).black_level_dn == (89,) * 4 and back.sensor_at(100).cfa == card.sensor.cfa
    assert back.black_varies_with_iso
    mixed = card.replace(iso_table=(card.iso_table[0], dataclasses.replace(card.iso_table[1], black_level_dn=None)))
    assert mixed.black_level_at(800) == card.sensor.black_level_dn and mixed.black_level_at(100) == (89,) * 4


def test_schema_v1_reads_unchanged_and_is_written_for_v1_content():
    card = make_card()
    text = card_to_toml(card)
    assert text.startswith('schema = "noisesim.card/1"')  # nothing of /2 in it: older readers keep working
    back = parse_card(text)
    assert back.sensor_at(800) is back.sensor and not back.black_varies_with_iso
    assert parse_card(text.replace("noisesim.card/1", "noisesim.card/2", 1)) == card


@pytest.mark.parametrize("key, value", [("black_level_dn", "[1, 2, 3, 4]"), ("read_noise_e", "3.0"),
                                        ("hot_pixel_dark_current_e_per_s", "5.0")])
def test_v2_keys_in_a_v1_file_are_errors(tmp_path, key, value):
    text = _replace_once(BASE, "row_sigma_dn = 0.7\n", f"row_sigma_dn = 0.7\n{key} = {value}\n")
    with pytest.raises(CardError, match=rf"bad\.toml: iso\[1\]\.{key}: needs schema = \"noisesim.card/2\""):
        _load_text(tmp_path, text)


def test_v2_black_level_must_lie_below_white(tmp_path):
    text = card_to_toml(_card_v2()).replace("black_level_dn = [166, 166, 166, 167]", "black_level_dn = [166, 166, 166, 5000]")
    with pytest.raises(CardError, match=r"bad\.toml: iso\[1\]\.black_level_dn: black level 5000 of site .* below the white level 4095"):
        _load_text(tmp_path, text)


# --------------------------------------------------------------------------------------------------
# sidecar names (issue 7 item 8)
# --------------------------------------------------------------------------------------------------
def test_two_cards_of_one_camera_in_one_folder_both_reload(tmp_path):
    """The sidecar was named after the camera, so the second card overwrote the first one's maps."""
    a = make_card().with_maps(small_maps(seed=1))
    b = make_card().with_maps(small_maps(seed=2))
    assert a.camera == b.camera
    save_card(a, tmp_path / "day1.toml")
    save_card(b, tmp_path / "day2.toml")
    for name, want in (("day1", a.maps), ("day2", b.maps)):
        got = load_card(tmp_path / f"{name}.toml").maps  # checksum verified
        np.testing.assert_array_equal(got.dark_shading_b_dn, want.dark_shading_b_dn)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["day1_maps.npz", "day2_maps.npz"]


def test_a_sidecar_another_card_references_is_never_overwritten(tmp_path):
    first = save_card(make_card().with_maps(small_maps(seed=1)), tmp_path / "cam.toml")
    # a copy of the card under another name still points at cam_maps.npz
    (tmp_path / "backup.toml").write_text(first.read_text())
    save_card(make_card().with_maps(small_maps(seed=2)), tmp_path / "cam.toml")  # new maps for cam.toml
    backup, cam = load_card(tmp_path / "backup.toml"), load_card(tmp_path / "cam.toml")
    np.testing.assert_array_equal(backup.maps.dark_shading_b_dn, small_maps(seed=1).dark_shading_b_dn)
    np.testing.assert_array_equal(cam.maps.dark_shading_b_dn, small_maps(seed=2).dark_shading_b_dn)
    assert cam.maps_file.startswith("cam_maps-") and cam.maps_file == f"cam_maps-{cam.maps_sha256[:12]}.npz"
    # with nobody else referencing it, re-saving a card replaces its own sidecar in place
    save_card(make_card().with_maps(small_maps(seed=3)), tmp_path / "solo.toml")
    save_card(make_card().with_maps(small_maps(seed=4)), tmp_path / "solo.toml")
    solo = load_card(tmp_path / "solo.toml")
    assert solo.maps_file == "solo_maps.npz"
    np.testing.assert_array_equal(solo.maps.dark_shading_b_dn, small_maps(seed=4).dark_shading_b_dn)


def test_cards_show_prints_schema_v2_figures(tmp_path, capsys):
    from noisesim.cli import main

    path = save_card(_card_v2(), tmp_path / "v2.toml")
    assert main(["cards", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "black level [89, 89, 89, 89] DN; EMVA 1288 σ_d 6 e⁻; μ_e.sat 1.6e+04 e⁻; DR 68.5 dB; hot-pixel dark current 120 e⁻/s" in out
    assert "black level [166, 166, 166, 167] DN" in out
