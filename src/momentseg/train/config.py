"""Training configuration: a YAML file read into validated dataclasses.

Every key of the YAML file maps to a field below; an unknown key, a wrong type or a bad value is an
:class:`~momentseg.errors.InputError` naming the key (as a dotted path) and the file. Defaults follow the
paper's recipe (``method.md`` § Training) where it gives one.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from momentseg.errors import InputError
from momentseg.sam2.config import is_sam2_size

TASKS = ("tsg", "refvos", "track", "caption", "classes", "tokens", "point", "moment")
#: Backbone pretraining tasks: SAM2's own task (prompted tracking), vision–language captions / QA, SAM2's image
#: encoder on per-pixel shape and colour classes and Qwen's vision tower on per-token shape, colour and motion
#: classes, the [SEG] pass's pointing head alone (RefVOS samples, no SAM2 decode) and the [FIND] curve's moment
#: head alone (TSG samples of every expression). A stream of one of them holds nothing else.
PRETRAIN_TASKS = ("track", "caption", "classes", "tokens", "point", "moment")
SOURCE_TYPES = ("synthetic", "mask_dict", "charades", "activitynet")
#: which expressions a synthetic ``refvos`` / ``point`` source draws from: each video's own (what the splits and
#: every benchmark hold), or every expression the world's language could say about it (its no-target and
#: colour-and-shape texts included; ``momentseg.data.synthetic.video.all_expressions``)
EXPRESSION_POOLS = ("video", "candidates")
PRECISIONS = ("auto", "bf16", "fp32")
PRESETS = ("tiny", "3b", "7b")


@dataclass
class LoraConfig:
    """LoRA on the language model (peft). Applied to the Linear layers whose names end in ``target_modules``
    and lie under one of ``under`` (module-name prefixes), so the vision tower's same-named layers are untouched."""

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    under: list[str] = field(default_factory=lambda: ["qwen.model.language_model"])


