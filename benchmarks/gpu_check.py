"""The first run on a GPU, in one script of at most 8 minutes: does the paper scale fit and run?

    python benchmarks/gpu_check.py              # on a GPU: the paper-div2k preset's sizes
    python benchmarks/gpu_check.py --tiny       # anywhere: the smoke preset's sizes (CI runs it)

Prints, with random seeded weights (speed and memory do not depend on training):

1. the device, PyTorch and CUDA versions, and whether TF32 is on (matmul and cuDNN);
2. per method, a training step at the preset's batch and patch (RRDBNet L1, ECDP stage 1,
   SRDiff, SR3): seconds per step and the measured peak beside the memory plan's
   (``suite.memory.planned_bytes`` of ``baselines.costs.training_peak``);
3. ECDP stage 2's L_IQ step backpropagated through the adjoint solve (rk4 at 8 NFE: with random
   weights the released dopri5's NFE means nothing);
4. each method's sampler on a full-size DIV2K-like image (1356x2040 HR): seconds per network
   evaluation, the NFE of its released chain, seconds per image extrapolated to it, and the
   measured peak beside the planned one; in LR tiles when the plan says the whole image does
   not fit this GPU;
5. the timing rule's own measurement (``ecdp.timing.time_method``, CUDA-synchronised);
6. a one-process DDP step (NCCL on a GPU, gloo on a CPU) through ``ecdp.train``'s all-reduce;
7. ``ecdp plan --memory-only`` for the preset with this device's memory.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from baselines import costs
from baselines.sr3 import SR3
from baselines.srdiff import SRDiff
from ecdp.features import VGGFeatures
from ecdp.losses import image_quality_loss, l1_loss, score_matching_loss
from suite.memory import TILES, planned_bytes
from ecdp.model import ECDP
from ecdp.nets import RRDBNet
from ecdp.samplers import make_solver
from ecdp.sampling import Sampled, parse_sampling
from ecdp.tiling import Tiled
from ecdp.timing import time_method

ROOT = Path(__file__).resolve().parent.parent
GIB = 2 ** 30


def _config(preset: str) -> dict:
    from snakemake.utils import update_config, validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    update_config(config, yaml.safe_load((ROOT / "workflow" / "presets" / preset).read_text()))
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Peak:
    """Peak device memory of a block (CUDA only; a CPU has no allocator peak)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self.bytes = (torch.cuda.max_memory_allocated(self.device)
                      if self.device.type == "cuda" else None)

    def text(self, planned: int) -> str:
        got = "n/a (CPU)" if self.bytes is None else f"{self.bytes / GIB:.2f} GiB"
        return f"peak {got}, planned {planned / GIB:.2f} GiB"


def _seconds(fn, device, *, warmup: int = 1, repeats: int = 2) -> float:
    runs = []
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        if i >= warmup:
            runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _models(config: dict, device) -> dict:
    nets = costs.networks(config)
    s = config["scale"]
    srdiff = nets["srdiff"][1]
    sr3 = nets["sr3"][1]
    diffusion = ("steps", "beta_start", "beta_end")
    torch.manual_seed(0)
    return {
        "rrdb": RRDBNet(scale=s, **nets["rrdb"][1]),
        "ecdp": ECDP.from_config(nets["ecdp"][1], scale=s, sigma=0.2),
        "srdiff": SRDiff(rrdb=RRDBNet(scale=s, **srdiff["rrdb_net"]), taps=tuple(srdiff["taps"]),
                         dim=srdiff["dim"], mults=tuple(srdiff["mults"]), steps=srdiff["steps"]),
        "sr3": SR3(scale=s, net={k: v for k, v in sr3.items() if k not in diffusion},
                   **{k: sr3[k] for k in diffusion}),
    }


def _loss(name, model, lr, hr, cfg):
    b = hr.shape[0]
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(hr.shape, generator=g).to(hr.device)
    if name == "rrdb":
        return l1_loss(model, lr, hr, reduction=cfg["l1"])[0]
    if name == "ecdp":
        return score_matching_loss(model, lr, hr, torch.rand(b, generator=g).to(hr.device),
                                   eps)[0]
    t = torch.randint(model.schedule.steps, (b,), generator=g).to(hr.device)
    if name == "srdiff":
        return model.loss(lr, hr, t, eps)[0]
    return model.loss(lr, hr, t, eps, torch.rand(b, generator=g).to(hr.device))[0]


