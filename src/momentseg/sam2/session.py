"""A bounded-memory SAM2 video session over transformers' ``Sam2VideoInferenceSession`` (no torchvision).

transformers keeps a video session's frames in ``session.processed_frames`` (a dict frame -> (3,S,S)) and
reads them only through ``len()`` (the frame count) and ``[frame_idx]`` (``session.get_frame``). Here that dict
is replaced by a :class:`FrameStore`, a read-only mapping that asks a callable (or indexes a tensor) for a frame
when the model needs it and remembers only the last few, so the video never sits in memory at S×S.

The session also stores, per object and frame, every model output (``output_dict_per_obj``), which grows with
the video. :class:`PropagationSession` prunes it after each tracked frame without changing any result:

* SAM2 reads the memory features of the previous ``num_maskmem − 1`` non-conditioning frames (in the direction
  of travel) and the object pointers of the previous ``max_object_pointers_in_encoder − 1``; older entries are
  deleted, entries beyond the memory window keep only their object pointer and score;
* the S×S ``high_res_masks`` (needed only inside the step that produced them) are dropped from every entry;
* ``frames_tracked_per_obj`` entries of pruned frames are dropped too.

Memory features are moved to ``inference_state_device`` (transformers writes them on the inference device).
Tested against transformers 5.24.0 (pinned), whose session internals these functions rely on.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F

from momentseg.errors import InputError
from momentseg.sam2.video import LanguageSession, MomentSegSam2, SpatialPrior

#: A preprocessed video: a tensor (T,3,S,S), or a callable ``frame_idx -> (3,S,S)`` (with ``num_frames``).
FrameSource = torch.Tensor | Callable[[int], torch.Tensor]

_POINTER_KEYS = ("object_pointer", "object_score_logits")


class FrameOutput(NamedTuple):
    """One frame's result: SAM2 low-res mask logits (h, w) = (S/4, S/4) and sigmoid(object score) in [0, 1]."""

    frame_idx: int
    mask_logits: torch.Tensor
    object_prob: float


class FrameStore(Mapping):
    """Read-only mapping ``frame_idx -> (3,S,S)`` frame that fetches lazily and keeps the last ``keep`` frames.

    ``frames``: a tensor (T,3,S,S) (indexed, never copied whole) or a callable ``idx -> (3,S,S)`` tensor (then
    ``num_frames`` is required). ``image_size``: if given, every frame must be (3, image_size, image_size).
    ``fetches`` counts calls to the source.
    """

    def __init__(
        self, frames: FrameSource, num_frames: int | None = None, image_size: int | None = None, keep: int = 1
    ):
        if isinstance(frames, torch.Tensor):
            if frames.ndim != 4 or frames.shape[1] != 3:
                raise InputError(f"frames must be a (T,3,S,S) tensor, got shape {tuple(frames.shape)}")
            if num_frames is not None and num_frames != frames.shape[0]:
                raise InputError(
                    f"num_frames={num_frames} but the frame tensor holds {frames.shape[0]} frames"
                )
            tensor = frames
            self._source = lambda i: tensor[i]
            self._len = int(frames.shape[0])
        elif callable(frames):
            if num_frames is None:
                raise InputError("num_frames is required when frames are given as a callable")
            self._source = frames
            self._len = int(num_frames)
        else:
            raise InputError(f"frames must be a tensor or a callable, got {type(frames).__name__}")
        if self._len < 1:
            raise InputError("the video has no frames")
        self.image_size = image_size
        self.keep = max(1, int(keep))
        self.fetches = 0
        self._recent: OrderedDict[int, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._len))

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        idx = int(frame_idx)
        if not 0 <= idx < self._len:
            raise KeyError(frame_idx)
        if idx in self._recent:
            self._recent.move_to_end(idx)
            return self._recent[idx]
        frame = self._source(idx)
        self.fetches += 1
        if not isinstance(frame, torch.Tensor) or frame.ndim != 3 or frame.shape[0] != 3:
            raise InputError(
                f"frame {idx}: expected a (3,S,S) tensor, got {getattr(frame, 'shape', type(frame))}"
            )
        if self.image_size is not None and tuple(frame.shape[1:]) != (self.image_size, self.image_size):
            raise InputError(
                f"frame {idx}: expected size {self.image_size}x{self.image_size}, got {tuple(frame.shape)}"
            )
        self._recent[idx] = frame
        while len(self._recent) > self.keep:
            self._recent.popitem(last=False)
        return frame


def as_frame_store(
    frames: FrameSource | FrameStore, num_frames: int | None = None, image_size: int | None = None
):
    """``frames`` as a :class:`FrameStore` (returned unchanged if it already is one)."""
    if isinstance(frames, FrameStore):
        if num_frames is not None and num_frames != len(frames):
            raise InputError(f"num_frames={num_frames} but the frame store holds {len(frames)} frames")
        return frames
    return FrameStore(frames, num_frames=num_frames, image_size=image_size)


