"""In-memory records of a synthetic video: objects with their event timelines, expressions, the video."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from momentseg.data.synthetic.config import DIRECTIONS, MOTION_CLASSES, SHAPES

#: Event kinds of an object's timeline (frame indices, both ends inclusive):
#:   enter (param: side it enters from; first visible frame .. first frame fully inside),
#:   leave (param: side; first frame partly outside after it stopped bouncing .. last visible frame),
#:   stop (deceleration start .. first frame at rest), stop_wall (the wall hit .. first frame at rest),
#:   start (acceleration from rest .. full speed), turn_around / turn (param: new direction; instantaneous,
#:   given a window of ``instant_window_s``), bounce (param: wall side; instantaneous, same window),
#:   colour (param: new colour name; the blend from old to new colour), behind (param: obj_id of the object in
#:   front; a run of frames where that object hides part of this one).
EVENT_KINDS: tuple[str, ...] = (
    "enter",
    "leave",
    "stop",
    "stop_wall",
    "start",
    "turn_around",
    "turn",
    "bounce",
    "colour",
    "behind",
)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of the runs of True in a 1-D bool array."""
    f = np.concatenate([[False], np.asarray(flags, bool), [False]])
    edges = np.flatnonzero(f[1:] != f[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


@dataclass
class Event:
    """One event of an object's timeline: ``kind`` from :data:`EVENT_KINDS`, frames ``start..end`` inclusive."""

    kind: str
    start: int
    end: int
    param: str | int | None = None
    #: the object is visible in at least half of the event's frames (only such events are described)
    observable: bool = True


@dataclass
class ObjectTrack:
    """Ground truth of one object over the ``T`` frames of its video.

    ``centre`` (T,2) float x,y in pixels; ``present`` (T,) bool: in the scene (possibly outside the frame);
    ``speed`` (T,) float pixels/frame and ``direction`` (T,2) int unit axis vector: the motion from frame t to
    t+1; ``rgb`` (T,3) uint8 rendered colour; ``colour`` (T,) int8 index into ``PALETTE`` (-1 while blending);
    ``full_area`` / ``visible_area`` (T,) int: pixels inside the frame before / after occlusion.
    """

    obj_id: int
    shape: str
    size: str
    depth: int  # larger is nearer the camera (drawn later)
    base_colour: str  # named colour when it first appears
    centre: np.ndarray
    present: np.ndarray
    speed: np.ndarray
    direction: np.ndarray
    rgb: np.ndarray
    colour: np.ndarray
    full_area: np.ndarray
    visible_area: np.ndarray
    canvas_area: int  # pixels of the whole shape
    events: list[Event] = field(default_factory=list)

    def moving(self, threshold: float = 0.25) -> np.ndarray:
        """(T,) bool: present and moving faster than ``threshold`` pixels/frame."""
        return self.present & (self.speed > threshold)


@dataclass
class SynthExpression:
    """A referring expression: ``obj_ids`` (empty for no target) and its moments in seconds."""

    exp_id: str
    text: str
    obj_ids: list[int]
    kind: str
    moments: list[tuple[float, float]]


@dataclass
class SynthVideo:
    """A generated video: ``frames`` (T,H,W,3) uint8, visible ``object_masks`` obj_id -> (T,H,W) bool."""

    video_id: str
    frames: np.ndarray
    fps: float
    object_masks: dict[int, np.ndarray]
    expressions: list[SynthExpression]
    objects: list[ObjectTrack] = field(default_factory=list)
    #: obj_id -> (T,H,W) bool mask of the whole object inside the frame, before occlusion
    full_masks: dict[int, np.ndarray] = field(default_factory=dict)
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def expression_masks(self, exp: SynthExpression) -> np.ndarray:
        """(T,H,W) bool: union of the visible masks of ``exp``'s objects (all False for no target)."""
        out = np.zeros(self.frames.shape[:3], dtype=bool)
        for oid in exp.obj_ids:
            out |= self.object_masks[oid]
        return out

    def pixel_classes(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel classes of ``frames`` (indices): shape ``1 + SHAPES.index`` and colour ``1 + COLOURS.index``
        of the object visible there, 0 = background; a pixel of an object that is blending between two colours
        has colour -1 (no class). Both (n,H,W) int64."""
        idx = np.asarray(frames, dtype=np.int64)
        shape = np.zeros((len(idx), *self.frames.shape[1:3]), np.int64)
        colour = np.zeros_like(shape)
        for tr in self.objects:  # visible masks do not overlap: the order does not matter
            mask = self.object_masks[tr.obj_id][idx]
            shape[mask] = 1 + SHAPES.index(tr.shape)
            colour[mask] = np.broadcast_to((1 + tr.colour[idx].astype(np.int64))[:, None, None], mask.shape)[mask]
        colour[(shape > 0) & (colour == 0)] = -1  # colour index -1 (blending) + 1
        return shape, colour

    def pixel_motion(self, first, second, min_shift: float = 1.0) -> np.ndarray:
        """Per-pixel motion classes (indices into ``MOTION_CLASSES``) of the pairs of frames ``first[i]`` →
        ``second[i]``: each object visible in either frame of a pair labels its pixels there by its shift between
        the two (``still`` when its centre moved < ``min_shift`` pixels, else the axis direction of the larger
        displacement); 0 = background. (n,2,H,W) int64: index 0 the first frame, 1 the second."""
        a, b = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"first and second must be 1-D of one length, got {a.shape} and {b.shape}")
        out = np.zeros((len(a), 2, *self.frames.shape[1:3]), np.int64)
        still, axes = MOTION_CLASSES.index("still"), {v: MOTION_CLASSES.index(k) for k, v in DIRECTIONS.items()}
        for tr in self.objects:
            d = tr.centre[b] - tr.centre[a]  # (n, 2) x, y
            major = np.abs(d).argmax(1)
            step = np.sign(d[np.arange(len(a)), major]).astype(int)
            label = np.array([axes[(s, 0) if m == 0 else (0, s)] if s else still for m, s in zip(major, step, strict=True)])
            label[np.abs(d).max(1) < min_shift] = still
            for j, idx in enumerate((a, b)):
                mask = self.object_masks[tr.obj_id][idx]  # (n, H, W)
                out[:, j][mask] = np.broadcast_to(label[:, None, None], mask.shape)[mask]
        return out

    def pixel_events(self, frames) -> np.ndarray:
        """Per-pixel event flags of ``frames`` (indices): bit ``k`` is set where the visible object is inside an
        event of kind ``EVENT_KINDS[k]`` of its timeline at that frame; -1 = background (no object). (n,H,W)
        int64. The labels of the language model's per-token event head (``model.event_head``)."""
        idx = np.asarray(frames, dtype=np.int64)
        out = np.full((len(idx), *self.frames.shape[1:3]), -1, np.int64)
        for tr in self.objects:  # visible masks do not overlap: the order does not matter
            bits = np.zeros(len(idx), np.int64)
            for e in tr.events:
                bits[(idx >= e.start) & (idx <= e.end)] |= 1 << EVENT_KINDS.index(e.kind)
            mask = self.object_masks[tr.obj_id][idx]
            out[mask] = np.broadcast_to(bits[:, None, None], mask.shape)[mask]
        return out

    def moment_frames(self, exp: SynthExpression) -> np.ndarray:
        """(T,) bool: frame t (timestamp t/fps seconds) lies inside one of ``exp``'s moments.

        A quarter-frame tolerance absorbs the rounding of moments read back from files.
        """
        times = np.arange(self.num_frames) / self.fps
        eps = 0.25 / self.fps
        out = np.zeros(self.num_frames, dtype=bool)
        for start, end in exp.moments:
            out |= (times >= start - eps) & (times <= end + eps)
        return out
