"""What a job costs, from the configured sizes alone: FLOPs and peak device memory.

Both are measured on tensors that hold no data. ``forward_flops`` builds a method's network on
PyTorch's meta device and counts one forward pass with ``FlopCounterMode`` (well under a second,
even for SR3's 97.8M U-Net); the scheduler requests (``suite.resources``) are built from it.
``training_peak`` and ``sampling_peak`` build it under ``FakeTensorMode`` (fake CPU tensors:
autograd needs a real device behind fake CUDA ones; the tensors' sizes do not depend on it) and
follow every tensor a training step or a network evaluation creates and
frees with PyTorch's ``MemTracker``: its peak is what the GPU's caching allocator must hold,
before its own overheads (``suite.memory.planned_bytes`` adds those).

What is tracked, per job kind:

- a training step: the network's forward and backward at the configured batch (per process)
  and patch, parameters and gradients; Adam's two moments and the EMA copy are added (they live
  through the whole training); the loss terms and the CPU-side data pipeline are not.
- an L_IQ step (ECDP stage 2, the "++" runs): one network evaluation's forward and backward (the
  adjoint solve and the checkpointed chain each recompute one evaluation at a time) plus VGG19's
  forward and backward on the batch, and the chain's saved states.
- sampling: one network evaluation without gradients on the image (or tile), the encoder's
  features, and the solver's state tensors.

Convolutions cost the same per pixel at any size; SR3's self-attention grows with the image,
so FLOPs are counted at a 128x128 HR crop (the paper's training patches are 160 px).
"""
from __future__ import annotations

import functools
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecdp.features import VGGFeatures
from ecdp.model import ECDP
from ecdp.nets.rrdb import RRDBNet, rrdbnet_config

from .sr3 import SR3
from .srdiff import SRDiff

__all__ = ["forward_flops", "training_peak", "sampling_peak", "networks", "HR_PROBE",
           "NETWORKS"]

HR_PROBE = 128  # HR side of the crop FLOPs are counted at
NETWORKS = ("rrdbnet", "ecdp", "srdiff", "sr3")
SOLVER_STATES = 10  # state-sized tensors a solver keeps (dopri5: the state and 7 stages, ...)


def networks(config: dict) -> dict[str, tuple[str, dict]]:
    """What each trained model of a resolved workflow config is: model name -> (network kind,
    its arguments), for the RRDBNets, ECDP (every parametrization costs the same), SRDiff and
    SR3."""
    encoder, srdiff = config["model"]["encoder"], config["baselines"]["srdiff"]
    size = {k: encoder[k] for k in ("features", "growth", "blocks")}
    return {
        "rrdb": ("rrdbnet", rrdbnet_config("ecdp", size,
                                           bicubic_skip=config["model"]["rrdb_bicubic_skip"])),
        "srdiff-rrdb": ("rrdbnet", rrdbnet_config("srdiff", srdiff["encoder"])),
        "ecdp": ("ecdp", {**config["model"], "parametrization": "hybrid", "k": 1.0,
                          "sde": {**config["model"]["sde"], "sigma": 0.2}}),
        "srdiff": ("srdiff", {**{k: v for k, v in srdiff.items() if k != "encoder"},
                              "rrdb_net": rrdbnet_config("srdiff", srdiff["encoder"])}),
        "sr3": ("sr3", dict(config["baselines"]["sr3"])),
    }


