"""Baselines behind one interface: paper parameter counts, training that lowers the loss,
L_IQ through the checkpointed ancestral samplers (the "++" variants)."""
import numpy as np
import pytest
import torch
from conftest import sampled

from baselines import METHODS, SuperResolver, build_method
from baselines.sr3 import PAPER_NET, SR3
from baselines.srdiff import SRDiff
from baselines.train import LOADERS, finetune_iq, train_sr3, train_srdiff
from ecdp.checkpoint import load_checkpoint
from ecdp.data.datasets import prepare_dataset
from ecdp.data.io import write_png
from ecdp.nets import RRDBNet, count_parameters
from ecdp.stages import train_rrdbnet

CFG = {"batch_size": 2, "patch_size": 32, "lr": 1e-3, "warmup": 1, "milestones": [0.6, 0.8],
       "ema_decay": 0.9, "clip_value": 10.0, "save_every": 5, "l1": "sum", "augment": "dihedral"}


def test_paper_parameter_counts():
    with torch.device("meta"):
        srdiff = SRDiff(rrdb=RRDBNet(scale=8, features=32, growth=16, blocks=8, trunk_conv=True),
                        taps=(2, 5, 8), mults=(1, 2, 2, 4))  # the release's CelebA config
        sr3 = SR3(scale=4, net=PAPER_NET)
    assert count_parameters(srdiff) / 1e6 == pytest.approx(12.0, rel=0.01)   # CelebA
    assert count_parameters(sr3) / 1e6 == pytest.approx(97.8, rel=0.01)


def test_every_method_is_a_super_resolver():
    assert set(METHODS) >= {"bicubic", "rrdb", "ecdp"}
    bicubic = build_method("bicubic", scale=4)
    assert isinstance(bicubic, SuperResolver)
    sr, nfe = bicubic.super_resolve(torch.rand(1, 3, 8, 8))
    assert sr.shape == (1, 3, 32, 32) and nfe == 0
    with pytest.raises(ValueError, match="unknown method 'esrgan'"):
        build_method("esrgan", scale=4)


class _ExactEps(torch.nn.Module):
    """The eps a perfect denoiser returns when the clean target is known: (x_t - l x0) / sqrt(1 - l^2)
    with l = sqrt(alpha_bar_t) (SRDiff: step index t; SR3: the level itself, x_t the last 3
    channels, after the bicubic LR)."""

    def __init__(self, x0, level_of):
        super().__init__()
        self.x0, self.level_of = x0, level_of

    def forward(self, x, t, _cond):
        x = x[:, -3:]
        level = self.level_of(t, x).reshape(-1, 1, 1, 1)
        return (x - level * self.x0) / (1 - level**2).sqrt()


@pytest.mark.parametrize("spec,nfe", [({"steps": 10}, 10),
                                      ({"solver": "dpmpp_2m", "nfe": 5}, 5),
                                      ({"solver": "unipc", "nfe": 4}, 4),
                                      ({"solver": "ddim", "nfe": 1}, 1)])
