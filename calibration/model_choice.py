"""Which noise model fits a sensor best: parametric, parametric with per-pixel σ, or dark-frame noise.

On held-out dark frames of one ISO, each model's synthetic darks are compared with the real ones by the
fidelity figures of :mod:`noisesim.calibration.fidelity` (KL, KS, mean and variance per channel) and by
the **noise power spectrum** (NPS): the 1-D spectra of row and column means (banding) and the 2-D spectrum
of each packed channel (spatial correlation of the read noise). A parametric model draws white read noise,
so a sensor whose read noise is spatially correlated shows a sloped 2-D NPS that only dark-frame noise
reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from noisesim.cfa import CFA

from .fidelity import ChannelFidelity, compare_channel, params_for

__all__ = ["ModelScore", "ModelComparison", "noise_power_spectra", "nps_distance", "compare_models",
           "compare_models_on_capture"]

MODELS = ("parametric", "per-pixel", "dark-frame")


def noise_power_spectra(frames: list[np.ndarray], cfa: CFA) -> dict[str, np.ndarray]:
    """Noise power spectra of dark frames, averaged over frames.

    Parameters
    ----------
    frames : list of (H, W) arrays
        Dark frames in DN (same shape).
    cfa : CFA
        Their pattern; the 2-D spectrum is taken per packed channel and averaged over channels.

    Returns
    -------
    dict
        ``row`` (H//2 + 1,) power of the row means' fluctuation, ``column`` (W//2 + 1,) likewise for
        column means, ``2d`` (h, w//2 + 1) the 2-D power spectrum of the packed channels (DC removed),
        all in DN² per frequency bin (``|FFT|² / n``).
    """
    rows, cols, two_d = [], [], []
    for f in frames:
        f = np.asarray(f, np.float64)
        f = f - f.mean()
        r = f.mean(axis=1)
        c = f.mean(axis=0)
        rows.append(np.abs(np.fft.rfft(r)) ** 2 / r.size)
        cols.append(np.abs(np.fft.rfft(c)) ** 2 / c.size)
        for plane in cfa.pack(f):
            plane = plane - plane.mean()
            two_d.append(np.abs(np.fft.rfft2(plane)) ** 2 / plane.size)
    return {"row": np.mean(rows, axis=0), "column": np.mean(cols, axis=0), "2d": np.mean(two_d, axis=0)}


def nps_distance(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray], *, bins: int = 8) -> dict[str, float]:
    """Mean absolute log ratio of two spectra over coarse frequency bins (0: identical; 0.1 ≈ 10 %).

    Bins average the spectrum first so that the figure measures shape, not the χ² scatter of single bins.
    For the 2-D spectrum the bins are radial.

    Parameters
    ----------
    real, synthetic : dict of str to ndarray
        Spectra by name, same keys and shapes.
    bins : int
        Coarse frequency bins.

    Returns
    -------
    dict of str to float
        Distance per spectrum (unit 1).
    """
    out = {}
    for name in ("row", "column"):
        a, b = real[name][1:], synthetic[name][1:]
        edges = np.linspace(0, a.size, min(bins, a.size) + 1).astype(int)
        ra = np.array([a[i:j].mean() for i, j in zip(edges[:-1], edges[1:]) if j > i])
        rb = np.array([b[i:j].mean() for i, j in zip(edges[:-1], edges[1:]) if j > i])
        out[name] = float(np.mean(np.abs(np.log(rb / ra))))
    a, b = real["2d"], synthetic["2d"]
    fy = np.fft.fftfreq(a.shape[0])[:, None]
    fx = np.fft.rfftfreq(2 * (a.shape[1] - 1))[None, :]
    radius = np.hypot(fy, fx)
    edges = np.linspace(0, radius.max() + 1e-12, bins + 1)
    ratios = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (radius > lo) & (radius <= hi)
        sel[0, 0] = False
        if sel.any():
            ratios.append(np.log(b[sel].mean() / a[sel].mean()))
    out["2d"] = float(np.mean(np.abs(ratios)))
    return out


@dataclass
class ModelScore:
    """One model's agreement with the held-out darks of one ISO.

    Attributes
    ----------
    model : str
        Model name.
    channels : list of ChannelFidelity
        Per packed channel.
    nps : dict of str to float
        Noise-power-spectrum distances by spectrum (rows, columns, 2-D).
    """

    model: str
    channels: list[ChannelFidelity]
    nps: dict[str, float]

    @property
    def kl_symmetric(self) -> float:
        """Mean symmetric KL over channels (nats)."""
        return float(np.mean([c.kl_symmetric for c in self.channels]))

    @property
    def score(self) -> float:
        """Symmetric KL plus the NPS distances: lower is better."""
        return self.kl_symmetric + sum(self.nps.values())


@dataclass
class ModelComparison:
    """All models compared at one ISO, best first.

    Attributes
    ----------
    iso : float
    scores : list of ModelScore
        Best first.
    """

    iso: float
    scores: list[ModelScore] = field(default_factory=list)

    @property
    def best(self) -> str:
        """The read model with the lowest score on the held-out darks (the first of ``scores``)."""
        return self.scores[0].model

    def format(self) -> str:
        """The comparison as a small text table: symmetric KL and NPS distances per model, and the one to use.

        Returns
        -------
        str
        """
        lines = [f"ISO {self.iso:g}: model comparison on held-out darks (lower is better)",
                 f"  {'model':<11} {'sym KL':>8} {'NPS row':>8} {'NPS col':>8} {'NPS 2-D':>8} {'score':>8}"]
        for s in self.scores:
            lines.append(f"  {s.model:<11} {s.kl_symmetric:8.4f} {s.nps['row']:8.3f} {s.nps['column']:8.3f} "
                         f"{s.nps['2d']:8.3f} {s.score:8.3f}")
        lines.append(f"  use: {self.best}")
        return "\n".join(lines)


def compare_models(card, darks: list[np.ndarray], iso: float, *, exposure_s: float = 0.0, bank=None, rng=0,
                   read_model: str = "tukey") -> ModelComparison:
    """Compare the noise models a card (and a dark-frame bank) offers on held-out dark frames of one ISO.

    Parameters
    ----------
    card : Card
        Must table ``iso``.
    darks : list of (H, W) arrays
        Held-out dark frames in DN (not used to build ``bank``).
    iso, exposure_s : float
        Of the darks.
    bank : DarkFrameBank or path, optional
        Adds the dark-frame model.
    rng : seed
        For the synthetic frames.
    read_model : {"tukey", "gaussian"}
        Read-noise shape of the parametric models.

    Returns
    -------
    ModelComparison
        The per-pixel model appears only when the card's maps carry ``read_sigma_scale``.
    """
    from noisesim.noise import simulate
    from noisesim.params import NoiseComponents

    if not darks:
        raise ValueError("compare_models needs at least one held-out dark frame")
    params = params_for(card, iso, exposure_s, read_model)
    if params is None:
        raise ValueError(f"card {card.name!r} has no ISO {iso:g} in its table")
    cfa = card.sensor.cfa
    shape = darks[0].shape
    maps = card.maps if card.maps is not None and card.maps.shape == tuple(shape) else None
    models = [("parametric", dict(components=NoiseComponents(), maps=maps))]
    if maps is not None and maps.read_sigma_scale is not None:
        models.append(("per-pixel", dict(components=NoiseComponents(per_pixel_read=True), maps=maps)))
    if bank is not None:
        models.append(("dark-frame", dict(noise="dark-frame", bank=bank, maps=maps)))
    real = [np.asarray(d, np.float64) for d in darks]
    real_nps = noise_power_spectra(real, cfa)
    real_packed = [cfa.pack(d) for d in real]
    comparison = ModelComparison(float(iso))
    zero = np.zeros(shape, np.float32)
    for name, kw in models:
        syn = [np.asarray(simulate(zero, params, card.sensor, output_unit="dn", rng=rng, frame_index=i, **kw), np.float64)
               for i in range(len(real))]
        syn_packed = [cfa.pack(s) for s in syn]
        channels = [compare_channel(iso, ch, name, [p[c] for p in real_packed], [p[c] for p in syn_packed])
                    for c, ch in enumerate(cfa.channel_names)]
        comparison.scores.append(ModelScore(name, channels, nps_distance(real_nps, noise_power_spectra(syn, cfa))))
    comparison.scores.sort(key=lambda s: s.score)
    return comparison


def compare_models_on_capture(card, capture, *, bank=None, max_frames_per_iso: int = 4, rng=0) -> list[ModelComparison]:
    """:func:`compare_models` for every ISO of a capture that the card tables.

    Dark frames that are in ``bank`` (same SHA-256) are not held out and are skipped: a model scored on the
    frames it samples from would look perfect.

    Parameters
    ----------
    card : Card
    capture : str, Path or Capture
        A capture folder or manifest (see :func:`noisesim.calibration.capture.scan_capture`).
    bank : DarkFrameBank or path, optional
    max_frames_per_iso : int
        Held-out darks compared per ISO.
    rng : seed

    Returns
    -------
    list of ModelComparison, ascending ISO
    """
    import hashlib
    import logging

    from noisesim.darkbank import DarkFrameBank

    from .capture import Capture, scan_capture

    cap = capture if isinstance(capture, Capture) else scan_capture(capture)
    bank = None if bank is None else (bank if isinstance(bank, DarkFrameBank) else DarkFrameBank(bank))
    in_bank = set() if bank is None else {r["sha256"].decode() for r in bank.index}
    out = []
    for iso in sorted({f.iso for f in cap.by_kind("dark")}):
        if card.iso_entry(iso) is None:
            continue
        frames = [f for f in cap.by_kind("dark") if f.iso == iso]
        t_min = min(f.exposure_s for f in frames)
        darks, skipped = [], 0
        for f in frames:
            if f.exposure_s != t_min or len(darks) >= max_frames_per_iso:
                continue
            raw = f.load()
            if hashlib.sha256(np.asarray(raw, np.uint16).tobytes()).hexdigest() in in_bank:
                skipped += 1
                continue
            darks.append(raw)
        if skipped:
            logging.getLogger(__name__).warning("ISO %g: %d dark frame(s) are in the bank and were not used", iso, skipped)
        if darks:
            out.append(compare_models(card, darks, iso, exposure_s=t_min, bank=bank, rng=rng))
    return out
