"""Rule super_resolve: run one experiment's method over the evaluation pairs for one seed."""
from pathlib import Path

import torch

from baselines import build_method
from ecdp.evaluate import super_resolve_pairs
from ecdp.logs import logged


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def main(*, pairs: str, output: str, experiment: dict, seed: int, scale: int,
         device: str) -> None:
    method = build_method(experiment["method"], scale=scale)
    out = Path(output).with_suffix("")
    manifest = super_resolve_pairs(method, pairs, out, seed=seed, device=resolve_device(device))
    print(f"{len(manifest['images'])} images -> {out}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, output=snakemake.output[0],
             experiment=dict(snakemake.params.experiment), seed=int(snakemake.wildcards.seed),
             scale=int(snakemake.wildcards.scale), device=snakemake.params.device)
