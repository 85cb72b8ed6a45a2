"""The three training stages of the release, each a step function run by ``train_loop``.

1. ``train_rrdbnet``: RRDBNet with L1 (the tables' RRDB row; its trunk is ECDP's encoder).
2. ``train_ecdp_stage1``: score matching (L_SM) from the pre-trained encoder.
3. ``train_ecdp_stage2``: from the stage-1 EMA weights, L_IQ through probability flow (adjoint)
   or the reverse SDE, plus ``sm_weight`` x L_SM (0 as released); encoder frozen unless asked.

Each writes a checkpoint (``ecdp.checkpoint``) with the resolved config, sigma, k and the
training budget, and keeps its resumable state in ``{out}.state`` beside it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, restore, save_checkpoint
from .data.patches import PatchSampler
from .degradation import upsample
from .features import load_vgg_features
from .losses import draw_sm_noise, image_quality_loss, l1_loss, score_matching_loss
from .metrics import PAPER, psnr
from .model import ECDP
from .nets import RRDBEncoder, RRDBNet, count_parameters
from .parametrization import Parametrization, select_k
from .rng import batch_generator, make_generator, seed_torch
from .samplers import ADAPTIVE, FIXED_STEP_EVALS, RELEASED_SAMPLING, make_solver
from .sde import estimate_sigma
from .train import averaged, make_optimizer, make_scheduler, train_loop, world

__all__ = ["train_rrdbnet", "train_ecdp_stage1", "train_ecdp_stage2", "load_rrdbnet", "fit",
           "choose_k", "patch_batches", "patch_sampler", "budget_text", "save_result",
           "dataset_input"]


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


def draw_iq_noise(hr: torch.Tensor, g: torch.Generator):
    """Score-matching noise, prior noise, and a generator for a stochastic sampler's noise."""
    return (*draw_sm_noise(hr, g), torch.randn(hr.shape, generator=g),
            make_generator("sampler-noise", g.initial_seed()))


