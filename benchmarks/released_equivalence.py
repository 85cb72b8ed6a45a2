"""Side by side with the authors' released code: ECDP, SRDiff and SR3, number for number.

Takes your own checkouts of the three releases (never vendored; ECDP's has no licence: read and
run, never copy) and, per method, puts the same weights in the release's network and in ours,
feeds both the same inputs, time and noise, and prints the largest difference of

- the network output (ECDP also its RRDB encoder and its RRDBNet with the L1-sum loss),
- the training loss at the same t and noise,
- a sampler trajectory: ECDP's dopri5 probability-flow solve (and its NFE), SRDiff's 100-step
  ancestral chain, SR3's 20-step chain,

with a PASS / FAIL line each. ECDP's weights are seeded in our network (``seeded_weights``) and
copied into the release's; SRDiff's and SR3's are the release's own random initialisation, saved
by the release's own code (``save_checkpoint``, ``DDPM.save_network``) and read back through
``ecdp import-checkpoint``'s importers.

    git clone https://github.com/Yuan-Yutao/ECDP /tmp/ecdp            # commit 1696fa1
    git clone https://github.com/LeiaLi/SRDiff /tmp/srdiff            # commit 5628508
    git clone https://github.com/Janspiry/Image-Super-Resolution-via-Iterative-Refinement /tmp/sr3
    pip install einops                                                # SRDiff's code needs it
    python benchmarks/released_equivalence.py --ecdp /tmp/ecdp --srdiff /tmp/srdiff --sr3 /tmp/sr3

``--write-golden tests/data/released`` also stores what the releases computed (and the two tiny
checkpoints their code saved), so that ``tests/test_released.py`` checks us against them in CI,
where the releases are not available.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import math
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

from ecdp.degradation import degrade, upsample
from baselines.importers import import_sr3, import_srdiff
from ecdp.importers import ecdp_rrdbnet_state, ecdp_trunk_state, ecdp_unet_state
from ecdp.losses import l1_loss, score_matching_loss
from ecdp.model import ECDP
from ecdp.nets import RRDBNet

RELEASES = {"ecdp": "Yuan-Yutao/ECDP 1696fa1", "srdiff": "LeiaLi/SRDiff 5628508",
            "sr3": "Janspiry/Image-Super-Resolution-via-Iterative-Refinement 01d27a7"}
# ECDP's released U-Net is hard-coded at the paper size (42.6M with the 23-block encoder);
# the encoder here is tiny. sigma, k, time scales and the solver are the release's.
ECDP_MODEL = {"encoder": {"features": 16, "growth": 8, "blocks": 4, "taps": [1, 3]},
              "unet": {"channels": [64, 128, 256, 256], "blocks": [2, 2, 2, 2],
                       "time_channels": 128, "time_scale": 300.0, "dropout": 0.0},
              "sde": {"beta_min": 0.1, "beta_max": 20.0, "sigma": 0.2},
              "parametrization": "hybrid", "k": 1.0}
SRDIFF = {"features": 8, "blocks": 8, "growth": 4, "dim": 8, "mults": (1, 2), "steps": 100}
SR3 = {"inner": 16, "mults": (1, 2), "res_blocks": 1, "attn_res": (16,), "norm_groups": 8,
       "dropout": 0.2, "steps": 20, "beta_start": 1e-2, "beta_end": 0.5}
SCALE, HR = 4, 32
TOL = {"net": 1e-5, "loss": 1e-5, "ecdp_sample": 1e-4, "nfe": 2, "chain": 1e-5}


# ---------------------------------------------------------------------- shared with the tests

def inputs() -> dict:
    """Two 32x32 HR crops of scikit-image's astronaut, their MATLAB-bicubic LR (8x8), bicubic
    upsampling (mu), and fixed noise: everything both sides are fed."""
    from skimage import data

    image = data.astronaut()
    hrs = [image[100:100 + HR, 200:200 + HR], image[300:300 + HR, 120:120 + HR]]
    hr = torch.stack([torch.from_numpy(h.copy()).permute(2, 0, 1) for h in hrs]).float() / 255
    lr = torch.stack([torch.from_numpy(degrade(h, SCALE)).permute(2, 0, 1) for h in hrs]).float()
    lr = lr / 255
    g = torch.Generator().manual_seed(20240101)
    return {"hr": hr, "lr": lr, "mu": upsample(lr, SCALE),
            "z_t": torch.randn(hr.shape, generator=g), "z1": torch.randn(hr[:1].shape, generator=g)}


def seeded_weights(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter drawn from its own generator (seeded from its name): weights
    N(0, 1/fan_in), biases N(0, 0.01), norm gains 1 + N(0, 0.01). Independent of any init code,
    so the same weights come back in CI without the release."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
            g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
            x = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if p.dim() >= 2:
                x /= math.sqrt(p[0].numel())
            elif "norm" in name and name.endswith("weight"):
                x = 1 + 0.1 * x
            else:
                x *= 0.1
            p.copy_(x)
    return module


def our_ecdp() -> ECDP:
    model = ECDP.from_config(ECDP_MODEL, scale=SCALE, sigma=ECDP_MODEL["sde"]["sigma"])
    return seeded_weights(model, 0).eval()


def our_ecdp_rrdbnet() -> RRDBNet:
    enc = ECDP_MODEL["encoder"]
    net = RRDBNet(scale=SCALE, features=enc["features"], growth=enc["growth"],
                  blocks=enc["blocks"], trunk_conv=False)
    return seeded_weights(net, 1).eval()


def ecdp_outputs(model: ECDP, rrdbnet: RRDBNet, x: dict, noise: dict) -> dict:
    """What the harness compares for ECDP; ``noise``: the loss's tau (B,) and eps."""
    with torch.no_grad():
        feats = model.encoder(x["lr"])
        tau = torch.tensor([37.5, 211.0])
        net = model.unet(x["z_t"], tau / 300, feats)
        loss, _ = score_matching_loss(model, x["lr"], x["hr"], noise["tau"] / 300, noise["eps"])
        sample, nfe = model.sample(x["lr"][:1], x1=x["mu"][:1] + model.sde.sigma * x["z1"])
        rrdb_out = rrdbnet(x["lr"])
        rrdb_loss, _ = l1_loss(rrdbnet, x["lr"], x["hr"], reduction="sum")
    return {"feats": feats, "net": net, "loss": loss, "sample": sample, "nfe": nfe,
            "rrdb_out": rrdb_out, "rrdb_loss": rrdb_loss}


