"""PSNR, SSIM, LPIPS and LR-PSNR, with the evaluation protocol as an explicit argument.

Two protocols (docs/method.md, "Data and evaluation protocol"):

- ``PAPER``: RGB, no border crop, SR clamped and rounded to 8 bit; LPIPS AlexNet v0.1 on inputs
  mapped from [0, 1] to [-1, 1]; LR-PSNR = PSNR(imresize(SR, 1/s), LR) on RGB.
- ``basicsr(scale)``: Y channel of ITU-R BT.601 (BasicSR's ``rgb2ycbcr``), border crop = scale.

Images are float tensors (B, 3, H, W) or (3, H, W) in [0, 1], RGB order. Per-image values are
returned as a (B,) tensor. One implementation per metric; the tests cross-check them against
scikit-image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .degradation import imresize

__all__ = ["Protocol", "PAPER", "basicsr", "PROTOCOLS", "psnr", "ssim", "lr_psnr", "quality",
           "LPIPS", "lpips_distance", "load_lpips", "QUALITY"]

QUALITY = ("lpips", "psnr", "ssim", "lr_psnr")  # every image's quality metrics, in table order


@dataclass(frozen=True)
class Protocol:
    name: str
    color_space: str  # "rgb" or "y"
    crop_border: int
    quantized: bool = True
    ssim_impl: str = "gaussian11-sigma1.5-valid"
    lpips_net: str = "alex"
    lpips_version: str = "0.1"
    lpips_input_range: str = "[-1,1]"

    def __post_init__(self):
        if self.color_space not in ("rgb", "y"):
            raise ValueError(f"color_space must be 'rgb' or 'y', got {self.color_space!r}")
        if self.crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {self.crop_border}")

    def columns(self) -> dict:
        """The protocol as flat columns, stored next to every number."""
        return {f"protocol_{k}" if k == "name" else k: v for k, v in asdict(self).items()}


PAPER = Protocol("paper", "rgb", 0)


def basicsr(scale: int) -> Protocol:
    return Protocol("basicsr", "y", int(scale))


PROTOCOLS = {"paper": lambda scale: PAPER, "basicsr": basicsr}


def _batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    return x.double()


def _to_255(x: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """[0, 1] RGB -> the protocol's [0, 255] image (rounded if quantized; Y if asked; cropped)."""
    x = _batch(x).clamp(0, 1) * 255
    if protocol.quantized:
        x = torch.floor(x + 0.5)
    if protocol.color_space == "y":  # BT.601 "studio swing" luma, as MATLAB's rgb2ycbcr
        w = x.new_tensor([65.481, 128.553, 24.966])[None, :, None, None] / 255
        x = (x * w).sum(dim=1, keepdim=True) + 16
    c = protocol.crop_border
    return x[..., c:x.shape[-2] - c, c:x.shape[-1] - c] if c else x


def _check_same_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")


def _psnr_255(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(255.0**2 / mse)  # identical images give +inf


def psnr(sr: torch.Tensor, hr: torch.Tensor, *, protocol: Protocol) -> torch.Tensor:
    """PSNR in dB per image (+inf for identical images)."""
    a, b = _to_255(sr, protocol), _to_255(hr, protocol)
    _check_same_shape(a, b)
    return _psnr_255(a, b)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(sr: torch.Tensor, hr: torch.Tensor, *, protocol: Protocol) -> torch.Tensor:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), valid region, K = (0.01, 0.03),
    data range 255, mean over the map and the channels. Per image, shape (B,)."""
    a, b = _to_255(sr, protocol), _to_255(hr, protocol)
    _check_same_shape(a, b)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(a.shape[-2:])}")
    c = a.shape[1]
    w = _gaussian_window().to(a)[None, None].repeat(c, 1, 1, 1)
    filt = lambda x: F.conv2d(x, w, groups=c)  # noqa: E731
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)


def lr_psnr(sr: torch.Tensor, lr: torch.Tensor, *, scale: int, protocol: Protocol) -> torch.Tensor:
    """Consistency with the input: PSNR(imresize(SR, 1/scale), LR), both on the protocol's 8 bit;
    the border crop shrinks to crop_border // scale at LR size."""
    sr8 = _to_255(sr, Protocol("rgb", "rgb", 0, protocol.quantized)) / 255
    down = imresize(sr8, 1 / scale)
    lr_protocol = Protocol(protocol.name, protocol.color_space, protocol.crop_border // scale,
                           protocol.quantized)
    return psnr(down, lr, protocol=lr_protocol)


class LPIPS(torch.nn.Module):
    """LPIPS (Zhang et al. 2018) AlexNet v0.1, with the input range checked at the boundary.

    Built from the lpips package's linear layers (shipped with it) and AlexNet weights given as a
    state dict, so nothing is downloaded here.
    """

    def __init__(self, alexnet_state: dict):
        super().__init__()
        import lpips

        self.net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True,
                               verbose=False)
        own = self.net.net.state_dict()
        mapped = {}
        for key in own:  # "slice2.3.weight" <- torchvision's "features.3.weight"
            _slice, index, param = key.split(".")
            mapped[key] = alexnet_state[f"features.{index}.{param}"]
        self.net.net.load_state_dict(mapped, strict=True)
        self.eval().requires_grad_(False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, *, protocol: Protocol = PAPER):
        a, b = _batch(sr).float(), _batch(hr).float()
        _check_same_shape(a, b)
        for name, x in (("sr", a), ("hr", b)):
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise ValueError(f"LPIPS expects {name} in [0, 1], got values in [{lo:.3f}, "
                                 f"{hi:.3f}]")
        if protocol.quantized:
            a, b = (torch.floor(x.clamp(0, 1) * 255 + 0.5) / 255 for x in (a, b))
        c = protocol.crop_border
        if c:
            a, b = (x[..., c:x.shape[-2] - c, c:x.shape[-1] - c] for x in (a, b))
        return self.net(a * 2 - 1, b * 2 - 1).flatten()


def load_lpips(weights_entry: dict) -> tuple[LPIPS | None, str]:
    """An LPIPS model and a provenance string, or (None, "unavailable: <reason>")."""
    if weights_entry.get("status") != "ok":
        return None, f"unavailable: {weights_entry.get('reason', 'no AlexNet weights')}"
    state = torch.load(weights_entry["path"], map_location="cpu", weights_only=True)
    from .weights import describe_weights

    return LPIPS(state), describe_weights("alexnet", weights_entry)


def lpips_distance(model: LPIPS, sr: torch.Tensor, hr: torch.Tensor, *,
                   protocol: Protocol = PAPER) -> torch.Tensor:
    with torch.no_grad():
        return model(sr, hr, protocol=protocol)


def quality(sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, *, scale: int,
            protocol: Protocol, lpips_model: LPIPS | None = None) -> dict:
    """The tables' quality metrics of one SR image under ``protocol``: PSNR, SSIM, LPIPS (NaN
    without its weights) and LR-PSNR, as floats."""
    return {"psnr": psnr(sr, hr, protocol=protocol).item(),
            "ssim": ssim(sr, hr, protocol=protocol).item(),
            "lpips": (lpips_distance(lpips_model, sr, hr, protocol=protocol).item()
                      if lpips_model is not None else float("nan")),
            "lr_psnr": lr_psnr(sr, lr, scale=scale, protocol=protocol).item()}
