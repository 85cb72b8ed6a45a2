"""The SLURM profile on a real single-node SLURM cluster (``tests/slurm_cluster.py``).

Every run goes through ``workflow/profiles/slurm`` as shipped; the tests add only
``--slurm-init-seconds-before-status-checks 5`` (the first status check after 5 s instead of 40,
which changes no request) and ``--verbose`` (the plugin then logs its sbatch calls). Every wait
is bounded: a run that has not ended after ``BOUND`` seconds fails the test, and its jobs are
cancelled. The tests need root and Debian's SLURM packages (``.ci/run`` installs them); without
them they skip and say why.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from slurm_cluster import SlurmCluster, unavailable

ROOT = Path(__file__).resolve().parent.parent
PROFILE = str(ROOT / "workflow" / "profiles" / "slurm")
SMOKE = str(ROOT / "workflow" / "presets" / "smoke.yaml")
TEST_FLAGS = ["--slurm-init-seconds-before-status-checks", "5", "--verbose"]
BOUND = 900  # seconds: no run here needs more than a third of it
# One training per method kind (RRDBNet, ECDP stages 1 and 2, SRDiff, SR3), sampling,
# evaluation and a table, on the smoke preset's tiny models: 16 SLURM jobs.
SUBSET = ["--configfile", SMOKE, "--config", "run=[bicubic,rrdb,srdiff,sr3,ecdp]",
          "training={train_seeds: [0]}", "evaluation={sample_seeds: 1}"]
TABLE = "results/sample-photos/x4/tables/table1.md"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]


@pytest.fixture(scope="module")
def cluster():
    """A cluster with accounting (slurmdbd + MariaDB); ``restart`` switches it off."""
    c = SlurmCluster(accounting=True).start()
    yield c
    c.stop()


def snakemake(workdir: Path, *args, env: dict, slurm: bool = True, check: bool = True,
              background: bool = False):
    """Run snakemake in ``workdir`` through the SLURM profile (or locally at one thread per
    job, ``slurm=False``), bounded by ``BOUND``."""
    workdir.mkdir(parents=True, exist_ok=True)
    how = ["--profile", PROFILE, *TEST_FLAGS] if slurm else ["--cores", "2"]
    cmd = ["snakemake", "-s", str(ROOT / "Snakefile"), *how, *args]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if background:
        return proc
    return finish(proc, env, check=check)


def finish(proc: subprocess.Popen, env: dict, *, check: bool = True, bound: float = BOUND):
    """Wait at most ``bound`` seconds; on time-out kill the run and cancel its jobs."""
    try:
        out, _ = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["scancel", "--user", "root"], env=env, check=False)
        out, _ = proc.communicate()
        raise AssertionError(f"the run did not end within {bound} s:\n{out[-4000:]}")
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{out[-6000:]}")
    return proc.returncode, out


def sbatch_lines(out: str) -> list[str]:
    """The sbatch calls the plugin logged, without the inner snakemake command."""
    return [line.split(" --wrap=")[0].split("sbatch call: ", 1)[1]
            for line in out.splitlines() if "sbatch call: " in line]


def state_tensors(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {**{f"state.{k}": v for k, v in ckpt["state"].items()},
            **{f"ema.{k}": v for k, v in ckpt["ema"].items()}}


def same_checkpoint(a: Path, b: Path) -> tuple[int, int]:
    """(tensors equal, tensors) of two checkpoints' raw and EMA weights."""
    x, y = state_tensors(a), state_tensors(b)
    assert x.keys() == y.keys()
    return sum(torch.equal(x[k], y[k]) for k in x), len(x)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Columns that hold wall-clock time: the only ones a scheduler may change.
CLOCK = {"seconds", "seconds_mean", "seconds_std", "seconds_train_std", "seconds_sample_std",
         "seconds_replicates"}


