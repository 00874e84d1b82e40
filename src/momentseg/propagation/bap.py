"""Bidirectional Anchor-updated Propagation (BAP) and the forward baselines, over a SAM2 video model.

:func:`propagate` runs the passes of :func:`momentseg.propagation.policy.bap_plan` and yields one
:class:`~momentseg.sam2.session.FrameOutput` per video frame (every frame exactly once; BAP starts at the
anchor, goes forward to the last frame, then backward from anchor − 1 to frame 0; frames no pass tracks — before
the start of the forward-only modes — come last, with empty masks). Each result holds SAM2's low-res mask logits
(S/4 × S/4): the caller upsamples it with :func:`upsample_mask` to the original size and stores / compresses it
at once, so no all-frames tensor at full size ever exists.

Prompts
-------
* ``prompt_embedding`` (P,) or (P+C0+1,): the [SEG] embedding, the language prompt of each pass's session
  (:class:`~momentseg.sam2.session.PropagationSession` ``language=``). Every keyframe of a pass is decoded
  from it as a conditioning frame (no memory) before the pass propagates, and every propagated frame also gets
  it as an extra sparse prompt token — unless the model was built with ``language_on_tracked_frames=False``
  (Sa2VA's behaviour, :class:`~momentseg.sam2.video.MomentSegSam2`).
* ``prompt_prior``: the embedding's spatial prior (:class:`~momentseg.sam2.video.SpatialPrior`; a model with
  ``seg_pointing``), added to the masks of every frame that gets the language prompt.
* ``mask_prompts`` {keyframe: (H, W) mask}: per-keyframe masks as the conditioning prompts instead (e.g. from a
  user, or for tests with a random model). Given together with an embedding, the masks condition the keyframes
  and the embedding is still the language prompt of every decoded frame.

Anchor update: see :mod:`momentseg.propagation.policy` (:class:`AnchorTracker`); a firing clears the
non-conditioning memory within ±``update_radius`` frames of the keyframe.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from momentseg.errors import InputError
from momentseg.propagation.policy import (
    DEFAULT_MODE,
    UPDATE_RADIUS,
    UPDATE_RATIO,
    AnchorTracker,
    Mode,
    Pass,
    Plan,
    bap_plan,
)
from momentseg.sam2.config import NO_OBJECT_LOGIT
from momentseg.sam2.session import (
    FrameOutput,
    FrameSource,
    FrameStore,
    PropagationSession,
    as_frame_store,
)
from momentseg.sam2.video import SpatialPrior


def upsample_mask(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Low-res mask logits (h, w) -> bool mask (H, W): bilinear upsampling, then sigmoid > 0.5 (logit > 0)."""
    if logits.ndim != 2:
        raise InputError(f"mask logits must be 2-D (h, w), got shape {tuple(logits.shape)}")
    up = F.interpolate(
        logits[None, None].float(), size=tuple(int(s) for s in size), mode="bilinear", align_corners=False
    )
    return up[0, 0] > 0


@dataclass(frozen=True)
class _PassSettings:
    embedding: torch.Tensor | None
    prior: SpatialPrior | None
    mask_prompts: dict[int, object]
    anchor_update: bool
    update_ratio: float
    update_radius: int
    video_size: tuple[int, int] | None
    inference_state_device: torch.device | str | None
    prune: bool


