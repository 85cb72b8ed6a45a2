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


def test_mistyped_nested_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluation:\n  protocol: [paper]\n")
    proc = snakemake(tmp_path, "-n", "all", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "'protocol' was unexpected" in proc.stdout + proc.stderr


def test_folder_dataset_missing_path_fails_naming_the_key(tmp_path):
    proc = snakemake(tmp_path, "--cores", "1", "all", "--config", "dataset=folder", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "prepare_dataset" / "folder.log").read_text()
    assert "datasets.folder.path" in log
    assert not (tmp_path / "resources" / "datasets" / "folder" / "manifest.json").exists()


@pytest.mark.slow
def test_default_config_bicubic_only_writes_table1(tmp_path):
    """The default config narrowed to bicubic with ``run`` (the full default trains ECDP)."""
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
    assert re.search(r"\| bicubic \| .* \| 2\d\.\d\d \|", md)
    per_image = pd.read_csv(tmp_path / "results" / "sample-photos" / "x4" / "metrics" / "bicubic.csv")
    assert set(per_image.protocol_name) == {"paper", "basicsr"}
    assert {"color_space", "crop_border", "quantized", "lpips_weights", "lr_sha256"} <= set(per_image)
    # a second run has nothing to do
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "all", "--config",
                                             'run=["bicubic"]').stdout


@pytest.mark.slow
def test_smoke_preset_runs_every_rule(tmp_path):
    """The CI smoke preset: dataset, degradation, weights, RRDB, ECDP stages 1 and 2, sampling
    with several seeds, evaluation, aggregation and table 1, on tiny data and models."""
    from ecdp.checkpoint import load_checkpoint

    snakemake(tmp_path, "all", "--cores", "2", "--configfile",
              str(ROOT / "workflow" / "presets" / "smoke.yaml"))
    base = tmp_path / "results" / "sample-photos" / "x4"
    ckpt = load_checkpoint(base / "models" / "ecdp" / "model.pt")
    assert ckpt["meta"]["stage"] == 2 and ckpt["meta"]["sigma_source"].startswith("auto")
    assert ckpt["meta"]["vgg"].startswith("random VGG19 (seed 0)")
    assert ckpt["meta"]["k"] > 0 and len(ckpt["meta"]["k_choice"]) == 17
    assert (base / "models" / "ecdp" / "model.pt.state").exists()
    per_image = pd.read_csv(base / "metrics" / "ecdp.csv")
    assert sorted(per_image.seed.unique()) == [0, 1]
    assert per_image.nfe.min() == 4 and per_image.weights.str.startswith("ema step").all()
    assert (per_image.groupby("seed").psnr.mean().diff().abs().iloc[1]) > 0  # seeds differ
    long = pd.read_csv(base / "tables" / "table1.csv")
    assert set(long.experiment) == {"bicubic", "rrdb", "ecdp"}
    ecdp = long[long.experiment == "ecdp"].set_index("metric")
    assert ecdp.loc["psnr", "paper"] == 28.03 and "RRDB" in ecdp.loc["psnr", "budget"]
    assert "Nothing to be done" in snakemake(
        tmp_path, "-n", "all", "--configfile",
        str(ROOT / "workflow" / "presets" / "smoke.yaml")).stdout


def test_snakemake_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr
