"""The trainer on a small stand-in model (a real module computing real TSG / RefVOS losses), fast on CPU."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from momentseg.errors import CheckpointError, InputError
from momentseg.io.atomic import MARKER
from momentseg.model.outputs import RefVOSOutput, TSGOutput
from momentseg.train import checkpoint as ckpt
from momentseg.train.config import LossConfig, config_from_dict
from momentseg.train.data import SampleStream
from momentseg.train.loop import lr_factor, train
from momentseg.train.params import apply_trainable, merge_lora
from momentseg.train.shapes import SampleShape

WEIGHTS = LossConfig().by_component()  # the training config's loss weights


# ----------------------------------------------------------------------------------- stand-in model + data
@dataclass
class Tsg:
    frames: np.ndarray  # (T, h, w, 3) uint8
    query: str
    positive: np.ndarray  # (T,) bool


@dataclass
class Ref:
    context: np.ndarray  # (Tc, h, w, 3) uint8
    keyframes: np.ndarray  # (K, H, W, 3) uint8
    query: str
    masks: np.ndarray  # (K, H, W) bool


class _Llm(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.embed = torch.nn.Embedding(32, d)
        self.q_proj = torch.nn.Linear(d, d)
        self.v_proj = torch.nn.Linear(d, d)
        self.lm_head = torch.nn.Linear(d, 32)

    def forward(self, query: str):
        ids = torch.tensor([ord(c) % 32 for c in query])
        h = self.embed(ids)
        h = h + torch.tanh(self.q_proj(h)) * self.v_proj(h)
        lm = torch.nn.functional.cross_entropy(self.lm_head(h[:-1]), ids[1:])
        return h.mean(0), lm


class StandIn(torch.nn.Module):
    """Query → bag-of-characters state; frames → mean colour features; [FIND]-style cosine BCE, per-pixel mask
    logits with BCE + Dice, next-character LM loss. Same sample fields as the real model."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.llm = _Llm(d)
        self.frame = torch.nn.Linear(3, d)
        self.find_head = torch.nn.Linear(d, d)
        self.pixel = torch.nn.Linear(3, d)
        self.mask_decoder = torch.nn.Linear(d, 1)
        self.dropout = torch.nn.Dropout(0.1)

    def _frames(self, frames):
        return torch.from_numpy(np.asarray(frames, dtype=np.float32) / 255.0)

    def forward_tsg(self, samples):
        find, lm = [], []
        for s in samples:
            q, lm_loss = self.llm(s.query)
            f = self.find_head(self.frame(self._frames(s.frames).mean((1, 2))))
            logit = torch.nn.functional.cosine_similarity(f, self.find_head(q)[None], dim=-1) / 0.07
            target = torch.from_numpy(s.positive).float()
            find.append(torch.nn.functional.binary_cross_entropy_with_logits(logit, target, pos_weight=torch.tensor(2.0)))
            lm.append(lm_loss)
        return TSGOutput(torch.stack(find).mean(), torch.stack(lm).mean(), torch.zeros(()))

    def forward_refvos(self, samples):
        bce, dice, obj, lm = [], [], [], []
        for s in samples:
            q, lm_loss = self.llm(s.query)
            ctx = self.frame(self._frames(s.context).mean((1, 2))).mean(0)
            px = self.dropout(torch.relu(self.pixel(self._frames(s.keyframes)))) * (q + ctx)
            logit = self.mask_decoder(px)[..., 0]
            target = torch.from_numpy(s.masks).float()
            bce.append(torch.nn.functional.binary_cross_entropy_with_logits(logit, target))
            p = logit.sigmoid().flatten(1)
            t = target.flatten(1)
            dice.append((1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean())
            score = logit.flatten(1).amax(1)
            obj.append(torch.nn.functional.binary_cross_entropy_with_logits(score, t.amax(1)))
            lm.append(lm_loss)
        out = {k: torch.stack(v).mean() for k, v in
               (("mask_bce", bce), ("mask_dice", dice), ("object_bce", obj), ("lm_loss", lm))}
        return RefVOSOutput(**out, point_bce=torch.zeros(()))

    def save_pretrained(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / "model.safetensors"))


