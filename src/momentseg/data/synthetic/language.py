"""Referring expressions generated from a scene's event timeline, over a small closed vocabulary.

Semantics used to decide that an expression refers to exactly its target set:

- a noun phrase (NP) is ``[size] [colour] noun`` with noun a shape or the word "shape"; an object matches the
  colour word if it *ever* shows that colour while visible (so a colour change never makes an NP ambiguous
  behind our back);
- a predicate (event verb or "moving <dir>") holds for an object if its timeline has that event at all
  (observable or not) — the target's own event must be observable (visible in at least half its frames);
- an expression is kept only if NP ∧ predicate selects exactly the target set; ordinals ("first"/"last")
  need at least two NP-matching objects with the event and a margin of 5 frames.

Moments (frame runs, inclusive; converted to seconds by the caller):
appearance: frames where the object is visible (and shows the NP's colour, if any); motion: visible and moving
in that direction; event / reasoning: the target's matching observable event(s); multi: union over the targets;
none: no moment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from momentseg.data.synthetic.config import (
    COLOURS,
    DIRECTIONS,
    SHAPE_PLURALS,
    SHAPES,
    SIDES,
    SIZES,
    WorldConfig,
)
from momentseg.data.synthetic.records import Event, ObjectTrack, runs

# (singular, plural) verb phrases; "{p}" is the predicate's parameter (colour, direction, side, or an NP).
_VERBS: dict[str, tuple[str, str]] = {
    "stop": ("stops", "stop"),
    "stop_wall": ("stops after hitting the wall", "stop after hitting the wall"),
    "start": ("starts moving", "start moving"),
    "turn_around": ("turns around", "turn around"),
    "turn": ("turns and moves {p}", "turn and move {p}"),
    "colour": ("turns {p}", "turn {p}"),
    "colour_any": ("changes colour", "change colour"),
    "enter": ("enters", "enter"),
    "enter_side": ("enters from the {p}", "enter from the {p}"),
    "leave": ("leaves the frame", "leave the frame"),
    "bounce": ("bounces off the wall", "bounce off the wall"),
    "bounce_side": ("bounces off the {p} wall", "bounce off the {p} wall"),
    "behind": ("goes behind the {p}", "go behind the {p}"),
}
# Predicates that make sense with "first" / "last".
_ORDINAL_KEYS = ("stop", "start", "turn_around", "colour_any", "enter", "leave", "bounce")
_COUNT_WORDS = {2: "two", 3: "three"}
_ORDINAL_MARGIN = 5  # frames
_FUNCTION_WORDS = ("the", "that", "which", "moving", "first", "last", "?")


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens of an expression: punctuation becomes its own token, then split on whitespace."""
    return re.sub(r"([?.,!;:])", r" \1 ", text.lower()).split()


def _build_vocabulary() -> tuple[str, ...]:
    words: set[str] = set(_FUNCTION_WORDS)
    words.update(SHAPES, SHAPE_PLURALS.values(), ("shape", "shapes"), COLOURS, SIZES, DIRECTIONS, SIDES)
    words.update(_COUNT_WORDS.values())
    for singular, plural in _VERBS.values():
        words.update(tokenize(singular.replace("{p}", "")) + tokenize(plural.replace("{p}", "")))
    return tuple(sorted(words))


#: Every word any generated expression or question can contain (sorted, lowercase, "?" is a token).
VOCABULARY: tuple[str, ...] = _build_vocabulary()

NounPhrase = tuple[str | None, str | None, str | None]  # (size, colour, shape); shape None = "shape"
Predicate = tuple[str, object]  # (key in _VERBS or "moving", parameter)


@dataclass
class Candidate:
    """A possible expression before sampling: ``frames`` are inclusive frame runs of its moment(s)."""

    kind: str
    family: str
    text: str
    obj_ids: tuple[int, ...]
    frames: list[tuple[int, int]]


def _np_text(np_: NounPhrase, plural: bool = False, count: int | None = None) -> str:
    size, colour, shape = np_
    noun = shape or "shape"
    if plural:
        noun = SHAPE_PLURALS.get(noun, "shapes")
    words = [_COUNT_WORDS[count] if count else None, size, colour, noun]
    return " ".join(w for w in words if w)


