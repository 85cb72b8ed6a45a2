"""ECDP reproducibility suite: the method (SDE, parametrizations, networks, samplers, losses,
training) and the shared benchmark machinery (data, degradation, metrics, checkpoints)."""
from .model import ECDP

__all__ = ["ECDP"]
__version__ = "0.1.0"
