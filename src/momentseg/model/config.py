"""``MomentSegConfig``: backbone configs (plain dicts), head sizes, frame sizes, prompts, loss weights; presets.

Presets:
- ``tiny``: CPU-sized random model for tests and the embedded demo model (word-level tokenizer).
- ``3b``: Qwen2.5-VL-3B-Instruct + SAM2.1-hiera-large shapes (1024² SAM2 input).
- ``7b``: Qwen2.5-VL-7B-Instruct + SAM2.1-hiera-large shapes.
Choices the method leaves open are config values here (see each field's comment).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from momentseg.errors import CheckpointError
from momentseg.model.pointing import LAYERS as POINTING_LAYERS
from momentseg.model.preprocess import CLIP_MEAN, CLIP_STD
from momentseg.model.tokenizer import token_ids
from momentseg.sam2.config import (
    CLAMP_NO_OBJECT_MASKS,
    LANGUAGE_ON_TRACKED_FRAMES,
    is_sam2_size,
    sam2_large_config,
    tiny_sam2_config,
)

TSG_PROMPT = (
    "Here is a low-resolution video you can refer to. Can you find the key frames range of the text query "
    "'{query}' in this video?"
)
TSG_ANSWER = "It is [FIND]."
SEG_PROMPT = "Please segment {query} in this video."
SEG_ANSWER = "It is [SEG]."
SYSTEM_PROMPT = "You are a helpful assistant."

PRESETS = ("tiny", "3b", "7b")


#: Fields that configs written before the loss weights moved to the training config still carry; read and ignored.
RETIRED_FIELDS = ("find_loss_weight", "mask_bce_weight", "mask_dice_weight", "lm_loss_weight",
                  "object_score_loss_weight")


@dataclass
class MomentSegConfig:
    """Everything needed to rebuild a :class:`~momentseg.model.momentseg.MomentSegModel` (saved as config.json)."""

    preset: str
    qwen: dict[str, Any]  # Qwen2_5_VLConfig fields (text_config / vision_config nested dicts)
    sam2: dict[str, Any]  # Sam2VideoConfig fields (sub-configs nested dicts)
    find_dim: int = 256  # [FIND] head output dim (method: 256)
    temperature: float = 0.07  # cos / τ
    find_frame_size: int = 140  # low-res [FIND] video: per-frame area ≤ size² (method: ~112–168 px)
    context_frame_size: int = 112  # low-res RefVOS context video (method: ≤ 112 px)
    seg_frame_size: int = 448  # high-res [SEG] keyframes given to Qwen as images (method: ~448²)
    fps: float = 1.0  # frame rate the low-res videos are sampled at; second_per_grid_ts = tps / fps
    find_max_frames: int = 100  # dense [FIND] pass: at most this many frames (uniform if longer; method: ≤ 100)
    context_frames: int = 50  # low-res uniform context frames given with the [SEG] keyframes (method: ≤ 50)
    prompt_tsg: str = TSG_PROMPT
    answer_tsg: str = TSG_ANSWER
    prompt_seg: str = SEG_PROMPT
    answer_seg: str = SEG_ANSWER
    system_prompt: str = SYSTEM_PROMPT
    # loss shape (the weights are the training config's, momentseg.train.config.LossConfig)
    find_pos_weight: float = 2.0  # [FIND] BCE: frames inside the moment count this many times
    # RefVOS training: True = keyframes decoded as a clip (frame 0 conditioning, then memory attention, like
    # inference propagation); False = every keyframe decoded independently as a conditioning frame (so too with a
    # sam2_track_size, whose pipeline decodes each keyframe alone before tracking).
    train_memory_path: bool = True
    # This project's addition for a SAM2 trained from scratch (tiny preset): the [SEG] head also outputs a
    # pixel query (C0 weights + 1 bias, zero-initialised) matched against SAM2's high-resolution (S/4) features;
    # the map is added to the mask decoder's logits on every decoded frame. Without this direct path the
    # from-scratch decoder learns to ignore the single prompt token and segments the same objects whatever the
    # text (measured: [SEG] embeddings of different texts at cosine 0.99, J&F flat from 300 to 700 steps).
    # Off for the real presets, whose pretrained SAM2 already follows prompt tokens (and Sa2VA has no such head).
    seg_pixel_query: bool = False
    # The pixel query's weights and bias as the head outputs them are multiplied by this before they reach SAM2
    # (a fixed gain; the head's output layer starts at zero either way). Measured (benchmarks/pixel_query_probe.py,
    # BENCHMARKS.md): one linear query per object fitted on the tiny SAM2's S/4 features has median norm 8.9,
    # while the [SEG] head of the model shipped before trained at gain 1 gave queries of norm 0.31.
    pixel_query_scale: float = 1.0
    # The pixel query also reads SAM2's S/16 image embedding (upsampled to S/4): C0 + C + 1 values instead of
    # C0 + 1 (momentseg.sam2.video.pixel_query_features). Measured (BENCHMARKS.md, "Round 3"): one query per
    # object isolates it at IoU 0.87 with it against 0.58 on the S/4 features alone.
    pixel_query_coarse: bool = False
    # The pixel query comes from its own linear layer on the head input (zero-initialised) instead of extra outputs
    # of the [SEG] MLP (Linear → ReLU → Linear). Measured: in the models trained with the MLP its ReLUs died —
    # 7.8 % of the hidden units ever active on a test video's expressions in the round-2 model, none in a model
    # trained on larger (S/4 + S/16) features — so every text got the same embedding (BENCHMARKS.md, "Round 4").
    # A linear map has no units to lose.
    pixel_query_head: bool = False
    # This project's addition (tiny preset, train config model.pointing_head): the [SEG] pass also *points* — a
    # small transformer over the [SEG] head's input and the video tokens of its low-res context
    # (momentseg.model.pointing) gives one logit per merged context token: a map of where the target is in each
    # context temporal patch. A gain and bias turn it into mask logits, gain·(2σ(map) − 1) + bias, that SAM2
    # adds on every frame it decodes with the language prompt, upsampled from the context patch nearest that
    # frame (momentseg.sam2.video.SpatialPrior). The map is fitted to the target's share of each token's object
    # pixels (loss.point), in the fine-tuning or alone (task point). Measured in BENCHMARKS.md ("Rounds 12, 13").
    seg_pointing: bool = False
    # This project's addition (tiny preset, train config model.pointing_vision): the pointing head also reads its
    # own copy of the Qwen vision tower (``pointing_visual``: the language model's, or another checkpoint's, as
    # the embedded model's from configs/tiny-vision-long.yaml), whose merged tokens of the context video are added
    # to the head's input through a zero-initialised projection, so the map can read what the language model's
    # tower does not tell it (shapes: 40 % per-token accuracy, "Stage 1d"). Only the pointing map changes; the
    # [SEG] embedding and the [FIND] curves do not. Measured in BENCHMARKS.md ("Rounds 16, 17").
    seg_pointing_vision: bool = False
    # This project's addition (tiny preset, train config model.presence_threshold; needs seg_pointing): a query
    # whose pointing map's maximum logit over the context video (its presence head's map with seg_presence_head)
    # is below this has no target — the head points nowhere — and its masks are empty in every frame, without a
    # SAM2 decode. The map's maximum is trained as the logit of "the target shows" (loss.presence); the threshold
    # is chosen on val. None: off. Measured in BENCHMARKS.md ("Rounds 18, 19").
    point_presence_threshold: float | None = None
    # This project's addition (tiny preset, train config model.presence_head; needs seg_pointing): a second
    # pointing head (``presence_head``, the same inputs) whose map's maximum is the presence logit the threshold
    # reads, so the presence loss trains that head and the prior's map stays the pointing head's alone. Without
    # it the pointing map's own maximum is read. Measured in BENCHMARKS.md ("Round 19").
    seg_presence_head: bool = False
    # Transformer layers of the pointing head's and of the presence head's mixers (momentseg.model.pointing; train
    # config model.pointing_layers deepens the pointing head of a trained model, its new layers starting as the
    # identity). Measured in BENCHMARKS.md ("Round 20").
    seg_pointing_layers: int = POINTING_LAYERS
    seg_presence_layers: int = POINTING_LAYERS
    # This project's addition (tiny preset, train config model.pointing_subgrid; needs seg_pointing): the pointing
    # head's map is this many times as fine per side as the merged context tokens (each token gives s × s
    # logits; momentseg.model.pointing), so the prior can follow a target across part of a token. The presence
    # head keeps one logit per token. Measured in BENCHMARKS.md ("Round 24").
    seg_pointing_subgrid: int = 1
    # This project's addition (tiny preset, train config model.pointing_patches; needs seg_pointing_vision and
    # seg_pointing_subgrid = the merge size): each sub-cell's key also reads its own patch of the pointing head's
    # vision tower before the merger, which squeezes the merge² patches of a token into one. Measured in
    # BENCHMARKS.md ("Round 24").
    seg_pointing_patches: bool = False
    # This project's addition (tiny preset, train config model.moment_head): the [FIND] curve also gets a
    # *moment head* — the pointing head's architecture (momentseg.model.pointing) over the [FIND] head's input and
    # the dense pass's video tokens, bidirectional in time, so a frame can be judged by what its objects do before
    # and after it (the language model is causal). Its logit per temporal patch (the maximum over the patch's
    # tokens) is added to cos/τ. Trained alone on the frozen model (task moment). Measured in BENCHMARKS.md
    # ("Round 14").
    find_moment_head: bool = False
    # Class counts of the per-pixel class heads the image-encoder pretraining task trains (the synthetic
    # world's shapes and colours, background included; train config model.pixel_class_head); empty = no head.
    pixel_classes: list[int] = field(default_factory=list)
    # Class counts of the per-token heads over the Qwen vision tower's output (pretraining only: the synthetic
    # world's shapes, colours and motions; train config model.token_class_head); empty = no head.
    token_classes: list[int] = field(default_factory=list)
    # Event kinds of the per-token head over the language model's video tokens (the synthetic world's
    # EVENT_KINDS; train config model.event_head): a TSG sample's per-pixel event flags supervise it, so the video
    # tokens the [FIND] head pools come to say *what happens* to the object they show; 0 = no head.
    event_classes: int = 0
    # This project's addition for an LLM trained from scratch (tiny preset): the [FIND] / [SEG] heads read the
    # special token's hidden state plus a learned bag-of-words embedding (mean) of the query's tokens. The
    # last-layer states of a from-scratch 2-layer LLM share one dominant direction: measured after 250 steps,
    # the [SEG] states of "the red circle" and "the blue square" at cosine 0.9999995, the mean states of their
    # query tokens at 0.9997, so no head on top of them could tell the texts apart. Off for the real presets,
    # whose pretrained LLM attends to the prompt.
    pool_query: bool = False
    # [FIND] curve from temporal patches to frames: False = linear between patch centres (this project);
    # True = align_corners=True over the frame count, as the released MomentSeg's inference does.
    find_align_corners: bool = False
    # SAM2 behaviour (momentseg.sam2.video.MomentSegSam2, which cites the sources). A frame SAM2 scores
    # "no object": True = its masks set to -1024 (transformers, original SAM2; this project); False = the decoded
    # mask kept, as Sa2VA's and the released MomentSeg's SAM2 do (set by their importers).
    clamp_no_object_masks: bool = CLAMP_NO_OBJECT_MASKS
    # The [SEG] embedding as a prompt token on tracked frames too: True = every decoded frame (this project, the
    # released MomentSeg's BAP); False = conditioning frames only, as Sa2VA does (set by its importer).
    language_on_tracked_frames: bool = LANGUAGE_ON_TRACKED_FRAMES
    # SAM2's input size for the propagation. None: one SAM2 pass at sam2_image_size, the [SEG] prompt (and prior)
    # on the keyframes and, with language_on_tracked_frames, on every tracked frame (the released MomentSeg's
    # BAP). A size (a multiple of 16): the keyframes are decoded at sam2_image_size from the [SEG] prompt and
    # prior, and their masks prompt a memory-only propagation of the same weights at this size
    # (MomentSegModel.tracker; BENCHMARKS.md, "Round 25").
    sam2_track_size: int | None = None
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    notes: list[str] = field(default_factory=list)  # provenance remarks (e.g. heads initialised at import)

    @property
    def hidden_size(self) -> int:
        return int(self.qwen["text_config"]["hidden_size"])

    @property
    def sam2_image_size(self) -> int:
        return int(self.sam2.get("image_size", 1024))

    @property
    def track_image_size(self) -> int:
        """SAM2's input size in the propagation: ``sam2_track_size``, or ``sam2_image_size`` without one."""
        return self.sam2_image_size if self.sam2_track_size is None else int(self.sam2_track_size)

    @property
    def prompt_dim(self) -> int:
        return int(self.sam2.get("prompt_encoder_config", {}).get("hidden_size", 256))

    @property
    def coarse_pixel_channels(self) -> int:
        """C0 + C: channels of SAM2's S/4 features (mask decoder width / 8) and of its S/16 embedding (the width)
        — the map ``MomentSegSam2.pixel_features`` returns."""
        width = int(self.sam2.get("mask_decoder_config", {}).get("hidden_size", 256))
        return width // 8 + width

    @property
    def pixel_query_dim(self) -> int:
        """C0 + 1: SAM2's S/4 feature channels and a bias; C0 + C + 1 with ``pixel_query_coarse``."""
        width = int(self.sam2.get("mask_decoder_config", {}).get("hidden_size", 256))
        return (self.coarse_pixel_channels if self.pixel_query_coarse else width // 8) + 1

    @property
    def seg_dim(self) -> int:
        """[SEG] head output: the prompt token (P), plus the pixel query (C0 + 1) when ``seg_pixel_query``."""
        return self.prompt_dim + (self.pixel_query_dim if self.seg_pixel_query else 0)

    @property
    def sam2_behaviour(self) -> dict[str, bool]:
        """The SAM2 behaviour options, as ``build_sam2`` / ``MomentSegSam2`` take them."""
        return {
            "clamp_no_object_masks": self.clamp_no_object_masks,
            "language_on_tracked_frames": self.language_on_tracked_frames,
        }

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["format"] = "momentseg"
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MomentSegConfig:
        d = dict(d)
        if d.pop("format", None) != "momentseg":
            raise CheckpointError("config.json is not a momentseg config (no \"format\": \"momentseg\")")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in RETIRED_FIELDS:
            d.pop(key, None)
        unknown = sorted(set(d) - names)
        if unknown:
            raise CheckpointError(f"config.json has unknown fields: {', '.join(unknown)}")
        for key in ("image_mean", "image_std"):
            if key in d:
                d[key] = tuple(d[key])
        size = d.get("sam2_track_size")
        if size is not None and not is_sam2_size(size):
            raise CheckpointError(f"config.json: sam2_track_size must be a positive multiple of 16 or null, "
                                  f"got {size!r}")
        return cls(**d)

    @classmethod
    def from_json_file(cls, path: str | Path) -> MomentSegConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(data)


def _qwen_ids(tokenizer) -> dict[str, int]:
    ids = token_ids(tokenizer)
    return {
        "image_token_id": ids["image_pad"],
        "video_token_id": ids["video_pad"],
        "vision_start_token_id": ids["vision_start"],
        "vision_end_token_id": ids["vision_end"],
    }


def tiny_qwen_config(vocab_size: int, ids: dict[str, int], eos_id: int, pad_id: int) -> dict[str, Any]:
    """Tiny Qwen2.5-VL: text hidden 128, 2 layers, 4 heads; vision depth 2, hidden 64, patch 14, merge 2."""
    return {
        "text_config": {
            "vocab_size": vocab_size,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            "bos_token_id": None,
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 128,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        "tie_word_embeddings": True,
        **ids,
    }


# Qwen2.5-VL-{3B,7B}-Instruct config.json values (vocab as shipped; [SEG]/[FIND] fit in the padded vocab).
_QWEN_REAL = {
    "3b": dict(hidden=2048, inter=11008, layers=36, heads=16, kv=2, vocab=151936, tie=True, window_layers=70),
    "7b": dict(hidden=3584, inter=18944, layers=28, heads=28, kv=4, vocab=152064, tie=False, window_layers=28),
}


def real_qwen_config(name: str) -> dict[str, Any]:
    q = _QWEN_REAL[name]
    return {
        "text_config": {
            "vocab_size": q["vocab"],
            "hidden_size": q["hidden"],
            "intermediate_size": q["inter"],
            "num_hidden_layers": q["layers"],
            "num_attention_heads": q["heads"],
            "num_key_value_heads": q["kv"],
            "max_position_embeddings": 128000,
            "max_window_layers": q["window_layers"],
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            "sliding_window": 32768,
            "use_sliding_window": False,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
        },
        "vision_config": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": q["hidden"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
        },
        "tie_word_embeddings": q["tie"],
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
    }


def preset_config(name: str, tokenizer=None, sam2_image_size: int | None = None) -> MomentSegConfig:
    """The config of a preset. ``tiny`` needs its tokenizer (vocab size and token ids come from it)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if name == "tiny":
        if tokenizer is None:
            raise ValueError("the tiny preset needs its tokenizer (see build_word_tokenizer)")
        qwen = tiny_qwen_config(
            vocab_size=len(tokenizer),
            ids=_qwen_ids(tokenizer),
            eos_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_id=tokenizer.pad_token_id,
        )
        return MomentSegConfig(
            preset="tiny",
            qwen=qwen,
            sam2=tiny_sam2_config(sam2_image_size or 128),
            find_frame_size=112,  # 8×8 patches: small shapes stay visible to the [FIND] pass
            # the [SEG] pass's context at the resolution the language model was pretrained on (its caption
            # frames are [FIND] frames): at 56 px a frame pair is 2×2 tokens, too coarse to say *which* shape
            context_frame_size=112,
            seg_frame_size=112,
            seg_pixel_query=True,
            pixel_query_scale=1.0,  # the linear pixel-query head needs no gain (the MLP's dying ReLUs did)
            pixel_query_coarse=True,
            pixel_query_head=True,
            pool_query=True,
            fps=5.0,  # the synthetic world's videos last 4–12 s: 1 fps would leave ≤ 12 frames per video
            find_max_frames=32,
            context_frames=16,
        )
    qwen = real_qwen_config(name)
    if tokenizer is not None:
        qwen.update(_qwen_ids(tokenizer))
        qwen["text_config"]["vocab_size"] = max(qwen["text_config"]["vocab_size"], len(tokenizer))
    return MomentSegConfig(preset=name, qwen=qwen, sam2=sam2_large_config(sam2_image_size or 1024))
