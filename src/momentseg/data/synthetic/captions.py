"""Question / answer pairs about a synthetic video, for pretraining a video-language model on the world's text.

Every pair is derived from the ground-truth tracks and talks only about what is observable in the frames the
model is shown (``times``, seconds; frame index ``round(t * fps)``).  Four kinds:

- ``objects``: "which shapes are visible ?" -> "small red circle and large blue star" (or "nothing");
- ``where``:   "where is the <np> at 2 . 5 seconds ?" -> "top left" (the centre in thirds of the frame);
- ``events``:  "describe the video ." -> "the <np> stops at 1 . 0 seconds ; the <np> enters from the left at ...";
- ``when``:    "when does the <np> stop ?" -> "at 1 . 0 seconds".

A noun phrase (NP) is always ``size colour shape``; the colour is the object's named colour in the first shown
frame where it is visible (its base colour if it is never visible there or only while blending).  Times are
written with one decimal, one token per digit: ``format_time(12.5) == "1 2 . 5"``.  All words lie in
:func:`caption_vocabulary` (the expression :data:`VOCABULARY` plus :data:`CAPTION_WORDS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from momentseg.data.synthetic.config import COLOURS, SHAPES, SIZES
from momentseg.data.synthetic.language import VOCABULARY, tokenize
from momentseg.data.synthetic.records import Event, ObjectTrack, SynthVideo

_EXTRA_WORDS = (
    # questions
    "which", "shapes", "are", "visible", "where", "is", "the", "at", "seconds", "describe", "video", "when",
    "does", "?",
    # answers
    "nothing", "and", ";", ".", "top", "middle", "bottom", "left", "centre", "right",
    *(str(d) for d in range(10)),
)  # fmt: skip

#: Words questions / answers can contain that are not in the expression :data:`VOCABULARY` (sorted).
CAPTION_WORDS: tuple[str, ...] = tuple(sorted(set(_EXTRA_WORDS) - set(VOCABULARY)))

CAPTION_KINDS: tuple[str, ...] = ("objects", "where", "events", "when")

_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "centre", "right")


def caption_vocabulary() -> tuple[str, ...]:
    """Sorted union of :data:`VOCABULARY` and :data:`CAPTION_WORDS`."""
    return tuple(sorted(set(VOCABULARY) | set(CAPTION_WORDS)))


@dataclass
class CaptionPair:
    """One question / answer pair; ``kind`` from :data:`CAPTION_KINDS`."""

    question: str
    answer: str
    kind: str


# ------------------------------------------------------------------------------------------------ times


def format_time(t: float) -> str:
    """Seconds with one decimal, one token per character: ``2.5 -> "2 . 5"``, ``12.0 -> "1 2 . 0"``."""
    return " ".join(f"{max(float(t), 0.0):.1f}")


_TIME_RE = re.compile(r"\d(?:\s*\d)*(?:\s*\.\s*\d(?:\s*\d)*)?")


def parse_time(text: str) -> float | None:
    """The first time written in ``text`` (as :func:`format_time` writes it, or plain ``2.5``); None if none."""
    m = _TIME_RE.search(text)
    if m is None:
        return None
    try:
        return float(re.sub(r"\s+", "", m.group()))
    except ValueError:  # pragma: no cover - the pattern only matches digits and one point
        return None


# ------------------------------------------------------------------------------------------------ helpers


def _np_text(track: ObjectTrack, colour: str) -> str:
    return f"{track.size} {colour} {track.shape}"


def _np_key(track: ObjectTrack, colour: str) -> tuple[int, int, int]:
    """Canonical order of NPs: shape, then colour, then size (all in their config order)."""
    return (SHAPES.index(track.shape), COLOURS.index(colour), list(SIZES).index(track.size))


def _span_colour(track: ObjectTrack, frames: np.ndarray) -> str:
    """Named colour in the first shown frame where the object is visible and not blending, else base colour."""
    for f in frames:
        if track.visible_area[f] > 0 and track.colour[f] >= 0:
            return COLOURS[int(track.colour[f])]
    return track.base_colour


def _ever_colours(track: ObjectTrack) -> set[str]:
    vis = track.visible_area > 0
    seen = {COLOURS[int(c)] for c in track.colour[vis & (track.colour >= 0)]}
    return seen | {track.base_colour}


def _verb_key(ev: Event) -> tuple[str, object]:
    """Events with the same key are described by the same verb phrase."""
    if ev.kind in ("stop", "turn_around", "start", "leave"):
        return (ev.kind, None)
    return (ev.kind, ev.param)


def _verb_phrase(ev: Event, plural: bool, nps: dict[int, str]) -> str | None:
    """Verb phrase of an event ("stops" / with ``plural`` "stop"), None if it cannot be described."""
    k, p = ev.kind, ev.param
    table: dict[str, tuple[str, str]] = {
        "stop": ("stops", "stop"),
        "stop_wall": ("stops after hitting the wall", "stop after hitting the wall"),
        "start": ("starts moving", "start moving"),
        "turn_around": ("turns around", "turn around"),
        "leave": ("leaves the frame", "leave the frame"),
    }
    if k in table:
        return table[k][plural]
    if k == "turn" and p is not None:
        return f"{'turn and move' if plural else 'turns and moves'} {p}"
    if k == "colour" and p is not None:
        return f"{'turn' if plural else 'turns'} {p}"
    if k == "enter":
        base = "enter" if plural else "enters"
        return f"{base} from the {p}" if p is not None else base
    if k == "bounce":
        base = "bounce off the" if plural else "bounces off the"
        return f"{base} {p} wall" if p is not None else f"{base} wall"
    if k == "behind" and p is not None and int(p) in nps:
        return f"{'go' if plural else 'goes'} behind the {nps[int(p)]}"
    return None


def _frames_of(video: SynthVideo, times: np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    return np.clip(np.round(t * video.fps).astype(np.int64), 0, video.num_frames - 1)


def _span_events(video: SynthVideo, frames: np.ndarray) -> list[tuple[int, int, Event]]:
    """(start, obj_id, event) of the observable events starting inside the shown frames' span, in time order."""
    if frames.size == 0:
        return []
    lo, hi = int(frames.min()), int(frames.max())
    out = [
        (ev.start, tr.obj_id, ev)
        for tr in video.objects
        for ev in tr.events
        if ev.observable and lo <= ev.start <= hi
    ]
    return sorted(out, key=lambda x: (x[0], x[1]))


