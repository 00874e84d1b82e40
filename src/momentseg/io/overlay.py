"""Write videos: a plain mp4 writer and the overlay writer that shows masks, expressions and moments.

:func:`write_video` encodes frames to a file (H.264 via ``libx264`` when the bundled FFmpeg has it, else
MPEG-4 Part 2). :func:`write_overlay` streams a :class:`~momentseg.io.video.Video` frame by frame, colours
each expression's mask (alpha blend + contour, one palette colour per expression) and adds a panel below
the frame with each expression's text and, when moments are given, a timeline bar with the grounded
moment(s) highlighted, a cursor at the current time, and "in moment" while the cursor is inside one.
Both write atomically: a failure leaves no file behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Protocol

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from momentseg.io.atomic import atomic_path
from momentseg.io.video import Video

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)
"""Distinct RGB colours; expression ``k`` uses ``PALETTE[k % len(PALETTE)]``."""

MASK_ALPHA = 0.5
"""Opacity of the mask colour blended over the frame."""


class MaskSource(Protocol):
    """Per-frame masks of one expression: ``masks[i]`` is an ``(H, W)`` bool array for frame ``i``.

    A ``(T, H, W)`` numpy array works, as does any lazily-decoded sequence with ``__getitem__``/``__len__``.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


def _pick_codec() -> str:
    """``libx264`` if the bundled FFmpeg can encode H.264 with it, else ``mpeg4``."""
    try:
        av.Codec("libx264", "w")
        return "libx264"
    except Exception:  # av raises its own "unknown codec" error class, which differs between versions
        return "mpeg4"


TIME_BASE = Fraction(1, 60000)
"""Time base of videos written with explicit ``timestamps``: exact for 24, 25, 30, 50, 60 and 29.97 fps, and
within the limit of MPEG-4 Part 2 (denominator <= 65535)."""


def _timestamps_pts(timestamps: Sequence[float] | np.ndarray | None) -> np.ndarray | None:
    """``timestamps`` (seconds) as presentation times in :data:`TIME_BASE` units from the first frame (or None)."""
    if timestamps is None:
        return None
    seconds = np.asarray(timestamps, dtype=np.float64)
    if seconds.ndim != 1 or not np.all(np.isfinite(seconds)):
        raise ValueError("timestamps must be a 1-D sequence of finite seconds")
    pts = np.rint((seconds - (seconds[0] if len(seconds) else 0.0)) * TIME_BASE.denominator).astype(np.int64)
    if len(pts) > 1 and np.any(np.diff(pts) <= 0):
        raise ValueError("timestamps must increase (by at least 1/60000 s) from frame to frame")
    return pts


def _add_stream(container, codec: str, rate: Fraction, shape: tuple[int, ...], vfr: bool):
    """Add the yuv420p video stream for frames of ``shape`` (padded to even sizes); ``vfr``: own frame times."""
    stream = container.add_stream(codec, rate=rate)
    if vfr:
        stream.codec_context.time_base = TIME_BASE
        stream.time_base = TIME_BASE
    stream.height, stream.width = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": "18", "preset": "veryfast"}
        if vfr:  # no B-frames: an mp4 then declares the true (VFR) duration
            stream.options = {**stream.options, "bf": "0"}
    else:
        stream.bit_rate = int(stream.width * stream.height * float(rate) * 0.6)
    return stream