def propagate(
    sam2_model,
    frames: FrameSource | FrameStore,
    keyframes,
    anchor: int,
    prompt_embedding: torch.Tensor | None = None,
    *,
    mask_prompts: Mapping[int, object] | None = None,
    prompt_prior: SpatialPrior | None = None,
    mode: Mode = DEFAULT_MODE,
    num_frames: int | None = None,
    anchor_update: bool = True,
    update_ratio: float = UPDATE_RATIO,
    update_radius: int = UPDATE_RADIUS,
    video_size: tuple[int, int] | None = None,
    inference_state_device: torch.device | str | None = None,
    prune: bool = True,
) -> Iterator[FrameOutput]:
    """Segment one object through the video; yields ``FrameOutput(frame_idx, mask_logits (S/4, S/4), prob)``.

    ``frames``: preprocessed frames (T,3,S,S) or a callable ``idx -> (3,S,S)`` (give ``num_frames``);
    ``keyframes``: conditioning frames; ``anchor``: the keyframe BAP starts from (ignored by ``forward``);
    ``mode``: ``bap`` | ``forward`` | ``anchor-forward``; ``anchor_update``: apply the anchor-update rule;
    ``video_size``: original (H, W), recorded on the sessions; ``inference_state_device``: where stored memories
    live (e.g. "cpu"); ``prune=False``: keep every stored output (transformers' default, for comparison).
    Arguments are checked when called; the work happens while iterating. The mask logits are on the model's
    device and must not be modified in place.
    """
    if prompt_embedding is None and mask_prompts is None:
        raise InputError("propagation needs a prompt: a [SEG] embedding or per-keyframe mask prompts")
    store = as_frame_store(frames, num_frames=num_frames, image_size=int(sam2_model.config.image_size))
    plan = bap_plan(len(store), keyframes, anchor, mode)
    prompts = {int(k): v for k, v in (mask_prompts or {}).items()}
    if mask_prompts is not None:
        missing = sorted({k for p in plan.passes for k in p.conditioning} - prompts.keys())
        if missing:
            raise InputError(f"mask_prompts has no mask for keyframes {missing}")
    if prompt_embedding is not None:
        prompt_embedding = prompt_embedding.to(next(sam2_model.parameters()).device)
    if prompt_prior is not None:
        if prompt_embedding is None:
            raise InputError("prompt_prior goes with the [SEG] embedding it belongs to: give prompt_embedding")
        device = next(sam2_model.parameters()).device
        prompt_prior = SpatialPrior(prompt_prior.maps.to(device), prompt_prior.frame_patch)
    settings = _PassSettings(
        prompt_embedding,
        prompt_prior,
        prompts,
        anchor_update,
        update_ratio,
        update_radius,
        video_size,
        inference_state_device,
        prune,
    )
    return _iterate(sam2_model, store, plan, settings)


def _iterate(sam2_model, store: FrameStore, plan: Plan, settings: _PassSettings) -> Iterator[FrameOutput]:
    for spec in plan.passes:
        yield from _run_pass(sam2_model, store, spec, settings)
    if plan.empty:
        side = int(sam2_model.prompt_encoder.mask_input_size[0])
        blank = torch.full((side, side), NO_OBJECT_LOGIT, device=next(sam2_model.parameters()).device)
        for f in plan.empty:
            yield FrameOutput(f, blank, 0.0)


def _run_pass(sam2_model, store: FrameStore, spec: Pass, settings: _PassSettings) -> Iterator[FrameOutput]:
    """One pass over a fresh session: condition the pass's keyframes, then track ``spec.frames`` in order."""
    sess = PropagationSession(
        sam2_model,
        store,
        language=settings.embedding,
        prior=settings.prior,
        video_size=settings.video_size,
        inference_state_device=settings.inference_state_device,
        prune=settings.prune,
    )
    for k in spec.conditioning:
        with torch.inference_mode():  # around one model call, never across a yield
            sess.condition(k, settings.mask_prompts.get(k))
    tracker = AnchorTracker(settings.update_ratio)
    emit = set(spec.emit)
    for f in spec.frames:
        with torch.inference_mode():
            out = sess.track(f, reverse=spec.reverse)
        if f in spec.conditioning:
            if settings.anchor_update and f != spec.frames[0] and tracker.at_keyframe(out.object_prob):
                sess.clear_memory_around(f, settings.update_radius)
        else:
            tracker.observe(out.object_prob)
        if f in emit:
            yield out
