"""SRDiff (Li et al. 2021) as the ECDP paper trained it (docs/method.md, "Baselines").

Discrete DDPM, T = 100, cosine schedule; target the residual x0 = 2 (HR - bicubic(LR)) with
images in [-1, 1] (``RESIDUAL`` below), clipped to [-1, 1]; eps-prediction with an L1 loss;
100-step ancestral sampler with x0 clipping. The denoiser is a U-Net (base 64, multipliers
[1, 2, 3, 4] DIV2K / [1, 2, 2, 4] CelebA, two residual blocks per level) conditioned on a frozen,
pre-trained RRDBNet (ESRGAN's, with the trunk conv: ``RRDBNet(trunk_conv=True)``) whose tapped
features (released: every third of the block outputs and the trunk output, ``cond[2::3]``) are
projected to HR size by a transposed conv and added once, after the first level. Its blocks have
no normalization (SRDiff's ``gn_groups: 0``): reflection-padded conv + Mish, the time embedding
added between the two convs; its stride-2 convs pad by reflection too.

The release computes the bicubic upsampling of ``LR / 256`` (not / 255: ``img_lr_up =
imresize(img_lr / 256, s)``) in training and testing, so its residual is taken against
255/256 bicubic(LR) (``MU_SCALE``); a published checkpoint reproduces its numbers only so.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ecdp.checkpoint import load_checkpoint, restore
from ecdp.degradation import upsample
from ecdp.nets import RRDBNet
from ecdp.nets.unet import timestep_embedding

from .ddpm import DDPMSuperResolver, Schedule, cosine_betas

__all__ = ["SRDiffBlock", "SRDiffUNet", "SRDiff", "RESIDUAL"]

# x0 = RESIDUAL * (HR - bicubic(LR)) in [0, 1] units, clipped to [-1, 1]. SRDiff's code keeps images
# in [-1, 1] and multiplies their difference by res_rescale = 2: 4 in [0, 1] units.
RESIDUAL = 4.0
MU_SCALE = 255 / 256  # the release's bicubic(LR / 256), in [0, 1] units


def _conv_mish(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(i, o, 3), nn.Mish())


def _downsample(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, stride=2))


class SRDiffBlock(nn.Module):
    """SRDiff's residual block: conv-Mish, + Linear(Mish(temb)), conv-Mish, + 1x1 skip. No norm,
    as released: a GroupNorm removes each group's mean, which the eps head then has to rebuild
    to keep the sample's brightness."""

    def __init__(self, in_ch: int, out_ch: int, time_ch: int):
        super().__init__()
        self.block1, self.block2 = _conv_mish(in_ch, out_ch), _conv_mish(out_ch, out_ch)
        self.time = nn.Sequential(nn.Mish(), nn.Linear(time_ch, out_ch))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, temb):
        return self.block2(self.block1(x) + self.time(temb)[:, :, None, None]) + self.skip(x)


