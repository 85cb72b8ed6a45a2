"""Samplers of the probability flow (eq. 12) and the reverse SDE, in z = (x - mu) / sigma.

In z the conditional VP-SDE is the standard one, and the probability flow reads

    dz/dt = -1/2 beta(t) (z - eps_hat(z, t) / s_t),        t from 1 to t_end.

Every solver has one signature (k-diffusion's idea), so models take a solver, never flags:

    z0, nfe = solver(eps_fn, sde, z1, generator=None, adjoint_params=None, image="batch")

``eps_fn(z_t, t) -> eps_hat`` (t a 0-dim tensor); NFE counts network evaluations. A solver is
built once by ``make_solver`` from a ``Sampling`` (``ecdp.sampling``: the one parser and key
check of a sampling config); ``SOLVERS`` says what each takes. The solvers are

- ``dopri5`` (and torchdiffeq's other adaptive Runge-Kutta methods): the released solve. Time
  runs in units tau = ``time_scale`` t (released: 300, from tau = 300 down to 300 t_end = 0.1),
  the end time is torchdiffeq's ``jump_t``, rtol = atol = 1e-3 apply to z. Both details
  matter: tolerances on x are sigma times looser, and torchdiffeq's first-step heuristic depends
  on the time units. ``adjoint: true`` backpropagates with ``odeint_adjoint`` (memory
  independent of the number of steps).
- ``euler``, ``heun``, ``rk4``: torchdiffeq on a grid uniform in t, with an NFE budget ``nfe``.
- ``dpmpp_2m``: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): the data
  prediction z0_hat = (z - s_t eps_hat) / a_t, multistep, steps uniform in lambda = log(a_t / s_t),
  one evaluation per step, first step first order.
- ``dpm_solver_3``: singlestep DPM-Solver-3 (Lu et al., NeurIPS 2022, Algorithm 2 with
  r1 = 1/3, r2 = 2/3) on the noise prediction, lambda-uniform; an NFE budget not divisible by
  3 ends with a second- and/or first-order step (the paper's "DPM-Solver-fast" allocation).
- ``reverse_sde``: Euler-Maruyama on the reverse-time SDE with ``steps`` fixed steps and per-step
  noise from the generator (Table 7's "w/o prob. flow"); ``checkpoint: true`` recomputes each
  step in the backward pass (memory: one step's activations at a time).

The probability-flow solvers end at t_end (no final denoising step, as released). Nothing here
decorates itself with ``torch.no_grad``: the caller chooses (L_IQ needs gradients).
``probability_flow_sample`` / ``reverse_sde_sample`` run the same solvers for any x-space score.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.utils.checkpoint
from torchdiffeq import odeint, odeint_adjoint

from .rng import randn_like
from .sde import ConditionalVPSDE
from .timesteps import GRIDS, time_grid

__all__ = ["SamplerError", "FIXED_STEP_EVALS", "ADAPTIVE", "RELEASED_TIME_SCALE",
           "RELEASED_SAMPLING", "SOLVERS", "Solver", "check_options", "make_solver",
           "probability_flow_z", "DEFAULT_GRID", "stochastic", "denoised", "clipped", "ddim",
           "dpm_solver_pp_2m", "dpm_solver_3", "unipc", "unipc_on", "reverse_sde_z", "probability_flow_sample",
           "reverse_sde_sample", "solve_in_x"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
FIXED_STEP_EVALS = {"euler": 1, "midpoint": 2, "heun": 2, "heun2": 2, "heun3": 3, "rk4": 4}
_ADAPTIVE_OPTIONS = {"first_step", "safety", "ifactor", "dfactor", "max_num_steps", "min_step",
                     "max_step", "step_t", "jump_t", "norm"}
RELEASED_TIME_SCALE = 300.0  # the release's solver time units: tau = 300 t
# The released evaluation solve (Yuan-Yutao/ECDP lib/model/diffusion.py, use_ode).
# Each fixed-step solver's time grid (ecdp.timesteps), chosen by measured error on the exact
# Gaussian (docs/sampling.md, "Time grids"); ``grid:`` in a sampling config overrides it.
DEFAULT_GRID = {"ddim": "time_quadratic", "dpmpp_2m": "time_quadratic",
                "dpm_solver_3": "time_quadratic", "unipc": "logsnr"}
RELEASED_SAMPLING = {"solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "t_end": 1 / 3000,
                     "time_scale": RELEASED_TIME_SCALE}


class SamplerError(RuntimeError):
    """A solve that failed (step-size underflow, non-finite values); names the image and time."""


def _check_t_end(t_end: float) -> None:
    if not 0 < t_end < 1:
        raise ValueError(f"t_end must lie in (0, 1), got {t_end}")


def _finite(z: torch.Tensor, what: str, image: str, t: float, nfe: int) -> torch.Tensor:
    if not torch.isfinite(z).all():
        raise SamplerError(f"{what} for image {image!r}: non-finite values at t = {t:.6g} "
                           f"(after {nfe} evaluations)")
    return z


# ---------------------------------------------------------------------- torchdiffeq (released)

class _ProbabilityFlowZ(torch.nn.Module):
    """dz/dtau of the probability flow; counts evaluations and stops at the first non-finite one."""

    def __init__(self, eps_fn: EpsFn, sde: ConditionalVPSDE, time_scale: float, t_end: float,
                 image: str):
        super().__init__()
        self.eps_fn, self.sde, self.time_scale = eps_fn, sde, time_scale
        self.t_end, self.image, self.nfe, self.last_t = t_end, image, 0, 1.0

    def forward(self, tau, z):
        self.nfe += 1
        # torchdiffeq's initial step-size probe may ask for a time past the interval (t < 0,
        # where alpha_bar > 1); the probe only sizes the first step, so evaluate it at the
        # nearest valid time. Accepted steps stay inside [t_end, 1] (jump_t lands on t_end).
        t = (tau / self.time_scale).clamp(self.t_end, 1.0)
        self.last_t = float(t.detach())
        _, s_t = self.sde.coefficients(t, z)
        dz = -0.5 * self.sde.beta(t) * (z - self.eps_fn(z, t) / s_t) / self.time_scale
        return _finite(dz, "probability flow", self.image, self.last_t, self.nfe)


def _torchdiffeq_options(method: str, options: dict | None, nfe: int | None):
    options = dict(options or {})
    if method in ADAPTIVE:
        unknown = set(options) - _ADAPTIVE_OPTIONS
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for {method}; allowed: "
                             f"{sorted(_ADAPTIVE_OPTIONS)}")
        if nfe is not None:
            raise ValueError(f"an NFE budget applies to fixed-step solvers, not {method}")
        options.setdefault("max_num_steps", 5000)
        return method, options
    if method not in FIXED_STEP_EVALS:
        raise ValueError(f"unknown solver {method!r}; choose one of {', '.join(SOLVERS)}")
    if options:
        raise ValueError(f"fixed-step solver {method} takes an NFE budget, not options "
                         f"{sorted(options)}")
    if nfe is None or nfe < FIXED_STEP_EVALS[method]:
        raise ValueError(f"fixed-step solver {method} needs nfe >= {FIXED_STEP_EVALS[method]}")
    steps = nfe // FIXED_STEP_EVALS[method]

    def grid(func, y0, t):  # uniform in t between the ends torchdiffeq asks for (either way)
        g = torch.linspace(float(t[0]), float(t[-1]), steps + 1, dtype=t.dtype, device=t.device)
        g[0], g[-1] = t[0], t[-1]
        return g

    return ("heun2" if method == "heun" else method), {"grid_constructor": grid}


def probability_flow_z(eps_fn: EpsFn, sde: ConditionalVPSDE, z1: torch.Tensor, *,
                       rtol: float = 1e-3, atol: float = 1e-3, method: str = "dopri5",
                       t_end: float = 1 / 3000, nfe: int | None = None,
                       options: dict | None = None, time_scale: float = RELEASED_TIME_SCALE,
                       adjoint: bool = False, adjoint_params=None, generator=None,
                       image: str = "batch") -> tuple[torch.Tensor, int]:
    """Solve the probability flow in z from t = 1 (state z1, e.g. N(0, I)) to t = t_end with
    torchdiffeq. The defaults are the released solve. Returns (z0, forward NFE)."""
    del generator  # deterministic
    _check_t_end(t_end)
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}")
    solver, solver_options = _torchdiffeq_options(method, options, nfe)
    drift = _ProbabilityFlowZ(eps_fn, sde, time_scale, t_end, image)
    ts = torch.tensor([time_scale, time_scale * t_end], dtype=z1.dtype, device=z1.device)
    if solver in ADAPTIVE:
        # Land exactly on the end time, as released: without it torchdiffeq's adaptive solvers
        # step past the final time and interpolate back, evaluating the score at t < 0.
        solver_options.setdefault("jump_t", ts[-1:].clone())
    kwargs = dict(rtol=rtol, atol=atol, method=solver, options=solver_options)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*Unexpected arguments.*")
            if adjoint:
                if adjoint_params is None:
                    raise ValueError("adjoint=True needs adjoint_params (the tensors to "
                                     "differentiate); without them gradients are silently zero")
                params = tuple(adjoint_params)
                zs = odeint_adjoint(drift, z1, ts, adjoint_params=params,
                                    adjoint_options=dict(solver_options), **kwargs)
            else:
                zs = odeint(drift, z1, ts, **kwargs)
    except SamplerError:
        raise
    except (AssertionError, RuntimeError, UserWarning) as err:
        raise SamplerError(f"probability flow for image {image!r} failed at t = "
                           f"{drift.last_t:.6g} after {drift.nfe} evaluations: {err}") from err
    return zs[-1], drift.nfe


# ---------------------------------------------------------------------- exponential integrators

def _a_s(sde, t) -> tuple[float, float]:
    alpha_bar = float(sde.alpha_bar(t))
    return math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)


def _evaluate(eps_fn, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return eps_fn(z, torch.as_tensor(t).to(z.dtype).to(z.device))


def _x0(eps_fn, sde, t, z) -> torch.Tensor:
    """The data prediction (z - s_t eps_hat) / a_t."""
    a, s = _a_s(sde, t)
    return (z - s * _evaluate(eps_fn, t, z)) / a


def _grid(sde, steps: int, t_end: float, grid: str | None, solver: str) -> torch.Tensor:
    _check_t_end(t_end)
    return time_grid(grid or DEFAULT_GRID[solver], sde, steps, t_end)


def ddim(eps_fn: EpsFn, sde, z1: torch.Tensor, *, nfe: int, t_end: float = 1 / 3000,
         grid: str | None = None, eta: float = 0.0, generator=None, image: str = "batch",
         adjoint_params=None) -> tuple[torch.Tensor, int]:
    """DDIM (Song et al. 2021, eq. 12) in ``nfe`` steps of one evaluation each:

        x0 = (z_i - s_i eps) / a_i,  c = eta sqrt((s_n^2 / s_i^2) (1 - a_i^2 / a_n^2)),
        z_n = a_n x0 + sqrt(s_n^2 - c^2) eps + c noise.

    eta = 0 is deterministic (DPM-Solver-1); eta = 1 on a chain's own steps is its ancestral
    sampler (the posterior variance)."""
    del adjoint_params
    ts = _grid(sde, nfe, t_end, grid, "ddim")
    z = z1
    for i in range(nfe):
        (a_i, s_i), (a_n, s_n) = _a_s(sde, ts[i]), _a_s(sde, ts[i + 1])
        eps = _evaluate(eps_fn, ts[i], z)
        x0 = (z - s_i * eps) / a_i
        c = eta * math.sqrt(max((s_n / s_i) ** 2 * (1 - (a_i / a_n) ** 2), 0.0))
        z = a_n * x0 + math.sqrt(max(s_n**2 - c**2, 0.0)) * eps
        if c > 0:
            z = z + c * randn_like(z, generator)
        _finite(z, "DDIM", image, float(ts[i + 1]), i + 1)
    return z, nfe


def dpm_solver_pp_2m(eps_fn: EpsFn, sde, z1: torch.Tensor, *, nfe: int,
                     t_end: float = 1 / 3000, grid: str | None = None, image: str = "batch",
                     adjoint_params=None, generator=None) -> tuple[torch.Tensor, int]:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), ``nfe`` steps of one
    evaluation each on the data prediction x0_i = (z_i - s_i eps_hat(z_i, t_i)) / a_i:

        h = lambda_{i+1} - lambda_i,
        step 1:  z_1 = (s_1 / s_0) z_0 - a_1 (e^-h - 1) x0_0
        then:    D = (1 + 1 / 2r) x0_i - (1 / 2r) x0_{i-1},  r = h_{i-1} / h_i,
                 z_{i+1} = (s_{i+1} / s_i) z_i - a_{i+1} (e^-h - 1) D
    """
    del adjoint_params, generator
    if nfe < 1:
        raise ValueError(f"dpmpp_2m needs nfe >= 1, got {nfe}")
    ts = _grid(sde, nfe, t_end, grid, "dpmpp_2m")
    lam = [float(sde.log_snr(t)) for t in ts]
    z, prev_x0, prev_h = z1, None, None
    for i in range(nfe):
        (_, s_i), (a_n, s_n) = _a_s(sde, ts[i]), _a_s(sde, ts[i + 1])
        h = lam[i + 1] - lam[i]
        x0 = _x0(eps_fn, sde, ts[i], z)
        if prev_x0 is None:
            d = x0
        else:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        z = (s_n / s_i) * z - a_n * math.expm1(-h) * d
        _finite(z, "DPM-Solver++(2M)", image, float(ts[i + 1]), i + 1)
        prev_x0, prev_h = x0, h
    return z, nfe


