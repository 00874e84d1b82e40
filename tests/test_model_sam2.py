"""MomentSegSam2: the [SEG] language prompt, conditioning frames, clip decoding with grad, preprocessing.

The subclass replaced a hook that swapped ``prompt_encoder.forward``, ``mask_decoder.forward`` and
``_run_single_frame_inference`` on a plain ``Sam2VideoModel`` instance. A copy of that hook lives below (only
here, as the reference): on the same weights the subclass must give the same masks and object scores.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from transformers import Sam2VideoModel

from momentseg.propagation.bap import propagate
from momentseg.sam2.config import (
    IMAGENET_MEAN,
    NO_OBJECT_LOGIT,
    preprocess_for_sam2,
    sam2_config_from_dict,
    sam2_large_config,
    sized_sam2_config,
    tiny_sam2_config,
)
from momentseg.sam2.video import LanguageSession, MomentSegSam2, SpatialPrior, build_sam2, new_session

S = 64


@pytest.fixture(scope="module")
def sam2(object_present):
    torch.manual_seed(0)
    return object_present(build_sam2(tiny_sam2_config(S)).eval(), bias=5.0)


def _plain_copy(model: MomentSegSam2) -> Sam2VideoModel:
    """transformers' own class with the same weights (the reference the hook below runs on)."""
    plain = Sam2VideoModel(model.config)
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain.eval()


@pytest.fixture(scope="module")
def plain(sam2):
    return _plain_copy(sam2)


