"""Training entry points of the diffusion baselines, on the suite's loop (``ecdp.train``).

- ``train_srdiff``: SRDiff from a trained RRDBNet checkpoint (its frozen encoder), L1 on eps.
- ``train_sr3``: SR3 from scratch, L1 on eps at continuous noise levels.
- ``finetune_iq``: the "++" variants (Table 7): fine-tune a trained SRDiff or SR3 with ECDP's
  L_IQ computed through its own ancestral sampler, checkpointed per step.
"""
from __future__ import annotations

import torch

from ecdp.checkpoint import load_checkpoint
from ecdp.features import load_vgg_features
from ecdp.losses import feature_l1
from ecdp.nets import count_parameters
from ecdp.rng import make_generator, seed_torch
from ecdp.stages import load_rrdbnet
from ecdp.train import budget_text, dataset_input, fit, patch_batches, patch_sampler, save_result

from .sr3 import SR3
from .srdiff import SRDiff

__all__ = ["train_srdiff", "train_sr3", "finetune_iq", "LOADERS"]

LOADERS = {"srdiff": SRDiff.load, "sr3": SR3.load}


def _ddpm_noise(steps: int, continuous: bool):
    """SRDiff's release draws a step per sample; SR3's one step per batch (``np.random.randint``)
    and a continuous level per sample between that step's two neighbouring levels."""
    def draw(hr, g):
        b = hr.shape[0]
        t = torch.randint(steps, (1,) if continuous else (b,), generator=g).expand(b)
        eps = torch.randn(hr.shape, generator=g)
        return (t, eps, torch.rand(b, generator=g)) if continuous else (t, eps)
    return draw


def _trainable(model, cfg: dict) -> list:
    return [([p for p in model.parameters() if p.requires_grad], cfg["lr"])]


def _fit(model, *, name, dataset, out, cfg, seed, device, draw, meta, progress,
         inputs=None):
    scale = model.scale
    train = patch_sampler(dataset, "train", cfg, scale)
    result = fit(lambda m, b: m.loss(*b), model=model, groups=_trainable(model, cfg), cfg=cfg,
                 batches=patch_batches(train, cfg, seed, device, draw), out=out, desc=name,
                 config={**meta, "train": cfg, "train_seed": seed},
                 inputs={**dataset_input(dataset), **(inputs or {})}, progress=progress)
    meta = {**meta, "scale": scale, "train": dict(cfg), "train_seed": seed,
            "params": count_parameters(model), "history": result["history"],
            "budget": budget_text(result["history"], cfg, device, prefix=meta.get("budget", ""))}
    save_result(out, result, meta)
    return meta


def train_srdiff(*, dataset, rrdb_checkpoint, out, net: dict, cfg: dict, seed: int = 0,
                 device: str = "cpu", progress: bool = True) -> dict:
    """net: {taps, dim, mults, steps}; cfg: {steps, batch_size, patch_size, lr, warmup,
    ema_decay, clip_value, save_every}."""
    seed_torch(seed)
    rrdb = load_rrdbnet(rrdb_checkpoint)
    model = SRDiff(rrdb=rrdb, **net).to(device)
    rrdb_meta = load_checkpoint(rrdb_checkpoint)["meta"]
    meta = {"kind": "srdiff", "net": dict(net), "rrdb_net": rrdb_meta["net"],
            "budget": f"RRDB {rrdb.provenance['budget']}"}
    return _fit(model, name="srdiff", dataset=dataset, out=out, cfg=cfg, seed=seed,
                device=device, draw=_ddpm_noise(model.schedule.steps, False), meta=meta,
                progress=progress, inputs={"rrdb": rrdb_checkpoint})


def train_sr3(*, dataset, out, scale: int, net: dict, diffusion: dict, cfg: dict,
              seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """net: the U-Net (see ``baselines.sr3.PAPER_NET``); diffusion: {steps, beta_start,
    beta_end}."""
    seed_torch(seed)
    model = SR3(scale=scale, net=net, **diffusion).to(device)
    meta = {"kind": "sr3", "net": dict(net), "diffusion": dict(diffusion)}
    return _fit(model, name="sr3", dataset=dataset, out=out, cfg=cfg, seed=seed,
                device=device, draw=_ddpm_noise(model.schedule.steps, True), meta=meta,
                progress=progress)


def finetune_iq(*, kind: str, dataset, checkpoint, out, weights_status: dict, cfg: dict,
                seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """``kind`` in LOADERS; cfg: {steps, batch_size, patch_size, lr, ema_decay, clip_value,
    save_every, iq_weight, allow_random_vgg, sample_steps}."""
    seed_torch(seed)  # dropout masks, if the denoiser has dropout
    model = LOADERS[kind](checkpoint, device=device)
    base = load_checkpoint(checkpoint)["meta"]
    features, vgg = load_vgg_features(weights_status, allow_random=cfg["allow_random_vgg"],
                                      seed=seed)
    features.to(device)
    train = patch_sampler(dataset, "train", cfg, model.scale)

    def step(m, batch):
        lr, hr, noise, generator = batch
        sr, nfe = m.sample(lr, x_T=noise, generator=generator, steps=cfg.get("sample_steps"),
                           checkpoint=True)
        loss, logs = feature_l1(features, sr, hr)
        return cfg["iq_weight"] * loss, {**logs, "nfe": nfe}

    def draw(hr, g):
        return torch.randn(hr.shape, generator=g), make_generator("sampler-noise", g.initial_seed())

    model.train()
    result = fit(step, model=model, groups=_trainable(model, cfg), cfg=cfg,
                 batches=patch_batches(train, cfg, seed, device, draw), out=out,
                 desc=f"{kind}++ (L_IQ)", progress=progress,
                 config={"base": base["budget"], "train": cfg, "train_seed": seed, "vgg": vgg},
                 inputs={**dataset_input(dataset), "base": checkpoint})
    meta = {**base, "kind": kind, "iq": dict(cfg), "vgg": vgg, "history": result["history"],
            "budget": budget_text(result["history"], cfg, device, prefix=base["budget"],
                                  features=vgg)}
    save_result(out, result, meta)
    return meta
