"""Networks: the score U-Net and the RRDB family (paper Table 6; docs/method.md, "Networks")."""
from .rrdb import RRDBEncoder, RRDBNet, RRDBTrunk
from .unet import ScoreUNet

__all__ = ["ScoreUNet", "RRDBEncoder", "RRDBNet", "RRDBTrunk", "count_parameters"]


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
