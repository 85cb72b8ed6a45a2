"""Super-resolution methods behind one interface (k-diffusion's adapter idea).

A ``SuperResolver`` maps an LR batch to an SR batch; evaluation and timing treat every method
(bicubic, RRDB, SRDiff, SR3, ECDP) alike through it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch

from ecdp.model import ECDP
from ecdp.sampling import Sampled, parse_sampling

from .bicubic import Bicubic
from .rrdb import RRDB
from .sr3 import SR3
from .srdiff import SRDiff


@runtime_checkable
class SuperResolver(Protocol):
    name: str
    stochastic: bool

    def super_resolve(self, lr: torch.Tensor, *, generator: torch.Generator | None = None,
                      image: str = "batch") -> tuple[torch.Tensor, int]:
        """lr: (B, 3, h, w) in [0, 1] -> (sr: (B, 3, s*h, s*w) in [0, 1], network evaluations)."""
        ...


def _ecdp(*, checkpoint, device: str = "cpu", k: float | None = None,
          sampling: dict | None = None, weights: str = "ema", **_) -> Sampled:
    return Sampled(ECDP.load(checkpoint, device=device, k=k, weights=weights),
                   parse_sampling(sampling, family="ecdp"))


def _ddpm(cls):
    def build(*, checkpoint, device: str = "cpu", sampling: dict | None = None,
              weights: str = "ema", **_) -> Sampled:
        """sampling: {steps}: the respaced chain's length (None: all of the model's steps)."""
        model = cls.load(checkpoint, device=device, weights=weights).eval()
        return Sampled(model, parse_sampling(sampling, family="ddpm",
                                             where=f"sampling.{cls.name}"))
    return build


@dataclass(frozen=True)
class Method:
    """Everything the suite needs to know about a method, in one place.

    build: keyword arguments (scale, checkpoint, device, k, sampling, weights) -> SuperResolver.
    stochastic: sampled with ``evaluation.sample_seeds`` seeds (deterministic methods run once).
    trained: the workflow trains its model (``models/<method>``; ECDP: its stage-1 variants);
        otherwise an experiment samples a given ``checkpoint:``, or needs none (bicubic).
    iq: how its model can be fine-tuned with L_IQ, the default first ("none": it is not).
    checkpoint_kind: ``meta["kind"]`` of its checkpoints (None: it has none).
    sampling: the family of its ``sampling:`` config (``ecdp.sampling.parse_sampling``), None
        for a method that is not sampled.
    """

    build: Callable[..., SuperResolver]
    stochastic: bool = False
    trained: bool = False
    iq: tuple[str, ...] = ("none",)
    checkpoint_kind: str | None = None
    sampling: str | None = None


METHODS = {
    "bicubic": Method(Bicubic),
    "rrdb": Method(RRDB, trained=True, checkpoint_kind="rrdbnet"),
    "ecdp": Method(_ecdp, stochastic=True, trained=True, iq=("ode", "sde", "none"),
                   checkpoint_kind="ecdp", sampling="ecdp"),
    "srdiff": Method(_ddpm(SRDiff), stochastic=True, trained=True, iq=("none", "ancestral"),
                     checkpoint_kind="srdiff", sampling="ddpm"),
    "sr3": Method(_ddpm(SR3), stochastic=True, trained=True, iq=("none", "ancestral"),
                  checkpoint_kind="sr3", sampling="ddpm"),
}
# The method that reads a checkpoint of each kind (``meta["kind"]``).
CHECKPOINT_KINDS = {m.checkpoint_kind: name for name, m in METHODS.items() if m.checkpoint_kind}


def method_from_checkpoint(path, *, device: str = "cpu", weights: str = "ema",
                           sampling: dict | None = None) -> SuperResolver:
    """Any suite checkpoint (ECDP, RRDBNet, SRDiff, SR3) as its SuperResolver, sampled as
    ``sampling`` (a ``sampling:`` config of its method's family; None: the released one)."""
    from ecdp.checkpoint import load_checkpoint

    meta = load_checkpoint(path, weights=weights)["meta"]
    kind = meta.get("kind")
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f"{path}: a checkpoint of kind {kind!r}; this suite samples "
                         f"{', '.join(CHECKPOINT_KINDS)}")
    method = CHECKPOINT_KINDS[kind]
    if sampling and METHODS[method].sampling is None:
        raise ValueError(f"{path}: a {method} checkpoint is not sampled; it takes no sampling "
                         f"settings (got {sampling})")
    return build_method(method, scale=meta["scale"], checkpoint=path, device=device,
                        weights=weights, sampling=sampling)


class NonFiniteOutput(ValueError):
    """A method produced NaN or infinite values: nothing of it may be written or scored."""


class Checked:
    """Every SuperResolver the suite builds, its output checked before anything writes or
    scores it: one check for every method (a NaN weight, an overflow, a diverged sampler),
    where each method would otherwise clamp NaN to a black image and score it."""

    def __init__(self, method: SuperResolver, source: str):
        self.method, self.source = method, source

    def __getattr__(self, name):  # name, stochastic, scale, batch, sampling, provenance
        return getattr(self.method, name)

    def super_resolve(self, lr: torch.Tensor, *, generator=None, image: str = "batch"):
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"{self.method.name}: expected an LR batch of shape (B, 3, h, w) "
                             f"in [0, 1], got {tuple(lr.shape)} (add the batch dimension with "
                             f"lr[None])")
        sr, nfe = self.method.super_resolve(lr, generator=generator, image=image)
        bad = ~torch.isfinite(sr)
        if bad.any():
            raise NonFiniteOutput(
                f"{self.method.name} ({self.source}): {int(bad.sum())} of {sr.numel()} output "
                f"values for image {image!r} are NaN or infinite: the checkpoint holds "
                f"non-finite or overflowing weights, or the sampler diverged; nothing was "
                f"written or scored")
        return sr, nfe


def build_method(kind: str, **kwargs) -> SuperResolver:
    """The one factory from a config ``method`` name to a SuperResolver, its outputs checked
    (``Checked``)."""
    if kind not in METHODS:
        raise ValueError(f"unknown method {kind!r}; choose one of {', '.join(METHODS)}")
    return Checked(METHODS[kind].build(**kwargs), str(kwargs.get("checkpoint") or kind))


def method_for(experiment: dict, *, scale: int, checkpoint=None, device="cpu",
               sampling: dict | None = None) -> SuperResolver:
    """The SuperResolver of one workflow experiment (its ``method`` and ``k``), sampled as
    ``sampling`` (the method's resolved ``sampling`` config). ``k: auto`` was resolved by the
    training stage that chose it: the checkpoint holds it."""
    k = experiment.get("k")
    return build_method(experiment["method"], scale=scale, checkpoint=checkpoint, device=device,
                        k=None if k == "auto" else k, sampling=sampling)
