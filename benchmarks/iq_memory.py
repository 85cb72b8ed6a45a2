"""Peak memory of one L_IQ step: ECDP's adjoint (odeint_adjoint) vs direct backprop through the
solver, or (``--model srdiff``) SRDiff's ancestral sampler with per-step gradient checkpointing vs
plain backprop through all steps (the "++" fine-tuning of Table 7).

Each configuration runs in a fresh subprocess. Peak memory is the step's high-water mark above
the memory in use just before it: on CUDA ``max_memory_allocated``; on CPU the resident set size
sampled every millisecond by a thread (after returning freed heap to the OS with malloc_trim),
so it counts everything the step itself needs: solver states, activations, VGG19 passes. Prints one
table and the ratios the design promises: adjoint flat in NFE (within 1.3x from 8 to 64 NFE),
direct growing with NFE.

    python benchmarks/iq_memory.py [--model ecdp|srdiff] [--nfe 8 16 32 64] [--patch 64]
                                   [--batch 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import threading

import torch

SMALL = {
    "encoder": {"features": 32, "growth": 16, "blocks": 4, "taps": [1, 3]},
    "unet": {"channels": [32, 64, 64], "blocks": [1, 1, 1], "time_channels": 32, "time_scale": 300},
    "sde": {"beta_min": 0.1, "beta_max": 20.0, "sigma": 0.2},
    "parametrization": "hybrid", "k": 1.0,
}


class RSSPeak:
    """Peak resident set size, sampled by a background thread."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.before = self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def peak_of(step, device: str) -> float:
    """Peak memory (bytes) of ``step()`` above what was in use before it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with RSSPeak() as rss:
        step()
    return rss.peak - rss.before


def measure_srdiff(steps: int, checkpoint: bool, patch: int, batch: int, device: str) -> dict:
    from baselines.srdiff import SRDiff
    from ecdp.features import VGGFeatures
    from ecdp.nets import RRDBNet

    torch.manual_seed(0)
    rrdb = RRDBNet(scale=4, features=32, growth=16, blocks=5, trunk_conv=True)
    model = SRDiff(rrdb=rrdb, taps=(2, 5), dim=32, mults=(1, 2, 2)).to(device)
    features = VGGFeatures(None).to(device)
    hr = torch.rand(batch, 3, patch, patch, device=device)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    noise = torch.randn_like(hr)

    def step():
        sr, _ = model.sample(lr, x_T=noise, generator=torch.Generator().manual_seed(0),
                             steps=steps, checkpoint=checkpoint)
        torch.nn.functional.l1_loss(features(sr), features(hr)).backward()

    peak = peak_of(step, device)
    grad = sum(float(p.grad.abs().sum()) for p in model.unet.parameters() if p.grad is not None)
    return {"nfe": steps, "adjoint": checkpoint, "peak_mb": peak / 2**20, "grad_l1": grad}


def measure(nfe: int, adjoint: bool, patch: int, batch: int, device: str) -> dict:
    from ecdp.features import VGGFeatures
    from ecdp.losses import image_quality_loss
    from ecdp.model import ECDP

    from ecdp.samplers import make_solver

    torch.manual_seed(0)
    model = ECDP.from_config(SMALL, scale=4, sigma=0.2).to(device)
    features = VGGFeatures(None).to(device)
    hr = torch.rand(batch, 3, patch, patch, device=device)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    x1 = model.condition(lr)[0].detach() + 0.2 * torch.randn_like(hr)
    solver = make_solver({"solver": "euler", "nfe": nfe, "adjoint": adjoint})

    def step():  # L_IQ through the adjoint, or plain backprop through every solver step
        loss, _ = image_quality_loss(model, features, lr, hr, x1, solver=solver)
        loss.backward()

    peak = peak_of(step, device)
    grad = sum(float(p.grad.abs().sum()) for p in model.unet.parameters() if p.grad is not None)
    return {"nfe": nfe, "adjoint": adjoint, "peak_mb": peak / 2**20, "grad_l1": grad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["ecdp", "srdiff"], default="ecdp")
    parser.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        nfe, adjoint = args.one.split(",")
        fn = measure if args.model == "ecdp" else measure_srdiff
        print(json.dumps(fn(int(nfe), adjoint == "1", args.patch, args.batch, args.device)))
        return
    rows = {}
    for nfe in args.nfe:
        for adjoint in (True, False):
            out = subprocess.run([sys.executable, __file__, "--model", args.model,
                                  "--one", f"{nfe},{int(adjoint)}",
                                  "--patch", str(args.patch), "--batch", str(args.batch),
                                  "--device", args.device], capture_output=True, text=True,
                                 check=True)
            rows[nfe, adjoint] = json.loads(out.stdout.strip().splitlines()[-1])
    saving = "adjoint" if args.model == "ecdp" else "checkpointed"
    solver = "euler, fixed NFE" if args.model == "ecdp" else "SRDiff ancestral, respaced steps"
    print(f"{args.model} L_IQ step peak memory, {args.device}, batch {args.batch} x {args.patch}px "
          f"({solver}; random VGG19 weights)")
    print(f"| NFE | {saving} MB | direct MB | direct / {saving} |")
    print("|---:|---:|---:|---:|")
    for nfe in args.nfe:
        a, d = rows[nfe, True]["peak_mb"], rows[nfe, False]["peak_mb"]
        print(f"| {nfe} | {a:.0f} | {d:.0f} | {d / max(a, 1e-9):.2f} |")
    lo, hi = args.nfe[0], args.nfe[-1]
    flat = rows[hi, True]["peak_mb"] / rows[lo, True]["peak_mb"]
    growth = rows[hi, False]["peak_mb"] / rows[lo, False]["peak_mb"]
    target = (" (target <= 1.3x)" if args.model == "ecdp"
              else " (one x_t kept per step: grows slowly)")
    print(f"{saving} NFE {hi} / NFE {lo}: {flat:.2f}x{target}")
    print(f"direct  NFE {hi} / NFE {lo}: {growth:.2f}x")
    agree = all(rows[n, True]["grad_l1"] > 0 for n in args.nfe)
    print(f"non-zero U-Net gradients in every {saving} run: {agree}")


if __name__ == "__main__":
    main()
