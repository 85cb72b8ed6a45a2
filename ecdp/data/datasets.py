"""Datasets as manifests: which HR images form each split, with checksums and a load transform.

``prepare_dataset(name, root, **options)`` makes ``root`` ready (download, extract or write) and
writes ``root/manifest.json`` last, atomically: a manifest on disk means a complete dataset.

Manifest::

    {"dataset": name, "transform": null | {"kind": "center_square" | "celeba", "size": N},
     "splits": {"train": [{"name", "path", "sha256"?}], "val": [...], "test": [...]},
     "official_lr": {"4": {"test": {name: path}}}, "sources": {...recorded hashes...}}

Paths are relative to ``root`` unless absolute (a user's own folder stays where it is).
"""
from __future__ import annotations

import json
import logging
import math
import os
from importlib import resources as importlib_resources
from pathlib import Path

import numpy as np
import torch
import yaml

from ..degradation import imresize
from . import sample_photos
from .download import download, extract
from .io import (IMAGE_SUFFIXES, list_images, read_image, sha256_file, verify_checksum,
                 write_json, write_png)

__all__ = ["DATASETS", "NOMINAL_SPLITS", "prepare_dataset", "load_manifest", "load_hr",
           "split_entries", "split_sizes", "split_pixels"]

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def _sources() -> dict:
    text = importlib_resources.files("ecdp.data").joinpath("sources.yaml").read_text()
    return yaml.safe_load(text)


def _entry(name: str, path: Path, root: Path, *, checksum: bool = True) -> dict:
    rel = os.path.relpath(path, root) if path.is_relative_to(root) else str(path)
    entry = {"name": name, "path": rel}
    if checksum:
        entry["sha256"] = sha256_file(path)
    return entry


def _folder_entries(folder: Path, root: Path, *, checksum: bool = True,
                    recursive: bool = False) -> list[dict]:
    if recursive:
        if not folder.is_dir():
            raise FileNotFoundError(f"dataset folder {folder} does not exist")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"dataset folder {folder} holds no images")
    else:
        files = list_images(folder)
    return [_entry(p.relative_to(folder).with_suffix("").as_posix().replace("/", "_"), p, root,
                   checksum=checksum) for p in files]


def _fetch(dataset: str, key: str, root: Path, sources: dict, progress: bool) -> Path:
    """Download (or find) one archive of ``dataset`` and extract it under ``root/raw``."""
    spec = {**_sources()[dataset]["files"][key], **sources.get(key, {})}
    archive_name = spec.get("archive_name") or (Path(spec["url"]).name if spec.get("url") else key)
    archive = root.parent.parent / "downloads" / dataset / archive_name
    if spec.get("url"):
        download(spec["url"], archive, sha256=spec.get("sha256"), progress=progress)
    elif not archive.exists():
        raise FileNotFoundError(f"{dataset}: no download URL for {key!r}; place {archive_name} at "
                                f"{archive} (see ecdp/data/sources.yaml)")
    got = sha256_file(archive)
    if spec.get("sha256") is None:
        log.warning("%s: no pinned checksum for %s; recorded sha256 %s", dataset, archive, got)
    extracted = extract(archive, root / "raw" / dataset / key)  # DIV2K and Flickr2K share keys
    folder = extracted / spec["folder"]
    if not folder.is_dir():
        raise FileNotFoundError(f"{dataset}: expected folder {spec['folder']} inside {archive}")
    return folder, {"url": spec.get("url"), "archive": str(archive), "sha256": got}


def _prepare_sample_photos(root: Path, **_) -> dict:
    splits = {}
    for split, names in sample_photos.SPLITS.items():
        splits[split] = []
        for name in names:
            path = root / split / f"{name}.png"
            write_png(path, sample_photos.load_photo(name))
            splits[split].append(_entry(name, path, root))
    return {"splits": splits, "transform": None, "sources": {"scikit-image": _skimage_version()}}


def _skimage_version() -> str:
    import skimage
    return skimage.__version__


