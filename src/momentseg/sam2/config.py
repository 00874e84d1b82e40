"""SAM2 glue that needs no transformers model: configs, preprocessing, behaviour defaults.

The model itself — transformers' ``Sam2VideoModel`` with the ``[SEG]`` language prompt, conditioning frames,
the two Sa2VA behaviour options and clip decoding with gradients — is
:class:`momentseg.sam2.video.MomentSegSam2`; :func:`~momentseg.sam2.video.build_sam2` builds it and
:func:`~momentseg.sam2.video.new_session` opens a session for it. This module stays light (torch / numpy only;
transformers' config classes only inside :func:`sam2_config_from_dict`) so that configs can be read without
importing the model code.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: The mask logit transformers' (and original) SAM2 gives every pixel of a frame scored "no object".
NO_OBJECT_LOGIT = -1024.0

#: This project's default for ``MomentSegSam2(clamp_no_object_masks=...)`` / ``MomentSegConfig``: a frame
#: scored "no object" gets :data:`NO_OBJECT_LOGIT` masks (transformers); False keeps the decoded mask (Sa2VA and
#: the released MomentSeg).
CLAMP_NO_OBJECT_MASKS = True

#: This project's default for ``language_on_tracked_frames``: the language prompt is appended on every decoded
#: frame, tracked ones included (the released MomentSeg's BAP); False gives it to conditioning frames only (Sa2VA).
LANGUAGE_ON_TRACKED_FRAMES = True

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tiny_sam2_config(image_size: int = 128) -> dict[str, Any]:
    """A tiny random-init ``Sam2VideoConfig`` as a plain dict (anchors §D constraints: hidden sizes 128,
    memory encoder output channels 64, default Hiera block layout). ``image_size`` must be a multiple of 16.

    Single-mask decoding (no multimask, no stability switch) so a from-scratch model trains one mask token.
    """
    return sized_sam2_config({
        "vision_config": {
            "backbone_config": {
                "hidden_size": 12,
                "patch_stride": [4, 4],
                "patch_kernel_size": [7, 7],
                "patch_padding": [3, 3],
                "blocks_per_stage": [1, 2, 7, 2],
                "embed_dim_per_stage": [12, 24, 48, 96],
                "num_attention_heads_per_stage": [1, 2, 4, 8],
            },
            "backbone_channel_list": [96, 48, 24, 12],
            "fpn_hidden_size": 128,
        },
        "prompt_encoder_config": {
            "hidden_size": 128,
            "patch_size": 16,
            "mask_input_channels": 4,
            "num_point_embeddings": 4,
        },
        "mask_decoder_config": {
            "hidden_size": 128,
            "mlp_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
            "dynamic_multimask_via_stability": False,
        },
        "multimask_output_in_sam": False,
        "memory_attention_hidden_size": 128,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 32,
        "memory_encoder_hidden_size": 128,
        "mask_downsampler_embed_dim": 128,
        "memory_fuser_embed_dim": 128,
        "memory_fuser_intermediate_dim": 64,
    }, image_size)


#: The Hiera-L backbone of SAM2 / SAM2.1 (``Sam2HieraDetConfig`` fields besides ``image_size``).
HIERA_LARGE_BACKBONE: dict[str, Any] = {
    "hidden_size": 144,
    "embed_dim_per_stage": [144, 288, 576, 1152],
    "num_attention_heads_per_stage": [2, 4, 8, 16],
    "blocks_per_stage": [2, 6, 36, 4],
    "global_attention_blocks": [23, 33, 43],
    "window_positional_embedding_background_size": [7, 7],
    "window_size_per_stage": [8, 4, 16, 8],
}


def sam2_large_config(image_size: int = 1024) -> dict[str, Any]:
    """SAM2.1 hiera-large as a ``Sam2VideoConfig`` dict (num_maskmem 7)."""
    return sized_sam2_config({
        "vision_config": {
            "backbone_config": copy.deepcopy(HIERA_LARGE_BACKBONE),
            "backbone_channel_list": [1152, 576, 288, 144],
        },
        "num_maskmem": 7,
        "enable_temporal_pos_encoding_for_object_pointers": True,
        "enable_occlusion_spatial_embedding": True,
    }, image_size)


def is_sam2_size(size: Any) -> bool:
    """Whether ``size`` can be SAM2's input side: an int, a positive multiple of 16 (its S/16 feature grid)."""
    return type(size) is int and size >= 16 and size % 16 == 0


def sized_sam2_config(cfg: dict[str, Any], image_size: int) -> dict[str, Any]:
    """A copy of the ``Sam2VideoConfig`` dict ``cfg`` for input frames of ``image_size`` × ``image_size`` (a
    multiple of 16): every field that follows the input size (the model's, the prompt encoder's and the
    backbone's image size, the backbone's feature sizes at S/4, S/8, S/16 and the memory attention's RoPE
    grid) is set for it; the weights do not depend on it, so one set of weights runs at any size."""
    if not is_sam2_size(image_size):
        raise ValueError(f"SAM2 image size must be a positive multiple of 16, got {image_size!r}")
    s = image_size
    out = copy.deepcopy(cfg)
    vision = out.setdefault("vision_config", {})
    vision.setdefault("backbone_config", {})["image_size"] = [s, s]
    vision["backbone_feature_sizes"] = [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]]
    out.setdefault("prompt_encoder_config", {})["image_size"] = s
    out["image_size"] = s
    out["memory_attention_rope_feat_sizes"] = [s // 16, s // 16]
    return out


def sam2_config_from_dict(cfg: dict[str, Any]):
    """Build a ``Sam2VideoConfig`` from a plain dict (nested sub-config dicts allowed)."""
    # transformers is imported where a model is built, not when this light module is (configs, --help)
    from transformers import Sam2VideoConfig
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    cfg = dict(cfg)
    vision = dict(cfg.pop("vision_config", {}) or {})
    backbone = vision.pop("backbone_config", None)
    if isinstance(backbone, dict):
        backbone = {k: v for k, v in backbone.items() if k != "model_type"}
        vision["backbone_config"] = Sam2HieraDetConfig(**backbone)
    vision = {k: v for k, v in vision.items() if k != "model_type"}
    cfg.pop("model_type", None)
    return Sam2VideoConfig(vision_config=Sam2VisionConfig(**vision), **cfg)


def sam2_config_to_dict(config) -> dict[str, Any]:
    """A JSON-able dict of a ``Sam2VideoConfig`` that :func:`sam2_config_from_dict` rebuilds."""
    d = config.to_dict()
    for key in ("transformers_version", "architectures", "dtype", "torch_dtype"):
        d.pop(key, None)
    return d


def preprocess_for_sam2(frames, image_size: int) -> torch.Tensor:
    """Frames (N,H,W,3) uint8 (numpy or torch) -> float32 (N,3,S,S): resized to S×S (bilinear, antialiased
    when shrinking; aspect ratio not kept, as SAM2 does), scaled to [0,1], ImageNet mean/std normalised."""
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be (N,H,W,3) uint8, got shape {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (image_size, image_size):
        shrink = x.shape[-2] > image_size or x.shape[-1] > image_size
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=shrink)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std
