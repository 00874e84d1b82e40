"""The MomentSeg model: Qwen2.5-VL + SAM2 backbones from transformers, [FIND] / [SEG] heads, presets, checkpoints.

Main entry points: :class:`MomentSegModel` (``build``, ``tiny``, ``from_pretrained``, ``from_base``,
``find_logits``, ``seg_embedding``, ``forward_tsg``, ``forward_refvos``), :class:`MomentSegConfig`,
:func:`preset_config`, the training samples :class:`TSGSample` / :class:`RefVOSSample`, the SAM2 model
:class:`momentseg.model.sam2_video.MomentSegSam2` (transformers' ``Sam2VideoModel`` prompted by the ``[SEG]``
embedding) and its light glue in :mod:`momentseg.model.sam2` (``build_sam2``, ``new_session``, preprocessing).
"""

from momentseg.model.config import MomentSegConfig, preset_config
from momentseg.model.momentseg import CaptionSample, MomentSegModel, RefVOSSample, TrackSample, TSGSample
from momentseg.model.tokenizer import build_word_tokenizer

__all__ = [
    "MomentSegConfig",
    "MomentSegModel",
    "RefVOSSample",
    "TrackSample",
    "CaptionSample",
    "TSGSample",
    "build_word_tokenizer",
    "preset_config",
]
