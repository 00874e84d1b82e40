"""``MomentSegSam2``: transformers' ``Sam2VideoModel`` prompted by language, as MomentSeg and Sa2VA prompt SAM2.

transformers' SAM2 video model takes points, boxes and masks. MomentSeg (like Sa2VA) also prompts it with the
``[SEG]`` embedding, one extra *sparse prompt token* appended after the (point) prompt tokens of a mask-decoder
pass (Sa2VA's ``_forward_sam_heads(..., language_embd=...)``). This subclass owns that behaviour through explicit
arguments; the weights and state-dict keys are those of ``Sam2VideoModel``, so every checkpoint loads unchanged.

* **Language prompt, per object.** :meth:`MomentSegSam2.set_language_embedding` stores an object's embedding on
  its session (a :class:`LanguageSession`, the way transformers stores an object's point and mask inputs on
  the session, and Sa2VA its ``inference_state["language_embd"]``). Every mask-decoder pass of that object then
  appends it: conditioning frames, tracked frames (unless ``language_on_tracked_frames=False``), and the pass
  that turns a mask prompt into an object pointer.
* **Pixel query.** An embedding of P + C0 + 1 values (P = prompt width, C0 = channels of SAM2's S/4 features =
  mask decoder width / 8; ``MomentSegConfig.seg_pixel_query``) is the token ``e[:P]`` plus a pixel query
  ``w = e[P:P+C0]``, ``b = e[-1]``: ``w · feature(x) + b`` over the S/4 feature map is added to every mask the
  decoder returns, before the "no object" clamp.
* **Spatial prior.** A :class:`SpatialPrior` (mask logits per context patch, and the patch each frame reads;
  ``MomentSegConfig.seg_pointing``) set with the language embedding is upsampled bilinearly to S/4 and added to
  the masks of every decoding that gets the language prompt, as the pixel query is.
* **Conditioning frames.** ``sam2(inference_session=s, frame_idx=k, condition=(obj_id,))`` decodes frame k as
  an initial conditioning frame of that object (no memory; stored in ``cond_frame_outputs``), prompted by
  whatever the object has on frame k — its language embedding alone when it has no points and no mask.
* **Two behaviour options** (:data:`~momentseg.sam2.config.CLAMP_NO_OBJECT_MASKS`,
  :data:`~momentseg.sam2.config.LANGUAGE_ON_TRACKED_FRAMES`; ``MomentSegConfig`` carries them):
  ``clamp_no_object_masks`` — True: a frame scored "no object" (object score logit ≤ 0) gets
  :data:`~momentseg.sam2.config.NO_OBJECT_LOGIT` masks, as transformers and original SAM2 do; False: the decoded
  mask is kept (and encoded into memory), as Sa2VA's SAM2 extension does — in github bytedance/Sa2VA
  ``projects/sa2va/hf/models_qwen2_5_vl/sam2.py`` (``SAM2Base._forward_sam_heads``) and
  ``projects/sa2va/models/extension/sam2_base.py`` the ``torch.where(is_obj_appearing, ..., NO_OBJ_SCORE)`` is
  commented out, and so it is in the released MomentSeg (github Dmmm1997/MomentSeg a118d15,
  ``projects/qwenvl_sam2/hf/models/sam2.py``). The object pointer still switches to the "no object" pointer in
  both. ``language_on_tracked_frames`` — True: tracked frames get the language token too (this project, and the
  released MomentSeg's ``bidirectional_adaptive_propagate_in_video``, which passes
  ``inference_state["language_embd"]``); False: only conditioning frames get it (Sa2VA: ``add_language_embd``
  prompts frames 0–4, its ``propagate_in_video`` calls ``_run_single_frame_inference`` without
  ``language_embd``).
* **Autograd.** ``forward`` (and so ``propagate_in_video_iterator``) is :meth:`MomentSegSam2.track_step` under
  ``torch.inference_mode``, as in transformers; ``track_step`` itself runs the same per-frame code with
  autograd as the caller has it. :meth:`MomentSegSam2.decode_clip` / :meth:`MomentSegSam2.decode_prompted_clip`
  decode training clips with it.

The per-frame path (``track_step`` and ``_run_single_frame_inference``, and the mask-decoder pass) follows
transformers 5.24.0 (pinned in pyproject), whose session layout and private helpers it reuses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Sam2VideoConfig, Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import (
    Sam2VideoInferenceSession,
    Sam2VideoSegmentationOutput,
)

from momentseg.sam2.config import (
    CLAMP_NO_OBJECT_MASKS,
    LANGUAGE_ON_TRACKED_FRAMES,
    NO_OBJECT_LOGIT,
    sam2_config_from_dict,
    sam2_config_to_dict,
    sized_sam2_config,
)

# mask prompts become mask logits -10 / +10 (as transformers' ``_use_mask_as_output``)
_MASK_SCALE, _MASK_BIAS = 20.0, -10.0


@dataclass
class SpatialPrior:
    """Additive mask logits for one object: ``maps`` (J, h, w), one per temporal patch of the ``[SEG]`` pass's
    context video, and ``frame_patch`` (T,) int: the map each video frame reads
    (:func:`momentseg.grounding.sampling.nearest_patches`)."""

    maps: torch.Tensor
    frame_patch: np.ndarray

    def at(self, frame_idx: int) -> torch.Tensor:
        return self.maps[int(self.frame_patch[frame_idx])]


class LanguageSession(Sam2VideoInferenceSession):
    """transformers' ``Sam2VideoInferenceSession`` that also holds one language embedding per object
    (``language_embeds``: object index → (P,) or (P+C0+1,) tensor) and optionally a :class:`SpatialPrior`
    (``language_priors``), set with :meth:`MomentSegSam2.set_language_embedding` and cleared with the other
    per-object inputs."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.language_embeds: dict[int, torch.Tensor] = {}
        self.language_priors: dict[int, SpatialPrior] = {}

    def reset_tracking_data(self) -> None:
        super().reset_tracking_data()
        self.language_embeds.clear()
        self.language_priors.clear()

    def reset_inference_session(self) -> None:
        super().reset_inference_session()
        self.language_embeds.clear()
        self.language_priors.clear()


