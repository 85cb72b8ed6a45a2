"""A short generic training loop that takes a step function (no Trainer class).

    history = train_loop(step_fn, model=..., optimizer=..., scheduler=..., batches=..., steps=...,
                         state_path=...)

``step_fn(model, batch) -> (loss, logs)``; ``batches(step)`` returns the batch of a step (a pure
function of the step, so resuming replays exactly). Adam with parameter groups, linear warm-up,
milestone decay, clipping by value, EMA (``torch.optim.swa_utils``; as released, it starts from
the initial weights and averages from the first step; ``ema_decay=None``: none), periodic
validation, atomic
training-state saves and resume. With several processes (``torchrun``), gradients are averaged
across ranks after each backward (data parallel; works for every step function, the adjoint
ODE included) and only rank 0 writes.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from .checkpoint import atomic_torch_save, save_checkpoint
from .data.io import sha256_file
from .data.patches import PatchSampler
from .rng import batch_generator

__all__ = ["make_optimizer", "make_scheduler", "make_ema", "averaged", "train_loop",
           "init_distributed", "resolve_device", "world", "average_gradients",
           "NonFiniteLossError", "fit", "scheduler_for", "patch_batches", "patch_sampler",
           "rank_share", "budget_text", "save_result", "dataset_input"]


class NonFiniteLossError(FloatingPointError):
    pass


def make_optimizer(groups: list[tuple[list, float]]) -> torch.optim.Adam:
    """Adam over (parameters, learning rate) groups; groups with no parameters are dropped."""
    groups = [(list(params), lr) for params, lr in groups]
    return torch.optim.Adam([{"params": params, "lr": lr} for params, lr in groups if params])


def make_scheduler(optimizer, *, steps: int, warmup: int = 0,
                   milestones: tuple[float, ...] = (0.6, 0.8), factor: float = 0.5):
    """Linear warm-up over ``warmup`` steps, then x ``factor`` at each milestone, a fraction of
    ``steps`` (the releases decay at whole epochs: 0.6 of 107.5k is epoch 300's first step)."""
    marks = [round(m * steps) for m in milestones]

    def scale(step: int) -> float:
        w = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return w * factor ** sum(step >= m for m in marks)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, scale)


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """EMA of the weights, starting from their current values (as the releases' running
    averages: the first update is decay * initial + (1 - decay) * weights after step 1)."""
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.n_averaged.fill_(1)  # AveragedModel would otherwise copy the weights at its first update
    return ema


def averaged(result: dict) -> torch.nn.Module:
    """The weights a training hands on: its EMA, or the raw model when it keeps none."""
    return result["ema"].module if result["ema"] is not None else result["model"]


