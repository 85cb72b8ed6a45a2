"""This suite against the authors' released code, through golden values.

``tests/data/released/`` was written by ``benchmarks/released_equivalence.py --write-golden``
(the command is stored in golden.pt's meta) from checkouts of Yuan-Yutao/ECDP 1696fa1,
LeiaLi/SRDiff 5628508 and Janspiry/Image-Super-Resolution-via-Iterative-Refinement 01d27a7:
what each release computed for fixed inputs, weights and noise, and the two tiny checkpoints
SRDiff's and SR3's own code saved. Here the same quantities are computed by this suite and
must agree within the harness's tolerances (ECDP sample 1e-4 and NFE +-2; the rest 1e-5).
"""
import importlib.util
from pathlib import Path

import pytest
import torch

from ecdp.checkpoint import load_checkpoint
from suite.cli import main as cli

DATA = Path(__file__).parent / "data" / "released"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location(
        "released_equivalence", ROOT / "benchmarks" / "released_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden():
    return torch.load(DATA / "golden.pt", weights_only=True)


def _assert_all_pass(rows):
    failed = [f"{label}: {text}" for label, ok, text in rows if not ok]
    assert not failed, "\n".join(failed)


def test_golden_values_record_their_command(golden):
    assert golden["meta"]["command"].startswith("python benchmarks/released_equivalence.py")
    assert set(golden["meta"]["releases"]) == {"ecdp", "srdiff", "sr3"}


def test_ecdp_matches_the_release(harness, golden):
    """Network (time embedded as 300 t), L_SM, RRDBNet with the L1 sum, and the released
    probability-flow solve (z-space, tau = 300 t, jump_t): same NFE, sample within 1e-4."""
    torch.set_num_threads(1)
    ours = harness.ecdp_outputs(harness.our_ecdp(), harness.our_ecdp_rrdbnet(), harness.inputs(),
                                harness.ecdp_loss_noise())
    _assert_all_pass(harness.compare("ecdp", ours, golden["ecdp"]))
    # exactly the release's count: the end time as jump_t costs one final evaluation
    assert ours["nfe"] == int(golden["ecdp"]["nfe"]) > 20


def test_srdiff_matches_the_release(harness, golden):
    """SRDiff saved by its own code, imported, run: network, L1 loss, 100-step chain."""
    model = harness.imported_srdiff(DATA / "srdiff_release_saved.ckpt")
    ours = harness.srdiff_outputs(model, harness.inputs(), harness.srdiff_loss_noise())
    _assert_all_pass(harness.compare("srdiff", ours, golden["srdiff"]))


def test_sr3_matches_the_release(harness, golden):
    model = harness.imported_sr3(DATA / "sr3_release_saved.pth")
    ours = harness.sr3_outputs(model, harness.inputs(), harness.sr3_loss_noise(model))
    _assert_all_pass(harness.compare("sr3", ours, golden["sr3"]))


def test_import_checkpoint_cli_writes_a_strict_suite_checkpoint(harness, golden, tmp_path):
    from baselines.sr3 import SR3
    from baselines.srdiff import SRDiff

    out = tmp_path / "srdiff.pt"
    assert cli(["import-checkpoint", "srdiff", str(DATA / "srdiff_release_saved.ckpt"),
                str(out)]) == 0
    meta = load_checkpoint(out)["meta"]
    assert meta["provenance"]["source"] == "published checkpoint"
    assert len(meta["provenance"]["sha256"]) == 64
    assert meta["net"]["taps"] == [2, 5, 8] and meta["rrdb_net"]["trunk_conv"] is True
    x = harness.inputs()
    sample, nfe = SRDiff.load(out).sample(x["lr"][:1], generator=torch.Generator().manual_seed(7))
    assert nfe == 100
    assert (sample - golden["srdiff"]["sample"]).abs().max() < 1e-5

    out = tmp_path / "sr3.pt"
    assert cli(["import-checkpoint", "sr3", str(DATA / "sr3_release_saved.pth"), str(out),
                "--scale", "4", "--norm-groups", "8"]) == 0
    model = SR3.load(out)
    sample, _ = model.sample(x["lr"][:1], generator=torch.Generator().manual_seed(9))
    assert (sample - golden["sr3"]["sample"]).abs().max() < 1e-5
    assert "published SR3 checkpoint" in model.provenance["budget"]


def test_import_checkpoint_refuses_the_wrong_kind(tmp_path, capsys):
    out = tmp_path / "x.pt"
    assert cli(["import-checkpoint", "sr3", str(DATA / "srdiff_release_saved.ckpt"), str(out),
                "--scale", "4"]) == 1
    assert "not an SR3 generator" in capsys.readouterr().err
    assert not out.exists()
