"""Samplers with an exact score (Gaussian data, no network), solver orders, errors, adjoint."""
import pytest
import torch

from ecdp.samplers import (RELEASED_SAMPLING, SamplerError, make_solver, probability_flow_sample,
                           reverse_sde_sample, solve_in_x)
from ecdp.sampling import merge_sampling
from ecdp.sde import ConditionalVPSDE

M, S = 0.3, 0.2  # data: x0 ~ N(M, S^2), mu = 0


def gaussian_score(sde, m=M, s=S, mu=0.0):
    """Exact score of p_t(x | y) for x0 ~ N(m, s^2), by eq. (9): mean a m + (1 - a) mu."""
    def score(x, t):
        ab = sde.alpha_bar(t)
        mean = ab**0.5 * m + (1 - ab**0.5) * mu
        return -(x - mean) / (ab * s * s + sde.sigma**2 * (1 - ab))
    return score


def _prior(sde, n=100, seed=0, dtype=torch.float32, mu=0.0):
    mu = torch.full((1, 1, n, n), mu, dtype=dtype)
    return mu, sde.prior_sample(mu, torch.Generator().manual_seed(seed))


def test_probability_flow_matched_sigma_reproduces_data_at_released_tolerance():
    """mu(y) = data mean and sigma = data std (the design point of eq. 5, Proposition 1): dopri5
    at the released rtol = atol = 1e-3 maps the prior to N(M, S^2)."""
    sde = ConditionalVPSDE(sigma=S)
    mu, x1 = _prior(sde, mu=M)
    x0, nfe = probability_flow_sample(gaussian_score(sde, mu=M), sde, mu, x1)
    assert x0.mean().item() == pytest.approx(M, abs=0.01)
    assert x0.std().item() == pytest.approx(S, rel=0.02)
    assert 5 <= nfe < 100


def test_probability_flow_mismatched_mean_and_sigma_tight_tolerance():
    """mu(y) = 0 and sigma = 0.5 != data std: the flow must move mean and scale; 1e-5 is within
    2% (the tolerances apply to z = (x - mu) / sigma, as released; a tighter one costs more)."""
    sde = ConditionalVPSDE(sigma=0.5)
    mu, x1 = _prior(sde)
    x0, nfe = probability_flow_sample(gaussian_score(sde), sde, mu, x1, rtol=1e-5, atol=1e-5)
    assert x0.mean().item() == pytest.approx(M, abs=0.01)
    assert x0.std().item() == pytest.approx(S, rel=0.02)
    loose = probability_flow_sample(gaussian_score(sde), sde, mu, x1)[1]
    assert nfe > loose  # tighter tolerance costs more evaluations


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_fixed_step_solvers_converge_at_their_order(method, order):
    sde = ConditionalVPSDE(sigma=0.5)
    mu, x1 = _prior(sde, n=8, dtype=torch.float64)
    score = gaussian_score(sde)
    ref, _ = probability_flow_sample(score, sde, mu, x1, rtol=1e-11, atol=1e-11)
    per_step = {"euler": 1, "heun": 2, "rk4": 4}[method]
    errors = []
    for steps in (32, 64):
        x, nfe = probability_flow_sample(score, sde, mu, x1, method=method, nfe=steps * per_step)
        assert nfe == steps * per_step
        errors.append((x - ref).abs().max().item())
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.25)


def test_reverse_sde_reproduces_data_distribution():
    sde = ConditionalVPSDE(sigma=0.5)
    mu, x1 = _prior(sde)
    g = torch.Generator().manual_seed(1)
    x0, nfe = reverse_sde_sample(gaussian_score(sde), sde, mu, x1, steps=400, generator=g)
    assert nfe == 400
    assert x0.mean().item() == pytest.approx(M, abs=0.01)
    assert x0.std().item() == pytest.approx(S, rel=0.03)


def test_misspelt_options_and_unknown_solvers_are_errors():
    sde = ConditionalVPSDE(sigma=S)
    mu, x1 = _prior(sde, n=4)
    with pytest.raises(ValueError, match="max_numsteps"):
        probability_flow_sample(gaussian_score(sde), sde, mu, x1, options={"max_numsteps": 10})
    with pytest.raises(ValueError, match="unknown solver 'dopri'"):
        probability_flow_sample(gaussian_score(sde), sde, mu, x1, method="dopri")
    with pytest.raises(ValueError, match="nfe"):
        probability_flow_sample(gaussian_score(sde), sde, mu, x1, method="rk4")


