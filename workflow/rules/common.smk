# What the run is (suite.run.resolve_run: every config check, the experiments and the models they
# need), and the paths of its files. No validation here: resolve_run raises, naming the key.
import os
import re

import baselines
import ecdp.data.io
from suite.run import NAME_PATTERN, TIMING_METRICS, resolve_run

RUN = resolve_run(config, baselines.METHODS, SCHEMA)
DATASET, SCALE, RESULTS = RUN.dataset, RUN.scale, RUN.results
EXPERIMENTS = RUN.experiments
SPLIT = config["evaluation"]["split"]
PAPER_YAML = os.path.join(workflow.basedir, "workflow/reference/paper.yaml")


def _alternatives(names):
    """A regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


wildcard_constraints:
    dataset=r"[a-z0-9-]+",
    scale=r"\d+",
    split=r"train|val|test",
    train_seed=r"\d+",
    sample_seed=r"\d+",
    experiment=_alternatives(EXPERIMENTS),
    table=NAME_PATTERN,


def pairs(wildcards):
    """The evaluation pairs of a (dataset, scale)."""
    return f"results/{wildcards.dataset}/x{wildcards.scale}/lr/{SPLIT}.json"


def sr_manifest(experiment, train_seed, sample_seed, results=RESULTS):
    return f"{results}/sr/{experiment}/train{train_seed}/sample{sample_seed}.json"


def sr_manifests(wildcards):
    """Every SR manifest of an experiment: each training seed x each sample seed."""
    e = EXPERIMENTS[wildcards.experiment]
    return [sr_manifest(e.name, t, s, f"results/{wildcards.dataset}/x{wildcards.scale}")
            for t in e.train_seeds for s in e.sample_seeds]


def model_input(wildcards):
    """The checkpoint an experiment samples at the job's training seed ([] for none)."""
    return RUN.checkpoint_of(wildcards.experiment, wildcards.train_seed,
                             f"results/{wildcards.dataset}/x{wildcards.scale}")


def upstream(wildcards):
    """The checkpoint a training starts from."""
    model = RUN.models[wildcards.model]
    return RUN.model_path(model.upstream, wildcards.train_seed,
                          f"results/{wildcards.dataset}/x{wildcards.scale}")


def params_of(key):
    """A training rule's param: its model's (suite.run.TrainedModel.params)."""
    return lambda w: RUN.models[w.model].params[key]


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


def timing_input(table):
    """The timing summary, for tables that show inference time (Table 3)."""
    if set(TIMING_METRICS) & set(RUN.tables[table]["metrics"]):
        return f"{RESULTS}/timing/summary.csv"
    return []


def all_targets():
    tables = expand("{results}/tables/{table}.{ext}", results=RESULTS,
                    table=[t for t, spec in RUN.tables.items() if spec.get("in_all", True)],
                    ext=("md", "csv", "tex"))
    return tables + expand("{results}/figures/{figure}.png", results=RESULTS,
                           figure=RUN.figures)


def sampling_record(experiment):
    """An experiment's resolved sampling as the plain dict its scripts parse again."""
    sampling = EXPERIMENTS[experiment].sampling
    return sampling.record() if sampling is not None else None
