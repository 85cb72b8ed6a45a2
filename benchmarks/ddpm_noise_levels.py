"""Where a trained DDPM baseline (SRDiff or SR3) goes wrong: its one-step prediction at each noise
level, on the test pairs.

For each step t: x_t = l x0 + sqrt(1 - l^2) eps with l = sqrt(alpha_bar_t) and x0 the model's own
clean target (SRDiff: the scaled residual; SR3: HR in [-1, 1]); the denoiser's eps_hat gives
x0_hat = (x_t - sqrt(1 - l^2) eps_hat) / l. Printed per level, averaged over the images: the rms
and the mean (a DC bias) of eps_hat - eps, and the PSNR and mean shift of x0_hat (clipped, mapped
to the image). An eps error e becomes an x0 error e sqrt(1 - l^2) / l: at the top of the chain a
bias of a few 1e-3 in eps is a visible brightness shift in x0_hat, and the ancestral sampler keeps
the low frequencies it settles there. Then one full sample per image: its PSNR, LR-PSNR and mean
shift, against bicubic's.

    python benchmarks/ddpm_noise_levels.py results/sample-photos/x4/models/sr3/model.pt \\
        [--pairs results/sample-photos/x4/lr/test.json] [--steps 0 50 ...] [--sample-steps N]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from baselines.train import LOADERS
from ecdp.checkpoint import load_checkpoint
from ecdp.data.io import read_image
from ecdp.degradation import upsample
from ecdp.evaluate import to_tensor
from ecdp.metrics import PAPER, lr_psnr, psnr


def probe(model, pairs_manifest: str | Path, steps: list[int], seed: int = 0,
          sample_steps: int | None = None):
    """Per probed step: mean over the images of (level, eps err rms, eps bias, x0 PSNR, x0 shift);
    and of one sample per image: (PSNR, LR-PSNR, shift, bicubic PSNR, bicubic LR-PSNR); NFE."""
    pairs_path = Path(pairs_manifest)
    base = pairs_path.parent.parent
    pairs = json.loads(pairs_path.read_text())["pairs"]
    g = torch.Generator().manual_seed(seed)
    rows, samples, nfe = {t: [] for t in steps}, [], 0
    with torch.no_grad():
        for pair in pairs:
            lr, hr = to_tensor(read_image(base / pair["lr"])), to_tensor(read_image(base / pair["hr"]))
            x0, eps_fn = model.target(lr, hr), model.eps_fn(lr)
            for t in steps:
                tt = torch.tensor([t])
                eps = torch.randn(x0.shape, generator=g)
                x_t = model.schedule.q_sample(x0, tt, eps)
                eps_hat = eps_fn(x_t, tt)
                x0_hat = model.schedule.predict_x0(x_t, tt, eps_hat).clamp(-1, 1)
                image_err = model.to_image(lr, x0_hat) - model.to_image(lr, x0)
                rows[t].append((float(model.schedule.noise_level(tt, x0)),
                                float((eps_hat - eps).pow(2).mean().sqrt()),
                                float((eps_hat - eps).mean()),
                                float(-10 * torch.log10(image_err.pow(2).mean())),
                                float(image_err.mean())))
            sr, nfe = model.sample(lr, generator=g, steps=sample_steps)
            sr = sr.clamp(0, 1)
            bic = upsample(lr, model.scale).clamp(0, 1)
            samples.append((float(psnr(sr, hr, protocol=PAPER)),
                            float(lr_psnr(sr, lr, scale=model.scale, protocol=PAPER)),
                            float((sr - hr).mean()), float(psnr(bic, hr, protocol=PAPER)),
                            float(lr_psnr(bic, lr, scale=model.scale, protocol=PAPER))))
    return ({t: torch.tensor(r).mean(0).tolist() for t, r in rows.items()},
            torch.tensor(samples).mean(0).tolist(), nfe, len(pairs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--pairs", default="results/sample-photos/x4/lr/test.json")
    ap.add_argument("--steps", type=int, nargs="+", default=None,
                    help="steps to probe (default: 8 evenly spaced, first and last included)")
    ap.add_argument("--sample-steps", type=int, default=None, help="respaced sampler steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    kind = load_checkpoint(args.checkpoint)["meta"]["kind"]
    model = LOADERS[kind](args.checkpoint).eval()
    T = model.schedule.steps
    steps = args.steps or sorted({round(i * (T - 1) / 7) for i in range(8)})
    rows, s, nfe, n = probe(model, args.pairs, steps, args.seed, args.sample_steps)
    print(f"{kind} {args.checkpoint}: {n} images, T = {T}")
    print(f"{'step':>5} {'level':>7} {'eps err rms':>11} {'eps bias':>9} {'x0 PSNR':>8} "
          f"{'x0 shift':>9}")
    for t, m in rows.items():
        print(f"{t:>5} {m[0]:>7.4f} {m[1]:>11.4f} {m[2]:>+9.4f} {m[3]:>8.2f} {m[4]:>+9.4f}")
    print(f"sample ({nfe} steps): PSNR {s[0]:.2f}, LR-PSNR {s[1]:.2f}, mean shift {s[2]:+.4f}; "
          f"bicubic: PSNR {s[3]:.2f}, LR-PSNR {s[4]:.2f}; LR-PSNR margin {s[1] - s[4]:+.2f} dB")


if __name__ == "__main__":
    main()
