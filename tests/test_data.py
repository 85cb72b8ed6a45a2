import hashlib
import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from http_server import serve
from PIL import Image

from ecdp.data.datasets import load_hr, load_manifest, prepare_dataset
from ecdp.data.download import (ChecksumError, DownloadError, UnsafeArchiveError, download,
                                extract)
from ecdp.data.io import ImageError, list_images, read_image, sha256_file
from ecdp.data.pairs import make_pairs
from ecdp.data.patches import PatchSampler
from ecdp.rng import batch_generator
from ecdp.data.sample_photos import SPLITS
from ecdp.degradation import degrade


def _png_bytes(array, **kw):
    buf = io.BytesIO()
    Image.fromarray(array, **kw).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- image policy

def test_read_image_modes(tmp_path):
    rgb = (np.random.default_rng(0).random((10, 12, 3)) * 255).astype(np.uint8)
    (tmp_path / "rgb.png").write_bytes(_png_bytes(rgb))
    assert (read_image(tmp_path / "rgb.png") == rgb).all()
    gray = rgb[..., 0]
    (tmp_path / "gray.png").write_bytes(_png_bytes(gray))
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (10, 12, 3) and (out[..., 2] == gray).all()
    opaque = np.dstack([rgb, np.full((10, 12), 255, np.uint8)])
    (tmp_path / "opaque.png").write_bytes(_png_bytes(opaque))
    assert (read_image(tmp_path / "opaque.png") == rgb).all()
    translucent = opaque.copy()
    translucent[0, 0, 3] = 10
    (tmp_path / "rgba.png").write_bytes(_png_bytes(translucent))
    with pytest.raises(ImageError, match="rgba.png.*translucent"):
        read_image(tmp_path / "rgba.png")


def test_read_image_16bit_refused_or_converted(tmp_path):
    a16 = np.array([[0, 257 * 10, 65535]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "deep.png")
    with pytest.raises(ImageError, match="deep.png.*16-bit"):
        read_image(tmp_path / "deep.png")
    out = read_image(tmp_path / "deep.png", allow_16bit=True)
    assert out[0, :, 0].tolist() == [0, 10, 255]


def _png48(a: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one): IHDR depth 16, colour type 2."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    h, w, _ = a.shape
    rows = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_48bit_rgb_png_is_refused_not_truncated(tmp_path):
    a = np.full((4, 5, 3), 257 * 100 + 200, dtype=np.uint16)   # 8-bit truncation: 100
    (tmp_path / "deep48.png").write_bytes(_png48(a))
    with Image.open(tmp_path / "deep48.png") as im:
        assert im.mode == "RGB"          # what Pillow reports: the case that used to pass
    for allow in (False, True):
        with pytest.raises(ImageError, match="deep48.png.*16 bits per channel"):
            read_image(tmp_path / "deep48.png", allow_16bit=allow)


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="junk.png"):
        read_image(tmp_path / "junk.png")
    data = _png_bytes((np.ones((64, 64, 3)) * 7).astype(np.uint8))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png.*(corrupt|truncated)"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.*does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no images"):
        prepare_dataset("folder", tmp_path / "ds", path=str(tmp_path / "empty"))
    assert not (tmp_path / "ds" / "manifest.json").exists()


# ---------------------------------------------------------------- datasets

def test_sample_photos_split_and_manifest(tmp_path):
    m = prepare_dataset("sample-photos", tmp_path)
    assert len(m["splits"]["test"]) >= 3
    train = {e["name"] for e in m["splits"]["train"]}
    test = {e["name"] for e in m["splits"]["test"]}
    assert not train & test and test == set(SPLITS["test"])
    for entries in m["splits"].values():
        for e in entries:
            assert sha256_file(tmp_path / e["path"]) == e["sha256"]
            assert read_image(tmp_path / e["path"]).shape[2] == 3
    assert load_manifest(tmp_path) == json.loads((tmp_path / "manifest.json").read_text())


