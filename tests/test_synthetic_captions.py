"""Question / answer pairs about synthetic videos: closed vocabulary, answers vs ground truth, scoring."""

from __future__ import annotations

import numpy as np
import pytest

from momentseg.data.synthetic import (
    CAPTION_WORDS,
    COLOURS,
    VOCABULARY,
    CaptionPair,
    Event,
    ObjectTrack,
    SynthVideo,
    caption_pairs,
    caption_vocabulary,
    format_time,
    generate_video,
    objects_f1,
    parse_time,
    time_error,
    tokenize,
    where_answer,
)


def _times(video: SynthVideo, seed: int, n: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(video.num_frames, size=min(n, video.num_frames), replace=False))
    return idx / video.fps


def _track(obj_id, shape, size, colour_idx, visible, centre, events, T):
    colour = np.asarray(colour_idx, np.int8) if np.ndim(colour_idx) else np.full(T, colour_idx, np.int8)
    vis = np.asarray(visible, np.int64)
    return ObjectTrack(
        obj_id=obj_id,
        shape=shape,
        size=size,
        depth=obj_id,
        base_colour=COLOURS[int(colour[vis > 0][0])] if (vis > 0).any() else COLOURS[int(colour[0])],
        centre=np.asarray(centre, np.float64),
        present=np.ones(T, bool),
        speed=np.ones(T),
        direction=np.tile([1, 0], (T, 1)),
        rgb=np.zeros((T, 3), np.uint8),
        colour=colour,
        full_area=vis.copy(),
        visible_area=vis,
        canvas_area=10,
        events=events,
    )


@pytest.fixture()
def hand_video() -> SynthVideo:
    """T=20 at 10 fps, 30x60 frames.  A: small red circle, always visible at (5, 5) (top left), stops at
    frame 5, turns blue over frames 12-13.  B: large green star visible from frame 10 at (55, 25) (bottom right),
    enters from the left at frame 10.  C: medium yellow square visible only in frames 0-2, bounces at frame 1."""
    T = 20
    red, green, blue, yellow = (COLOURS.index(c) for c in ("red", "green", "blue", "yellow"))
    a_colour = np.full(T, red)
    a_colour[12:14] = -1
    a_colour[14:] = blue
    a = _track(0, "circle", "small", a_colour, np.full(T, 5), np.tile([5.0, 5.0], (T, 1)),
               [Event("stop", 5, 7), Event("colour", 12, 13, "blue")], T)  # fmt: skip
    b = _track(1, "star", "large", green, (np.arange(T) >= 10) * 9, np.tile([55.0, 25.0], (T, 1)),
               [Event("enter", 10, 12, "left")], T)  # fmt: skip
    c = _track(2, "square", "medium", yellow, (np.arange(T) <= 2) * 7, np.tile([30.0, 15.0], (T, 1)),
               [Event("bounce", 0, 2, "top")], T)  # fmt: skip
    return SynthVideo("hand", np.zeros((T, 30, 60, 3), np.uint8), 10.0, {}, [], objects=[a, b, c])


def _by_kind(pairs: list[CaptionPair]) -> dict[str, CaptionPair]:
    return {p.kind: p for p in pairs}


# ------------------------------------------------------------------------------------------------ vocabulary


def test_vocabulary_is_small_and_disjoint():
    assert 0 < len(CAPTION_WORDS) < 80
    assert not set(CAPTION_WORDS) & set(VOCABULARY)
    assert list(caption_vocabulary()) == sorted(set(VOCABULARY) | set(CAPTION_WORDS))
    for w in CAPTION_WORDS:
        assert tokenize(w) == [w]


def test_vocabulary_closed_over_generated_videos(videos):
    vocab = set(caption_vocabulary())
    kinds = set()
    for i, v in enumerate(videos):
        for n in (1, 4, 12):
            for p in caption_pairs(v, _times(v, i + n, n), np.random.default_rng(i)):
                kinds.add(p.kind)
                for text in (p.question, p.answer):
                    extra = set(tokenize(text)) - vocab
                    assert not extra, (text, extra)
    assert kinds == {"objects", "where", "events", "when"}


# ------------------------------------------------------------------------------------------------ hand video


