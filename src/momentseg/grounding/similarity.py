"""Per-frame probabilities from frame-query similarity logits, and resampling to every video frame.

The `[FIND]` pass scores N sampled frames (logit = cosine / 0.07, computed in the model). This module turns those
logits into smoothed probabilities and carries them from the sampled frames to all T frames of the video.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from momentseg.errors import InputError

#: Standard deviation of the temporal Gaussian smoothing, in frames (the paper's value).
SMOOTHING_SIGMA = 1.0
#: Boundary handling of the smoothing: scipy's "reflect" (half-sample symmetric, ``d c b a | a b c d``), so an
#: edge frame is averaged with mirrored copies of its neighbours rather than with zeros; probabilities near the
#: video's ends are not pulled down.
SMOOTHING_MODE = "reflect"


def _as_1d_finite(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values")
    return arr


def frame_probabilities(logits) -> np.ndarray:
    """Sigmoid of similarity logits (N,), then a 1-D Gaussian smoothing with σ = 1 frame -> p (N,) in [0, 1].

    Boundary mode is :data:`SMOOTHING_MODE` (reflect); the kernel is truncated at 4σ (scipy's default).
    An empty input gives an empty output.
    """
    x = _as_1d_finite(logits, "logits")
    if x.size == 0:
        return x
    p = 0.5 * (1.0 + np.tanh(0.5 * x))  # numerically stable sigmoid
    return np.clip(gaussian_filter1d(p, sigma=SMOOTHING_SIGMA, mode=SMOOTHING_MODE), 0.0, 1.0)


def resample_to_frames(p_dense, dense_times, frame_times) -> np.ndarray:
    """Linearly interpolate p from the dense pass's sampled frames to every video frame.

    p_dense (N,) are probabilities at ``dense_times`` (N,) seconds, strictly increasing; ``frame_times`` (T,)
    seconds are the video's frame timestamps. Frames before the first / after the last sampled time take the
    nearest sampled value. Returns (T,) float64.
    """
    p = _as_1d_finite(p_dense, "p_dense")
    t = _as_1d_finite(dense_times, "dense_times")
    ft = _as_1d_finite(frame_times, "frame_times")
    if p.shape != t.shape:
        raise InputError(f"p_dense has {p.size} values but dense_times has {t.size}")
    if p.size == 0:
        raise InputError("p_dense is empty: the dense pass scored no frames")
    if np.any(np.diff(t) <= 0):
        raise InputError("dense_times must be strictly increasing")
    return np.interp(ft, t, p)
