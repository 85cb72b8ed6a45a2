"""One discrete DDPM (Ho et al. 2020) for the SRDiff and SR3 baselines.

    alpha_bar_t = prod_{s<=t} (1 - beta_s)
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
    ancestral step: x0_hat = (x_t - sqrt(1 - ab_t) eps_hat) / sqrt(ab_t), clipped to [-1, 1];
    x_{t-1} = c0 x0_hat + ct x_t + sqrt(posterior variance) z   (no noise at t = 0)

Schedules: linear (SR3: 1e-6 to 1e-2) and cosine (Nichol & Dhariwal 2021; SRDiff, s = 0.008).
The sampler is differentiable (no ``no_grad`` inside) and can checkpoint every step, so L_IQ can
be backpropagated through all steps (the "++" variants of Table 7).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.utils.checkpoint

from ecdp.rng import randn_like
from ecdp.samplers import make_solver
from ecdp.sde import DiscreteVP

__all__ = ["linear_betas", "cosine_betas", "Schedule", "respace", "ancestral_sample",
           "DDPMSuperResolver"]


def linear_betas(steps: int, start: float, end: float) -> torch.Tensor:
    return torch.linspace(start, end, steps, dtype=torch.float64)


def cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """beta_t = 1 - f(t) / f(t - 1), f(t) = cos^2(((t / T) + s) / (1 + s) pi / 2), clipped."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


class Schedule:
    """Per-step constants of a discrete DDPM (float64, moved to the sample's dtype on use)."""

    def __init__(self, betas: torch.Tensor):
        self.betas = betas.double()
        self.steps = len(betas)
        self.alphas = 1 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.posterior_variance = self.betas * (1 - prev) / (1 - self.alpha_bar)
        self.coef_x0 = self.betas * prev.sqrt() / (1 - self.alpha_bar)
        self.coef_xt = (1 - prev) * self.alphas.sqrt() / (1 - self.alpha_bar)

    def _at(self, values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return values.to(x.device)[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t for integer steps t (B,) in [0, T)."""
        ab = self._at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def noise_level(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """sqrt(alpha_bar_t) per sample (SR3's continuous conditioning)."""
        return self._at(self.alpha_bar, t, x).sqrt().flatten()

    def predict_x0(self, x: torch.Tensor, t: torch.Tensor, eps_hat: torch.Tensor) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t), steps t (B,)."""
        ab = self._at(self.alpha_bar, t, x)
        return (x - (1 - ab).sqrt() * eps_hat) / ab.sqrt()

    def step(self, eps_hat: torch.Tensor, x: torch.Tensor, t: int, noise: torch.Tensor,
             *, clip: bool = True) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0_hat = self.predict_x0(x, tt, eps_hat)
        if clip:
            x0_hat = x0_hat.clamp(-1, 1)
        mean = self._at(self.coef_x0, tt, x) * x0_hat + self._at(self.coef_xt, tt, x) * x
        return mean + self._at(self.posterior_variance, tt, x).sqrt() * noise if t > 0 else mean


def respace(schedule: Schedule, steps: int | None) -> tuple[Schedule, list[int]]:
    """An evenly strided sub-chain of ``steps`` steps (improved DDPM's respacing): the kept
    steps' alpha_bar are unchanged, their betas recomputed. Returns (schedule, kept steps)."""
    if steps is None or steps >= schedule.steps:
        return schedule, list(range(schedule.steps))
    ts = torch.linspace(0, schedule.steps - 1, steps).round().long().tolist()
    ab = schedule.alpha_bar[ts]
    prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    return Schedule(1 - ab / prev), ts


def ancestral_sample(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     schedule: Schedule, x_T: torch.Tensor, *,
                     generator: torch.Generator | None = None, steps: int | None = None,
                     clip: bool = True, checkpoint: bool = False) -> tuple[torch.Tensor, int]:
    """Run the reverse chain from x_T. ``steps`` < T uses an evenly strided sub-chain (respaced
    betas, as improved DDPM). eps_fn(x_t, t: (B,) long) -> eps_hat. Returns (x_0, NFE)."""
    sched, ts = respace(schedule, steps)
    x = x_T
    for i in reversed(range(len(ts))):
        noise = randn_like(x, generator) if i > 0 else torch.zeros_like(x)
        t_model = torch.full((x.shape[0],), ts[i], dtype=torch.long, device=x.device)

        def one(x_, noise_, i=i, t_model=t_model):
            return sched.step(eps_fn(x_, t_model), x_, i, noise_, clip=clip)

        if checkpoint and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(one, x, noise, use_reentrant=False)
        else:
            x = one(x, noise)
    return x, len(ts)


class DDPMSuperResolver:
    """What the DDPM baselines share: the subclass says what its chain samples (``target``: x0
    in [-1, 1] from (LR, HR); ``to_image``: back to [0, 1]) and how it denoises (``eps_fn(lr)``:
    eps_hat(x_t, t) for integer steps t); sampling and super_resolve are the same for both."""

    stochastic = True

    @property
    def vp(self) -> DiscreteVP:
        """The chain as a continuous-time schedule, for the probability-flow solvers."""
        if getattr(self, "_vp", None) is None:
            self._vp = DiscreteVP(self.schedule.alpha_bar)
        return self._vp

    def sampling_keywords(self, sampling) -> dict:
        """``sample``'s keywords for a ``ecdp.sampling.Sampling`` of the ddpm family: the
        ancestral chain's ``steps`` (None: the whole chain, as released), or a fast solver on
        ``vp`` ending at the chain's first step (t_end = 1 / T) unless the sampling sets t_end."""
        if sampling.family != "ddpm":
            raise ValueError(f"{sampling.where}: {self.name} samples with the ddpm family "
                             f"(its ancestral chain or a solver on its schedule), not "
                             f"{sampling.family}'s {sampling.solver}")
        options = sampling.options_dict()
        if sampling.solver == "ancestral":
            return {"steps": options.get("steps")}
        options.setdefault("t_end", 1 / self.schedule.steps)
        return {"solver": make_solver({"solver": sampling.solver, **options}),
                "temperature": sampling.temperature}

    def flow_eps_fn(self, lr):
        """eps_hat(x, t) at continuous times t of ``vp`` (the network's own conditioning at
        step N t - 1, or SR3's level sqrt(alpha_bar(t)))."""
        raise NotImplementedError

    def sample(self, lr, *, generator=None, x_T=None, steps: int | None = None,
               checkpoint: bool = False, image: str = "batch", solver=None,
               temperature: float = 1.0):
        """One sample from x_T (drawn when None, scaled by ``temperature`` for a solver): the
        ancestral chain in ``steps`` of it (None: all, as released), or ``solver``
        (``ecdp.samplers``' signature) on the probability flow of ``vp`` -> (image, NFE)."""
        shape = (lr.shape[0], 3, lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        x_T = randn_like(lr.new_empty(shape), generator) if x_T is None else x_T
        if solver is not None:
            x0, nfe = solver(self.flow_eps_fn(lr), self.vp, temperature * x_T,
                             generator=generator, image=image)
        else:
            x0, nfe = ancestral_sample(self.eps_fn(lr), self.schedule, x_T,
                                       generator=generator, steps=steps, checkpoint=checkpoint)
        return self.to_image(lr, x0), nfe

    def super_resolve(self, lr: torch.Tensor, *, generator: torch.Generator | None = None,
                      image: str = "batch") -> tuple[torch.Tensor, int]:
        """SuperResolver interface, the whole released chain."""
        sr, nfe = self.sample(lr, generator=generator)
        return sr.clamp(0, 1), nfe
