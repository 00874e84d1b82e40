"""What the head tests share (``test_pointing.py``, ``test_moment_head.py``): a small vocabulary, random
uint8 frames, and a tiny model with and without an added head, otherwise the same weights."""

from __future__ import annotations

import numpy as np
import torch

from momentseg.model import MomentSegModel

WORDS = ["the", "red", "ball", "moves", "left", "blue", "cube", "jumps", "big", "green", "square", "on", "a"]


def random_video(n, h=56, w=70, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def tiny_model() -> MomentSegModel:
    """A tiny model of :data:`WORDS` (SAM2 at 64²), from seed 0, in eval mode."""
    torch.manual_seed(0)
    return MomentSegModel.tiny(words=WORDS, sam2_image_size=64).eval()


def model_pair(add: str) -> tuple[MomentSegModel, MomentSegModel]:
    """:func:`tiny_model` twice, the second given a head by its method ``add`` (e.g. ``"add_pointing_head"``)."""
    plain, headed = tiny_model(), tiny_model()
    getattr(headed, add)()
    return plain, headed
