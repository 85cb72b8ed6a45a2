"""Running a method over evaluation pairs, and per-image metrics (tidy rows).

``super_resolve_pairs`` writes ``out/NAME.png`` for every pair and, last, ``out.json`` (the
manifest with seconds and network evaluations per image). ``evaluate_sr`` returns one row per
(image, seed, protocol) with the protocol's columns and the LPIPS weights used.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .data.io import read_image, sha256_file, verify_checksum, write_json, write_png
from .data.pairs import load_pairs, read_pair
from .metrics import PROTOCOLS, QUALITY, load_lpips, quality
from .rng import image_generator

__all__ = ["to_tensor", "to_uint8", "super_resolve_pairs", "evaluate_sr", "summarize"]


def to_tensor(image: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, clamped and rounded."""
    return torch.floor(x[0].detach().clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).cpu().numpy()


def _batches(pairs: list[dict], lrs: list[torch.Tensor], size: int):
    """Consecutive runs of same-shaped LR images, at most ``size`` long."""
    batch = []
    for pair, lr in zip(pairs, lrs):
        if batch and (len(batch) == size or batch[0][1].shape != lr.shape):
            yield batch
            batch = []
        batch.append((pair, lr))
    if batch:
        yield batch


def super_resolve_pairs(method, pairs_manifest: str | os.PathLike, out: str | os.PathLike, *,
                        seed: int, device: str | torch.device = "cpu",
                        progress: bool = True) -> dict:
    """Every pair's SR image and, last, the manifest. A method with ``batch`` > 1 (ECDP with a
    fixed-step solver) solves up to that many same-sized images at once, each with its own
    generator, so every image gets what it would alone; seconds are per image."""
    base, pairs = load_pairs(pairs_manifest)
    out = Path(out)
    images = []
    lrs = [to_tensor(read_image(base / pair["lr"]), device) for pair in pairs["pairs"]]
    size = getattr(method, "batch", 1)
    bar = tqdm(total=len(lrs), desc=f"{method.name} seed {seed}", disable=not progress)
    for batch in _batches(pairs["pairs"], lrs, size):
        names = [pair["name"] for pair, _ in batch]
        generators = [image_generator(seed, name, device=device) for name in names]
        lr = torch.cat([x for _, x in batch])
        start = time.perf_counter()
        with torch.no_grad():
            sr, nfe = method.super_resolve(lr, generator=generators if size > 1 else generators[0],
                                           image=names[0] if len(names) == 1 else ",".join(names))
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / len(batch)
        for i, name in enumerate(names):
            path = out / f"{name}.png"
            write_png(path, to_uint8(sr[i:i + 1]))
            images.append({"name": name, "path": path.name, "sha256": sha256_file(path),
                           "seconds": seconds, "nfe": int(nfe), "batch": len(batch)})
        bar.update(len(batch))
    bar.close()
    manifest = {"method": method.name, "sample_seed": seed, "device": str(device),
                "threads": torch.get_num_threads(),
                "pairs": str(pairs_manifest), "images": images,
                "sampling": getattr(method, "sampling", None),
                "tiling": getattr(method, "tiling", None),
                **getattr(method, "provenance", {})}
    write_json(out.with_suffix(".json"), manifest)
    return manifest


def evaluate_sr(pairs_manifest: str | os.PathLike, sr_manifests: list[str | os.PathLike], *,
                experiment: str, protocols: list[str], lpips_weights: dict,
                progress: bool = True) -> pd.DataFrame:
    """One row per (image, seed, protocol): psnr, ssim, lpips, lr_psnr, protocol columns."""
    base, pairs = load_pairs(pairs_manifest)
    scale = pairs["scale"]
    lpips_model, lpips_status = load_lpips(lpips_weights)
    rows = []
    for sr_path in sr_manifests:
        sr_manifest = json.loads(Path(sr_path).read_text())
        by_name = {i["name"]: i for i in sr_manifest["images"]}
        missing = [p["name"] for p in pairs["pairs"] if p["name"] not in by_name]
        if missing:
            raise ValueError(f"{sr_path}: no SR image for {missing}")
        for pair in tqdm(pairs["pairs"], desc=f"evaluate {experiment}", disable=not progress):
            lr_u8, hr_u8 = read_pair(base, pair)
            info = by_name[pair["name"]]
            image_path = Path(sr_path).with_suffix("") / info["path"]
            verify_checksum(image_path, info.get("sha256"), manifest=sr_path)
            sr = to_tensor(read_image(image_path))
            lr, hr = to_tensor(lr_u8), to_tensor(hr_u8)
            if sr.shape != hr.shape:
                raise ValueError(f"{sr_path}: SR image {info['path']} has shape "
                                 f"{tuple(sr.shape)}, HR has {tuple(hr.shape)}")
            for name in protocols:
                protocol = PROTOCOLS[name](scale)
                rows.append({
                    "experiment": experiment, "image": pair["name"],
                    "sample_seed": sr_manifest["sample_seed"],
                    "train_seed": sr_manifest.get("train_seed"),
                    **quality(sr, hr, lr, scale=scale, protocol=protocol,
                              lpips_model=lpips_model),
                    "seconds": info["seconds"], "nfe": info["nfe"],
                    **protocol.columns(), "lpips_weights": lpips_status,
                    "scale": scale,
                    "region": region_of(pairs, sr_manifest.get("tiling")),
                    "hr_size": "x".join(str(v) for v in pair["hr_size"]),
                    "lr_sha256": pair["lr_sha256"],
                    "weights": sr_manifest.get("weights", "none"),
                    "budget": sr_manifest.get("budget", "none"),
                    "params": sr_manifest.get("params", float("nan")),
                    "sampled_on": sampled_on(sr_manifest),
                })
    return pd.DataFrame(rows)


