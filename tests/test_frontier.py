"""The efficiency frontier and the distilled students: what a run resolves, the DDPM family's
sampling values, the frontier's rows, summaries and table, and a student's training."""
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY_MODEL
from ecdp.frontier import (at_equal_nfe, frontier_grid, run_frontier, solver_label,
                           summarize_frontier, write_frontier_table)
from ecdp.sampling import parse_sampling
from test_run import run_of

STUDENTS = ["ecdp-distilled-1", "ecdp-distilled-2", "ecdp-distilled-4"]


def test_students_are_ecdp_rows_trained_from_their_teacher_and_sampled_as_distilled():
    run = run_of({"run": ["ecdp", "srdiff", "sr3", *STUDENTS]})
    for nfe, name in zip((1, 2, 4), STUDENTS):
        model = run.models[name]
        assert (model.rule, model.upstream, model.chain) == ("train_ecdp_distill", "ecdp", nfe)
        assert model.params["nfe"] == nfe and model.params["cfg"]["solver"] == "dpmpp_2m"
        assert run.experiments[name].sampling.record() == {"solver": "dpmpp_2m", "nfe": nfe,
                                                           "grid": "logsnr", "temperature": 1.0}
        assert run.experiments[name].distilled == nfe
    default_grid = run_of({"run": ["ecdp", "ecdp-distilled-2"],
                           "training": {"distill": {"grid": None}}})
    assert "grid" not in default_grid.experiments["ecdp-distilled-2"].sampling.record()
    assert run.frontier == ("ecdp", "srdiff", "sr3", *STUDENTS)
    assert run.experiments["ecdp"].distilled is None
    assert run_of().frontier == ("ecdp", "srdiff")  # the default run: no SR3, no students


@pytest.mark.parametrize("overrides,key", [
    ({"run": ["ecdp-distilled-4"]}, "experiments.ecdp-distilled-4.distill.teacher: 'ecdp' "
                                    "must be an ECDP experiment with a trained model"),
    ({"experiments": {"s": {"method": "ecdp", "distill": {"nfe": 2},
                            "sampling": {"solver": "euler", "nfe": 2}}}, "run": ["ecdp", "s"]},
     "experiments.s.distill: a distilled student is an ecdp experiment"),
    ({"experiments": {"s": {"method": "ecdp", "distill": {"nfe": 2, "teacher": "rrdb"}}},
      "run": ["rrdb", "s"]}, "experiments.s.distill.teacher: 'rrdb'"),
    ({"frontier": {"experiments": ["bicubic"]}}, "frontier.experiments: ['bicubic'] are not "
                                                 "diffusion experiments"),
    ({"frontier": {"solvers": ["dpm_solver_3"], "nfe": [1, 2]}},
     "frontier.nfe: solver dpm_solver_3 needs nfe >= 3"),
    ({"frontier": {"solvers": [{"solver": "dpm_solver_3", "grid": "edm"}], "nfe": [2]}},
     "frontier.nfe: solver dpm_solver_3 needs nfe >= 3"),
    ({"experiments": {"frontier": {"method": "bicubic"}}}, "experiments.frontier: 'frontier' is"),
])
def test_frontier_and_student_config_errors_name_their_key(overrides, key):
    with pytest.raises(ValueError) as err:
        run_of(overrides)
    assert key in str(err.value)


