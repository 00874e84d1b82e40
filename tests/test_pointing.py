"""The [SEG] pass's pointing head (``MomentSegConfig.seg_pointing``): the frame → context-patch map, the pointing
maps and their loss, the spatial prior from training to the pipeline, and the synthetic samples that train it."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from momentseg.data.synthetic import WorldConfig, generate_video
from momentseg.errors import InputError
from momentseg.grounding.sampling import nearest_patches, uniform_frames
from momentseg.io.video import open_video
from momentseg.model import MomentSegModel, RefVOSSample
from momentseg.model.pointing import PointingHead, grid_positions
from momentseg.pipeline import MomentSeg
from momentseg.train.config import LossConfig, config_from_dict
from momentseg.train.data import SyntheticSource
from momentseg.train.loop import train
from momentseg.train.shapes import SampleShape
from tiny_heads import model_pair, random_video, tiny_model

WEIGHTS = LossConfig().by_component()


@pytest.fixture(scope="module")
def pair():
    """A tiny model without and with a pointing head, otherwise the same weights."""
    return model_pair("add_pointing_head")


def test_nearest_patches_picks_the_patch_whose_frames_are_closest():
    ctx = np.array([0, 10, 20, 30, 40])  # patches (0, 10), (20, 30), (40, 40 padded)
    got = nearest_patches([0, 5, 14, 15, 16, 26, 32, 33, 40, 99], ctx, 2)
    assert got.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]  # centres 5, 25, 40; ties go to the earlier patch
    assert nearest_patches(range(4), [0, 1, 2, 3], 1).tolist() == [0, 1, 2, 3]
    with pytest.raises(InputError, match="context frames"):
        nearest_patches([0], [], 2)


def _samples(with_labels=True):
    out = []
    for i, (ctx, k) in enumerate([(6, 3), (4, 2)]):
        masks = np.zeros((k, 64, 64), bool)
        masks[:, 8 * i : 8 * i + 30, 10:40] = True
        labels = np.full((ctx, 56, 70), -1, np.int8)
        labels[:, 10:30, 10:30] = 1
        labels[:, 30:50, 40:60] = 0
        out.append(RefVOSSample(random_video(ctx, seed=10 + i), random_video(k, 64, 64, seed=20 + i), "the red ball", masks,
                                key_patch=np.arange(k) % (ctx // 2),
                                context_labels=labels if with_labels else None))
    return out


def test_a_fresh_pointing_head_changes_no_mask_and_trains(pair):
    plain, pointing = pair
    samples = _samples()
    with torch.no_grad():
        a, b = plain.forward_refvos(samples), pointing.forward_refvos(samples)
    for name in ("mask_bce", "mask_dice", "object_bce", "lm_loss"):  # zero gain and bias: the same masks
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-6), name
    assert float(a.point_bce) == 0.0 and float(b.point_bce) > 0
    assert float(pointing.forward_refvos(_samples(with_labels=False)).point_bce) == 0.0
    pointing.zero_grad()
    pointing.forward_refvos(samples).weighted(WEIGHTS).backward()
    grads = {n: p.grad for n, p in pointing.named_parameters() if p.grad is not None}
    for name in ("pointing_head.key_out.weight", "pointing_head.video_in.1.weight", "point_prior_scale"):
        assert name in grads and float(grads[name].abs().sum()) > 0, name
    pointing.zero_grad()


def test_point_loss_prefers_the_map_on_the_target(pair):
    _, pointing = pair
    labels = np.full((4, 56, 56), -1, np.int8)
    labels[:, :28, :28] = 1  # the target fills the top-left token of each 2×2 grid, another object the bottom-right
    labels[:, 28:, 28:] = 0
    right = torch.full((2, 2, 2), -5.0)
    right[:, 0, 0] = 5.0
    wrong = -right
    loss = [float(pointing._point_loss([(m, labels)])) for m in (right, wrong)]
    assert loss[0] < 0.01 < 5 < loss[1]
    assert float(pointing._point_loss([])) == 0.0
    none = np.where(labels == 1, 0, labels)  # a no-target expression: only the negative part
    assert float(pointing._point_loss([(torch.full((2, 2, 2), -8.0), none)])) < 0.01


def test_seg_prompts_priors_are_the_same_with_a_shared_prefix_and_follow_the_query(pair):
    _, pointing = pair
    with torch.no_grad():
        pointing.point_prior_scale.copy_(torch.tensor([0.5, -1.0]))
    try:
        kf, ctx = random_video(3, 64, 64, seed=6), random_video(6, seed=7)
        queries = ["the red ball", "a blue cube", "big"]
        shared = pointing.seg_prompts(kf, queries, ctx)
        single = pointing.seg_prompts(kf, queries, ctx, share_prefix=False)
        assert shared.priors.shape == (3, 3, *single.priors.shape[2:])  # 6 context frames: 3 temporal patches
        assert torch.allclose(shared.priors, single.priors, atol=1e-4)
        assert torch.allclose(shared.embeddings, single.embeddings, atol=1e-5)
        assert not torch.allclose(shared.priors[0], shared.priors[1])
        assert pointing.seg_prompts(kf, queries, None).priors is None  # no context: nothing to point at
        emb, _ = pointing.seg_embedding(kf, queries[0], context=ctx)
        assert torch.allclose(emb, single.embeddings[0])
    finally:
        with torch.no_grad():
            pointing.point_prior_scale.zero_()


def test_pipeline_adds_the_prior_and_a_saved_model_keeps_its_head(pair, tmp_path):
    _, pointing = pair
    synth = generate_video(3, config=WorldConfig(min_frames=20, max_frames=22))
    video = open_video(synth.frames, fps=synth.fps)
    pipe = MomentSeg(pointing, device="cpu")
    text = synth.expressions[0].text
    prompt = pipe.seg_prompt(video, text, [0, 5])
    embedding, prior = prompt.embedding, prompt.prior
    assert prompt.present  # no presence threshold: every text has a target
    assert isinstance(prompt.presence, float)  # its presence logit, the pointing map's maximum
    ctx = uniform_frames(len(video), pointing.config.context_frames)
    assert embedding.shape == (pointing.config.seg_dim,) and prior.maps.shape[0] == -(-len(ctx) // 2)
    assert np.array_equal(prior.frame_patch, nearest_patches(np.arange(len(video)), ctx, 2))
    base = pipe.segment(video, [text], keyframes=2).expressions[0].masks.to_array()
    with torch.no_grad():
        pointing.point_prior_scale.copy_(torch.tensor([0.0, 50.0]))  # a prior of +50 everywhere: all foreground
    try:
        raised = pipe.segment(video, [text], keyframes=2).expressions[0]
        probs = raised.object_probs
        on = raised.masks.to_array()
        assert on[probs > 0.5].all() and on.sum() > base.sum()
        pointing.save_pretrained(tmp_path / "m")
        loaded = MomentSegModel.from_pretrained(tmp_path / "m")
        assert loaded.config.seg_pointing and torch.equal(loaded.point_prior_scale, pointing.point_prior_scale)
    finally:
        with torch.no_grad():
            pointing.point_prior_scale.zero_()


def test_a_text_whose_map_points_nowhere_gets_empty_masks_without_a_sam2_decode(pair, tmp_path):
    """MomentSegConfig.point_presence_threshold: a query whose pointing map's maximum is below it has no target."""
    _, pointing = pair
    synth = generate_video(3, config=WorldConfig(min_frames=20, max_frames=22))
    video = open_video(synth.frames, fps=synth.fps)
    pipe = MomentSeg(pointing, device="cpu")
    texts = [e.text for e in synth.expressions[:2]]
    kf = video.get_frames([0, 5], size=(64, 64))
    ctx = pipe.context_frames(video)
    with torch.no_grad():
        pointing.point_prior_scale.copy_(torch.tensor([1.0, 0.0]))  # prior = 2σ(map) − 1: the map's order
    try:
        plain = pointing.seg_prompts(kf, texts, ctx)
        base = pipe.segment(video, texts, keyframes=2)
        tops = torch.atanh(plain.priors.flatten(1).amax(1).clamp(-0.999999, 0.999999)) * 2  # each map's maximum
        assert plain.present is None and len(set(tops.tolist())) == 2
        pointing.config.point_presence_threshold = float(tops.mean())  # between the two queries' maxima
        gated = pointing.seg_prompts(kf, texts, ctx)
        assert gated.present.tolist() == (tops >= tops.mean()).tolist()
        assert torch.equal(gated.priors, plain.priors) and torch.equal(gated.embeddings, plain.embeddings)
        pointing.config.point_presence_threshold = float(tops.max()) + 1.0  # no map reaches it: no target at all
        seen = []
        result = pipe.segment(video, texts, keyframes=2, out=tmp_path / "out",
                              progress=lambda label, done, total: seen.append((label, done, total)))
        for r in result.expressions:
            assert not r.present and not r.masks.to_array().any() and not r.object_probs.any()
        assert ("segment 1", len(video), len(video)) in seen
        saved = json.loads((tmp_path / "out" / "result.json").read_text())
        assert [e["present"] for e in saved["expressions"]] == [False, False]
        assert all(a == 0 for e in saved["expressions"] for a in e["mask_area"])
        pointing.config.point_presence_threshold = float(tops.min()) - 1.0  # every map reaches it: as without
        kept = pipe.segment(video, texts, keyframes=2)
        for a, b in zip(kept.expressions, base.expressions, strict=True):
            assert a.present and np.array_equal(a.masks.to_array(), b.masks.to_array())
    finally:
        pointing.config.point_presence_threshold = None
        with torch.no_grad():
            pointing.point_prior_scale.zero_()