RECIPES = {"rrdb": "rrdb", "ecdp": "stage1", "srdiff": "srdiff", "sr3": "sr3"}


def training_steps(config, models, device) -> None:
    nets = costs.networks(config)
    for name, model in models.items():
        cfg = config["training"][RECIPES[name]]
        b, p, s = cfg["batch_size"], cfg["patch_size"], config["scale"]
        model.to(device).train()
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-5)
        hr = torch.rand(b, 3, p, p, device=device)
        lr = torch.nn.functional.avg_pool2d(hr, s)

        def step():
            opt.zero_grad(set_to_none=True)
            _loss(name, model, lr, hr, cfg).backward()
            opt.step()

        with _Peak(device) as peak:
            seconds = _seconds(step, device)
        kind, net = nets[name]
        planned = planned_bytes(costs.training_peak(kind, net, scale=s, batch=b, patch=p,
                                                    ema=cfg.get("ema_decay") is not None))
        print(f"  train {name:<7} batch {b} @ {p} px: {seconds:.3f} s/step, {peak.text(planned)}")
        model.cpu()
        del opt
    if device.type == "cuda":
        torch.cuda.empty_cache()


def stage2_step(config, model, device) -> None:
    cfg = config["training"]["stage2"]
    b, p, s = cfg["batch_size"], cfg["patch_size"], config["scale"]
    model.to(device).train()
    model.encoder.requires_grad_(False)
    vgg = VGGFeatures(None).to(device)
    opt = torch.optim.Adam(model.unet.parameters(), lr=1e-5)
    solver = make_solver({"solver": "rk4", "nfe": 8, "adjoint": True})
    hr = torch.rand(b, 3, p, p, device=device)
    lr = torch.nn.functional.avg_pool2d(hr, s)
    x1 = torch.randn_like(hr)

    def step():
        opt.zero_grad(set_to_none=True)
        image_quality_loss(model, vgg, lr, hr, x1, solver=solver)[0].backward()
        opt.step()

    with _Peak(device) as peak:
        seconds = _seconds(step, device, warmup=1, repeats=1)
    kind, net = costs.networks(config)["ecdp"]
    planned = planned_bytes(costs.training_peak(kind, net, scale=s, batch=b, patch=p,
                                                ema=True, iq=True))
    print(f"  stage 2 L_IQ, adjoint rk4 8 NFE, batch {b} @ {p} px: {seconds:.2f} s/step, "
          f"{peak.text(planned)}")
    model.encoder.requires_grad_(True)
    model.cpu()


