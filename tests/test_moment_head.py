"""The [FIND] curve's moment head (``MomentSegConfig.find_moment_head``): a fresh head changes no curve, the
curve is the same through a shared video prefix and a padded pass, its training task (``moment``) and the
synthetic samples that train it, and the stage that trains it alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentseg.data.synthetic import WorldConfig
from momentseg.errors import InputError
from momentseg.model import MomentSegModel, TSGSample
from momentseg.train.config import LossConfig, config_from_dict
from momentseg.train.data import SyntheticSource
from momentseg.train.loop import train
from momentseg.train.shapes import SampleShape, moment_positives
from tiny_heads import model_pair, random_video

WEIGHTS = LossConfig().by_component()
QUERIES = ["the red ball", "a blue cube jumps", "big"]


@pytest.fixture(scope="module")
def pair():
    """A tiny model without and with a moment head, otherwise the same weights."""
    return model_pair("add_moment_head")


def _tsg_samples(frames):
    positive = np.zeros(len(frames), bool)
    positive[2:5] = True
    return [TSGSample(frames, q, positive if i < 2 else np.zeros(len(frames), bool)) for i, q in enumerate(QUERIES)]


def test_a_fresh_moment_head_changes_no_curve_and_trains(pair):
    plain, moment = pair
    frames = random_video(8)
    assert torch.equal(plain.find_logits_many(frames, QUERIES), moment.find_logits_many(frames, QUERIES))
    samples = _tsg_samples(frames)
    out = moment.forward_moment(samples)
    assert torch.allclose(out.find_loss, plain.forward_tsg(samples).find_loss, atol=1e-6)
    moment.zero_grad()
    out.weighted(WEIGHTS).backward()
    grads = {n: p.grad for n, p in moment.named_parameters() if p.grad is not None}
    assert float(grads["moment_head.query_out.weight"].abs().sum()) > 0
    moment.zero_grad()
    with pytest.raises(ValueError, match="already has a moment head"):
        moment.add_moment_head()


def test_a_trained_head_moves_the_curve_the_same_way_on_every_path(pair):
    plain, moment = pair
    start = {k: v.clone() for k, v in moment.moment_head.state_dict().items()}
    torch.manual_seed(1)
    with torch.no_grad():
        moment.moment_head.query_out.weight.normal_(std=0.5)
    try:
        frames = random_video(8, seed=3)
        many = moment.find_logits_many(frames, QUERIES)  # one video prefix, the queries' suffixes
        single = torch.stack([moment.find_logits(frames, q) for q in QUERIES])  # one padded pass each
        assert torch.allclose(many, single, atol=1e-4)
        assert (many - plain.find_logits_many(frames, QUERIES)).abs().max() > 0.1
        samples = _tsg_samples(frames)
        alone = moment.forward_moment(samples)  # the three share their frames: one prefix
        joint = moment.forward_tsg(samples)
        padded = moment.forward_tsg([samples[0], TSGSample(random_video(6, seed=4), "big", np.ones(6, bool))])
        assert torch.allclose(alone.find_loss, joint.find_loss, atol=1e-6)
        assert torch.allclose(alone.find_logits[0], many[0], atol=1e-4)
        assert torch.allclose(padded.find_logits[0], many[0], atol=1e-4)
        with pytest.raises(ValueError, match="no moment head"):
            plain.forward_moment(samples)
    finally:
        moment.moment_head.load_state_dict(start)


def test_moment_samples_take_every_expression_and_tsg_samples_only_those_with_a_moment():
    shape = SampleShape(tsg_side=56, context_side=56, keyframe_side=64, tsg_max_frames=8, tsg_fps=5.0,
                        context_frames=8, keyframes=3, keyframe_window=4)
    world = WorldConfig(min_frames=20, max_frames=22)
    rng = np.random.default_rng(0)
    moment, tsg = SyntheticSource("moment", world=world), SyntheticSource("tsg", world=world)
    none_seen = 0
    for item in range(12):
        s = moment.sample(item, rng, shape)
        exp = next(e for e in moment.video(item).expressions if e.text == s.query)
        times = np.linspace(0, 1, len(s.positive))  # only the count matters below
        assert s.positive.shape == (len(s.frames),) and len(times) == len(s.frames)
        if not exp.moments:
            none_seen += 1
            assert not s.positive.any()
        else:
            assert s.positive.any()
        t = tsg.sample(item, rng, shape)
        assert t.positive.any() and next(e for e in tsg.video(item).expressions if e.text == t.query).moments
    assert none_seen > 0  # the world has no-target expressions, and this task trains on them
    group = moment.sample(0, rng, SampleShape(**{**shape.__dict__, "tsg_queries": 3}))
    assert len(group) == 3 and all(g.frames is group[0].frames for g in group)
    assert moment_positives(np.arange(4.0), []).tolist() == [False] * 4


def test_the_moment_stage_trains_the_head_alone_on_a_frozen_model(pair, tmp_path):
    plain, _ = pair
    plain.save_pretrained(tmp_path / "base")
    frozen = ["qwen", "sam2", "find_head", "seg_head", "query_bag"]

    def cfg(**model):
        return config_from_dict({
            "seed": 0, "out": str(tmp_path / "run"),
            "model": {"pretrained": str(tmp_path / "base"), "frozen": frozen} | model,
            "data": {"sources": [{"type": "synthetic", "task": "moment"}], "tsg_max_frames": 8,
                     "tsg_queries_per_video": 2},
            "loss": {"find": 1.0},
            "optim": {"lr": 1e-2},
            "run": {"steps": 2, "batch_size": 2, "grad_accum": 1, "checkpoint_every": 1, "progress": False}})

    with pytest.raises(InputError, match="model.moment_head"):
        train(cfg())
    run = train(cfg(moment_head=True))
    assert [r["moment_samples"] for r in run.history] == [4, 4]
    assert all(r["moment/find_loss"] > 0 for r in run.history)
    # two samples per position: the logged loss is still the per-sample mean (find weight 1, one task)
    assert all(r["loss"] == pytest.approx(r["moment/find_loss"], rel=1e-5) for r in run.history)
    trained = MomentSegModel.from_pretrained(run.final)
    assert trained.config.find_moment_head
    after = trained.state_dict()
    assert [k for k, v in plain.state_dict().items() if not torch.equal(v, after[k])] == []  # the rest as it was
    assert trained.moment_head.query_out.weight.abs().sum() > 0  # the head learned (it starts at zero)


def test_the_moment_config_trains_only_the_head(monkeypatch):
    """configs/tiny-moment.yaml on its committed result (round 14): every weight frozen but the moment head's."""
    from pathlib import Path

    from momentseg.train.config import load_config, validate
    from momentseg.train.loop import _initial_model

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cfg = load_config(root / "configs" / "tiny-moment.yaml")
    validate(cfg)
    assert cfg.model.pretrained == "runs/tiny-pointing/final"  # the previous stage's output (round 13)
    cfg.model.pretrained = str(root / "pretrained" / "tiny-moment-r14")  # what CI has: round 13's weights in it
    model = _initial_model(cfg)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"moment_head"}
    # round 14 is this stage's result: a trained head (its query projection starts at zero)
    assert model.config.find_moment_head and model.moment_head.query_out.weight.abs().sum() > 0
