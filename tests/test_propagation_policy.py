import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from momentseg.errors import InputError
from momentseg.propagation.policy import AnchorTracker, bap_plan, fired_updates, memory_window


@st.composite
def videos(draw):
    t = draw(st.integers(1, 60))
    keys = draw(st.lists(st.integers(0, t - 1), min_size=1, max_size=10, unique=True))
    anchor = draw(st.sampled_from(keys))
    return t, keys, anchor


@given(videos())
def test_bap_visits_every_frame_once_starting_at_the_anchor(video):
    t, keys, anchor = video
    plan = bap_plan(t, keys, anchor, "bap")
    order = plan.output_order()
    assert sorted(order) == list(range(t))
    assert order[0] == anchor
    assert plan.empty == ()
    fwd = plan.passes[0]
    assert not fwd.reverse and fwd.frames == tuple(range(anchor, t)) and fwd.emit == fwd.frames
    assert fwd.conditioning == tuple(sorted(k for k in keys if k >= anchor))
    if anchor == 0:
        assert len(plan.passes) == 1
    else:
        back = plan.passes[1]
        assert back.reverse and back.frames == tuple(range(anchor, -1, -1))
        assert back.emit == tuple(range(anchor - 1, -1, -1))  # anchor output once, by the forward pass
        assert back.conditioning == tuple(sorted(k for k in keys if k <= anchor))
    for p in plan.passes:
        assert p.frames[0] == anchor and p.frames[0] in p.conditioning
        assert set(p.conditioning) <= set(p.frames)


@given(videos())
def test_forward_modes_leave_earlier_frames_empty(video):
    t, keys, anchor = video
    fwd = bap_plan(t, keys, anchor, "forward")
    first = min(keys)
    assert len(fwd.passes) == 1 and fwd.passes[0].frames == tuple(range(first, t))
    assert fwd.passes[0].conditioning == tuple(sorted(keys))
    assert fwd.empty == tuple(range(first))
    assert sorted(fwd.output_order()) == list(range(t))

    af = bap_plan(t, keys, anchor, "anchor-forward")
    assert af.passes[0].frames == tuple(range(anchor, t))
    assert af.empty == tuple(range(anchor))
    assert af.output_order()[0] == anchor and sorted(af.output_order()) == list(range(t))


def test_plan_rejects_bad_arguments():
    with pytest.raises(InputError):
        bap_plan(10, [2, 5], 3, "bap")  # anchor not a keyframe
    with pytest.raises(InputError):
        bap_plan(10, [2, 12], 2)
    with pytest.raises(InputError):
        bap_plan(10, [], 0)
    with pytest.raises(InputError):
        bap_plan(10, [2], 2, "sideways")
    bap_plan(10, [2, 5], 3, "forward")  # forward ignores the anchor


def _reference(events, ratio=0.9):
    product, fired = 1.0, []
    for i, (kind, value) in enumerate(events):
        if kind == "obs":
            product *= value
        elif value > 0 and product < ratio * value:
            fired.append(i)
            product = 1.0
    return fired


events = st.lists(
    st.tuples(st.sampled_from(["obs", "obs", "obs", "key"]), st.floats(0.0, 1.0)), min_size=1, max_size=40
)


@given(events)
def test_anchor_tracker_fires_exactly_when_the_product_drops_below_ratio_times_keyframe_score(seq):
    # keep clear of the exact boundary, where float products and log sums may round differently
    product = 1.0
    for kind, value in seq:
        if kind == "obs":
            product *= value
        else:
            assume(value == 0 or abs(product - 0.9 * value) > 1e-9 * max(product, 1e-300))
            if value > 0 and product < 0.9 * value:
                product = 1.0
    tracker = AnchorTracker(0.9)
    fired = []
    for i, (kind, value) in enumerate(seq):
        if kind == "obs":
            tracker.observe(value)
        elif tracker.at_keyframe(value):
            fired.append(i)
            assert tracker.product == 1.0
    assert fired == _reference(seq)


def test_anchor_tracker_examples():
    tr = AnchorTracker()
    assert not tr.at_keyframe(0.95)  # nothing propagated yet: product 1 >= 0.855
    for _ in range(3):
        tr.observe(0.97)  # 0.9127 >= 0.9 * 0.95
    assert math.isclose(tr.product, 0.97**3)
    assert not tr.at_keyframe(0.95)
    tr.observe(0.9)  # 0.821 < 0.855
    assert tr.at_keyframe(0.95)
    assert tr.product == 1.0
    for _ in range(5000):
        tr.observe(0.5)  # would underflow as a plain product
    assert tr.at_keyframe(1e-6)


def test_memory_window_is_clipped():
    assert memory_window(3, 20) == range(0, 11)
    assert memory_window(18, 20, radius=2) == range(16, 20)


def test_fired_updates_replays_the_rule_on_small_arrays():
    # BAP over 12 frames, keyframes 2, 6, 9, anchor 6: forward 6..11 tests keyframe 9, backward 6..0 tests 2
    plan = bap_plan(12, [2, 6, 9], 6)
    probs = np.full(12, 0.99)
    assert fired_updates(plan, probs) == []  # products 0.99**2 and 0.99**3 stay above 0.9 * 0.99
    probs[7] = probs[4] = 0.5  # one unsure frame before keyframe 9 (forward) and before keyframe 2 (backward)
    assert fired_updates(plan, probs) == [9, 2]
    assert fired_updates(plan, probs, enabled=False) == []  # the rule switched off (the ablation)
    assert fired_updates(plan, probs, ratio=0.4) == []  # 0.5 * 0.99 >= 0.4 * 0.99
    probs[9] = 0.4  # the keyframe itself unsure: 0.4901 >= 0.9 * 0.4, no update forward
    assert fired_updates(plan, probs) == [2]
    # forward from keyframe 2 (its start, never tested): 0.99 * 0.5 * 0.99 < 0.9 * 0.99 fires at 6
    assert fired_updates(bap_plan(12, [2, 6, 9], 6, "forward"), probs) == [6]
    with pytest.raises(InputError):
        fired_updates(plan, probs[:5])
