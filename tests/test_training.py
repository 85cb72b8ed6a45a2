"""Training: losses, L_IQ gradient paths, resume after a kill, DDP equivalence, checkpoints."""
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ecdp.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ecdp.features import VGGFeatures, load_vgg_features
from ecdp.losses import draw_sm_noise, image_quality_loss, score_matching_loss
from ecdp.rng import batch_generator
from ecdp.samplers import make_solver
from ecdp.train import NonFiniteLossError, make_optimizer, make_scheduler, train_loop


def _batch(step, b=2, seed=0):
    g = batch_generator(seed, 0, step)
    hr = torch.rand(b, 3, 16, 16, generator=g)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    t, eps = draw_sm_noise(hr, g)
    return lr, hr, t, eps


def test_score_matching_terms_follow_the_parametrization(tiny_ecdp):
    lr, hr, t, eps = _batch(0)
    losses = {}
    for kind in ("eps", "x0", "hybrid"):
        model = tiny_ecdp(parametrization=kind)
        loss, logs = score_matching_loss(model, lr, hr, t, eps)
        losses[kind] = (loss.item(), logs)
    eps_term, x0_term = losses["hybrid"][1]["sm_eps"], losses["hybrid"][1]["sm_x0"]
    assert losses["hybrid"][0] == pytest.approx(eps_term + x0_term, rel=1e-5)
    assert losses["eps"][0] == pytest.approx(eps_term, rel=1e-5)
    assert losses["x0"][0] == pytest.approx(x0_term, rel=1e-5)
    # untrained heads are near zero: each term is about the pixel count times E[target^2]
    assert eps_term == pytest.approx(3 * 16 * 16, rel=0.3)


def test_score_matching_eps_only_trains_only_its_head(tiny_ecdp):
    model = tiny_ecdp(parametrization="eps")
    lr, hr, t, eps = _batch(1)
    score_matching_loss(model, lr, hr, t, eps)[0].backward()
    out = model.unet.out[-1]
    assert out.weight.grad[:3].abs().sum() > 0 and out.weight.grad[3:].abs().sum() == 0


@pytest.mark.parametrize("train_encoder", [False, True])
def test_iq_loss_gradients_reach_unet_and_encoder_only_when_asked(tiny_ecdp, train_encoder):
    model = tiny_ecdp()
    features = VGGFeatures(None, seed=0)
    lr, hr, _, _ = _batch(2)
    x1 = model.sde.prior_sample(model.condition(lr)[0].detach(), torch.Generator().manual_seed(0))
    solver = make_solver({"solver": "euler", "nfe": 3, "adjoint": True})
    loss, logs = image_quality_loss(model, features, lr, hr, x1, solver=solver,
                                    train_encoder=train_encoder)
    loss.backward()
    assert logs["nfe"] == 3
    unet_grad = sum(p.grad.abs().sum() for p in model.unet.parameters() if p.grad is not None)
    enc_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert unet_grad > 0
    if train_encoder:
        assert enc_grads and sum(g.abs().sum() for g in enc_grads) > 0
    else:
        assert not enc_grads
    assert all(p.grad is None for p in features.parameters())


def test_iq_loss_through_reverse_sde_reaches_unet(tiny_ecdp):
    model = tiny_ecdp()
    features = VGGFeatures(None, seed=0)
    lr, hr, _, _ = _batch(3)
    x1 = model.condition(lr)[0].detach() + 0.1 * torch.randn(hr.shape)
    loss, logs = image_quality_loss(model, features, lr, hr, x1,
                                    solver=make_solver({"solver": "reverse_sde", "steps": 4,
                                                        "checkpoint": True}),
                                    generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert logs["nfe"] == 4
    assert sum(p.grad.abs().sum() for p in model.unet.parameters() if p.grad is not None) > 0


def test_vgg_fallback_only_when_allowed():
    with pytest.raises(FileNotFoundError, match="VGG19 weights unavailable"):
        load_vgg_features({"status": "unavailable", "reason": "offline"}, allow_random=False)
    feats, provenance = load_vgg_features({"status": "unavailable", "reason": "offline"},
                                          allow_random=True, seed=3)
    assert provenance == "random VGG19 (seed 3): offline"
    assert feats(torch.rand(1, 3, 32, 32)).shape == (1, 512, 2, 2)
    again, _ = load_vgg_features({"status": "unavailable"}, allow_random=True, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(feats.state_dict().values(),
                                                 again.state_dict().values()))


# ---------------------------------------------------------------------- the loop

def _run(tiny_ecdp, tmp_path, steps, *, stop_after=None, name="state.pt"):
    model = tiny_ecdp(seed=0)
    optimizer = make_optimizer([(model.unet.parameters(), 1e-3),
                                (model.encoder.parameters(), 1e-4)])
    scheduler = make_scheduler(optimizer, steps=steps, warmup=2)

    def batches(step):
        if stop_after is not None and step == stop_after:
            raise KeyboardInterrupt("killed")
        return _batch(step)

    return train_loop(lambda m, b: score_matching_loss(m, *b), model=model, optimizer=optimizer,
                      scheduler=scheduler, batches=batches, steps=steps,
                      state_path=tmp_path / name, ema_decay=0.9, save_every=2, progress=False)


def test_killed_run_resumes_to_the_same_weights(tiny_ecdp, tmp_path):
    straight = _run(tiny_ecdp, tmp_path, 6, name="a.pt")
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_ecdp, tmp_path, 6, stop_after=5, name="b.pt")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 4
    resumed = _run(tiny_ecdp, tmp_path, 6, name="b.pt")
    for (k, a), b in zip(straight["model"].state_dict().items(),
                         resumed["model"].state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(straight["ema"].state_dict().values(), resumed["ema"].state_dict().values()):
        assert torch.equal(a, b)
    assert [h["loss"] for h in straight["history"]["train"]] == \
        [h["loss"] for h in resumed["history"]["train"]]


def test_scheduler_warmup_and_milestones(tiny_ecdp):
    model = tiny_ecdp()
    opt = make_optimizer([(model.unet.parameters(), 1.0), (model.encoder.parameters(), 0.1)])
    sched = make_scheduler(opt, steps=10, warmup=4, milestones=(0.6, 0.8))
    lrs = []
    for _ in range(10):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [r[0] for r in lrs] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 0.5, 0.5, 0.25, 0.25])
    assert lrs[5][1] == pytest.approx(0.1)