@dataclass
class ModelConfig:
    """Which model to train and which of its parameters learn.

    Exactly one of ``preset`` or ``pretrained`` (a folder written by ``MomentSegModel.save_pretrained``) is
    set. ``preset: tiny`` is a fresh random model (init from ``seed``); ``preset: 3b`` / ``7b`` start from
    local Hugging Face folders ``qwen_dir`` (Qwen2.5-VL-{3B,7B}-Instruct) and ``sam2_dir`` (SAM2.1 hiera-large).
    ``frozen`` / ``trainable`` are module-name prefixes applied in that order after LoRA: with LoRA only the
    adapters train, then ``frozen`` switches parameters off and ``trainable`` switches them (back) on.
    """

    preset: str | None = None
    pretrained: str | None = None
    #: a folder written by ``save_pretrained`` whose SAM2 weights replace the model's before training (the
    #: world-pretrained tiny SAM2 of ``configs/tiny-sam2.yaml``)
    sam2_from: str | None = None
    #: SAM2 module-name prefixes (e.g. ``memory_encoder``) that keep this model's own weights - a preset's fresh
    #: initialisation, or ``pretrained``'s - instead of taking ``sam2_from``'s: a module whose pretraining
    #: collapsed, learned again; or the modules a fine-tuned model keeps while it takes another's memory path
    sam2_fresh: list[str] = field(default_factory=list)
    #: a folder written by ``save_pretrained`` whose Qwen2.5-VL vision-tower weights replace the model's before
    #: training (the tiny vision tower pretrained by ``configs/tiny-vision.yaml``)
    vision_from: str | None = None
    qwen_dir: str | None = None
    sam2_dir: str | None = None
    lora: LoraConfig | None = None
    frozen: list[str] = field(default_factory=list)
    trainable: list[str] = field(default_factory=list)
    gradient_checkpointing: bool = False
    #: add the per-pixel shape / colour class heads the ``classes`` task trains (a fresh ``tiny`` model only)
    pixel_class_head: bool = False
    #: add the per-token shape / colour / motion class heads the ``tokens`` task trains (a fresh ``tiny`` model)
    token_class_head: bool = False
    #: add the language model's per-video-token event head, trained on synthetic TSG samples (a fresh ``tiny``
    #: model; a ``pretrained`` one keeps the head it has)
    event_head: bool = False
    #: give the model the [SEG] pass's pointing head (``MomentSegConfig.seg_pointing``) if it has none — a fresh
    #: tiny model or a ``pretrained`` one (e.g. the stage-2b language model)
    pointing_head: bool = False
    #: give the pointing head its own vision tower (``MomentSegConfig.seg_pointing_vision``), a copy of the
    #: language model's, if it has none (needs ``pointing_head``)
    pointing_vision: bool = False
    #: a folder written by ``save_pretrained`` whose vision tower the pointing head's own one starts from instead
    #: of the copy (the tower of ``configs/tiny-vision-long.yaml``; needs ``pointing_vision``)
    pointing_vision_from: str | None = None
    #: set the pointing prior's [gain, bias] (``point_prior_scale``; chosen on val when the head is trained
    #: alone, where nothing learns them)
    point_prior: list[float] | None = None
    #: set the model's ``point_presence_threshold`` (a text whose presence logit — the maximum of its presence
    #: head's map, or of its pointing map — is below it has no target; chosen on val; needs a pointing head)
    presence_threshold: float | None = None
    #: set the model's ``sam2_track_size`` (an inference setting written into the saved model: SAM2's input size
    #: in the propagation, a multiple of 16; BENCHMARKS.md, "Round 25")
    sam2_track_size: int | None = None
    #: give the model a presence head (``MomentSegConfig.seg_presence_head``) if it has none: a copy of its
    #: pointing head whose map's maximum the presence loss and threshold read, trained by task ``point`` (needs
    #: ``pointing_head``)
    presence_head: bool = False
    #: deepen the pointing head's mixer to this many layers (``MomentSegConfig.seg_pointing_layers``) if it has
    #: fewer; the new layers start as the identity, so the maps are unchanged at step 0 (needs ``pointing_head``)
    pointing_layers: int | None = None
    #: make the pointing map this many times as fine per side as the context tokens
    #: (``MomentSegConfig.seg_pointing_subgrid``) if its head has subgrid 1; each sub-cell starts as its token, so
    #: the maps are unchanged at step 0 but for their size (needs ``pointing_head``; after ``presence_head``)
    pointing_subgrid: int | None = None
    #: let the pointing head's sub-cell keys read its own tower's patches before the merger
    #: (``MomentSegConfig.seg_pointing_patches``) if they do not; a zero-initialised projection, so the maps are
    #: unchanged at step 0 (needs ``pointing_vision`` and ``pointing_subgrid`` = the merge size, 2)
    pointing_patches: bool = False
    #: give the model the [FIND] curve's moment head (``MomentSegConfig.find_moment_head``) if it has none
    moment_head: bool = False


@dataclass
class SourceConfig:
    """One data source. ``task`` is ``tsg`` or ``refvos`` (or, synthetic only, a backbone pretraining task of
    :data:`PRETRAIN_TASKS`); ``weight`` is its share within its task
    (the paper's dataset repeats: ReVOS 20, MeViS 10, Charades 10, ...).

    - ``synthetic``: the streamed synthetic world, ``split`` in train/val/test; ``expressions`` (``refvos`` and
      ``point`` only): one of :data:`EXPRESSION_POOLS`.
    - ``mask_dict``: a MeViS-format split folder ``root`` (JPEGImages/, meta_expressions.json, mask_dict.json);
      MeViS, Ref-YouTube-VOS, ReVOS and Ref-DAVIS17 in that layout. ``refvos`` only.
    - ``charades`` / ``activitynet``: ``annotations`` (Charades-STA .txt / ActivityNet Captions .json) and the
      ``videos`` folder. ``tsg`` only.
    """

    type: str = ""
    task: str = ""
    weight: float = 1.0
    split: str = "train"
    root: str | None = None
    annotations: str | None = None
    videos: str | None = None
    expressions: str = EXPRESSION_POOLS[0]


