# Helpers shared by the rules: paths and config slices. No science here.
import os
import re

import baselines
import ecdp.data.io
import ecdp.samplers
import ecdp.tables

DATASET = config["dataset"]
SCALE = config["scale"]
RESULTS = f"results/{DATASET}/x{SCALE}"
PAPER_YAML = os.path.join(workflow.basedir, "workflow/reference/paper.yaml")
RUN = config.get("run") or list(config["experiments"])
_unknown = [e for e in RUN if e not in config["experiments"]]
if _unknown:
    raise ValueError(
        f"config 'run' names undefined experiments {_unknown}; defined: {list(config['experiments'])}"
    )
EXPERIMENTS = {e: config["experiments"][e] for e in RUN}
METHODS = baselines.METHODS  # what each method is: stochastic, trained, its L_IQ choices
for _e, _spec in config["experiments"].items():
    if _spec["method"] not in METHODS:
        raise ValueError(f"experiments.{_e}.method: unknown method {_spec['method']!r}; "
                         f"baselines.METHODS has {', '.join(METHODS)}")


def iq_of(experiment):
    """How an experiment's model is fine-tuned with L_IQ ('none' when it is not)."""
    spec = config["experiments"][experiment]
    choices = METHODS[spec["method"]].iq
    iq = spec.get("iq", choices[0])
    if iq not in choices:
        raise ValueError(
            f"experiments.{experiment}.iq: {iq!r} is not available for method "
            f"{spec['method']!r}; choose one of {list(choices)}"
        )
    return iq


for _e in config["experiments"]:
    iq_of(_e)
    _spec = config["experiments"][_e]
    if _spec.get("checkpoint") and (METHODS[_spec["method"]].checkpoint_kind is None
                                    or iq_of(_e) != "none"):
        raise ValueError(
            f"experiments.{_e}.checkpoint: a given checkpoint is sampled as it is; it needs a "
            f"method with a model and iq: none (method {_spec['method']!r}, iq {iq_of(_e)!r})"
        )
    if "sigma" in _spec and _spec["method"] != "ecdp":
        raise ValueError(f"experiments.{_e}.sigma: only ECDP experiments have a sigma")
    if "sampling" in _spec and _spec["method"] not in config["sampling"]:
        raise ValueError(f"experiments.{_e}.sampling: method {_spec['method']!r} has no sampler")
    if _spec.get("k") == "auto" and iq_of(_e) == "none" and config["model"]["k"] != "auto":
        raise ValueError(
            f"experiments.{_e}.k: auto is chosen by a training stage (L_IQ, or stage 1 with "
            f"model.k: auto); give the experiment iq: ode or sde"
        )


