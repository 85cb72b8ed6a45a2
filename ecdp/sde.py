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

__all__ = ["ConditionalVPSDE", "estimate_sigma"]


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
