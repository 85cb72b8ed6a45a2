"""Image and file I/O at the boundary: validated reads, atomic writes, checksums.

Image policy (documented in the README):
- RGB 8-bit: used as is. Palette, grayscale (L) and CMYK images are converted to RGB.
- RGBA / LA: the alpha channel is dropped when fully opaque; translucent images are refused
  (compositing onto a background would invent content).
- 16-bit grayscale images (I;16, I): refused unless ``allow_16bit=True``, which rounds
  ``x / 257`` to 8 bit. Metrics are defined on 8-bit images, so converting silently would hide
  a protocol change.
- 16-bit-per-channel colour PNGs (48-bit RGB, 64-bit RGBA): always refused. Pillow opens them
  as 8-bit "RGB" by dropping the low byte, so the bit depth is read from the PNG header.
- An EXIF orientation tag (phone photos) is applied, so the image is used the way every
  viewer shows it.
- Corrupt or truncated files raise ``ImageError`` naming the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageError", "read_image", "verify_checksum", "write_png", "write_image", "image_format", "check_writable", "sha256_file", "atomic_write_text",
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
            if im.format == "PNG" and _png_bit_depth(path) == 16 and mode not in (
                    "I;16", "I;16B", "I;16L", "I"):
                raise ImageError(f"{path}: 16 bits per channel ({mode}, 48/64-bit PNG); Pillow "
                                 "would keep only the high byte: convert it to 8 bit first")
            im = ImageOps.exif_transpose(im)  # a no-op without an orientation tag
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


def _png_bit_depth(path: Path) -> int:
    """Bits per sample from a PNG's IHDR chunk (byte 24 of the file)."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24] if len(head) == 26 and head[12:16] == b"IHDR" else 8


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() gives a new file (mkstemp's is 0600)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary file beside ``path`` (same filesystem) to write, renamed into place when the
    block ends without an error: a reader, a crash or a concurrent writer never sees half a
    file. The one atomic write of the suite (images, JSON, tables, checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)  # as open() would (mkstemp's 0600 hides files from colleagues)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# Output formats by extension: PNG and lossless WebP keep every value; JPEG at quality 95.
WRITE_FORMATS = {".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}),
                 ".jpeg": ("JPEG", {"quality": 95}), ".webp": ("WEBP", {"lossless": True})}


def image_format(path: str | os.PathLike) -> str:
    """The format ``write_image`` writes ``path`` in; an unknown extension or a folder is an
    error (checked before any work is done)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory: give an output file name, e.g. {path}/out.png")
    if path.suffix.lower() not in WRITE_FORMATS:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}; use one of "
                         f"{', '.join(WRITE_FORMATS)}")
    return WRITE_FORMATS[path.suffix.lower()][0]


def check_writable(path: str | os.PathLike) -> None:
    """That a file can be written at ``path`` (its folder made if missing), checked before any
    long work: an error naming the path, never a traceback after the work is done."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"{path}: cannot write here ({e.strerror or e}): choose a writable "
                         f"output folder") from None


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array atomically, in the format of its extension
    (``WRITE_FORMATS``)."""
    image_format(path)
    _save(Path(path), image, *WRITE_FORMATS[Path(path).suffix.lower()])


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array as PNG atomically, whatever the extension (the
    workflow's intermediate files)."""
    _save(Path(path), image, "PNG", {})


def _save(path: Path, image: np.ndarray, fmt: str, options: dict) -> None:
    """Temporary file beside ``path``, then rename: a crash never leaves half an image."""
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: images are written from uint8, got {image.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt, **options)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def verify_checksum(path: str | os.PathLike, expected: str | None, *,
                    manifest: str | os.PathLike | None = None) -> None:
    """A file read through a manifest must still be the file the manifest recorded: an error
    naming the file, both hashes and how to rebuild it."""
    if expected is None:
        return
    got = sha256_file(path)
    if got != expected:
        where = f" ({manifest})" if manifest else ""
        raise ImageError(f"{path}: sha256 {got} differs from {expected}, recorded in its "
                         f"manifest{where}: the file changed after the manifest was written; "
                         f"rebuild it by re-running the step that wrote it (delete the "
                         f"manifest, or force it with snakemake -R RULE)")


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
