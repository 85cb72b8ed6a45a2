"""Timing, figures, tables with timing columns, evaluation crops, the torchrun launcher."""
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from baselines import build_method
from ecdp.data.pairs import center_crop_pair
from ecdp.degradation import upsample
from ecdp.figures import (crop_grid, denoised_predictions, quality_vs_cost, save_figure,
                          validation_curves)
from ecdp.launch import torchrun_command, torchrun_workers
from ecdp.nets import RRDBNet
from ecdp.rng import make_generator
from ecdp.tables import build_table, describe, timing_extra, write_table
from ecdp.timing import time_method


class Counting:
    """A SuperResolver that records its calls: timing must warm up, then time `repeats` runs."""
    name, stochastic = "counting", False

    def __init__(self):
        self.calls = []

    def super_resolve(self, lr, *, generator=None, image="batch"):
        self.calls.append(lr.shape[0])
        return upsample(lr, 4), 7


def test_timing_warms_up_then_times_each_repeat():
    method = Counting()
    result = time_method(method, torch.rand(1, 3, 8, 8), warmup=2, repeats=3, batch=2)
    assert method.calls == [2] * 5
    assert len(result["seconds_runs"]) == 3 and result["seconds"] > 0
    assert result["seconds"] == sorted(result["seconds_runs"])[1]  # the median
    assert result["nfe"] == 7 and result["batch"] == 2 and result["lr_size"] == [8, 8]
    assert result["device"] == "cpu" and result["peak_kind"] == "cpu peak RSS growth"
    with pytest.raises(ValueError, match="repeats"):
        time_method(method, torch.rand(1, 3, 8, 8), repeats=0)


def test_timing_of_bicubic_through_the_factory():
    result = time_method(build_method("bicubic", scale=4), torch.rand(1, 3, 16, 16))
    assert result["nfe"] == 0 and result["seconds"] > 0


def test_denoise_with_the_exact_noise_returns_the_clean_image(tiny_ecdp):
    """x0_hat(x_t) is exact when the network's eps is the true one (eq. 12 inverted)."""
    model = tiny_ecdp()
    lr = torch.rand(1, 3, 6, 6)
    hr = torch.rand(1, 3, 24, 24)
    mu, feats = model.condition(lr)
    eps = torch.randn_like(hr)
    t = torch.tensor([0.6])
    x_t = model.sde.perturb(hr, mu, t, eps)
    model.eps_hat = lambda z_t, t_, f: eps
    assert torch.allclose(model.denoise(x_t, t, mu, feats), hr, atol=1e-5)


def test_figure5_scores_every_model_at_every_level(tiny_ecdp, tmp_path):
    models = {"eps": tiny_ecdp(parametrization="eps"), "x0": tiny_ecdp(parametrization="x0")}
    lr, hr = torch.rand(1, 3, 6, 6), torch.rand(1, 3, 24, 24)
    fig, scores = denoised_predictions(models, lr, hr, [0.1, 0.9], make_generator("t", 0))
    assert set(scores) == {"eps", "x0"} and all(len(v) == 2 for v in scores.values())
    assert all(np.isfinite(v).all() for v in scores.values())
    save_figure(fig, tmp_path / "f5.png")
    assert Image.open(tmp_path / "f5.png").size[0] > 100


