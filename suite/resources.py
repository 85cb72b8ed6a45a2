"""What a workflow job asks a scheduler for, from the configured sizes (never from the site).

The same SLURM profile serves the CPU default and the paper presets because every request
follows from the configuration; the profile keeps only site facts (account, partitions).

- **GPUs**: a training job asks for ``training.gpus`` (one torchrun process each), a sampling
  or timing job for ``evaluation.gpus``; none when the device is ``cpu``.
- **Wall time** (minutes): the job's floating-point work (``baselines.costs`` counts each
  network's FLOPs per pixel; training x3 for the backward pass, L_IQ x4 for the solve and its
  adjoint or recomputation) over a nominal throughput, ``GPU_FLOPS`` per GPU or ``CPU_FLOPS``
  per thread, times ``MARGIN``, plus ``START_MINUTES`` for start-up.
- **Host memory** (MB): ``PROCESS_MB`` per process (and ``CUDA_MB`` with a GPU), the training
  images the job holds in memory (uint8), and on a CPU device the network's working memory,
  ``WORKING_BYTES_PER_FLOP`` x the FLOPs of one forward pass of the job's largest batch (the
  activations a training step keeps for its backward pass: 0.007-0.019 bytes per FLOP for
  these networks, PyTorch's MemTracker on fake tensors), times ``MARGIN``.

Both grow linearly with Snakemake's ``attempt``: a job SLURM stopped for time or memory is
retried with twice, then three times the request, and a training resumes from its saved state,
so a retry never repeats finished steps. The throughputs are nominal, not measurements of your
hardware: ``ecdp plan`` measures (``--set-resources RULE:runtime=MIN`` overrides one rule).
"""
from __future__ import annotations

import math

__all__ = ["GPU_FLOPS", "CPU_FLOPS", "PROCESS_MB", "CUDA_MB", "MARGIN", "START_MINUTES",
           "WORKING_BYTES_PER_FLOP", "TRAIN_FACTOR", "IQ_FACTOR", "ASSUMED_ADAPTIVE_NFE",
           "training_flops",
           "sampling_flops", "request"]

GPU_FLOPS = 2.0e13   # per GPU: an A100-class GPU on these convolutional nets (nominal)
CPU_FLOPS = 2.5e10   # per thread: measured 2.6e10 here (ecdp plan, paper-size ECDP stage 1)
PROCESS_MB = 2000    # one Python process with PyTorch and the suite (about 1 GB measured)
CUDA_MB = 3000       # what a CUDA context adds on the host
MARGIN = 2.0
START_MINUTES = 10
WORKING_BYTES_PER_FLOP = 0.02
TRAIN_FACTOR = 3     # forward + backward
IQ_FACTOR = 4        # L_IQ: the solve, then the adjoint solve (or recomputation) and backward
# An adaptive ECDP solve has no NFE until the model is trained: what the default CPU run's
# trained ECDP took with the released dopri5 solve.
ASSUMED_ADAPTIVE_NFE = 87


def training_flops(encoder: float, denoiser: float, *, steps: int, batch_size: int,
                   patch_size: int, chain: int | None = None) -> float:
    """FLOPs of a training run; ``encoder`` and ``denoiser`` per HR pixel (``forward_flops``),
    ``chain``: the network evaluations of the sampling chain L_IQ backpropagates through."""
    pixels = batch_size * patch_size ** 2
    if chain:
        return steps * pixels * IQ_FACTOR * (encoder + chain * denoiser)
    return steps * pixels * TRAIN_FACTOR * (encoder + denoiser)


def sampling_flops(encoder: float, denoiser: float, *, pixels: list[int], nfe: int,
                   runs: int = 1) -> float:
    """FLOPs of sampling every image (HR ``pixels`` each) ``runs`` times at ``nfe``."""
    return runs * sum(pixels) * (encoder + nfe * denoiser)


def request(*, flops: float, forward_flops: float, gpus: int = 0, threads: int = 1,
            processes: int = 1, resident_bytes: float = 0.0, attempt: int = 1) -> dict:
    """{"runtime": minutes, "mem_mb": MB} for a job of ``flops`` on ``gpus`` GPUs (0: CPU, at
    ``threads`` threads); ``forward_flops``: one forward pass of its largest batch (working
    memory on a CPU); ``resident_bytes``: what it holds in memory (training images)."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    speed = GPU_FLOPS * gpus if gpus else CPU_FLOPS * max(1, threads)
    minutes = START_MINUTES + MARGIN * flops / speed / 60
    working = 0.0 if gpus else WORKING_BYTES_PER_FLOP * forward_flops
    mb = (processes * (PROCESS_MB + (CUDA_MB if gpus else 0))
          + MARGIN * (resident_bytes + working) / 2 ** 20)
    return {"runtime": int(math.ceil(attempt * minutes)), "mem_mb": int(math.ceil(attempt * mb))}
