"""The Snakemake workflow: config validation before any job, and the default run end to end."""
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def snakemake(workdir, *args, check=True):
    cmd = ["snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned(workdir, *args) -> dict[str, int]:
    """rule -> number of jobs in a dry run's job stats (empty when nothing is to be done)."""
    return job_stats(snakemake(workdir, "-n", *args).stdout)


def job_stats(out: str) -> dict[str, int]:
    """rule -> number of jobs in the job stats a dry run printed."""
    if "Job stats:" not in out:
        return {}
    stats = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    jobs = {}
    for line in stats.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


SMOKE = str(ROOT / "workflow" / "presets" / "smoke.yaml")
RESULTS = "results/sample-photos/x4"  # the default dataset and scale
TRAINING_AND_SAMPLING = {"train_rrdb", "train_ecdp_stage1", "train_ecdp_stage2", "train_srdiff",
                         "train_sr3", "finetune_iq", "super_resolve", "timing"}


def test_readme_quickstart_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quickstart", 1)[1].split("```", 2)[1]
    commands = [line for line in quick.splitlines()[1:] if line.strip()]
    assert len(commands) == 2, commands
    assert "snakemake --cores all all" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].strip() in ci.splitlines()


@pytest.mark.parametrize("args, key", [
    (["--config", "scael=4"], "scael"),
    (["--config", 'run=["bicubc"]'], "bicubc"),
    (["--config", "scale=5"], "scale"),
    (["--config", "dataset=div3k"], "dataset"),
])
def test_bad_config_is_rejected_before_any_job(tmp_path, args, key):
    proc = snakemake(tmp_path, "-n", "all", *args, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert ("Error validating config" in text or "undefined experiments" in text) and key in text
    assert not (tmp_path / "results").exists()


def rejected(workdir, preset: str) -> str:
    """Dry-run with ``preset`` (YAML text) merged in; it must fail: its output."""
    bad = workdir / "bad.yaml"
    bad.write_text(preset)
    proc = snakemake(workdir, "-n", "all", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def test_mistyped_nested_key_is_rejected(tmp_path):
    assert "'protocol' was unexpected" in rejected(tmp_path, "evaluation:\n  protocol: [paper]\n")


def test_folder_dataset_missing_path_fails_naming_the_key(tmp_path):
    proc = snakemake(tmp_path, "--cores", "1", "all", "--config", "dataset=folder", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "prepare_dataset" / "folder.log").read_text()
    assert "datasets.folder.path" in log
    assert not (tmp_path / "resources" / "datasets" / "folder" / "manifest.json").exists()


@pytest.mark.slow
def test_default_config_bicubic_only_writes_table1(tmp_path):
    """The default config narrowed to bicubic with ``run`` (the full default trains models)."""
    snakemake(tmp_path, "--cores", "2", "all", "--config", 'run=["bicubic"]')
    tables = tmp_path / "results" / "sample-photos" / "x4" / "tables"
    long = pd.read_csv(tables / "table1.csv")
    bic = long[long.experiment == "bicubic"].set_index("metric")
    assert 20 < bic.loc["psnr", "reproduced"] < 40
    assert 0.5 < bic.loc["ssim", "reproduced"] < 1
    assert bic.loc["lr_psnr", "reproduced"] > bic.loc["psnr", "reproduced"]
    lpips = bic.loc["lpips"]
    assert (0 < lpips["reproduced"] < 1) or lpips["note"].startswith("LPIPS unavailable")
    md = (tables / "table1.md").read_text()
    assert re.search(r"\| Bicubic \| .* \| 2\d\.\d\d \|", md)
    per_image = pd.read_csv(tmp_path / "results" / "sample-photos" / "x4" / "metrics" / "bicubic.csv")
    assert set(per_image.protocol_name) == {"paper", "basicsr"}
    assert {"color_space", "crop_border", "quantized", "lpips_weights", "lr_sha256"} <= set(per_image)
    # a second run has nothing to do
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "all", "--config",
                                             'run=["bicubic"]').stdout


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The CI smoke preset run once: every rule on tiny data and tiny models."""
    workdir = tmp_path_factory.mktemp("smoke")
    # tiny jobs: one thread each, two at a time (a runtime setting; the results are the same)
    snakemake(workdir, "all", "--cores", "2", "--max-threads", "1", "--configfile", SMOKE)
    return workdir


@pytest.mark.slow
def test_smoke_preset_runs_every_rule(smoke_run):
    """Dataset, degradation, weights, RRDB, ECDP stages 1 and 2 for every ablation, SRDiff, SR3
    and their ++ fine-tuning, sampling with several seeds, evaluation, timing, tables, figures."""
    from ecdp.checkpoint import load_checkpoint

    base = smoke_run / "results" / "sample-photos" / "x4"
    meta = load_checkpoint(base / "models" / "ecdp" / "train0" / "model.pt")["meta"]
    assert meta["stage"] == 2 and meta["sigma"] == 0.2 and meta["sigma_source"] == "config"
    assert meta["k"] == 1.0 and meta["model"]["unet"]["time_scale"] == 300  # as released
    assert meta["vgg"].startswith("random VGG19 (seed 0)")
    assert not list(base.glob("models/*/train*/model.pt.state"))  # removed once each checkpoint was written
    log = (smoke_run / "logs" / "train" / "sample-photos_x4_ecdp_train0.log").read_text()
    assert "starting at step 0 of 2" in log and "resumed" not in log
    assert load_checkpoint(base / "models" / "ecdp-k2" / "train0" / "model.pt")["meta"]["k"] == 2.0
    # our choices, as labelled ablations: k chosen on validation data, sigma estimated
    meta = load_checkpoint(base / "models" / "ecdp-k-auto" / "train0" / "model.pt")["meta"]
    assert meta["k"] > 0 and len(meta["k_choice"]) == 17 and meta["sigma"] == 0.2
    meta = load_checkpoint(base / "models" / "ecdp-sigma-auto" / "train0" / "model.pt")["meta"]
    assert meta["sigma_source"].startswith("auto") and 0 < meta["sigma"] < 0.2
    stage1 = base / "models" / "ecdp-stage1-hybrid-sigma-auto" / "train0" / "model.pt"
    assert load_checkpoint(stage1)["meta"]["sigma"] == meta["sigma"]
    # two RRDBNets, as released: ECDP's (no trunk conv, no EMA) and SRDiff's (ESRGAN's)
    rrdb = load_checkpoint(base / "models" / "rrdb" / "train0" / "model.pt")["meta"]
    assert rrdb["net"]["trunk_conv"] is False and rrdb["ema"] is False
    assert rrdb["train"]["l1"] == "sum"
    srdiff = load_checkpoint(base / "models" / "srdiff" / "train0" / "model.pt")["meta"]
    assert srdiff["rrdb_net"]["trunk_conv"] is True and srdiff["net"]["taps"] == [2]
    for kind in ("srdiff", "sr3"):
        meta = load_checkpoint(base / "models" / f"{kind}++" / "train0" / "model.pt")["meta"]
        assert meta["kind"] == kind and meta["vgg"].startswith("random VGG19")
    # two training-seed replicates, each trained with its own seed
    assert load_checkpoint(base / "models" / "ecdp" / "train1" / "model.pt")["meta"]["train_seed"] == 1
    per_image = pd.read_csv(base / "metrics" / "ecdp.csv")
    assert sorted(per_image.sample_seed.unique()) == [0, 1]
    assert sorted(per_image.train_seed.unique()) == [0, 1]
    assert per_image.nfe.min() == 4 and per_image.weights.str.startswith("ema step").all()
    assert (per_image.groupby("sample_seed").psnr.mean().diff().abs().iloc[1]) > 0  # seeds differ
    assert pd.read_csv(base / "metrics" / "sr3.csv").nfe.unique().tolist() == [4]
    hr = pd.read_csv(base / "metrics" / "bicubic.csv")
    assert len(hr) == 2 * 2  # 2 images x 2 protocols, one seed for a deterministic method
    summary = pd.read_csv(base / "metrics" / "summary.csv")
    assert len(summary) == 15 * 2
    n_train = summary.set_index("experiment")["n_train_seeds"]
    assert n_train["ecdp"].tolist() == [2, 2] and n_train["bicubic"].tolist() == [1, 1]
    timing = pd.read_csv(base / "timing" / "summary.csv").set_index("experiment")
    assert set(timing.index) == {"rrdb", "srdiff", "sr3", "ecdp"}  # Table 3's rows only
    assert (timing.seconds > 0).all()
    assert timing.loc["sr3", "nfe"] == 4 and timing.loc["ecdp", "nfe"] == 4
    assert timing.loc["rrdb", "nfe"] == 1
    assert (base / "timing" / "ecdp.benchmark.tsv").exists()
    long = pd.read_csv(base / "tables" / "table1.csv")
    assert set(long.experiment) == {"bicubic", "rrdb", "srdiff", "sr3", "ecdp"}
    ecdp = long[long.experiment == "ecdp"].set_index("metric")
    assert ecdp.loc["psnr", "paper"] == 28.03 and "RRDB" in ecdp.loc["psnr", "budget"]
    assert ecdp.loc["params_m", "reproduced"] > 0
    t3 = pd.read_csv(base / "tables" / "table3.csv").set_index(["experiment", "metric"])
    assert t3.loc[("sr3", "seconds"), "paper"] == 83.1
    assert t3.loc[("sr3", "seconds"), "reproduced"] == pytest.approx(timing.loc["sr3", "seconds"])
    assert "2 training seeds" in (base / "tables" / "table1.md").read_text()
    t5 = pd.read_csv(base / "tables" / "table5.csv")
    assert t5.experiment.nunique() == 6 and t5.reproduced.notna().sum() == 6 * 3  # LPIPS offline
    t7 = pd.read_csv(base / "tables" / "table7.csv")
    assert set(t7.experiment) >= {"srdiff++", "sr3++", "ecdp-iq-sde"}
    for figure in ("figure5", "figure8", "quality_vs_cost", "crops"):
        assert (base / "figures" / f"{figure}.png").stat().st_size > 1000
    assert planned(smoke_run, "all", "--configfile", SMOKE) == {}


@pytest.mark.slow
def test_forced_rerun_retrains_from_step_zero(smoke_run, tmp_path):
    """Before: the finished model.pt.state stayed, so a forced re-run "resumed" at the last step
    and trained nothing while its checkpoint claimed a new training."""
    from ecdp.checkpoint import load_checkpoint

    import shutil

    work = tmp_path / "copy"
    shutil.copytree(smoke_run, work, ignore=shutil.ignore_patterns(".snakemake"))
    target = "results/sample-photos/x4/models/ecdp-k2/train0/model.pt"    # a stage-2 training
    log = work / "logs" / "train" / "sample-photos_x4_ecdp-k2_train0.log"
    log.write_text("")
    snakemake(work, target, "--cores", "2", "--configfile", SMOKE, "--forcerun", target)
    text = log.read_text()
    assert "starting at step 0 of 2" in text and "resumed" not in text, text[-2000:]
    assert not (work / f"{target}.state").exists()
    old, new = (load_checkpoint(d / target)["meta"]["history"]["train"] for d in (smoke_run, work))
    assert [h["step"] for h in new] == [1, 2] and new[0]["seconds"] != old[0]["seconds"]


def test_nested_numeric_overrides_pass_the_schema(tmp_path):
    """Snakemake hands nested --config values over as strings ("10"); they are typed by the
    schema before validation (a label stays a string)."""
    jobs = planned(tmp_path, "all", "--config", "training={stage1: {steps: 10, lr: 1e-4}}",
                   "experiments={ecdp: {label: 2024}}")
    assert jobs["train_ecdp_stage1"] == 3 * 3  # parametrizations x the default's training seeds


def test_table_naming_an_undefined_experiment_is_an_error(tmp_path):
    text = rejected(tmp_path, "tables:\n  table1: {reference: table1, experiments: [bicubic, "
                              "ecdp-typo]}\n")
    assert "tables.table1.experiments: ['ecdp-typo'] are not defined" in text


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_a_manual_and_nothing_cites_a_file_outside_the_repository():
    """README.md stays a manual (about 250 lines; the rest in docs/); no file of the repository
    points at the shared design notes or the paper's text outside it."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    outside = re.compile(r"\.\./shared|(?<![\w/])(METHOD|ARCHITECTURE|USER-NEEDS|STYLE)\.md")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    cited = [f for f in tracked if f.endswith((".py", ".md", ".smk", ".yaml", ".rst", ".toml"))
             and outside.search((ROOT / f).read_text())]
    assert cited == []
    for doc in DOCS:  # every docs/ link resolves
        for link in re.findall(r"\]\(((?:docs/)?[\w-]+\.md)\)", doc.read_text()):
            assert (doc.parent / link).exists(), (doc.name, link)


def _readme_snakemake_commands() -> list[str]:
    """Every snakemake command README.md and docs/ show, inline or in a block, continuations
    joined."""
    text = "\n".join(d.read_text() for d in DOCS).replace("\\\n", " ")
    inline = re.findall(r"`((?:pip install [^`&]*&& )?snakemake [^`]+)`", text)
    blocks = re.findall(r"^ {4}(snakemake .+)$", text, flags=re.M)
    fenced = re.findall(r"^(?:pip install .*?&& )?(snakemake .+)$", text, flags=re.M)
    commands = []
    for command in inline + blocks + fenced:
        command = " ".join(command.split()).split("&& ")[-1]
        if command not in commands:
            commands.append(command)
    return commands


def test_readme_snakemake_commands_plan(tmp_path):
    """The commands of README.md and docs/, copied verbatim, each dry-run from the repository
    root (the documented `--configfile X all` used to swallow its target)."""
    import shlex

    commands = _readme_snakemake_commands()
    assert len(commands) >= 8, commands
    assert any("--profile workflow/profiles/slurm" in c for c in commands)
    for i, command in enumerate(commands):
        if "--report" in command or "--lint" in command or "--unlock" in command:
            continue  # tested with the smoke run / below
        args = shlex.split(command)[1:]
        work = tmp_path / f"cmd{i}"
        proc = subprocess.run(["snakemake", *args, "-n", "--directory", str(work)], cwd=ROOT,
                              capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        missing_input = "MissingInputException" in out and "checkpoint" in out  # not here
        placeholder = "/data/" in command and "does not exist" in out       # your folder
        assert proc.returncode == 0 or missing_input or placeholder, f"{command}:\n{out[-3000:]}"
        if proc.returncode == 0:
            assert "Nothing to be done" in out or "Job stats:" in out, command


@pytest.mark.slow
def test_diffusion_baselines_with_a_non_finite_weight_stop_naming_it(smoke_run, tmp_path):
    """Before: an SRDiff or SR3 checkpoint with one NaN weight gave all-black images and a
    3-6 dB table row with rc 0. Now the shared check stops ``ecdp upscale`` (and the
    workflow's sampling, which builds methods the same way) before anything is written. Also:
    the README's ecdp-fast example, its numbers given as strings on the command line, samples."""
    import numpy as np
    import torch
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((12, 12, 3)) * 255).astype(
        np.uint8)).save(tmp_path / "in.png")
    for model in ("srdiff", "sr3"):
        ckpt = torch.load(smoke_run / RESULTS / "models" / model / "train0" / "model.pt",
                          weights_only=False)
        name = next(k for k, v in ckpt["ema"].items() if v.dtype.is_floating_point)
        ckpt["ema"][name] = ckpt["ema"][name].clone().fill_(float("nan"))
        torch.save(ckpt, tmp_path / f"{model}.pt")
        proc = subprocess.run(["ecdp", "upscale", str(tmp_path / "in.png"),
                               str(tmp_path / f"{model}.png"), "--checkpoint",
                               str(tmp_path / f"{model}.pt"), "--sampling", "{steps: 2}"],
                              capture_output=True, text=True)
        assert proc.returncode == 1 and "NaN or infinite" in proc.stderr, proc.stderr[-2000:]
        assert not (tmp_path / f"{model}.png").exists()
    target = f"{RESULTS}/sr/ecdp-fast/train0/sample0.json"
    proc = snakemake(smoke_run, "--cores", "1", target, "--configfile", SMOKE, "--config",
                     "experiments={'ecdp-fast': {'method': 'ecdp', 'sampling': {'solver': "
                     "'dpmpp_2m', 'nfe': '3', 'batch': '2'}}}", "run=['ecdp-fast']", check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    import json
    manifest = json.loads((smoke_run / target).read_text())
    assert {i["nfe"] for i in manifest["images"]} == {3}
    assert manifest["sampling"]["solver"] == "dpmpp_2m" and manifest["sampling"]["batch"] == 2


@pytest.mark.slow
def test_own_images_are_evaluated_with_trained_checkpoints(smoke_run, tmp_path):
    """dataset: folder (test images only) plus checkpoints trained by another run: sampling,
    metrics and tables without training; fixing or adding an image re-scans the folder."""
    import shutil

    import numpy as np
    import yaml
    from PIL import Image

    images = tmp_path / "mine"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a", (40, 48, 3)), ("b", (32, 36, 3))):
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(images / f"{name}.png")
    own = yaml.safe_load((ROOT / "workflow" / "presets" / "own-images.yaml").read_text())
    for spec in own["experiments"].values():
        spec["checkpoint"] = str(smoke_run / spec["checkpoint"])
    own["datasets"] = {"folder": {"path": str(images)}}
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(own))
    work = tmp_path / "work"
    jobs = planned(work, "all", "--configfile", SMOKE, str(config))
    assert not TRAINING_AND_SAMPLING - {"super_resolve"} & set(jobs), jobs
    assert jobs["super_resolve"] == 1 + 1 + 2 and jobs["table"] == 1, jobs  # ECDP: 2 seeds
    snakemake(work, "all", "--cores", "2", "--configfile", SMOKE, str(config))
    table = pd.read_csv(work / "results" / "folder" / "x4" / "tables" / "own.csv")
    assert set(table.experiment) == {"bicubic", "own-rrdb", "own-ecdp"}
    assert table[table.metric == "psnr"].reproduced.notna().all()
    metrics = pd.read_csv(work / "results" / "folder" / "x4" / "metrics" / "own-ecdp.csv")
    assert metrics.region.str.startswith("full image").all()
    assert not (work / "results" / "folder" / "x4" / "models").exists()
    Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).save(images / "c.png")
    jobs = planned(work, "all", "--configfile", SMOKE, str(config))
    assert jobs.get("prepare_dataset") == 1 and jobs.get("super_resolve") == 4, jobs
    shutil.rmtree(work / "results")


@pytest.mark.slow
def test_protocol_or_rendering_changes_rerun_no_training(smoke_run, tmp_path):
    """Table rendering and metric protocol changes re-run tables (and metrics), never models."""
    table = tmp_path / "table.yaml"
    table.write_text("tables:\n  table1: {reference: table1, experiments: [ecdp, rrdb],"
                     " metrics: [psnr], protocol: basicsr}\n")
    jobs = planned(smoke_run, "all", "--configfile", SMOKE, str(table))
    assert jobs.get("table") == 1 and not TRAINING_AND_SAMPLING & set(jobs), jobs
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text("evaluation:\n  protocols: [basicsr, paper]\n")
    jobs = planned(smoke_run, "all", "--configfile", SMOKE, str(protocol))
    assert jobs.get("evaluate") == 15 and not TRAINING_AND_SAMPLING & set(jobs), jobs


@pytest.mark.slow
def test_sampling_gpus_and_labels_never_retrain(smoke_run, tmp_path):
    """How a model is sampled is an evaluation choice, GPUs a runtime setting, a label display:
    none of them re-runs a training; a label re-runs only what shows it."""
    sampling = tmp_path / "sampling.yaml"
    sampling.write_text("sampling:\n  ecdp: {solver: dpmpp_2m, nfe: 6}\n")
    jobs = planned(smoke_run, "all", "--configfile", SMOKE, str(sampling))
    # 9 ECDP experiments x 2 training seeds x 2 sample seeds; Table 3 times ecdp
    assert jobs["super_resolve"] == 9 * 2 * 2 and jobs["timing"] == 1, jobs
    assert not {j for j in jobs if j.startswith(("train", "finetune"))}, jobs
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text("training: {gpus: 2}\n")
    assert planned(smoke_run, "all", "--configfile", SMOKE, str(gpus)) == {}
    label = tmp_path / "label.yaml"
    label.write_text("experiments:\n  ecdp: {label: ECDP renamed}\n")
    jobs = planned(smoke_run, "all", "--configfile", SMOKE, str(label))
    assert set(jobs) <= {"table", "crop_grid", "quality_vs_cost", "all"}, jobs  # what shows it
    assert jobs.get("table"), jobs


@pytest.mark.slow
def test_sampling_study_runs_alone_on_the_trained_models(smoke_run):
    """snakemake sampling_study: the study's table and figure from the smoke run's models,
    without training or evaluating anything again."""
    jobs = planned(smoke_run, "sampling_study", "--configfile", SMOKE)
    assert set(jobs) == {"sampling_study_run", "sampling_report", "sampling_study"}, jobs
    snakemake(smoke_run, "sampling_study", "--cores", "2", "--configfile", SMOKE)
    base = smoke_run / "results" / "sample-photos" / "x4"
    summary = pd.read_csv(base / "tables" / "sampling.csv")
    assert set(summary.solver) == {"dopri5", "dpmpp_2m", "euler"}
    assert summary[summary.solver == "dpmpp_2m"].nfe.tolist() == [4]
    assert (summary.rms_to_reference > 0).all() and summary.psnr.notna().all()
    md = (base / "tables" / "sampling.md").read_text()
    assert "reference" in md and "| dpmpp_2m | NFE 4 |" in md
    assert (base / "figures" / "sampling.png").stat().st_size > 1000


@pytest.mark.slow
def test_report_collects_tables_and_figures(smoke_run):
    snakemake(smoke_run, "--cores", "1", "--report", "report.zip", "--configfile", SMOKE)
    import zipfile

    archive = zipfile.ZipFile(smoke_run / "report.zip")
    names = archive.namelist()
    for item in ("table1.html", "table7.html", "figure5.png", "crops.png"):
        assert any(n.endswith(item) for n in names), (item, names[:20])
    # Before: the tables were downloads of raw Markdown; now the report shows them as HTML.
    page = archive.read(next(n for n in names if n.endswith("table1.html"))).decode()
    assert "<table>" in page and "<th>PSNR" in page and "| ---" not in page


PRESETS = ROOT / "workflow" / "presets"
# Every rule's job count for each preset from scratch: the paper presets run exactly the paper's
# experiments for their dataset (DIV2K: Tables 1, 3, 5, 7 and Figures 5, 7 (crops), 8; CelebA:
# Table 4; ImageNet: Table 2), nothing inherited from config.yaml.
_COMMON = {"fetch_weights": 1, "prepare_dataset": 1, "degrade": 1, "aggregate": 1, "all": 1}
_ONE_TABLE = {**_COMMON, "train_rrdb": 2, "train_ecdp_stage1": 1, "train_ecdp_stage2": 1,
              "train_srdiff": 1, "train_sr3": 1, "super_resolve": 3 * 3 + 2, "evaluate": 5,
              "table": 1, "crop_grid": 1}
PRESET_JOBS = {
    "paper-div2k": ({**_COMMON, "train_rrdb": 2, "train_ecdp_stage1": 3, "train_ecdp_stage2": 6,
                     "train_srdiff": 1, "train_sr3": 1, "finetune_iq": 2,
                     "super_resolve": 3 * 11 + 2, "evaluate": 13, "timing": 4,
                     "aggregate_timing": 1, "table": 4, "crop_grid": 1, "figure5": 1,
                     "figure8": 1}, ["table1", "table3", "table5", "table7"]),
    "paper-celeba": (_ONE_TABLE, ["table4"]),
    "paper-imagenet": (_ONE_TABLE, ["table2"]),
    "published-srdiff-div2k": ({**_COMMON, "train_rrdb": 1, "train_ecdp_stage1": 1,
                                "train_ecdp_stage2": 1, "train_sr3": 1,
                                "super_resolve": 3 * 3 + 2, "evaluate": 5, "timing": 4,
                                "aggregate_timing": 1, "table": 3, "crop_grid": 1,
                                "figure5": 1, "figure8": 1},
                               ["table1", "table3", "srdiff_release"]),
    "smoke": ({**_COMMON, "train_rrdb": 2 * 2, "train_ecdp_stage1": 2 * 4,
               "train_ecdp_stage2": 2 * 8, "train_srdiff": 2, "train_sr3": 2, "finetune_iq": 2 * 2,
               # 2 training seeds x 2 sample seeds of 13 experiments, RRDB 2 x 1, bicubic 1
               "super_resolve": 2 * 2 * 13 + 2 + 1,
               "evaluate": 15, "timing": 4, "aggregate_timing": 1, "table": 4, "crop_grid": 1,
               "figure5": 1, "figure8": 1, "quality_vs_cost": 1},
              ["table1", "table3", "table5", "table7"]),
    "own-images": ({**_COMMON, "super_resolve": 3, "evaluate": 3, "table": 1, "crop_grid": 1},
                   ["own"]),
}


@pytest.mark.parametrize("preset", PRESET_JOBS)
def test_each_preset_plans_exactly_its_experiments(tmp_path, preset):
    jobs, tables = PRESET_JOBS[preset]
    files = [str(PRESETS / f"{preset}.yaml")]
    extra = []
    if preset == "published-srdiff-div2k":  # merged after paper-div2k; its checkpoint exists
        files.insert(0, str(PRESETS / "paper-div2k.yaml"))
        (tmp_path / "resources" / "checkpoints").mkdir(parents=True)
        (tmp_path / "resources" / "checkpoints" / "srdiff-div2k.pt").touch()
    if preset == "own-images":  # a folder of one image; the trained checkpoints exist
        from PIL import Image

        (tmp_path / "images").mkdir()
        Image.new("RGB", (64, 48)).save(tmp_path / "images" / "a.png")
        for model in ("rrdb", "ecdp"):
            path = (tmp_path / "results" / "sample-photos" / "x4" / "models" / model / "train0"
                    / "model.pt")
            path.parent.mkdir(parents=True)
            path.touch()
        extra = ["--config", f"datasets={{folder: {{path: {tmp_path / 'images'}}}}}"]
    out = snakemake(tmp_path, "-n", "all", "--configfile", *files, *extra).stdout
    assert job_stats(out) == jobs
    written = set(re.findall(r"tables/(\w+)\.md", out))
    assert written == set(tables)
    if preset.startswith("paper"):
        assert "gpu=1" in out


def test_one_ablation_reruns_alone(tmp_path):
    jobs = planned(tmp_path, "results/sample-photos/x4/metrics/ecdp-x0.csv")
    # the default run's 3 training seeds x evaluation.seeds 1
    assert jobs["train_ecdp_stage1"] == 3 and jobs["train_ecdp_stage2"] == 3
    assert jobs["super_resolve"] == 3 and "train_srdiff" not in jobs


# The default run (config.yaml): three training seeds of every trained model, one sample seed
# each, SR3 and SR3++ not run (their rows say so), Table 3 timing the three rows it runs.
DEFAULT_JOBS = {**_COMMON, "train_rrdb": 3 * 2, "train_ecdp_stage1": 3 * 3,
                "train_ecdp_stage2": 3 * 6, "train_srdiff": 3, "finetune_iq": 3,
                "super_resolve": 3 * 10 + 1, "evaluate": 11, "timing": 3, "aggregate_timing": 1,
                "table": 4, "crop_grid": 1, "figure5": 1, "figure8": 1, "quality_vs_cost": 1}


def test_default_run_trains_three_replicates_of_every_trained_model(tmp_path):
    out = snakemake(tmp_path, "-n", "all").stdout
    assert job_stats(out) == DEFAULT_JOBS
    models = set(re.findall(r"models/([\w.+-]+)/train(\d+)/model\.pt", out))
    names = {name for name, _ in models}
    assert names == {"rrdb", "srdiff-rrdb", "srdiff", "srdiff++", "ecdp-stage1-hybrid",
                     "ecdp-stage1-eps", "ecdp-stage1-x0", "ecdp", "ecdp-k0.5", "ecdp-k2",
                     "ecdp-eps", "ecdp-x0", "ecdp-iq-sde"}
    assert models == {(name, str(s)) for name in names for s in range(3)}


def test_iq_not_available_for_a_method_is_rejected(tmp_path):
    assert "experiments.rrdb++.iq" in rejected(
        tmp_path, "experiments:\n  rrdb++: {method: rrdb, iq: ancestral}\n")


def test_snakemake_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def _merged_config(*presets):
    """config.yaml with presets merged on top (as --configfile does), schema defaults filled."""
    import yaml
    from snakemake.utils import update_config, validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for preset in presets:
        update_config(config, yaml.safe_load(Path(preset).read_text()))
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


# The releases' recipes (Yuan-Yutao/ECDP conf/*-df2k-*.yaml; LeiaLi/SRDiff configs/diffsr_df2k4x
# and rrdb/df2k4x_pretrain; Janspiry's config/sr_sr3_16_128.json), as facts to check against.
RELEASED_DIV2K = {
    ("model", "sde", "sigma"): 0.2, ("model", "k"): 1.0, ("model", "unet", "time_scale"): 300,
    ("sampling", "ecdp", "solver"): "dopri5", ("sampling", "ecdp", "temperature"): 1.0,
    ("sampling", "srdiff", "steps"): None, ("sampling", "sr3", "steps"): None,
    ("training", "rrdb", "steps"): 53500, ("training", "rrdb", "batch_size"): 32,
    ("training", "rrdb", "l1"): "sum", ("training", "rrdb", "ema_decay"): None,
    ("training", "rrdb", "milestones"): [0.6, 0.8, 0.9],
    ("training", "stage1", "steps"): 107500, ("training", "stage1", "batch_size"): 16,
    ("training", "stage1", "milestones"): [0.6, 0.8], ("training", "stage1", "ema_decay"): 0.999,
    ("training", "stage2", "steps"): 1000, ("training", "stage2", "batch_size"): 12,
    ("training", "stage2", "lr"): 1e-5, ("training", "stage2", "milestones"): [],
    ("training", "stage2", "ema_decay"): 0.9,
    ("baselines", "srdiff", "encoder"): {"features": 64, "growth": 32, "blocks": 17},
    ("baselines", "srdiff", "taps"): [2, 5, 8, 11, 14, 17],
    ("training", "srdiff", "steps"): 400000, ("training", "srdiff", "batch_size"): 64,
    ("training", "srdiff", "milestones"): [0.5], ("training", "srdiff", "ema_decay"): None,
    ("training", "srdiff", "clip_value"): None,
    ("baselines", "sr3", "norm_groups"): 32, ("baselines", "sr3", "time_channels"): 64,
    ("training", "sr3", "batch_size"): 4, ("training", "sr3", "steps"): 1000000,
    ("training", "sr3", "lr"): 1e-4, ("training", "sr3", "ema_decay"): None,
    ("training", "plusplus", "sample_steps"): None,
}


def test_paper_div2k_preset_runs_the_released_settings():
    config = _merged_config(ROOT / "workflow" / "presets" / "paper-div2k.yaml")
    for path, value in RELEASED_DIV2K.items():
        got = config
        for key in path:
            got = got[key]
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, path
    assert "ecdp-sigma-auto" not in config["run"] and "ecdp-k-auto" not in config["run"]
    _assert_released_solve(config)


def _assert_released_solve(config):
    """sampling.ecdp names only the solver: rtol, atol, t_end and time scale are the release's."""
    from ecdp.samplers import RELEASED_SAMPLING, SOLVERS
    from ecdp.sampling import parse_sampling

    sampling = parse_sampling(config["sampling"]["ecdp"])
    assert sampling.solver == RELEASED_SAMPLING["solver"] and sampling.options == ()
    defaults = SOLVERS["dopri5"].fn.func.__kwdefaults__  # probability_flow_z's defaults
    for key in ("rtol", "atol", "t_end", "time_scale"):
        assert defaults[key] == RELEASED_SAMPLING[key], key
    assert RELEASED_SAMPLING["rtol"] == RELEASED_SAMPLING["atol"] == 1e-3
    assert RELEASED_SAMPLING["time_scale"] == 300 and RELEASED_SAMPLING["t_end"] == 1 / 3000


def test_schema_defaults_are_the_released_values():
    """What a preset does not say falls back to the release, never to our choices."""
    from snakemake.utils import validate

    config = {}
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    for path, value in RELEASED_DIV2K.items():
        got = config
        for key in path:
            got = got[key]
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, path
    _assert_released_solve(config)


@pytest.mark.slow
def test_published_checkpoint_is_sampled_and_tabled_without_training(tmp_path):
    """An experiment that names a checkpoint (here SRDiff as its release saved it, converted by
    ecdp import-checkpoint) runs sampling, metrics and tables, and trains nothing; its cells sit
    beside the paper row it reproduces (``reference_row``)."""
    from suite.cli import main as cli

    ckpt = tmp_path / "resources" / "checkpoints" / "srdiff.pt"
    assert cli(["import-checkpoint", "srdiff",
                str(ROOT / "tests" / "data" / "released" / "srdiff_release_saved.ckpt"),
                str(ckpt)]) == 0
    published = tmp_path / "published.yaml"
    published.write_text(
        "evaluation: {limit: 1, sample_seeds: 1, crop: 32, timing: {warmup: 0, repeats: 1}}\n"
        "experiments:\n"
        "  srdiff-published: {method: srdiff, checkpoint: resources/checkpoints/srdiff.pt,\n"
        "                     reference_row: srdiff, label: SRDiff (published)}\n"
        "run: [bicubic, srdiff-published]\n"
        "tables:\n"
        "  table1: {reference: table1, experiments: [bicubic, srdiff-published],"
        " metrics: [psnr, lr_psnr]}\n")
    jobs = planned(tmp_path, "all", "--configfile", str(published))
    assert jobs["super_resolve"] == 2 and not {j for j in jobs if j.startswith(("train", "fine"))}
    snakemake(tmp_path, "all", "--cores", "2", "--configfile", str(published))
    t1 = pd.read_csv(tmp_path / "results" / "sample-photos" / "x4" / "tables" / "table1.csv")
    row = t1[(t1.experiment == "srdiff-published") & (t1.metric == "psnr")].iloc[0]
    assert row.paper == 27.41 and 0 < row.reproduced < 60
    assert "published SRDiff checkpoint" in row.budget


TOY_METHOD = '''

class Nearest:
    """A toy method: nearest-neighbour upsampling."""
    name = "nearest"
    stochastic = False

    def __init__(self, *, scale, **_):
        self.scale = scale

    def super_resolve(self, lr, *, generator=None, image="batch"):
        return torch.nn.functional.interpolate(lr, scale_factor=self.scale, mode="nearest"), 0


METHODS["nearest"] = Method(Nearest)
'''


@pytest.mark.slow
def test_a_toy_method_is_added_in_one_file(tmp_path):
    """README's "your own method": a class and its METHODS entry in baselines/__init__.py is all
    it takes to sample, evaluate and table a method (no schema, no rule, no workflow edit)."""
    import os
    import shutil

    copy = tmp_path / "suite"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", "results", "resources", "logs", ".snakemake", "*.egg-info", "__pycache__"))
    with open(copy / "baselines" / "__init__.py", "a") as f:
        f.write(TOY_METHOD)
    run = tmp_path / "run"
    cmd = ["snakemake", "-s", str(copy / "Snakefile"), "--directory", str(run), "--cores", "2",
           "results/sample-photos/x4/tables/toy.md", "--config", "run=[bicubic, nearest]",
           "experiments={nearest: {method: nearest, label: Nearest}}",
           "tables={toy: {experiments: [bicubic, nearest], metrics: [psnr, ssim, lr_psnr]}}",
           "evaluation={limit: 1}"]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(copy)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    long = pd.read_csv(run / "results" / "sample-photos" / "x4" / "tables" / "toy.csv")
    psnr = long[long.metric == "psnr"].set_index("experiment")["reproduced"]
    assert 15 < psnr["nearest"] < psnr["bicubic"]  # nearest is worse than bicubic on a photo
    # unchanged code: the method is unknown, and the error names the registry
    unchanged = [str(ROOT / "Snakefile") if c == str(copy / "Snakefile") else c for c in cmd]
    proc = subprocess.run(unchanged + ["-n"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "experiments.nearest.method" in proc.stderr + proc.stdout
    assert "baselines.METHODS" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_plan_projects_every_training_and_sampling_job_of_the_smoke_preset(tmp_path):
    """ecdp plan: the jobs are the dry run's; each projection is its probe's measured seconds
    times the printed scaling; nothing is written into the run's folder."""
    import json

    plan_json = tmp_path / "plan.json"
    proc = subprocess.run(["ecdp", "plan", "--directory", str(tmp_path), "--snakefile",
                           str(ROOT / "Snakefile"), "--configfile", SMOKE, "--max-batch", "1",
                           "--json", str(plan_json)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Projected device-hours on cpu" in proc.stdout and "total" in proc.stdout
    plan = json.loads(plan_json.read_text())
    jobs = PRESET_JOBS["smoke"][0]
    counts = {}
    for row in plan["jobs"]:
        counts[row["rule"]] = counts.get(row["rule"], 0) + 1
    for rule, n in plan["untimed"].items():
        counts[rule] = n
    assert counts == {r: n for r, n in jobs.items() if r != "all"}
    smoke = json.loads(json.dumps(_merged_config(SMOKE)))
    for row in plan["jobs"]:
        assert row["hours"] > 0
        if "seconds_per_step" in row:
            assert row["hours"] == pytest.approx(
                row["seconds_per_step"] * row["factor"] * row["steps"] / 3600)
            if row["rule"] == "train_rrdb":  # probed at batch 1 of the recipe's 2
                assert row["factor"] == pytest.approx(2.0)
        if row["rule"] == "super_resolve":
            expected = {"sr3": 4, "srdiff": 4, "rrdb": 1}  # sampling.*.steps of the smoke preset
            name = row["name"].split("/")[0]
            if name in expected:
                assert row["nfe"] == expected[name]
            pixels = smoke["evaluation"]["crop"] ** 2 * smoke["evaluation"]["limit"]
            assert row["hours"] == pytest.approx(
                row["seconds_per_eval"] * row["nfe"] * pixels / row["probe_pixels"] / 3600)
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_training_seeds_name_their_replicates(tmp_path):
    """Other training seeds train other models, in other folders, never overwriting the first
    run's; the old keys are errors naming the new one."""
    out = snakemake(tmp_path, "-n", "all", "--configfile", SMOKE,
                    "--config", "training={train_seeds: [10, 11]}").stdout
    assert set(re.findall(r"models/rrdb/(train\d+)/model.pt", out)) == {"train10", "train11"}
    assert "train0/model.pt" not in out
    assert set(re.findall(r"sr/ecdp/(train\d+)/sample0.json", out)) == {"train10", "train11"}
    old = snakemake(tmp_path, "-n", "all", "--config", "training={seeds: [0]}", check=False)
    assert old.returncode != 0
    assert "training.seeds was renamed: use training.train_seeds" in old.stdout + old.stderr
