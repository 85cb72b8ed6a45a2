"""The bicubic floor: MATLAB bicubic upsampling of the LR input (``ecdp.degradation.upsample``)."""
from __future__ import annotations

import torch

from ecdp.degradation import upsample


class Bicubic:
    """SuperResolver with no parameters. ``nfe`` is 0: no network is evaluated."""

    name = "bicubic"
    stochastic = False

    def __init__(self, *, scale: int, **_):
        self.scale = scale
        self.provenance = {"weights": "none", "budget": "none", "params": 0}

    def super_resolve(self, lr: torch.Tensor, *, generator: torch.Generator | None = None,
                      image: str = "batch"):
        """lr: (B, 3, h, w) in [0, 1] -> (sr (B, 3, h*s, w*s) in [0, 1], nfe)."""
        return upsample(lr, self.scale).clamp(0, 1), 0
