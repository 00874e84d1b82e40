import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from momentseg.errors import InputError
from momentseg.grounding.similarity import frame_probabilities, resample_to_frames


def _reference_smoothing(p: np.ndarray) -> np.ndarray:
    """Gaussian σ=1 truncated at 4σ with half-sample symmetric padding, written out by hand."""
    offsets = np.arange(-4, 5)
    w = np.exp(-0.5 * offsets.astype(float) ** 2)
    w /= w.sum()
    padded = np.pad(p, 4, mode="symmetric")
    return np.array([np.dot(w, padded[i : i + 9]) for i in range(p.size)])


@given(st.lists(st.floats(-30, 30), min_size=1, max_size=40))
def test_probabilities_match_hand_written_sigmoid_and_smoothing(logits):
    x = np.array(logits)
    p = frame_probabilities(x)
    assert p.shape == x.shape
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p, _reference_smoothing(1 / (1 + np.exp(-x))), atol=1e-9)


def test_constant_logits_stay_constant_at_the_edges():
    # reflect boundary: edges are not pulled towards zero
    p = frame_probabilities(np.full(7, 2.0))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-2.0)))


def test_a_spike_spreads_to_its_neighbours():
    x = np.full(11, -20.0)
    x[5] = 20.0
    p = frame_probabilities(x)
    assert p.argmax() == 5
    assert p[4] == pytest.approx(p[6]) and p[4] > 0.2 and p[0] < 1e-3


def test_probabilities_reject_bad_input():
    assert frame_probabilities([]).size == 0
    with pytest.raises(InputError):
        frame_probabilities([0.0, np.nan])
    with pytest.raises(InputError):
        frame_probabilities(np.zeros((2, 2)))


def test_resample_interpolates_linearly_and_clamps_outside():
    p = resample_to_frames([0.0, 1.0, 0.5], [0.0, 2.0, 4.0], [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 9.0])
    np.testing.assert_allclose(p, [0.0, 0.0, 0.5, 1.0, 0.75, 0.5, 0.5])


def test_resample_checks_its_inputs():
    with pytest.raises(InputError):
        resample_to_frames([0.1, 0.2], [1.0, 1.0], [0.0])
    with pytest.raises(InputError):
        resample_to_frames([0.1, 0.2], [0.0], [0.0])
    with pytest.raises(InputError):
        resample_to_frames([], [], [0.0])