def test_ddpm_family_takes_every_probability_flow_solver():
    fast = parse_sampling({"solver": "dpmpp_2m", "nfe": 10}, family="ddpm", where="sampling.sr3")
    assert fast.family == "ddpm" and fast.options_dict() == {"nfe": 10, "denoise": True,
                                                             "clip": True}
    assert fast.record() == {"solver": "dpmpp_2m", "clip": True, "denoise": True, "nfe": 10,
                             "temperature": 1.0}
    for spec in ({"solver": "dpm_solver_3", "nfe": 4}, {"solver": "dopri5"}):
        assert parse_sampling(spec, family="ddpm").options_dict()["clip"]  # the clipped flow
    assert parse_sampling({"steps": 100}, family="ddpm").record() == {"solver": "ancestral",
                                                                       "steps": 100}
    with pytest.raises(ValueError, match="sampling.srdiff.solver: reverse_sde is ECDP's"):
        parse_sampling({"solver": "reverse_sde", "steps": 5}, family="ddpm",
                       where="sampling.srdiff")
    with pytest.raises(ValueError, match="the ancestral chain takes only 'steps', not \\['nfe'\\]"):
        parse_sampling({"steps": 100, "nfe": 10}, family="ddpm")
    with pytest.raises(ValueError, match="with the final denoising needs nfe 1 .* or >= 4, got 3"):
        parse_sampling({"solver": "dpm_solver_3", "nfe": 3}, family="ddpm")
    with pytest.raises(ValueError, match="batch: 2 images per solve with solver ddim: its noise"):
        parse_sampling({"solver": "ddim", "nfe": 4, "eta": 1.0, "batch": 2}, family="ddpm")


def test_frontier_grid_skips_budgets_a_solver_cannot_meet_and_repeats_no_prior_prediction():
    grid = frontier_grid("ddpm", solvers=["ddim", "dpm_solver_3"], nfe=[1, 2, 4])
    assert [(s.solver, s.nfe) for s in grid] == [("ddim", 1), ("ddim", 2), ("ddim", 4),
                                                 ("dpm_solver_3", 4)]
    grid = frontier_grid("ecdp", solvers=["ddim", "dpm_solver_3"], nfe=[1, 3])
    assert [(s.solver, s.nfe) for s in grid] == [("ddim", 1), ("ddim", 3), ("dpm_solver_3", 3)]
    # a solver on a named grid is a line of its own, labelled with the grid
    grid = frontier_grid("ecdp", solvers=["dpmpp_2m", {"solver": "dpmpp_2m", "grid": "logsnr"}],
                         nfe=[1, 6])
    assert [(solver_label(s), s.nfe) for s in grid] == [
        ("dpmpp_2m", 1), ("dpmpp_2m", 6), ("dpmpp_2m (logsnr)", 6)]
    assert grid[2].options_dict()["grid"] == "logsnr" and "grid" not in grid[1].options_dict()


def _rows():
    """Two methods x two training seeds x two images, values chosen so the means are known."""
    rows = []
    for experiment, base in (("ecdp", 26.0), ("srdiff", 25.0)):
        for seed, shift in ((0, -0.05), (1, 0.05)):
            for image, offset in (("a", -1.0), ("b", 1.0)):
                for solver, setting, nfe, released in (("tabled", "as tabled", 80, True),
                                                       ("dpmpp_2m", "NFE 10", 10, False)):
                    rows.append({"experiment": experiment, "train_seed": seed, "image": image,
                                 "solver": solver, "setting": setting, "released": released,
                                 "nfe": nfe, "seconds": 0.1 * nfe, "psnr": base + shift + offset,
                                 "lr_psnr": 40.0, "ssim": 0.7 + shift, "lpips": float("nan"),
                                 "rms_to_reference": 0.01, "rms_to_tabled": 0.0 if released
                                 else 0.02, "reference": "dopri5 tol 1e-05",
                                 "sampling": "{}", "lpips_weights": "unavailable",
                                 "device": "cpu", "threads": 2})
    return pd.DataFrame(rows)


