"""Frozen VGG19 features for the image quality loss (paper eq. 19; docs/method.md, "Image quality loss").

phi(x) = VGG19 ``features`` up to conv5_4, before its ReLU, on ImageNet-normalised input.
Weights come from the ``fetch_weights`` cache; where they are unavailable, seeded random weights
are used only when the caller allows it, and the provenance string says so.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

__all__ = ["VGGFeatures", "load_vgg_features", "CONV5_4"]

CONV5_4 = 34  # index of conv5_4 in torchvision's vgg19().features
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """x: (B, 3, H, W) RGB in [0, 1] -> conv5_4 pre-activation features (B, 512, H/16, W/16)."""

    def __init__(self, state: dict | None = None, *, seed: int = 0):
        super().__init__()
        if state is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                vgg = torchvision.models.vgg19(weights=None)
        else:
            vgg = torchvision.models.vgg19(weights=None)
            vgg.load_state_dict(state, strict=True)
        self.layers = vgg.features[: CONV5_4 + 1]
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # frozen: always in eval mode
        return super().train(False)

    def forward(self, x):
        return self.layers((x - self.mean) / self.std)


def load_vgg_features(weights_entry: dict, *, allow_random: bool,
                      seed: int = 0) -> tuple[VGGFeatures, str]:
    """The feature extractor and its provenance ("vgg19 sha256 ..." or "random (seed N): why")."""
    if weights_entry.get("status") == "ok":
        state = torch.load(weights_entry["path"], map_location="cpu", weights_only=True)
        from .weights import describe_weights

        return VGGFeatures(state), describe_weights("vgg19", weights_entry)
    reason = weights_entry.get("reason", "no VGG19 weights")
    if not allow_random:
        raise FileNotFoundError(f"VGG19 weights unavailable ({reason}); obtain them with the "
                                "fetch_weights rule or allow the random fallback "
                                "(iq_loss.allow_random_vgg)")
    return VGGFeatures(None, seed=seed), f"random VGG19 (seed {seed}): {reason}"