def test_the_presence_threshold_and_loss_of_a_train_config_need_the_pointing_head_and_task(pair, tmp_path):
    from momentseg.train.loop import _initial_model

    plain, _ = pair
    plain.save_pretrained(tmp_path / "base")
    data = {"sources": [{"type": "synthetic", "task": "refvos"}]}
    model_keys = {"pretrained": str(tmp_path / "base"), "presence_threshold": 1.5}
    with pytest.raises(InputError, match="'model.presence_threshold'"):
        config_from_dict({"out": str(tmp_path / "run"), "data": data, "model": model_keys})
    with pytest.raises(InputError, match="'loss.presence'"):
        config_from_dict({"out": str(tmp_path / "run"), "data": data, "loss": {"presence": 1.0},
                          "model": model_keys | {"pointing_head": True}})
    model = _initial_model(config_from_dict({"out": str(tmp_path / "run"), "data": data,
                                             "model": model_keys | {"pointing_head": True}}))
    assert model.config.point_presence_threshold == 1.5
    model.save_pretrained(tmp_path / "gated")
    assert MomentSegModel.from_pretrained(tmp_path / "gated").config.point_presence_threshold == 1.5
    assert MomentSegModel.from_pretrained(tmp_path / "base").config.point_presence_threshold is None


def test_a_presence_head_starts_as_the_pointing_map_and_alone_says_whether_a_target_shows(pair, tmp_path):
    """MomentSegConfig.seg_presence_head: a copy of the pointing head whose map's maximum is the presence logit;
    the prior stays the pointing head's, and the presence loss reaches only the copy."""
    plain, pointing = pair
    with pytest.raises(ValueError, match="no pointing head"):
        copy.deepcopy(plain).add_presence_head()
    model = copy.deepcopy(pointing)
    model.add_presence_head()
    with pytest.raises(ValueError, match="already has a presence head"):
        model.add_presence_head()
    synth = generate_video(3, config=WorldConfig(min_frames=20, max_frames=22))
    video = open_video(synth.frames, fps=synth.fps)
    kf, ctx = video.get_frames([0, 5], size=(64, 64)), MomentSeg(pointing, device="cpu").context_frames(video)
    texts = [e.text for e in synth.expressions[:2]]
    base, fresh = pointing.seg_prompts(kf, texts, ctx), model.seg_prompts(kf, texts, ctx)
    assert torch.allclose(fresh.presence, base.presence, atol=1e-5) and torch.equal(fresh.priors, base.priors)  # a copy
    with torch.no_grad():  # a presence head whose map is 0 everywhere: presence logit 0, the prior unchanged
        model.presence_head.key_out.weight.zero_()
        model.presence_head.key_out.bias.zero_()
    model.config.point_presence_threshold = 0.5
    gated = model.seg_prompts(kf, texts, ctx)
    assert gated.presence.tolist() == [0.0, 0.0] and gated.present.tolist() == [False, False]
    assert torch.equal(gated.priors, base.priors) and torch.equal(gated.embeddings, base.embeddings)
    model.save_pretrained(tmp_path / "m")
    loaded = MomentSegModel.from_pretrained(tmp_path / "m")
    assert loaded.config.seg_presence_head and loaded.config.point_presence_threshold == 0.5
    assert all(torch.equal(v, model.presence_head.state_dict()[k]) for k, v in loaded.presence_head.state_dict().items())

    model = copy.deepcopy(pointing)
    model.add_presence_head()
    samples = _samples()
    samples[1] = dataclasses.replace(samples[1], context_labels=np.where(samples[1].context_labels > 0, 0,
                                                                         samples[1].context_labels))
    with torch.no_grad():
        alone = pointing.forward_point(samples)
    out = model.forward_point(samples)
    assert float(alone.presence_point_bce) == 0.0  # no presence head: no such term
    for got, want in ((out.point_bce, alone.point_bce), (out.presence_point_bce, alone.point_bce),
                      (out.presence_bce, alone.presence_bce)):
        assert torch.allclose(got, want, atol=1e-6)  # the copy's map is the pointing map
    weights = LossConfig(presence=2.0).by_component()
    assert torch.allclose(out.weighted(weights), out.point_bce + out.presence_point_bce + 2.0 * out.presence_bce)
    out.presence_bce.backward()
    assert all(p.grad is None for p in model.pointing_head.parameters())  # the presence loss leaves the map alone
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.presence_head.parameters())


