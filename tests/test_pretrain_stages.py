"""The backbone pretraining stages of the embedded model: SAM2's own task (prompted tracking), its image encoder on
per-pixel shape / colour classes, Qwen's vision tower on per-token shape / colour / motion classes, and the
vision–language caption / QA task — their data, their losses, and their runs through the trainer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from momentseg.data import synthetic as syn
from momentseg.data.synthetic import caption_vocabulary
from momentseg.errors import InputError
from momentseg.grounding.sampling import dense_frame_indices
from momentseg.model import CaptionSample, ClassesSample, MomentSegModel, TokensSample, TrackSample, TSGSample
from momentseg.sam2.config import preprocess_for_sam2, sized_sam2_config
from momentseg.train.config import LossConfig, config_from_dict, load_config
from momentseg.train.data import SampleStream, SyntheticSource, classes_sample, tokens_sample, track_sample
from momentseg.train.loop import build_model, build_stream, train
from momentseg.train.shapes import SampleShape, resize_frames

SHAPE = SampleShape(tsg_side=56, context_side=56, keyframe_side=64, tsg_max_frames=8, tsg_fps=5.0,
                    context_frames=4, track_frames=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64)


@pytest.fixture(scope="module")
def video():
    return syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS["train"], 3), syn.video_id(3), syn.WorldConfig())


# ------------------------------------------------------------------------------------------ track data
def test_track_samples_follow_the_world(video):
    second = 0
    for seed in range(20):
        s = track_sample(video, np.random.default_rng(seed), SHAPE)
        n, t, h, w = s.masks.shape
        assert s.frames.shape == (t, h, w, 3) and t == 4 and max(h, w) == 64 and 1 <= n <= 5
        assert sorted(p["obj"] for p in s.prompts if p["frame"] == 0) == list(range(n))  # all on frame 0
        for p in s.prompts:
            m = s.masks[p["obj"], p["frame"]]
            assert m.sum() > 0  # prompted where visible
            ys, xs = np.nonzero(m)
            if "box" in p:  # the object's box on that frame, within the ±2 px jitter
                x0, y0, x1, y1 = p["box"]
                assert abs(x0 - xs.min()) <= 2 and abs(y1 - ys.max()) <= 2 and x0 <= x1 and y0 <= y1
            elif "points" in p:  # positives inside the mask, a negative outside
                for (x, y), label in zip(p["points"], p["labels"], strict=True):
                    assert bool(m[int(y), int(x)]) == (label == 1)
            else:
                assert p["mask"] is True and p["frame"] == 0  # later prompts are clicks or boxes
            second += p["frame"] > 0
    assert second > 0
    a = track_sample(video, np.random.default_rng(7), SHAPE)
    b = track_sample(video, np.random.default_rng(7), SHAPE)
    assert np.array_equal(a.masks, b.masks) and a.prompts == b.prompts


def test_a_track_stream_holds_only_its_task():
    stream = SampleStream([SyntheticSource("track")], SHAPE, seed=1)
    batch = stream.batch(range(3))
    assert list(batch) == ["track"] and all(isinstance(s, TrackSample) for s in batch["track"])
    with pytest.raises(InputError, match="track_ratio"):  # a fine-tuning mix needs its share (data.track_ratio)
        SampleStream([SyntheticSource("track"), SyntheticSource("tsg")], SHAPE)
    with pytest.raises(InputError, match="cannot mix"):
        SampleStream([SyntheticSource("track"), SyntheticSource("caption")], SHAPE)


def test_data_track_frames_sets_the_clip_length_of_sams_own_task(model, tmp_path):
    cfg = _cfg("track", tmp_path)
    assert {len(s.frames) for s in build_stream(cfg, model).batch(range(3))["track"]} == {8}  # SampleShape's
    cfg.data.track_frames = 2
    clips = build_stream(cfg, model).batch(range(6))["track"]
    assert {len(s.frames) for s in clips} == {2} and {s.masks.shape[1] for s in clips} == {2}
    assert all(p["frame"] in (0, 1) for s in clips for p in s.prompts)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {preset: tiny}\ndata: {track_frames: 0, sources: [{type: synthetic, task: track}]}\n")
    with pytest.raises(InputError, match="data.track_frames"):
        load_config(bad)


# ------------------------------------------------------------------------------------------ track model
def test_mask_prompt_is_frame_zero_output_and_the_rest_is_tracked(model, video):
    s = track_sample(video, np.random.default_rng(0), SHAPE)
    px = preprocess_for_sam2(s.frames, 64)
    m = torch.zeros(64, 64)
    m[20:40, 10:30] = 1.0
    low, scores = model.sam2.decode_prompted_clip(px, [{"obj": 0, "frame": 0, "mask": m},
                                                        {"obj": 1, "frame": 0, "points": [[32.0, 32.0]], "labels": [1]}])
    assert low.shape == (4, 2, 16, 16) and scores.shape == (4, 2)
    # a prompt on a later frame makes it a conditioning frame: a mask there is that frame's output
    m2 = torch.zeros(64, 64)
    m2[40:60, 40:60] = 1.0
    low2, _ = model.sam2.decode_prompted_clip(px, [{"obj": 0, "frame": 0, "mask": m}, {"obj": 0, "frame": 2, "mask": m2}])
    assert (low2[2, 0][11:14, 11:14] > 0).all() and (low2[2, 0][4:8, 3:7] < 0).all()
    with pytest.raises(ValueError, match="frame-0 prompt for every object"):
        model.sam2.decode_prompted_clip(px, [{"obj": 0, "frame": 1, "box": [1.0, 1.0, 9.0, 9.0]}])
    # SAM2 takes a mask prompt as its frame's output (logit +10 inside, -10 outside at S/4)
    inside = low[0, 0][6:9, 3:7]
    assert (inside > 0).all() and (low[0, 0][0:3, 10:16] < 0).all() and scores[0, 0] > 0


def test_track_loss_trains_the_decoder_and_memory(model, video):
    samples = [track_sample(video, np.random.default_rng(i), SHAPE) for i in range(2)]
    model.zero_grad()
    out = model.forward_track(samples)
    w = LossConfig(mask_bce=2.0, mask_dice=0.5, object_score=3.0)
    loss = out.weighted(w.by_component())
    assert torch.isclose(loss.detach(), 2.0 * out.mask_bce + 0.5 * out.mask_dice + 3.0 * out.object_bce, rtol=1e-5)
    loss.backward()
    for name in ("mask_decoder", "memory_attention", "memory_encoder", "vision_encoder"):
        grads = [p.grad for n, p in model.sam2.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None for p in model.qwen.parameters())  # no language in SAM2's own task


def test_track_loss_trains_the_tracker_at_the_models_track_size(model, video):
    """With ``sam2_track_size`` SAM2's own task runs the tracker at that size: the loss of a model built with its
    SAM2 at that size (the same weights), and the gradients reach the model's own SAM2 parameters."""
    samples = [track_sample(video, np.random.default_rng(i), SHAPE) for i in range(2)]
    size = model.config.sam2_image_size
    big = copy.deepcopy(model)
    big.config.sam2_track_size = 2 * size
    at_big = copy.deepcopy(model.config)
    at_big.sam2 = sized_sam2_config(at_big.sam2, 2 * size)
    built = MomentSegModel(at_big, model.tokenizer)
    built.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    out = big.forward_track(samples)
    torch.manual_seed(0)
    want = built.forward_track(samples)
    assert torch.allclose(out.mask_bce, want.mask_bce) and torch.allclose(out.mask_dice, want.mask_dice)
    assert not torch.allclose(out.mask_dice, model.forward_track(samples).mask_dice)  # not the 64-px tracker's
    big.zero_grad()
    out.mask_dice.backward()
    grads = [p.grad for n, p in big.sam2.named_parameters() if n.startswith("memory_attention") and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------------------------------------ pixel classes
def test_pixel_classes_name_the_visible_object_of_each_pixel(video):
    idx = np.arange(0, video.num_frames, 5)
    shapes, colours = video.pixel_classes(idx)
    assert shapes.shape == colours.shape == (len(idx), *video.frames.shape[1:3])
    covered = np.zeros(shapes.shape, bool)
    for tr in video.objects:
        mask = video.object_masks[tr.obj_id][idx]
        covered |= mask
        assert (shapes[mask] == 1 + syn.SHAPES.index(tr.shape)).all()
        for k, f in enumerate(idx):  # its colour on that frame, or "no class" while it blends
            want = 1 + int(tr.colour[f]) if tr.colour[f] >= 0 else -1
            assert (colours[k][mask[k]] == want).all()
    assert covered.any() and (shapes[~covered] == 0).all() and (colours[~covered] == 0).all()
    # the pixels carry the named colour's RGB value where the class says so (red = class 1)
    red = colours == 1 + syn.COLOURS.index("red")
    assert np.array_equal(video.frames[idx][red], np.broadcast_to(syn.PALETTE["red"], (int(red.sum()), 3)))
    a = classes_sample(video, np.random.default_rng(4), SHAPE)
    b = classes_sample(video, np.random.default_rng(4), SHAPE)
    assert isinstance(a, ClassesSample) and a.frames.shape[0] == SHAPE.classes_frames
    assert np.array_equal(a.shapes, b.shapes) and np.array_equal(a.frames, b.frames)


def test_classes_loss_trains_the_image_encoder_and_learns(video):
    torch.manual_seed(0)
    m = MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64, pixel_classes=syn.PIXEL_CLASS_COUNTS)
    sample = classes_sample(video, np.random.default_rng(0), SHAPE)
    out = m.forward_classes([sample])
    loss = out.weighted(LossConfig(pixel_shape=1.0, pixel_colour=0.5).by_component())
    assert torch.isclose(loss.detach(), out.shape_ce + 0.5 * out.colour_ce)
    loss.backward()
    for name in ("sam2.vision_encoder", "sam2.mask_decoder.conv_s0", "pixel_class_head"):
        grads = [p.grad for n, p in m.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    untouched = ("qwen", "sam2.memory_attention", "sam2.mask_decoder.transformer", "seg_head")
    assert all(p.grad is None for n, p in m.named_parameters() if n.startswith(untouched))
    opt = torch.optim.Adam([p for p in m.parameters() if p.grad is not None], lr=3e-3)
    first = float(loss.detach())
    for _ in range(25):
        opt.zero_grad()
        out = m.forward_classes([sample])
        (out.shape_ce + out.colour_ce).backward()
        opt.step()
    assert float((out.shape_ce + out.colour_ce).detach()) < 0.5 * first
    with pytest.raises(ValueError, match="pixel_class_head"):
        MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64).forward_classes([sample])


