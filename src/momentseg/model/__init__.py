"""The MomentSeg model: Qwen2.5-VL + SAM2 backbones from transformers, [FIND] / [SEG] heads, presets, checkpoints.

Main entry points: :class:`MomentSegModel` (``build``, ``tiny``, ``from_pretrained``, ``from_base``,
``find_logits`` / ``find_logits_many``, ``seg_embedding`` / ``seg_embedding_many``, ``forward_tsg``,
``forward_refvos``), its :class:`MomentSegProcessor` (samples → padded batch tensors), the typed outputs
:class:`TSGOutput` / :class:`RefVOSOutput`, :class:`MomentSegConfig`, :func:`preset_config`, the training samples
:class:`TSGSample` / :class:`RefVOSSample`. The SAM2 model it holds
(:class:`momentseg.sam2.video.MomentSegSam2`) and its glue live in :mod:`momentseg.sam2`.
"""

from momentseg.model.config import MomentSegConfig, preset_config
from momentseg.model.momentseg import (
    CaptionSample,
    ClassesSample,
    MomentSegModel,
    RefVOSSample,
    TokensSample,
    TrackSample,
    TSGSample,
)
from momentseg.model.outputs import (
    CaptionOutput,
    ClassesOutput,
    MomentOutput,
    PointOutput,
    RefVOSOutput,
    TokensOutput,
    TrackOutput,
    TSGOutput,
)
from momentseg.model.processing import MomentSegBatch, MomentSegProcessor
from momentseg.model.tokenizer import build_word_tokenizer

__all__ = [
    "CaptionOutput",
    "MomentSegBatch",
    "MomentSegConfig",
    "MomentSegModel",
    "MomentSegProcessor",
    "MomentOutput",
    "PointOutput",
    "RefVOSOutput",
    "RefVOSSample",
    "TrackOutput",
    "TrackSample",
    "CaptionSample",
    "ClassesOutput",
    "ClassesSample",
    "TokensOutput",
    "TokensSample",
    "TSGOutput",
    "TSGSample",
    "build_word_tokenizer",
    "preset_config",
]
