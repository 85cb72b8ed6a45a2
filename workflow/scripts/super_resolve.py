"""Rule super_resolve: run one experiment's method over the evaluation pairs for one seed."""
from pathlib import Path

import torch

from baselines import method_for
from ecdp.evaluate import super_resolve_pairs
from ecdp.logs import logged
from ecdp.train import resolve_device


def main(*, pairs: str, output: str, experiment: dict, seed: int, scale: int, device: str,
         threads: int, model: str | None = None, sample_steps: int | None = None) -> None:
    torch.set_num_threads(threads)
    device = resolve_device(device)
    method = method_for(experiment, scale=scale, checkpoint=model, device=device,
                        sample_steps=sample_steps)
    out = Path(output).with_suffix("")
    manifest = super_resolve_pairs(method, pairs, out, seed=seed, device=device)
    for image in manifest["images"]:
        print(f"{image['name']}: {image['seconds']:.2f} s, NFE {image['nfe']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, output=snakemake.output[0],
             experiment=dict(snakemake.params.experiment), seed=int(snakemake.wildcards.seed),
             scale=int(snakemake.wildcards.scale), device=snakemake.params.device,
             threads=snakemake.threads, model=snakemake.input.get("model") or None,
             sample_steps=snakemake.params.sample_steps)