@pytest.mark.parametrize("kind", ["srdiff", "sr3"])
def test_exact_denoiser_reproduces_hr_through_the_target_convention(kind, spec, nfe):
    """SRDiff's target is 2 (HR - bicubic) with images in [-1, 1] = 4 (HR - mu) in [0, 1], mu =
    255/256 bicubic (the release's bicubic of LR / 256); SR3's is HR in [-1, 1]. With the exact
    eps the loss is 0 and every sampler returns HR: the ancestral chain and the fast solvers on
    the chain's continuous-time schedule (the network then sees fractional steps, SRDiff, or
    interpolated levels, SR3), each ending with its denoising step."""
    from ecdp.degradation import upsample
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, 6, 6, generator=g) * 0.6 + 0.2
    hr = (upsample(lr, 4) + 0.2 * (torch.rand(1, 3, 24, 24, generator=g) - 0.5)).clamp(0, 1)
    t = torch.tensor([30])
    eps = torch.randn(hr.shape, generator=g)
    if kind == "srdiff":
        model = SRDiff(rrdb=RRDBNet(scale=4, features=8, growth=4, blocks=2), taps=(0,), dim=8,
                       mults=(1, 2))
        assert torch.allclose(model.mu(lr), upsample(lr, 4) * 255 / 256)
        model.unet = _ExactEps(4 * (hr - model.mu(lr)),  # the step t, maybe fractional
                               lambda t, x: model.vp.alpha_bar(
                                   (t.double() + 1) / model.schedule.steps).sqrt().to(x.dtype))
        loss, _ = model.loss(lr, hr, t, eps)
    else:
        model = SR3(scale=4, net={"channels": [8], "blocks": [1], "time_channels": 4, "norm_groups": 4},
                    )
        model.unet = _ExactEps(hr * 2 - 1, lambda level, x: level)
        loss, _ = model.loss(lr, hr, t, eps, torch.zeros(1))
    assert float(loss) == pytest.approx(0, abs=1e-4)
    sr, used = sampled(model, spec, family="ddpm").super_resolve(lr, generator=g)
    assert used == nfe and torch.allclose(sr, hr, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    src = root / "src"
    for i in range(2):  # smooth random images: learnable residuals
        base = rng.random((12, 12, 3))
        img = np.kron(base, np.ones((6, 6, 1))) * 255
        write_png(src / f"im{i}.png", img.astype(np.uint8))
    manifest = prepare_dataset("folder", root / "ds", path=str(src))
    manifest["splits"] = {"train": manifest["splits"]["test"], "val": manifest["splits"]["test"]}
    import json
    (root / "ds" / "manifest.json").write_text(json.dumps(manifest))
    rrdb = root / "rrdb.pt"
    train_rrdbnet(dataset=root / "ds" / "manifest.json", out=rrdb, scale=4,
                  net={"features": 8, "growth": 4, "blocks": 3},
                  cfg={**CFG, "steps": 2}, progress=False)
    return root


def _loss_fell(meta, k=5):
    losses = [h["loss"] for h in meta["history"]["train"]]
    return np.mean(losses[-k:]) < np.mean(losses[:k])


def test_srdiff_trains_and_its_loss_falls(tiny_dataset):
    meta = train_srdiff(dataset=tiny_dataset / "ds" / "manifest.json", rrdb_checkpoint=tiny_dataset / "rrdb.pt",
                        out=tiny_dataset / "srdiff.pt",
                        net={"taps": (0, 2), "dim": 8, "mults": (1, 2), "steps": 100},
                        cfg={**CFG, "steps": 40}, progress=False)
    assert _loss_fell(meta)
    model = SRDiff.load(tiny_dataset / "srdiff.pt")
    assert all(not p.requires_grad for p in model.rrdb.parameters())
    sr, nfe = sampled(model, {"steps": 10}, family="ddpm").super_resolve(torch.rand(1, 3, 6, 6), generator=torch.Generator().manual_seed(0))
    assert sr.shape == (1, 3, 24, 24) and nfe == 10


def test_sr3_trains_and_its_loss_falls(tiny_dataset):
    net = {"channels": [8, 16], "blocks": [1, 1], "time_channels": 4, "norm_groups": 4, "attention_levels": [1],
           "mid_attention": True, "dropout": 0.0}
    meta = train_sr3(dataset=tiny_dataset / "ds" / "manifest.json", out=tiny_dataset / "sr3.pt", scale=4,
                     net=net, diffusion={"steps": 2000}, cfg={**CFG, "steps": 40}, progress=False)
    assert _loss_fell(meta)
    model = SR3.load(tiny_dataset / "sr3.pt")
    sr, nfe = sampled(model, {"steps": 8}, family="ddpm").super_resolve(torch.rand(1, 3, 6, 6), generator=torch.Generator().manual_seed(0))
    assert sr.shape == (1, 3, 24, 24) and nfe == 8


@pytest.mark.parametrize("kind", ["srdiff", "sr3"])
def test_plus_plus_finetuning_moves_the_denoiser(tiny_dataset, kind):
    if not (tiny_dataset / f"{kind}.pt").exists():
        pytest.skip("needs the training test of this kind first")
    before = load_checkpoint(tiny_dataset / f"{kind}.pt", weights="raw")["state"]
    meta = finetune_iq(kind=kind, dataset=tiny_dataset / "ds" / "manifest.json",
                       checkpoint=tiny_dataset / f"{kind}.pt", out=tiny_dataset / f"{kind}++.pt",
                       weights_status={"status": "unavailable", "reason": "offline"},
                       cfg={**CFG, "steps": 2, "iq_weight": 1.0, "allow_random_vgg": True,
                            "sample_steps": 4, "save_every": 1}, progress=False)
    assert meta["vgg"].startswith("random VGG19") and meta["history"]["train"][0]["nfe"] == 4
    after = load_checkpoint(tiny_dataset / f"{kind}++.pt", weights="raw")["state"]
    unet = [k for k in after if k.startswith("unet.")]
    assert sum(float((after[k] - before[k]).abs().sum()) for k in unet) > 0
    frozen = [k for k in after if k.startswith("rrdb.")]
    assert all(torch.equal(after[k], before[k]) for k in frozen)


@pytest.mark.parametrize("kind", ["srdiff", "sr3"])
def test_noise_level_probe_on_a_trained_baseline(tiny_dataset, kind):
    """benchmarks/ddpm_noise_levels.py: at the first step l = sqrt(alpha_bar_0) ~ 1, so x0_hat
    equals x0 up to eps_err sqrt(1 - alpha_bar_0): far above 40 dB whatever the denoiser; the
    probed levels fall with t."""
    import importlib.util
    from pathlib import Path
    from ecdp.data.pairs import make_pairs
    if not (tiny_dataset / f"{kind}.pt").exists():
        pytest.skip("needs the training test of this kind first")
    spec = importlib.util.spec_from_file_location(
        "ddpm_noise_levels", Path(__file__).parents[1] / "benchmarks" / "ddpm_noise_levels.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    make_pairs(tiny_dataset / "ds", tiny_dataset / "pairs", split="val", scale=4, progress=False)
    model = LOADERS[kind](tiny_dataset / f"{kind}.pt").eval()
    steps = [0, model.schedule.steps // 2, model.schedule.steps - 1]
    rows, sample, nfe, n = bench.probe(model, tiny_dataset / "pairs/lr/val.json", steps,
                                       sample_steps=4)
    assert n == 2 and nfe == 4 and len(sample) == 5
    assert rows[0][3] > 40 and abs(rows[0][4]) < 1e-3
    levels = [rows[t][0] for t in steps]
    assert levels[0] > 0.99 and levels[0] > levels[1] > levels[2]


def _train_twice(train, out_dir, disturb):
    """Train one step twice with one seed, the global torch RNG in a different state each time."""
    states = []
    for i, n in enumerate(disturb):
        torch.manual_seed(1000 + n)
        torch.randn(n)
        train(out_dir / f"run{i}.pt")
        states.append(load_checkpoint(out_dir / f"run{i}.pt")["state"])
    return states


@pytest.mark.parametrize("kind", ["rrdb", "srdiff", "sr3", "ecdp"])
def test_one_seed_gives_one_network_whatever_the_global_rng(tiny_dataset, tmp_path, kind):
    """Initial weights come from the seed, not from whatever the process drew before (the
    default run gave different RRDB / ECDP numbers on every re-run before)."""
    from ecdp.stages import train_ecdp_stage1
    cfg = {**CFG, "steps": 1, "save_every": 100}
    ds, rrdb = tiny_dataset / "ds", tiny_dataset / "rrdb.pt"
    model_cfg = {"encoder": {"taps": [0, 2]}, "unet": {"channels": [8, 16], "blocks": [1, 1],
                                                       "time_channels": 8, "dropout": 0.0,
                                                       "time_scale": 300.0},
                 "sde": {"beta_min": 0.1, "beta_max": 20.0, "sigma": 0.1}, "k": 1.0,
                 "parametrization": "hybrid"}
    train = {
        "rrdb": lambda out: train_rrdbnet(dataset=ds / "manifest.json", out=out, scale=4, cfg=cfg,
                                          net={"features": 8, "growth": 4, "blocks": 3},
                                          progress=False),
        "srdiff": lambda out: train_srdiff(dataset=ds / "manifest.json", rrdb_checkpoint=rrdb, out=out,
                                           net={"taps": (0, 2), "dim": 8, "mults": (1, 2),
                                                "steps": 100}, cfg=cfg, progress=False),
        "sr3": lambda out: train_sr3(dataset=ds / "manifest.json", out=out, scale=4, diffusion={"steps": 100},
                                     net={"channels": [8, 16], "blocks": [1, 1],
                                          "time_channels": 4, "dropout": 0.0, "norm_groups": 4}, cfg=cfg,
                                     progress=False),
        "ecdp": lambda out: train_ecdp_stage1(dataset=ds / "manifest.json", rrdb_checkpoint=rrdb, out=out,
                                              scale=4, model_cfg=model_cfg,
                                              cfg={**cfg, "lr_encoder": 1e-5,
                                                   "validate_every": None},
                                              progress=False),
    }[kind]
    a, b = _train_twice(train, tmp_path, disturb=(1, 7))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