def test_subset_through_slurm_equals_the_local_run(cluster, tmp_path):
    """One training per method kind, sampling, evaluation and Table 1 through the scheduler:
    every checkpoint tensor, SR image and metric equals a local run's at one thread per job."""
    start = time.monotonic()
    _, out = snakemake(tmp_path / "slurm", TABLE, *SUBSET, env=cluster.env)
    minutes = (time.monotonic() - start) / 60
    lines = sbatch_lines(out)
    print(f"SLURM run: {minutes:.1f} min, {len(lines)} sbatch calls, e.g.\n  " + "\n  ".join(
        lines[:3]))
    assert len(lines) == 16, lines
    assert all("--cpus-per-task=1" in x and "--gpus" not in x and " -p cpu" in x
               for x in lines), lines
    assert all(re.search(r"--mem \d+", x) and re.search(r" -t \d+", x) for x in lines), lines
    snakemake(tmp_path / "local", TABLE, *SUBSET, env=cluster.env, slurm=False)
    a, b = (tmp_path / w / "results" / "sample-photos" / "x4" for w in ("slurm", "local"))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    checked = {"checkpoints": 0, "tensors": 0, "png": 0, "csv": 0, "tables": 0}
    for f in files:
        if f.suffix == ".pt":
            equal, total = same_checkpoint(a / f, b / f)
            assert equal == total, (f, equal, total)
            checked["checkpoints"] += 1
            checked["tensors"] += total
        elif f.suffix == ".png":
            assert sha(a / f) == sha(b / f), f
            checked["png"] += 1
        elif f.suffix == ".csv":
            x, y = pd.read_csv(a / f), pd.read_csv(b / f)
            keep = [c for c in x if c not in CLOCK]
            pd.testing.assert_frame_equal(x[keep], y[keep], check_exact=True, obj=str(f))
            checked["csv"] += 1
        elif f.suffix in (".md", ".tex"):
            assert (a / f).read_text() == (b / f).read_text(), f
            checked["tables"] += 1
    print(f"compared with the local run: {checked}")
    assert checked["checkpoints"] == 6 and checked["png"] >= 10 and checked["tables"] == 2
    logs = list((tmp_path / "slurm" / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == 16  # slurm-keep-successful-logs: every job's log is kept


TRAINING = ["--configfile", SMOKE, "--config",
            "training={train_seeds: [0], rrdb: {steps: 1500, batch_size: 4, patch_size: 48, "
            "save_every: 50}, srdiff_rrdb: {steps: 1500, batch_size: 4, patch_size: 48, "
            "save_every: 50}}"]
MODELS = {name: f"results/sample-photos/x4/models/{name}/train0/model.pt"
          for name in ("rrdb", "srdiff-rrdb")}


def _slurm_job(env: dict, name: str) -> str | None:
    """The running SLURM job of one RRDBNet training (its comment names the wildcards)."""
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], env=env,
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        job, comment = line.split("|", 1)
        if comment.endswith(f"_{name}_0"):
            return job
    return None


def _training_process(name: str) -> int | None:
    """PID of the rule script training ``name``: the process that holds its log file open
    (the rule script writes its own log; the snakemake process around it does not)."""
    log = f"sample-photos_x4_{name}_train0.log"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd).endswith(log) for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


def test_scancel_and_kill_resume_to_the_uninterrupted_checkpoint(cluster, tmp_path):
    """A scancelled job (CANCELLED in squeue) and a training killed with SIGKILL inside its job
    (FAILED) are each noticed and retried (profile: retries 2); the retry resumes from the saved
    state and ends with the checkpoint of an uninterrupted local run."""
    work = tmp_path / "slurm"
    proc = snakemake(work, *MODELS.values(), *TRAINING, env=cluster.env, background=True)
    deadline = time.monotonic() + 300
    done = {}
    while len(done) < 2 and time.monotonic() < deadline:
        for name in MODELS:
            state = work / f"{MODELS[name]}.state"
            if name in done or not state.exists():
                continue
            if name == "rrdb":
                job = _slurm_job(cluster.env, name)
                if job:
                    subprocess.run(["scancel", job], env=cluster.env, check=True)
                    done[name] = f"scancel {job}"
            else:
                pid = _training_process(name)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    done[name] = f"kill -9 {pid}"
        time.sleep(1)
    assert len(done) == 2, f"could not interrupt both trainings in time: {done}"
    _, out = finish(proc, cluster.env)
    print(f"interrupted: {done}")
    assert "CANCELLED" in out and "FAILED" in out, out[-4000:]
    for name, path in MODELS.items():
        log = (work / "logs" / "train" / f"sample-photos_x4_{name}_train0.log").read_text()
        resumed = re.findall(r"resumed from step (\d+) of 1500", log)
        print(f"{name}: {done[name]}, then resumed from step {resumed}")
        assert resumed and 0 < int(resumed[0]) < 1500, log[-3000:]
    snakemake(tmp_path / "local", *MODELS.values(), *TRAINING, env=cluster.env, slurm=False)
    for name, path in MODELS.items():
        equal, total = same_checkpoint(work / path, tmp_path / "local" / path)
        print(f"{name}: {equal} of {total} tensors equal to the uninterrupted run")
        assert equal == total


