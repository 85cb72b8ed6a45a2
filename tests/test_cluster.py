"""What jobs ask a scheduler for (threads, GPUs, memory, time), the SLURM profile as shipped
(dry runs; tests/test_slurm.py runs it on a real cluster), and the arithmetic behind it."""
import math
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from suite import resources
from suite.resources import request, sampling_flops, training_flops

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
PRESETS = ROOT / "workflow" / "presets"


def dry_run(workdir, *args) -> dict[str, list[dict]]:
    """rule -> [{threads, resources...}] of each job a dry run plans (from the repository root)."""
    proc = subprocess.run(["snakemake", "-n", "--directory", str(workdir), *args], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs: dict[str, list[dict]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        job = {"threads": 1}
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("threads:"):
                job["threads"] = int(line.split(":")[1])
            if line.startswith("resources:"):
                for item in line.split(":", 1)[1].split(", "):
                    key, _, value = item.strip().partition("=")
                    job[key] = int(value) if value.isdigit() else value
        jobs.setdefault(head.group(1), []).append(job)
    return jobs


TRAINING = ("train_rrdb", "train_ecdp_stage1", "train_ecdp_stage2", "train_srdiff", "train_sr3",
            "finetune_iq")


def test_profile_runs_without_cores_and_keeps_only_site_facts():
    """No set-threads, set-resources or default memory in the profile (a command-line
    --set-resources would replace the whole map); status by squeue; logs kept."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert not {"set-threads", "set-resources", "default-resources", "cores"} & set(profile)
    assert profile["slurm-status-command"] == "squeue"
    assert profile["slurm-keep-successful-logs"] is True and profile["retries"] >= 1
    partitions = yaml.safe_load((PROFILE / profile["slurm-partition-config"]).read_text())
    assert partitions["partitions"]["cpu"]["max_gpu"] == 0
    assert partitions["partitions"]["gpu"]["max_gpu"] > 0
    pins = (ROOT / "pyproject.toml").read_text()
    assert "snakemake-executor-plugin-slurm>=2.7.1" in pins  # a gpu=2 job ran as 2 copies before


def test_cpu_default_asks_for_cpus_only(tmp_path):
    jobs = dry_run(tmp_path, "--profile", str(PROFILE), "all")
    for rule in TRAINING[:-1] + ("finetune_iq", "super_resolve", "timing"):
        for job in jobs.get(rule, []):
            assert job["gpu"] == 0 and job["threads"] == 1, (rule, job)
            assert job["mem_mb"] < 8000 and job["runtime"] < 120, (rule, job)  # CPU-sized
    assert {j["threads"] for j in jobs["timing"]} == {1}  # on a cluster: its own allocation


def test_paper_preset_trains_on_one_gpu_per_job_and_two_gpus_make_one_job(tmp_path):
    paper = ["--profile", str(PROFILE), "all", "--configfile", str(PRESETS / "paper-div2k.yaml")]
    jobs = dry_run(tmp_path, *paper)
    for rule in TRAINING + ("super_resolve", "timing"):
        assert all(j["gpu"] == 1 for j in jobs[rule]), rule
    stage1 = jobs["train_ecdp_stage1"][0]
    assert stage1["mem_mb"] > 40000  # DF2K's 3450 training images held in memory (uint8)
    assert stage1["runtime"] > 24 * 60 / 4  # hours on one GPU, not minutes
    # a dry run caps threads at its --cores (1 when not given); a cluster run does not
    two = dry_run(tmp_path / "two", *paper, "--cores", "8", "--config", "training={gpus: 2}")
    for rule in TRAINING:
        assert len(two[rule]) == len(jobs[rule]), rule  # one job per training, not two copies
        assert all(j["gpu"] == 2 and j["processes"] == 2 and j["threads"] == 2
                   for j in two[rule]), (rule, two[rule])
    assert all(j["gpu"] == 1 for j in two["super_resolve"])


def test_a_local_run_times_on_every_core(tmp_path):
    jobs = dry_run(tmp_path, "--cores", "3", "all")
    assert {j["threads"] for j in jobs["timing"]} == {3}
    assert {j["threads"] for j in jobs["train_ecdp_stage1"]} == {1}


# ---------------------------------------------------------------------- the arithmetic

def test_request_closed_form_and_growth_with_attempt():
    flops, forward = 3.0e15, 1.0e10
    cpu = request(flops=flops, forward_flops=forward, threads=2)
    minutes = resources.START_MINUTES + resources.MARGIN * flops / (resources.CPU_FLOPS * 2) / 60
    mb = resources.PROCESS_MB + resources.MARGIN * resources.WORKING_BYTES_PER_FLOP * forward / 2**20
    assert cpu == {"runtime": math.ceil(minutes), "mem_mb": math.ceil(mb)}
    third = request(flops=flops, forward_flops=forward, threads=2, attempt=3)
    assert third == {"runtime": math.ceil(3 * minutes), "mem_mb": math.ceil(3 * mb)}
    gpu = request(flops=flops, forward_flops=forward, gpus=2, processes=2, resident_bytes=2**30)
    assert gpu["runtime"] == math.ceil(
        resources.START_MINUTES + resources.MARGIN * flops / (2 * resources.GPU_FLOPS) / 60)
    assert gpu["mem_mb"] == math.ceil(2 * (resources.PROCESS_MB + resources.CUDA_MB)
                                      + resources.MARGIN * 1024)  # no working memory on a GPU host
    with pytest.raises(ValueError, match="attempt"):
        request(flops=1, forward_flops=1, attempt=0)


def test_training_and_sampling_flops():
    assert training_flops(1.0, 2.0, steps=10, batch_size=4, patch_size=8) == 10 * 256 * 3 * 3
    assert training_flops(1.0, 2.0, steps=10, batch_size=4, patch_size=8, chain=5) == \
        10 * 256 * 4 * (1 + 5 * 2)
    assert sampling_flops(1.0, 2.0, pixels=[100, 50], nfe=7, runs=2) == 2 * 150 * (1 + 14)


def test_rrdbnet_flops_per_pixel_closed_form():
    """2 x in x out x 9 per output pixel of each 3x3 conv, at the resolution it runs at."""
    from baselines.costs import forward_flops
    from ecdp.nets.rrdb import rrdbnet_config

    f, g, blocks = 8, 4, 2
    encoder, net = forward_flops("rrdbnet", rrdbnet_config("ecdp", {"features": f, "growth": g,
                                                                     "blocks": blocks}), scale=4)
    conv = lambda i, o: 2 * i * o * 9  # noqa: E731
    rdb = sum(conv(f + i * g, g) for i in range(4)) + conv(f + 4 * g, f)
    lr = conv(3, f) + blocks * 3 * rdb
    expected = lr / 16 + conv(f, f) / 4 + conv(f, f) + conv(f, f) + conv(f, 3)
    assert encoder == 0 and net == pytest.approx(expected)


def test_flops_grow_with_the_configured_network():
    from baselines.costs import forward_flops

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    paper = yaml.safe_load((PRESETS / "paper-div2k.yaml").read_text())
    small, large = ({**c["model"], "parametrization": "hybrid"} for c in (config, paper))
    e_small, d_small = forward_flops("ecdp", small, scale=4)
    e_large, d_large = forward_flops("ecdp", large, scale=4)
    assert 0 < e_small < e_large and 0 < d_small < d_large
    assert d_large / d_small > 5  # the paper network: 8.8x the CPU-sized one per pixel