def test_a_coarse_pixel_query_adds_w_dot_s4_and_s16_features_to_the_masks(video):
    """The pixel query of C0 + C + 1 values adds ``w · [S/4, up(S/16)] + b`` to the decoded mask logits."""
    torch.manual_seed(0)
    m = MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64)
    assert m.config.pixel_query_coarse and m.config.seg_dim == m.config.prompt_dim + m.config.pixel_query_dim
    p, c0 = m.sam2.language_dims
    px = preprocess_for_sam2(video.frames[:3], 64)
    base = torch.zeros(m.config.seg_dim)
    base[:p] = torch.randn(p)
    query = torch.randn(m.config.pixel_query_dim - 1) * 0.1
    other = base.clone()
    other[p:-1], other[-1] = query, 0.3
    with torch.no_grad():
        low_a, score_a = m.sam2.decode_clip(px, base)
        low_b, score_b = m.sam2.decode_clip(px, other)
        feats = m.sam2.pixel_features(px[:1])[0]  # frame 0: decoded from the prompt alone
    assert feats.shape == (c0 + m.sam2.hidden_dim, 16, 16)
    want = torch.einsum("chw,c->hw", feats, query) + 0.3
    assert torch.allclose(low_b[0] - low_a[0], want, atol=1e-4) and torch.equal(score_a[0], score_b[0])
    with pytest.raises(ValueError, match=r"P\+C0\+C\+1"):
        m.sam2.set_language_embedding(m.sam2._clip_session(px), 0, torch.zeros(p + c0 + 5))


