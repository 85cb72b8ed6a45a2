"""``ecdp plan``: what a configured run will cost on this device, before it is launched.

The jobs are Snakemake's own: the DAG of the configured targets (``--configfile``, ``--config``),
with only the jobs that still have to run. Each training job and each sampling job is probed by
running its rule's own script for a few steps (or one image) in a scratch folder, on the
embedded sample photos standing in for the dataset, and the measured seconds are scaled to the
configured run:

    training:  seconds/step (median, first step dropped) x steps x (batch / probed batch)
               x (patch / probed patch)^2
    sampling:  seconds/evaluation x NFE x (test HR pixels / probed HR pixels), per image

Probes share a key (rule and params, less the seed and k, which cost nothing) and run once.
Every scaling is printed beside its result, so a reader can see what was measured and what was
assumed. Rules that neither train nor sample (data, metrics, tables, figures) are listed, not
timed: they take seconds to minutes.
"""
from __future__ import annotations

import json
import math
import os
import runpy
import shutil
import statistics
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from .data.datasets import split_pixels
from .resources import ASSUMED_ADAPTIVE_NFE

__all__ = ["dag_jobs", "probe_plan", "format_plan", "test_pixels"]

TRAINING_RULES = ("train_rrdb", "train_ecdp_stage1", "train_srdiff", "train_sr3",
                  "train_ecdp_stage2", "finetune_iq")


def dag_jobs(*, snakefile, workdir, configfiles=(), config=None, targets=("all",), cores=None):
    """(the jobs still to run in execution order, the workflow's config), from Snakemake."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings,
                                          Quietness, ResourceSettings)

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=cores or os.cpu_count()),
            config_settings=ConfigSettings(configfiles=[Path(f).resolve() for f in configfiles],
                                           config=config or {}),
            snakefile=Path(snakefile).resolve(), workdir=Path(workdir).resolve())
        dag_api = workflow_api.dag(DAGSettings(targets=set(targets)))
        dag_api.execute_workflow(executor="dryrun")
        workflow = dag_api.workflow_api._workflow
        needed = set(workflow.dag.needrun_jobs(exclude_finished=False))
        ordered = [j for level in workflow.dag.toposorted() for j in level if j in needed]
        return [j for j in ordered if j.rule.name != "all"], dict(workflow.config)


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


def _run_script(job, params: dict, *, gpu: int = 1) -> None:
    """Run ``job``'s rule script as Snakemake would, with ``params`` instead of its own."""
    from snakemake.iocontainers import Namedlist

    resources = {k: v for k, v in job.resources.items() if not k.startswith("_")}
    fake = SimpleNamespace(input=job.input, output=job.output, log=job.log,
                           wildcards=job.wildcards, threads=job.threads,
                           params=Namedlist(fromdict=params),
                           resources=Namedlist(fromdict={**resources, "gpu": gpu}))
    for path in list(job.output) + list(job.log):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    runpy.run_path(str(Path(job.rule.basedir) / job.rule.script),
                   init_globals={"snakemake": fake}, run_name="__plan__")


def _chain_length(checkpoint) -> int:
    """Steps of a trained SRDiff / SR3 (a "++" model keeps its base's)."""
    from .checkpoint import load_checkpoint

    meta = load_checkpoint(checkpoint)["meta"]
    return meta.get("diffusion", meta.get("net", {}))["steps"]


def _key(job) -> str:
    params = {k: v for k, v in job.params.items() if k not in ("seed", "k")}
    return job.rule.name + json.dumps(params, sort_keys=True, default=str)


