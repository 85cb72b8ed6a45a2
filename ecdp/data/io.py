"""Image and file I/O at the boundary: validated reads, atomic writes, checksums.

Image policy (documented in the README):
- RGB 8-bit: used as is. Palette, grayscale (L) and CMYK images are converted to RGB.
- RGBA / LA: the alpha channel is dropped when fully opaque; translucent images are refused
  (compositing onto a background would invent content).
- 16-bit images (I;16, I, 48-bit RGB PNG): refused unless ``allow_16bit=True``, which rounds
  ``x / 257`` to 8 bit. Metrics are defined on 8-bit images, so converting silently would hide
  a protocol change.
- Corrupt or truncated files raise ``ImageError`` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageError", "read_image", "write_png", "sha256_file", "atomic_write_text",
           "atomic_write_bytes", "write_json", "IMAGE_SUFFIXES", "list_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file."""


def read_image(path: str | os.PathLike, *, allow_16bit: bool = False) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB, applying the policy in the module docstring."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                if not allow_16bit:
                    raise ImageError(f"{path}: 16-bit image (mode {mode}); convert it to 8 bit or "
                                     "pass allow_16bit=True")
                a = np.asarray(im, dtype=np.float64)
                a = np.clip(np.floor(a / 257 + 0.5), 0, 255).astype(np.uint8)
                return np.repeat(a[..., None], 3, axis=2)
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                rgba = np.asarray(im.convert("RGBA"))
                if (rgba[..., 3] != 255).any():
                    raise ImageError(f"{path}: image has a translucent alpha channel; flatten it "
                                     "onto a background first")
                return np.ascontiguousarray(rgba[..., :3])
            if mode not in ("RGB", "L", "P", "CMYK", "YCbCr", "1"):
                raise ImageError(f"{path}: unsupported image mode {mode}")
            return np.asarray(im.convert("RGB")).copy()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _atomic_target(path: Path):
    """A temporary file beside ``path`` (same filesystem, so ``os.replace`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    return Path(tmp)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array as PNG atomically (temporary file, then rename)."""
    path = Path(path)
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: write_png expects uint8, got {image.dtype}")
    tmp = _atomic_target(path)
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; errors name the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"dataset folder {folder} holds no images "
                                f"(looked for {', '.join(IMAGE_SUFFIXES)})")
    return files
