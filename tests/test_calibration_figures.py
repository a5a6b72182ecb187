"""calibration.emva_figures: one function per measured figure, each naming its section, symbol and unit.

The figures' values on a whole capture are pinned by test_calibration_pinned_card.py; here each function is
checked alone against its closed form on inputs where the answer is known exactly, and the metadata that
the docstrings, docs/calibration.md and the report's datasheet share is checked for agreement.
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest

from noisesim.calibration import emva_figures as fig
from noisesim.calibration.estimators import Estimate, PTCFit
from noisesim.calibration.pixel_noise import QUANTIZATION_VAR_DN2

DOCS = Path(__file__).resolve().parents[1] / "docs" / "calibration.md"


def _k(value: float, se: float) -> Estimate:
    return Estimate.normal(value, se, "test", 8)


def test_every_public_function_returning_estimates_is_a_registered_figure():
    helpers = {"sigma_from_variance", "map_scale", "line_noise_variances", "row_noise_spectrum", "tukey_lambda_per_channel"}
    public = {n for n, f in vars(fig).items() if inspect.isfunction(f) and f.__module__ == fig.__name__ and not n.startswith("_")}
    assert public - helpers == set(fig.FIGURES), "figure functions without @_figure metadata, or stale registry entries"
    for name, meta in fig.FIGURES.items():
        assert getattr(fig, name).figure is meta
        assert name in fig.__all__


@pytest.mark.parametrize("name", sorted(fig.FIGURES))
def test_docstring_names_section_symbol_and_unit(name):
    meta, doc = fig.FIGURES[name], inspect.getdoc(getattr(fig, name))
    source = meta.section.split(" §")[0]  # "EMVA 1288", "ELD"
    assert source in doc, f"{name}: source {source} not in its docstring"
    for sec in re.findall(r"§[\d.]+", meta.section):
        assert sec in doc, f"{name}: section {sec} not in its docstring"
    for sym in meta.symbol.split(", "):
        assert sym in doc, f"{name}: symbol {sym} not in its docstring"
    for unit in meta.unit.split(", "):
        assert unit == "1" or unit in doc, f"{name}: unit {unit} not in its docstring"


def test_docs_table_lists_every_figure_with_its_symbol_and_unit():
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("| `")]
    for name, meta in fig.FIGURES.items():
        row = next((r for r in rows if f"`{name}`" in r), None)
        assert row is not None, f"docs/calibration.md: no row for {name}"
        assert meta.symbol in row and (meta.unit == "1" or meta.unit.split(", ")[-1] in row), f"{name}: {row}"


def test_system_gain_is_the_inverse_variance_mean_of_the_channels():
    def ptc(k, se):
        return PTCFit(_k(k, se), np.zeros(1), np.zeros(1), np.ones(1, bool), 1000.0, True)

    # consistent channels: the plain inverse-variance mean and its SE
    g = fig.system_gain([ptc(1.0, 0.01), ptc(1.02, 0.02)])
    w = np.array([1e4, 2.5e3])
    assert g.value == pytest.approx((w @ [1.0, 1.02]) / w.sum(), rel=1e-14)
    assert g.se == pytest.approx(1 / math.sqrt(w.sum()), rel=1e-14)
    # channels 10 SE apart: the SE grows by √(χ²/dof)
    g2 = fig.system_gain([ptc(1.0, 0.01), ptc(1.2, 0.01)])
    assert g2.value == pytest.approx(1.1) and g2.se == pytest.approx(0.01 / math.sqrt(2) * math.sqrt(200.0), rel=1e-12)


def test_dark_current_is_the_slope_over_k():
    levels = [(0.0, 10.0, 0.1), (1.0, 13.0, 0.1), (4.0, 22.0, 0.1)]  # 3 DN/s exactly
    dc = fig.dark_current(levels, _k(1.5, 0.0))
    assert dc.value == pytest.approx(2.0, rel=1e-12)
    assert fig.dark_current(levels[:1], _k(1.5, 0.0)) is None  # one exposure time: no slope


def test_dark_noise_in_electrons_saturation_and_dynamic_range():
    gain = _k(2.0, 0.02)
    dv = fig.DarkVariances(np.array([4.0] * 4), np.array([4.0] * 4), QUANTIZATION_VAR_DN2, 100)
    sy2 = fig.temporal_dark_variance_mean(dv, [Estimate.positive(2.0, 0.01, "t", 8)] * 4)
    assert sy2.value == 4.0 and sy2.se == pytest.approx(2 * 2.0 * 0.01)
    sd = fig.temporal_dark_noise_e(sy2, dv, gain)
    assert sd.value == pytest.approx(math.sqrt(4.0 - 1 / 12) / 2.0, rel=1e-14)
    ptcs = [PTCFit(gain, np.zeros(1), np.zeros(1), np.ones(1, bool), 2000.0, True)] * 4
    sat = fig.saturation_capacity(ptcs, gain)
    assert sat.value == pytest.approx(1000.0) and sat.se == pytest.approx(10.0)
    dr = fig.dynamic_range(sy2, sat, gain)
    e_min = 0.5 + math.sqrt(0.25 + 4.0 / 4.0)  # SNR = 1 at μ_e.min
    assert dr.value == pytest.approx(20 * math.log10(1000.0 / e_min), rel=1e-14)


def test_sigma_from_a_negative_variance_is_zero_with_a_finite_interval():
    s = fig.sigma_from_variance(-0.5, 0.25, "t", 16)
    assert s.value == 0.0 and s.se == pytest.approx(0.5) and s.ci[0] == 0.0 and s.ci[1] > 0
    assert fig.sigma_from_variance(4.0, 0.4, "t", 16).se == pytest.approx(0.1)
