"""Inference time per image, NFE and peak memory of one method, measured alike for every method.

Every method runs on the same LR input (the first evaluation image), after ``warmup`` untimed
runs; each timed run is synchronised on CUDA. Peak memory is ``max_memory_allocated`` on CUDA
and the growth of the process's peak resident set size on CPU (both in MiB).
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time

import torch

from .rng import image_generator

__all__ = ["cpu_name", "time_method"]


def cpu_name() -> str:
    """The CPU's model and core count (/proc/cpuinfo on Linux), e.g. "AMD EPYC, 2 cores";
    the platform's name elsewhere."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        name = models[0] if models else name
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_method(method, lr: torch.Tensor, *, warmup: int = 1, repeats: int = 3,
                batch: int = 1, seed: int = 0, name: str = "timing") -> dict:
    """Seconds per image (median and all runs), NFE and peak memory for ``method`` on ``lr``.

    lr: (1, 3, h, w) on the method's device; it is repeated to ``batch`` images per call.
    """
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"timing needs repeats >= 1, warmup >= 0, batch >= 1; got "
                         f"{repeats}, {warmup}, {batch}")
    device = lr.device
    x = lr.expand(batch, -1, -1, -1).contiguous()
    rss_before = _peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    runs, nfe = [], None
    with torch.no_grad():
        for i in range(warmup + repeats):
            generator = image_generator(seed + i, name, device=device)
            _sync(device)
            start = time.perf_counter()
            _, nfe = method.super_resolve(x, generator=generator, image=name)
            _sync(device)
            if i >= warmup:
                runs.append((time.perf_counter() - start) / batch)
    if device.type == "cuda":
        peak, kind = (torch.cuda.max_memory_allocated(device) - base) / 2**20, "cuda allocated"
    else:
        peak, kind = max(_peak_rss_mib() - rss_before, 0.0), "cpu peak RSS growth"
    return {
        "seconds": statistics.median(runs), "seconds_runs": runs, "nfe": int(nfe),
        "warmup": warmup, "repeats": repeats, "batch": batch,
        "lr_size": list(lr.shape[-2:]), "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else cpu_name()),
        "threads": torch.get_num_threads(), "peak_mib": peak, "peak_kind": kind,
    }