def test_summary_averages_images_then_seeds_and_keeps_the_spread(tmp_path):
    summary = summarize_frontier(_rows())
    row = summary[(summary.experiment == "ecdp") & (summary.setting == "NFE 10")].iloc[0]
    assert row.psnr == pytest.approx(26.0) and row.n_images == 2 and row.n_train_seeds == 2
    assert row.psnr_std == pytest.approx(math.sqrt(2) * 0.05)  # seeds 25.95 and 26.05
    assert row.psnr_replicates == "25.950000;26.050000"
    lines = at_equal_nfe(summary, 10)
    assert lines[0] == "At 10 NFE, each method's best solver: ecdp dpmpp_2m; srdiff dpmpp_2m."
    assert lines[1] == "PSNR: ecdp 26.000 > srdiff 25.000"     # 1 dB apart, spread 0.07
    assert lines[3] == "SSIM: ecdp 0.700 ≈ srdiff 0.700"
    text = write_frontier_table(summary, tmp_path / "frontier", title="F")
    assert "| tabled * | as tabled | 80.0 | 8.000 | 26.00 ± 0.07 |" in text
    assert "over 2 training seed(s)" in text and "- PSNR: ecdp 26.000 > srdiff 25.000" in text
    assert (tmp_path / "frontier.csv").exists() and "<table>" in (tmp_path / "frontier.html"
                                                                   ).read_text()
    assert at_equal_nfe(summary, 7) == ["No solve at exactly 7 NFE."]


def test_one_seed_is_untestable_not_significant():
    summary = summarize_frontier(_rows()[lambda r: r.train_seed == 0])
    assert math.isnan(summary.psnr_std.iloc[0])
    assert at_equal_nfe(summary, 10)[1] == "PSNR: ecdp 25.950 ? srdiff 24.950"


def test_frontier_rows_share_the_start_draw_and_score_against_the_reference(tmp_path,
                                                                           tiny_ecdp):
    """On a tiny ECDP and two sample photos: every solve from the image's seed-0 draw, the
    tabled sampling first; a tighter solve lies closer to the reference solve."""
    from ecdp.data.datasets import prepare_dataset
    from ecdp.data.pairs import make_pairs

    data = tmp_path / "data"
    prepare_dataset("sample-photos", data)
    make_pairs(data, tmp_path / "results", split="test", scale=4, crop=32, limit=2,
               official_lr=False, progress=False)
    model = tiny_ecdp().eval()
    specs = frontier_grid("ecdp", solvers=["dpmpp_2m"], nfe=[2, 20])
    rows = run_frontier(model, "ecdp", tmp_path / "results" / "lr" / "test.json", specs=specs,
                        tabled=parse_sampling({"solver": "euler", "nfe": 4}),
                        reference_tolerance=1e-5, experiment="tiny", progress=False)
    assert list(rows.setting[:3]) == ["NFE 4", "NFE 2, time_quadratic grid",
                                      "NFE 20, time_quadratic grid"]
    assert list(rows.released[:3]) == [True, False, False] and rows.image.nunique() == 2
    rms = rows.groupby("nfe").rms_to_reference.mean()
    assert rms[20] < rms[2]
    again = run_frontier(model, "ecdp", tmp_path / "results" / "lr" / "test.json",
                         specs=specs[:1], tabled=parse_sampling({"solver": "euler", "nfe": 4}),
                         reference_tolerance=1e-5, progress=False)
    assert list(again.psnr) == list(rows.psnr[rows.nfe.isin([4, 2])])
    assert (rows.rms_to_tabled[rows.released] == 0).all()
    # a student is measured against its teacher's solves from the same draw
    student = tiny_ecdp(seed=1).eval()
    as_student = run_frontier(student, "ecdp", tmp_path / "results" / "lr" / "test.json",
                              specs=[], tabled=parse_sampling({"solver": "euler", "nfe": 4}),
                              teacher=(model, parse_sampling({"solver": "euler", "nfe": 4})),
                              reference_tolerance=1e-5, progress=False)
    assert as_student.reference.iloc[0].startswith("the teacher's dopri5 tol 1e-05")
    assert (as_student.rms_to_tabled > 0).all()
    teacher_self = run_frontier(model, "ecdp", tmp_path / "results" / "lr" / "test.json",
                                specs=[], tabled=parse_sampling({"solver": "euler", "nfe": 4}),
                                teacher=(model, parse_sampling({"solver": "euler", "nfe": 4})),
                                reference_tolerance=1e-5, progress=False)
    assert (teacher_self.rms_to_tabled == 0).all()  # the teacher's own solve: distance 0


