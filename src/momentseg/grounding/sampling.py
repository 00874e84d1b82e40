"""Keyframe sampling for the `[SEG]` pass: Moment-Centric Sampling (MCS) and the baselines.

MCS (method.md):
* the anchor is the centre of the 5-frame window with the largest sum of p (windows are clamped at the video's
  ends, i.e. a zero-padded moving sum; ties go to the earliest frame). For ablations the anchor rule is an
  argument (:data:`ANCHOR_RULES`): ``window`` (the method, the default) or ``frame``, the single frame with the
  largest p (ties -> earliest), i.e. the same rule with a 1-frame window;
* the other K−1 keyframes are split between the left and right of the anchor in proportion to each side's p
  mass, ``left = round((K−1)·L/(L+R))`` (half rounds up; when L+R = 0 the split follows the sides' frame counts;
  a side never receives more frames than it has);
* on each side, frames are picked by the inverse CDF of that side's normalised p at quantiles (k+0.5)/count
  (evenly spaced on a side whose mass is 0);
* keyframes = left ∪ {anchor} ∪ right; all frames if T ≤ K.

Collisions (this project's choice): the paper falls back to uniform spacing when the inverse CDF picks the same
frame twice. That would drop the anchor and the moment-centric density, so instead a repeated pick is moved to
the nearest unused frame on the same side (ties: higher p, then closer to the anchor). The result always has
exactly K unique frames when T ≥ K, always contains the anchor, and stays dense where p is high.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from momentseg.errors import InputError

Method = Literal["mcs", "uniform", "first-k", "random"]
METHODS: tuple[str, ...] = ("mcs", "uniform", "first-k", "random")
#: The defaults of every entry point (``MomentSeg.segment``, the CLI, the web page): MCS with K = 8 keyframes;
#: the seed only matters for ``random``.
DEFAULT_METHOD: Method = "mcs"
DEFAULT_KEYFRAMES = 8
DEFAULT_SEED = 0
#: Width of the window whose p-sum picks the anchor (frames).
ANCHOR_WINDOW = 5
#: How the anchor is chosen: ``window`` = centre of the :data:`ANCHOR_WINDOW`-frame window with the largest sum
#: of p (the method, :data:`DEFAULT_ANCHOR_RULE`); ``frame`` = the single most similar frame (an ablation).
AnchorRule = Literal["window", "frame"]
ANCHOR_RULES: tuple[str, ...] = ("window", "frame")
DEFAULT_ANCHOR_RULE: AnchorRule = "window"


class KeyframeChoice(NamedTuple):
    """Sorted unique keyframe indices (K,) and the anchor (one of them) that starts propagation."""

    indices: np.ndarray
    anchor: int


def _check_p(p) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"p must be a non-empty 1-D array of per-frame probabilities, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputError("p must be finite and non-negative")
    return arr


def anchor_frame(p, rule: AnchorRule = DEFAULT_ANCHOR_RULE) -> int:
    """Centre of the 5-frame window with the largest sum of p (windows clamped at the ends; ties -> earliest);
    ``rule="frame"``: the frame with the largest p (ties -> earliest)."""
    arr = _check_p(p)
    if rule not in ANCHOR_RULES:
        raise InputError(f"unknown anchor rule {rule!r}; choose one of {', '.join(ANCHOR_RULES)}")
    if rule == "frame":
        return int(np.argmax(arr))  # exact ties (a cumulative sum below would round them apart)
    half = ANCHOR_WINDOW // 2
    csum = np.concatenate(([0.0], np.cumsum(arr)))
    centres = np.arange(arr.size)
    lo = np.clip(centres - half, 0, arr.size)
    hi = np.clip(centres + half + 1, 0, arr.size)
    return int(np.argmax(csum[hi] - csum[lo]))


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def _side_picks(weights: np.ndarray, count: int, anchor_offset: np.ndarray) -> list[int]:
    """Pick ``count`` unique positions in ``range(len(weights))`` by inverse CDF, filling repeats.

    ``anchor_offset[i]`` is position i's distance to the anchor (used only to break ties when filling).
    """
    m = weights.size
    if count <= 0:
        return []
    q = (np.arange(count) + 0.5) / count
    mass = weights.sum()
    if mass > 0:
        cdf = np.cumsum(weights) / mass
        raw = np.minimum(np.searchsorted(cdf, q, side="left"), m - 1)
    else:
        raw = np.minimum(np.floor(q * m).astype(int), m - 1)
    used: set[int] = set()
    picks: list[int] = []
    for i in raw.tolist():
        if i in used:
            free = [j for j in range(m) if j not in used]
            i = min(free, key=lambda j: (abs(j - i), -weights[j], anchor_offset[j]))
        used.add(i)
        picks.append(i)
    return picks


def mcs_keyframes(p, k: int, anchor_rule: AnchorRule = DEFAULT_ANCHOR_RULE) -> KeyframeChoice:
    """Moment-Centric Sampling of ``k`` keyframes from p (T,) around the anchor of ``anchor_rule``; see the
    module docstring."""
    arr = _check_p(p)
    t = arr.size
    anchor = anchor_frame(arr, anchor_rule)
    if t <= k:
        return KeyframeChoice(np.arange(t), anchor)
    left_w, right_w = arr[:anchor], arr[anchor + 1 :]
    mass_l, mass_r = float(left_w.sum()), float(right_w.sum())
    rest = k - 1
    if mass_l + mass_r > 0:
        n_left = _round_half_up(rest * mass_l / (mass_l + mass_r))
    else:
        n_left = _round_half_up(rest * left_w.size / (t - 1))
    n_left = min(max(n_left, rest - right_w.size), left_w.size)  # t > k guarantees feasibility
    n_right = rest - n_left
    left = _side_picks(left_w, n_left, anchor_offset=anchor - np.arange(anchor))
    right = _side_picks(right_w, n_right, anchor_offset=np.arange(right_w.size) + 1)
    idx = np.array(sorted([*left, anchor, *(anchor + 1 + j for j in right)]), dtype=np.int64)
    return KeyframeChoice(idx, anchor)


def select_keyframes(p, k: int, method: Method = DEFAULT_METHOD, seed: int | None = None,
                     anchor_rule: AnchorRule = DEFAULT_ANCHOR_RULE) -> KeyframeChoice:
    """Keyframes and the propagation anchor for ``method`` over T = len(p) frames.

    * ``mcs``: Moment-Centric Sampling; the anchor is :func:`anchor_frame` (with ``anchor_rule``).
    * ``uniform``: ``round(linspace(0, T−1, K))`` (first and last frame included).
    * ``first-k``: frames 0..K−1 (Sa2VA-style).
    * ``random``: K frames drawn without replacement with ``numpy.random.default_rng(seed)``.

    For the baselines the anchor is the keyframe closest to :func:`anchor_frame` (ties -> earlier), so that any
    sampling can be combined with anchor-based propagation. T ≤ K gives all frames. ``anchor_rule``: see
    :data:`ANCHOR_RULES` (the default is the method's).
    """
    if method not in METHODS:
        raise InputError(f"unknown keyframe sampling method {method!r}; choose one of {', '.join(METHODS)}")
    if k < 1:
        raise InputError(f"the number of keyframes must be at least 1, got {k}")
    arr = _check_p(p)
    if method == "mcs":
        return mcs_keyframes(arr, k, anchor_rule)
    t = arr.size
    if t <= k:
        idx = np.arange(t)
    elif method == "uniform":
        idx = uniform_frames(t, k)
    elif method == "first-k":
        idx = np.arange(k)
    else:
        idx = np.sort(np.random.default_rng(seed).choice(t, size=k, replace=False))
    idx = idx.astype(np.int64)
    best = anchor_frame(arr, anchor_rule)
    anchor = int(idx[np.argmin(np.abs(idx - best))])
    return KeyframeChoice(idx, anchor)


def uniform_frames(num_frames: int, count: int) -> np.ndarray:
    """``min(count, num_frames)`` evenly spaced frame indices ``round(linspace(0, T−1, K))`` (ends included)."""
    if num_frames < 1 or count < 1:
        raise InputError(f"need at least one frame and one pick, got T={num_frames}, K={count}")
    if num_frames <= count:
        return np.arange(num_frames, dtype=np.int64)
    return np.floor(np.linspace(0, num_frames - 1, count) + 0.5).astype(np.int64)


def nearest_patches(frames, context, patch_size: int) -> np.ndarray:
    """For each video frame index in ``frames``, the temporal patch of the context video (frame indices
    ``context``, increasing; each patch covers ``patch_size`` consecutive context frames, a short last one
    padded with its last frame, as the processor pads) whose frames' mean index is nearest (the earlier patch
    on a tie). Where the ``[SEG]`` pass's context map is read for a frame it did not see."""
    ctx = np.asarray(context, dtype=np.float64).reshape(-1)
    if len(ctx) == 0 or patch_size < 1:
        raise InputError(f"need context frames and a patch size ≥ 1, got {len(ctx)} frames, {patch_size}")
    n = -(-len(ctx) // patch_size) * patch_size
    padded = np.concatenate([ctx, np.full(n - len(ctx), ctx[-1])])
    centres = padded.reshape(-1, patch_size).mean(1)
    f = np.asarray(frames, dtype=np.float64).reshape(-1)
    return np.abs(f[:, None] - centres[None]).argmin(1).astype(np.int64)


def dense_frame_indices(timestamps, fps: float = 1.0, max_frames: int | None = 100) -> np.ndarray:
    """Frames for the dense (low-res) `[FIND]` pass: one frame per 1/``fps`` seconds, at most ``max_frames``.

    ``timestamps`` (T,) are the video's frame times in seconds, increasing. For each sample time
    ``t0 + j/fps`` (j = 0, 1, … while ≤ the last timestamp) the frame on screen then is taken (the last frame
    whose timestamp is ≤ that time); repeats (video slower than ``fps``) are dropped. If more than
    ``max_frames`` remain, ``max_frames`` of them evenly spaced are kept (``round(linspace)``), so a long video
    is covered uniformly. ``fps`` ≤ 0 or None takes every frame; ``max_frames`` None means no cap.
    Returns sorted unique int64 indices (at least one).
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise InputError(f"timestamps must be a non-empty 1-D array, got shape {ts.shape}")
    if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0):
        raise InputError("timestamps must be finite and non-decreasing")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be at least 1, got {max_frames}")
    if fps is None or fps <= 0:
        idx = np.arange(ts.size, dtype=np.int64)
    else:
        times = ts[0] + np.arange(int(np.floor((ts[-1] - ts[0]) * fps + 1e-9)) + 1) / fps
        idx = np.unique(np.searchsorted(ts, times + 1e-9, side="right") - 1).astype(np.int64)
    if max_frames is not None and idx.size > max_frames:
        idx = idx[np.floor(np.linspace(0, idx.size - 1, max_frames) + 0.5).astype(np.int64)]
    return idx


def sample_keyframes(p, k: int, method: Method = DEFAULT_METHOD, seed: int | None = None) -> np.ndarray:
    """Sorted unique keyframe indices in [0, T) (exactly min(K, T) of them); see :func:`select_keyframes`."""
    return select_keyframes(p, k, method, seed).indices
