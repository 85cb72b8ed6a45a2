"""Checkpoints: atomic save, strict load with ``weights_only=True``, resolved config inside.

A checkpoint is a dict of plain types and tensors::

    {"format": 1, "step": int, "meta": {...resolved config, sigma, budget...},
     "state": raw weights, "ema": EMA weights}

Training state (optimizer, scheduler, history) is kept in a separate file beside the declared
outputs (``save_training_state``), so a killed job resumes instead of starting over.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .data.io import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "restore", "atomic_torch_save",
           "CheckpointError"]

FORMAT = 1


class CheckpointError(ValueError):
    pass


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | os.PathLike, *, step: int, meta: dict, state: dict,
                    ema: dict) -> None:
    atomic_torch_save({"format": FORMAT, "step": int(step), "meta": meta, "state": state,
                       "ema": ema}, path)


def load_checkpoint(path: str | os.PathLike, *, weights: str = "ema") -> dict:
    """{"step", "meta", "state"} with ``state`` the chosen weights ("ema" or "raw")."""
    path = Path(path)
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an ECDP-suite checkpoint (format "
                              f"{ckpt.get('format') if isinstance(ckpt, dict) else '?'})")
    return {"step": ckpt["step"], "meta": ckpt["meta"],
            "state": ckpt["ema"] if weights == "ema" else ckpt["state"]}


def restore(model: torch.nn.Module, ckpt: dict, *, weights: str, path=None):
    """Load a checkpoint's weights strictly into ``model``; record where they came from in
    ``model.provenance`` (weights, step, training budget). Returns the model in eval mode."""
    model.load_state_dict(ckpt["state"], strict=True)
    label = weights if ckpt["meta"].get("ema", True) else "raw (no EMA kept)"
    model.provenance = {"weights": f"{label} step {ckpt['step']}",
                        "params": sum(p.numel() for p in model.parameters()),
                        "budget": ckpt["meta"]["budget"],
                        **({"train_seed": ckpt["meta"]["train_seed"]} if "train_seed" in ckpt["meta"]
                           else {}),
                        **({"checkpoint": str(path)} if path is not None else {})}
    return model.eval()
