# Helpers shared by the rules: paths and config slices. No science here.
import os

DATASET = config["dataset"]
SCALE = config["scale"]
RESULTS = f"results/{DATASET}/x{SCALE}"
PAPER_YAML = os.path.join(workflow.basedir, "workflow/reference/paper.yaml")
EXPERIMENTS = config["experiments"]
STOCHASTIC_METHODS = set()


wildcard_constraints:
    dataset=r"[a-z0-9-]+",
    scale=r"\d+",
    split=r"train|val|test",
    seed=r"\d+",
    experiment=r"[A-Za-z0-9.+_-]+",


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