# ------------------------------------------------------------------------------------------ token classes
def test_pixel_motion_labels_each_object_by_its_shift_between_the_two_frames(video):
    moving, still = 0, 0
    for tr in video.objects:
        for f in range(0, video.num_frames - 2, 3):
            mask = video.object_masks[tr.obj_id][f]
            if mask.sum() < 5 or video.object_masks[tr.obj_id][f + 2].sum() < 5:
                continue
            labels = video.pixel_motion([f], [f + 2])[0, 0]
            dx, dy = tr.centre[f + 2] - tr.centre[f]
            got = set(np.unique(labels[mask]).tolist())
            if max(abs(dx), abs(dy)) < 1.0:
                assert got == {syn.MOTION_CLASSES.index("still")}
                still += 1
            else:
                name = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
                assert got == {syn.MOTION_CLASSES.index(name)}, (tr.obj_id, f, dx, dy)
                moving += 1
    assert moving and still  # the video has both
    both = video.pixel_motion(np.arange(0, 10, 2), np.arange(1, 11, 2))
    anywhere = np.zeros(both.shape, bool)
    for tr in video.objects:
        anywhere[:, 0] |= video.object_masks[tr.obj_id][0:10:2]
        anywhere[:, 1] |= video.object_masks[tr.obj_id][1:11:2]
    assert both.shape == (5, 2, *video.frames.shape[1:3]) and (both[~anywhere] == 0).all() and (both[anywhere] > 0).all()


def test_tokens_samples_are_fps_frame_pairs_with_their_labels(video):
    s = tokens_sample(video, np.random.default_rng(2), SHAPE)
    assert isinstance(s, TokensSample) and len(s.frames) == SHAPE.tokens_frames == 8
    assert s.frames.shape[1] * s.frames.shape[2] <= SHAPE.tsg_side ** 2
    assert s.shapes.shape == s.colours.shape == s.motions.shape == (8, *video.frames.shape[1:3])
    # a run of consecutive [FIND]-pass frames (tsg_fps, at most tsg_max_frames), starting on a temporal patch
    dense = dense_frame_indices(np.arange(video.num_frames) / video.fps, SHAPE.tsg_fps, SHAPE.tsg_max_frames)
    runs = [dense[i : i + 8] for i in range(0, len(dense) - 7, 2)]
    hits = [r for r in runs if np.array_equal(s.shapes, video.pixel_classes(r)[0])
            and np.array_equal(s.colours, video.pixel_classes(r)[1])]
    assert hits
    r = hits[0]
    assert np.array_equal(s.motions[2:4], video.pixel_motion([r[2]], [r[3]])[0])
    assert np.array_equal(s.frames, resize_frames(video.frames[r], s.frames.shape[1:3]))


def test_tokens_loss_reads_label_shares_per_token_and_trains_the_vision_tower(video):
    torch.manual_seed(0)
    m = MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64, token_classes=syn.TOKEN_CLASS_COUNTS)
    # 4 frames of 56 × 56 = 2 temporal patches × 2 × 2 tokens; token (patch 1, row 0, col 1) all colour 3 in one frame,
    # half blending (-1) in the other: its colour share is all that colour, taken from the labelled pixels only
    frames = np.zeros((4, 56, 56, 3), np.uint8)
    colours = np.zeros((4, 56, 56), np.int64)
    colours[2, :28, 28:] = 3
    colours[3, :28, 28:] = 3
    colours[3, :14, 28:] = -1
    frames[2:4, :28, 28:] = syn.PALETTE["blue"]  # colour class 3 = 1 + COLOURS.index("blue")
    zeros = np.zeros_like(colours)
    sample = TokensSample(frames, zeros, colours, zeros)
    out = m.forward_tokens([sample])
    assert set(out.components()) == {"token_shape_ce", "token_colour_ce", "token_motion_ce"}
    out.token_colour_ce.backward()
    for name in ("qwen.model.visual.patch_embed", "qwen.model.visual.merger", "token_class_head"):
        grads = [p.grad for n, p in m.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None for n, p in m.named_parameters() if n.startswith(("sam2", "qwen.model.language_model")))
    opt = torch.optim.Adam([p for p in m.parameters() if p.grad is not None], lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        out = m.forward_tokens([sample])
        out.token_colour_ce.backward()
        opt.step()
    with torch.no_grad():
        vis = m.processor.video(frames, m.config.find_frame_size)
        tok = m.video_tokens([vis])[0]
        colour = m.token_class_head(tok)[:, 7:14].softmax(1)  # shapes 0..6, colours 7..13
    assert tok.shape[0] == 8 and colour[5, 3] > 0.8 and (colour[[0, 1, 2, 3, 4, 6, 7], 0] > 0.8).all()
    with pytest.raises(ValueError, match="token_class_head"):
        MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64).forward_tokens([sample])


