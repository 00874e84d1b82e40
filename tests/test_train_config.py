"""Training config YAML: validation errors name the key and the file; the shipped configs load."""

from __future__ import annotations

from pathlib import Path

import pytest

from momentseg.errors import InputError
from momentseg.train.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

GOOD = """
model: {preset: tiny}
data:
  tsg_ratio: 0.25
  sources:
    - {type: synthetic, task: tsg}
    - {type: mask_dict, task: refvos, root: /data/mevis/train, weight: 10}
optim: {lr: 4e-5}
run: {steps: 10, batch_size: 2}
"""


def write(tmp_path, text):
    p = tmp_path / "train.yaml"
    p.write_text(text)
    return p


def test_good_config_reads_values_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.optim.lr == pytest.approx(4e-5)  # YAML reads 4e-5 as a string; it is accepted as a number
    assert cfg.data.tsg_ratio == 0.25 and cfg.data.sources[1].weight == 10.0
    assert cfg.run.grad_accum == 4 and cfg.loss.mask_bce == 2.0 and cfg.model.lora is None


@pytest.mark.parametrize(
    "text, match",
    [
        (GOOD.replace("run: {steps: 10", "run: {stepz: 10"), r"unknown key 'run.stepz'"),
        (GOOD.replace("{type: synthetic, task: tsg}", "{type: synthetic, task: tsg, colour: red}"),
         r"unknown key 'data.sources\[0\].colour'"),
        (GOOD.replace("batch_size: 2", "batch_size: two"), r"'run.batch_size' must be an integer"),
        (GOOD.replace("tsg_ratio: 0.25", "tsg_ratio: 1.5"), r"data.tsg_ratio"),
        (GOOD.replace("tsg_ratio: 0.25", "context_frame_size: 0"), r"'data.context_frame_size' must be ≥ 1"),
        (GOOD.replace("tsg_ratio: 0.25", "track_ratio: 0.2"), r"data.track_ratio.*needs a 'track' source"),
        (GOOD.replace("    - {type: synthetic, task: tsg}", "    - {type: synthetic, task: tsg}\n"
                      "    - {type: synthetic, task: track}"), r"data.track_ratio"),
        (GOOD.replace("tsg_ratio: 0.25", "track_ratio: 1.0"), r"data.track_ratio.*\[0, 1\)"),
        (GOOD.replace("task: tsg}", "task: tgs}"), r"data.sources\[0\].task"),
        (GOOD.replace("model: {preset: tiny}", "model: {preset: tiny, pretrained: x}"), r"exactly one"),
        (GOOD.replace("model: {preset: tiny}", "model: {preset: 3b}"), r"qwen_dir"),
        (GOOD.replace(", root: /data/mevis/train", ""), r"mask_dict needs task: refvos and 'root'"),
        (GOOD.replace("run: {steps: 10", "run: {steps: 0"), r"run.steps"),
        ("- a\n- b\n", r"top level must be a mapping"),
        ("model: {preset: tiny\n", r"not valid YAML"),
    ],
)
def test_bad_configs_are_input_errors_naming_key_and_file(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=match) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["tiny-sam2.yaml", "tiny-sam2-tracking.yaml", "tiny-sam2-memory.yaml", "tiny-vlm.yaml",
                                  "tiny-synthetic.yaml", "3b.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.data.sources
    if name == "3b.yaml":
        assert cfg.model.lora.r == 128 and cfg.model.lora.alpha == 256 and cfg.model.lora.dropout == 0.05
        assert cfg.optim.lr == pytest.approx(4e-5) and cfg.run.batch_size == 2 and cfg.run.grad_accum == 4
