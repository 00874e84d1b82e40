import json

import numpy as np
import pytest
from PIL import Image

from momentseg.data.predictions import (
    load_predicted_masks,
    load_tsg_predictions,
    open_mask_predictions,
    write_png_predictions,
    write_rle_predictions,
    write_tsg_predictions,
)
from momentseg.data.refvos import load_mevis_split, load_refvos_split
from momentseg.data.tsg import TSGQuery, load_anet, load_charades, load_qvhighlights
from momentseg.errors import InputError
from momentseg.io.masks import rle_encode


def _masks(n=3, hw=(6, 9), col=1):
    m = np.zeros((n, *hw), dtype=bool)
    for t in range(n):
        m[t, 1:4, col + t : col + t + 3] = True
    return m


def _mevis(tmp_path, with_gt=True, sizes_in_meta=False):
    root = tmp_path / "mevis" / "train"
    root.mkdir(parents=True)
    a, b = _masks(col=0), _masks(col=4)
    b[0] = False
    video = {
        "frames": ["00000", "00001", "00002"],
        "fps": 6.0,
        "source": "synthetic",
        "expressions": {
            "0": {"exp": "the left square", "obj_id": [0], "anno_id": [10]},
            "1": {"exp": "both squares", "obj_id": [0, 1], "anno_id": [10, 11]},
            "2": {"exp": "the right square", "obj_id": 1, "anno_id": 11},
        },
    }
    if sizes_in_meta:
        video.update(height=6, width=9)
    (root / "meta_expressions.json").write_text(json.dumps({"videos": {"v0": video}}))
    if with_gt:
        md = {"10": [rle_encode(m) for m in a], "11": [None] + [rle_encode(m) for m in b[1:]]}
        (root / "mask_dict.json").write_text(json.dumps(md))
    return root, a, b


def test_load_mevis_split(tmp_path):
    root, a, b = _mevis(tmp_path)
    split = load_mevis_split(root)
    assert split.has_gt and list(split.videos) == ["v0"]
    v = split.videos["v0"]
    assert v.frames == ["00000", "00001", "00002"] and v.fps == 6.0 and v.extra == {"source": "synthetic"}
    e1, e2 = v.expressions["1"], v.expressions["2"]
    assert e1.anno_ids == ("10", "11") and e1.obj_ids == (0, 1) and e1.text == "both squares"
    assert e2.anno_ids == ("11",) and e2.obj_ids == (1,) and e2.type_id is None
    assert split.frame_size("v0") == (6, 9)
    np.testing.assert_array_equal(split.gt_masks("v0", "1"), a | b)
    np.testing.assert_array_equal(split.gt_masks("v0", "2"), b)
    assert split.frame_path("v0", "00001") == root / "JPEGImages" / "v0" / "00001.jpg"
    assert [(vid.vid, e.exp_id) for vid, e in split.expressions()] == [("v0", "0"), ("v0", "1"), ("v0", "2")]


def test_split_without_gt_uses_meta_or_jpeg_size(tmp_path):
    root, _, _ = _mevis(tmp_path, with_gt=False)
    split = load_mevis_split(root)
    assert not split.has_gt
    with pytest.raises(InputError, match="cannot tell the frame size"):
        split.frame_size("v0")
    (root / "JPEGImages" / "v0").mkdir(parents=True)
    Image.new("RGB", (9, 6)).save(root / "JPEGImages" / "v0" / "00000.jpg")
    assert load_mevis_split(root).frame_size("v0") == (6, 9)
    root2, _, _ = _mevis(tmp_path / "b", with_gt=False, sizes_in_meta=True)
    assert load_mevis_split(root2).frame_size("v0") == (6, 9)


