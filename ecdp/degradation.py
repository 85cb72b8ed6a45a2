"""Bicubic degradation, MATLAB-compatible (paper "Datasets"; docs/method.md, "Data and evaluation protocol").

One resize for the whole suite: ``pyiqa.matlab_utils.imresize`` (a port of MATLAB's ``imresize``
with antialiasing). It is used to make LR images, to compute ``mu(y)`` (bicubic upsampling) and
LR-PSNR, so every number in the suite sees the same kernel.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pyiqa.matlab_utils import imresize as _matlab_imresize

__all__ = ["imresize", "modcrop", "degrade", "degrade_batch", "upsample"]


def imresize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """MATLAB ``imresize(x, scale, 'bicubic')`` with antialiasing.

    x: float tensor (..., H, W); returns (..., ceil(H * scale), ceil(W * scale)), same dtype.
    Values are not clamped (bicubic overshoots slightly, as in MATLAB before the uint8 cast).
    Differentiable in x.
    """
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"imresize expects a float tensor, got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')}")
    if x.dim() < 2:
        raise ValueError(f"imresize expects (..., H, W), got shape {tuple(x.shape)}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    if _shape_only(x):  # cost accounting on data-less tensors: same shape, same memory
        size = [math.ceil(n * scale) for n in x.shape[-2:]]
        return torch.nn.functional.interpolate(flat, size=size, mode="bicubic").reshape(
            *lead, *size)
    try:
        out = _matlab_imresize(flat, scale=scale, antialiasing=True)
    except IndexError as err:  # the kernel's mirror padding is wider than the image
        raise ValueError(f"image of size {tuple(x.shape[-2:])} is too small to resize by "
                         f"{scale}: each side needs at least {_min_side(scale)} pixels") from err
    return out.reshape(*lead, *out.shape[-2:])


def _shape_only(x: torch.Tensor) -> bool:
    """A tensor without data (the meta device, or PyTorch's fake tensors), as the FLOP and
    memory accounting of ``baselines.costs`` uses: MATLAB's resize computes its kernel from
    the data it indexes, so such tensors get a bicubic interpolation of the same shape."""
    from torch._subclasses.fake_tensor import FakeTensor

    return x.device.type == "meta" or isinstance(x, FakeTensor)


def _min_side(scale: float) -> int:
    return int(np.ceil(4 / min(scale, 1.0))) // 2 + 2


def upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """``mu(y)``: bicubic upsampling of an LR batch (..., h, w) to (..., h*s, w*s)."""
    return imresize(lr, float(scale))


def modcrop(hr: np.ndarray | torch.Tensor, scale: int):
    """Crop the bottom/right edge so both spatial sizes are multiples of ``scale``.

    Works on numpy arrays (H, W[, C]) and tensors (..., C, H, W).
    """
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if torch.is_tensor(hr):
        h, w = hr.shape[-2:]
        return hr[..., : h - h % scale, : w - w % scale]
    h, w = hr.shape[:2]
    if h < scale or w < scale:
        raise ValueError(f"image of size {h}x{w} is smaller than the scale {scale}")
    return hr[: h - h % scale, : w - w % scale, ...]


def degrade(hr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """LR image from an HR image: modcrop, MATLAB bicubic by 1/scale, round and clip to uint8.

    hr_uint8: (H, W, 3) uint8. Returns (H // scale, W // scale, 3) uint8.
    """
    if hr_uint8.dtype != np.uint8 or hr_uint8.ndim != 3:
        raise ValueError(f"degrade expects an (H, W, C) uint8 array, got {hr_uint8.dtype} "
                         f"{hr_uint8.shape}")
    hr = torch.from_numpy(np.ascontiguousarray(modcrop(hr_uint8, scale))).permute(2, 0, 1)
    return degrade_batch(hr, scale).permute(1, 2, 0).numpy()


def degrade_batch(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """``degrade`` for uint8 tensors (..., C, H, W) whose H and W are multiples of ``scale``."""
    if hr.dtype != torch.uint8 or hr.shape[-1] % scale or hr.shape[-2] % scale:
        raise ValueError(f"degrade_batch expects uint8 (..., H, W) divisible by {scale}, got "
                         f"{hr.dtype} {tuple(hr.shape)}")
    lr = imresize(hr.double(), 1.0 / scale)
    # MATLAB's uint8 cast rounds half away from zero and saturates.
    return torch.clamp(torch.floor(lr + 0.5), 0, 255).to(torch.uint8)