def test_hand_video_all_frames(hand_video):
    times = np.arange(20) / 10.0
    pairs = _by_kind(caption_pairs(hand_video, times, np.random.default_rng(0)))
    assert pairs["objects"].question == "which shapes are visible ?"
    # canonical order: shape (circle, square, ..., star), colour, size; A shows red first
    assert pairs["objects"].answer == "small red circle and medium yellow square and large green star"
    assert pairs["events"].question == "describe the video ."
    assert pairs["events"].answer == (
        "the medium yellow square bounces off the top wall at 0 . 0 seconds ; "
        "the small red circle stops at 0 . 5 seconds ; "
        "the large green star enters from the left at 1 . 0 seconds ; "
        "the small red circle turns blue at 1 . 2 seconds"
    )
    when = pairs["when"]
    expected = {
        "when does the medium yellow square bounce off the top wall ?": "at 0 . 0 seconds",
        "when does the small red circle stop ?": "at 0 . 5 seconds",
        "when does the large green star enter from the left ?": "at 1 . 0 seconds",
        "when does the small red circle turn blue ?": "at 1 . 2 seconds",
    }
    assert expected[when.question] == when.answer
    where = pairs["where"]
    assert (
        where.answer
        == {"circle": "top left", "star": "bottom right", "square": "middle centre"}[
            where.question.split()[5]
        ]
    )


def test_hand_video_span_limits_answers(hand_video):
    times = np.array([1.4, 1.5, 1.9])  # A (blue by now) and B visible, C gone; no event starts here
    pairs = _by_kind(caption_pairs(hand_video, times, np.random.default_rng(0)))
    assert pairs["objects"].answer == "small blue circle and large green star"
    assert pairs["events"].answer == "nothing"  # no event starts inside 1.4 .. 1.9 s
    assert "when" not in pairs
    times = np.array([0.8, 1.1])
    pairs = _by_kind(caption_pairs(hand_video, times, np.random.default_rng(0)))
    assert pairs["objects"].answer == "small red circle and large green star"
    assert pairs["events"].answer == "the large green star enters from the left at 1 . 0 seconds"
    assert pairs["when"].answer == "at 1 . 0 seconds"


def test_hand_video_nothing_visible(hand_video):
    for tr in hand_video.objects:
        tr.visible_area[:] = 0
    pairs = _by_kind(caption_pairs(hand_video, np.array([0.5, 1.0]), np.random.default_rng(0)))
    assert pairs["objects"].answer == "nothing"
    assert "where" not in pairs


def test_where_thirds(hand_video):
    tr = hand_video.objects[0]  # frames are 60 wide, 30 high: thirds at x 20/40, y 10/20
    for (x, y), want in [
        ((5, 5), "top left"),
        ((19.9, 9.9), "top left"),
        ((20, 10), "middle centre"),
        ((30, 15), "middle centre"),
        ((45, 5), "top right"),
        ((10, 25), "bottom left"),
        ((59, 29), "bottom right"),
        ((-4, 33), "bottom left"),  # partly outside the frame: clamped
    ]:
        tr.centre[3] = (x, y)
        assert where_answer(hand_video, tr, 3) == want


def test_where_needs_unique_np(hand_video):
    twin = hand_video.objects[0]
    other = _track(
        3, "circle", "small", twin.colour.copy(), twin.visible_area.copy(), twin.centre.copy() + 40, [], 20
    )
    hand_video.objects.append(other)
    hand_video.objects.remove(hand_video.objects[1])  # only the two circles (and C early on)
    for seed in range(10):
        pairs = _by_kind(caption_pairs(hand_video, np.arange(3, 20) / 10.0, np.random.default_rng(seed)))
        assert "where" not in pairs  # the two small circles always share their colour
        assert "when" not in pairs  # "the small red circle" is not unique in the video


# ------------------------------------------------------------------------------------------------ generated videos


