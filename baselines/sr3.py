"""SR3 (Saharia et al. 2021) as the ECDP paper trained it (docs/method.md, "Baselines"), following
Janspiry's release (Image-Super-Resolution-via-Iterative-Refinement, commit 01d27a7).

The bicubic-upsampled LR is concatenated before x_t, [bicubic, x_t] (6 input channels); the
denoiser is conditioned on the continuous noise level sqrt(alpha_bar) (drawn between two
neighbouring steps in training), embedded as WaveGrad's sinusoids of the raw level followed by
Linear(C, 4C)-Swish-Linear(4C, C) with C = 64; linear betas 1e-6 to 1e-2 over T = 2000 steps for
training and sampling (``sample(steps=N)`` respaces the chain for speed); eps-prediction with an L1
loss; U-Net inner 64, multipliers [1, 2, 4, 8, 8], two blocks per level, self-attention at 16x16
and in the middle, dropout 0.2, GroupNorm with 32 groups, orthogonal initialisation (biases
zero). Images live in [-1, 1] inside.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ecdp.checkpoint import load_checkpoint, restore
from ecdp.degradation import upsample
from ecdp.nets import ScoreUNet

from .ddpm import DDPMSuperResolver, Schedule, linear_betas

__all__ = ["SR3", "PAPER_NET", "NoiseLevelEmbedding", "orthogonal_init"]

# 16 -> 128 configuration of the SR3 paper / Janspiry's release: 97.8M parameters.
PAPER_NET = {"channels": [64, 128, 256, 512, 512], "blocks": [2, 2, 2, 2, 2], "time_channels": 64,
             "dropout": 0.2, "attention_levels": [3], "mid_attention": True, "norm_groups": 32}


class NoiseLevelEmbedding(nn.Module):
    """The release's embedding of the noise level l = sqrt(alpha_bar): sinusoids of l itself at
    frequencies 1e4^(-k / (C/2)), k < C/2 (WaveGrad's), then Linear-Swish-Linear: (B,) -> (B, C)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = self.out_channels = channels
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.SiLU(),
                                 nn.Linear(4 * channels, channels))

    def forward(self, level):
        half = self.channels // 2
        freqs = torch.exp(-math.log(1e4) * torch.arange(half, dtype=level.dtype,
                                                        device=level.device) / half)
        args = level[:, None] * freqs[None]
        return self.mlp(torch.cat([args.sin(), args.cos()], dim=1))


def orthogonal_init(module: nn.Module) -> nn.Module:
    """The release's training init: orthogonal weights (gain 1) for every conv and linear layer,
    zero biases; norms keep (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, gain=1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class SR3(DDPMSuperResolver, nn.Module):
    name = "sr3"

    def __init__(self, *, scale: int, net: dict, steps: int = 2000, beta_start: float = 1e-6,
                 beta_end: float = 1e-2):
        super().__init__()
        self.scale = scale
        self.unet = orthogonal_init(ScoreUNet(
            in_channels=6, out_channels=3, cond_channels=0, channels=tuple(net["channels"]),
            blocks=tuple(net["blocks"]), dropout=net.get("dropout", 0.0),
            attention_levels=tuple(net.get("attention_levels", ())),
            mid_attention=net.get("mid_attention", False),
            embedding=NoiseLevelEmbedding(net["time_channels"]),
            norm_groups=net.get("norm_groups", 32)))
        self.schedule = Schedule(linear_betas(steps, beta_start, beta_end))

    def _eps(self, x_t, level, up):
        return self.unet(torch.cat([up, x_t], dim=1), level, None)

    def target(self, lr, hr):
        return hr * 2 - 1

    def to_image(self, lr, x0):
        return (x0 + 1) / 2

    def eps_fn(self, lr):
        up = upsample(lr, self.scale) * 2 - 1
        return lambda x, t: self._eps(x, self.schedule.noise_level(t, x), up)

    def flow_eps_fn(self, lr):
        up = upsample(lr, self.scale) * 2 - 1
        return lambda x, t: self._eps(
            x, self.vp.alpha_bar(t).sqrt().to(x.dtype).expand(x.shape[0]), up)

    def loss(self, lr, hr, t, eps, u) -> tuple[torch.Tensor, dict]:
        """L1 on eps at continuous levels between sqrt(ab_t) and sqrt(ab_{t-1}); t: (B,) steps,
        u: (B,) uniform in [0, 1) choosing the level."""
        up = upsample(lr, self.scale) * 2 - 1
        ab = self.schedule.alpha_bar.to(hr.device)
        prev = torch.where(t > 0, ab[(t - 1).clamp(min=0)], torch.ones_like(ab[t]))
        level = (ab[t].sqrt() + u.double() * (prev.sqrt() - ab[t].sqrt())).to(hr.dtype)
        lv = level.reshape(-1, 1, 1, 1)
        x_t = lv * self.target(lr, hr) + (1 - lv**2).sqrt() * eps
        loss = F.l1_loss(self._eps(x_t, level, up), eps)
        return loss, {"l1_eps": float(loss.detach())}

    @classmethod
    def load(cls, path: str | os.PathLike, *, weights: str = "ema", device="cpu") -> "SR3":
        ckpt = load_checkpoint(path, weights=weights)
        meta = ckpt["meta"]
        model = cls(scale=meta["scale"], net=meta["net"], **meta["diffusion"])
        return restore(model, ckpt, weights=weights).to(device)
