"""Rule train_rrdb: an RRDBNet with L1, ECDP's (the RRDB row; ECDP's encoder is its trunk) or
SRDiff's (its frozen encoder)."""
import torch

from ecdp.logs import logged
from ecdp.nets.rrdb import rrdbnet_config
from ecdp.stages import train_rrdbnet
from ecdp.launch import torchrun_workers, training_device


def main(*, dataset_manifest: str, output: str, scale: int, net: dict, cfg: dict, seed: int,
         device: str, threads: int) -> None:
    """net: {variant ("ecdp" or "srdiff"), size {features, growth, blocks}, bicubic_skip}."""
    torch.set_num_threads(threads)
    config = rrdbnet_config(net["variant"], net["size"], bicubic_skip=net["bicubic_skip"])
    meta = train_rrdbnet(dataset_root=dataset_manifest.rsplit("/", 1)[0], out=output,
                         scale=scale, net=config, cfg=cfg, seed=seed,
                         device=training_device(device))
    print(f"RRDBNet ({net['variant']}'s) {meta['params']} parameters; budget {meta['budget']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        if not torchrun_workers(snakemake.resources.processes):
            main(dataset_manifest=snakemake.input[0], output=snakemake.output[0],
                 scale=int(snakemake.wildcards.scale), net=dict(snakemake.params.net),
                 cfg=dict(snakemake.params.cfg), seed=snakemake.params.seed,
                 device=snakemake.resources.device,
                 threads=snakemake.threads // snakemake.resources.processes)
