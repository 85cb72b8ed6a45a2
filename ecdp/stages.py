"""The three training stages of the release, each a step function run by ``train_loop``.

1. ``train_rrdbnet``: RRDBNet with L1 (the tables' RRDB row; its trunk is ECDP's encoder).
2. ``train_ecdp_stage1``: score matching (L_SM) from the pre-trained encoder.
3. ``train_ecdp_stage2``: from the stage-1 EMA weights, L_IQ through probability flow (adjoint)
   or the reverse SDE, plus ``sm_weight`` x L_SM (0 as released); encoder frozen unless asked.

And this suite's own (never a paper row): ``train_ecdp_distilled``, a student of 1, 2 or 4
network evaluations regressed on a trained ECDP's solve from the same prior draw.

Each takes the dataset's manifest (``dataset``), writes a checkpoint (``ecdp.checkpoint``) with
the resolved config, sigma, k and the training budget, and keeps its resumable state in
``{out}.state`` beside it; the recipe (optimizer, schedule, EMA, state) is ``ecdp.train.fit``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, restore, save_checkpoint
from .data.patches import PatchSampler
from .degradation import upsample
from .features import load_vgg_features
from .losses import (draw_sm_noise, feature_l1, image_quality_loss, l1_loss,
                     score_matching_loss)
from .metrics import PAPER, psnr
from .model import ECDP
from .nets import RRDBEncoder, RRDBNet, count_parameters
from .parametrization import Parametrization, select_k
from .rng import batch_generator, make_generator, seed_torch
from .samplers import SOLVERS, make_solver
from .sampling import parse_sampling, student_sampling
from .sde import estimate_sigma
from .train import (averaged, budget_text, dataset_input, fit, patch_batches, patch_sampler,
                    save_result)

__all__ = ["train_rrdbnet", "train_ecdp_stage1", "train_ecdp_stage2", "train_ecdp_distilled",
           "load_rrdbnet", "choose_k"]


def draw_iq_noise(hr: torch.Tensor, g: torch.Generator):
    """Score-matching noise, prior noise, and a generator for a stochastic sampler's noise."""
    return (*draw_sm_noise(hr, g), torch.randn(hr.shape, generator=g),
            make_generator("sampler-noise", g.initial_seed()))


# ---------------------------------------------------------------------- RRDBNet

def load_rrdbnet(path: str | os.PathLike, *, weights: str = "ema") -> RRDBNet:
    ckpt = load_checkpoint(path, weights=weights)
    meta = ckpt["meta"]
    return restore(RRDBNet(scale=meta["scale"], **meta["net"]), ckpt, weights=weights)


def train_rrdbnet(*, dataset, out, scale: int, net: dict, cfg: dict, seed: int = 0,
                  device: str = "cpu", progress: bool = True) -> dict:
    """net: ``RRDBNet`` arguments {features, growth, blocks, trunk_conv, init_scale, clamp,
    bicubic_skip}; cfg: {steps, batch_size, patch_size, lr, warmup, milestones, ema_decay (None:
    no EMA), clip_value, l1 ("sum" or "mean"), augment, save_every}."""
    seed_torch(seed)
    model = RRDBNet(scale=scale, **net).to(device)
    sampler = patch_sampler(dataset, "train", cfg, scale)
    result = fit(lambda m, b: l1_loss(m, *b, reduction=cfg["l1"]), model=model,
                 groups=[(model.parameters(), cfg["lr"])], cfg=cfg,
                 batches=patch_batches(sampler, cfg, seed, device), out=out, desc="rrdbnet",
                 config={"net": net, "train": cfg, "train_seed": seed},
                 inputs=dataset_input(dataset), progress=progress)
    meta = {"kind": "rrdbnet", "scale": scale, "net": dict(net), "train": dict(cfg), "train_seed": seed,
            "params": count_parameters(model),
            "budget": budget_text(result["history"], cfg, device), "history": result["history"]}
    save_result(out, result, meta)
    return meta


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


