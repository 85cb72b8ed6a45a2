"""No table may lie: every setting checked where it is written, every file where it is read,
through the real entry points (snakemake, ``ecdp plan``). Each test failed before its fix; the
docstrings say how (issue 25). The ``ecdp upscale`` and API cases are in test_model.py, the
region line in test_data.py."""
import fcntl
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def snakemake(workdir, *args):
    return subprocess.run(["snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(workdir), *args], capture_output=True, text=True)


@pytest.mark.parametrize("preset, key", [
    ("experiments:\n  ecdp: {method: ecdp, sampling: {rtol: -1.0e-3}}\n",
     "experiments.ecdp.sampling.rtol: must be > 0"),
    ("experiments:\n  srdiff: {method: srdiff, sampling: {steps: 0}}\n",
     "experiments.srdiff.sampling.steps: must be a whole number >= 1"),
    ("run: []\n", "run: an empty list runs nothing"),
    ("experiments:\n  'bi{cubic}': {method: bicubic}\nrun: ['bi{cubic}']\n",
     "experiments.bi{cubic}: names must match"),
    ("experiments:\n  summary: {method: bicubic}\nrun: [summary]\n",
     "experiments.summary: 'summary' is a name the suite uses"),
])
def test_every_setting_is_checked_before_any_job(tmp_path, preset, key):
    """Before: per-experiment sampling escaped validation (negative dopri5 tolerances ran and
    were tabled; SRDiff steps 0 gave NFE 0 and a 15.4 dB row); `run: []` ran all 130 jobs; a
    name with wildcard characters died with a WildcardError naming no experiment; an experiment
    named `summary` overwrote metrics/summary.csv and the tables said its peers were not run."""
    (tmp_path / "bad.yaml").write_text(preset)
    proc = snakemake(tmp_path, "-n", "all", "--configfile", str(tmp_path / "bad.yaml"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and key in out, out[-2000:]
    assert "WildcardError" not in out and not (tmp_path / "results").exists()


def test_command_line_numbers_reach_the_sampler_typed(tmp_path):
    """Before: `--config` handed nested numbers over as strings; the dry run passed and every
    sampling job then died with TypeError ('<' between str and int). Checked through the
    resolved run the rules read (the whole sampling job runs in test_workflow's smoke run)."""
    proc = snakemake(tmp_path, "-n", "all", "--config",
                     "experiments={'ecdp-fast': {'method': 'ecdp', 'sampling': {'solver': "
                     "'dpmpp_2m', 'nfe': '10', 'batch': '4'}}}", "run=['ecdp-fast']",
                     "--printshellcmds", "--verbose")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    bad = snakemake(tmp_path, "-n", "all", "--config",
                    "experiments={'ecdp-fast': {'method': 'ecdp', 'sampling': {'solver': "
                    "'dpmpp_2m', 'nfe': 'ten'}}}", "run=['ecdp-fast']")
    assert bad.returncode != 0 and "experiments.ecdp-fast.sampling.nfe" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_a_changed_sr_image_is_never_scored(tmp_path):
    """Before: a super-resolved PNG blacked out after sampling was evaluated as it stood (3 dB,
    rc 0) although its manifest holds its sha256. Now the evaluation stops naming the file,
    both hashes and the manifest, and no metrics or table are written."""
    assert snakemake(tmp_path, "--cores", "2", "all", "--config",
                     'run=["bicubic"]').returncode == 0
    results = tmp_path / "results" / "sample-photos" / "x4"
    manifest = next((results / "sr" / "bicubic").rglob("*.json"))
    record = json.loads(manifest.read_text())["images"][0]
    png = manifest.with_suffix("") / record["path"]
    Image.fromarray(np.zeros_like(np.asarray(Image.open(png)))).save(png)
    metrics = results / "metrics" / "bicubic.csv"
    metrics.unlink()
    proc = snakemake(tmp_path, "--cores", "1", str(metrics.relative_to(tmp_path)), "--config",
                     'run=["bicubic"]')
    log = "".join(p.read_text() for p in (tmp_path / "logs" / "evaluate").glob("*bicubic*"))
    assert proc.returncode != 0
    assert "sha256" in log and record["sha256"] in log and str(manifest.name) in log, log[-2000:]
    assert "rebuild" in log and not metrics.exists()


@pytest.mark.slow
def test_a_second_process_on_a_running_step_stops_before_writing(tmp_path):
    """Snakemake 9.27.1 removes the whole .snakemake/locks folder when any run in the folder
    ends, so a second run of a target then works on the jobs a first run is still running (two
    processes writing the same PNGs and manifests). Before: nothing stopped the second one. Now
    each step holds a lock beside its log: here the first run's lock is held by this test, the
    second run's step stops naming the log, and nothing of the step is written."""
    log = tmp_path / "logs" / "prepare_dataset" / ".sample-photos.log.lock"
    log.parent.mkdir(parents=True)
    with open(log, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = snakemake(tmp_path, "--cores", "1",
                         "resources/datasets/sample-photos/manifest.json")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "another process is running this step" in out, out[-2000:]
    assert not (tmp_path / "resources" / "datasets" / "sample-photos" / "manifest.json").exists()
    assert snakemake(tmp_path, "--cores", "1",
                     "resources/datasets/sample-photos/manifest.json").returncode == 0


@pytest.mark.slow
def test_plan_prices_the_rest_of_a_started_run(tmp_path):
    """Before: `ecdp plan` in a run whose dataset was prepared (so not among the jobs still to
    run) stopped with "manifest.json missing: prepare the dataset first"; `--steps 0` ended in
    an IndexError; `--adaptive-nfe -5` printed negative device-hours."""
    run = ["--config", 'run=["bicubic", "rrdb"]']
    assert snakemake(tmp_path, "--cores", "1", "resources/datasets/sample-photos/manifest.json",
                     *run).returncode == 0
    plan = ["ecdp", "plan", "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"),
            "--config", 'run=["bicubic", "rrdb"]', "--max-batch", "1", "--max-patch", "32"]
    proc = subprocess.run(plan + ["--json", str(tmp_path / "plan.json")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = json.loads((tmp_path / "plan.json").read_text())["jobs"]
    assert {r["rule"] for r in rows} == {"train_rrdb", "super_resolve", "timing"}
    assert all(r["hours"] > 0 for r in rows)
    assert "prepare_dataset" not in proc.stdout
    for flag, value in (("--steps", "0"), ("--adaptive-nfe", "-5"), ("--max-batch", "0")):
        bad = subprocess.run(plan + [flag, value], capture_output=True, text=True)
        assert bad.returncode == 2 and f"argument {flag}: {value}: must be more than 0" in bad.stderr


def test_step_lock_keeps_a_second_process_off_but_not_its_own_torchrun_workers(tmp_path,
                                                                              monkeypatch):
    """A multi-GPU training's torchrun workers run the step's script again while their
    launcher holds the step's lock: they log without taking it (a second run does not)."""
    import fcntl

    from ecdp.logs import logged

    log = tmp_path / "logs" / "step.log"
    log.parent.mkdir(parents=True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with open(log.with_name(".step.log.lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another process is running this step"):
            with logged(log):
                print("second run")
        monkeypatch.setenv("LOCAL_RANK", "1")
        with logged(log):
            print("worker 1 logs")
    assert "worker 1 logs" in log.read_text() and "second run" not in log.read_text()
