"""Paired training patches: random HR crop, LR made from the crop, the same flip/rotation on both.

Every batch is a pure function of (seed, rank, step): its generator is seeded from them, so a
resumed run sees exactly the batches an uninterrupted one would, and DataLoader workers need no
shared state.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..degradation import degrade_batch
from ..rng import batch_generator
from .datasets import load_hr, load_manifest, split_entries
from .io import ImageError

__all__ = ["PatchSampler", "PatchStream", "AUGMENTATIONS"]

AUGMENTATIONS = ("dihedral", "hflip", "none")


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square: k % 4 quarter turns, then a flip if k >= 4."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


class PatchSampler:
    """Random paired patches from HR images held in memory.

    images: list of (H, W, 3) uint8 arrays; names: one per image (for error messages).
    ``augment``: "dihedral" (one of the 8 flips/quarter turns, as ECDP's release), "hflip"
    (a horizontal flip half the time, as SR3's) or "none" (SRDiff's).
    ``sample(batch, generator)`` -> (lr, hr): float (B, 3, P/s, P/s) and (B, 3, P, P) in [0, 1].
    """

    def __init__(self, images: list[np.ndarray], names: list[str], *, patch_size: int,
                 scale: int, augment: str = "dihedral"):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} must be a multiple of the scale {scale}")
        for image, name in zip(images, names, strict=True):
            if image.shape[0] < patch_size or image.shape[1] < patch_size:
                raise ImageError(f"{name}: image {image.shape[1]}x{image.shape[0]} is smaller than "
                                 f"the {patch_size}x{patch_size} training crop")
        self.images = [torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1) for i in images]
        self.names, self.patch_size, self.scale, self.augment = names, patch_size, scale, augment

    @classmethod
    def from_dataset(cls, root: str | os.PathLike, split: str, **kwargs) -> "PatchSampler":
        manifest = load_manifest(root)
        entries = split_entries(manifest, split)
        images = [load_hr(Path(root), e, manifest.get("transform")) for e in entries]
        return cls(images, [e["path"] for e in entries], **kwargs)

    def sample(self, batch_size: int, generator: torch.Generator):
        p = self.patch_size
        crops = []
        for _ in range(batch_size):
            image = self.images[int(torch.randint(len(self.images), (1,), generator=generator))]
            h, w = image.shape[-2:]
            y = int(torch.randint(h - p + 1, (1,), generator=generator))
            x = int(torch.randint(w - p + 1, (1,), generator=generator))
            crops.append(image[:, y:y + p, x:x + p])
        hr = torch.stack(crops)
        lr = degrade_batch(hr, self.scale)
        if self.augment != "none":
            ks = torch.randint(8, (batch_size,), generator=generator).tolist()
            if self.augment == "hflip":  # identity or the flip: k in {0, 4}
                ks = [4 * (k >= 4) for k in ks]
            hr = torch.stack([_dihedral(h_, k) for h_, k in zip(hr, ks)])
            lr = torch.stack([_dihedral(l_, k) for l_, k in zip(lr, ks)])
        return lr.float() / 255, hr.float() / 255


class PatchStream(torch.utils.data.IterableDataset):
    """Batches ``start, start+1, ...`` of one process, for a DataLoader (``batch_size=None``).

    With several workers, worker ``i`` makes the steps ``i, i + n, ...``; the DataLoader's
    round-robin order then yields steps in order.
    """

    def __init__(self, sampler: PatchSampler, *, batch_size: int, seed: int, rank: int = 0,
                 start: int = 0):
        self.sampler, self.batch_size, self.seed, self.rank, self.start = (
            sampler, batch_size, seed, rank, start)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        step = self.start + worker
        while True:
            yield self.sampler.sample(self.batch_size, batch_generator(self.seed, self.rank, step))
            step += workers
