"""How training samples are cut and sized, shared by the synthetic (:mod:`momentseg.train.data`) and the real
(:mod:`momentseg.train.real_data`) sources: the :class:`SampleShape`, frame / mask resizing, positive frames of
a moment and the keyframe choice of a RefVOS sample."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SampleShape:
    """How samples are cut and sized. Sizes are upper bounds in pixels; frames keep their aspect ratio and are
    never enlarged (the model resizes to its own patch grid afterwards).

    ``tsg_side`` / ``context_side``: low-res frames are shrunk to an area ≤ side²; ``keyframe_side``: keyframes
    and their masks are shrunk to a longer side ≤ this (the SAM2 input size). ``tsg_queries``: queries of one
    video per TSG sample (> 1: a list of that many samples sharing their frames, fewer when the video has fewer).
    ``temporal_patch``: context frames per temporal patch of the model's video tokens (a RefVOS sample's
    ``key_patch`` says which patch each keyframe reads).
    """

    tsg_side: int
    context_side: int
    keyframe_side: int
    tsg_max_frames: int = 100
    tsg_fps: float = 1.0
    tsg_queries: int = 1
    context_frames: int = 50
    keyframes: int = 5
    keyframe_window: int = 10
    track_frames: int = 8
    track_max_stride: int = 3
    track_max_objects: int = 5
    classes_frames: int = 4
    tokens_frames: int = 8
    temporal_patch: int = 2


def one_or_group(samples: list):
    """A source's TSG answer: the one sample, or the list of samples of one video (``SampleShape.tsg_queries``
    > 1)."""
    return samples[0] if len(samples) == 1 else samples


def area_fit(hw: tuple[int, int], side: int) -> tuple[int, int]:
    """(h, w) shrunk (never enlarged, aspect kept) so that h·w ≤ side²."""
    h, w = hw
    s = min(1.0, side / math.sqrt(h * w))
    return max(1, int(h * s)), max(1, int(w * s))


def long_side_fit(hw: tuple[int, int], side: int) -> tuple[int, int]:
    """(h, w) shrunk (never enlarged, aspect kept) so that max(h, w) ≤ side."""
    h, w = hw
    s = min(1.0, side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


# --------------------------------------------------------------------------------------- frame choices
def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(N, H, W, 3)`` uint8 frames to ``(N, h, w, 3)`` uint8 (bilinear, antialiased)."""
    frames = np.asarray(frames)
    if frames.shape[1:3] == tuple(size):
        return np.ascontiguousarray(frames)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(N, H, W)`` bool masks to ``(N, h, w)`` bool (nearest)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.shape[1:3] == tuple(size):
        return masks
    x = torch.from_numpy(masks).float()[:, None]
    return (F.interpolate(x, size=tuple(size), mode="nearest-exact")[:, 0] > 0.5).numpy()


def moment_positives(times: np.ndarray, moments: Sequence[tuple[float, float]]) -> np.ndarray:
    """``(T,)`` bool: frame at ``times[t]`` lies inside one of ``moments`` ((start, end) in s, inclusive).

    A moment shorter than the frame spacing that contains no sampled time marks its nearest frame, so every
    moment has at least one positive frame."""
    times = np.asarray(times, dtype=np.float64)
    pos = np.zeros(len(times), dtype=bool)
    for start, end in moments:
        inside = (times >= start) & (times <= end)
        if not inside.any():
            inside[np.argmin(np.abs(times - 0.5 * (start + end)))] = True
        pos |= inside
    return pos


def anchor_candidates(visible: np.ndarray, in_moment: np.ndarray) -> np.ndarray:
    """(T,) bool frames a RefVOS sample's keyframe anchor is drawn from: keyframes as inference takes them —
    Moment-Centric Sampling puts them inside the grounded moment — so frames of the ground-truth moment where the
    target is visible; all visible frames when the moment shows no target (or there is no moment)."""
    both = np.asarray(visible, dtype=bool) & np.asarray(in_moment, dtype=bool)
    return both if both.any() else np.asarray(visible, dtype=bool)


def keyframe_indices(visible: np.ndarray, count: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted keyframe indices for a RefVOS sample.

    ``visible`` is ``(T,)`` bool (target present). One anchor is drawn among the visible frames (among all
    frames if the target is never visible), the other ``count − 1`` without replacement within ±``window``
    of it; if the window is too small the nearest frames outside it fill up. ``min(count, T)`` indices.
    """
    visible = np.asarray(visible, dtype=bool)
    t = len(visible)
    candidates = np.flatnonzero(visible) if visible.any() else np.arange(t)
    anchor = int(rng.choice(candidates))
    k = min(count, t)
    near = np.array([i for i in range(max(0, anchor - window), min(t, anchor + window + 1)) if i != anchor])
    if len(near) >= k - 1:
        others = rng.choice(near, size=k - 1, replace=False) if k > 1 else np.empty(0, dtype=np.int64)
    else:
        order = sorted((i for i in range(t) if i != anchor), key=lambda i: (abs(i - anchor), i))
        others = np.array(order[: k - 1], dtype=np.int64)
    return np.sort(np.concatenate([[anchor], others]).astype(np.int64))