def _image(height: int, width: int, scale: int, device) -> torch.Tensor:
    """A DIV2K-like LR image: smooth random structure (low-passed noise) in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, height // (scale * 8), width // (scale * 8), generator=g)
    return torch.nn.functional.interpolate(noise, size=(height // scale, width // scale),
                                           mode="bicubic").clamp(0, 1).to(device)


def samplers(config, models, device, *, height: int, width: int, device_bytes: float) -> None:
    nets = costs.networks(config)
    s = config["scale"]
    lr = _image(height, width, s, device)
    chains = {"rrdb": 1, "ecdp": None, "srdiff": nets["srdiff"][1]["steps"],
              "sr3": nets["sr3"][1]["steps"]}
    for name, model in models.items():
        model.to(device).eval()
        if name == "rrdb":
            method = _RRDB(model)
        elif name == "ecdp":
            method = Sampled(model, parse_sampling({"solver": "euler", "nfe": 2}))
        else:
            method = Sampled(model, parse_sampling({"steps": 2}, family="ddpm"))
        kind, net = nets[name]
        planned = planned_bytes(costs.sampling_peak(kind, net, scale=s, height=height,
                                                    width=width))
        note = ""
        if planned > device_bytes:
            for tile in TILES:
                side = (tile + 32) * s
                tiled = planned_bytes(costs.sampling_peak(kind, net, scale=s, height=side,
                                                          width=side))
                if tiled <= device_bytes:
                    method, planned, note = Tiled(method, tile=tile, overlap=16), tiled, \
                        f", LR tiles of {tile} px (the whole image is planned over this GPU)"
                    break
        g = torch.Generator(device=device).manual_seed(0)
        with _Peak(device) as peak, torch.no_grad():
            seconds = _seconds(lambda: method.super_resolve(lr, generator=g), device,
                               warmup=0, repeats=1)
            _, nfe = method.super_resolve(lr, generator=g)
        per_eval = seconds / max(nfe, 1)
        chain = chains[name]
        whole = (f", {per_eval * chain:.1f} s/image at its {chain} steps" if chain
                 else ", x the released dopri5's NFE per image")
        print(f"  sample {name:<6} {height}x{width} HR: {per_eval:.3f} s per evaluation "
              f"(NFE {nfe} here){whole}, {peak.text(planned)}{note}")
        model.cpu()
        if device.type == "cuda":
            torch.cuda.empty_cache()


class _RRDB:
    name, stochastic = "rrdb", False

    def __init__(self, net):
        self.net, self.scale = net, net.scale

    def super_resolve(self, lr, *, generator=None, image="batch"):
        return self.net(lr).clamp(0, 1), 1


def timing_rule(config, model, device, *, height: int, width: int) -> None:
    lr = _image(height, width, config["scale"], device)
    method = Sampled(model.to(device).eval(), parse_sampling({"solver": "euler", "nfe": 2}))
    result = time_method(method, lr, warmup=1, repeats=2, name="gpu-check")
    print(f"  timing rule (time_method): ECDP euler 2 NFE, LR {result['lr_size']}: "
          f"{result['seconds']:.3f} s/image, peak {result['peak_mib']:.0f} MiB "
          f"({result['peak_kind']}), {result['device_name']}")
    model.cpu()


def ddp_step(device) -> None:
    import torch.distributed as dist

    from ecdp.train import average_gradients

    backend = "nccl" if device.type == "cuda" else "gloo"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1")
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        net = RRDBNet(scale=4, features=8, growth=4, blocks=1).to(device)
        (net(torch.rand(2, 3, 8, 8, device=device)).mean()).backward()
        before = [p.grad.clone() for p in net.parameters()]
        average_gradients(list(net.parameters()), count=2)
        same = all(torch.allclose(a, p.grad) for a, p in zip(before, net.parameters()))
        print(f"  DDP: one-process {backend} all-reduce step, gradients unchanged: {same}")
    finally:
        dist.destroy_process_group()


def plan(preset: str, device_gib: float) -> None:
    with tempfile.TemporaryDirectory() as work:
        proc = subprocess.run([sys.executable, "-m", "suite.cli", "plan", "--memory-only",
                               "--snakefile", str(ROOT / "Snakefile"), "--directory", work,
                               "--configfile", str(ROOT / "workflow" / "presets" / preset),
                               "--device-memory", f"{device_gib:.0f}"],
                              capture_output=True, text=True)
    print(proc.stdout[-6000:] or proc.stderr[-3000:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="the smoke preset's sizes and a 64x96 image: any device, seconds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda" and not args.tiny:
        parser.error("no GPU here: run with --tiny (the smoke sizes) or on a GPU")
    start = time.perf_counter()
    preset = "smoke.yaml" if args.tiny else "paper-div2k.yaml"
    config = _config(preset)
    height, width = (64, 96) if args.tiny else (1356, 2040)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        total = torch.cuda.get_device_properties(device).total_memory
        print(f"device: {name}, {total / GIB:.0f} GiB; torch {torch.__version__}, CUDA "
              f"{torch.version.cuda}; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
              f"cuDNN {torch.backends.cudnn.allow_tf32}")
    else:
        total = 80 * GIB  # nominal: a CPU has no device memory to fit
        print(f"device: cpu ({torch.get_num_threads()} threads); torch {torch.__version__}; "
              f"no CUDA: peaks are not measured, the plan is printed")
    print(f"preset {preset}")
    models = _models(config, device)
    sections = [("training steps", lambda: training_steps(config, models, device)),
                ("stage 2", lambda: stage2_step(config, models["ecdp"], device)),
                ("samplers", lambda: samplers(config, models, device, height=height,
                                              width=width, device_bytes=total)),
                ("timing", lambda: timing_rule(config, models["ecdp"], device,
                                               height=height, width=width)),
                ("ddp", lambda: ddp_step(device)),
                ("plan", lambda: plan(preset, total / GIB))]
    for title, run in sections:
        tick = time.perf_counter()
        print(f"{title}:")
        run()
        print(f"  ({time.perf_counter() - tick:.0f} s)")
    print(f"gpu_check done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
