"""Rule train_rrdb: an RRDBNet with L1, ECDP's (the RRDB row; ECDP's encoder is its trunk) or
SRDiff's (its frozen encoder)."""
import torch

from ecdp.launch import run_training_job, training_device
from ecdp.nets.rrdb import rrdbnet_config
from ecdp.stages import train_rrdbnet


def main(*, dataset: str, output: str, scale: int, net: dict, cfg: dict, seed: int,
         device: str, threads: int) -> None:
    """net: {variant ("ecdp" or "srdiff"), size {features, growth, blocks}, bicubic_skip}."""
    torch.set_num_threads(threads)
    config = rrdbnet_config(net["variant"], net["size"], bicubic_skip=net["bicubic_skip"])
    meta = train_rrdbnet(dataset=dataset, out=output, scale=scale, net=config, cfg=cfg,
                         seed=seed, device=training_device(device))
    print(f"RRDBNet ({net['variant']}'s) {meta['params']} parameters; budget {meta['budget']}")


if "snakemake" in globals():
    run_training_job(snakemake, main)
