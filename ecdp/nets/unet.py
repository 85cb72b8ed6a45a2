"""Score U-Net of ECDP (paper Table 6; docs/method.md, "Networks").

DDPM-style pre-activation residual blocks (GroupNorm, SiLU, 3x3 conv, time embedding added),
strided-conv down, nearest + conv up, one extra decoder block per level, no attention. LR
features enter every residual block: resized (bilinear, no antialiasing) to the block's
resolution, a 1x1 conv, added after the first conv. Input z_t (3 ch); output the eps head and
the z0 head (3 ch each). Time enters as sinusoids of ``time_scale`` t (released: 300 t).

Initialisation as released: every conv bias zero, the second conv of each block scaled by 1e-3,
1x1 skip convs by 0.1; GroupNorm with min(32, C / 4) groups, 16 before the output conv.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ScoreUNet", "ResBlock", "SelfAttention", "TimeEmbedding", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, channels: int, *, scale: float) -> torch.Tensor:
    """Sinusoidal embedding of scale * t (DDPM's). (B,) -> (B, C)."""
    half = channels // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / (half - 1))
    args = (t.float() * scale)[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


class TimeEmbedding(nn.Module):
    """Sinusoids of time_scale * t, then Linear-SiLU-Linear-SiLU: (B,) -> (B, 4 C)."""

    def __init__(self, channels: int, *, time_scale: float):
        super().__init__()
        self.channels, self.time_scale, self.out_channels = channels, time_scale, 4 * channels
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.SiLU(),
                                 nn.Linear(4 * channels, 4 * channels), nn.SiLU())

    def forward(self, t):
        emb = timestep_embedding(t, self.channels, scale=self.time_scale)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def _norm(channels: int, groups: int | None = None) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups (None: min(32, C / 4), the released ECDP U-Net's)."""
    return nn.GroupNorm(groups or min(32, max(1, channels // 4)), channels)


def _zero(module: nn.Module, scale: float = 1e-3) -> nn.Module:
    with torch.no_grad():
        module.weight.mul_(scale)
        module.bias.zero_()
    return module


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, time_ch: int, cond_ch: int, dropout: float = 0.0,
                 norm_groups: int | None = None):
        super().__init__()
        self.norm1 = _norm(in_ch, norm_groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_ch, out_ch)
        self.cond = nn.Conv2d(cond_ch, out_ch, 1) if cond_ch else None
        self.norm2 = _norm(out_ch, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = _zero(nn.Conv2d(in_ch, out_ch, 1), 0.1) if in_ch != out_ch else nn.Identity()

    def project(self, cond: torch.Tensor) -> torch.Tensor:
        """This block's LR conditioning: the 1x1 conv of the features at its resolution."""
        return self.cond(cond)

    def forward(self, x, temb, cond=None):
        """cond: this block's projected conditioning (``project``), or None."""
        h = self.conv1(F.silu(self.norm1(x))) + self.time(temb)[:, :, None, None]
        if cond is not None:
            h = h + cond
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over pixels with a residual connection (SR3's 16x16 layers)."""

    def __init__(self, channels: int, norm_groups: int | None = None):
        super().__init__()
        self.norm = _norm(channels, norm_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                             v.transpose(1, 2)[:, None])[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class _AttnBlock(nn.Module):
    """A residual block followed by self-attention."""

    def __init__(self, block: ResBlock, channels: int, norm_groups: int | None = None):
        super().__init__()
        self.block, self.attn = block, SelfAttention(channels, norm_groups)

    def project(self, cond):
        return self.block.project(cond)

    def forward(self, x, temb, cond=None):
        return self.attn(self.block(x, temb, cond))


class ScoreUNet(nn.Module):
    """z_t: (B, in_ch, H, W), t: (B,) in [0, 1], cond: (B, cond_ch, h, w) -> (B, out_ch, H, W).

    H and W need not be multiples of 2^levels: skips are cropped to match (as the release).
    The LR conditioning of every block depends on the LR alone: ``condition(cond, (H, W))``
    computes it once (resize per resolution, each block's 1x1 conv), and ``forward`` takes it
    as ``conditioning`` (a sampler reuses it at every evaluation; exactly the same numbers).
    ``attention_levels`` / ``mid_attention`` add self-attention after those blocks (SR3).
    ``embedding`` maps t (B,) to (B, embedding.out_channels); default ``TimeEmbedding`` of
    ``time_channels`` at ``time_scale`` (ECDP's; SR3 passes its noise-level embedding).
    ``norm_groups``: GroupNorm groups everywhere (None: ECDP's min(32, C / 4), 16 at the output).
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 6,
                 channels: tuple[int, ...] = (64, 128, 256, 256),
                 blocks: tuple[int, ...] = (2, 2, 2, 2), time_channels: int = 128,
                 cond_channels: int = 256, dropout: float = 0.0,
                 attention_levels: tuple[int, ...] = (), mid_attention: bool = False,
                 time_scale: float = 300.0, embedding: nn.Module | None = None,
                 norm_groups: int | None = None):
        super().__init__()
        if len(channels) != len(blocks):
            raise ValueError(f"channels {channels} and blocks {blocks} differ in length")
        self.time_mlp = embedding or TimeEmbedding(time_channels, time_scale=time_scale)
        tch = self.time_mlp.out_channels

        def block(i, o, level=None):
            b = ResBlock(i, o, tch, cond_channels, dropout, norm_groups)
            return _AttnBlock(b, o, norm_groups) if level in (*attention_levels, "mid") else b

        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()  # entries: ResBlock or a strided conv
        self.block_levels = []  # resolution level of every residual block, in call order
        skips, ch = [channels[0]], channels[0]
        for level, (c, n) in enumerate(zip(channels, blocks)):
            for _ in range(n):
                self.down.append(block(ch, c, level))
                self.block_levels.append(level)
                ch = c
                skips.append(ch)
            if level < len(channels) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([block(ch, ch, "mid" if mid_attention else None),
                                  block(ch, ch)])
        self.block_levels += [len(channels) - 1] * 2
        self.up = nn.ModuleList()
        for level in reversed(range(len(channels))):
            for _ in range(blocks[level] + 1):
                self.up.append(block(ch + skips.pop(), channels[level], level))
                self.block_levels.append(level)
                ch = channels[level]
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
        out_groups = norm_groups or (16 if ch % 16 == 0 else None)  # the release's 16 groups
        self.out = nn.Sequential(_norm(ch, out_groups), nn.SiLU(),
                                 nn.Conv2d(ch, out_channels, 3, padding=1))
        for module in self.modules():  # released init: every conv bias starts at zero
            if isinstance(module, nn.Conv2d) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def level_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """(H, W) at every level: each stride-2 conv (padding 1) gives ceil(H / 2)."""
        sizes = [tuple(size)]
        for _ in range(max(self.block_levels)):
            sizes.append(tuple(-(-n // 2) for n in sizes[-1]))
        return sizes

    def blocks(self) -> list[nn.Module]:
        return [m for m in (*self.down, *self.mid, *self.up) if isinstance(m, _BLOCKS)]

    def condition_parameters(self) -> list[nn.Parameter]:
        """The 1x1 convs' parameters: they act only in ``condition``, outside the solver's
        function (an adjoint solve must not list them beside the conditioning they make, or
        their gradient would be counted twice)."""
        convs = [(b.block if isinstance(b, _AttnBlock) else b).cond for b in self.blocks()]
        return [p for conv in convs if conv is not None for p in conv.parameters()]

    def condition(self, cond: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor] | None:
        """Every block's projected LR conditioning for an input of ``size`` (H, W): the features
        resized (bilinear, once per resolution) and passed through the block's 1x1 conv."""
        if cond is None:
            return None
        sizes, resized = self.level_sizes(size), {}
        out = []
        for block, level in zip(self.blocks(), self.block_levels):
            if level not in resized:
                resized[level] = F.interpolate(cond, size=sizes[level], mode="bilinear",
                                               align_corners=False)
            out.append(block.project(resized[level]))
        return out

    def forward(self, z_t, t, cond=None, *, conditioning=None):
        """cond: LR features (B, C, h, w), or their ``condition`` precomputed as ``conditioning``."""
        if conditioning is None:
            conditioning = self.condition(cond, z_t.shape[-2:])
        per_block = iter(conditioning) if conditioning is not None else None
        temb = self.time_mlp(t.expand(z_t.shape[0]))

        def run(layer, h):
            return layer(h, temb, next(per_block) if per_block is not None else None)

        h = self.conv_in(z_t)
        feats = [h]
        for layer in self.down:
            h = run(layer, h) if isinstance(layer, _BLOCKS) else layer(h)
            feats.append(h)
        for layer in self.mid:
            h = run(layer, h)
        for layer in self.up:
            if isinstance(layer, _BLOCKS):
                skip = feats.pop()
                h = run(layer, torch.cat([h[..., : skip.shape[-2], : skip.shape[-1]], skip], dim=1))
            else:
                h = layer(h)
        return self.out(h)


_BLOCKS = (ResBlock, _AttnBlock)