class _Network:
    """A method's network with what a cost needs: ``encode(lr)`` (once per image; None when
    there is no encoder), ``evaluate(lr, x, t, features)`` (one evaluation) and which part
    trains (``trained``: the modules whose parameters get gradients)."""

    def __init__(self, method: str, net: dict, scale: int):
        if method not in NETWORKS:
            raise ValueError(f"unknown network {method!r}; choose one of {', '.join(NETWORKS)}")
        self.method, self.scale = method, scale
        if method == "rrdbnet":
            self.model = RRDBNet(scale=scale, **net)
            self.encode = None
            self.evaluate = lambda lr, x, t, feats: self.model(lr)
        elif method == "ecdp":
            self.model = ECDP.from_config(net, scale=scale, sigma=0.2)
            self.encode = self.model.encoder
            self.evaluate = lambda lr, x, t, feats: torch.cat(self.model(x, t, feats), 1)
        elif method == "srdiff":
            rrdb = RRDBNet(scale=scale, **net["rrdb_net"])
            self.model = SRDiff(rrdb=rrdb, taps=tuple(net["taps"]), dim=net["dim"],
                                mults=tuple(net["mults"]), steps=net["steps"])
            self.encode = self.model.encoder
            self.evaluate = lambda lr, x, t, feats: self.model.unet(x, t.long(), feats)
        else:
            diffusion = ("steps", "beta_start", "beta_end")
            self.model = SR3(scale=scale, steps=net["steps"],
                             net={k: v for k, v in net.items() if k not in diffusion})
            self.encode = None
            self.evaluate = lambda lr, x, t, feats: self.model.unet(torch.cat([x, x], 1), t)
        # MemTracker hooks every parameter's gradient; what a job keeps frozen runs without
        # gradients instead (and gets no optimizer state)
        self.model.requires_grad_(True)

    def inputs(self, batch: int, height: int, width: int):
        """(lr, x_t, t) for HR images of height x width (multiples of the scale)."""
        s = self.scale
        return (torch.rand(batch, 3, height // s, width // s),
                torch.randn(batch, 3, height, width), torch.rand(batch))

    def encoder_module(self) -> torch.nn.Module | None:
        return {"ecdp": getattr(self.model, "encoder", None),
                "srdiff": getattr(self.model, "rrdb", None)}.get(self.method)

    def encoder_trains(self, *, iq: bool = False) -> bool:
        """ECDP's encoder trains in stage 1 (at lr_encoder); SRDiff's is frozen; L_IQ keeps
        ECDP's frozen (train_encoder: false, as released)."""
        return self.method == "ecdp" and not iq


def _count(fn) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return float(counter.get_total_flops())


@functools.lru_cache(maxsize=64)
def _flops(method: str, key: str, scale: int) -> tuple[float, float]:
    with torch.device("meta"):
        network = _Network(method, json.loads(key), scale)
        lr, x, t = network.inputs(1, HR_PROBE, HR_PROBE)
        encode = network.encode or (lambda lr_: None)
        feats = encode(lr)
        return (_count(lambda: encode(lr)) / HR_PROBE ** 2,
                _count(lambda: network.evaluate(lr, x, t, feats)) / HR_PROBE ** 2)


def forward_flops(method: str, net: dict, *, scale: int) -> tuple[float, float]:
    """(encoder, network) forward FLOPs per HR pixel of one image; the network runs once per
    sampling step (NFE times per image), the encoder once per image.

    method: ``rrdbnet`` (net: ``RRDBNet`` arguments), ``ecdp`` (the ``model`` config with a
    parametrization), ``srdiff`` (``baselines.srdiff`` with ``rrdb_net``: its RRDBNet's
    arguments) or ``sr3`` (``baselines.sr3``); ``networks(config)`` gives each. Cached.
    """
    return _flops(method, json.dumps(net, sort_keys=True), scale)


def _tracked(device: str, fn) -> int:
    """Peak bytes on ``device`` of ``fn(track)`` run on fake tensors; ``fn`` builds what it
    needs and calls ``track(*modules_or_optimizers)`` before the tracked work."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    with FakeTensorMode(), torch.device(device):
        fn(tracker)
    snapshot = tracker.get_tracker_snapshot("peak")
    return int(snapshot.get(torch.device(device), {}).get("Total", 0))


def _param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@functools.lru_cache(maxsize=256)
def _training_peak(method: str, key: str, scale: int, batch: int, patch: int, ema: bool,
                   iq: bool, chain: int, device: str) -> int:
    extra = {}

    def step(tracker):
        network = _Network(method, json.loads(key), scale)
        model = network.model
        vgg = VGGFeatures(None).requires_grad_(True) if iq else None  # hooks (see _Network)
        trains_encoder = network.encoder_trains(iq=iq)
        frozen = None if trains_encoder else network.encoder_module()
        tracker.track_external(model)
        with tracker:
            lr, x, t = network.inputs(batch, patch, patch)
            feats = None
            if network.encode is not None:
                with torch.set_grad_enabled(trains_encoder):
                    feats = network.encode(lr)
            out = network.evaluate(lr, x, t, feats)
            if iq:
                phi = vgg(torch.cat([out[:, :3], x]))  # the sample's and the HR's, one call
                loss = (phi[:batch] - phi[batch:]).abs().mean()
            else:
                loss = out.abs().mean()
            loss.backward()
        trained = _param_bytes(model) - (_param_bytes(frozen) if frozen is not None else 0)
        # Adam's two moments for what trains, the EMA's copy of everything, the chain's states
        extra["bytes"] = (2 * trained + (_param_bytes(model) if ema else 0)
                          + chain * x.numel() * x.element_size())

    peak = _tracked(device, step)
    return peak + extra["bytes"]


def training_peak(method: str, net: dict, *, scale: int, batch: int, patch: int,
                  ema: bool, iq: bool = False, chain: int = 0, device: str = "cpu") -> int:
    """Peak device bytes of one training step at ``batch`` (per process) and ``patch`` (see the
    module docstring for what is tracked); ``iq``: an L_IQ step, ``chain``: the sampling
    chain's length (states saved along it)."""
    return _training_peak(method, json.dumps(net, sort_keys=True), scale, batch, patch, ema, iq,
                          chain, device)


@functools.lru_cache(maxsize=256)
def _sampling_peak(method: str, key: str, scale: int, batch: int, height: int, width: int,
                   device: str) -> int:
    extra = {}

    def evaluate(tracker):
        network = _Network(method, json.loads(key), scale)
        tracker.track_external(network.model)
        with tracker, torch.no_grad():
            lr, x, t = network.inputs(batch, height, width)
            feats = network.encode(lr) if network.encode is not None else None
            network.evaluate(lr, x, t, feats)
        extra["bytes"] = SOLVER_STATES * x.numel() * x.element_size()

    peak = _tracked(device, evaluate)
    return peak + extra["bytes"]


def sampling_peak(method: str, net: dict, *, scale: int, height: int, width: int,
                  batch: int = 1, device: str = "cpu") -> int:
    """Peak device bytes of sampling ``batch`` HR images of height x width (one network
    evaluation at a time, no gradients)."""
    s = scale
    height, width = -(-height // s) * s, -(-width // s) * s
    return _sampling_peak(method, json.dumps(net, sort_keys=True), scale, batch, height, width,
                          device)