def train_ecdp_stage1(*, dataset, rrdb_checkpoint, out, scale: int, model_cfg: dict,
                      cfg: dict, seed: int = 0, device: str = "cpu",
                      progress: bool = True) -> dict:
    """model_cfg: the resolved ``model`` config (``sde.sigma`` may be "auto", ``k`` may be
    "auto"); cfg: {steps, batch_size, patch_size, lr, lr_encoder, warmup, ema_decay, clip_value,
    save_every, validate_every}."""
    seed_torch(seed)
    train = patch_sampler(dataset, "train", cfg, scale)
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
    val = patch_sampler(dataset, "val", cfg, scale)
    result = fit(lambda m, b: score_matching_loss(m, *b), model=model,
                 groups=[(model.unet.parameters(), cfg["lr"]),
                         (model.encoder.parameters(), cfg["lr_encoder"])], cfg=cfg,
                 batches=patch_batches(train, cfg, seed, device, draw_sm_noise), out=out,
                 validate=_validator(val, seed=seed, sample=cfg.get("validate_sample")),
                 progress=progress, desc=f"ecdp stage 1 ({model_cfg['parametrization']})",
                 config={"model": model_cfg, "train": cfg, "train_seed": seed},
                 inputs={**dataset_input(dataset), "rrdb": rrdb_checkpoint})
    k_choice = None
    if k == "auto" and model.parametrization.kind == "hybrid":
        k, k_choice = choose_k(averaged(result), val, seed=seed)
    k = 1.0 if k == "auto" else float(k)  # "auto" for eps / x0, where k plays no part
    resolved = {**model_cfg, "sde": {**model_cfg["sde"], "sigma": float(sigma)}, "k": k}
    meta = {"kind": "ecdp", "stage": 1, "scale": scale, "sigma": float(sigma),
            "sigma_source": "auto (training-set estimate)" if model_cfg["sde"]["sigma"] == "auto"
            else "config", "model": resolved, "parametrization": model.parametrization.kind, "k": k,
            "k_choice": k_choice, "train": dict(cfg), "train_seed": seed,
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
    sampling = parse_sampling(cfg["sample"] or None, where="training.stage2.sample")
    options = sampling.options_dict()
    if "adjoint" in SOLVERS[sampling.solver].options:
        options["adjoint"] = True  # memory independent of the number of steps
    return make_solver({"solver": sampling.solver, **options})


def train_ecdp_stage2(*, dataset, stage1_checkpoint, out, weights_status: dict, cfg: dict,
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
    val = patch_sampler(dataset, "val", cfg, scale)
    k_choice = meta1.get("k_choice")
    if k == "auto" and kind == "hybrid":
        k, k_choice = choose_k(model, val, seed=seed)
    if k is not None and k != "auto":
        model.parametrization = Parametrization(kind, float(k))
    features, vgg = load_vgg_features(weights_status, allow_random=cfg["allow_random_vgg"],
                                      seed=seed)
    features.to(device)
    train = patch_sampler(dataset, "train", cfg, scale)
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
                 config={"stage1": meta1["budget"], "train": cfg, "k": k, "train_seed": seed,
                         "vgg": vgg},
                 inputs={**dataset_input(dataset), "stage1": stage1_checkpoint})
    meta = {**meta1, "stage": 2, "k": model.parametrization.k, "k_choice": k_choice,
            "stage2": dict(cfg), "vgg": vgg,
            "budget": budget_text(result["history"], cfg, device, prefix=meta1["budget"],
                                  features=vgg),
            "history_stage1": meta1["history"], "history": result["history"]}
    save_result(out, result, meta)
    return meta


# ---------------------------------------------------------------------- distilled student

def teacher_pairs(teacher: ECDP, solver, sampler: PatchSampler, *, count: int,
                  batch_size: int, seed: int, device, progress: bool = True) -> dict:
    """``count`` training patches, each with one prior draw x1 and the teacher's solve from it
    (solved once, ``batch_size`` at a time; the student's steps then draw from them):
    {lr, hr, x1, target} on the CPU, and the teacher's mean NFE."""
    from tqdm import tqdm

    g = make_generator("distill-pairs", seed)
    lr, hr = sampler.sample(count, g)
    x1 = upsample(lr, teacher.scale) + teacher.sde.sigma * torch.randn(hr.shape, generator=g)
    targets, nfes = [], []
    with torch.no_grad():
        for i in tqdm(range(0, count, batch_size), desc="teacher solves", disable=not progress):
            part = slice(i, i + batch_size)
            target, nfe = teacher.sample(lr[part].to(device), x1=x1[part].to(device),
                                         solver=solver)
            targets.append(target.cpu())
            nfes.append(nfe)
    return {"lr": lr, "hr": hr, "x1": x1, "target": torch.cat(targets),
            "teacher_nfe_mean": sum(nfes) / len(nfes)}


def train_ecdp_distilled(*, dataset, teacher_checkpoint, out, weights_status: dict, cfg: dict,
                         nfe: int, seed: int = 0, device: str = "cpu",
                         progress: bool = True) -> dict:
    """A student of ``nfe`` network evaluations distilled from a trained ECDP (this suite's
    method, not the paper's). From the same prior draw x1 and LR, the teacher's solve
    (``cfg["teacher"]``; {}: the released dopri5) is the regression target of the student's
    ``cfg["solver"]`` at ``nfe`` evaluations, backpropagated through all of them:

        loss = mean (student(x1, LR) - teacher(x1, LR))^2 + iq_weight L_IQ(student(x1, LR), HR)

    Direct regression to the deterministic teacher map, as SinSR and OFTSR distil theirs,
    rather than progressive (log2 rounds) or consistency distillation (many more steps): the
    probability flow already pairs every prior draw with one image. The teacher solves
    ``cfg["pairs"]`` patches once (``teacher_pairs``); each step draws a batch of them. The
    student starts from the teacher's EMA weights (encoder frozen, as stage 2). cfg: {steps,
    batch_size, patch_size, pairs, lr, milestones, ema_decay, clip_value, save_every, solver,
    grid, teacher, iq_weight, allow_random_vgg}."""
    seed_torch(seed)
    ckpt = load_checkpoint(teacher_checkpoint, weights="ema")
    meta0 = ckpt["meta"]
    scale = meta0["scale"]

    def build() -> ECDP:
        m = ECDP.from_config(meta0["model"], scale=scale, sigma=meta0["sigma"],
                             parametrization=Parametrization(meta0["parametrization"],
                                                             meta0["k"]))
        m.load_state_dict(ckpt["state"], strict=True)
        return m.to(device)

    teacher, model = build().eval().requires_grad_(False), build()
    model.encoder.requires_grad_(False)
    teacher_solver = make_solver(parse_sampling(cfg["teacher"] or None,
                                                where="training.distill.teacher"))
    student = student_sampling(cfg, nfe, where="training.distill.solver")
    if student.adaptive or SOLVERS[student.solver].stochastic:
        raise ValueError(f"training.distill.solver: a student needs a fixed-step "
                         f"deterministic solver, not {student.solver}")
    student_solver = make_solver(student)
    features = vgg = None
    if cfg["iq_weight"]:
        features, vgg = load_vgg_features(weights_status, allow_random=cfg["allow_random_vgg"],
                                          seed=seed)
        features.to(device)
    pairs = teacher_pairs(teacher, teacher_solver, patch_sampler(dataset, "train", cfg, scale),
                          count=cfg["pairs"], batch_size=cfg["batch_size"], seed=seed,
                          device=device, progress=progress)

    def batches(step_index: int):
        g = batch_generator(seed, 0, step_index)
        pick = torch.randint(len(pairs["lr"]), (cfg["batch_size"],), generator=g)
        return tuple(pairs[k][pick].to(device) for k in ("lr", "hr", "x1", "target"))

    def step(m, batch):
        lr, hr, x1, target = batch
        sample, _ = m.sample(lr, x1=x1, solver=student_solver)
        loss = (sample - target).pow(2).mean()
        logs = {"distill": float(loss.detach())}
        if features is not None:
            loss_iq, iq_logs = feature_l1(features, sample, hr)
            loss = loss + cfg["iq_weight"] * loss_iq
            logs.update(iq_logs)
        return loss, logs

    result = fit(step, model=model, groups=[(model.unet.parameters(), cfg["lr"])], cfg=cfg,
                 batches=batches, out=out,
                 progress=progress, desc=f"ecdp student ({nfe} NFE, {student.solver})",
                 config={"teacher": meta0["budget"], "train": cfg, "nfe": nfe,
                         "train_seed": seed, "vgg": vgg},
                 inputs={**dataset_input(dataset), "teacher": teacher_checkpoint})
    meta = {**meta0, "stage": "distilled", "vgg": vgg if vgg else meta0.get("vgg"),
            "distilled": {"nfe": nfe, "sampling": student.record(), "cfg": dict(cfg),
                          "teacher": str(teacher_checkpoint),
                          "teacher_nfe_mean": pairs["teacher_nfe_mean"]},
            "budget": f"{meta0['budget']} + student "
                      + budget_text(result["history"], cfg, device, features=vgg),
            "history_teacher": meta0["history"], "history": result["history"]}
    save_result(out, result, meta)
    return meta