def test_a_student_learns_its_teachers_solve(tmp_path, tiny_ecdp):
    """Distillation on the sample photos from a tiny teacher: the student's checkpoint loads as
    an ECDP, records what it was distilled for, and its 2-NFE solve moves toward the teacher's
    released solve on the training pairs (the loss falls)."""
    from ecdp.checkpoint import save_checkpoint
    from ecdp.data.datasets import prepare_dataset
    from ecdp.model import ECDP
    from ecdp.stages import train_ecdp_distilled

    data = tmp_path / "data"
    prepare_dataset("sample-photos", data)
    teacher = tiny_ecdp()
    path = tmp_path / "teacher.pt"
    meta = {"kind": "ecdp", "stage": 2, "scale": 4, "sigma": 0.1, "model": TINY_MODEL,
            "parametrization": "hybrid", "k": 1.0, "budget": "tiny", "history": {}}
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    save_checkpoint(path, step=1, meta=meta, state=state, ema=state)
    cfg = {"steps": 30, "batch_size": 2, "patch_size": 16, "pairs": 4, "lr": 1e-3,
           "milestones": [], "ema_decay": None, "clip_value": 10, "save_every": 30,
           "solver": "dpmpp_2m", "teacher": {"solver": "rk4", "nfe": 40}, "iq_weight": 0.0,
           "allow_random_vgg": True, "augment": "none"}
    out = tmp_path / "student.pt"
    meta = train_ecdp_distilled(dataset=data / "manifest.json", teacher_checkpoint=path,
                                out=out, weights_status={"status": "unavailable"}, cfg=cfg,
                                nfe=2, seed=0, progress=False)
    losses = [h["distill"] for h in meta["history"]["train"]]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    assert meta["distilled"]["sampling"] == {"solver": "dpmpp_2m", "nfe": 2, "temperature": 1.0}
    assert meta["stage"] == "distilled" and "student 30 it x 2 @ 16px" in meta["budget"]
    student = ECDP.load(out)
    moved = [n for n, p in student.unet.named_parameters()
             if not torch.equal(p, dict(teacher.unet.named_parameters())[n])]
    assert moved  # the U-Net learned
    assert all(torch.equal(p, dict(teacher.encoder.named_parameters())[n])
               for n, p in student.encoder.named_parameters())  # the encoder stayed frozen
    assert not Path(f"{out}.state").exists()


def test_frontier_and_students_have_their_own_targets_outside_all(tmp_path):
    """`all` (and `run: null`) leave the students and the frontier out; `frontier` with the
    students run trains each from its teacher at every training seed and runs each
    experiment once per seed; `distilled` builds the students' table alone."""
    from test_workflow import planned

    students = "run=[ecdp, srdiff, sr3, ecdp-distilled-1, ecdp-distilled-2, ecdp-distilled-4]"
    jobs = planned(tmp_path, "--cores", "1", "frontier", "--config", students)
    assert jobs["train_ecdp_distill"] == 3 * 3 and jobs["frontier_run"] == 6 * 3
    assert jobs["frontier_report"] == 1 and "super_resolve" not in jobs
    jobs = planned(tmp_path, "--cores", "1", "distilled", "--config",
                   "run=[ecdp, ecdp-distilled-1, ecdp-distilled-2, ecdp-distilled-4]")
    assert jobs["table"] == 1 and jobs["train_ecdp_distill"] == 9 and "frontier_run" not in jobs
    jobs = planned(tmp_path, "--cores", "1", "all", "--config", "run=null")
    assert "train_ecdp_distill" not in jobs and "frontier_run" not in jobs


def test_student_budget_benchmark_checks_its_budgets_and_names_a_missing_model(tmp_path,
                                                                               monkeypatch):
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import student_budget

    assert student_budget._budget("300:96") == (300, 96)
    for bad in ("300", "a:b", "0:96"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"--budget '{bad}'"):
            student_budget._budget(bad)
    monkeypatch.setattr(sys, "argv", ["student_budget.py", "--run-dir", str(tmp_path),
                                      "--budget", "1:1", "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit, match="models/ecdp/train0/model.pt: missing"):
        student_budget.main()
    assert not (tmp_path / "s").exists()  # nothing written before the inputs are checked
