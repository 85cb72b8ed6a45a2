"""An independent NumPy transcription of MATLAB's imresize.m (bicubic, antialiasing).

Used only by the tests, to cross-check ``ecdp.degradation.imresize`` (which wraps pyiqa).
Follows MATLAB's ``contributions``: 1-based output coordinates mapped back by
``u = x / scale + 0.5 * (1 - 1 / scale)``, the kernel widened by ``1 / scale`` when shrinking,
weights normalised per output pixel, and symmetric (mirror, edge repeated) boundary indices.
"""
import math

import numpy as np


def cubic(x):
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def contributions(in_len, out_len, scale):
    kernel_width = 4.0
    if scale < 1:
        h = lambda x: scale * cubic(scale * x)  # noqa: E731
        kernel_width = kernel_width / scale
    else:
        h = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    w = h(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_len + 1), np.arange(in_len, 0, -1)])
    idx = aux[np.mod(idx.astype(np.int64) - 1, len(aux))] - 1
    return w, idx


def resize_axis(a, axis, scale):
    a = np.moveaxis(a, axis, 0)
    out_len = int(math.ceil(a.shape[0] * scale))
    w, idx = contributions(a.shape[0], out_len, scale)
    out = np.einsum("op,op...->o...", w, a[idx])
    return np.moveaxis(out, 0, axis)


def matlab_imresize(a, scale):
    """a: (..., H, W) float64."""
    return resize_axis(resize_axis(a, -2, scale), -1, scale)