def test_folder_dataset_and_pairs_modcrop(tmp_path):
    src = tmp_path / "set5"
    src.mkdir()
    rng = np.random.default_rng(0)
    (src / "a.png").write_bytes(_png_bytes((rng.random((51, 63, 3)) * 255).astype(np.uint8)))
    (src / "b.png").write_bytes(_png_bytes((rng.random((40, 40)) * 255).astype(np.uint8)))
    prepare_dataset("folder", tmp_path / "ds", path=str(src))
    pairs = make_pairs(tmp_path / "ds", tmp_path / "res", split="test", scale=4, progress=False)
    a = pairs["pairs"][0]
    assert a["hr_size"] == [48, 60]
    lr = read_image(tmp_path / "res" / a["lr"])
    hr = read_image(tmp_path / "res" / a["hr"])
    assert lr.shape == (12, 15, 3) and (degrade(hr, 4) == lr).all()
    assert sha256_file(tmp_path / "res" / a["lr"]) == a["lr_sha256"]
    assert (tmp_path / "res" / "lr" / "test.json").exists()


def test_manifest_checksums_are_verified_on_read(tmp_path):
    """Before: a test image replaced after prepare_dataset was read as if it were the old one."""
    from ecdp.data.datasets import load_hr, load_manifest
    from ecdp.data.pairs import load_pairs, read_pair
    from ecdp.evaluate import region_of

    src = tmp_path / "mine"
    src.mkdir()
    rng = np.random.default_rng(1)
    (src / "a.png").write_bytes(_png_bytes((rng.random((40, 44, 3)) * 255).astype(np.uint8)))
    prepare_dataset("folder", tmp_path / "ds", path=str(src))
    entry = load_manifest(tmp_path / "ds")["splits"]["test"][0]
    assert load_hr(tmp_path / "ds", entry, None).shape == (40, 44, 3)
    pairs = make_pairs(tmp_path / "ds", tmp_path / "res", split="test", scale=4, crop=16,
                       progress=False)
    assert region_of(pairs) == "central HR crops of at most 16 px (evaluation.crop)"
    assert pairs["pairs"][0]["hr_size"] == [16, 16]
    base, pairs = load_pairs(tmp_path / "res" / "lr" / "test.json")
    read_pair(base, pairs["pairs"][0])
    (src / "a.png").write_bytes(_png_bytes(np.zeros((40, 44, 3), np.uint8)))
    with pytest.raises(ImageError, match="a.png: sha256 .* differs from .*recorded in its "
                                         "manifest"):
        load_hr(tmp_path / "ds", entry, None)
    (tmp_path / "res" / pairs["pairs"][0]["lr"]).write_bytes(_png_bytes(np.zeros((4, 4, 3),
                                                                                  np.uint8)))
    with pytest.raises(ImageError, match="sha256 .* differs"):
        read_pair(base, pairs["pairs"][0])
    assert region_of({"crop": None}) == "full images"


def test_the_region_line_describes_every_image_evaluated():
    """Before: the region named the first image's size only ("full image (300x448 HR)") when
    images of several sizes were evaluated (the paper presets evaluate whole images)."""
    import pandas as pd

    from ecdp.evaluate import describe_sizes, summarize

    sizes = ["300x448", "400x600", "424x640", "400x600"]
    rows = pd.DataFrame([{"experiment": "e", "protocol_name": "paper", "image": f"i{i}",
                          "sample_seed": 0, "train_seed": 0, "psnr": 1.0, "ssim": 1.0,
                          "lpips": 0.0, "lr_psnr": 1.0, "seconds": 1.0, "nfe": 1,
                          "region": "full images", "hr_size": size}
                         for i, size in enumerate(sizes)])
    region = summarize(rows)["region"].iloc[0]
    assert region == ("full images, HR 300x448 (1 image), 400x600 (2 images), "
                      "424x640 (1 image)")
    many = [f"{h}x{w}" for h, w in zip(range(1000, 1060, 10), range(2000, 2060, 10))]
    assert describe_sizes(many * 2) == "HR 1000-1050 x 2000-2050 px (12 images, 6 sizes)"


