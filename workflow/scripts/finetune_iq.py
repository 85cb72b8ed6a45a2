"""Rule finetune_iq: the "++" variants, SRDiff or SR3 fine-tuned with L_IQ through their own
ancestral sampler (checkpointed per step)."""
import json
from pathlib import Path

import torch

from baselines.train import finetune_iq
from ecdp.launch import run_training_job, training_device


def main(*, dataset: str, upstream: str, weights: str, output: str, scale: int, kind: str,
         cfg: dict, seed: int, device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    status = json.loads(Path(weights).read_text())["vgg19"]
    meta = finetune_iq(kind=kind, dataset=dataset, checkpoint=upstream, out=output,
                       weights_status=status, cfg=cfg, seed=seed, device=training_device(device))
    print(f"{kind}++ x{scale} with VGG19 {meta['vgg']}; budget {meta['budget']}")


if "snakemake" in globals():
    run_training_job(snakemake, main)
