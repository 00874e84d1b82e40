"""Read any video — a file (mp4/mov/webm/avi/mkv…), a folder of JPEG/PNG frames, or an in-memory array.

:func:`open_video` returns a :class:`Video`. Frames come out as ``(h, w, 3) uint8`` RGB arrays, optionally
resized while decoding (``size=(height, width)``), one at a time (:meth:`Video.iter_frames`, memory stays
flat however long the video is) or stacked (:meth:`Video.get_frames`).

Files are decoded with PyAV. The frame table is built by one demux pass over the packets (reading their
timestamps, decoding nothing), never from container metadata: ``num_frames`` is the number of frames the
stream really holds and ``timestamps`` are each frame's ``pts × time_base`` (seconds, relative to the first
frame), so variable-frame-rate files are exact. Frames are matched by pts while decoding, which makes
random access frame-exact: far-apart indices are reached by seeking to the keyframe before the target and
decoding forward. When the container's header declares a frame count or duration that the stream does not
hold (a file cut short), a one-line warning is logged (logger ``momentseg.io.video``) and the frames that can be
read are used. Every problem with the input is raised as :class:`momentseg.errors.InputError` naming the
file; PyAV's own exceptions never leak.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from momentseg.errors import InputError

DEFAULT_FPS = 30.0
"""Frame rate assumed for frame folders and arrays when ``open_video`` is given no ``fps``."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
"""File name endings (case-insensitive) that count as frames in a frame folder; other files are ignored."""

log = logging.getLogger(__name__)

DAMAGE_TOLERANCE = 0.05
"""A video file whose header declares a frame count or duration differing from what its stream holds by more
than this fraction (and more than :data:`DAMAGE_MIN_FRAMES` frames) is reported as damaged / truncated."""

DAMAGE_MIN_FRAMES = 2

_SEEK_MIN_SKIP = 16
"""Seek forward only when that skips decoding at least this many frames (a seek costs a few decodes)."""

Size = tuple[int, int]


