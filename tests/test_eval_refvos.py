import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from momentseg.cli import main
from momentseg.data.predictions import write_png_predictions, write_rle_predictions
from momentseg.errors import InputError
from momentseg.eval.metrics import f_measure, j_measure, pixel_accuracy, robustness
from momentseg.eval.refvos import evaluate_refvos, write_submission_zip
from momentseg.io.masks import rle_encode, write_png_mask

HW = (24, 32)
T = 4


def _obj(t0, dx, size=8, hw=HW, n=T):
    """A box moving right by dx px per frame, absent before frame t0."""
    m = np.zeros((n, *hw), dtype=bool)
    for t in range(t0, n):
        m[t, 4 : 4 + size, 2 + dx * t : 2 + dx * t + size] = True
    return m


OBJ = {"0": _obj(0, 2), "1": _obj(1, 3, size=6), "2": _obj(0, 1, size=10)}


def make_split(root, videos, *, meta_name="meta_expressions.json", gt=True, foreground=False, jpeg=True):
    """Write a split in the MeViS layout. ``videos``: vid -> {exp_id: (text, anno_ids, type_id | None)}."""
    root.mkdir(parents=True, exist_ok=True)
    meta = {"videos": {}}
    mask_dict, fg = {}, {}
    for vid, exps in videos.items():
        frames = [f"{i:05d}" for i in range(T)]
        meta["videos"][vid] = {"frames": frames, "fps": 6, "expressions": {}}
        for exp_id, (text, annos, type_id) in exps.items():
            e = {"exp": text, "obj_id": annos, "anno_id": annos}
            if type_id is not None:
                e["type_id"] = type_id
            meta["videos"][vid]["expressions"][exp_id] = e
            for a in [annos] if isinstance(annos, int) else annos:
                mask_dict[str(a)] = [rle_encode(m) if m.any() else None for m in OBJ[str(a)]]
        all_objs = [OBJ[k] for k in OBJ]
        fg[vid] = {"masks_rle": [[rle_encode(o[t]) for o in all_objs] for t in range(T)]}
        if jpeg:
            (root / "JPEGImages" / vid).mkdir(parents=True, exist_ok=True)
            for f in frames:
                Image.new("RGB", (HW[1], HW[0]), (90, 90, 90)).save(root / "JPEGImages" / vid / f"{f}.jpg")
    (root / meta_name).parent.mkdir(parents=True, exist_ok=True)
    (root / meta_name).write_text(json.dumps(meta))
    if gt:
        (root / "mask_dict.json").write_text(json.dumps(mask_dict))
    if foreground:
        (root / "mask_dict_foreground.json").write_text(json.dumps(fg))
    return root


def gt_of(annos):
    annos = [annos] if isinstance(annos, int) else annos
    out = np.zeros((T, *HW), dtype=bool)
    for a in annos:
        out |= OBJ[str(a)]
    return out


def expected_jf(pairs):
    j = np.mean([j_measure(g, p).mean() for g, p in pairs]) * 100
    f = np.mean([f_measure(g, p).mean() for g, p in pairs]) * 100
    return round(j, 2), round(f, 2), round((j + f) / 2, 2)


MEVIS = {
    "vidA": {"0": ("the box moving right", [0], None), "1": ("both boxes", [0, 1], None)},
    "vidB": {"0": ("the big box", 2, None)},  # int anno_id (Ref-YouTube-VOS style)
}


def _mevis_preds(tmp_path):
    pred = tmp_path / "pred"
    frames = [f"{i:05d}" for i in range(T)]
    write_png_predictions(pred, "vidA", "0", frames, OBJ["0"])  # perfect
    write_png_predictions(pred, "vidA", "1", frames, OBJ["0"])  # misses object 1
    # vidB/0 missing entirely
    return pred


