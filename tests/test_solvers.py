"""The fast solver family on exact Gaussians: time grids, orders, error falling with the budget,
the discrete DDPM schedule, DDIM against the ancestral chain, UniPC against diffusers."""
import math

import pytest
import torch

from baselines.ddpm import Schedule, ancestral_sample, cosine_betas, linear_betas
from ecdp.samplers import DEFAULT_GRID, make_solver, unipc_on
from ecdp.sde import ConditionalVPSDE, DiscreteVP
from ecdp.timesteps import GRIDS, time_grid

FAST = ("ddim", "dpmpp_2m", "dpm_solver_3", "unipc")


def gaussian_eps(schedule, m: float, s: float):
    """Exact noise prediction of z_t for z_0 ~ N(m, s^2): s_t (z - a_t m) / (a_t^2 s^2 + s_t^2)."""
    def eps(z, t):
        ab = schedule.alpha_bar(torch.as_tensor(t, dtype=torch.float64))
        return (1 - ab).sqrt() * (z - ab.sqrt() * m) / (ab * s * s + 1 - ab)
    return eps


def _prior(shape=(256, 3, 4, 4), seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rms(a, b) -> float:
    return float((a - b).pow(2).mean().sqrt())


# The closed-form case of the issue: data in z ~ N(1.5, 1) (x ~ N(0.3, 0.2^2) at sigma = 0.2),
# 256 x 3 x 4 x 4 prior draws, t_end = 1/3000, RMS against dopri5 at rtol = atol = 1e-8.
SDE = ConditionalVPSDE()
EPS = gaussian_eps(SDE, 1.5, 1.0)
Z1 = _prior()


@pytest.fixture(scope="module")
def reference():
    return make_solver({"solver": "dopri5", "rtol": 1e-8, "atol": 1e-8})(EPS, SDE, Z1)[0]


@pytest.mark.parametrize("name", list(GRIDS))
def test_time_grids_run_from_one_to_t_end_and_keep_their_spacing(name):
    for schedule in (SDE, DiscreteVP(Schedule(cosine_betas(100)).alpha_bar)):
        ts = time_grid(name, schedule, 7, 0.01)
        assert len(ts) == 8 and ts[0] == 1.0 and ts[-1] == 0.01
        assert bool((ts[1:] < ts[:-1]).all())
    ts = time_grid(name, SDE, 8, 1 / 3000)
    spacing = {"logsnr": SDE.log_snr(ts), "time_uniform": ts, "time_quadratic": ts.sqrt(),
               "edm": torch.exp(-SDE.log_snr(ts) / 7)}[name]
    steps = spacing[1:] - spacing[:-1]
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-9, atol=1e-12)


def test_unknown_grid_and_options_are_errors_naming_the_key():
    with pytest.raises(ValueError, match="grid: unknown time grid 'karras'"):
        make_solver({"solver": "unipc", "nfe": 6, "grid": "karras"})
    with pytest.raises(ValueError, match="eta: must be a number >= 0"):
        make_solver({"solver": "ddim", "nfe": 6, "eta": -1})
    with pytest.raises(ValueError, match="order: must be 1, 2 or 3"):
        make_solver({"solver": "unipc", "nfe": 6, "order": 4})
    with pytest.raises(ValueError, match="nfe >= 3, got 2"):
        make_solver({"solver": "dpm_solver_3", "nfe": 2})
    one = make_solver({"solver": "dpm_solver_3", "nfe": 1, "denoise": True})  # x0 from z1 alone
    z0, nfe = one(EPS, SDE, Z1)
    assert nfe == 1
    a, s = SDE.alpha_bar(1.0) ** 0.5, (1 - SDE.alpha_bar(1.0)) ** 0.5
    assert torch.allclose(z0, (Z1 - s * EPS(Z1, torch.tensor(1.0))) / a)


@pytest.mark.parametrize("solver,order", [("ddim", 1), ("dpmpp_2m", 2), ("dpm_solver_3", 3),
                                          ("unipc", 4)])
def test_fast_solvers_converge_at_their_order(reference, solver, order):
    """Log-SNR grids at large budgets, where each error is in its asymptotic regime: doubling
    the steps divides it by about 2^order (UniPC-p's corrector adds one order to its predictor's
    p = 3)."""
    budgets = {"dpm_solver_3": (96, 192)}.get(solver, (80, 160))
    errors = [_rms(make_solver({"solver": solver, "nfe": n, "grid": "logsnr"})(EPS, SDE, Z1)[0],
                   reference) for n in budgets]
    assert math.log2(errors[0] / errors[1]) == pytest.approx(order, abs=0.45)