def probe_plan(jobs, config: dict, *, workdir, probe_dir=None, steps: int = 3,
               max_batch: int | None = None, max_patch: int | None = None, lr_size: int = 16,
               max_sample_steps: int = 10, adaptive_nfe: int = ASSUMED_ADAPTIVE_NFE,
               log=print) -> dict:
    """Probe ``jobs`` (from ``dag_jobs``) and project each onto the configured run. Returns
    {"jobs": [{rule, name, count, hours, detail}], "untimed": {rule: count}, "assumptions"}."""
    from .checkpoint import load_checkpoint
    from .data.datasets import prepare_dataset

    scratch = Path(probe_dir or tempfile.mkdtemp(prefix="ecdp-plan-"))
    images, pixels = test_pixels(config, workdir)
    rows, untimed, probed, per_image = [], Counter(), {}, {}
    with _inside(scratch):  # timing is priced from its experiment's super_resolve probe
        for job in sorted(jobs, key=lambda j: j.rule.name == "timing"):
            rule, params = job.rule.name, dict(job.params.items())
            name = "/".join(str(v) for k, v in job.wildcards.items() if k not in ("dataset", "scale"))
            if rule == "prepare_dataset":  # the sample photos stand in for the dataset
                prepare_dataset("sample-photos", Path(job.output[0]).parent)
            elif rule == "fetch_weights":  # never downloads; L_IQ probes run on random VGG19
                _run_script(job, {**params, "allow_download": False})
            elif rule == "degrade":
                _run_script(job, {**params, "official_lr": False, "limit": 1,
                                  "crop": lr_size * int(job.wildcards.scale)})
            elif rule in TRAINING_RULES:
                cfg = params["cfg"]
                small = {**cfg, "steps": steps, "save_every": steps, "validate_every": None,
                         "batch_size": min(cfg["batch_size"], max_batch or cfg["batch_size"]),
                         "patch_size": min(cfg["patch_size"], max_patch or cfg["patch_size"])}
                if "allow_random_vgg" in cfg:
                    small["allow_random_vgg"] = True
                chain = _sampled_steps(job, cfg, adaptive_nfe)  # L_IQ's sampling chain
                if chain and rule == "train_ecdp_stage2" and cfg.get("sampler") == "ode":
                    small["sample"] = {"solver": "euler", "nfe": min(chain, max_sample_steps)}
                elif chain:
                    key_steps = next(k for k in ("sample_steps", "sde_steps") if k in cfg)
                    small[key_steps] = min(chain, max_sample_steps)
                key = _key(job)
                if key not in probed:
                    log(f"probing {rule} {name}: {steps} steps at batch {small['batch_size']} @ "
                        f"{small['patch_size']} px")
                    _run_script(job, {**params, "cfg": small})
                    history = load_checkpoint(job.output[0])["meta"]["history"]["train"]
                    seconds = [h["seconds"] for h in history][1:] or [history[0]["seconds"]]
                    probed[key] = (statistics.median(seconds), job.output[0])
                else:  # same cost: the probed checkpoint serves the jobs downstream
                    Path(job.output[0]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(probed[key][1], job.output[0])
                per_step, _ = probed[key]
                factor = (cfg["batch_size"] / small["batch_size"]
                          * (cfg["patch_size"] / small["patch_size"]) ** 2
                          * (chain / min(chain, max_sample_steps) if chain else 1))
                hours = per_step * factor * cfg["steps"] / 3600
                rows.append({"rule": rule, "name": name, "hours": hours, "steps": cfg["steps"],
                             "seconds_per_step": per_step, "factor": factor,
                             "detail": f"{cfg['steps']} steps x {per_step:.3g} s/step at batch "
                                       f"{small['batch_size']} @ {small['patch_size']} px"
                                       + (f" and {min(chain, max_sample_steps)} sampling steps"
                                          if chain else "")
                                       + f", x {factor:.3g} for batch {cfg['batch_size']} @ "
                                       f"{cfg['patch_size']} px"
                                       + (f" and {chain} steps" if chain else "")})
            elif rule == "super_resolve":
                experiment = job.wildcards.experiment
                if experiment not in per_image:
                    per_image[experiment] = _probe_sample(job, params, max_sample_steps,
                                                          adaptive_nfe, log)
                s_eval, nfe, probe_px, note = per_image[experiment]
                seconds = sum(s_eval * nfe * p / probe_px for p in pixels)
                rows.append({"rule": rule, "name": experiment, "hours": seconds / 3600,
                             "nfe": nfe,
                             "seconds_per_eval": s_eval, "probe_pixels": probe_px,
                             "detail": f"{images} images x NFE {nfe} x {s_eval:.3g} s/eval at "
                                       f"{probe_px} HR px, scaled by pixels{note}"})
            elif rule == "timing":  # priced, not run
                s_eval, nfe, probe_px, note = per_image[job.wildcards.experiment]
                runs = params["timing"]["warmup"] + params["timing"]["repeats"]
                seconds = runs * s_eval * nfe * pixels[0] / probe_px
                rows.append({"rule": rule, "name": name, "hours": seconds / 3600,
                             "detail": f"{runs} runs of the first image, NFE {nfe}{note}"})
            if rule not in TRAINING_RULES + ("super_resolve", "timing"):
                untimed[rule] += 1  # data, weights, metrics, tables, figures
    if probe_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)
    device = _device_name(config)
    return {"jobs": rows, "untimed": dict(untimed), "device": device,
            "assumptions": {"test images": images,
                            "HR pixels per test image (mean)": round(sum(pixels) / images),
                            "probe steps": steps, "probe LR size": lr_size,
                            "probe max batch": max_batch, "probe max patch": max_patch,
                            "probe max sampling steps": max_sample_steps,
                            "adaptive ECDP solve NFE": adaptive_nfe}}


