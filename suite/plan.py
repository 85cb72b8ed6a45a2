"""``ecdp plan``: what a configured run will cost on this device, before it is launched.

The jobs are those Snakemake still has to run for the configured targets: its own summary
(``snakemake --summary``, a public output: every file, its rule and whether it is pending),
each pending file read back into a training (model, training seed) or a sampling job
(experiment, seeds) of the run (``suite.run.Run``). What each job is (its recipe, network,
sampling and chain length) comes from the ``Run``, never from the rules or Snakemake's internals.

Each training and sampling job is probed by calling its rule script's own ``main`` for a few
steps (or one image) in a scratch folder, with the sample photos standing in for the dataset,
and the measured seconds are scaled to the configured run:

    training:  seconds/step (median, first step dropped) x steps x (batch / probed batch)
               x (patch / probed patch)^2 (x chain / probed chain for L_IQ)
    sampling:  seconds/evaluation x NFE x (test HR pixels / probed HR pixels), per image

Probes of the same kind (rule and params, less the seed and k) run once. Every scaling is
printed beside its result. Rules that neither train nor sample are listed, not timed.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from ecdp.data.datasets import split_pixels
from ecdp.sampling import parse_sampling

from .resources import ASSUMED_ADAPTIVE_NFE
from .run import Run, prepare_config, resolve_run

__all__ = ["Job", "load_run", "pending_jobs", "probe_plan", "format_plan", "test_pixels",
           "SCRIPTS"]

# The rule scripts a probe calls (workflow/scripts/), and the order probes run in (upstream
# models first).
SCRIPTS = {"train_rrdb": "train_rrdb.py", "train_ecdp_stage1": "train_ecdp.py",
           "train_srdiff": "train_srdiff.py", "train_sr3": "train_sr3.py",
           "train_ecdp_stage2": "train_ecdp.py", "finetune_iq": "finetune_iq.py",
           "train_ecdp_distill": "train_ecdp_distill.py",
           "super_resolve": "super_resolve.py", "timing": None}


@dataclass(frozen=True)
class Job:
    """One pending job: a training (``model``, ``train_seed``), a sampling (``experiment``,
    ``train_seed``, ``sample_seed``), a timing (``experiment``) or another rule (untimed)."""

    rule: str
    output: str
    model: str | None = None
    experiment: str | None = None
    train_seed: int | None = None
    sample_seed: int | None = None


def load_run(snakefile, configfiles=(), overrides: dict | None = None) -> tuple[dict, Run]:
    """(config, Run) as the workflow reads them: config.yaml beside the Snakefile, each
    ``--configfile`` merged on top, then ``--config`` (Snakemake's order), prepared and
    resolved as the Snakefile does."""
    from snakemake.utils import update_config

    import baselines

    root = Path(snakefile).resolve().parent
    config = yaml.safe_load((root / "config.yaml").read_text())
    for path in configfiles:
        update_config(config, yaml.safe_load(Path(path).read_text()) or {})
    update_config(config, overrides or {})
    schema = root / "workflow" / "schemas" / "config.schema.yaml"
    config = prepare_config(config, schema)
    return config, resolve_run(config, baselines.METHODS, yaml.safe_load(schema.read_text()))


_PATTERNS = [
    (re.compile(r"/models/(?P<model>[^/]+)/train(?P<train_seed>\d+)/model\.pt$"), ("model",)),
    (re.compile(r"/sr/(?P<experiment>[^/]+)/train(?P<train_seed>\d+)/sample(?P<sample_seed>\d+)"
                r"\.json$"), ("experiment",)),
    (re.compile(r"/timing/(?P<experiment>[^/]+)\.json$"), ("experiment",)),
]


def _job(rule: str, output: str) -> Job:
    for pattern, _ in _PATTERNS:
        found = pattern.search(output)
        if found:
            fields = found.groupdict()
            return Job(rule, output, model=fields.get("model"),
                       experiment=fields.get("experiment"),
                       train_seed=int(fields["train_seed"]) if "train_seed" in fields else None,
                       sample_seed=(int(fields["sample_seed"]) if "sample_seed" in fields
                                    else None))
    return Job(rule, output)


def pending_jobs(*, snakefile, workdir, configfiles=(), config_args=(),
                 targets=("all",)) -> list[Job]:
    """The jobs Snakemake would run for ``targets`` (one per rule and output file it still has
    to make), from ``snakemake --summary``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
           "--summary", *targets]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    if config_args:
        cmd += ["--config", *config_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake --summary failed:\n{proc.stdout[-2000:]}"
                           f"{proc.stderr[-3000:]}")
    rows = csv.DictReader(io.StringIO(proc.stdout[proc.stdout.index("output_file"):]),
                          delimiter="\t")
    jobs, seen = [], set()
    for row in rows:
        if row["plan"] == "no update" or (row["rule"], row["output_file"]) in seen:
            continue
        job = _job(row["rule"], row["output_file"])
        # a job's outputs share a name (tables/table1.md, .csv, .tex, .html): one job
        key = (job.rule, job.model, job.experiment, job.train_seed, job.sample_seed,
               None if (job.model or job.experiment) else Path(job.output).name.split(".")[0])
        if key not in seen:
            seen.add(key)
            jobs.append(job)
    order = list(SCRIPTS)
    return sorted(jobs, key=lambda j: order.index(j.rule) if j.rule in order else -1)