def test_non_finite_loss_stops_and_keeps_last_state(tiny_ecdp, tmp_path):
    model = tiny_ecdp()
    opt = make_optimizer([(model.parameters(), 1e-3)])
    sched = make_scheduler(opt, steps=5)

    def step_fn(m, batch):
        loss = score_matching_loss(m, *batch)[0]
        return (loss * float("nan") if batch[0].shape[0] == 3 else loss), {}

    batches = lambda s: _batch(s, b=3 if s == 3 else 2)  # noqa: E731
    with pytest.raises(NonFiniteLossError, match="step 3.*last good state"):
        train_loop(step_fn, model=model, optimizer=opt, scheduler=sched, batches=batches, steps=5,
                   state_path=tmp_path / "s.pt", save_every=1, progress=False)
    assert torch.load(tmp_path / "s.pt", weights_only=True)["step"] == 3


# ---------------------------------------------------------------------- DDP

def _worker(rank, world, init_file, out_dir, conftest_dir, b):
    import sys

    import torch.distributed as dist

    sys.path.insert(0, conftest_dir)
    from conftest import TINY_MODEL

    from ecdp.model import ECDP

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    model = ECDP.from_config(TINY_MODEL, scale=4, sigma=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)  # linear in the gradient (Adam's first
    # step, g / (|g| + eps), turns rounding in near-zero gradients into whole steps)
    sched = make_scheduler(opt, steps=1)
    from ecdp.train import rank_share

    start = sum(rank_share(b, r, world) for r in range(rank))
    shard = tuple(x[start:start + rank_share(b, rank, world)] for x in _batch(0, b=b))
    train_loop(lambda m, b: score_matching_loss(m, *b), model=model, optimizer=opt,
               scheduler=sched, batches=lambda s: shard, steps=1,
               state_path=os.path.join(out_dir, f"rank{rank}.pt"), save_every=1, progress=False,
               clip_value=None)
    torch.save(model.state_dict(), os.path.join(out_dir, f"weights{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("b", [4, 3])  # 3: shares of 2 and 1, gradients weighted by share
def test_ddp_two_gloo_processes_equal_one_process_full_batch(tiny_ecdp, tmp_path, b):
    conftest_dir = os.path.dirname(__file__)
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), conftest_dir, b),
             nprocs=2, join=True)
    model = tiny_ecdp(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    sched = make_scheduler(opt, steps=1)
    full = _batch(0, b=b)
    train_loop(lambda m, x: score_matching_loss(m, *x), model=model, optimizer=opt,
               scheduler=sched, batches=lambda s: full, steps=1, state_path=tmp_path / "one.pt",
               save_every=1, progress=False, clip_value=None)
    ranks = [torch.load(tmp_path / f"weights{r}.pt", weights_only=True) for r in (0, 1)]
    moved = 0.0
    for k, v in model.state_dict().items():
        assert torch.allclose(ranks[0][k], ranks[1][k])
        assert torch.allclose(v, ranks[0][k], atol=1e-5), k  # float32 rounding of O(1) steps
    initial = tiny_ecdp(seed=0).state_dict()
    moved = sum((v - initial[k]).abs().sum() for k, v in model.state_dict().items())
    assert moved > 0


def test_rank_shares_cover_the_batch_and_refuse_an_empty_rank():
    from ecdp.train import rank_share

    assert [rank_share(5, r, 2) for r in range(2)] == [3, 2]   # was 2 + 2: one sample dropped
    assert [rank_share(8, r, 3) for r in range(3)] == [3, 3, 2]
    assert sum(rank_share(7, r, 4) for r in range(4)) == 7
    with pytest.raises(ValueError, match="batch_size 1 is smaller than the 2 processes"):
        rank_share(1, 0, 2)                                       # was 0 -> stack error


# ---------------------------------------------------------------------- checkpoints

def test_checkpoint_roundtrip_and_strict_errors(tiny_ecdp, tmp_path):
    model = tiny_ecdp()
    meta = {"model": {"a": 1}, "budget": "test"}
    save_checkpoint(tmp_path / "c.pt", step=7, meta=meta, state=model.state_dict(),
                    ema={k: v + 1 for k, v in model.state_dict().items()})
    raw = load_checkpoint(tmp_path / "c.pt", weights="raw")
    ema = load_checkpoint(tmp_path / "c.pt")
    assert raw["step"] == 7 and raw["meta"] == meta
    key = next(iter(raw["state"]))
    assert torch.equal(ema["state"][key], raw["state"][key] + 1)
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": 99}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an ECDP-suite checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    assert not list(tmp_path.glob(".c.pt.*"))  # no temporary files left


def test_state_from_a_different_recipe_is_not_resumed(tiny_ecdp, tmp_path):
    model = tiny_ecdp()
    opt = make_optimizer([(model.parameters(), 1e-3)])
    run = lambda cfg, steps: train_loop(  # noqa: E731
        lambda m, b: score_matching_loss(m, *b), model=model, optimizer=opt,
        scheduler=make_scheduler(opt, steps=steps), batches=_batch, steps=steps,
        state_path=tmp_path / "s.pt", save_every=1, progress=False, config=cfg)
    run({"lr": 1}, 2)
    result = run({"lr": 2}, 3)
    assert [h["step"] for h in result["history"]["train"]] == [1, 2, 3]  # started over
    assert (tmp_path / "s.pt.stale").exists()


def test_state_is_keyed_on_input_files_and_logs_where_it_resumed(tiny_ecdp, tmp_path, caplog):
    """An upstream checkpoint or dataset manifest that changed (same recipe) must not resume:
    before, RRDBNet retrained with new steps and stage 1 resumed its old finished state."""
    upstream = tmp_path / "rrdb.pt"
    upstream.write_bytes(b"rrdb v1")
    model = tiny_ecdp()
    opt = make_optimizer([(model.parameters(), 1e-3)])
    run = lambda steps: train_loop(  # noqa: E731
        lambda m, b: score_matching_loss(m, *b), model=model, optimizer=opt,
        scheduler=make_scheduler(opt, steps=steps), batches=_batch, steps=steps,
        state_path=tmp_path / "s.pt", save_every=1, progress=False, config={"lr": 1},
        inputs={"rrdb": upstream})
    caplog.set_level("INFO", logger="ecdp.train")
    run(2)
    assert "starting at step 0 of 2" in caplog.text
    result = run(3)
    assert [h["step"] for h in result["history"]["train"]] == [1, 2, 3]
    assert "resumed from step 2 of 3" in caplog.text
    upstream.write_bytes(b"rrdb v2")
    result = run(3)
    assert [h["step"] for h in result["history"]["train"]] == [1, 2, 3]  # retrained all 3
    assert (tmp_path / "s.pt.stale").exists()


def test_saved_result_removes_the_training_state(tiny_ecdp, tmp_path):
    from ecdp.train import save_result

    model = tiny_ecdp()
    out = tmp_path / "model.pt"
    Path(f"{out}.state").write_bytes(b"state")
    save_result(out, {"model": model, "ema": None, "step": 1}, {"budget": "test"})
    assert out.exists() and not Path(f"{out}.state").exists()
    assert out.stat().st_mode & 0o044 == 0o044    # readable by colleagues (was 0600)


def test_adjoint_gradients_through_the_conditioning_cache_equal_direct_backprop(tiny_ecdp):
    """The per-sample LR conditioning is computed once, outside the ODE; the adjoint must still
    give its 1x1 convs and the encoder the gradients plain backprop through the solve gives."""
    lr, hr, _, _ = _batch(4, b=1)
    grads = {}
    for adjoint in (False, True):
        model = tiny_ecdp().double()
        x1 = model.condition(lr.double())[0].detach() + 0.1 * torch.randn(
            hr.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        solver = make_solver({"solver": "dopri5", "rtol": 1e-8, "atol": 1e-8, "adjoint": adjoint})
        sample, _ = model.sample(lr.double(), x1=x1, solver=solver, train_encoder=True)
        (sample - hr.double()).pow(2).sum().backward()
        named = [(n, p.grad) for n, p in model.named_parameters()
                 if ".cond." in n or n.startswith("encoder.")]
        assert all(g is not None for _, g in named)
        grads[adjoint] = torch.cat([g.flatten() for _, g in named])
    rel = (grads[True] - grads[False]).norm() / grads[False].norm()
    assert grads[False].norm() > 0 and rel < 1e-3  # listing the convs too: 1.0 (twice)
