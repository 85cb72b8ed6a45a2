"""Rule frontier_run: one trained diffusion experiment (one training seed) under every solver."""
import json
from pathlib import Path

import torch

from baselines import method_for
from ecdp.checkpoint import load_checkpoint
from ecdp.data.io import atomic_write_text
from ecdp.model import ECDP
from ecdp.sampling import parse_sampling
from ecdp.frontier import frontier_grid, run_frontier, summarize_frontier
from ecdp.logs import logged
from ecdp.train import resolve_device


def main(*, pairs: str, model: str, weights: str, output: str, experiment: str,
         train_seed: int, method: dict, sampling: dict, family: str, frontier: dict,
         scale: int, device: str, threads: int, student: bool = False) -> None:
    """frontier: {solvers, nfe, reference_tolerance, limit}; sampling: the experiment's own
    (its tabled row, marked in the table); a ``student`` runs only as it was distilled."""
    torch.set_num_threads(threads)
    device = resolve_device(device)
    sampled = method_for(method, scale=scale, checkpoint=model, device=device, sampling=sampling)
    specs = [] if student else frontier_grid(family, solvers=frontier["solvers"],
                                             nfe=frontier["nfe"])
    teacher = None
    if student:  # measured against its teacher's solves (the checkpoint names the teacher)
        distilled = load_checkpoint(model)["meta"]["distilled"]
        teacher = (ECDP.load(distilled["teacher"], device=device),
                   parse_sampling(distilled["cfg"]["teacher"] or None))
    rows = run_frontier(sampled.model, family, pairs, specs=specs, tabled=sampled.value,
                        reference_tolerance=frontier["reference_tolerance"],
                        lpips_weights=json.loads(Path(weights).read_text())["alexnet"],
                        limit=frontier["limit"], experiment=experiment, train_seed=train_seed,
                        teacher=teacher)
    atomic_write_text(output, rows.to_csv(index=False))
    print(summarize_frontier(rows)[["solver", "setting", "nfe", "seconds", "psnr", "lr_psnr",
                                    "rms_to_reference"]].to_string(index=False))


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, model=snakemake.input.model,
             weights=snakemake.input.weights, output=snakemake.output[0],
             experiment=snakemake.wildcards.experiment,
             train_seed=int(snakemake.wildcards.train_seed),
             method=dict(snakemake.params.method), sampling=dict(snakemake.params.sampling),
             family=snakemake.params.family, frontier=dict(snakemake.params.frontier),
             scale=int(snakemake.params.scale), device=snakemake.resources.device,
             threads=snakemake.threads, student=bool(snakemake.params.student))
