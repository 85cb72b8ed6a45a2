"""The RRDB row: ESRGAN's RRDBNet trained with L1 (``ecdp.stages.train_rrdbnet``), the same
network whose trunk pre-trains ECDP's encoder (train once, use twice)."""
from __future__ import annotations

import os

import torch

from ecdp.stages import load_rrdbnet


class RRDB:
    name = "rrdb"
    stochastic = False

    def __init__(self, *, checkpoint: str | os.PathLike, device: str = "cpu",
                 weights: str = "ema", **_):
        self.net = load_rrdbnet(checkpoint, weights=weights).to(device).eval()
        self.scale = self.net.scale
        self.provenance = self.net.provenance

    def super_resolve(self, lr: torch.Tensor, *, generator: torch.Generator | None = None,
                      image: str = "batch"):
        return self.net(lr).clamp(0, 1), 1
