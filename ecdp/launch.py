"""Multi-GPU training from a workflow rule: re-run the rule's own script under ``torchrun``.

A training script calls ``torchrun_workers(gpus)`` first. With more than one GPU asked for (and
not already inside torchrun), it starts ``python -m torch.distributed.run --standalone
--nproc_per_node=gpus <the same script>``, waits, and returns True: the caller stops there. Each
worker runs the script again (Snakemake's script preamble restores the job), sees ``LOCAL_RANK``,
and trains on ``training_device``: its own GPU, with gradients averaged across ranks by
``ecdp.train.train_loop``; rank 0 writes the state and the checkpoint.
"""
from __future__ import annotations

import os
import subprocess
import sys

from .train import init_distributed, resolve_device

__all__ = ["torchrun_command", "torchrun_workers", "training_device", "training_kwargs",
           "run_training_job"]


def torchrun_command(gpus: int, script: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={gpus}", script]


def torchrun_workers(gpus: int, script: str | None = None) -> bool:
    """Run ``script`` (default: the running one) in ``gpus`` torchrun workers; True when done
    there, False when this process should train itself (one GPU, CPU, or already a worker)."""
    if gpus <= 1 or "LOCAL_RANK" in os.environ:
        return False
    cmd = torchrun_command(gpus, script or sys.argv[0])
    print(f"launching {gpus} workers: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, stdout=sys.stdout, stderr=sys.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun workers failed with exit code {proc.returncode}")
    return True


def training_device(device: str) -> str:
    """The device of this process: joins the process group under torchrun, and picks the
    worker's own GPU there (``cuda:LOCAL_RANK``)."""
    _, size = init_distributed()
    device = resolve_device(device)
    if size > 1 and device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    return device


def training_kwargs(job) -> dict:
    """A training script's ``main`` keywords from its Snakemake job (``ecdp plan`` builds the
    same): the dataset's manifest, the ``upstream`` checkpoint and the ``weights`` status when
    the rule has them, the output, the scale, every param (the model's science, ``seed``), the
    device and the threads of each process."""
    kwargs = {"dataset": job.input.dataset, "output": job.output[0],
              "scale": int(job.wildcards.scale), "device": job.resources.device,
              "threads": max(1, job.threads // job.resources.processes),
              **dict(job.params.items())}
    for name in ("upstream", "weights"):
        if name in job.input.keys():
            kwargs[name] = job.input[name]
    return kwargs


def run_training_job(job, main) -> None:
    """Run a training rule: into its log, in ``training.gpus`` torchrun workers when more than
    one (each worker runs the script again and lands here), ``main(**training_kwargs(job))``."""
    from .logs import logged

    with logged(job.log[0]):
        if not torchrun_workers(job.resources.processes):
            main(**training_kwargs(job))