def test_two_process_training_is_one_job_with_torchrun(cluster, tmp_path):
    """training.gpus: 2 on device cpu: one SLURM job with two CPUs that runs torchrun with two
    gloo processes (never two copies of the script); its checkpoint equals the one-process
    run's (the same samples per step, see patch_batches) up to float rounding."""
    model = MODELS["rrdb"]
    config = ["--configfile", SMOKE, "--config",
              "training={train_seeds: [0], device: cpu, gpus: 2, rrdb: {steps: 4, batch_size: 4}}"]
    _, out = snakemake(tmp_path / "slurm", model, *config, env=cluster.env)
    lines = [x for x in sbatch_lines(out) if "rule_train_rrdb" in x]
    print("sbatch:", *lines, sep="\n  ")
    assert len(lines) == 1 and "--cpus-per-task=2" in lines[0] and "--gpus" not in lines[0]
    log = (tmp_path / "slurm" / "logs" / "train" / "sample-photos_x4_rrdb_train0.log").read_text()
    assert "launching 2 workers" in log, log[-2000:]
    single = ["--configfile", SMOKE, "--config",
              "training={train_seeds: [0], device: cpu, gpus: 0, rrdb: {steps: 4, batch_size: 4}}"]
    snakemake(tmp_path / "local", model, *single, env=cluster.env, slurm=False)
    two, one = (state_tensors(tmp_path / w / model) for w in ("slurm", "local"))
    worst = max(float((two[k] - one[k]).abs().max()) for k in one)
    print(f"two processes vs one: largest weight difference {worst:.2e}")
    assert worst < 1e-4
    meta = torch.load(tmp_path / "slurm" / model, weights_only=False)["meta"]
    assert meta["processes"] == 2 and "x2 processes" in meta["budget"]


def test_a_job_the_cluster_refuses_fails_the_run_without_waiting(cluster, tmp_path):
    """evaluation.gpus: 1 on a cluster without GPUs: sbatch refuses every attempt and the run
    ends with the scheduler's reason, well within the bound."""
    start = time.monotonic()
    code, out = snakemake(tmp_path, TABLE, "--config", 'run=["bicubic"]',
                          "evaluation={gpus: 1}", env=cluster.env, check=False)
    seconds = time.monotonic() - start
    print(f"refused run ended after {seconds:.0f} s with exit code {code}")
    assert code != 0 and "Invalid generic resource" in out, out[-3000:]
    assert "--gpus=1" in "\n".join(sbatch_lines(out))
    assert seconds < 300


def test_cluster_without_accounting_finishes(cluster, tmp_path):
    """No slurmdbd: every sacct query fails; the profile's squeue status sees the jobs end.
    (The module's last test: the cluster stays without accounting until it is stopped.)"""
    cluster.restart(accounting=False)
    assert subprocess.run(["sacct", "-n"], env=cluster.env, capture_output=True).returncode != 0
    start = time.monotonic()
    snakemake(tmp_path, TABLE, "--config", 'run=["bicubic"]', env=cluster.env)
    print(f"without accounting: {time.monotonic() - start:.0f} s")
    assert (tmp_path / TABLE).exists()