def test_a_train_config_gives_the_presence_head_to_a_model_with_a_pointing_head(pair, tmp_path):
    from momentseg.train.loop import _initial_model

    _, pointing = pair
    pointing.save_pretrained(tmp_path / "base")
    data = {"sources": [{"type": "synthetic", "task": "point"}]}
    model_keys = {"pretrained": str(tmp_path / "base"), "presence_head": True}
    with pytest.raises(InputError, match="'model.presence_head'"):
        config_from_dict({"out": str(tmp_path / "run"), "model": model_keys,
                          "data": {"sources": [{"type": "synthetic", "task": "refvos"}]}})
    model = _initial_model(config_from_dict({"out": str(tmp_path / "run"), "data": data,
                                             "model": model_keys | {"pointing_head": True}}))
    assert model.config.seg_presence_head
    head = model.pointing_head.state_dict()
    assert all(torch.equal(v, head[k]) for k, v in model.presence_head.state_dict().items())


def _prompts_before_and_after(pointing, change):
    """seg_prompts of two texts of a synthetic video from a copy of ``pointing`` with a prior that shows its map (a
    fresh head's gain is 0), from that copy after ``change(model)``, and the changed copy."""
    base = copy.deepcopy(pointing)
    with torch.no_grad():
        base.point_prior_scale.copy_(torch.tensor([4.0, 0.5]))
    model = copy.deepcopy(base)
    change(model)
    synth = generate_video(3, config=WorldConfig(min_frames=20, max_frames=22))
    video = open_video(synth.frames, fps=synth.fps)
    kf, ctx = video.get_frames([0, 5], size=(64, 64)), MomentSeg(pointing, device="cpu").context_frames(video)
    texts = [e.text for e in synth.expressions[:2]]
    return base.seg_prompts(kf, texts, ctx), model.seg_prompts(kf, texts, ctx), model


def test_a_deepened_pointing_head_keeps_every_map_until_its_new_layers_train(pair, tmp_path):
    """PointingHead.deepen / MomentSegModel.deepen_pointing_head (MomentSegConfig.seg_pointing_layers): new layers
    on top start as the identity, so the maps are the same; they get gradients; the presence head keeps its own
    depth; both depths survive save and load."""
    head = PointingHead(32)
    grid, video, queries = (2, 2, 3), torch.randn(12, 32), torch.randn(3, 32)
    before = head(video, grid, queries)
    head.deepen(4)
    assert head.layers == 4
    after = head(video, grid, queries)
    assert torch.allclose(after, before, atol=1e-5)
    after.sum().backward()
    top = head.mixer.layers[3]
    assert top.linear2.weight.grad.abs().sum() > 0 and top.self_attn.out_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="cannot shrink"):
        head.deepen(3)

    plain, pointing = pair
    with pytest.raises(ValueError, match="no pointing head"):
        copy.deepcopy(plain).deepen_pointing_head(3)
    want, deep, _ = _prompts_before_and_after(pointing, lambda m: m.deepen_pointing_head(3))
    assert want.priors.abs().amax() > 0.1 and torch.allclose(deep.priors, want.priors, atol=1e-4)
    assert torch.allclose(deep.presence, want.presence, atol=1e-5) and torch.equal(deep.embeddings, want.embeddings)
    model = copy.deepcopy(pointing)
    model.add_presence_head()
    model.deepen_pointing_head(3)
    assert (model.config.seg_pointing_layers, model.config.seg_presence_layers) == (3, 2)
    assert (model.pointing_head.layers, model.presence_head.layers) == (3, 2)
    model.save_pretrained(tmp_path / "deep")
    loaded = MomentSegModel.from_pretrained(tmp_path / "deep")
    assert (loaded.pointing_head.layers, loaded.presence_head.layers) == (3, 2)
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    copy_of_deep = copy.deepcopy(model)  # a presence head copied from a deepened head has its depth
    del copy_of_deep.presence_head
    copy_of_deep.config.seg_presence_head = False
    copy_of_deep.add_presence_head()
    assert copy_of_deep.config.seg_presence_layers == 3