def init_distributed() -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns (rank, world size)."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return world()


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(params, count: int = 1) -> None:
    """The gradient of the whole batch from each rank's gradient of its mean loss over
    ``count`` samples: sum over ranks of count x gradient, divided by the total count (one
    flat all-reduce; equal to the plain mean when every rank has the same share)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) * count for g in grads]
                     + [torch.tensor([float(count)], device=grads[0].device,
                                     dtype=grads[0].dtype)])
    dist.all_reduce(flat)
    flat = flat[:-1] / flat[-1]
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def train_loop(step_fn: Callable, *, model: torch.nn.Module, optimizer, scheduler,
               batches: Callable[[int], tuple], steps: int, state_path: str | os.PathLike,
               ema_decay: float | None = 0.999, clip_value: float | None = 10.0,
               save_every: int = 100, validate: Callable | None = None,
               validate_every: int | None = None, progress: bool = True,
               desc: str = "train", ema: AveragedModel | None = None,
               config: dict | None = None, inputs: dict | None = None) -> dict:
    """Run (or resume) ``steps`` optimisation steps. Returns {"model", "ema", "history", "step"}.

    The training state (weights, EMA, optimizer, scheduler, history, step, ``config``) is written
    atomically to ``state_path`` every ``save_every`` steps and at the end; a non-finite loss
    stops training with the last good state kept. The state is resumed only under the same key:
    ``config`` (recipe, network, seed) and the sha256 of every file in ``inputs`` (name -> path:
    the dataset manifest, upstream checkpoints); a state saved under another key is set aside
    as ``*.stale`` and training starts over. ``save_result`` removes the state once the
    checkpoint is written, so a forced re-run retrains.
    """
    rank, size = world()
    state_path = Path(state_path)
    if ema is None and ema_decay is not None:
        ema = make_ema(model, ema_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    history: dict = {"train": [], "val": []}
    start = 0
    log = logging.getLogger(__name__)
    key = {"config": config, "inputs": input_hashes(inputs or {})}
    state = torch.load(state_path, map_location="cpu", weights_only=True) \
        if state_path.exists() else None
    if state is not None and state.get("key") != key:
        log.warning("%s: %s was saved under another recipe, network, seed, dataset or upstream "
                    "checkpoint; starting over (kept as .stale)", desc, state_path)
        if rank == 0:
            os.replace(state_path, state_path.with_name(state_path.name + ".stale"))
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start = state["history"], state["step"]
        log.info("%s: resumed from step %d of %d (%s)", desc, start, steps, state_path)
    else:
        log.info("%s: starting at step 0 of %d", desc, steps)

    def save(step: int) -> None:
        if rank == 0:
            atomic_torch_save({"model": model.state_dict(),
                               "ema": ema.state_dict() if ema is not None else None,
                               "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "history": history,
                               "step": step, "key": key}, state_path)

    model.train()
    bar = tqdm(range(start, steps), desc=desc, initial=start, total=steps,
               disable=not progress or rank != 0)
    for step in bar:
        tick = time.perf_counter()
        batch = batches(step)
        loss, logs = step_fn(model, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"{desc}: loss is {float(loss)} at step {step}; training "
                                     f"stopped, last good state kept in {state_path}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if size > 1:
            average_gradients(params, count=_count(batch))
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, clip_value)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        history["train"].append({"step": step + 1, "loss": float(loss.detach()),
                                 "seconds": time.perf_counter() - tick, **logs})
        bar.set_postfix(loss=f"{history['train'][-1]['loss']:.4g}")
        if validate is not None and validate_every and (step + 1) % validate_every == 0:
            history["val"].append({"step": step + 1,
                                   **validate(ema.module if ema is not None else model)})
            model.train()
        if (step + 1) % save_every == 0 or step + 1 == steps:
            save(step + 1)
    return {"model": model, "ema": ema, "history": history, "step": steps}


def _count(batch) -> int:
    """Samples in this rank's batch (its first tensor's leading dimension)."""
    return next(len(x) for x in batch if torch.is_tensor(x))


def input_hashes(inputs: dict) -> dict:
    """name -> sha256 of each input file a training's weights depend on."""
    return {name: sha256_file(path) for name, path in sorted(inputs.items())}


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is present, else "cpu"; anything else unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ---------------------------------------------------------------------- a training recipe
# What every training stage of the suite shares (ECDP's in ecdp.stages, the baselines' in
# baselines.train): its batches, its recipe, its budget text and its checkpoint.

def budget_text(history: dict, cfg: dict, device: str, prefix: str = "",
                features: str | None = None) -> str:
    """Steps, batch, patch, where (device, processes, threads each: a thread count changes a
    CPU training's floating-point sums, so its bits), the hours it took, and for an L_IQ stage
    the VGG19 ``features`` it used (published, stand-in or random)."""
    hours = sum(h.get("seconds", 0.0) for h in history["train"]) / 3600
    processes, threads = world()[1], torch.get_num_threads()
    where = (f"{device}" + (f" x{processes} processes" if processes > 1 else "")
             + f", {threads} thread{'s' * (threads > 1)}" + (" each" if processes > 1 else ""))
    text = (f"{cfg['steps']} it x {cfg['batch_size']} @ {cfg['patch_size']}px on {where} "
            f"({hours:.3f} h)" + (f", L_IQ on {features}" if features else ""))
    return f"{prefix} + {text}" if prefix else text