@dataclass
class DataConfig:
    """How samples are drawn and shaped.

    ``tsg_ratio`` is the fraction of samples that are TSG (the rest are RefVOS); it is ignored (forced to 0 or
    1) when only one task has sources. ``track_ratio`` > 0 mixes SAM2's own task (a ``track`` source) into a
    TSG / RefVOS fine-tuning at that share of all samples (``tsg_ratio`` then splits the rest), so that the
    fine-tuning keeps the mask decoder's prompt and memory paths trained. TSG samples hold ≤ ``tsg_max_frames``
    low-res frames at ``tsg_fps`` (defaults: the model config's ``find_max_frames`` / ``fps``; uniform over the video when longer); RefVOS samples hold ≤ ``context_frames`` uniform low-res frames and
    ``keyframes`` consecutive-in-time high-res frames: one where the target is visible plus the others drawn
    within ±``keyframe_window`` frames of it. ``tsg_queries_per_video`` > 1: each TSG sample holds that many
    queries of one video (distinct, fewer when the video has fewer), which share one video prefix in the model's
    TSG forward (the vision tower and the video tokens run once for all of them); the micro-batch loss is a mean
    over samples, so TSG then weighs up to that many times more than with one query per position.
    """

    sources: list[SourceConfig] = field(default_factory=list)
    tsg_ratio: float = 0.5
    tsg_queries_per_video: int = 1
    track_ratio: float = 0.0
    # None: the model config's value. A value given here is written into the model's config, so the saved
    # model's inference (dense [FIND] pass, [SEG] context) samples frames exactly as it was trained.
    tsg_max_frames: int | None = None  # model config: find_max_frames
    tsg_fps: float | None = None  # model config: fps
    context_frames: int | None = None  # model config: context_frames
    context_frame_size: int | None = None  # model config: context_frame_size (the [SEG] context's side budget)
    #: frames per clip of SAM2's own task (``track``); None: :class:`~momentseg.train.shapes.SampleShape`'s 8.
    #: 1 = every prompt decoded on its frame alone (the mask decoder learning to follow prompts, cheaply)
    track_frames: int | None = None
    keyframes: int = 5
    keyframe_window: int = 10


@dataclass
class LossConfig:
    """Weights of the loss components (method values) — their one definition: the model's training forwards
    return the unweighted components (:mod:`momentseg.model.outputs`) and the trainer weighs them.
    ``object_score`` weighs this project's extra BCE on SAM2's object score (target: mask non-empty): with
    clamped "no object" masks (the default) a frame scored absent gets -1024 logits, which blocks mask gradients,
    so a from-scratch SAM2 (tiny preset) needs this term to learn to say "present"; 0 turns it off."""

    find: float = 0.5
    mask_bce: float = 2.0
    mask_dice: float = 0.5
    lm: float = 1.0
    object_score: float = 1.0
    pixel_shape: float = 1.0
    pixel_colour: float = 1.0
    token_shape: float = 1.0
    token_colour: float = 1.0
    token_motion: float = 1.0
    events: float = 1.0
    #: the pointing loss (task point / the fine-tuning's pointing map); also that of a presence head's map
    point: float = 1.0
    #: the pointing map's maximum over the context video (the presence head's map, if the model has one) as the
    #: logit of "the target shows in it" (a BCE balanced over the samples with and without one), so a map that
    #: points nowhere says "no target" (BENCHMARKS.md, "Rounds 18 and 19"); task ``point`` only
    presence: float = 0.0

    def by_component(self) -> dict[str, float]:
        """The weights by the name of the component each weighs (the typed outputs' ``COMPONENTS``)."""
        return {"find_loss": self.find, "lm_loss": self.lm, "mask_bce": self.mask_bce, "mask_dice": self.mask_dice,
                "object_bce": self.object_score, "shape_ce": self.pixel_shape, "colour_ce": self.pixel_colour,
                "token_shape_ce": self.token_shape, "token_colour_ce": self.token_colour,
                "token_motion_ce": self.token_motion, "event_bce": self.events, "point_bce": self.point,
                "presence_bce": self.presence, "presence_point_bce": self.point}


@dataclass
class OptimConfig:
    """AdamW with linear warm-up over ``warmup_ratio`` of the steps, then cosine decay to ``min_lr_ratio × lr``."""

    lr: float = 4e-5
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    clip: float = 1.0
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0


@dataclass
class RunConfig:
    """Length, batching and bookkeeping of the run. ``batch_size`` is per process per micro-step; one optimizer
    step sees ``batch_size × grad_accum × processes`` samples."""

    steps: int = 100
    batch_size: int = 2
    grad_accum: int = 4
    precision: str = "auto"
    checkpoint_every: int = 100
    keep_last: int = 2
    log_every: int = 1
    progress: bool = True