def test_a_train_config_deepens_the_pointing_head_and_never_shrinks_it(pair, tmp_path):
    from momentseg.train.loop import _initial_model

    _, pointing = pair
    pointing.save_pretrained(tmp_path / "base")
    data = {"sources": [{"type": "synthetic", "task": "point"}]}

    def build(**model_keys):
        return _initial_model(config_from_dict({"out": str(tmp_path / "run"), "data": data,
                                                "model": {"pretrained": str(tmp_path / "base")} | model_keys}))

    with pytest.raises(InputError, match="'model.pointing_layers'"):
        config_from_dict({"out": str(tmp_path / "run"), "model": {"preset": "tiny", "pointing_layers": 3},
                          "data": {"sources": [{"type": "synthetic", "task": "refvos"}]}})
    with pytest.raises(InputError, match="at least 1"):
        build(pointing_head=True, pointing_layers=0)
    with pytest.raises(InputError, match="fewer than the 2 layers"):
        build(pointing_head=True, pointing_layers=1)
    model = build(pointing_head=True, pointing_layers=3)
    assert model.config.seg_pointing_layers == 3 and model.pointing_head.layers == 3
    assert build(pointing_head=True, pointing_layers=2).pointing_head.layers == 2


def test_a_refined_pointing_head_gives_each_token_s_by_s_sub_cells(pair, tmp_path):
    """PointingHead.refine / MomentSegModel.refine_pointing_head (MomentSegConfig.seg_pointing_subgrid): the map
    is s times as fine per side, sub-cell (i, j) of token (r, c) at (r·s + i, c·s + j) and read from key block
    i·s + j; each sub-cell starts as its token, so the priors are the old ones repeated; the presence head keeps
    one logit per token; the subgrid survives save and load."""
    head = PointingHead(32)
    grid, video, queries = (2, 2, 3), torch.randn(12, 32), torch.randn(3, 32)
    before = head(video, grid, queries)
    head.refine(2)
    after = head(video, grid, queries)
    assert after.shape == (3, 2, 4, 6)
    assert torch.allclose(after, before.repeat_interleave(2, 2).repeat_interleave(2, 3), atol=1e-5)
    with torch.no_grad():  # only sub-cell (0, 1)'s key block keeps its weights: the others' logits are 0
        w = head.key_out.weight.view(4, -1, head.key_out.in_features)
        b = head.key_out.bias.view(4, -1)
        w[[0, 2, 3]] = 0
        b[[0, 2, 3]] = 0
    only = head(video, grid, queries)
    assert torch.allclose(only[:, :, 0::2, 1::2], before, atol=1e-5)
    assert only[:, :, 1::2].abs().amax() == 0 and only[:, :, :, 0::2].abs().amax() == 0
    with pytest.raises(ValueError, match="only a head of subgrid 1"):
        head.refine(3)
    with pytest.raises(ValueError, match="at least 1"):
        PointingHead(32, subgrid=0)

    plain, pointing = pair
    with pytest.raises(ValueError, match="no pointing head"):
        copy.deepcopy(plain).refine_pointing_head(2)
    with_presence = copy.deepcopy(pointing)
    with_presence.add_presence_head()
    want, fine, model = _prompts_before_and_after(with_presence, lambda m: m.refine_pointing_head(2))
    assert fine.priors.shape[-2:] == (2 * want.priors.shape[-2], 2 * want.priors.shape[-1])
    assert want.priors.abs().amax() > 0.1
    assert torch.allclose(fine.priors, want.priors.repeat_interleave(2, -2).repeat_interleave(2, -1), atol=1e-4)
    assert torch.allclose(fine.presence, want.presence, atol=1e-5) and torch.equal(fine.embeddings, want.embeddings)
    model.save_pretrained(tmp_path / "fine")
    loaded = MomentSegModel.from_pretrained(tmp_path / "fine")
    assert loaded.config.seg_pointing_subgrid == 2 and loaded.pointing_head.subgrid == 2
    assert loaded.presence_head.subgrid == 1
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    no_presence = copy.deepcopy(pointing)
    no_presence.refine_pointing_head(2)
    with pytest.raises(ValueError, match="before refining"):
        no_presence.add_presence_head()


def test_the_pointing_loss_reads_the_target_at_the_map_s_own_grid(pair):
    """_point_loss pools the context labels to the map's grid, so a map of sub-cells is judged per sub-cell: one
    that marks the target's sub-cells scores better than its token map repeated over them."""
    _, pointing = pair
    labels = np.full((4, 40, 60), -1, np.int8)  # 2 temporal patches of a 2 × 3 token grid, 20 pixels per token
    labels[:, 0:10, 0:10] = 1  # the target: the top-left sub-cell of token (0, 0)
    labels[:, 10:20, 0:10] = 0  # another object in the token's lower-left sub-cell
    coarse = torch.full((2, 2, 3), -4.0)
    coarse[:, 0, 0] = 0.0  # the token holds half target, half not
    fine = torch.full((2, 4, 6), -4.0)
    fine[:, 0, 0] = 4.0
    repeated = coarse.repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert pointing._point_loss([(fine, labels)]) < pointing._point_loss([(repeated, labels)])
    sure = coarse.clone()
    sure[:, 0, 0] = 4.0  # on the token grid the token is half target: logit 0 fits it better than a sure one
    assert pointing._point_loss([(coarse, labels)]) < pointing._point_loss([(sure, labels)])


def test_a_train_config_refines_the_pointing_map_once(pair, tmp_path):
    from momentseg.train.loop import _initial_model

    _, pointing = pair
    pointing.save_pretrained(tmp_path / "base")
    data = {"sources": [{"type": "synthetic", "task": "point"}]}

    def build(base="base", **model_keys):
        return _initial_model(config_from_dict({"out": str(tmp_path / "run"), "data": data,
                                                "model": {"pretrained": str(tmp_path / base)} | model_keys}))

    with pytest.raises(InputError, match="'model.pointing_subgrid'"):
        config_from_dict({"out": str(tmp_path / "run"), "model": {"preset": "tiny", "pointing_subgrid": 2},
                          "data": {"sources": [{"type": "synthetic", "task": "refvos"}]}})
    with pytest.raises(InputError, match="at least 1"):
        build(pointing_head=True, pointing_subgrid=0)
    model = build(pointing_head=True, presence_head=True, pointing_subgrid=2)
    assert model.config.seg_pointing_subgrid == 2 and model.pointing_head.subgrid == 2
    assert model.presence_head.subgrid == 1
    model.save_pretrained(tmp_path / "fine")
    assert build("fine", pointing_head=True, pointing_subgrid=2).pointing_head.subgrid == 2  # already so: kept
    with pytest.raises(InputError, match="already has subgrid 2"):
        build("fine", pointing_head=True, pointing_subgrid=3)
    with pytest.raises(InputError, match="'model.pointing_patches'"):
        build(pointing_head=True, pointing_subgrid=2, pointing_patches=True)  # no tower of its own
    with pytest.raises(InputError, match="model.pointing_patches: .*pointing_subgrid 2"):
        build(pointing_head=True, pointing_vision=True, pointing_patches=True)
    model = build("fine", pointing_head=True, pointing_vision=True, pointing_patches=True)
    assert model.config.seg_pointing_patches and not model.pointing_head.patch_in[1].weight.any()