def _alternatives(names):
    """A regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


wildcard_constraints:
    dataset=r"[a-z0-9-]+",
    scale=r"\d+",
    split=r"train|val|test",
    seed=r"\d+",
    tseed=r"\d+",
    experiment=_alternatives(EXPERIMENTS),


# Training-seed replicates: every model the workflow trains is trained once per seed (offset by
# training.seed), with the seed in its path; what is not trained has one replicate.
TRAIN_SEEDS = [config["training"]["seed"] + s for s in config["training"]["seeds"]]
if len(set(TRAIN_SEEDS)) != len(TRAIN_SEEDS):
    raise ValueError(f"training.seeds: {config['training']['seeds']} repeats a seed")


def train_seeds_of(experiment):
    """The training seeds an experiment is sampled at: every replicate of a trained model, the
    first seed for a method without training or a given checkpoint."""
    spec = config["experiments"][experiment]
    if METHODS[spec["method"]].trained and not spec.get("checkpoint"):
        return TRAIN_SEEDS
    return TRAIN_SEEDS[:1]


def seeds_of(experiment):
    """Sample seeds: several for stochastic methods, one for deterministic ones."""
    method = EXPERIMENTS[experiment]["method"]
    n = config["evaluation"]["seeds"] if METHODS[method].stochastic else 1
    return list(range(n))


def sr_manifests(wildcards):
    e = wildcards.experiment
    return expand(
        "results/{dataset}/x{scale}/sr/{experiment}/train{tseed}/seed{seed}.json",
        dataset=wildcards.dataset,
        scale=wildcards.scale,
        experiment=e,
        tseed=train_seeds_of(e),
        seed=seeds_of(e),
    )


def method_of(experiment):
    """The part of an experiment that sampling depends on: method and k (never the label)."""
    spec = EXPERIMENTS[experiment]
    return {"method": spec["method"], **({"k": spec["k"]} if "k" in spec else {})}


def sampling_of(experiment):
    """How an experiment samples: sampling.<method> with its own override (None: no sampler)."""
    spec = config["experiments"][experiment]
    defaults = config["sampling"].get(spec["method"])
    if defaults is None:
        return None
    return ecdp.samplers.resolve_sampling(defaults, spec.get("sampling"))


for _e, _spec in config["experiments"].items():  # a bad sampler is an error before any job
    _sampling = sampling_of(_e)
    if _spec["method"] == "ecdp":
        try:
            ecdp.samplers.make_solver(
                {k: v for k, v in _sampling.items() if k not in ecdp.samplers.EVALUATION_KEYS}
            )
        except ValueError as err:
            raise ValueError(f"sampling of experiment {_e!r} ({_sampling}): {err}") from None


def dataset_options(dataset):
    """datasets.<dataset>, and for DIV2K the Flickr2K sources its DF2K training set uses."""
    options = dict(config["datasets"].get(dataset, {}))
    if dataset == "div2k":
        options["flickr2k_sources"] = config["datasets"]["flickr2k"].get("sources", {})
    return options


def dataset_sources(wildcards):
    """A folder dataset's images are the rule's input: fixing or adding one re-scans it."""
    if wildcards.dataset != "folder" or not config["datasets"]["folder"]["path"]:
        return []
    return [str(p) for p in ecdp.data.io.list_images(os.path.expanduser(
        config["datasets"]["folder"]["path"]))]


TABLE_DEFAULTS = {"metrics": ["lpips", "psnr", "ssim", "lr_psnr"], "protocol": "paper"}
TABLES = {name: {**TABLE_DEFAULTS, **spec} for name, spec in config["tables"].items()}
TIMING_METRICS = set(ecdp.tables.TIMING_METRICS)
for _t, _spec in TABLES.items():  # "not run" is for defined experiments left out by run:
    _undefined = [e for e in _spec["experiments"] if e not in config["experiments"]]
    if _undefined:
        raise ValueError(f"tables.{_t}.experiments: {_undefined} are not defined in experiments "
                         f"(defined: {', '.join(config['experiments'])})")


def stage1_variant(spec):
    """The stage-1 ECDP model an experiment starts from: one per parametrization, and one more
    for each sigma an experiment overrides (k only mixes the heads, so it shares them)."""
    parametrization = spec.get("parametrization", "hybrid")
    sigma = spec.get("sigma", config["model"]["sde"]["sigma"])
    if sigma == config["model"]["sde"]["sigma"]:
        return parametrization
    return f"{parametrization}-sigma-{sigma}"


STAGE1 = {
    stage1_variant(s): {
        "parametrization": s.get("parametrization", "hybrid"),
        "sigma": s.get("sigma", config["model"]["sde"]["sigma"]),
    }
    for s in EXPERIMENTS.values()
    if s["method"] == "ecdp" and not s.get("checkpoint")
}
# Stage-1 ECDP models at the configured sigma: Figures 5 and 8 compare the parametrizations.
PARAMETRIZATIONS = [p for p in ("eps", "x0", "hybrid") if p in STAGE1]
GRID = [e for e in (config["figures"]["grid"] or EXPERIMENTS) if e in EXPERIMENTS]


def trained_model(name, tseed, results=RESULTS):
    """The checkpoint the workflow trains under ``models/<name>`` at one training seed."""
    return f"{results}/models/{name}/seed{tseed}/model.pt"


def stage1_model(variant, tseed, results=RESULTS):
    """The stage-1 ECDP checkpoint of one variant (shared by the experiments that start from it)."""
    return trained_model(f"ecdp-stage1-{variant}", tseed, results)


def figure_targets():
    """The figures the run's experiments and tables allow, limited to ``figures.make``."""
    figures = ["crops"]
    if PARAMETRIZATIONS:
        figures += ["figure5", "figure8"]
    if TIMED:  # Table 3's rows that this run runs
        figures.append("quality_vs_cost")
    make = config["figures"]["make"]
    if make is not None:
        impossible = [f for f in make if f not in figures]
        if impossible:
            raise ValueError(f"figures.make: {impossible} need experiments or tables this run "
                             f"does not have (figure5/figure8: a trained ECDP; quality_vs_cost: a "
                             f"run experiment in a table with a timing metric); possible: {figures}")
        figures = [f for f in figures if f in make]
    return expand("{results}/figures/{figure}.png", results=RESULTS, figure=figures)


# Experiments timed for Table 3 (and drawn in quality_vs_cost): the rows of the tables that show
# inference time, not every experiment (timing the ablations would add nothing to a table).
TIMED = [e for e in EXPERIMENTS
         if any(e in t["experiments"] for t in TABLES.values() if TIMING_METRICS & set(t["metrics"]))]


def timing_input(table):
    """The timing summary, for tables that show inference time (Table 3)."""
    if TIMING_METRICS & set(TABLES[table]["metrics"]):
        return f"{RESULTS}/timing/summary.csv"
    return []


def all_targets():
    tables = expand(
        "{results}/tables/{table}.{ext}",
        results=RESULTS,
        table=TABLES,
        ext=("md", "csv", "tex"),
    )
    return tables + figure_targets()


def finetuned(method):
    """Experiments of this method that fine-tune a model with L_IQ (ECDP stage 2, the ++ runs)."""
    return [
        e for e, spec in EXPERIMENTS.items() if spec["method"] == method and iq_of(e) != "none"
    ]


STAGE2_PATTERN = _alternatives(finetuned("ecdp"))
PLUSPLUS_PATTERN = _alternatives(finetuned("srdiff") + finetuned("sr3"))


def model_of(experiment, tseed):
    """The checkpoint an experiment samples from at training seed ``tseed`` ([] for methods
    without one): a given ``checkpoint`` (published, imported), or the model the workflow
    trains for it."""
    spec = EXPERIMENTS[experiment]
    if spec.get("checkpoint"):
        return spec["checkpoint"]
    if not METHODS[spec["method"]].trained:
        return []
    if iq_of(experiment) != "none":
        return trained_model(experiment, tseed)
    if spec["method"] == "ecdp":
        return stage1_model(stage1_variant(spec), tseed)
    return trained_model(spec["method"], tseed)


# The two RRDBNets the workflow pre-trains: ECDP's (the RRDB row and ECDP's encoder) and
# SRDiff's own (its frozen encoder); sizes from the config, variant facts in ecdp.nets.rrdb.
RRDBNETS = {
    "rrdb": {
        "variant": "ecdp",
        "size": {k: config["model"]["encoder"][k] for k in ("features", "growth", "blocks")},
        "bicubic_skip": config["model"]["rrdb_bicubic_skip"],
        "recipe": "rrdb",
    },
    "srdiff-rrdb": {
        "variant": "srdiff",
        "size": config["baselines"]["srdiff"]["encoder"],
        "bicubic_skip": False,
        "recipe": "srdiff_rrdb",
    },
}