def sampled_on(sr_manifest: dict) -> str:
    """Where an SR manifest's images were made: device and CPU threads."""
    threads = sr_manifest.get("threads")
    return sr_manifest.get("device", "not recorded") + (
        f", {threads} thread{'s' * (threads > 1)}" if threads else "")


def region_of(pairs: dict, tiling: dict | None = None) -> str:
    """What part of the test images the pairs hold (whole images, or central crops) and
    whether they were sampled in tiles; each image's HR size is its ``hr_size`` column, and
    ``summarize`` describes them all (``describe_sizes``)."""
    if pairs.get("crop"):
        region = f"central HR crops of at most {pairs['crop']} px (evaluation.crop)"
    else:
        region = "full images"
    if tiling:
        region += f", sampled in LR tiles of {tiling['tile']} px, overlap {tiling['overlap']} px"
    return region


def describe_sizes(sizes) -> str:
    """Every evaluated image's HR size ("HxW", one per image): each size with its count when
    there are at most four, else the count and the ranges of heights and widths."""
    counts = Counter(sizes)
    n = sum(counts.values())
    if len(counts) <= 4:
        return "HR " + ", ".join(f"{size} ({c} image{'s' * (c > 1)})"
                                 for size, c in sorted(counts.items()))
    hs, ws = zip(*((int(v) for v in size.split("x")) for size in counts))
    return (f"HR {min(hs)}-{max(hs)} x {min(ws)}-{max(ws)} px ({n} images, {len(counts)} "
            f"sizes)")


def _regions(rows: pd.DataFrame) -> str:
    """The region line of one experiment: its region(s) and the sizes of every image."""
    images = rows.drop_duplicates("image")
    text = "; ".join(dict.fromkeys(images["region"]))
    if "hr_size" in images:
        text += f", {describe_sizes(images['hr_size'])}"
    return text


METRICS = (*QUALITY, "seconds", "nfe")  # per image, as summarize averages them


def summarize(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean over images for each (experiment, protocol, training seed, sample seed); then over
    sample seeds for each training seed; then mean and spread over training seeds.

    Columns per metric: ``_mean``; ``_train_std`` (std, ddof 1, of the training-seed means;
    NaN with one training seed); ``_sample_std`` (std, ddof 0, of the sample-seed means within
    a training seed, averaged over training seeds; NaN with one sample seed); ``_std``, the
    spread the tables print: the training-seed one when there are several, else the sample-seed
    one; ``_replicates``, the training-seed means joined by ";" (the tables' significance tests
    read them).
    """
    keys = ["experiment", "protocol_name"]
    per_image = per_image.assign(train_seed=per_image.get("train_seed", pd.Series(
        float("nan"), index=per_image.index)).fillna(-1).astype(int))
    per_run = per_image.groupby(keys + ["train_seed", "sample_seed"],
                                sort=False)[list(METRICS)].mean()
    per_train = per_run.groupby(level=keys + ["train_seed"], sort=False).mean()
    by_exp = per_train.groupby(level=keys, sort=False)
    mean = by_exp.mean().add_suffix("_mean")
    train_std = by_exp.std(ddof=1).add_suffix("_train_std")
    by_train = per_run.groupby(level=keys + ["train_seed"], sort=False)
    sample_std = (by_train.std(ddof=0).where(by_train.count() > 1)  # one sample: not measured
                  .groupby(level=keys, sort=False).mean().add_suffix("_sample_std"))
    n_train = by_exp.size().rename("n_train_seeds")
    std = pd.DataFrame({f"{m}_std": train_std[f"{m}_train_std"].where(
        n_train > 1, sample_std[f"{m}_sample_std"]) for m in METRICS})
    replicates = by_exp.agg(lambda v: ";".join(f"{x:.6g}" for x in v)).add_suffix("_replicates")
    described = [c for c in ("lpips_weights", "weights", "budget", "sampled_on")
                 if c in per_image]
    first = per_image.groupby(keys, sort=False)[described].first()
    if "region" in per_image:
        first["region"] = pd.Series({key: _regions(rows) for key, rows in
                                     per_image.groupby(keys, sort=False)})
    if "params" in per_image:
        mean["params_m_mean"] = per_image.groupby(keys, sort=False)["params"].first() / 1e6
        mean["params_m_std"] = 0.0
    seeds = per_image.groupby(keys, sort=False)["sample_seed"].nunique().rename("n_sample_seeds")
    images = per_image.groupby(keys, sort=False)["image"].nunique().rename("n_images")
    return pd.concat([mean, std, train_std, sample_std, replicates, n_train, seeds, images,
                      first], axis=1).reset_index()