def test_pixels(config: dict, workdir) -> tuple[int, list[int]]:
    """(images, HR pixels of each) of the evaluation split: the prepared dataset when it is
    here, else its nominal size (``NOMINAL_SPLITS``); evaluation.limit and crop applied."""
    name, ev = config["dataset"], config["evaluation"]
    pixels = split_pixels(name, ev["split"], root=Path(workdir) / "resources" / "datasets" / name,
                          options=config.get("datasets", {}).get(name, {}))
    pixels = pixels[: ev.get("limit") or None]
    if ev.get("crop"):
        pixels = [min(p, ev["crop"] ** 2) for p in pixels]
    return len(pixels), pixels


@contextmanager
def _inside(folder: Path):
    here = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def _main(snakefile, rule: str):
    """The ``main`` of a rule's script (its Snakemake block does not run outside a job)."""
    script = Path(snakefile).resolve().parent / "workflow" / "scripts" / SCRIPTS[rule]
    return runpy.run_path(str(script), run_name="__plan__")["main"]


class _Probe:
    """The scratch folder a plan probes in: the sample photos as the dataset, their evaluation
    pairs at ``lr_size``, weights offline, and the checkpoints the probes write."""

    def __init__(self, folder: Path, run: Run, workdir: Path, lr_size: int):
        from ecdp.data.datasets import prepare_dataset
        from ecdp.data.pairs import make_pairs
        from ecdp.weights import fetch_weights

        self.folder, self.run, self.workdir = folder, run, workdir
        data = folder / "resources" / "datasets" / "sample-photos"
        prepare_dataset("sample-photos", data)
        self.dataset = str(data / "manifest.json")
        make_pairs(data, folder / "results", split="test", scale=run.scale,
                   crop=lr_size * run.scale, limit=1, official_lr=False, progress=False)
        self.pairs = str(folder / "results" / "lr" / "test.json")
        fetch_weights(folder / "resources" / "weights", allow_download=False)
        self.weights = str(folder / "resources" / "weights" / "weights.json")
        self.trained: dict[str, str] = {}

    def checkpoint(self, model: str, train_seed: int) -> str:
        """A probe's checkpoint of ``model`` when one was probed, else the run's own."""
        return self.trained.get(model) or str(
            Path(self.workdir).resolve() / self.run.model_path(model, train_seed))


def _training(job: Job, run: Run, probe: _Probe, snakefile, *, steps, max_batch, max_patch,
              max_sample_steps, adaptive_nfe, probed: dict, log) -> dict:
    model = run.models[job.model]
    cfg = model.params["cfg"]
    small = {**cfg, "steps": steps, "save_every": steps, "validate_every": None,
             "batch_size": min(cfg["batch_size"], max_batch or cfg["batch_size"]),
             "patch_size": min(cfg["patch_size"], max_patch or cfg["patch_size"])}
    chain = model.chain or (adaptive_nfe if model.rule == "train_ecdp_stage2"
                            and cfg.get("sampler") == "ode" else None)
    if model.rule == "train_ecdp_distill":
        # the teacher's solve dominates a step: probed at fixed steps, priced at its NFE
        teacher = parse_sampling(cfg["teacher"] or None, where="training.distill.teacher")
        chain = teacher.nfe or adaptive_nfe
        small["teacher"] = {"solver": "euler", "nfe": min(chain, max_sample_steps)}
    if "allow_random_vgg" in cfg:
        small["allow_random_vgg"] = True
    if chain and model.rule == "train_ecdp_distill":
        pass
    elif chain and model.rule == "train_ecdp_stage2" and cfg.get("sampler") == "ode":
        small["sample"] = {"solver": "euler", "nfe": min(chain, max_sample_steps)}
    elif chain:
        small["sample_steps" if model.rule == "finetune_iq" else "sde_steps"] = \
            min(chain, max_sample_steps)
    params = {k: v for k, v in model.params.items() if k != "k"}
    key = model.rule + json.dumps({**params, "cfg": small}, sort_keys=True, default=str)
    output = probe.folder / run.model_path(job.model, job.train_seed)
    if key not in probed:
        log(f"probing {model.rule} {job.model}: {steps} steps at batch {small['batch_size']} "
            f"@ {small['patch_size']} px")
        kwargs = {"dataset": probe.dataset, "output": str(output), "scale": run.scale,
                  "device": "auto", "threads": 1, **model.params, "cfg": small,
                  "seed": job.train_seed}
        if model.upstream:
            kwargs["upstream"] = probe.checkpoint(model.upstream, job.train_seed)
        if model.rule in ("train_ecdp_stage2", "finetune_iq", "train_ecdp_distill"):
            kwargs["weights"] = probe.weights
        with _inside(probe.folder):
            _main(snakefile, model.rule)(**kwargs)
        from ecdp.checkpoint import load_checkpoint

        history = load_checkpoint(output)["meta"]["history"]["train"]
        seconds = [h["seconds"] for h in history][1:] or [history[0]["seconds"]]
        probed[key] = statistics.median(seconds), str(output)
    per_step, path = probed[key]
    probe.trained.setdefault(job.model, path)  # the same cost: serves the jobs downstream
    factor = (cfg["batch_size"] / small["batch_size"]
              * (cfg["patch_size"] / small["patch_size"]) ** 2
              * (chain / min(chain, max_sample_steps) if chain else 1))
    hours = per_step * factor * cfg["steps"] / 3600
    probed_chain = f" and {min(chain, max_sample_steps)} sampling steps" if chain else ""
    return {"rule": model.rule, "name": job.model, "hours": hours, "steps": cfg["steps"],
            "seconds_per_step": per_step, "factor": factor,
            "detail": f"{cfg['steps']} steps x {per_step:.3g} s/step at batch "
                      f"{small['batch_size']} @ {small['patch_size']} px{probed_chain}, x "
                      f"{factor:.3g} for batch {cfg['batch_size']} @ {cfg['patch_size']} px"
                      + (f" and {chain} steps" if chain else "")}


