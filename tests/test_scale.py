"""The paper scale before the first launch: the memory plan, tiles, stand-in weights, CelebA's
partition file, the GPU check (on CPU) and the rehearsal overlay."""
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from suite import memory
from ecdp.tiling import Tiled

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ROOT / "workflow" / "presets"


class Nearest:
    """A per-pixel method: tiling cannot change its output."""
    name, stochastic, scale, sampling = "nearest", False, 4, {"solver": "none"}

    def super_resolve(self, lr, *, generator=None, image="batch"):
        return torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest"), 3


def test_tiles_blend_to_the_whole_image_and_sum_nfe():
    lr = torch.rand(2, 3, 37, 53)
    whole, nfe = Nearest().super_resolve(lr)
    tiled = Tiled(Nearest(), tile=16, overlap=4)
    out, tiled_nfe = tiled.super_resolve(lr)
    assert torch.allclose(out, whole, atol=1e-6)
    assert tiled_nfe == 3 * 5 * 3  # 3 x 5 tiles of 16 px over 37 x 53 LR px, 3 NFE each
    assert tiled.tiling == {"tile": 16, "overlap": 4} and tiled.sampling == {"solver": "none"}
    one = Tiled(Nearest(), tile=64, overlap=4).super_resolve(lr)
    assert torch.equal(one[0], whole) and one[1] == nfe  # one tile: the whole image
    with pytest.raises(ValueError, match="evaluation.tile"):
        Tiled(Nearest(), tile=8, overlap=8)


def test_planned_bytes_and_the_largest_tile_that_fits():
    gib = memory.GIB
    assert memory.planned_bytes(10 * gib) == int(10 * gib * 1.1 + gib)

    class Costs:  # peak grows with the pixels of a tile: 1 GiB per 100k HR px
        @staticmethod
        def sampling_peak(kind, net, *, scale, height, width, batch):
            return int(height * width / 1e5 * gib)

    # LR 512 + 2 x 16 overlap, x4: 2176^2 px, 47 GiB tracked, 53 planned; 384: 1664^2, 28 and 32
    tile, peak = memory._tile(Costs, "ecdp", {}, scale=4, overlap=16, device_bytes=40 * gib,
                              batch=1)
    assert tile == 384 and peak == memory.planned_bytes(int(1664 ** 2 / 1e5 * gib))
    assert memory._tile(Costs, "ecdp", {}, scale=4, overlap=16, device_bytes=gib, batch=1)[0] \
        is None


def test_tracked_peaks_follow_the_sizes():
    from baselines.costs import networks, sampling_peak, training_peak
    from ecdp.model import ECDP

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    kind, net = networks(config)["ecdp"]
    small = sampling_peak(kind, net, scale=4, height=64, width=64)
    large = sampling_peak(kind, net, scale=4, height=128, width=128)
    params = sum(p.numel() * 4 for p in ECDP.from_config(net, scale=4, sigma=0.2).parameters())
    # activations are 4x at 4x the pixels; weights are the same
    assert (large - params) / (small - params) == pytest.approx(4, rel=0.15)
    step = training_peak(kind, net, scale=4, batch=2, patch=64, ema=True)
    assert step > small + 3 * params  # weights, EMA, Adam's moments and the saved activations


