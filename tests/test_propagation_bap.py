"""BAP and the bounded SAM2 session on a tiny random MomentSegSam2 (image size 128, 20 frames)."""

import numpy as np
import pytest
import torch

from momentseg.errors import InputError
from momentseg.propagation.bap import NO_OBJECT_LOGIT, propagate, upsample_mask
from momentseg.propagation.policy import AnchorTracker, bap_plan, fired_updates
from momentseg.sam2.config import tiny_sam2_config
from momentseg.sam2.session import FrameStore, PropagationSession
from momentseg.sam2.video import build_sam2

S, T = 128, 20
KEYS = [2, 5, 9, 13, 17]
ANCHOR = 9


@pytest.fixture(scope="module")
def sam2(object_present):
    torch.manual_seed(0)
    return object_present(build_sam2(tiny_sam2_config(S)).eval(), bias=2.0, weight_gain=5.0)  # p ~ 0.88


@pytest.fixture(scope="module")
def video():
    g = torch.Generator().manual_seed(1)
    return torch.randn(T, 3, S, S, generator=g)


@pytest.fixture(scope="module")
def masks():
    rng = np.random.default_rng(2)
    out = {}
    for k in KEYS:
        m = np.zeros((48, 64), bool)
        y, x = rng.integers(0, 24), rng.integers(0, 32)
        m[y : y + 20, x : x + 28] = True
        out[k] = m
    return out


def _run(sam2, frames, **kw):
    kw.setdefault("mask_prompts", None)
    return list(propagate(sam2, frames, KEYS, ANCHOR, **kw))


def test_bap_yields_every_frame_once_starting_at_the_anchor(sam2, video, masks):
    res = _run(sam2, video, mask_prompts=masks)
    order = [r.frame_idx for r in res]
    assert order == bap_plan(T, KEYS, ANCHOR).output_order()
    assert order[0] == ANCHOR and sorted(order) == list(range(T))
    assert set(order[T - ANCHOR :]) == set(range(ANCHOR))  # backward pass covers the frames before the anchor
    for r in res:
        assert r.mask_logits.shape == (S // 4, S // 4)
        assert 0.0 <= r.object_prob <= 1.0
    # keyframes are the mask prompts (SAM2 outputs a mask prompt as-is): the yielded mask is the prompt
    for r in res:
        if r.frame_idx in KEYS:
            got = upsample_mask(r.mask_logits, (48, 64)).numpy()
            assert (got == masks[r.frame_idx]).mean() > 0.9
            assert r.object_prob > 0.99


def test_tensor_and_callable_frames_give_identical_results(sam2, video, masks):
    calls = []

    def source(i):
        calls.append(i)
        return video[i].clone()

    a = _run(sam2, video, mask_prompts=masks)
    b = _run(sam2, source, mask_prompts=masks, num_frames=T)
    assert [r.frame_idx for r in a] == [r.frame_idx for r in b]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.mask_logits, y.mask_logits) and x.object_prob == y.object_prob
    # streamed: every frame fetched, none more than twice (keyframes <= anchor are re-encoded by the backward pass)
    assert set(calls) == set(range(T)) and max(calls.count(i) for i in range(T)) <= 2


def test_pruning_bounds_stored_outputs_without_changing_results(sam2, video, masks):
    pruned = PropagationSession(sam2, FrameStore(video))
    full = PropagationSession(sam2, FrameStore(video), prune=False)
    with torch.inference_mode():
        for sess in (pruned, full):
            sess.condition(0, masks[2])
        num_maskmem = sam2.config.num_maskmem
        pointer_keep = sam2.config.max_object_pointers_in_encoder - 1
        for f in range(T):
            a, b = pruned.track(f), full.track(f)
            assert torch.equal(a.mask_logits, b.mask_logits)
            assert len(pruned.stored_frames()) <= pointer_keep
            assert len(pruned.memory_frames()) <= num_maskmem - 1
            for entry in pruned.session.output_dict_per_obj[0]["non_cond_frame_outputs"].values():
                assert "high_res_masks" not in entry
    assert len(full.stored_frames()) == T - 1  # transformers alone keeps every frame
    assert pruned.peak_stored == pointer_keep < T - 1
    assert pruned.conditioning_frames() == [0]

    # and end to end, with and without the anchor update
    for update in (False, True):
        a = _run(sam2, video, mask_prompts=masks, anchor_update=update)
        b = _run(sam2, video, mask_prompts=masks, anchor_update=update, prune=False)
        assert all(torch.equal(x.mask_logits, y.mask_logits) for x, y in zip(a, b, strict=True))


def test_anchor_update_fires_when_the_rule_says_and_not_otherwise(sam2, video, masks, monkeypatch):
    cleared = []
    original = PropagationSession.clear_memory_around

    def spy(self, frame_idx, radius):
        out = original(self, frame_idx, radius)
        cleared.append((frame_idx, out))
        return out

    monkeypatch.setattr(PropagationSession, "clear_memory_around", spy)
    res = _run(sam2, video, mask_prompts=masks)
    # replay the pure rule over the yielded scores, pass by pass
    by_frame = {r.frame_idx: r.object_prob for r in res}
    expected = []
    for p in bap_plan(T, KEYS, ANCHOR).passes:
        tracker = AnchorTracker()
        for f in p.frames[1:]:
            if f in p.conditioning:
                if tracker.at_keyframe(by_frame[f]):
                    expected.append(f)
            else:
                tracker.observe(by_frame[f])
    assert [f for f, _ in cleared] == expected
    probs = [by_frame[f] for f in range(T)]
    assert fired_updates(bap_plan(T, KEYS, ANCHOR), probs) == expected  # the library's replay agrees
    assert fired_updates(bap_plan(T, KEYS, ANCHOR), probs, enabled=False) == []
    assert expected  # the random model is unsure (p ~ 0.5), so the product falls below 0.9 quickly
    for f, frames in cleared:
        assert frames and all(abs(g - f) <= 7 for g in frames)

    # a rule that never fires changes nothing; one that fires changes frames after the keyframes
    cleared.clear()
    never = _run(sam2, video, mask_prompts=masks, update_ratio=1e-30)
    assert cleared == []
    off = _run(sam2, video, mask_prompts=masks, anchor_update=False)
    assert all(torch.equal(x.mask_logits, y.mask_logits) for x, y in zip(never, off, strict=True))
    assert any(not torch.equal(x.mask_logits, y.mask_logits) for x, y in zip(res, off, strict=True))


