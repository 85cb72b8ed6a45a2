"""Time grids for the fixed-step solvers, apart from the integrators (k-diffusion's
``get_sigmas_*``): each returns ``steps + 1`` times (float64) from ``t_start`` (1) down to
``t_end`` for any VP schedule with ``log_snr`` and ``t_of_log_snr`` (``ecdp.sde``'s
``ConditionalVPSDE`` and ``DiscreteVP``).

- ``logsnr``: uniform in lambda = log(a_t / s_t) (DPM-Solver's default);
- ``time_uniform``: uniform in t;
- ``time_quadratic``: uniform in sqrt(t) (DPM-Solver's choice for discrete-time models);
- ``edm``: Karras et al. (2022) eq. 5, sigma = s_t / a_t = exp(-lambda) spaced uniformly in
  sigma^(1 / rho), rho = 7.

Which grid each solver uses by default is ``ecdp.samplers.DEFAULT_GRID``, chosen by measured
error on the exact-Gaussian case (docs/sampling.md, "Time grids").
"""
from __future__ import annotations

import math

import torch

__all__ = ["GRIDS", "time_grid", "EDM_RHO"]

EDM_RHO = 7.0


def _ends(schedule, t_end: float, t_start: float) -> tuple[float, float]:
    return float(schedule.log_snr(t_start)), float(schedule.log_snr(t_end))


def _log_snr(schedule, steps, t_end, t_start):
    lo, hi = _ends(schedule, t_end, t_start)
    return schedule.t_of_log_snr(torch.linspace(lo, hi, steps + 1, dtype=torch.float64))


def _time_uniform(schedule, steps, t_end, t_start):
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)


def _time_quadratic(schedule, steps, t_end, t_start):
    return torch.linspace(math.sqrt(t_start), math.sqrt(t_end), steps + 1,
                          dtype=torch.float64) ** 2


def _edm(schedule, steps, t_end, t_start, rho: float = EDM_RHO):
    lo, hi = _ends(schedule, t_end, t_start)
    s_max, s_min = math.exp(-lo / rho), math.exp(-hi / rho)  # sigma^(1/rho) at both ends
    sig = torch.linspace(s_max, s_min, steps + 1, dtype=torch.float64) ** rho
    return schedule.t_of_log_snr(-sig.log())


GRIDS = {"logsnr": _log_snr, "time_uniform": _time_uniform, "time_quadratic": _time_quadratic,
         "edm": _edm}


def time_grid(name: str, schedule, steps: int, t_end: float, t_start: float = 1.0):
    """``steps + 1`` times from t_start to t_end (both exact) on grid ``name``."""
    if name not in GRIDS:
        raise ValueError(f"unknown time grid {name!r}; choose one of {', '.join(GRIDS)}")
    if steps < 1:
        raise ValueError(f"a time grid needs steps >= 1, got {steps}")
    ts = GRIDS[name](schedule, steps, t_end, t_start).to(torch.float64)
    ts[0], ts[-1] = t_start, t_end
    return ts