@pytest.mark.parametrize("solver", FAST)
def test_each_solver_on_its_grid_gains_from_every_doubling(reference, solver):
    """The issue's criterion for the default grids (``DEFAULT_GRID``): error(2n) < error(n) for
    every n >= 5 on the closed-form case."""
    errors = {n: _rms(make_solver({"solver": solver, "nfe": n})(EPS, SDE, Z1)[0], reference)
              for n in range(5, 41)}
    worse = [(n, errors[n], errors[2 * n]) for n in range(5, 21) if not errors[2 * n] < errors[n]]
    assert not worse, f"{solver} on {DEFAULT_GRID[solver]}: error did not fall: {worse}"


def test_discrete_schedule_interpolates_the_chain():
    for betas in (cosine_betas(100), linear_betas(2000, 1e-6, 1e-2)):
        chain = Schedule(betas)
        vp = DiscreteVP(chain.alpha_bar)
        ts = torch.arange(1, chain.steps + 1, dtype=torch.float64) / chain.steps
        assert torch.allclose(vp.alpha_bar(ts), chain.alpha_bar, rtol=1e-12, atol=0)
        assert torch.allclose(vp.t_of_log_snr(vp.log_snr(ts)), ts, rtol=0, atol=1e-12)
        mid = (ts[:-1] + ts[1:]) / 2  # log alpha_bar linear between steps
        assert torch.allclose(vp.alpha_bar(mid).log(),
                              (chain.alpha_bar[:-1].log() + chain.alpha_bar[1:].log()) / 2)
        # beta is -d log alpha_bar / dt: integrating it from t_0 recovers alpha_bar
        fine = torch.linspace(float(ts[0]), 1.0, 200001, dtype=torch.float64)
        integral = torch.trapezoid(vp.beta(fine), fine)
        assert float(integral) == pytest.approx(float(chain.alpha_bar[0].log()
                                                      - chain.alpha_bar[-1].log()), rel=1e-3)
    with pytest.raises(ValueError, match="decrease strictly"):
        DiscreteVP(torch.tensor([0.9, 0.95]))


def test_ddim_with_eta_one_on_the_chain_is_the_ancestral_chain():
    """At NFE = the chain length (time-uniform grid = the chain's steps, the last evaluation the
    denoising step) DDIM with eta = 1 draws its noise as the ancestral chain does: the same
    samples from the same generator, so the same distribution."""
    chain = Schedule(cosine_betas(50))
    vp = DiscreteVP(chain.alpha_bar)
    m, s = 0.3, 0.5
    eps = gaussian_eps(vp, m, s)
    x1 = _prior((4000, 1, 1, 1), seed=3)

    def eps_steps(x, t):  # the chain's integer steps (B,) -> the schedule's time
        return eps(x, (t[0].double() + 1) / chain.steps)

    ancestral, nfe_a = ancestral_sample(eps_steps, chain, x1, generator=torch.Generator()
                                        .manual_seed(7), clip=False)
    solver = make_solver({"solver": "ddim", "eta": 1.0, "nfe": 50, "grid": "time_uniform",
                          "t_end": 1 / 50, "denoise": True})
    ddim_x, nfe_d = solver(eps, vp, x1, generator=torch.Generator().manual_seed(7))
    assert nfe_a == nfe_d == 50
    assert ddim_x.mean().item() == pytest.approx(ancestral.mean().item(), abs=1e-9)
    assert ddim_x.var().item() == pytest.approx(ancestral.var().item(), rel=1e-9)
    assert torch.allclose(ddim_x, ancestral, atol=1e-9)
    assert ddim_x.mean().item() == pytest.approx(m, abs=3 * s / 4000**0.5)
    # (the spread is the 50-step chain's own: the posterior variance it adds at each step is
    # smaller than the true reverse step's, so both come out about 7% below s = 0.5)
    assert 0.9 * s < ddim_x.std().item() < s


def test_deterministic_ddim_converges_to_the_discrete_flow():
    """eta = 0 on the discrete schedule: the probability flow's first-order solver, so halving
    its step halves its distance to the tight dopri5 solve of the same flow from the same
    noise."""
    vp = DiscreteVP(Schedule(cosine_betas(100)).alpha_bar)
    eps = gaussian_eps(vp, 0.3, 0.5)
    x1 = _prior((64, 1, 2, 2))
    ref, _ = make_solver({"solver": "dopri5", "rtol": 1e-9, "atol": 1e-9, "t_end": 0.01})(
        eps, vp, x1)
    errors = [_rms(make_solver({"solver": "ddim", "nfe": n, "t_end": 0.01,
                                "grid": "logsnr"})(eps, vp, x1)[0], ref) for n in (100, 200)]
    assert math.log2(errors[0] / errors[1]) == pytest.approx(1, abs=0.2)
    again = make_solver({"solver": "ddim", "nfe": 100, "t_end": 0.01, "grid": "logsnr"})(
        eps, vp, x1)[0]
    assert torch.equal(again, make_solver({"solver": "ddim", "nfe": 100, "t_end": 0.01,
                                            "grid": "logsnr"})(eps, vp, x1)[0])


