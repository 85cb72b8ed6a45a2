"""Rule train_sr3: SR3 from scratch (bicubic LR concatenated to x_t, continuous noise levels)."""
import torch

from baselines.train import train_sr3
from ecdp.launch import run_training_job, training_device

DIFFUSION_KEYS = ("steps", "beta_start", "beta_end")


def main(*, dataset: str, output: str, scale: int, sr3: dict, cfg: dict, seed: int,
         device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    net = {k: v for k, v in sr3.items() if k not in DIFFUSION_KEYS}
    diffusion = {k: sr3[k] for k in DIFFUSION_KEYS}
    meta = train_sr3(dataset=dataset, out=output, scale=scale, net=net, diffusion=diffusion,
                     cfg=cfg, seed=seed, device=training_device(device))
    print(f"SR3 {meta['params']} parameters; budget {meta['budget']}")


if "snakemake" in globals():
    run_training_job(snakemake, main)
