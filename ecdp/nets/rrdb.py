"""RRDB blocks (ESRGAN, Wang et al. 2018): the LR encoder of ECDP and SRDiff, and RRDBNet.

RRDBNet is pre-trained with an L1 loss; it is the tables' "RRDB" row, and its trunk (first conv
+ blocks) becomes ECDP's LR encoder: train once, use twice.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..degradation import upsample

__all__ = ["ResidualDenseBlock", "RRDB", "RRDBTrunk", "RRDBNet", "RRDBEncoder"]


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output scaled by 0.2 and added to the input."""

    def __init__(self, features: int = 64, growth: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(features + i * growth, growth if i < 4 else features, 3, padding=1)
            for i in range(5))
        with torch.no_grad():  # small initial residuals, as ESRGAN
            for conv in self.convs:
                conv.weight.mul_(0.1)
                conv.bias.zero_()

    def forward(self, x):
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.convs[-1](torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, residual scale 0.2."""

    def __init__(self, features: int = 64, growth: int = 32):
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualDenseBlock(features, growth) for _ in range(3)))

    def forward(self, x):
        return x + 0.2 * self.blocks(x)


class RRDBTrunk(nn.Module):
    """First conv and the RRDB blocks. ``forward(x, taps)`` -> (first features, tapped outputs)."""

    def __init__(self, *, in_channels: int = 3, features: int = 64, growth: int = 32,
                 blocks: int = 23):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, features, 3, padding=1)
        self.blocks = nn.ModuleList(RRDB(features, growth) for _ in range(blocks))
        self.features = features

    def forward(self, x, taps: tuple[int, ...]):
        fea = self.conv_first(x)
        h, tapped = fea, []
        for i, block in enumerate(self.blocks[: max(taps) + 1]):
            h = block(h)
            if i in taps:
                tapped.append(h)
        return fea, tapped


class RRDBNet(nn.Module):
    """ESRGAN's generator: trunk, trunk conv + long skip, nearest x2 upsampling stages, HR convs.

    lr: (B, 3, h, w) in [0, 1] -> (B, 3, s h, s w). 23 blocks, 64 features, growth 32: 16.7M.
    ``bicubic_skip`` (off in ESRGAN and the paper presets; on for the CPU-sized default run)
    adds the bicubic upsampling of the LR to the output, so that the network learns only the
    residual: same parameters, far fewer steps to beat bicubic.
    """

    def __init__(self, *, scale: int = 4, features: int = 64, growth: int = 32, blocks: int = 23,
                 bicubic_skip: bool = False):
        super().__init__()
        if scale & (scale - 1) or scale < 2:
            raise ValueError(f"RRDBNet upsamples by powers of two, got scale {scale}")
        self.scale = scale
        self.trunk = RRDBTrunk(features=features, growth=growth, blocks=blocks)
        self.trunk_conv = nn.Conv2d(features, features, 3, padding=1)
        self.upconvs = nn.ModuleList(nn.Conv2d(features, features, 3, padding=1)
                                     for _ in range(int(math.log2(scale))))
        self.hr_conv = nn.Conv2d(features, features, 3, padding=1)
        self.conv_last = nn.Conv2d(features, 3, 3, padding=1)
        self.bicubic_skip = bicubic_skip

    def forward(self, lr):
        fea, (last,) = self.trunk(lr, (len(self.trunk.blocks) - 1,))
        h = fea + self.trunk_conv(last)
        for conv in self.upconvs:
            h = F.leaky_relu(conv(F.interpolate(h, scale_factor=2, mode="nearest")), 0.2)
        out = self.conv_last(F.leaky_relu(self.hr_conv(h), 0.2))
        return out + upsample(lr, self.scale) if self.bicubic_skip else out


class RRDBEncoder(nn.Module):
    """LR feature extractor: the concatenated outputs of the tapped RRDB blocks.

    lr: (B, 3, h, w) in [0, 1] -> (B, features * len(taps), h, w).
    """

    def __init__(self, *, features: int = 64, growth: int = 32, blocks: int = 23,
                 taps: tuple[int, ...] = (1, 8, 15, 22)):
        super().__init__()
        if not taps or max(taps) >= blocks or min(taps) < 0:
            raise ValueError(f"taps {taps} must index the {blocks} blocks")
        self.trunk = RRDBTrunk(features=features, growth=growth, blocks=max(taps) + 1)
        self.taps = tuple(taps)
        self.out_channels = features * len(taps)

    @classmethod
    def from_rrdbnet(cls, net: RRDBNet, taps: tuple[int, ...]) -> "RRDBEncoder":
        """An encoder whose trunk starts as a (pre-trained) RRDBNet's trunk."""
        trunk = net.trunk
        growth = trunk.blocks[0].blocks[0].convs[0].out_channels
        encoder = cls(features=trunk.features, growth=growth, blocks=len(trunk.blocks), taps=taps)
        state = {k: v for k, v in trunk.state_dict().items()
                 if not k.startswith("blocks.") or int(k.split(".")[1]) <= max(taps)}
        encoder.trunk.load_state_dict(state, strict=True)
        return encoder

    def forward(self, lr):
        return torch.cat(self.trunk(lr, self.taps)[1], dim=1)