def test_answers_match_ground_truth(videos):
    for i, v in enumerate(videos):
        times = _times(v, 100 + i)
        frames = np.round(times * v.fps).astype(int)
        pairs = _by_kind(caption_pairs(v, times, np.random.default_rng(i)))
        # objects: exactly the (size, shape) of objects visible in the shown frames
        visible = [tr for tr in v.objects if (tr.visible_area[frames] > 0).any()]
        phrases = [] if pairs["objects"].answer == "nothing" else pairs["objects"].answer.split(" and ")
        assert len(phrases) == len(set(phrases))
        assert {(p.split()[0], p.split()[2]) for p in phrases} == {(tr.size, tr.shape) for tr in visible}
        for p in phrases:
            size, colour, shape = p.split()
            assert any(tr.size == size and tr.shape == shape and colour in
                       {COLOURS[c] for c in tr.colour[frames][tr.visible_area[frames] > 0] if c >= 0}
                       | {tr.base_colour} for tr in visible)  # fmt: skip
        # where: the named object is visible at the asked frame, answer from its centre
        if "where" in pairs:
            q = pairs["where"].question.split()
            f = int(round(parse_time(" ".join(q[7:])) * v.fps))
            assert f in set(frames.tolist())
            size, colour, shape = q[3:6]
            match = [tr for tr in v.objects if tr.visible_area[f] > 0 and tr.size == size and tr.shape == shape
                     and tr.colour[f] == COLOURS.index(colour)]  # fmt: skip
            assert len(match) == 1
            assert pairs["where"].answer == where_answer(v, match[0], f)
        # events: observable event starts inside the span, in time order, at most 4
        if pairs["events"].answer != "nothing":
            clauses = pairs["events"].answer.split(" ; ")
            assert 1 <= len(clauses) <= 4
            starts = [parse_time(c.split(" at ")[-1]) for c in clauses]
            assert starts == sorted(starts)
            ok = {round(ev.start / v.fps, 1) for tr in v.objects for ev in tr.events
                  if ev.observable and frames.min() <= ev.start <= frames.max()}  # fmt: skip
            assert set(starts) <= ok
        # when: the answer is the start of an observable event of an object of that NP
        if "when" in pairs:
            q = pairs["when"].question.split()
            size, colour, shape = q[3:6]
            t = parse_time(pairs["when"].answer)
            assert any(round(ev.start / v.fps, 1) == t and ev.observable
                       for tr in v.objects if tr.size == size and tr.shape == shape for ev in tr.events)  # fmt: skip


def test_determinism(videos):
    v = videos[3]
    times = _times(v, 7)
    a = caption_pairs(v, times, np.random.default_rng(42))
    b = caption_pairs(generate_video(3, "vid_00003"), times, np.random.default_rng(42))
    assert a == b


# ------------------------------------------------------------------------------------------------ scoring


def test_format_and_parse_time():
    assert format_time(2.5) == "2 . 5"
    assert format_time(12.04) == "1 2 . 0"
    assert format_time(0) == "0 . 0"
    assert parse_time("at 2 . 5 seconds") == 2.5
    assert parse_time("at 1 2 . 0 seconds") == 12.0
    assert parse_time("at 3.7 seconds") == 3.7
    assert parse_time("at 4 seconds") == 4.0
    assert parse_time("nothing") is None
    for t in (0.0, 0.1, 3.3, 9.9, 11.5):
        assert parse_time(format_time(t)) == pytest.approx(t)


def test_objects_f1_golden():
    true = "small red circle and large blue star"
    assert objects_f1(true, true) == 1.0
    assert objects_f1("large blue star and small red circle", true) == 1.0
    assert objects_f1("small red circle", true) == pytest.approx(2 / 3)
    assert objects_f1("small red circle and small red square and medium green cross", true) == pytest.approx(
        0.4
    )
    assert objects_f1("small green circle", true) == 0.0
    assert objects_f1("nothing", "nothing") == 1.0
    assert objects_f1("nothing", true) == 0.0
    assert objects_f1(true, "nothing") == 0.0
    assert objects_f1("", "nothing") == 1.0


def test_time_error_golden():
    assert time_error("at 2 . 5 seconds", "at 1 . 0 seconds") == pytest.approx(1.5)
    assert time_error("at 1 . 0 seconds", "at 1 . 0 seconds") == 0.0
    assert time_error("at 1 0 . 2 seconds", "at 1 . 2 seconds") == pytest.approx(9.0)
    assert time_error("never", "at 1 . 0 seconds") is None