def _verb(pred: Predicate, plural: bool, np2: dict[int, str]) -> str:
    key, param = pred
    if key == "moving":
        return f"moving {param}"
    text = _VERBS[key][1 if plural else 0]
    if key == "behind":
        return text.format(p=np2[int(param)])
    return text.format(p=param)


class _Scene:
    """Per-object facts the expression rules look at (colours seen, visible frames, motion, events)."""

    def __init__(self, tracks: list[ObjectTrack]):
        self.tracks = tracks
        self.visible = {t.obj_id: t.visible_area > 0 for t in tracks}
        self.colours: dict[int, tuple[str, ...]] = {}
        for t in tracks:
            seen = t.colour[self.visible[t.obj_id] & (t.colour >= 0)]
            self.colours[t.obj_id] = tuple(c for i, c in enumerate(COLOURS) if (seen == i).any()) or (
                t.base_colour,
            )

    def np_matches(self, np_: NounPhrase, track: ObjectTrack) -> bool:
        size, colour, shape = np_
        return (
            (shape is None or track.shape == shape)
            and (size is None or track.size == size)
            and (colour is None or colour in self.colours[track.obj_id])
        )

    def np_set(self, np_: NounPhrase) -> list[ObjectTrack]:
        return [t for t in self.tracks if self.np_matches(np_, t)]

    def motion_frames(self, track: ObjectTrack, direction: str) -> np.ndarray:
        d = DIRECTIONS[direction]
        return (
            self.visible[track.obj_id]
            & track.moving()
            & (track.direction[:, 0] == d[0])
            & (track.direction[:, 1] == d[1])
        )

    def appearance_frames(self, track: ObjectTrack, colour: str | None) -> np.ndarray:
        vis = self.visible[track.obj_id]
        if colour is None:
            return vis
        return vis & (track.colour == COLOURS.index(colour))


def events_for(track: ObjectTrack, pred: Predicate) -> list[Event]:
    """The events of ``track`` that satisfy an event predicate (observable or not)."""
    key, param = pred
    out = []
    for ev in track.events:
        if key == "stop":
            ok = ev.kind in ("stop", "stop_wall")
        elif key == "colour_any":
            ok = ev.kind == "colour"
        elif key in ("enter_side", "bounce_side"):
            ok = ev.kind == key.split("_")[0] and ev.param == param
        elif key in ("turn", "colour", "behind"):
            ok = ev.kind == key and ev.param == param
        else:
            ok = ev.kind == key
        if ok:
            out.append(ev)
    return out


def _has(scene: _Scene, track: ObjectTrack, pred: Predicate) -> bool:
    """The predicate holds for ``track`` at all (used for the other objects: conservative)."""
    if pred[0] == "moving":
        return int(scene.motion_frames(track, str(pred[1])).sum()) >= 2
    return bool(events_for(track, pred))


def _target_frames(scene: _Scene, track: ObjectTrack, pred: Predicate) -> list[tuple[int, int]]:
    """Moment runs of ``pred`` for a target (observable events only); empty if it cannot be described."""
    if pred[0] == "moving":
        flags = scene.motion_frames(track, str(pred[1]))
        return runs(flags) if flags.sum() >= 5 else []
    flags = np.zeros(track.present.shape[0], bool)
    for ev in events_for(track, pred):
        if ev.observable:
            flags[ev.start : ev.end + 1] = True
    return runs(flags)


def _np_variants(size: str, colour: str | None, shape: str, generic: bool = False) -> list[NounPhrase]:
    """Noun phrases describing an object, fewest attributes first (``generic``: also the bare "shape")."""
    out: list[NounPhrase] = [(None, None, shape)]
    if colour:
        out.append((None, colour, shape))
        out.append((None, colour, None))
    out += [(size, None, shape), (size, None, None)]
    if colour:
        out += [(size, colour, shape), (size, colour, None)]
    if generic:
        out.insert(0, (None, None, None))
    return out


