"""The embedded default dataset: real RGB photos shipped inside scikit-image (no network).

Split by image, so no test photo is seen in training. The split is fixed here (it is part of the
dataset's definition, like DIV2K's official train/valid split).
"""
from __future__ import annotations

import numpy as np
import skimage.data

__all__ = ["SPLITS", "load_photo"]

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "hubble_deep_field", "retina", "motorcycle_left", "motorcycle_right"),
    "val": ("immunohistochemistry",),
    "test": ("chelsea", "coffee", "rocket"),
}


def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB photo from scikit-image's bundled data."""
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _disparity = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    photo = getattr(skimage.data, name)()
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"scikit-image photo {name!r} is not 8-bit RGB: {photo.shape} {photo.dtype}")
    return photo