def test_embedding_prompt_conditions_keyframes_and_reaches_every_frame(sam2, video, masks):
    hidden = sam2.config.prompt_encoder_config.hidden_size
    g = torch.Generator().manual_seed(3)
    e1, e2 = torch.randn(hidden, generator=g), torch.randn(hidden, generator=g)
    a = _run(sam2, video, prompt_embedding=e1)
    b = _run(sam2, video, prompt_embedding=e2)
    assert sorted(r.frame_idx for r in a) == list(range(T))
    assert all(not torch.equal(x.mask_logits, y.mask_logits) for x, y in zip(a, b, strict=True))
    # with masks on the keyframes, the embedding still changes the propagated (non-key) frames only
    ma = {r.frame_idx: r for r in _run(sam2, video, prompt_embedding=e1, mask_prompts=masks)}
    mb = {r.frame_idx: r for r in _run(sam2, video, prompt_embedding=e2, mask_prompts=masks)}
    for f in range(T):
        same = torch.equal(ma[f].mask_logits, mb[f].mask_logits)
        assert same == (f in KEYS)
    # keyframes become conditioning frames of the session
    sess = PropagationSession(sam2, FrameStore(video), language=e1)
    with torch.inference_mode():
        for k in (9, 13):
            sess.condition(k)
        sess.track(9)
        sess.track(10)
    assert sess.conditioning_frames() == [9, 13] and sess.stored_frames() == [10]
    assert sess.session.obj_with_new_inputs == []  # otherwise every later frame would be conditioning


def test_forward_modes_give_empty_masks_before_their_start(sam2, video, masks):
    for mode, start in (("forward", KEYS[0]), ("anchor-forward", ANCHOR)):
        res = _run(sam2, video, mask_prompts=masks, mode=mode)
        order = [r.frame_idx for r in res]
        assert sorted(order) == list(range(T)) and order[0] == start
        for r in res:
            if r.frame_idx < start:
                assert r.object_prob == 0.0 and torch.all(r.mask_logits == NO_OBJECT_LOGIT)
                assert not upsample_mask(r.mask_logits, (48, 64)).any()


def test_state_offload_keeps_memories_on_the_state_device(sam2, video, masks):
    sess = PropagationSession(sam2, FrameStore(video), inference_state_device="cpu")
    with torch.inference_mode():
        sess.condition(0, masks[2])
        for f in range(4):
            sess.track(f)
    for entry in sess.session.output_dict_per_obj[0]["non_cond_frame_outputs"].values():
        assert entry["maskmem_features"].device.type == "cpu"


def test_upsample_mask_is_bilinear_then_threshold():
    logits = torch.full((4, 4), -5.0)
    logits[:, :2] = 5.0
    m = upsample_mask(logits, (8, 12))
    assert m.dtype == torch.bool and m.shape == (8, 12)
    assert m[:, :5].all() and not m[:, 7:].any()


def test_bad_arguments_raise_input_errors(sam2, video, masks):
    with pytest.raises(InputError):
        propagate(sam2, video, KEYS, ANCHOR)  # no prompt at all
    with pytest.raises(InputError):
        propagate(sam2, video, KEYS, ANCHOR, mask_prompts={2: masks[2]})  # masks missing for keyframes
    with pytest.raises(InputError):
        propagate(sam2, video, KEYS, 4, mask_prompts=masks)  # anchor not a keyframe
    with pytest.raises(InputError):
        propagate(sam2, lambda i: video[i], KEYS, ANCHOR, mask_prompts=masks)  # callable without num_frames
    with pytest.raises(InputError):
        list(propagate(sam2, video[:, :, :64, :64], KEYS, ANCHOR, mask_prompts=masks))  # wrong frame size


def test_shared_image_features_encode_each_frame_once_bounded_and_change_nothing(sam2, video, masks):
    from momentseg.sam2.session import shared_image_features

    plain = [r.mask_logits.clone() for r in _run(sam2, video, mask_prompts=masks)]
    calls = []
    original = sam2.get_image_features

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    sam2.get_image_features = counting
    try:
        with shared_image_features(sam2) as memo:
            first = [r.mask_logits.clone() for r in _run(sam2, video, mask_prompts=masks)]
            second = [r.mask_logits.clone() for r in _run(sam2, video, mask_prompts=masks)]
            assert sorted(memo) == list(range(T))
        assert len(calls) == T  # two BAP runs (four passes) encode each frame once
        with shared_image_features(sam2, max_bytes=1) as memo:
            _run(sam2, video, mask_prompts=masks)
            assert len(memo) == 1  # the bound holds (one entry is always kept)
    finally:
        del sam2.get_image_features
    assert "_prepare_vision_features" not in sam2.__dict__
    for a, b, c in zip(plain, first, second, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
