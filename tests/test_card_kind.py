"""Card kinds: a Poisson–Gaussian card (K and read σ per ISO only) samples, simulates and generates with
Gaussian read noise; asking it for a term it lacks names the card. Search and compare of ``noisesim cards``."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from noisesim import NoiseComponents, simulate
from noisesim.card import KIND_PHYSICS, KIND_POISSON_GAUSSIAN, camera_matches, card_to_toml, load_card, parse_card
from noisesim.cli import main
from noisesim.cli.cards import format_card_list
from noisesim.errors import CardError, ParameterError
from noisesim.sampling import sample_params

PG_TEXT = """schema = "noisesim.card/1"
[camera]
name = "TestPG"
make = "Canon"
model = "Canon EOS 6D"
[sensor]
cfa = "RGGB"
bit_depth = 14
black_level_dn = [2048, 2048, 2048, 2048]
white_level_dn = [15000, 15000, 15000, 15000]
[[iso]]
iso = 100
gain_k_dn_per_e = 0.5
read_sigma_dn = 3.0
[[iso]]
iso = 400
gain_k_dn_per_e = 2.0
read_sigma_dn = 6.0
[provenance]
source = "test"
"""


@pytest.fixture
def pg_card():
    return parse_card(PG_TEXT, "pg.toml")


def test_poisson_gaussian_card_parses_and_round_trips(pg_card):
    assert pg_card.kind == KIND_POISSON_GAUSSIAN
    assert pg_card.read_models == ("gaussian",)
    assert pg_card.iso_table[0].tukey_lambda is None and pg_card.iso_table[0].row_sigma_dn is None
    again = parse_card(card_to_toml(pg_card), "again.toml")
    assert again == pg_card and again.kind == KIND_POISSON_GAUSSIAN
    assert load_card("SonyA7S2").kind == KIND_PHYSICS


def test_mixed_rows_are_an_error():
    bad = PG_TEXT.replace("read_sigma_dn = 6.0", "read_sigma_dn = 6.0\ntukey_lambda = 0.1\ntukey_scale_dn = 2.0")
    with pytest.raises(CardError, match=r"bad\.toml: iso\[0\]\.tukey_lambda: missing"):
        parse_card(bad, "bad.toml")
    half = PG_TEXT.replace("read_sigma_dn = 6.0", "read_sigma_dn = 6.0\ntukey_lambda = 0.1")
    with pytest.raises(CardError, match=r"iso\[1\]\.tukey_scale_dn: missing"):
        parse_card(half, "half.toml")


def test_sampling_defaults_to_gaussian_and_names_the_card_for_tukey(pg_card):
    p = sample_params(pg_card, iso=400)
    assert (p.read_model, p.gain_k_dn_per_e, p.read_sigma_dn, p.row_sigma_dn, p.tukey_scale_dn) == ("gaussian", 2.0, 6.0, 0.0, 0.0)
    p = sample_params(pg_card, iso=200, rng=1)  # interpolated between rows
    assert p.read_model == "gaussian" and 3.0 < p.read_sigma_dn < 6.0 and np.isclose(p.gain_k_dn_per_e, 1.0)
    p = sample_params(pg_card, rng=3)  # random K over the table's range
    assert 0.5 <= p.gain_k_dn_per_e <= 2.0 and p.row_sigma_dn == 0.0
    with pytest.raises(ParameterError, match="card 'TestPG' is a poisson-gaussian card: it has no tukey"):
        sample_params(pg_card, iso=100, read_model="tukey")
    # physics cards keep Tukey as their default
    assert sample_params(load_card("SonyA7S2"), iso=1600).read_model == "tukey"


def test_simulated_variance_is_poisson_gaussian(pg_card):
    """Var = K·x + σ_read² + 1/12 (quantization) at ISO 400; SE of a variance from n pixels ≈ σ²·√(2/n)."""
    p = sample_params(pg_card, iso=400)
    x_dn = 500.0  # expected signal above the black level [DN]
    clean = np.full((256, 256), 2048 + x_dn, np.float32)  # input "dn" includes the black level
    noisy = simulate(clean, p, pg_card.sensor, input_unit="dn", output_unit="dn", rng=5)
    var_expect = 2.0 * x_dn + 6.0**2 + 1 / 12
    got = noisy.astype(np.float64).var()
    assert abs(got - var_expect) < 5 * var_expect * np.sqrt(2 / noisy.size), (got, var_expect)


def test_poisson_gaussian_card_through_generate(pg_card, tmp_path):
    from noisesim.card import save_card
    from noisesim.dataset import generate_dataset

    card_path = save_card(pg_card, tmp_path / "pg.toml")
    out = generate_dataset(tmp_path / "d.h5", card=str(card_path), source="builtin", pairs=4, patch=32,
                           iso=(100, 400), ratio=(1, 2), progress=False)
    with h5py.File(out, "r") as f:
        rec = f["params"][:]
        assert f["noisy"].shape[0] == 4
    assert {bytes(r).strip(b"\0") for r in rec["read_model"]} == {b"gaussian"}
    assert np.all(rec["row_sigma_dn"] == 0) and np.all(rec["tukey_scale_dn"] == 0)
    assert np.all((rec["read_sigma_dn"] >= 3.0) & (rec["read_sigma_dn"] <= 6.0))


def test_search_is_case_and_punctuation_insensitive():
    assert camera_matches("canon 6d", "Canon", "Canon EOS 6D")
    assert camera_matches("EOS-6D", "Canon EOS 6D")
    assert not camera_matches("canon 7d", "Canon", "Canon EOS 6D")
    assert not camera_matches("   ", "Canon EOS 6D")
    table = format_card_list("canon 70-d")
    assert table.splitlines()[1].split()[0] == "CanonEOS70D" and len(table.splitlines()) == 2
    assert "no shipped card matches" in format_card_list("leica m11")


def test_cli_list_shows_kind_and_search(capsys):
    assert main(["cards"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["NAME", "CAMERA", "KIND"] and "physics" in out
    assert main(["cards", "search", "sony", "ilce7sm2"]) == 0
    assert "SonyA7S2" in capsys.readouterr().out
    assert main(["cards", "search", "no-such-camera"]) == 1


def test_cli_compare_writes_png(pg_card, tmp_path, capsys):
    from noisesim.card import save_card

    card_path = save_card(pg_card, tmp_path / "pg.toml")
    out = tmp_path / "cmp.png"
    assert main(["cards", "compare", "SonyA7S2", "NikonD850", str(card_path), "--output", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert main(["cards", "compare", "SonyA7S2", "--output", str(tmp_path / "x.jpg")]) == 2
    assert "PNG" in capsys.readouterr().err
    assert main(["cards", "compare", "SonyA7S2"]) == 2  # no --output


def test_cli_show_poisson_gaussian(pg_card, tmp_path, capsys):
    from noisesim.card import save_card

    card_path = save_card(pg_card, tmp_path / "pg.toml")
    assert main(["cards", "show", str(card_path)]) == 0
    assert "poisson-gaussian" in capsys.readouterr().out


def test_cli_simulate_tukey_on_a_poisson_gaussian_card_is_one_line(pg_card, tmp_path, capsys):
    from noisesim.card import save_card

    card_path = save_card(pg_card, tmp_path / "pg.toml")
    clean = tmp_path / "c.npy"
    np.save(clean, np.full((32, 32), 0.1, np.float32))
    args = ["simulate", "--card", str(card_path), "--iso", "100", "--input", str(clean), "--input-unit", "normalized"]
    assert main(args + ["--output", str(tmp_path / "n.npy")]) == 0  # Gaussian by default
    capsys.readouterr()
    assert main(args + ["--output", str(tmp_path / "t.npy"), "--read-model", "tukey"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TestPG" in err[0] and "poisson-gaussian" in err[0]
    assert not (tmp_path / "t.npy").exists()
