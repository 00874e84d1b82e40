"""The MomentSeg model: Qwen2.5-VL + SAM2 (transformers backbones) with the [FIND] and [SEG] heads.

Sequences (Qwen2.5-VL's chat structure) and vision inputs are built by the model's
:class:`~momentseg.model.processing.MomentSegProcessor` (``model.processor``); the model runs padded batches of
them. Training and inference both use teacher forcing: the answer template ("It is [FIND]." / "It is [SEG].") is
part of the sequence and the hidden state at the [FIND] / [SEG] position is read from one forward pass
(no ``generate``). The returned answer text is that template (documented choice: with one answer template
per task, the generated text carries no extra information).

Several queries on the same frames (``find_logits_many`` / ``seg_embedding_many``) share one forward pass of
their common prefix (system + vision tokens): its KV cache is computed once, and the queries' suffixes run
against it, up to :data:`QUERIES_PER_PASS` at a time.
"""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.vision_utils import get_vision_window_index

from momentseg.model.base import build_from_base
from momentseg.model.checkpoint import load_checkpoint, read_folder_config, released_source, save_checkpoint
from momentseg.model.config import MomentSegConfig, preset_config
from momentseg.model.outputs import (
    CaptionOutput,
    ClassesOutput,
    MomentOutput,
    PointOutput,
    RefVOSOutput,
    SegPrompts,
    TokensOutput,
    TrackOutput,
    TSGOutput,
)
from momentseg.model.pointing import PointingHead
from momentseg.model.preprocess import VisionLayout
from momentseg.model.processing import (
    VIDEO,
    MomentSegBatch,
    MomentSegProcessor,
    PrefixedQueries,
    Sequence,
    VisionInputs,
    as_uint8,
    concat_vision,
)
from momentseg.model.release import import_checkpoint
from momentseg.model.tokenizer import IM_END, build_word_tokenizer
from momentseg.sam2.config import preprocess_for_sam2
from momentseg.sam2.video import build_sam2

#: Initial std of the query bag-of-words table (``pool_query``). At random init the LLM's [SEG] / [FIND] state is
#: nearly the same for every query (norm ≈ 11, cosine ≈ 0.99 between texts), so with the default N(0, 1) table
#: the heads' outputs for different texts start at cosine ≈ 0.88; a SAM2 decoder given near-identical prompt
#: tokens (≥ 0.9) settles into segmenting every object and does not leave it (measured on an image task with
#: learned tokens: IoU 0.05 after 200 steps at cosine 0.9, 0.33 at 0.6, 0.42 at 0.35). With std 6 the [SEG]
#: outputs of different texts start at cosine ≈ 0.5.
QUERY_BAG_INIT_STD = 6.0

#: Queries whose suffixes run together against one shared prefix's KV cache (``find_logits_many`` /
#: ``seg_embedding_many``): the cache is expanded to this many rows per pass.
QUERIES_PER_PASS = 16

#: Weight of the background class in the per-pixel class cross-entropies (``forward_classes``): objects cover
#: a few percent of a synthetic frame.
PIXEL_BACKGROUND_WEIGHT = 0.2


@dataclass
class TSGSample:
    """One temporal-grounding training sample: low-res frames (T,h,w,3) uint8, a query, GT frames (T,) bool;
    synthetic samples also carry the frames' per-pixel event flags (T,H,W) int (bit k: an event of kind k of the
    object there, -1: background; :meth:`~momentseg.data.synthetic.SynthVideo.pixel_events`), which a model with
    an event head (``config.event_classes``) learns from."""

    frames: np.ndarray
    query: str
    positive: np.ndarray
    events: np.ndarray | None = None


@dataclass
class RefVOSSample:
    """One RefVOS training sample: low-res context (Tc,h,w,3) uint8 (Tc may be 0), K consecutive high-res
    keyframes (K,H,W,3) uint8 with GT masks (K,H,W) bool, and the expression. For a model with
    ``seg_pointing``: ``key_patch`` (K,) int, the context temporal patch each keyframe reads
    (:func:`momentseg.grounding.sampling.nearest_patches`; None: no prior), and ``context_labels`` (Tc,h',w')
    int of the context frames — 1 the target, 0 another object, -1 background (None: no pointing loss)."""

    context: np.ndarray
    keyframes: np.ndarray
    query: str
    masks: np.ndarray
    key_patch: np.ndarray | None = None
    context_labels: np.ndarray | None = None


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
class ClassesSample:
    """One image-encoder pretraining sample: frames (n,H,W,3) uint8 and their per-pixel classes (n,H,W) int —
    ``shapes`` and ``colours``, 0 = background, -1 = no class (e.g. a colour while it blends)."""

    frames: np.ndarray
    shapes: np.ndarray
    colours: np.ndarray


@dataclass
class TokensSample:
    """One vision-tower pretraining sample: low-res frames (T,h,w,3) uint8 sampled at ``config.fps`` and the
    per-pixel shape, colour and motion classes of those frames at any resolution (T,H,W) int, the same field of
    view (:meth:`MomentSegModel.forward_tokens` pools them to the token grid)."""

    frames: np.ndarray
    shapes: np.ndarray
    colours: np.ndarray
    motions: np.ndarray


@dataclass
class CaptionSample:
    """One vision–language pretraining sample: low-res frames (T,h,w,3) uint8 sampled at ``config.fps``, a
    question and its answer (next-token loss on the answer)."""

    frames: np.ndarray
    question: str
    answer: str


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    """Linear(d,d) → ReLU → Linear(d,out) (indices 0 and 2 hold weights, as Sa2VA's text_hidden_fcs)."""
    return nn.Sequential(nn.Linear(d_in, d_in), nn.ReLU(), nn.Linear(d_in, d_out))