# ------------------------------------------------------------------------------------------------ pairs


def _objects_pair(video: SynthVideo, frames: np.ndarray, nps: dict[int, str]) -> CaptionPair:
    seen: dict[str, tuple[int, int, int]] = {}
    for tr in video.objects:
        if (tr.visible_area[frames] > 0).any():
            colour = nps[tr.obj_id].split()[1]
            seen[nps[tr.obj_id]] = _np_key(tr, colour)
    answer = " and ".join(sorted(seen, key=lambda s: seen[s])) if seen else "nothing"
    return CaptionPair("which shapes are visible ?", answer, "objects")


def where_answer(video: SynthVideo, track: ObjectTrack, frame: int) -> str:
    """ "<top|middle|bottom> <left|centre|right>" of ``track``'s centre at ``frame`` in thirds of the frame."""
    h, w = video.frames.shape[1:3]
    x, y = (float(v) for v in track.centre[frame])
    col = int(np.clip(np.floor(3.0 * x / w), 0, 2))
    row = int(np.clip(np.floor(3.0 * y / h), 0, 2))
    return f"{_ROWS[row]} {_COLS[col]}"


def _where_pair(video: SynthVideo, frames: np.ndarray, rng: np.random.Generator) -> CaptionPair | None:
    options: list[tuple[int, ObjectTrack, str]] = []
    for f in sorted({int(f) for f in frames}):
        vis = [tr for tr in video.objects if tr.visible_area[f] > 0]
        named = {tr.obj_id: _np_text(tr, COLOURS[int(tr.colour[f])]) for tr in vis if tr.colour[f] >= 0}
        for tr in vis:
            np_ = named.get(tr.obj_id)
            if np_ is None:
                continue
            # unique among the visible objects at that frame (a blending object could be any colour)
            clash = any(
                o.obj_id != tr.obj_id
                and o.shape == tr.shape
                and o.size == tr.size
                and (named.get(o.obj_id) is None or named[o.obj_id] == np_)
                for o in vis
            )
            if not clash:
                options.append((f, tr, np_))
    if not options:
        return None
    f, tr, np_ = options[int(rng.integers(len(options)))]
    question = f"where is the {np_} at {format_time(f / video.fps)} seconds ?"
    return CaptionPair(question, where_answer(video, tr, f), "where")