def _dpm_solver_step(eps_fn, sde, z, t, t_next, order: int):
    """One singlestep DPM-Solver step of order 1 (DDIM), 2 (r1 = 1/2) or 3 (r1, r2 = 1/3, 2/3),
    on the noise prediction: Lu et al. (2022), Algorithms 1 and 2."""
    lam, lam_next = float(sde.log_snr(t)), float(sde.log_snr(t_next))
    h = lam_next - lam
    a, _ = _a_s(sde, t)
    a_n, s_n = _a_s(sde, t_next)
    eps0 = _evaluate(eps_fn, t, z)
    if order == 1:
        return (a_n / a) * z - s_n * math.expm1(h) * eps0
    if order == 2:
        t1 = sde.t_of_log_snr(lam + 0.5 * h)
        a1, s1 = _a_s(sde, t1)
        u1 = (a1 / a) * z - s1 * math.expm1(0.5 * h) * eps0
        return (a_n / a) * z - s_n * math.expm1(h) * _evaluate(eps_fn, t1, u1)
    r1, r2 = 1 / 3, 2 / 3
    t1, t2 = sde.t_of_log_snr(lam + r1 * h), sde.t_of_log_snr(lam + r2 * h)
    (a1, s1), (a2, s2) = _a_s(sde, t1), _a_s(sde, t2)
    u1 = (a1 / a) * z - s1 * math.expm1(r1 * h) * eps0
    d1 = _evaluate(eps_fn, t1, u1) - eps0
    u2 = ((a2 / a) * z - s2 * math.expm1(r2 * h) * eps0
          - (s2 * r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1) * d1)
    d2 = _evaluate(eps_fn, t2, u2) - eps0
    return (a_n / a) * z - s_n * math.expm1(h) * eps0 - (s_n / r2) * (math.expm1(h) / h - 1) * d2