def patch_sampler(dataset_root, split: str, cfg: dict, scale: int) -> PatchSampler:
    """Training patches of ``cfg["patch_size"]``, augmented as ``cfg["augment"]`` (dihedral:
    ECDP's flips and quarter turns; hflip: SR3's; none: SRDiff's); validation never augments."""
    augment = cfg.get("augment", "dihedral") if split == "train" else "none"
    return PatchSampler.from_dataset(dataset_root, split, patch_size=cfg["patch_size"],
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


# ---------------------------------------------------------------------- RRDBNet

def load_rrdbnet(path: str | os.PathLike, *, weights: str = "ema") -> RRDBNet:
    ckpt = load_checkpoint(path, weights=weights)
    meta = ckpt["meta"]
    return restore(RRDBNet(scale=meta["scale"], **meta["net"]), ckpt, weights=weights)


def train_rrdbnet(*, dataset_root, out, scale: int, net: dict, cfg: dict, seed: int = 0,
                  device: str = "cpu", progress: bool = True) -> dict:
    """net: ``RRDBNet`` arguments {features, growth, blocks, trunk_conv, init_scale, clamp,
    bicubic_skip}; cfg: {steps, batch_size, patch_size, lr, warmup, milestones, ema_decay (None:
    no EMA), clip_value, l1 ("sum" or "mean"), augment, save_every}."""
    seed_torch(seed)
    model = RRDBNet(scale=scale, **net).to(device)
    sampler = patch_sampler(dataset_root, "train", cfg, scale)
    result = fit(lambda m, b: l1_loss(m, *b, reduction=cfg["l1"]), model=model,
                 groups=[(model.parameters(), cfg["lr"])], cfg=cfg,
                 batches=patch_batches(sampler, cfg, seed, device), out=out, desc="rrdbnet",
                 config={"net": net, "train": cfg, "seed": seed},
                 inputs=dataset_input(dataset_root), progress=progress)
    meta = {"kind": "rrdbnet", "scale": scale, "net": dict(net), "train": dict(cfg), "seed": seed,
            "params": count_parameters(model),
            "budget": budget_text(result["history"], cfg, device), "history": result["history"]}
    save_result(out, result, meta)
    return meta


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


def dataset_input(dataset_root) -> dict:
    """The dataset manifest a training reads (its checksums name every image)."""
    return {"dataset": Path(dataset_root) / "manifest.json"}


# ---------------------------------------------------------------------- ECDP

def choose_k(model: ECDP, val: PatchSampler, *, seed: int, batches: int = 2,
             batch_size: int = 4, levels: int = 16) -> tuple[float, list]:
    """``k: auto`` on validation patches: minimise the hybrid's z0 error over noise levels."""
    device = next(model.parameters()).device
    heads = []
    with torch.no_grad():
        for i in range(batches):
            g = make_generator("choose-k", seed, i)
            lr, hr = (x.to(device) for x in val.sample(batch_size, g))
            mu, feats = model.condition(lr)
            z0 = (hr - mu) / model.sde.sigma
            for t_value in torch.linspace(0.02, 0.98, levels).tolist():
                t = torch.full((lr.shape[0],), t_value, device=device)
                a_t, s_t = model.sde.coefficients(t, z0)
                eps = torch.randn(z0.shape, generator=g).to(device)
                z_t = a_t * z0 + s_t * eps
                eps_head, z0_head = model(z_t, t, feats)
                heads.append((eps_head, z0_head, z_t, z0, a_t, s_t))
    return select_k(heads, torch.logspace(-2, 2, 17))


def _validator(val: PatchSampler, *, seed: int, sample: dict | None = None,
               batch_size: int = 4):
    """PSNR of probability-flow samples on fixed validation patches (Figure 8's curve);
    ``sample``: the solver spec (``{}`` or None: the released solve)."""
    g = make_generator("validation", seed)
    lr, hr = val.sample(batch_size, g)
    solver = make_solver(sample or None)

    def validate(model: ECDP) -> dict:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            sr, nfe = model.sample(lr.to(device), solver=solver,
                                   generator=make_generator("val-noise", seed))
        return {"psnr": float(psnr(sr.clamp(0, 1).cpu(), hr, protocol=PAPER).mean()), "nfe": nfe}

    return validate


def train_ecdp_stage1(*, dataset_root, rrdb_checkpoint, out, scale: int, model_cfg: dict,
                      cfg: dict, seed: int = 0, device: str = "cpu",
                      progress: bool = True) -> dict:
    """model_cfg: the resolved ``model`` config (``sde.sigma`` may be "auto", ``k`` may be
    "auto"); cfg: {steps, batch_size, patch_size, lr, lr_encoder, warmup, ema_decay, clip_value,
    save_every, validate_every}."""
    seed_torch(seed)
    train = patch_sampler(dataset_root, "train", cfg, scale)
    sigma = model_cfg["sde"]["sigma"]
    if sigma == "auto":
        sigma = estimate_sigma([im.permute(1, 2, 0).numpy() for im in train.images], scale)
    rrdb = load_rrdbnet(rrdb_checkpoint)
    encoder = RRDBEncoder.from_rrdbnet(rrdb, tuple(model_cfg["encoder"]["taps"]))
    k = model_cfg["k"]
    model = ECDP.from_config(model_cfg, scale=scale, sigma=float(sigma), encoder=encoder,
                             parametrization=Parametrization(model_cfg["parametrization"],
                                                             1.0 if k == "auto" else float(k)))
    model.to(device)
    val = patch_sampler(dataset_root, "val", cfg, scale)
    result = fit(lambda m, b: score_matching_loss(m, *b), model=model,
                 groups=[(model.unet.parameters(), cfg["lr"]),
                         (model.encoder.parameters(), cfg["lr_encoder"])], cfg=cfg,
                 batches=patch_batches(train, cfg, seed, device, draw_sm_noise), out=out,
                 validate=_validator(val, seed=seed, sample=cfg.get("validate_sample")),
                 progress=progress, desc=f"ecdp stage 1 ({model_cfg['parametrization']})",
                 config={"model": model_cfg, "train": cfg, "seed": seed},
                 inputs={**dataset_input(dataset_root), "rrdb": rrdb_checkpoint})
    k_choice = None
    if k == "auto" and model.parametrization.kind == "hybrid":
        k, k_choice = choose_k(averaged(result), val, seed=seed)
    k = 1.0 if k == "auto" else float(k)  # "auto" for eps / x0, where k plays no part
    resolved = {**model_cfg, "sde": {**model_cfg["sde"], "sigma": float(sigma)}, "k": k}
    meta = {"kind": "ecdp", "stage": 1, "scale": scale, "sigma": float(sigma),
            "sigma_source": "auto (training-set estimate)" if model_cfg["sde"]["sigma"] == "auto"
            else "config", "model": resolved, "parametrization": model.parametrization.kind, "k": k,
            "k_choice": k_choice, "train": dict(cfg), "seed": seed,
            "params": count_parameters(model), "rrdb_budget": rrdb.provenance["budget"],
            "budget": budget_text(result["history"], cfg, device,
                              prefix=f"RRDB {rrdb.provenance['budget']}"),
            "history": result["history"]}
    save_result(out, result, meta)
    return meta


def iq_solver(cfg: dict):
    """L_IQ's sampler: the released solve backpropagated with the adjoint (``sample: {}``, or
    a whole solver spec of its own), or the reverse SDE in ``sde_steps`` checkpointed steps."""
    if cfg["sampler"] == "sde":
        return make_solver({"solver": "reverse_sde", "steps": cfg["sde_steps"],
                            "checkpoint": True})
    spec = dict(cfg["sample"]) if cfg["sample"] else dict(RELEASED_SAMPLING)
    if spec.get("solver", "dopri5") in ADAPTIVE + tuple(FIXED_STEP_EVALS):
        spec["adjoint"] = True  # memory independent of the number of steps
    return make_solver(spec)


def train_ecdp_stage2(*, dataset_root, stage1_checkpoint, out, weights_status: dict, cfg: dict,
                      k: float | str | None = None, seed: int = 0, device: str = "cpu",
                      progress: bool = True) -> dict:
    """cfg: {steps, batch_size, patch_size, lr, lr_encoder, ema_decay, clip_value, save_every,
    iq_weight, sm_weight, train_encoder, sampler ("ode" or "sde"), sde_steps,
    allow_random_vgg, sample (L_IQ's solver spec; {}: the released solve)}. ``k`` overrides
    the stage-1 k."""
    seed_torch(seed)  # dropout masks, if the U-Net has dropout
    ckpt = load_checkpoint(stage1_checkpoint, weights="ema")
    meta1 = ckpt["meta"]
    kind = meta1["parametrization"]
    scale = meta1["scale"]
    model = ECDP.from_config(meta1["model"], scale=scale, sigma=meta1["sigma"],
                             parametrization=Parametrization(kind, meta1["k"]))
    model.load_state_dict(ckpt["state"], strict=True)
    model.to(device)
    val = patch_sampler(dataset_root, "val", cfg, scale)
    k_choice = meta1.get("k_choice")
    if k == "auto" and kind == "hybrid":
        k, k_choice = choose_k(model, val, seed=seed)
    if k is not None and k != "auto":
        model.parametrization = Parametrization(kind, float(k))
    features, vgg = load_vgg_features(weights_status, allow_random=cfg["allow_random_vgg"],
                                      seed=seed)
    features.to(device)
    train = patch_sampler(dataset_root, "train", cfg, scale)
    groups = [(model.unet.parameters(), cfg["lr"])]
    if cfg["train_encoder"]:
        groups.append((model.encoder.parameters(), cfg["lr_encoder"]))
    else:
        model.encoder.requires_grad_(False)
    solver = iq_solver(cfg)

    def step(m, batch):
        lr, hr, t, eps, noise, generator = batch
        x1 = upsample(lr, scale) + m.sde.sigma * noise  # prior sample, eq. (13)
        loss_iq, logs = image_quality_loss(m, features, lr, hr, x1, solver=solver,
                                           train_encoder=cfg["train_encoder"],
                                           generator=generator)
        loss = cfg["iq_weight"] * loss_iq
        if cfg["sm_weight"]:
            loss_sm, sm_logs = score_matching_loss(m, lr, hr, t, eps)
            loss = loss + cfg["sm_weight"] * loss_sm
            logs.update(sm_logs)
        return loss, logs

    result = fit(step, model=model, groups=groups, cfg=cfg,
                 batches=patch_batches(train, cfg, seed, device, draw_iq_noise), out=out,
                 validate=_validator(val, seed=seed, sample=cfg.get("validate_sample")),
                 progress=progress, desc=f"ecdp stage 2 (L_IQ by {cfg['sampler']})",
                 config={"stage1": meta1["budget"], "train": cfg, "k": k, "seed": seed,
                         "vgg": vgg},
                 inputs={**dataset_input(dataset_root), "stage1": stage1_checkpoint})
    meta = {**meta1, "stage": 2, "k": model.parametrization.k, "k_choice": k_choice,
            "stage2": dict(cfg), "vgg": vgg,
            "budget": budget_text(result["history"], cfg, device, prefix=meta1["budget"],
                                  features=vgg),
            "history_stage1": meta1["history"], "history": result["history"]}
    save_result(out, result, meta)
    return meta
