import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from momentseg.errors import InputError
from momentseg.grounding.moments import contiguous_runs, frame_end_times, ground_moments


def test_longest_run_above_threshold_is_the_answer_at_1fps():
    p = np.array([0.1, 0.5, 0.6, 0.5, 0.1, 0.9, 0.9, 0.9, 0.9, 0.8, 0.1, 0.1])
    ts = np.arange(p.size, dtype=float)
    wins = ground_moments(p, ts)
    assert wins[0][:2] == [5.0, 10.0]  # frames 5..9 -> [5 s, 10 s)
    assert any(w[:2] == [1.0, 4.0] for w in wins[1:])  # the other run is among the extra windows


def test_ties_in_length_go_to_the_higher_mean():
    p = np.array([0.5, 0.5, 0.1, 0.9, 0.8, 0.1])
    assert ground_moments(p, np.arange(6.0))[0][:2] == [3.0, 5.0]


def test_no_frame_above_threshold_gives_the_whole_video():
    p = np.array([0.1, 0.2, 0.35, 0.2])
    ts = np.array([0.0, 0.5, 1.0, 1.5])
    wins = ground_moments(p, ts)
    assert wins[0][:2] == [0.0, 2.0]  # last frame lasts the median spacing 0.5 s
    assert wins[0][2] == pytest.approx(p.mean())


def test_window_end_is_next_timestamp_or_last_plus_duration():
    ts = np.array([0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(frame_end_times(ts, 2.0), [1.0, 3.0, 4.0, 6.0])
    wins = ground_moments([0.1, 0.9, 0.1, 0.1], ts)
    assert wins[0][:2] == [1.0, 3.0]
    assert ground_moments([0.1, 0.1, 0.1, 0.9], ts, frame_duration=0.25)[0][:2] == [4.0, 4.25]


def test_contiguous_runs():
    assert contiguous_runs(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 1), (3, 3), (6, 6)]
    assert contiguous_runs(np.zeros(3, bool)) == []


def _tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=60),
    st.integers(1, 12),
    st.floats(0.5, 2.0),
)
def test_ranked_windows_are_well_formed(values, max_windows, step):
    p = np.array(values)
    ts = np.arange(p.size) * step
    wins = ground_moments(p, ts, max_windows=max_windows, frame_duration=step)
    assert 1 <= len(wins) <= max_windows
    end = ts[-1] + step
    scores = [w[2] for w in wins]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    for s, e, _ in wins:
        assert ts[0] <= s < e <= end + 1e-9
    for i in range(len(wins)):
        for j in range(i + 1, len(wins)):
            assert _tiou(wins[i], wins[j]) < 0.5
    # the first window is the paper's answer: the longest run above 0.4, else everything
    runs = contiguous_runs(p > 0.4)
    if runs:
        longest = max(e - s for s, e in runs) + 1
        assert round((wins[0][1] - wins[0][0]) / step) == longest
    else:
        assert wins[0][:2] == pytest.approx([0.0, end])


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        ground_moments([], [])
    with pytest.raises(InputError):
        ground_moments([0.5, 0.5], [0.0])
    with pytest.raises(InputError):
        ground_moments([0.5, 1.5], [0.0, 1.0])
    with pytest.raises(InputError):
        ground_moments([0.5, 0.5], [1.0, 0.0])
    with pytest.raises(InputError):
        ground_moments([0.5], [0.0], max_windows=0)