def _dpm_solver_orders(nfe: int) -> list[int]:
    """Third-order steps for an NFE budget, the remainder as one FIRST step of order 1 or 2
    (where the noise is large and the flow smooth): ending on a low-order step, as
    DPM-Solver-fast does, made the error grow with the budget on the exact Gaussian (7 NFE
    5.0e-2, 8 NFE 1.3e-1 vs 6 NFE 1.5e-2)."""
    return ([nfe % 3] if nfe % 3 else []) + [3] * (nfe // 3)


def dpm_solver_3(eps_fn: EpsFn, sde, z1: torch.Tensor, *, nfe: int,
                 t_end: float = 1 / 3000, grid: str | None = None, image: str = "batch",
                 adjoint_params=None, generator=None) -> tuple[torch.Tensor, int]:
    """Singlestep DPM-Solver-3 with an NFE budget: three evaluations per step (see
    ``_dpm_solver_orders`` for budgets that 3 does not divide)."""
    del adjoint_params, generator
    if nfe < 3:
        raise ValueError(f"dpm_solver_3 needs nfe >= 3, got {nfe}")
    orders = _dpm_solver_orders(nfe)
    ts = _grid(sde, len(orders), t_end, grid, "dpm_solver_3")
    z, used = z1, 0
    for i, order in enumerate(orders):
        z = _dpm_solver_step(eps_fn, sde, z, ts[i], ts[i + 1], order)
        used += order
        _finite(z, "DPM-Solver-3", image, float(ts[i + 1]), used)
    return z, used


def _unipc_coefficients(rs: list[float], hh: float) -> tuple[list[float], list[float]]:
    """UniPC-bh2's predictor and corrector weights (Zhao et al. 2023, "UniPC", Algorithms 2-3
    with B(h) = e^hh - 1): ``rs`` are the earlier points' (lambda_k - lambda_i) / h; the
    corrector adds the new point (r = 1). Solves R a = b, R_jk = r_k^(j-1),
    b_j = j! phi_{j+1}(hh) / B(h), phi_1 = (e^hh - 1) / hh - 1 ... (the paper's h phi_k)."""
    b_h = math.expm1(hh)
    phi, factorial, b = math.expm1(hh) / hh - 1, 1, []
    for j in range(1, len(rs) + 2):
        b.append(phi * factorial / b_h)
        factorial *= j + 1
        phi = phi / hh - 1 / factorial
    points = rs + [1.0]
    rmat = torch.tensor([[r ** j for r in points] for j in range(len(points))],
                        dtype=torch.float64)
    bvec = torch.tensor(b, dtype=torch.float64)
    if len(rs) == 0:
        predictor = []
    elif len(rs) == 1:
        predictor = [0.5]  # bh2's second-order predictor weight
    else:
        predictor = torch.linalg.solve(rmat[:-1, :-1], bvec[:-1]).tolist()
    corrector = [0.5] if len(rs) == 0 else torch.linalg.solve(rmat, bvec).tolist()
    return predictor, corrector


def unipc_on(eps_fn: EpsFn, sde, z1: torch.Tensor, ts: torch.Tensor, *, order: int = 3,
             image: str = "batch") -> tuple[torch.Tensor, int]:
    """UniPC-bh2 (multistep predictor UniP-p and corrector UniC on the data prediction) along
    the times ``ts`` (len(ts) - 1 steps, one evaluation each: the corrector reuses the next
    step's evaluation and the last step has none). Orders rise as points accumulate and fall
    over the last steps (lower order final) when there are fewer than ten steps."""
    steps = len(ts) - 1
    lam = [float(sde.log_snr(t)) for t in ts]
    z = z1
    history = [(lam[0], _x0(eps_fn, sde, ts[0], z))]
    nfe = 1
    for i in range(1, steps + 1):
        p = min(order, i, steps - i + 1) if steps < 10 else min(order, i)
        (_, s_p), (a_t, s_t) = _a_s(sde, ts[i - 1]), _a_s(sde, ts[i])
        lam_p, m_p = history[-1]
        h = lam[i] - lam_p
        hh = -h
        earlier = history[-p:-1][::-1] if p > 1 else []  # nearest first
        rs = [(lam_k - lam_p) / h for lam_k, _ in earlier]
        diffs = [(m_k - m_p) / r for (_, m_k), r in zip(earlier, rs)]
        rho_p, rho_c = _unipc_coefficients(rs, hh)
        b_h = math.expm1(hh)
        base = (s_t / s_p) * z - a_t * math.expm1(hh) * m_p
        z_pred = base - a_t * b_h * sum(r * d for r, d in zip(rho_p, diffs)) if diffs else base
        if i == steps:
            z = z_pred
        else:
            m_t = _x0(eps_fn, sde, ts[i], z_pred)
            nfe += 1
            correction = sum(r * d for r, d in zip(rho_c[:-1], diffs)) + rho_c[-1] * (m_t - m_p)
            z = base - a_t * b_h * correction
            history.append((lam[i], m_t))
            history = history[-order:]
        _finite(z, "UniPC", image, float(ts[i]), nfe)
    return z, nfe


def unipc(eps_fn: EpsFn, sde, z1: torch.Tensor, *, nfe: int, t_end: float = 1 / 3000,
          grid: str | None = None, order: int = 3, image: str = "batch", adjoint_params=None,
          generator=None) -> tuple[torch.Tensor, int]:
    """UniPC-bh2 with ``nfe`` evaluations (``unipc_on`` on a grid of nfe steps)."""
    del adjoint_params, generator
    if order not in (1, 2, 3):
        raise ValueError(f"unipc order must be 1, 2 or 3, got {order}")
    return unipc_on(eps_fn, sde, z1, _grid(sde, nfe, t_end, grid, "unipc"), order=order,
                    image=image)


# ---------------------------------------------------------------------- reverse SDE

def reverse_sde_z(eps_fn: EpsFn, sde: ConditionalVPSDE, z1: torch.Tensor, *, steps: int,
                  generator: torch.Generator | None = None, t_end: float = 1 / 3000,
                  checkpoint: bool = False, image: str = "batch",
                  adjoint_params=None) -> tuple[torch.Tensor, int]:
    """Euler-Maruyama on dz = [-beta z / 2 + beta eps_hat / s_t] dt + sqrt(beta) dw, t from 1
    to t_end in ``steps`` uniform steps; no noise on the last step. Returns (z0, steps)."""
    del adjoint_params
    _check_t_end(t_end)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ts = torch.linspace(1.0, t_end, steps + 1, dtype=z1.dtype, device=z1.device)
    noises = [randn_like(z1, generator) if i < steps - 1 else torch.zeros_like(z1)
              for i in range(steps)]

    def step(z, t, dt, noise):
        _, s_t = sde.coefficients(t, z)
        beta = sde.beta(t)
        drift = -0.5 * beta * z + beta * eps_fn(z, t) / s_t
        return z - drift * dt + torch.sqrt(beta * dt) * noise

    z = z1
    for i in range(steps):
        t, dt = ts[i], float(ts[i] - ts[i + 1])
        if checkpoint and torch.is_grad_enabled():
            z = torch.utils.checkpoint.checkpoint(step, z, t, dt, noises[i], use_reentrant=False)
        else:
            z = step(z, t, dt, noises[i])
        _finite(z, "reverse SDE", image, float(ts[i + 1]), i + 1)
    return z, steps


# ---------------------------------------------------------------------- the solver table

@dataclass(frozen=True)
class Solver:
    """What a solver is: its function (the one signature above), the options it takes (and
    must have), and how it spends network evaluations."""

    fn: Callable[..., tuple[torch.Tensor, int]]
    options: frozenset
    required: frozenset = frozenset()
    min_nfe: int = 1           # a fixed budget's smallest value
    adaptive: bool = False     # its steps (and NFE) follow the error: not batchable
    stochastic: bool = False   # draws noise along the way: results depend on the batch

    @property
    def batchable(self) -> bool:
        """Whether an image's result is the same in a batch: deterministic fixed steps."""
        return not (self.adaptive or self.stochastic)


_TORCHDIFFEQ = frozenset({"t_end", "time_scale", "adjoint", "denoise", "clip"})
_FAST = frozenset({"nfe", "t_end", "grid", "denoise", "clip"})
SOLVERS = {
    **{name: Solver(functools.partial(probability_flow_z, method=name),
                    _TORCHDIFFEQ | {"rtol", "atol", "options"}, adaptive=True)
       for name in ADAPTIVE},
    **{name: Solver(functools.partial(probability_flow_z, method=name), _TORCHDIFFEQ | {"nfe"},
                    frozenset({"nfe"}), min_nfe=FIXED_STEP_EVALS[name])
       for name in ("euler", "heun", "rk4")},
    "ddim": Solver(ddim, _FAST | {"eta"}, frozenset({"nfe"})),
    "dpmpp_2m": Solver(dpm_solver_pp_2m, _FAST, frozenset({"nfe"})),
    "dpm_solver_3": Solver(dpm_solver_3, _FAST, frozenset({"nfe"}), min_nfe=3),
    "unipc": Solver(unipc, _FAST | {"order"}, frozenset({"nfe"})),
    "reverse_sde": Solver(reverse_sde_z, frozenset({"steps", "t_end", "checkpoint"}),
                          frozenset({"steps"}), stochastic=True),
}


def stochastic(name: str, options: dict) -> bool:
    """Whether solver ``name`` with ``options`` draws noise along the way (DDIM with eta > 0)."""
    return SOLVERS[name].stochastic or bool(options.get("eta", 0))


def denoised(fn):
    """``fn`` ending with one more evaluation that predicts the clean image from t_end,
    (z - s eps_hat) / a (DPM-Solver's ``denoise_to_zero``; the ancestral chain's last step).
    With an NFE budget the last of the ``nfe`` evaluations is this one; nfe = 1 is the
    prediction from the prior itself (one evaluation at t = 1)."""
    def solve(eps_fn, sde, z1, *, t_end: float = 1 / 3000, nfe: int | None = None, **kwargs):
        if nfe == 1:  # no steps: the clean image predicted from the prior itself, at t = 1
            z, used, t_end = z1, 0, 1.0
        else:
            if nfe is not None:
                kwargs["nfe"] = nfe - 1
            z, used = fn(eps_fn, sde, z1, t_end=t_end, **kwargs)
        a, s = _a_s(sde, t_end)
        return (z - s * _evaluate(eps_fn, t_end, z)) / a, used + 1
    return solve


def clipped(fn):
    """``fn`` on a clipped model: the data prediction x0 = (z - s eps_hat) / a clamped to
    [-1, 1] and the noise prediction recomputed from it, eps = (z - a x0) / s (a DDPM's data
    range; its ancestral chain clips the same prediction). One wrapper for every solver: the
    data-prediction solvers then step on the clipped x0, the noise-prediction ones
    (DPM-Solver-3, dopri5) on the flow it implies, and the final denoising step returns it."""
    def solve(eps_fn, sde, z1, **kwargs):
        def eps_clipped(z, t):
            a, s = sde.coefficients(t, z)
            x0 = ((z - s * eps_fn(z, t)) / a).clamp(-1, 1)
            return (z - a * x0) / s
        return fn(eps_clipped, sde, z1, **kwargs)
    return solve


def check_options(name: str, options: dict, *, where: str = "sampling") -> dict:
    """The options of solver ``name`` checked once, each error naming ``where`` and the key:
    known keys only, required ones present, numbers in range. Returns them (None dropped)."""
    if name not in SOLVERS:
        raise ValueError(f"{where}.solver: unknown solver {name!r}; choose one of "
                         f"{', '.join(SOLVERS)}")
    info = SOLVERS[name]
    options = {k: v for k, v in options.items() if v is not None}
    extra = set(options) - info.options
    if extra:
        raise ValueError(f"{where}: solver {name} does not take {sorted(extra)}; it takes "
                         f"{sorted(info.options)}")
    missing = info.required - set(options)
    if missing:
        what = {"nfe": "an NFE budget (nfe)", "steps": "a number of steps (steps)"}
        raise ValueError(f"{where}: solver {name} needs "
                         f"{', '.join(what.get(k, k) for k in sorted(missing))}")
    for key, value in options.items():
        number = key in ("rtol", "atol", "t_end", "time_scale", "nfe", "steps")
        if number and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}.{key}: expected a number, got {value!r}")
        if key in ("rtol", "atol", "time_scale") and not value > 0:
            raise ValueError(f"{where}.{key}: must be > 0, got {value}")
        if key == "t_end" and not 0 < value < 1:
            raise ValueError(f"{where}.t_end: must lie in (0, 1), got {value}")
        if key in ("nfe", "steps") and (int(value) != value or value < 1):
            raise ValueError(f"{where}.{key}: must be a whole number >= 1, got {value}")
        if key == "nfe" and options.get("denoise") and value != 1 and value - 1 < info.min_nfe:
            raise ValueError(f"{where}.nfe: solver {name} with the final denoising needs nfe 1 "
                             f"(the prediction from the prior) or >= {info.min_nfe + 1}, got "
                             f"{value}")
        if key == "nfe" and not options.get("denoise") and value < info.min_nfe:
            raise ValueError(f"{where}.nfe: solver {name} needs nfe >= {info.min_nfe}, got "
                             f"{value}")
        if key == "eta" and (isinstance(value, bool) or not isinstance(value, (int, float))
                             or value < 0):
            raise ValueError(f"{where}.eta: must be a number >= 0, got {value!r}")
        if key == "order" and value not in (1, 2, 3):
            raise ValueError(f"{where}.order: must be 1, 2 or 3, got {value!r}")
        if key == "grid" and value not in GRIDS:
            raise ValueError(f"{where}.grid: unknown time grid {value!r}; choose one of "
                             f"{', '.join(GRIDS)}")
        if key in ("adjoint", "checkpoint", "denoise", "clip") and not isinstance(value, bool):
            raise ValueError(f"{where}.{key}: expected true or false, got {value!r}")
    if "options" in options:
        try:
            _torchdiffeq_options(name, options["options"], None)
        except ValueError as err:
            raise ValueError(f"{where}.options: {err}") from None
    return options


