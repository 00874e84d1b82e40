"""Mask propagation over a SAM2 video session: Bidirectional Anchor-updated Propagation and baselines."""