def _pick_np(rng: np.random.Generator, valid: list[NounPhrase]) -> NounPhrase:
    """The shortest valid NP most of the time, otherwise a random valid one (variety in specificity)."""
    if rng.random() < 0.7:
        return min(valid, key=lambda n: sum(w is not None for w in n))
    return valid[int(rng.integers(len(valid)))]


def _object_predicates(scene: _Scene, track: ObjectTrack, np2: dict[int, str]) -> list[Predicate]:
    """Event predicates a target can be described by (from its observable events), in timeline order."""
    preds: list[Predicate] = []
    for ev in track.events:
        if not ev.observable:
            continue
        if ev.kind == "stop_wall":
            new = [("stop_wall", None), ("stop", None)]
        elif ev.kind == "colour":
            new = [("colour", ev.param), ("colour_any", None)]
        elif ev.kind in ("enter", "bounce"):
            new = [(ev.kind, None), (f"{ev.kind}_side", ev.param)]
        elif ev.kind == "behind":
            new = [("behind", ev.param)] if ev.param in np2 else []
        elif ev.kind in ("turn",):
            new = [("turn", ev.param)]
        else:
            new = [(ev.kind, None)]
        preds += [p for p in new if p not in preds]
    return preds


def _unique_nps(scene: _Scene) -> dict[int, str]:
    """obj_id -> shortest NP text that names it alone in every frame (used after "goes behind the")."""
    out = {}
    for t in scene.tracks:
        for np_ in _np_variants(t.size, t.base_colour, t.shape):
            if [o.obj_id for o in scene.np_set(np_)] == [t.obj_id] and len(scene.colours[t.obj_id]) == 1:
                out[t.obj_id] = _np_text(np_)
                break
    return out


def _single_target_candidates(rng: np.random.Generator, scene: _Scene, np2: dict[int, str]) -> list[Candidate]:
    cands: list[Candidate] = []
    for t in scene.tracks:
        if scene.visible[t.obj_id].sum() < 3:
            continue
        # appearance: the NP alone names the target
        for colour in (None, *scene.colours[t.obj_id]):
            valid = [
                n
                for n in _np_variants(t.size, colour, t.shape)
                if n[1] == colour and [o.obj_id for o in scene.np_set(n)] == [t.obj_id]
            ]
            frames = runs(scene.appearance_frames(t, colour))
            if valid and sum(b - a + 1 for a, b in frames) >= 3:
                text = f"the {_np_text(_pick_np(rng, valid))}"
                cands.append(Candidate("appearance", "appearance", text, (t.obj_id,), frames))
        variants = _np_variants(t.size, t.base_colour, t.shape)
        preds = [("moving", d) for d in DIRECTIONS] + _object_predicates(scene, t, np2)
        for pred in preds:
            frames = _target_frames(scene, t, pred)
            if not frames:
                continue
            holders = [o for o in scene.tracks if _has(scene, o, pred)]
            valid = [n for n in variants if [o.obj_id for o in holders if scene.np_matches(n, o)] == [t.obj_id]]
            if valid:
                np_ = _pick_np(rng, valid)
                if pred[0] == "moving":
                    text = f"the {_np_text(np_)} {_verb(pred, False, np2)}"
                    cands.append(Candidate("motion", "moving", text, (t.obj_id,), frames))
                else:
                    text = f"the {_np_text(np_)} that {_verb(pred, False, np2)}"
                    cands.append(Candidate("event", pred[0], text, (t.obj_id,), frames))
            # reasoning: "which <np> <verb>?" with the bare noun when it is enough
            if pred[0] == "moving":
                continue
            qvalid = [
                n
                for n in _np_variants(t.size, t.base_colour, t.shape, generic=True)
                if [o.obj_id for o in holders if scene.np_matches(n, o)] == [t.obj_id]
            ]
            if qvalid:
                text = f"which {_np_text(_pick_np(rng, qvalid))} {_verb(pred, False, np2)}?"
                cands.append(Candidate("reasoning", pred[0], text, (t.obj_id,), frames))
    return cands