def _av_frame(frame: np.ndarray, shape: tuple[int, ...], count: int, pts: np.ndarray | None) -> av.VideoFrame:
    """Frame number ``count`` as an :class:`av.VideoFrame` (edge-padded to even sizes) with its time stamp."""
    if shape[0] % 2 or shape[1] % 2:
        frame = np.pad(frame, ((0, shape[0] % 2), (0, shape[1] % 2), (0, 0)), mode="edge")
    av_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    if pts is not None:
        if count >= len(pts):
            raise ValueError(f"got more frames than the {len(pts)} timestamps")
        av_frame.pts = int(pts[count])
        av_frame.time_base = TIME_BASE
    else:
        av_frame.pts = count
    return av_frame


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    timestamps: Sequence[float] | np.ndarray | None = None,
) -> int:
    """Encode ``frames`` (each ``(H, W, 3) uint8`` RGB, all one size) to a video file at ``fps``.

    ``timestamps`` (seconds, one per frame, increasing; the first frame is shown at 0): each frame keeps its
    own presentation time (variable frame rate preserved, rounded to :data:`TIME_BASE`); ``fps`` is then
    only the nominal rate. The container follows ``path``'s suffix (normally ``.mp4``). Frames are encoded
    one at a time as they come (memory stays flat). Odd heights/widths are padded by one edge row/column,
    because yuv420p needs even sizes. Written atomically. Returns the number of frames written.
    """
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    rate = Fraction(fps).limit_denominator(65535)  # MPEG-4 Part 2 allows time-base denominators <= 65535
    pts = _timestamps_pts(timestamps)
    codec = _pick_codec()
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as container:
            stream = None
            shape = None
            for frame in frames:
                frame = np.asarray(frame)
                if stream is None:
                    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                        raise ValueError(f"frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
                    shape = frame.shape
                    stream = _add_stream(container, codec, rate, shape, vfr=pts is not None)
                elif frame.shape != shape or frame.dtype != np.uint8:
                    raise ValueError(f"frame {count} is {frame.shape} {frame.dtype}, expected {shape} uint8")
                container.mux(stream.encode(_av_frame(frame, shape, count, pts)))
                count += 1
            if stream is None:
                raise ValueError("write_video got no frames")
            if pts is not None and count != len(pts):
                raise ValueError(f"got {count} frames but {len(pts)} timestamps")
            container.mux(stream.encode(None))
    return count


def write_overlay(
    path: str | os.PathLike,
    video: Video,
    masks: Sequence[MaskSource],
    texts: Sequence[str],
    moments: Sequence[Sequence[tuple[float, float]]] | None = None,
    size: tuple[int, int] | None = None,
    min_width: int = 0,
) -> int:
    """Write an mp4 of ``video`` with each expression's mask, text and (optionally) moment timeline.

    Args:
        path: output file (``.mp4``), written atomically.
        video: the frames to draw on.
        masks: one :class:`MaskSource` per expression, ``len(video)`` masks of ``(video.height,
            video.width)`` each (nonzero = object).
        texts: one expression text per mask source.
        moments: per expression, the grounded ``(start, end)`` spans in seconds (``None``: no timeline).
        size: ``(height, width)`` of the drawn frames (default: the video's size); masks are resized to it
            (nearest neighbour). A panel with the texts and timelines is added below the frame.
        min_width: without ``size``, a video narrower than this is drawn upscaled by the smallest whole factor
            that makes it at least ``min_width`` pixels wide (for display: frames bilinear, masks nearest).

    Each frame keeps its timestamp in ``video`` (a variable-frame-rate video stays variable).
    Returns the number of frames written (``len(video)``).
    """
    if len(masks) != len(texts):
        raise ValueError(f"got {len(masks)} mask sources but {len(texts)} texts")
    if moments is not None and len(moments) != len(texts):
        raise ValueError(f"got {len(moments)} moment lists but {len(texts)} texts")
    for k, source in enumerate(masks):
        if len(source) != len(video):
            raise ValueError(f"mask source {k} has {len(source)} masks, the video has {len(video)} frames")
    for k, spans in enumerate(moments or []):
        for start, end in spans:
            if not start <= end:
                raise ValueError(f"moment ({start}, {end}) of expression {k} ends before it starts")
    height, width = size if size is not None else (video.height, video.width)
    if size is None and 0 < width < min_width:
        factor = -(-min_width // width)
        height, width = height * factor, width * factor
    panel = _Panel(width, texts, moments, video)
    rows = np.minimum(((np.arange(height) + 0.5) * video.height / height).astype(np.int64), video.height - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * video.width / width).astype(np.int64), video.width - 1)

    def frames() -> Iterator[np.ndarray]:
        for i, frame in video.iter_frames(size=(height, width)):
            for k, source in enumerate(masks):
                mask = np.asarray(source[i])
                if mask.shape != (video.height, video.width):
                    raise ValueError(
                        f"mask {i} of expression {k} is {mask.shape}, expected {(video.height, video.width)}"
                    )
                mask = mask.astype(bool, copy=False)
                if (height, width) != mask.shape:
                    mask = mask[rows][:, cols]
                paint_mask(frame, mask, PALETTE[k % len(PALETTE)])
            yield np.concatenate([frame, panel.draw(float(video.timestamps[i]))], axis=0)

    return write_video(path, frames(), video.fps, timestamps=video.timestamps)


def paint_mask(frame: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Blend ``colour`` over ``frame`` (``(H, W, 3) uint8``, in place) where ``mask`` (``(H, W)`` bool) is
    set, and draw the mask's contour (2 px) in solid ``colour``."""
    if not mask.any():
        return
    colour_arr = np.asarray(colour, dtype=np.float32)
    frame[mask] = (frame[mask] * (1 - MASK_ALPHA) + colour_arr * MASK_ALPHA).astype(np.uint8)
    padded = np.pad(mask, 1, mode="constant")
    eroded = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = np.pad(mask & ~eroded, 1, mode="constant")
    contour = edge[1:-1, 1:-1] | edge[:-2, 1:-1] | edge[2:, 1:-1] | edge[1:-1, :-2] | edge[1:-1, 2:]
    frame[contour & mask] = colour


class _Panel:
    """The strip drawn under each frame: per expression a text line and, with moments, a timeline bar."""

    def __init__(
        self,
        width: int,
        texts: Sequence[str],
        moments: Sequence[Sequence[tuple[float, float]]] | None,
        video: Video,
    ):
        try:
            self.font = ImageFont.load_default(size=max(10, min(24, width // 45)))
        except (TypeError, ValueError, OSError):  # Pillow without FreeType: fixed-size bitmap font
            self.font = ImageFont.load_default()
        left, top, right, bottom = self.font.getbbox("Ag")
        self.line_h = bottom - min(top, 0) + 4
        self.bar_h = 6 if moments is not None else 0
        self.row_h = self.line_h + (self.bar_h + 3 if moments is not None else 0)
        self.width, self.texts, self.moments = width, list(texts), moments
        last = float(video.timestamps[-1]) if len(video) else 0.0
        self.duration = max(last + 1.0 / video.fps, 1e-9)
        self.height = max(2, len(self.texts) * self.row_h + 2)
        self._fitted: dict[str, str] = {}

    def _x(self, t: float) -> int:
        return int(round(min(max(t / self.duration, 0.0), 1.0) * (self.width - 1)))

    def draw(self, t: float) -> np.ndarray:
        """Render the panel at time ``t`` (seconds) as ``(panel_height, width, 3) uint8``."""
        image = Image.new("RGB", (self.width, self.height), (0, 0, 0))
        draw = ImageDraw.Draw(image)
        for k, text in enumerate(self.texts):
            colour = PALETTE[k % len(PALETTE)]
            y = k * self.row_h + 2
            label = f"{k + 1}. {text}"
            if self.moments is not None:
                spans = self.moments[k]
                if any(start <= t <= end for start, end in spans):
                    label += "  [in moment]"
                bar_y = y + self.line_h
                draw.rectangle([0, bar_y, self.width - 1, bar_y + self.bar_h - 1], fill=(60, 60, 60))
                for start, end in spans:
                    x0, x1 = self._x(start), max(self._x(end), self._x(start) + 1)
                    draw.rectangle([x0, bar_y, x1, bar_y + self.bar_h - 1], fill=colour)
                cx = self._x(t)
                draw.rectangle(
                    [max(cx - 1, 0), bar_y - 2, cx + 1, bar_y + self.bar_h + 1], fill=(255, 255, 255)
                )
            if label not in self._fitted:
                self._fitted[label] = self._fit(draw, label)
            draw.text((4, y), self._fitted[label], fill=colour, font=self.font)
        return np.asarray(image)

    def _fit(self, draw, label: str) -> str:
        """Shorten ``label`` with "..." to fit the panel width (characters the font lacks become "?")."""
        try:
            draw.textlength(label, font=self.font)
        except UnicodeEncodeError:  # bitmap fallback font is latin-1 only
            label = label.encode("latin-1", "replace").decode("latin-1")
        if draw.textlength(label, font=self.font) <= self.width - 8:
            return label
        while label and draw.textlength(label + "...", font=self.font) > self.width - 8:
            label = label[:-1]
        return label + "..."