class StandInSource:
    """``size`` items; item ``i`` is a little random video (from ``i``) with a bright square moving in it."""

    def __init__(self, task: str, size: int = 7):
        self.task, self.size = task, size

    def sample(self, item, rng, shape: SampleShape):
        g = np.random.default_rng(item)
        t = 6
        frames = g.integers(0, 60, (t, 8, 8, 3), dtype=np.uint8)
        masks = np.zeros((t, 8, 8), dtype=bool)
        start = int(g.integers(0, 3))
        for k in range(start, start + 3):
            masks[k, k : k + 3, 2:5] = True
            frames[k][masks[k]] = 220
        query = ["the bright square", "a moving block", "square on the left"][item % 3]
        if self.task == "tsg":
            return Tsg(frames=frames, query=query, positive=masks.any((1, 2)))
        keys = np.sort(rng.choice(t, 3, replace=False))
        return Ref(context=frames[::2], keyframes=frames[keys], query=query, masks=masks[keys])


SHAPE = SampleShape(tsg_side=8, context_side=8, keyframe_side=8)


def stream(seed=0, ratio=0.5):
    return SampleStream([StandInSource("tsg"), StandInSource("refvos", 5)], SHAPE, tsg_ratio=ratio, seed=seed)


def cfg(**run):
    raw = {
        "seed": 3,
        "model": {"preset": "tiny"},
        "data": {"sources": [{"type": "synthetic", "task": "tsg"}, {"type": "synthetic", "task": "refvos"}]},
        "optim": {"lr": 0.02, "warmup_ratio": 0.2},
        "run": {"steps": 6, "batch_size": 2, "grad_accum": 1, "checkpoint_every": 2, "keep_last": 2,
                "progress": False, **run},
    }
    return config_from_dict(raw)


def make_model(seed=3):
    torch.manual_seed(seed)
    return StandIn()


def losses(result):
    return np.array([r["loss"] for r in result.history])


# ----------------------------------------------------------------------------------- tests
def test_run_writes_metrics_checkpoints_and_final(tmp_path):
    result = train(cfg(), out=tmp_path, model=make_model(), stream=stream())
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]
    for r in lines:
        assert {"loss", "lr", "samples_per_s", "tsg/find_loss", "refvos/mask_bce", "refvos/mask_dice"} <= set(r)
        assert np.isfinite(r["loss"]) and r["tsg_samples"] + r["refvos_samples"] == 2
    # ratio 0.5 with batch 2 → one sample of each task per step
    assert all(r["tsg_samples"] == 1 for r in lines)
    # the weighted loss is the per-sample mean of Σ weight × component
    r = lines[0]
    tsg = 0.5 * r["tsg/find_loss"] + 1.0 * r["tsg/lm_loss"]
    ref = (2.0 * r["refvos/mask_bce"] + 0.5 * r["refvos/mask_dice"] + 1.0 * r["refvos/lm_loss"]
           + 1.0 * r["refvos/object_bce"])
    assert r["loss"] == pytest.approx((tsg + ref) / 2, rel=1e-5)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 6]  # every 2 steps, keep last 2
    final = load_file(str(result.final / "model.safetensors"))
    assert set(final) == set(StandIn().state_dict())
    assert lines[-1]["lr"] < lines[1]["lr"]  # cosine decay after warm-up