def _ordinal_candidates(rng: np.random.Generator, scene: _Scene, np2: dict[int, str]) -> list[Candidate]:
    """ "the <np> that <verb> first/last" and "which <np> <verb> first/last?" among >= 2 candidates."""
    cands: list[Candidate] = []
    for t in scene.tracks:
        for key in _ORDINAL_KEYS:
            pred: Predicate = (key, None)
            own = events_for(t, pred)
            if not own:
                continue
            for np_ in _np_variants(t.size, t.base_colour, t.shape, generic=True):
                group = [o for o in scene.np_set(np_) if events_for(o, pred)]
                if len(group) < 2:
                    continue
                others = [events_for(o, pred) for o in group if o.obj_id != t.obj_id]
                for word, ev, ok in (
                    ("first", own[0], all(own[0].start + _ORDINAL_MARGIN <= e[0].start for e in others)),
                    ("last", own[-1], all(own[-1].start >= e[-1].start + _ORDINAL_MARGIN for e in others)),
                ):
                    if not ok or not ev.observable:
                        continue
                    verb = _verb(pred, False, np2)
                    frames = [(ev.start, ev.end)]
                    if np_ != (None, None, None):
                        text = f"the {_np_text(np_)} that {verb} {word}"
                        cands.append(Candidate("event", f"{key}_{word}", text, (t.obj_id,), frames))
                    if np_[0] is None:
                        text = f"which {_np_text(np_)} {verb} {word}?"
                        cands.append(Candidate("reasoning", f"{key}_{word}", text, (t.obj_id,), frames))
    rng.shuffle(cands)  # many NP variants per ordinal: keep a random order, deduplicated later by text
    return cands


def _multi_candidates(scene: _Scene, np2: dict[int, str]) -> list[Candidate]:
    cands: list[Candidate] = []
    seen: list[NounPhrase] = []
    for t in scene.tracks:
        for colour in (None, *scene.colours[t.obj_id]):
            for np_ in _np_variants(t.size, colour, t.shape):
                if np_ in seen or np_[1] != colour:
                    continue
                seen.append(np_)
                group = scene.np_set(np_)
                if not 2 <= len(group) <= 3:
                    continue
                flags = [scene.appearance_frames(o, colour) for o in group]
                if any(f.sum() < 3 for f in flags):
                    continue
                text = f"the {_np_text(np_, plural=True, count=len(group))}"
                cands.append(
                    Candidate("multi", "appearance", text, tuple(o.obj_id for o in group), runs(np.any(flags, 0)))
                )
    preds: list[Predicate] = []
    for t in scene.tracks:
        preds += [p for p in _object_predicates(scene, t, {}) if p not in preds]
    for pred in preds:
        holders = [o for o in scene.tracks if _has(scene, o, pred)]
        for np_ in [(None, None, None)] + [(None, None, s) for s in SHAPES]:
            group = [o for o in holders if scene.np_matches(np_, o)]
            if not 2 <= len(group) <= 3:
                continue
            per = [_target_frames(scene, o, pred) for o in group]
            if not all(per):
                continue
            flags = np.zeros(scene.tracks[0].present.shape[0], bool)
            for frames in per:
                for a, b in frames:
                    flags[a : b + 1] = True
            text = f"the {_np_text(np_, plural=True, count=len(group))} that {_verb(pred, True, np2)}"
            cands.append(Candidate("multi", pred[0], text, tuple(o.obj_id for o in group), runs(flags)))
    return cands


