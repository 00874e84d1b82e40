import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from momentseg.errors import InputError
from momentseg.grounding.sampling import (
    anchor_frame,
    dense_frame_indices,
    mcs_keyframes,
    sample_keyframes,
    select_keyframes,
)

probs = st.lists(st.floats(0, 1), min_size=1, max_size=80).map(np.array)
methods = st.sampled_from(["mcs", "uniform", "first-k", "random"])


@given(probs, st.integers(1, 16), methods, st.integers(0, 1000))
def test_keyframes_are_sorted_unique_in_range_and_exactly_min_k_t(p, k, method, seed):
    choice = select_keyframes(p, k, method, seed=seed)
    idx = choice.indices
    assert idx.dtype.kind == "i"
    assert len(idx) == min(k, p.size)
    assert np.all(np.diff(idx) > 0)
    assert idx[0] >= 0 and idx[-1] < p.size
    assert choice.anchor in idx.tolist()
    np.testing.assert_array_equal(sample_keyframes(p, k, method, seed=seed), idx)


@given(probs, st.integers(1, 16))
def test_mcs_always_contains_the_best_frame_as_anchor(p, k):
    choice = mcs_keyframes(p, k)
    assert choice.anchor == anchor_frame(p)
    assert choice.anchor in choice.indices.tolist()


@given(probs, st.integers(1, 16), methods)
def test_fewer_frames_than_k_gives_all_frames(p, k, method):
    assume(p.size <= k)
    np.testing.assert_array_equal(sample_keyframes(p, k, method, seed=0), np.arange(p.size))


