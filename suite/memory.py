"""The memory plan: each job's projected peak device memory, and which GPU it needs.

``memory_plan(jobs, config, workdir, costs=...)`` takes the jobs of ``ecdp plan`` (Snakemake's
DAG) and, for every training, sampling and timing job, asks ``costs`` (``baselines.costs``: the
method's network built under fake tensors, every tensor of a step followed by PyTorch's
MemTracker) for the tracked peak of

- a training step at the configured batch (per process, ``training.gpus``) and patch, with the
  optimizer state and the EMA copy (an L_IQ step: one network evaluation's forward and backward
  plus VGG19's, as the adjoint and the checkpointed chain recompute one evaluation at a time);
- a network evaluation without gradients on the largest test image (sampling), or the first one
  (timing), after ``evaluation.crop``.

The planned peak is ``tracked x (1 + ALLOCATOR) + CONTEXT_GIB``: the CUDA context and cuDNN
workspaces, and the caching allocator's rounding and fragmentation, which fake tensors do not
see (an assumption; ``benchmarks/gpu_check.py`` prints the measured peak beside the planned one).
A sampling job that does not fit ``device_gib`` gets the largest LR tile of ``TILES`` that does
(``evaluation.tile``), since tiles are sampled one at a time.
"""
from __future__ import annotations

import math
from pathlib import Path

from ecdp.data.datasets import split_sizes

__all__ = ["memory_plan", "format_memory", "planned_bytes", "ALLOCATOR", "CONTEXT_GIB", "TILES",
           "GPU_SIZES", "test_sizes"]

GIB = 2 ** 30
ALLOCATOR = 0.1          # caching-allocator rounding and fragmentation
CONTEXT_GIB = 1.0        # CUDA context and cuDNN workspaces
TILES = (768, 512, 384, 256, 192, 128, 96, 64)  # LR tile sides tried, largest first
GPU_SIZES = (24, 40, 80)  # GiB: common GPUs


def planned_bytes(tracked: int) -> int:
    return int(tracked * (1 + ALLOCATOR) + CONTEXT_GIB * GIB)


def test_sizes(config: dict, workdir) -> list[tuple[int, int]]:
    """HR (height, width) of each evaluation image, after evaluation.limit and crop."""
    name, ev = config["dataset"], config["evaluation"]
    sizes = split_sizes(name, ev["split"], root=Path(workdir) / "resources" / "datasets" / name,
                        options=config.get("datasets", {}).get(name, {}))
    sizes = sizes[: ev.get("limit") or None]
    if ev.get("crop"):
        sizes = [(min(h, ev["crop"]), min(w, ev["crop"])) for h, w in sizes]
    return sizes


def _tile(costs, kind, net, *, scale, overlap, device_bytes, batch) -> tuple[int | None, int]:
    """The largest LR tile (with its overlap on each side) whose sampling fits, and its peak."""
    for tile in TILES:
        side = (tile + 2 * overlap) * scale
        peak = planned_bytes(costs.sampling_peak(kind, net, scale=scale, height=side,
                                                 width=side, batch=batch))
        if peak <= device_bytes:
            return tile, peak
    return None, peak


def _training_row(job, run, config, nets, costs) -> dict:
    model = run.models[job.model]
    cfg = model.params["cfg"]
    kind, net = nets[model.network]
    processes = max(1, config["training"]["gpus"])
    batch = math.ceil(cfg["batch_size"] / processes)
    iq = model.rule in ("train_ecdp_stage2", "finetune_iq")
    # the checkpointed chains (the ++ runs, L_IQ by the SDE) keep one state per step; the
    # adjoint ODE solve keeps none
    chain = (model.chain or 0) if (model.rule in ("finetune_iq", "train_ecdp_distill")
                                   or cfg.get("sampler") == "sde") else 0
    iq = iq or (model.rule == "train_ecdp_distill" and cfg["iq_weight"] > 0)
    tracked = costs.training_peak(kind, net, scale=config["scale"], batch=batch,
                                  patch=cfg["patch_size"], ema=cfg.get("ema_decay") is not None,
                                  iq=iq, chain=chain)
    what = (f"batch {batch}{f' per process (x{processes})' if processes > 1 else ''} @ "
            f"{cfg['patch_size']} px" + (", L_IQ step" if iq else "")
            + (f", {chain} chain states" if chain else ""))
    return {"rule": model.rule, "tracked": tracked, "what": what}