def _prepare_div2k(root: Path, *, flickr2k: bool = True, sources: dict | None = None,
                   flickr2k_sources: dict | None = None, progress: bool = True, **_) -> dict:
    """DIV2K's train and valid HR and official x4 LR, and Flickr2K's HR when ``flickr2k``
    (DF2K); ``sources`` / ``flickr2k_sources``: datasets.div2k / datasets.flickr2k.sources."""
    sources = sources or {}
    recorded = {}
    train, recorded["train_hr"] = _fetch("div2k", "train_hr", root, sources, progress)
    valid, recorded["valid_hr"] = _fetch("div2k", "valid_hr", root, sources, progress)
    valid_lr, recorded["valid_lr_x4"] = _fetch("div2k", "valid_lr_x4", root, sources, progress)
    train_entries = _folder_entries(train, root, checksum=False)
    if flickr2k:
        extra = _prepare_flickr2k(root, sources=flickr2k_sources, progress=progress)
        train_entries += extra["splits"]["train"]
        recorded.update(extra["sources"])
    test = _folder_entries(valid, root)
    # Official LR files are named 0801x4.png for HR 0801.png.
    lr = {e["name"]: os.path.relpath(valid_lr / f"{e['name']}x4.png", root) for e in test}
    missing = [n for n, p in lr.items() if not (root / p).exists()]
    if missing:
        raise FileNotFoundError(f"div2k: official LR X4 images missing for {missing[:5]}")
    return {"splits": {"train": train_entries, "val": test[:10], "test": test},
            "transform": None, "official_lr": {"4": {"test": lr}}, "sources": recorded}


def _prepare_flickr2k(root: Path, *, sources: dict | None = None, progress: bool = True,
                      **_) -> dict:
    folder, recorded = _fetch("flickr2k", "train_hr", root, sources or {}, progress)
    return {"splits": {"train": _folder_entries(folder, root, checksum=False)},
            "transform": None, "sources": {"flickr2k": recorded}}


def _celeba_partition(root: Path, sources: dict, progress: bool) -> dict[str, int] | None:
    """CelebA's official partition file (``list_eval_partition.txt``: "000001.jpg 0" for train,
    1 val, 2 test) when its source has a URL or the file was placed in the downloads folder."""
    spec = {**_sources()["celeba"]["files"]["partition"], **sources.get("partition", {})}
    path = root.parent.parent / "downloads" / "celeba" / spec["archive_name"]
    if spec.get("url"):
        download(spec["url"], path, sha256=spec.get("sha256"), progress=progress)
    if not path.exists():
        return None
    partition = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            name, _, split = line.partition(" ")
            if split.strip() not in ("0", "1", "2"):
                raise ValueError(f"{path}, line {number}: expected '<image> 0|1|2', got {line!r}")
            partition[Path(name).stem] = int(split)
    return partition


def _prepare_celeba(root: Path, *, size: int = 160, sources: dict | None = None,
                    progress: bool = True, **_) -> dict:
    sources = sources or {}
    folder, recorded = _fetch("celeba", "aligned", root, sources, progress)
    entries = _folder_entries(folder, root, checksum=False)
    partition = _celeba_partition(root, sources, progress)
    if partition is None:
        # The official partition is contiguous by index: 1-162770 train, -182637 val, the rest.
        splits = {"train": entries[:162770], "val": entries[162770:182637],
                  "test": entries[182637:]}
    else:
        missing = [e["name"] for e in entries if e["name"] not in partition]
        if missing:
            raise ValueError(f"celeba: {len(missing)} images are not in the partition file "
                             f"(first: {missing[:3]})")
        splits = {split: [e for e in entries if partition[e["name"]] == i]
                  for i, split in enumerate(("train", "val", "test"))}
    for e in splits["test"] + splits["val"]:
        e["sha256"] = sha256_file(root / e["path"])
    return {"splits": splits, "transform": {"kind": "celeba", "size": size},
            "sources": {"aligned": recorded,
                        "partition": "file" if partition is not None else "index ranges"}}


def _prepare_imagenet(root: Path, *, path: str | None = None, size: int = 256, **_) -> dict:
    if not path:
        raise ValueError("imagenet: set datasets.imagenet.path to a local ImageNet folder with "
                         "train/ and val/ subfolders (ImageNet cannot be downloaded automatically)")
    src = Path(path).expanduser()
    test = _folder_entries(src / "val", root, recursive=True)
    # Training validates on 10 of the test images (Figure 8's curve), as DIV2K's first 10.
    return {"splits": {"train": _folder_entries(src / "train", root, checksum=False,
                                                recursive=True),
                       "val": test[:10], "test": test},
            "transform": {"kind": "center_square", "size": size}, "sources": {"path": str(src)}}


def _prepare_folder(root: Path, *, path: str | None = None, **_) -> dict:
    if not path:
        raise ValueError("folder: set datasets.folder.path to a folder of HR images")
    return {"splits": {"test": _folder_entries(Path(path).expanduser(), root)},
            "transform": None, "sources": {"path": str(Path(path).expanduser())}}


DATASETS = {
    "sample-photos": _prepare_sample_photos,
    "div2k": _prepare_div2k,
    "flickr2k": _prepare_flickr2k,
    "celeba": _prepare_celeba,
    "imagenet": _prepare_imagenet,
    "folder": _prepare_folder,
}