def test_pairs_fail_on_corrupt_image_and_leave_no_manifest(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.png").write_bytes(_png_bytes(np.zeros((32, 32, 3), np.uint8)))
    (src / "zbad.png").write_bytes(b"\x89PNG broken")
    prepare_dataset("folder", tmp_path / "ds", path=str(src))
    with pytest.raises(ImageError, match="zbad.png"):
        make_pairs(tmp_path / "ds", tmp_path / "res", split="test", scale=4, progress=False)
    assert not (tmp_path / "res" / "lr" / "test.json").exists()


def test_center_square_transform(tmp_path):
    src = tmp_path / "im"
    src.mkdir()
    (src / "x.png").write_bytes(_png_bytes(np.full((80, 120, 3), 50, np.uint8)))
    out = load_hr(tmp_path, {"path": "im/x.png"}, {"kind": "center_square", "size": 64})
    assert out.shape == (64, 64, 3) and (out == 50).all()


# ---------------------------------------------------------------- patches

def test_patch_sampler_pairs_and_determinism():
    rng = np.random.default_rng(0)
    images = [(rng.random((40, 48, 3)) * 255).astype(np.uint8) for _ in range(2)]
    s = PatchSampler(images, ["a", "b"], patch_size=16, scale=4)
    lr, hr = s.sample(8, batch_generator(1, 0, 5))
    assert lr.shape == (8, 3, 4, 4) and hr.shape == (8, 3, 16, 16)
    lr2, hr2 = s.sample(8, batch_generator(1, 0, 5))
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    lr3, _ = s.sample(8, batch_generator(1, 0, 6))
    assert not torch.equal(lr, lr3)
    # each LR is the degradation of its (augmented) HR, up to one grey level of float rounding
    for l_, h_ in zip(lr, hr):
        ref = degrade((h_ * 255).round().byte().permute(1, 2, 0).numpy(), 4)
        assert np.abs(ref.astype(int) - (l_ * 255).round().int().permute(1, 2, 0).numpy()).max() <= 1


def test_patch_sampler_rejects_small_images():
    with pytest.raises(ImageError, match="tiny.*smaller than the 32x32"):
        PatchSampler([np.zeros((20, 40, 3), np.uint8)], ["tiny"], patch_size=32, scale=4)


# ---------------------------------------------------------------- downloads

def test_download_verifies_checksum_and_is_atomic(tmp_path):
    data = b"x" * 5000
    digest = hashlib.sha256(data).hexdigest()
    with serve({"/f.bin": data}) as (url, _):
        out = download(f"{url}/f.bin", tmp_path / "f.bin", sha256=digest, progress=False)
        assert out.read_bytes() == data
        with pytest.raises(ChecksumError, match="checksum mismatch"):
            download(f"{url}/f.bin", tmp_path / "g.bin", sha256="0" * 64, progress=False)
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()


def test_interrupted_download_resumes_with_range(tmp_path):
    data = bytes(range(256)) * 400
    digest = hashlib.sha256(data).hexdigest()
    with serve({"/big": data}, cut_first={"/big"}) as (url, handler):
        with pytest.raises(DownloadError, match="re-run to resume"):
            download(f"{url}/big", tmp_path / "big", sha256=digest, progress=False)
        assert not (tmp_path / "big").exists()
        part = tmp_path / "big.part"
        assert 0 < part.stat().st_size < len(data)
        download(f"{url}/big", tmp_path / "big", sha256=digest, progress=False)
        assert handler.log[-1][1] == f"bytes={len(data) // 2}-"
    assert (tmp_path / "big").read_bytes() == data and not part.exists()


def test_interrupted_download_restarts_when_server_ignores_range(tmp_path):
    data = b"abc" * 3000
    with serve({"/f": data}, cut_first={"/f"}, ranges=False) as (url, _):
        with pytest.raises(DownloadError):
            download(f"{url}/f", tmp_path / "f", progress=False)
        download(f"{url}/f", tmp_path / "f", sha256=hashlib.sha256(data).hexdigest(),
                 progress=False)
    assert (tmp_path / "f").read_bytes() == data


def test_archive_with_parent_members_is_refused(tmp_path):
    for kind in ("zip", "tar"):
        archive = tmp_path / f"evil.{kind}"
        if kind == "zip":
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr("ok/a.txt", "fine")
                zf.writestr("../escape.txt", "bad")
        else:
            with tarfile.open(archive, "w") as tf:
                info = tarfile.TarInfo("../../escape.txt")
                info.size = 3
                tf.addfile(info, io.BytesIO(b"bad"))
        with pytest.raises(UnsafeArchiveError, match="escape.txt"):
            extract(archive, tmp_path / f"out_{kind}")
        assert not (tmp_path / f"out_{kind}").exists()
    assert not (tmp_path.parent / "escape.txt").exists()


def _div2k_archives():
    """A tiny archive set with the official DIV2K folder structure."""
    rng = np.random.default_rng(0)
    def zipped(folder, names, shape):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for n in names:
                zf.writestr(f"{folder}/{n}.png", _png_bytes(
                    (rng.random(shape) * 255).astype(np.uint8)))
        return buf.getvalue()
    train = zipped("DIV2K_train_HR", ["0001", "0002"], (64, 72, 3))
    valid = zipped("DIV2K_valid_HR", ["0801", "0802"], (64, 72, 3))
    valid_lr = zipped("DIV2K_valid_LR_bicubic/X4", ["0801x4", "0802x4"], (16, 18, 3))
    return {"/DIV2K_train_HR.zip": train, "/DIV2K_valid_HR.zip": valid,
            "/DIV2K_valid_LR_bicubic_X4.zip": valid_lr}


def test_div2k_download_against_local_server(tmp_path):
    files = _div2k_archives()
    with serve(files) as (url, _):
        sources = {key: {"url": f"{url}/{name}", "sha256": hashlib.sha256(files["/" + name]).hexdigest()}
                   for key, name in [("train_hr", "DIV2K_train_HR.zip"),
                                     ("valid_hr", "DIV2K_valid_HR.zip"),
                                     ("valid_lr_x4", "DIV2K_valid_LR_bicubic_X4.zip")]}
        root = tmp_path / "resources" / "datasets" / "div2k"
        m = prepare_dataset("div2k", root, flickr2k=False, sources=sources, progress=False)
    assert [e["name"] for e in m["splits"]["train"]] == ["0001", "0002"]
    assert [e["name"] for e in m["splits"]["test"]] == ["0801", "0802"]
    pairs = make_pairs(root, tmp_path / "res", split="test", scale=4, progress=False)
    assert pairs["lr_source"] == "official"
    lr = read_image(tmp_path / "res" / pairs["pairs"][0]["lr"])
    assert lr.shape == (16, 18, 3)


def test_div2k_checksum_mismatch_stops_preparation(tmp_path):
    files = _div2k_archives()
    with serve(files) as (url, _):
        sources = {"train_hr": {"url": f"{url}/DIV2K_train_HR.zip", "sha256": "f" * 64}}
        root = tmp_path / "resources" / "datasets" / "div2k"
        with pytest.raises(ChecksumError, match="DIV2K_train_HR.zip"):
            prepare_dataset("div2k", root, flickr2k=False, sources=sources, progress=False)
    assert not (root / "manifest.json").exists()


def test_df2k_prepares_div2k_and_flickr2k_from_their_archives(tmp_path):
    """Before: DIV2K's and Flickr2K's archives share the key train_hr and Flickr2K was looked
    for inside DIV2K's extraction (FileNotFoundError); the paper-div2k preset never prepared."""
    import tarfile

    files = _div2k_archives()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for n in ("000001", "000002"):
            data = _png_bytes((np.random.default_rng(1).random((64, 72, 3)) * 255).astype(np.uint8))
            info = tarfile.TarInfo(f"Flickr2K/Flickr2K_HR/{n}.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    files["/Flickr2K.tar"] = buf.getvalue()
    with serve(files) as (url, _):
        sources = {key: {"url": f"{url}/{name}"} for key, name in [
            ("train_hr", "DIV2K_train_HR.zip"), ("valid_hr", "DIV2K_valid_HR.zip"),
            ("valid_lr_x4", "DIV2K_valid_LR_bicubic_X4.zip")]}
        root = tmp_path / "resources" / "datasets" / "div2k"
        m = prepare_dataset("div2k", root, flickr2k=True, sources=sources,
                            flickr2k_sources={"train_hr": {"url": f"{url}/Flickr2K.tar"}},
                            progress=False)
    assert [e["name"] for e in m["splits"]["train"]] == ["0001", "0002", "000001", "000002"]
    assert all((root / e["path"]).exists() for e in m["splits"]["train"])
