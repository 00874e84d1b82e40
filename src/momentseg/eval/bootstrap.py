"""Bootstrap confidence intervals over per-item scores (e.g. per-expression J&F of a RefVOS benchmark).

Definition (used by ``benchmarks/ablation.py``):

* resampling: :func:`bootstrap_indices` draws ``resamples`` × n indices with replacement from
  ``numpy.random.default_rng(seed).integers(0, n, (resamples, n))`` — one fixed matrix for a given
  (n, resamples, seed), so every row of a table scored on the same n items is resampled identically;
* interval: the percentile interval, the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles (numpy's default
  linear interpolation) of the resampled means;
* paired difference of two rows over the same items: the same indices resample both rows, i.e. the interval
  of the mean of the per-item differences ``a − b`` (:func:`paired_difference`).
"""

from __future__ import annotations

import numpy as np

from momentseg.errors import InputError

#: Resamples, seed and level of the intervals (2000 percentile resamples, 95 %).
RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def bootstrap_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) int64 indices in [0, n), drawn with replacement (see the module docstring)."""
    if n < 1 or resamples < 1:
        raise InputError(f"bootstrap needs at least one item and one resample, got n={n}, resamples={resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _values(values, n: int | None = None) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
        raise InputError(f"bootstrap values must be a non-empty finite 1-D array, got shape {v.shape}")
    if n is not None and v.size != n:
        raise InputError(f"bootstrap values have {v.size} items, the indices resample {n}")
    return v


def percentile_interval(values, indices: np.ndarray | None = None, level: float = LEVEL) -> tuple[float, float]:
    """(low, high) percentile interval of the mean of ``values`` (n,) over the resamples ``indices``
    (default: :func:`bootstrap_indices` with the default resamples and seed)."""
    if not 0 < level < 1:
        raise InputError(f"interval level must be in (0, 1), got {level}")
    v = _values(values)
    idx = bootstrap_indices(v.size) if indices is None else np.asarray(indices)
    if idx.ndim != 2 or idx.shape[1] != v.size:
        raise InputError(f"bootstrap indices of shape {idx.shape} do not resample {v.size} items")
    means = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_difference(a, b, indices: np.ndarray | None = None,
                      level: float = LEVEL) -> tuple[float, float, float]:
    """(mean of a − b, low, high): the difference of two rows scored on the same items, its interval from the
    same resampled indices for both rows."""
    a = _values(a)
    d = a - _values(b, a.size)
    return (float(d.mean()), *percentile_interval(d, indices, level))
