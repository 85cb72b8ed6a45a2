"""How much arithmetic one network evaluation costs, from the configured sizes alone.

``forward_flops(method, net, scale=...)`` builds the method's network on PyTorch's meta device
(no weights are allocated, no data is read: well under a second even for SR3's 97.8M U-Net)
and counts the floating-point operations of one forward pass with
``torch.utils.flop_counter.FlopCounterMode``, per HR pixel. It returns two parts: the LR
encoder, which runs once per image (per training step), and the network the sampler evaluates
once per step (NFE times per image):

    encoder, denoiser = forward_flops("ecdp", model_config, scale=4)   # FLOPs per HR pixel

Convolutions cost the same per pixel at any size; SR3's self-attention grows with the image,
so it is counted at a 128x128 HR crop (the paper's training patches are 160 px). The scheduler
requests (``ecdp.resources``) are built from these counts.
"""
from __future__ import annotations

import functools
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecdp.model import ECDP
from ecdp.nets.rrdb import RRDBNet

from .sr3 import SR3
from .srdiff import SRDiff

__all__ = ["forward_flops", "HR_PROBE"]

HR_PROBE = 128  # HR side of the crop the count is taken at


def _count(fn) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return float(counter.get_total_flops())


def _flops(method: str, net: dict, scale: int) -> tuple[float, float]:
    side, lr_side = HR_PROBE, HR_PROBE // scale
    with torch.device("meta"):
        lr = torch.empty(1, 3, lr_side, lr_side)
        hr = torch.empty(1, 3, side, side)
        t = torch.empty(1)
        if method == "rrdbnet":
            model = RRDBNet(scale=scale, **net)
            return 0.0, _count(lambda: model(lr))
        if method == "ecdp":
            model = ECDP.from_config(net, scale=scale, sigma=0.2)
            feats = model.encoder(lr)
            return (_count(lambda: model.encoder(lr)),
                    _count(lambda: model(hr, t, feats)))
        if method == "srdiff":
            rrdb = RRDBNet(scale=scale, **net["rrdb_net"])
            model = SRDiff(rrdb=rrdb, taps=tuple(net["taps"]), dim=net["dim"],
                           mults=tuple(net["mults"]), steps=net["steps"])
            feats = model.encoder(lr)
            step = torch.zeros(1, dtype=torch.long)
            return (_count(lambda: model.encoder(lr)),
                    _count(lambda: model.unet(hr, step, feats)))
        if method == "sr3":
            diffusion = ("steps", "beta_start", "beta_end")
            model = SR3(scale=scale, net={k: v for k, v in net.items() if k not in diffusion},
                        steps=net["steps"])
            return 0.0, _count(lambda: model.unet(torch.cat([hr, hr], 1), t))
    raise ValueError(f"forward_flops: unknown network {method!r}; "
                     f"choose one of rrdbnet, ecdp, srdiff, sr3")


@functools.lru_cache(maxsize=64)
def _cached(method: str, key: str, scale: int) -> tuple[float, float]:
    encoder, denoiser = _flops(method, json.loads(key), scale)
    return encoder / HR_PROBE ** 2, denoiser / HR_PROBE ** 2


def forward_flops(method: str, net: dict, *, scale: int) -> tuple[float, float]:
    """(encoder, denoiser) forward FLOPs per HR pixel of one image.

    method: ``rrdbnet`` (net: ``RRDBNet`` arguments), ``ecdp`` (the ``model`` config with a
    parametrization), ``srdiff`` (``baselines.srdiff`` with ``rrdb_net``: its RRDBNet's
    arguments) or ``sr3`` (``baselines.sr3``). Cached per network.
    """
    return _cached(method, json.dumps(net, sort_keys=True), scale)