def _events_pair(video: SynthVideo, frames: np.ndarray, nps: dict[int, str], max_events: int) -> CaptionPair:
    parts = []
    for start, oid, ev in _span_events(video, frames):
        verb = _verb_phrase(ev, False, nps)
        if verb is None:
            continue
        parts.append(f"the {nps[oid]} {verb} at {format_time(start / video.fps)} seconds")
        if len(parts) >= max_events:
            break
    return CaptionPair("describe the video .", " ; ".join(parts) if parts else "nothing", "events")


def _when_pair(
    video: SynthVideo, frames: np.ndarray, nps: dict[int, str], rng: np.random.Generator
) -> CaptionPair | None:
    tracks = {tr.obj_id: tr for tr in video.objects}
    options: list[tuple[int, str, str]] = []
    for start, oid, ev in _span_events(video, frames):
        tr = tracks[oid]
        colour = nps[oid].split()[1]
        # the NP names this object alone over the whole video (no same shape/size object ever shows the colour)
        if any(
            o.obj_id != oid and o.shape == tr.shape and o.size == tr.size and colour in _ever_colours(o)
            for o in video.objects
        ):
            continue
        # the verb names this event alone among the object's events (observable or not)
        key = _verb_key(ev)
        same = [e for e in tr.events if _verb_key(e) == key]
        if ev.kind == "stop":
            same += [e for e in tr.events if e.kind == "stop_wall"]
        if len(same) != 1:
            continue
        verb = _verb_phrase(ev, True, nps)
        if verb is None:
            continue
        options.append((start, nps[oid], verb))
    if not options:
        return None
    start, np_, verb = options[int(rng.integers(len(options)))]
    return CaptionPair(
        f"when does the {np_} {verb} ?", f"at {format_time(start / video.fps)} seconds", "when"
    )


def caption_pairs(
    video: SynthVideo, times: np.ndarray, rng: np.random.Generator, max_events: int = 4
) -> list[CaptionPair]:
    """Question / answer pairs about ``video`` as seen in the frames at ``times`` (seconds).

    Always one ``objects`` and one ``events`` pair (answer "nothing" when there is nothing to say), plus one
    ``where`` and one ``when`` pair when a uniquely nameable object / event exists.  ``rng`` picks which.
    """
    frames = _frames_of(video, times)
    nps = {tr.obj_id: _np_text(tr, _span_colour(tr, frames)) for tr in video.objects}
    pairs: list[CaptionPair | None] = [
        _objects_pair(video, frames, nps),
        _where_pair(video, frames, rng) if frames.size else None,
        _events_pair(video, frames, nps, max_events),
        _when_pair(video, frames, nps, rng),
    ]
    return [p for p in pairs if p is not None]


# ------------------------------------------------------------------------------------------------ scoring


def _phrases(answer: str) -> set[str]:
    words = " ".join(tokenize(answer))
    return {p.strip() for p in words.split(" and ") if p.strip() and p.strip() != "nothing"}


def objects_f1(predicted_answer: str, true_answer: str) -> float:
    """F1 between the sets of " and "-separated phrases ("nothing" is the empty set; both empty -> 1.0)."""
    pred, true = _phrases(predicted_answer), _phrases(true_answer)
    if not pred and not true:
        return 1.0
    hit = len(pred & true)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(pred), hit / len(true)
    return 2 * precision * recall / (precision + recall)


def time_error(predicted_answer: str, true_answer: str) -> float | None:
    """Absolute error in seconds between the first times of the two answers; None if either has none."""
    pred, true = parse_time(predicted_answer), parse_time(true_answer)
    if pred is None or true is None:
        return None
    return abs(pred - true)