def test_synthetic_refvos_samples_carry_the_context_patch_and_labels():
    shape = SampleShape(tsg_side=56, context_side=56, keyframe_side=64, tsg_max_frames=8, tsg_fps=5.0,
                        context_frames=8, keyframes=3, keyframe_window=4)
    src = SyntheticSource("refvos", world=WorldConfig(min_frames=20, max_frames=22))
    rng = np.random.default_rng(0)
    seen_target = False
    for item in range(6):
        s = src.sample(item, rng, shape)
        video = src.video(item)
        ctx = uniform_frames(video.num_frames, shape.context_frames)
        assert s.context_labels.shape == s.context.shape[:3]
        assert set(np.unique(s.context_labels)) <= {-1, 0, 1}
        assert s.key_patch.shape == (len(s.keyframes),) and s.key_patch.max() < len(ctx) // 2
        exp = next(e for e in video.expressions if e.text == s.query)
        target = video.expression_masks(exp)[ctx]
        assert (s.context_labels == 1).any() == target.any()
        seen_target |= bool(target.any())
        objects = (s.context_labels >= 0).mean()
        assert 0 < objects < 0.5  # objects, not the whole frame
    assert seen_target


def test_a_point_source_can_draw_from_every_expression_of_the_worlds_language(tmp_path):
    """``expressions: candidates`` (round 23): a point sample's text comes from ``all_expressions`` of its video
    (more than the video's own, no-target ones included), with that expression's labels; refvos and point only."""
    from momentseg.data.synthetic import all_expressions

    shape = SampleShape(tsg_side=56, context_side=56, keyframe_side=64, tsg_max_frames=8, tsg_fps=5.0,
                        context_frames=8, keyframes=3, keyframe_window=4)
    src = SyntheticSource("point", world=WorldConfig(min_frames=20, max_frames=22), expressions="candidates")
    outside, absent = 0, 0
    for item in range(12):
        s = src.sample(item, np.random.default_rng(item), shape)
        video = src.video(item)
        # the sample's rng drew the pool first: the same draw gives the same pool
        pool = {e.text: e for e in all_expressions(video, np.random.default_rng(item))}
        exp = pool[s.query]
        outside += s.query not in {e.text for e in video.expressions}
        absent += not exp.obj_ids
        ctx = uniform_frames(video.num_frames, shape.context_frames)
        assert (s.context_labels == 1).any() == video.expression_masks(exp)[ctx].any()
    assert outside > 0 and absent > 0
    data = {"sources": [{"type": "synthetic", "task": "point", "expressions": "candidates"}]}
    cfg = config_from_dict({"out": str(tmp_path / "run"), "data": data, "model": {"preset": "tiny", "pointing_head": True}})
    assert cfg.data.sources[0].expressions == "candidates"
    for source, match in (({"type": "synthetic", "task": "tsg", "expressions": "candidates"}, "needs type: synthetic"),
                          ({"type": "synthetic", "task": "point", "expressions": "all"}, "must be one of video")):
        with pytest.raises(InputError, match=match):
            config_from_dict({"out": str(tmp_path / "run"), "data": {"sources": [source]},
                              "model": {"preset": "tiny", "pointing_head": True}})


def test_the_head_mixes_tokens_across_time_and_checks_its_grid():
    torch.manual_seed(0)
    head = PointingHead(16).eval()
    video, queries = torch.randn(2 * 3 * 4, 16), torch.randn(3, 16)
    with torch.no_grad():
        maps = head(video, (2, 3, 4), queries)
        later = video.clone()
        # change only the second temporal patch's tokens (not by a constant: the head's LayerNorm removes that)
        later[12:] += torch.randn(12, 16)
        moved = head(later, (2, 3, 4), queries)
    assert maps.shape == (3, 2, 3, 4) and not torch.allclose(maps[0], maps[1])
    # the first patch's map reads the second patch's tokens (the language model's attention is causal; this is not)
    assert not torch.allclose(maps[:, 0], moved[:, 0])
    with pytest.raises(ValueError, match="do not fill a 2×3×3 grid"):
        head(video, (2, 3, 3), queries)
    pos = grid_positions(2, 3, 4)
    assert pos.shape == (24, 24) and len(torch.unique(pos, dim=0)) == 24  # every token its own position


def test_forward_point_is_the_refvos_pointing_loss_without_sam2(pair):
    plain, pointing = pair
    samples = _samples()
    with torch.no_grad():
        alone, joint = pointing.forward_point(samples), pointing.forward_refvos(samples)
    assert torch.allclose(alone.point_bce, joint.point_bce, atol=1e-6) and float(alone.point_bce) > 0
    with pytest.raises(ValueError, match="no pointing head"):
        plain.forward_point(samples)
    with pytest.raises(ValueError, match="context_labels"):
        pointing.forward_point(_samples(with_labels=False))