def test_solver_failures_name_the_image_and_time():
    sde = ConditionalVPSDE(sigma=S)
    mu, x1 = _prior(sde, n=4)

    def exploding(x, t):
        return torch.full_like(x, float("nan")) if t < 0.5 else -x

    with pytest.raises(SamplerError, match=r"image 'img_7'.*non-finite.*t = 0\.[0-4]"):
        probability_flow_sample(exploding, sde, mu, x1, image="img_7")

    def stiff(x, t):
        return -x * 1e12 * (1 - t)

    with pytest.raises(SamplerError, match=r"image 'stiff'.*failed at t = "):
        probability_flow_sample(stiff, sde, mu, x1, image="stiff",
                                options={"max_num_steps": 50})


class TinyScore(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.scale = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, x, t):
        return -self.scale * x + 0.1 * torch.tanh(self.conv(x)) * (1 + t)


def test_adjoint_gradients_equal_direct_backprop():
    sde = ConditionalVPSDE(sigma=S)
    mu = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    x1 = sde.prior_sample(mu, torch.Generator().manual_seed(0))
    net = TinyScore().double()
    grads = {}
    for adjoint in (False, True):
        net.zero_grad()
        x0, _ = probability_flow_sample(net, sde, mu, x1, rtol=1e-8, atol=1e-8, adjoint=adjoint,
                                        adjoint_params=tuple(net.parameters()) if adjoint else None)
        (x0**2).sum().backward()
        grads[adjoint] = torch.cat([p.grad.flatten() for p in net.parameters()])
    rel = (grads[True] - grads[False]).norm() / grads[False].norm()
    assert grads[False].norm() > 0 and rel < 1e-3


def test_adjoint_without_params_is_an_error_not_silent_zero():
    sde = ConditionalVPSDE(sigma=S)
    mu, x1 = _prior(sde, n=4)
    with pytest.raises(ValueError, match="adjoint_params"):
        probability_flow_sample(TinyScore(), sde, mu, x1, adjoint=True)


def test_adaptive_solver_never_evaluates_outside_the_time_interval():
    """torchdiffeq steps past the final time and probes a first step that can be huge when the
    drift at t = 1 is ~0 (a matched prior); the score must only ever see t in [t_end, 1]."""
    sde = ConditionalVPSDE(sigma=S)
    mu, x1 = _prior(sde, n=8, mu=M)
    seen = []
    exact = gaussian_score(sde, mu=M)

    def score(x, t):
        seen.append(float(t))
        return exact(x, t)

    for tol in (1e-3, 1e-6):
        probability_flow_sample(score, sde, mu, x1, rtol=tol, atol=tol)
    assert min(seen) >= float(torch.tensor(1 / 3000)) and max(seen) <= 1.0


@pytest.mark.parametrize("solver, budgets, order", [("dpmpp_2m", (64, 128), 2),
                                                    ("dpm_solver_3", (96, 192), 3)])
def test_dpm_solvers_converge_at_their_order(solver, budgets, order):
    """DPM-Solver++(2M) and DPM-Solver-3 in logSNR time on the exact-Gaussian score, against a
    1e-12 dopri5 solve: doubling the NFE divides the error by 2^order (measured 3.98 and 9.05)."""
    sde = ConditionalVPSDE(sigma=0.5)
    mu, x1 = _prior(sde, n=8, dtype=torch.float64)
    score = gaussian_score(sde)
    ref, _ = probability_flow_sample(score, sde, mu, x1, rtol=1e-12, atol=1e-12)
    errors = []
    for nfe in budgets:
        x, used = solve_in_x(make_solver({"solver": solver, "nfe": nfe, "grid": "logsnr"}),
                             score, sde, mu, x1)
        assert used == nfe
        errors.append((x - ref).abs().max().item())
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.25)


@pytest.mark.parametrize("nfe, orders", [(9, [3, 3, 3]), (10, [1, 3, 3, 3]), (11, [2, 3, 3, 3])])
def test_dpm_solver_3_spends_exactly_its_budget(nfe, orders):
    from ecdp.samplers import _dpm_solver_orders
    assert _dpm_solver_orders(nfe) == orders
    calls = []
    sde = ConditionalVPSDE(sigma=S)
    mu, x1 = _prior(sde, n=4, mu=M)
    exact = gaussian_score(sde, mu=M)

    def score(x, t):
        calls.append(float(t))
        return exact(x, t)

    _, used = solve_in_x(make_solver({"solver": "dpm_solver_3", "nfe": nfe}), score, sde, mu, x1)
    assert used == len(calls) == nfe
    assert min(calls) >= 1 / 3000 and max(calls) <= 1.0  # never at t_end: no final denoising