def _chain_length(experiment, config: dict) -> int:
    """An SRDiff / SR3 chain's steps: a given checkpoint's own, else the configured ones."""
    if experiment.checkpoint and Path(experiment.checkpoint).exists():
        from ecdp.checkpoint import load_checkpoint

        meta = load_checkpoint(experiment.checkpoint)["meta"]
        return meta.get("diffusion", meta.get("net", {}))["steps"]
    return config["baselines"][experiment.method]["steps"]


def _sampling_probe(job: Job, run: Run, probe: _Probe, snakefile, config, *, max_sample_steps,
                    adaptive_nfe, log):
    """(seconds per network evaluation, the configured NFE, probed HR pixels, a note)."""
    from PIL import Image

    experiment = run.experiments[job.experiment]
    sampling, note, nfe = experiment.sampling, "", 1
    record = sampling.record() if sampling is not None else None
    if sampling is not None and sampling.family == "ecdp":
        nfe = sampling.nfe or adaptive_nfe
        if sampling.adaptive:  # probe weights make an adaptive NFE meaningless: fixed steps
            note = f" (adaptive solve priced at NFE {adaptive_nfe}, --adaptive-nfe)"
        record = {k: v for k, v in record.items() if k in ("temperature", "channels_last")}
        record.update(solver="euler", nfe=min(nfe, max_sample_steps))
    elif sampling is not None:  # SRDiff / SR3: NFE = their steps, probed at fewer
        nfe = sampling.nfe or _chain_length(experiment, config)
        record = {"solver": "ancestral", "steps": min(nfe, max_sample_steps)}
    log(f"probing super_resolve {job.experiment}: one image")
    output = probe.folder / "sr" / job.experiment / "probe.json"
    model = (experiment.checkpoint or (probe.checkpoint(experiment.model, job.train_seed or
                                                        run.train_seeds[0])
                                       if experiment.model else None))
    with _inside(probe.folder):
        _main(snakefile, "super_resolve")(
            pairs=probe.pairs, output=str(output), method=experiment.method_spec(), seed=0,
            scale=run.scale, device="auto", threads=1, model=model, sampling=record, tile=None)
    image = json.loads(output.read_text())["images"][0]
    probe_nfe = image["nfe"] or 1
    s_eval = image["seconds"] / probe_nfe
    probe_px = math.prod(Image.open(output.with_suffix("") / image["path"]).size)
    return s_eval, (nfe if sampling is not None else probe_nfe), probe_px, note