def test_split_errors(tmp_path):
    root, a, _ = _mevis(tmp_path)
    (root / "mask_dict.json").write_text(json.dumps({"10": [rle_encode(m) for m in a[:2]], "11": [None] * 3}))
    with pytest.raises(InputError, match="anno_id 10 has 2 masks but video v0 has 3 frames"):
        load_mevis_split(root).gt_masks("v0", "0")
    (root / "mask_dict.json").write_text(json.dumps({"11": [None] * 3}))
    with pytest.raises(InputError, match="anno_id 10 .* missing"):
        load_mevis_split(root).gt_masks("v0", "0")
    (root / "meta_expressions.json").write_text(json.dumps({"videos": {"v0": {"frames": "oops"}}}))
    with pytest.raises(InputError, match="needs a 'frames' list"):
        load_mevis_split(root)
    with pytest.raises(InputError, match="no expressions file"):
        load_mevis_split(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_refvos_split(tmp_path / "nope", "revos")


def test_mask_prediction_writers_roundtrip(tmp_path):
    root, a, b = _mevis(tmp_path)
    split = load_mevis_split(root)
    frames = split.videos["v0"].frames
    png = tmp_path / "pred_png"
    write_png_predictions(png, "v0", "1", frames, a | b)
    write_png_predictions(png, "v0", "1", frames, a)  # overwrite is atomic per expression folder
    rle = tmp_path / "pred.json"
    write_rle_predictions(rle, {"v0": {"1": a, "2": [None, rle_encode(b[1]), b[2]]}})
    for path in (png, rle):
        preds = open_mask_predictions(path)
        preds.check_known(split)
        assert preds.has("v0", "1") and not preds.has("v0", "0")
        got = load_predicted_masks(preds.task_source("v0", "1"), frames, (6, 9), str(path))
        np.testing.assert_array_equal(got, a)
        none = load_predicted_masks(preds.task_source("v0", "0"), frames, (6, 9), str(path))
        assert none.shape == (3, 6, 9) and not none.any()
    data = json.loads(rle.read_text())
    assert isinstance(data["v0"]["1"][0]["counts"], str) and data["v0"]["2"][0] is None
    written = sorted(p.name for p in (png / "v0" / "1").iterdir() if p.suffix == ".png")
    assert written == ["00000.png", "00001.png", "00002.png"]
    with pytest.raises(ValueError):
        write_png_predictions(png, "v0", "3", frames, a[:2])


def test_tsg_readers(tmp_path):
    ch = tmp_path / "charades_sta_test.txt"
    ch.write_text("3MSZA 24.3 30.4##person turn a light on.\n\nAO8RW 0.0 6.9##a person is putting a book.\n")
    qs = load_charades(ch)
    assert qs == [
        TSGQuery(0, "3MSZA", "person turn a light on.", [[24.3, 30.4]], None),
        TSGQuery(1, "AO8RW", "a person is putting a book.", [[0.0, 6.9]], None),
    ]
    an = tmp_path / "val_1.json"
    an.write_text(
        json.dumps(
            {
                "v_b": {
                    "duration": 50.0,
                    "timestamps": [[1, 2], [3, 9.5]],
                    "sentences": [" A man. ", "He runs."],
                },
                "v_a": {"duration": 10, "timestamps": [[0, 10]], "sentences": ["x"]},
            }
        )
    )
    qa = load_anet(an)
    assert [(q.qid, q.vid, q.query) for q in qa] == [
        (0, "v_b", "A man."),
        (1, "v_b", "He runs."),
        (2, "v_a", "x"),
    ]
    assert qa[1].windows == [[3.0, 9.5]] and qa[2].duration == 10.0
    qv = tmp_path / "highlight_val_release.jsonl"
    qv.write_text(
        json.dumps(
            {
                "qid": 2579,
                "query": "A girl",
                "vid": "NUsG9BgSes0_210.0_360.0",
                "duration": 150,
                "relevant_windows": [[0, 2], [20, 40]],
                "saliency_scores": [],
            }
        )
        + "\n"
    )
    (q,) = load_qvhighlights(qv)
    assert q.qid == 2579 and q.windows == [[0.0, 2.0], [20.0, 40.0]] and q.duration == 150.0


def test_tsg_reader_errors(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("vid 5 1##end before start\n")
    with pytest.raises(InputError, match=r"c\.txt:1: bad window"):
        load_charades(p)
    p.write_text("vid a b##x\n")
    with pytest.raises(InputError, match=r"c\.txt:1: start/end are not numbers"):
        load_charades(p)
    an = tmp_path / "a.json"
    an.write_text(json.dumps({"v": {"timestamps": [[0, 1]], "sentences": []}}))
    with pytest.raises(InputError, match="1 timestamps but 0 sentences"):
        load_anet(an)
    qv = tmp_path / "q.jsonl"
    qv.write_text('{"qid": 1, "vid": "v"}\n{"qid": 1, "vid": "v"}\n')
    with pytest.raises(InputError, match=r"q\.jsonl:2: duplicate qid 1"):
        load_qvhighlights(qv)
    with pytest.raises(InputError, match="file not found"):
        load_charades(tmp_path / "missing.txt")


def test_tsg_prediction_writer_roundtrip(tmp_path):
    p = tmp_path / "out" / "preds.jsonl"
    rows = [
        {"qid": 0, "query": "q", "vid": "v", "pred_relevant_windows": [[0.0, 5.0, 0.9], [1.0, 2.0, 0.1]]},
        {"qid": 5, "pred_relevant_windows": [[3, 4]]},
    ]
    write_tsg_predictions(p, rows)
    assert [json.loads(line)["qid"] for line in p.read_text().splitlines()] == [0, 5]
    got = load_tsg_predictions(p)
    assert got == {0: [[0.0, 5.0, 0.9], [1.0, 2.0, 0.1]], 5: [[3.0, 4.0, 1.0]]}
    with pytest.raises(ValueError):
        write_tsg_predictions(p, [{"qid": 1}])