def rank_share(batch_size: int, rank: int, size: int) -> int:
    """This rank's part of a batch: the remainder goes to the first ranks, so no sample is
    dropped (``train_loop`` weights each rank's gradient by its share)."""
    if batch_size < size:
        raise ValueError(f"batch_size {batch_size} is smaller than the {size} processes "
                         f"(training.gpus): every GPU needs at least one sample")
    return batch_size // size + (rank < batch_size % size)


def patch_batches(sampler: PatchSampler, cfg: dict, seed: int, device, draw=None):
    """``batches(step)`` for ``train_loop``: this rank's share of the step's batch (lr, hr,
    *draw(hr, generator)) of ``cfg["batch_size"]``. The whole batch is drawn from the step's
    generator and sliced, so every number of processes (``training.gpus``) trains on the same
    samples: a torchrun run differs from a one-process one only in floating-point rounding.
    Tensors are moved to ``device``; anything else (a generator for later noise) is passed on."""
    rank, size = world()
    shares = [rank_share(cfg["batch_size"], r, size) for r in range(size)]
    start = sum(shares[:rank])
    mine = slice(start, start + shares[rank])

    def batch(step: int):
        g = batch_generator(seed, 0, step)
        lr, hr = sampler.sample(cfg["batch_size"], g)
        extra = draw(hr, g) if draw is not None else ()
        return tuple(x[mine].to(device) if torch.is_tensor(x) else x
                     for x in (lr, hr, *extra))

    return batch


def patch_sampler(dataset, split: str, cfg: dict, scale: int) -> PatchSampler:
    """Training patches of ``cfg["patch_size"]`` from the dataset whose manifest is ``dataset``,
    augmented as ``cfg["augment"]`` (dihedral: ECDP's flips and quarter turns; hflip: SR3's;
    none: SRDiff's); validation never augments."""
    augment = cfg.get("augment", "dihedral") if split == "train" else "none"
    return PatchSampler.from_dataset(Path(dataset).parent, split, patch_size=cfg["patch_size"],
                                     scale=scale, augment=augment)


def scheduler_for(optimizer, cfg: dict):
    """Warm-up and milestone decay of a training recipe (``warmup``, ``milestones``)."""
    return make_scheduler(optimizer, steps=cfg["steps"], warmup=cfg.get("warmup", 0),
                          milestones=tuple(cfg["milestones"]))


def fit(step_fn, *, model, groups: list, cfg: dict, batches, out, desc: str, config: dict,
        inputs: dict, validate=None, progress: bool = True) -> dict:
    """One training of recipe ``cfg`` (every entry point's): Adam over ``groups`` [(params,
    lr)], the recipe's warm-up and milestones, EMA, clipping, validation and resumable state
    in ``{out}.state`` keyed on ``config`` and ``inputs``. Returns ``train_loop``'s result."""
    optimizer = make_optimizer(groups)
    return train_loop(step_fn, model=model, optimizer=optimizer,
                      scheduler=scheduler_for(optimizer, cfg), batches=batches,
                      steps=cfg["steps"], state_path=f"{out}.state", ema_decay=cfg["ema_decay"],
                      clip_value=cfg["clip_value"], save_every=cfg["save_every"],
                      validate=validate, validate_every=cfg.get("validate_every"),
                      progress=progress, desc=desc, config=config, inputs=inputs)


def save_result(out, result, meta) -> None:
    """The checkpoint of a finished training: raw weights and the EMA (the raw weights again,
    recorded as such, when the recipe keeps no EMA). The training state goes once the
    checkpoint is on disk: a forced or param-triggered re-run trains again."""
    if world()[0] == 0:
        meta = {**meta, "ema": result["ema"] is not None, "threads": torch.get_num_threads(),
                "processes": world()[1]}
        save_checkpoint(out, step=result["step"], meta=meta,
                        state={k: v.cpu() for k, v in result["model"].state_dict().items()},
                        ema={k: v.cpu() for k, v in averaged(result).state_dict().items()})
        Path(f"{out}.state").unlink(missing_ok=True)


def dataset_input(dataset) -> dict:
    """The dataset manifest a training reads (its checksums name every image)."""
    return {"dataset": Path(dataset)}
