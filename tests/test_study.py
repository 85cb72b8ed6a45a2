"""The sampling study's summaries: which fast solve is closest, which is cheapest within tolerance."""
import pandas as pd
import pytest

from ecdp.study import best_fast, cheapest_within, study_grid, write_study_table


def _summary():
    rows = [  # solver, setting, nfe, seconds, psnr, lr_psnr, rms, released
        ("dopri5", "tol 0.001", 85, 9.0, 26.73, 40.84, 0.0007, True),
        ("dpmpp_2m", "NFE 10", 10, 1.1, 26.70, 40.42, 0.0015, False),
        ("dpm_solver_3", "NFE 10", 10, 1.2, 26.73, 41.02, 0.0042, False),
        ("dpm_solver_3", "NFE 4", 4, 0.5, 27.03, 42.25, 0.0150, False),
        ("euler", "NFE 50", 50, 4.7, 26.53, 40.49, 0.0048, False),
    ]
    frame = pd.DataFrame(rows, columns=["solver", "setting", "nfe", "seconds", "psnr", "lr_psnr",
                                        "rms_to_reference", "released"])
    return frame.assign(experiment="ecdp", ssim=0.6, lpips=float("nan"), n_images=3,
                        reference="dopri5 tol 1e-06 (357 NFE)", lpips_weights="unavailable",
                        device="cpu", threads=2)


def test_closest_and_cheapest_fast_solves():
    summary = _summary()
    best = best_fast(summary, "ecdp")
    assert (best["solver"], best["nfe"]) == ("dpmpp_2m", 10)          # least RMS at <= 10 NFE
    assert best["d_lr_psnr"] == pytest.approx(-0.42) and best["time_ratio"] == pytest.approx(1.1 / 9)
    cheap = cheapest_within(summary, "ecdp")
    assert (cheap["solver"], cheap["setting"]) == ("dpm_solver_3", "NFE 10")  # within both
    assert cheap["d_lr_psnr"] == pytest.approx(0.18)
    assert cheapest_within(summary, "ecdp", d_lr_psnr=0.1) is None
    assert best_fast(summary, "other") is None


def test_study_table_marks_the_released_solve(tmp_path):
    text = write_study_table(_summary(), tmp_path / "sampling", title="t")
    assert "| dopri5 * | tol 0.001 | 85.0 |" in text and "| LPIPS |" in text and "n/a" in text
    assert "Fastest fixed-step solve within 0.1 dB PSNR and 0.2 dB LR-PSNR" in text
    assert "dpm_solver_3 NFE 10 (10 NFE vs 85.0)" in text
    assert (tmp_path / "sampling.csv").exists()


def test_study_grid_skips_budgets_a_solver_cannot_meet():
    grid = study_grid(tolerances=[1e-2, 1e-3], solvers=["rk4", "dpmpp_2m"], nfe=[2, 4])
    assert [g.get("rtol") for g in grid[:2]] == [1e-2, 1e-3]
    assert {"solver": "rk4", "nfe": 2} not in grid and {"solver": "rk4", "nfe": 4} in grid
    assert {"solver": "dpmpp_2m", "nfe": 2} in grid
