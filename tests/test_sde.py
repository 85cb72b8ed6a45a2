"""The conditional SDE and the parametrizations against closed forms (paper eqs. 5-18)."""
import math

import numpy as np
import pytest
import torch

from ecdp.parametrization import Parametrization, gamma_k, select_k
from ecdp.sde import ConditionalVPSDE, estimate_sigma


def test_alpha_bar_closed_form():
    sde = ConditionalVPSDE(0.1, 20.0, 0.2)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    expected = torch.exp(-(0.1 * t + 0.5 * 19.9 * t**2))
    assert torch.allclose(sde.alpha_bar(t), expected)
    assert sde.alpha_bar(1.0) == pytest.approx(4.3e-5, rel=0.05)  # docs/method.md: 4.3e-5
    assert sde.beta(0.5) == pytest.approx(10.05)


@pytest.mark.parametrize("t", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_proposition_1_mean_and_variance_preserved(t):
    """x0 | y ~ N(mu, sigma^2) => x_t | y ~ N(mu, sigma^2) for every t (1e4 samples)."""
    sigma = 0.2
    sde = ConditionalVPSDE(0.1, 20.0, sigma)
    g = torch.Generator().manual_seed(0)
    mu = torch.linspace(-0.5, 0.5, 10_000).reshape(1, 1, 100, 100)
    x0 = mu + sigma * torch.randn(mu.shape, generator=g)
    eps = torch.randn(mu.shape, generator=g)
    xt = sde.perturb(x0, mu, torch.tensor([t]), eps)
    residual = xt - mu
    assert abs(residual.mean().item()) < 3 * sigma / 100
    assert residual.std().item() == pytest.approx(sigma, rel=0.02)


def test_marginal_matches_transition_formula():
    sde = ConditionalVPSDE(0.1, 20.0, 0.3)
    x0, mu = torch.full((2, 3, 4, 4), 0.8), torch.full((2, 3, 4, 4), 0.5)
    t = torch.tensor([0.2, 0.7])
    mean, std = sde.marginal(x0, mu, t)
    a = sde.alpha_bar(t).sqrt()
    assert torch.allclose(mean[:, 0, 0, 0], a * 0.8 + (1 - a) * 0.5)
    assert torch.allclose(std.flatten(), 0.3 * (1 - a**2).sqrt())


def test_prior_sample_statistics_and_generator():
    sde = ConditionalVPSDE(sigma=0.25)
    mu = torch.full((1, 3, 100, 100), 0.4)
    a = sde.prior_sample(mu, torch.Generator().manual_seed(3))
    b = sde.prior_sample(mu, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.mean().item() == pytest.approx(0.4, abs=0.01)
    assert a.std().item() == pytest.approx(0.25, rel=0.02)


def test_sde_validates_arguments():
    with pytest.raises(ValueError, match="sigma"):
        ConditionalVPSDE(sigma=0)
    with pytest.raises(ValueError, match="beta_min"):
        ConditionalVPSDE(20, 0.1)


def test_estimate_sigma_of_constant_image_is_zero_and_of_noise_is_positive():
    flat = np.full((64, 64, 3), 120, np.uint8)
    assert estimate_sigma([flat], 4) == pytest.approx(0.0, abs=1e-6)
    noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    assert 0.1 < estimate_sigma([noise], 4) < 0.35


def test_gamma_k_limits_and_k1_is_alpha_bar():
    ab = torch.tensor([0.0, 0.3, 1.0])
    assert torch.allclose(gamma_k(ab, 1.0), ab)
    assert gamma_k(ab, 5.0)[0] == 0 and gamma_k(ab, 5.0)[-1] == 1
    assert gamma_k(torch.tensor(0.3), 2.0) > gamma_k(torch.tensor(0.3), 1.0)


@pytest.mark.parametrize("kind,k", [("eps", 1.0), ("x0", 1.0), ("hybrid", 0.1), ("hybrid", 1.0),
                                    ("hybrid", 10.0)])
def test_exact_heads_give_exact_score(kind, k):
    """Heads equal to the true eps and z0 give the transition score -eps / (sigma s_t)."""
    sde = ConditionalVPSDE(sigma=0.2)
    p = Parametrization(kind, k)
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(4, 3, 8, 8, generator=g)
    eps = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0.05, 0.3, 0.6, 0.95])
    a_t, s_t = sde.coefficients(t, z0)
    z_t = a_t * z0 + s_t * eps
    eps_hat = p.eps_hat(eps, z0, z_t, a_t, s_t)
    assert torch.allclose(eps_hat, eps, atol=1e-4)
    assert torch.allclose(p.z0_hat(eps_hat, z_t, a_t, s_t), z0, atol=1e-4)
    mu = torch.zeros_like(z0)
    x_t = mu + sde.sigma * z_t
    x0 = mu + sde.sigma * z0
    exact = -(x_t - sde.marginal(x0, mu, t)[0]) / sde.marginal(x0, mu, t)[1] ** 2
    assert torch.allclose(p.score(eps_hat, s_t, sde.sigma), exact, rtol=1e-3, atol=1e-3)


def test_hybrid_score_is_gamma_mix_of_eq_14_and_15():
    sde = ConditionalVPSDE(sigma=0.3)
    g = torch.Generator().manual_seed(2)
    eps_head, z0_head, z_t = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    t = torch.tensor([0.2, 0.8])
    a_t, s_t = sde.coefficients(t, z_t)
    score = {kind: Parametrization(kind, 2.0).score(
        Parametrization(kind, 2.0).eps_hat(eps_head, z0_head, z_t, a_t, s_t), s_t, 0.3)
        for kind in ("eps", "x0", "hybrid")}
    gamma = gamma_k(a_t**2, 2.0)
    assert torch.allclose(score["hybrid"], gamma * score["eps"] + (1 - gamma) * score["x0"],
                          atol=1e-5)


def test_select_k_recovers_the_minimum_variance_mix():
    """x0-head error variance r times the eps head's: the minimum-variance mix is k = r."""
    sde = ConditionalVPSDE(sigma=0.2)
    g = torch.Generator().manual_seed(0)
    heads = []
    for t_value in torch.linspace(0.05, 0.95, 19).tolist():
        z0 = torch.randn(1, 3, 32, 32, generator=g)
        eps = torch.randn(1, 3, 32, 32, generator=g)
        t = torch.tensor([t_value])
        a_t, s_t = sde.coefficients(t, z0)
        z_t = a_t * z0 + s_t * eps
        eps_head = eps + 0.1 * torch.randn(z0.shape, generator=g)
        z0_head = z0 + 0.1 * math.sqrt(4.0) * torch.randn(z0.shape, generator=g)
        heads.append((eps_head, z0_head, z_t, z0, a_t, s_t))
    best, errors = select_k(heads, torch.logspace(-2, 2, 33))
    assert best == pytest.approx(4.0, rel=0.35)
    assert len(errors) == 33


def test_parametrization_rejects_bad_values():
    with pytest.raises(ValueError, match="parametrization"):
        Parametrization("v")
    with pytest.raises(ValueError, match="k must be positive"):
        Parametrization("hybrid", 0)
