# Helpers shared by the rules: paths and config slices. No science here.
import os
import re

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
STOCHASTIC_METHODS = {"ecdp"}


def _alternatives(names):
    """A regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


wildcard_constraints:
    dataset=r"[a-z0-9-]+",
    scale=r"\d+",
    split=r"train|val|test",
    seed=r"\d+",
    experiment=_alternatives(EXPERIMENTS),


def seeds_of(experiment):
    """Sample seeds: several for stochastic methods, one for deterministic ones."""
    method = EXPERIMENTS[experiment]["method"]
    n = config["evaluation"]["seeds"] if method in STOCHASTIC_METHODS else 1
    return list(range(n))


def sr_manifests(wildcards):
    e = wildcards.experiment
    return expand(
        "results/{dataset}/x{scale}/sr/{experiment}/seed{seed}.json",
        dataset=wildcards.dataset,
        scale=wildcards.scale,
        experiment=e,
        seed=seeds_of(e),
    )


def all_targets():
    return [f"{RESULTS}/tables/table1.{ext}" for ext in ("md", "csv", "tex")]


def training_device():
    return config["training"]["device"]


def ecdp_experiments(with_iq):
    """ECDP experiments that need (with_iq=True) or do not need a stage-2 model."""
    return [
        e
        for e, spec in EXPERIMENTS.items()
        if spec["method"] == "ecdp" and (spec.get("iq", "ode") != "none") == with_iq
    ]


STAGE2_PATTERN = _alternatives(ecdp_experiments(True))


def model_of(experiment):
    """The checkpoint an experiment samples from ([] for methods without one)."""
    spec = EXPERIMENTS[experiment]
    models = f"results/{DATASET}/x{SCALE}/models"
    if spec["method"] == "rrdb":
        return f"{models}/rrdb/model.pt"
    if spec["method"] == "ecdp":
        if spec.get("iq", "ode") == "none":
            return f"{models}/ecdp-stage1-{spec.get('parametrization', 'hybrid')}/model.pt"
        return f"{models}/{experiment}/model.pt"
    return []
