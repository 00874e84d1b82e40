"""SAM2 glue: preprocessing, the [SEG] language-prompt hook, conditioning frames, clip decoding with grad."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentseg.model.sam2 import (
    IMAGENET_MEAN,
    build_sam2,
    decode_clip,
    language_prompt,
    new_session,
    preprocess_for_sam2,
    run_conditioning_frame,
    tiny_sam2_config,
)

S = 64


@pytest.fixture(scope="module")
def sam2():
    torch.manual_seed(0)
    model = build_sam2(tiny_sam2_config(S)).eval()
    # a random decoder predicts "no object" (masks clamped to -1024): bias the object score to "present"
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(5.0)
    return model


def _frames(n=4, h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


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
    ctx = language_prompt(sam2, embedding) if embedding is not None else _null()
    with ctx:
        out0 = run_conditioning_frame(sam2, session, 0)
        outs = {0: out0.pred_masks}
        for o in sam2.propagate_in_video_iterator(session, start_frame_idx=0):
            outs[o.frame_idx] = o.pred_masks
    assert 0 in session.output_dict_per_obj[0]["cond_frame_outputs"]
    assert set(session.output_dict_per_obj[0]["non_cond_frame_outputs"]) == set(range(1, len(pixel_values)))
    return torch.stack([outs[i][0, 0] for i in range(len(pixel_values))])


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_language_prompt_changes_every_frame_and_default_is_untouched(sam2):
    px = preprocess_for_sam2(_frames(), S)
    base1 = _track(sam2, px)
    e1, e2 = torch.randn(128), torch.randn(128)
    m1 = _track(sam2, px, e1)
    m1_again = _track(sam2, px, e1)
    m2 = _track(sam2, px, e2)
    assert torch.equal(m1, m1_again)
    for t in range(px.shape[0]):  # conditioning frame and every propagated frame see the embedding
        assert not torch.allclose(m1[t], m2[t]), t
        assert not torch.allclose(m1[t], base1[t]), t
    # after the block the instance is restored: the default path gives the same result as before
    assert "forward" not in sam2.prompt_encoder.__dict__
    assert "_run_single_frame_inference" not in sam2.__dict__
    assert torch.equal(_track(sam2, px), base1)


def test_language_prompt_per_object_rows(sam2):
    px = preprocess_for_sam2(_frames(2), S)
    e1, e2 = torch.randn(128), torch.randn(128)
    session = new_session(sam2, px, 40, 56)
    with language_prompt(sam2, torch.stack([e1, e2])):
        out = run_conditioning_frame(sam2, session, 0, obj_ids=(7, 9))
    single = []
    for e in (e1, e2):
        s = new_session(sam2, px, 40, 56)
        with language_prompt(sam2, e):
            single.append(run_conditioning_frame(sam2, s, 0).pred_masks[0])
    assert out.pred_masks.shape[0] == 2
    assert torch.allclose(out.pred_masks[0], single[0], atol=1e-5)
    assert torch.allclose(out.pred_masks[1], single[1], atol=1e-5)


def test_language_prompt_rejects_wrong_size(sam2):
    with pytest.raises(ValueError):
        with language_prompt(sam2, torch.randn(64)):
            pass


def test_decode_clip_matches_inference_and_has_grad(sam2):
    px = preprocess_for_sam2(_frames(3), S)
    emb = torch.randn(128, requires_grad=True)
    sam2.train()
    logits, scores = decode_clip(sam2, px, emb)
    assert sam2.training  # mode restored
    sam2.eval()
    assert logits.shape == (3, S // 4, S // 4) and scores.shape == (3,)
    with torch.no_grad():
        ref = _track(sam2, px, emb.detach())
    assert torch.allclose(logits.detach(), ref, atol=1e-3)
    (logits.mean() + scores.sum()).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    for name in ("mask_decoder.transformer.layers.0.self_attn.q_proj.weight", "memory_attention.layers.0.self_attn.q_proj.weight"):
        g = dict(sam2.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name
    sam2.zero_grad()


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
    assert "forward" not in sam2.mask_decoder.__dict__  # the hook is removed after the block
    with pytest.raises(ValueError, match="P\\+C0\\+1"):
        with language_prompt(sam2, torch.zeros(128 + extra + 1)):
            pass


def test_gradient_reaches_the_pixel_query(sam2):
    px = preprocess_for_sam2(_frames(3), S)
    extra = sam2.config.mask_decoder_config.hidden_size // 8 + 1
    emb = torch.cat([torch.randn(128), torch.zeros(extra)]).requires_grad_(True)
    low, scores = decode_clip(sam2, px, emb)
    low.float().sum().backward()
    assert emb.grad[128:].abs().sum() > 0
