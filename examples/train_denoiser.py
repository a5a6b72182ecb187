"""Train a small raw-domain U-Net denoiser on noisesim pairs (CPU, a few minutes at most).

1. Generate 480 training + 48 held-out pairs (packed 4 × 32 × 32 RGGB patches, SonyA7S2 card,
   ISO 800–3200, exposure ratio 100–300) from the built-in dead-leaves source.
2. Train a two-level U-Net for a few hundred Adam steps on the ratio-amplified short exposure
   (as in SID/ELD) with an L1 loss, reading through :class:`noisesim.torch_data.PairedRawDataset`.
3. Print the PSNR on the held-out pairs before (the amplified noisy input itself) and after training.

Run: ``python examples/train_denoiser.py`` (needs ``pip install torch==2.13.0``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from noisesim.dataset import generate_dataset
from noisesim.torch_data import PairedRawDataset


class UNet(nn.Module):
    """Two-level U-Net on packed raw (4 channels), predicting the residual."""

    def __init__(self, ch: int = 4, width: int = 24):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2))

        self.enc1, self.enc2 = block(ch, width), block(width, 2 * width)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec1 = block(2 * width, width)
        self.out = nn.Conv2d(width, ch, 1)
        nn.init.zeros_(self.out.weight)  # start as the identity: training can only move away from the input
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        d1 = self.dec1(torch.cat([self.up(e2), e1], dim=1))
        return x + self.out(d1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.clamp(0, 1) - b) ** 2).item()
    return 10 * math.log10(1.0 / mse)


def evaluate(model, loader) -> tuple[float, float]:
    """Mean PSNR [dB] of the input (amplified noisy) and of the model output, against clean."""
    p_in, p_out, n = 0.0, 0.0, 0
    model.eval()
    with torch.no_grad():
        for b in loader:
            x, y = b["noisy"].clamp(0, 1), b["clean"]
            out = model(x)
            for k in range(len(x)):
                p_in += psnr(x[k], y[k])
                p_out += psnr(out[k], y[k])
                n += 1
    model.train()
    return p_in / n, p_out / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=480, help="training pairs (48 more, or a tenth, are held out)")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="noisesim-train-"))
    common = dict(card="SonyA7S2", source="builtin", patch=64, iso=(800, 3200), ratio=(100, 300), progress=False, force=True)
    t0 = time.time()
    n_test = max(16, min(48, args.pairs // 10))
    train_path = generate_dataset(out_dir / "train.h5", pairs=args.pairs, seed=1, **common)
    test_path = generate_dataset(out_dir / "test.h5", pairs=n_test, seed=2, **common)
    print(f"generated {args.pairs} + {n_test} pairs in {time.time() - t0:.1f} s")

    train = PairedRawDataset(train_path, amplify=True)
    test = PairedRawDataset(test_path, amplify=True)
    train_loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, num_workers=0, drop_last=True)
    test_loader = torch.utils.data.DataLoader(test, batch_size=16)

    model = UNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    before_in, before_out = evaluate(model, test_loader)
    print(f"held-out PSNR before training: {before_out:.2f} dB (the untrained model is the identity on the noisy input)")

    step, t0 = 0, time.time()
    while step < args.steps:
        for b in train_loader:
            loss = torch.mean(torch.abs(model(b["noisy"].clamp(0, 1)) - b["clean"]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0:
                print(f"step {step:4d}  L1 {loss.item():.4f}  ({time.time() - t0:.0f} s)")
            if step >= args.steps:
                break

    after_in, after_out = evaluate(model, test_loader)
    print(f"held-out PSNR after {args.steps} steps: {after_out:.2f} dB (noisy input {after_in:.2f} dB, "
          f"gain {after_out - before_in:+.2f} dB)")
    if after_out <= before_in:
        raise SystemExit("training did not improve on the noisy input")


if __name__ == "__main__":
    main()
