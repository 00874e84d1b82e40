"""MomentSegModel (tiny preset): TSG and RefVOS training forwards, inference methods, sequence layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from momentseg.model import MomentSegModel, RefVOSSample, TSGSample
from momentseg.train.config import LossConfig

WEIGHTS = LossConfig().by_component()  # the training config's loss weights

WORDS = ["the", "red", "ball", "moves", "left", "blue", "cube", "jumps"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MomentSegModel.tiny(words=WORDS, sam2_image_size=64)


def _video(n, h=56, w=70, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _grad_sum(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_tsg_forward_backward_reaches_find_head(model):
    model.train()
    model.zero_grad()
    pos = np.zeros(12, bool)
    pos[3:7] = True
    out = model.forward_tsg([TSGSample(_video(12), "the red ball moves left", pos)])
    assert set(out.components()) == {"find_loss", "lm_loss", "event_bce"} and float(out.event_bce) == 0.0  # no event head
    assert all(torch.isfinite(v) for v in out.components().values())
    out.weighted(WEIGHTS).backward()
    assert _grad_sum(model.find_head[0]) > 0 and _grad_sum(model.find_head[2]) > 0
    assert _grad_sum(model.qwen.model.language_model) > 0
    assert all(p.grad is None for p in model.seg_head.parameters())  # TSG does not touch the [SEG] head
    model.zero_grad()


def test_find_loss_is_weighted_bce_of_find_logits(model):
    model.eval()
    frames = _video(9, seed=1)
    pos = np.zeros(9, bool)
    pos[2:5] = True
    logits = model.find_logits(frames, "blue cube jumps")
    assert logits.shape == (9,) and logits.dtype == torch.float32
    assert float(logits.abs().max()) <= 1 / model.config.temperature + 1e-4
    target = torch.from_numpy(pos).float()
    want = F.binary_cross_entropy_with_logits(logits, target, weight=1 + target)  # positives weighted 2
    with torch.no_grad():
        got = model.forward_tsg([TSGSample(frames, "blue cube jumps", pos)]).find_loss
    assert torch.allclose(got, want, atol=1e-5)
    # the query matters
    assert not torch.allclose(logits, model.find_logits(frames, "the red ball"))


def test_find_logits_interpolate_temporal_patches(model):
    """Frames sharing a temporal patch get logits interpolated between patch centres, not copies."""
    model.eval()
    logits = model.find_logits(_video(8, seed=2), "red ball")  # 4 temporal patches
    assert logits.shape == (8,)
    assert torch.isfinite(logits).all()
    # frame 0 sits before patch 0's centre (clamped), frame 1 between patches 0 and 1: different values
    assert not torch.isclose(logits[0], logits[1])


def test_refvos_forward_backward_reaches_seg_head_and_sam2(model):
    model.train()
    model.zero_grad()
    keyframes = _video(3, 64, 80, seed=3)
    masks = np.zeros((3, 64, 80), bool)
    masks[:, 10:40, 20:60] = True
    masks[2] = False  # object absent in the last keyframe
    sample = RefVOSSample(_video(6, seed=4), keyframes, "the blue cube", masks)
    out = model.forward_refvos([sample])
    assert set(out.components()) == {"mask_bce", "mask_dice", "lm_loss", "object_bce", "point_bce"}
    assert float(out.point_bce) == 0.0  # no pointing head
    assert all(torch.isfinite(v) for v in out.components().values())
    assert out.seg_embeddings.shape == (1, model.config.seg_dim)
    out.weighted(WEIGHTS).backward()
    assert _grad_sum(model.seg_head) > 0
    assert _grad_sum(model.sam2.mask_decoder.output_hypernetworks_mlps) > 0
    assert _grad_sum(model.sam2.mask_decoder.transformer) > 0
    assert _grad_sum(model.sam2.memory_attention) > 0  # frames 1.. decoded with memory
    assert _grad_sum(model.sam2.memory_encoder) > 0
    assert all(p.grad is None for p in model.find_head.parameters())
    model.zero_grad()


def test_refvos_keyframes_are_decoded_alone_with_a_track_size(model):
    """With a sam2_track_size the pipeline decodes each keyframe alone (decode_keyframes) before tracking, so the
    RefVOS loss decodes them so too: the same loss as with train_memory_path off, no gradient into the memory, and
    another loss than the clip decode with memory."""
    keyframes = _video(3, 64, 80, seed=3)
    masks = np.zeros((3, 64, 80), bool)
    masks[:, 10:40, 20:60] = True
    sample = RefVOSSample(_video(6, seed=4), keyframes, "the blue cube", masks)
    config = model.config
    losses = {}
    try:
        model.eval()
        for name, track_size, memory in (("clip", None, True), ("alone", None, False), ("tracked", 128, True)):
            model.config = dataclasses.replace(config, sam2_track_size=track_size, train_memory_path=memory)
            model.zero_grad()
            out = model.forward_refvos([sample])
            out.weighted(WEIGHTS).backward()
            losses[name] = (out.mask_bce.item(), out.mask_dice.item(), _grad_sum(model.sam2.memory_attention))
    finally:
        model.config = config
        model.zero_grad()
    assert losses["tracked"][:2] == pytest.approx(losses["alone"][:2], abs=1e-6)
    assert losses["tracked"][2] == losses["alone"][2] == 0 < losses["clip"][2]
    assert losses["clip"][:2] != pytest.approx(losses["alone"][:2], abs=1e-6)


def test_refvos_without_context_and_shape_errors(model):
    keyframes = _video(2, 64, 64, seed=5)
    masks = np.ones((2, 64, 64), bool)
    empty = np.zeros((0, 56, 56, 3), np.uint8)
    with torch.no_grad():
        out = model.forward_refvos([RefVOSSample(empty, keyframes, "ball", masks)])
    assert torch.isfinite(out.weighted(WEIGHTS))
    with pytest.raises(ValueError):
        model.forward_refvos([RefVOSSample(empty, keyframes, "ball", masks[:, :32])])
    with pytest.raises(ValueError):
        model.forward_tsg([TSGSample(_video(4), "ball", np.zeros(5, bool))])
    with pytest.raises(ValueError):
        model.find_logits(_video(4).astype(np.float32), "ball")


def test_seg_embedding(model):
    model.eval()
    kf = _video(3, 64, 64, seed=6)
    emb, text = model.seg_embedding(kf, "the red ball")
    assert emb.shape == (model.config.seg_dim,)
    assert "[SEG]" in text
    emb_ctx, _ = model.seg_embedding(kf, "the red ball", context=_video(4, seed=7))
    emb_other, _ = model.seg_embedding(kf, "blue cube")
    assert not torch.allclose(emb, emb_ctx) and not torch.allclose(emb, emb_other)


def test_sequence_layout(model):
    """Chat structure with the right number of placeholder tokens and the answer template at the end."""
    seq = model.processor.sequence([(2, 6), (1, 4), (1, 4)], "Please segment {query} in this video.", "x",
                                   "It is [SEG].")
    ids = model.processor.ids
    assert int((seq.input_ids == ids["video_pad"]).sum()) == 6 and int((seq.mm_types == 2).sum()) == 6
    assert int((seq.input_ids == ids["image_pad"]).sum()) == 8 and int((seq.mm_types == 1).sum()) == 8
    assert int((seq.input_ids == ids["vision_start"]).sum()) == 3 == int((seq.input_ids == ids["vision_end"]).sum())
    answer = seq.input_ids[seq.answer_start :].tolist()
    assert answer[-1] == ids["im_end"] and ids["seg"] in answer
    assert seq.input_ids[seq.answer_start - 1] != ids["seg"]


def test_query_span_covers_exactly_the_query_tokens(model):
    query = "the red ball"
    seq = model.processor.sequence([(2, 6)], "Please segment {query} in this video.", query, "It is [SEG].")
    s, e = seq.query_span
    assert seq.input_ids[s:e].tolist() == model.tokenizer.encode(query, add_special_tokens=False)
    assert "[UNK]" not in model.tokenizer.convert_ids_to_tokens(seq.input_ids[s:e].tolist())


def test_pooled_query_makes_the_seg_embedding_follow_the_text(model):
    """With pool_query (tiny preset) two texts differ at the head input by their own tokens' mean state."""
    assert model.config.pool_query
    kf = _video(2, 64, 64, seed=3)
    a, _ = model.seg_embedding(kf, "the red ball")
    b, _ = model.seg_embedding(kf, "blue cube")
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0)
    assert cos < 0.99