# What each split of a public dataset holds before it is prepared here: (images, HR size
# (height, width) of each; None: the dataset's ``size`` squared). DIV2K's and Flickr2K's 2K images
# are 2040 px on the long side, 1356 typical on the short; CelebA and ImageNet are resized squares.
_DIV2K_SIZE = (1356, 2040)
NOMINAL_SPLITS = {
    "div2k": {"train": (800, _DIV2K_SIZE), "val": (10, _DIV2K_SIZE), "test": (100, _DIV2K_SIZE)},
    "flickr2k": {"train": (2650, _DIV2K_SIZE)},
    "celeba": {"train": (162770, None), "val": (19867, None), "test": (19962, None)},
    "imagenet": {"train": (1281167, None), "val": (10, None), "test": (50000, None)},
}


def split_sizes(name: str, split: str, *, root: str | os.PathLike | None = None,
                options: dict | None = None) -> list[tuple[int, int]]:
    """HR (height, width) of every image of a split, after the dataset's transform: read from
    the prepared dataset under ``root`` when it is there, else ``NOMINAL_SPLITS`` (DIV2K with
    ``flickr2k: true`` adds Flickr2K's training images). ``options``: ``datasets.<name>``."""
    from PIL import Image

    options = options or {}
    manifest = Path(root) / MANIFEST if root is not None else None
    if manifest is not None and manifest.exists():
        data = json.loads(manifest.read_text())
        size = (data.get("transform") or {}).get("size")
        return [(size, size) if size else Image.open(manifest.parent / e["path"]).size[::-1]
                for e in data["splits"].get(split, [])]
    if name == "sample-photos":
        return [sample_photos.load_photo(n).shape[:2] for n in sample_photos.SPLITS.get(split, ())]
    if name == "folder":  # test images only; none until datasets.folder.path is set
        folder = Path(options.get("path") or "").expanduser()
        if split != "test" or not options.get("path") or not folder.is_dir():
            return []
        return [Image.open(p).size[::-1] for p in list_images(folder)]
    if name not in NOMINAL_SPLITS:
        raise ValueError(f"dataset {name!r} is not prepared here ({manifest}): prepare it first "
                         f"(ecdp prepare-dataset) so its image sizes are known")
    parts = [NOMINAL_SPLITS[name]]
    if name == "div2k" and split == "train" and options.get("flickr2k", True):
        parts.append(NOMINAL_SPLITS["flickr2k"])
    sizes = []
    for part in parts:
        count, each = part.get(split, (0, None))
        side = options.get("size", 256)
        sizes += [tuple(each or (side, side))] * count
    return sizes


def split_pixels(name: str, split: str, **kwargs) -> list[int]:
    """HR pixels of every image of a split (``split_sizes``)."""
    return [h * w for h, w in split_sizes(name, split, **kwargs)]


def prepare_dataset(name: str, root: str | os.PathLike, **options) -> dict:
    """Make dataset ``name`` ready under ``root``; write and return its manifest."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"dataset": name, "official_lr": {}, **DATASETS[name](root, **options)}
    write_json(root / MANIFEST, manifest)
    return manifest


def load_manifest(root: str | os.PathLike) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: prepare the dataset first")
    return json.loads(path.read_text())


def split_entries(manifest: dict, split: str) -> list[dict]:
    entries = manifest["splits"].get(split)
    if not entries:
        raise ValueError(f"dataset {manifest['dataset']!r} has no {split!r} split "
                         f"(it has {', '.join(manifest['splits'])})")
    return entries


def _center_square_resize(image: np.ndarray, size: int, *, top: int | None = None) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    y0 = (h - side) // 2 if top is None else top
    x0 = (w - side) // 2
    crop = image[y0:y0 + side, x0:x0 + side]
    if side == size:
        return np.ascontiguousarray(crop)
    x = torch.from_numpy(crop.astype(np.float64)).permute(2, 0, 1)
    y = imresize(x, size / side)[..., :size, :size]
    return torch.clamp(torch.floor(y + 0.5), 0, 255).permute(1, 2, 0).numpy().astype(np.uint8)


def load_hr(root: str | os.PathLike, entry: dict, transform: dict | None) -> np.ndarray:
    """Read one HR image of a manifest as (H, W, 3) uint8, with the dataset's transform applied;
    the file must match the manifest's checksum where it has one."""
    verify_checksum(Path(root) / entry["path"], entry.get("sha256"))
    image = read_image(Path(root) / entry["path"])
    if transform is None:
        return image
    if transform["kind"] == "center_square":
        return _center_square_resize(image, transform["size"])
    if transform["kind"] == "celeba":  # aligned 178x218 faces: square crop at row 20, as SRFlow
        return _center_square_resize(image, transform["size"], top=20 if image.shape[0] >= 198
                                     else None)
    raise ValueError(f"unknown transform {transform['kind']!r}")
