"""The calibration report and command line (issue 7 item 10)."""

import numpy as np
import pytest

from noisesim.calibration.pipeline import calibrate
from noisesim.calibration.synthetic import SyntheticSpec, synthetic_frames, write_capture_dng
from noisesim.params import NoiseParams, Sensor

SENSOR = Sensor("RGGB", 14, (512,) * 4, 16383)
P2 = {800: NoiseParams(0.75, "tukey", 2.5, 0.0, 1.6, 0.0, 0.0), 1600: NoiseParams(1.5, "tukey", 4.0, 0.0, 2.6, 0.0, 0.0)}


@pytest.fixture(scope="module")
def two_iso():
    """Two ISOs, no row noise (true row σ = 0: a symmetric interval would reach below 0)."""
    return calibrate(synthetic_frames(P2, SENSOR, (64, 64), SyntheticSpec(n_darks=9), rng=1), "A B")


def test_two_iso_joint_fit_says_it_needs_three(two_iso):
    """Before: [nan, nan] intervals and a zero residual, without a word."""
    assert any("needs ≥ 3 ISOs" in w for w in two_iso.warnings)
    for seg in two_iso.joint.segments:
        for lf in seg["fits"].values():
            assert np.all(np.isfinite(lf.slope.ci)) and np.all(np.isfinite(lf.intercept.ci))


def test_sigma_intervals_never_below_zero(two_iso):
    for r in two_iso.iso_results:
        for e in [r.read_sigma_dn, r.row_sigma_dn, r.col_sigma_dn, r.pixel_sigma_dn, r.tukey_scale_dn,
                  *r.dsnu_dn, *(r.prnu or []), *r.dark_temporal_sigma_dn, *r.read_sigma_per_channel]:
            assert 0.0 <= e.ci[0] <= e.value <= e.ci[1], e
        assert r.row_sigma_dn.ci[0] >= 0.0
    for e in two_iso.card.iso_table:
        assert e.ci["row_sigma_dn"][0] >= 0.0


@pytest.mark.filterwarnings("error:Attempting to set identical:UserWarning")  # a σ equal at every ISO once made a flat axis
def test_report_plots_have_a_legend_entry_for_every_line_and_no_overlapping_labels(two_iso, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from noisesim.calibration import report

    figs = []
    real_png = report._png

    def keep(fig):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            lines = [ln for ln in ax.get_lines() if ln.get_xdata() is not None and len(ln.get_xdata())]
            leg = ax.get_legend()
            if lines:
                assert leg is not None, f"axes {ax.get_title()!r} has lines but no legend"
                assert len(leg.get_texts()) >= len(lines), f"axes {ax.get_title()!r}: {len(lines)} lines, {len(leg.get_texts())} entries"
        boxes = []
        for ax in fig.axes:
            for t in (ax.title, ax.xaxis.label, ax.yaxis.label):
                if t.get_text():
                    boxes.append((t.get_text(), t.get_window_extent(renderer)))
        for i, (ta, a) in enumerate(boxes):
            for tb, b in boxes[i + 1:]:
                assert not a.overlaps(b), f"labels overlap: {ta!r} and {tb!r}"
        figs.append(fig)
        return real_png(fig)

    monkeypatch.setattr(report, "_png", keep)
    report.write_report(two_iso, tmp_path / "r.html")
    assert len(figs) >= 4
    html = (tmp_path / "r.html").read_text()
    assert "needs ≥ 3 ISOs" in html and "[nan" not in html


def test_camera_from_exif_and_progress_over_every_frame(tmp_path):
    frames = synthetic_frames({1600: P2[1600]}, SENSOR, (64, 64), SyntheticSpec(n_darks=4, flat_levels=(0.1, 0.2, 0.4)), rng=2)
    write_capture_dng(frames, tmp_path, make="NIKON CORPORATION", model="NIKON D850")
    seen = []

    def progress(it):
        for x in it:
            seen.append(x)
            yield x

    res = calibrate(tmp_path, fidelity=False, progress=progress)
    assert (res.card.camera.make, res.card.camera.model) == ("Nikon", "D850")
    assert len([s for s in seen if str(s).endswith(".dng")]) >= len(frames)  # scanning names every file


def test_cli_camera_optional_and_every_option_has_help(tmp_path, capsys):
    from noisesim.cli import build_parser, main

    frames = synthetic_frames({1600: P2[1600]}, SENSOR, (64, 64), SyntheticSpec(n_darks=4, flat_levels=(0.1, 0.2, 0.4)), rng=3)
    write_capture_dng(frames, tmp_path / "cap", make="Google", model="Pixel 7")
    rc = main(["calibrate", str(tmp_path / "cap"), "--output", str(tmp_path / "c.toml"), "--no-fidelity"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "Google Pixel 7" in out.out
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("calibrate", "validate"):
        for action in sub.choices[name]._actions:
            assert action.help, f"noisesim {name} {action.option_strings or action.dest}: no help text"


def test_positive_interval_of_a_figure_near_zero():
    from noisesim.calibration.estimators import Estimate

    e = Estimate.positive(1e-6, 0.5, "x")  # before: OverflowError from exp(q·se/value)
    assert e.ci[0] == 0.0 and e.ci[1] == pytest.approx(1e-6 + 1.959964 * 0.5)
    e = Estimate.positive(2.0, 0.1, "x")
    assert e.ci[0] > 0 and e.ci[0] * e.ci[1] == pytest.approx(4.0)
