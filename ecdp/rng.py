"""Explicit, stable random generators (every random number from an explicit generator).

Seeds are derived by hashing their parts with SHA-256 (stable across processes, unlike
``hash()`` of a string), so an image's result does not depend on batch size, order or rank.
"""
from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "make_generator", "batch_generator", "image_generator", "randn_like",
           "seed_torch"]


def derive_seed(*parts) -> int:
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def make_generator(*parts, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))


def batch_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """Drives training batch ``step`` of process ``rank`` (data sampling and noise)."""
    return make_generator("batch", seed, rank, step)


def image_generator(seed: int, image: str, sample: int = 0,
                    device: str | torch.device = "cpu") -> torch.Generator:
    """Drives the sampler for one (run seed, image name, sample index)."""
    return make_generator("image", seed, image, sample, device=device)


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn on the generator's device, moved to x's."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def seed_torch(seed: int) -> None:
    """Seed torch's global generator, the one torch.nn draws initial weights and dropout masks
    from. Every training entry point calls it before it builds its network: without it two runs
    with one seed start from different weights (everything else already uses explicit
    generators)."""
    torch.manual_seed(seed)
