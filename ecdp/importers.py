"""Weights from the releases into this suite's networks (key names and architecture facts only).

Each ``*_release_state`` function renames the parameters of a released network's state dict to
this suite's names; loading the result with ``strict=True`` proves the architectures agree.

- ECDP (Yuan-Yutao/ECDP, 1696fa1): ``lib.model.unet.UNet`` -> ``ScoreUNet``,
  ``lib.model.rrdb.RRDBEncoder`` -> ``RRDBTrunk``, ``lib.model.rrdbnet.RRDBNet`` -> ``RRDBNet``.
- SRDiff (LeiaLi/SRDiff, 5628508): ``models.diffsr_modules.Unet`` -> ``SRDiffUNet``,
  ``models.diffsr_modules.RRDBNet`` -> ``RRDBNet(trunk_conv=True)``.
- SR3 (Janspiry/Image-Super-Resolution-via-Iterative-Refinement, 01d27a7):
  ``model.sr3_modules.unet.UNet`` -> ``SR3.unet`` (a ``ScoreUNet``).

``import_srdiff`` / ``import_sr3`` turn a published checkpoint file into this suite's checkpoint
(``ecdp import-checkpoint``), with the architecture read off the weights' shapes.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

__all__ = ["ecdp_unet_state", "ecdp_trunk_state", "ecdp_rrdbnet_state", "srdiff_rrdbnet_state",
           "srdiff_unet_state", "sr3_unet_state", "import_srdiff", "import_sr3", "IMPORTERS",
           "file_sha256"]


def _rename(state: dict, rules: list[tuple[str, str]], *, drop: tuple[str, ...] = ()) -> dict:
    """Apply the first matching (regex, replacement) to every key; keys matching ``drop`` go."""
    out = {}
    for key, value in state.items():
        if any(re.fullmatch(d, key) for d in drop):
            continue
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise KeyError(f"no rule for released parameter {key!r}")
    return out


def _strip_prefix(state: dict, prefix: str) -> dict:
    """The entries under ``prefix``, without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _singular(key: str) -> str:
    """The releases' ``downs.`` / ``ups.`` lists are our ``down.`` / ``up.``."""
    return re.sub(r"^(down|up)s\.", r"\1.", key)


# ---------------------------------------------------------------------- ECDP

_ECDP_BLOCK = [(r"(\w+)\.(\d+)\.time_in\.(weight|bias)", r"\1.\2.time.\3"),
               (r"(\w+)\.(\d+)\.extra_in\.network\.(weight|bias)", r"\1.\2.cond.\3"),
               (r"(\w+)\.(\d+)\.(conv1|conv2|skip)\.network\.(weight|bias)", r"\1.\2.\3.\4"),
               (r"(\w+)\.(\d+)\.(norm1|norm2)\.(weight|bias)", r"\1.\2.\3.\4")]


def ecdp_unet_state(state: dict) -> dict:
    """Released ``UNet`` -> ``ScoreUNet`` (time embedding MLP, blocks, strided/up convs, output)."""
    return _rename({_singular(k): v for k, v in state.items()}, [
        (r"time_in\.(0|2)\.(weight|bias)", r"time_mlp.mlp.\1.\2"),
        (r"in_conv\.network\.(weight|bias)", r"conv_in.\1"),
        (r"down\.(\d+)\.downconv\.network\.(weight|bias)", r"down.\1.\2"),
        (r"up\.(\d+)\.upconv\.1\.network\.(weight|bias)", r"up.\1.1.\2"),
        (r"out_conv\.0\.(weight|bias)", r"out.0.\1"),
        (r"out_conv\.2\.network\.(weight|bias)", r"out.2.\1"),
        *_ECDP_BLOCK])


def ecdp_trunk_state(state: dict) -> dict:
    """Released ``RRDBEncoder`` (conv_first, blocks.i.block{1,2,3}.conv{1..5}) -> ``RRDBTrunk``."""
    def dense(m):
        return f"blocks.{m[1]}.blocks.{int(m[2]) - 1}.convs.{int(m[3]) - 1}.{m[4]}"
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"blocks\.(\d+)\.block(\d)\.conv(\d)\.(weight|bias)", key)
        if m:
            out[dense(m)] = value
        elif re.fullmatch(r"conv_first\.(weight|bias)", key):
            out[key] = value
        else:
            raise KeyError(f"no rule for released parameter {key!r}")
    return out