def make_solver(spec=None) -> Callable[..., tuple[torch.Tensor, int]]:
    """The solver of a ``Sampling`` (``ecdp.sampling.parse_sampling``) or of a plain spec
    {solver, ...options} (None: the released solve), checked by ``check_options``."""
    from .sampling import Sampling

    if isinstance(spec, Sampling):
        name, options = spec.solver, spec.options_dict()
    else:
        spec = dict(RELEASED_SAMPLING if spec is None else spec)
        name = spec.pop("solver", "dopri5")
        options = check_options(name, spec, where="sampling")
    fn = SOLVERS[name].fn
    if options.pop("denoise", False):
        fn = denoised(fn)
    if options.pop("clip", False):
        fn = clipped(fn)
    return functools.partial(fn, **options)


def solve_in_x(solver, score_fn: ScoreFn, sde: ConditionalVPSDE, mu: torch.Tensor,
               x1: torch.Tensor, **kwargs) -> tuple[torch.Tensor, int]:
    """Run a z-space solver for an x-space score: eps_hat = -sigma s_t score(mu + sigma z, t)."""
    sigma = sde.sigma

    def eps_fn(z, t):
        _, s_t = sde.coefficients(t, z)
        return -sigma * s_t * score_fn(mu + sigma * z, t)

    z0, nfe = solver(eps_fn, sde, (x1 - mu) / sigma, **kwargs)
    return mu + sigma * z0, nfe


def probability_flow_sample(score_fn: ScoreFn, sde: ConditionalVPSDE, mu: torch.Tensor,
                            x1: torch.Tensor, **solver) -> tuple[torch.Tensor, int]:
    """Solve eq. (12) from t = 1 (state x1) to t = t_end for an x-space score; the keyword
    arguments are ``probability_flow_z``'s (default: the released solve). Returns (x0, NFE).

    score_fn(x_t, t) -> grad_x log p_t(x_t | y); mu: bicubic upsampling of the LR (B, 3, H, W).
    """
    return solve_in_x(probability_flow_z, score_fn, sde, mu, x1, **solver)


def reverse_sde_sample(score_fn: ScoreFn, sde: ConditionalVPSDE, mu: torch.Tensor,
                       x1: torch.Tensor, **solver) -> tuple[torch.Tensor, int]:
    """``reverse_sde_z`` (steps, generator, t_end, checkpoint) for an x-space score."""
    return solve_in_x(reverse_sde_z, score_fn, sde, mu, x1, **solver)


