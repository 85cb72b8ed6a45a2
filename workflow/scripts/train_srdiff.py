"""Rule train_srdiff: SRDiff's denoiser on the frozen encoder of the trained RRDBNet."""
import torch

from baselines.train import train_srdiff
from ecdp.launch import run_training_job, training_device


def main(*, dataset: str, upstream: str, output: str, scale: int, net: dict, cfg: dict,
         seed: int, device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    meta = train_srdiff(dataset=dataset, rrdb_checkpoint=upstream, out=output, net=net,
                        cfg=cfg, seed=seed, device=training_device(device))
    print(f"SRDiff x{scale}: {meta['params']} parameters; budget {meta['budget']}")


if "snakemake" in globals():
    run_training_job(snakemake, main)
