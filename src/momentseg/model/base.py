"""A MomentSeg model from base weights: a local Qwen2.5-VL-Instruct folder and a local SAM2 folder in
transformers' format (``MomentSegModel.from_base``); every tensor of both must be there (no silent random init)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from momentseg.errors import CheckpointError, InputError
from momentseg.model.checkpoint import CONFIG_FILE, _raise_problems, clean_config_dict
from momentseg.model.config import preset_config
from momentseg.model.tokenizer import add_task_tokens, load_tokenizer
from momentseg.sam2.config import sam2_config_to_dict


def _read_preprocessor(directory: Path) -> dict[str, Any]:
    f = directory / "preprocessor_config.json"
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {f}: {exc}") from exc


def _from_pretrained_strict(cls, directory: Path, what: str):
    """``cls.from_pretrained(directory)`` that fails (one line, listing them) when a tensor of the model is
    missing from the folder or has another shape, instead of initialising it at random as transformers does."""
    try:
        model, info = cls.from_pretrained(str(directory), local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load the {what} folder {directory}: {exc}") from None
    missing = sorted(info.get("missing_keys") or [])
    shapes = sorted(str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or [])
    _raise_problems(f"{what} folder {directory} does not hold the whole model", missing=missing,
                    wrongly_shaped=shapes)
    return model


def build_from_base(model_cls, qwen_dir: str | Path, sam2_dir: str | Path, preset: str = "3b"):
    """MomentSegModel from a local Qwen2.5-VL-Instruct folder (weights + tokenizer) and a local SAM2 folder in
    transformers' Sam2Video format, as a ``model_cls`` (:class:`~momentseg.model.momentseg.MomentSegModel`).
    [SEG]/[FIND] are added to the tokenizer (embeddings resized only when the
    vocabulary is full); the heads are random. Frame sizes / prompts / losses come from ``preset``."""
    # transformers only when weights are loaded (momentseg.model is imported by light commands too)
    from transformers import Qwen2_5_VLForConditionalGeneration

    from momentseg.sam2.video import MomentSegSam2

    qwen_dir, sam2_dir = Path(qwen_dir), Path(sam2_dir)
    for d, what in ((qwen_dir, "Qwen2.5-VL"), (sam2_dir, "SAM2")):
        if not (d / CONFIG_FILE).is_file():
            raise InputError(f"{what} folder {d} has no config.json")
    tokenizer = load_tokenizer(qwen_dir)
    add_task_tokens(tokenizer)
    qwen = _from_pretrained_strict(Qwen2_5_VLForConditionalGeneration, qwen_dir, "Qwen2.5-VL")
    sam2 = _from_pretrained_strict(MomentSegSam2, sam2_dir, "SAM2")
    if len(tokenizer) > qwen.config.text_config.vocab_size:
        qwen.resize_token_embeddings(len(tokenizer))
    config = preset_config(preset, tokenizer=tokenizer)
    config.qwen = clean_config_dict(qwen.config.to_dict())
    config.sam2 = clean_config_dict(sam2_config_to_dict(sam2.config))
    pre = _read_preprocessor(qwen_dir)
    if "image_mean" in pre:
        config.image_mean = tuple(float(v) for v in pre["image_mean"])
    if "image_std" in pre:
        config.image_std = tuple(float(v) for v in pre["image_std"])
    config.notes.append(f"built from base weights {qwen_dir.name} + {sam2_dir.name}; [FIND]/[SEG] heads random")
    model = model_cls(config, tokenizer, qwen=qwen, sam2=sam2)
    dtype = next(qwen.parameters()).dtype
    model.find_head.to(dtype)
    model.seg_head.to(dtype)
    return model
