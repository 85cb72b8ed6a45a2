"""eps, x0 and hybrid parametrizations (paper eqs. 14-18; docs/method.md, "Parametrizations").

The network has two heads in z = (x - mu) / sigma: ``eps_head`` and ``z0_head``. Each
parametrization turns them into one noise prediction ``eps_hat``, from which

    score = -eps_hat / (sigma s_t)        z0_hat = (z_t - s_t eps_hat) / a_t

    eps:    eps_hat = eps_head                                          (14)
    x0:     eps_hat = (z_t - a_t z0_head) / s_t                          (15)
    hybrid: eps_hat = gamma eps_head + (1 - gamma) (z_t - a_t z0_head) / s_t   (18)
    gamma_k(t) = k alpha_bar / (k alpha_bar + 1 - alpha_bar)   (k = 1: the released code)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["gamma_k", "Parametrization", "KINDS", "select_k"]

KINDS = ("eps", "x0", "hybrid")


def gamma_k(alpha_bar: torch.Tensor, k: float) -> torch.Tensor:
    """Weight of the eps head: 1 at no noise, 0 at full noise; k shifts the crossover."""
    return k * alpha_bar / (k * alpha_bar + 1 - alpha_bar)


@dataclass(frozen=True)
class Parametrization:
    kind: str = "hybrid"
    k: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"parametrization must be one of {KINDS}, got {self.kind!r}")
        if not self.k > 0:
            raise ValueError(f"k must be positive, got {self.k}")

    def gamma(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        if self.kind == "eps":
            return torch.ones_like(alpha_bar)
        if self.kind == "x0":
            return torch.zeros_like(alpha_bar)
        return gamma_k(alpha_bar, self.k)

    def eps_hat(self, eps_head, z0_head, z_t, a_t, s_t) -> torch.Tensor:
        """The combined noise prediction (a_t, s_t broadcast against z_t)."""
        if self.kind == "eps":
            return eps_head
        eps_from_x0 = (z_t - a_t * z0_head) / s_t
        if self.kind == "x0":
            return eps_from_x0
        gamma = self.gamma(a_t**2)
        return gamma * eps_head + (1 - gamma) * eps_from_x0

    @staticmethod
    def z0_hat(eps_hat, z_t, a_t, s_t) -> torch.Tensor:
        return (z_t - s_t * eps_hat) / a_t

    @staticmethod
    def score(eps_hat, s_t, sigma: float) -> torch.Tensor:
        """grad_x log p_t(x | y), in x-space."""
        return -eps_hat / (sigma * s_t)

    def loss_terms(self) -> tuple[bool, bool]:
        """Which heads the score-matching loss trains: (eps term, x0 term)."""
        return self.kind != "x0", self.kind != "eps"


def select_k(heads: list[tuple[torch.Tensor, ...]], candidates: torch.Tensor) -> tuple[float, list]:
    """``k: auto``: the k minimising the hybrid's mean squared z0 error over validation heads.

    heads: list of (eps_head, z0_head, z_t, z0, a_t, s_t), gathered once (the heads do not depend
    on k). Returns (best k, [(k, error), ...]).
    """
    errors = []
    for k in candidates.tolist():
        p = Parametrization("hybrid", k)
        total, count = 0.0, 0
        for eps_head, z0_head, z_t, z0, a_t, s_t in heads:
            z0_hat = p.z0_hat(p.eps_hat(eps_head, z0_head, z_t, a_t, s_t), z_t, a_t, s_t)
            total += float((z0_hat - z0).pow(2).sum())
            count += z0.numel()
        errors.append((k, total / count))
    best = min(errors, key=lambda e: e[1])[0]
    return best, errors
