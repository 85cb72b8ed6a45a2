"""Rule train_rrdb: RRDBNet with L1 (the RRDB row; ECDP's encoder is its trunk)."""
import torch

from ecdp.logs import logged
from ecdp.stages import train_rrdbnet
from ecdp.launch import torchrun_workers, training_device


def main(*, dataset_manifest: str, output: str, scale: int, net: dict, cfg: dict, seed: int,
         device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    meta = train_rrdbnet(dataset_root=dataset_manifest.rsplit("/", 1)[0], out=output,
                         scale=scale, net=net, cfg=cfg, seed=seed, device=training_device(device))
    print(f"RRDBNet {meta['params']} parameters; budget {meta['budget']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        if not torchrun_workers(snakemake.params.gpus):
            main(dataset_manifest=snakemake.input[0], output=snakemake.output[0],
                 scale=int(snakemake.wildcards.scale), net=dict(snakemake.params.net),
                 cfg=dict(snakemake.params.cfg), seed=snakemake.params.seed,
                 device=snakemake.params.device, threads=snakemake.threads)