def test_stand_in_weights_take_the_present_path_and_say_so(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from http_server import serve

    from ecdp.weights import describe_weights, fetch_weights

    torch.manual_seed(0)
    files = {}
    for name, layers in (("alexnet-owt-7be5be79.pth", 2), ("vgg19-dcbb9e9d.pth", 3)):
        path = tmp_path / name
        torch.save(torch.nn.Sequential(*[torch.nn.Linear(2, 2)] * layers).state_dict(), path)
        files[f"/{name}"] = path.read_bytes()
    with serve(files) as (url, _):
        sources = {n.split("-")[0]: {"url": f"{url}/{n}",
                                     "sha256": hashlib.sha256(files[f'/{n}']).hexdigest()}
                   for n in ("alexnet-owt-7be5be79.pth", "vgg19-dcbb9e9d.pth")}
        status = fetch_weights(tmp_path / "cache", sources=sources)
    assert status["vgg19"]["status"] == "ok" and status["vgg19"]["published"] is False
    assert "NOT the published weights" in describe_weights("vgg19", status["vgg19"])
    with pytest.raises(ValueError, match="weights.sources: unknown backbone"):
        fetch_weights(tmp_path / "other", sources={"resnet": sources["vgg19"]})


def test_celeba_partition_file_decides_the_splits(tmp_path):
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    from ecdp.data.datasets import prepare_dataset

    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in names:
            img = io.BytesIO()
            Image.fromarray(np.full((218, 178, 3), 90, np.uint8)).save(img, format="JPEG")
            zf.writestr(f"img_align_celeba/{n}", img.getvalue())
    downloads = tmp_path / "resources" / "downloads" / "celeba"
    downloads.mkdir(parents=True)
    (downloads / "img_align_celeba.zip").write_bytes(buf.getvalue())
    (downloads / "list_eval_partition.txt").write_text(
        "".join(f"{n} {s}\n" for n, s in zip(names, [0, 0, 0, 1, 2, 2])))
    root = tmp_path / "resources" / "datasets" / "celeba"
    manifest = prepare_dataset("celeba", root, size=32, progress=False)
    assert [len(manifest["splits"][s]) for s in ("train", "val", "test")] == [3, 1, 2]
    assert manifest["sources"]["partition"] == "file"
    (downloads / "list_eval_partition.txt").write_text("000001.jpg 7\n")
    with pytest.raises(ValueError, match="line 1: expected"):
        prepare_dataset("celeba", root.parent / "again", size=32, progress=False)


def test_rehearsal_overlay_keeps_the_networks_and_shrinks_the_budget():
    from snakemake.utils import update_config, validate

    def merged(*names):
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        for name in names:
            update_config(config, yaml.safe_load((PRESETS / f"{name}.yaml").read_text()))
        config["tables"] = {k: v for k, v in config["tables"].items() if v is not None}
        validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
        return config

    for preset in ("paper-div2k", "paper-celeba", "paper-imagenet"):
        paper, rehearsal = merged(preset), merged(preset, "rehearsal")
        for key in ("model", "baselines", "tables", "figures", "dataset", "scale", "run"):
            assert rehearsal[key] == paper[key], (preset, key)
        for recipe, cfg in rehearsal["training"].items():
            if isinstance(cfg, dict):
                assert cfg["steps"] <= 3 and cfg["batch_size"] <= 2, (preset, recipe)
                assert cfg["milestones"] == paper["training"][recipe]["milestones"]
                assert cfg.get("ema_decay") == paper["training"][recipe].get("ema_decay")
        assert rehearsal["rehearsal"] and not paper["rehearsal"]


@pytest.mark.slow
def test_gpu_check_runs_tiny_on_this_device():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for section in ("training steps:", "stage 2:", "samplers:", "timing:", "ddp:", "plan:"):
        assert section in out, section
    for name in ("rrdb", "ecdp", "srdiff", "sr3"):
        assert f"train {name}" in out and f"sample {name}" in out
    assert "gradients unchanged: True" in out and "Peak device memory per job" in out


def test_a_split_too_large_for_memory_is_read_per_sample(tmp_path, monkeypatch):
    """ImageNet's 1.28M training images (252 GB at 256 px) cannot be held in memory: a split
    over IN_MEMORY_BYTES is read from disk per sample, and gives the same batches."""
    import numpy as np
    from PIL import Image

    from ecdp.data import patches
    from ecdp.data.datasets import prepare_dataset
    from ecdp.rng import batch_generator

    src = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for split, count in (("train/n1", 3), ("val", 1)):
        (src / split).mkdir(parents=True)
        for i in range(count):
            Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8)).save(
                src / split / f"{i}.png")
    root = tmp_path / "resources" / "datasets" / "imagenet"
    manifest = prepare_dataset("imagenet", root, path=str(src), size=32)
    assert manifest["splits"]["val"] == manifest["splits"]["test"][:10]  # stage 1 validates
    memory = patches.PatchSampler.from_dataset(root, "train", patch_size=16, scale=4)
    monkeypatch.setattr(patches, "IN_MEMORY_BYTES", 0)
    disk = patches.PatchSampler.from_dataset(root, "train", patch_size=16, scale=4)
    assert isinstance(memory.images, list) and isinstance(disk.images, patches._DiskImages)
    for step in range(3):
        a, b = (s.sample(4, batch_generator(0, 0, step)) for s in (memory, disk))
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    big = patches.PatchSampler.on_disk(disk.images, disk.names, patch_size=48, scale=4)
    with pytest.raises(Exception, match="smaller than the 48x48 training crop"):
        big.sample(1, batch_generator(0, 0, 0))


@pytest.mark.slow
def test_a_broken_shape_fails_the_rehearsal_with_a_named_error(tmp_path):
    """paper-div2k's rehearsal with a wrong encoder tap (23 with 23 blocks): the DF2K download,
    preparation and the paper-size RRDBNet run, then stage 1 stops, naming the taps."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rehearsal",
                                                  ROOT / "benchmarks" / "rehearsal.py")
    rehearsal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rehearsal)
    served = tmp_path / "served"
    files = rehearsal.synthetic_files(tmp_path / "imagenet")
    for path, data in files.items():
        (served / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (served / path.lstrip("/")).write_bytes(data)
    url, server = rehearsal.serve(served)
    try:
        overlay = tmp_path / "sources.yaml"
        overlay.write_text(yaml.safe_dump(rehearsal.sources_overlay(
            url, {**files, "/weights/alexnet-owt-7be5be79.pth": b"",
                  "/weights/vgg19-dcbb9e9d.pth": b""}, tmp_path / "imagenet")))
        broken = tmp_path / "broken.yaml"
        broken.write_text("model:\n  encoder: {taps: [1, 8, 15, 23]}\n")
        target = "results/div2k/x4/models/ecdp-stage1-hybrid/train0/model.pt"
        proc = subprocess.run(
            ["snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path / "run"),
             "--cores", "2", target, "--configfile", str(PRESETS / "paper-div2k.yaml"),
             str(PRESETS / "rehearsal.yaml"), str(overlay), str(broken)],
            capture_output=True, text=True)
    finally:
        server.shutdown()
    out = proc.stdout + proc.stderr
    logs = "".join(p.read_text() for p in (tmp_path / "run" / "logs").rglob("*.log"))
    assert proc.returncode != 0
    assert re.search(r"taps .1, 8, 15, 23. must index the 23 blocks", out + logs), out[-3000:]
    assert not (tmp_path / "run" / target).exists()