@dataclass
class TrainConfig:
    seed: int = 0
    out: str = "runs/train"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read training config {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return config_from_dict(raw if raw is not None else {}, source=str(path))


def config_from_dict(raw: Any, source: str = "<config>") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from plain data (as parsed from YAML)."""
    cfg = _build(TrainConfig, raw, "", source)
    validate(cfg, source)
    return cfg


def _build(cls: type, raw: Any, where: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise InputError(f"{source}: {where or 'the top level'} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise InputError(f"{source}: unknown key '{dotted}' (allowed: {', '.join(sorted(names))})")
        kwargs[key] = _convert(hints[key], value, dotted, source)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where, source)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"{source}: '{where}' must be a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{source}: '{where}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{source}: '{where}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads 4e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{source}: '{where}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InputError(f"{source}: '{where}' must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {tp}")  # a bug in this module, not user input


def validate(cfg: TrainConfig, source: str = "<config>") -> None:
    """Check values that types alone do not catch; raise InputError naming the key."""

    def bad(key: str, msg: str) -> InputError:
        return InputError(f"{source}: '{key}' {msg}")

    m = cfg.model
    if (m.preset is None) == (m.pretrained is None):
        raise bad("model", "needs exactly one of 'preset' or 'pretrained'")
    if m.preset is not None and m.preset not in PRESETS:
        raise bad("model.preset", f"must be one of {', '.join(PRESETS)}, got {m.preset!r}")
    if m.sam2_fresh and m.sam2_from is None:
        raise bad("model.sam2_fresh", "needs model.sam2_from (the weights the other SAM2 modules take)")
    if m.preset in ("3b", "7b") and not (m.qwen_dir and m.sam2_dir):
        raise bad("model", f"preset {m.preset} needs 'qwen_dir' and 'sam2_dir' (local base-model folders)")
    for key in ("pixel_class_head", "token_class_head", "event_head"):
        if getattr(m, key) and m.preset != "tiny":
            raise bad(f"model.{key}", "adds a fresh head to a new tiny model: needs preset: tiny")
    if m.point_prior is not None and len(m.point_prior) != 2:
        raise bad("model.point_prior", f"must be [gain, bias], got {m.point_prior!r}")
    if m.lora is not None:
        if m.lora.r < 1 or m.lora.alpha <= 0 or not 0 <= m.lora.dropout < 1:
            raise bad("model.lora", "needs r ≥ 1, alpha > 0 and 0 ≤ dropout < 1")
        if not m.lora.target_modules or not m.lora.under:
            raise bad("model.lora", "needs non-empty 'target_modules' and 'under'")
    d = cfg.data
    if not d.sources:
        raise bad("data.sources", "must list at least one data source")
    if m.pointing_vision and not m.pointing_head:
        raise bad("model.pointing_vision", "gives the pointing head a vision tower: needs model.pointing_head: true")
    if m.pointing_vision_from is not None and not m.pointing_vision:
        raise bad("model.pointing_vision_from", "is the pointing head's vision tower: needs model.pointing_vision: true")
    for i, s in enumerate(d.sources):
        key = f"data.sources[{i}]"
        if s.type not in SOURCE_TYPES:
            raise bad(f"{key}.type", f"must be one of {', '.join(SOURCE_TYPES)}, got {s.type!r}")
        if s.task not in TASKS:
            raise bad(f"{key}.task", f"must be one of {', '.join(TASKS)}, got {s.task!r}")
        if s.weight <= 0:
            raise bad(f"{key}.weight", "must be > 0")
        if s.type == "mask_dict" and (s.task != "refvos" or not s.root):
            raise bad(key, "of type mask_dict needs task: refvos and 'root'")
        if s.type in ("charades", "activitynet") and (s.task != "tsg" or not s.annotations or not s.videos):
            raise bad(key, f"of type {s.type} needs task: tsg, 'annotations' and 'videos'")
        if s.task in PRETRAIN_TASKS and s.type != "synthetic":
            raise bad(key, f"task {s.task} (backbone pretraining) needs type: synthetic")
        if s.task == "classes" and m.preset == "tiny" and not m.pixel_class_head:
            raise bad(key, "task classes needs the per-pixel class head: model.pixel_class_head: true")
        if s.task == "tokens" and m.preset == "tiny" and not m.token_class_head:
            raise bad(key, "task tokens needs the per-token class head: model.token_class_head: true")
        if s.task == "point" and not m.pointing_head:
            raise bad(key, "task point trains the pointing head: needs model.pointing_head: true")
        if s.task == "moment" and not m.moment_head:
            raise bad(key, "task moment trains the moment head: needs model.moment_head: true")
        if s.type == "synthetic" and s.split not in ("train", "val", "test"):
            raise bad(f"{key}.split", f"must be train, val or test, got {s.split!r}")
        if s.expressions not in EXPRESSION_POOLS:
            raise bad(f"{key}.expressions", f"must be one of {', '.join(EXPRESSION_POOLS)}, got {s.expressions!r}")
        if s.expressions != EXPRESSION_POOLS[0] and (s.type != "synthetic" or s.task not in ("refvos", "point")):
            raise bad(f"{key}.expressions", "draws from the synthetic world's language: needs type: synthetic and "
                                            "task refvos or point")
    if not 0.0 <= d.tsg_ratio <= 1.0:
        raise bad("data.tsg_ratio", "must be within [0, 1]")
    tasks = {s.task for s in d.sources}
    if cfg.loss.presence < 0 or (cfg.loss.presence > 0 and "point" not in tasks):
        raise bad("loss.presence", "weighs task point's presence loss: needs a source with task: point (and ≥ 0)")
    if m.presence_threshold is not None and not m.pointing_head:
        raise bad("model.presence_threshold", "reads the pointing map: needs model.pointing_head: true")
    if m.presence_head and not m.pointing_head:
        raise bad("model.presence_head", "is a copy of the pointing head: needs model.pointing_head: true")
    if m.pointing_layers is not None and not m.pointing_head:
        raise bad("model.pointing_layers", "deepens the pointing head: needs model.pointing_head: true")
    if m.pointing_layers is not None and m.pointing_layers < 1:
        raise bad("model.pointing_layers", f"must be at least 1, not {m.pointing_layers}")
    if m.sam2_track_size is not None and not is_sam2_size(m.sam2_track_size):
        raise bad("model.sam2_track_size", f"must be a positive multiple of 16, not {m.sam2_track_size}")
    if m.pointing_subgrid is not None and not m.pointing_head:
        raise bad("model.pointing_subgrid", "refines the pointing head's map: needs model.pointing_head: true")
    if m.pointing_subgrid is not None and m.pointing_subgrid < 1:
        raise bad("model.pointing_subgrid", f"must be at least 1, not {m.pointing_subgrid}")
    if m.pointing_patches and not (m.pointing_head and m.pointing_vision):
        raise bad("model.pointing_patches", "reads the pointing head's own tower: needs model.pointing_head and "
                  "model.pointing_vision: true")
    if not 0.0 <= d.track_ratio < 1.0:
        raise bad("data.track_ratio", "must be within [0, 1)")
    if (d.track_ratio > 0) != ("track" in tasks and bool(tasks & {"tsg", "refvos"})):
        raise bad("data.track_ratio", "> 0 needs a 'track' source among tsg / refvos sources (and such a mix "
                                      "needs track_ratio > 0)")
    for key in ("tsg_max_frames", "context_frames", "context_frame_size", "keyframes", "track_frames",
                "tsg_queries_per_video"):
        if getattr(d, key) is not None and getattr(d, key) < 1:
            raise bad(f"data.{key}", "must be ≥ 1")
    if d.keyframe_window < 0 or (d.tsg_fps is not None and d.tsg_fps <= 0):
        raise bad("data", "needs keyframe_window ≥ 0 and tsg_fps > 0")
    for key, value in dataclasses.asdict(cfg.loss).items():
        if value < 0:
            raise bad(f"loss.{key}", "must be ≥ 0")
    o = cfg.optim
    if o.lr <= 0 or o.weight_decay < 0 or o.clip < 0 or o.eps <= 0:
        raise bad("optim", "needs lr > 0, weight_decay ≥ 0, clip ≥ 0 (0 = off) and eps > 0")
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise bad("optim.betas", "must be two numbers in [0, 1)")
    if not 0 <= o.warmup_ratio < 1 or not 0 <= o.min_lr_ratio <= 1:
        raise bad("optim", "needs 0 ≤ warmup_ratio < 1 and 0 ≤ min_lr_ratio ≤ 1")
    r = cfg.run
    for key in ("steps", "batch_size", "grad_accum", "checkpoint_every", "keep_last", "log_every"):
        if getattr(r, key) < 1:
            raise bad(f"run.{key}", "must be ≥ 1")
    if r.precision not in PRECISIONS:
        raise bad("run.precision", f"must be one of {', '.join(PRECISIONS)}, got {r.precision!r}")
