import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ecdp.degradation import imresize
from ecdp.metrics import LPIPS, PAPER, Protocol, basicsr, load_lpips, lr_psnr, psnr, ssim


def _pair(seed=0, shape=(3, 40, 52), noise=0.05):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(shape, generator=g)
    sr = (hr + noise * torch.randn(shape, generator=g)).clamp(0, 1)
    return sr, hr


def _u8(x):
    return np.floor(x.numpy().transpose(1, 2, 0) * 255 + 0.5)


def test_psnr_rgb_matches_skimage():
    sr, hr = _pair()
    ref = peak_signal_noise_ratio(_u8(hr), _u8(sr), data_range=255)
    assert psnr(sr, hr, protocol=PAPER).item() == pytest.approx(ref, abs=1e-9)


def test_psnr_closed_form_and_identity():
    hr = torch.full((3, 16, 16), 100 / 255)
    sr = torch.full((3, 16, 16), 110 / 255)  # error of 10 grey levels everywhere: mse = 100
    assert psnr(sr, hr, protocol=PAPER).item() == pytest.approx(10 * np.log10(255**2 / 100))
    assert psnr(hr, hr, protocol=PAPER).item() == float("inf")


def test_ssim_rgb_matches_skimage_gaussian():
    sr, hr = _pair(1)
    ref = structural_similarity(_u8(sr), _u8(hr), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255, channel_axis=2)
    assert ssim(sr, hr, protocol=PAPER).item() == pytest.approx(ref, abs=1e-5)
    assert ssim(hr, hr, protocol=PAPER).item() == pytest.approx(1.0)


def test_basicsr_protocol_y_channel_and_crop_matches_skimage():
    sr, hr = _pair(2, (3, 48, 48))
    proto = basicsr(4)
    y = lambda x: rgb2ycbcr(_u8(x).astype(np.uint8))[4:-4, 4:-4, 0]  # noqa: E731
    assert psnr(sr, hr, protocol=proto).item() == pytest.approx(
        peak_signal_noise_ratio(y(hr), y(sr), data_range=255), abs=1e-6)
    ref = structural_similarity(y(sr), y(hr), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert ssim(sr, hr, protocol=proto).item() == pytest.approx(ref, abs=1e-5)
    # the Y protocol and the RGB protocol really differ
    assert abs(psnr(sr, hr, protocol=proto).item() - psnr(sr, hr, protocol=PAPER).item()) > 0.1


def test_metrics_are_per_image_in_a_batch():
    a, b = _pair(3, (2, 3, 32, 32))
    both = psnr(a, b, protocol=PAPER)
    assert both.shape == (2,)
    assert both[1].item() == pytest.approx(psnr(a[1], b[1], protocol=PAPER).item())


def test_lr_psnr_of_bicubic_consistent_image_is_high():
    g = torch.Generator().manual_seed(4)
    hr = torch.rand(1, 3, 64, 64, generator=g)
    lr = torch.floor(imresize(hr, 0.25).clamp(0, 1) * 255 + 0.5) / 255
    assert lr_psnr(hr, lr, scale=4, protocol=PAPER).item() > 45
    noisy = (hr + 0.1 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    assert lr_psnr(noisy, lr, scale=4, protocol=PAPER).item() < 40


def test_protocol_validates_and_records_columns():
    with pytest.raises(ValueError, match="color_space"):
        Protocol("x", "lab", 0)
    cols = PAPER.columns()
    assert cols["color_space"] == "rgb" and cols["crop_border"] == 0 and cols["quantized"]
    assert cols["lpips_input_range"] == "[-1,1]" and cols["protocol_name"] == "paper"


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 9), protocol=PAPER)


def _random_alexnet_state():
    import torchvision
    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None).state_dict()


def test_lpips_unavailable_is_reported_not_raised():
    model, why = load_lpips({"status": "unavailable", "reason": "offline"})
    assert model is None and why == "unavailable: offline"


def test_lpips_checks_range_and_maps_to_minus_one_one():
    model = LPIPS(_random_alexnet_state())
    sr, hr = _pair(5, (1, 3, 64, 64))
    d = model(sr, hr)
    assert d.shape == (1,) and d.item() > 0
    assert model(hr, hr).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(sr * 2 - 1, hr)
    # equals lpips itself fed [-1, 1] images explicitly
    direct = model.net(torch.floor(sr * 255 + 0.5) / 255 * 2 - 1,
                       torch.floor(hr * 255 + 0.5) / 255 * 2 - 1).flatten()
    assert d.item() == pytest.approx(direct.item(), rel=1e-5)