def _frames(n=4, h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- the old path
@contextlib.contextmanager
def _old_language_prompt(sam2, embedding):
    """The previous ``momentseg.sam2.config.language_prompt`` (instance patching), kept as the reference."""
    encoder = sam2.prompt_encoder
    hidden = encoder.hidden_size
    channels = int(sam2.config.mask_decoder_config.hidden_size) // 8
    full = embedding if embedding.ndim == 2 else embedding[None]
    table, query = full[:, :hidden], (full[:, hidden:] if full.shape[-1] > hidden else None)
    state = {"obj_idx": 0}
    original_encoder_forward = encoder.forward
    original_single = sam2._run_single_frame_inference
    decoder = sam2.mask_decoder
    original_decoder_forward = decoder.forward

    def single_frame(*args, **kwargs):
        state["obj_idx"] = kwargs.get("obj_idx", 0)
        return original_single(*args, **kwargs)

    def encoder_forward(input_points, input_labels, input_boxes, input_masks):
        sparse, dense = original_encoder_forward(input_points, input_labels, input_boxes, input_masks)
        row = table[min(state["obj_idx"], table.shape[0] - 1)] if table.shape[0] > 1 else table[0]
        token = row.to(sparse.dtype).view(1, 1, 1, hidden).expand(sparse.shape[0], sparse.shape[1], 1, hidden)
        return torch.cat([sparse, token], dim=2), dense

    def decoder_forward(*args, **kwargs):
        masks, *rest = original_decoder_forward(*args, **kwargs)
        row = query[min(state["obj_idx"], query.shape[0] - 1)]
        feats = kwargs["high_resolution_features"][0]
        match = torch.einsum("bchw,c->bhw", feats, row[:channels].to(feats.dtype)) + row[channels].to(feats.dtype)
        return (masks + match[:, None].to(masks.dtype), *rest)

    encoder.forward = encoder_forward
    sam2._run_single_frame_inference = single_frame
    if query is not None:
        decoder.forward = decoder_forward
    try:
        yield
    finally:
        for owner, name in ((decoder, "forward"), (encoder, "forward"), (sam2, "_run_single_frame_inference")):
            owner.__dict__.pop(name, None)


def _old_condition(sam2, session, frame_idx, obj_ids=(0,)):
    for obj_id in obj_ids:
        session.obj_id_to_idx(obj_id)
        session.obj_with_new_inputs.append(obj_id)
    try:
        return sam2(inference_session=session, frame_idx=frame_idx)
    finally:
        for obj_id in obj_ids:
            if obj_id in session.obj_with_new_inputs:
                session.obj_with_new_inputs.remove(obj_id)


def _scenario(model, px, embeddings, old: bool, keys=(0, 2), start=0, reverse=False, mask=None,
              old_on_tracked=True):
    """Condition ``keys`` (``mask``: a mask prompt on keys[0] instead), then track from ``start``; returns the
    {frame: (pred_masks, object_score_logits)} of every call. ``embeddings``: one (D,) per object (ids 0..).
    ``old``: the reference hook on a plain model, entered for the tracked frames too unless not
    ``old_on_tracked`` (then only around the conditioning calls, as Sa2VA prompts SAM2)."""
    session = new_session(model, px, 40, 56)
    outs = {}
    objs = tuple(range(len(embeddings)))
    if old:
        table = torch.stack(embeddings) if len(embeddings) > 1 else embeddings[0]
        ctx_cond, ctx_track = _old_language_prompt(model, table), contextlib.nullcontext()
        if old_on_tracked:
            ctx_cond, ctx_track = contextlib.nullcontext(), _old_language_prompt(model, table)
    else:
        ctx_cond = ctx_track = contextlib.nullcontext()
        for obj_id, e in enumerate(embeddings):
            model.set_language_embedding(session, obj_id, e)
    with torch.inference_mode(), ctx_track:
        with ctx_cond:
            for i, k in enumerate(keys):
                if mask is not None and i == 0:
                    for obj_id in objs:
                        session.add_mask_inputs(session.obj_id_to_idx(obj_id), k, mask)
                if old:
                    out = _old_condition(model, session, k, objs)
                else:
                    out = model(session, frame_idx=k, condition=objs)
                outs[("cond", k)] = (out.pred_masks.clone(), out.object_score_logits.clone())
        for out in model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
            outs[out.frame_idx] = (out.pred_masks.clone(), out.object_score_logits.clone())
    return outs


def _assert_same(new, old):
    assert new.keys() == old.keys()
    for key in new:
        for a, b in zip(new[key], old[key], strict=True):
            assert torch.equal(a, b), key


def test_subclass_equals_the_old_hook_on_the_same_weights(sam2, plain):
    px = preprocess_for_sam2(_frames(6), S)
    g = torch.Generator().manual_seed(4)
    extra = sam2.language_dims[1] + 1
    token, token2 = torch.randn(128, generator=g), torch.randn(128, generator=g)
    queried = torch.cat([token, torch.randn(extra, generator=g)])
    mask = torch.zeros(1, 1, S, S)
    mask[..., 10:40, 20:50] = 1.0
    cases = [
        dict(embeddings=[token]),  # prompt token, conditioning frames 0 and 2, forward
        dict(embeddings=[queried]),  # token + pixel query
        dict(embeddings=[token], keys=(3,), start=3, reverse=True),  # reverse from a middle keyframe
        dict(embeddings=[queried], keys=(0, 4), mask=mask),  # mask-prompted keyframe: pointer pass prompted too
        dict(embeddings=[token, token2]),  # two objects, one prompt each
    ]
    for case in cases:
        new = _scenario(sam2, px, old=False, **case)
        old = _scenario(plain, px, old=True, **case)
        _assert_same(new, old)
    assert "forward" not in plain.prompt_encoder.__dict__  # the reference hook cleaned up after itself


def test_embedded_model_sam2_equals_the_old_hook():
    """The shipped (trained) SAM2 with a [SEG] token and an S/4 pixel query (the form the old hook knew; the
    shipped model's query also reads S/16, tested in test_pretrain_stages): same masks and scores, frame for
    frame."""
    from momentseg.model.momentseg import MomentSegModel
    from momentseg.pipeline import embedded_model_dir

    model = MomentSegModel.from_pretrained(embedded_model_dir())
    assert isinstance(model.sam2, MomentSegSam2)
    size = model.config.sam2_image_size
    g = torch.Generator().manual_seed(5)
    px = torch.randn(5, 3, size, size, generator=g)
    prompt, channels = model.sam2.language_dims
    embedding = torch.randn(prompt + channels + 1, generator=g)
    new = _scenario(model.sam2, px, [embedding], old=False, keys=(0, 3))
    old = _scenario(_plain_copy(model.sam2), px, [embedding], old=True, keys=(0, 3))
    _assert_same(new, old)
    assert any(bool((v[0] > 0).any()) for v in new.values())  # a comparison of real masks, not of blanks


def test_state_dict_keys_are_transformers_own(sam2, plain):
    assert list(sam2.state_dict()) == list(plain.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(sam2.state_dict().values(), plain.state_dict().values(),
                                                  strict=True))


# ---------------------------------------------------------------------------------------------- behaviour
def test_preprocess_shape_and_normalisation():
    frames = np.zeros((2, 30, 50, 3), dtype=np.uint8)
    frames[1] = 255
    x = preprocess_for_sam2(frames, S)
    assert x.shape == (2, 3, S, S) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0], torch.full((S, S), -IMAGENET_MEAN[0] / 0.229), atol=1e-5)
    assert torch.allclose(x[1, 2], torch.full((S, S), (1 - 0.406) / 0.225), atol=1e-5)
    assert torch.equal(preprocess_for_sam2(torch.from_numpy(frames), S), x)
    with pytest.raises(ValueError):
        preprocess_for_sam2(np.zeros((2, 30, 50), np.uint8), S)