def ecdp_loss_noise(seed: int = 1234, batch: int = 2) -> dict:
    """The release draws tau ~ U[0, 300) and then eps from the global generator (in that order)."""
    torch.manual_seed(seed)
    tau = torch.rand(batch) * 300
    eps = torch.randn(batch, 3, HR, HR)
    return {"tau": tau, "eps": eps}


def srdiff_outputs(model, x: dict, noise: dict) -> dict:
    with torch.no_grad():
        feats = model.encoder(x["lr"])
        t = torch.tensor([3, 77])
        net = model.unet(x["z_t"], t, feats)
        loss, _ = model.loss(x["lr"], x["hr"], noise["t"], noise["eps"])
        sample, nfe = model.sample(x["lr"][:1], generator=torch.Generator().manual_seed(7))
    return {"net": net, "loss": loss, "sample": sample, "nfe": nfe}


def srdiff_loss_noise(seed: int = 5, batch: int = 2) -> dict:
    torch.manual_seed(seed)
    t = torch.randint(0, SRDIFF["steps"], (batch,))
    eps = torch.randn(batch, 3, HR, HR)
    return {"t": t, "eps": eps}


def sr3_outputs(model, x: dict, noise: dict) -> dict:
    with torch.no_grad():
        level = torch.tensor([0.3, 0.9])
        up = 2 * x["mu"] - 1
        net = model.unet(torch.cat([up, x["z_t"]], dim=1), level, None)
        loss, _ = model.loss(x["lr"], x["hr"], noise["t"], noise["eps"], noise["u"])
        sample, nfe = model.sample(x["lr"][:1], generator=torch.Generator().manual_seed(9))
    return {"net": net, "loss": loss, "sample": sample, "nfe": nfe}


def sr3_loss_noise(model, seed: int = 3, batch: int = 2) -> dict:
    """The release draws one step t ~ U{1..T} (numpy), levels ~ U(sqrt ab_{t-2}, sqrt ab_{t-1})
    per sample (numpy), then eps (torch): here as our (step, u, eps)."""
    rng = np.random.RandomState(seed)
    sqrt_prev = np.sqrt(np.append(1.0, model.schedule.alpha_bar.numpy()))
    t = rng.randint(1, model.schedule.steps + 1)
    level = rng.uniform(sqrt_prev[t - 1], sqrt_prev[t], size=batch)
    torch.manual_seed(seed)
    eps = torch.randn(batch, 3, HR, HR)
    lo, hi = sqrt_prev[t], sqrt_prev[t - 1]
    u = torch.tensor((level - lo) / (hi - lo))
    return {"t": torch.full((batch,), t - 1), "u": u, "eps": eps, "level": torch.tensor(level),
            "step": t, "seed": seed}


