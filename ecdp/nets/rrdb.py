"""RRDB blocks (ESRGAN, Wang et al. 2018): the LR encoder of ECDP and SRDiff, and RRDBNet.

RRDBNet is pre-trained with an L1 loss; it is the tables' "RRDB" row, and its trunk (first conv
+ blocks) becomes ECDP's LR encoder: train once, use twice. Two releases, two variants:

- ECDP's RRDBNet (``trunk_conv=False``): blocks straight into the upsampler, no ESRGAN trunk conv
  or long skip (16.661M at 23 x 64 features); dense-block convs start with weights and biases
  scaled by 0.1 (``init_scale``).
- SRDiff's (``trunk_conv=True``, ``init_scale=1``, ``clamp=True``): ESRGAN's, with the trunk conv
  and long skip, PyTorch's default init and the output clamped to [0, 1]; its encoder taps may
  include index ``blocks``, the trunk output ``conv_first + trunk_conv(last block)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..degradation import upsample

__all__ = ["ResidualDenseBlock", "RRDB", "RRDBTrunk", "RRDBNet", "RRDBEncoder", "VARIANTS",
           "rrdbnet_config"]

# What distinguishes the two releases' RRDBNets (sizes come from the config).
VARIANTS = {"ecdp": {"trunk_conv": False, "init_scale": 0.1, "clamp": False},
            "srdiff": {"trunk_conv": True, "init_scale": 1.0, "clamp": True}}


def rrdbnet_config(variant: str, size: dict, *, bicubic_skip: bool = False) -> dict:
    """``RRDBNet`` arguments of a released variant at a size {features, growth, blocks}."""
    if variant not in VARIANTS:
        raise ValueError(f"RRDBNet variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return {**{k: size[k] for k in ("features", "growth", "blocks")}, **VARIANTS[variant],
            "bicubic_skip": bicubic_skip}


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output scaled by 0.2 and added to the input."""

    def __init__(self, features: int = 64, growth: int = 32, init_scale: float = 0.1):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(features + i * growth, growth if i < 4 else features, 3, padding=1)
            for i in range(5))
        with torch.no_grad():  # small initial residuals (ECDP's release: weights and biases)
            for conv in self.convs:
                conv.weight.mul_(init_scale)
                conv.bias.mul_(init_scale)

    def forward(self, x):
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.convs[-1](torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, residual scale 0.2."""

    def __init__(self, features: int = 64, growth: int = 32, init_scale: float = 0.1):
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualDenseBlock(features, growth, init_scale)
                                      for _ in range(3)))

    def forward(self, x):
        return x + 0.2 * self.blocks(x)


class RRDBTrunk(nn.Module):
    """First conv and the RRDB blocks. ``forward(x, taps)`` -> (first features, tapped outputs)."""

    def __init__(self, *, in_channels: int = 3, features: int = 64, growth: int = 32,
                 blocks: int = 23, init_scale: float = 0.1):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, features, 3, padding=1)
        self.blocks = nn.ModuleList(RRDB(features, growth, init_scale) for _ in range(blocks))
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
    """ESRGAN's generator: trunk, (trunk conv + long skip), nearest x2 upsampling stages, HR convs.

    lr: (B, 3, h, w) in [0, 1] -> (B, 3, s h, s w). 23 blocks, 64 features, growth 32: 16.66M
    without the trunk conv (ECDP's release), 16.70M with it (ESRGAN, SRDiff).
    ``bicubic_skip`` (in neither release; on for the CPU-sized default run) adds the bicubic
    upsampling of the LR to the output, so that the network learns only the residual: same
    parameters, far fewer steps to beat bicubic. ``clamp`` clamps the output to [0, 1] (SRDiff).
    """

    def __init__(self, *, scale: int = 4, features: int = 64, growth: int = 32, blocks: int = 23,
                 trunk_conv: bool = False, init_scale: float = 0.1, clamp: bool = False,
                 bicubic_skip: bool = False):
        super().__init__()
        if scale & (scale - 1) or scale < 2:
            raise ValueError(f"RRDBNet upsamples by powers of two, got scale {scale}")
        self.scale = scale
        self.trunk = RRDBTrunk(features=features, growth=growth, blocks=blocks,
                               init_scale=init_scale)
        self.trunk_conv = nn.Conv2d(features, features, 3, padding=1) if trunk_conv else None
        self.upconvs = nn.ModuleList(nn.Conv2d(features, features, 3, padding=1)
                                     for _ in range(int(math.log2(scale))))
        self.hr_conv = nn.Conv2d(features, features, 3, padding=1)
        self.conv_last = nn.Conv2d(features, 3, 3, padding=1)
        self.clamp, self.bicubic_skip = clamp, bicubic_skip

    def check_taps(self, taps) -> None:
        n = len(self.trunk.blocks)
        if not taps or any(not 0 <= i <= n for i in taps) or (n in taps and self.trunk_conv is None):
            raise ValueError(f"taps {list(taps)} must index the {n} blocks"
                             + (f" (or {n}, the trunk output)" if self.trunk_conv else ""))

    def features(self, lr, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Outputs of the tapped blocks; tap ``blocks`` (with a trunk conv) is the trunk output
        conv_first + trunk_conv(last block), as SRDiff's encoder takes it."""
        self.check_taps(taps)
        n = len(self.trunk.blocks)
        fea, tapped = self.trunk(lr, tuple(sorted(set(taps) | {n - 1})))
        by_index = dict(zip(sorted(set(taps) | {n - 1}), tapped))
        if self.trunk_conv is not None:
            by_index[n] = fea + self.trunk_conv(by_index[n - 1])
        return [by_index[i] for i in taps]

    def forward(self, lr):
        n = len(self.trunk.blocks)
        (h,) = self.features(lr, (n if self.trunk_conv is not None else n - 1,))
        for conv in self.upconvs:
            h = F.leaky_relu(conv(F.interpolate(h, scale_factor=2, mode="nearest")), 0.2)
        out = self.conv_last(F.leaky_relu(self.hr_conv(h), 0.2))
        if self.bicubic_skip:
            out = out + upsample(lr, self.scale)
        return out.clamp(0, 1) if self.clamp else out


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
        if max(taps) >= len(trunk.blocks):
            raise ValueError(f"taps {taps} must index the {len(trunk.blocks)} RRDB blocks")
        growth = trunk.blocks[0].blocks[0].convs[0].out_channels
        encoder = cls(features=trunk.features, growth=growth, blocks=len(trunk.blocks), taps=taps)
        state = {k: v for k, v in trunk.state_dict().items()
                 if not k.startswith("blocks.") or int(k.split(".")[1]) <= max(taps)}
        encoder.trunk.load_state_dict(state, strict=True)
        return encoder

    def forward(self, lr):
        return torch.cat(self.trunk(lr, self.taps)[1], dim=1)
