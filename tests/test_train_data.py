"""Training samples: deterministic stateless mixing, frame choices, synthetic and real-format sources."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from momentseg.errors import InputError
from momentseg.grounding.sampling import dense_frame_indices, uniform_frames
from momentseg.io.masks import rle_encode
from momentseg.io.overlay import write_video
from momentseg.model import RefVOSSample, TSGSample
from momentseg.train.data import SampleStream, SyntheticSource, batch_positions
from momentseg.train.real_data import MaskDictSource, TSGVideoSource
from momentseg.train.shapes import (
    SampleShape,
    anchor_candidates,
    area_fit,
    keyframe_indices,
    moment_positives,
)

SHAPE = SampleShape(tsg_side=56, context_side=56, keyframe_side=128, tsg_max_frames=32, tsg_fps=5.0,
                    context_frames=16, keyframes=5, keyframe_window=10)


class Items:
    """A finite source whose sample is just (source name, item, a number from the sample's rng)."""

    def __init__(self, name, task, size):
        self.name, self.task, self.size = name, task, size

    def sample(self, item, rng, shape):
        return (self.name, item, float(rng.random()))


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 2 / 3, 1.0])
def test_task_mix_is_exact_and_indices_are_consecutive(ratio):
    stream = SampleStream([Items("a", "tsg", 5), Items("b", "refvos", 5)], SHAPE, tsg_ratio=ratio)
    tasks = [stream.task_of(q) for q in range(600)]
    n_tsg = sum(t == "tsg" for t, _ in tasks)
    assert abs(n_tsg - 600 * ratio) <= 1
    for task in ("tsg", "refvos"):
        assert [j for t, j in tasks if t == task] == list(range(sum(t == task for t, _ in tasks)))


@pytest.mark.parametrize("track", [0.25, 1 / 3])
def test_a_share_of_sams_own_task_mixes_exactly_into_fine_tuning(track):
    stream = SampleStream([Items("a", "tsg", 5), Items("b", "refvos", 5), Items("c", "track", 4)], SHAPE,
                          tsg_ratio=0.5, track_ratio=track)
    tasks = [stream.task_of(q) for q in range(600)]
    n_track = sum(t == "track" for t, _ in tasks)
    assert abs(n_track - 600 * track) <= 1
    assert abs(sum(t == "tsg" for t, _ in tasks) - (600 - n_track) * 0.5) <= 1
    for task in ("tsg", "refvos", "track"):
        assert [j for t, j in tasks if t == task] == list(range(sum(t == task for t, _ in tasks)))
    batch = stream.batch(range(8))
    assert set(batch) == {"tsg", "refvos", "track"} and all(x[0] == "c" for x in batch["track"])
    assert sum(map(len, batch.values())) == 8
    with pytest.raises(InputError, match="track_ratio"):
        SampleStream([Items("a", "tsg", 5), Items("c", "track", 4)], SHAPE)  # a track source, no share
    with pytest.raises(InputError, match="track_ratio"):
        SampleStream([Items("a", "tsg", 5)], SHAPE, track_ratio=0.2)  # a share, no track source
    with pytest.raises(InputError, match="cannot mix"):
        SampleStream([Items("a", "tsg", 5), Items("c", "track", 4), Items("d", "caption", 3)], SHAPE,
                     track_ratio=0.2)


def test_samples_are_a_pure_function_of_seed_and_position():
    def make(seed):
        return SampleStream([Items("a", "tsg", 7), Items("b", "refvos", 3)], SHAPE, tsg_ratio=0.5, seed=seed)

    a, b = make(1), make(1)
    order = [5, 0, 17, 3, 5]
    assert [a.sample(q) for q in order] == [b.sample(q) for q in order]
    assert [a.sample(q) for q in range(20)] != [make(2).sample(q) for q in range(20)]


def test_weights_are_repeats_within_an_epoch():
    stream = SampleStream([Items("a", "refvos", 4), Items("b", "refvos", 3)], SHAPE, weights=[2.0, 1.0])
    epoch = [stream.sample(q)[:2] for q in range(11)]  # pool = 2·4 + 1·3 slots
    assert Counter(epoch) == Counter([("a", i) for i in range(4)] * 2 + [("b", i) for i in range(3)])
    second = [stream.sample(q)[:2] for q in range(11, 22)]
    assert Counter(second) == Counter(epoch) and second != epoch  # a fresh order each pass


def test_batch_positions_partition_the_global_batch():
    world, accum, batch = 2, 3, 2
    for step in range(3):
        got = [q for m in range(accum) for r in range(world) for q in batch_positions(step, m, r, world, accum, batch)]
        assert sorted(got) == list(range(step * 12, step * 12 + 12))
    # 2 processes × batch 2 see exactly what 1 process × batch 4 sees
    assert batch_positions(1, 0, 0, 2, 1, 2) + batch_positions(1, 0, 1, 2, 1, 2) == batch_positions(1, 0, 0, 1, 1, 4)


