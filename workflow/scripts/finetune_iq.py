"""Rule finetune_iq: the "++" variants, SRDiff or SR3 fine-tuned with L_IQ through their own
ancestral sampler (checkpointed per step)."""
import json
from pathlib import Path

import torch

from baselines.train import finetune_iq
from ecdp.logs import logged
from ecdp.launch import torchrun_workers, training_device


def main(*, dataset_manifest: str, base: str, weights: str, output: str, kind: str, cfg: dict,
         seed: int, device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    status = json.loads(Path(weights).read_text())["vgg19"]
    meta = finetune_iq(kind=kind, dataset_root=Path(dataset_manifest).parent, checkpoint=base,
                       out=output, weights_status=status, cfg=cfg, seed=seed,
                       device=training_device(device))
    print(f"{kind}++ with VGG19 {meta['vgg']}; budget {meta['budget']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        if not torchrun_workers(snakemake.resources.processes):
            main(dataset_manifest=snakemake.input.dataset, base=snakemake.input.base,
                 weights=snakemake.input.weights, output=snakemake.output[0],
                 kind=snakemake.params.kind, cfg=dict(snakemake.params.cfg),
                 seed=snakemake.params.seed, device=snakemake.resources.device,
                 threads=snakemake.threads // snakemake.resources.processes)
