"""`momentseg train`: one-line errors, and a short real run of the tiny model on the synthetic world."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from momentseg.data.synthetic import caption_vocabulary
from momentseg.train.config import LossConfig
from momentseg.train.loop import JointLoss

TINY = """
seed: 1
model: {preset: tiny}
data:
  tsg_fps: 2.0
  tsg_max_frames: 8
  context_frames: 4
  keyframes: 2
  sources:
    - {type: synthetic, task: tsg}
    - {type: synthetic, task: refvos}
optim: {lr: 1.0e-3, warmup_ratio: 0.0}
run: {steps: 2, batch_size: 2, grad_accum: 1, checkpoint_every: 1, keep_last: 1}
"""


def momentseg(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "momentseg", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_bad_config_is_a_one_line_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(TINY.replace("keep_last: 1", "keep_last: 1, colour: red"))
    out = momentseg("train", str(cfg), "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {cfg}: unknown key 'run.colour' (allowed: batch_size, "
                                               "checkpoint_every, grad_accum, keep_last, log_every, precision, "
                                               "progress, steps)"]
    assert not (tmp_path / "run").exists()


def test_a_missing_weights_folder_is_a_one_line_error_before_the_run_folder(tmp_path):
    cfg = tmp_path / "stage.yaml"
    missing = tmp_path / "runs" / "previous-stage" / "final"
    cfg.write_text(TINY.replace("model: {preset: tiny}", f"model: {{pretrained: {missing}}}"))
    out = momentseg("train", str(cfg), "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {cfg}: model.pretrained: folder {missing} does not exist"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_tiny_model_trains_resumes_and_saves_a_loadable_model(tmp_path):
    from momentseg.model import MomentSegModel

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    out = momentseg("train", str(cfg), "--out", str(run), "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    again = momentseg("train", str(cfg), "--out", str(run), "--no-progress")
    assert again.returncode == 2 and "--resume" in again.stderr
    out = momentseg("train", str(cfg), "--out", str(run), "--resume", "--steps", "3", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert all(r["tsg_samples"] == 1 and r["refvos_samples"] == 1 for r in lines)
    assert {"tsg/find_loss", "refvos/mask_dice", "refvos/object_bce"} <= set(lines[-1])
    model = MomentSegModel.from_pretrained(run / "final")
    assert model.config.preset == "tiny"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-0000003"]
    other = momentseg("train", str(cfg), "--out", str(run), "--resume", "--steps", "4", "--seed", "2", "--no-progress")
    assert other.returncode == 2 and "seed 1 and" in other.stderr and "seed 2 and" in other.stderr  # a run keeps its seed


def test_the_trainer_weighs_the_model_components_with_the_training_config():
    from momentseg.model import MomentSegModel, TSGSample

    torch.manual_seed(0)
    model = MomentSegModel.tiny(caption_vocabulary())
    frames = torch.zeros(4, 56, 56, 3, dtype=torch.uint8).numpy()
    sample = TSGSample(frames=frames, query="the red circle", positive=torch.tensor([0, 1, 1, 0]).bool().numpy())
    out = JointLoss(model, LossConfig(find=3.0, lm=0.25))([sample], [])
    find, lm = out["sum/tsg/find_loss"], out["sum/tsg/lm_loss"]  # one sample: sum = its component
    assert float(find) > 0 and float(lm) > 0
    assert torch.isclose(out["loss"].detach(), 3.0 * find + 0.25 * lm, rtol=1e-5)
    with pytest.raises(KeyError, match="find_loss"):
        model.forward_tsg([sample]).weighted({"lm_loss": 1.0})
