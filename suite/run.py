"""What a run is, resolved once from its config: experiments, the models they need, tables, figures.

    run = resolve_run(config, baselines.METHODS, schema)   # every config error is raised here
    run.experiments["ecdp"].model       # "ecdp": models/ecdp/train<seed>/ (its L_IQ stage)
    run.models["ecdp"].upstream         # "ecdp-stage1-hybrid", which starts from "rrdb"

A pure function of the config and the method table (``baselines.METHODS``; passed in, so the
library never imports the methods): no Snakemake, no files. The workflow reads everything from
the frozen ``Run`` it returns (``workflow/rules/common.smk``), and so do ``ecdp plan`` and the
memory plan. Every error names its config key, before any job runs.

Lineage. Experiments share models: one stage-1 ECDP per parametrization (k only mixes the two
heads when sampling) and one more per sigma an experiment overrides; ECDP's RRDBNet (the RRDB row
and ECDP's encoder) and SRDiff's own; one SRDiff, one SR3. An experiment with L_IQ (ECDP stage
2, the "++" runs) trains a model of its own name from its base; one with ``checkpoint:`` trains
nothing. Every trained model is trained once per training seed (``training.train_seeds``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ecdp.config import coerce_overrides
from ecdp.metrics import QUALITY
from ecdp.tables import METRIC_FORMATS, TIMING_METRICS
from ecdp.sampling import Sampling, merge_sampling, parse_sampling, student_sampling
from ecdp.samplers import SOLVERS

__all__ = ["resolve_run", "prepare_config", "Run", "Experiment", "TrainedModel", "NAME_PATTERN",
           "RESERVED", "RENAMED", "check_renamed", "TIMING_METRICS", "METRICS", "FIGURES"]

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.+_-]*"  # experiment and table names
# Names of the suite's own files: metrics/summary.csv, timing/summary.csv, tables/sampling.md.
RESERVED = {"summary", "sampling", "frontier"}
# Renamed config keys: the old name -> the new one (an old key is an error naming the new).
RENAMED = {("training", "seed"): "training.train_seeds (absolute seeds: seed + each of seeds)",
           ("training", "seeds"): "training.train_seeds (absolute seeds: seed + each of seeds)",
           ("evaluation", "seeds"): "evaluation.sample_seeds"}
METRICS = tuple(METRIC_FORMATS)  # what a table may show
FIGURES = ("crops", "figure5", "figure8", "quality_vs_cost")
TABLE_DEFAULTS = {"metrics": list(QUALITY), "protocol": "paper"}
PARAMETRIZATIONS = ("eps", "x0", "hybrid")


@dataclass(frozen=True)
class Experiment:
    """One row of the tables: a method, how it is sampled and which model it samples."""

    name: str
    method: str
    label: str
    reference_row: str
    model: str | None           # the trained model it samples (models/<model>), if any
    checkpoint: str | None      # a given checkpoint it samples instead
    train_seeds: tuple          # the training seeds it is sampled at
    sample_seeds: tuple         # its sample seeds (several for a stochastic method)
    sampling: Sampling | None   # None: a method that is not sampled (bicubic, RRDB)
    iq: str = "none"
    k: Any = None
    distilled: int | None = None  # a student's NFE (it is sampled only as distilled)

    def method_spec(self) -> dict:
        """What sampling depends on: the method and k (never the label)."""
        return {"method": self.method, **({"k": self.k} if self.k is not None else {})}


@dataclass(frozen=True)
class TrainedModel:
    """A model the workflow trains, once per training seed, at models/<name>/train<seed>/."""

    name: str
    rule: str                   # the rule that trains it
    upstream: str | None        # the model it starts from
    params: dict = field(hash=False)  # the science the rule's script takes
    network: str = ""           # its network in baselines.costs.networks
    chain: int | None = None    # the sampling chain an L_IQ step backpropagates through


@dataclass(frozen=True)
class Run:
    dataset: str
    scale: int
    train_seeds: tuple
    experiments: dict           # name -> Experiment, the experiments this run runs
    labels: dict                # every defined experiment -> its label ("not run" rows)
    reference_rows: dict
    models: dict                # name -> TrainedModel
    tables: dict                # name -> resolved table spec
    timed: tuple                # experiments timed for Table 3 (rows of a table with timing)
    figures: tuple              # the figures to draw
    grid: tuple                 # experiments in the crop grid
    parametrizations: tuple     # stage-1 variants Figures 5 and 8 compare
    study: tuple                # experiments of the sampling study
    frontier: tuple = ()        # experiments of the efficiency frontier

    @property
    def results(self) -> str:
        return f"results/{self.dataset}/x{self.scale}"

    def models_of(self, rule: str) -> list[str]:
        return [m.name for m in self.models.values() if m.rule == rule]

    def model_path(self, name: str, train_seed, results: str | None = None) -> str:
        return f"{results or self.results}/models/{name}/train{train_seed}/model.pt"

    def checkpoint_of(self, experiment: str, train_seed, results: str | None = None):
        """The checkpoint an experiment samples at a training seed ([] for none)."""
        e = self.experiments[experiment]
        if e.checkpoint:
            return e.checkpoint
        return self.model_path(e.model, train_seed, results) if e.model else []


def prepare_config(config: dict, schema_path) -> dict:
    """The config as the workflow reads it (the Snakefile and ``ecdp plan`` alike): nested
    ``--config`` strings typed by the schema (``schema_path``), tables a preset dropped
    (``name: null``) removed, renamed keys refused, then the schema's check, which fills in its
    defaults."""
    import yaml
    from snakemake.utils import validate

    schema_path = str(schema_path)
    with open(schema_path) as f:
        config = coerce_overrides(config, yaml.safe_load(f))
    config["tables"] = {k: v for k, v in (config.get("tables") or {}).items() if v is not None}
    check_renamed(config)
    validate(config, schema_path)
    return config


def check_renamed(config: dict) -> None:
    """An old config key is an error naming its new name (before the schema's own check)."""
    for (section, key), new in RENAMED.items():
        if key in (config.get(section) or {}):
            raise ValueError(f"config key {section}.{key} was renamed: use {new}")


def _error(key: str, text: str) -> ValueError:
    return ValueError(f"{key}: {text}")


def _alternatives(names) -> str:
    return ", ".join(names)


def _sampling(name: str, spec: dict, config: dict, methods: dict, schema: dict | None):
    method = methods[spec["method"]]
    if method.sampling is None:
        if "sampling" in spec:
            raise _error(f"experiments.{name}.sampling",
                         f"method {spec['method']!r} is not sampled by a solver")
        return None
    if "distill" in spec:  # a student is sampled by the solver it was distilled for
        if spec["method"] != "ecdp" or "sampling" in spec:
            raise _error(f"experiments.{name}.distill", "a distilled student is an ecdp "
                         "experiment sampled by training.distill.solver at its nfe (no "
                         "sampling: of its own)")
        return student_sampling(config["training"]["distill"], spec["distill"]["nfe"],
                                where=f"experiments.{name}")
    override = spec.get("sampling")
    if override is not None and schema is not None:  # --config strings typed like sampling:
        node = {"$defs": schema["$defs"], **schema["$defs"][f"{method.sampling}_sampling"]}
        override = coerce_overrides(override, node)
    merged = merge_sampling(config["sampling"].get(spec["method"]), override)
    where = f"experiments.{name}.sampling" if override else f"sampling.{spec['method']}"
    return parse_sampling(merged, family=method.sampling, where=where)


def _check_names(config: dict) -> None:
    for kind in ("experiments", "tables"):
        for name in config.get(kind) or {}:
            if not re.fullmatch(NAME_PATTERN, str(name)):
                raise _error(f"{kind}.{name}", f"names must match {NAME_PATTERN} (letters, "
                                               f"digits and . + _ -, starting with a letter or "
                                               f"digit)")
            if name in RESERVED:
                raise _error(f"{kind}.{name}", f"{name!r} is a name the suite uses for its own "
                                               f"files ({', '.join(sorted(RESERVED))}); rename it")


def resolve_run(config: dict, methods: dict, schema: dict | None = None) -> Run:
    """The run a validated config describes (see the module docstring); ``methods``:
    ``baselines.METHODS``; ``schema``: the config schema (types --config strings in
    experiments' sampling overrides)."""
    check_renamed(config)
    _check_names(config)
    defined = config["experiments"]
    run = config.get("run")
    if run is not None and not run:
        raise _error("run", "an empty list runs nothing; give experiments, or null for all")
    # null: every experiment but the distilled students, which run when named (their own target)
    run = [e for e, spec in defined.items() if "distill" not in spec] if run is None else list(run)
    unknown = [e for e in run if e not in defined]
    if unknown:
        raise _error("run", f"names undefined experiments {unknown}; defined: "
                            f"{_alternatives(defined)}")
    for name, spec in defined.items():
        if spec["method"] not in methods:
            raise _error(f"experiments.{name}.method",
                         f"unknown method {spec['method']!r}; baselines.METHODS has "
                         f"{_alternatives(methods)}")
    train_seeds = tuple(config["training"]["train_seeds"])
    if len(set(train_seeds)) != len(train_seeds):
        raise _error("training.train_seeds", f"{list(train_seeds)} repeats a seed")
    sigma0 = config["model"]["sde"]["sigma"]
    models: dict[str, TrainedModel] = {}
    experiments: dict[str, Experiment] = {}
    all_specs = {}
    for name, spec in defined.items():
        method = methods[spec["method"]]
        iq = spec.get("iq", method.iq[0])
        if iq not in method.iq:
            raise _error(f"experiments.{name}.iq", f"{iq!r} is not available for method "
                                                   f"{spec['method']!r}; choose one of "
                                                   f"{list(method.iq)}")
        if spec.get("checkpoint") and (method.checkpoint_kind is None or iq != "none"):
            raise _error(f"experiments.{name}.checkpoint",
                         f"a given checkpoint is sampled as it is; it needs a method with a "
                         f"model and iq: none (method {spec['method']!r}, iq {iq!r})")
        if "sigma" in spec and spec["method"] != "ecdp":
            raise _error(f"experiments.{name}.sigma", "only ECDP experiments have a sigma")
        if spec.get("k") == "auto" and iq == "none" and config["model"]["k"] != "auto":
            raise _error(f"experiments.{name}.k",
                         "auto is chosen by a training stage (L_IQ, or stage 1 with model.k: "
                         "auto); give the experiment iq: ode or sde")
        all_specs[name] = (spec, method, iq, _sampling(name, spec, config, methods, schema))
    def add(model: TrainedModel, experiment: str) -> str:
        """One model per name: a second, different one is a clash of names."""
        if models.setdefault(model.name, model) != model:
            raise _error(f"experiments.{experiment}",
                         f"needs the model {model.name!r} ({model.rule}), but that name is "
                         f"already a model trained by {models[model.name].rule} "
                         f"(models/<name>/); rename the experiment")
        return model.name

    students = [n for n in run if "distill" in all_specs[n][0]]
    for name in [n for n in run if n not in students] + students:
        spec, method, iq, sampling = all_specs[name]
        model = None
        if spec.get("checkpoint") or not method.trained:
            pass
        elif "distill" in spec:
            teacher = spec["distill"].get("teacher", "ecdp")
            if teacher not in experiments or experiments[teacher].method != "ecdp" \
                    or experiments[teacher].model is None:
                raise _error(f"experiments.{name}.distill.teacher",
                             f"{teacher!r} must be an ECDP experiment with a trained model, "
                             f"run too (add it to run)")
            model = add(TrainedModel(
                name, "train_ecdp_distill", experiments[teacher].model, network="ecdp",
                chain=spec["distill"]["nfe"],
                params={"cfg": config["training"]["distill"], "nfe": spec["distill"]["nfe"]}),
                name)
        elif spec["method"] == "ecdp":
            parametrization = spec.get("parametrization", "hybrid")
            sigma = spec.get("sigma", sigma0)
            variant = parametrization if sigma == sigma0 else f"{parametrization}-sigma-{sigma}"
            add(_rrdb("rrdb", config), name)
            model = add(TrainedModel(
                f"ecdp-stage1-{variant}", "train_ecdp_stage1", "rrdb", network="ecdp", params={
                    "model": {**config["model"], "parametrization": parametrization,
                              "sde": {**config["model"]["sde"], "sigma": sigma}},
                    "cfg": config["training"]["stage1"]}), name)
            if iq != "none":
                model = add(TrainedModel(
                    name, "train_ecdp_stage2", model, network="ecdp",
                    chain=_iq_chain(config, "ecdp", iq),
                    params={"cfg": {**config["training"]["stage2"], "sampler": iq},
                            "k": spec.get("k")}), name)
        elif spec["method"] == "srdiff":
            add(_rrdb("srdiff-rrdb", config), name)
            model = add(TrainedModel("srdiff", "train_srdiff", "srdiff-rrdb", network="srdiff",
                                     params={"net": {k: v for k, v in
                                                     config["baselines"]["srdiff"].items()
                                                     if k != "encoder"},
                                             "cfg": config["training"]["srdiff"]}), name)
        elif spec["method"] == "sr3":
            model = add(TrainedModel("sr3", "train_sr3", None, network="sr3", params={
                "sr3": config["baselines"]["sr3"], "cfg": config["training"]["sr3"]}), name)
        elif spec["method"] == "rrdb":  # the RRDB row: ECDP's RRDBNet
            model = add(_rrdb("rrdb", config), name)
        else:
            raise _error(f"experiments.{name}.checkpoint",
                         f"no rule trains method {spec['method']!r}: give it a checkpoint")
        if model is not None and iq != "none" and spec["method"] in ("srdiff", "sr3"):
            model = add(TrainedModel(name, "finetune_iq", model, network=spec["method"],
                                     chain=_iq_chain(config, spec["method"], iq),
                                     params={"kind": spec["method"],
                                             "cfg": config["training"]["plusplus"]}), name)
        experiments[name] = Experiment(
            name=name, method=spec["method"], label=spec.get("label", name),
            reference_row=spec.get("reference_row", name), model=model,
            checkpoint=spec.get("checkpoint"),
            train_seeds=train_seeds if model is not None else train_seeds[:1],
            sample_seeds=tuple(range(config["evaluation"]["sample_seeds"]
                                     if method.stochastic else 1)),
            sampling=sampling, iq=iq, k=spec.get("k"),
            distilled=spec["distill"]["nfe"] if "distill" in spec else None)
    tables = _tables(config, defined)
    timed = tuple(e for e in experiments if any(
        e in t["experiments"] for t in tables.values() if set(TIMING_METRICS) & set(t["metrics"])))
    parametrizations = tuple(p for p in PARAMETRIZATIONS if f"ecdp-stage1-{p}" in models)
    figures = _figures(config, parametrizations, timed)
    grid = tuple(e for e in (config["figures"]["grid"] or experiments) if e in experiments)
    study = tuple(e for e in config["sampling_study"]["experiments"] if e in experiments)
    not_ecdp = [e for e in study if experiments[e].method != "ecdp"]
    if not_ecdp:
        raise _error("sampling_study.experiments", f"{not_ecdp} are not ECDP experiments")
    frontier = _frontier(config, experiments)
    return Run(dataset=config["dataset"], scale=config["scale"], train_seeds=train_seeds,
               experiments=experiments,
               labels={k: v.get("label", k) for k, v in defined.items()},
               reference_rows={k: v.get("reference_row", k) for k, v in defined.items()},
               models=models, tables=tables, timed=timed, figures=figures, grid=grid,
               parametrizations=parametrizations, study=study, frontier=frontier)


def _frontier(config: dict, experiments: dict) -> tuple:
    """The frontier's experiments among those run: diffusion methods only, one per method and
    training lineage; every solver able to meet some budget of the grid."""
    spec = config["frontier"]
    chosen = tuple(e for e in spec["experiments"] if e in experiments)
    not_sampled = [e for e in chosen if experiments[e].sampling is None]
    if not_sampled:
        raise _error("frontier.experiments", f"{not_sampled} are not diffusion experiments "
                     "(their methods have no solver)")
    for entry in spec["solvers"]:
        solver = entry if isinstance(entry, str) else entry["solver"]
        if not any(SOLVERS[solver].min_nfe <= n for n in spec["nfe"]):
            raise _error("frontier.nfe", f"solver {solver} needs nfe >= "
                         f"{SOLVERS[solver].min_nfe}; none of {spec['nfe']} is")
    return chosen


def _rrdb(name: str, config: dict) -> TrainedModel:
    """The two RRDBNets: ECDP's (the RRDB row and ECDP's encoder) and SRDiff's own."""
    if name == "rrdb":
        net = {"variant": "ecdp", "bicubic_skip": config["model"]["rrdb_bicubic_skip"],
               "size": {k: config["model"]["encoder"][k] for k in ("features", "growth",
                                                                   "blocks")}}
        return TrainedModel(name, "train_rrdb", None, network="rrdb",
                            params={"net": net, "cfg": config["training"]["rrdb"]})
    net = {"variant": "srdiff", "bicubic_skip": False,
           "size": config["baselines"]["srdiff"]["encoder"]}
    return TrainedModel(name, "train_rrdb", None, network="srdiff-rrdb",
                        params={"net": net, "cfg": config["training"]["srdiff_rrdb"]})


def _iq_chain(config: dict, method: str, iq: str) -> int | None:
    """Network evaluations of the chain an L_IQ step backpropagates through (None: an
    adaptive solve, whose NFE is known only once trained)."""
    if method != "ecdp":
        return (config["training"]["plusplus"]["sample_steps"]
                or config["baselines"][method]["steps"])
    stage2 = config["training"]["stage2"]
    if iq == "sde":
        return stage2["sde_steps"]
    sampling = parse_sampling(stage2["sample"] or None, where="training.stage2.sample")
    return sampling.nfe


def _tables(config: dict, defined: dict) -> dict:
    tables = {name: {**TABLE_DEFAULTS, **spec}
              for name, spec in (config.get("tables") or {}).items() if spec is not None}
    for name, spec in tables.items():
        undefined = [e for e in spec["experiments"] if e not in defined]
        if undefined:
            raise _error(f"tables.{name}.experiments",
                         f"{undefined} are not defined in experiments (defined: "
                         f"{_alternatives(defined)})")
    return tables


def _figures(config: dict, parametrizations: tuple, timed: tuple) -> tuple:
    possible = ["crops"]
    if parametrizations:
        possible += ["figure5", "figure8"]
    if timed:
        possible.append("quality_vs_cost")
    make = config["figures"]["make"]
    if make is None:
        return tuple(possible)
    impossible = [f for f in make if f not in possible]
    if impossible:
        raise _error("figures.make", f"{impossible} need experiments or tables this run does "
                                     f"not have (figure5/figure8: a trained ECDP; "
                                     f"quality_vs_cost: a run experiment in a table with a "
                                     f"timing metric); possible: {possible}")
    return tuple(f for f in possible if f in make)
