"""The conditional VP-SDE of ECDP (paper eqs. 5-13; docs/method.md, "Forward process").

    beta(t)      = beta_min + (beta_max - beta_min) t
    alpha_bar(t) = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2))
    (5)  dx = -1/2 beta(t) (x - mu(y)) dt + sigma sqrt(beta(t)) dw
    (9)  x_t | x_0, y ~ N(a_t x_0 + (1 - a_t) mu, sigma^2 s_t^2),  a_t = sqrt(alpha_bar), s_t = sqrt(1 - alpha_bar)
    (12) dx/dt = -1/2 beta(t) [(x - mu) + sigma^2 score]           (probability flow)
    (13) x_1 ~ N(mu, sigma^2)                                       (prior)

In z = (x - mu) / sigma the process is the standard VP-SDE.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .rng import randn_like

__all__ = ["ConditionalVPSDE", "DiscreteVP", "estimate_sigma"]


def _like(t, x: torch.Tensor) -> torch.Tensor:
    """Time as a tensor broadcastable against x: scalar or (B,) -> (B, 1, 1, 1)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(-1, *([1] * (x.dim() - 1))) if t.dim() else t


class ConditionalVPSDE:
    """Noise schedule and transition of eq. (5). ``sigma`` is the residual spread (a float)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, sigma: float = 0.2):
        if not (0 < beta_min < beta_max):
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.beta_min, self.beta_max, self.sigma = float(beta_min), float(beta_max), float(sigma)

    def beta(self, t):
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def alpha_bar(self, t):
        log = -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        return torch.exp(log) if torch.is_tensor(t) else math.exp(log)

    def coefficients(self, t, x: torch.Tensor):
        """(a_t, s_t) shaped to broadcast against x."""
        alpha_bar = self.alpha_bar(_like(t, x))
        return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()

    def marginal(self, x0: torch.Tensor, mu: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of p(x_t | x_0, y), eq. (9); std has shape (B, 1, 1, 1)."""
        a_t, s_t = self.coefficients(t, x0)
        return a_t * x0 + (1 - a_t) * mu, self.sigma * s_t

    def perturb(self, x0: torch.Tensor, mu: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """x_t = a_t x_0 + (1 - a_t) mu + sigma s_t eps."""
        mean, std = self.marginal(x0, mu, t)
        return mean + std * eps

    def prior_sample(self, mu: torch.Tensor, generator: torch.Generator | None = None,
                     temperature: float = 1.0) -> torch.Tensor:
        """x_1 ~ N(mu, (temperature sigma)^2 I), eq. (13)."""
        return mu + temperature * self.sigma * randn_like(mu, generator)

    def probability_flow_drift(self, x: torch.Tensor, mu: torch.Tensor, t,
                               score: torch.Tensor) -> torch.Tensor:
        """dx/dt of eq. (12)."""
        return -0.5 * self.beta(_like(t, x)) * ((x - mu) + self.sigma**2 * score)

    def reverse_drift(self, x: torch.Tensor, mu: torch.Tensor, t, score: torch.Tensor):
        """Drift of the reverse-time SDE, f - g^2 score, with f = -beta (x - mu) / 2, g^2 = sigma^2 beta."""
        beta = self.beta(_like(t, x))
        return -0.5 * beta * (x - mu) - self.sigma**2 * beta * score

    def log_snr(self, t):
        """lambda(t) = log(a_t / s_t), the half log signal-to-noise ratio DPM-Solver steps in."""
        log_alpha_bar = -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        if torch.is_tensor(t):
            return 0.5 * (log_alpha_bar - torch.log(-torch.expm1(log_alpha_bar)))
        return 0.5 * (log_alpha_bar - math.log(-math.expm1(log_alpha_bar)))

    def t_of_log_snr(self, lam):
        """The inverse of ``log_snr``: -log alpha_bar = softplus(-2 lambda) = L, and
        beta_min t + (beta_max - beta_min) t^2 / 2 = L solved for t >= 0."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        big_l = torch.nn.functional.softplus(-2 * lam)
        d = self.beta_max - self.beta_min
        return 2 * big_l / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * d * big_l))

    def diffusion(self, t, x: torch.Tensor) -> torch.Tensor:
        """g(t) = sigma sqrt(beta(t))."""
        return self.sigma * self.beta(_like(t, x)).sqrt()

    def config(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "sigma": self.sigma}


def _interp(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear y(x) through (xs, ys), xs increasing, extended linearly past both ends."""
    i = torch.searchsorted(xs, x.contiguous()).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class DiscreteVP:
    """A discrete DDPM's alpha_bar_0..N-1 as a continuous-time VP schedule (Lu et al. 2022,
    "DPM-Solver", section 3.4 and appendix): step n sits at t_n = (n + 1) / N and log alpha_bar
    is linear in t between steps, so ``alpha_bar(t_n)`` is the chain's own. It answers what the
    solvers of ``ecdp.samplers`` ask of a schedule (``alpha_bar``, ``log_snr``, its inverse
    ``t_of_log_snr``, ``beta`` = -d log alpha_bar / dt, ``coefficients``) with sigma = 1: the
    chain's x_t is already the standard VP state z. A model evaluated at time t sees step
    ``step_of(t)`` = N t - 1 (fractional between steps) or level sqrt(alpha_bar(t)) (SR3)."""

    sigma = 1.0

    def __init__(self, alpha_bar: torch.Tensor):
        alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
        if alpha_bar.dim() != 1 or len(alpha_bar) < 2:
            raise ValueError("DiscreteVP needs alpha_bar of at least two steps")
        if not bool(((alpha_bar > 0) & (alpha_bar < 1)).all()) or \
                not bool((alpha_bar[1:] < alpha_bar[:-1]).all()):
            raise ValueError("alpha_bar must decrease strictly inside (0, 1)")
        self.steps = len(alpha_bar)
        self.ts = torch.arange(1, self.steps + 1, dtype=torch.float64) / self.steps
        self.log_alpha_bar = alpha_bar.log()

    def _log_ab(self, t) -> torch.Tensor:  # the table lives on the CPU, in float64
        t = torch.as_tensor(t).detach().to("cpu", torch.float64)
        return _interp(t.reshape(-1), self.ts, self.log_alpha_bar).reshape(t.shape)

    def _out(self, value: torch.Tensor, t):
        """On t's device and (floating) dtype; a float for a float."""
        if torch.is_tensor(t):
            return value.to(t.device, t.dtype if t.is_floating_point() else value.dtype)
        return float(value)

    def alpha_bar(self, t):
        return self._out(self._log_ab(t).exp(), t)

    def beta(self, t):
        """-d log alpha_bar / dt: the slope of the segment t lies on."""
        tt = torch.as_tensor(t).detach().to("cpu", torch.float64).reshape(-1)
        i = torch.searchsorted(self.ts, tt.contiguous()).clamp(1, self.steps - 1)
        slope = -(self.log_alpha_bar[i] - self.log_alpha_bar[i - 1]) / (self.ts[i] - self.ts[i - 1])
        return self._out(slope.reshape(torch.as_tensor(t).shape), t)

    def coefficients(self, t, x: torch.Tensor):
        alpha_bar = self.alpha_bar(_like(t, x)).to(x.dtype)
        return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()

    def log_snr(self, t):
        log_ab = self._log_ab(t)
        return self._out(0.5 * (log_ab - torch.log(-torch.expm1(log_ab))), t)

    def t_of_log_snr(self, lam):
        lam = torch.as_tensor(lam).detach().to("cpu", torch.float64)
        log_ab = -torch.nn.functional.softplus(-2 * lam)
        # log alpha_bar decreases in t: interpolate t over the increasing -log alpha_bar
        return _interp(-log_ab.reshape(-1), -self.log_alpha_bar, self.ts).reshape(lam.shape)

    def step_of(self, t) -> torch.Tensor:
        """The chain's (fractional) step index at time t: N t - 1."""
        return torch.as_tensor(t) * self.steps - 1

    def config(self) -> dict:
        return {"discrete_steps": self.steps}


def estimate_sigma(hr_images: list[np.ndarray], scale: int) -> float:
    """``sigma: auto``: the standard deviation of x - mu(y) over the training HR images ([0, 1])."""
    from .degradation import degrade, modcrop, upsample

    total, total_sq, count = 0.0, 0.0, 0
    for hr in hr_images:
        hr = modcrop(hr, scale)
        lr = torch.from_numpy(degrade(hr, scale)).permute(2, 0, 1).double() / 255
        residual = torch.from_numpy(hr).permute(2, 0, 1).double() / 255 - upsample(lr, scale)
        total += float(residual.sum())
        total_sq += float((residual**2).sum())
        count += residual.numel()
    if count == 0:
        raise ValueError("estimate_sigma needs at least one image")
    mean = total / count
    return math.sqrt(max(total_sq / count - mean**2, 0.0))