def test_resume_replays_the_unbroken_run(tmp_path):
    full = train(cfg(), out=tmp_path / "a", model=make_model(), stream=stream())
    first = train(cfg(steps=6, checkpoint_every=3), out=tmp_path / "b", model=make_model(), stream=stream())
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "b")] == [3, 6]
    # simulate a run that died after step 3: drop its last checkpoint, the final model and later log lines
    import shutil

    shutil.rmtree(ckpt.checkpoint_dir(tmp_path / "b", 6))
    shutil.rmtree(first.final)
    rest = train(cfg(), out=tmp_path / "b", resume=True, model=make_model(), stream=stream())
    assert [r["step"] for r in rest.history] == [4, 5, 6]
    np.testing.assert_allclose(losses(rest), losses(full)[3:], rtol=0, atol=1e-6)
    logged = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]
    a = load_file(str(full.final / "model.safetensors"))
    b = load_file(str(rest.final / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_existing_run_needs_resume_and_matching_batch(tmp_path):
    train(cfg(steps=2), out=tmp_path, model=make_model(), stream=stream())
    with pytest.raises(InputError, match="--resume"):
        train(cfg(steps=4), out=tmp_path, model=make_model(), stream=stream())
    with pytest.raises(InputError, match="global batch"):
        train(cfg(steps=4, batch_size=1), out=tmp_path, resume=True, model=make_model(), stream=stream())
    with pytest.raises(InputError, match="no checkpoint"):
        train(cfg(), out=tmp_path / "empty", resume=True, model=make_model(), stream=stream())


def test_accumulation_matches_a_bigger_batch(tmp_path):
    model_a, model_b = make_model(), make_model()
    model_a.dropout.p = model_b.dropout.p = 0.0  # randomness differs between the layouts; compare the math
    a = train(cfg(steps=3, batch_size=4, grad_accum=1), out=tmp_path / "a", model=model_a, stream=stream())
    b = train(cfg(steps=3, batch_size=2, grad_accum=2), out=tmp_path / "b", model=model_b, stream=stream())
    np.testing.assert_allclose(losses(a), losses(b), rtol=1e-5)
    for (na, pa), (_, pb) in zip(model_a.named_parameters(), model_b.named_parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=na)


def test_lora_trains_adapters_and_named_prefixes_then_merges(tmp_path):
    model = make_model()
    c = config_from_dict({
        **cfg().to_dict(),
        "model": {"preset": "tiny", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"],
                                                "under": ["llm"]},
                  "trainable": ["mask_decoder", "llm.embed"], "frozen": []},
    })
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(c, out=tmp_path, model=model, stream=stream())
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"mask_decoder.weight", "mask_decoder.bias", "llm.embed.weight"}  # LoRA merged away
    after = load_file(str(result.final / "model.safetensors"))
    assert set(after) == set(before)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # LoRA changes only the targets' weights (bias="none"); everything else not named stays frozen
    assert changed == {"mask_decoder.weight", "mask_decoder.bias", "llm.embed.weight", "llm.q_proj.weight",
                       "llm.v_proj.weight"}
    assert torch.equal(before["frame.weight"], after["frame.weight"])


def test_merge_lora_keeps_the_function():
    model = make_model()
    c = config_from_dict({**cfg().to_dict(), "model": {"preset": "tiny", "lora": {"r": 2, "alpha": 4, "dropout": 0.0,
                                                                            "target_modules": ["q_proj"], "under": ["llm"]}}})
    counts = apply_trainable(model, c.model)
    assert 0 < counts["trainable"] < counts["total"]
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # LoRA B starts at zero; make the adapter do something
    sample = stream().sample(1)
    before = model.forward_tsg([sample]).weighted(WEIGHTS)
    merge_lora(model)
    assert not any("lora" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(model.forward_tsg([sample]).weighted(WEIGHTS), before)


def test_bad_prefix_and_bad_lora_target_are_input_errors():
    c = config_from_dict({**cfg().to_dict(), "model": {"preset": "tiny", "frozen": ["vision_tower"]}})
    with pytest.raises(InputError, match="vision_tower"):
        apply_trainable(make_model(), c.model)
    c = config_from_dict({**cfg().to_dict(), "model": {"preset": "tiny", "lora": {"under": ["nothing"]}}})
    with pytest.raises(InputError, match="lora"):
        apply_trainable(make_model(), c.model)


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model.forward_tsg([stream().sample(1)]).weighted(WEIGHTS).backward()
    opt.step()
    folder = ckpt.save_checkpoint(tmp_path, 1, ckpt.snapshot(model, opt), {"seed": 0}, keep_last=1)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MARKER, "optimizer.safetensors", "state.json", "trainable.safetensors"])
    other = StandIn()
    opt2 = torch.optim.AdamW(other.parameters(), lr=0.5)
    state = ckpt.load_checkpoint(folder, other, opt2)
    assert state["step"] == 1 and opt2.param_groups[0]["lr"] == 0.1
    for (n, a), b in zip(model.named_parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b), n
        assert (a in opt.state) == (b in opt2.state), n  # refvos-only parameters got no gradient
        if a in opt.state:
            assert torch.equal(opt.state[a]["exp_avg"], opt2.state[b]["exp_avg"])
            assert torch.equal(opt.state[a]["step"], opt2.state[b]["step"])
    other.frame.requires_grad_(False)
    with pytest.raises(CheckpointError, match="trainable"):
        ckpt.load_checkpoint(folder, other, torch.optim.AdamW([p for p in other.parameters() if p.requires_grad]))


def test_lr_schedule():
    f = [lr_factor(s, 20, 0.1, 0.0) for s in range(20)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0) and f[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[1:], f[2:], strict=False))
    assert f[-1] == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(19, 20, 0.0, 0.1) == pytest.approx(0.1)
