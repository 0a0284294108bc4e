"""Backbones. Every model follows one contract: ``input_keys`` names the sample keys it reads
and ``forward_features(*inputs) -> (N, num_features)`` takes them in that order."""
