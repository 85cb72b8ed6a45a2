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

__all__ = ["SamplerError", "FIXED_STEP_EVALS", "ADAPTIVE", "RELEASED_TIME_SCALE",
           "RELEASED_SAMPLING", "SOLVERS", "Solver", "check_options", "make_solver",
           "probability_flow_z",
           "dpm_solver_pp_2m", "dpm_solver_3", "reverse_sde_z", "probability_flow_sample",
           "reverse_sde_sample", "solve_in_x"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
FIXED_STEP_EVALS = {"euler": 1, "midpoint": 2, "heun": 2, "heun2": 2, "heun3": 3, "rk4": 4}
_ADAPTIVE_OPTIONS = {"first_step", "safety", "ifactor", "dfactor", "max_num_steps", "min_step",
                     "max_step", "step_t", "jump_t", "norm"}
RELEASED_TIME_SCALE = 300.0  # the release's solver time units: tau = 300 t
# The released evaluation solve (Yuan-Yutao/ECDP lib/model/diffusion.py, use_ode).
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


# ---------------------------------------------------------------------- DPM-Solver

def _log_snr_grid(sde: ConditionalVPSDE, steps: int, t_end: float) -> torch.Tensor:
    """steps + 1 times from 1 to t_end, uniform in lambda = log(a_t / s_t) (float64)."""
    lam = torch.linspace(sde.log_snr(1.0), sde.log_snr(t_end), steps + 1, dtype=torch.float64)
    ts = sde.t_of_log_snr(lam)
    ts[0], ts[-1] = 1.0, t_end
    return ts


def _a_s(sde: ConditionalVPSDE, t: torch.Tensor) -> tuple[float, float]:
    alpha_bar = float(sde.alpha_bar(t))
    return math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)


def _evaluate(eps_fn, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return eps_fn(z, t.to(z.dtype).to(z.device))


def dpm_solver_pp_2m(eps_fn: EpsFn, sde: ConditionalVPSDE, z1: torch.Tensor, *, nfe: int,
                     t_end: float = 1 / 3000, image: str = "batch", adjoint_params=None,
                     generator=None) -> tuple[torch.Tensor, int]:
    """DPM-Solver++(2M), ``nfe`` lambda-uniform steps of one evaluation each:

        x0_i = (z_i - s_i eps_hat(z_i, t_i)) / a_i,  h = lambda_{i+1} - lambda_i,
        step 1:  z_1 = (s_1 / s_0) z_0 - a_1 (e^-h - 1) x0_0
        then:    D = (1 + 1 / 2r) x0_i - (1 / 2r) x0_{i-1},  r = h_{i-1} / h_i,
                 z_{i+1} = (s_{i+1} / s_i) z_i - a_{i+1} (e^-h - 1) D
    """
    del adjoint_params, generator
    _check_t_end(t_end)
    if nfe < 1:
        raise ValueError(f"dpmpp_2m needs nfe >= 1, got {nfe}")
    ts = _log_snr_grid(sde, nfe, t_end)
    lam = sde.log_snr(ts)
    z, prev_x0, prev_h = z1, None, None
    for i in range(nfe):
        a_i, s_i = _a_s(sde, ts[i])
        a_n, s_n = _a_s(sde, ts[i + 1])
        h = float(lam[i + 1] - lam[i])
        x0 = (z - s_i * _evaluate(eps_fn, ts[i], z)) / a_i
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
    """Third-order steps for an NFE budget, the remainder as one last second- or first-order
    step (DPM-Solver-fast's allocation for budgets 3 does not divide)."""
    return [3] * (nfe // 3) + ([nfe % 3] if nfe % 3 else [])


def dpm_solver_3(eps_fn: EpsFn, sde: ConditionalVPSDE, z1: torch.Tensor, *, nfe: int,
                 t_end: float = 1 / 3000, image: str = "batch", adjoint_params=None,
                 generator=None) -> tuple[torch.Tensor, int]:
    """Singlestep DPM-Solver-3 with an NFE budget: lambda-uniform steps, three evaluations each
    (see ``_dpm_solver_orders`` for budgets that 3 does not divide)."""
    del adjoint_params, generator
    _check_t_end(t_end)
    if nfe < 3:
        raise ValueError(f"dpm_solver_3 needs nfe >= 3, got {nfe}")
    orders = _dpm_solver_orders(nfe)
    ts = _log_snr_grid(sde, len(orders), t_end)
    z, used = z1, 0
    for i, order in enumerate(orders):
        z = _dpm_solver_step(eps_fn, sde, z, ts[i], ts[i + 1], order)
        used += order
        _finite(z, "DPM-Solver-3", image, float(ts[i + 1]), used)
    return z, used


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


_TORCHDIFFEQ = frozenset({"t_end", "time_scale", "adjoint"})
SOLVERS = {
    **{name: Solver(functools.partial(probability_flow_z, method=name),
                    _TORCHDIFFEQ | {"rtol", "atol", "options"}, adaptive=True)
       for name in ADAPTIVE},
    **{name: Solver(functools.partial(probability_flow_z, method=name), _TORCHDIFFEQ | {"nfe"},
                    frozenset({"nfe"}), min_nfe=FIXED_STEP_EVALS[name])
       for name in ("euler", "heun", "rk4")},
    "dpmpp_2m": Solver(dpm_solver_pp_2m, frozenset({"nfe", "t_end"}), frozenset({"nfe"})),
    "dpm_solver_3": Solver(dpm_solver_3, frozenset({"nfe", "t_end"}), frozenset({"nfe"}),
                           min_nfe=3),
    "reverse_sde": Solver(reverse_sde_z, frozenset({"steps", "t_end", "checkpoint"}),
                          frozenset({"steps"}), stochastic=True),
}


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
        if key == "nfe" and value < info.min_nfe:
            raise ValueError(f"{where}.nfe: solver {name} needs nfe >= {info.min_nfe}, got "
                             f"{value}")
        if key in ("adjoint", "checkpoint") and not isinstance(value, bool):
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
    return functools.partial(SOLVERS[name].fn, **options)


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