def test_synthetic_must_be_alone_in_its_task():
    with pytest.raises(InputError, match="only 'tsg' source"):
        SampleStream([SyntheticSource("tsg"), Items("a", "tsg", 3)], SHAPE)


def test_frame_choice_helpers():
    assert uniform_frames(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert uniform_frames(3, 10).tolist() == [0, 1, 2]
    assert dense_frame_indices(np.arange(100) / 10.0, 1.0, 100).tolist() == list(range(0, 100, 10))
    assert len(dense_frame_indices(np.arange(5000) / 10.0, 1.0, 100)) == 100
    pos = moment_positives(np.arange(10.0), [(2.0, 4.0), (7.2, 7.4)])
    assert np.flatnonzero(pos).tolist() == [2, 3, 4, 7]  # the short moment marks its nearest frame
    assert area_fit((720, 1280), 112) == (84, 149) and area_fit((20, 30), 112) == (20, 30)


def test_keyframes_hold_a_visible_anchor_within_the_window():
    rng = np.random.default_rng(0)
    visible = np.zeros(60, dtype=bool)
    visible[40:45] = True
    for _ in range(20):
        keys = keyframe_indices(visible, 5, 10, rng)
        assert len(keys) == 5 and len(set(keys.tolist())) == 5 and (np.diff(keys) > 0).all()
        assert visible[keys].any() and keys.max() - keys.min() <= 20
    assert keyframe_indices(visible[:3], 5, 10, rng).tolist() == [0, 1, 2]  # T < K: all frames
    assert len(keyframe_indices(np.zeros(30, bool), 5, 1, rng)) == 5  # never visible, tiny window: still K


def test_synthetic_source_builds_model_samples():
    stream = SampleStream([SyntheticSource("tsg"), SyntheticSource("refvos")], SHAPE, tsg_ratio=0.5)
    batch = stream.batch(range(4))
    tsg, ref = batch["tsg"], batch["refvos"]
    assert len(tsg) == len(ref) == 2 and all(isinstance(s, TSGSample) for s in tsg)
    for s in tsg:
        assert s.frames.dtype == np.uint8 and s.frames.shape[0] == len(s.positive) <= 32
        assert s.frames.shape[1] * s.frames.shape[2] <= 56 * 56 and s.positive.any()
    for s in ref:
        assert isinstance(s, RefVOSSample) and s.keyframes.shape[:3] == s.masks.shape and s.masks.dtype == bool
        assert s.keyframes.shape[0] == 5 and max(s.keyframes.shape[1:3]) <= 128 and len(s.context) <= 16
    again = SampleStream([SyntheticSource("tsg"), SyntheticSource("refvos")], SHAPE, tsg_ratio=0.5).sample(2)
    np.testing.assert_array_equal(again.masks, ref[1].masks)


def _mevis_split(root, n_frames=12, hw=(40, 60)):
    """A MeViS-layout split: one video, two expressions (one object seen on frames 3–8, one never)."""
    rng = np.random.default_rng(0)
    frames = [f"{i:05d}" for i in range(n_frames)]
    (root / "JPEGImages" / "v1").mkdir(parents=True)
    for i, name in enumerate(frames):
        img = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
        img[5:15, 4 * i : 4 * i + 10] = 255
        Image.fromarray(img).save(root / "JPEGImages" / "v1" / f"{name}.jpg")
    masks = []
    for i in range(n_frames):
        if 3 <= i <= 8:
            m = np.zeros(hw, dtype=bool)
            m[5:15, 4 * i : 4 * i + 10] = True
            masks.append(rle_encode(m))
        else:
            masks.append(None)
    meta = {"videos": {"v1": {"frames": frames, "expressions": {
        "0": {"exp": "the white box moving right", "obj_id": [1], "anno_id": [7]},
        "1": {"exp": "the red car", "obj_id": [2], "anno_id": [8]}}}}}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "mask_dict.json").write_text(json.dumps({"7": masks, "8": [None] * n_frames}))


def test_mask_dict_source_reads_keyframes_and_masks(tmp_path):
    _mevis_split(tmp_path)
    source = MaskDictSource(tmp_path)
    assert source.size == 2
    s = source.sample(0, np.random.default_rng(1), SHAPE)
    assert s.query == "the white box moving right" and s.keyframes.shape == (5, 40, 60, 3)
    assert s.masks.shape == (5, 40, 60) and s.masks.any(axis=(1, 2)).sum() >= 1
    assert s.context.shape[0] == 12 and s.context.shape[1] * s.context.shape[2] <= 56 * 56
    # the mask sits where the frame is white
    k = int(np.flatnonzero(s.masks.any(axis=(1, 2)))[0])
    assert s.keyframes[k][s.masks[k]].mean() > 200
    empty = source.sample(1, np.random.default_rng(1), SHAPE)
    assert not empty.masks.any()