def _sampling_row(job, run, config, nets, costs, sizes, device_bytes) -> dict:
    experiment = run.experiments[job.experiment]
    network = nets.get(experiment.method)
    if network is None:
        return {"rule": job.rule, "tracked": 0, "what": f"{experiment.method}: no network"}
    kind, net = network
    sampling = experiment.sampling
    batch = sampling.batch if sampling is not None else 1
    h, w = sizes[0] if job.rule == "timing" else max(sizes, key=lambda s: s[0] * s[1])
    tracked = costs.sampling_peak(kind, net, scale=config["scale"], height=h, width=w,
                                  batch=batch)
    row = {"rule": job.rule, "tracked": tracked,
           "what": f"{'first' if job.rule == 'timing' else 'largest'} test image {h}x{w} HR, "
                   f"batch {batch}"}
    if planned_bytes(tracked) > device_bytes:
        overlap = config["evaluation"]["tile"].get("overlap", 16)
        tile, peak = _tile(costs, kind, net, scale=config["scale"], overlap=overlap,
                           device_bytes=device_bytes, batch=batch)
        row["tile"] = tile
        row["tile_planned"] = peak
    return row


def memory_plan(jobs, config: dict, run, workdir, *, costs, device_gib: float = 80.0) -> dict:
    """{"jobs": [{rule, name, tracked, planned, what, fits, tile?}], "device_gib"} for the
    training, sampling and timing jobs of ``jobs`` (``suite.plan.pending_jobs``) of ``run``;
    ``costs``: ``baselines.costs``."""
    nets = costs.networks(config)
    sizes = test_sizes(config, workdir)
    device_bytes = device_gib * GIB
    rows, seen = [], {}
    for job in jobs:
        if job.model is not None:
            key = (job.rule, job.model)
        elif job.experiment is not None and job.rule in ("super_resolve", "timing"):
            key = (job.rule, job.experiment)
        else:
            continue
        if key in seen:
            seen[key]["jobs"] += 1
            continue
        row = (_training_row(job, run, config, nets, costs) if job.model is not None
               else _sampling_row(job, run, config, nets, costs, sizes, device_bytes))
        planned = planned_bytes(row["tracked"]) if row["tracked"] else 0
        row.update(name=key[1], jobs=1, planned=planned,
                   fits={g: planned <= g * GIB for g in GPU_SIZES}, device_gib=device_gib)
        row["over"] = planned > device_bytes
        seen[key] = row
        rows.append(row)
    order = {"train_rrdb": 0, "train_ecdp_stage1": 1, "train_ecdp_stage2": 2, "train_srdiff": 3,
             "train_sr3": 4, "finetune_iq": 5, "super_resolve": 6, "timing": 7}
    rows.sort(key=lambda r: (order[r["rule"]], r["name"]))
    return {"jobs": rows, "device_gib": device_gib}


def format_memory(plan: dict) -> str:
    g = "/".join(str(s) for s in GPU_SIZES)
    lines = [f"Peak device memory per job (tracked on fake tensors by PyTorch's MemTracker; "
             f"planned = tracked x {1 + ALLOCATOR:g} + {CONTEXT_GIB:g} GiB for the CUDA context, "
             f"cuDNN workspaces and allocator rounding):", "",
             f"  {'rule':<18} {'name':<22} {'jobs':>4} {'planned GiB':>11}  fits {g} GiB  what"]
    for r in plan["jobs"]:
        fits = " ".join("yes" if r["fits"][s] else "no" for s in GPU_SIZES)
        flag = "  OVER --device-memory" if r["over"] else ""
        tile = ""
        if "tile" in r:
            tile = (f"; fits as LR tiles of {r['tile']} px ({r['tile_planned'] / GIB:.1f} GiB)"
                    if r["tile"] else "; no tile of TILES fits")
        lines.append(f"  {r['rule']:<18} {r['name']:<22} {r['jobs']:>4} "
                     f"{r['planned'] / GIB:>11.1f}  {fits:<{len(g) + 5}}  {r['what']}{tile}{flag}")
    over = sum(r["over"] for r in plan["jobs"])
    lines += ["", f"{over} of {len(plan['jobs'])} job kinds exceed --device-memory "
                  f"{plan['device_gib']:g} GiB" + (" (a tile makes a sampling job fit: "
                                                   "evaluation.tile)" if over else "")]
    return "\n".join(lines)
