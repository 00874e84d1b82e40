"""SAM2 parameter names: original ``facebookresearch/sam2`` (``SAM2Base``) ↔ transformers' ``Sam2VideoModel``
(:func:`sam2_original_to_hf`, its inverse :func:`sam2_hf_to_original` for tests and export), and the
``Sam2VideoConfig`` an original state dict implies (:func:`infer_sam2_config`). Used by the checkpoint importers
(:mod:`momentseg.model.release`)."""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

from momentseg.errors import CheckpointError
from momentseg.sam2.config import HIERA_LARGE_BACKBONE

# Original facebookresearch/sam2 (SAM2Base) parameter names → transformers Sam2VideoModel names (the
# parameters of MomentSegSam2). Templates:
# {a},{b} = integers, {w} = a module name; a template ending in "." renames a prefix, otherwise a whole key.
# Facts from transformers' convert_sam2_video_to_hf.py; table and code written for this project.
_SAM2_RULES: list[tuple[str, str]] = [
    # image encoder (Hiera trunk + FPN neck)
    ("image_encoder.trunk.patch_embed.proj.", "vision_encoder.backbone.patch_embed.projection."),
    ("image_encoder.trunk.blocks.{a}.norm{b}.", "vision_encoder.backbone.blocks.{a}.layer_norm{b}."),
    ("image_encoder.trunk.blocks.{a}.mlp.layers.0.", "vision_encoder.backbone.blocks.{a}.mlp.proj_in."),
    ("image_encoder.trunk.blocks.{a}.mlp.layers.1.", "vision_encoder.backbone.blocks.{a}.mlp.proj_out."),
    ("image_encoder.trunk.", "vision_encoder.backbone."),
    ("image_encoder.neck.convs.{a}.conv.", "vision_encoder.neck.convs.{a}."),
    # prompt encoder (point_embeddings.{i} and pe_layer are handled separately)
    ("sam_prompt_encoder.mask_downscaling.0.", "prompt_encoder.mask_embed.conv1."),
    ("sam_prompt_encoder.mask_downscaling.1.", "prompt_encoder.mask_embed.layer_norm1."),
    ("sam_prompt_encoder.mask_downscaling.3.", "prompt_encoder.mask_embed.conv2."),
    ("sam_prompt_encoder.mask_downscaling.4.", "prompt_encoder.mask_embed.layer_norm2."),
    ("sam_prompt_encoder.mask_downscaling.6.", "prompt_encoder.mask_embed.conv3."),
    ("sam_prompt_encoder.not_a_point_embed.", "prompt_encoder.not_a_point_embed."),
    ("sam_prompt_encoder.no_mask_embed.", "prompt_encoder.no_mask_embed."),
    # mask decoder
    ("sam_mask_decoder.transformer.layers.{a}.norm{b}.", "mask_decoder.transformer.layers.{a}.layer_norm{b}."),
    ("sam_mask_decoder.transformer.layers.{a}.mlp.layers.0.", "mask_decoder.transformer.layers.{a}.mlp.proj_in."),
    ("sam_mask_decoder.transformer.layers.{a}.mlp.layers.1.", "mask_decoder.transformer.layers.{a}.mlp.proj_out."),
    ("sam_mask_decoder.transformer.layers.{a}.{w}.out_proj.", "mask_decoder.transformer.layers.{a}.{w}.o_proj."),
    (
        "sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.",
        "mask_decoder.transformer.final_attn_token_to_image.o_proj.",
    ),
    ("sam_mask_decoder.transformer.norm_final_attn.", "mask_decoder.transformer.layer_norm_final_attn."),
    ("sam_mask_decoder.output_upscaling.0.", "mask_decoder.upscale_conv1."),
    ("sam_mask_decoder.output_upscaling.1.", "mask_decoder.upscale_layer_norm."),
    ("sam_mask_decoder.output_upscaling.3.", "mask_decoder.upscale_conv2."),
    ("sam_mask_decoder.output_hypernetworks_mlps.{a}.layers.0.", "mask_decoder.output_hypernetworks_mlps.{a}.proj_in."),
    ("sam_mask_decoder.output_hypernetworks_mlps.{a}.layers.1.", "mask_decoder.output_hypernetworks_mlps.{a}.layers.0."),
    ("sam_mask_decoder.output_hypernetworks_mlps.{a}.layers.2.", "mask_decoder.output_hypernetworks_mlps.{a}.proj_out."),
    ("sam_mask_decoder.iou_prediction_head.layers.0.", "mask_decoder.iou_prediction_head.proj_in."),
    ("sam_mask_decoder.iou_prediction_head.layers.1.", "mask_decoder.iou_prediction_head.layers.0."),
    ("sam_mask_decoder.iou_prediction_head.layers.2.", "mask_decoder.iou_prediction_head.proj_out."),
    ("sam_mask_decoder.pred_obj_score_head.layers.0.", "mask_decoder.pred_obj_score_head.proj_in."),
    ("sam_mask_decoder.pred_obj_score_head.layers.1.", "mask_decoder.pred_obj_score_head.layers.0."),
    ("sam_mask_decoder.pred_obj_score_head.layers.2.", "mask_decoder.pred_obj_score_head.proj_out."),
    ("sam_mask_decoder.", "mask_decoder."),
    # memory attention
    ("memory_attention.layers.{a}.norm{b}.", "memory_attention.layers.{a}.layer_norm{b}."),
    ("memory_attention.layers.{a}.{w}.out_proj.", "memory_attention.layers.{a}.{w}.o_proj."),
    ("memory_attention.norm.", "memory_attention.layer_norm."),
    ("memory_attention.", "memory_attention."),
    # memory encoder (mask_downsampler.encoder.{i} is handled separately)
    ("memory_encoder.pix_feat_proj.", "memory_encoder.feature_projection."),
    ("memory_encoder.fuser.layers.{a}.dwconv.", "memory_encoder.memory_fuser.layers.{a}.depthwise_conv."),
    ("memory_encoder.fuser.layers.{a}.norm.", "memory_encoder.memory_fuser.layers.{a}.layer_norm."),
    ("memory_encoder.fuser.layers.{a}.pwconv{b}.", "memory_encoder.memory_fuser.layers.{a}.pointwise_conv{b}."),
    ("memory_encoder.fuser.layers.{a}.gamma", "memory_encoder.memory_fuser.layers.{a}.scale"),
    # Sa2VA's and MomentSeg's exporters rename ".gamma" to ".g_weight" (the inverse keeps ".gamma": listed first)
    ("memory_encoder.fuser.layers.{a}.g_weight", "memory_encoder.memory_fuser.layers.{a}.scale"),
    ("memory_encoder.out_proj.", "memory_encoder.projection."),
    # top level
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("no_obj_ptr", "no_object_pointer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ("obj_ptr_proj.layers.0.", "object_pointer_proj.proj_in."),
    ("obj_ptr_proj.layers.1.", "object_pointer_proj.layers.0."),
    ("obj_ptr_proj.layers.2.", "object_pointer_proj.proj_out."),
    ("obj_ptr_tpos_proj.", "temporal_positional_encoding_projection_layer."),
    ("mask_downsample.", "mask_downsample."),
]

_PE_ORIGINAL = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_PE_HF = ("prompt_encoder.shared_embedding.positional_embedding", "shared_image_embedding.positional_embedding")
_POINT_ORIGINAL = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")
_POINT_HF = "prompt_encoder.point_embed.weight"
_DOWN_ORIGINAL = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.+)$")
_DOWN_HF = re.compile(r"^memory_encoder\.mask_downsampler\.(?:layers\.(\d+)\.(conv|layer_norm)|final_conv)\.(.+)$")


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    pattern = pattern.replace(r"\{a\}", r"(?P<a>\d+)").replace(r"\{b\}", r"(?P<b>\d+)")
    pattern = pattern.replace(r"\{w\}", r"(?P<w>[a-z_]+)")
    return re.compile("^" + pattern + ("(?P<rest>.*)$" if template.endswith(".") else "$"))