# ------------------------------------------------------------------------------------------ event head
def test_pixel_events_flag_each_visible_object_by_the_events_it_is_in(video):
    flags = video.pixel_events(np.arange(video.num_frames))
    assert flags.shape == video.frames.shape[:3]
    anywhere = np.zeros(flags.shape, bool)
    seen = set()
    for tr in video.objects:
        mask = video.object_masks[tr.obj_id]
        anywhere |= mask
        for k, kind in enumerate(syn.EVENT_KINDS):
            inside = np.zeros(video.num_frames, bool)
            for e in tr.events:
                if e.kind == kind:
                    inside[e.start : e.end + 1] = True
            for f in np.flatnonzero(mask.any(axis=(1, 2))):
                bit = (flags[f][mask[f]] >> k) & 1
                assert (bit == inside[f]).all(), (tr.obj_id, kind, f)
                seen |= {kind} if inside[f] else set()
    assert (flags[~anywhere] == -1).all() and (flags[anywhere] >= 0).all()
    assert len(seen) >= 3  # the video has several kinds of event on screen


def test_synthetic_tsg_samples_carry_the_event_flags_of_their_frames():
    src = SyntheticSource("tsg")
    s = src.sample(0, np.random.default_rng(0), SHAPE)
    video = src.video(0)
    idx = dense_frame_indices(np.arange(video.num_frames) / video.fps, SHAPE.tsg_fps, SHAPE.tsg_max_frames)
    assert np.array_equal(s.events, video.pixel_events(idx))
    assert np.array_equal(s.frames, resize_frames(video.frames[idx], s.frames.shape[1:3]))


