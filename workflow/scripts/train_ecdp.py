"""Rules train_ecdp_stage1 (score matching, from the RRDBNet) and train_ecdp_stage2 (L_IQ, from
the stage-1 model)."""
import json
from pathlib import Path

import torch

from ecdp.launch import run_training_job, training_device
from ecdp.stages import train_ecdp_stage1, train_ecdp_stage2


def main(*, dataset: str, output: str, scale: int, cfg: dict, seed: int, device: str,
         threads: int, upstream: str, model: dict | None = None, weights: str | None = None,
         k=None) -> None:
    """Stage 1 takes the ``model`` config; stage 2 the VGG19 ``weights`` status and ``k``."""
    torch.set_num_threads(threads)
    device = training_device(device)
    if model is not None:
        meta = train_ecdp_stage1(dataset=dataset, rrdb_checkpoint=upstream, out=output,
                                 scale=scale, model_cfg=model, cfg=cfg, seed=seed, device=device)
    else:
        status = json.loads(Path(weights).read_text())["vgg19"]
        meta = train_ecdp_stage2(dataset=dataset, stage1_checkpoint=upstream, out=output,
                                 weights_status=status, cfg=cfg, k=k, seed=seed, device=device)
    print(f"ECDP stage {meta['stage']}: {meta['params']} parameters, sigma {meta['sigma']:.5f}, "
          f"k {meta['k']}; budget {meta['budget']}")


if "snakemake" in globals():
    run_training_job(snakemake, main)