def test_fast_solvers_reach_the_matched_gaussian_in_few_evaluations():
    """At the design point (mu = data mean, sigma = data std) 12 evaluations of either
    DPM-Solver land within 1% of the data mean and 4% of its std."""
    sde = ConditionalVPSDE(sigma=S)
    mu, x1 = _prior(sde, mu=M)
    for solver in ("dpmpp_2m", "dpm_solver_3"):
        x0, nfe = solve_in_x(make_solver({"solver": solver, "nfe": 12}),
                             gaussian_score(sde, mu=M), sde, mu, x1)
        assert nfe == 12
        assert x0.mean().item() == pytest.approx(M, rel=0.01)
        assert x0.std().item() == pytest.approx(S, rel=0.04)


def test_make_solver_checks_every_key_once():
    assert make_solver().func.__name__ == "probability_flow_z"  # the released solve
    with pytest.raises(ValueError, match="unknown solver 'dpm'"):
        make_solver({"solver": "dpm"})
    with pytest.raises(ValueError, match=r"dpmpp_2m does not take \['rtol'\]"):
        make_solver({"solver": "dpmpp_2m", "nfe": 8, "rtol": 1e-3})
    with pytest.raises(ValueError, match="needs an NFE budget"):
        make_solver({"solver": "dpm_solver_3"})
    with pytest.raises(ValueError, match=r"euler does not take \['method'\]"):
        make_solver({"solver": "euler", "nfe": 4, "method": "euler"})
    with pytest.raises(ValueError, match="needs nfe >= 4"):
        make_solver({"solver": "rk4", "nfe": 2})


@pytest.mark.parametrize("spec, message", [
    ({"rtol": -1e-3}, r"sampling.ecdp.rtol: must be > 0, got -0.001"),
    ({"atol": 0}, r"sampling.ecdp.atol: must be > 0"),
    ({"t_end": 1.5}, r"sampling.ecdp.t_end: must lie in \(0, 1\)"),
    ({"solver": "euler", "nfe": "4"}, r"sampling.ecdp.nfe: expected a number, got '4'"),
    ({"solver": "euler", "nfe": 2.5}, r"sampling.ecdp.nfe: must be a whole number"),
    ({"solver": "dpmpp_2m", "nfe": 8, "batch": 0}, r"sampling.ecdp.batch: must be a whole"),
    ({"temperature": -1}, r"sampling.ecdp.temperature: must be a number >= 0"),
    ({"solver": "reverse_sde", "steps": 4, "batch": 2}, r"batch: 2 .* noise would depend"),
])
def test_every_sampling_value_is_checked_naming_its_key(spec, message):
    """Before: negative dopri5 tolerances ran and were tabled; strings from --config reached
    the solver (TypeError in every sampling job)."""
    from ecdp.sampling import parse_sampling

    with pytest.raises(ValueError, match=message):
        parse_sampling(spec, where="sampling.ecdp")


def test_ddpm_sampling_takes_steps_only():
    from ecdp.sampling import parse_sampling

    assert parse_sampling({"steps": 4}, family="ddpm").nfe == 4
    assert parse_sampling(None, family="ddpm").record() == {"solver": "ancestral"}
    with pytest.raises(ValueError, match=r"sampling.srdiff.steps: must be a whole number >= 1"):
        parse_sampling({"steps": 0}, family="ddpm", where="sampling.srdiff")
    with pytest.raises(ValueError, match=r"takes only 'steps', not \['nfe'\]"):
        parse_sampling({"nfe": 4}, family="ddpm")


def test_an_override_naming_a_solver_replaces_the_solver_spec():
    defaults = {**RELEASED_SAMPLING, "temperature": 0.8, "channels_last": True}
    assert merge_sampling(defaults, {"solver": "dpmpp_2m", "nfe": 10}) == {
        "solver": "dpmpp_2m", "nfe": 10, "temperature": 0.8, "channels_last": True}
    assert merge_sampling(defaults, {"rtol": 1e-4})["atol"] == 1e-3
