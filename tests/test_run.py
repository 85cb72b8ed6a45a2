"""What a run is (suite.run.resolve_run), in plain Python: every config error named by its key
before any job, the models experiments share, their seeds, sampling, tables and figures."""
from pathlib import Path

import pytest
import yaml

import baselines
from suite.plan import load_run
from suite.run import RESERVED, prepare_config, resolve_run

ROOT = Path(__file__).resolve().parent.parent
SNAKEFILE = ROOT / "Snakefile"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
PRESETS = ROOT / "workflow" / "presets"


def run_of(overrides: dict | None = None, *presets):
    return load_run(SNAKEFILE, [PRESETS / f"{p}.yaml" for p in presets], overrides)[1]


def test_the_default_run_shares_models_as_released():
    run = run_of()
    models = {name: (m.rule, m.upstream) for name, m in run.models.items()}
    assert models == {
        "rrdb": ("train_rrdb", None), "srdiff-rrdb": ("train_rrdb", None),
        "srdiff": ("train_srdiff", "srdiff-rrdb"), "srdiff++": ("finetune_iq", "srdiff"),
        "ecdp-stage1-hybrid": ("train_ecdp_stage1", "rrdb"),
        "ecdp-stage1-eps": ("train_ecdp_stage1", "rrdb"),
        "ecdp-stage1-x0": ("train_ecdp_stage1", "rrdb"),
        **{e: ("train_ecdp_stage2", f"ecdp-stage1-{p}") for e, p in (
            ("ecdp", "hybrid"), ("ecdp-k0.5", "hybrid"), ("ecdp-k2", "hybrid"),
            ("ecdp-eps", "eps"), ("ecdp-x0", "x0"), ("ecdp-iq-sde", "hybrid"))}}
    assert run.experiments["ecdp-no-iq"].model == "ecdp-stage1-hybrid"  # no L_IQ: stage 1
    assert run.experiments["rrdb"].model == "rrdb" and run.experiments["bicubic"].model is None
    assert run.train_seeds == (0, 1, 2) and run.experiments["bicubic"].train_seeds == (0,)
    assert run.experiments["ecdp"].sample_seeds == (0,)  # evaluation.sample_seeds 1
    assert run.timed == ("rrdb", "srdiff", "ecdp")        # Table 3's rows this run runs
    assert run.figures == ("crops", "figure5", "figure8", "quality_vs_cost")
    assert run.models["ecdp-iq-sde"].chain == 50 and run.models["ecdp"].chain is None  # adaptive
    assert run.experiments["ecdp"].sampling.solver == "dopri5"
    assert run.labels["sr3"] == "SR3" and "sr3" not in run.experiments  # a "not run" row


def test_a_sigma_override_trains_its_own_stage_one():
    run = run_of({"run": ["ecdp-sigma-auto", "ecdp-k-auto"]})
    assert run.models["ecdp-sigma-auto"].upstream == "ecdp-stage1-hybrid-sigma-auto"
    assert run.models["ecdp-k-auto"].upstream == "ecdp-stage1-hybrid"
    assert run.models["ecdp-stage1-hybrid-sigma-auto"].params["model"]["sde"]["sigma"] == "auto"


def test_paper_and_smoke_presets_resolve():
    paper = run_of(None, "paper-div2k")
    assert paper.train_seeds == (0,) and len(paper.experiments) == 13
    assert paper.experiments["sr3"].sampling.nfe is None  # all 2000 steps, as released
    smoke = run_of(None, "smoke")
    assert smoke.experiments["ecdp"].sample_seeds == (0, 1)
    assert smoke.experiments["ecdp"].sampling.record() == {"solver": "euler", "nfe": 4,
                                                           "temperature": 1.0}