# ---------------------------------------------------------------------- running the releases

@contextlib.contextmanager
def release_on_path(root: Path, packages: tuple[str, ...]):
    """Import a release's top-level packages from its checkout, and forget them afterwards."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise SystemExit(f"release checkout {root} does not exist")
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in list(sys.modules):
            if name.split(".")[0] in packages:
                del sys.modules[name]


def _inverse(mapping, state: dict) -> dict:
    """our name -> release name, from a renaming function applied to the release's own keys."""
    return mapping({k: k for k in state})


def _copy_into_release(module: torch.nn.Module, ours: dict, mapping) -> None:
    names = _inverse(mapping, module.state_dict())
    module.load_state_dict({release: ours[our] for our, release in names.items()}, strict=True)


class _Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *args):
        self.calls += 1
        return self.net(*args)


def release_ecdp(root: Path, x: dict) -> dict:
    with release_on_path(root, ("lib",)):
        import torchvision.transforms.functional as FV

        import lib.model.unet as release_unet
        from lib.model.diffusion import Diffusion
        from lib.model.rrdb import RRDBEncoder
        from lib.model.rrdbnet import RRDBNet as ReleaseRRDBNet
        from lib.options import dict_to_object

        # The authors' 2023 torchvision did not antialias tensor resizes; >= 0.17 does by default.
        release_unet.FV = types.SimpleNamespace(
            resize=functools.partial(FV.resize, antialias=False),
            InterpolationMode=FV.InterpolationMode)
        enc = ECDP_MODEL["encoder"]
        options = dict_to_object({"model": {
            "input_channels": 3, "sr_factor": SCALE, "rrdb_num_blocks": enc["blocks"],
            "rrdb_block_selection": enc["taps"], "rrdb_network_features": enc["features"],
            "rrdb_intermediate_features": enc["growth"],
            "rrdb_channels": enc["features"] * len(enc["taps"])}})
        ours = our_ecdp()
        encoder = RRDBEncoder(3, options).eval()
        _copy_into_release(encoder, {k[len("encoder.trunk."):]: v for k, v in
                                     ours.state_dict().items() if k.startswith("encoder.trunk.")},
                           ecdp_trunk_state)
        unet = release_unet.UNet(3, 128, options.model.rrdb_channels, out_channels=6)
        _copy_into_release(unet, {k[len("unet."):]: v for k, v in ours.state_dict().items()
                                  if k.startswith("unet.")}, ecdp_unet_state)
        counting = _Counting(unet)
        diffusion = Diffusion(counting)
        options.model.rrdb_channels = enc["features"]
        options.model.rrdb_block_selection = [enc["blocks"] - 1]
        rrdbnet = ReleaseRRDBNet(options, rrdb_channels=enc["features"]).eval()
        _copy_into_release(rrdbnet, our_ecdp_rrdbnet().state_dict(), ecdp_rrdbnet_state)
        sigma = ECDP_MODEL["sde"]["sigma"]
        with torch.no_grad():
            feats = encoder(x["lr"])
            net = unet(x["z_t"], torch.tensor([37.5, 211.0]), feats)
            diffusion.train()
            torch.manual_seed(1234)  # the release draws the same tau and eps from it
            loss = diffusion.normalize((x["hr"] - x["mu"]) / sigma,
                                       cond=(feats, x["mu"], 1 / sigma)).mean()
            diffusion.eval()
            diffusion.use_ode = True
            counting.calls = 0
            z0 = diffusion.generate(x["z1"].clone(), cond=(feats[:1], x["mu"][:1], 1 / sigma))
            nfe = counting.calls
            rrdb_out = rrdbnet(x["hr"], cond=x["lr"], mode="generate")
            rrdb_loss = rrdbnet(x["hr"], cond=x["lr"], mode="loss").mean()
        return {"feats": feats, "net": net, "loss": loss, "sample": x["mu"][:1] + sigma * z0,
                "nfe": nfe, "rrdb_out": rrdb_out, "rrdb_loss": rrdb_loss}


def _srdiff_hparams() -> dict:
    return {"sr_scale": SCALE, "rrdb_num_block": SRDIFF["blocks"], "use_attn": False,
            "res": True, "up_input": False, "use_wn": False, "weight_init": False,
            "beta_schedule": "cosine", "beta_s": 0.008, "beta_end": 0.02, "use_rrdb": True,
            "fix_rrdb": True, "aux_l1_loss": False, "aux_ssim_loss": False,
            "aux_percep_loss": False, "res_rescale": 2.0, "clip_input": True}