def test_mask_dict_source_without_masks_or_frames_is_an_input_error(tmp_path):
    _mevis_split(tmp_path)
    (tmp_path / "JPEGImages" / "v1" / "00004.jpg").unlink()
    with pytest.raises(InputError, match="00004"):
        MaskDictSource(tmp_path).sample(0, np.random.default_rng(0), SHAPE)
    (tmp_path / "mask_dict.json").unlink()
    with pytest.raises(InputError, match="mask_dict"):
        MaskDictSource(tmp_path)


def test_charades_source_samples_on_real_timestamps(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    frames = np.zeros((40, 32, 48, 3), dtype=np.uint8)  # 4 s at 10 fps
    write_video(videos / "ABC12.mp4", list(frames), fps=10)
    ann = tmp_path / "charades_sta_train.txt"
    ann.write_text("ABC12 1.0 2.5##a person opens a door.\n")
    source = TSGVideoSource("charades", ann, videos)
    s = source.sample(0, np.random.default_rng(0), SHAPE)  # 5 fps → 20 frames
    assert s.frames.shape == (20, 32, 48, 3) and s.query == "a person opens a door."
    assert np.flatnonzero(s.positive).tolist() == list(range(5, 13))  # frames at 1.0 … 2.4 s
    ann.write_text("ABC12 1.0 2.5##ok\nNOPE 0 1##missing video\n")
    with pytest.raises(InputError, match="NOPE"):
        TSGVideoSource("charades", ann, videos)


def test_synthetic_tsg_skips_a_video_with_nothing_to_ground():
    """Train video 11526 (TSG item 5763) has only no-target expressions; the stream uses the next video."""
    source = SyntheticSource("tsg", "train")
    assert not any(e.moments for e in source.video(5763).expressions)
    a = source.sample(5763, np.random.default_rng(0), SHAPE)
    b = source.sample(5763, np.random.default_rng(0), SHAPE)
    assert isinstance(a, TSGSample) and a.positive.any() and a.query == b.query
    assert a.query in {e.text for e in source.video(5764).expressions}


def test_refvos_anchor_is_drawn_inside_the_moment_where_the_target_shows():
    visible = np.array([0, 1, 1, 1, 1, 0, 1, 1], bool)
    moment = np.array([0, 0, 0, 1, 1, 1, 0, 0], bool)
    assert anchor_candidates(visible, moment).tolist() == [False, False, False, True, True, False, False, False]
    # the moment shows no target (or there is none): any visible frame
    assert anchor_candidates(visible, ~visible).tolist() == visible.tolist()
    assert anchor_candidates(visible, np.zeros(8, bool)).tolist() == visible.tolist()


def test_tsg_queries_per_video_group_distinct_queries_on_shared_frames(tmp_path):
    """data.tsg_queries_per_video: a TSG position holds several queries of one video on the same frames (the
    model's TSG forward shares their video prefix); one query per position is the stream as before."""
    import dataclasses

    grouped = dataclasses.replace(SHAPE, tsg_queries=3)
    source = SyntheticSource("tsg", "train")
    single = source.sample(0, np.random.default_rng(0), SHAPE)
    group = source.sample(0, np.random.default_rng(0), grouped)
    with_moment = [e for e in source.video(0).expressions if e.moments]
    assert isinstance(single, TSGSample) and len(group) == min(3, len(with_moment)) >= 2
    assert len({s.query for s in group}) == len(group) and {s.query for s in group} <= {e.text for e in with_moment}
    assert all(s.frames is group[0].frames and np.array_equal(s.frames, single.frames) for s in group)
    truth = {e.text: e.moments for e in with_moment}
    times = dense_frame_indices(np.arange(source.video(0).num_frames) / source.video(0).fps, SHAPE.tsg_fps,
                                SHAPE.tsg_max_frames) / source.video(0).fps
    assert all(np.array_equal(s.positive, moment_positives(times, truth[s.query])) for s in group)
    stream = SampleStream([SyntheticSource("tsg", "train"), SyntheticSource("refvos", "train")], grouped)
    batch = stream.batch(range(4))
    assert len(batch["tsg"]) > 2 and len(batch["refvos"]) == 2  # 2 TSG positions, each a group
    # a real TSG source groups the other queries of the same video
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "ABC12.mp4", list(np.zeros((20, 32, 48, 3), dtype=np.uint8)), fps=10)
    write_video(videos / "XYZ99.mp4", list(np.zeros((20, 32, 48, 3), dtype=np.uint8)), fps=10)
    ann = tmp_path / "charades_sta_train.txt"
    ann.write_text("ABC12 0.0 1.0##one.\nXYZ99 0.0 1.0##other video.\nABC12 1.0 2.0##two.\n")
    real = TSGVideoSource("charades", ann, videos).sample(2, np.random.default_rng(0), grouped)
    assert [s.query for s in real] == ["two.", "one."] and real[0].frames is real[1].frames
    assert np.flatnonzero(real[1].positive).tolist() == list(range(6))  # 0.0 … 1.0 s at 5 fps
