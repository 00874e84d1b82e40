"""The MomentSeg model: Qwen2.5-VL + SAM2 (transformers backbones) with the [FIND] and [SEG] heads.

Sequences follow Qwen2.5-VL's chat structure::

    <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n
    [<|vision_start|><|video_pad|>×n<|vision_end|>] [<|vision_start|><|image_pad|>×n<|vision_end|>]×K
    {prompt}<|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>

Training and inference both use teacher forcing: the answer template ("It is [FIND]." / "It is [SEG].") is
part of the sequence and the hidden state at the [FIND] / [SEG] position is read from one forward pass
(no ``generate``). The returned answer text is that template (documented choice: with one answer template
per task, the generated text carries no extra information).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from momentseg.model.config import MomentSegConfig, preset_config
from momentseg.model.preprocess import VisionLayout, image_inputs, num_tokens, video_inputs
from momentseg.model.sam2 import build_sam2, preprocess_for_sam2
from momentseg.model.tokenizer import (
    IM_END,
    IM_START,
    build_word_tokenizer,
    default_vocabulary,
    token_ids,
)

#: Initial std of the query bag-of-words table (``pool_query``). At random init the LLM's [SEG] / [FIND] state is
#: nearly the same for every query (norm ≈ 11, cosine ≈ 0.99 between texts), so with the default N(0, 1) table
#: the heads' outputs for different texts start at cosine ≈ 0.88; a SAM2 decoder given near-identical prompt
#: tokens (≥ 0.9) settles into segmenting every object and does not leave it (measured on an image task with
#: learned tokens: IoU 0.05 after 200 steps at cosine 0.9, 0.33 at 0.6, 0.42 at 0.35). With std 6 the [SEG]
#: outputs of different texts start at cosine ≈ 0.5.
QUERY_BAG_INIT_STD = 6.0


@dataclass
class TSGSample:
    """One temporal-grounding training sample: low-res frames (T,h,w,3) uint8, a query, GT frames (T,) bool."""

    frames: np.ndarray
    query: str
    positive: np.ndarray


@dataclass
class RefVOSSample:
    """One RefVOS training sample: low-res context (Tc,h,w,3) uint8 (Tc may be 0), K consecutive high-res
    keyframes (K,H,W,3) uint8 with GT masks (K,H,W) bool, and the expression."""

    context: np.ndarray
    keyframes: np.ndarray
    query: str
    masks: np.ndarray


@dataclass
class TrackSample:
    """One SAM2 pretraining sample (SAM2's own task): a clip (T,H,W,3) uint8, the visible masks (N,T,H,W) bool
    of N objects, and prompts ``{"obj": i, "frame": t, ...}`` in frame pixels — every object on frame 0, some
    on a later frame too: ``"mask": True`` (the GT mask of that frame), ``"points": (n,2) xy, "labels": (n,)``
    or ``"box": (x0, y0, x1, y1)``."""

    frames: np.ndarray
    masks: np.ndarray
    prompts: list[dict]


@dataclass
class CaptionSample:
    """One vision–language pretraining sample: low-res frames (T,h,w,3) uint8 sampled at ``config.fps``, a
    question and its answer (next-token loss on the answer)."""

    frames: np.ndarray
    question: str
    answer: str


@dataclass
class _Sequence:
    input_ids: torch.Tensor  # (L,) long
    mm_types: torch.Tensor  # (L,) int: 0 text, 1 image token, 2 video token
    answer_start: int  # index of the first answer token
    query_span: tuple[int, int] = (0, 0)  # [start, end) of the query's tokens in input_ids


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    """Linear(d,d) → ReLU → Linear(d,out) (indices 0 and 2 hold weights, as Sa2VA's text_hidden_fcs)."""
    return nn.Sequential(nn.Linear(d_in, d_in), nn.ReLU(), nn.Linear(d_in, d_out))


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over frames of 1 − (2·Σpt + 1)/(Σp + Σt + 1), p = sigmoid(logits); logits/target (K,H,W)."""
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


class MomentSegModel(nn.Module):
    """Qwen2.5-VL + SAM2 with a [FIND] head (frame–query similarity) and a [SEG] head (SAM2 prompt)."""

    def __init__(self, config: MomentSegConfig, tokenizer=None, qwen=None, sam2=None):
        """Random backbones from ``config`` unless ``qwen`` (Qwen2_5_VLForConditionalGeneration) / ``sam2``
        (:class:`~momentseg.model.sam2_video.MomentSegSam2`) are given (they must match the config)."""
        super().__init__()
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        self.config = config
        self.tokenizer = tokenizer
        self.qwen = qwen if qwen is not None else Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**config.qwen))
        if sam2 is None:
            sam2 = build_sam2(config.sam2, **config.sam2_behaviour)
        else:
            from momentseg.model.sam2_video import MomentSegSam2

            if not isinstance(sam2, MomentSegSam2):
                raise TypeError(f"sam2 must be a MomentSegSam2 (e.g. MomentSegSam2.from_pretrained), "
                                f"got {type(sam2).__name__}")
            if sam2.behaviour != config.sam2_behaviour:
                raise ValueError(f"the given SAM2 behaves as {sam2.behaviour}, the config says "
                                 f"{config.sam2_behaviour}")
        self.sam2 = sam2
        self.find_head = _mlp(config.hidden_size, config.find_dim)
        self.seg_head = _mlp(config.hidden_size, config.seg_dim)
        if config.pool_query:  # bag-of-words embedding of the query's tokens, read by both heads
            vocab = int(config.qwen["text_config"]["vocab_size"])
            self.query_bag = nn.EmbeddingBag(vocab, config.hidden_size, mode="mean")
            nn.init.normal_(self.query_bag.weight, std=QUERY_BAG_INIT_STD)
        if config.seg_pixel_query:  # the pixel query starts at zero: no change to SAM2's masks
            with torch.no_grad():
                self.seg_head[2].weight[config.prompt_dim :].zero_()
                self.seg_head[2].bias[config.prompt_dim :].zero_()
        vc = config.qwen["vision_config"]
        self.layout = VisionLayout(
            patch_size=int(vc.get("patch_size", 14)),
            merge_size=int(vc.get("spatial_merge_size", 2)),
            temporal_patch_size=int(vc.get("temporal_patch_size", 2)),
            image_mean=tuple(config.image_mean),
            image_std=tuple(config.image_std),
        )
        self._ids = self._check_tokenizer(tokenizer) if tokenizer is not None else None

    # ------------------------------------------------------------------ construction
    def _check_tokenizer(self, tokenizer) -> dict[str, int]:
        ids = token_ids(tokenizer)
        q = self.config.qwen
        expected = {
            "image_pad": q["image_token_id"],
            "video_pad": q["video_token_id"],
            "vision_start": q["vision_start_token_id"],
            "vision_end": q["vision_end_token_id"],
        }
        for key, want in expected.items():
            if ids[key] != want:
                raise ValueError(f"tokenizer id of {key} is {ids[key]}, the Qwen config says {want}")
        vocab = int(q["text_config"]["vocab_size"])
        if len(tokenizer) > vocab:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the embedding table only {vocab}")
        return ids

    @classmethod
    def build(cls, config: MomentSegConfig, tokenizer=None) -> MomentSegModel:
        """A randomly initialised model. For the tiny preset with no tokenizer, the default word tokenizer is
        built (it must match the config's vocabulary)."""
        if tokenizer is None and config.preset == "tiny":
            tokenizer = build_word_tokenizer(default_vocabulary(), _template_texts(config))
        model = cls(config, tokenizer)
        if config.preset == "tiny":
            # From-scratch SAM2: transformers initialises every conv / linear weight from N(0, 0.02), a fine-tuning
            # init under which activations shrink layer by layer (measured: the S/4 features the mask decoder and
            # the pixel query read have std 0.003). PyTorch's default (fan-in scaled) init keeps them at
            # std 0.2–0.6; on a one-frame "the <colour> shape" probe, Dice loss after 150 steps fell to
            # 0.36 instead of 0.65.
            for module in model.sam2.modules():
                if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    module.reset_parameters()
            # Prior "object present" (score logit +2). transformers clamps the masks of frames scored absent to
            # -1024, which would block all mask gradients at the start of training.
            with torch.no_grad():
                model.sam2.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(2.0)
        return model

    @classmethod
    def tiny(cls, words=None, sam2_image_size: int = 128) -> MomentSegModel:
        """A random tiny-preset model with a word tokenizer over ``words`` (default: the synthetic vocabulary)."""
        return cls.random("tiny", words, sam2_image_size)

    @classmethod
    def random(cls, preset: str, words=None, sam2_image_size: int | None = None) -> MomentSegModel:
        """A randomly initialised model of ``preset`` (``tiny`` / ``3b`` / ``7b``) with a word tokenizer over
        ``words`` (default: the synthetic vocabulary) and the prompt templates — no tokenizer files needed, e.g.
        to measure the cost of a real-size model (build it under ``with torch.device("cuda"):`` to initialise it
        on the GPU). ``sam2_image_size``: the preset's default when None."""
        words = default_vocabulary() if words is None else list(words)
        probe = preset_config(preset, build_word_tokenizer([]))  # only for the prompt templates
        tokenizer = build_word_tokenizer(words, _template_texts(probe))
        return cls.build(preset_config(preset, tokenizer, sam2_image_size=sam2_image_size), tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MomentSegModel:
        """Load a checkpoint folder written by :meth:`save_pretrained` (mismatch → CheckpointError)."""
        from momentseg.model.checkpoint import load_checkpoint

        return load_checkpoint(path)

    def save_pretrained(self, path: str | Path) -> None:
        """Write config.json, model.safetensors and the tokenizer files to folder ``path`` (atomically)."""
        from momentseg.model.checkpoint import save_checkpoint

        save_checkpoint(self, path)

    def load_sam2_from(self, path: str | Path) -> None:
        """Replace this model's SAM2 weights by those of the checkpoint folder ``path`` (e.g. the world-pretrained
        tiny SAM2); its SAM2 config must equal this model's (CheckpointError / ValueError otherwise)."""
        source = type(self).from_pretrained(path)
        if source.config.sam2 != self.config.sam2:
            raise ValueError(f"{path}: its SAM2 config differs from this model's; cannot take its SAM2 weights")
        self.sam2.load_state_dict(source.sam2.state_dict(), strict=True)

    @classmethod
    def from_base(cls, qwen_dir: str | Path, sam2_dir: str | Path, preset: str = "3b") -> MomentSegModel:
        """Qwen2.5-VL-Instruct + SAM2 weights from local HF-format folders; heads randomly initialised."""
        from momentseg.model.checkpoint import build_from_base

        return build_from_base(qwen_dir, sam2_dir, preset)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ sequences
    def _require_tokenizer(self) -> dict[str, int]:
        if self._ids is None:
            raise ValueError("this model has no tokenizer")
        return self._ids

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _sequence(self, vision: list[tuple[int, int]], template: str, query: str, answer: str) -> _Sequence:
        """vision: (mm type 1 image / 2 video, number of placeholder tokens) parts, in order; ``template``
        holds ``{query}``."""
        prompt = template.format(query=query)
        ids = self._require_tokenizer()
        c = self.config
        parts: list[tuple[list[int], int]] = [
            (self._encode(f"{IM_START}system\n{c.system_prompt}{IM_END}\n{IM_START}user\n"), 0)
        ]
        for kind, n in vision:
            pad = ids["image_pad"] if kind == 1 else ids["video_pad"]
            parts += [([ids["vision_start"]], 0), ([pad] * n, kind), ([ids["vision_end"]], 0)]
        before = sum(len(p) for p, _ in parts)
        parts.append((self._encode(f"{prompt}{IM_END}\n{IM_START}assistant\n"), 0))
        answer_start = sum(len(p) for p, _ in parts)
        # the query's tokens: the tokens that encoding the text up to the end of the query adds
        pre = template.split("{query}")[0]
        start = before + len(self._encode(pre))
        end = max(start + 1, before + len(self._encode(pre + query)))
        parts.append((self._encode(f"{answer}{IM_END}"), 0))
        input_ids = torch.tensor([t for p, _ in parts for t in p], dtype=torch.long)
        mm = torch.tensor([k for p, k in parts for _ in p], dtype=torch.int32)
        return _Sequence(input_ids, mm, answer_start, (start, min(end, answer_start)))

    def _head_input(self, hidden: torch.Tensor, seq: _Sequence, token: str, dtype) -> torch.Tensor:
        """What the [FIND] / [SEG] head reads: the token's hidden state, plus the bag-of-words embedding of the
        query's tokens (``pool_query``)."""
        h = hidden[self._position(seq, token)].to(dtype)
        if self.config.pool_query:
            ids = seq.input_ids[seq.query_span[0] : seq.query_span[1]].to(h.device)
            h = h + self.query_bag(ids[None])[0].to(dtype)
        return h

    def _position(self, seq: _Sequence, token: str) -> int:
        tid = self._require_tokenizer()[token]
        hits = (seq.input_ids[seq.answer_start :] == tid).nonzero()
        if len(hits) == 0:
            raise ValueError(f"the answer template has no {token} token")
        return seq.answer_start + int(hits[0, 0])

    def _forward_llm(self, seq: _Sequence, video=None, images=None) -> torch.Tensor:
        """Last-layer hidden states (L, d). video: (pixel_values_videos, video_grid_thw); images: (pixel_values,
        image_grid_thw)."""
        dev = self.device
        kwargs = {}
        if video is not None:
            kwargs["pixel_values_videos"] = video[0].to(dev)
            kwargs["video_grid_thw"] = video[1].to(dev)
            kwargs["second_per_grid_ts"] = torch.tensor(
                [self.layout.temporal_patch_size / self.config.fps], device=dev
            )
        if images is not None:
            kwargs["pixel_values"] = images[0].to(dev)
            kwargs["image_grid_thw"] = images[1].to(dev)
        out = self.qwen.model(
            input_ids=seq.input_ids[None].to(dev),
            mm_token_type_ids=seq.mm_types[None].to(dev),
            use_cache=False,
            **kwargs,
        )
        return out.last_hidden_state[0]

    def _lm_loss_terms(self, hidden: torch.Tensor, seq: _Sequence) -> tuple[torch.Tensor, int]:
        """Summed next-token cross-entropy over the answer tokens, and their count."""
        targets = seq.input_ids[seq.answer_start :].to(hidden.device)
        logits = self.qwen.lm_head(hidden[seq.answer_start - 1 : -1])
        return F.cross_entropy(logits.float(), targets, reduction="sum"), int(targets.numel())

    # ------------------------------------------------------------------ [FIND]
    def _tsg_forward(self, frames, query: str):
        c = self.config
        video = video_inputs(_as_uint8(frames), c.find_frame_size, self.layout)
        n_tok = num_tokens(video[1], self.layout)[0]
        seq = self._sequence([(2, n_tok)], c.prompt_tsg, query, c.answer_tsg)
        hidden = self._forward_llm(seq, video=video)
        logits = self._similarity(hidden, seq, video[1], int(frames.shape[0]))
        return logits, hidden, seq

    def _similarity(self, hidden: torch.Tensor, seq: _Sequence, grid_thw: torch.Tensor, n_frames: int):
        """cos(find_head([FIND]), find_head(video tokens) pooled per temporal patch, interpolated to frames)/τ."""
        head_dtype = self.find_head[0].weight.dtype
        find = self.find_head(self._head_input(hidden, seq, "find", head_dtype))  # (C,)
        video_pos = (seq.mm_types == 2).nonzero()[:, 0].to(hidden.device)
        vid = self.find_head(hidden[video_pos].to(head_dtype))  # (t·h·w/m², C)
        t = int(grid_thw[0, 0])
        vid = vid.reshape(t, -1, vid.shape[-1]).mean(1)  # (t, C)
        # temporal patch j covers frames [tps·j, tps·j + tps); linear interpolation between patch centres
        padded = t * self.layout.temporal_patch_size
        per_frame = F.interpolate(vid.T[None].float(), size=padded, mode="linear", align_corners=False)[0].T
        per_frame = per_frame[:n_frames]
        if self.config.find_align_corners:  # the released MomentSeg's curve (see model.release)
            per_frame = F.interpolate(vid.T[None].float(), size=n_frames, mode="linear", align_corners=True)[0].T
        cos = F.cosine_similarity(per_frame, find.float()[None], dim=-1)
        return cos / self.config.temperature

    @torch.no_grad()
    def find_logits(self, frames, query: str) -> torch.Tensor:
        """Per-frame logits cos/τ (T,) of ``query`` against low-res ``frames`` (T,H,W,3) uint8; no sigmoid,
        no smoothing. Frames are assumed sampled at ``config.fps``."""
        logits, _, _ = self._tsg_forward(frames, query)
        return logits.float().cpu()

    def forward_tsg(self, samples: list[TSGSample]) -> dict[str, torch.Tensor]:
        """Training loss for TSG samples: loss = w_find·find_loss + w_lm·lm_loss (components unweighted).
        find_loss = BCE-with-logits per frame (positives weighted ``find_pos_weight``), mean over frames and
        samples; lm_loss = mean cross-entropy over all answer tokens."""
        c = self.config
        find_losses, lm_sum, lm_n = [], 0.0, 0
        for s in samples:
            positive = torch.as_tensor(np.asarray(s.positive, dtype=bool))
            if positive.shape != (s.frames.shape[0],):
                raise ValueError(f"positive has shape {tuple(positive.shape)}, frames {s.frames.shape[0]}")
            logits, hidden, seq = self._tsg_forward(s.frames, s.query)
            target = positive.to(logits.device, torch.float32)
            weight = 1.0 + (c.find_pos_weight - 1.0) * target
            find_losses.append(F.binary_cross_entropy_with_logits(logits, target, weight=weight))
            terms, n = self._lm_loss_terms(hidden, seq)
            lm_sum, lm_n = lm_sum + terms, lm_n + n
        find_loss = torch.stack(find_losses).mean()
        lm_loss = lm_sum / max(lm_n, 1)
        loss = c.find_loss_weight * find_loss + c.lm_loss_weight * lm_loss
        return {"loss": loss, "find_loss": find_loss.detach(), "lm_loss": lm_loss.detach()}

    # ------------------------------------------------------------------ [SEG]
    def _seg_forward(self, keyframes, query: str, context=None):
        c = self.config
        vision, video, images = [], None, None
        if context is not None and len(context) > 0:
            video = video_inputs(_as_uint8(context), c.context_frame_size, self.layout)
            vision.append((2, num_tokens(video[1], self.layout)[0]))
        images = image_inputs(_as_uint8(keyframes), c.seg_frame_size, self.layout)
        vision += [(1, n) for n in num_tokens(images[1], self.layout)]
        seq = self._sequence(vision, c.prompt_seg, query, c.answer_seg)
        hidden = self._forward_llm(seq, video=video, images=images)
        head_dtype = self.seg_head[0].weight.dtype
        emb = self.seg_head(self._head_input(hidden, seq, "seg", head_dtype))
        if c.seg_pixel_query:  # the pixel query's gain (config.pixel_query_scale)
            p = c.prompt_dim
            emb = torch.cat([emb[:p], emb[p:] * c.pixel_query_scale])
        return emb, hidden, seq

    @torch.no_grad()
    def seg_embedding(self, keyframes, query: str, context=None) -> tuple[torch.Tensor, str]:
        """The SAM2 prompt embedding (P,) of ``query`` given high-res ``keyframes`` (K,H,W,3) uint8 (Qwen
        images) and optional low-res ``context`` (Tc,H,W,3) uint8 (Qwen video); and the answer text."""
        emb, _, _ = self._seg_forward(keyframes, query, context)
        return emb, self.config.answer_seg

    def forward_refvos(self, samples: list[RefVOSSample]) -> dict[str, torch.Tensor]:
        """Training loss for RefVOS samples. The [SEG] embedding prompts SAM2 on the K keyframes decoded as a
        clip (``self.sam2.decode_clip``: frame 0 conditioning, later frames with memory, when
        ``config.train_memory_path``; else each frame independently). Mask logits (S/4)² are upsampled
        bilinearly to the GT size. loss = w_bce·mask_bce + w_dice·mask_dice + w_lm·lm_loss +
        w_obj·object_bce (components unweighted)."""
        c = self.config
        bces, dices, objs, lm_sum, lm_n = [], [], [], 0.0, 0
        sam_dtype = next(self.sam2.parameters()).dtype
        for s in samples:
            masks = torch.as_tensor(np.asarray(s.masks, dtype=bool))
            k, h, w = masks.shape
            if s.keyframes.shape[:3] != (k, h, w):
                raise ValueError(f"masks {tuple(masks.shape)} do not match keyframes {s.keyframes.shape[:3]}")
            emb, hidden, seq = self._seg_forward(s.keyframes, s.query, s.context)
            px = preprocess_for_sam2(_as_uint8(s.keyframes), c.sam2_image_size).to(self.device, sam_dtype)
            cond = (0,) if c.train_memory_path else tuple(range(k))
            low, scores = self.sam2.decode_clip(px, emb.to(sam_dtype), cond_frames=cond)
            logits = F.interpolate(low[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            # frames scored "no object" come back at -1024: clamp the logged loss value (no gradient there anyway)
            logits = logits.clamp(min=-32.0)
            target = masks.to(logits.device, torch.float32)
            bces.append(F.binary_cross_entropy_with_logits(logits, target))
            dices.append(dice_loss(logits, target))
            present = target.flatten(1).amax(1)
            objs.append(F.binary_cross_entropy_with_logits(scores.float(), present))
            terms, n = self._lm_loss_terms(hidden, seq)
            lm_sum, lm_n = lm_sum + terms, lm_n + n
        mask_bce, mask_dice = torch.stack(bces).mean(), torch.stack(dices).mean()
        object_bce = torch.stack(objs).mean()
        lm_loss = lm_sum / max(lm_n, 1)
        loss = (
            c.mask_bce_weight * mask_bce
            + c.mask_dice_weight * mask_dice
            + c.lm_loss_weight * lm_loss
            + c.object_score_loss_weight * object_bce
        )
        return {
            "loss": loss,
            "mask_bce": mask_bce.detach(),
            "mask_dice": mask_dice.detach(),
            "lm_loss": lm_loss.detach(),
            "object_bce": object_bce.detach(),
        }


    # ------------------------------------------------------------------ pretraining tasks
    def forward_track(self, samples: list[TrackSample]) -> dict[str, torch.Tensor]:
        """SAM2 pretraining loss (no language): each object is prompted on frame 0 (mask, box or points) and
        tracked with memory through the clip (``self.sam2.decode_prompted_clip``). Mask BCE and Dice over every
        (object, frame) the decoder produced (a mask prompt's own frame is the prompt, so it is left out),
        object-score BCE against "visible in that frame". loss = w_bce·mask_bce + w_dice·mask_dice +
        w_obj·object_bce."""
        c = self.config
        size = c.sam2_image_size
        sam_dtype = next(self.sam2.parameters()).dtype
        bces, dices, objs = [], [], []
        for s in samples:
            masks = torch.as_tensor(np.asarray(s.masks, dtype=bool))
            n, t, h, w = masks.shape
            if s.frames.shape[:3] != (t, h, w):
                raise ValueError(f"track sample: frames {s.frames.shape[:3]} and masks {tuple(masks.shape)} differ")
            scale = torch.tensor([size / w, size / h])
            prompts = []
            keep = torch.ones(n, t, dtype=torch.bool)  # a mask prompt's own frame is the prompt: no loss there
            for p in s.prompts:
                obj, frame = int(p["obj"]), int(p["frame"])
                q: dict = {"obj": obj, "frame": frame}
                if "mask" in p:
                    q["mask"] = F.interpolate(masks[obj, frame][None, None].float(), size=(size, size),
                                              mode="nearest-exact")[0, 0]
                    keep[obj, frame] = False
                elif "box" in p:
                    q["box"] = torch.as_tensor(p["box"], dtype=torch.float32) * scale.repeat(2)
                else:
                    q["points"] = torch.as_tensor(np.asarray(p["points"]), dtype=torch.float32).reshape(-1, 2) * scale
                    q["labels"] = np.asarray(p["labels"])
                prompts.append(q)
            px = preprocess_for_sam2(_as_uint8(s.frames), size).to(self.device, sam_dtype)
            low, scores = self.sam2.decode_prompted_clip(px, prompts)  # (T,N,h',w'), (T,N)
            logits = F.interpolate(low.float(), size=(h, w), mode="bilinear", align_corners=False)
            logits = logits.transpose(0, 1).clamp(min=-32.0)  # (N,T,h,w); "no object" frames come back at -1024
            target = masks.to(logits.device, torch.float32)
            keep = keep.to(logits.device)
            lg, tg = logits[keep], target[keep]  # (M,h,w)
            bces.append(F.binary_cross_entropy_with_logits(lg, tg))
            dices.append(dice_loss(lg, tg))
            present = target.flatten(2).amax(2)  # (N,T)
            objs.append(F.binary_cross_entropy_with_logits(scores.T.float()[keep], present[keep]))
        mask_bce, mask_dice, object_bce = (torch.stack(x).mean() for x in (bces, dices, objs))
        loss = c.mask_bce_weight * mask_bce + c.mask_dice_weight * mask_dice + c.object_score_loss_weight * object_bce
        return {"loss": loss, "mask_bce": mask_bce.detach(), "mask_dice": mask_dice.detach(),
                "object_bce": object_bce.detach()}

    def _caption_sequence(self, frames, question: str, answer: str):
        video = video_inputs(_as_uint8(frames), self.config.find_frame_size, self.layout)
        seq = self._sequence([(2, num_tokens(video[1], self.layout)[0])], "{query}", question, answer)
        return seq, video

    def forward_caption(self, samples: list[CaptionSample]) -> dict[str, torch.Tensor]:
        """Vision–language pretraining loss: next-token cross-entropy over the answer tokens of each
        (video, question, answer), mean over all answer tokens. loss = w_lm·lm_loss."""
        lm_sum, lm_n = 0.0, 0
        for s in samples:
            seq, video = self._caption_sequence(s.frames, s.question, s.answer)
            terms, n = self._lm_loss_terms(self._forward_llm(seq, video=video), seq)
            lm_sum, lm_n = lm_sum + terms, lm_n + n
        lm_loss = lm_sum / max(lm_n, 1)
        return {"loss": self.config.lm_loss_weight * lm_loss, "lm_loss": lm_loss.detach()}

    @torch.no_grad()
    def answer(self, frames, question: str, max_tokens: int = 48) -> str:
        """Greedy answer to ``question`` about low-res ``frames`` (sampled at ``config.fps``), up to the end
        token (for probing the pretrained language model)."""
        seq, video = self._caption_sequence(frames, question, "")
        ids = seq.input_ids[: seq.answer_start].tolist()
        mm = seq.mm_types[: seq.answer_start].tolist()
        end = self.tokenizer.convert_tokens_to_ids(IM_END)
        out: list[int] = []
        for _ in range(max_tokens):
            step = _Sequence(torch.tensor(ids + out), torch.tensor(mm + [0] * len(out), dtype=torch.int32), 0)
            nxt = int(self.qwen.lm_head(self._forward_llm(step, video=video)[-1]).argmax())
            if nxt == end:
                break
            out.append(nxt)
        return self.tokenizer.decode(out)


def _template_texts(config: MomentSegConfig) -> list[str]:
    return [config.prompt_tsg, config.answer_tsg, config.prompt_seg, config.answer_seg, config.system_prompt]


def _as_uint8(frames) -> np.ndarray | torch.Tensor:
    if isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        return frames.cpu()
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {arr.dtype}")
    return arr
