"""Sampling speed, measured side by side in one process (interleaved rounds, medians).

At the paper's network sizes (random seeded weights: speed does not depend on training), on one
LR crop of scikit-image's astronaut, prints

1. solver overhead: seconds of a whole solve / (NFE x seconds of one network evaluation), for
   the released dopri5 solve and DPM-Solver++(2M) at 10 NFE (target <= 1.05);
2. each speed-up on and off (per image, against plain evaluation): the per-sample LR
   conditioning, channels-last, both, and 2 / 4 images per fixed-step solve;
3. ECDP (released solve, DPM-Solver++(2M) at 10 NFE, UniPC at 6, and the distilled student's
   cost at 4, 2 and 1 NFE: its network is ECDP's) against SRDiff (100 steps) and SR3 (2000
   steps; ``--sr3-steps`` of them are timed and scaled, said so), and SRDiff and SR3 at 10 NFE
   of DPM-Solver++(2M) on their chains' schedules, with NFE, next to the paper's ECDP / SRDiff
   = 0.83x and ECDP / SR3 = 0.024x (Table 3, one GPU, DIV2K) and the few-NFE targets.

    python benchmarks/sampling_speed.py [--lr 16] [--rounds 3] [--device cuda]

The released solve's NFE depends on the weights; ``--ecdp-nfe N`` (e.g. the NFE the timing rule
reports for a trained model) prices it at N evaluations of the measured cost as well.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from baselines.sr3 import PAPER_NET, SR3
from baselines.srdiff import SRDiff
from ecdp.degradation import degrade
from ecdp.model import ECDP
from ecdp.nets import RRDBNet, count_parameters
from ecdp.samplers import make_solver
from ecdp.sampling import Sampled, parse_sampling

PAPER_ECDP = {"encoder": {"features": 64, "growth": 32, "blocks": 23, "taps": [1, 8, 15, 22]},
              "unet": {"channels": [64, 128, 256, 256], "blocks": [2, 2, 2, 2],
                       "time_channels": 128, "time_scale": 300},
              "sde": {"beta_min": 0.1, "beta_max": 20.0, "sigma": 0.2},
              "parametrization": "hybrid", "k": 1.0}
PAPER_RATIOS = {"srdiff": 2.0 / 2.4, "sr3": 2.0 / 83.1}  # ECDP seconds / theirs, Table 3
FEW_NFE_TARGETS = {"srdiff": 0.05, "sr3": 0.003}  # ECDP at <= 4 NFE / theirs (issue 26)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _lr(size: int, device) -> torch.Tensor:
    from skimage import data

    hr = data.astronaut()[100:100 + 4 * size, 180:180 + 4 * size]
    return torch.from_numpy(degrade(hr, 4)).permute(2, 0, 1)[None].float().div(255).to(device)


def _ecdp_eps_fns(model: ECDP, lr: torch.Tensor, *, cache: bool):
    """eps_hat(z, t) of ``model`` for ``lr``, with the LR conditioning computed once or at
    every evaluation (the latter as before the cache)."""
    mu, feats = model.condition(lr)
    if cache:
        conditioning = model.unet.condition(feats, mu.shape[-2:])
        return mu, lambda z, t: model.eps_hat(z, t, conditioning=conditioning)
    return mu, lambda z, t: model.eps_hat(z, t, feats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=int, default=16, help="LR crop size (HR = 4x)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sr3-steps", type=int, default=20,
                        help="SR3 steps timed (scaled to its 2000)")
    parser.add_argument("--ecdp-nfe", type=int, default=None,
                        help="also price the released solve at this NFE (a trained model's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    device = args.device
    torch.manual_seed(0)
    ecdp = ECDP.from_config(PAPER_ECDP, scale=4, sigma=0.2).to(device).eval()
    ecdp_cl = ECDP.from_config(PAPER_ECDP, scale=4, sigma=0.2).to(device).eval()
    ecdp_cl.load_state_dict(ecdp.state_dict())
    ecdp_cl.to(memory_format=torch.channels_last)
    srdiff = SRDiff(rrdb=RRDBNet(scale=4, features=64, growth=32, blocks=17, trunk_conv=True),
                    taps=(2, 5, 8, 11, 14, 17), mults=(1, 2, 3, 4)).to(device).eval()
    sr3 = SR3(scale=4, net=PAPER_NET).to(device).eval()
    lr = _lr(args.lr, device)
    g = torch.Generator(device=device).manual_seed(0)
    z1 = torch.randn(1, 3, 4 * args.lr, 4 * args.lr, generator=g, device=device)
    released, fast = make_solver(), make_solver({"solver": "dpmpp_2m", "nfe": 10})
    fast_ddpm = parse_sampling({"solver": "dpmpp_2m", "nfe": 10}, family="ddpm")
    t = torch.tensor(0.5, device=device)
    print(f"device {device} ({torch.get_num_threads()} threads), LR {args.lr}x{args.lr} -> HR "
          f"{4 * args.lr}x{4 * args.lr}; ECDP {count_parameters(ecdp) / 1e6:.1f}M, SRDiff "
          f"{count_parameters(srdiff) / 1e6:.1f}M, SR3 {count_parameters(sr3) / 1e6:.1f}M "
          f"(random weights); medians of {args.rounds} interleaved rounds")

    def ecdp_solve(model, solver, *, cache=True, batch=1):
        x = lr.expand(batch, -1, -1, -1)
        mu, eps_fn = _ecdp_eps_fns(model, x, cache=cache)
        z = z1.expand(batch, -1, -1, -1)
        if model is ecdp_cl:
            z = z.contiguous(memory_format=torch.channels_last)
        return solver(eps_fn, model.sde, z)

    _, eval_fn = _ecdp_eps_fns(ecdp, lr, cache=True)  # conditioning outside the timed call

    def conditioning():
        mu, feats = ecdp.condition(lr)
        return ecdp.unet.condition(feats, mu.shape[-2:])

    cases = {
        "one network evaluation": lambda: eval_fn(z1, t),
        "conditioning (encoder + projections)": conditioning,
        "released dopri5": lambda: ecdp_solve(ecdp, released),
        "dpmpp_2m 10: plain": lambda: ecdp_solve(ecdp, fast, cache=False),
        "dpmpp_2m 10: cache": lambda: ecdp_solve(ecdp, fast),
        "dpmpp_2m 10: channels_last": lambda: ecdp_solve(ecdp_cl, fast, cache=False),
        "dpmpp_2m 10: cache + channels_last": lambda: ecdp_solve(ecdp_cl, fast),
        "dpmpp_2m 10: batch 2": lambda: ecdp_solve(ecdp, fast, batch=2),
        "dpmpp_2m 10: batch 4": lambda: ecdp_solve(ecdp, fast, batch=4),
        "srdiff 100 steps": lambda: srdiff.sample(lr, generator=torch.Generator(device=device)
                                                  .manual_seed(1)),
        f"sr3 {args.sr3_steps} steps": lambda: sr3.sample(lr, generator=torch.Generator(
            device=device).manual_seed(1), steps=args.sr3_steps),
        **{f"ecdp dpmpp_2m {n}": (lambda n=n: ecdp_solve(ecdp, make_solver(
            {"solver": "dpmpp_2m", "nfe": n}))) for n in (1, 2, 4)},
        "ecdp unipc 6": lambda: ecdp_solve(ecdp, make_solver({"solver": "unipc", "nfe": 6})),
        "srdiff dpmpp_2m 10": lambda: Sampled(srdiff, fast_ddpm).super_resolve(
            lr, generator=torch.Generator(device=device).manual_seed(1)),
        "sr3 dpmpp_2m 10": lambda: Sampled(sr3, fast_ddpm).super_resolve(
            lr, generator=torch.Generator(device=device).manual_seed(1)),
    }
    for fn in cases.values():  # warm-up
        fn()
    times = {name: [] for name in cases}
    nfe = {}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            seconds, out = _timed(fn, device)
            times[name].append(seconds)
            if isinstance(out, tuple):
                nfe[name] = out[1]
    sec = {name: statistics.median(v) for name, v in times.items()}
    per_eval = sec["one network evaluation"]
    cond = sec["conditioning (encoder + projections)"]

    print(f"\n1. solver overhead (one evaluation {per_eval:.3f} s, the LR conditioning once per "
          f"sample {cond:.3f} s)")
    print("  solve                        NFE  seconds  solve / (NFE x eval)  "
          "(solve - conditioning) / (NFE x eval)")
    for name in ("released dopri5", "dpmpp_2m 10: cache"):
        print(f"  {name:28s} {nfe[name]:3d}  {sec[name]:7.3f}  {sec[name] / (nfe[name] * per_eval):8.3f}"
              f"  {(sec[name] - cond) / (nfe[name] * per_eval):8.3f} (target <= 1.05)")

    print("\n2. speed-ups, seconds per image against plain evaluation (dpmpp_2m, 10 NFE)")
    plain = sec["dpmpp_2m 10: plain"]
    for name, per in (("cache", 1), ("channels_last", 1), ("cache + channels_last", 1),
                      ("batch 2", 2), ("batch 4", 4)):
        full = f"dpmpp_2m 10: {name}"
        print(f"  {name:28s} {sec[full] / per:7.3f} s/image  {sec[full] / per / plain:.2f}x")

    print("\n3. methods on the same image (seconds per image, NFE)")
    sr3_full = sec[f"sr3 {args.sr3_steps} steps"] * sr3.schedule.steps / args.sr3_steps
    rows = {"ECDP released dopri5": (sec["released dopri5"], nfe["released dopri5"]),
            "ECDP dpmpp_2m 10": (sec["dpmpp_2m 10: cache"], 10),
            "ECDP unipc 6": (sec["ecdp unipc 6"], 6),
            **{f"ECDP student {n} NFE": (sec[f"ecdp dpmpp_2m {n}"], n) for n in (4, 2, 1)},
            "SRDiff 100 steps": (sec["srdiff 100 steps"], 100),
            "SRDiff dpmpp_2m 10": (sec["srdiff dpmpp_2m 10"], 10),
            f"SR3 2000 steps ({args.sr3_steps} timed, scaled)": (sr3_full, 2000),
            "SR3 dpmpp_2m 10": (sec["sr3 dpmpp_2m 10"], 10)}
    if args.ecdp_nfe:
        rows[f"ECDP released at {args.ecdp_nfe} NFE (priced)"] = (
            cond + per_eval * args.ecdp_nfe, args.ecdp_nfe)
    for name, (seconds, n) in rows.items():
        print(f"  {name:44s} {seconds:8.3f} s  NFE {n}")
    print("\n  ratio                                          ours     paper (Table 3, GPU) / "
          "target")
    for name in [n for n in rows if n.startswith("ECDP")]:
        for other, key in (("SRDiff 100 steps", "srdiff"),
                           (f"SR3 2000 steps ({args.sr3_steps} timed, scaled)", "sr3")):
            target = (f"target <= {FEW_NFE_TARGETS[key]:g}x" if "student" in name
                      and rows[name][1] <= 4 else f"paper {PAPER_RATIOS[key]:.3f}x")
            print(f"  {name:22s} / {other.split(' (')[0]:16s} "
                  f"{rows[name][0] / rows[other][0]:9.4f}x   {target}")
    for name, other in (("SRDiff dpmpp_2m 10", "SRDiff 100 steps"),
                        ("SR3 dpmpp_2m 10", f"SR3 2000 steps ({args.sr3_steps} timed, scaled)"),
                        ("ECDP dpmpp_2m 10", "SRDiff dpmpp_2m 10"),
                        ("ECDP dpmpp_2m 10", "SR3 dpmpp_2m 10")):
        print(f"  {name:22s} / {other.split(' (')[0]:18s} {rows[name][0] / rows[other][0]:9.4f}x"
              "   (equal NFE)" if name.startswith("ECDP") else
              f"  {name:22s} / {other.split(' (')[0]:18s} {rows[name][0] / rows[other][0]:9.4f}x")


if __name__ == "__main__":
    main()