def test_tiny_sam2_starts_with_unit_scale_features(model):
    """A from-scratch SAM2 (tiny preset) must not start with vanishing features: under transformers' N(0, 0.02)
    init the S/4 features read by the mask decoder and the pixel query have std ≈ 0.003 and the [SEG] path
    barely learns; the tiny preset re-initialises SAM2's convs / linears with PyTorch's fan-in init."""
    from momentseg.data import synthetic as syn
    from momentseg.sam2.config import preprocess_for_sam2
    from momentseg.sam2.video import build_sam2

    video = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS["val"], 0), syn.video_id(0), syn.WorldConfig())
    px = preprocess_for_sam2(video.frames[:2], model.config.sam2_image_size)

    def s4_std(sam2):
        with torch.no_grad():
            return float(sam2.get_image_features(px, return_dict=True).fpn_hidden_states[0].std())

    assert s4_std(model.sam2) > 0.05
    torch.manual_seed(0)
    assert s4_std(build_sam2(model.config.sam2)) < 0.02  # transformers' own init, for contrast
    assert model.sam2.mask_decoder.pred_obj_score_head.proj_out.bias.item() == pytest.approx(2.0)


def test_pixel_query_gain_scales_only_the_pixel_query(model):
    """config.pixel_query_scale multiplies the pixel query (weights and bias), not the prompt token; an old config
    without the field reads as 1."""
    from momentseg.model.config import MomentSegConfig

    assert MomentSegConfig.__dataclass_fields__["pixel_query_scale"].default == 1.0
    kf = _video(2, 64, 64, seed=3)
    p = model.config.prompt_dim
    old = model.config.pixel_query_scale
    head = model.pixel_query_head
    with torch.no_grad():
        saved = head.weight.clone(), head.bias.clone()
        torch.nn.init.normal_(head.weight, std=0.1)  # the pixel query starts at zero
        head.bias.fill_(0.5)
    try:
        model.config.pixel_query_scale = 1.0
        one, _ = model.seg_embedding(kf, "the red ball")
        model.config.pixel_query_scale = 3.0
        three, _ = model.seg_embedding(kf, "the red ball")
    finally:
        model.config.pixel_query_scale = old
        with torch.no_grad():
            head.weight.copy_(saved[0])
            head.bias.copy_(saved[1])
    assert torch.equal(one[:p], three[:p])
    assert one[p:].abs().min() > 0
    assert torch.allclose(three[p:], 3.0 * one[p:], rtol=1e-6, atol=1e-7)


