import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from momentseg.errors import InputError
from momentseg.grounding.controlled import controlled_curve
from momentseg.grounding.sampling import anchor_frame

MOMENT = np.zeros(30, bool)
MOMENT[18:24] = True


def test_noise_zero_is_the_blurred_truth_and_one_is_pure_noise():
    assert np.array_equal(controlled_curve(MOMENT, 0.0, blur_sigma=0), MOMENT.astype(float))
    blurred = controlled_curve(MOMENT, 0.0, blur_sigma=2.0)
    assert np.allclose(blurred, gaussian_filter1d(MOMENT.astype(float), 2.0, mode="reflect"))
    assert 0 < blurred[16] < blurred[20] and anchor_frame(blurred) in range(18, 24)
    noise = controlled_curve(MOMENT, 1.0, seed=7)
    assert np.array_equal(noise, np.random.default_rng(7).random(30))  # nothing of the truth is left


def test_levels_mix_linearly_with_one_draw_per_seed():
    g = controlled_curve(MOMENT, 0.0)
    u = controlled_curve(MOMENT, 1.0, seed=(3, 1, 4))
    for lam in (0.25, 0.5, 0.9):
        assert np.allclose(controlled_curve(MOMENT, lam, seed=(3, 1, 4)), (1 - lam) * g + lam * u)
    assert np.array_equal(controlled_curve(MOMENT, 0.5, seed=1), controlled_curve(MOMENT, 0.5, seed=1))
    assert not np.array_equal(controlled_curve(MOMENT, 0.5, seed=1), controlled_curve(MOMENT, 0.5, seed=2))
    c = controlled_curve(MOMENT, 0.6, seed=0)
    assert c.min() >= 0 and c.max() <= 1


def test_bad_arguments():
    for kwargs in ({"noise": -0.1}, {"noise": 1.5}, {"noise": 0.5, "blur_sigma": -1}):
        with pytest.raises(InputError):
            controlled_curve(MOMENT, **kwargs)
    with pytest.raises(InputError):
        controlled_curve(np.array([0, 0.5, 1]), 0.2)
    with pytest.raises(InputError):
        controlled_curve([], 0.2)
