"""Rule super_resolve: run one experiment's method over the evaluation pairs for one seed."""
from pathlib import Path

import torch

from baselines import method_for
from ecdp.evaluate import super_resolve_pairs
from ecdp.logs import logged
from ecdp.tiling import Tiled
from ecdp.train import resolve_device


def main(*, pairs: str, output: str, method: dict, seed: int, scale: int, device: str,
         threads: int, model: str | None = None, sampling: dict | None = None,
         tile: dict | None = None) -> None:
    """method: {method, k}; sampling: the experiment's resolved sampling config; tile:
    evaluation.tile (size None: whole images)."""
    torch.set_num_threads(threads)
    device = resolve_device(device)
    resolver = method_for(method, scale=scale, checkpoint=model, device=device, sampling=sampling)
    if tile and tile.get("size"):
        resolver = Tiled(resolver, tile=tile["size"], overlap=tile["overlap"])
    out = Path(output).with_suffix("")
    manifest = super_resolve_pairs(resolver, pairs, out, seed=seed, device=device)
    for image in manifest["images"]:
        print(f"{image['name']}: {image['seconds']:.2f} s, NFE {image['nfe']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, output=snakemake.output[0],
             method=dict(snakemake.params.method), seed=int(snakemake.wildcards.sample_seed),
             scale=int(snakemake.wildcards.scale), device=snakemake.resources.device,
             threads=snakemake.threads, model=snakemake.input.get("model") or None,
             sampling=snakemake.params.sampling, tile=snakemake.params.tile)
