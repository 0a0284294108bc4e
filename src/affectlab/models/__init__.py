"""Backbones. Every model follows one contract: ``forward_features(x) -> (N, num_features)``."""
