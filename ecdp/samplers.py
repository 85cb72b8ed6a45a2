"""Samplers: probability flow (eq. 12) with torchdiffeq, and the reverse SDE (Table 7 ablation).

Neither sampler decorates itself with ``torch.no_grad``: the caller chooses (L_IQ needs grads).

- ``probability_flow_z``: the probability flow as the released code solves it. The state is the
  normalised residual z = (x - mu) / sigma, in which eq. (12) is the standard VP flow

      dz/dt = -1/2 beta(t) (z - eps_hat(z, t) / s_t),

  and time runs in units tau = ``time_scale`` t (released: 300, so from tau = 300 down to
  tau = 300 t_end = 0.1), with the end time given to torchdiffeq as ``jump_t``. Both matter:
  tolerances on x are sigma times looser than on z, and torchdiffeq's first-step heuristic
  depends on the time units. Adaptive ``dopri5`` (released: rtol = atol = 1e-3, t_end = 1/3000,
  no final denoising step) or a fixed-step solver with an NFE budget (a uniform grid in t);
  ``adjoint=True`` backpropagates with ``odeint_adjoint`` (memory independent of the number of
  steps) and needs the parameters to differentiate as ``adjoint_params``.
- ``probability_flow_sample``: the same solve for any x-space score (an exact formula, or
  another model): eps_hat = -sigma s_t score(mu + sigma z, t).
- ``reverse_sde_sample``: Euler-Maruyama on the reverse-time SDE with a fixed step count and
  per-step noise from an explicit generator; ``checkpoint=True`` recomputes each step in the
  backward pass (memory: one step's activations at a time plus the states).

All return ``(sample, nfe)``: NFE is the number of network evaluations of the forward solve.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.utils.checkpoint
from torchdiffeq import odeint, odeint_adjoint

from .rng import randn_like
from .sde import ConditionalVPSDE

__all__ = ["SamplerError", "FIXED_STEP_EVALS", "ADAPTIVE", "RELEASED_TIME_SCALE",
           "probability_flow_z", "probability_flow_sample", "reverse_sde_sample"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
FIXED_STEP_EVALS = {"euler": 1, "midpoint": 2, "heun": 2, "heun2": 2, "heun3": 3, "rk4": 4}
_ADAPTIVE_OPTIONS = {"first_step", "safety", "ifactor", "dfactor", "max_num_steps", "min_step",
                     "max_step", "step_t", "jump_t", "norm"}
RELEASED_TIME_SCALE = 300.0  # the release's solver time units: tau = 300 t


class SamplerError(RuntimeError):
    """A solve that failed (step-size underflow, non-finite values); names the image and time."""


class _ProbabilityFlowZ(torch.nn.Module):
    """dz/dtau of the probability flow; counts evaluations and stops at the first non-finite one."""

    def __init__(self, eps_fn: EpsFn, sde: ConditionalVPSDE, time_scale: float, t_end: float,
                 image: str):
        super().__init__()
        self.eps_fn, self.sde, self.time_scale = eps_fn, sde, time_scale
        self.t_end, self.image, self.nfe, self.last_t = t_end, image, 0, 1.0

    def forward(self, tau, z):
        self.nfe += 1
        # torchdiffeq's initial step-size probe may ask for a time past the interval (t < 0,
        # where alpha_bar > 1); the probe only sizes the first step, so evaluate it at the
        # nearest valid time. Accepted steps stay inside [t_end, 1] (jump_t lands on t_end).
        t = (tau / self.time_scale).clamp(self.t_end, 1.0)
        self.last_t = float(t)
        _, s_t = self.sde.coefficients(t, z)
        dz = -0.5 * self.sde.beta(t) * (z - self.eps_fn(z, t) / s_t) / self.time_scale
        if not torch.isfinite(dz).all():
            raise SamplerError(f"probability flow for image {self.image!r}: non-finite drift at "
                               f"t = {self.last_t:.6g} (after {self.nfe} evaluations)")
        return dz


def _solver_options(method: str, options: dict | None, nfe: int | None):
    options = dict(options or {})
    if method in ADAPTIVE:
        unknown = set(options) - _ADAPTIVE_OPTIONS
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for {method}; allowed: "
                             f"{sorted(_ADAPTIVE_OPTIONS)}")
        if nfe is not None:
            raise ValueError(f"an NFE budget applies to fixed-step solvers, not {method}")
        options.setdefault("max_num_steps", 5000)
        return method, options
    if method not in FIXED_STEP_EVALS:
        raise ValueError(f"unknown solver {method!r}; choose one of "
                         f"{', '.join(ADAPTIVE + tuple(FIXED_STEP_EVALS))}")
    if options:
        raise ValueError(f"fixed-step solver {method} takes an NFE budget, not options "
                         f"{sorted(options)}")
    if nfe is None or nfe < FIXED_STEP_EVALS[method]:
        raise ValueError(f"fixed-step solver {method} needs nfe >= {FIXED_STEP_EVALS[method]}")
    steps = nfe // FIXED_STEP_EVALS[method]

    def grid(func, y0, t):  # uniform in t between the ends torchdiffeq asks for (either way)
        g = torch.linspace(float(t[0]), float(t[-1]), steps + 1, dtype=t.dtype, device=t.device)
        g[0], g[-1] = t[0], t[-1]
        return g

    return ("heun2" if method == "heun" else method), {"grid_constructor": grid}


def probability_flow_z(eps_fn: EpsFn, sde: ConditionalVPSDE, z1: torch.Tensor, *,
                       rtol: float = 1e-3, atol: float = 1e-3, method: str = "dopri5",
                       t_end: float = 1 / 3000, nfe: int | None = None,
                       options: dict | None = None, time_scale: float = RELEASED_TIME_SCALE,
                       adjoint: bool = False, adjoint_params=None,
                       image: str = "batch") -> tuple[torch.Tensor, int]:
    """Solve the probability flow in z from t = 1 (state z1, e.g. N(0, I)) to t = t_end.

    eps_fn(z_t, t) -> eps_hat (like z_t); t is a 0-dim tensor in [t_end, 1]. The defaults are
    the released solve. Returns (z0, forward NFE).
    """
    if not 0 < t_end < 1:
        raise ValueError(f"t_end must lie in (0, 1), got {t_end}")
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}")
    solver, solver_options = _solver_options(method, options, nfe)
    drift = _ProbabilityFlowZ(eps_fn, sde, time_scale, t_end, image)
    ts = torch.tensor([time_scale, time_scale * t_end], dtype=z1.dtype, device=z1.device)
    if solver in ADAPTIVE:
        # Land exactly on the end time, as released: without it torchdiffeq's adaptive solvers
        # step past the final time and interpolate back, evaluating the score at t < 0.
        solver_options.setdefault("jump_t", ts[-1:].clone())
    kwargs = dict(rtol=rtol, atol=atol, method=solver, options=solver_options)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*Unexpected arguments.*")
            if adjoint:
                if adjoint_params is None:
                    raise ValueError("adjoint=True needs adjoint_params (the tensors to "
                                     "differentiate); without them gradients are silently zero")
                params = tuple(adjoint_params)
                zs = odeint_adjoint(drift, z1, ts, adjoint_params=params,
                                    adjoint_options=dict(solver_options), **kwargs)
            else:
                zs = odeint(drift, z1, ts, **kwargs)
    except SamplerError:
        raise
    except (AssertionError, RuntimeError, UserWarning) as err:
        raise SamplerError(f"probability flow for image {image!r} failed at t = "
                           f"{drift.last_t:.6g} after {drift.nfe} evaluations: {err}") from err
    return zs[-1], drift.nfe


def probability_flow_sample(score_fn: ScoreFn, sde: ConditionalVPSDE, mu: torch.Tensor,
                            x1: torch.Tensor, **solver) -> tuple[torch.Tensor, int]:
    """Solve eq. (12) from t = 1 (state x1) to t = t_end for an x-space score; the solve runs
    in z = (x - mu) / sigma as ``probability_flow_z`` (same keyword arguments). Returns (x0, NFE).

    score_fn(x_t, t) -> grad_x log p_t(x_t | y); mu: bicubic upsampling of the LR (B, 3, H, W).
    """
    sigma = sde.sigma

    def eps_fn(z, t):
        _, s_t = sde.coefficients(t, z)
        return -sigma * s_t * score_fn(mu + sigma * z, t)

    z0, nfe = probability_flow_z(eps_fn, sde, (x1 - mu) / sigma, **solver)
    return mu + sigma * z0, nfe


def reverse_sde_sample(score_fn: ScoreFn, sde: ConditionalVPSDE, mu: torch.Tensor,
                       x1: torch.Tensor, *, steps: int, generator: torch.Generator | None = None,
                       t_end: float = 1 / 3000, checkpoint: bool = False,
                       image: str = "batch") -> tuple[torch.Tensor, int]:
    """Euler-Maruyama on dx = [f - g^2 score] dt + g dw, t from 1 to t_end; no noise on the last
    step. Returns (x0, steps)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ts = torch.linspace(1.0, t_end, steps + 1, dtype=x1.dtype, device=x1.device)
    noises = [randn_like(x1, generator) if i < steps - 1 else torch.zeros_like(x1)
              for i in range(steps)]

    def step(x, t, dt, noise):
        drift = sde.reverse_drift(x, mu, t, score_fn(x, t))
        return x - drift * dt + sde.diffusion(t, x) * math.sqrt(dt) * noise

    x = x1
    for i in range(steps):
        t, dt = ts[i], float(ts[i] - ts[i + 1])
        if checkpoint and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(step, x, t, dt, noises[i], use_reentrant=False)
        else:
            x = step(x, t, dt, noises[i])
        if not torch.isfinite(x).all():
            raise SamplerError(f"reverse SDE for image {image!r}: non-finite state at "
                               f"t = {float(ts[i + 1]):.6g}")
    return x, steps
