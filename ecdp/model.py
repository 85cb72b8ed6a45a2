"""ECDP = RRDB LR encoder + score U-Net + the conditional SDE and a parametrization.

Everything is in z = (x - mu) / sigma inside; samplers integrate z with the noise prediction.

    model = ECDP.load("ecdp.pt")           # EMA weights, config from the checkpoint
    sr, nfe = model.upscale(lr)            # lr: (B, 3, h, w) in [0, 1]; the released solve

The model holds no sampling settings: ``sample`` takes its solver, and ``ecdp.sampling.Sampled``
pairs a model with a ``Sampling`` for evaluation.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from .degradation import upsample
from .nets import RRDBEncoder, ScoreUNet
from .parametrization import Parametrization
from .rng import randn_like
from .samplers import make_solver
from .sde import ConditionalVPSDE

__all__ = ["ECDP"]


class ECDP(nn.Module):
    name = "ecdp"
    stochastic = True

    def __init__(self, *, encoder: RRDBEncoder, unet: ScoreUNet, sde: ConditionalVPSDE,
                 parametrization: Parametrization, scale: int):
        super().__init__()
        self.encoder, self.unet = encoder, unet
        self.sde, self.parametrization, self.scale = sde, parametrization, scale

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, net: dict, *, scale: int, sigma: float, encoder: RRDBEncoder | None = None,
                    parametrization: Parametrization | None = None) -> "ECDP":
        """net: the resolved ``model`` config (encoder, unet, sde, parametrization, k);
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
        return cls(encoder=encoder, unet=unet, sde=sde, parametrization=p, scale=scale)

    @classmethod
    def load(cls, path: str | os.PathLike, *, weights: str = "ema",
             device: str | torch.device = "cpu", k: float | None = None) -> "ECDP":
        """A trained model from a checkpoint written by ``ecdp.checkpoint.save_checkpoint``;
        ``k`` overrides the hybrid's k. A checkpoint of another kind is an error naming it."""
        from .checkpoint import load_checkpoint, restore

        ckpt = load_checkpoint(path, weights=weights)
        meta = ckpt["meta"]
        if meta.get("kind", "ecdp") != "ecdp":
            raise ValueError(f"{path}: a {meta['kind']!r} checkpoint, not an ECDP one; "
                             f"baselines.method_from_checkpoint reads any kind")
        p = Parametrization(meta["parametrization"], float(meta["k"] if k is None else k))
        model = cls.from_config(meta["model"], scale=meta["scale"], sigma=meta["sigma"],
                                parametrization=p)
        return restore(model, ckpt, weights=weights, path=path).to(device)

    @staticmethod
    def sampling_keywords(sampling) -> dict:
        """``sample``'s keywords for a ``ecdp.sampling.Sampling`` (``Sampled`` calls this)."""
        from .sampling import ecdp_keywords

        return ecdp_keywords(sampling)

    # ------------------------------------------------------------------ the score

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, feats: torch.Tensor | None = None, *,
                conditioning: list | None = None):
        """The two heads: (eps_head, z0_head), each (B, 3, H, W). ``conditioning``: the U-Net's
        per-block LR conditioning, precomputed once per sample (``unet.condition``)."""
        return self.unet(z_t, t, feats, conditioning=conditioning).chunk(2, dim=1)

    def eps_hat(self, z_t, t, feats=None, *, conditioning=None):
        a_t, s_t = self.sde.coefficients(t, z_t)
        eps_head, z0_head = self(z_t, t, feats, conditioning=conditioning)
        return self.parametrization.eps_hat(eps_head, z0_head, z_t, a_t, s_t)

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

    def prior(self, mu: torch.Tensor, generator=None, temperature: float = 1.0) -> torch.Tensor:
        """z1 ~ N(0, temperature^2 I), eq. (13) in z; ``generator`` may be a list, one per image
        (a batch then draws what each image alone would)."""
        if isinstance(generator, (list, tuple)):
            return torch.cat([temperature * randn_like(mu[i:i + 1], g)
                              for i, g in enumerate(generator)])
        return temperature * randn_like(mu, generator)

    def sample(self, lr: torch.Tensor, *, solver=None, generator=None,
               x1: torch.Tensor | None = None, temperature: float = 1.0,
               channels_last: bool = False, train_encoder: bool = False,
               image: str = "batch") -> tuple[torch.Tensor, int]:
        """x_0 from the prior by ``solver`` (``ecdp.samplers.make_solver``; default the released
        solve). x1: the prior state (x-space, like the HR), drawn from ``generator`` with
        ``temperature`` when None; a stochastic solver draws its noise from the same generator
        afterwards. ``channels_last``: the solve's memory format.

        Differentiable: gradients reach the U-Net (through the adjoint for an adjoint solver),
        and the encoder only when ``train_encoder``. Returns (x0 (B, 3, sH, sW), NFE).
        """
        solver = solver or make_solver()
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"ECDP.sample: lr must be (B, 3, h, w) in [0, 1], got shape "
                             f"{tuple(lr.shape)} (add the batch dimension with lr[None])")
        mu, feats = self.condition(lr)
        if not train_encoder:
            feats = feats.detach()
        conditioning = self.unet.condition(feats, mu.shape[-2:])  # once per sample
        sigma = self.sde.sigma
        z1 = self.prior(mu, generator, temperature) if x1 is None else (x1 - mu) / sigma
        if channels_last:
            z1 = z1.contiguous(memory_format=torch.channels_last)
        # What the solver's function uses: the U-Net but for its conditioning convs, which act
        # once, before it, through ``conditioning`` (listing both would count them twice).
        outside = {id(p) for p in self.unet.condition_parameters()}
        params = ([p for p in self.unet.parameters() if p.requires_grad and id(p) not in outside]
                  + [c for c in (conditioning or []) if c.requires_grad])
        z0, nfe = solver(lambda z, t: self.eps_hat(z, t, conditioning=conditioning), self.sde,
                         z1, generator=generator, adjoint_params=params, image=image)
        return mu + sigma * z0, nfe

    def super_resolve(self, lr: torch.Tensor, *, generator: torch.Generator | None = None,
                      image: str = "batch"):
        """SuperResolver interface with the released solve: (sr in [0, 1], NFE)."""
        sr, nfe = self.sample(lr, generator=generator, image=image)
        return sr.clamp(0, 1), nfe

    def upscale(self, lr: torch.Tensor, *, sampling=None,
                generator: torch.Generator | None = None, tile: int | None = None,
                overlap: int = 8, progress: bool = False, image: str = "batch"):
        """Super-resolve any size with ``sampling`` (a ``Sampling`` or its config; None: the
        released solve); large images in overlapping LR tiles blended without seams."""
        from .sampling import Sampled, parse_sampling
        from .tiling import upscale

        return upscale(Sampled(self, parse_sampling(sampling)), lr, generator=generator,
                       tile=tile, overlap=overlap, progress=progress, image=image)