def release_srdiff(root: Path, x: dict, workdir: Path) -> tuple[Path, dict]:
    """SRDiff built, initialised, saved (``utils.utils.save_checkpoint``) and run by the release."""
    with release_on_path(root, ("models", "utils", "tasks")):
        from utils.hparams import hparams
        hparams.clear()
        hparams.update(_srdiff_hparams())
        from models.diffsr_modules import RRDBNet as ReleaseRRDBNet, Unet
        from models.diffusion import GaussianDiffusion
        from utils.utils import save_checkpoint

        torch.manual_seed(0)
        rrdb = ReleaseRRDBNet(3, 3, SRDIFF["features"], SRDIFF["blocks"], SRDIFF["growth"])
        unet = Unet(SRDIFF["dim"], out_dim=3, cond_dim=SRDIFF["features"],
                    dim_mults=SRDIFF["mults"])
        model = GaussianDiffusion(unet, rrdb, timesteps=SRDIFF["steps"], loss_type="l1").eval()
        model.sample_tqdm = False
        save_checkpoint(model, torch.optim.Adam(unet.parameters(), lr=2e-4), str(workdir), 0, 1)
        lr_m11, hr_m11 = 2 * x["lr"] - 1, 2 * x["hr"] - 1
        up_m11 = 2 * (255 / 256) * x["mu"] - 1  # the release's imresize(img_lr / 256)
        with torch.no_grad():
            _, cond = rrdb(lr_m11, True)
            net = unet(x["z_t"], torch.tensor([3, 77]), cond, up_m11)
            torch.manual_seed(5)
            loss = model(hr_m11, lr_m11, up_m11)[0]["q"]
            torch.manual_seed(7)
            img, _ = model.sample(lr_m11[:1], up_m11[:1], hr_m11[:1].shape)
        return workdir / "model_ckpt_steps_0.ckpt", {
            "net": net, "loss": loss, "sample": (img + 1) / 2, "nfe": SRDIFF["steps"]}


def release_sr3(root: Path, x: dict, workdir: Path) -> tuple[Path, dict]:
    """SR3 built (orthogonal init), saved (``DDPM.save_network``) and run by the release."""
    with release_on_path(root, ("model", "core", "data")):
        import logging

        from model.model import DDPM
        logging.getLogger("base").setLevel(logging.ERROR)
        schedule = {"schedule": "linear", "n_timestep": SR3["steps"],
                    "linear_start": SR3["beta_start"], "linear_end": SR3["beta_end"]}
        opt = {"phase": "train", "gpu_ids": None, "distributed": False,
               "path": {"checkpoint": str(workdir), "resume_state": None},
               "train": {"optimizer": {"lr": 1e-4}},
               "model": {"which_model_G": "sr3", "finetune_norm": False,
                         "unet": {"in_channel": 6, "out_channel": 3,
                                  "inner_channel": SR3["inner"], "norm_groups": SR3["norm_groups"],
                                  "channel_multiplier": list(SR3["mults"]),
                                  "attn_res": list(SR3["attn_res"]),
                                  "res_blocks": SR3["res_blocks"], "dropout": SR3["dropout"]},
                         "beta_schedule": {"train": schedule, "val": schedule},
                         "diffusion": {"image_size": HR, "channels": 3, "conditional": True}}}
        torch.manual_seed(0)
        ddpm = DDPM(opt)
        ddpm.save_network(0, 0)
        net_g = ddpm.netG.eval()
        up = 2 * x["mu"] - 1
        with torch.no_grad():
            net = net_g.denoise_fn(torch.cat([up, x["z_t"]], dim=1), torch.tensor([[0.3], [0.9]]))
            np.random.seed(3)
            torch.manual_seed(3)
            loss = net_g.p_losses({"HR": 2 * x["hr"] - 1, "SR": up}) / x["hr"].numel()
            torch.manual_seed(9)
            img = net_g.super_resolution(up[:1])
        return workdir / "I0_E0_gen.pth", {"net": net, "loss": loss,
                                           "sample": (img[None] + 1) / 2, "nfe": SR3["steps"]}


def imported_srdiff(path: Path):
    from baselines.srdiff import SRDiff

    meta, state = import_srdiff(path)
    model = SRDiff(rrdb=RRDBNet(scale=meta["scale"], **meta["rrdb_net"]), **meta["net"])
    model.load_state_dict(state, strict=True)
    return model.eval()


def imported_sr3(path: Path):
    from baselines.sr3 import SR3 as OurSR3

    meta, state = import_sr3(path, scale=SCALE, norm_groups=SR3["norm_groups"],
                             dropout=SR3["dropout"])
    model = OurSR3(scale=SCALE, net=meta["net"], **meta["diffusion"])
    model.load_state_dict(state, strict=True)
    return model.eval()


