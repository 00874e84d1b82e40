"""The joint TSG + RefVOS trainer.

Any module whose ``forward_tsg(list)`` / ``forward_refvos(list)`` (and, for the pretraining stages,
``forward_track`` / ``forward_caption`` / ``forward_classes`` / ``forward_tokens`` / ``forward_point`` / ``forward_moment``) return the typed outputs of :mod:`momentseg.model.outputs` — the
unweighted loss components (``find_loss``, ``lm_loss`` / ``mask_bce``, ``mask_dice``, ``lm_loss``, ``object_bce``;
each a mean over the call's samples) — trains here. The trainer is the one place where components are weighted
(``loss:`` in the config, :class:`~momentseg.train.config.LossConfig`): a micro-batch's loss is the mean over its samples of ``Σ weight × component``, so with gradient accumulation
and data parallelism every sample of an optimizer step counts equally.

Distributed training runs through 🤗 accelerate (launch with ``accelerate launch`` or ``torchrun``): DDP,
FSDP or DeepSpeed ZeRO-2 (``configs/accelerate/``). Checkpoints hold the full state, gathered from every
process (:mod:`momentseg.train.engine`) and written by the main one; resume is exact (see ``data.py`` for why no
sampler/RNG state is needed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from momentseg.data.synthetic import EVENT_KINDS, PIXEL_CLASS_COUNTS, TOKEN_CLASS_COUNTS, caption_vocabulary
from momentseg.errors import InputError
from momentseg.io.atomic import atomic_dir, atomic_write_text
from momentseg.model import MomentSegModel
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
from momentseg.train import checkpoint as ckpt
from momentseg.train.config import LossConfig, TrainConfig
from momentseg.train.data import SampleStream, batch_positions, build_sources
from momentseg.train.engine import TrainState, engine_kind
from momentseg.train.params import apply_trainable, enable_gradient_checkpointing, merge_lora
from momentseg.train.shapes import SampleShape

TASK_COMPONENTS = {
    "tsg": TSGOutput.COMPONENTS,
    "refvos": RefVOSOutput.COMPONENTS,
    "track": TrackOutput.COMPONENTS,
    "caption": CaptionOutput.COMPONENTS,
    "classes": ClassesOutput.COMPONENTS,
    "tokens": TokensOutput.COMPONENTS,
    "point": PointOutput.COMPONENTS,
    "moment": MomentOutput.COMPONENTS,
}
"""The components ``forward_<task>`` returns next to ``loss`` (``track`` / ``caption`` / ``classes`` / ``tokens``:
the backbone pretraining stages, :func:`momentseg.train.data.track_sample` / ``caption_sample`` /
``classes_sample`` / ``tokens_sample``)."""


class JointLoss(torch.nn.Module):
    """Wraps the model so one ``forward`` (the call DDP/FSDP hook into) runs both tasks of a micro-batch.

    The model returns, per task, a typed output of unweighted components, each a mean over the call's samples; the
    task loss is ``Σ weight × component`` (``loss:`` of the training config) and the micro-batch loss the per-sample
    mean ``(n_tsg·loss_tsg + n_ref·loss_ref) / n``.
    Also returned, for logging: ``sum/<task>/<component>`` (component × samples) and ``n/<task>``.
    """

    def __init__(self, model: torch.nn.Module, weights: LossConfig):
        super().__init__()
        self.model = model
        self.weights = weights.by_component()

    def forward(self, tsg: list = (), refvos: list = (), track: list = (), caption: list = (),
                classes: list = (), tokens: list = (), point: list = (), moment: list = ()) -> dict[str, torch.Tensor]:
        batch = {"tsg": tsg, "refvos": refvos, "track": track, "caption": caption, "classes": classes,
                 "tokens": tokens, "point": point, "moment": moment}
        n = sum(len(v) for v in batch.values())
        if n == 0:
            raise ValueError("empty micro-batch")
        total: torch.Tensor | float = 0.0
        out: dict[str, torch.Tensor] = {}
        for task, samples in batch.items():
            out[f"n/{task}"] = torch.tensor(float(len(samples)))
            for c in TASK_COMPONENTS[task]:
                out[f"sum/{task}/{c}"] = torch.tensor(0.0)
            if not samples:
                continue
            output = getattr(self.model, f"forward_{task}")(list(samples))
            parts = output.components()
            if set(parts) != set(TASK_COMPONENTS[task]):
                raise KeyError(f"forward_{task} returned {sorted(parts)}, expected {TASK_COMPONENTS[task]}")
            loss = output.weighted(self.weights)
            total = total + loss.float() * (len(samples) / n)
            for c, v in parts.items():
                out[f"sum/{task}/{c}"] = v.detach().float().cpu() * len(samples)
        out["loss"] = total
        return out


def lr_factor(step: int, steps: int, warmup_ratio: float, min_ratio: float) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based): linear warm-up over
    ``round(warmup_ratio·steps)`` steps, then cosine from 1 to ``min_ratio`` at the last step."""
    warmup = round(warmup_ratio * steps)
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, steps - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one (step, rank): model randomness (dropout, point sampling) replays on resume."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters: weight decay on matrices, none on biases/norms (≤ 1-D)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


