"""The discrete DDPM of the baselines: schedules in closed form, the sampler on exact Gaussian eps."""
import math

import pytest
import torch

from baselines.ddpm import Schedule, ancestral_sample, cosine_betas, linear_betas, respace


def test_linear_schedule_alpha_bar_closed_form():
    s = Schedule(linear_betas(2000, 1e-6, 1e-2))
    betas = torch.linspace(1e-6, 1e-2, 2000, dtype=torch.float64)
    for t in (0, 1, 999, 1999):
        assert s.alpha_bar[t].item() == pytest.approx(torch.prod(1 - betas[: t + 1]).item(),
                                                      rel=1e-12)
    assert s.betas[0].item() == pytest.approx(1e-6) and s.betas[-1].item() == pytest.approx(1e-2)


def test_cosine_schedule_alpha_bar_is_the_cosine():
    T, s = 100, 0.008
    sched = Schedule(cosine_betas(T, s))
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 50, 90):
        assert sched.alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert sched.betas.max().item() <= 0.999


def test_posterior_variance_closed_form():
    sched = Schedule(linear_betas(10, 0.01, 0.2))
    t = 5
    ab, prev = sched.alpha_bar[t], sched.alpha_bar[t - 1]
    assert sched.posterior_variance[t].item() == pytest.approx(
        (sched.betas[t] * (1 - prev) / (1 - ab)).item())
    assert sched.posterior_variance[0].item() == 0


def _exact_eps(schedule, m, s):
    def eps_fn(x, t):
        ab = schedule.alpha_bar.to(x.dtype)[t].reshape(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * m) / (ab * s * s + 1 - ab)
    return eps_fn


def _predicted_std(schedule, m, s):
    """Std of the ancestral chain's output for x0 ~ N(m, s^2) and exact eps, in closed form:
    every step is x_{t-1} = A_t x_t + b_t + sqrt(posterior var) z with x0_hat linear in x_t."""
    v = 1.0
    for t in reversed(range(schedule.steps)):
        ab = schedule.alpha_bar[t].item()
        gain = ab**0.5 * s * s / (ab * s * s + 1 - ab)  # d x0_hat / d x_t
        a_t = schedule.coef_x0[t].item() * gain + schedule.coef_xt[t].item()
        v = a_t**2 * v + schedule.posterior_variance[t].item()
    return v**0.5


@pytest.mark.parametrize("name,schedule", [
    ("SR3, linear 1e-6..1e-2, T=2000", Schedule(linear_betas(2000, 1e-6, 1e-2))),
    ("cosine, T=1000", Schedule(cosine_betas(1000))),
    ("SRDiff, cosine, T=100", Schedule(cosine_betas(100))),
])
def test_ancestral_sampler_with_exact_eps_matches_closed_form(name, schedule):
    """x0 ~ N(m, s^2) with the exact eps: the sample mean is m, and the sample std is the chain's
    closed-form std. With the posterior variance (beta tilde) the chain slightly under-disperses:
    within 2% of s at T = 1000-2000, about 8% low at SRDiff's T = 100 (a DDPM property)."""
    m, s = 0.3, 0.2
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(1, 1, 100, 100, generator=g, dtype=torch.float64)
    x0, nfe = ancestral_sample(_exact_eps(schedule, m, s), schedule, x_T, generator=g)
    assert nfe == schedule.steps
    assert x0.mean().item() == pytest.approx(m, abs=0.01)
    predicted = _predicted_std(schedule, m, s)
    assert x0.std().item() == pytest.approx(predicted, rel=0.02)
    if schedule.steps >= 1000:
        assert x0.std().item() == pytest.approx(s, rel=0.02)
    else:
        assert 0.85 * s < predicted < 0.95 * s


def test_respaced_sampler_uses_fewer_steps():
    schedule = Schedule(linear_betas(2000, 1e-6, 1e-2))
    m, s = 0.3, 0.2
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(1, 1, 100, 100, generator=g, dtype=torch.float64)
    x0, nfe = ancestral_sample(_exact_eps(schedule, m, s), schedule, x_T, generator=g, steps=200)
    assert nfe == 200
    assert x0.mean().item() == pytest.approx(m, abs=0.01)
    sub, kept = respace(schedule, 200)
    assert kept[0] == 0 and kept[-1] == 1999
    assert torch.allclose(sub.alpha_bar, schedule.alpha_bar[kept])
    # the sub-chain's closed form, with the sub-chain's own alpha_bar for the exact eps
    assert x0.std().item() == pytest.approx(_predicted_std(sub, m, s), rel=0.02)


def test_ancestral_sampler_is_differentiable_with_checkpointing():
    sched = Schedule(cosine_betas(8))
    w = torch.tensor(0.5, requires_grad=True)
    x_T = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    grads = []
    for ckpt in (False, True):
        w.grad = None
        x0, _ = ancestral_sample(lambda x, t: w * x, sched, x_T,
                                 generator=torch.Generator().manual_seed(1), checkpoint=ckpt)
        x0.pow(2).sum().backward()
        grads.append(w.grad.clone())
    assert grads[0] != 0 and torch.allclose(grads[0], grads[1])