def test_event_loss_reads_object_pixels_per_token_and_trains_the_language_model():
    torch.manual_seed(0)
    m = MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64, event_classes=len(syn.EVENT_KINDS))
    # 4 frames of 56 × 56 = 2 temporal patches × 2 × 2 tokens; token (patch 1, row 0, col 1) half covered by an
    # object inside a "stop" event (in both frames), everything else background
    frames = np.zeros((4, 56, 56, 3), np.uint8)
    events = np.full((4, 56, 56), -1, np.int64)
    stop = syn.EVENT_KINDS.index("stop")
    events[2:4, :14, 28:] = 1 << stop
    frames[2:4, :14, 28:] = syn.PALETTE["red"]
    sample = TSGSample(frames, "the shape that stops", np.array([0, 0, 1, 1], bool), events)
    out = m.forward_tsg([sample])
    assert set(out.components()) == {"find_loss", "lm_loss", "event_bce"} and float(out.event_bce.detach()) > 0
    # background tokens weigh nothing: a sample without objects adds nothing to the loss
    empty = TSGSample(np.zeros_like(frames), "the shape that stops", np.zeros(4, bool), np.full_like(events, -1))
    assert torch.allclose(m.forward_tsg([sample, empty]).event_bce, out.event_bce, atol=1e-5)
    out.event_bce.backward()
    for name in ("qwen.model.language_model", "event_head"):
        grads = [p.grad for n, p in m.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    opt = torch.optim.Adam([p for n, p in m.named_parameters() if n.startswith(("qwen.model.language_model",
                                                                                 "event_head"))], lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        m.forward_tsg([sample]).event_bce.backward()
        opt.step()
    with torch.no_grad():
        batch = m.processor.tsg([frames], [sample.query])
        hidden = m.llm_hidden(batch)[0][batch.mm_token_type_ids[0] == 2]
        prob = m.event_head(hidden).sigmoid()
    assert hidden.shape[0] == 8 and prob[5, stop] > 0.8 and (prob[5, [k for k in range(10) if k != stop]] < 0.2).all()
    # a sample without event flags (real TSG data) adds nothing to the event loss
    unlabelled = TSGSample(frames, sample.query, sample.positive)
    assert float(m.forward_tsg([unlabelled]).event_bce) == 0.0
    with torch.no_grad():
        assert torch.allclose(m.forward_tsg([sample, unlabelled]).event_bce, m.forward_tsg([sample]).event_bce,
                              atol=1e-5)
    plain = MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64)
    assert not hasattr(plain, "event_head") and float(plain.forward_tsg([sample]).event_bce) == 0.0


# ------------------------------------------------------------------------------------------ captions
def test_caption_samples_are_in_the_model_vocabulary(model):
    stream = SampleStream([SyntheticSource("caption")], SHAPE, seed=0)
    unk = model.tokenizer.unk_token_id
    for s in stream.batch(range(12))["caption"]:
        assert isinstance(s, CaptionSample) and s.frames.shape[0] <= 8 and s.frames.dtype == np.uint8
        ids = model.tokenizer.encode(f"{s.question} {s.answer}", add_special_tokens=False)
        assert unk not in ids, (s.question, s.answer)


def test_caption_loss_learns_an_answer_and_greedy_decoding_reads_it(video):
    torch.manual_seed(0)
    m = MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64)
    frames = video.frames[:8:2]
    sample = CaptionSample(frames, "which shapes are visible ?", "small red star and large blue circle")
    opt = torch.optim.Adam(m.qwen.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = m.forward_caption([sample])
        first = first if first is not None else float(out.lm_loss)
        opt.zero_grad()
        out.lm_loss.backward()
        opt.step()
    assert float(out.lm_loss) < 0.1 * first
    assert m.answer(frames, sample.question) == sample.answer


# ------------------------------------------------------------------------------------------ stages
def _cfg(task, out, steps=2, **model):
    return config_from_dict({
        "seed": 0, "out": str(out), "model": model or {"preset": "tiny"},
        "data": {"sources": [{"type": "synthetic", "task": task}]},
        "run": {"steps": steps, "batch_size": 1, "grad_accum": 1, "checkpoint_every": 1, "progress": False},
    })


def test_pretraining_stages_run_and_fine_tuning_loads_both_backbones(tmp_path):
    sam2_run = train(_cfg("track", tmp_path / "sam2"))
    classes_run = train(_cfg("classes", tmp_path / "classes", preset="tiny", pixel_class_head=True,
                             sam2_from=str(sam2_run.final)))
    assert all({"classes/shape_ce", "classes/colour_ce"} <= set(r) for r in classes_run.history)
    assert MomentSegModel.from_pretrained(classes_run.final).config.pixel_classes == list(syn.PIXEL_CLASS_COUNTS)
    with pytest.raises(InputError, match="pixel_class_head"):
        train(_cfg("classes", tmp_path / "no-head"))
    tokens_run = train(_cfg("tokens", tmp_path / "tokens", preset="tiny", token_class_head=True))
    assert all({"tokens/token_shape_ce", "tokens/token_motion_ce"} <= set(r) for r in tokens_run.history)
    with pytest.raises(InputError, match="token_class_head"):
        train(_cfg("tokens", tmp_path / "no-token-head"))
    events_run = train(_cfg("tsg", tmp_path / "events", preset="tiny", event_head=True))
    assert all(r["tsg/event_bce"] > 0 for r in events_run.history)
    assert MomentSegModel.from_pretrained(events_run.final).config.event_classes == len(syn.EVENT_KINDS)
    with pytest.raises(InputError, match="event_head"):
        train(_cfg("tsg", tmp_path / "no-fresh-head", pretrained=str(events_run.final), event_head=True))
    assert hasattr(build_model(_cfg("tsg", tmp_path / "kept", pretrained=str(events_run.final))), "event_head")
    vlm_run = train(_cfg("caption", tmp_path / "vlm"))
    assert [set(r) >= {"track/mask_dice", "track_samples"} for r in sam2_run.history] == [True, True]
    assert all("caption/lm_loss" in r for r in vlm_run.history)
    cfg = _cfg("refvos", tmp_path / "ft", pretrained=str(vlm_run.final), sam2_from=str(classes_run.final),
               vision_from=str(tokens_run.final))
    ft = build_model(cfg)
    # pretraining heads: the fine-tuned model takes the backbones alone
    assert not hasattr(ft, "pixel_class_head") and not hasattr(ft, "token_class_head")
    visual = MomentSegModel.from_pretrained(tokens_run.final).qwen.model.visual.state_dict()
    assert all(torch.equal(v, visual[k]) for k, v in ft.qwen.model.visual.state_dict().items())
    sam2 = MomentSegModel.from_pretrained(classes_run.final).sam2.state_dict()
    vlm = MomentSegModel.from_pretrained(vlm_run.final)
    assert all(torch.equal(v, sam2[k]) for k, v in ft.sam2.state_dict().items())
    assert all(torch.equal(v, vlm.qwen.state_dict()[k]) for k, v in ft.qwen.state_dict().items()
               if not k.startswith("model.visual."))
    assert ft.tokenizer.get_vocab() == vlm.tokenizer.get_vocab()


def test_fine_tuning_with_a_share_of_sams_own_task_trains_all_three(tmp_path):
    """data.track_ratio: a TSG + RefVOS fine-tuning that keeps SAM2's own task in its mix — every step's
    batch holds the three tasks in the exact shares, and each task's loss components are logged."""
    cfg = config_from_dict({
        "seed": 0, "out": str(tmp_path / "mix"), "model": {"preset": "tiny"},
        "data": {"track_ratio": 1 / 3, "track_frames": 2, "sources": [
            {"type": "synthetic", "task": "tsg"}, {"type": "synthetic", "task": "refvos"},
            {"type": "synthetic", "task": "track"}]},
        "run": {"steps": 2, "batch_size": 3, "grad_accum": 1, "checkpoint_every": 2, "progress": False},
    })
    run = train(cfg)
    for r in run.history:
        assert (r["tsg_samples"], r["refvos_samples"], r["track_samples"]) == (1, 1, 1)
        assert {"tsg/find_loss", "refvos/mask_dice", "track/mask_dice"} <= set(r)
        assert np.isfinite(r["loss"]) and r["track/mask_dice"] > 0


def test_sam2_fresh_keeps_the_fresh_init_of_named_modules_and_takes_the_rest(tmp_path):
    """model.sam2_fresh (stage 1g): the named SAM2 modules keep the run's own seeded initialisation, every other
    SAM2 weight is sam2_from's; a prefix naming nothing and a fresh list without sam2_from are errors."""
    torch.manual_seed(5)
    MomentSegModel.tiny(caption_vocabulary()).save_pretrained(tmp_path / "source")
    source = MomentSegModel.from_pretrained(tmp_path / "source").sam2.state_dict()
    cfg = _cfg("track", tmp_path / "run", preset="tiny", sam2_from=str(tmp_path / "source"),
               sam2_fresh=["memory_encoder"])
    torch.manual_seed(cfg.seed)
    fresh = build_model(_cfg("track", tmp_path / "plain")).sam2.state_dict()  # the same seed, no sam2_from
    torch.manual_seed(cfg.seed)
    got = build_model(cfg).sam2.state_dict()
    mem = [k for k in got if k.startswith("memory_encoder.")]
    assert mem and all(torch.equal(got[k], fresh[k]) and not torch.equal(got[k], source[k]) for k in mem
                       if fresh[k].numel() > 1 and fresh[k].std() > 0)
    assert all(torch.equal(got[k], source[k]) for k in got if not k.startswith("memory_encoder."))
    with pytest.raises(ValueError, match="names no SAM2 module"):
        MomentSegModel.tiny(caption_vocabulary()).load_sam2_from(tmp_path / "source", keep_fresh=["memory_enc"])
    with pytest.raises(InputError, match="model.sam2_fresh"):
        _cfg("track", tmp_path / "x", preset="tiny", sam2_fresh=["memory_encoder"])


def test_sam2_from_and_vision_from_refuse_another_backbone_size(tmp_path):
    MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64).save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="SAM2 config differs"):
        MomentSegModel.tiny(caption_vocabulary()).load_sam2_from(tmp_path / "small")
    other = MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64)
    other.config.qwen["vision_config"]["depth"] = 1
    with pytest.raises(ValueError, match="vision-tower config differs"):
        other.load_vision_from(tmp_path / "small")


