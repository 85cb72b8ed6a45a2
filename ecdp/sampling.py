"""How a model is sampled: one frozen value, parsed and checked once where the config is read.

    sampling = parse_sampling({"solver": "dpmpp_2m", "nfe": 10, "batch": 4}, where="sampling.ecdp")
    method = Sampled(ECDP.load("ecdp.pt"), sampling)     # what evaluation runs
    sr, nfe = method.super_resolve(lr, generator=g)

A ``Sampling`` holds a solver and its options (``ecdp.samplers.SOLVERS`` says which each takes;
``check_options`` checks them) and three evaluation settings: ``batch`` (images per solve: a
deterministic fixed-step solver only, since an adaptive solver would share its steps and so its
NFE across the batch, and a stochastic one its noise), ``temperature`` (the prior's scale, 1 as
released) and ``channels_last`` (the memory format; the same numbers to ~1e-6). Models hold no
sampling settings: ``Sampled`` pairs a model with its sampling, as EDM passes the sampler beside
the network. Two families: ``ecdp`` (the probability flow and the reverse SDE, default the
released dopri5 solve) and ``ddpm`` (SRDiff's and SR3's ancestral chain, ``steps`` of it: null
is every step, as released; or any probability-flow solver above on the chain's ``DiscreteVP``
schedule, ``{solver: dpmpp_2m, nfe: 10}``, ending with the denoising step unless
``denoise: false``, from t_end = the chain's first step unless set).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .samplers import RELEASED_SAMPLING, SOLVERS, check_options, make_solver, stochastic

__all__ = ["Sampling", "parse_sampling", "merge_sampling", "student_sampling", "Sampled",
           "FAMILIES"]

EVALUATION = ("batch", "temperature", "channels_last")
FAMILIES = ("ecdp", "ddpm")


@dataclass(frozen=True)
class Sampling:
    """A solver with its options and the evaluation settings (see the module docstring)."""

    solver: str
    options: tuple = ()
    family: str = "ecdp"
    batch: int = 1
    temperature: float = 1.0
    channels_last: bool = False
    where: str = field(default="sampling", compare=False)

    def options_dict(self) -> dict:
        return dict(self.options)

    @property
    def nfe(self) -> int | None:
        """The fixed budget of network evaluations (None: adaptive, or a whole chain)."""
        return self.options_dict().get("nfe") or self.options_dict().get("steps")

    @property
    def adaptive(self) -> bool:
        return self.solver in SOLVERS and SOLVERS[self.solver].adaptive

    def record(self) -> dict:
        """What the outputs record of it (manifests, timing)."""
        out = {"solver": self.solver, **self.options_dict()}
        if self.solver != "ancestral":
            out["temperature"] = self.temperature
            if self.batch != 1:
                out["batch"] = self.batch
            if self.channels_last:
                out["channels_last"] = True
        return out


def _evaluation(spec: dict, where: str) -> dict:
    out = {}
    if "batch" in spec:
        batch = spec["batch"]
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"{where}.batch: must be a whole number >= 1, got {batch!r}")
        out["batch"] = batch
    if "temperature" in spec:
        value = spec["temperature"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{where}.temperature: must be a number >= 0, got {value!r}")
        out["temperature"] = float(value)
    if "channels_last" in spec:
        if not isinstance(spec["channels_last"], bool):
            raise ValueError(f"{where}.channels_last: expected true or false, got "
                             f"{spec['channels_last']!r}")
        out["channels_last"] = spec["channels_last"]
    return out


def parse_sampling(spec: dict | Sampling | None, *, family: str = "ecdp",
                   where: str = "sampling") -> Sampling:
    """The one parser and key check of a sampling config; errors name ``where`` and the key.
    ``spec`` None (or without a solver, for ``ecdp``) is the released solve."""
    if isinstance(spec, Sampling):
        return spec
    if family not in FAMILIES:
        raise ValueError(f"{where}: unknown sampling family {family!r}; one of {FAMILIES}")
    spec = dict(spec or {})
    if family == "ddpm" and spec.get("solver", "ancestral") == "ancestral":
        spec.pop("solver", None)
        extra = set(spec) - {"steps"}
        if extra:
            raise ValueError(f"{where}: the ancestral chain takes only 'steps', not "
                             f"{sorted(extra)} (a fast solver: name it, e.g. "
                             f"{{solver: dpmpp_2m, nfe: 10}})")
        steps = spec.get("steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or steps < 1):
            raise ValueError(f"{where}.steps: must be a whole number >= 1 or null (every "
                             f"step), got {steps!r}")
        options = (("steps", steps),) if steps is not None else ()
        return Sampling("ancestral", options, family="ddpm", where=where)
    if family == "ddpm":
        if spec.get("solver") == "reverse_sde":
            raise ValueError(f"{where}.solver: reverse_sde is ECDP's (the conditional SDE); a "
                             f"DDPM's stochastic sampler is its ancestral chain or ddim with eta")
        # a DDPM's fast solve ends by predicting the clean image from its first step, and
        # clips its data predictions to [-1, 1] as the chain does (every probability-flow
        # solver: ``samplers.clipped``)
        spec.setdefault("denoise", True)
        spec.setdefault("clip", True)
    evaluation = _evaluation(spec, where)
    for key in EVALUATION:
        spec.pop(key, None)
    solver = spec.pop("solver", RELEASED_SAMPLING["solver"])
    options = check_options(solver, spec, where=where)
    if evaluation.get("batch", 1) > 1 and (SOLVERS[solver].adaptive
                                           or stochastic(solver, options)):
        raise ValueError(
            f"{where}.batch: {evaluation['batch']} images per solve with solver {solver}: "
            + ("its adaptive steps (and NFE) would be shared across the batch"
               if SOLVERS[solver].adaptive else "its noise would depend on the batch")
            + f"; use batch 1 or one of "
              f"{', '.join(n for n, s in SOLVERS.items() if s.batchable)}")
    return Sampling(solver, tuple(sorted(options.items())), family=family, where=where,
                    **evaluation)


def student_sampling(distill: dict, nfe: int, *, where: str) -> Sampling:
    """How a distilled student is trained and sampled: ``training.distill``'s solver on its
    grid (null: the solver's default) at the student's ``nfe``."""
    spec = {"solver": distill["solver"], "nfe": nfe}
    if distill.get("grid"):
        spec["grid"] = distill["grid"]
    return parse_sampling(spec, where=where)


def merge_sampling(defaults: dict | None, override: dict | None) -> dict:
    """An experiment's sampling config: an override that names a ``solver`` replaces the solver
    and its options (keeping the defaults' batch, temperature, channels_last); one that does not
    updates them (e.g. {rtol: 1e-4})."""
    defaults, override = dict(defaults or {}), dict(override or {})
    if "solver" in override:
        return {**{k: defaults[k] for k in EVALUATION if k in defaults}, **override}
    return {**defaults, **override}


class Sampled:
    """A model paired with its ``Sampling``: the SuperResolver that evaluation, timing and
    ``ecdp upscale`` run. The model turns the value into its ``sample`` keywords once
    (``model.sampling_keywords(sampling)``); everything else (name, scale, provenance) is the
    model's."""

    def __init__(self, model, sampling: Sampling):
        self.model, self.value = model, sampling
        self._keywords = model.sampling_keywords(sampling)
        if sampling.channels_last:
            model.to(memory_format=torch.channels_last)

    @property
    def sampling(self) -> dict:
        record = self.value.record()
        if self.value.solver == "ancestral" and "steps" not in record:  # the whole chain
            record["steps"] = self.model.schedule.steps
        return record

    @property
    def batch(self) -> int:
        return self.value.batch

    def __getattr__(self, name):  # name, stochastic, scale, provenance, unet
        return getattr(self.model, name)

    def super_resolve(self, lr: torch.Tensor, *, generator=None, image: str = "batch"):
        """lr: (B, 3, h, w) in [0, 1] -> (sr in [0, 1], NFE)."""
        sr, nfe = self.model.sample(lr, generator=generator, image=image, **self._keywords)
        return sr.clamp(0, 1), nfe


def ecdp_keywords(sampling: Sampling) -> dict:
    """``ECDP.sample``'s keywords for a Sampling of the ecdp family."""
    if sampling.family != "ecdp":
        raise ValueError(f"{sampling.where}: ECDP samples with the ecdp family's solvers, not "
                         f"{sampling.family}'s {sampling.solver}")
    return {"solver": make_solver(sampling), "temperature": sampling.temperature,
            "channels_last": sampling.channels_last}
