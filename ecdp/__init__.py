"""ECDP reproducibility suite."""
