"""Weights from the releases into this suite's networks (key names and architecture facts only).

Each ``*_release_state`` function renames the parameters of a released network's state dict to
this suite's names; loading the result with ``strict=True`` proves the architectures agree.

- ECDP (Yuan-Yutao/ECDP, 1696fa1): ``lib.model.unet.UNet`` -> ``ScoreUNet``,
  ``lib.model.rrdb.RRDBEncoder`` -> ``RRDBTrunk``, ``lib.model.rrdbnet.RRDBNet`` -> ``RRDBNet``.
- SRDiff (LeiaLi/SRDiff, 5628508): ``models.diffsr_modules.Unet`` -> ``SRDiffUNet``,
  ``models.diffsr_modules.RRDBNet`` -> ``RRDBNet(trunk_conv=True)``.
- SR3 (Janspiry/Image-Super-Resolution-via-Iterative-Refinement, 01d27a7):
  ``model.sr3_modules.unet.UNet`` -> ``SR3.unet`` (a ``ScoreUNet``).

``baselines.importers`` turns a published SRDiff or SR3 checkpoint file into this suite's
checkpoint with these renamings (``ecdp import-checkpoint``).
"""
from __future__ import annotations

import re

import torch

__all__ = ["ecdp_unet_state", "ecdp_trunk_state", "ecdp_rrdbnet_state", "srdiff_rrdbnet_state",
           "srdiff_unet_state", "sr3_unet_state", "strip_prefix"]


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


def strip_prefix(state: dict, prefix: str) -> dict:
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
    out = {f"trunk.{k}": v for k, v in ecdp_trunk_state(strip_prefix(state, "rrdb.")).items()}
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