@dataclass
class TrainResult:
    out: Path
    steps: int
    final: Path
    history: list[dict[str, Any]]


def _mixed_precision(precision: str) -> str:
    if precision == "fp32":
        return "no"
    if precision == "bf16":
        return "bf16"
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def train(
    cfg: TrainConfig,
    out: str | Path | None = None,
    resume: bool = False,
    model: torch.nn.Module | None = None,
    stream: SampleStream | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train per ``cfg`` into ``out`` (default ``cfg.out``); returns the folder, final model path and the
    metrics of the steps run by this call (main process).

    ``model`` / ``stream`` default to the model and data the config describes (``momentseg.model``,
    ``data.sources``); tests pass their own. With ``resume`` the newest checkpoint in ``out`` is loaded and
    the run continues from it; without it an ``out`` that already holds checkpoints is refused.
    """
    trainer = _set_up(cfg, Path(out if out is not None else cfg.out), resume, model, stream)
    history: list[dict[str, Any]] = []
    snap = None
    steps = cfg.run.steps
    progress = _Progress(steps, trainer.start, enabled=trainer.main and cfg.run.progress)
    trainer.module.train()
    with progress:
        for step in range(trainer.start, steps):
            record = _train_step(trainer, step)
            if trainer.main:
                history.append(record)
                _log_step(trainer, record, on_step, progress)
            if (step + 1) % cfg.run.checkpoint_every == 0 or step + 1 == steps:
                snap = _checkpoint(trainer, step + 1)
    final = _export(trainer, snap)
    return TrainResult(out=trainer.out, steps=steps, final=final, history=history)


@dataclass
class _Trainer:
    """What one :func:`train` call sets up and its steps, logging, checkpoints and export share."""

    cfg: TrainConfig
    out: Path
    accelerator: Any
    kind: str  # engine_kind: torch | fsdp | deepspeed
    module: torch.nn.Module  # the JointLoss around the model, prepared by accelerate
    optimizer: torch.optim.Optimizer
    state: TrainState
    stream: SampleStream
    trainable: list[torch.nn.Parameter]
    start: int = 0

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def global_batch(self) -> int:
        return self.accelerator.num_processes * self.cfg.run.grad_accum * self.cfg.run.batch_size

    @property
    def facts(self) -> dict[str, int]:
        """What a checkpoint records so that a resume can check it continues the same run."""
        return {"seed": self.cfg.seed, "global_batch": self.global_batch, "steps": self.cfg.run.steps}


def _set_up(cfg: TrainConfig, out: Path, resume: bool, model: torch.nn.Module | None,
            stream: SampleStream | None) -> _Trainer:
    """The accelerator and the model wrapped for training with its optimizer and data, resumed from the newest
    checkpoint in ``out`` with ``resume``; ``config.json`` written and ``metrics.jsonl`` cut back to the start."""
    accelerator, kind = _accelerator(cfg, model)
    existing = ckpt.list_checkpoints(out)
    if existing and not resume:
        raise InputError(f"{out} already holds checkpoints; pass --resume to continue or choose another --out")
    if resume and not existing:
        raise InputError(f"--resume: no checkpoint found under {out}/checkpoints")
    accelerator.wait_for_everyone()  # every process has looked before the main one writes anything

    model = _initial_model(cfg, model)
    if cfg.model.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if stream is None:
        stream = build_stream(cfg, model)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps
    )
    state = TrainState(model, optimizer)
    module = JointLoss(model, cfg.loss)
    module, optimizer = accelerator.prepare(module, optimizer)
    state.bind(kind, module, optimizer)
    trainer = _Trainer(cfg, out, accelerator, kind, module, optimizer, state, stream,
                       trainable=[p for p in module.parameters() if p.requires_grad])
    if resume:
        trainer.start = _resume(trainer, existing[-1][1])
    if trainer.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=1))
        _truncate_log(out / "metrics.jsonl", trainer.start)
    accelerator.wait_for_everyone()
    return trainer


def _accelerator(cfg: TrainConfig, model: torch.nn.Module | None) -> tuple[Accelerator, str]:
    """The accelerator for this process and its engine kind (DDP, FSDP2 or DeepSpeed ZeRO-1/2, as launched),
    the engine checked."""
    run = cfg.run
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if deepspeed and not torch.cuda.is_available():
        # DeepSpeed on CPU (its CPU accelerator): accelerate only enables DeepSpeed with cpu=False, and then
        # counts the processes only when told the backend
        PartialState(cpu=False, backend="gloo")
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(run.precision),
        gradient_accumulation_steps=run.grad_accum,
        cpu=not torch.cuda.is_available() and not deepspeed,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    kind = engine_kind(accelerator)
    if kind == "fsdp":
        if accelerator.state.fsdp_plugin.fsdp_version != 2:
            raise InputError("FSDP: momentseg train runs FSDP2 (fsdp_version: 2, configs/accelerate/fsdp.yaml); "
                             "FSDP1's flat parameters are not supported")
        if model is not None:
            raise InputError("FSDP training builds its model from the config (the final model is rebuilt from it)")
    if kind == "deepspeed":
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        stage = ds.get("zero_optimization", {}).get("stage", 0)
        if stage not in (1, 2):
            raise InputError(f"DeepSpeed ZeRO stage {stage}: momentseg train supports stages 1 and 2 "
                             f"(configs/accelerate/deepspeed_zero2.json)")
        # the training config owns batch size and clipping (the DeepSpeed JSON says "auto")
        ds["train_micro_batch_size_per_gpu"] = run.batch_size
        ds["gradient_clipping"] = cfg.optim.clip
    return accelerator, kind


def _resume(trainer: _Trainer, folder: Path) -> int:
    """Load the checkpoint ``folder`` into the trainer's state after checking it continues this run (same seed
    and global batch, fewer steps than asked); returns its step."""
    cfg, global_batch = trainer.cfg, trainer.global_batch
    snap, saved_state = ckpt.read_checkpoint(folder)
    saved = saved_state["facts"]
    if saved["seed"] != cfg.seed or saved["global_batch"] != global_batch:
        raise InputError(
            f"--resume: {folder} was written with seed {saved['seed']} and global batch "
            f"{saved['global_batch']}, this run has seed {cfg.seed} and global batch {global_batch} "
            f"(processes × grad_accum × batch_size); an exact resume needs both equal"
        )
    start = saved_state["step"]
    if start >= cfg.run.steps:
        raise InputError(f"--resume: {folder} is at step {start}, the config asks for {cfg.run.steps} steps")
    trainer.state.restore(snap, folder)
    return start


def _train_step(trainer: _Trainer, step: int) -> dict[str, Any]:
    """Optimizer step ``step`` (0-based): its learning rate, ``grad_accum`` micro-batches of this process's
    positions, clipping; returns the step's metrics averaged over all processes (:func:`_step_record`)."""
    cfg, accelerator, module, optimizer = trainer.cfg, trainer.accelerator, trainer.module, trainer.optimizer
    run, rank, world = cfg.run, accelerator.process_index, accelerator.num_processes
    t0 = time.perf_counter()
    torch.manual_seed(step_seed(cfg.seed, step, rank))
    lr = cfg.optim.lr * lr_factor(step, run.steps, cfg.optim.warmup_ratio, cfg.optim.min_lr_ratio)
    for g in optimizer.param_groups:
        g["lr"] = lr
    sums: dict[str, torch.Tensor] = {}
    grad_norm = None
    for micro in range(run.grad_accum):
        positions = batch_positions(step, micro, rank, world, run.grad_accum, run.batch_size)
        with accelerator.accumulate(module):
            result = module(**trainer.stream.batch(positions))
            accelerator.backward(result["loss"])
            if accelerator.sync_gradients:
                if cfg.optim.clip > 0 and trainer.kind != "deepspeed":  # DeepSpeed clips in its step
                    grad_norm = accelerator.clip_grad_norm_(trainer.trainable, cfg.optim.clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        for k, v in result.items():
            if k != "loss":
                sums[k] = sums.get(k, 0.0) + v
        # the micro-batch loss is a mean over its samples; a position may hold several (tsg_queries_per_video)
        n_samples = sum(float(v) for k, v in result.items() if k.startswith("n/"))
        sums["loss"] = sums.get("loss", 0.0) + result["loss"].detach().float().cpu() * n_samples
    if trainer.kind == "deepspeed":  # DeepSpeed clipped inside its step; it keeps the norm it measured
        grad_norm = module.get_global_grad_norm()
    return _step_record(accelerator, sums, step + 1, lr, time.perf_counter() - t0, grad_norm)


def _log_step(trainer: _Trainer, record: dict[str, Any], on_step: Callable[[dict[str, Any]], None] | None,
              progress: _Progress) -> None:
    """Main process: append ``record`` to ``metrics.jsonl`` every ``log_every`` steps and at the end, hand it
    to ``on_step``, move the progress bar."""
    run = trainer.cfg.run
    if record["step"] % run.log_every == 0 or record["step"] == run.steps:
        with open(trainer.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    if on_step is not None:
        on_step(record)
    progress.update(record)


def _checkpoint(trainer: _Trainer, step: int):
    """Save the checkpoint of ``step`` (every process takes part); returns the snapshot (None on the processes
    of a DDP run other than the main one)."""
    accelerator, main, kind = trainer.accelerator, trainer.main, trainer.kind
    accelerator.wait_for_everyone()
    # sharded engines gather collectively (every process); under DDP only the main process copies
    snap = trainer.state.snapshot() if main or kind != "torch" else None
    if main:
        ckpt.save_checkpoint(trainer.out, step, snap, trainer.facts, trainer.cfg.run.keep_last)
    accelerator.wait_for_everyone()
    return snap


def _export(trainer: _Trainer, snap) -> Path:
    """Write the trained model (LoRA merged) to ``out/final`` and end training; ``snap``: the last checkpoint's
    snapshot (FSDP: the gathered state the model is rebuilt from)."""
    accelerator = trainer.accelerator
    final = trainer.out / "final"
    accelerator.wait_for_everyone()
    if trainer.main:
        if trainer.kind == "fsdp":
            # the trained module's parameters are shards: rebuild the model (with the config training ended
            # with: build_stream may have set its frame sampling) and load the gathered state
            inner = _initial_model(trainer.cfg)
            inner.config = accelerator.unwrap_model(trainer.module).model.config
            ckpt.restore_params(snap, inner)
        else:
            inner = accelerator.unwrap_model(trainer.module).model
        with atomic_dir(final) as tmp:
            merge_lora(inner).save_pretrained(tmp)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _step_record(accelerator, sums, step, lr, seconds, grad_norm) -> dict[str, Any]:
    """Average the step's per-sample sums over all processes into one metrics line."""
    keys = sorted(sums)
    vec = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64).reshape(()) for k in keys])
    if accelerator.num_processes > 1:
        vec = accelerator.reduce(vec.to(accelerator.device), reduction="sum").cpu()
    total = dict(zip(keys, vec.tolist(), strict=True))
    counts = {task: total[f"n/{task}"] for task in TASK_COMPONENTS}
    record: dict[str, Any] = {"step": step, "loss": total["loss"] / max(1.0, sum(counts.values()))}
    for task, n in counts.items():
        for c in TASK_COMPONENTS[task]:
            if n > 0:
                record[f"{task}/{c}"] = total[f"sum/{task}/{c}"] / n
    record.update({f"{task}_samples": int(n) for task, n in counts.items() if n > 0 or task in ("tsg", "refvos")})
    record.update({"lr": lr,
                   "grad_norm": None if grad_norm is None else float(grad_norm),
                   "samples_per_s": sum(counts.values()) / max(seconds, 1e-9)})
    return record


