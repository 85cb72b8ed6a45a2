"""Losses: score matching (eqs. 16-17, as released) and the image quality loss L_IQ (eq. 19).

    L_SM = ||eps_head - eps||^2 + ||z0_head - z0||^2   summed over pixels, mean over the batch
    L_IQ = mean | phi(x_hat_0) - phi(x_0) |             x_hat_0 a probability-flow sample

The eps-only and x0-only ablations train only their own head's term. Noise (t, eps, prior
noise) is drawn by the caller from an explicit generator, so a step is a pure function of its batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .degradation import upsample

__all__ = ["draw_sm_noise", "score_matching_loss", "image_quality_loss", "feature_l1", "l1_loss"]


def draw_sm_noise(hr: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(t: (B,) ~ U[0, 1), as released, eps: like hr) for one score-matching batch."""
    t = torch.rand(hr.shape[0], generator=generator)
    eps = torch.randn(hr.shape, generator=generator)
    return t.to(hr.device), eps.to(hr.device)


def score_matching_loss(model, lr: torch.Tensor, hr: torch.Tensor, t: torch.Tensor,
                        eps: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """L_SM for an ECDP ``model``; lr (B, 3, h, w), hr (B, 3, sh, sw) in [0, 1]."""
    mu = upsample(lr, model.scale)
    feats = model.encoder(lr)
    z0 = (hr - mu) / model.sde.sigma
    a_t, s_t = model.sde.coefficients(t, z0)
    z_t = a_t * z0 + s_t * eps
    eps_head, z0_head = model(z_t, t, feats)
    use_eps, use_x0 = model.parametrization.loss_terms()
    term_eps = (eps_head - eps).pow(2).flatten(1).sum(1).mean()
    term_x0 = (z0_head - z0).pow(2).flatten(1).sum(1).mean()
    loss = term_eps * use_eps + term_x0 * use_x0
    return loss, {"sm_eps": float(term_eps.detach()), "sm_x0": float(term_x0.detach())}


def image_quality_loss(model, features, lr: torch.Tensor, hr: torch.Tensor, x1: torch.Tensor, *,
                       solver, train_encoder: bool = False,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """L_IQ through a sample of ``solver`` (``ecdp.samplers.make_solver``: the released solve
    with ``adjoint``, or the checkpointed reverse SDE). x1: prior noise state, like hr."""
    sample, nfe = model.sample(lr, x1=x1, solver=solver, train_encoder=train_encoder,
                               generator=generator)
    loss, logs = feature_l1(features, sample, hr)
    return loss, {**logs, "nfe": nfe}


def feature_l1(features, sample: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """L_IQ's distance, eq. (19): mean |phi(sample) - phi(hr)| over VGG19 features ``features``
    (``ecdp.features``). The one L_IQ of the suite: ECDP's stage 2 and the "++" baselines."""
    loss = F.l1_loss(features(sample), features(hr))
    return loss, {"iq": float(loss.detach())}


L1_REDUCTIONS = ("sum", "mean")


def l1_loss(net, lr: torch.Tensor, hr: torch.Tensor, *,
            reduction: str = "sum") -> tuple[torch.Tensor, dict]:
    """RRDBNet pre-training: absolute error summed over each image's pixels and averaged over
    the batch (ECDP's release), or averaged over every element (``"mean"``: SRDiff's, ESRGAN's).
    The sum is 3 h w times the mean, which matters under clipping by value."""
    if reduction not in L1_REDUCTIONS:
        raise ValueError(f"L1 reduction must be one of {L1_REDUCTIONS}, got {reduction!r}")
    err = (net(lr) - hr).abs()
    loss = err.flatten(1).sum(1).mean() if reduction == "sum" else err.mean()
    return loss, {"l1": float(err.mean().detach())}
