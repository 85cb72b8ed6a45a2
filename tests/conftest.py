import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

TINY_MODEL = {
    "encoder": {"features": 8, "growth": 4, "blocks": 2, "taps": [0, 1]},
    "unet": {"channels": [8, 16], "blocks": [1, 1], "time_channels": 8, "time_scale": 300.0},
    "sde": {"beta_min": 0.1, "beta_max": 20.0, "sigma": 0.1},
    "parametrization": "hybrid",
    "k": 1.0,
}
TINY_SAMPLING = {"solver": "euler", "nfe": 4}


@pytest.fixture
def tiny_ecdp():
    import torch

    from ecdp.model import ECDP

    def make(seed=0, **overrides):
        torch.manual_seed(seed)
        return ECDP.from_config({**TINY_MODEL, **overrides}, scale=4, sigma=0.1)

    return make


def sampled(model, spec=TINY_SAMPLING, family="ecdp"):
    """A model paired with its sampling (``ecdp.sampling.Sampled``), the tiny solve by default."""
    from ecdp.sampling import Sampled, parse_sampling

    return Sampled(model, parse_sampling(spec, family=family))