class Video:
    """A decoded-on-demand video. Use :func:`open_video` to make one.

    Attributes:
        source: where the frames come from (file or folder path, or ``"<array>"``).
        num_frames: number of frames (also ``len(video)``).
        fps: average frame rate, frames per second.
        timestamps: ``(num_frames,) float64`` seconds of each frame; the first frame is at 0.
        height, width: frame size in pixels.
        frame_names: one unique name per frame — file stems for a frame folder (full file names when two
            stems coincide), ``f"{i:05d}"`` otherwise. Output masks are named after them.
    """

    source: str
    num_frames: int
    fps: float
    timestamps: np.ndarray
    height: int
    width: int
    frame_names: list[str]

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, num_frames={self.num_frames}, "
            f"fps={self.fps:.3f}, height={self.height}, width={self.width})"
        )

    def get_frames(self, indices: Sequence[int] | None = None, size: Size | None = None) -> np.ndarray:
        """Return the frames at ``indices`` (all frames when ``None``) as ``(N, h, w, 3) uint8`` RGB.

        ``size=(height, width)`` resizes while decoding (default: the video's own size). Indices may be
        unsorted or repeated; the output follows the requested order. Each distinct frame is decoded once.
        """
        wanted = self._check_indices(indices)
        h, w = self._check_size(size)
        out = np.empty((len(wanted), h, w, 3), dtype=np.uint8)
        slots: dict[int, list[int]] = {}
        for slot, index in enumerate(wanted):
            slots.setdefault(index, []).append(slot)
        for index, frame in self._iter(sorted(slots), (h, w)):
            out[slots[index]] = frame
        return out

    def iter_frames(
        self, indices: Sequence[int] | None = None, size: Size | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` for each requested index, in the requested order, one frame at a time.

        ``frame`` is a fresh ``(h, w, 3) uint8`` RGB array (``size=(height, width)`` resizes while
        decoding). Files are decoded in one forward pass; a seek is made only when it saves work (a far
        jump ahead, or an index smaller than the previous one).
        """
        wanted = self._check_indices(indices)
        return self._iter(wanted, self._check_size(size))

    # -- implemented by each kind of video -------------------------------------------------------------
    def _iter(self, indices: list[int], size: Size) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError

    # -- argument checks -------------------------------------------------------------------------------
    def _check_indices(self, indices: Sequence[int] | None) -> list[int]:
        if indices is None:
            return list(range(self.num_frames))
        out = []
        for index in indices:
            if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"frame indices must be integers, got {index!r}")
            if not 0 <= index < self.num_frames:
                raise InputError(
                    f"frame index {int(index)} out of range for '{self.source}' with {self.num_frames} frames"
                )
            out.append(int(index))
        return out

    def _check_size(self, size: Size | None) -> Size:
        if size is None:
            return self.height, self.width
        if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
            raise ValueError(f"size must be (height, width) with positive integers, got {size!r}")
        return int(size[0]), int(size[1])


def open_video(
    source: str | os.PathLike | np.ndarray | Sequence[np.ndarray], fps: float | None = None
) -> Video:
    """Open a video file, a folder of frames, or frames in memory.

    Args:
        source: a video file path (anything FFmpeg reads: mp4, mov, webm, avi, mkv…); a folder of
            ``.jpg/.jpeg/.png`` frames, ordered numerically by the digits in their names (``2.jpg`` before
            ``10.jpg``; other files are ignored); a ``(T, H, W, 3) uint8`` array; or a list of
            ``(H, W, 3) uint8`` arrays of one size.
        fps: frame rate of a frame folder or array (default :data:`DEFAULT_FPS`). A video file carries its
            own timestamps, so giving ``fps`` for one is an error.

    Raises:
        InputError: the source is missing, empty, unreadable, corrupt or holds no frames.
    """
    if isinstance(source, np.ndarray) or (isinstance(source, (list, tuple)) and not isinstance(source, str)):
        return _ArrayVideo(source, _check_fps(fps, "<array>"))
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"open_video needs a path, an array or a list of arrays, got {type(source).__name__}")
    if not os.fspath(source):
        raise InputError("video path is empty")
    path = Path(source)
    if not path.exists():
        raise InputError(f"video not found: '{path}'")
    if path.is_dir():
        return _FolderVideo(path, _check_fps(fps, str(path)))
    if fps is not None:
        raise InputError(f"fps is only for frame folders and arrays; '{path}' has its own timestamps")
    return _FileVideo(path)


def open_frames(folder: str | os.PathLike, frame_files: Sequence[str | os.PathLike], fps: float | None = None) -> Video:
    """A video made of exactly ``frame_files`` (in the given order) — e.g. the frames a dataset's meta file
    lists for a video, which need not be every image in its folder. ``folder`` names the video in errors."""
    missing = [str(f) for f in frame_files if not Path(f).is_file()]
    if missing:
        raise InputError(f"frame image not found: '{missing[0]}' ({len(missing)} missing in '{folder}')")
    return _FolderVideo(Path(folder), _check_fps(fps, str(folder)), files=[Path(f) for f in frame_files])


def _check_fps(fps: float | None, source: str) -> float:
    if fps is None:
        return DEFAULT_FPS
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be a positive number, got {fps!r} for '{source}'")
    return float(fps)


def _regular_timestamps(n: int, fps: float) -> np.ndarray:
    ts = np.arange(n, dtype=np.float64) / fps
    ts.flags.writeable = False
    return ts


# ---------------------------------------------------------------------------------------------------------
# In-memory frames
# ---------------------------------------------------------------------------------------------------------
class _ArrayVideo(Video):
    def __init__(self, frames: np.ndarray | Sequence[np.ndarray], fps: float):
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise InputError(
                    f"video array must be (T, H, W, 3) uint8, got shape {frames.shape} dtype {frames.dtype}"
                )
            shape = frames.shape[1:3]
        else:
            frames = list(frames)
            if frames:
                shape = np.shape(frames[0])[:2]
            for i, frame in enumerate(frames):
                if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (*shape, 3):
                    got = (np.shape(frame), getattr(frame, "dtype", type(frame).__name__))
                    raise InputError(f"video frame {i} must be ({shape[0]}, {shape[1]}, 3) uint8, got {got}")
        if len(frames) == 0:
            raise InputError("video array has no frames")
        self._frames = frames
        self.source = "<array>"
        self.num_frames = len(frames)
        self.fps = fps
        self.timestamps = _regular_timestamps(self.num_frames, fps)
        self.height, self.width = int(shape[0]), int(shape[1])
        self.frame_names = [f"{i:05d}" for i in range(self.num_frames)]

    def _iter(self, indices: list[int], size: Size) -> Iterator[tuple[int, np.ndarray]]:
        for index in indices:
            frame = np.asarray(self._frames[index])
            if size != (self.height, self.width):
                yield index, _pil_resize(frame, size)
            else:
                yield index, frame.copy()


def _pil_resize(frame: np.ndarray, size: Size) -> np.ndarray:
    from PIL import Image  # on use: the CLI's --help imports this module

    return np.array(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))


# ---------------------------------------------------------------------------------------------------------
# Frame folders
# ---------------------------------------------------------------------------------------------------------
def _natural_key(name: str) -> tuple:
    """Sort key comparing the digit runs of ``name`` as numbers: ``2.jpg < 10.jpg``; ties by full name."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p), name


class _FolderVideo(Video):
    def __init__(self, folder: Path, fps: float, files: Sequence[Path] | None = None):
        self.source = str(folder)
        if files is None:
            try:
                names = [
                    e.name
                    for e in os.scandir(folder)
                    if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
                ]
            except OSError as e:
                raise InputError(f"cannot read frame folder '{folder}': {e.strerror or e}") from None
            if not names:
                raise InputError(f"no .jpg/.jpeg/.png frames in folder '{folder}'")
            names.sort(key=_natural_key)
            files = [folder / n for n in names]
        elif not files:
            raise InputError(f"no frames given for '{folder}'")
        self._files = [Path(f) for f in files]
        self.num_frames = len(self._files)
        self.fps = fps
        self.timestamps = _regular_timestamps(self.num_frames, fps)
        self.frame_names = [f.stem for f in self._files]
        if len(set(self.frame_names)) != self.num_frames:  # e.g. a.jpg and a.png: keep the suffix
            self.frame_names = [f.name for f in self._files]
        if len(set(self.frame_names)) != self.num_frames:  # one file listed twice (or two folders)
            self.frame_names = [f"{i:05d}_{name}" for i, name in enumerate(self.frame_names)]
        with self._open_image(0) as image:
            self.width, self.height = image.size

    def _open_image(self, index: int):
        from PIL import Image  # on use: the CLI's --help imports this module

        path = self._files[index]
        try:
            return Image.open(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise InputError(f"cannot read frame image '{path}': {_short(e)}") from None

    def _iter(self, indices: list[int], size: Size) -> Iterator[tuple[int, np.ndarray]]:
        from PIL import Image  # on use: the CLI's --help imports this module

        for index in indices:
            path = self._files[index]
            with self._open_image(index) as image:
                if image.size != (self.width, self.height):
                    raise InputError(
                        f"frame image '{path}' is {image.size[0]}x{image.size[1]}, but the first frame is "
                        f"{self.width}x{self.height}"
                    )
                try:
                    if size != (self.height, self.width):
                        image.draft(
                            "RGB", (size[1], size[0])
                        )  # JPEG: decode at a reduced scale when possible
                        rgb = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
                    else:
                        rgb = image.convert("RGB")
                    frame = np.array(rgb)  # writable copy
                except (OSError, ValueError, SyntaxError) as e:
                    raise InputError(f"cannot read frame image '{path}': {_short(e)}") from None
            yield index, frame


# ---------------------------------------------------------------------------------------------------------
# Video files
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _FileIndex:
    """What one demux pass over a file's video stream learns (cached per file path, size and mtime)."""

    pts: np.ndarray  # (T,) int64 presentation timestamps in stream time_base, sorted; frame i has pts[i]
    by_pts: bool  # False when the stream lacks usable pts: frames are then counted in decode order
    key_index: np.ndarray  # (K,) int64 frame indices of keyframes, sorted
    key_seek: np.ndarray  # (K,) int64 timestamp to seek to for each keyframe (min of its pts and dts)
    time_base: Fraction
    fps: float
    height: int
    width: int
    damage: str | None = None  # why the stream disagrees with the container's header, if it does


def _short(error: BaseException) -> str:
    """A one-line reason for ``error`` without the file name FFmpeg/PIL append to it."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return reason.splitlines()[0] if reason else type(error).__name__


def _decode_error(path: Path, reason: str) -> InputError:
    return InputError(f"cannot decode video '{path}': {reason}")


def _av_errors():
    import av  # on use: the CLI's --help imports this module

    return (av.error.FFmpegError, OSError, EOFError, ValueError, UnicodeDecodeError)


def _is_attached_picture(stream) -> bool:
    try:
        return bool(int(stream.disposition) & int(stream.disposition.__class__.attached_pic))
    except AttributeError:  # PyAV without stream dispositions
        return False


def _open_container(path: Path):
    """Open ``path`` with PyAV and return ``(container, video_stream)``; raise InputError if impossible."""
    import av  # on use: the CLI's --help imports this module

    if path.stat().st_size == 0:
        raise _decode_error(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except _av_errors() as e:
        raise _decode_error(path, _short(e)) from None
    # Skip cover-art pictures (an mp4/mkv may carry one as an extra "video" stream).
    streams = [s for s in container.streams.video if not _is_attached_picture(s)]
    if not streams:
        container.close()
        raise _decode_error(path, "no video stream")
    stream = streams[0]
    stream.thread_type = "AUTO"
    return container, stream


@functools.lru_cache(maxsize=64)
def _index_file(path: Path, _resolved: str, _size: int, _mtime_ns: int) -> _FileIndex:
    """Demux every packet of the video stream once (no decoding) and build the frame table.

    ``path`` is the path as the user gave it (for messages); the other arguments key the cache.
    """
    container, stream = _open_container(path)
    try:
        packets = _scan_packets(container, stream)
        if not packets.pts:
            raise _decode_error(path, "no video frames")
        time_base = stream.time_base or Fraction(1, 1)
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate
        declared_frames = int(stream.frames or 0)
        declared_seconds = _declared_seconds(container, stream)
    except _av_errors() as e:
        raise _decode_error(path, _short(e)) from None
    finally:
        container.close()

    n = len(packets.pts)
    pts, by_pts, key_pairs, fps = _frame_table(packets, time_base, rate)
    pts.flags.writeable = False
    if by_pts:
        last_duration = packets.last_duration
        step = Fraction(int(last_duration)) * time_base if last_duration else Fraction(1) / Fraction(fps)
        seconds = float(Fraction(int(pts[-1] - pts[0])) * time_base + step)
    else:
        seconds = n / fps
    damage = _damage(n, n + packets.placeholders, seconds, fps, declared_frames, declared_seconds)
    return _FileIndex(
        pts=pts,
        by_pts=by_pts,
        key_index=np.asarray([k for k, _ in key_pairs], dtype=np.int64),
        key_seek=np.asarray([s for _, s in key_pairs], dtype=np.int64),
        time_base=time_base,
        fps=fps,
        height=height,
        width=width,
        damage=damage,
    )


@dataclass
class _Packets:
    """What the demux pass sees of the video stream's packets, before the frame table is built."""

    pts: list[int | None]  # pts of every non-empty packet, in decode order
    keys: list[tuple[int | None, int | None]]  # (pts, dts) of keyframe packets
    earliest: int | None  # smallest pts or dts of any packet: seeking there restarts from the beginning
    last_duration: int | None  # duration of the last frame in time
    placeholders: int  # empty packets with a timestamp (e.g. AVI "drop" frames): counted in headers


def _scan_packets(container, stream) -> _Packets:
    """Demux every packet of ``stream`` once (no decoding); FFmpeg errors propagate."""
    pts_list: list[int | None] = []
    keys: list[tuple[int | None, int | None]] = []
    earliest = None
    last_pts, last_packet_duration = None, None  # the last frame in time, and how long it lasts
    placeholders = 0
    for packet in container.demux(stream):
        if packet.size == 0 or getattr(packet, "is_discard", False):  # flush / outside the edit list
            placeholders += packet.pts is not None
            continue
        pts_list.append(packet.pts)
        if packet.pts is not None and (last_pts is None or packet.pts >= last_pts):
            last_pts, last_packet_duration = packet.pts, packet.duration
        if packet.is_keyframe:
            keys.append((packet.pts, packet.dts))
        for ts in (packet.pts, packet.dts):
            if ts is not None and (earliest is None or ts < earliest):
                earliest = ts
    return _Packets(pts_list, keys, earliest, last_packet_duration, placeholders)


def _frame_table(
    packets: _Packets, time_base: Fraction, rate
) -> tuple[np.ndarray, bool, list[tuple[int, int | None]], float]:
    """The sorted frame pts, whether they are usable (``by_pts``), keyframes' (frame, seek ts) and the fps."""
    pts_list, n = packets.pts, len(packets.pts)
    by_pts = None not in pts_list and len(set(pts_list)) == n
    if by_pts:
        pts = np.sort(np.asarray(pts_list, dtype=np.int64))
        position = {int(p): i for i, p in enumerate(pts)}
        key_pairs = sorted((position[p], p if d is None else min(p, d)) for p, d in packets.keys)
        if not key_pairs or key_pairs[0][0] != 0:
            # frames before the first flagged keyframe: seek to the start
            key_pairs.insert(0, (0, packets.earliest))
        else:
            key_pairs[0] = (0, min(key_pairs[0][1], packets.earliest))
        span = Fraction(int(pts[-1] - pts[0])) * time_base
        fps = float((n - 1) / span) if n > 1 and span > 0 else float(rate or DEFAULT_FPS)
    else:
        # No reliable pts (e.g. some AVI files): frames are counted in decode order, timing is regular.
        fps = float(rate or DEFAULT_FPS)
        pts = np.arange(n, dtype=np.int64)
        key_pairs = [(0, 0)]
    return pts, by_pts, key_pairs, fps


def _declared_seconds(container, stream) -> float | None:
    """The video stream's duration as the container's header declares it (seconds), if it declares one."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:  # Matroska / WebM: a per-track "HH:MM:SS.nnnnnnnnn" tag
        match = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*", str(tag))
        if match:
            return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    if container.duration and len(container.streams) == 1:  # the container's duration is this stream's
        return container.duration / 1_000_000
    return None


def _damage(frames: int, packets: int, seconds: float, fps: float, declared_frames: int,
            declared_seconds: float | None) -> str | None:
    """Why ``frames`` frames (``packets`` stream entries) lasting ``seconds`` fall short of the header's frame
    count / duration, or None. Only a shortfall is reported: a header declaring less than the stream holds
    loses nothing (and muxers write such headers, e.g. mp4 durations of variable-rate B-frame streams)."""

    def off(got: float, declared: float, unit: float) -> bool:
        return declared - got > max(DAMAGE_MIN_FRAMES * unit, DAMAGE_TOLERANCE * declared)

    if declared_frames > 0 and off(packets, declared_frames, 1.0):
        return f"its header declares {declared_frames} frames but {frames} can be read"
    if declared_seconds is not None and declared_seconds > 0 and off(seconds, declared_seconds, 1.0 / fps):
        return f"its header declares {declared_seconds:.2f} s but the {frames} frames that can be read last {seconds:.2f} s"
    return None


class _FileVideo(Video):
    def __init__(self, path: Path):
        self.source = str(path)
        self._path = path
        try:
            stat = path.stat()
        except OSError as e:
            raise _decode_error(path, _short(e)) from None
        self._index = index = _index_file(path, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        self.num_frames = len(index.pts)
        self.fps = index.fps
        if index.by_pts:
            tb = index.time_base
            offsets = (index.pts - index.pts[0]).astype(np.float64)
            ts = offsets * tb.numerator / tb.denominator  # exact as float(Fraction) while offsets*num < 2**53
            ts.flags.writeable = False
            self.timestamps = ts
        else:
            self.timestamps = _regular_timestamps(self.num_frames, self.fps)
        self.height, self.width = index.height, index.width
        self.frame_names = [f"{i:05d}" for i in range(self.num_frames)]
        if self.height <= 0 or self.width <= 0:
            raise _decode_error(path, "unknown frame size")
        if index.damage is not None:
            warn_damaged(path, index.damage, self.num_frames)
        # Decode the first frame now so an undecodable stream fails at open time, not mid-pipeline.
        for _ in self._iter([0], (1, 1)):
            pass

    def _iter(self, indices: list[int], size: Size) -> Iterator[tuple[int, np.ndarray]]:
        if not indices:
            return
        container, stream = _open_container(self._path)
        try:
            cursor = _Cursor(self, container, stream)
            frame = None
            for n, target in enumerate(indices):
                if n == 0 or target != indices[n - 1]:  # a repeated index reuses the decoded frame
                    frame = cursor.goto(target)
                rgb = frame.reformat(width=size[1], height=size[0], format="rgb24").to_ndarray()
                yield target, np.ascontiguousarray(rgb)  # rows of a reformatted frame may be padded
        except _av_errors() as e:
            raise _decode_error(self._path, _short(e)) from None
        finally:
            container.close()


def warn_damaged(path: Path, reason: str, frames: int) -> None:
    """Report a damaged or truncated video file on one line (logger ``momentseg.io.video``; with no logging
    configured Python prints the message alone on stderr)."""
    log.warning("warning: video '%s' looks truncated or damaged: %s; only those %d frames are processed",
                path, reason, frames)


class _Cursor:
    """Decoding position in an open container; reaches any frame index exactly, seeking only when useful."""

    def __init__(self, video: _FileVideo, container, stream):
        self.video, self.container, self.stream = video, container, stream
        self.index = video._index
        self.position = {int(p): i for i, p in enumerate(self.index.pts)} if self.index.by_pts else None
        self.frames = container.decode(stream)
        self.pos = -1  # index of the last decoded frame (the next one decoded is after it)
        self.counter = 0  # decode-order frame count, used when the stream has no usable pts

    def _keyframe_before(self, target: int) -> int:
        k = int(np.searchsorted(self.index.key_index, target, side="right")) - 1
        return max(k, 0)

    def _seek(self, k: int) -> None:
        if self.index.by_pts:
            self.container.seek(
                int(self.index.key_seek[k]), backward=True, any_frame=False, stream=self.stream
            )
        else:
            self.container.seek(0)
            self.counter = 0
        self.frames = self.container.decode(self.stream)
        self.pos = int(self.index.key_index[k]) - 1

    def goto(self, target: int):
        """Return the decoded ``av.VideoFrame`` with frame index ``target``."""
        k = self._keyframe_before(target)
        if target <= self.pos or (
            self.index.by_pts and int(self.index.key_index[k]) > self.pos + _SEEK_MIN_SKIP
        ):
            self._seek(k if self.index.by_pts else 0)
        for attempt in range(2):
            for frame in self.frames:
                if self.position is None:
                    idx, self.counter = self.counter, self.counter + 1
                else:
                    idx = self.position.get(frame.pts)
                    if idx is None:  # not a frame of the table (e.g. a leading frame dropped from the index)
                        continue
                if idx > target:
                    break  # landed after the target (inexact seek) or the target frame is missing
                self.pos = idx
                if idx == target:
                    return frame
            if attempt == 0 and self.index.by_pts and k > 0:
                k = 0
                self._seek(0)  # fall back to decoding from the first keyframe
                continue
            break
        raise _decode_error(
            self.video._path, f"frame {target} of {self.video.num_frames} could not be decoded"
        )