def _sampled_steps(job, cfg: dict, adaptive_nfe: int) -> int | None:
    """Network evaluations of the sampling chain an L_IQ step backpropagates through: the "++"
    ancestral samplers' steps, stage 2's SDE steps or its ODE solve's NFE (fixed-step as
    configured, adaptive at ``adaptive_nfe``); None for the trainings without L_IQ."""
    from .samplers import FIXED_STEP_EVALS

    if job.rule.name == "finetune_iq":
        return cfg.get("sample_steps") or _chain_length(job.input.base)
    if job.rule.name == "train_ecdp_stage2":
        if cfg.get("sampler") == "sde":
            return cfg["sde_steps"]
        spec = cfg.get("sample") or {}
        if spec.get("solver", "dopri5") in FIXED_STEP_EVALS or "nfe" in spec:
            return spec["nfe"]
        return adaptive_nfe
    return None


def _probe_sample(job, params, max_sample_steps: int, adaptive_nfe: int, log):
    """(seconds per network evaluation, the configured NFE, probed HR pixels, a note)."""
    from PIL import Image

    from .samplers import ADAPTIVE, EVALUATION_KEYS

    sampling, note = params.get("sampling"), ""
    nfe = None
    adaptive = bool(sampling) and sampling.get("solver") in ADAPTIVE
    if adaptive:  # probe weights make an adaptive solve's NFE meaningless: time fixed steps
        sampling = {**{k: v for k, v in sampling.items() if k in EVALUATION_KEYS},
                    "solver": "euler", "nfe": max_sample_steps}
        note = f" (adaptive solve priced at NFE {adaptive_nfe}, --adaptive-nfe)"
    if sampling and "steps" in sampling:  # SRDiff / SR3: NFE = their steps, probed at fewer
        nfe = sampling["steps"] or _chain_length(job.input.model)
        sampling = {**sampling, "steps": min(nfe, max_sample_steps)}
    log(f"probing super_resolve {job.wildcards.experiment}: one image")
    _run_script(job, {**params, "sampling": sampling})
    image = json.loads(Path(job.output[0]).read_text())["images"][0]
    probe_nfe = image["nfe"] or 1
    s_eval = image["seconds"] / probe_nfe
    probe_px = math.prod(Image.open(Path(job.output[0]).with_suffix("") / image["path"]).size)
    if nfe is None:  # ECDP: fixed-step NFE as configured; an adaptive solve as assumed
        nfe = adaptive_nfe if adaptive else probe_nfe
    return s_eval, nfe, probe_px, note


def _device_name(config: dict) -> str:
    import torch

    from .train import resolve_device

    device = resolve_device(config["evaluation"].get("device", "auto"))
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    from .timing import cpu_name

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
