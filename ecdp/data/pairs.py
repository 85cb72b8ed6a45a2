"""Evaluation pairs: modcropped HR and its LR (degraded here, or the dataset's official LR).

``make_pairs`` writes ``{out}/hr/{split}/NAME.png``, ``{out}/lr/{split}/NAME.png`` and, last, the
manifest ``{out}/lr/{split}.json`` listing every pair with SHA-256 sums of both images: the
manifest's presence marks a complete set.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..degradation import degrade, modcrop
from .datasets import load_hr, load_manifest, split_entries
from .io import ImageError, read_image, sha256_file, verify_checksum, write_json, write_png

__all__ = ["make_pairs", "load_pairs", "read_pair"]


def make_pairs(dataset_root: str | os.PathLike, out: str | os.PathLike, *, split: str,
               scale: int, official_lr: bool = True, limit: int | None = None,
               crop: int | None = None, progress: bool = True) -> dict:
    """HR/LR pairs of one split. ``crop``: keep only the central crop x crop HR region (rounded
    down to a multiple of the scale; the matching LR region) - the CPU default evaluates on
    crops to fit its time budget; the paper presets evaluate whole images (crop null)."""
    dataset_root, out = Path(dataset_root), Path(out)
    manifest = load_manifest(dataset_root)
    entries = split_entries(manifest, split)[:limit]
    official = manifest.get("official_lr", {}).get(str(scale), {}).get(split) if official_lr else None
    pairs = []
    for entry in tqdm(entries, desc=f"degrade {split} x{scale}", disable=not progress):
        hr = load_hr(dataset_root, entry, manifest.get("transform"))
        if hr.shape[0] < 2 * scale or hr.shape[1] < 2 * scale:
            raise ImageError(f"{entry['path']}: image {hr.shape[1]}x{hr.shape[0]} is too small for "
                             f"scale {scale}")
        hr = modcrop(hr, scale)
        if official:
            lr = read_image(dataset_root / official[entry["name"]])
            expected = (hr.shape[0] // scale, hr.shape[1] // scale, 3)
            if lr.shape != expected:
                raise ImageError(f"{official[entry['name']]}: official LR has shape {lr.shape}, "
                                 f"expected {expected} for HR {entry['path']}")
        else:
            lr = degrade(hr, scale)
        if crop is not None:
            hr, lr = center_crop_pair(hr, lr, crop, scale)
        hr_path = out / "hr" / split / f"{entry['name']}.png"
        lr_path = out / "lr" / split / f"{entry['name']}.png"
        write_png(hr_path, hr)
        write_png(lr_path, lr)
        pairs.append({"name": entry["name"], "hr": os.path.relpath(hr_path, out),
                      "lr": os.path.relpath(lr_path, out), "hr_sha256": sha256_file(hr_path),
                      "lr_sha256": sha256_file(lr_path), "hr_size": list(hr.shape[:2])})
    result = {"dataset": manifest["dataset"], "split": split, "scale": scale,
              "lr_source": "official" if official else "matlab-bicubic", "crop": crop,
              "pairs": pairs}
    write_json(out / "lr" / f"{split}.json", result)
    return result


def center_crop_pair(hr: np.ndarray, lr: np.ndarray, crop: int, scale: int):
    """The central region of an HR image, at most crop x crop, aligned to the LR grid."""
    h, w = lr.shape[:2]
    ch, cw = min(crop // scale, h), min(crop // scale, w)
    if ch < 2:
        raise ValueError(f"evaluation crop {crop} is too small for scale {scale}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return (hr[top * scale:(top + ch) * scale, left * scale:(left + cw) * scale],
            lr[top:top + ch, left:left + cw])


def load_pairs(pairs_manifest: str | os.PathLike) -> tuple[Path, dict]:
    """Read a pairs manifest; return (base folder, manifest)."""
    path = Path(pairs_manifest)
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run the degrade step first")
    return path.parent.parent, json.loads(path.read_text())


def read_pair(base: Path, pair: dict) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) of one evaluation pair, each checked against the pairs manifest's sha256."""
    for key in ("lr", "hr"):
        verify_checksum(base / pair[key], pair.get(f"{key}_sha256"))
    return read_image(base / pair["lr"]), read_image(base / pair["hr"])