def test_mevis_protocol_png_and_rle_identical(tmp_path):
    data = make_split(tmp_path / "valid_u", MEVIS)
    pred = _mevis_preds(tmp_path)
    report = evaluate_refvos("mevis", data, pred, workers=1)
    empty = np.zeros((T, *HW), dtype=bool)
    j, f, jf = expected_jf([(gt_of([0]), OBJ["0"]), (gt_of([0, 1]), OBJ["0"]), (gt_of(2), empty)])
    assert (report["J"], report["F"], report["J&F"]) == (j, f, jf)
    assert report["missing"] == 1 and report["n_expressions"] == 3
    assert any("no prediction" in w for w in report["warnings"])
    rows = {(r["vid"], r["exp_id"]): r for r in report["per_expression"]}
    assert rows[("vidA", "0")]["J"] == 100.0 and rows[("vidB", "0")]["missing"] is True
    assert rows[("vidA", "1")]["exp"] == "both boxes" and 0 < rows[("vidA", "1")]["J"] < 100
    assert {"J_recall", "J_decay", "F_recall", "F_decay", "J&F"} <= set(rows[("vidA", "1")])

    rle = tmp_path / "pred.json"
    write_rle_predictions(rle, {"vidA": {"0": OBJ["0"], "1": OBJ["0"]}})
    rep2 = evaluate_refvos("mevis", data / "meta_expressions.json", rle, workers=2)
    for k in ("J", "F", "J&F", "missing", "per_expression"):
        assert rep2[k] == report[k]


def test_workers_identical_and_missing_frame(tmp_path):
    data = make_split(tmp_path / "valid_u", MEVIS)
    pred = _mevis_preds(tmp_path)
    (pred / "vidA" / "1" / "00002.png").unlink()
    r1 = evaluate_refvos("mevis", data, pred, workers=1)
    r2 = evaluate_refvos("mevis", data, pred, workers=2)
    assert r1 == r2
    assert r1["missing_frames"] == 1
    assert r1["per_expression"][1]["missing_frames"] == 1


REVOS = {
    "UVO/all/v1": {
        "0": ("the box", [0], 0),
        "1": ("the small box", [1], 0),
        "2": ("the thing that moves fastest", [1], 1),
        "3": ("nothing", [2], 2),
    }
}


def test_revos_subsets_a_r(tmp_path):
    data = make_split(tmp_path / "ReVOS", REVOS, meta_name="meta_expressions_valid_.json", foreground=True)
    pred = tmp_path / "pred"
    frames = [f"{i:05d}" for i in range(T)]
    preds = {"0": OBJ["0"], "1": OBJ["0"], "2": OBJ["1"] | OBJ["2"], "3": OBJ["2"]}
    for exp_id, m in preds.items():
        write_png_predictions(pred, "UVO/all/v1", exp_id, frames, m)
    report = evaluate_refvos("revos", data, pred, workers=1)
    fg_area = sum(o.sum(axis=(1, 2)) for o in OBJ.values()).astype(float)
    gts = {"0": OBJ["0"], "1": OBJ["1"], "2": OBJ["1"], "3": OBJ["2"]}

    def per(exp_id):
        g, p = gts[exp_id], preds[exp_id]
        return {
            "J": round(100 * j_measure(g, p).mean(), 2),
            "F": round(100 * f_measure(g, p).mean(), 2),
            "A": round(100 * pixel_accuracy(g, p).mean(), 2),
            "R": round(100 * robustness(g, p, fg_area).mean(), 2),
        }

    referring = {k: (per("0")[k] + per("1")[k]) / 2 for k in "JFAR"}
    reasoning = per("2")
    # J and F are binary; the binarised A / R are reported as A_binary / R_binary (the official A / R use the
    # raw 0/255 values: see test_eval_official.py)
    for k, key in (("J", "J"), ("F", "F"), ("A", "A_binary"), ("R", "R_binary")):
        assert report[key] == round((referring[k] + reasoning[k]) / 2, 2)
        assert report["subsets"]["referring"][key] == round(referring[k], 2)
    assert report["protocol"] == "official-visa" and any("A_binary" in q for q in report["quirks"])
    # the subset-mean protocol differs from a pooled mean here
    pooled_j = round((per("0")["J"] + per("1")["J"] + per("2")["J"]) / 3, 2)
    assert report["J"] != pooled_j
    assert report["subsets"]["referring"]["n"] == 2 and report["subsets"]["reasoning"]["n"] == 1
    assert report["ignored"] == 1 and len(report["per_expression"]) == 4
    assert 0 < report["R_binary"] < 100 and report["A"] < report["A_binary"]


