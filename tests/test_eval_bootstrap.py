import numpy as np
import pytest

from momentseg.errors import InputError
from momentseg.eval.bootstrap import (
    RESAMPLES,
    bootstrap_indices,
    paired_difference,
    percentile_interval,
)


def test_indices_are_fixed_by_the_seed_and_resample_with_replacement():
    a, b = bootstrap_indices(7), bootstrap_indices(7)
    assert a.shape == (RESAMPLES, 7) and np.array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 6
    assert any(len(set(row)) < 7 for row in a[:50])  # with replacement
    assert not np.array_equal(a, bootstrap_indices(7, seed=1))


def test_interval_is_the_percentile_interval_of_the_resampled_means():
    v = np.array([0.1, 0.9, 0.4, 0.6, 0.5, 0.2, 0.8])
    idx = bootstrap_indices(v.size)
    lo, hi = percentile_interval(v, idx)
    means = np.sort(v[idx].mean(1))
    assert lo == pytest.approx(np.quantile(means, 0.025)) and hi == pytest.approx(np.quantile(means, 0.975))
    assert lo < v.mean() < hi
    assert percentile_interval(np.full(5, 0.3)) == pytest.approx((0.3, 0.3))  # no spread, no interval
    narrow = percentile_interval(v, idx, level=0.5)
    assert lo < narrow[0] < narrow[1] < hi


def test_paired_difference_resamples_the_same_items_for_both_rows():
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 1, 40)  # large spread between items ...
    a, b = base + 0.02, base  # ... but a is always 0.02 better: the paired interval is tight
    d, lo, hi = paired_difference(a, b)
    assert d == pytest.approx(0.02) and lo == pytest.approx(0.02) and hi == pytest.approx(0.02)
    # an unpaired interval (each row resampled on its own) would straddle zero
    ia, ib = bootstrap_indices(40, seed=1), bootstrap_indices(40, seed=2)
    diffs = a[ia].mean(1) - b[ib].mean(1)
    assert np.quantile(diffs, 0.025) < 0 < np.quantile(diffs, 0.975)


def test_bad_input():
    with pytest.raises(InputError):
        percentile_interval([])
    with pytest.raises(InputError):
        percentile_interval([0.1, np.nan])
    with pytest.raises(InputError):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(InputError):
        percentile_interval([0.1, 0.2], bootstrap_indices(3))
