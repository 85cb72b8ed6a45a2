# What each job asks a scheduler for: threads, GPUs, host memory and wall time, from the
# configured sizes (ecdp.resources explains the arithmetic; baselines.costs counts the FLOPs).
# Runtime settings reach the scripts as resources, never as params: changing them re-runs nothing.
import baselines.costs
import ecdp.plan
import ecdp.resources
from ecdp.data.datasets import split_pixels
from ecdp.data.patches import IN_MEMORY_BYTES
from ecdp.nets.rrdb import rrdbnet_config
from ecdp.samplers import ADAPTIVE

# One thread per training and sampling job: a checkpoint is then the same bits whatever the
# machine's core count (a thread count changes the order of floating-point sums), and on the
# 2-core CPU two one-thread jobs side by side did 1.8x the training steps of one two-thread job
# (benchmarks/job_threads.py). --set-threads RULE=N raises it; every checkpoint, SR manifest and
# timing records the threads it ran with.
JOB_THREADS = 1
TRAIN_PROCESSES = max(1, config["training"]["gpus"])  # torchrun workers per training job
TRAIN_GPUS = 0 if config["training"]["device"] == "cpu" else config["training"]["gpus"]
EVAL_GPUS = 0 if config["evaluation"]["device"] == "cpu" else config["evaluation"]["gpus"]


def every_core(wildcards):
    """Jobs that measure seconds take every core of a local run, so nothing runs beside them;
    a job a cluster runs (no --cores) gets one CPU of its own allocation."""
    local = workflow.local_exec and not workflow.remote_exec
    return (workflow.resource_settings.cores or 1) if local else 1


def _pixels(split):
    options = config["datasets"].get(DATASET, {})
    return split_pixels(DATASET, split, root=f"resources/datasets/{DATASET}", options=options)


TEST_IMAGES, TEST_PIXELS = ecdp.plan.test_pixels(config, ".")
# The training images a training job holds in memory (uint8); a split over IN_MEMORY_BYTES is
# read from disk per sample instead (ecdp.data.patches), holding none.
TRAIN_BYTES = sum(b if b <= IN_MEMORY_BYTES else 0 for b in (
    3 * sum(_pixels(split)) for split in (("train", "val") if DATASET != "folder" else ())))


def _flops(network, spec):
    return baselines.costs.forward_flops(network, spec, scale=SCALE)


def ecdp_network():
    """ECDP's model config (parametrization, sigma and k cost nothing)."""
    return {**config["model"], "parametrization": "hybrid",
            "sde": {**config["model"]["sde"], "sigma": 0.2}, "k": 1.0}


def srdiff_network():
    srdiff = config["baselines"]["srdiff"]
    return {**{k: v for k, v in srdiff.items() if k != "encoder"},
            "rrdb_net": rrdbnet_config("srdiff", srdiff["encoder"])}


def network_of(method):
    """(network kind, config) a method's sampler evaluates; None for bicubic."""
    return {"rrdb": ("rrdbnet", rrdbnet_config("ecdp", RRDBNETS["rrdb"]["size"])),
            "ecdp": ("ecdp", ecdp_network()), "srdiff": ("srdiff", srdiff_network()),
            "sr3": ("sr3", config["baselines"]["sr3"])}.get(method)


def chain_length(method, sampling):
    """Network evaluations of one sample (an adaptive ECDP solve: ASSUMED_ADAPTIVE_NFE)."""
    if method == "ecdp":
        if sampling.get("solver", "dopri5") in ADAPTIVE:
            return ecdp.resources.ASSUMED_ADAPTIVE_NFE
        return sampling.get("nfe") or sampling.get("steps")
    if method in ("srdiff", "sr3"):
        return (sampling or {}).get("steps") or config["baselines"][method]["steps"]
    return 1


def _request(flops, forward, gpus, processes=1, resident=0.0):
    def resources(wildcards, threads, attempt):
        return ecdp.resources.request(flops=flops(wildcards), forward_flops=forward(wildcards),
                                      gpus=gpus, threads=threads, processes=processes,
                                      resident_bytes=resident, attempt=attempt)
    return resources


def training_resources(network, recipe, chain=None):
    """Resources of a training rule: ``network(w)`` -> (kind, config), ``recipe(w)`` -> the
    training recipe, ``chain(w)`` -> L_IQ's sampling chain (None without L_IQ)."""
    def flops(w):
        encoder, denoiser = _flops(*network(w))
        cfg = recipe(w)
        return ecdp.resources.training_flops(encoder, denoiser, steps=cfg["steps"],
                                             batch_size=cfg["batch_size"],
                                             patch_size=cfg["patch_size"],
                                             chain=chain(w) if chain else None)

    def forward(w):
        encoder, denoiser = _flops(*network(w))
        cfg = recipe(w)
        return cfg["batch_size"] * cfg["patch_size"] ** 2 * (encoder + denoiser)

    request = _request(flops, forward, TRAIN_GPUS, TRAIN_PROCESSES, TRAIN_BYTES)
    return {"gpu": TRAIN_GPUS, "processes": TRAIN_PROCESSES, "device": config["training"]["device"],
            "mem_mb": lambda w, threads, attempt: request(w, threads, attempt)["mem_mb"],
            "runtime": lambda w, threads, attempt: request(w, threads, attempt)["runtime"]}


def sampling_resources(runs=1, images=None):
    """Resources of a sampling rule (every test image, or the first ``images``, ``runs`` times)."""
    def cost(w):
        method = EXPERIMENTS[w.experiment]["method"]
        network = network_of(method)
        if network is None:
            return 0.0, 0.0
        encoder, denoiser = _flops(*network)
        pixels = TEST_PIXELS[:images] if images else TEST_PIXELS
        nfe = chain_length(method, sampling_of(w.experiment))
        return (ecdp.resources.sampling_flops(encoder, denoiser, pixels=pixels, nfe=nfe,
                                              runs=runs),
                max(pixels, default=0) * (encoder + denoiser))

    request = _request(lambda w: cost(w)[0], lambda w: cost(w)[1], EVAL_GPUS)
    return {"gpu": EVAL_GPUS, "device": config["evaluation"]["device"],
            "mem_mb": lambda w, threads, attempt: request(w, threads, attempt)["mem_mb"],
            "runtime": lambda w, threads, attempt: request(w, threads, attempt)["runtime"]}


def iq_chain(experiment):
    """Network evaluations of the sampling chain an L_IQ step backpropagates through."""
    method = EXPERIMENTS[experiment]["method"]
    if method != "ecdp":
        return (config["training"]["plusplus"]["sample_steps"]
                or config["baselines"][method]["steps"])
    stage2 = config["training"]["stage2"]
    if iq_of(experiment) == "sde":
        return stage2["sde_steps"]
    return chain_length("ecdp", stage2["sample"] or {})


# Seconds-long bookkeeping runs on the submitting host, never queued (each SLURM job costs
# 20-30 s of start-up); so do the downloads, since compute nodes often have no network.
localrules:
    all,
    fetch_weights,
    prepare_dataset,
    degrade,
    aggregate,
    aggregate_timing,
    table,
    crop_grid,
    figure8,
    quality_vs_cost,
    sampling_report,
    sampling_study,


# Metrics and Figure 5 on a cluster: a few GB and well under an hour (LPIPS on full-size images).
LIGHT = {"mem_mb": lambda w, attempt: 4000 * attempt, "runtime": lambda w, attempt: 60 * attempt}