_FORWARD = [(_template_regex(o), h) for o, h in _SAM2_RULES]
_INVERSE = [(_template_regex(h), o) for o, h in _SAM2_RULES]


def _rename(key: str, rules) -> str | None:
    for regex, target in rules:
        m = regex.match(key)
        if m:
            groups = m.groupdict()
            out = target
            for name in ("a", "b", "w"):
                if groups.get(name) is not None:
                    out = out.replace("{" + name + "}", groups[name])
            return out + (groups.get("rest") or "")
    return None


def sam2_original_to_hf(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original SAM2 state (names as in facebookresearch/sam2) → transformers Sam2VideoModel state.
    Returns (mapped state, original keys no rule knows)."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    points: dict[int, torch.Tensor] = {}
    down = [int(m.group(1)) for k in state if (m := _DOWN_ORIGINAL.match(k))]
    final_idx = max(down) if down else -1
    for key, value in state.items():
        if key == _PE_ORIGINAL:
            for k in _PE_HF:
                out[k] = value
        elif m := _POINT_ORIGINAL.match(key):
            points[int(m.group(1))] = value
        elif m := _DOWN_ORIGINAL.match(key):
            i, rest = int(m.group(1)), m.group(2)
            if i == final_idx:
                out[f"memory_encoder.mask_downsampler.final_conv.{rest}"] = value
            elif i % 3 in (0, 1):
                part = "conv" if i % 3 == 0 else "layer_norm"
                out[f"memory_encoder.mask_downsampler.layers.{i // 3}.{part}.{rest}"] = value
            else:
                unknown.append(key)
        elif (new := _rename(key, _FORWARD)) is not None:
            out[new] = value
        else:
            unknown.append(key)
    if points:
        if sorted(points) != list(range(len(points))):
            unknown.extend(f"sam_prompt_encoder.point_embeddings.{i}.weight" for i in sorted(points))
        else:
            out[_POINT_HF] = torch.cat([points[i] for i in range(len(points))], dim=0)
    return out, unknown


def sam2_hf_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`sam2_original_to_hf` (raises KeyError on a name no rule knows, ValueError when the two
    copies of the position encoding differ: original SAM2 has only one)."""
    pe = [state[k] for k in _PE_HF if k in state]
    if len(pe) == 2 and not pe[0].is_meta and not torch.equal(pe[0], pe[1]):
        raise ValueError("image and prompt position encodings differ; original SAM2 shares one")
    out: dict[str, torch.Tensor] = {}
    n_down = len({m.group(1) for k in state if (m := _DOWN_HF.match(k)) and m.group(1) is not None})
    for key, value in state.items():
        if key in _PE_HF:
            out[_PE_ORIGINAL] = value
        elif key == _POINT_HF:
            for i in range(value.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = value[i : i + 1].clone()
        elif m := _DOWN_HF.match(key):
            layer, part, rest = m.groups()
            idx = 3 * n_down if layer is None else 3 * int(layer) + (0 if part == "conv" else 1)
            out[f"memory_encoder.mask_downsampler.encoder.{idx}.{rest}"] = value
        elif (new := _rename(key, _INVERSE)) is not None:
            out[new] = value
        else:
            raise KeyError(f"no original SAM2 name for {key}")
    return out


# Hiera variants of SAM2 / SAM2.1 by (first-stage width, number of blocks).
_HIERA_VARIANTS = {
    (96, 12): {"blocks_per_stage": [1, 2, 7, 2], "global_attention_blocks": [5, 7, 9]},
    (96, 16): {"blocks_per_stage": [1, 2, 11, 2], "global_attention_blocks": [7, 10, 13]},
    (112, 24): {
        "hidden_size": 112,
        "embed_dim_per_stage": [112, 224, 448, 896],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "blocks_per_stage": [2, 3, 16, 3],
        "global_attention_blocks": [12, 16, 20],
        "window_positional_embedding_background_size": [14, 14],
    },
    (144, 48): HIERA_LARGE_BACKBONE,
}


def infer_sam2_config(original_state: dict[str, torch.Tensor], image_size: int = 1024) -> dict[str, Any]:
    """A Sam2VideoConfig dict for an original SAM2 state dict: the Hiera variant from the trunk's width and
    block count; SAM2.1 features (object-pointer temporal encoding, occlusion embedding) from key presence."""
    width = int(original_state["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
    blocks = len({k.split(".")[3] for k in original_state if k.startswith("image_encoder.trunk.blocks.")})
    backbone = _HIERA_VARIANTS.get((width, blocks))
    if backbone is None:
        raise CheckpointError(
            f"unknown SAM2 image encoder (width {width}, {blocks} blocks); pass the SAM2 config explicitly"
        )
    backbone = dict(copy.deepcopy(backbone), image_size=[image_size, image_size])
    channels = backbone.get("embed_dim_per_stage", [96, 192, 384, 768])[::-1]
    s = image_size
    return {
        "vision_config": {
            "backbone_config": backbone,
            "backbone_channel_list": channels,
            "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        },
        "prompt_encoder_config": {"image_size": s},
        "image_size": s,
        "memory_attention_rope_feat_sizes": [s // 16, s // 16],
        "enable_temporal_pos_encoding_for_object_pointers": "obj_ptr_tpos_proj.weight" in original_state,
        "enable_occlusion_spatial_embedding": "no_obj_embed_spatial" in original_state,
    }