def test_the_pixel_query_is_linear_in_the_head_input_and_cannot_die():
    """The tiny preset's pixel query is a linear map of the [SEG] head input (``pixel_query_head``, zero at init):
    pushed hard in one direction it keeps following the text. The [SEG] MLP's ReLU outputs, which carried the pixel
    query before, went dead in training (every text the same embedding); a model saved that way still loads
    with its layout."""
    from momentseg.model.config import MomentSegConfig

    torch.manual_seed(0)
    m = MomentSegModel.tiny(words=WORDS, sam2_image_size=64)
    c, p = m.config, m.config.prompt_dim
    assert c.pixel_query_head and m.seg_head[2].out_features == p
    kf = _video(2, 64, 64, seed=3)
    texts = ["the red ball", "blue cube jumps"]
    emb, _ = m.seg_embedding_many(kf, texts)
    assert emb.shape == (2, c.seg_dim) and not emb[:, p:].any()  # zero at init: SAM2's masks unchanged
    inputs = torch.randn(4, c.hidden_size) * 60  # head inputs as large as the tiny preset's (bag std 6)
    opt = torch.optim.Adam(list(m.seg_head.parameters()) + list(m.pixel_query_head.parameters()), lr=1e-2)
    for _ in range(50):  # drive the MLP's hidden units and the query down, as consistent gradients do
        loss = m.seg_head[0](inputs).sum() + m.pixel_query_head(inputs).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dead = (torch.relu(m.seg_head[0](inputs)) == 0).all().item()
    assert dead  # the MLP's hidden units are all off: its output no longer depends on the input
    emb, _ = m.seg_embedding_many(kf, texts)
    assert emb[0, :p].allclose(emb[1, :p]) and not emb[0, p:].allclose(emb[1, p:])  # the query still follows
    layout = MomentSegConfig.from_dict({**c.to_dict(), "pixel_query_head": False})
    old = MomentSegModel(layout, m.tokenizer)
    assert old.seg_head[2].out_features == c.seg_dim and not hasattr(old, "pixel_query_head")
