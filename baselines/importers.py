"""Published SRDiff and SR3 checkpoints into this suite's checkpoints (``ecdp import-checkpoint``).

The releases' key names are renamed by ``ecdp.importers``; the architecture (channels, blocks,
taps, schedule) is read off the weights' shapes, and loading with ``strict=True`` proves it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ecdp.data.io import sha256_file
from ecdp.importers import sr3_unet_state, srdiff_rrdbnet_state, srdiff_unet_state, strip_prefix
from ecdp.nets import RRDBNet

from .sr3 import SR3
from .srdiff import SRDiff

__all__ = ["import_srdiff", "import_sr3", "IMPORTERS"]


def _load_released(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:  # plain tensors and dicts only: never unpickle code from a downloaded file
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err})") from err


def _provenance(path, method: str, release: str) -> dict:
    return {"source": "published checkpoint", "method": method, "release": release,
            "file": Path(path).name, "sha256": sha256_file(path)}


def import_srdiff(path: str | os.PathLike) -> tuple[dict, dict]:
    """A released SRDiff checkpoint (``model_ckpt_steps_*.ckpt``: {"state_dict": {"model":
    GaussianDiffusion state}}) -> (meta, weights) of this suite's SRDiff; the architecture (RRDB
    features / blocks / growth, U-Net base and multipliers, T, scale) is read off the shapes."""
    ckpt = _load_released(path)
    try:
        state = ckpt["state_dict"]["model"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: not an SRDiff checkpoint (no state_dict.model)") from err
    denoise = strip_prefix(state, "denoise_fn.")
    rrdb = strip_prefix(state, "rrdb.")
    if not denoise or not rrdb:
        raise ValueError(f"{path}: an SRDiff checkpoint needs denoise_fn.* and rrdb.* weights")
    blocks = len({k.split(".")[1] for k in rrdb if k.startswith("RRDB_trunk.")})
    features = rrdb["conv_first.weight"].shape[0]
    growth = rrdb["RRDB_trunk.0.RDB1.conv1.weight"].shape[0]
    ups = len([k for k in rrdb if re.fullmatch(r"upconv\d\.weight", k)])
    dim = denoise["mlp.0.weight"].shape[1]
    levels = len({k.split(".")[1] for k in denoise if k.startswith("downs.")})
    mults = [denoise[f"downs.{i}.0.block1.block.1.weight"].shape[0] // dim for i in range(levels)]
    scale = 2 ** ups
    taps = list(range(2, blocks + 1, 3))  # the release conditions on cond[2::3]
    steps = int(state["betas"].numel())
    net = {"taps": taps, "dim": dim, "mults": mults, "steps": steps}
    rrdb_net = {"features": features, "growth": growth, "blocks": blocks, "trunk_conv": True,
                "init_scale": 1.0, "clamp": True, "bicubic_skip": False}
    model = SRDiff(rrdb=RRDBNet(scale=scale, **rrdb_net), **net)
    weights = {**{f"rrdb.{k}": v for k, v in srdiff_rrdbnet_state(rrdb).items()},
               **{f"unet.{k}": v for k, v in srdiff_unet_state(denoise).items()}}
    model.load_state_dict(weights, strict=True)
    step = int(ckpt.get("global_step", 0))
    meta = {"kind": "srdiff", "scale": scale, "net": net, "rrdb_net": rrdb_net,
            "params": sum(p.numel() for p in model.parameters()),
            "provenance": _provenance(path, "srdiff", "LeiaLi/SRDiff 5628508"), "ema": False,
            "budget": f"published SRDiff checkpoint, step {step} ({Path(path).name})"}
    return meta, model.state_dict()


def import_sr3(path: str | os.PathLike, *, scale: int, norm_groups: int = 32,
               dropout: float = 0.2) -> tuple[dict, dict]:
    """A released SR3 generator (``I*_E*_gen.pth``: the GaussianDiffusion state) -> (meta,
    weights) of this suite's SR3. Channels, blocks, attention and the (linear) schedule are read
    off the weights; the scale (SR3 sees the LR only upsampled), GroupNorm groups and dropout
    cannot be, and are arguments (release defaults: 32 and the 16 -> 128 config's 0.2; its
    64 -> 512 config uses 16 groups and no dropout; both are x8)."""
    state = _load_released(path)
    if not isinstance(state, dict) or "denoise_fn.noise_level_mlp.1.weight" not in state:
        raise ValueError(f"{path}: not an SR3 generator state dict (no denoise_fn.noise_level_mlp)")
    denoise = strip_prefix(state, "denoise_fn.")
    inner = denoise["noise_level_mlp.1.weight"].shape[1]
    down_blocks = sorted({int(k.split(".")[1]) for k in denoise if k.startswith("downs.")
                          and ".res_block." in k})
    down_convs = sorted({int(k.split(".")[1]) for k in denoise
                         if re.fullmatch(r"downs\.\d+\.conv\.weight", k)})
    blocks, channels, attention = [], [], []
    count, level = 0, 0
    for i in range(1, max(down_blocks + down_convs) + 1):
        if i in down_convs:
            blocks.append(count)
            count, level = 0, level + 1
        else:
            if count == 0:
                channels.append(denoise[f"downs.{i}.res_block.block1.block.3.weight"].shape[0])
                if f"downs.{i}.attn.qkv.weight" in denoise:
                    attention.append(level)
            count += 1
    blocks.append(count)
    betas = state["betas"].double()
    steps = betas.numel()
    linear = torch.linspace(float(betas[0]), float(betas[-1]), steps, dtype=torch.float64)
    if not torch.allclose(betas, linear, rtol=1e-4, atol=1e-9):
        raise ValueError(f"{path}: its beta schedule is not linear; only SR3's linear schedule "
                         "is supported")
    net = {"channels": channels, "blocks": blocks, "time_channels": inner, "dropout": dropout,
           "attention_levels": attention, "mid_attention": "mid.0.attn.qkv.weight" in denoise,
           "norm_groups": norm_groups}
    diffusion = {"steps": steps, "beta_start": float(betas[0]), "beta_end": float(betas[-1])}
    model = SR3(scale=scale, net=net, **diffusion)
    weights = {f"unet.{k}": v for k, v in sr3_unet_state(denoise).items()}
    model.load_state_dict(weights, strict=True)
    meta = {"kind": "sr3", "scale": scale, "net": net, "diffusion": diffusion,
            "params": sum(p.numel() for p in model.parameters()),
            "provenance": _provenance(path, "sr3", "Janspiry/Image-Super-Resolution-via-"
                                                   "Iterative-Refinement 01d27a7"), "ema": False,
            "budget": f"published SR3 checkpoint ({Path(path).name})"}
    return meta, model.state_dict()


IMPORTERS = {"srdiff": import_srdiff, "sr3": import_sr3}
