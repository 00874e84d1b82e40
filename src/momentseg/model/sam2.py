"""SAM2 (transformers ``Sam2VideoModel``) glue: build, preprocess, language prompt hook, sessions, clip decoding.

The ``[SEG]`` embedding reaches SAM2 as one extra *sparse prompt token* appended after the (point) prompt
tokens, on every frame the mask decoder decodes (as Sa2VA's ``add_language_embd`` does). transformers'
``Sam2VideoModel`` has no such input, so :func:`language_prompt` wraps ``sam2.prompt_encoder.forward`` on the
instance for the duration of a ``with`` block; without the block the model is untouched.

A frame becomes a *conditioning frame with no points and no mask* (decoded without memory, stored in
``cond_frame_outputs``) by marking its object as having new inputs before running the frame
(:func:`run_conditioning_frame`). ``Sam2VideoModel.forward`` / ``propagate_in_video_iterator`` run under
``torch.inference_mode``; :func:`decode_clip` runs the same session code path (``forward.__wrapped__``) with
autograd, for training. Checked against transformers 5.24.0 (pinned in pyproject).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tiny_sam2_config(image_size: int = 128) -> dict[str, Any]:
    """A tiny random-init ``Sam2VideoConfig`` as a plain dict (anchors §D constraints: hidden sizes 128,
    memory encoder output channels 64, default Hiera block layout). ``image_size`` must be a multiple of 16.

    Single-mask decoding (no multimask, no stability switch) so a from-scratch model trains one mask token.
    """
    s = int(image_size)
    if s % 16:
        raise ValueError(f"SAM2 image size must be a multiple of 16, got {s}")
    return {
        "vision_config": {
            "backbone_config": {
                "hidden_size": 12,
                "image_size": [s, s],
                "patch_stride": [4, 4],
                "patch_kernel_size": [7, 7],
                "patch_padding": [3, 3],
                "blocks_per_stage": [1, 2, 7, 2],
                "embed_dim_per_stage": [12, 24, 48, 96],
                "num_attention_heads_per_stage": [1, 2, 4, 8],
            },
            "backbone_channel_list": [96, 48, 24, 12],
            "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
            "fpn_hidden_size": 128,
        },
        "prompt_encoder_config": {
            "hidden_size": 128,
            "image_size": s,
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
        "image_size": s,
        "multimask_output_in_sam": False,
        "memory_attention_hidden_size": 128,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 32,
        "memory_attention_rope_feat_sizes": [s // 16, s // 16],
        "memory_encoder_hidden_size": 128,
        "mask_downsampler_embed_dim": 128,
        "memory_fuser_embed_dim": 128,
        "memory_fuser_intermediate_dim": 64,
    }


def sam2_config_from_dict(cfg: dict[str, Any]):
    """Build a ``Sam2VideoConfig`` from a plain dict (nested sub-config dicts allowed)."""
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


def build_sam2(cfg) -> Any:
    """A randomly initialised ``transformers.Sam2VideoModel`` from a ``Sam2VideoConfig`` or a plain dict (image
    and prompt position encodings shared, as in original SAM2)."""
    from transformers import Sam2VideoConfig, Sam2VideoModel

    config = cfg if isinstance(cfg, Sam2VideoConfig) else sam2_config_from_dict(cfg)
    model = Sam2VideoModel(config)
    # original SAM2 has one random-Fourier position encoding for image and prompts; a random HF init draws two
    with torch.no_grad():
        model.shared_image_embedding.positional_embedding.copy_(
            model.prompt_encoder.shared_embedding.positional_embedding
        )
    return model


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


@contextlib.contextmanager
def language_prompt(sam2, embedding: torch.Tensor) -> Iterator[None]:
    """Within the block, every mask-decoder call of ``sam2`` gets ``embedding`` appended to its sparse prompt
    tokens: conditioning frames, propagated frames, and mask-as-output frames alike.

    embedding: (P,) — the same token for every object — or (N_obj, P), row ``i`` for the session's object
    index ``i`` (``session.obj_id_to_idx(obj_id)``). P = ``sam2.config.prompt_encoder_config.hidden_size``.
    Gradients flow into ``embedding`` when the call runs with autograd (see :func:`decode_clip`).
    Nesting replaces the outer embedding for the inner block.

    An embedding of P + C0 + 1 values (C0 = channels of SAM2's S/4 features = mask decoder width / 8;
    ``MomentSegConfig.seg_pixel_query``) also carries a pixel query ``w = embedding[P:P+C0]``,
    ``b = embedding[-1]``: ``w · feature(x) + b`` over the S/4 feature map is added to every mask the decoder
    returns, so the text selects pixels directly.
    """
    encoder = sam2.prompt_encoder
    hidden = encoder.hidden_size
    channels = int(sam2.config.mask_decoder_config.hidden_size) // 8
    if embedding.ndim not in (1, 2) or embedding.shape[-1] not in (hidden, hidden + channels + 1):
        raise ValueError(f"language embedding must be (P,) or (N_obj,P) with P={hidden} (or P+C0+1="
                         f"{hidden + channels + 1} with a pixel query), got {tuple(embedding.shape)}")
    full = embedding if embedding.ndim == 2 else embedding[None]
    table, query = full[:, :hidden], (full[:, hidden:] if full.shape[-1] > hidden else None)
    state = {"obj_idx": 0}
    original_encoder_forward = encoder.forward
    original_single = sam2._run_single_frame_inference
    had_encoder_attr = "forward" in encoder.__dict__
    had_single_attr = "_run_single_frame_inference" in sam2.__dict__

    def single_frame(*args, **kwargs):
        state["obj_idx"] = kwargs.get("obj_idx", 0)
        return original_single(*args, **kwargs)

    def encoder_forward(input_points, input_labels, input_boxes, input_masks):
        sparse, dense = original_encoder_forward(input_points, input_labels, input_boxes, input_masks)
        row = table[min(state["obj_idx"], table.shape[0] - 1)] if table.shape[0] > 1 else table[0]
        if sparse is None:  # cannot happen via Sam2VideoModel (it pads an empty point), kept for safety
            batch = dense.shape[0]
            token = row.to(dense.dtype).view(1, 1, 1, hidden).expand(batch, 1, 1, hidden)
            return token, dense
        token = row.to(sparse.dtype).view(1, 1, 1, hidden).expand(sparse.shape[0], sparse.shape[1], 1, hidden)
        return torch.cat([sparse, token], dim=2), dense

    decoder = sam2.mask_decoder
    original_decoder_forward = decoder.forward
    had_decoder_attr = "forward" in decoder.__dict__

    def decoder_forward(*args, **kwargs):
        masks, *rest = original_decoder_forward(*args, **kwargs)
        row = query[min(state["obj_idx"], query.shape[0] - 1)]
        feats = kwargs["high_resolution_features"][0]  # (B, C0, S/4, S/4)
        match = torch.einsum("bchw,c->bhw", feats, row[:channels].to(feats.dtype)) + row[channels].to(feats.dtype)
        return (masks + match[:, None].to(masks.dtype), *rest)

    encoder.forward = encoder_forward
    sam2._run_single_frame_inference = single_frame
    if query is not None:
        decoder.forward = decoder_forward
    try:
        yield
    finally:
        if query is not None:
            if had_decoder_attr:
                decoder.forward = original_decoder_forward
            else:
                del decoder.forward
        if had_encoder_attr:
            encoder.forward = original_encoder_forward
        else:
            del encoder.forward
        if had_single_attr:
            sam2._run_single_frame_inference = original_single
        else:
            del sam2._run_single_frame_inference


def new_session(sam2, pixel_values: torch.Tensor, video_height: int, video_width: int, cache_size: int = 1):
    """A ``Sam2VideoInferenceSession`` over preprocessed frames (N,3,S,S) (see :func:`preprocess_for_sam2`).

    ``cache_size``: how many frames' vision features the session keeps (1 = recompute when revisiting).
    """
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    device = next(sam2.parameters()).device
    dtype = next(sam2.parameters()).dtype
    return Sam2VideoInferenceSession(
        video=pixel_values,
        video_height=int(video_height),
        video_width=int(video_width),
        inference_device=device,
        inference_state_device=device,
        video_storage_device=pixel_values.device,
        dtype=dtype,
        max_vision_features_cache_size=cache_size,
    )


def mark_conditioning(session, obj_ids=(0,)) -> None:
    """Register ``obj_ids`` and flag them as having new inputs, so the next ``sam2(inference_session=session,
    frame_idx=k)`` decodes frame k as an initial *conditioning* frame (no memory; stored in
    ``cond_frame_outputs``) for each of them, even with no points or mask. Only works on frames not yet
    tracked for that object (``session.frames_tracked_per_obj``); call :func:`unmark_conditioning` after."""
    for obj_id in obj_ids:
        session.obj_id_to_idx(obj_id)
        if obj_id not in session.obj_with_new_inputs:
            session.obj_with_new_inputs.append(obj_id)


def unmark_conditioning(session, obj_ids=(0,)) -> None:
    """Undo :func:`mark_conditioning` (transformers only clears the flag when points/masks were given)."""
    for obj_id in obj_ids:
        if obj_id in session.obj_with_new_inputs:
            session.obj_with_new_inputs.remove(obj_id)


def run_conditioning_frame(sam2, session, frame_idx: int, obj_ids=(0,)):
    """Decode ``frame_idx`` as a conditioning frame (no points/masks; use inside :func:`language_prompt` so the
    [SEG] token is the prompt). Returns the ``Sam2VideoSegmentationOutput`` (pred_masks (N_obj,1,S/4,S/4)
    logits, object_score_logits (N_obj,)). Runs under inference mode."""
    mark_conditioning(session, obj_ids)
    try:
        return sam2(inference_session=session, frame_idx=frame_idx)
    finally:
        unmark_conditioning(session, obj_ids)


def _session_forward_with_grad(sam2, session, frame_idx: int, reverse: bool = False):
    """``Sam2VideoModel.forward`` without its ``torch.inference_mode`` decorator (same code, autograd on)."""
    return type(sam2).forward.__wrapped__(sam2, inference_session=session, frame_idx=frame_idx, reverse=reverse)


def decode_clip(sam2, pixel_values: torch.Tensor, embedding: torch.Tensor, cond_frames=(0,)):
    """Segment a short clip with gradients, exactly as inference would: frames in ``cond_frames`` are decoded
    from the language prompt alone as conditioning frames; the others, in order, with memory attention over
    the earlier frames' memories (memory encoder outputs, object pointers) plus the language prompt.

    pixel_values: (K,3,S,S) preprocessed frames; embedding: (P,) language prompt token.
    Returns (mask_logits (K,S/4,S/4), object_score_logits (K,)), differentiable w.r.t. the embedding and the
    SAM2 parameters (mask decoder, memory attention/encoder, object pointer projection, and the image encoder
    unless the caller passes features computed without grad).

    SAM2 is switched to eval mode during the call (no memory-attention dropout, inference-time object-pointer
    selection) and restored afterwards, so the trained path is the one inference runs. Frame 0 must be a
    conditioning frame (SAM2 needs a conditioning memory before tracking).
    """
    k = pixel_values.shape[0]
    cond = sorted(set(int(c) for c in cond_frames))
    if not cond or cond[0] != 0:
        raise ValueError("decode_clip needs frame 0 among cond_frames")
    session = _clip_session(sam2, pixel_values)
    was_training = sam2.training
    sam2.eval()
    masks, scores = [], []
    try:
        with language_prompt(sam2, embedding):
            for i in range(k):
                if i in cond:
                    mark_conditioning(session)
                try:
                    out = _session_forward_with_grad(sam2, session, i)
                finally:
                    unmark_conditioning(session)
                masks.append(out.pred_masks[0, 0])
                scores.append(out.object_score_logits.reshape(-1)[0])
    finally:
        sam2.train(was_training)
    return torch.stack(masks), torch.stack(scores)


def _clip_session(sam2, pixel_values: torch.Tensor):
    """A session over a short clip (K,3,S,S) whose frames' image features are computed in one batch (with
    autograd when enabled) and seeded into the session cache (the session would otherwise encode per frame)."""
    k = pixel_values.shape[0]
    session = new_session(sam2, pixel_values, pixel_values.shape[-2], pixel_values.shape[-1], cache_size=k)
    feats = sam2.get_image_features(pixel_values.to(session.dtype), return_dict=True)
    for i in range(k):
        session.cache.cache_vision_features(
            i,
            {
                "vision_feats": [f[:, i : i + 1] for f in feats.fpn_hidden_states],
                "vision_pos_embeds": [p[:, i : i + 1] for p in feats.fpn_position_encoding],
            },
        )
    return session


def decode_prompted_clip(sam2, pixel_values: torch.Tensor, prompts: list[dict]):
    """SAM2's own task with gradients: objects are prompted on some frames and tracked with memory through the
    clip, through the same session code path inference runs (``Sam2VideoModel.forward``).

    pixel_values: (K,3,S,S) preprocessed frames. ``prompts``: dicts with ``obj`` (object index 0..N-1),
    ``frame`` and one of, in SAM2 input pixels (0..S): ``mask`` (S,S) float 0/1 (SAM2 uses it as that frame's
    output), ``points`` (n,2) xy with ``labels`` (n,) 1 positive / 0 negative, or ``box`` (4,) x0,y0,x1,y1.
    Every object needs a prompt on frame 0; a prompt on a later frame makes it another conditioning frame
    (decoded without memory), as extra keyframes are at inference.
    Returns (mask_logits (K,N,S/4,S/4), object_score_logits (K,N)); SAM2 runs in eval mode during the call.
    """
    objects = sorted({int(p["obj"]) for p in prompts})
    if not objects or objects != list(range(len(objects))):
        raise ValueError(f"prompted objects must be 0..N-1, got {objects}")
    if {int(p["obj"]) for p in prompts if int(p["frame"]) == 0} != set(objects):
        raise ValueError("decode_prompted_clip needs a frame-0 prompt for every object")
    session = _clip_session(sam2, pixel_values)
    for obj in objects:
        session.obj_id_to_idx(obj)
    by_frame: dict[int, list[int]] = {}
    for prompt in prompts:
        obj, frame = int(prompt["obj"]), int(prompt["frame"])
        by_frame.setdefault(frame, []).append(obj)
        if "mask" in prompt:
            session.add_mask_inputs(obj, frame, torch.as_tensor(prompt["mask"], dtype=torch.float32)[None, None])
            continue
        if "box" in prompt:
            coords = torch.as_tensor(prompt["box"], dtype=torch.float32).reshape(2, 2)
            labels = torch.tensor([2, 3], dtype=torch.int32)
        else:
            coords = torch.as_tensor(prompt["points"], dtype=torch.float32).reshape(-1, 2)
            labels = torch.as_tensor(prompt["labels"], dtype=torch.int32).reshape(-1)
        session.add_point_inputs(obj, frame, {"point_coords": coords[None, None], "point_labels": labels[None, None]})
    was_training = sam2.training
    sam2.eval()
    masks, scores = [], []
    try:
        for i in range(pixel_values.shape[0]):
            session.obj_with_new_inputs = list(by_frame.get(i, ()))
            out = _session_forward_with_grad(sam2, session, i)
            masks.append(out.pred_masks[:, 0])
            scores.append(out.object_score_logits.reshape(-1))
    finally:
        sam2.train(was_training)
    return torch.stack(masks), torch.stack(scores)