@pytest.mark.parametrize("overrides, key", [
    ({"run": ["bicubc"]}, "run: names undefined experiments ['bicubc']"),
    ({"run": []}, "run: an empty list runs nothing"),
    ({"experiments": {"x": {"method": "nope"}}}, "experiments.x.method: unknown method 'nope'"),
    ({"experiments": {"rrdb++": {"method": "rrdb", "iq": "ancestral"}}},
     "experiments.rrdb++.iq: 'ancestral' is not available for method 'rrdb'"),
    ({"experiments": {"s": {"method": "srdiff", "sigma": 0.1}}},
     "experiments.s.sigma: only ECDP experiments have a sigma"),
    ({"experiments": {"k": {"method": "ecdp", "k": "auto", "iq": "none"}}},
     "experiments.k.k: auto is chosen by a training stage"),
    ({"experiments": {"c": {"method": "ecdp", "iq": "ode", "checkpoint": "x.pt"}}},
     "experiments.c.checkpoint: a given checkpoint is sampled as it is"),
    ({"experiments": {"ecdp": {"method": "ecdp", "sampling": {"rtol": -1e-3}}}},
     "experiments.ecdp.sampling.rtol: must be > 0"),
    ({"experiments": {"srdiff": {"method": "srdiff", "sampling": {"steps": 0}}}},
     "experiments.srdiff.sampling.steps: must be a whole number >= 1"),
    ({"experiments": {"b": {"method": "bicubic", "sampling": {"steps": 4}}}},
     "experiments.b.sampling: method 'bicubic' is not sampled by a solver"),
    ({"experiments": {"ecdp-fast": {"method": "ecdp", "sampling": {"solver": "dopri5",
                                                                   "batch": 4}}}},
     "experiments.ecdp-fast.sampling.batch: 4 images per solve with solver dopri5"),
    ({"experiments": {"a{b}": {"method": "bicubic"}}}, "experiments.a{b}: names must match"),
    ({"experiments": {"summary": {"method": "bicubic"}}}, "experiments.summary: 'summary' is a "
                                                          "name the suite uses"),
    ({"tables": {"sampling": {"experiments": ["bicubic"]}}}, "tables.sampling: 'sampling' is"),
    ({"tables": {"t": {"experiments": ["ecdp-typo"]}}},
     "tables.t.experiments: ['ecdp-typo'] are not defined"),
    ({"training": {"train_seeds": [0, 0]}}, "training.train_seeds: [0, 0] repeats a seed"),
    ({"figures": {"make": ["figure5"]}, "run": ["bicubic"]}, "figures.make: ['figure5'] need"),
    ({"sampling_study": {"experiments": ["srdiff"]}}, "sampling_study.experiments: ['srdiff'] "
                                                      "are not ECDP experiments"),
    ({"training": {"seeds": [0]}}, "training.seeds was renamed: use training.train_seeds"),
    ({"evaluation": {"seeds": 2}}, "evaluation.seeds was renamed: use evaluation.sample_seeds"),
    ({"experiments": {"srdiff": {"method": "srdiff", "iq": "ancestral"}}},
     "experiments.srdiff: needs the model 'srdiff' (finetune_iq)"),
])
def test_every_config_error_names_its_key(overrides, key):
    with pytest.raises(ValueError) as err:
        run_of(overrides)
    assert key in str(err.value)
    assert RESERVED == {"summary", "sampling", "frontier"}


def test_metric_names_are_one_list():
    """The schema's choices are the tables' metrics: quality, parameters and timing."""
    from ecdp.metrics import QUALITY
    from ecdp.tables import METRIC_FORMATS, TIMING_METRICS
    from suite.run import METRICS

    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["$defs"]["table"]["properties"]["metrics"]["items"]["enum"] == list(METRICS)
    assert set(METRIC_FORMATS) == {*QUALITY, "params_m", *TIMING_METRICS}
    assert schema["$defs"]["table"]["properties"]["metrics"]["default"] == list(QUALITY)


def test_strings_from_the_command_line_are_typed_in_experiment_overrides():
    """Snakemake hands nested --config values over as strings: the README's ecdp-fast example
    (sampling: {solver: dpmpp_2m, nfe: 10, batch: 4}) passed the dry run and then every
    sampling job died with TypeError ('<' between str and int)."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["experiments"]["ecdp-fast"] = {"method": "ecdp", "sampling": {
        "solver": "dpmpp_2m", "nfe": "10", "batch": "4"}}
    config["run"] = ["ecdp-fast"]
    config = prepare_config(config, SCHEMA)
    run = resolve_run(config, baselines.METHODS, yaml.safe_load(SCHEMA.read_text()))
    sampling = run.experiments["ecdp-fast"].sampling
    assert sampling.nfe == 10 and sampling.batch == 4
