"""Qwen2.5-VL visual preprocessing with torch only: resize to multiples of 28, CLIP-normalise, patchify.

The patch layout equals transformers' ``Qwen2VLImageProcessor`` / ``Qwen2VLVideoProcessor`` output (tested
against the PIL backend): rows ordered (t, h/merge, w/merge, merge, merge); each row is one 14×14 patch
flattened as (channel, temporal, py, px). A video with an odd frame count is padded by repeating its last
frame; an image is one frame repeated ``temporal_patch_size`` times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionLayout:
    """Patch geometry and normalisation of the Qwen vision tower (defaults = Qwen2.5-VL)."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (h, w): both multiples of ``factor``, area within [min_pixels, max_pixels], aspect ratio kept
    as closely as possible (the rule Qwen2-VL's processors use)."""
    if min(height, width) <= 0:
        raise ValueError(f"bad frame size {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * scale / factor) * factor
        w = math.ceil(width * scale / factor) * factor
    return h, w


def target_size(height: int, width: int, size: int, layout: VisionLayout) -> tuple[int, int]:
    """Resize target for a frame given a side budget ``size``: area ≤ size², at least one factor² cell."""
    f = layout.factor
    return smart_resize(height, width, f, min_pixels=f * f, max_pixels=max(size * size, f * f))


def _to_float_frames(frames) -> torch.Tensor:
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be (N,H,W,3) uint8, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("no frames")
    return x.permute(0, 3, 1, 2).float()


def normalise(frames, size_hw: tuple[int, int], layout: VisionLayout) -> torch.Tensor:
    """(N,H,W,3) uint8 → (N,3,h,w) float32: bicubic resize (antialiased) to ``size_hw``, /255, mean/std."""
    x = _to_float_frames(frames)
    if tuple(x.shape[-2:]) != tuple(size_hw):
        x = F.interpolate(x, size=size_hw, mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp_(0.0, 255.0)
    x = x / 255.0
    mean = torch.tensor(layout.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(layout.image_std).view(1, 3, 1, 1)
    return (x - mean) / std


def patchify(x: torch.Tensor, layout: VisionLayout) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Normalised frames (N,3,h,w) of one video → (grid_t·grid_h·grid_w, 3·tps·p·p) patches, (t, gh, gw)."""
    n, c, h, w = x.shape
    p, m, tps = layout.patch_size, layout.merge_size, layout.temporal_patch_size
    if h % (p * m) or w % (p * m):
        raise ValueError(f"frame size {h}x{w} is not a multiple of {p * m}")
    if pad := -n % tps:
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)], dim=0)
        n += pad
    gt, gh, gw = n // tps, h // p, w // p
    x = x.reshape(gt, tps, c, gh // m, m, p, gw // m, m, p)
    # → (gt, gh/m, gw/m, m_h, m_w, c, tps, p_h, p_w)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * tps * p * p), (gt, gh, gw)


def video_inputs(frames, size: int, layout: VisionLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """A video (T,H,W,3) uint8 → ``pixel_values_videos`` (N_patches, D) and ``video_grid_thw`` (1,3).
    All frames share one resize target (area ≤ size²)."""
    hw = target_size(frames.shape[1], frames.shape[2], size, layout)
    patches, grid = patchify(normalise(frames, hw, layout), layout)
    return patches, torch.tensor([grid], dtype=torch.long)


def image_inputs(frames, size: int, layout: VisionLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """K images (K,H,W,3) uint8 → ``pixel_values`` (N_patches, D) and ``image_grid_thw`` (K,3), each image
    patchified separately (grid t = 1)."""
    hw = target_size(frames.shape[1], frames.shape[2], size, layout)
    x = normalise(frames, hw, layout)
    out, grids = [], []
    for i in range(x.shape[0]):
        patches, grid = patchify(x[i : i + 1], layout)
        out.append(patches)
        grids.append(grid)
    return torch.cat(out, dim=0), torch.tensor(grids, dtype=torch.long)


def num_tokens(grid_thw: torch.Tensor, layout: VisionLayout) -> list[int]:
    """LLM placeholder tokens per grid row: t·h·w / merge²."""
    return [int(t * h * w) // layout.merge_size**2 for t, h, w in grid_thw.tolist()]