@pytest.mark.parametrize("steps,order", [(5, 2), (5, 3), (8, 3)])
def test_unipc_matches_the_diffusers_implementation(steps, order):
    """The same UniPC-bh2 update as diffusers' UniPCMultistepScheduler (predict_x0, lower
    order final, its final sigma the chain's first step), on SRDiff's cosine chain in float64."""
    diffusers = pytest.importorskip("diffusers")
    n = 100
    betas = cosine_betas(n)
    chain = Schedule(betas)
    vp = DiscreteVP(chain.alpha_bar)
    eps = gaussian_eps(vp, 0.3, 0.5)
    x1 = _prior((4, 3, 4, 4))
    scheduler = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=n, trained_betas=betas.numpy(), solver_order=order,
        solver_type="bh2", predict_x0=True, lower_order_final=True, prediction_type="epsilon",
        timestep_spacing="linspace", final_sigmas_type="sigma_min")
    scheduler.alphas_cumprod = chain.alpha_bar.clone()  # float64, as ours
    scheduler.set_timesteps(steps)
    scheduler.sigmas = scheduler.sigmas.double()
    x = x1.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(eps(x, (t.double() + 1) / n), t, x).prev_sample
    ts = torch.cat([(scheduler.timesteps.double() + 1) / n, torch.tensor([1 / n]).double()])
    ours, nfe = unipc_on(eps, vp, x1, ts, order=order)
    assert nfe == steps
    assert torch.allclose(ours, x, rtol=0, atol=1e-7)


@pytest.mark.parametrize("spec", [{"solver": "ddim", "nfe": 8}, {"solver": "dpmpp_2m", "nfe": 8},
                                  {"solver": "unipc", "nfe": 8},
                                  {"solver": "dpm_solver_3", "nfe": 9},
                                  {"solver": "dopri5", "rtol": 1e-5, "atol": 1e-5}])
def test_clip_keeps_a_ddpm_solve_in_its_data_range(spec):
    """``clip`` (default for SRDiff and SR3) clips the data prediction to [-1, 1] as their
    ancestral chain does, for every solver (the noise-prediction ones on the flow the clipped
    prediction implies): data at 3 lands near 1, not at 3."""
    vp = DiscreteVP(Schedule(cosine_betas(100)).alpha_bar)
    eps = gaussian_eps(vp, 3.0, 0.1)
    x1 = _prior((16, 1, 2, 2))
    free = make_solver({**spec, "t_end": 0.01})(eps, vp, x1)[0]
    clipped = make_solver({**spec, "t_end": 0.01, "clip": True})(eps, vp, x1)[0]
    assert float(free.mean()) == pytest.approx(3.0, abs=0.2)
    assert float(clipped.max()) < 1.1 and float(clipped.mean()) > 0.8


def test_clip_is_the_release_clipping_inside_each_data_prediction_solver():
    """The wrapper gives the data-prediction solvers exactly the clamped x0: DDIM (eta 0) on
    a clipped model equals one step-by-step DDIM that clamps x0 itself."""
    vp = DiscreteVP(Schedule(cosine_betas(100)).alpha_bar)
    eps = gaussian_eps(vp, 3.0, 0.1)
    x1 = _prior((16, 1, 2, 2))
    ours = make_solver({"solver": "ddim", "nfe": 6, "t_end": 0.01, "clip": True})(eps, vp, x1)[0]
    ts = time_grid(DEFAULT_GRID["ddim"], vp, 6, 0.01)
    z = x1
    for t, t_next in zip(ts[:-1], ts[1:]):
        a, s = float(vp.alpha_bar(t)) ** 0.5, (1 - float(vp.alpha_bar(t))) ** 0.5
        a_n, s_n = float(vp.alpha_bar(t_next)) ** 0.5, (1 - float(vp.alpha_bar(t_next))) ** 0.5
        e = eps(z, t)
        x0 = ((z - s * e) / a).clamp(-1, 1)
        z = a_n * x0 + s_n * (z - a * x0) / s
    assert torch.allclose(ours, z, rtol=0, atol=1e-12)