def probe_plan(jobs: list[Job], config: dict, run: Run, *, snakefile, workdir, probe_dir=None,
               steps: int = 3, max_batch: int | None = None, max_patch: int | None = None,
               lr_size: int = 16, max_sample_steps: int = 10,
               adaptive_nfe: int = ASSUMED_ADAPTIVE_NFE, log=print) -> dict:
    """Probe ``jobs`` (``pending_jobs``) and project each onto the configured run. Returns
    {"jobs": [{rule, name, hours, detail, ...}], "untimed": {rule: count}, "assumptions"}."""
    if steps < 1 or max_sample_steps < 1 or adaptive_nfe < 1 or lr_size < 8:
        raise ValueError(f"ecdp plan: --steps, --max-sample-steps and --adaptive-nfe must be "
                         f">= 1 and --lr-size >= 8; got {steps}, {max_sample_steps}, "
                         f"{adaptive_nfe}, {lr_size}")
    scratch = Path(probe_dir or tempfile.mkdtemp(prefix="ecdp-plan-")).resolve()
    images, pixels = test_pixels(config, workdir)
    rows, untimed, probed, per_image = [], Counter(), {}, {}
    probe = None
    for job in jobs:
        if job.rule not in SCRIPTS:
            untimed[job.rule] += 1  # data, weights, metrics, tables, figures
            continue
        probe = probe or _Probe(scratch, run, Path(workdir), lr_size)
        if job.model is not None:
            rows.append(_training(job, run, probe, snakefile, steps=steps, max_batch=max_batch,
                                  max_patch=max_patch, max_sample_steps=max_sample_steps,
                                  adaptive_nfe=adaptive_nfe, probed=probed, log=log))
            continue
        if job.experiment not in per_image:
            per_image[job.experiment] = _sampling_probe(
                job, run, probe, snakefile, config, max_sample_steps=max_sample_steps,
                adaptive_nfe=adaptive_nfe, log=log)
        s_eval, nfe, probe_px, note = per_image[job.experiment]
        if job.rule == "super_resolve":
            seconds = sum(s_eval * nfe * p / probe_px for p in pixels)
            rows.append({"rule": job.rule, "name": job.experiment, "hours": seconds / 3600,
                         "nfe": nfe, "seconds_per_eval": s_eval, "probe_pixels": probe_px,
                         "detail": f"{images} images x NFE {nfe} x {s_eval:.3g} s/eval at "
                                   f"{probe_px} HR px, scaled by pixels{note}"})
        else:  # timing: priced, not run
            timing = config["evaluation"]["timing"]
            runs = timing["warmup"] + timing["repeats"]
            seconds = runs * s_eval * nfe * pixels[0] / probe_px
            rows.append({"rule": job.rule, "name": job.experiment, "hours": seconds / 3600,
                         "detail": f"{runs} runs of the first image, NFE {nfe}{note}"})
    if probe_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"jobs": rows, "untimed": dict(untimed), "device": _device_name(config),
            "assumptions": {"test images": images,
                            "HR pixels per test image (mean)": round(sum(pixels) / images)
                            if images else 0,
                            "probe steps": steps, "probe LR size": lr_size,
                            "probe max batch": max_batch, "probe max patch": max_patch,
                            "probe max sampling steps": max_sample_steps,
                            "adaptive ECDP solve NFE": adaptive_nfe}}


def _device_name(config: dict) -> str:
    import torch

    from ecdp.timing import cpu_name
    from ecdp.train import resolve_device

    device = resolve_device(config["evaluation"].get("device", "auto"))
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"cpu ({cpu_name()}; {torch.get_num_threads()} threads)"


def format_plan(plan: dict) -> str:
    """Per-job and per-rule device-hours, the total, and the assumptions."""
    lines = [f"Projected device-hours on {plan['device']} (one device per job; training.gpus "
             f"divides a job's wall time, not its device-hours):", ""]
    shown = {}  # super_resolve: one line per experiment, its seeds summed
    for r in plan["jobs"]:
        row = shown.setdefault((r["rule"], r["name"]), {**r, "hours": 0.0, "n": 0})
        row["hours"] += r["hours"]
        row["n"] += 1
    lines += [f"  {r['rule']:<18} {r['name'] + (f' ({n} seeds)' if n > 1 else ''):<28} "
              f"{r['hours']:>9.3g} h   {r['detail']}" for r in shown.values() for n in [r["n"]]]
    lines += ["", f"  {'rule':<18} {'jobs':>5} {'device-hours':>13}"]
    total = 0.0
    for rule in dict.fromkeys(r["rule"] for r in plan["jobs"]):
        hours = sum(r["hours"] for r in plan["jobs"] if r["rule"] == rule)
        count = sum(r["rule"] == rule for r in plan["jobs"])
        total += hours
        lines.append(f"  {rule:<18} {count:>5} {hours:>13.4g}")
    for rule, count in plan["untimed"].items():
        lines.append(f"  {rule:<18} {count:>5} {'not timed':>13}")
    lines += [f"  {'total':<18} {len(plan['jobs']) + sum(plan['untimed'].values()):>5} "
              f"{total:>13.4g}", "", "Assumptions: " + ", ".join(
                  f"{k} {v}" for k, v in plan["assumptions"].items())]
    return "\n".join(lines)