def test_other_figures_write_pngs(tmp_path):
    save_figure(validation_curves({"eps": [{"step": 1, "psnr": 20.0}, {"step": 2, "psnr": 21.0}],
                                   "x0": []}), tmp_path / "f8.png")
    summary = pd.DataFrame({"experiment": ["a", "b"], "protocol_name": ["paper"] * 2,
                            "psnr_mean": [25.0, 26.0], "lpips_mean": [np.nan, np.nan]})
    timing = pd.DataFrame({"experiment": ["a", "b"], "seconds": [0.1, 2.0], "nfe": [1, 30],
                           "budget": ["x", "y"], "weights": ["ema", "ema"]})
    save_figure(quality_vs_cost(summary, timing), tmp_path / "q.png")
    images = {k: np.full((32, 32, 3), v, np.uint8) for k, v in (("HR", 0), ("SR", 255))}
    grid = crop_grid(images, (8, 8, 16), title="crop")
    assert [ax.get_title() for ax in grid.axes[:2]] == ["HR", "SR\n0.00 dB"]  # PSNR to the HR
    save_figure(grid, tmp_path / "c.png")
    for name in ("f8", "q", "c"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_table_takes_time_and_nfe_from_the_timing_rule():
    summary = pd.DataFrame({"experiment": ["ecdp"], "protocol_name": ["paper"],
                            "psnr_mean": [27.0], "psnr_std": [0.1], "lpips_weights": ["x"],
                            "budget": ["b"]})
    timing = pd.DataFrame({"experiment": ["ecdp"], "seconds": [1.5], "nfe": [24],
                           "peak_mib": [100.0]})
    long = build_table(summary, {"rows": {"ecdp": {"seconds": 2.0}, "sr3": {"seconds": 83.1}}},
                       rows={"ecdp": "ECDP", "sr3": "SR3"}, metrics=["seconds", "nfe"],
                       extra=timing_extra(timing)).set_index(["experiment", "metric"])
    assert long.loc[("ecdp", "seconds"), "reproduced"] == 1.5
    assert long.loc[("ecdp", "seconds"), "paper"] == 2.0
    assert long.loc[("ecdp", "nfe"), "reproduced"] == 24
    assert np.isnan(long.loc[("sr3", "seconds"), "reproduced"])
    assert long.loc[("sr3", "seconds"), "note"] == "not run in this configuration"


def test_center_crop_pair_keeps_hr_and_lr_aligned():
    hr = np.arange(40 * 48 * 3, dtype=np.uint8).reshape(40, 48, 3)
    lr = hr[::4, ::4]
    hr_c, lr_c = center_crop_pair(hr, lr, 16, 4)
    assert hr_c.shape == (16, 16, 3) and lr_c.shape == (4, 4, 3)
    assert (hr_c[::4, ::4] == lr_c).all()          # same region of the same grid
    hr_c, lr_c = center_crop_pair(hr, lr, 400, 4)  # larger than the image: the whole image
    assert hr_c.shape == hr.shape
    with pytest.raises(ValueError, match="too small"):
        center_crop_pair(hr, lr, 4, 4)


def test_rrdbnet_bicubic_skip_adds_the_bicubic_upsampling():
    net = RRDBNet(scale=4, features=8, growth=4, blocks=1, bicubic_skip=True)
    torch.nn.init.zeros_(net.conv_last.weight)
    torch.nn.init.zeros_(net.conv_last.bias)
    lr = torch.rand(1, 3, 8, 8)
    assert torch.allclose(net(lr), upsample(lr, 4), atol=1e-6)


def test_torchrun_launcher_runs_one_worker_per_gpu(tmp_path, monkeypatch):
    assert torchrun_command(4, "s.py")[-2:] == ["--nproc_per_node=4", "s.py"]
    assert torchrun_workers(1) is False                 # one GPU or CPU: train in-process
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert torchrun_workers(4) is False                 # already a worker
    monkeypatch.delenv("LOCAL_RANK")
    script = tmp_path / "worker.py"
    out = tmp_path / "ranks"
    out.mkdir()
    script.write_text(
        "import os, pathlib\n"
        "from ecdp.launch import training_device\n"
        "from ecdp.train import world\n"
        "device = training_device('cpu')\n"
        "rank, size = world()\n"
        f"pathlib.Path({str(out)!r}, str(rank)).write_text(f'{{size}} {{device}}')\n")
    log = open(tmp_path / "log.txt", "w")
    monkeypatch.setattr(sys, "stdout", log)
    monkeypatch.setattr(sys, "stderr", log)
    env_before = dict(os.environ)
    assert torchrun_workers(2, str(script)) is True
    log.close()
    assert dict(os.environ) == env_before
    assert sorted(p.name for p in out.iterdir()) == ["0", "1"]
    assert {p.read_text() for p in out.iterdir()} == {"2 cpu"}


def test_torchrun_failure_is_an_error(tmp_path, monkeypatch):
    script = tmp_path / "bad.py"
    script.write_text("raise SystemExit(3)\n")
    log = open(tmp_path / "log.txt", "w")
    monkeypatch.setattr(sys, "stdout", log)
    monkeypatch.setattr(sys, "stderr", log)
    with pytest.raises(RuntimeError, match="exit code"):
        torchrun_workers(2, str(script))




def test_table_says_region_images_seeds_units_and_timing_device(tmp_path):
    summary = pd.DataFrame({"experiment": ["ecdp", "rrdb"], "protocol_name": ["paper"] * 2,
                            "psnr_mean": [27.0, 27.5], "psnr_std": [0.1, 0.0],
                            "lpips_weights": ["x"] * 2, "budget": ["b"] * 2,
                            "region": ["central 128x128 HR crop (evaluation.crop 128)"] * 2,
                            "n_images": [3, 3], "n_sample_seeds": [2, 1]})
    timing = pd.DataFrame({"experiment": ["ecdp", "rrdb"], "seconds": [1.5, 0.1], "nfe": [24, 1],
                           "peak_mib": [46.0, 0.0], "device": ["cpu", "cpu"],
                           "device_name": ["x86_64"] * 2, "threads": [2, 2],
                           "lr_size": ["32x32"] * 2, "batch": [1, 1], "warmup": [1, 1],
                           "repeats": [2, 2]})
    rows = {"ecdp": "ECDP", "rrdb": "RRDB"}
    metrics = ["psnr", "seconds", "peak_mib"]
    long = build_table(summary, {"rows": {}}, rows=rows, metrics=metrics,
                       extra=timing_extra(timing))
    write_table(long, tmp_path / "t", title="T",
                description=describe(summary, list(rows), metrics, protocol="paper",
                                     timing=timing))
    md = (tmp_path / "t.md").read_text()
    assert "Evaluated on 3 test images, region: central 128x128 HR crop" in md
    assert "± is the standard deviation over 2 sample seeds" in md
    assert "PSNR↑ (dB)" in md and "PSNR in dB" in md
    assert "Timing: cpu (x86_64, 2 threads), one LR image of 32x32 px, batch 1" in md
    # CPU peak memory is n/a with its reason, never a 0 read as "no memory"
    assert "| 0 |" not in md and "CPU run: no device-memory peak" in md
    cuda = timing.assign(device="cuda:0")
    assert timing_extra(cuda)["ecdp"]["peak_mib"] == 46.0


def _tool(name: str):
    """A script of tools/ imported as a module."""
    import importlib

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    return importlib.import_module(name)


def test_results_page_is_copied_from_a_runs_tables(tmp_path):
    update_results = _tool("update_results")

    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    (results / "tables" / "table1.md").write_text("# Table 1: x\n\n| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "results.md"
    readme.write_text(f"intro\n{update_results.BEGIN}\nold numbers\n{update_results.END}\nrest\n")
    args = [str(results), "--tables", "table1", "--run-commit", "abc123", "--page", str(readme)]
    update_results.main(args)
    text = readme.read_text()
    assert "old numbers" not in text and "### Table 1: x" in text and "| 1 |" in text
    assert "at commit abc123" in text and text.startswith("intro\n") and text.endswith("rest\n")
    update_results.main(args)
    assert readme.read_text() == text  # idempotent
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="exactly one"):
        update_results.main(args)


def _replicated(means: dict[str, list[float]], sample_offsets=(0.0, 0.1)) -> pd.DataFrame:
    """Per-image rows: experiment -> one mean PSNR per training seed, two images and two sample
    seeds around it (the images +-0.5, the sample seeds by ``sample_offsets``)."""
    rows = []
    for experiment, per_train in means.items():
        for t, m in enumerate(per_train):
            for s, ds in enumerate(sample_offsets):
                for image, di in (("a", -0.5), ("b", 0.5)):
                    rows.append({"experiment": experiment, "protocol_name": "paper",
                                 "image": image, "sample_seed": s, "train_seed": t,
                                 "psnr": m + ds + di, "ssim": 0.5, "lpips": np.nan,
                                 "lr_psnr": 30.0, "seconds": 1.0, "nfe": 4, "budget": "b",
                                 "weights": "w", "lpips_weights": "u", "region": "r",
                                 "params": 10})
    return pd.DataFrame(rows)


def test_summary_separates_training_seed_and_sample_seed_spreads():
    from ecdp.evaluate import summarize

    summary = summarize(_replicated({"e": [20.0, 21.0, 22.0]})).iloc[0]
    # per training seed: mean of the two sample seeds (offset 0.05); across seeds: 21.05
    assert summary["psnr_mean"] == pytest.approx(21.05)
    assert summary["psnr_train_std"] == pytest.approx(1.0)   # ddof 1 over 20.05, 21.05, 22.05
    assert summary["psnr_sample_std"] == pytest.approx(0.05)  # ddof 0 over 0 and 0.1 offsets
    assert summary["psnr_std"] == summary["psnr_train_std"]   # the tables print this
    assert summary["n_train_seeds"] == 3 and summary["n_sample_seeds"] == 2
    assert [float(v) for v in summary["psnr_replicates"].split(";")] == pytest.approx(
        [20.05, 21.05, 22.05])
    one = summarize(_replicated({"e": [20.0]})).iloc[0]
    assert np.isnan(one["psnr_train_std"]) and one["psnr_std"] == pytest.approx(0.05)
    one_sample = summarize(_replicated({"e": [20.0, 22.0]}, sample_offsets=(0.0,))).iloc[0]
    assert np.isnan(one_sample["psnr_sample_std"])  # one sample seed: not measured, not 0
    assert one_sample["psnr_std"] == pytest.approx(2 ** 0.5)


def test_tables_mark_differences_against_the_compare_row():
    from ecdp.evaluate import summarize

    summary = summarize(_replicated({"ecdp": [27.0, 27.1, 26.9], "worse": [25.0, 25.1, 24.9],
                                     "same": [27.05, 26.95, 27.1]}))
    long = build_table(summary, {"rows": {}}, rows={"ecdp": "ECDP", "worse": "W", "same": "S"},
                       metrics=["psnr"], compare_to="ecdp").set_index("experiment")
    assert long.loc["worse", "significance"] == "*" and long.loc["worse", "p_value"] < 0.01
    assert long.loc["same", "significance"] == "≈" and long.loc["same", "p_value"] > 0.5
    assert long.loc["ecdp", "significance"] == ""
    # Welch's t-test, as scipy computes it on the replicate means
    from scipy import stats
    p = stats.ttest_ind([25.05, 25.15, 24.95], [27.05, 27.15, 26.95], equal_var=False).pvalue
    assert long.loc["worse", "p_value"] == pytest.approx(p)
    single = summarize(_replicated({"ecdp": [27.0], "worse": [25.0]}))
    long = build_table(single, {"rows": {}}, rows={"ecdp": "ECDP", "worse": "W"},
                       metrics=["psnr"], compare_to="ecdp").set_index("experiment")
    assert long.loc["worse", "significance"] == ""  # one training each: no test


def test_table_orderings_join_neighbours_by_significance():
    from ecdp.evaluate import summarize
    from ecdp.tables import orderings

    summary = summarize(_replicated({"ecdp": [27.0, 27.1, 26.9], "worse": [25.0, 25.1, 24.9],
                                     "same": [27.05, 26.95, 27.1]}))
    long = build_table(summary, {"rows": {}}, rows={"worse": "W", "ecdp": "ECDP", "same": "S"},
                       metrics=["psnr"], compare_to="ecdp")
    (line,) = orderings(long)
    # best first: S (27.033 + offset) and ECDP (27.0 + offset) within noise, then W far below
    assert line.endswith(": S ≈ ECDP > W.")
    assert "PSNR↑ (dB)" in line and "Welch" in line
    single = summarize(_replicated({"ecdp": [27.0], "worse": [25.0]}))
    long = build_table(single, {"rows": {}}, rows={"ecdp": "ECDP", "worse": "W"},
                       metrics=["psnr"], compare_to="ecdp")
    assert orderings(long) == []  # one training each: nothing to test


def test_job_minutes_sums_each_rules_jobs_from_a_snakemake_log(tmp_path):
    job_minutes = _tool("job_minutes")

    log = tmp_path / "run.snakemake.log"
    log.write_text("\n".join([
        "[Tue Dec  1 10:00:00 2026]", "localrule train:", "    jobid: 1",
        "[Tue Dec  1 10:00:00 2026]", "localrule train:", "    jobid: 2",
        "[Tue Dec  1 10:03:00 2026]", "Finished jobid: 1 (Rule: train)",
        "[Tue Dec  1 10:04:30 2026]", "Finished jobid: 2 (Rule: train)",
        "[Tue Dec  1 10:04:30 2026]", "localrule table:", "    jobid: 3",
        "[Tue Dec  1 10:05:00 2026]", "Finished jobid: 3 (Rule: table)"]))
    rules, wall = job_minutes.job_minutes(log)
    assert rules == {"train": (2, 7.5), "table": (1, 0.5)}  # side by side: 8 job-min in 5 min
    assert wall == 5.0


def test_compare_runs_checks_means_against_printed_spreads(tmp_path, capsys):
    compare_runs = _tool("compare_runs")
    from ecdp.evaluate import summarize

    for run, means in (("a", {"e": [20.0, 21.0, 22.0], "f": [25.0, 25.1, 24.9]}),
                       ("b", {"e": [20.5, 21.5, 22.5], "f": [26.0, 26.1, 25.9]})):
        (tmp_path / run / "metrics").mkdir(parents=True)
        summarize(_replicated(means)).to_csv(tmp_path / run / "metrics" / "summary.csv")
    df = compare_runs.compare(tmp_path / "a", tmp_path / "b").set_index(["experiment", "metric"])
    e, f = df.loc[("e", "psnr")], df.loc[("f", "psnr")]
    assert e["abs_diff"] == pytest.approx(0.5) and e["spread"] == pytest.approx(1.0)
    assert e["within"] and not f["within"]  # f: 1.0 apart, spread 0.1
    assert f["p_value"] < 0.01 < e["p_value"]
    assert df.loc[("e", "ssim"), "within"]  # identical deterministic values
    compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert "| e | psnr | 21.05 ± 1.00 | 21.55 ± 1.00 | 0.50 | 1.00 | yes |" in out