# ---------------------------------------------------------------------- comparing

def compare(method: str, ours: dict, theirs: dict) -> list[tuple[str, bool, str]]:
    """(label, passed, text) per compared quantity."""
    def diff(key):
        return float((ours[key].double() - theirs[key].double()).abs().max())

    def rel(key):
        return abs(float(ours[key]) - float(theirs[key])) / abs(float(theirs[key]))

    rows = []
    for key, label in (("feats", "encoder features"), ("net", "network output"),
                       ("rrdb_out", "RRDBNet output")):
        if key in theirs:
            d = diff(key)
            rows.append((label, d <= TOL["net"], f"max |diff| {d:.2e} (<= {TOL['net']:.0e})"))
    for key, label in (("loss", "training loss"), ("rrdb_loss", "RRDBNet L1-sum loss")):
        if key in theirs:
            r = rel(key)
            rows.append((label, r <= TOL["loss"], f"ours {float(ours[key]):.6g}, release "
                         f"{float(theirs[key]):.6g}, relative {r:.2e} (<= {TOL['loss']:.0e})"))
    d = diff("sample")
    if method == "ecdp":
        ok = d <= TOL["ecdp_sample"] and abs(ours["nfe"] - theirs["nfe"]) <= TOL["nfe"]
        rows.append(("dopri5 probability flow", ok,
                     f"max |diff| {d:.2e} (<= {TOL['ecdp_sample']:.0e}), NFE ours {ours['nfe']} "
                     f"/ release {theirs['nfe']} (+-{TOL['nfe']})"))
    else:
        ok = d <= TOL["chain"] and ours["nfe"] == theirs["nfe"]
        rows.append((f"{theirs['nfe']}-step ancestral chain", ok,
                     f"max |diff| {d:.2e} (<= {TOL['chain']:.0e}), NFE {ours['nfe']}"))
    return rows


def _tensors(out: dict) -> dict:
    return {k: (v.detach().clone() if torch.is_tensor(v) else torch.tensor(v))
            for k, v in out.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecdp", type=Path, help="checkout of Yuan-Yutao/ECDP")
    parser.add_argument("--srdiff", type=Path, help="checkout of LeiaLi/SRDiff")
    parser.add_argument("--sr3", type=Path,
                        help="checkout of Janspiry/Image-Super-Resolution-via-Iterative-Refinement")
    parser.add_argument("--write-golden", type=Path, metavar="DIR",
                        help="store the releases' outputs and saved checkpoints for the CI tests")
    args = parser.parse_args(argv)
    if not (args.ecdp or args.srdiff or args.sr3):
        parser.error("give at least one of --ecdp, --srdiff, --sr3")
    torch.set_num_threads(1)
    x = inputs()
    golden, failed = {}, 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = []
        if args.ecdp:
            theirs = release_ecdp(args.ecdp, x)
            runs.append(("ecdp", ecdp_outputs(our_ecdp(), our_ecdp_rrdbnet(), x,
                                              ecdp_loss_noise()), theirs, None))
        if args.srdiff:
            path, theirs = release_srdiff(args.srdiff, x, tmp)
            runs.append(("srdiff", srdiff_outputs(imported_srdiff(path), x, srdiff_loss_noise()),
                         theirs, path))
        if args.sr3:
            path, theirs = release_sr3(args.sr3, x, tmp)
            model = imported_sr3(path)
            runs.append(("sr3", sr3_outputs(model, x, sr3_loss_noise(model)), theirs, path))
        for method, ours, theirs, path in runs:
            print(f"{method.upper()} ({RELEASES[method]}):")
            for label, ok, text in compare(method, ours, theirs):
                failed += not ok
                print(f"  {'PASS' if ok else 'FAIL'}  {label:28s} {text}")
            golden[method] = _tensors(theirs)
            if args.write_golden and path is not None:
                args.write_golden.mkdir(parents=True, exist_ok=True)
                target = args.write_golden / f"{method}_release_saved{path.suffix}"
                target.write_bytes(path.read_bytes())
    if args.write_golden:
        args.write_golden.mkdir(parents=True, exist_ok=True)
        golden["meta"] = {"releases": {m: RELEASES[m] for m in golden},
                          "command": "python benchmarks/released_equivalence.py "
                                     + " ".join(sys.argv[1:] if argv is None else argv),
                          "torch": str(torch.__version__)}
        torch.save(golden, args.write_golden / "golden.pt")
        print(f"golden values written to {args.write_golden}/golden.pt")
    print("all lines pass" if not failed else f"{failed} line(s) FAIL")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