def test_revos_needs_type_id_and_foreground(tmp_path):
    data = make_split(
        tmp_path / "a",
        {"v": {"0": ("x", [0], None)}},
        meta_name="meta_expressions_valid_.json",
        foreground=True,
    )
    with pytest.raises(InputError, match="type_id"):
        evaluate_refvos("revos", data, tmp_path / "a", workers=1)
    data = make_split(tmp_path / "b", REVOS, meta_name="meta_expressions_valid_.json")
    with pytest.raises(InputError, match="mask_dict_foreground.json"):
        evaluate_refvos("revos", data, tmp_path / "b", workers=1)


def test_refsav_and_refdavis(tmp_path):
    vids = {"sav_1": {"0": ("long text", [0], 0), "1": ("short", [1], 1)}}
    data = make_split(tmp_path / "refsav", vids, meta_name="meta_expressions_valid.json")
    rle = tmp_path / "pred.json"
    # Sa2VA's Ref-SAV layout is accepted too
    rle.write_text(
        json.dumps({"sav_1": {"0": {"prediction_masks": [rle_encode(m) for m in OBJ["0"]]}, "1": [None] * T}})
    )
    report = evaluate_refvos("refsav", data, rle, workers=1)
    assert set(report["subsets"]) == {"long", "short"} and "R" not in report and "A" in report
    # "short": object 1 is absent in frame 0, so the empty prediction scores J = 1 there and 0 elsewhere
    assert report["subsets"]["long"]["J"] == 100.0 and report["subsets"]["short"]["J"] == 25.0
    assert report["J"] == 62.5

    davis = make_split(tmp_path / "davis" / "valid", {"bear": {"0": ("a bear", [0], None)}})
    pred = tmp_path / "dpred"
    write_png_predictions(pred, "bear", "0", [f"{i:05d}" for i in range(T)], OBJ["0"])
    rep = evaluate_refvos("refdavis", davis, pred, workers=1)
    assert rep["protocol"] == "official-visa-davis17" and rep["J&F"] == 100.0


def test_refytvos_no_gt_and_submission_zip(tmp_path):
    root = tmp_path / "ref-youtube-vos"
    vids = {"vid1": {"0": ("a", [0], None), "1": ("b", [1], None)}, "testvid": {"0": ("c", [0], None)}}
    make_split(root / "valid", vids, meta_name="../meta_expressions/valid/meta_expressions.json", gt=False)
    (root / "meta_expressions" / "test").mkdir(parents=True)
    (root / "meta_expressions" / "test" / "meta_expressions.json").write_text(
        json.dumps({"videos": {"testvid": {"frames": [], "expressions": {}}}})
    )
    pred = tmp_path / "pred"
    frames = [f"{i:05d}" for i in range(T)]
    with pytest.raises(InputError, match="no ground truth.*--submission-zip"):
        evaluate_refvos("refytvos", root / "valid", pred, workers=1)
    write_png_predictions(pred, "vid1", "0", frames, OBJ["0"])
    out = tmp_path / "sub.zip"
    with pytest.raises(InputError, match="submission incomplete.*vid1/1"):
        write_submission_zip("refytvos", root / "valid", pred, out, workers=1)
    assert not out.exists()
    write_png_predictions(pred, "vid1", "1", frames, OBJ["1"])
    info = write_submission_zip("refytvos", root / "valid", pred, out, workers=2)
    assert info["n_files"] == 2 * T and info["n_expressions"] == 2  # testvid excluded
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names[0] == "Annotations/vid1/0/00000.png" and len(names) == 2 * T
        assert zf.read("Annotations/vid1/1/00003.png") == (pred / "vid1" / "1" / "00003.png").read_bytes()

    mevis = make_split(tmp_path / "mevis" / "valid", {"v": {"0": ("a", [0], None)}}, gt=False)
    rle = tmp_path / "p.json"
    write_rle_predictions(rle, {"v": {"0": OBJ["2"]}})
    info = write_submission_zip("mevis", mevis, rle, tmp_path / "m.zip", workers=1)
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        assert sorted(zf.namelist())[0] == "v/0/00000.png"
        with zf.open("v/0/00001.png") as fh:
            np.testing.assert_array_equal(np.asarray(Image.open(fh)) > 0, OBJ["2"][1])


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_inputs(tmp_path):
    data = make_split(tmp_path / "valid_u", MEVIS)
    pred = _mevis_preds(tmp_path)
    # unknown video id (PNG folder)
    write_png_mask(pred / "ghost" / "0" / "00000.png", OBJ["0"][0])
    with pytest.raises(InputError, match="unknown video id 'ghost'"):
        evaluate_refvos("mevis", data, pred, workers=1)
    (pred / "ghost" / "0" / "00000.png").unlink()
    (pred / "ghost" / "0").rmdir()
    (pred / "ghost").rmdir()
    # unreadable PNG (detected inside a worker process)
    bad = pred / "vidA" / "0" / "00001.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read mask PNG .*00001.png"):
        evaluate_refvos("mevis", data, pred, workers=2)
    # mask size != frame size
    write_png_mask(bad, np.zeros((10, 10), dtype=bool))
    with pytest.raises(InputError, match="00001.png is 10x10.*frame is 32x24"):
        evaluate_refvos("mevis", data, pred, workers=1)
    # unknown video id / wrong frame count in RLE predictions, malformed JSON
    rle = tmp_path / "p.json"
    write_rle_predictions(rle, {"nope": {"0": OBJ["0"]}})
    with pytest.raises(InputError, match="unknown video id 'nope'"):
        evaluate_refvos("mevis", data, rle, workers=1)
    write_rle_predictions(rle, {"vidA": {"0": OBJ["0"][:2]}})
    with pytest.raises(InputError, match="has 2 masks but the video has 4 frames"):
        evaluate_refvos("mevis", data, rle, workers=1)
    rle.write_text('{"vidA": ')
    with pytest.raises(InputError, match=r"malformed JSON in .*p\.json"):
        evaluate_refvos("mevis", data, rle, workers=1)
    (data / "mask_dict.json").write_text("[1, 2")
    with pytest.raises(InputError, match="malformed JSON in .*mask_dict.json"):
        evaluate_refvos("mevis", data, pred, workers=1)