def resize_mask_prompt(mask, image_size: int) -> torch.Tensor:
    """A 2-D mask (H, W) (bool / 0-1, numpy or torch) -> float (1, 1, S, S) in {0, 1}: bilinear, antialiased,
    thresholded at 0.5 (what transformers' processor does for mask prompts)."""
    m = torch.as_tensor(mask)
    if m.ndim != 2:
        raise InputError(f"a mask prompt must be 2-D (H, W), got shape {tuple(m.shape)}")
    m = m.float()[None, None]
    if m.shape[-2:] != (image_size, image_size):
        m = F.interpolate(
            m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
    return (m > 0.5).float()


def _first(x: torch.Tensor) -> float:
    return float(torch.sigmoid(x.reshape(-1)[0].float()))


class PropagationSession:
    """One object tracked through a fresh SAM2 video state, with pruned (bounded) memory.

    ``sam2``: a :class:`~momentseg.sam2.video.MomentSegSam2` in eval mode. ``frames``: a
    :class:`FrameStore` (share one store between the passes of a video). ``language``: the object's language
    prompt ((P,) or (P+C0+1,), e.g. the [SEG] embedding), given to every frame SAM2 decodes for it (tracked
    frames too unless the model's ``language_on_tracked_frames`` is off), with its spatial ``prior`` if any
    (:class:`~momentseg.sam2.video.SpatialPrior`). ``video_size``: the original (H, W),
    recorded on the session. ``inference_state_device``: where stored outputs / memories live (default: the
    model's device; e.g. "cpu" to offload). ``prune=False`` keeps transformers' unbounded behaviour (for
    comparison).
    """

    def __init__(
        self,
        sam2,
        frames: FrameStore,
        *,
        language: torch.Tensor | None = None,
        prior: SpatialPrior | None = None,
        video_size: tuple[int, int] | None = None,
        inference_state_device: torch.device | str | None = None,
        prune: bool = True,
        obj_id: int = 0,
    ):
        if not isinstance(sam2, MomentSegSam2):
            raise TypeError(f"a propagation session needs a MomentSegSam2 (momentseg.sam2.video.build_sam2), "
                            f"got {type(sam2).__name__}")
        param = next(sam2.parameters())
        self.sam2 = sam2
        self.image_size = int(sam2.config.image_size)
        if frames.image_size is None:
            frames.image_size = self.image_size
        state_device = (
            param.device if inference_state_device is None else torch.device(inference_state_device)
        )
        height, width = video_size if video_size is not None else (self.image_size, self.image_size)
        self.session = LanguageSession(
            video=None,
            video_height=int(height),
            video_width=int(width),
            inference_device=param.device,
            inference_state_device=state_device,
            video_storage_device="cpu",
            dtype=param.dtype,
            max_vision_features_cache_size=1,
        )
        self.session.processed_frames = frames  # read via len() and [idx] only
        self.frames = frames
        self.obj_id = obj_id
        self.obj_idx = self.session.obj_id_to_idx(obj_id)
        if language is not None:
            sam2.set_language_embedding(self.session, obj_id, language, prior)
        self.prune_enabled = prune
        self.full_window = max(0, int(sam2.config.num_maskmem) - 1)
        self.pointer_window = max(self.full_window, int(sam2.config.max_object_pointers_in_encoder) - 1)
        self.peak_stored = 0  # most non-conditioning entries held at once (after pruning)

    # --- views on the transformers state -------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def _outputs(self) -> dict:
        return self.session.output_dict_per_obj[self.obj_idx]

    def conditioning_frames(self) -> list[int]:
        """Frames stored as conditioning frames, sorted."""
        return sorted(self._outputs["cond_frame_outputs"])

    def stored_frames(self) -> list[int]:
        """Frames with a stored non-conditioning output (full or pointer-only), sorted."""
        return sorted(self._outputs["non_cond_frame_outputs"])

    def memory_frames(self) -> list[int]:
        """Non-conditioning frames whose memory features are still stored, sorted."""
        return sorted(
            f for f, o in self._outputs["non_cond_frame_outputs"].items() if "maskmem_features" in o
        )

    # --- prompting ------------------------------------------------------------------------------------------
    def condition(self, frame_idx: int, mask=None) -> FrameOutput:
        """Make ``frame_idx`` a conditioning frame (decoded without memory) and return its output.

        With ``mask`` (2-D, any size) the mask is the prompt (SAM2 uses it as the output); without, the frame is
        decoded from the session's language prompt alone. Call before the frame is tracked in this session.
        """
        idx = self._check_frame(frame_idx)
        if idx in self.session.frames_tracked_per_obj[self.obj_idx]:
            raise InputError(
                f"frame {idx} was already tracked in this pass; condition keyframes before propagating"
            )
        if mask is None:
            out = self.sam2(inference_session=self.session, frame_idx=idx, condition=(self.obj_id,))
        else:
            self.session.add_mask_inputs(self.obj_idx, idx, resize_mask_prompt(mask, self.image_size))
            self.session.remove_point_inputs(self.obj_idx, idx)
            try:
                out = self.sam2(inference_session=self.session, frame_idx=idx, condition=(self.obj_id,))
            finally:
                self.session.remove_mask_inputs(self.obj_idx, idx)
        self._tidy(idx)
        return FrameOutput(idx, out.pred_masks[0, 0], _first(out.object_score_logits))

    # --- tracking -------------------------------------------------------------------------------------------
    def track(self, frame_idx: int, reverse: bool = False) -> FrameOutput:
        """Segment ``frame_idx`` with memory (a conditioning frame returns its stored output), then prune."""
        idx = self._check_frame(frame_idx)
        out = self.sam2(inference_session=self.session, frame_idx=idx, reverse=reverse)
        self._tidy(idx)
        if self.prune_enabled:
            self.prune(idx, reverse)
        self.peak_stored = max(self.peak_stored, len(self._outputs["non_cond_frame_outputs"]))
        return FrameOutput(idx, out.pred_masks[0, 0], _first(out.object_score_logits))

    def clear_memory_around(self, frame_idx: int, radius: int) -> list[int]:
        """Delete the non-conditioning outputs (memories and object pointers) within ±radius of ``frame_idx``;
        conditioning frames are kept. Returns the cleared frames."""
        non_cond = self._outputs["non_cond_frame_outputs"]
        tracked = self.session.frames_tracked_per_obj[self.obj_idx]
        cleared = sorted(f for f in non_cond if abs(f - frame_idx) <= radius)
        for f in cleared:
            del non_cond[f]
            tracked.pop(f, None)
        return cleared

    def prune(self, current: int, reverse: bool) -> None:
        """Drop what SAM2 can no longer read when it continues from ``current`` in the given direction."""
        non_cond = self._outputs["non_cond_frame_outputs"]
        tracked = self.session.frames_tracked_per_obj[self.obj_idx]
        for f in list(non_cond):
            behind = (f - current) if reverse else (current - f)  # 0 = current, >0 = already passed
            if behind > self.pointer_window - 1 or behind < 0:
                del non_cond[f]
                tracked.pop(f, None)
            elif behind > self.full_window - 1:
                non_cond[f] = {k: v for k, v in non_cond[f].items() if k in _POINTER_KEYS}

    # --- internals ------------------------------------------------------------------------------------------
    def _check_frame(self, frame_idx: int) -> int:
        idx = int(frame_idx)
        if not 0 <= idx < self.num_frames:
            raise InputError(f"frame {idx} is outside the video (0..{self.num_frames - 1})")
        return idx

    def _tidy(self, frame_idx: int) -> None:
        """Drop the S×S high-res masks of ``frame_idx``'s entry and move its memory to the state device."""
        state_device = self.session.inference_state_device
        for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
            entry = self._outputs[key].get(frame_idx)
            if entry is None:
                continue
            entry.pop("high_res_masks", None)
            for name in ("maskmem_features", "maskmem_pos_enc"):
                if name in entry:
                    entry[name] = entry[name].to(state_device)


def _nbytes(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    return 0


@contextlib.contextmanager
def shared_image_features(sam2, max_bytes: int | None = None) -> Iterator[OrderedDict]:
    """Within the block SAM2's image encoder runs once per frame index, across every session and pass (all the
    expressions of one video, both BAP directions), keeping at most ``max_bytes`` of features (least recently
    used first out; ``None``: no bound).

    transformers' ``Sam2VideoModel._prepare_vision_features(session, frame_idx, batch_size)`` is wrapped on the
    instance by a memo keyed by ``frame_idx``; features depend only on the frame, so results are unchanged, but
    the memo is valid for ONE video: use one block per video. Yields the memo (frame_idx -> features).
    """
    memo: OrderedDict[int, tuple] = OrderedDict()
    size = {"bytes": 0}
    original = sam2._prepare_vision_features
    had_attr = "_prepare_vision_features" in sam2.__dict__

    def prepare(inference_session, frame_idx, batch_size):
        if batch_size != 1:
            return original(inference_session, frame_idx, batch_size)
        if frame_idx in memo:
            memo.move_to_end(frame_idx)
            return memo[frame_idx]
        features = original(inference_session, frame_idx, 1)
        memo[frame_idx] = features
        size["bytes"] += _nbytes(features)
        while max_bytes is not None and size["bytes"] > max_bytes and len(memo) > 1:
            size["bytes"] -= _nbytes(memo.popitem(last=False)[1])
        return features

    sam2._prepare_vision_features = prepare
    try:
        yield memo
    finally:
        if had_attr:
            sam2._prepare_vision_features = original
        else:
            del sam2._prepare_vision_features
