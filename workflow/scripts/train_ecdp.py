"""Rules train_ecdp_stage1 (score matching) and train_ecdp_stage2 (L_IQ)."""
import json
from pathlib import Path

import torch

from ecdp.logs import logged
from ecdp.stages import train_ecdp_stage1, train_ecdp_stage2
from ecdp.launch import torchrun_workers, training_device


def main(*, dataset_manifest: str, output: str, scale: int, cfg: dict, seed: int, device: str,
         threads: int, rrdb: str | None = None, model: dict | None = None,
         stage1: str | None = None, weights: str | None = None, k=None) -> None:
    torch.set_num_threads(threads)
    root = Path(dataset_manifest).parent
    device = training_device(device)
    if stage1 is None:
        meta = train_ecdp_stage1(dataset_root=root, rrdb_checkpoint=rrdb, out=output, scale=scale,
                                 model_cfg=model, cfg=cfg, seed=seed, device=device)
    else:
        status = json.loads(Path(weights).read_text())["vgg19"]
        meta = train_ecdp_stage2(dataset_root=root, stage1_checkpoint=stage1, out=output,
                                 weights_status=status, cfg=cfg, k=k, seed=seed, device=device)
    print(f"ECDP stage {meta['stage']}: {meta['params']} parameters, sigma {meta['sigma']:.5f}, "
          f"k {meta['k']}; budget {meta['budget']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        stage2 = "stage1" in snakemake.input.keys()
        if not torchrun_workers(snakemake.resources.processes):
            main(dataset_manifest=snakemake.input.dataset, output=snakemake.output[0],
                 scale=int(snakemake.wildcards.scale), cfg=dict(snakemake.params.cfg),
                 seed=snakemake.params.seed, device=snakemake.resources.device,
                 threads=snakemake.threads // snakemake.resources.processes,
                 rrdb=None if stage2 else snakemake.input.rrdb,
                 model=None if stage2 else dict(snakemake.params.model),
                 stage1=snakemake.input.stage1 if stage2 else None,
                 weights=snakemake.input.weights if stage2 else None,
                 k=snakemake.params.k if stage2 else None)