def test_the_presence_loss_scores_each_maps_maximum_against_whether_the_target_shows():
    maps = [torch.tensor([[[-3.0, 2.0]]]), torch.tensor([[[-1.0, -4.0]]]), torch.tensor([[[0.5, -2.0]]])]
    shows, absent = np.array([[[1, 0]]]), np.array([[[0, -1]]])
    loss = MomentSegModel._presence_loss([(maps[0], shows), (maps[1], absent), (maps[2], absent)])
    # positives: BCE(2, 1); negatives: the mean of BCE(-1, 0) and BCE(0.5, 0); balanced: the mean of the two
    pos = -torch.nn.functional.logsigmoid(torch.tensor(2.0))
    neg = -torch.nn.functional.logsigmoid(-torch.tensor([-1.0, 0.5])).mean()
    assert torch.allclose(loss, 0.5 * (pos + neg))
    grad = maps[2].clone().requires_grad_(True)
    MomentSegModel._presence_loss([(maps[0], shows), (grad, absent)]).backward()
    assert grad.grad.flatten().tolist()[1] == 0.0 and grad.grad.flatten()[0] > 0  # only the maximum moves, down


def test_forward_point_gives_the_presence_loss_that_its_weight_adds(pair):
    _, pointing = pair
    samples = _samples()
    samples[1] = dataclasses.replace(samples[1], context_labels=np.where(samples[1].context_labels > 0, 0,
                                                                         samples[1].context_labels))
    with torch.no_grad():
        out = pointing.forward_point(samples)
    assert float(out.presence_bce) > 0
    assert LossConfig().presence == 0.0  # off unless a config asks for it
    on = LossConfig(presence=2.0).by_component()
    assert torch.allclose(out.weighted(on), out.point_bce + 2.0 * out.presence_bce)


def test_the_point_stage_trains_the_head_alone_on_a_frozen_model(pair, tmp_path):
    plain, _ = pair
    plain.save_pretrained(tmp_path / "base")
    frozen = ["qwen", "sam2", "find_head", "seg_head", "query_bag", "point_prior_scale"]

    def cfg(**model):
        return config_from_dict({
            "seed": 0, "out": str(tmp_path / "run"),
            "model": {"pretrained": str(tmp_path / "base"), "frozen": frozen} | model,
            "data": {"sources": [{"type": "synthetic", "task": "point"}], "context_frames": 8, "keyframes": 2},
            "optim": {"lr": 1e-2},
            "run": {"steps": 2, "batch_size": 2, "grad_accum": 1, "checkpoint_every": 1, "progress": False}})

    with pytest.raises(InputError, match="model.pointing_head"):
        train(cfg())
    run = train(cfg(pointing_head=True, point_prior=[3.0, -0.5]))
    assert [r["point_samples"] for r in run.history] == [2, 2] and all(r["point/point_bce"] > 0 for r in run.history)
    trained = MomentSegModel.from_pretrained(run.final)
    assert trained.config.seg_pointing and trained.point_prior_scale.tolist() == [3.0, -0.5]
    before = plain.state_dict()
    after = trained.state_dict()
    assert [k for k, v in before.items() if not torch.equal(v, after[k])] == []  # everything else as it was
    fresh = MomentSegModel.from_pretrained(tmp_path / "base")
    torch.manual_seed(0)
    fresh.add_pointing_head()
    start = fresh.pointing_head.state_dict()
    moved = [k for k, v in trained.pointing_head.state_dict().items() if not torch.equal(v, start[k])]
    assert moved  # the head learned


def test_the_pointing_config_trains_only_the_head_on_round_11(monkeypatch):
    """configs/tiny-pointing.yaml: the committed round-11 model, every weight frozen but the fresh pointing head,
    the prior's gain and bias as configured."""
    from pathlib import Path

    from momentseg.train.config import load_config, validate
    from momentseg.train.loop import _initial_model

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cfg = load_config(root / "configs" / "tiny-pointing.yaml")
    validate(cfg)
    model = _initial_model(cfg)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"pointing_head"}
    assert model.point_prior_scale.tolist() == cfg.model.point_prior
    base = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-synthetic-r11").state_dict()
    weights = model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in base.items())
    # round 19 (the shipped model but for SAM2's memory path, test_pretrain_stages.py) descends from this stage:
    # round 11's weights, a trained head, the configured prior
    shipped = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-presence-r19")
    assert shipped.config.seg_pointing and shipped.point_prior_scale.tolist() == cfg.model.point_prior
    shipped_weights = shipped.state_dict()
    assert all(torch.equal(v, shipped_weights[k]) for k, v in base.items())
    head = model.pointing_head.state_dict()
    assert any(not torch.equal(v, head[k]) for k, v in shipped.pointing_head.state_dict().items())


def test_the_pointing_head_own_vision_tower_starts_as_no_change_learns_and_is_saved(pair, tmp_path):
    """``add_pointing_vision``: a copy of the language model's vision tower whose tokens enter the pointing head
    through a zero projection — the same maps at first; then it trains, while the [SEG] embeddings stay."""
    plain, pointing = pair
    with pytest.raises(ValueError, match="no pointing head"):
        tiny_model().add_pointing_vision()
    model = tiny_model()
    model.add_pointing_head()
    model.load_state_dict(pointing.state_dict())
    with torch.no_grad():
        model.point_prior_scale.copy_(torch.tensor([4.0, 0.0]))
    kf, ctx, queries = random_video(3, 64, 64, seed=6), random_video(6, seed=7), ["the red ball", "a blue cube"]
    samples = _samples()
    with torch.no_grad():
        before, loss = model.seg_prompts(kf, queries, ctx), model.forward_point(samples).point_bce
    model.add_pointing_vision()
    with pytest.raises(ValueError, match="already"):
        model.add_pointing_vision()
    visual = model.qwen.model.visual.state_dict()
    assert all(torch.equal(v, model.pointing_visual.state_dict()[k]) for k, v in visual.items())
    with torch.no_grad():
        after = model.seg_prompts(kf, queries, ctx)
        assert torch.equal(before.priors, after.priors) and torch.equal(before.embeddings, after.embeddings)
        assert torch.allclose(model.forward_point(samples).point_bce, loss)
        model.pointing_head.vision_in[1].weight.normal_(0, 0.5)  # as after some training: the tower now counts
        moved = model.seg_prompts(kf, queries, ctx)
    assert not torch.allclose(moved.priors, before.priors) and torch.equal(moved.embeddings, before.embeddings)
    model.zero_grad()
    model.forward_point(samples).point_bce.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert float(grads["pointing_visual.patch_embed.proj.weight"].abs().sum()) > 0
    assert float(grads["pointing_head.vision_in.1.weight"].abs().sum()) > 0
    own = {p.data_ptr() for p in model.pointing_visual.parameters()}
    assert not own & {p.data_ptr() for p in model.qwen.parameters()}  # a copy: training it leaves the LM's tower
    model.zero_grad()
    model.save_pretrained(tmp_path / "m")
    loaded = MomentSegModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.seg_pointing_vision
    with torch.no_grad():
        assert torch.allclose(loaded.seg_prompts(kf, queries, ctx).priors, moved.priors, atol=1e-5)


