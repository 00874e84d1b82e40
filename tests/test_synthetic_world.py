"""The synthetic world: rendering and ground truth, moments vs event timelines, vocabulary, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from momentseg.data.synthetic import (
    COLOURS,
    PALETTE,
    SIZES,
    VOCABULARY,
    SynthVideo,
    WorldConfig,
    generate_video,
    iter_videos,
    tokenize,
    video_seed,
)
from momentseg.data.synthetic.config import SHAPE_PLURALS
from momentseg.data.synthetic.world import shape_mask
from momentseg.errors import InputError


def _expected_full_mask(video: SynthVideo, oid: int) -> np.ndarray:
    """Independent re-rendering of an object's whole shape: paste on a padded canvas, then crop the frame."""
    track = video.objects[oid]
    T, H, W = video.frames.shape[:3]
    r = SIZES[track.size]
    canvas = shape_mask(track.shape, r)
    pad = 2 * r + 2
    out = np.zeros((T, H, W), bool)
    for t in range(T):
        if not track.present[t]:
            continue
        cx, cy = (math.floor(v + 0.5) for v in track.centre[t])
        big = np.zeros((H + 2 * pad, W + 2 * pad), bool)
        y0, x0 = cy - r + pad, cx - r + pad
        if 0 <= y0 and y0 + 2 * r + 1 <= big.shape[0] and 0 <= x0 and x0 + 2 * r + 1 <= big.shape[1]:
            big[y0 : y0 + 2 * r + 1, x0 : x0 + 2 * r + 1] = canvas
        out[t] = big[pad : pad + H, pad : pad + W]
    return out


def test_masks_match_rendered_pixels(videos):
    for v in videos:
        T, H, W, _ = v.frames.shape
        cfg = WorldConfig()
        assert (H, W) == (cfg.height, cfg.width) and cfg.min_frames <= T <= cfg.max_frames
        covered_by_nearer = np.zeros((T, H, W), bool)
        for track in sorted(v.objects, key=lambda o: -o.depth):  # nearest first
            oid = track.obj_id
            full, vis = v.full_masks[oid], v.object_masks[oid]
            assert vis.shape == (T, H, W) and vis.dtype == bool
            np.testing.assert_array_equal(full, _expected_full_mask(v, oid))
            # visible = whole shape minus what nearer objects cover
            np.testing.assert_array_equal(vis, full & ~covered_by_nearer)
            covered_by_nearer |= full
            for t in range(T):
                if vis[t].any():  # visible pixels have the object's current colour, exactly
                    assert (v.frames[t][vis[t]] == track.rgb[t]).all()
            # absent or outside the frame -> empty mask
            assert not vis[~track.present].any()
            assert not vis[track.full_area == 0].any()
            np.testing.assert_array_equal(vis.reshape(T, -1).sum(1), track.visible_area)


def test_occlusion_and_exits_happen(videos):
    hidden = sum(((t.full_area - t.visible_area) > 0).any() for v in videos for t in v.objects)
    late = sum(not t.present[0] for v in videos for t in v.objects)
    assert hidden > 0 and late > 0


def _target(v: SynthVideo, exp):
    assert len(exp.obj_ids) == 1
    return v.objects[exp.obj_ids[0]]


def _frames(v: SynthVideo, exp) -> list[tuple[int, int]]:
    return [(round(s * v.fps), round(e * v.fps)) for s, e in exp.moments]


def test_moments_match_event_timeline(videos):
    checked = 0
    for v in videos:
        T = v.num_frames
        for exp in v.expressions:
            words = tokenize(exp.text)
            if exp.kind not in ("event", "reasoning") or len(exp.obj_ids) != 1:
                continue
            t = _target(v, exp)
            for a, b in _frames(v, exp):
                assert 0 <= a <= b < T
                if "turns" in words and words[words.index("turns") + 1] in COLOURS:
                    c = COLOURS.index(words[words.index("turns") + 1])
                    assert t.colour[b] == c and (t.rgb[b] == PALETTE[COLOURS[c]]).all()
                    assert a == 0 or t.colour[a - 1] != c
                    checked += 1
                elif "stops" in words:
                    assert t.speed[b] == 0 and t.speed[a] > 0
                    if "hitting" in words:
                        assert any(e.kind == "bounce" and e.start <= a <= e.end for e in t.events)
                    checked += 1
                elif "starts" in words:
                    assert t.speed[b] > 0 and (a == 0 or t.speed[a - 1] == 0)
                    checked += 1
                elif "enters" in words:
                    assert t.visible_area[b] > 0 and (a == 0 or t.full_area[a - 1] == 0)
                    assert t.full_area[b] == t.canvas_area
                    checked += 1
                elif "leaves" in words:
                    assert t.full_area[a] < t.canvas_area and (b == T - 1 or t.full_area[b + 1] == 0)
                    checked += 1
    assert checked >= 10


def test_motion_and_appearance_moments(videos):
    for v in videos:
        for exp in v.expressions:
            words = tokenize(exp.text)
            inside = v.moment_frames(exp)
            if exp.kind == "motion":
                t = _target(v, exp)
                d = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[words[-1]]
                assert inside.any()
                assert (t.speed[inside] > 0.25).all() and (t.visible_area[inside] > 0).all()
                assert (t.direction[inside] == d).all()
            if exp.kind == "appearance":
                t = _target(v, exp)
                assert (t.visible_area[inside] > 0).all()
                colour = [w for w in words if w in COLOURS]
                if colour:
                    assert (t.colour[inside] == COLOURS.index(colour[0])).all()


