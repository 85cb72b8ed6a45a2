"""Tiled super-resolution of large images: overlapping LR tiles, blended with linear ramps.

Each output pixel is the weighted mean of the tiles covering it; weights rise linearly across
the overlap, so neighbouring tiles fade into each other instead of meeting at a seam.
"""
from __future__ import annotations

from typing import Callable

import torch
from tqdm import tqdm

__all__ = ["tile_starts", "tiled", "upscale", "Tiled"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap``."""
    if overlap < 0 or tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap}), and overlap "
                         f"at least 0")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def _ramp(n: int, fade: int, device) -> torch.Tensor:
    w = torch.ones(n, device=device)
    if fade > 0:
        r = (torch.arange(fade, device=device) + 0.5) / fade
        w[:fade] = torch.minimum(w[:fade], r)
        w[-fade:] = torch.minimum(w[-fade:], r.flip(0))
    return w


def tiled(fn: Callable[[torch.Tensor, torch.Generator | None], tuple[torch.Tensor, int]],
          lr: torch.Tensor, *, scale: int, tile: int, overlap: int = 8,
          generator: torch.Generator | None = None, progress: bool = False):
    """Apply ``fn(lr_tile, generator) -> (sr_tile, nfe)`` over tiles; returns (sr, total NFE)."""
    b, c, h, w = lr.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    out = lr.new_zeros(b, c, h * scale, w * scale)
    weight = lr.new_zeros(1, 1, h * scale, w * scale)
    nfe = 0
    boxes = [(y, x) for y in ys for x in xs]
    for y, x in tqdm(boxes, desc="tiles", disable=not progress):
        th, tw = min(tile, h), min(tile, w)
        sr, n = fn(lr[..., y:y + th, x:x + tw], generator)
        nfe += n
        fade = overlap * scale
        wy = _ramp(th * scale, fade if len(ys) > 1 else 0, lr.device)
        wx = _ramp(tw * scale, fade if len(xs) > 1 else 0, lr.device)
        win = (wy[:, None] * wx[None, :])[None, None]
        sl = (..., slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
        out[sl] += sr * win
        weight[sl] += win
    return out / weight, nfe


class Tiled:
    """Any SuperResolver run in overlapping LR tiles of ``tile`` px (``overlap`` px shared with
    each neighbour, blended by ``tiled``): what makes a full-size image fit a GPU
    (``evaluation.tile``). NFE is summed over the tiles; everything else is the method's."""

    def __init__(self, method, *, tile: int, overlap: int = 16):
        if overlap < 0 or tile <= overlap:
            raise ValueError(f"evaluation.tile: size ({tile}) must exceed overlap ({overlap}) "
                             f"and overlap must be >= 0")
        self.method, self.tile, self.overlap = method, tile, overlap

    @property
    def tiling(self) -> dict:
        return {"tile": self.tile, "overlap": self.overlap}

    def __getattr__(self, name):  # name, stochastic, scale, batch, sampling, provenance
        return getattr(self.method, name)

    def super_resolve(self, lr: torch.Tensor, *, generator=None, image: str = "batch"):
        return tiled(lambda x, g: self.method.super_resolve(x, generator=g, image=image), lr,
                     scale=self.method.scale, tile=self.tile, overlap=self.overlap,
                     generator=generator)


def upscale(method, lr: torch.Tensor, *, generator: torch.Generator | None = None,
            tile: int | None = None, overlap: int = 8, progress: bool = False,
            image: str = "batch"):
    """Super-resolve any size with any SuperResolver (``method.super_resolve``), in overlapping
    LR tiles when ``tile`` is given. ``progress``: a bar of tiles, or of network evaluations
    for one whole-image solve (counted on ``method.unet`` where the method has one)."""
    def run(x, g):
        return method.super_resolve(x, generator=g, image=image)

    with torch.no_grad():
        if tile is not None:
            return tiled(run, lr, scale=method.scale, tile=tile, overlap=overlap,
                         generator=generator, progress=progress)
        net = getattr(method, "unet", None)
        if not progress or net is None:
            return run(lr, generator)
        with tqdm(desc="network evaluations", unit=" eval") as bar:
            def count(*_) -> None:  # a forward hook's return value would replace the output
                bar.update()

            hook = net.register_forward_hook(count)
            try:
                return run(lr, generator)
            finally:
                hook.remove()
