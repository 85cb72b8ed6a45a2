"""Rule train_srdiff: SRDiff's denoiser on the frozen encoder of the trained RRDBNet."""
from pathlib import Path

import torch

from baselines.train import train_srdiff
from ecdp.logs import logged
from ecdp.launch import torchrun_workers, training_device


def main(*, dataset_manifest: str, rrdb: str, output: str, net: dict, cfg: dict, seed: int,
         device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    meta = train_srdiff(dataset_root=Path(dataset_manifest).parent, rrdb_checkpoint=rrdb,
                        out=output, net=net, cfg=cfg, seed=seed, device=training_device(device))
    print(f"SRDiff {meta['params']} parameters; budget {meta['budget']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        if not torchrun_workers(snakemake.resources.processes):
            main(dataset_manifest=snakemake.input.dataset, rrdb=snakemake.input.rrdb,
                 output=snakemake.output[0], net=dict(snakemake.params.net),
                 cfg=dict(snakemake.params.cfg), seed=snakemake.params.seed,
                 device=snakemake.resources.device,
                 threads=snakemake.threads // snakemake.resources.processes)