def _track(sam2, pixel_values, embedding=None):
    """Conditioning frame 0, then propagate; returns the (T, S/4, S/4) mask logits."""
    session = new_session(sam2, pixel_values, 40, 56)
    session.obj_id_to_idx(0)
    if embedding is not None:
        sam2.set_language_embedding(session, 0, embedding)
    out0 = sam2(inference_session=session, frame_idx=0, condition=(0,))
    assert out0.pred_masks.is_inference()  # forward runs under inference mode, as transformers' does
    outs = {0: out0.pred_masks}
    for o in sam2.propagate_in_video_iterator(session, start_frame_idx=0):
        outs[o.frame_idx] = o.pred_masks
    assert 0 in session.output_dict_per_obj[0]["cond_frame_outputs"]
    assert set(session.output_dict_per_obj[0]["non_cond_frame_outputs"]) == set(range(1, len(pixel_values)))
    assert session.obj_with_new_inputs == []  # conditioning by argument leaves the session's flags alone
    return torch.stack([outs[i][0, 0] for i in range(len(pixel_values))])


def test_language_prompt_changes_every_frame_and_is_per_session(sam2):
    px = preprocess_for_sam2(_frames(), S)
    base1 = _track(sam2, px)
    e1, e2 = torch.randn(128), torch.randn(128)
    m1 = _track(sam2, px, e1)
    m2 = _track(sam2, px, e2)
    assert torch.equal(m1, _track(sam2, px, e1))
    for t in range(px.shape[0]):  # conditioning frame and every propagated frame see the embedding
        assert not torch.allclose(m1[t], m2[t]), t
        assert not torch.allclose(m1[t], base1[t]), t
    assert torch.equal(_track(sam2, px), base1)  # the prompt lives on its session, not on the model
    session = new_session(sam2, px, 40, 56)
    sam2.set_language_embedding(session, 0, e1)
    sam2.set_language_embedding(session, 0, None)  # removed
    assert session.language_embeds == {}
    sam2.set_language_embedding(session, 0, e1)
    session.reset_tracking_data()
    assert session.language_embeds == {}


def test_language_prompt_rejects_wrong_size_and_plain_sessions(sam2):
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    session = new_session(sam2, preprocess_for_sam2(_frames(2), S), 40, 56)
    assert isinstance(session, LanguageSession)
    with pytest.raises(ValueError, match="P\\+C0\\+1"):
        sam2.set_language_embedding(session, 0, torch.randn(64))
    with pytest.raises(ValueError, match="P=128"):
        sam2.set_language_embedding(session, 0, torch.randn(2, 128))  # one object, one row
    with pytest.raises(TypeError, match="LanguageSession"):
        sam2.set_language_embedding(Sam2VideoInferenceSession(video_height=4, video_width=4), 0, torch.randn(128))