def ecdp_rrdbnet_state(state: dict) -> dict:
    """Released ECDP ``RRDBNet`` (rrdb.*, final.*) -> ``RRDBNet(trunk_conv=False)``."""
    out = {f"trunk.{k}": v for k, v in ecdp_trunk_state(_strip_prefix(state, "rrdb.")).items()}
    convs = sorted({int(k.split(".")[1]) for k in state if k.startswith("final.")})
    *ups, hr, last = convs  # final: [Upsample, Conv, LReLU] x log2(s), Conv, LReLU, Conv
    names = {**{i: f"upconvs.{j}" for j, i in enumerate(ups)}, hr: "hr_conv", last: "conv_last"}
    for key, value in state.items():
        if key.startswith("final."):
            _, index, leaf = key.split(".")
            out[f"{names[int(index)]}.{leaf}"] = value
        elif not key.startswith("rrdb."):
            raise KeyError(f"no rule for released parameter {key!r}")
    return out


# ---------------------------------------------------------------------- SRDiff

def srdiff_rrdbnet_state(state: dict) -> dict:
    """Released SRDiff ``RRDBNet`` (ESRGAN names) -> ``RRDBNet(trunk_conv=True)``."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)", key)
        u = re.fullmatch(r"upconv(\d)\.(weight|bias)", key)
        if m:
            out[f"trunk.blocks.{m[1]}.blocks.{int(m[2]) - 1}.convs.{int(m[3]) - 1}.{m[4]}"] = value
        elif u:
            out[f"upconvs.{int(u[1]) - 1}.{u[2]}"] = value
        elif key.split(".")[0] in ("conv_first",):
            out[f"trunk.{key}"] = value
        elif key.split(".")[0] in ("trunk_conv", "conv_last"):
            out[key] = value
        elif key.startswith("HRconv."):
            out["hr_conv." + key.split(".", 1)[1]] = value
        else:
            raise KeyError(f"no rule for released parameter {key!r}")
    return out


def srdiff_unet_state(state: dict) -> dict:
    """Released SRDiff ``Unet`` -> ``SRDiffUNet``."""
    block = [(r"(down|up)\.(\d+)\.(0|1)\.mlp\.1\.(weight|bias)", r"\1.\2.\3.time.1.\4"),
             (r"(down|up)\.(\d+)\.(0|1)\.block(1|2)\.block\.1\.(weight|bias)",
              r"\1.\2.\3.block\4.1.\5"),
             (r"(down|up)\.(\d+)\.(0|1)\.res_conv\.(weight|bias)", r"\1.\2.\3.skip.\4"),
             (r"mid\.(\d)\.mlp\.1\.(weight|bias)", r"mid.\1.time.1.\2"),
             (r"mid\.(\d)\.block(1|2)\.block\.1\.(weight|bias)", r"mid.\1.block\2.1.\3"),
             (r"mid\.(\d)\.res_conv\.(weight|bias)", r"mid.\1.skip.\2")]
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^mid_block(\d)\.", lambda m: f"mid.{int(m[1]) - 1}.", _singular(key))
        renamed[key] = value
    return _rename(renamed, [
        (r"cond_proj\.(weight|bias)", r"cond_proj.\1"),
        (r"mlp\.(0|2)\.(weight|bias)", r"time_mlp.\1.\2"),
        (r"down\.(\d+)\.2\.conv\.1\.(weight|bias)", r"down.\1.2.1.\2"),
        (r"up\.(\d+)\.2\.conv\.0\.(weight|bias)", r"up.\1.2.\2"),
        (r"final_conv\.0\.block\.1\.(weight|bias)", r"out.0.1.\1"),
        (r"final_conv\.1\.(weight|bias)", r"out.1.\1"),
        *block])


# ---------------------------------------------------------------------- SR3

def sr3_unet_state(state: dict) -> dict:
    """Released SR3 ``UNet`` -> ``ScoreUNet`` (its ``downs[0]`` is our ``conv_in``)."""
    renamed = {}
    for key, value in state.items():
        m = re.match(r"downs\.(\d+)\.(.*)", key)
        if m:
            key = "conv_in." + m[2] if m[1] == "0" else f"down.{int(m[1]) - 1}.{m[2]}"
        renamed[_singular(key)] = value
    attn = {k.rsplit(".attn.", 1)[0] for k in renamed if ".attn." in k}

    def block_prefix(m):  # a block with attention is our _AttnBlock: its ResBlock is .block
        return f"{m[1]}.{m[2]}." + ("block." if f"{m[1]}.{m[2]}" in attn else "")
    out = {}
    for key, value in renamed.items():
        rules = [(r"noise_level_mlp\.(1|3)\.(weight|bias)",
                  lambda m: f"time_mlp.mlp.{int(m[1]) - 1}.{m[2]}"),
                 (r"conv_in\.(weight|bias)", lambda m: key),
                 (r"(down|up|mid)\.(\d+)\.res_block\.noise_func\.noise_func\.0\.(weight|bias)",
                  lambda m: block_prefix(m) + f"time.{m[3]}"),
                 (r"(down|up|mid)\.(\d+)\.res_block\.block(1|2)\.block\.0\.(weight|bias)",
                  lambda m: block_prefix(m) + f"norm{m[3]}.{m[4]}"),
                 (r"(down|up|mid)\.(\d+)\.res_block\.block(1|2)\.block\.3\.(weight|bias)",
                  lambda m: block_prefix(m) + f"conv{m[3]}.{m[4]}"),
                 (r"(down|up|mid)\.(\d+)\.res_block\.res_conv\.(weight|bias)",
                  lambda m: block_prefix(m) + f"skip.{m[3]}"),
                 (r"(down|up|mid)\.(\d+)\.attn\.(norm|qkv)\.(weight|bias)",
                  lambda m: f"{m[1]}.{m[2]}.attn.{m[3]}.{m[4]}"),
                 (r"(down|up|mid)\.(\d+)\.attn\.out\.(weight|bias)",
                  lambda m: f"{m[1]}.{m[2]}.attn.proj.{m[3]}"),
                 (r"down\.(\d+)\.conv\.(weight|bias)", lambda m: f"down.{m[1]}.{m[2]}"),
                 (r"up\.(\d+)\.conv\.(weight|bias)", lambda m: f"up.{m[1]}.1.{m[2]}"),
                 (r"final_conv\.block\.0\.(weight|bias)", lambda m: f"out.0.{m[1]}"),
                 (r"final_conv\.block\.3\.(weight|bias)", lambda m: f"out.2.{m[1]}")]
        for pattern, name in rules:
            m = re.fullmatch(pattern, key)
            if m:
                out[name(m)] = value
                break
        else:
            raise KeyError(f"no rule for released parameter {key!r}")
    return out


# ---------------------------------------------------------------------- published checkpoints

def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
            "file": Path(path).name, "sha256": file_sha256(path)}


def import_srdiff(path: str | os.PathLike) -> tuple[dict, dict]:
    """A released SRDiff checkpoint (``model_ckpt_steps_*.ckpt``: {"state_dict": {"model":
    GaussianDiffusion state}}) -> (meta, weights) of this suite's SRDiff; the architecture (RRDB
    features / blocks / growth, U-Net base and multipliers, T, scale) is read off the shapes."""
    ckpt = _load_released(path)
    try:
        state = ckpt["state_dict"]["model"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: not an SRDiff checkpoint (no state_dict.model)") from err
    denoise = _strip_prefix(state, "denoise_fn.")
    rrdb = _strip_prefix(state, "rrdb.")
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
    from baselines.srdiff import SRDiff
    from ecdp.nets import RRDBNet
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
    denoise = _strip_prefix(state, "denoise_fn.")
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
    from baselines.sr3 import SR3
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
