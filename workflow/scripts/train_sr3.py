"""Rule train_sr3: SR3 from scratch (bicubic LR concatenated to x_t, continuous noise levels)."""
from pathlib import Path

import torch

from baselines.train import train_sr3
from ecdp.logs import logged
from ecdp.launch import torchrun_workers, training_device

DIFFUSION_KEYS = ("steps", "beta_start", "beta_end")


def main(*, dataset_manifest: str, output: str, scale: int, sr3: dict, cfg: dict, seed: int,
         device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    net = {k: v for k, v in sr3.items() if k not in DIFFUSION_KEYS}
    diffusion = {k: sr3[k] for k in DIFFUSION_KEYS}
    meta = train_sr3(dataset_root=Path(dataset_manifest).parent, out=output, scale=scale,
                     net=net, diffusion=diffusion, cfg=cfg, seed=seed,
                     device=training_device(device))
    print(f"SR3 {meta['params']} parameters; budget {meta['budget']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        if not torchrun_workers(snakemake.resources.processes):
            main(dataset_manifest=snakemake.input.dataset, output=snakemake.output[0],
                 scale=int(snakemake.wildcards.scale), sr3=dict(snakemake.params.sr3),
                 cfg=dict(snakemake.params.cfg), seed=snakemake.params.seed,
                 device=snakemake.resources.device,
                 threads=snakemake.threads // snakemake.resources.processes)