def test_the_shipped_fine_tuning_config_loads_the_shipped_backbones(monkeypatch):
    """configs/tiny-synthetic.yaml (the embedded model's recipe) starts from pretrained/tiny-events-long (language
    model, event head, stage-1d vision tower) and pretrained/tiny-sam2-long as committed, both encoders frozen;
    configs/tiny-events(-long).yaml start from pretrained/tiny-vision, configs/tiny-sam2-classes.yaml from
    pretrained/tiny-sam2."""
    from pathlib import Path

    from momentseg.train.config import load_config, validate
    from momentseg.train.loop import _initial_model

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cfg = load_config(root / "configs" / "tiny-synthetic.yaml")
    validate(cfg)
    model = _initial_model(cfg)
    shipped = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-sam2-long").sam2.state_dict()
    assert all(torch.equal(v, shipped[k]) for k, v in model.sam2.state_dict().items())
    frozen = [p.requires_grad for n, p in model.named_parameters() if n.startswith("sam2.vision_encoder.")]
    assert frozen and not any(frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("sam2.mask_decoder."))
    assert not hasattr(model, "pixel_class_head") and model.config.pixel_query_coarse
    events = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-events-long")
    assert all(torch.equal(v, events.qwen.state_dict()[k]) for k, v in model.qwen.state_dict().items())
    tower = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-vision").qwen.model.visual.state_dict()
    assert all(torch.equal(v, tower[k]) for k, v in model.qwen.model.visual.state_dict().items())
    assert not any(p.requires_grad for p in model.qwen.model.visual.parameters())
    assert all(p.requires_grad for p in model.qwen.model.language_model.parameters())
    assert model.event_head.weight.requires_grad and cfg.loss.events > 0 and cfg.data.track_ratio > 0
    assert not hasattr(model, "token_class_head")
    for name in ("tiny-events.yaml", "tiny-events-long.yaml"):
        stage = load_config(root / "configs" / name)
        validate(stage)
        assert stage.model.vision_from == "pretrained/tiny-vision" and stage.model.event_head
    stage = load_config(root / "configs" / "tiny-sam2-classes.yaml")
    validate(stage)
    assert stage.model.sam2_from == "pretrained/tiny-sam2" and stage.model.pixel_class_head
    vision = load_config(root / "configs" / "tiny-vision.yaml")
    validate(vision)
    assert vision.model.token_class_head and vision.data.sources[0].task == "tokens"
    validate(load_config(root / "configs" / "tsg-only-probe.yaml"))  # BENCHMARKS' [FIND]-only control


def _stage_model(monkeypatch, name: str):
    """The repository root, the validated stage config ``configs/<name>`` and the model its run starts from."""
    from pathlib import Path

    from momentseg.train.config import validate
    from momentseg.train.loop import _initial_model

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cfg = load_config(root / "configs" / name)
    validate(cfg)
    return root, cfg, _initial_model(cfg)


def test_the_sam2_restore_config_gives_round_19_stage_1hs_memory_and_trains_only_it(monkeypatch):
    """configs/tiny-sam2-restore.yaml (round 21): round 19 as committed (pretrained/tiny-presence-r19) with the memory
    path of stage 1h (pretrained/tiny-sam2-long); every other weight round 19's - its image encoder, prompt encoder
    and mask decoder included - and only the memory path trains, on SAM2's own task."""
    root, cfg, model = _stage_model(monkeypatch, "tiny-sam2-restore.yaml")
    base = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-presence-r19").state_dict()
    stage_1h = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-sam2-long").sam2.state_dict()
    weights = model.state_dict()
    assert weights.keys() == base.keys()
    memory = {n for n, p in model.named_parameters() if p.requires_grad}
    assert memory and {n.split(".")[1] for n in memory} == {
        "memory_attention", "memory_encoder", "memory_temporal_positional_encoding", "object_pointer_proj",
        "temporal_positional_encoding_projection_layer", "mask_downsample"}
    assert all(torch.equal(weights[n], stage_1h[n.removeprefix("sam2.")]) for n in memory)
    assert any(not torch.equal(weights[n], base[n]) for n in memory)  # round 19's memory is not stage 1h's
    assert all(torch.equal(v, weights[k]) for k, v in base.items() if k not in memory)
    assert [s.task for s in cfg.data.sources] == ["track"] and cfg.data.track_frames == 6