def _truncate_log(path: Path, step: int) -> None:
    """Keep the metric lines of steps ≤ ``step`` (all lines are dropped for a fresh run)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(line + "\n" for line in keep))


class _Progress:
    """A rich progress bar on the main process showing step, loss and samples/s."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled = enabled
        if enabled:
            self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"))
            self._task = self._bar.add_task("train", total=total, completed=start, info="")

    def __enter__(self):
        if self.enabled:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.__exit__(*exc)

    def update(self, record: dict[str, Any]) -> None:
        if self.enabled:
            info = f"loss {record['loss']:.4f}  lr {record['lr']:.2e}  {record['samples_per_s']:.1f} samples/s"
            self._bar.update(self._task, completed=record["step"], info=info)


def _initial_model(cfg: TrainConfig, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """``model`` (default: the one the config names, built under ``cfg.seed`` so every process and every
    rebuild gets the same weights) with the config's loss weights and trainable parts set."""
    torch.manual_seed(cfg.seed)
    if model is None:
        model = build_model(cfg)
    apply_trainable(model, cfg.model)
    return model


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The MomentSegModel the config names: a saved folder, a fresh tiny model, or 3B/7B from base weights."""
    m = cfg.model
    if m.pretrained is not None:
        model = MomentSegModel.from_pretrained(m.pretrained)
    elif m.preset == "tiny":
        model = MomentSegModel.tiny(caption_vocabulary(),
                                    pixel_classes=PIXEL_CLASS_COUNTS if m.pixel_class_head else (),
                                    token_classes=TOKEN_CLASS_COUNTS if m.token_class_head else (),
                                    event_classes=len(EVENT_KINDS) if m.event_head else 0)
    else:
        model = MomentSegModel.from_base(m.qwen_dir, m.sam2_dir, preset=m.preset)
    if m.pointing_head and not model.config.seg_pointing:
        model.add_pointing_head()
    if m.pointing_vision and not model.config.seg_pointing_vision:
        model.add_pointing_vision(m.pointing_vision_from)
    if m.presence_head and not model.config.seg_presence_head:
        model.add_presence_head()
    if m.pointing_layers is not None and m.pointing_layers != model.config.seg_pointing_layers:
        if m.pointing_layers < model.config.seg_pointing_layers:
            raise InputError(f"model.pointing_layers: {m.pointing_layers} is fewer than the "
                             f"{model.config.seg_pointing_layers} layers of {m.pretrained}'s pointing head")
        model.deepen_pointing_head(m.pointing_layers)
    if m.pointing_subgrid is not None and m.pointing_subgrid != model.config.seg_pointing_subgrid:
        if model.config.seg_pointing_subgrid != 1:
            raise InputError(f"model.pointing_subgrid: {m.pretrained}'s pointing head already has subgrid "
                             f"{model.config.seg_pointing_subgrid}; only a head of subgrid 1 is refined")
        model.refine_pointing_head(m.pointing_subgrid)
    if m.pointing_patches and not model.config.seg_pointing_patches:
        try:
            model.add_pointing_patches()
        except ValueError as e:
            raise InputError(f"model.pointing_patches: {e}") from None
    if m.moment_head and not model.config.find_moment_head:
        model.add_moment_head()
    if m.point_prior is not None:
        with torch.no_grad():
            model.point_prior_scale.copy_(torch.tensor(m.point_prior, dtype=torch.float32))
    if m.presence_threshold is not None:  # validate() checked that the model gets a pointing head
        model.config.point_presence_threshold = float(m.presence_threshold)
    if m.sam2_track_size is not None:
        model.config.sam2_track_size = int(m.sam2_track_size)
    if m.sam2_from is not None:
        model.load_sam2_from(m.sam2_from, keep_fresh=m.sam2_fresh)
    if m.vision_from is not None:
        model.load_vision_from(m.vision_from)
    return model


def build_stream(cfg: TrainConfig, model: torch.nn.Module) -> SampleStream:
    """The sample stream of ``cfg.data`` sized for ``model``: TSG / context frames to the model's low-res
    sizes, keyframes to its SAM2 input size, TSG frame rate / count and context count and size = the model config's (``data`` may override them, and then the
    model config is updated so the saved model infers as it was trained)."""
    d, c = cfg.data, model.config
    # The data config may override the model's frame sampling; the model's config records what was used.
    if d.tsg_fps is not None:
        c.fps = float(d.tsg_fps)
    if d.tsg_max_frames is not None:
        c.find_max_frames = int(d.tsg_max_frames)
    if d.context_frames is not None:
        c.context_frames = int(d.context_frames)
    if d.context_frame_size is not None:
        c.context_frame_size = int(d.context_frame_size)
    shape = SampleShape(
        tsg_side=int(c.find_frame_size),
        context_side=int(c.context_frame_size),
        keyframe_side=int(c.sam2_image_size),
        tsg_max_frames=int(c.find_max_frames),
        tsg_fps=float(c.fps),
        tsg_queries=d.tsg_queries_per_video,
        context_frames=int(c.context_frames),
        keyframes=d.keyframes,
        keyframe_window=d.keyframe_window,
        temporal_patch=int(model.layout.temporal_patch_size),
    )
    if d.track_frames is not None:
        shape = dataclasses.replace(shape, track_frames=int(d.track_frames))
    sources, weights = build_sources(d, shape)
    return SampleStream(sources, shape, tsg_ratio=d.tsg_ratio, seed=cfg.seed, weights=weights,
                        track_ratio=d.track_ratio)
