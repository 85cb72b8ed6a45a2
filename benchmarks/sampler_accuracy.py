"""Sampler accuracy vs NFE on a trained model: fixed-step solvers against a tight dopri5 solution.

For each test LR (centre crop), one prior draw is integrated by a reference dopri5 at
rtol = atol = 1e-6 and by euler / heun / rk4 at several NFE budgets and dopri5 at the released
1e-3; printed: RMS error to the reference (in [0, 1] pixel units), PSNR of the solution against the
reference, and NFE, side by side in one run.

    python benchmarks/sampler_accuracy.py --checkpoint results/sample-photos/x4/models/ecdp/model.pt
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ecdp.data.io import read_image
from ecdp.data.pairs import load_pairs
from ecdp.evaluate import to_tensor
from ecdp.model import ECDP
from ecdp.rng import image_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--pairs", default="results/sample-photos/x4/lr/test.json")
    parser.add_argument("--crop", type=int, default=32, help="LR centre crop (pixels)")
    parser.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = ECDP.load(args.checkpoint, device=args.device)
    base, pairs = load_pairs(args.pairs)
    lrs = []
    for pair in pairs["pairs"]:
        lr = to_tensor(read_image(base / pair["lr"]), args.device)
        h, w = lr.shape[-2:]
        c = min(args.crop, h, w)
        lrs.append((pair["name"], lr[..., (h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]))
    runs = [("dopri5", None, 1e-3)] + [(m, n, None) for m in ("euler", "heun", "rk4")
                                        for n in args.nfe if n >= {"euler": 1, "heun": 2, "rk4": 4}[m]]
    totals = {r: [0.0, 0, 0.0] for r in runs}
    ref_nfe = 0
    for name, lr in lrs:
        mu = model.condition(lr)[0]
        x1 = model.sde.prior_sample(mu, image_generator(0, name, device=args.device))
        ref, n = model.sample(lr, x1=x1, method="dopri5", rtol=1e-6, atol=1e-6, nfe=None)
        ref_nfe += n
        for run in runs:
            method, nfe, tol = run
            start = time.perf_counter()
            x, used = model.sample(lr, x1=x1, method=method, nfe=nfe,
                                   **({"rtol": tol, "atol": tol} if tol else {}))
            totals[run][0] += float((x - ref).pow(2).mean())
            totals[run][1] += used
            totals[run][2] += time.perf_counter() - start
    k = len(lrs)
    print(f"{Path(args.checkpoint)}: {k} test crops of {args.crop}px LR, {args.device}; reference "
          f"dopri5 1e-6 used {ref_nfe / k:.0f} NFE per image")
    print("| solver | NFE / image | RMS error | PSNR vs reference (dB) | s / image |")
    print("|---|---:|---:|---:|---:|")
    for (method, nfe, tol), (mse, used, sec) in totals.items():
        rms = (mse / k) ** 0.5
        label = f"{method} rtol=atol={tol:g}" if tol else method
        psnr = float("inf") if rms == 0 else -20 * torch.log10(torch.tensor(rms)).item()
        print(f"| {label} | {used / k:.0f} | {rms:.2e} | {psnr:.1f} | {sec / k:.2f} |")


if __name__ == "__main__":
    main()
