"""Why the workflow's training and sampling jobs take one thread each (``JOB_THREADS`` in
workflow/rules/resources.smk), side by side: throughput of one job on every core against jobs of one thread each,
side by side, on the default run's ECDP network.

Each worker is a fresh process (as a Snakemake job is) that builds the ECDP network of
config.yaml and, after a warm-up, times either training steps (batch 4 at the stage-1 patch) or
network evaluations at the evaluation crop (one image, as the sampler solves one image at a time).

    python benchmarks/job_threads.py [--configfile config.yaml] [--steps 20] [--evals 40]

Prints steps (evaluations) per second for one job with all cores and for N one-thread jobs at
once (N = cores), and their ratio. No assertion: this machine is noisy; read the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _worker(config: str, what: str, threads: int, n: int) -> None:
    import torch
    import yaml

    from ecdp.model import ECDP

    torch.set_num_threads(threads)
    cfg = yaml.safe_load(open(config))
    model = ECDP.from_config(dict(cfg["model"], parametrization="hybrid"), scale=cfg["scale"],
                             sigma=float(cfg["model"]["sde"]["sigma"]))
    scale = cfg["scale"]
    gen = torch.Generator().manual_seed(0)
    if what == "train":
        patch = cfg["training"]["stage1"]["patch_size"]
        batch = cfg["training"]["stage1"]["batch_size"]
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        lr = torch.rand(batch, 3, patch // scale, patch // scale, generator=gen)

        def step():
            z = torch.randn(batch, 3, patch, patch, generator=gen)
            t = torch.rand(batch, generator=gen)
            _, feats = model.condition(lr)
            loss = model.eps_hat(z, t, feats).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        crop = cfg["evaluation"]["crop"] or 128
        lr = torch.rand(1, 3, crop // scale, crop // scale, generator=gen)
        with torch.no_grad():
            _, feats = model.condition(lr)

        def step():
            with torch.no_grad():
                model.eps_hat(torch.randn(1, 3, crop, crop, generator=gen),
                              torch.rand(1, generator=gen), feats)
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(n):
        step()
    print(json.dumps({"per_s": n / (time.perf_counter() - start)}))


def _run(config: str, what: str, threads: int, n: int, jobs: int) -> float:
    """Total work per second of ``jobs`` workers of ``threads`` threads running at once."""
    cmd = [sys.executable, __file__, "--worker", what, "--threads", str(threads), "--n", str(n),
           "--configfile", config]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    rates = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed: {' '.join(cmd)}")
        rates.append(json.loads(out.strip().splitlines()[-1])["per_s"])
    return sum(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default="config.yaml")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--evals", type=int, default=40)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--worker", choices=["train", "eval"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.configfile, args.worker, args.threads, args.n)
        return
    cores = args.cores
    print(f"{cores} cores; ECDP network of {args.configfile}")
    for what, n, unit in (("train", args.steps, "training steps"), ("eval", args.evals, "evaluations")):
        one = _run(args.configfile, what, cores, n, 1)
        side = _run(args.configfile, what, 1, n, cores)
        print(f"{unit}/s: one job x {cores} threads {one:.2f}; {cores} jobs x 1 thread "
              f"{side:.2f}; ratio {side / one:.2f}")


if __name__ == "__main__":
    main()
