"""Rule sampling_study_run: every solver of the study on one trained ECDP experiment."""
import json
from pathlib import Path

import torch

from baselines import method_for
from ecdp.data.io import atomic_write_text
from ecdp.logs import logged
from ecdp.study import sampling_study, study_grid, summarize_study
from ecdp.train import resolve_device


def main(*, pairs: str, model: str, weights: str, output: str, experiment: str, method: dict,
         sampling: dict, study: dict, scale: int, device: str, threads: int) -> None:
    """study: {tolerances, solvers, nfe, reference_tolerance, limit}; sampling: the experiment's
    (its temperature and memory format; the solvers are the study's)."""
    torch.set_num_threads(threads)
    device = resolve_device(device)
    sampled = method_for(method, scale=scale, checkpoint=model, device=device, sampling=sampling)
    grid = study_grid(tolerances=study["tolerances"], solvers=study["solvers"], nfe=study["nfe"])
    rows = sampling_study(sampled.model, pairs, solvers=grid, experiment=experiment,
                          temperature=sampled.value.temperature,
                          reference_tolerance=study["reference_tolerance"],
                          lpips_weights=json.loads(Path(weights).read_text())["alexnet"],
                          limit=study["limit"])
    atomic_write_text(output, rows.to_csv(index=False))
    print(summarize_study(rows)[["solver", "setting", "nfe", "seconds", "psnr", "lr_psnr",
                                 "rms_to_reference"]].to_string(index=False))


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, model=snakemake.input.model,
             weights=snakemake.input.weights, output=snakemake.output[0],
             experiment=snakemake.wildcards.experiment, method=dict(snakemake.params.method),
             sampling=dict(snakemake.params.sampling), study=dict(snakemake.params.study),
             scale=int(snakemake.params.scale), device=snakemake.resources.device,
             threads=snakemake.threads)
