"""ECDP = RRDB LR encoder + score U-Net + the conditional SDE and a parametrization.

Everything is in z = (x - mu) / sigma inside; the score handed to samplers is in x-space.

    model = ECDP.load("ecdp.pt")           # EMA weights, config from the checkpoint
    sr, nfe = model.upscale(lr)            # lr: (B, 3, h, w) in [0, 1]
"""
from __future__ import annotations

import os

import torch
from torch import nn

from .degradation import upsample
from .nets import RRDBEncoder, ScoreUNet
from .parametrization import Parametrization
from .rng import randn_like
from .samplers import RELEASED_TIME_SCALE, probability_flow_z, reverse_sde_sample
from .sde import ConditionalVPSDE

__all__ = ["ECDP", "DEFAULT_SAMPLER"]

# The released solve (METHOD.md "Probability flow"): dopri5 at 1e-3 in z, tau = 300 t, to 1/3000.
DEFAULT_SAMPLER = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3, "t_end": 1 / 3000,
                   "nfe": None, "temperature": 1.0, "time_scale": RELEASED_TIME_SCALE}


class ECDP(nn.Module):
    name = "ecdp"
    stochastic = True

    def __init__(self, *, encoder: RRDBEncoder, unet: ScoreUNet, sde: ConditionalVPSDE,
                 parametrization: Parametrization, scale: int, sampler: dict | None = None):
        super().__init__()
        self.encoder, self.unet = encoder, unet
        self.sde, self.parametrization, self.scale = sde, parametrization, scale
        self.sampler = {**DEFAULT_SAMPLER, **(sampler or {})}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, net: dict, *, scale: int, sigma: float, encoder: RRDBEncoder | None = None,
                    parametrization: Parametrization | None = None) -> "ECDP":
        """net: the resolved ``model`` config (encoder, unet, sde, parametrization, sampler);
        ``unet.time_scale`` is required (the U-Net embeds time_scale * t; released 300)."""
        enc = net["encoder"]
        if "time_scale" not in net["unet"]:
            raise KeyError("model.unet.time_scale is missing (the U-Net embeds time_scale * t; "
                           "the release uses 300); a checkpoint without it was written before "
                           "it was recorded and embedded 1000 t: retrain it")
        encoder = encoder or RRDBEncoder(features=enc["features"], growth=enc["growth"],
                                         blocks=enc["blocks"], taps=tuple(enc["taps"]))
        unet = ScoreUNet(channels=tuple(net["unet"]["channels"]),
                         blocks=tuple(net["unet"]["blocks"]),
                         time_channels=net["unet"]["time_channels"],
                         cond_channels=encoder.out_channels, dropout=net["unet"].get("dropout", 0.0),
                         time_scale=float(net["unet"]["time_scale"]))
        sde = ConditionalVPSDE(net["sde"]["beta_min"], net["sde"]["beta_max"], sigma)
        p = parametrization or Parametrization(net["parametrization"], float(net.get("k", 1.0)))
        return cls(encoder=encoder, unet=unet, sde=sde, parametrization=p, scale=scale,
                   sampler=net.get("sampler"))

    @classmethod
    def load(cls, path: str | os.PathLike, *, weights: str = "ema",
             device: str | torch.device = "cpu", k: float | None = None,
             sampler: dict | None = None) -> "ECDP":
        """A trained model from a checkpoint written by ``ecdp.checkpoint.save_checkpoint``.

        ``k`` overrides the hybrid's k and ``sampler`` the solver settings stored in it.
        """
        from .checkpoint import load_checkpoint, restore

        ckpt = load_checkpoint(path, weights=weights)
        meta = ckpt["meta"]
        p = Parametrization(meta["parametrization"], float(meta["k"] if k is None else k))
        model = cls.from_config(meta["model"], scale=meta["scale"], sigma=meta["sigma"],
                                parametrization=p)
        model.sampler.update(sampler or {})
        return restore(model, ckpt, weights=weights, path=path).to(device)

    # ------------------------------------------------------------------ the score

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, feats: torch.Tensor):
        """The two heads: (eps_head, z0_head), each (B, 3, H, W)."""
        return self.unet(z_t, t, feats).chunk(2, dim=1)

    def eps_hat(self, z_t, t, feats):
        a_t, s_t = self.sde.coefficients(t, z_t)
        eps_head, z0_head = self(z_t, t, feats)
        return self.parametrization.eps_hat(eps_head, z0_head, z_t, a_t, s_t)

    def score_fn(self, mu: torch.Tensor, feats: torch.Tensor):
        """score(x_t, t) = -eps_hat / (sigma s_t), for the samplers."""
        sigma = self.sde.sigma

        def score(x, t):
            _, s_t = self.sde.coefficients(t, x)
            return self.parametrization.score(self.eps_hat((x - mu) / sigma, t, feats), s_t, sigma)

        return score

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, mu: torch.Tensor,
                feats: torch.Tensor) -> torch.Tensor:
        """One-step prediction of x_0 from x_t (the parametrization's denoised image, Figure 5)."""
        sigma = self.sde.sigma
        z_t = (x_t - mu) / sigma
        a_t, s_t = self.sde.coefficients(t, z_t)
        return mu + sigma * Parametrization.z0_hat(self.eps_hat(z_t, t, feats), z_t, a_t, s_t)

    def condition(self, lr: torch.Tensor):
        """(mu, LR features) for an LR batch."""
        return upsample(lr, self.scale), self.encoder(lr)

    # ------------------------------------------------------------------ sampling

    def sample(self, lr: torch.Tensor, *, generator: torch.Generator | None = None,
               x1: torch.Tensor | None = None, adjoint: bool = False,
               train_encoder: bool = False, sde_steps: int | None = None,
               image: str = "batch", **sampler) -> tuple[torch.Tensor, int]:
        """x_0 by probability flow (or the reverse SDE when ``sde_steps`` is given); with no
        sampler arguments, the released solve (``DEFAULT_SAMPLER``). x1: the prior state
        (x-space, like the HR), drawn from ``generator`` when None.

        Differentiable: gradients reach the U-Net (through the adjoint when ``adjoint``), and the
        encoder only when ``train_encoder``. Returns (x0 (B, 3, sH, sW), NFE).
        """
        opts = {**self.sampler, **sampler}
        mu, feats = self.condition(lr)
        if not train_encoder:
            feats = feats.detach()
        sigma = self.sde.sigma
        z1 = (opts["temperature"] * randn_like(mu, generator) if x1 is None
              else (x1 - mu) / sigma)  # prior, eq. (13), in z
        if sde_steps is not None:
            return reverse_sde_sample(self.score_fn(mu, feats), self.sde, mu, mu + sigma * z1,
                                      steps=sde_steps, generator=generator, t_end=opts["t_end"],
                                      checkpoint=torch.is_grad_enabled(), image=image)
        params = list(self.unet.parameters()) + ([feats] if train_encoder else [])
        z0, nfe = probability_flow_z(lambda z, t: self.eps_hat(z, t, feats), self.sde, z1,
                                     rtol=opts["rtol"], atol=opts["atol"], method=opts["method"],
                                     t_end=opts["t_end"], nfe=opts["nfe"],
                                     time_scale=opts["time_scale"], adjoint=adjoint,
                                     adjoint_params=params if adjoint else None, image=image)
        return mu + sigma * z0, nfe

    def super_resolve(self, lr: torch.Tensor, *, generator: torch.Generator | None = None,
                      image: str = "batch"):
        """SuperResolver interface: (sr in [0, 1], NFE)."""
        sr, nfe = self.sample(lr, generator=generator, image=image)
        return sr.clamp(0, 1), nfe

    def upscale(self, lr: torch.Tensor, *, generator: torch.Generator | None = None,
                tile: int | None = None, overlap: int = 8, progress: bool = False,
                image: str = "batch"):
        """Super-resolve any size; large images in overlapping LR tiles blended without seams."""
        from .tiling import tiled

        with torch.no_grad():
            if tile is None:
                return self.super_resolve(lr, generator=generator, image=image)
            return tiled(lambda x, g: self.super_resolve(x, generator=g, image=image), lr,
                         scale=self.scale, tile=tile, overlap=overlap, generator=generator,
                         progress=progress)