def _np_matches(track, words: list[str], colours_seen: set[str]) -> bool:
    shapes = {p: s for s, p in SHAPE_PLURALS.items()}
    noun = words[-1]
    shape = shapes.get(noun, noun)
    return (
        (shape in ("shape", "shapes") or track.shape == shape)
        and all(track.size == w for w in words if w in SIZES)
        and all(w in colours_seen for w in words if w in COLOURS)
    )


def test_appearance_expressions_name_exactly_their_targets(videos):
    for v in videos:
        seen = {t.obj_id: {COLOURS[c] for c in t.colour[(t.visible_area > 0) & (t.colour >= 0)]} for t in v.objects}
        for exp in v.expressions:
            words = tokenize(exp.text)
            if exp.kind in ("appearance", "none") and "that" not in words and "which" not in words:
                if "moving" in words:
                    continue
                matched = sorted(t.obj_id for t in v.objects if _np_matches(t, words[1:], seen[t.obj_id]))
                assert matched == exp.obj_ids, exp.text
            if exp.kind == "multi":
                count = {"two": 2, "three": 3}[words[1]]
                assert len(exp.obj_ids) == count


def test_no_target_expressions(videos):
    n = 0
    for v in videos:
        for exp in v.expressions:
            if exp.kind == "none":
                n += 1
                assert exp.obj_ids == [] and exp.moments == []
                assert not v.expression_masks(exp).any() and not v.moment_frames(exp).any()
            else:
                assert exp.obj_ids and exp.moments
                assert v.expression_masks(exp).any()
    assert n > 0


def test_expression_masks_union_and_moment_frames(videos):
    for v in videos:
        for exp in v.expressions:
            union = np.zeros(v.frames.shape[:3], bool)
            for oid in exp.obj_ids:
                union |= v.object_masks[oid]
            np.testing.assert_array_equal(v.expression_masks(exp), union)
            expected = np.zeros(v.num_frames, bool)
            for a, b in _frames(v, exp):
                expected[a : b + 1] = True
            np.testing.assert_array_equal(v.moment_frames(exp), expected)


def test_vocabulary_is_closed_and_covers_all_expressions():
    assert len(set(VOCABULARY)) == len(VOCABULARY) and list(VOCABULARY) == sorted(VOCABULARY)
    assert all(w == w.lower() and " " not in w for w in VOCABULARY)
    assert "?" in VOCABULARY and tokenize("which shape enters last?") == ["which", "shape", "enters", "last", "?"]
    kinds = set()
    for v in iter_videos(seed=7, n=30):
        for exp in v.expressions:
            kinds.add(exp.kind)
            assert set(tokenize(exp.text)) <= set(VOCABULARY), exp.text
    assert kinds == {"appearance", "motion", "event", "multi", "reasoning", "none"}


def test_determinism_and_streaming():
    a, b, c = generate_video(123), generate_video(123), generate_video(124)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.expressions == b.expressions
    assert not np.array_equal(a.frames[: min(a.num_frames, c.num_frames)], c.frames[: min(a.num_frames, c.num_frames)])
    streamed = list(iter_videos(seed=5, n=2))
    assert [s.video_id for s in streamed] == ["vid_00000", "vid_00001"]
    alone = generate_video(video_seed(5, 1), "vid_00001")
    np.testing.assert_array_equal(streamed[1].frames, alone.frames)
    assert streamed[1].expressions == alone.expressions
    assert video_seed(5, 1) != video_seed(6, 1) and video_seed(5, 1) != video_seed(5, 2)


def test_config_validation():
    with pytest.raises(InputError):
        WorldConfig(min_frames=50, max_frames=40)
    with pytest.raises(InputError):
        WorldConfig(kind_weights=(("bogus", 1.0),))


def test_all_expressions_say_the_whole_language_of_a_video_without_changing_it(videos):
    """``all_expressions`` (training only): every candidate of the world's language for the video, each text once,
    targets and moments as the video's own expressions have them; the video and its expressions unchanged."""
    from momentseg.data.synthetic import all_expressions

    kinds: set[str] = set()
    for v in videos:
        before = [(e.text, e.obj_ids, e.moments) for e in v.expressions]
        pool = all_expressions(v, np.random.default_rng(0))
        assert [(e.text, e.obj_ids, e.moments) for e in v.expressions] == before
        texts = [e.text for e in pool]
        assert len(texts) == len(set(texts)) and len(pool) > len(v.expressions)
        assert [e.text for e in all_expressions(v, np.random.default_rng(0))] == texts  # rng-determined
        seen = {t.obj_id: {COLOURS[c] for c in t.colour[(t.visible_area > 0) & (t.colour >= 0)]} for t in v.objects}
        for e in pool:
            kinds.add(e.kind)
            words = tokenize(e.text)
            assert set(words) <= set(VOCABULARY)
            if e.kind == "none":
                assert e.obj_ids == [] and e.moments == [] and not v.expression_masks(e).any()
                continue
            assert e.obj_ids and e.moments and v.expression_masks(e).any()
            if e.kind == "appearance" and "moving" not in words:  # the noun phrase names exactly its target
                assert sorted(t.obj_id for t in v.objects if _np_matches(t, words[1:], seen[t.obj_id])) == e.obj_ids
    assert kinds == {"appearance", "motion", "event", "multi", "reasoning", "none"}