def balanced_bce(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A BCE with soft targets ``y`` and weights ``w`` on logits ``x``, balanced over dim 0: the mean of its
    positive part and its negative part, each normalised by its own weight (per column when 2-D), so rare
    positives weigh as much as the rest."""
    pos = (w * y * -F.logsigmoid(x)).sum(0) / (w * y).sum(0).clamp(min=1e-6)
    neg = (w * (1 - y) * -F.logsigmoid(-x)).sum(0) / (w * (1 - y)).sum(0).clamp(min=1e-6)
    return 0.5 * (pos + neg)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over frames of 1 − (2·Σpt + 1)/(Σp + Σt + 1), p = sigmoid(logits); logits/target (K,H,W)."""
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


class MomentSegModel(nn.Module):
    """Qwen2.5-VL + SAM2 with a [FIND] head (frame–query similarity) and a [SEG] head (SAM2 prompt)."""

    def __init__(self, config: MomentSegConfig, tokenizer=None, qwen=None, sam2=None):
        """Random backbones from ``config`` unless ``qwen`` (Qwen2_5_VLForConditionalGeneration) / ``sam2``
        (:class:`~momentseg.sam2.video.MomentSegSam2`) are given (they must match the config)."""
        super().__init__()
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        self.processor = MomentSegProcessor(config, tokenizer)
        self.qwen = qwen if qwen is not None else Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**config.qwen))
        if sam2 is None:
            sam2 = build_sam2(config.sam2, **config.sam2_behaviour)
        else:
            from momentseg.sam2.video import MomentSegSam2

            if not isinstance(sam2, MomentSegSam2):
                raise TypeError(f"sam2 must be a MomentSegSam2 (e.g. MomentSegSam2.from_pretrained), "
                                f"got {type(sam2).__name__}")
            if sam2.behaviour != config.sam2_behaviour:
                raise ValueError(f"the given SAM2 behaves as {sam2.behaviour}, the config says "
                                 f"{config.sam2_behaviour}")
        self.sam2 = sam2
        self.find_head = _mlp(config.hidden_size, config.find_dim)
        separate = config.seg_pixel_query and config.pixel_query_head
        self.seg_head = _mlp(config.hidden_size, config.prompt_dim if separate else config.seg_dim)
        if separate:  # a linear pixel query, zero at init: no change to SAM2's masks
            self.pixel_query_head = nn.Linear(config.hidden_size, config.pixel_query_dim)
            nn.init.zeros_(self.pixel_query_head.weight)
            nn.init.zeros_(self.pixel_query_head.bias)
        if config.pool_query:  # bag-of-words embedding of the query's tokens, read by both heads
            vocab = int(config.qwen["text_config"]["vocab_size"])
            self.query_bag = nn.EmbeddingBag(vocab, config.hidden_size, mode="mean")
            nn.init.normal_(self.query_bag.weight, std=QUERY_BAG_INIT_STD)
        if config.pixel_classes:  # per-pixel class heads over the coarse pixel-query map (forward_classes)
            self.pixel_class_head = nn.Conv2d(config.coarse_pixel_channels, sum(config.pixel_classes), 1)
        if config.token_classes:  # per-token class heads over the vision tower's output (forward_tokens)
            self.token_class_head = nn.Linear(config.hidden_size, sum(config.token_classes))
        if config.event_classes:  # per-video-token event flags over the language model's output (forward_tsg)
            self.event_head = nn.Linear(config.hidden_size, config.event_classes)
        if config.seg_pointing:
            self._init_pointing()
        if config.find_moment_head:
            self._init_moment_head()
        if config.seg_pixel_query and not separate:  # the pixel query starts at zero: no change to SAM2's masks
            with torch.no_grad():
                self.seg_head[2].weight[config.prompt_dim :].zero_()
                self.seg_head[2].bias[config.prompt_dim :].zero_()

    def _init_pointing(self) -> None:
        c = self.config
        self.pointing_head = PointingHead(c.hidden_size, vision=c.seg_pointing_vision, layers=c.seg_pointing_layers,
                                          subgrid=c.seg_pointing_subgrid, patches=self._patch_width())
        # gain and bias of the prior's mask logits; zero at first: SAM2's masks are unchanged
        self.point_prior_scale = nn.Parameter(torch.zeros(2))
        if c.seg_pointing_vision:
            self.pointing_visual = type(self.qwen.model.visual)(self.qwen.model.visual.config)
        if c.seg_presence_head:
            self.presence_head = PointingHead(c.hidden_size, vision=c.seg_pointing_vision, layers=c.seg_presence_layers)

    def add_pointing_head(self) -> None:
        """Give a model without one the ``[SEG]`` pass's pointing head (``config.seg_pointing``), freshly
        initialised on the model's device, its prior's gain and bias at zero (no change to any mask)."""
        if self.config.seg_pointing:
            raise ValueError("the model already has a pointing head")
        self.config.seg_pointing = True
        self._init_pointing()
        self._place(self.pointing_head)
        self.point_prior_scale.data = self.point_prior_scale.data.to(self.device)

    def add_pointing_vision(self, vision_from: str | Path | None = None) -> None:
        """Give the pointing head its own vision tower (``config.seg_pointing_vision``) — a copy of the language
        model's, or the tower of the checkpoint folder ``vision_from`` (e.g. ``configs/tiny-vision-long.yaml``'s)
        — and a zero-initialised projection of its tokens into the head (no change to any map)."""
        if not self.config.seg_pointing:
            raise ValueError("the model has no pointing head to give a vision tower (model.pointing_head)")
        if self.config.seg_pointing_vision:
            raise ValueError("the pointing head already has its own vision tower")
        weights = self.qwen.model.visual.state_dict() if vision_from is None else self._vision_weights(vision_from)
        self.config.seg_pointing_vision = True
        head = self.pointing_head
        self.pointing_head = PointingHead(self.config.hidden_size, vision=True, layers=head.layers,
                                          subgrid=head.subgrid)  # no tower before: no patch input
        self.pointing_head.load_state_dict(head.state_dict(), strict=False)
        self._place(self.pointing_head)
        self.pointing_visual = type(self.qwen.model.visual)(self.qwen.model.visual.config)
        self.pointing_visual.load_state_dict(weights, strict=True)
        self.pointing_visual.to(self.device, next(self.qwen.model.visual.parameters()).dtype)

    def add_presence_head(self) -> None:
        """Give the model a presence head (``config.seg_presence_head``): a copy of its pointing head, so at first
        it says what the pointing map's maximum says, trained on by the presence loss while the pointing head's
        map stays the prior."""
        if not self.config.seg_pointing:
            raise ValueError("the model has no pointing head to copy into a presence head (model.pointing_head)")
        if self.config.seg_presence_head:
            raise ValueError("the model already has a presence head")
        if self.pointing_head.subgrid != 1:
            raise ValueError("a presence head is a copy of a pointing head of subgrid 1: add it before refining")
        self.config.seg_presence_head = True
        self.config.seg_presence_layers = self.pointing_head.layers
        self.presence_head = copy.deepcopy(self.pointing_head)  # a copy draws no random numbers

    def deepen_pointing_head(self, layers: int) -> None:
        """Grow the pointing head's mixer to ``layers`` layers (``config.seg_pointing_layers``), the new ones on
        top starting as the identity: every map, and so every mask, is unchanged until they train. The presence
        head keeps its own."""
        if not self.config.seg_pointing:
            raise ValueError("the model has no pointing head to deepen (model.pointing_head)")
        self.pointing_head.deepen(layers)
        self.config.seg_pointing_layers = layers

    def refine_pointing_head(self, subgrid: int) -> None:
        """Make the pointing map ``subgrid`` times as fine per side (``config.seg_pointing_subgrid``;
        :meth:`PointingHead.refine`): each sub-cell starts as its token, so every map is the old one repeated over
        the sub-cells until the head trains. The presence head keeps one logit per token."""
        if not self.config.seg_pointing:
            raise ValueError("the model has no pointing head to refine (model.pointing_head)")
        self.pointing_head.refine(subgrid)
        self.config.seg_pointing_subgrid = subgrid

    def _patch_width(self) -> int | None:
        """The width of the pointing tower's patches before its merger (``config.seg_pointing_patches``), else None."""
        return self.qwen.model.visual.config.hidden_size if self.config.seg_pointing_patches else None

    def add_pointing_patches(self) -> None:
        """Let the pointing head's sub-cell keys read its own tower's patches before the merger
        (``config.seg_pointing_patches``): one patch per sub-cell (needs a tower and subgrid = the merge size),
        through a projection that starts at zero, so every map is unchanged until it trains."""
        c = self.config
        if not (c.seg_pointing and c.seg_pointing_vision) or c.seg_pointing_subgrid != self.layout.merge_size:
            raise ValueError("the pointing head's patches need its own vision tower (model.pointing_vision) and "
                             f"model.pointing_subgrid {self.layout.merge_size} (one patch per sub-cell)")
        if c.seg_pointing_patches:
            raise ValueError("the pointing head already reads its tower's patches")
        c.seg_pointing_patches = True
        self.pointing_head.add_patches(self._patch_width())

    def _init_moment_head(self) -> None:
        self.moment_head = PointingHead(self.config.hidden_size)
        # its query projection starts at zero: every logit is 0, the [FIND] curves are unchanged
        nn.init.zeros_(self.moment_head.query_out.weight)
        nn.init.zeros_(self.moment_head.query_out.bias)

    def add_moment_head(self) -> None:
        """Give a model without one the ``[FIND]`` curve's moment head (``config.find_moment_head``), freshly
        initialised on the model's device so that it adds 0 to every curve."""
        if self.config.find_moment_head:
            raise ValueError("the model already has a moment head")
        self.config.find_moment_head = True
        self._init_moment_head()
        self._place(self.moment_head)

    def _place(self, *modules: nn.Module) -> None:
        """Move modules added to a built model onto its heads' device and dtype."""
        param = next(self.find_head.parameters())
        for module in modules:
            module.to(param.device, param.dtype)

    # ------------------------------------------------------------------ construction
    @property
    def config(self) -> MomentSegConfig:
        return self.processor.config

    @config.setter
    def config(self, config: MomentSegConfig) -> None:
        self.processor.config = config

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer) -> None:
        """Set (and check against the Qwen config's ids) the tokenizer."""
        self.processor.tokenizer = tokenizer

    @property
    def layout(self) -> VisionLayout:
        return self.processor.layout

    @classmethod
    def build(cls, config: MomentSegConfig, tokenizer=None) -> MomentSegModel:
        """A randomly initialised model (the tiny preset needs its ``tokenizer``: its vocabulary sets the config's
        vocabulary size and token ids)."""
        if tokenizer is None and config.preset == "tiny":
            raise ValueError("the tiny preset needs its tokenizer (e.g. MomentSegModel.tiny(words))")
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
    def tiny(cls, words: Iterable[str], sam2_image_size: int = 128, pixel_classes: Iterable[int] = (),
             token_classes: Iterable[int] = (), event_classes: int = 0) -> MomentSegModel:
        """A random tiny-preset model with a word tokenizer over ``words`` (the embedded model's are the synthetic
        world's: ``momentseg.data.synthetic.caption_vocabulary()``); ``pixel_classes`` / ``token_classes``: class
        counts of the per-pixel (``forward_classes``) / per-token (``forward_tokens``) class heads,
        ``event_classes``: event kinds of the language model's per-video-token event head (``forward_tsg``); none
        by default."""
        return cls.random("tiny", words, sam2_image_size, pixel_classes, token_classes, event_classes)

    @classmethod
    def random(cls, preset: str, words: Iterable[str], sam2_image_size: int | None = None,
               pixel_classes: Iterable[int] = (), token_classes: Iterable[int] = (),
               event_classes: int = 0) -> MomentSegModel:
        """A randomly initialised model of ``preset`` (``tiny`` / ``3b`` / ``7b``) with a word tokenizer over
        ``words`` and the prompt templates — no tokenizer files needed, e.g.
        to measure the cost of a real-size model (build it under ``with torch.device("cuda"):`` to initialise it
        on the GPU). ``sam2_image_size``: the preset's default when None."""
        words = list(words)
        probe = preset_config(preset, build_word_tokenizer([]))  # only for the prompt templates
        tokenizer = build_word_tokenizer(words, _template_texts(probe))
        config = preset_config(preset, tokenizer, sam2_image_size=sam2_image_size)
        config.pixel_classes = [int(n) for n in pixel_classes]
        config.token_classes = [int(n) for n in token_classes]
        config.event_classes = int(event_classes)
        return cls.build(config, tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MomentSegModel:
        """Load a checkpoint folder written by :meth:`save_pretrained` (mismatch → CheckpointError), or a folder
        in a released layout (MomentSeg-3B/7B, Sa2VA-Qwen2.5-VL; recognised by ``config.json``), imported on the
        fly."""
        source = released_source(read_folder_config(Path(path)))
        if source is not None:
            return cls.from_released(path, source=source)
        return load_checkpoint(cls, path)

    @classmethod
    def from_released(cls, path: str | Path, source: str | None = None, sam2_config: dict | None = None,
                      preset: str | None = None) -> MomentSegModel:
        """Import a released checkpoint folder (see :func:`momentseg.model.release.import_checkpoint`)."""
        return import_checkpoint(cls, path, source=source, sam2_config=sam2_config, preset=preset)

    def save_pretrained(self, path: str | Path) -> None:
        """Write config.json, model.safetensors and the tokenizer files to folder ``path`` (atomically)."""
        save_checkpoint(self, path)

    def load_sam2_from(self, path: str | Path, keep_fresh: Iterable[str] = ()) -> None:
        """Replace this model's SAM2 weights by those of the checkpoint folder ``path`` (e.g. the world-pretrained
        tiny SAM2), except the modules under the name prefixes ``keep_fresh`` (e.g. ``memory_encoder``), which
        keep this model's own weights; its SAM2 config must equal this model's (CheckpointError / ValueError
        otherwise, also for a prefix that names no SAM2 parameter)."""
        source = type(self).from_pretrained(path)
        if source.config.sam2 != self.config.sam2:
            raise ValueError(f"{path}: its SAM2 config differs from this model's; cannot take its SAM2 weights")
        state, own = source.sam2.state_dict(), self.sam2.state_dict()
        for prefix in keep_fresh:
            kept = [k for k in state if k == prefix or k.startswith(prefix + ".")]
            if not kept:
                raise ValueError(f"model.sam2_fresh: {prefix!r} names no SAM2 module")
            state.update({k: own[k] for k in kept})
        self.sam2.load_state_dict(state, strict=True)

    def load_vision_from(self, path: str | Path) -> None:
        """Replace the weights of this model's Qwen2.5-VL vision tower by those of the checkpoint folder ``path``
        (e.g. the tiny vision tower pretrained on per-token classes); its vision config must equal this model's
        (CheckpointError / ValueError otherwise)."""
        self.qwen.model.visual.load_state_dict(self._vision_weights(path), strict=True)

    def _vision_weights(self, path: str | Path) -> dict[str, torch.Tensor]:
        """The Qwen2.5-VL vision-tower weights of the checkpoint folder ``path``, whose vision config must equal
        this model's."""
        source = type(self).from_pretrained(path)
        if source.config.qwen["vision_config"] != self.config.qwen["vision_config"]:
            raise ValueError(f"{path}: its vision-tower config differs from this model's; cannot take its weights")
        return source.qwen.model.visual.state_dict()

    @classmethod
    def from_base(cls, qwen_dir: str | Path, sam2_dir: str | Path, preset: str = "3b") -> MomentSegModel:
        """Qwen2.5-VL-Instruct + SAM2 weights from local HF-format folders; heads randomly initialised."""
        return build_from_base(cls, qwen_dir, sam2_dir, preset)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ SAM2 in the propagation
    @property
    def tracker(self):
        """The SAM2 the propagation runs: ``sam2`` itself, or with ``config.sam2_track_size`` the same weights at
        that input size (:meth:`~momentseg.sam2.video.MomentSegSam2.at_size`; built at first use, not a
        submodule, so it adds nothing to the state dict)."""
        size = self.config.track_image_size
        if size == self.config.sam2_image_size:
            return self.sam2
        source, tracker = self.__dict__.get("_tracker", (None, None))
        if source is not self.sam2 or int(tracker.config.image_size) != size:
            tracker = self.sam2.at_size(size)
            self.__dict__["_tracker"] = (self.sam2, tracker)  # a plain attribute: nn.Module would register it
        return tracker.to(self.sam2.device).train(self.sam2.training)

    @torch.no_grad()
    def decode_keyframes(self, pixel_values: torch.Tensor, embedding: torch.Tensor,
                         prior: torch.Tensor | None = None) -> torch.Tensor:
        """SAM2's masks (K, S/4, S/4) logits of keyframes ``pixel_values`` (K,3,S,S) at ``sam2_image_size``, each
        decoded alone (a conditioning frame) from the ``[SEG]`` ``embedding`` and its ``prior`` maps (K,h,w), as
        the propagation decodes its keyframes; a keyframe scored "no object" comes back at the no-object logit
        (with ``clamp_no_object_masks``)."""
        sam_dtype = next(self.sam2.parameters()).dtype
        low, _ = self.sam2.decode_clip(pixel_values.to(self.device, sam_dtype), embedding.to(self.device, sam_dtype),
                                       cond_frames=range(len(pixel_values)), prior=prior)
        return low

    # ------------------------------------------------------------------ the language model
    def llm_hidden(self, batch: MomentSegBatch) -> torch.Tensor:
        """Last-layer hidden states (B, L, d) of a processed batch (one padded forward; transformers computes
        each sample's rope positions from the attention mask)."""
        out = self.qwen.model(**batch.model_inputs(self.device), use_cache=False)
        return out.last_hidden_state

    def _head_inputs(self, rows: torch.Tensor, query_ids: list[torch.Tensor], dtype) -> torch.Tensor:
        """What the [FIND] / [SEG] head reads (B, d): the token's hidden state (``rows``), plus the bag-of-words
        embedding of each query's tokens (``pool_query``)."""
        h = rows.to(dtype)
        if self.config.pool_query:
            flat = torch.cat(query_ids).to(h.device)
            offsets = torch.tensor([0] + [len(q) for q in query_ids[:-1]], device=h.device).cumsum(0)
            h = h + self.query_bag(flat, offsets).to(dtype)
        return h

    def _token_rows(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, d) at one position per row → (B, d)."""
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions.to(hidden.device)]

    def _lm_loss_terms(self, hidden: torch.Tensor, batch: MomentSegBatch | PrefixedQueries) -> tuple[torch.Tensor, int]:
        """Summed next-token cross-entropy over every sample's answer tokens, and their count (``hidden``: of a
        padded batch, or of a :class:`PrefixedQueries`'s suffixes)."""
        if isinstance(batch, PrefixedQueries):
            ids, starts, lengths = batch.suffix_ids, batch.answer_starts, batch.suffix_lengths
        else:
            ids, starts, lengths = batch.input_ids, batch.answer_starts, batch.lengths
        rows, cols = [], []
        for i, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
            cols.append(torch.arange(start - 1, length - 1))
            rows.append(torch.full((length - start,), i))
        r, c = torch.cat(rows), torch.cat(cols)
        targets = ids[r, c + 1].to(hidden.device)
        logits = self.qwen.lm_head(hidden[r.to(hidden.device), c.to(hidden.device)])
        return F.cross_entropy(logits.float(), targets, reduction="sum"), int(targets.numel())

    # ------------------------------------------------------------------ one prefix, many queries
    def _prefix_pass(self, pq: PrefixedQueries) -> tuple[torch.Tensor, list, int]:
        """The shared prefix's hidden states (Lp, d), its KV cache (per layer (keys, values)) and the rope
        position of the first suffix token."""
        kwargs = pq.prefix.model_inputs(self.device)
        positions, _ = self.qwen.model.get_rope_index(
            kwargs["input_ids"], kwargs["mm_token_type_ids"], image_grid_thw=kwargs.get("image_grid_thw"),
            video_grid_thw=kwargs.get("video_grid_thw"), second_per_grid_ts=kwargs.get("second_per_grid_ts"),
            attention_mask=kwargs["attention_mask"])
        out = self.qwen.model(**kwargs, position_ids=positions, use_cache=True)
        layers = [(layer.keys, layer.values) for layer in out.cache.layers]
        # the prefix ends with a text token (processor.prefixed checks it): the suffix's text positions go on
        # from it one by one, as get_rope_index numbers text after vision in the full sequence
        return out.last_hidden_state[0], layers, int(positions[0, 0, -1]) + 1

    def _suffix_pass(self, pq: PrefixedQueries, rows: list[int], layers: list, first_position: int) -> torch.Tensor:
        """Hidden states (b, Ls, d) of the suffixes ``rows`` run against the prefix's cache."""
        from transformers import DynamicCache

        dev, b = self.device, len(rows)
        width = int(pq.suffix_lengths[rows].max())
        ids = pq.suffix_ids[rows, :width].to(dev)
        mask = torch.cat([torch.ones(b, pq.prefix_length, dtype=torch.long), pq.suffix_mask[rows, :width]], 1)
        positions = (first_position + torch.arange(width, device=dev)).view(1, 1, width).expand(3, b, width)
        cache = DynamicCache([(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in layers],
                             config=self.qwen.config)
        out = self.qwen.model(input_ids=ids, attention_mask=mask.to(dev), position_ids=positions, cache=cache,
                              use_cache=True)
        return out.last_hidden_state

    def _suffix_chunks(self, pq: PrefixedQueries, layers: list, first_position: int):
        """(rows, hidden at their [FIND] / [SEG] token (b, d), their query ids) per pass of QUERIES_PER_PASS."""
        for lo in range(0, len(pq), QUERIES_PER_PASS):
            rows = list(range(lo, min(lo + QUERIES_PER_PASS, len(pq))))
            hidden = self._suffix_pass(pq, rows, layers, first_position)
            yield rows, self._token_rows(hidden, pq.token_positions[rows]), [pq.query_ids(i) for i in rows]

    # ------------------------------------------------------------------ [FIND]
    def _patches_to_frames(self, per_patch: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Per temporal patch values (t, C) → per frame (T, C), float32."""
        t = per_patch.shape[0]
        if self.config.find_align_corners:  # the released MomentSeg's curve (see model.release)
            return F.interpolate(per_patch.T[None].float(), size=n_frames, mode="linear", align_corners=True)[0].T
        # temporal patch j covers frames [tps·j, tps·j + tps); linear interpolation between patch centres
        padded = t * self.layout.temporal_patch_size
        per_frame = F.interpolate(per_patch.T[None].float(), size=padded, mode="linear", align_corners=False)[0].T
        return per_frame[:n_frames]

    def _frame_features(self, video_hidden: torch.Tensor, t: int, n_frames: int) -> torch.Tensor:
        """find_head(video tokens (t·h·w/m², d)) pooled per temporal patch, interpolated to frames (T, C)."""
        head_dtype = self.find_head[0].weight.dtype
        vid = self.find_head(video_hidden.to(head_dtype))  # (t·h·w/m², C)
        return self._patches_to_frames(vid.reshape(t, -1, vid.shape[-1]).mean(1), n_frames)

    def _similarity(self, per_frame: torch.Tensor, find: torch.Tensor) -> torch.Tensor:
        """The [FIND] curve: cos(per-frame features (T, C), [FIND] vectors (b, C))/τ in float32, (b, T)."""
        return F.cosine_similarity(per_frame.float()[None], find.float()[:, None], dim=-1) / self.config.temperature

    def _curves(self, video_hidden: torch.Tensor, grid, n_frames: int, rows: torch.Tensor,
                query_ids: list[torch.Tensor], per_frame: torch.Tensor | None = None) -> torch.Tensor:
        """The [FIND] curves (b, T) of b queries (their [FIND] token's hidden state ``rows``) over one video
        (``video_hidden`` (t·h·w/m², d), ``grid`` its (t, H, W) patch grid): :meth:`_similarity`, plus with
        ``find_moment_head`` the moment head's per-patch logit (the maximum over the patch's tokens of its map),
        carried to frames as the features are. ``per_frame``: the video's :meth:`_frame_features` if known."""
        t, gh, gw = (int(x) for x in grid)
        if per_frame is None:
            per_frame = self._frame_features(video_hidden, t, n_frames)
        inputs = self._head_inputs(rows, query_ids, self.find_head[0].weight.dtype)  # what both heads read
        curves = self._similarity(per_frame, self.find_head(inputs))
        if self.config.find_moment_head:
            m = self.layout.merge_size
            maps = self.moment_head(video_hidden, (t, gh // m, gw // m), inputs)  # (b, t, h, w)
            curves = curves + self._patches_to_frames(maps.amax((2, 3)).T, n_frames).T
        return curves

    def _find_curves(self, hidden: torch.Tensor, batch: MomentSegBatch, n_frames: list[int]) -> list[torch.Tensor]:
        """Per sample: its [FIND] curve (T_i,) (:meth:`_curves`)."""
        rows = self._token_rows(hidden, batch.token_positions)
        is_video = (batch.mm_token_type_ids == VIDEO).to(hidden.device)
        curves = []
        for i, n in enumerate(n_frames):
            grid = batch.videos.grid_thw[batch.sample_videos[i]]
            curves.append(self._curves(hidden[i][is_video[i]], grid, n, rows[i:i + 1], [batch.query_ids(i)])[0])
        return curves

    @torch.no_grad()
    def find_logits(self, frames, query: str) -> torch.Tensor:
        """Per-frame logits cos/τ (T,) of ``query`` against low-res ``frames`` (T,H,W,3) uint8; no sigmoid,
        no smoothing. Frames are assumed sampled at ``config.fps``. One full forward pass (see
        :meth:`find_logits_many` for several queries on the same frames)."""
        batch = self.processor.tsg([frames], [query])
        return self._find_curves(self.llm_hidden(batch), batch, [int(frames.shape[0])])[0].float().cpu()

    @torch.no_grad()
    def find_logits_many(self, frames, queries: list[str]) -> torch.Tensor:
        """:meth:`find_logits` of every query (n, T): the video prefix runs once, the queries' suffixes against
        its KV cache (:data:`QUERIES_PER_PASS` per pass)."""
        pq = self.processor.tsg_queries(frames, list(queries))
        hidden, layers, first = self._prefix_pass(pq)
        is_video = (pq.prefix.mm_token_type_ids[0] == VIDEO).to(hidden.device)
        video, grid, n = hidden[is_video], pq.prefix.videos.grid_thw[0], int(frames.shape[0])
        per_frame = self._frame_features(video, int(grid[0]), n)  # (T, C)
        out = []
        for _, token_hidden, query_ids in self._suffix_chunks(pq, layers, first):
            out.append(self._curves(video, grid, n, token_hidden, query_ids, per_frame))
        return torch.cat(out).float().cpu()

    def forward_tsg(self, samples: list[TSGSample]) -> TSGOutput:
        """Training loss components for TSG samples (the trainer weighs them). find_loss = BCE-with-logits per frame
        (positives weighted ``find_pos_weight``), mean over frames and samples; lm_loss = mean cross-entropy over
        all answer tokens; event_bce: :meth:`_event_loss`.

        Samples with different frames run as one padded LLM pass. Samples that share their frames (several queries
        of one video, ``data.tsg_queries_per_video``) share one video prefix: the vision tower and the prefix run
        once per video, each query's suffix against its KV cache (with gradients through both), which gives the
        same losses as the padded pass."""
        curves, lm_sum, lm_n, videos = self._tsg_curves(samples)
        lm_loss = lm_sum / max(lm_n, 1)
        return TSGOutput(self._find_loss(curves, samples), lm_loss, self._event_loss(videos),
                         tuple(x.detach() for x in curves))

    def forward_moment(self, samples: list[TSGSample]) -> MomentOutput:
        """Moment-head training loss (a model with ``find_moment_head``): :meth:`forward_tsg`'s find_loss alone,
        on TSG samples of any expression (a no-target one has no positive frame), so a stage that trains the head
        alone on a frozen model learns the curve, and that the curve stays low when nothing happens."""
        if not self.config.find_moment_head:
            raise ValueError("this model has no moment head (train config: model.moment_head: true)")
        curves = self._tsg_curves(samples)[0]
        return MomentOutput(self._find_loss(curves, samples), tuple(x.detach() for x in curves))

    def _tsg_curves(self, samples: list[TSGSample]) -> tuple[list[torch.Tensor], torch.Tensor, int, list]:
        """:meth:`_tsg_padded`, or :meth:`_tsg_prefixed` when some samples share their frames."""
        groups = shared_frame_groups(samples)
        if all(len(g) == 1 for g in groups):
            return self._tsg_padded(samples)
        return self._tsg_prefixed(samples, groups)

    def _find_loss(self, curves: list[torch.Tensor], samples: list[TSGSample]) -> torch.Tensor:
        """BCE-with-logits per frame of each curve against its sample's ``positive`` (positives weighted
        ``find_pos_weight``), mean over frames and samples."""
        losses = []
        for logits, s in zip(curves, samples, strict=True):
            positive = torch.as_tensor(np.asarray(s.positive, dtype=bool))
            if positive.shape != (s.frames.shape[0],):
                raise ValueError(f"positive has shape {tuple(positive.shape)}, frames {s.frames.shape[0]}")
            target = positive.to(logits.device, torch.float32)
            weight = 1.0 + (self.config.find_pos_weight - 1.0) * target
            losses.append(F.binary_cross_entropy_with_logits(logits, target, weight=weight))
        return torch.stack(losses).mean()

    def _tsg_padded(self, samples: list[TSGSample]) -> tuple[list[torch.Tensor], torch.Tensor, int, list]:
        """One padded pass: per-sample curves, the LM loss terms, and per sample (video token states, grid,
        event flags, 1) for the event loss."""
        batch = self.processor.tsg([s.frames for s in samples], [s.query for s in samples])
        hidden = self.llm_hidden(batch)
        curves = self._find_curves(hidden, batch, [int(s.frames.shape[0]) for s in samples])
        lm_sum, lm_n = self._lm_loss_terms(hidden, batch)
        is_video = (batch.mm_token_type_ids == VIDEO).to(hidden.device)
        videos = [(hidden[i][is_video[i]], batch.videos.grid_thw[batch.sample_videos[i]], s.events, 1)
                  for i, s in enumerate(samples)]
        return curves, lm_sum, lm_n, videos

    def _tsg_prefixed(self, samples: list[TSGSample], groups: list[list[int]]):
        """:meth:`_tsg_padded` with one video prefix per group of samples that share their frames."""
        curves: list = [None] * len(samples)
        lm_sum, lm_n, videos = 0.0, 0, []
        for group in groups:
            frames = samples[group[0]].frames
            pq = self.processor.tsg_queries(frames, [samples[i].query for i in group])
            hidden, layers, first = self._prefix_pass(pq)
            is_video = (pq.prefix.mm_token_type_ids[0] == VIDEO).to(hidden.device)
            grid = pq.prefix.videos.grid_thw[0]
            suffix = self._suffix_pass(pq, list(range(len(group))), layers, first)
            group_curves = self._curves(hidden[is_video], grid, int(frames.shape[0]),
                                        self._token_rows(suffix, pq.token_positions),
                                        [pq.query_ids(j) for j in range(len(group))])
            for i, curve in zip(group, group_curves, strict=True):
                curves[i] = curve
            part_sum, part_n = self._lm_loss_terms(suffix, pq)
            lm_sum, lm_n = lm_sum + part_sum, lm_n + part_n
            videos.append((hidden[is_video], grid, samples[group[0]].events, len(group)))
        return curves, lm_sum, lm_n, videos

    def _event_loss(self, videos: list) -> torch.Tensor:
        """The event head's loss over ``videos`` (video token states, grid (t, h, w), event flags or None, how
        many samples it stands for) that carry event flags (synthetic ones; 0 without the head or such samples,
        so real TSG data can be mixed in). Per video token and event kind, the share of its object pixels (both
        frames of its temporal patch) inside an event of that kind is the soft target of a BCE on
        ``event_head(last hidden state)``, each token weighted by its object share (background tokens weigh
        nothing) and by its video's sample count. Events are rare (0.3–7 % of object pixels per kind on the
        train split), so each kind's BCE is balanced: the mean of its positive and its negative part, each
        normalised by its own weight."""
        c, lay = self.config, self.layout
        labelled = [v for v in videos if v[2] is not None]
        if not c.event_classes or not labelled:
            return torch.zeros((), dtype=torch.float32, device=self.device)
        k = c.event_classes
        logits, targets, weights = [], [], []
        for hidden, grid, events, count in labelled:
            t, gh, gw = (int(x) for x in grid)
            share, among = event_token_targets(events, k, t, lay.temporal_patch_size,
                                               (gh // lay.merge_size, gw // lay.merge_size))
            weights.append(share * count)
            targets.append(among)
            logits.append(self.event_head(hidden.to(self.event_head.weight.dtype)).float())
        x = torch.cat(logits)
        y = torch.cat(targets).to(x.device)
        w = torch.cat(weights).to(x.device)[:, None]
        return balanced_bce(x, y, w).mean()

    # ------------------------------------------------------------------ [SEG]
    def _seg_vectors(self, rows: torch.Tensor, query_ids: list[torch.Tensor]) -> torch.Tensor:
        head_dtype = self.seg_head[0].weight.dtype
        inputs = self._head_inputs(rows, query_ids, head_dtype)
        emb = self.seg_head(inputs)  # (B, seg_dim), or (B, P) with its own pixel-query head
        c = self.config
        if c.seg_pixel_query and c.pixel_query_head:
            emb = torch.cat([emb, self.pixel_query_head(inputs)], dim=1)
        if c.seg_pixel_query:  # the pixel query's gain (config.pixel_query_scale)
            p = c.prompt_dim
            emb = torch.cat([emb[:, :p], emb[:, p:] * c.pixel_query_scale], dim=1)
        return emb

    def _point_maps(self, video_hidden: torch.Tensor, grid, rows: torch.Tensor,
                    query_ids: list[torch.Tensor], vision: tuple[torch.Tensor, torch.Tensor | None] | None,
                    heads: tuple[str, ...] = ("pointing_head",)) -> tuple[torch.Tensor, ...]:
        """Per head of ``heads`` (the pointing head; the presence head), the maps (b, t, h, w) of b queries (their
        [SEG] head inputs) over the merged video tokens of one video (``video_hidden`` (t·h·w, d), ``grid`` its
        (t, H, W) patch grid; ``vision`` its tokens and patches from :meth:`_pointing_vision`, the patches for the
        pointing head alone): :class:`PointingHead`."""
        t, gh, gw = (int(x) for x in grid)
        m = self.layout.merge_size
        queries = self._head_inputs(rows, query_ids, video_hidden.dtype)
        tokens, patches = (None, None) if vision is None else vision
        return tuple(getattr(self, h)(video_hidden, (t, gh // m, gw // m), queries, tokens,
                                      patches if h == "pointing_head" else None) for h in heads)

    def _map_heads(self) -> tuple[str, ...]:
        """The heads whose maps the [SEG] pass computes: the pointing head, and the presence head if any."""
        return ("pointing_head", "presence_head") if self.config.seg_presence_head else ("pointing_head",)

    def _pointing_vision(self, videos: VisionInputs | None) -> list[tuple[torch.Tensor, torch.Tensor | None] | None]:
        """Per video of ``videos``, its merged tokens (N, d) from the pointing head's own vision tower
        (``config.seg_pointing_vision``; None per video without one) and, with ``config.seg_pointing_patches``,
        each token's merge² patches before the merger (N, merge², d_vision), in the order of their sub-cells."""
        if videos is None:
            return []
        if not self.config.seg_pointing_vision:
            return [None] * len(videos.grid_thw)
        visual = self.pointing_visual
        grid = videos.grid_thw.to(self.device)
        out = visual(videos.pixel_values.to(self.device, visual.dtype), grid_thw=grid)
        sizes = (grid.prod(-1) // visual.spatial_merge_size**2).tolist()
        tokens = torch.split(out.pooler_output, sizes)
        if not self.config.seg_pointing_patches:
            return [(x, None) for x in tokens]
        # the tower runs its patches in window order (transformers 5.24.0, Qwen2_5_VisionTransformerPretrainedModel
        # .forward): its pre-merger states are put back in token order as its merged output is
        window_index, _ = get_vision_window_index(grid, spatial_merge_size=visual.spatial_merge_size,
                                                  window_size=visual.window_size, patch_size=visual.patch_size)
        unit = visual.spatial_merge_size**2
        patches = out.last_hidden_state.reshape(-1, unit, out.last_hidden_state.shape[-1])
        patches = patches[torch.argsort(window_index.to(patches.device))]
        return list(zip(tokens, torch.split(patches, sizes), strict=True))

    def point_prior(self, maps: torch.Tensor) -> torch.Tensor:
        """Pointing maps → the mask logits SAM2 adds: gain · (2σ(map) − 1) + bias (the learned or configured
        ``point_prior_scale``), ±gain where the head is sure."""
        gain, bias = self.point_prior_scale.float()
        return gain * (2 * torch.sigmoid(maps) - 1) + bias

    @torch.no_grad()
    def seg_embedding(self, keyframes, query: str, context=None) -> tuple[torch.Tensor, str]:
        """The SAM2 prompt embedding (P,) of ``query`` given high-res ``keyframes`` (K,H,W,3) uint8 (Qwen
        images) and optional low-res ``context`` (Tc,H,W,3) uint8 (Qwen video); and the answer text. One full
        forward pass (see :meth:`seg_embedding_many` for several queries on the same frames; :meth:`seg_prompts`
        for the spatial prior too)."""
        p = self.seg_prompts(keyframes, [query], context, share_prefix=False)
        return p.embeddings[0], p.answers[0]

    @torch.no_grad()
    def seg_embedding_many(self, keyframes, queries: list[str], context=None) -> tuple[torch.Tensor, list[str]]:
        """:meth:`seg_embedding` of every query (n, P) on the same keyframes and context, and the answer texts:
        the vision prefix runs once, the queries' suffixes against its KV cache."""
        p = self.seg_prompts(keyframes, queries, context)
        return p.embeddings, p.answers

    @torch.no_grad()
    def seg_prompts(self, keyframes, queries: list[str], context=None, share_prefix: bool = True) -> SegPrompts:
        """Every query's SAM2 prompt on the same ``keyframes`` and ``context``: embeddings, answers and (with
        ``seg_pointing`` and a context) the spatial priors per context temporal patch, each query's presence logit
        (the maximum of the presence head's map, or of the pointing map without one) and, with
        ``point_presence_threshold``, whether it reaches the threshold. ``share_prefix``: the
        vision prefix runs once and the queries' suffixes against its KV cache; False: one full forward pass per
        query."""
        queries = list(queries)
        pointing = self.config.seg_pointing and context is not None and len(context) > 0
        heads = self._map_heads()
        embs, maps = [], []
        if share_prefix:
            pq = self.processor.refvos_queries(keyframes, queries, context)
            hidden, layers, first = self._prefix_pass(pq)
            video = hidden[(pq.prefix.mm_token_type_ids[0] == VIDEO).to(hidden.device)]
            vision = self._pointing_vision(pq.prefix.videos if pointing else None)
            for _, rows, query_ids in self._suffix_chunks(pq, layers, first):
                embs.append(self._seg_vectors(rows, query_ids))
                if pointing:
                    maps.append(self._point_maps(video, pq.prefix.videos.grid_thw[0], rows, query_ids, vision[0],
                                                 heads))
        else:
            for query in queries:
                batch = self.processor.refvos([keyframes], [query], [context])
                hidden = self.llm_hidden(batch)
                rows, query_ids = self._token_rows(hidden, batch.token_positions), [batch.query_ids(0)]
                embs.append(self._seg_vectors(rows, query_ids))
                if pointing:
                    video = hidden[0][(batch.mm_token_type_ids[0] == VIDEO).to(hidden.device)]
                    maps.append(self._point_maps(video, batch.videos.grid_thw[0], rows, query_ids,
                                                 self._pointing_vision(batch.videos)[0], heads))
        answers = [self.config.answer_seg] * len(queries)
        if not pointing:
            return SegPrompts(torch.cat(embs), answers, None)
        # per chunk (pointing maps[, presence maps]): the last is the presence head's, or the pointing map itself
        point, presence = torch.cat([m[0] for m in maps]), torch.cat([m[-1] for m in maps])
        logits, threshold = presence.flatten(1).amax(1), self.config.point_presence_threshold
        present = None if threshold is None else logits >= threshold
        return SegPrompts(torch.cat(embs), answers, self.point_prior(point), present, logits)

    def forward_refvos(self, samples: list[RefVOSSample]) -> RefVOSOutput:
        """Training loss components for RefVOS samples (one padded LLM pass for the batch). The [SEG] embedding prompts
        SAM2 on the K keyframes decoded as a clip (``self.sam2.decode_clip``: frame 0 conditioning, later frames
        with memory, when ``config.train_memory_path``; else each frame independently, as with a
        ``sam2_track_size`` too, since the pipeline then decodes each keyframe alone: :meth:`decode_keyframes`),
        sample by sample. Mask
        logits (S/4)² are upsampled bilinearly to the GT size. Components: mask_bce, mask_dice, lm_loss,
        object_bce, point_bce (:meth:`_point_loss`).

        With ``seg_pointing``, each sample with a context and ``key_patch`` gets its spatial prior on every
        keyframe (the pointing map of the context patch it reads, through :meth:`point_prior`), as inference
        adds it."""
        c = self.config
        all_masks = []
        for s in samples:
            masks = torch.as_tensor(np.asarray(s.masks, dtype=bool))
            if s.keyframes.shape[:3] != tuple(masks.shape):
                raise ValueError(f"masks {tuple(masks.shape)} do not match keyframes {s.keyframes.shape[:3]}")
            all_masks.append(masks)
        batch, hidden, rows, query_ids = self._seg_pass(samples)
        embs = self._seg_vectors(rows, query_ids)
        vision = self._pointing_vision(batch.videos if c.seg_pointing else None)
        bces, dices, objs, pointed = [], [], [], []
        sam_dtype = next(self.sam2.parameters()).dtype
        for i, (s, masks, emb) in enumerate(zip(samples, all_masks, embs, strict=True)):
            k, h, w = masks.shape
            px = preprocess_for_sam2(as_uint8(s.keyframes), c.sam2_image_size).to(self.device, sam_dtype)
            cond = (0,) if c.train_memory_path and c.sam2_track_size is None else tuple(range(k))
            prior = None
            if c.seg_pointing and batch.sample_videos[i] is not None:
                maps, = self._sample_point_maps(hidden, batch, rows, query_ids, vision, i)
                if s.key_patch is not None:
                    prior = self.point_prior(maps[torch.as_tensor(np.asarray(s.key_patch), dtype=torch.long)])
                if s.context_labels is not None:
                    pointed.append((maps, s.context_labels))
            low, scores = self.sam2.decode_clip(px, emb.to(sam_dtype), cond_frames=cond, prior=prior)
            logits = F.interpolate(low[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            # frames scored "no object" come back at -1024: clamp the logged loss value (no gradient there anyway)
            logits = logits.clamp(min=-32.0)
            target = masks.to(logits.device, torch.float32)
            bces.append(F.binary_cross_entropy_with_logits(logits, target))
            dices.append(dice_loss(logits, target))
            present = target.flatten(1).amax(1)
            objs.append(F.binary_cross_entropy_with_logits(scores.float(), present))
        lm_sum, lm_n = self._lm_loss_terms(hidden, batch)
        mask_bce, mask_dice = torch.stack(bces).mean(), torch.stack(dices).mean()
        object_bce = torch.stack(objs).mean()
        lm_loss = lm_sum / max(lm_n, 1)
        return RefVOSOutput(mask_bce, mask_dice, lm_loss, object_bce, self._point_loss(pointed), embs.detach())

    def _seg_pass(self, samples: list[RefVOSSample]) -> tuple[MomentSegBatch, torch.Tensor, torch.Tensor, list]:
        """The padded [SEG] pass of RefVOS samples: the batch, its hidden states, the [SEG] token's row per sample
        and each sample's query ids."""
        batch = self.processor.refvos([s.keyframes for s in samples], [s.query for s in samples],
                                      [s.context for s in samples])
        hidden = self.llm_hidden(batch)
        rows = self._token_rows(hidden, batch.token_positions)
        return batch, hidden, rows, [batch.query_ids(i) for i in range(len(batch))]

    def _sample_point_maps(self, hidden: torch.Tensor, batch: MomentSegBatch, rows: torch.Tensor,
                           query_ids: list[torch.Tensor], vision: list, i: int,
                           heads: tuple[str, ...] = ("pointing_head",)) -> tuple[torch.Tensor, ...]:
        """Sample ``i``'s maps (t, h', w') over its context video in a padded [SEG] batch, one per head of
        ``heads`` (``vision``: :meth:`_pointing_vision` of its videos)."""
        is_video = (batch.mm_token_type_ids[i] == VIDEO).to(hidden.device)
        v = batch.sample_videos[i]
        return tuple(m[0] for m in self._point_maps(hidden[i][is_video], batch.videos.grid_thw[v], rows[i : i + 1],
                                                    query_ids[i : i + 1], vision[v], heads))

    def forward_point(self, samples: list[RefVOSSample]) -> PointOutput:
        """Pointing-head training loss (a model with ``seg_pointing``): the [SEG] pass of RefVOS samples with a
        context and ``context_labels``, the pointing maps and their :meth:`_point_loss` — no SAM2 decode, so a
        stage that trains the head alone on a frozen model runs at the language model's speed. With a presence
        head (``seg_presence_head``) the presence loss reads its map, which also gets the pointing loss
        (``presence_point_bce``), and the pointing map only the pointing loss."""
        if not self.config.seg_pointing:
            raise ValueError("this model has no pointing head (train config: model.pointing_head: true)")
        if any(s.context is None or s.context_labels is None for s in samples):
            raise ValueError("pointing samples need a context video and its context_labels")
        batch, hidden, rows, query_ids = self._seg_pass(samples)
        vision = self._pointing_vision(batch.videos)
        heads = self._map_heads()
        maps = [self._sample_point_maps(hidden, batch, rows, query_ids, vision, i, heads)
                for i in range(len(samples))]
        pointed = [(m[0], s.context_labels) for m, s in zip(maps, samples, strict=True)]
        if len(heads) == 1:
            return PointOutput(self._point_loss(pointed), self._presence_loss(pointed), self._point_loss([]))
        present = [(m[1], s.context_labels) for m, s in zip(maps, samples, strict=True)]
        return PointOutput(self._point_loss(pointed), self._presence_loss(present), self._point_loss(present))

    @staticmethod
    def _presence_loss(pointed: list) -> torch.Tensor:
        """Over (maps, context labels) pairs: each map's maximum as the logit of "the target shows in the
        context" (some label is 1), a BCE balanced over the samples with and without it (:func:`balanced_bce`)."""
        x = torch.stack([maps.amax() for maps, _ in pointed])
        y = torch.tensor([float((np.asarray(labels) > 0).any()) for _, labels in pointed], device=x.device)
        return balanced_bce(x, y, torch.ones_like(y))

    def _point_loss(self, pointed: list) -> torch.Tensor:
        """The pointing maps' loss over (maps (t, h, w), context labels (Tc, H, W)) pairs (0 when there are
        none): per context token, the target's share of its object pixels (both frames of its temporal patch) is
        the soft target of a BCE on the map, each token weighted by its object share (background tokens weigh
        nothing), balanced as the event loss is — the mean of the positive and the negative part, each
        normalised by its own weight (a no-target expression has only the negative part)."""
        if not pointed:
            return torch.zeros((), dtype=torch.float32, device=self.device)
        tps = self.layout.temporal_patch_size
        logits, targets, weights = [], [], []
        for maps, labels in pointed:
            t, gh, gw = maps.shape
            flags = np.where(np.asarray(labels) < 0, -1, np.asarray(labels) > 0).astype(np.int64)
            share, among = event_token_targets(flags, 1, t, tps, (gh, gw))
            logits.append(maps.reshape(-1))
            targets.append(among[:, 0])
            weights.append(share)
        x = torch.cat(logits)
        y = torch.cat(targets).to(x.device)
        w = torch.cat(weights).to(x.device)
        return balanced_bce(x, y, w)

    # ------------------------------------------------------------------ pretraining tasks
    def forward_track(self, samples: list[TrackSample]) -> TrackOutput:
        """SAM2 pretraining loss (no language): each object is prompted on frame 0 (mask, box or points) and
        tracked with memory through the clip by the SAM2 the propagation runs (``self.tracker``, at
        ``config.track_image_size``; :meth:`~momentseg.sam2.video.MomentSegSam2.decode_prompted_clip`). Mask BCE and
        Dice over every (object, frame) the decoder produced (a mask prompt's own frame is the prompt, so it is left
        out), object-score BCE against "visible in that frame"."""
        c = self.config
        size, tracker = c.track_image_size, self.tracker
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
            px = preprocess_for_sam2(as_uint8(s.frames), size).to(self.device, sam_dtype)
            low, scores = tracker.decode_prompted_clip(px, prompts)  # (T,N,h',w'), (T,N)
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
        return TrackOutput(mask_bce, mask_dice, object_bce)

    def forward_classes(self, samples: list[ClassesSample]) -> ClassesOutput:
        """Image-encoder pretraining loss: per-pixel shape and colour classes from the map a coarse pixel query
        reads (``self.sam2.pixel_features``: SAM2's S/4 features + the S/16 embedding) through
        ``pixel_class_head`` (a 1 × 1 conv), labels taken nearest at S/4; cross-entropy per label kind, the
        background weighted :data:`PIXEL_BACKGROUND_WEIGHT`, pixels of class -1 left out."""
        c = self.config
        if not c.pixel_classes:
            raise ValueError("this model has no per-pixel class head (train config: model.pixel_class_head: true)")
        sam_dtype = next(self.sam2.parameters()).dtype
        px = torch.cat([preprocess_for_sam2(as_uint8(s.frames), c.sam2_image_size) for s in samples])
        logits = self.pixel_class_head(self.sam2.pixel_features(px.to(self.device, sam_dtype))).float()
        side = logits.shape[-2:]
        losses = []
        for kind, part in zip(("shapes", "colours"), logits.split(c.pixel_classes, dim=1), strict=True):
            labels = torch.cat([torch.as_tensor(np.asarray(getattr(s, kind), dtype=np.float32)) for s in samples])
            labels = F.interpolate(labels[:, None], size=side, mode="nearest-exact")[:, 0].long().to(logits.device)
            weight = torch.ones(part.shape[1], device=logits.device)
            weight[0] = PIXEL_BACKGROUND_WEIGHT
            losses.append(F.cross_entropy(part, labels, weight=weight, ignore_index=-1))
        return ClassesOutput(*losses)

    def video_tokens(self, videos: list[VisionInputs]) -> tuple[torch.Tensor, ...]:
        """The vision tower's output tokens (n_i, d) of each processed video (``processor.video``), in one pass."""
        vision = concat_vision(videos)
        return self.qwen.model.get_video_features(vision.pixel_values.to(self.device),
                                                  vision.grid_thw.to(self.device)).pooler_output

    def forward_tokens(self, samples: list[TokensSample]) -> TokensOutput:
        """Vision-tower pretraining loss: the share of each shape, colour and motion class among the pixels each
        merged vision token covers (both frames of its temporal patch; area-pooled from the per-pixel labels),
        predicted from the tower's output token by ``token_class_head`` (a linear layer). Per label kind: the soft
        cross-entropy over all classes (mean over tokens) plus that over the object classes alone against the
        shares among the token's object pixels (mean over tokens weighted by their object share) — most tokens
        are mostly background, and the second term keeps *which* object class from drowning in it. Colour labels
        -1 (an object blending between colours) are left out."""
        c, lay = self.config, self.layout
        if not c.token_classes:
            raise ValueError("this model has no per-token class head (train config: model.token_class_head: true)")
        videos = [self.processor.video(s.frames, c.find_frame_size) for s in samples]
        tokens = self.video_tokens(videos)
        kinds = ("shapes", "colours", "motions")
        targets: list[list[torch.Tensor]] = [[] for _ in kinds]
        logits: list[list[torch.Tensor]] = [[] for _ in kinds]
        for s, v, tok in zip(samples, videos, tokens, strict=True):
            t, gh, gw = (int(x) for x in v.grid_thw[0])
            side = (gh // lay.merge_size, gw // lay.merge_size)
            out = self.token_class_head(tok.to(self.token_class_head.weight.dtype)).float()
            for k, (kind, part) in enumerate(zip(kinds, out.split(c.token_classes, dim=1), strict=True)):
                share = token_shares(np.asarray(getattr(s, kind)), part.shape[1], t, lay.temporal_patch_size, side)
                targets[k].append(share.to(part.device))
                logits[k].append(part)
        losses = []
        for target, part in zip(targets, logits, strict=True):
            target, part = torch.cat(target), torch.cat(part)
            valid = target.sum(1) > 0.5  # tokens whose pixels are mostly labelled (colour: not blending)
            target, part = target[valid] / target[valid].sum(1, keepdim=True), part[valid]
            overall = -(target * part.log_softmax(1)).sum(1).mean()
            objects = target[:, 1:].sum(1)
            among = target[:, 1:] / objects.clamp(min=1e-6)[:, None]
            which = -(among * part[:, 1:].log_softmax(1)).sum(1)
            losses.append(overall + (objects * which).sum() / objects.sum().clamp(min=1e-6))
        return TokensOutput(*losses)

    def forward_caption(self, samples: list[CaptionSample]) -> CaptionOutput:
        """Vision–language pretraining loss (one padded LLM pass): next-token cross-entropy over the answer
        tokens of each (video, question, answer), mean over all answer tokens."""
        batch = self.processor.caption([s.frames for s in samples], [s.question for s in samples],
                                       [s.answer for s in samples])
        lm_sum, lm_n = self._lm_loss_terms(self.llm_hidden(batch), batch)
        lm_loss = lm_sum / max(lm_n, 1)
        return CaptionOutput(lm_loss)

    @torch.no_grad()
    def answer(self, frames, question: str, max_tokens: int = 48) -> str:
        """Greedy answer to ``question`` about low-res ``frames`` (sampled at ``config.fps``), up to the end
        token (for probing the pretrained language model)."""
        seq, video = self.processor.caption_sample(frames, question, "")
        ids = seq.input_ids[: seq.answer_start].tolist()
        mm = seq.mm_types[: seq.answer_start].tolist()
        end = self.tokenizer.convert_tokens_to_ids(IM_END)
        out: list[int] = []
        for _ in range(max_tokens):
            step = Sequence(torch.tensor(ids + out), torch.tensor(mm + [0] * len(out), dtype=torch.int32), 0)
            hidden = self.llm_hidden(self.processor.collate([step], videos=[video]))
            nxt = int(self.qwen.lm_head(hidden[0, -1]).argmax())
            if nxt == end:
                break
            out.append(nxt)
        return self.tokenizer.decode(out)


def shared_frame_groups(samples: list) -> list[list[int]]:
    """Indices of ``samples`` grouped by equal ``frames`` (and equal ``events``), in order of first appearance.
    Only frames whose shape another sample shares are hashed, and events are compared only between samples with
    equal frames, so a batch of different videos (the usual one) costs next to nothing."""
    frames = [np.asarray(s.frames) for s in samples]
    shapes = Counter((f.shape, f.dtype.str) for f in frames)
    groups: list[tuple[tuple, list[int]]] = []
    for i, (s, f) in enumerate(zip(samples, frames, strict=True)):
        key = (f.shape, f.dtype.str)
        if shapes[key] > 1:
            key += (hashlib.blake2b(np.ascontiguousarray(f).tobytes(), digest_size=16).digest(),)
        events = getattr(s, "events", None)
        for group_key, members in groups:
            if group_key == key and _same_array(events, getattr(samples[members[0]], "events", None)):
                members.append(i)
                break
        else:
            groups.append((key, [i]))
    return [members for _, members in groups]


def _same_array(a, b) -> bool:
    """Both None, the same array, or equal arrays."""
    if a is b:
        return True
    return a is not None and b is not None and np.shape(a) == np.shape(b) and bool(np.array_equal(a, b))


def token_shares(labels: np.ndarray, n_classes: int, t: int, tps: int, side: tuple[int, int]) -> torch.Tensor:
    """Per merged vision token (t·h·w, n_classes): the share of each class among the pixels it covers, from
    per-pixel labels (T,H,W) int of the video's frames (-1 = unlabelled; a frame count short of t·tps is padded
    with the last frame, as the frames are); each token covers the ``tps`` frames of its temporal patch."""
    x = torch.as_tensor(labels, dtype=torch.long)
    one_hot = F.one_hot(x.clamp(min=0), n_classes).float() * (x >= 0)[..., None]  # (T, H, W, C)
    return token_pool(one_hot.permute(0, 3, 1, 2), t, tps, side)


def event_token_targets(events: np.ndarray, k: int, t: int, tps: int,
                        side: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per merged vision token, from per-pixel event flags (T,H,W) int (bit j: event kind j, -1: background):
    its object share (t·h·w,) and, among its object pixels, the share inside an event of each of the ``k`` kinds
    (t·h·w, k)."""
    flags = torch.as_tensor(np.asarray(events), dtype=torch.long)
    obj = (flags >= 0).float()
    bits = ((flags.clamp(min=0)[..., None] >> torch.arange(k)) & 1).float() * obj[..., None]
    pooled = token_pool(torch.cat([obj[..., None], bits], -1).permute(0, 3, 1, 2), t, tps, side)
    return pooled[:, 0], (pooled[:, 1:] / pooled[:, :1].clamp(min=1e-6)).clamp(max=1.0)


def token_pool(maps: torch.Tensor, t: int, tps: int, side: tuple[int, int]) -> torch.Tensor:
    """Per merged vision token (t·h·w, C): the mean of per-pixel maps (T,C,H,W) float over the pixels it covers
    (a frame count short of t·tps is padded with the last frame, as the frames are); each token covers the
    ``tps`` frames of its temporal patch."""
    n, channels = t * tps, maps.shape[1]
    maps = torch.cat([maps, maps[-1:].expand(n - len(maps), -1, -1, -1)]) if len(maps) < n else maps[:n]
    pooled = F.adaptive_avg_pool2d(maps, side)  # (n, C, h, w)
    return pooled.reshape(t, tps, channels, *side).mean(1).permute(0, 2, 3, 1).reshape(-1, channels)


def _template_texts(config: MomentSegConfig) -> list[str]:
    return [config.prompt_tsg, config.answer_tsg, config.prompt_seg, config.answer_seg, config.system_prompt]