@given(st.integers(30, 120), st.integers(4, 12), st.data())
def test_mcs_is_denser_inside_the_moment(t, k, data):
    length = data.draw(st.integers(k, t // 2))
    start = data.draw(st.integers(0, t - length))
    p = np.full(t, 0.02)
    p[start : start + length] = 0.9
    idx = sample_keyframes(p, k, "mcs")
    inside = np.sum((idx >= start) & (idx < start + length))
    assert inside / length > (len(idx) - inside) / (t - length)


@given(st.integers(5, 200), st.integers(1, 10), st.integers(0, 2**31 - 1))
def test_random_is_deterministic_for_a_seed(t, k, seed):
    p = np.zeros(t)
    a = sample_keyframes(p, k, "random", seed=seed)
    np.testing.assert_array_equal(a, sample_keyframes(p, k, "random", seed=seed))


def test_random_seeds_give_different_draws():
    p = np.zeros(1000)
    draws = {tuple(sample_keyframes(p, 8, "random", seed=s)) for s in range(5)}
    assert len(draws) == 5


def test_anchor_is_centre_of_best_five_frame_window_clamped_at_edges():
    assert anchor_frame([0, 0, 1, 1, 1, 1, 1, 0, 0, 0]) == 4
    assert anchor_frame([1, 0, 0, 0, 0, 0, 0]) == 0  # windows 0..2 tie; earliest
    assert anchor_frame([0, 0, 0, 0, 0, 0, 3]) == 4  # centres 4, 5, 6 all see frame 6
    assert anchor_frame([0.2]) == 0


def test_mcs_hand_computed_example():
    # anchor 2 (first of the equal interior windows); L=2, R=7 -> left = round(3*2/9) = 1;
    # left: uniform p on {0,1}, q=0.5 -> 0; right: frames 3..9, q=0.25, 0.75 -> 4, 8
    choice = mcs_keyframes(np.ones(10), 4)
    assert choice.anchor == 2
    assert choice.indices.tolist() == [0, 2, 4, 8]


def test_mcs_zero_mass_side_clamped_split_and_collision_fill():
    # anchor 3; all mass right (left = 0) but the right side has only 2 frames -> 1 frame on the left,
    # picked uniformly (frame 1); the right side's two picks both land on frame 5 -> the repeat moves to 4
    choice = mcs_keyframes(np.array([0, 0, 0, 0, 0, 1.0]), 4)
    assert choice.anchor == 3
    assert choice.indices.tolist() == [1, 3, 4, 5]


def test_mcs_follows_mass_split_between_sides():
    p = np.zeros(40)
    p[5:10] = 0.5  # left mass 2.5
    p[20:25] = 1.0  # anchor region
    p[30:40] = 0.75  # right mass 7.5
    idx = mcs_keyframes(p, 9).indices
    anchor = 22
    assert anchor in idx
    # L = 2.5 + 2.0 (frames 20, 21) = 4.5, R = 2.0 (23, 24) + 7.5 = 9.5 -> left = round(8 * 4.5 / 14) = 3
    assert np.sum(idx < anchor) == 3 and np.sum(idx > anchor) == 5


def test_baselines():
    p = np.zeros(10)
    p[7] = 1.0
    assert sample_keyframes(p, 4, "uniform").tolist() == [0, 3, 6, 9]
    assert sample_keyframes(p, 4, "first-k").tolist() == [0, 1, 2, 3]
    assert select_keyframes(p, 4, "uniform").anchor == 6  # closest keyframe to anchor_frame(p) == 5
    assert select_keyframes(p, 4, "first-k").anchor == 3


# a sharp single-frame peak at 1 and a broad moment around 7: the two anchor rules disagree
TWO_PEAKS = np.array([0.0, 0.95, 0.1, 0.0, 0.0, 0.5, 0.6, 0.7, 0.6, 0.5, 0.0, 0.0, 0.1, 0.0])


def test_anchor_rule_default_is_the_methods_window_and_frame_is_the_argmax():
    # values computed with the code before the anchor rule became an argument: the default is unchanged
    before = {"mcs": ([1, 5, 6, 7, 9], 7), "uniform": ([0, 3, 7, 10, 13], 7), "first-k": ([0, 1, 2, 3, 4], 4),
              "random": ([0, 2, 3, 8, 13], 8)}
    for method, (idx, anchor) in before.items():
        for choice in (select_keyframes(TWO_PEAKS, 5, method, seed=3),
                       select_keyframes(TWO_PEAKS, 5, method, seed=3, anchor_rule="window")):
            assert (choice.indices.tolist(), choice.anchor) == (idx, anchor), method
    assert anchor_frame(TWO_PEAKS) == anchor_frame(TWO_PEAKS, "window") == 7
    assert anchor_frame(TWO_PEAKS, "frame") == 1 == int(np.argmax(TWO_PEAKS))
    # the single most similar frame moves the anchor and, for MCS, the keyframes (no mass left of frame 1)
    frame = {m: select_keyframes(TWO_PEAKS, 5, m, seed=3, anchor_rule="frame") for m in before}
    # all mass right of frame 1: 4 picks by inverse CDF at q = 1/8, 3/8, 5/8, 7/8 of p[2:] -> 5, 6, 8, 9
    assert (frame["mcs"].indices.tolist(), frame["mcs"].anchor) == ([1, 5, 6, 8, 9], 1)
    assert frame["uniform"].anchor == 0 and frame["first-k"].anchor == 1 and frame["random"].anchor == 0
    for m in ("uniform", "first-k", "random"):  # the baselines' keyframes do not depend on the anchor
        assert frame[m].indices.tolist() == before[m][0]
    # on a curve whose best frame is the centre of its best window, the rules agree
    p = np.array([0.1, 0.2, 0.5, 0.9, 0.5, 0.2, 0.1, 0.0])
    a, b = select_keyframes(p, 4, anchor_rule="frame"), select_keyframes(p, 4)
    assert a.anchor == b.anchor == 3 and a.indices.tolist() == b.indices.tolist()


@given(probs, st.integers(1, 16), methods)
def test_anchor_rule_frame_anchors_at_the_keyframe_nearest_the_most_similar_frame(p, k, method):
    choice = select_keyframes(p, k, method, seed=0, anchor_rule="frame")
    best = int(np.argmax(p))
    assert choice.anchor in choice.indices.tolist()
    assert abs(choice.anchor - best) == np.min(np.abs(choice.indices - best))
    if method == "mcs":
        assert choice.anchor == best


def test_bad_arguments():
    with pytest.raises(InputError, match="anchor rule"):
        select_keyframes([0.5, 0.2], 1, anchor_rule="middle")
    with pytest.raises(InputError):
        sample_keyframes([0.5], 2, "bogus")
    with pytest.raises(InputError):
        sample_keyframes([0.5], 0)
    with pytest.raises(InputError):
        sample_keyframes([], 2)
    with pytest.raises(InputError):
        sample_keyframes([0.5, -1.0], 2)


def test_dense_frames_one_per_second_from_a_30fps_video():
    ts = np.arange(95) / 30.0  # 3.17 s
    assert dense_frame_indices(ts, 1.0, 100).tolist() == [0, 30, 60, 90]


def test_dense_frames_slow_video_and_no_rate():
    ts = np.array([0.0, 2.0, 4.0, 6.0])  # 0.5 fps: sampling at 1 fps repeats frames, repeats are dropped
    assert dense_frame_indices(ts, 1.0, 100).tolist() == [0, 1, 2, 3]
    assert dense_frame_indices(ts, None, None).tolist() == [0, 1, 2, 3]


@given(st.integers(1, 3000), st.floats(5, 60), st.floats(0.25, 4), st.integers(1, 120))
def test_dense_frames_are_capped_sorted_unique_and_cover_the_video(n, video_fps, fps, cap):
    ts = np.arange(n) / video_fps
    idx = dense_frame_indices(ts, fps, cap)
    assert 1 <= idx.size <= cap and idx[0] == 0
    assert np.all(np.diff(idx) > 0) and idx[-1] < n
    uncapped = dense_frame_indices(ts, fps, None)
    assert set(idx.tolist()) <= set(uncapped.tolist())
    if uncapped.size > cap >= 2:
        assert idx[-1] == uncapped[-1]  # uniform over the whole video, not a prefix