class SRDiffUNet(nn.Module):
    """x_t: (B, 3, H, W), t: (B,) step index, cond: (B, C, h, w) -> eps_hat (B, 3, H, W)."""

    def __init__(self, *, dim: int = 64, mults: tuple[int, ...] = (1, 2, 3, 4),
                 cond_channels: int = 96, scale: int = 4):
        super().__init__()
        dims = [3, *(dim * m for m in mults)]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.dim = dim
        self.time_mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.Mish(), nn.Linear(4 * dim, dim))
        self.cond_proj = nn.ConvTranspose2d(cond_channels, dim, 2 * scale, scale, scale // 2)
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(nn.ModuleList([
                SRDiffBlock(a, b, dim), SRDiffBlock(b, b, dim),
                nn.Identity() if last else _downsample(b)]))
        self.mid = nn.ModuleList([SRDiffBlock(dims[-1], dims[-1], dim),
                                  SRDiffBlock(dims[-1], dims[-1], dim)])
        self.up = nn.ModuleList()
        for a, b in reversed(pairs[1:]):
            self.up.append(nn.ModuleList([SRDiffBlock(2 * b, a, dim), SRDiffBlock(a, a, dim),
                                          nn.ConvTranspose2d(a, a, 4, 2, 1)]))
        self.out = nn.Sequential(_conv_mish(dim, dim), nn.Conv2d(dim, 3, 1))

    def forward(self, x, t, cond):
        temb = self.time_mlp(timestep_embedding(t.float(), self.dim, scale=1.0))
        skips = []
        for i, (block1, block2, down) in enumerate(self.down):
            x = block2(block1(x, temb), temb)
            if i == 0:
                x = x + self.cond_proj(cond)[..., : x.shape[-2], : x.shape[-1]]
            skips.append(x)
            x = down(x)
        for block in self.mid:
            x = block(x, temb)
        for block1, block2, up in self.up:
            skip = skips.pop()
            x = torch.cat([x[..., : skip.shape[-2], : skip.shape[-1]], skip], dim=1)
            x = up(block2(block1(x, temb), temb))
        return self.out(x[..., : skips[0].shape[-2], : skips[0].shape[-1]])


class SRDiff(DDPMSuperResolver, nn.Module):
    name = "srdiff"

    def __init__(self, *, rrdb: RRDBNet, taps: tuple[int, ...], dim: int = 64,
                 mults: tuple[int, ...] = (1, 2, 3, 4), steps: int = 100):
        super().__init__()
        self.scale = rrdb.scale
        self.rrdb = rrdb.requires_grad_(False)  # whole, frozen: counted in the parameters
        self.taps = tuple(taps)
        rrdb.check_taps(self.taps)
        self.unet = SRDiffUNet(dim=dim, mults=mults, cond_channels=rrdb.trunk.features * len(taps),
                               scale=self.scale)
        self.schedule = Schedule(cosine_betas(steps))

    def train(self, mode: bool = True):  # the RRDB encoder stays frozen in eval mode
        super().train(mode)
        self.rrdb.eval()
        return self

    def encoder(self, lr: torch.Tensor) -> torch.Tensor:
        """The tapped RRDB features, concatenated: (B, features * len(taps), h, w)."""
        return torch.cat(self.rrdb.features(lr, self.taps), dim=1)

    def mu(self, lr: torch.Tensor) -> torch.Tensor:
        """The reference the residual is taken against: 255/256 bicubic(LR), as released."""
        return MU_SCALE * upsample(lr, self.scale)

    def target(self, lr, hr):
        return (RESIDUAL * (hr - self.mu(lr))).clamp(-1, 1)

    def to_image(self, lr, x0):
        return self.mu(lr) + x0.clamp(-1, 1) / RESIDUAL

    def eps_fn(self, lr):
        feats = self.encoder(lr)  # once per image, not once per step
        return lambda x, t: self.unet(x, t, feats)

    def flow_eps_fn(self, lr):
        feats = self.encoder(lr)
        return lambda x, t: self.unet(x, self.vp.step_of(t).to(x.dtype).expand(x.shape[0]),
                                      feats)

    def loss(self, lr, hr, t, eps) -> tuple[torch.Tensor, dict]:
        """L1 between eps_hat and eps at integer steps t (B,)."""
        with torch.no_grad():
            eps_fn = self.eps_fn(lr)
        loss = F.l1_loss(eps_fn(self.schedule.q_sample(self.target(lr, hr), t, eps), t), eps)
        return loss, {"l1_eps": float(loss.detach())}

    @classmethod
    def load(cls, path: str | os.PathLike, *, weights: str = "ema", device="cpu") -> "SRDiff":
        ckpt = load_checkpoint(path, weights=weights)
        meta = ckpt["meta"]
        model = cls(rrdb=RRDBNet(scale=meta["scale"], **meta["rrdb_net"]), **meta["net"])
        return restore(model, ckpt, weights=weights).to(device)
