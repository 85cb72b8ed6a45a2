# What each job asks a scheduler for: threads, GPUs, host memory and wall time, from the
# configured sizes (suite.resources explains the arithmetic; baselines.costs counts the FLOPs).
# Runtime settings reach the scripts as resources, never as params: changing them re-runs nothing.
import baselines.costs
import suite.plan
import suite.resources
from ecdp.data.datasets import split_pixels
from ecdp.data.patches import IN_MEMORY_BYTES

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


TEST_IMAGES, TEST_PIXELS = suite.plan.test_pixels(config, ".")
# The training images a training job holds in memory (uint8); a split over IN_MEMORY_BYTES is
# read from disk per sample instead (ecdp.data.patches), holding none.
TRAIN_BYTES = sum(b if b <= IN_MEMORY_BYTES else 0 for b in (
    3 * sum(_pixels(split)) for split in (("train", "val") if DATASET != "folder" else ())))


NETWORKS = baselines.costs.networks(config)  # model or method -> (network kind, its config)


def _flops(network):
    return baselines.costs.forward_flops(*NETWORKS[network], scale=SCALE)


def _request(flops, forward, gpus, processes=1, resident=0.0):
    def resources(wildcards, threads, attempt):
        return suite.resources.request(flops=flops(wildcards), forward_flops=forward(wildcards),
                                       gpus=gpus, threads=threads, processes=processes,
                                       resident_bytes=resident, attempt=attempt)
    return resources


def _split(request):
    return {"mem_mb": lambda w, threads, attempt: request(w, threads, attempt)["mem_mb"],
            "runtime": lambda w, threads, attempt: request(w, threads, attempt)["runtime"]}


def training_resources():
    """Resources of a training job, from its model (RUN.models[w.model]), i.e. the network, the
    recipe and, for an L_IQ stage, the chain (an adaptive solve at ASSUMED_ADAPTIVE_NFE)."""
    def cost(w):
        model = RUN.models[w.model]
        encoder, denoiser = _flops(model.network)
        cfg = model.params["cfg"]
        chain = model.chain
        iq = model.rule in ("train_ecdp_stage2", "finetune_iq")
        if iq and chain is None:
            chain = suite.resources.ASSUMED_ADAPTIVE_NFE
        pixels = cfg["batch_size"] * cfg["patch_size"] ** 2
        return (suite.resources.training_flops(encoder, denoiser, steps=cfg["steps"],
                                               batch_size=cfg["batch_size"],
                                               patch_size=cfg["patch_size"], chain=chain),
                pixels * (encoder + denoiser))

    request = _request(lambda w: cost(w)[0], lambda w: cost(w)[1], TRAIN_GPUS,
                       TRAIN_PROCESSES, TRAIN_BYTES)
    return {"gpu": TRAIN_GPUS, "processes": TRAIN_PROCESSES,
            "device": config["training"]["device"], **_split(request)}


def sampling_resources(runs=1, images=None):
    """Resources of a sampling rule (every test image, or the first ``images``, ``runs``
    times) at the experiment's NFE (an adaptive solve at ASSUMED_ADAPTIVE_NFE)."""
    def cost(w):
        experiment = EXPERIMENTS[w.experiment]
        if experiment.method not in NETWORKS:
            return 0.0, 0.0
        encoder, denoiser = _flops(experiment.method)
        pixels = TEST_PIXELS[:images] if images else TEST_PIXELS
        sampling = experiment.sampling
        nfe = 1
        if sampling is not None:
            nfe = (sampling.nfe or (suite.resources.ASSUMED_ADAPTIVE_NFE if sampling.adaptive
                                    else NETWORKS[experiment.method][1]["steps"]))
        return (suite.resources.sampling_flops(encoder, denoiser, pixels=pixels, nfe=nfe,
                                               runs=runs),
                max(pixels, default=0) * (encoder + denoiser))

    request = _request(lambda w: cost(w)[0], lambda w: cost(w)[1], EVAL_GPUS)
    return {"gpu": EVAL_GPUS, "device": config["evaluation"]["device"], **_split(request)}


# Metrics and Figure 5 on a cluster: a few GB and well under an hour (LPIPS on full-size images).
LIGHT = {"mem_mb": lambda w, attempt: 4000 * attempt, "runtime": lambda w, attempt: 60 * attempt}