def test_the_pointing_head_s_patches_start_as_no_change_and_reach_their_own_sub_cell(tmp_path):
    """``add_pointing_patches`` (MomentSegConfig.seg_pointing_patches): each sub-cell's key adds its own patch of the
    head's tower before the merger, through a zero projection (the same maps at first). The patches come back in
    token order, each token's in its sub-cells' order: a frame changed in one 14-pixel patch changes that patch's
    features most, and once the projection counts, the map's cell at that sub-cell most."""
    model = tiny_model()
    model.add_pointing_head()
    with pytest.raises(ValueError, match="own vision tower"):
        model.add_pointing_patches()
    model.add_pointing_vision()
    with pytest.raises(ValueError, match="pointing_subgrid 2"):
        model.add_pointing_patches()
    model.refine_pointing_head(2)
    with torch.no_grad():
        model.point_prior_scale.copy_(torch.tensor([4.0, 0.0]))
    kf, queries = random_video(3, 64, 64, seed=6), ["the red ball"]
    ctx = np.full((4, 56, 84, 3), 90, np.uint8)  # 2 temporal patches of 2 × 3 tokens, 4 × 6 patches
    changed = ctx.copy()
    # patch (row 2, column 1): token (1, 0), sub-cell (0, 1), temporal patch 0; the tower's window order moves
    # that token (tokens 0, 1, 3, 4, 2, 5 of this grid's first temporal patch)
    changed[:2, 28:42, 14:28] = 250
    with torch.no_grad():
        before = model.seg_prompts(kf, queries, ctx)
        model.add_pointing_patches()
        with pytest.raises(ValueError, match="already"):
            model.add_pointing_patches()
        assert torch.allclose(model.seg_prompts(kf, queries, ctx).priors, before.priors, atol=1e-5)
        videos = [model.processor.refvos([kf], queries, [c]).videos for c in (ctx, changed)]
        (_, a), = model._pointing_vision(videos[0])
        (_, b), = model._pointing_vision(videos[1])
        assert a.shape[:2] == (12, 4)
        moved = (b - a).norm(dim=-1).reshape(2, 2, 3, 2, 2).permute(0, 1, 3, 2, 4).reshape(2, 4, 6)
        assert divmod(int(moved[0].argmax()), 6) == (2, 1)
        model.pointing_head.patch_in[1].weight.normal_(0, 0.5)
        maps = [model.seg_prompts(kf, queries, c).priors[0] for c in (ctx, changed)]
    cell = (maps[1] - maps[0]).abs()[0]
    assert cell.shape == (4, 6) and divmod(int(cell.argmax()), 6) == (2, 1)
    model.save_pretrained(tmp_path / "m")
    loaded = MomentSegModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.seg_pointing_patches
    with torch.no_grad():
        assert torch.allclose(loaded.seg_prompts(kf, queries, changed).priors[0], maps[1], atol=1e-4)


def test_the_pointing_vision_tower_can_come_from_another_checkpoint(pair, tmp_path):
    """``add_pointing_vision(vision_from)``: the head's tower takes a saved model's tower (the stage-1d
    continuation's), not the language model's, which stays; a tower of another config is refused."""
    source = tiny_model()
    with torch.no_grad():
        for p in source.qwen.model.visual.parameters():
            p.add_(torch.randn_like(p))
    source.save_pretrained(tmp_path / "tower")
    model = tiny_model()
    model.add_pointing_head()
    lm_tower = {k: v.clone() for k, v in model.qwen.model.visual.state_dict().items()}
    model.add_pointing_vision(tmp_path / "tower")
    own = model.pointing_visual.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in source.qwen.model.visual.state_dict().items())
    assert all(torch.equal(v, model.qwen.model.visual.state_dict()[k]) for k, v in lm_tower.items())
    assert any(not torch.equal(v, own[k]) for k, v in lm_tower.items())
    refused = tiny_model()
    refused.add_pointing_head()
    refused.config.qwen["vision_config"]["depth"] = 1
    with pytest.raises(ValueError, match="vision-tower config differs"):
        refused.add_pointing_vision(tmp_path / "tower")
    assert not refused.config.seg_pointing_vision


def test_the_head_takes_its_vision_tokens_exactly_when_it_has_a_vision_input():
    torch.manual_seed(0)
    video, queries, vision = torch.randn(24, 16), torch.randn(2, 16), torch.randn(24, 16)
    plain, seeing = PointingHead(16).eval(), PointingHead(16, vision=True).eval()
    seeing.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(plain(video, (2, 3, 4), queries), seeing(video, (2, 3, 4), queries, vision))
    with pytest.raises(ValueError, match="exactly when"):
        seeing(video, (2, 3, 4), queries)
    with pytest.raises(ValueError, match="exactly when"):
        plain(video, (2, 3, 4), queries, vision)
    with pytest.raises(ValueError, match="23 vision tokens for 24"):
        seeing(video, (2, 3, 4), queries, vision[:23])


def test_a_pointing_vision_tower_needs_the_pointing_head(tmp_path):
    data = {"sources": [{"type": "synthetic", "task": "refvos"}]}
    with pytest.raises(InputError, match="model.pointing_vision"):
        config_from_dict({"out": str(tmp_path / "run"), "model": {"preset": "tiny", "pointing_vision": True},
                          "data": data})
    with pytest.raises(InputError, match="model.pointing_vision_from"):
        config_from_dict({"out": str(tmp_path / "run"), "data": data,
                          "model": {"preset": "tiny", "pointing_head": True, "pointing_vision_from": "x"}})