def _none_candidates(rng: np.random.Generator, scene: _Scene, tries: int = 8) -> list[Candidate]:
    """Expressions with no target: an NP nothing matches, or a real NP with an event none of them does."""
    cands: list[Candidate] = []
    sizes = list(SIZES)
    for _ in range(tries):
        np_: NounPhrase = (
            sizes[int(rng.integers(3))] if rng.random() < 0.4 else None,
            COLOURS[int(rng.integers(len(COLOURS)))],
            SHAPES[int(rng.integers(len(SHAPES)))],
        )
        if not scene.np_set(np_):
            cands.append(Candidate("none", "appearance", f"the {_np_text(np_)}", (), []))
    keys = [k for k in _VERBS if k != "behind"]
    for _ in range(tries):
        t = scene.tracks[int(rng.integers(len(scene.tracks)))]
        variants = _np_variants(t.size, t.base_colour, t.shape)
        np_ = variants[int(rng.integers(len(variants)))]
        key = keys[int(rng.integers(len(keys)))] if rng.random() < 0.85 else "moving"
        param: object = None
        if key in ("colour",):
            param = COLOURS[int(rng.integers(len(COLOURS)))]
        elif key in ("turn", "moving"):
            param = list(DIRECTIONS)[int(rng.integers(4))]
        elif key in ("enter_side", "bounce_side"):
            param = SIDES[int(rng.integers(4))]
        pred: Predicate = (key, param)
        if any(_has(scene, o, pred) for o in scene.np_set(np_)):
            continue
        if key == "moving":
            text = f"the {_np_text(np_)} {_verb(pred, False, {})}"
        elif rng.random() < 0.25 and np_[0] is None:
            text = f"which {_np_text(np_)} {_verb(pred, False, {})}?"
        else:
            text = f"the {_np_text(np_)} that {_verb(pred, False, {})}"
        cands.append(Candidate("none", "event", text, (), []))
    return cands


def _has_lookalike(scene: _Scene, obj_ids: tuple[int, ...]) -> bool:
    """A non-target object has the same shape, size and first colour as one of the targets."""
    looks = {(t.shape, t.size, t.base_colour) for t in scene.tracks if t.obj_id in obj_ids}
    return any((t.shape, t.size, t.base_colour) in looks for t in scene.tracks if t.obj_id not in obj_ids)


def _all_candidates(rng: np.random.Generator, scene: _Scene) -> list[Candidate]:
    """Every candidate expression of ``scene`` (a text may repeat)."""
    np2 = _unique_nps(scene)
    return (
        _single_target_candidates(rng, scene, np2)
        + _ordinal_candidates(rng, scene, np2)
        + _multi_candidates(scene, np2)
        + _none_candidates(rng, scene)
    )


def candidate_expressions(rng: np.random.Generator, tracks: list[ObjectTrack]) -> list[Candidate]:
    """Every expression the world's language could say about ``tracks`` (of every kind, the no-target ones
    included), not only the few :func:`generate_expressions` samples for a video: a training stage that draws
    from these sees each video's whole language (``momentseg.train``'s point sources with ``expressions:
    candidates``)."""
    seen: set[str] = set()
    out = []
    for c in _all_candidates(rng, _Scene(tracks)):
        if c.text not in seen:  # each text once: the first candidate that has it, as generate_expressions
            seen.add(c.text)
            out.append(c)
    return out


def generate_expressions(
    rng: np.random.Generator, tracks: list[ObjectTrack], config: WorldConfig
) -> list[Candidate]:
    """Sample the expressions of one video: choose a kind by ``config.kind_weights`` (among kinds that have a
    valid candidate), then a family (predicate) uniformly, then a candidate uniformly; texts are unique."""
    scene = _Scene(tracks)
    pools: dict[str, dict[str, list[Candidate]]] = {k: {} for k, _ in config.kind_weights}
    seen_texts: set[str] = set()
    for c in _all_candidates(rng, scene):
        if c.text in seen_texts or c.kind not in pools:
            continue
        seen_texts.add(c.text)
        pools[c.kind].setdefault(c.family, []).append(c)
    weights = dict(config.kind_weights)
    n = int(rng.integers(config.min_expressions, config.max_expressions + 1))
    chosen: list[Candidate] = []
    while len(chosen) < n:
        kinds = [k for k in pools if pools[k] and weights[k] > 0]
        if not kinds:
            break
        w = np.array([weights[k] for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
        families = list(pools[kind])
        fam = families[int(rng.integers(len(families)))]
        pool = pools[kind][fam]
        bias = np.array([config.lookalike_bias if _has_lookalike(scene, c.obj_ids) else 1.0 for c in pool])
        chosen.append(pool.pop(int(rng.choice(len(pool), p=bias / bias.sum()))))
        if not pool:
            del pools[kind][fam]
    return chosen
