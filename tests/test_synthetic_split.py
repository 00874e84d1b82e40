"""Writing a synthetic split: MeViS format, byte determinism, statistics, and the ``momentseg synth`` CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from momentseg.cli import main
from momentseg.data.synthetic import (
    SPLIT_SEEDS,
    Event,
    ObjectTrack,
    SynthExpression,
    SynthVideo,
    expression_flags,
    generate_video,
    split_stats,
    video_seed,
    write_split,
)
from momentseg.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2

N = 3
SEED = 11


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "split"
    write_split(out, N, SEED)
    return out


def test_same_seed_same_bytes_any_workers(split_dir, tmp_path):
    again = tmp_path / "again"
    write_split(again, N, SEED, workers=2)
    assert _digest(again) == _digest(split_dir)
    other = tmp_path / "other"
    write_split(other, N, SEED + 1)
    assert _digest(other)["meta_expressions.json"] != _digest(split_dir)["meta_expressions.json"]


def test_mevis_format(split_dir):
    meta = json.loads((split_dir / "meta_expressions.json").read_text())
    masks = json.loads((split_dir / "mask_dict.json").read_text())
    assert list(meta["videos"]) == [f"vid_{i:05d}" for i in range(N)]
    annos_seen: list[int] = []
    for i, (vid, entry) in enumerate(meta["videos"].items()):
        video = generate_video(video_seed(SEED, i), vid)
        T = video.num_frames
        assert entry["fps"] == 10.0 and entry["frames"] == [f"{t:05d}" for t in range(T)]
        jpgs = sorted((split_dir / "JPEGImages" / vid).iterdir())
        assert [p.name for p in jpgs] == [f"{t:05d}.jpg" for t in range(T)]
        with Image.open(jpgs[0]) as im:
            assert im.size == (160, 120) and im.mode == "RGB"
            # high-quality JPEG: close to the in-memory frame
            assert np.abs(np.asarray(im, np.int16) - video.frames[0].astype(np.int16)).mean() < 3
        assert list(entry["expressions"]) == [str(k) for k in range(len(video.expressions))]
        anno_of = {}
        for exp, rec in zip(video.expressions, entry["expressions"].values(), strict=True):
            assert rec["exp"] == exp.text and rec["obj_id"] == exp.obj_ids and rec["kind"] == exp.kind
            assert len(rec["moments"]) == len(exp.moments)
            for (s, e), (s2, e2) in zip(rec["moments"], exp.moments, strict=True):
                assert abs(s - s2) < 1e-4 and abs(e - e2) < 1e-4
            anno_of.update(zip(rec["obj_id"], rec["anno_id"], strict=True))
            # the summed RLE masks of the expression are its ground truth
            gt = np.zeros((T, 120, 160), bool)
            for aid in rec["anno_id"]:
                for t, rle in enumerate(masks[str(aid)]):
                    if rle is not None:
                        gt[t] |= mask_utils.decode(rle).astype(bool)
            np.testing.assert_array_equal(gt, video.expression_masks(exp))
        for oid, aid in anno_of.items():
            rles = masks[str(aid)]
            assert len(rles) == T
            for t, rle in enumerate(rles):
                m = video.object_masks[oid][t]
                if rle is None:
                    assert not m.any()
                else:
                    assert rle["size"] == [120, 160] and isinstance(rle["counts"], str)
                    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), m)
        annos_seen += sorted(anno_of.values())
    assert sorted(int(k) for k in masks) == list(range(len(masks)))  # one anno per object, unique ids
    assert set(annos_seen) <= set(range(len(masks)))


def test_tsg_txt_uses_longest_moment(split_dir):
    meta = json.loads((split_dir / "meta_expressions.json").read_text())
    expected = []
    for vid, entry in meta["videos"].items():
        for rec in entry["expressions"].values():
            if rec["moments"]:
                lengths = [e - s for s, e in rec["moments"]]
                s, e = rec["moments"][lengths.index(max(lengths))]
                expected.append(f"{vid} {s:.2f} {e:.2f}##{rec['exp']}")
    lines = (split_dir / "tsg.txt").read_text().splitlines()
    assert lines == expected and lines


def test_stats_json_fractions_recomputed(split_dir):
    stats = json.loads((split_dir / "stats.json").read_text())
    meta = json.loads((split_dir / "meta_expressions.json").read_text())
    exps = [rec for entry in meta["videos"].values() for rec in entry["expressions"].values()]
    with_moment = [r for r in exps if r["moments"]]
    late = sum(round(min(s for s, _ in r["moments"]) * 10) >= 5 for r in with_moment) / len(with_moment)
    assert stats["n_videos"] == N and stats["n_expressions"] == len(exps) and stats["seed"] == SEED
    assert stats["fractions"]["late_start"] == pytest.approx(late, abs=1e-4)
    assert stats["fractions"]["no_target"] == pytest.approx(
        sum(not r["obj_id"] for r in exps) / len(exps), abs=1e-4
    )
    assert sum(stats["kinds"].values()) == len(exps)


def _track(oid: int, visible: list[int], full: list[int], shape="square") -> ObjectTrack:
    T = len(visible)
    return ObjectTrack(
        obj_id=oid,
        shape=shape,
        size="small",
        depth=oid,
        base_colour="red",
        centre=np.zeros((T, 2)),
        present=np.ones(T, bool),
        speed=np.zeros(T),
        direction=np.zeros((T, 2), int),
        rgb=np.zeros((T, 3), np.uint8),
        colour=np.zeros(T, np.int8),
        full_area=np.array(full),
        visible_area=np.array(visible),
        canvas_area=10,
        events=[Event("stop", 1, 2)],
    )


def test_expression_flags_and_split_stats_by_hand():
    tracks = [_track(0, [0, 5, 5, 0], [0, 10, 10, 0]), _track(1, [10] * 4, [10] * 4), _track(2, [10] * 4, [10] * 4, "star")]
    video = SynthVideo("v", np.zeros((4, 2, 2, 3), np.uint8), 10.0, {}, [], objects=tracks)
    hard = SynthExpression("0", "x", [0], "event", [(0.6, 0.9)])
    easy = SynthExpression("1", "x", [2], "appearance", [(0.2, 0.3)])
    none = SynthExpression("2", "x", [], "none", [])
    f_hard, f_easy, f_none = (expression_flags(video, e) for e in (hard, easy, none))
    assert f_hard == {
        "has_moment": True,
        "late_start": True,
        "lookalike": True,
        "absent_frame0": True,
        "occluded": True,
        "exits": True,
        "hard_forward": True,
        "none": False,
    }
    assert not any(v for k, v in f_easy.items() if k != "has_moment") and f_easy["has_moment"]
    assert f_none["none"] and not f_none["has_moment"]
    recs = [dict(f, kind=e.kind, moment_s=1.0) for f, e in ((f_hard, hard), (f_easy, easy), (f_none, none))]
    stats = split_stats(recs)
    assert stats["n_expressions"] == 3
    fr = stats["fractions"]
    assert fr["late_start"] == 0.5 and fr["lookalike"] == 0.5 and fr["hard_forward"] == 0.5
    assert fr["no_target"] == pytest.approx(1 / 3, abs=1e-4)
    assert stats["kinds"]["event"] == 1 and stats["kinds"]["none"] == 1


def test_write_split_rejects_bad_arguments(tmp_path):
    with pytest.raises(InputError):
        write_split(tmp_path / "x", 0, 1)
    with pytest.raises(InputError):
        write_split(tmp_path / "x", 1, 1, workers=0)
    assert not (tmp_path / "x").exists()


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0)


def test_cli(tmp_path, capsys):
    out = tmp_path / "val"
    assert _cli(["synth", "--out", str(out), "--videos", "2", "--split", "val"]) == 0
    printed = capsys.readouterr().out
    assert "late_start" in printed and "no_target" in printed
    stats = json.loads((out / "stats.json").read_text())
    assert stats["seed"] == SPLIT_SEEDS["val"] and stats["n_videos"] == 2
    # its own folder is replaced (the previous split's files go), without --overwrite
    assert _cli(["synth", "--out", str(out), "--videos", "1", "--seed", "3"]) == 0
    assert json.loads((out / "stats.json").read_text())["seed"] == 3
    # refuses a non-empty folder it did not write, leaves it untouched
    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("mine")
    assert _cli(["synth", "--out", str(user), "--videos", "1", "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in user.iterdir()] == ["keep.txt"]
    assert _cli(["synth", "--out", str(user), "--videos", "1", "--seed", "3", "--force"]) == 0  # old name
    assert (user / "keep.txt").read_text() == "mine" and (user / "stats.json").is_file()
    for bad in (
        ["--videos", "1", "--seed", "3", "--split", "val"],
        ["--videos", "1"],
        ["--videos", "1", "--split", "holdout"],
        ["--videos", "0", "--seed", "1"],
        ["--videos", "1", "--seed", "-4"],
    ):
        assert _cli(["synth", "--out", str(tmp_path / "new"), *bad]) == 2
        assert capsys.readouterr().err.startswith("error:")
    assert not (tmp_path / "new").exists()