def _head_stage(monkeypatch, config: str, head: str = "pointing_head"):
    """The repository root, the validated config ``configs/<config>`` and its initial model, whose only trainable
    weights are ``head``'s."""
    from pathlib import Path

    from momentseg.train.config import load_config, validate
    from momentseg.train.loop import _initial_model

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cfg = load_config(root / "configs" / config)
    validate(cfg)
    model = _initial_model(cfg)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {head}
    return root, cfg, model


def test_the_pointing_vision_config_trains_only_the_head_on_round_14_with_the_long_stage_1d_tower(monkeypatch):
    """configs/tiny-pointing-vision.yaml (round 17): the committed round-14 model as it is, its pointing head given
    the committed stage-1d continuation's tower (frozen) through a zero projection; only the head trains."""
    root, _, model = _head_stage(monkeypatch, "tiny-pointing-vision.yaml")
    base = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-moment-r14").state_dict()
    weights = model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in base.items())
    added = {k for k in weights if k not in base}
    assert {k.split(".")[0] for k in added} == {"pointing_visual", "pointing_head"}
    assert not model.pointing_head.vision_in[1].weight.any() and not model.pointing_head.vision_in[1].bias.any()
    tower = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-vision-long").qwen.model.visual.state_dict()
    own = model.pointing_visual.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in tower.items())
    lm_tower = model.qwen.model.visual.state_dict()
    assert any(not torch.equal(v, lm_tower[k]) for k, v in tower.items())
    # this stage's result (round 17, committed for the next stage): round 14's weights, the tower, a head that
    # learned to read it
    shipped = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-pointing-r17")
    assert shipped.config.seg_pointing_vision
    shipped_weights, shipped_tower = shipped.state_dict(), shipped.pointing_visual.state_dict()
    assert all(torch.equal(v, shipped_weights[k]) for k, v in base.items() if not k.startswith("pointing_head."))
    assert all(torch.equal(v, shipped_tower[k]) for k, v in tower.items())
    assert shipped.pointing_head.vision_in[1].weight.abs().sum() > 0


def test_the_long_pointing_config_trains_only_round_17s_head_on(monkeypatch):
    """configs/tiny-pointing-long.yaml (round 18): the committed round-17 model as it is (no head or tower
    re-added), the presence threshold set; only its pointing head trains, with the pointing and the presence
    loss."""
    root, cfg, model = _head_stage(monkeypatch, "tiny-pointing-long.yaml")
    base = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-pointing-r17").state_dict()
    weights = model.state_dict()
    assert weights.keys() == base.keys()
    assert all(torch.equal(v, weights[k]) for k, v in base.items())
    assert model.config.point_presence_threshold == cfg.model.presence_threshold == 1.0
    assert cfg.loss.presence > 0 and cfg.loss.point > 0


def test_the_presence_config_adds_a_copy_of_round_17s_head_and_the_shipped_model_is_its_result(monkeypatch):
    """configs/tiny-presence.yaml (round 19): the committed round-17 model as it is, plus a presence head that
    starts as a copy of its pointing head and is the only part that trains, with the pointing and the presence
    loss; the presence threshold set. Round 19's model (pretrained/tiny-presence-r19, committed as shipped) is that
    stage's result: round 17's weights and a trained presence head."""
    root, cfg, model = _head_stage(monkeypatch, "tiny-presence.yaml", head="presence_head")
    base = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-pointing-r17").state_dict()
    weights = model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in base.items())
    added = [k for k in weights if k not in base]
    assert added and all(k.startswith("presence_head.") for k in added)
    assert all(torch.equal(weights[k], weights["pointing_head." + k.removeprefix("presence_head.")]) for k in added)
    assert model.config.seg_presence_head and model.config.point_presence_threshold == cfg.model.presence_threshold
    assert cfg.loss.presence > 0 and cfg.loss.point > 0
    shipped_model = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-presence-r19")
    assert shipped_model.config.seg_presence_head
    assert shipped_model.config.point_presence_threshold == cfg.model.presence_threshold
    shipped = shipped_model.state_dict()
    assert shipped.keys() == weights.keys()
    assert all(torch.equal(v, shipped[k]) for k, v in base.items())  # the map is round 17's
    assert any(not torch.equal(weights[k], shipped[k]) for k in added)  # the presence head learned


def test_the_deep_pointing_config_grows_round_19s_head_and_trains_only_it(monkeypatch):
    """configs/tiny-pointing-deep.yaml (round 20a): the committed round-19 model (pretrained/tiny-presence-r19, a
    copy of the embedded files it shipped) with its pointing head grown to 4 layers; the old layers and every other
    weight as committed, the new layers the identity; only the pointing head trains."""
    root, cfg, model = _head_stage(monkeypatch, "tiny-pointing-deep.yaml")
    base = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-presence-r19").state_dict()
    weights = model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in base.items())
    added = [k for k in weights if k not in base]
    assert added and all(k.startswith(("pointing_head.mixer.layers.2.", "pointing_head.mixer.layers.3.")) for k in added)
    assert model.pointing_head.layers == cfg.model.pointing_layers == 4 and model.presence_head.layers == 2
    top = model.pointing_head.mixer.layers[3]
    assert not top.linear2.weight.any() and not top.self_attn.out_proj.weight.any()
    assert model.config.seg_presence_head and model.config.point_presence_threshold == 1.0


def test_the_ctx32_pointing_config_trains_round_19s_head_on_32_context_frames(monkeypatch):
    """configs/tiny-pointing-ctx32.yaml (round 20c): the committed round-19 model as it is; only its pointing head
    trains, and the data config's 32 context frames become the model's, so its output infers as it trained."""
    from momentseg.train.loop import build_stream

    root, cfg, model = _head_stage(monkeypatch, "tiny-pointing-ctx32.yaml")
    base = MomentSegModel.from_pretrained(root / "pretrained" / "tiny-presence-r19")
    weights = model.state_dict()
    assert weights.keys() == base.state_dict().keys()
    assert all(torch.equal(v, weights[k]) for k, v in base.state_dict().items())
    assert base.config.context_frames == 16 and cfg.data.context_frames == 32
    build_stream(cfg, model)
    assert model.config.context_frames == 32
