"""Rule train_ecdp_distill: a student of few network evaluations from a trained ECDP (ours)."""
import json
from pathlib import Path

import torch

from ecdp.launch import run_training_job, training_device
from ecdp.stages import train_ecdp_distilled


def main(*, dataset: str, output: str, scale: int, cfg: dict, nfe: int, seed: int, device: str,
         threads: int, upstream: str, weights: str) -> None:
    torch.set_num_threads(threads)
    status = json.loads(Path(weights).read_text())["vgg19"]
    meta = train_ecdp_distilled(dataset=dataset, teacher_checkpoint=upstream, out=output,
                                weights_status=status, cfg=cfg, nfe=nfe, seed=seed,
                                device=training_device(device))
    print(f"ECDP student: {nfe} NFE by {meta['distilled']['sampling']['solver']}; budget "
          f"{meta['budget']}")


if "snakemake" in globals():
    run_training_job(snakemake, main)