def test_the_shipped_model_is_round_24_but_for_its_memory_trained_at_256():
    """The embedded model (round 25b) is configs/tiny-memory-256.yaml's output: round 24's weights (committed as
    pretrained/tiny-subgrid-r24) everywhere but in SAM2's memory path, trained at the 256-px track size it carries.
    Round 24 is configs/tiny-pointing-subgrid.yaml's output: round 23's weights (pretrained/tiny-native-r23)
    everywhere but in the pointing head that config refines (2 x 2 sub-cells per token) and trains. Round 23 is
    configs/tiny-pointing-native.yaml's output: round 21's weights (pretrained/tiny-memory-r21) but for the pointing
    and presence heads, read on the context at 160 px; round 21 is configs/tiny-sam2-restore.yaml's output, round
    19's weights but for the SAM2 memory path, so the [FIND] pass and every keyframe decode are round 19's."""
    from pathlib import Path

    from momentseg.pipeline import embedded_model_dir

    root = Path(__file__).resolve().parents[1]
    shipped_model = MomentSegModel.from_pretrained(embedded_model_dir())
    shipped = shipped_model.state_dict()
    r24_model = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-subgrid-r24")
    r24 = r24_model.state_dict()
    r23_model = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-native-r23")
    r23 = r23_model.state_dict()
    r21_model = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-memory-r21")
    r21 = r21_model.state_dict()
    r19 = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-presence-r19").state_dict()
    assert shipped.keys() == r24.keys() == r23.keys() == r21.keys() == r19.keys()
    memory_256 = load_config(root / "configs" / "tiny-memory-256.yaml").model
    assert memory_256.sam2_track_size == 256
    trained = tuple(memory_256.trainable)
    assert all(torch.equal(v, r24[k]) for k, v in shipped.items() if not k.startswith(trained))
    assert not all(torch.equal(v, r24[k]) for k, v in shipped.items() if k.startswith(trained))
    assert (shipped_model.config.sam2_track_size, r24_model.config.sam2_track_size) == (256, None)
    assert all(torch.equal(v, r23[k]) for k, v in r24.items() if not k.startswith("pointing_head."))
    assert r24["pointing_head.key_out.weight"].shape[0] == 4 * r23["pointing_head.key_out.weight"].shape[0]
    assert not torch.equal(r24["pointing_head.query_out.weight"], r23["pointing_head.query_out.weight"])
    assert (shipped_model.config.seg_pointing_subgrid, r23_model.config.seg_pointing_subgrid) == (2, 1)
    assert shipped_model.config.sam2_image_size == 128
    heads = ("pointing_head.", "presence_head.")
    assert all(torch.equal(v, r21[k]) for k, v in r23.items() if not k.startswith(heads))
    assert not all(torch.equal(v, r21[k]) for k, v in r23.items() if k.startswith(heads))
    assert (shipped_model.config.context_frame_size, r23_model.config.context_frame_size,
            r21_model.config.context_frame_size) == (160, 160, 112)
    memory = tuple(load_config(root / "configs" / "tiny-sam2-restore.yaml").model.trainable)
    assert all(torch.equal(v, r19[k]) for k, v in r21.items() if not k.startswith(memory))
    assert not all(torch.equal(v, r19[k]) for k, v in r21.items() if k.startswith(memory))


def test_the_memory_256_config_trains_round_24s_memory_path_at_the_track_size(monkeypatch):
    """configs/tiny-memory-256.yaml (round 25b): round 24 as committed (pretrained/tiny-subgrid-r24) given the 256-px
    track size, with only round 21's memory path trainable, on SAM2's own task (which runs the tracker at that size)."""
    root, cfg, model = _stage_model(monkeypatch, "tiny-memory-256.yaml")
    r24 = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-subgrid-r24").state_dict()
    weights = model.state_dict()
    assert weights.keys() == r24.keys() and all(torch.equal(v, weights[k]) for k, v in r24.items())
    assert model.config.sam2_track_size == 256 and model.config.sam2_image_size == 128
    restore = tuple(load_config(root / "configs" / "tiny-sam2-restore.yaml").model.trainable)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and trainable == {n for n, _ in model.named_parameters() if n.startswith(restore)}
    assert [s.task for s in cfg.data.sources] == ["track"] and cfg.data.track_frames == 6


@pytest.mark.parametrize("name,decode,tasks", [
    ("tiny-keyframe-decode.yaml", ("sam2.mask_decoder.", "seg_head.", "pixel_query_head.", "point_prior_scale"),
     {"refvos", "track"}),
    ("tiny-keyframe-prompt.yaml", ("seg_head.", "pixel_query_head.", "point_prior_scale"), {"refvos"})])
def test_the_keyframe_configs_train_the_decode_on_round_25b(monkeypatch, name, decode, tasks):
    """configs/tiny-keyframe-decode.yaml (round 26) and tiny-keyframe-prompt.yaml (26b): round 25b as committed
    (pretrained/tiny-memory-r25b) with only what decodes a keyframe trainable, on RefVOS samples - SAM2's mask
    decoder too in round 26, mixed with SAM2's own task at the track size since the tracker shares it; in 26b only
    the [SEG] head, its pixel query and the prior's gain, so SAM2 (the tracker) stays round 25b's."""
    root, cfg, model = _stage_model(monkeypatch, name)
    r25b = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-memory-r25b").state_dict()
    weights = model.state_dict()
    assert weights.keys() == r25b.keys() and all(torch.equal(v, weights[k]) for k, v in r25b.items())
    assert model.config.sam2_track_size == 256
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(decode)}
    assert all(any(n.startswith(d) for n in trainable) for d in decode)
    assert {s.task for s in cfg.data.sources} == tasks and (cfg.data.track_ratio > 0) == ("track" in tasks)


def test_the_long_memory_config_trains_round_21s_memory_path_on_12_frame_clips(monkeypatch):
    """configs/tiny-memory-long.yaml (round 22): round 21 as shipped (pretrained/tiny-memory-r21, itself round 19 but
    for the memory path) with only that memory path trainable, on SAM2's own task with 12-frame clips."""
    root, cfg, model = _stage_model(monkeypatch, "tiny-memory-long.yaml")
    r21 = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-memory-r21").state_dict()
    r19 = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-presence-r19").state_dict()
    weights = model.state_dict()
    assert weights.keys() == r21.keys() and all(torch.equal(v, weights[k]) for k, v in r21.items())
    restore = tuple(load_config(root / "configs" / "tiny-sam2-restore.yaml").model.trainable)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and trainable == {n for n, _ in model.named_parameters() if n.startswith(restore)}
    # round 21 is round 19 with a trained memory path
    assert all(torch.equal(v, r19[k]) for k, v in r21.items() if not k.startswith(restore))
    assert [s.task for s in cfg.data.sources] == ["track"] and cfg.data.track_frames == 12


