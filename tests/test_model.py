"""ECDP as a user sees it: load a checkpoint, upscale (tiled or not), the CLI."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_MODEL, TINY_SAMPLING, sampled
from PIL import Image

from ecdp import ECDP
from ecdp.checkpoint import save_checkpoint
from suite.cli import main as cli
from ecdp.nets import count_parameters
from ecdp.tiling import tile_starts, tiled


def _checkpoint(tmp_path, model):
    meta = {"kind": "ecdp", "model": TINY_MODEL, "scale": 4, "sigma": 0.1,
            "parametrization": "hybrid", "k": 1.0, "budget": "test budget"}
    path = tmp_path / "ecdp.pt"
    save_checkpoint(path, step=3, meta=meta, state=model.state_dict(), ema=model.state_dict())
    return path


def test_load_and_upscale_is_seeded_and_shaped(tiny_ecdp, tmp_path):
    path = _checkpoint(tmp_path, tiny_ecdp())
    model = ECDP.load(path)
    assert model.provenance == {"weights": "ema step 3", "budget": "test budget",
                                "checkpoint": str(path), "params": count_parameters(model)}
    lr = torch.rand(1, 3, 10, 12)
    a, nfe = model.upscale(lr, sampling=TINY_SAMPLING, generator=torch.Generator().manual_seed(1))
    b, _ = model.upscale(lr, sampling=TINY_SAMPLING, generator=torch.Generator().manual_seed(1))
    c, _ = model.upscale(lr, sampling=TINY_SAMPLING, generator=torch.Generator().manual_seed(2))
    assert a.shape == (1, 3, 40, 48) and nfe == 4
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1


def test_load_is_strict(tiny_ecdp, tmp_path):
    model = tiny_ecdp()
    state = model.state_dict()
    state.pop(next(iter(state)))
    meta = {"model": TINY_MODEL, "scale": 4, "sigma": 0.1, "parametrization": "hybrid", "k": 1.0,
            "budget": ""}
    save_checkpoint(tmp_path / "bad.pt", step=1, meta=meta, state=state, ema=state)
    with pytest.raises(RuntimeError, match="Missing key"):
        ECDP.load(tmp_path / "bad.pt")


def test_tiles_cover_and_blend_without_seams():
    assert tile_starts(50, 16, 4) == [0, 12, 24, 34]
    assert tile_starts(10, 16, 4) == [0]
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(50, 4, 4)
    lr = torch.rand(1, 3, 50, 70)

    def nearest(x, g):
        return F.interpolate(x, scale_factor=4, mode="nearest"), 1

    full, _ = nearest(lr, None)
    out, nfe = tiled(nearest, lr, scale=4, tile=16, overlap=4)
    assert nfe == 4 * 6 and torch.allclose(out, full, atol=1e-6)


def test_tiled_upscale_of_ecdp_is_close_to_untiled_in_the_interior(tiny_ecdp):
    model = tiny_ecdp()
    deterministic = {**TINY_SAMPLING, "temperature": 0.0}  # x1 = mu
    lr = torch.rand(1, 3, 24, 24)
    full, _ = model.upscale(lr, sampling=deterministic)
    tiles, _ = model.upscale(lr, sampling=deterministic, tile=16, overlap=8)
    assert tiles.shape == full.shape
    assert (tiles - full).abs().mean() < 0.05


def test_cli_upscale_writes_png(tiny_ecdp, tmp_path, capsys):
    path = _checkpoint(tmp_path, tiny_ecdp())
    Image.fromarray((np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "in.png")
    assert cli(["upscale", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--checkpoint",
                str(path), "--tile", "8", "--overlap", "2"]) == 0
    assert Image.open(tmp_path / "out.png").size == (40, 48)
    assert "NFE" in capsys.readouterr().out
    assert cli(["upscale", str(tmp_path / "in.png"), str(tmp_path / "o2.png"), "--checkpoint",
                str(tmp_path / "nope.pt")]) == 1
    assert not (tmp_path / "o2.png").exists()


def _lr_png(path, h=12, w=10):
    Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)).save(path)


def test_cli_upscale_runs_any_suite_checkpoint_and_writes_by_extension(tmp_path, capsys):
    """Before: an RRDB checkpoint died with KeyError 'parametrization' and out.jpg got PNG bytes."""
    from ecdp.nets import RRDBNet

    net = {"features": 8, "growth": 4, "blocks": 1}
    rrdb = RRDBNet(scale=4, **net)
    save_checkpoint(tmp_path / "rrdb.pt", step=1, state=rrdb.state_dict(), ema=rrdb.state_dict(),
                    meta={"kind": "rrdbnet", "scale": 4, "net": net, "budget": "test"})
    _lr_png(tmp_path / "in.png")
    for name, magic in (("out.jpg", b"\xff\xd8\xff"), ("out.webp", b"RIFF"),
                        ("out.PNG", b"\x89PNG")):
        assert cli(["upscale", str(tmp_path / "in.png"), str(tmp_path / name),
                    "--checkpoint", str(tmp_path / "rrdb.pt")]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic), name
    assert Image.open(tmp_path / "out.webp").size == (40, 48)
    with torch.no_grad():
        expected = rrdb(torch.from_numpy(np.array(Image.open(tmp_path / "in.png"))).permute(
            2, 0, 1)[None].float().div(255)).clamp(0, 1)
    lossless = torch.from_numpy(np.array(Image.open(tmp_path / "out.webp"))).permute(2, 0, 1)
    assert (lossless.float() - expected[0].mul(255)).abs().max() <= 0.5 + 1e-4
    assert "rrdb x4" in capsys.readouterr().out


def test_cli_upscale_checks_everything_before_sampling(tiny_ecdp, tmp_path, capsys):
    path = _checkpoint(tmp_path, tiny_ecdp())
    _lr_png(tmp_path / "in.png")
    (tmp_path / "folder").mkdir()
    cases = {str(tmp_path / "folder"): "is a directory", str(tmp_path / "o.xyz"): "unknown image "
             "extension '.xyz'", str(tmp_path / "o.png"): "kind 'other'"}
    torch.save({"format": 1, "step": 0, "meta": {"kind": "other"}, "state": {}, "ema": {}},
               tmp_path / "other.pt")
    for out, message in cases.items():
        ckpt = tmp_path / "other.pt" if message.startswith("kind") else path
        assert cli(["upscale", str(tmp_path / "in.png"), out, "--checkpoint", str(ckpt)]) == 1
        err = capsys.readouterr()
        assert message in err.err and "Traceback" not in err.err and "NFE" not in err.out
    assert not (tmp_path / "o.xyz").exists() and not (tmp_path / "o.png").exists()


def test_cli_upscale_untiled_shows_progress(tiny_ecdp, tmp_path, capsys):
    path = _checkpoint(tmp_path, tiny_ecdp())
    _lr_png(tmp_path / "in.png", 8, 8)
    assert cli(["upscale", str(tmp_path / "in.png"), str(tmp_path / "o.png"), "--checkpoint",
                str(path)]) == 0
    captured = capsys.readouterr()
    nfe = int(captured.out.split("NFE ")[1].split(",")[0])
    assert f"{nfe} eval" in captured.err and "network evaluations" in captured.err


def test_conditioning_cache_batches_and_channels_last_change_nothing(tiny_ecdp):
    """The speed-ups: per-sample LR conditioning (exactly the same numbers), several images per
    fixed-step solve (each as it would be alone) and channels-last (within 1e-5)."""
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(3, 3, 8, 8, generator=g)
    model = tiny_ecdp()
    feats, z, t = model.encoder(lr), torch.randn(3, 3, 32, 32, generator=g), torch.tensor(0.3)
    cached = model.unet.condition(feats, z.shape[-2:])
    assert torch.equal(model.unet(z, t, feats), model.unet(z, t, conditioning=cached))

    def generators():
        return [torch.Generator().manual_seed(i) for i in range(3)]

    spec = {"solver": "dpmpp_2m", "nfe": 6}
    batched = sampled(model, {**spec, "batch": 3})
    assert batched.batch == 3
    with torch.no_grad():
        together, nfe = batched.super_resolve(lr, generator=generators())
        alone = torch.cat([batched.super_resolve(lr[i:i + 1], generator=gen)[0]
                           for i, gen in enumerate(generators())])
        fast = sampled(tiny_ecdp(), {**spec, "channels_last": True})
        in_cl = torch.cat([fast.super_resolve(lr[i:i + 1], generator=gen)[0]
                           for i, gen in enumerate(generators())])
    assert nfe == 6 and (together - alone).abs().max() < 1e-5
    assert fast.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert (in_cl - alone).abs().max() < 1e-5
    with pytest.raises(ValueError, match="batch: 2 images per solve with solver dopri5.*shared"):
        sampled(model, {"solver": "dopri5", "batch": 2})


# Issue 25: `ecdp upscale` and the API, as a new user and an adversary tried them. Each test
# failed before its fix (the docstring says how).

def _rrdb_checkpoint(path, poison: float | None = None):
    from ecdp.nets import RRDBNet

    net = {"features": 8, "growth": 4, "blocks": 1}
    rrdb = RRDBNet(scale=4, **net)
    state = rrdb.state_dict()
    if poison is not None:
        name = next(k for k, v in state.items() if v.dtype.is_floating_point and v.dim() > 1)
        state[name] = state[name].clone()
        state[name].view(-1)[0] = poison
    save_checkpoint(path, step=1, state=state, ema=state,
                    meta={"kind": "rrdbnet", "scale": 4, "net": net, "budget": "test"})
    return path


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_a_non_finite_weight_is_an_error_not_a_black_image(tiny_ecdp, tmp_path, capsys, poison):
    """Before: a checkpoint with one NaN (or overflowing) weight gave an all-black image, rc 0
    (RRDB, SRDiff, SR3). Now one check for every method, before anything is written."""
    _lr_png(tmp_path / "in.png")
    rrdb = _rrdb_checkpoint(tmp_path / "rrdb.pt", poison)
    model = tiny_ecdp()
    with torch.no_grad():
        model.unet.conv_in.weight[0, 0, 0, 0] = poison
    ecdp = _checkpoint(tmp_path, model)
    for ckpt in (rrdb, ecdp):
        assert cli(["upscale", str(tmp_path / "in.png"), str(tmp_path / "o.png"),
                    "--checkpoint", str(ckpt), "--sampling", "{solver: euler, nfe: 2}"
                    if ckpt == ecdp else "{}"]) == 1
        err = capsys.readouterr().err
        assert "NaN or infinite" in err or "non-finite values" in err, err
        assert not (tmp_path / "o.png").exists()


def test_upscale_applies_the_exif_orientation(tmp_path, capsys):
    """Before: a phone JPEG tagged 'rotate 90' came out a quarter turn from how viewers show
    it (the pixels were read as stored)."""
    stored = (np.random.default_rng(0).random((10, 14, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to view
    image.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    assert cli(["upscale", str(tmp_path / "phone.jpg"), str(tmp_path / "o.png"),
                "--checkpoint", str(_rrdb_checkpoint(tmp_path / "rrdb.pt"))]) == 0
    assert Image.open(tmp_path / "o.png").size == (40, 56)  # (W, H): shown 10 wide, 14 high


def test_upscale_checks_the_output_folder_and_overlap_before_sampling(tmp_path, capsys):
    """Before: an unwritable output was found after the whole solve (a PermissionError
    traceback); a negative --overlap left black bands with rc 0."""
    _lr_png(tmp_path / "in.png")
    rrdb = str(_rrdb_checkpoint(tmp_path / "rrdb.pt"))
    (tmp_path / "a-file").write_text("not a folder")
    cases = {(str(tmp_path / "a-file" / "o.png"),): "cannot write here",
             (str(tmp_path / "o.png"), "--tile", "6", "--overlap", "-2"):
                 "--overlap -2: must be 0 or more",
             (str(tmp_path / "o.png"), "--sampling", "[1, 2]"): "give a mapping",
             (str(tmp_path / "o.png"), "--sampling", "{steps: 4}"): "is not sampled"}
    for args, message in cases.items():
        assert cli(["upscale", str(tmp_path / "in.png"), *args, "--checkpoint", rrdb]) == 1
        err = capsys.readouterr()
        assert message in err.err and "Traceback" not in err.err and "NFE" not in err.out
    assert not (tmp_path / "o.png").exists()
    with pytest.raises(ValueError, match="overlap at least 0"):
        tiled(lambda x, g: (x, 1), torch.rand(1, 3, 20, 20), scale=1, tile=8, overlap=-2)


def test_upscale_documents_every_option_and_chooses_the_sampler(tiny_ecdp, tmp_path, capsys):
    """Before: no help for --checkpoint, --seed, --weights; SR3 always ran its full chain."""
    from suite.cli import build_parser

    upscale = build_parser()._subparsers._group_actions[0].choices["upscale"]
    for action in upscale._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
    path = _checkpoint(tmp_path, tiny_ecdp())
    _lr_png(tmp_path / "in.png", 8, 8)
    assert cli(["upscale", str(tmp_path / "in.png"), str(tmp_path / "o.png"), "--checkpoint",
                str(path), "--sampling", "{solver: dpmpp_2m, nfe: 3}"]) == 0
    out = capsys.readouterr().out
    assert "NFE 3," in out and "'solver': 'dpmpp_2m'" in out
    assert cli(["upscale", str(tmp_path / "in.png"), str(tmp_path / "o.png"), "--checkpoint",
                str(path), "--sampling", "{solver: dpmpp_2m, nfe: -3}"]) == 1
    assert "sampling.nfe" in capsys.readouterr().err


def test_the_api_names_what_it_expected(tiny_ecdp, tmp_path):
    """Before: ECDP.load of an RRDB checkpoint raised KeyError 'parametrization'; an image
    without its batch dimension gave a tensor-size error that named no shape."""
    from baselines import method_from_checkpoint

    with pytest.raises(ValueError, match="a 'rrdbnet' checkpoint, not an ECDP one"):
        ECDP.load(_rrdb_checkpoint(tmp_path / "rrdb.pt"))
    method = method_from_checkpoint(_checkpoint(tmp_path, tiny_ecdp()),
                                    sampling={"solver": "euler", "nfe": 2})
    with pytest.raises(ValueError, match=r"expected an LR batch of shape \(B, 3, h, w\).*"
                                         r"got \(3, 8, 8\).*lr\[None\]"):
        method.super_resolve(torch.rand(3, 8, 8))
