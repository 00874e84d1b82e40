"""Configuration of the synthetic referring-video world and the fixed split seeds."""

from __future__ import annotations

from dataclasses import dataclass

from momentseg.errors import InputError

#: Fixed seeds of the three splits.  Video ``i`` of a split is generated from
#: ``video_seed(SPLIT_SEEDS[split], i)`` (a ``numpy.random.SeedSequence([seed, i])`` draw), so the splits never
#: share a video.  ``test`` is held out for reporting only: never train or tune on it.
SPLIT_SEEDS: dict[str, int] = {"train": 20251000, "val": 20252000, "test": 20253000}

#: Shape names (the nouns of the language).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
#: Plural nouns, same order as :data:`SHAPES`.
SHAPE_PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "cross": "crosses",
    "diamond": "diamonds",
}
#: Named palette (RGB).  Object pixels have exactly these values (or a blend while a colour changes).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (40, 90, 235),
    "yellow": (240, 215, 40),
    "purple": (160, 70, 210),
    "orange": (250, 140, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
#: Per-pixel class counts of :meth:`SynthVideo.pixel_classes` (background + shapes, background + colours).
PIXEL_CLASS_COUNTS: tuple[int, int] = (1 + len(SHAPES), 1 + len(COLOURS))
#: Size word -> shape radius in pixels (the shape's canvas is ``2r+1`` pixels square).
SIZES: dict[str, int] = {"small": 7, "medium": 10, "large": 14}
#: Axis-aligned motion directions (image coordinates: "up" is decreasing y).
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
#: Per-pixel motion classes of :meth:`SynthVideo.pixel_motion`: background, an object at rest, an object moving
#: along one of :data:`DIRECTIONS`.
MOTION_CLASSES: tuple[str, ...] = ("background", "still", *DIRECTIONS)
#: Class counts of the vision tower's per-token heads (``tokens`` pretraining task): shapes, colours, motions.
TOKEN_CLASS_COUNTS: tuple[int, int, int] = (*PIXEL_CLASS_COUNTS, len(MOTION_CLASSES))
#: Frame sides (where objects enter / which wall they bounce off).
SIDES: tuple[str, ...] = ("left", "right", "top", "bottom")

EXPRESSION_KINDS: tuple[str, ...] = ("appearance", "motion", "event", "multi", "reasoning", "none")


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of the synthetic world (sizes in pixels, speeds in pixels per frame, times in seconds)."""

    height: int = 120
    width: int = 160
    fps: float = 10.0
    min_frames: int = 40
    max_frames: int = 120
    min_objects: int = 3
    max_objects: int = 5
    min_expressions: int = 4
    max_expressions: int = 8
    #: probability that a video holds a group of look-alikes (same shape, colour and size, other timeline)
    p_lookalike: float = 0.85
    #: probability that an object starts outside the frame and enters later
    p_enter: float = 0.35
    #: probability that an object is scripted to leave the frame (its last action)
    p_leave: float = 0.3
    #: probability that an object that starts inside the frame is moving at frame 0
    p_moving: float = 0.75
    #: probability that the background is mildly textured instead of plain
    p_texture: float = 0.5
    min_speed: float = 1.0
    max_speed: float = 2.5
    #: half-width (seconds) of the moment given to instantaneous events (bounce, turn)
    instant_window_s: float = 0.5
    #: relative frequency of each expression kind (kinds without a valid candidate in a video are skipped)
    kind_weights: tuple[tuple[str, float], ...] = (
        ("event", 0.40),
        ("motion", 0.14),
        ("appearance", 0.12),
        ("multi", 0.10),
        ("reasoning", 0.14),
        ("none", 0.10),
    )
    #: a candidate expression whose target has a look-alike is this many times likelier to be picked
    lookalike_bias: float = 4.0
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        big = 2 * max(SIZES.values()) + 1
        if self.height < 2 * big or self.width < 2 * big:
            raise InputError(f"WorldConfig: frames must be at least {2 * big}x{2 * big} pixels")
        if not (self.fps > 0):
            raise InputError("WorldConfig: fps must be positive")
        if not (20 <= self.min_frames <= self.max_frames):
            raise InputError("WorldConfig: need 20 <= min_frames <= max_frames")
        if not (1 <= self.min_objects <= self.max_objects <= 20):
            raise InputError("WorldConfig: need 1 <= min_objects <= max_objects <= 20")
        if not (1 <= self.min_expressions <= self.max_expressions):
            raise InputError("WorldConfig: need 1 <= min_expressions <= max_expressions")
        if not (0 < self.min_speed <= self.max_speed):
            raise InputError("WorldConfig: need 0 < min_speed <= max_speed")
        for name, _ in self.kind_weights:
            if name not in EXPRESSION_KINDS:
                raise InputError(f"WorldConfig: unknown expression kind {name!r} in kind_weights")
        if not (1 <= self.jpeg_quality <= 100):
            raise InputError("WorldConfig: jpeg_quality must be in 1..100")
