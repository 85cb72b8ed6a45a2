import numpy as np
import pytest
import torch
from matlab_reference import matlab_imresize

from ecdp.degradation import degrade, imresize, modcrop, upsample


@pytest.mark.parametrize("size", [(16, 16), (37, 41), (64, 48), (33, 130)])
@pytest.mark.parametrize("scale", [1 / 2, 1 / 4, 1 / 8, 2, 4])
def test_imresize_matches_independent_matlab_transcription(size, scale):
    a = np.random.default_rng(sum(size)).random((2, 3, *size))
    ours = imresize(torch.from_numpy(a), scale).numpy()
    ref = matlab_imresize(a, scale)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5


def test_imresize_keeps_dtype_and_leading_dims():
    x = torch.rand(4, 2, 3, 16, 20, dtype=torch.float64)
    y = imresize(x, 0.25)
    assert y.shape == (4, 2, 3, 4, 5) and y.dtype == torch.float64


def test_imresize_constant_image_is_preserved():
    x = torch.full((3, 24, 24), 0.3)
    assert torch.allclose(imresize(x, 0.25), torch.full((3, 6, 6), 0.3), atol=1e-6)
    assert torch.allclose(upsample(torch.full((3, 6, 6), 0.3), 4), torch.full((3, 24, 24), 0.3),
                          atol=1e-6)


def test_imresize_rejects_ints_and_tiny_images():
    with pytest.raises(TypeError):
        imresize(torch.zeros(8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="too small"):
        imresize(torch.rand(3, 5, 40), 0.125)


def test_modcrop_numpy_and_tensor():
    a = np.zeros((103, 98, 3), np.uint8)
    assert modcrop(a, 4).shape == (100, 96, 3)
    assert modcrop(torch.zeros(1, 3, 103, 98), 8).shape == (1, 3, 96, 96)
    with pytest.raises(ValueError, match="scale"):
        modcrop(a, 0)


def test_degrade_rounds_like_matlab_and_modcrops():
    hr = (np.random.default_rng(1).random((50, 62, 3)) * 255).astype(np.uint8)
    lr = degrade(hr, 4)
    assert lr.dtype == np.uint8 and lr.shape == (12, 15, 3)
    ref = matlab_imresize(hr[:48, :60].astype(np.float64).transpose(2, 0, 1), 0.25)
    ref = np.clip(np.floor(ref + 0.5), 0, 255).transpose(1, 2, 0)
    # float32 inside pyiqa may flip a value sitting exactly on .5; allow at most one grey level
    assert np.abs(lr.astype(int) - ref.astype(int)).max() <= 1
    assert (lr == ref).mean() > 0.99
