"""A controlled frame–query curve for ablations: the ground-truth moment, blurred and corrupted with noise.

It replaces the ``[FIND]`` similarity p (T,) so that sampling and propagation can be measured against a
grounding of known quality, from perfect to pure noise. For a frame indicator ``m`` (T,) (1 inside the
ground-truth moment, 0 outside), a noise level λ ∈ [0, 1], a blur σ (frames) and a seed::

    g = gaussian_filter1d(m, σ, mode="reflect")      # σ = 0: g = m; truncated at 4σ (scipy's default)
    u = numpy.random.default_rng(seed).random(T)     # i.i.d. uniform [0, 1), one value per frame
    curve = (1 − λ) · g + λ · u                      # in [0, 1]; λ = 0: the blurred truth, λ = 1: pure noise

``u`` does not depend on λ: for one seed every noise level corrupts the curve with the same draw (common random
numbers), so a sweep over λ moves smoothly from the truth to the noise. ``seed`` may be an int or a sequence of
ints (a ``numpy.random.SeedSequence`` entropy, e.g. ``(seed, video, expression)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from momentseg.errors import InputError
from momentseg.grounding.similarity import SMOOTHING_MODE

#: Default blur σ of the ground-truth indicator, in frames.
BLUR_SIGMA = 2.0


def controlled_curve(indicator, noise: float, *, blur_sigma: float = BLUR_SIGMA,
                     seed: int | Sequence[int] = 0) -> np.ndarray:
    """``(1 − noise) · blur(indicator) + noise · uniform`` (T,) float64 in [0, 1]; see the module docstring."""
    m = np.asarray(indicator, dtype=np.float64)
    if m.ndim != 1 or m.size == 0:
        raise InputError(f"the moment indicator must be a non-empty 1-D array, got shape {m.shape}")
    if not np.all((m == 0) | (m == 1)):
        raise InputError("the moment indicator must hold 0 / 1 (or bool) values")
    if not 0.0 <= noise <= 1.0:
        raise InputError(f"the noise level must lie in [0, 1], got {noise}")
    if not blur_sigma >= 0:
        raise InputError(f"the blur sigma must be >= 0 frames, got {blur_sigma}")
    g = gaussian_filter1d(m, sigma=blur_sigma, mode=SMOOTHING_MODE) if blur_sigma > 0 else m
    u = np.random.default_rng(seed).random(m.size)
    return np.clip((1.0 - noise) * g + noise * u, 0.0, 1.0)