def test_the_pointing_lm_config_trains_the_language_model_and_the_pointing_head_on_round_21(monkeypatch):
    """configs/tiny-pointing-lm.yaml (round 22d): round 21 as shipped, with the language model's decoder layers and
    final norm training beside the pointing head on the pointing loss; its vision tower, word embeddings, every
    other head and SAM2 frozen."""
    root, cfg, model = _stage_model(monkeypatch, "tiny-pointing-lm.yaml")
    r21 = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-memory-r21").state_dict()
    weights = model.state_dict()
    assert weights.keys() == r21.keys() and all(torch.equal(v, weights[k]) for k, v in r21.items())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    language = ("qwen.model.language_model.layers.", "qwen.model.language_model.norm.")
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith((*language, "pointing_head."))}
    assert any(n.startswith(language) for n in trainable) and any(n.startswith("pointing_head.") for n in trainable)
    assert [s.task for s in cfg.data.sources] == ["point"] and cfg.loss.point == 1.0


@pytest.mark.parametrize("name,start,expressions", [("tiny-presence-more.yaml", "tiny-memory-r21", "video"),
                                                    ("tiny-presence-candidates.yaml", "tiny-memory-r21", "candidates"),
                                                    ("tiny-presence-native.yaml", "tiny-native-r23", "candidates")])
def test_the_presence_configs_train_only_the_presence_head(monkeypatch, name, start, expressions):
    """configs/tiny-presence-more.yaml, tiny-presence-candidates.yaml (round 21 as shipped) and tiny-presence-native.yaml
    (round 23 as shipped, pretrained/tiny-native-r23: the embedded files): only the presence head trains (presence
    loss 4x the pointing loss), on point samples of the video's own expressions, or of every expression the world's
    language could say about it."""
    root, cfg, model = _stage_model(monkeypatch, name)
    base = MomentSegModel.from_pretrained(root / "pretrained" / start)
    weights = model.state_dict()
    assert weights.keys() == base.state_dict().keys()
    assert all(torch.equal(v, weights[k]) for k, v in base.state_dict().items())
    assert model.config.context_frame_size == base.config.context_frame_size
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and trainable == {n for n, _ in model.named_parameters() if n.startswith("presence_head.")}
    assert [(s.task, s.expressions) for s in cfg.data.sources] == [("point", expressions)]
    assert cfg.loss.presence == 4 * cfg.loss.point and model.config.point_presence_threshold == 1.0


def test_the_native_pointing_config_trains_round_21s_heads_on_the_videos_own_resolution(monkeypatch):
    """configs/tiny-pointing-native.yaml (round 23): round 21 as shipped, its pointing and presence heads the only
    parts that train; the data config's context size (160) becomes the model's, so the context frames keep their
    pixels (a 4 x 6 token grid instead of 3 x 4) in training and in the saved model's inference."""
    from momentseg.model.preprocess import target_size
    from momentseg.train.loop import build_stream

    root, cfg, model = _stage_model(monkeypatch, "tiny-pointing-native.yaml")
    r21 = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-memory-r21")
    weights = model.state_dict()
    assert weights.keys() == r21.state_dict().keys()
    assert all(torch.equal(v, weights[k]) for k, v in r21.state_dict().items())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(("pointing_head.", "presence_head."))}
    assert r21.config.context_frame_size == 112 and cfg.data.context_frame_size == 160
    stream = build_stream(cfg, model)
    assert model.config.context_frame_size == 160
    sample = stream.sample(0)
    h, w = sample.context.shape[1:3]
    tokens = [n // model.layout.factor for n in target_size(h, w, model.config.context_frame_size, model.layout)]
    assert (h, w) == (120, 160) and tokens == [4, 6]  # the synthetic frames' own size; 3 x 4 tokens at 112
    assert [n // model.layout.factor for n in target_size(h, w, 112, model.layout)] == [3, 4]


def test_the_subgrid_config_refines_round_23s_pointing_map_and_trains_only_its_head(monkeypatch):
    """configs/tiny-pointing-subgrid.yaml (round 24): round 23 as shipped (pretrained/tiny-native-r23), its pointing
    head given 2 x 2 sub-cells per context token, each starting as its token (every other weight unchanged, the key
    projection repeated), and only that head trains; the presence head keeps one logit per token, frozen."""
    root, cfg, model = _stage_model(monkeypatch, "tiny-pointing-subgrid.yaml")
    r23 = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-native-r23").state_dict()
    weights = model.state_dict()
    key = ("pointing_head.key_out.",)
    assert weights.keys() == r23.keys()
    assert all(torch.equal(v, r23[k]) for k, v in weights.items() if not k.startswith(key))
    assert torch.equal(weights["pointing_head.key_out.weight"], r23["pointing_head.key_out.weight"].repeat(4, 1))
    assert model.config.seg_pointing_subgrid == 2 and model.pointing_head.subgrid == model.presence_head.subgrid * 2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("pointing_head.")}
    assert [s.task for s in cfg.data.sources] == ["point"] and cfg.loss.presence == 0
    assert model.config.context_frame_size == 160 and model.config.point_presence_threshold == 1.0
    assert model.config.sam2_track_size == 256  # round 25's inference setting, saved with the model


def test_the_patches_config_adds_round_24s_sub_cells_their_patches_and_trains_only_the_head(monkeypatch):
    """configs/tiny-pointing-patches.yaml (round 24b): round 24 as shipped (pretrained/tiny-subgrid-r24), its pointing
    head's sub-cell keys given their own patches of the head's tower through a zero projection (every map unchanged
    at step 0, tested in test_pointing), every weight round 24's, and only the pointing head trains."""
    root, cfg, model = _stage_model(monkeypatch, "tiny-pointing-patches.yaml")
    r24 = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-subgrid-r24").state_dict()
    weights = model.state_dict()
    assert set(weights) - set(r24) == {f"pointing_head.patch_in.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    assert all(torch.equal(v, weights[k]) for k, v in r24.items())
    assert not weights["pointing_head.patch_in.1.weight"].any()
    assert model.config.seg_pointing_patches and model.config.seg_pointing_subgrid == 2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("pointing_head.")}
    assert [s.task for s in cfg.data.sources] == ["point"] and cfg.loss.presence == 0