def test_decode_clip_matches_inference_and_has_grad(sam2):
    px = preprocess_for_sam2(_frames(3), S)
    emb = torch.randn(128, requires_grad=True)
    sam2.train()
    logits, scores = sam2.decode_clip(px, emb)
    assert sam2.training  # mode restored
    sam2.eval()
    assert logits.shape == (3, S // 4, S // 4) and scores.shape == (3,)
    with torch.no_grad():
        ref = _track(sam2, px, emb.detach())
    assert torch.allclose(logits.detach(), ref, atol=1e-3)
    (logits.mean() + scores.sum()).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    for name in ("mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
                 "memory_attention.layers.0.self_attn.q_proj.weight"):
        g = dict(sam2.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name
    sam2.zero_grad()
    with pytest.raises(ValueError, match="frame 0"):
        sam2.decode_clip(px, emb, cond_frames=(1,))


def test_pixel_query_part_of_the_embedding_changes_every_frame_and_zero_is_identity(sam2):
    px = preprocess_for_sam2(_frames(), S)
    extra = sam2.config.mask_decoder_config.hidden_size // 8 + 1
    token = torch.randn(128)
    plain = _track(sam2, px, token)
    identity = _track(sam2, px, torch.cat([token, torch.zeros(extra)]))
    assert torch.equal(plain, identity)  # a zero query adds nothing to the masks
    queried = _track(sam2, px, torch.cat([token, torch.randn(extra)]))
    for t in range(px.shape[0]):
        assert not torch.allclose(plain[t], queried[t]), t


def test_gradient_reaches_the_pixel_query(sam2):
    px = preprocess_for_sam2(_frames(3), S)
    extra = sam2.config.mask_decoder_config.hidden_size // 8 + 1
    emb = torch.cat([torch.randn(128), torch.zeros(extra)]).requires_grad_(True)
    low, scores = sam2.decode_clip(px, emb)
    low.float().sum().backward()
    assert emb.grad[128:].abs().sum() > 0
    sam2.zero_grad()


def _track_with_prior(sam2, pixel_values, embedding, prior):
    session = new_session(sam2, pixel_values, 40, 56)
    sam2.set_language_embedding(session, 0, embedding, prior)
    outs = {0: sam2(inference_session=session, frame_idx=0, condition=(0,)).pred_masks}
    for o in sam2.propagate_in_video_iterator(session, start_frame_idx=0):
        outs[o.frame_idx] = o.pred_masks
    return torch.stack([outs[i][0, 0] for i in range(len(pixel_values))])


def test_spatial_prior_is_added_upsampled_on_every_frame_from_its_patch(sam2):
    px = preprocess_for_sam2(_frames(4), S)
    emb = torch.randn(128)
    plain = _track(sam2, px, emb)
    # a constant prior on the conditioning frame (no memory yet) adds exactly that constant
    maps = torch.stack([torch.full((2, 3), 2.5), torch.full((2, 3), -1.0)])
    out = _track_with_prior(sam2, px, emb, SpatialPrior(maps, np.array([0, 1, 1, 0])))
    assert torch.allclose(out[0], plain[0] + 2.5, atol=1e-4)
    for t in range(1, 4):  # tracked frames get their patch's map too (and memory of the changed masks)
        assert not torch.allclose(out[t], plain[t]), t
    # a map that is high on the left only raises the left of the mask (bilinear upsampling, S/4 grid)
    left = torch.tensor([[4.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    out = _track_with_prior(sam2, px, emb, SpatialPrior(left[None], np.zeros(4, dtype=int)))
    diff = out[0] - plain[0]
    assert float(diff[:, :2].min()) > 3.5 and float(diff[:, -2:].abs().max()) < 1e-3
    # the prior goes with the language prompt: removing the prompt removes it
    session = new_session(sam2, px, 40, 56)
    sam2.set_language_embedding(session, 0, emb, SpatialPrior(maps, np.zeros(4, dtype=int)))
    sam2.set_language_embedding(session, 0, None)
    assert session.language_priors == {}
    with pytest.raises(ValueError, match="maps \\(J,h,w\\)"):
        sam2.set_language_embedding(session, 0, emb, SpatialPrior(torch.zeros(2, 3), np.zeros(4, dtype=int)))


def test_decode_clip_prior_reaches_every_frame_with_grad(sam2):
    px = preprocess_for_sam2(_frames(3), S)
    emb = torch.randn(128)
    prior = torch.zeros(3, 2, 3, requires_grad=True)
    low, _ = sam2.decode_clip(px, emb, prior=prior)
    with torch.no_grad():
        assert torch.allclose(low, sam2.decode_clip(px, emb)[0], atol=1e-5)  # a zero prior changes nothing
    low.sum().backward()
    assert all(float(prior.grad[k].abs().sum()) > 0 for k in range(3))


# ---------------------------------------------------------------------------------------------- Sa2VA options
def _variant(model: MomentSegSam2, score_bias: float | None = None, **behaviour) -> MomentSegSam2:
    """A copy of ``model``'s weights with other behaviour options (and object-score bias)."""
    out = MomentSegSam2(model.config, **behaviour)
    out.load_state_dict(model.state_dict(), strict=True)
    if score_bias is not None:
        with torch.no_grad():
            out.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(score_bias)
    return out.eval()


def test_default_behaviour_is_this_projects():
    model = build_sam2(tiny_sam2_config(S))
    assert model.behaviour == {"clamp_no_object_masks": True, "language_on_tracked_frames": True}


def test_sa2va_keeps_the_mask_of_a_frame_scored_no_object(sam2):
    """The object-score head's bias moves the score only: a frame scored absent keeps exactly the mask the same
    weights decode when it is scored present (Sa2VA), instead of -1024 everywhere (transformers)."""
    px = preprocess_for_sam2(_frames(4), S)
    embedding = torch.randn(128, generator=torch.Generator().manual_seed(6))
    present = _scenario(sam2, px, [embedding], old=False, keys=(0,))
    absent_clamped = _scenario(_variant(sam2, -5.0), px, [embedding], old=False, keys=(0,))
    absent_kept = _scenario(_variant(sam2, -5.0, clamp_no_object_masks=False), px, [embedding], old=False,
                            keys=(0,))
    for key in present:
        assert (absent_clamped[key][1] < 0).all() and (absent_kept[key][1] < 0).all(), key
        assert torch.all(absent_clamped[key][0] == NO_OBJECT_LOGIT), key
        assert not torch.any(absent_kept[key][0] == NO_OBJECT_LOGIT), key
    assert (present[("cond", 0)][1] > 0).all()
    assert torch.equal(absent_kept[("cond", 0)][0], present[("cond", 0)][0])  # no memory: the very same mask
    # tracked frames read an "absent" memory (mask and pointer), so they differ from the present run
    assert not torch.allclose(absent_kept[2][0], present[2][0])


def test_sa2va_gives_the_language_token_to_conditioning_frames_only(sam2, plain):
    px = preprocess_for_sam2(_frames(6), S)
    embedding = torch.randn(128, generator=torch.Generator().manual_seed(7))
    sa2va = _variant(sam2, language_on_tracked_frames=False)
    ours = _scenario(sam2, px, [embedding], old=False)
    theirs = _scenario(sa2va, px, [embedding], old=False)
    # exactly the old hook entered around the conditioning calls only (Sa2VA: add_language_embd on the
    # keyframes, propagate_in_video without language_embd)
    _assert_same(theirs, _scenario(plain, px, [embedding], old=True, old_on_tracked=False))
    for key in ours:
        tracked = key not in (("cond", 0), ("cond", 2), 0, 2)  # frames 0 and 2 return their stored output
        assert torch.equal(ours[key][0], theirs[key][0]) != tracked, key
    # and with the token off on tracked frames, their masks no longer depend on it beyond the memory: a session
    # whose prompt is removed after conditioning decodes them identically
    session = new_session(sa2va, px, 40, 56)
    session2 = new_session(sam2, px, 40, 56)
    with torch.inference_mode():
        for s, m in ((session, sa2va), (session2, sam2)):
            m.set_language_embedding(s, 0, embedding)
            for k in (0, 2):
                m(s, frame_idx=k, condition=(0,))
        sam2.set_language_embedding(session2, 0, None)
        for f in (1, 3, 4):
            assert torch.equal(sa2va(session, frame_idx=f).pred_masks, sam2(session2, frame_idx=f).pred_masks), f


# ---------------------------------------------------------------------------------------------- another input size
def test_sized_config_is_the_config_built_at_that_size():
    assert sized_sam2_config(tiny_sam2_config(S), 2 * S) == tiny_sam2_config(2 * S)
    assert sized_sam2_config(sam2_large_config(1024), 512) == sam2_large_config(512)
    with pytest.raises(ValueError, match="multiple of 16"):
        sized_sam2_config(tiny_sam2_config(S), 100)


def test_at_size_runs_the_same_weights_at_another_input_size(sam2):
    """``at_size`` shares every parameter (the very tensors) and tracks exactly as a model built at that size
    with a copy of the weights."""
    big = sam2.at_size(2 * S)
    assert big.config.image_size == 2 * S and big.behaviour == sam2.behaviour and not big.training
    assert all(a is b for a, b in zip(sam2.parameters(), big.parameters(), strict=True))
    assert set(big.state_dict()) == set(sam2.state_dict())
    copy = MomentSegSam2(sam2_config_from_dict(tiny_sam2_config(2 * S)), **sam2.behaviour)
    copy.load_state_dict(sam2.state_dict(), strict=True)
    px = preprocess_for_sam2(_frames(5, seed=3), 2 * S)
    mask = np.zeros((40, 56), dtype=bool)
    mask[10:25, 15:35] = True
    with torch.inference_mode():
        got = [o.mask_logits for o in propagate(big, px, [1], 1, mask_prompts={1: mask})]
        want = [o.mask_logits for o in propagate(copy.eval(), px, [1], 1, mask_prompts={1: mask})]
    assert [tuple(g.shape) for g in got] == [(S // 2, S // 2)] * 5  # S/4 at twice the size
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
