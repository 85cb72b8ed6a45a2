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
from .datasets import load_hr, load_manifest, split_entries, split_pixels
from .io import ImageError

__all__ = ["PatchSampler", "PatchStream", "AUGMENTATIONS", "IN_MEMORY_BYTES"]

AUGMENTATIONS = ("dihedral", "hflip", "none")
# A training split held in memory as uint8 up to this size (DF2K: 29 GB; CelebA's 162,770 faces
# at 160 px: 12.5 GB); a larger one (ImageNet's 1.28M images: 252 GB at 256 px) is read from
# disk, one image per sample, with the dataset's transform.
IN_MEMORY_BYTES = 64 * 2 ** 30


class _DiskImages:
    """The images of a split read on access, as (3, H, W) uint8 tensors."""

    def __init__(self, root: Path, entries: list[dict], transform: dict | None):
        self.root, self.entries, self.transform = root, entries, transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = load_hr(self.root, self.entries[i], self.transform)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


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
        """The split's images in memory, or read from disk per sample when they would take
        more than ``IN_MEMORY_BYTES`` (their sizes come from the manifest's transform or the
        files' headers)."""
        manifest = load_manifest(root)
        entries = split_entries(manifest, split)
        names = [e["path"] for e in entries]
        transform = manifest.get("transform")
        if 3 * sum(split_pixels(manifest["dataset"], split, root=root)) > IN_MEMORY_BYTES:
            return cls.on_disk(_DiskImages(Path(root), entries, transform), names, **kwargs)
        return cls([load_hr(Path(root), e, transform) for e in entries], names, **kwargs)

    @classmethod
    def on_disk(cls, images, names: list[str], *, patch_size: int, scale: int,
                augment: str = "dihedral") -> "PatchSampler":
        """A sampler over images read on access (a sequence of (3, H, W) uint8 tensors); an
        image smaller than the crop is an error when it is drawn."""
        sampler = cls([], [], patch_size=patch_size, scale=scale, augment=augment)
        sampler.images, sampler.names = images, names
        return sampler

    def sample(self, batch_size: int, generator: torch.Generator):
        p = self.patch_size
        crops = []
        for _ in range(batch_size):
            index = int(torch.randint(len(self.images), (1,), generator=generator))
            image = self.images[index]
            h, w = image.shape[-2:]
            if h < p or w < p:
                raise ImageError(f"{self.names[index]}: image {w}x{h} is smaller than the "
                                 f"{p}x{p} training crop")
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