# ----------------------------------------------------------------------------------------------------- CLI


def test_cli_eval_refvos_and_tsg(tmp_path, capsys, cli):
    data = make_split(tmp_path / "valid_u", MEVIS)
    pred = _mevis_preds(tmp_path)
    out = tmp_path / "report.json"
    assert (
        cli(
            [
                "eval",
                "--benchmark",
                "mevis",
                "--data",
                str(data),
                "--pred",
                str(pred),
                "--out",
                str(out),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    empty = np.zeros((T, *HW), dtype=bool)
    expected = expected_jf([(gt_of([0]), OBJ["0"]), (gt_of([0, 1]), OBJ["0"]), (gt_of(2), empty)])
    assert (report["J"], report["F"], report["J&F"]) == expected
    assert report["missing"] == 1 and len(report["per_expression"]) == 3
    assert "J&F" in captured.out and f"{report['J&F']:.2f}" in captured.out
    assert "warning: 1 of 3 expressions have no prediction" in captured.err

    gt = tmp_path / "charades.txt"
    gt.write_text("v1 0 10##someone sits\n")
    tp = tmp_path / "tsg.jsonl"
    tp.write_text(json.dumps({"qid": 0, "pred_relevant_windows": [[0, 10, 1.0]]}) + "\n")
    out2 = tmp_path / "tsg.json"
    assert (
        cli(["eval", "--benchmark", "charades", "--gt", str(gt), "--pred", str(tp), "--out", str(out2)])
        == 0
    )
    rep = json.loads(out2.read_text())
    assert rep["R1@0.7"] == 100.0 and rep["mIoU"] == 100.0 and rep["mAP"] == 100.0


def test_cli_errors_exit_2_one_line(tmp_path, capsys):
    data = make_split(tmp_path / "valid_u", MEVIS)
    pred = _mevis_preds(tmp_path)
    out = tmp_path / "report.json"
    write_png_mask(pred / "vidA" / "0" / "00001.png", np.zeros((5, 5), dtype=bool))
    with pytest.raises(SystemExit) as exc:
        main(["eval", "-b", "mevis", "--data", str(data), "--pred", str(pred), "--out", str(out), "-j", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "00001.png" in err[0]
    assert not out.exists()
    # incomplete submission through the CLI
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "eval",
                "-b",
                "mevis",
                "--data",
                str(data),
                "--pred",
                str(pred),
                "--submission-zip",
                str(tmp_path / "s.zip"),
            ]
        )
    assert exc.value.code == 2 and "submission incomplete" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["eval", "-b", "charades", "--pred", str(pred), "--out", str(out)])
    assert exc.value.code == 2 and "--gt FILE is required" in capsys.readouterr().err