class MomentSegSam2(Sam2VideoModel):
    """``Sam2VideoModel`` with a language prompt per object, conditioning frames by argument, the two behaviour
    options of the module docstring and clip decoding with autograd. Same parameters as ``Sam2VideoModel``."""

    def __init__(
        self,
        config,
        *,
        clamp_no_object_masks: bool = CLAMP_NO_OBJECT_MASKS,
        language_on_tracked_frames: bool = LANGUAGE_ON_TRACKED_FRAMES,
    ):
        super().__init__(config)
        self.clamp_no_object_masks = bool(clamp_no_object_masks)
        self.language_on_tracked_frames = bool(language_on_tracked_frames)

    @property
    def behaviour(self) -> dict[str, bool]:
        """The behaviour options, by the names ``MomentSegConfig`` and :func:`~momentseg.sam2.video.build_sam2`
        use."""
        return {
            "clamp_no_object_masks": self.clamp_no_object_masks,
            "language_on_tracked_frames": self.language_on_tracked_frames,
        }

    def at_size(self, image_size: int) -> MomentSegSam2:
        """This model for input frames of ``image_size`` × ``image_size``: a second ``MomentSegSam2`` whose config
        is this one's resized (:func:`~momentseg.sam2.config.sized_sam2_config`) and whose parameters and saved
        buffers are this model's own tensors (not copies: training or moving one moves the other's); only the
        buffers that follow the size (the memory attention's RoPE grid) are its own."""
        config = sam2_config_from_dict(sized_sam2_config(sam2_config_to_dict(self.config), image_size))
        other = MomentSegSam2(config, **self.behaviour)
        other.load_state_dict(self.state_dict(keep_vars=True), assign=True)
        return other.to(next(self.parameters()).device).train(self.training)

    # ------------------------------------------------------------------------------------------------ prompts
    @property
    def language_dims(self) -> tuple[int, int]:
        """(P, C0): the prompt-token width and the channels of the S/4 features a pixel query reads."""
        return int(self.prompt_encoder.hidden_size), int(self.config.mask_decoder_config.hidden_size) // 8

    def set_language_embedding(self, inference_session: LanguageSession, obj_id: int,
                               embedding: torch.Tensor | None, prior: SpatialPrior | None = None) -> None:
        """Prompt object ``obj_id`` of ``inference_session`` (registered if new) with ``embedding``: (P,) — a
        prompt token — or (P+C0+1,) — a token plus a pixel query — and optionally a spatial ``prior``; ``None``
        removes its prompt. Applies to every later decoding of that object (see the module docstring);
        gradients reach ``embedding`` and the prior's maps when the decoding runs with autograd."""
        if not isinstance(inference_session, LanguageSession):
            raise TypeError(f"a language prompt needs a LanguageSession (momentseg.sam2.video.new_session), "
                            f"got {type(inference_session).__name__}")
        obj_idx = inference_session.obj_id_to_idx(obj_id)
        inference_session.language_priors.pop(obj_idx, None)
        if embedding is None:
            inference_session.language_embeds.pop(obj_idx, None)
            return
        hidden, channels = self.language_dims
        coarse = channels + self.hidden_dim
        if embedding.ndim != 1 or embedding.shape[0] not in (hidden, hidden + channels + 1, hidden + coarse + 1):
            raise ValueError(f"a language embedding must be (P,) with P={hidden}, or P+C0+1={hidden + channels + 1} "
                             f"or P+C0+C+1={hidden + coarse + 1} with a pixel query, got {tuple(embedding.shape)}")
        inference_session.language_embeds[obj_idx] = embedding
        if prior is not None:
            if prior.maps.ndim != 3:
                raise ValueError(f"a spatial prior needs maps (J,h,w), got {tuple(prior.maps.shape)}")
            inference_session.language_priors[obj_idx] = prior

    def _language(self, inference_session, obj_idx: int, is_init_cond_frame: bool) -> torch.Tensor | None:
        """The language embedding this decoding of ``obj_idx`` gets, or None."""
        if not isinstance(inference_session, LanguageSession):
            return None
        embedding = inference_session.language_embeds.get(obj_idx)
        if embedding is None or not (is_init_cond_frame or self.language_on_tracked_frames):
            return None
        return embedding

    # ------------------------------------------------------------------------------------------------ frames
    @torch.inference_mode()
    def forward(
        self,
        inference_session: Sam2VideoInferenceSession,
        frame_idx: int | None = None,
        frame: torch.Tensor | None = None,
        reverse: bool = False,
        run_mem_encoder: bool = True,
        condition: Iterable[int] = (),
        **kwargs: Any,
    ) -> Sam2VideoSegmentationOutput:
        """:meth:`track_step` under ``torch.inference_mode`` (transformers' ``forward`` plus ``condition``)."""
        return self.track_step(inference_session, frame_idx, frame=frame, reverse=reverse,
                               run_mem_encoder=run_mem_encoder, condition=condition)

    def track_step(
        self,
        inference_session: Sam2VideoInferenceSession,
        frame_idx: int | None = None,
        *,
        frame: torch.Tensor | None = None,
        reverse: bool = False,
        run_mem_encoder: bool = True,
        condition: Iterable[int] = (),
    ) -> Sam2VideoSegmentationOutput:
        """Segment ``frame_idx`` for every object of the session (transformers' ``Sam2VideoModel.forward``,
        with autograd as the caller has it).

        ``condition``: object ids (registered if new) decoded on this frame as initial conditioning frames —
        without memory, stored in ``cond_frame_outputs`` — from the inputs they have there (points, a mask, or
        only their language embedding), as objects listed in ``session.obj_with_new_inputs`` are; the frame
        must not have been tracked yet for them. Other objects: a conditioning frame returns its stored output,
        any other frame is tracked with memory (``reverse``: the direction of travel). ``frame``: a new frame
        to append (streaming). Returns pred_masks (N_obj,1,S/4,S/4) logits and object_score_logits (N_obj,).
        """
        if frame is not None:
            frame_idx = inference_session.add_new_frame(frame, frame_idx)
        condition = tuple(condition)
        for obj_id in condition:
            inference_session.obj_id_to_idx(obj_id)
        num_objects = inference_session.get_obj_num()
        if num_objects == 0:
            raise ValueError("the session has no objects: add a prompt first")
        masks: list[torch.Tensor] = []
        scores: list[torch.Tensor] = []
        encode_objects, encode_masks, encode_scores, encode_from_prompt = [], [], [], []
        for obj_idx in range(num_objects):
            pred, score, is_init_cond_frame, reverse, memory = self._object_step(
                inference_session, obj_idx, frame_idx, condition, reverse, streaming=frame is not None
            )
            if memory is not None and run_mem_encoder and self.num_maskmem > 0:
                encode_objects.append(obj_idx)
                encode_masks.append(memory[0])
                encode_scores.append(score)
                encode_from_prompt.append(memory[1])
            masks.append(pred)
            scores.append(score.squeeze(-1))
            if not is_init_cond_frame:
                inference_session.frames_tracked_per_obj[obj_idx][frame_idx] = {"reverse": reverse}
        self._batch_encode_memories(
            inference_session=inference_session,
            frame_idx=frame_idx,
            objects_needing_memory_encoding=encode_objects,
            high_res_masks_for_memory=encode_masks,
            object_score_logits_for_memory=encode_scores,
            is_mask_from_pts_per_obj=encode_from_prompt,
        )
        return Sam2VideoSegmentationOutput(
            object_ids=inference_session.obj_ids.copy(),
            pred_masks=torch.cat(masks, dim=0) if len(masks) > 1 else masks[0],
            object_score_logits=torch.cat(scores, dim=0) if len(scores) > 1 else scores[0],
            frame_idx=frame_idx,
        )

    def _object_step(self, inference_session, obj_idx: int, frame_idx: int, condition: tuple, reverse: bool,
                     streaming: bool):
        """One object of :meth:`track_step`: its stored output on a conditioning frame, or a new decoding (stored
        in the session). Returns (pred_masks, object_score_logits, is_init_cond_frame, reverse — False once a
        conditioning frame is decoded, as transformers records it —, memory): memory is (high_res_masks,
        from_prompt) for the memory encoder, or None when nothing was decoded."""
        obj_id = inference_session.obj_idx_to_id(obj_idx)
        listed = obj_id in inference_session.obj_with_new_inputs
        new_inputs = listed or obj_id in condition
        stored = inference_session.output_dict_per_obj[obj_idx]["cond_frame_outputs"]
        if not new_inputs and frame_idx in stored:  # a conditioning frame: its stored output
            pred = inference_session.get_output(obj_idx, frame_idx, "pred_masks", is_conditioning_frame=True)
            score = inference_session.get_output(obj_idx, frame_idx, "object_score_logits",
                                                 is_conditioning_frame=True)
            return pred, score, True, reverse, None
        is_init_cond_frame, point_inputs, mask_inputs = False, None, None
        if new_inputs:
            is_init_cond_frame = frame_idx not in inference_session.frames_tracked_per_obj[obj_idx]
            if is_init_cond_frame:
                reverse = False  # as transformers: a conditioning frame is decoded (and recorded) forward
            point_inputs = inference_session.point_inputs_per_obj[obj_idx].get(frame_idx)
            mask_inputs = inference_session.mask_inputs_per_obj[obj_idx].get(frame_idx)
            if listed and (point_inputs is not None or mask_inputs is not None):
                inference_session.obj_with_new_inputs.remove(obj_id)
        out = self._run_single_frame_inference(
            inference_session=inference_session,
            frame_idx=frame_idx,
            obj_idx=obj_idx,
            batch_size=1,
            is_init_cond_frame=is_init_cond_frame,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            reverse=reverse,
            streaming=streaming,
        )
        inference_session.store_output(obj_idx, frame_idx, output_value=out, is_conditioning_frame=is_init_cond_frame)
        memory = (out["high_res_masks"], point_inputs is not None or mask_inputs is not None)
        return out["pred_masks"], out["object_score_logits"], is_init_cond_frame, reverse, memory

    def _run_single_frame_inference(
        self,
        inference_session: Sam2VideoInferenceSession,
        frame_idx: int,
        obj_idx: int,
        batch_size: int,
        is_init_cond_frame: bool,
        point_inputs: dict | None,
        mask_inputs: torch.Tensor | None,
        reverse: bool,
        prev_sam_mask_logits: torch.Tensor | None = None,
        streaming: bool = False,
    ) -> dict[str, Any]:
        """One object on one frame (transformers' method of the same name, with the object's language prompt):
        a mask prompt is the output (its object pointer decoded with the prompt); otherwise the frame's features,
        conditioned on memory unless it is an initial conditioning frame, go through the prompted mask decoder.
        Returns pred_masks, object_pointer, high_res_masks (for the memory encoder) and object_score_logits."""
        language = self._language(inference_session, obj_idx, is_init_cond_frame)
        prior = inference_session.language_priors.get(obj_idx) if language is not None else None
        prior = None if prior is None else prior.at(frame_idx)
        vision_feats, vision_pos = self._prepare_vision_features(inference_session, frame_idx, batch_size)
        if point_inputs is not None and mask_inputs is not None:
            raise ValueError("a frame cannot have both point and mask inputs for one object")
        maps = self.feature_maps(vision_feats)
        high_res = maps[:-1] or None
        # the frame's S/16 map before memory: a mask prompt's features, and what a coarse pixel query reads
        raw = maps[-1]
        if mask_inputs is not None:
            out = self._mask_as_output(raw, high_res, mask_inputs, language)
        else:
            pix_feat = self._prepare_memory_conditioned_features(
                inference_session=inference_session,
                frame_idx=frame_idx,
                obj_idx=obj_idx,
                is_initial_conditioning_frame=is_init_cond_frame,
                current_vision_features=vision_feats[-1],
                current_vision_positional_embeddings=vision_pos[-1],
                num_total_frames=inference_session.num_frames,
                track_in_reverse_time=reverse,
                streaming=streaming,
            )
            out = self._decode(
                high_res + [pix_feat],
                point_inputs,
                prev_sam_mask_logits,
                self._use_multimask(is_init_cond_frame, point_inputs),
                language,
                raw,
                prior,
            )
        return out

    # ------------------------------------------------------------------------------------------------ decoder
    def feature_maps(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Image features as transformers' video model holds them, (HW, B, C) per level (the last levels of
        ``backbone_feature_sizes``, S/16 last), as maps (B, C, H, W)."""
        sizes = self.backbone_feature_sizes[len(self.backbone_feature_sizes) - len(feats):]
        return [f.permute(1, 2, 0).reshape(f.shape[1], f.shape[2], *size) for f, size in zip(feats, sizes, strict=True)]

    def _prompts(self, features: torch.Tensor, point_inputs: dict | None, mask_inputs: torch.Tensor | None,
                 language: torch.Tensor | None):
        """The prompt encoder's (sparse, dense) embeddings for points (else one padding point) and a dense mask
        prompt, the language token appended to the sparse ones; also the pixel query (or None) and the object
        count."""
        batch_size, device, dtype = features.shape[0], features.device, features.dtype
        if point_inputs is not None:
            points, labels = point_inputs["point_coords"], point_inputs["point_labels"]
            num_objects = points.shape[1]
        else:
            points = torch.zeros(batch_size, 1, 1, 2, dtype=dtype, device=device)
            labels = -torch.ones(batch_size, 1, 1, dtype=torch.int32, device=device)
            num_objects = mask_inputs.shape[1] if mask_inputs is not None else 1
        if mask_inputs is not None and mask_inputs.shape[-2:] != self.prompt_encoder.mask_input_size:
            mask_inputs = F.interpolate(mask_inputs.float(), size=self.prompt_encoder.mask_input_size,
                                        align_corners=False, mode="bilinear", antialias=True).to(mask_inputs.dtype)
        sparse, dense = self.prompt_encoder(
            input_points=points, input_labels=labels, input_boxes=None, input_masks=mask_inputs
        )
        hidden = sparse.shape[-1]
        query = None
        if language is not None:
            token = language[:hidden].to(sparse.dtype).view(1, 1, 1, hidden)
            sparse = torch.cat([sparse, token.expand(sparse.shape[0], sparse.shape[1], 1, hidden)], dim=2)
            query = language[hidden:] if language.shape[0] > hidden else None
        return sparse, dense, query, num_objects

    def _decode(
        self,
        image_embeddings: list[torch.Tensor],
        point_inputs: dict | None,
        mask_inputs: torch.Tensor | None,
        multimask_output: bool,
        language: torch.Tensor | None,
        raw_embedding: torch.Tensor | None = None,
        prior: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The SAM heads on precomputed features ``image_embeddings`` (S/4, S/8, then the memory-conditioned
        S/16 map): prompt encoder (points, else one padding point; a dense mask prompt), the language token
        appended to the sparse prompts, mask decoder, the pixel query added to its masks (a query of C0 + C + 1
        values also reads ``raw_embedding``, the frame's S/16 map before memory; default the last of
        ``image_embeddings``; see :func:`pixel_query_features`), a spatial prior (h, w) of mask logits upsampled
        bilinearly and added, the "no object" clamp
        (``clamp_no_object_masks``), best-IoU mask when multimask, object pointer (the "no object" pointer when
        the score says absent). As transformers' ``_single_frame_forward`` for precomputed features."""
        batch_size = image_embeddings[-1].shape[0]
        sparse, dense, query, num_objects = self._prompts(image_embeddings[-1], point_inputs, mask_inputs, language)
        positional = self.get_image_wide_positional_embeddings().repeat(batch_size, 1, 1, 1)
        masks, iou_scores, sam_tokens, object_score_logits = self.mask_decoder(
            image_embeddings=image_embeddings[-1],
            image_positional_embeddings=positional,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            high_resolution_features=image_embeddings[:-1],
        )
        if query is not None:  # w · feature(x) + b over the S/4 features, on every returned mask
            channels = query.shape[0] - 1
            coarse = raw_embedding if raw_embedding is not None else image_embeddings[-1]
            feats = pixel_query_features(image_embeddings[0], coarse if channels > image_embeddings[0].shape[1] else None)
            match = torch.einsum("bchw,c->bhw", feats, query[:channels].to(feats.dtype))
            match = match + query[channels].to(feats.dtype)
            masks = masks + match[:, None, None].to(masks.dtype)
        if prior is not None:
            up = F.interpolate(prior[None, None].float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
            masks = masks + up[0, 0].to(masks.dtype)
        appearing = object_score_logits > 0
        if self.clamp_no_object_masks:
            masks = torch.where(appearing[:, None, None], masks, NO_OBJECT_LOGIT)
        high_res_all = F.interpolate(masks.squeeze(1).float(), size=(self.image_size, self.image_size),
                                     mode="bilinear", align_corners=False).unsqueeze(1).to(masks.dtype)
        sam_token = sam_tokens[:, :, 0]
        if multimask_output:  # the mask with the highest predicted IoU
            best = torch.argmax(iou_scores, dim=-1)
            batch_idx = torch.arange(batch_size, device=high_res_all.device)
            object_idx = torch.arange(num_objects, device=high_res_all.device)
            low_res_masks = masks[batch_idx, object_idx, best]
            high_res_masks = high_res_all[batch_idx, object_idx, best]
            if sam_tokens.size(2) > 1:
                sam_token = sam_tokens[batch_idx, object_idx, best]
        else:
            low_res_masks, high_res_masks = masks[:, :, 0], high_res_all[:, :, 0]
        pointer = self.object_pointer_proj(sam_token)
        present = appearing.to(pointer.dtype)
        pointer = present * pointer
        pointer = pointer + (1 - present) * self.no_object_pointer
        return {
            "pred_masks": low_res_masks,
            "object_pointer": pointer,
            "high_res_masks": high_res_masks,
            "object_score_logits": object_score_logits,
        }

    def _mask_as_output(
        self,
        backbone_features: torch.Tensor,
        high_res_features: list[torch.Tensor],
        mask_inputs: torch.Tensor,
        language: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """A mask prompt used as the frame's output (logits −10 / +10), its object pointer decoded from the mask
        as a dense prompt plus the language token (transformers' ``_use_mask_as_output``); "present" iff the
        mask has a positive pixel."""
        dtype = backbone_features[0].dtype
        mask = mask_inputs.to(dtype)
        if mask.shape[-2:] != (self.image_size, self.image_size):
            mask = F.interpolate(mask.float(), size=(self.image_size, self.image_size), align_corners=False,
                                 mode="bilinear", antialias=True).to(mask_inputs.dtype)
        high_res_masks = mask * _MASK_SCALE + _MASK_BIAS
        low_res_masks = F.interpolate(high_res_masks.float(), size=self.prompt_encoder.mask_input_size,
                                      align_corners=False, mode="bilinear", antialias=True).to(dtype)
        pointer = self._decode(high_res_features + [backbone_features], None, self.mask_downsample(mask.to(dtype)),
                               True, language)["object_pointer"]
        present = torch.any(mask_inputs.flatten(1).float() > 0.0, dim=1)[..., None].to(dtype)
        scores = _MASK_SCALE * present + _MASK_BIAS
        pointer = present * pointer
        pointer = pointer + (1 - present) * self.no_object_pointer
        return {
            "pred_masks": low_res_masks,
            "object_pointer": pointer,
            "high_res_masks": high_res_masks,
            "object_score_logits": scores.unsqueeze(-1),
        }

    # ------------------------------------------------------------------------------------------------ training
    def pixel_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The map a coarse pixel query reads (:func:`pixel_query_features` of the S/4 features and the S/16 image
        embedding) for preprocessed frames (B,3,S,S), with autograd as the caller has it: (B, C0 + C, S/4, S/4).
        The image-encoder pretraining task (per-pixel classes) trains it."""
        maps = self.feature_maps(self.get_image_features(pixel_values, return_dict=True).fpn_hidden_states)
        return pixel_query_features(maps[0], maps[-1])  # S/4 after conv_s0, and S/16

    def _clip_session(self, pixel_values: torch.Tensor) -> LanguageSession:
        """A session over a short clip (K,3,S,S) whose frames' image features are computed in one batch (with
        autograd when enabled) and seeded into the session cache (the session would otherwise encode per
        frame)."""
        k = pixel_values.shape[0]
        session = new_session(self, pixel_values, pixel_values.shape[-2], pixel_values.shape[-1], cache_size=k)
        feats = self.get_image_features(pixel_values.to(session.dtype), return_dict=True)
        for i in range(k):
            session.cache.cache_vision_features(
                i,
                {
                    "vision_feats": [f[:, i : i + 1] for f in feats.fpn_hidden_states],
                    "vision_pos_embeds": [p[:, i : i + 1] for p in feats.fpn_position_encoding],
                },
            )
        return session

    def decode_clip(self, pixel_values: torch.Tensor, embedding: torch.Tensor, cond_frames=(0,),
                    prior: torch.Tensor | None = None):
        """Segment a short clip with gradients, exactly as inference would: frames in ``cond_frames`` are decoded
        from the language prompt alone as conditioning frames; the others, in order, with memory attention over
        the earlier frames' memories (memory encoder outputs, object pointers) plus the language prompt when
        ``language_on_tracked_frames``.

        pixel_values: (K,3,S,S) preprocessed frames; embedding: (P,) or (P+C0+1,) language prompt; prior:
        optional (K,h,w) mask logits added on each frame (the module docstring's spatial prior).
        Returns (mask_logits (K,S/4,S/4), object_score_logits (K,)), differentiable w.r.t. the embedding and the
        SAM2 parameters (mask decoder, memory attention/encoder, object pointer projection, and the image
        encoder).

        SAM2 is switched to eval mode during the call (no memory-attention dropout, inference-time
        object-pointer selection) and restored afterwards, so the trained path is the one inference runs.
        Frame 0 must be a conditioning frame (SAM2 needs a conditioning memory before tracking).
        """
        cond = sorted({int(c) for c in cond_frames})
        if not cond or cond[0] != 0:
            raise ValueError("decode_clip needs frame 0 among cond_frames")
        session = self._clip_session(pixel_values)
        self.set_language_embedding(session, 0, embedding, None if prior is None else
                                    SpatialPrior(prior, np.arange(pixel_values.shape[0])))
        was_training = self.training
        self.eval()
        masks, scores = [], []
        try:
            for i in range(pixel_values.shape[0]):
                out = self.track_step(session, i, condition=(0,) if i in cond else ())
                masks.append(out.pred_masks[0, 0])
                scores.append(out.object_score_logits.reshape(-1)[0])
        finally:
            self.train(was_training)
        return torch.stack(masks), torch.stack(scores)

    def decode_prompted_clip(self, pixel_values: torch.Tensor, prompts: list[dict]):
        """SAM2's own task with gradients: objects are prompted on some frames and tracked with memory through
        the clip, through the per-frame code inference runs (:meth:`track_step`).

        pixel_values: (K,3,S,S) preprocessed frames. ``prompts``: dicts with ``obj`` (object index 0..N-1),
        ``frame`` and one of, in SAM2 input pixels (0..S): ``mask`` (S,S) float 0/1 (SAM2 uses it as that
        frame's output), ``points`` (n,2) xy with ``labels`` (n,) 1 positive / 0 negative, or ``box`` (4,)
        x0,y0,x1,y1. Every object needs a prompt on frame 0; a prompt on a later frame makes it another
        conditioning frame (decoded without memory), as extra keyframes are at inference.
        Returns (mask_logits (K,N,S/4,S/4), object_score_logits (K,N)); SAM2 runs in eval mode during the call.
        """
        objects = sorted({int(p["obj"]) for p in prompts})
        if not objects or objects != list(range(len(objects))):
            raise ValueError(f"prompted objects must be 0..N-1, got {objects}")
        if {int(p["obj"]) for p in prompts if int(p["frame"]) == 0} != set(objects):
            raise ValueError("decode_prompted_clip needs a frame-0 prompt for every object")
        session = self._clip_session(pixel_values)
        for obj in objects:
            session.obj_id_to_idx(obj)
        by_frame: dict[int, list[int]] = {}
        for prompt in prompts:
            obj, frame = int(prompt["obj"]), int(prompt["frame"])
            by_frame.setdefault(frame, []).append(obj)
            if "mask" in prompt:
                mask = torch.as_tensor(prompt["mask"], dtype=torch.float32)[None, None]
                session.add_mask_inputs(obj, frame, mask)
                continue
            if "box" in prompt:
                coords = torch.as_tensor(prompt["box"], dtype=torch.float32).reshape(2, 2)
                labels = torch.tensor([2, 3], dtype=torch.int32)
            else:
                coords = torch.as_tensor(prompt["points"], dtype=torch.float32).reshape(-1, 2)
                labels = torch.as_tensor(prompt["labels"], dtype=torch.int32).reshape(-1)
            session.add_point_inputs(obj, frame, {"point_coords": coords[None, None],
                                                  "point_labels": labels[None, None]})
        was_training = self.training
        self.eval()
        masks, scores = [], []
        try:
            for i in range(pixel_values.shape[0]):
                out = self.track_step(session, i, condition=by_frame.get(i, ()))
                masks.append(out.pred_masks[:, 0])
                scores.append(out.object_score_logits.reshape(-1))
        finally:
            self.train(was_training)
        return torch.stack(masks), torch.stack(scores)


def pixel_query_features(fine: torch.Tensor, coarse: torch.Tensor | None = None) -> torch.Tensor:
    """The map a pixel query reads: SAM2's S/4 features ``fine`` (B, C0, S/4, S/4), and with ``coarse`` (the
    S/16 image embedding (B, C, S/16, S/16)) that map upsampled bilinearly to S/4 and appended — (B, C0 + C, S/4,
    S/4). SAM2's FPN gives the S/4 level no top-down path, so alone it sees little beyond a few pixels (what
    shape a pixel belongs to needs the S/16 context: BENCHMARKS.md, "Round 3")."""
    if coarse is None:
        return fine
    up = F.interpolate(coarse.to(fine.dtype), size=fine.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([fine, up], dim=1)


def build_sam2(
    cfg,
    *,
    clamp_no_object_masks: bool = CLAMP_NO_OBJECT_MASKS,
    language_on_tracked_frames: bool = LANGUAGE_ON_TRACKED_FRAMES,
):
    """A randomly initialised :class:`~momentseg.sam2.video.MomentSegSam2` (a transformers
    ``Sam2VideoModel``) from a ``Sam2VideoConfig`` or a plain dict, with the given behaviour options (image and
    prompt position encodings shared, as in original SAM2)."""
    config = cfg if isinstance(cfg, Sam2VideoConfig) else sam2_config_from_dict(cfg)
    model = MomentSegSam2(
        config,
        clamp_no_object_masks=clamp_no_object_masks,
        language_on_tracked_frames=language_on_tracked_frames,
    )
    # original SAM2 has one random-Fourier position encoding for image and prompts; a random HF init draws two
    with torch.no_grad():
        model.shared_image_embedding.positional_embedding.copy_(
            model.prompt_encoder.shared_embedding.positional_embedding
        )
    return model


def new_session(sam2, pixel_values: torch.Tensor, video_height: int, video_width: int, cache_size: int = 1):
    """A :class:`~momentseg.sam2.video.LanguageSession` (transformers' ``Sam2VideoInferenceSession`` that
    also holds language prompts) over preprocessed frames (N,3,S,S) (see :func:`preprocess_for_sam2`), on the
    device and in the dtype of ``sam2``.

    ``cache_size``: how many frames' vision features the session keeps (1 = recompute when revisiting).
    """
    device = next(sam2.parameters()).device
    dtype = next(sam2.parameters()).dtype
    return LanguageSession(
        video=pixel_values,
        video_height=int(video_height),
        video_width=int(video_width),
        inference_device=device,
        inference_state_device=device,
        video_storage_device=pixel_values.device,
        dtype=dtype,
        max_vision_features_cache_size=cache_size,
    )
