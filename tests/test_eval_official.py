"""Golden cases for the quirks of the official evaluators (issue 16), each value derived by hand.

Every case is tiny, and its comment derives the official number from the official definition; the code
under test is never used to produce the expected value.
"""

import json
import pickle

import numpy as np
import pytest

from momentseg.data.predictions import load_tsg_predictions
from momentseg.data.refvos import foreground_area, gt_values_from_rles, load_mask_dict, load_refvos_split
from momentseg.data.tsg import load_anet, load_charades
from momentseg.errors import InputError
from momentseg.eval.metrics import pixel_accuracy, r2vos_accuracy, r2vos_robustness, robustness
from momentseg.eval.refvos import evaluate_refvos
from momentseg.eval.tsg import MAP_THRESHOLDS, average_precision, evaluate_tsg, top1_iou
from momentseg.io.masks import rle_encode, write_png_mask

# ----------------------------------------------------------------------------------------------------- ReVOS
# One 2x4 frame (8 pixels). Two objects of the video overlap at (0, 1):
#   obj0 = {(0,0), (0,1)}, obj1 = {(0,1), (0,2)}.
HW = (2, 4)


def _mask(*pixels):
    m = np.zeros(HW, dtype=np.uint8)
    for y, x in pixels:
        m[y, x] = 1
    return m


OBJ0 = _mask((0, 0), (0, 1))
OBJ1 = _mask((0, 1), (0, 2))


def test_gt_is_uint8_sum_and_foreground_area():
    rles = [[rle_encode(OBJ0)], [rle_encode(OBJ1)]]
    gt = gt_values_from_rles(rles, 1, HW, "x")
    # the official scripts add the objects' 0/1 masks on uint8: the overlap pixel holds 2
    assert gt.dtype == np.uint8 and gt[0].tolist() == [[1, 2, 1, 0], [0, 0, 0, 0]]
    # the foreground of the frame is both layers: per-pixel sum 1, 2, 1 → 4 pixels
    assert foreground_area([[rle_encode(OBJ0), rle_encode(OBJ1)]], HW, "x").tolist() == [4.0]


def test_revos_a_r_on_raw_values_hand_computed():
    gt = OBJ0  # single object
    pred = _mask((0, 0), (0, 2)) * 255  # a 0/255 PNG: one TP pixel (0,0), one FP pixel (0,2)
    # official A: equal raw values only where both are 0: (0,0) 1≠255, (0,1) 1≠0, (0,2) 0≠255; 5 others → 5/8
    assert r2vos_accuracy(gt, pred) == 5 / 8
    # binarised A: (0,0) agrees too → 6/8
    assert pixel_accuracy(gt, pred) == 6 / 8
    # official R with foreground 4: neg = Σ(1−gt)·pred = 1·255 at (0,2) = 255 → max(1 − 255/4, 0) = 0
    assert r2vos_robustness(gt, pred, 4.0) == 0.0
    # binarised R: one FP pixel → 1 − 1/4 = 0.75 (up to the 1e-6 in the denominator)
    assert robustness(gt, pred, 4.0) == pytest.approx(0.75, abs=1e-6)

    gt2 = OBJ0 + OBJ1  # uint8 sum: 1, 2, 1
    union01 = _mask((0, 0), (0, 1), (0, 2))
    # RLE prediction (0/1) of exactly the union: official A counts the overlap pixel (2 vs 1) wrong → 7/8
    assert r2vos_accuracy(gt2, union01) == 7 / 8 and pixel_accuracy(gt2, union01) == 1.0
    # official R: (1 − 2) wraps to 255, times 1 → neg = 255 → R = 0; binarised: no FP → 1
    assert r2vos_robustness(gt2, union01, 4.0) == 0.0
    assert robustness(gt2, union01, 4.0) == 1.0
    # the same as a 0/255 PNG: (1 − 2)·255 = 255·255 = 65025 ≡ 1 (mod 256) → neg = 1 → R = 1 − 1/4 = 0.75
    assert r2vos_robustness(gt2, union01 * 255, 4.0) == pytest.approx(0.75, abs=1e-6)
    # and A: all three foreground pixels differ (1≠255, 2≠255, 1≠255) → 5/8
    assert r2vos_accuracy(gt2, union01 * 255) == 5 / 8


def _revos_split(root, expressions, masks):
    """``expressions``: exp_id -> (anno_ids, type_id); ``masks``: anno_id -> (H, W) uint8 for frame 0."""
    root.mkdir(parents=True)
    meta = {"videos": {"v": {"frames": ["00000"], "expressions": {}}}}
    for exp_id, (annos, type_id) in expressions.items():
        meta["videos"]["v"]["expressions"][exp_id] = {
            "exp": f"e{exp_id}",
            "anno_id": annos,
            "type_id": type_id,
        }
    (root / "meta_expressions_valid_.json").write_text(json.dumps(meta))
    (root / "mask_dict.json").write_text(json.dumps({a: [rle_encode(m)] for a, m in masks.items()}))
    fg = {"v": {"masks_rle": [[rle_encode(m) for m in masks.values()]]}}
    (root / "mask_dict_foreground.json").write_text(json.dumps(fg))
    return root


def test_revos_report_official_and_binary(tmp_path):
    data = _revos_split(tmp_path / "revos", {"0": ([0], 0), "1": ([0, 1], 1)}, {"0": OBJ0, "1": OBJ1})
    pred = tmp_path / "pred"
    write_png_mask(pred / "v" / "0" / "00000.png", _mask((0, 0), (0, 2)))  # written as 0/255
    write_png_mask(pred / "v" / "1" / "00000.png", _mask((0, 0), (0, 1), (0, 2)))
    report = evaluate_refvos("revos", data, pred, workers=1)
    # Expression 0 (referring), GT obj0, foreground 4 (see above): A 62.5, A_binary 75, R 0, R_binary 75.
    # Expression 1 (reasoning), GT obj0+obj1 (1,2,1), pred 255 on all three: A 5/8 = 62.5, A_binary 100,
    # R = 1 − 1/4 = 75 (65025 mod 256 = 1), R_binary 100.
    # overall = mean of the two subset means: A 62.5, A_binary 87.5, R 37.5, R_binary 87.5.
    assert report["A"] == 62.5 and report["A_binary"] == 87.5
    assert report["R"] == 37.5 and report["R_binary"] == 87.5
    # J: expression 0 has 1 / 3 (rounded per expression to 33.33), expression 1 is exact: (33.33 + 100) / 2
    assert report["exact"]["J"] == pytest.approx((33.33 + 100) / 2)
    assert report["subsets"]["referring"]["A"] == 62.5 and report["subsets"]["reasoning"]["R"] == 75.0
    assert report["protocol"] == "official-visa"
    assert any("uint8 sum" in q for q in report["quirks"]) and any("R_binary" in q for q in report["quirks"])


def test_revos_binary_png_gives_binary_a(tmp_path):
    # a 0/1 PNG (as Sa2VA's RLE → 0/1) of a single object: official A = binarised A
    data = _revos_split(tmp_path / "revos", {"0": ([0], 0), "1": ([1], 1)}, {"0": OBJ0, "1": OBJ1})
    pred = tmp_path / "pred"
    from PIL import Image

    for exp_id, m in (("0", OBJ0), ("1", _mask((0, 2)))):
        (pred / "v" / exp_id).mkdir(parents=True)
        Image.fromarray(m, mode="L").save(pred / "v" / exp_id / "00000.png")
    report = evaluate_refvos("revos", data, pred, workers=1)
    assert report["A"] == report["A_binary"] and report["R"] == report["R_binary"]
    # expression 1: GT obj1 = {(0,1),(0,2)}, pred {(0,2)}: A = 7/8, no FP → R = 1; J = 1/2
    assert report["subsets"]["reasoning"]["A"] == 87.5 and report["subsets"]["reasoning"]["J"] == 50.0


# ------------------------------------------------------------------------------------------------ Ref-DAVIS17


def _davis_meta(root, with_anno_id=False):
    # videos out of order, expression ids that sort differently as strings ("10" < "2")
    videos = {
        "b": {"frames": ["00000"], "expressions": {"0": {"exp": "b0", "obj_id": "1"}}},
        "a": {
            "frames": ["00000"],
            "expressions": {k: {"exp": f"a{k}", "obj_id": "1"} for k in ("0", "1", "2", "10")},
        },
    }
    if with_anno_id:
        for v in videos.values():
            for e in v["expressions"].values():
                e["anno_id"] = [0]
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta_expressions.json").write_text(json.dumps({"videos": videos}))
    return root


def test_refdavis_running_index_fallback_and_pkl(tmp_path):
    root = _davis_meta(tmp_path / "valid")
    split = load_refvos_split(root, "refdavis")
    # VISA get_meta_exp: sorted videos (a, b), sorted expression ids as strings (0, 1, 10, 2), from 0
    got = {(v, e): split.videos[v].expressions[e].anno_ids for v in "ab" for e in split.videos[v].expressions}
    assert got == {
        ("a", "0"): ("0",),
        ("a", "1"): ("1",),
        ("a", "10"): ("2",),
        ("a", "2"): ("3",),
        ("b", "0"): ("4",),
    }
    assert split.anno_id_fallback
    assert list(split.videos["a"].expressions) == ["0", "1", "2", "10"]  # meta order kept for listing
    # mask_dict.pkl (VISA / Sa2VA), bytes counts as pycocotools gives them; anno 2 = expression a/10
    full, empty = np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8)
    full[0, 0] = 1  # one pixel (a whole-frame mask would have no DAVIS boundary at all)

    def enc(m):
        r = rle_encode(m)
        return {"size": r["size"], "counts": r["counts"].encode()}

    md = {str(i): [enc(full if i == 2 else empty)] for i in range(5)}
    (root / "mask_dict.pkl").write_bytes(pickle.dumps(md))
    pred = {"a": {e: [rle_encode(full)] for e in ("0", "1", "2", "10")}, "b": {"0": [rle_encode(full)]}}
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    report = evaluate_refvos("refdavis", root, tmp_path / "pred.json", workers=1)
    # every prediction is the pixel (0, 0); only a/10 has that pixel as GT (J = F = 1); the others have an
    # empty GT: J = 0 (union 1, intersection 0) and F = 0 (predicted boundary, none in the GT: P = 0, R = 1).
    # J = F = (1 + 0 + 0 + 0 + 0) / 5 = 20 %
    assert report["J"] == 20.0 and report["F"] == 20.0
    rows = {(r["vid"], r["exp_id"]): r["J"] for r in report["per_expression"]}
    assert rows[("a", "10")] == 100.0 and rows[("a", "2")] == 0.0
    assert report["protocol"] == "official-visa-davis17" and any(
        "running index" in q for q in report["quirks"]
    )


def test_missing_anno_id_is_an_error_never_an_empty_gt(tmp_path):
    root = _davis_meta(tmp_path / "d", with_anno_id=True)
    meta = json.loads((root / "meta_expressions.json").read_text())
    del meta["videos"]["a"]["expressions"]["2"]["anno_id"]
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"meta_expressions\.json: video a, expression 2 has no 'anno_id'"):
        load_refvos_split(root, "refdavis")
    # MeViS (no fallback in its official code): one-line error naming the file and the field when scoring
    root = _davis_meta(tmp_path / "m")
    (root / "mask_dict.json").write_text(json.dumps({"0": [None]}))
    (tmp_path / "p.json").write_text(json.dumps({}))
    with pytest.raises(InputError, match=r"meta_expressions\.json: video b, expression 0 has no 'anno_id'"):
        evaluate_refvos("mevis", root, tmp_path / "p.json", workers=1)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_restricted_unpickler(tmp_path):
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps({1: [None, {"size": [2, 2], "counts": b"04"}], "x": (1.5, True)}))
    assert load_mask_dict(ok) == {"1": [None, {"size": [2, 2], "counts": b"04"}], "x": (1.5, True)}
    for name, obj in (("evil", _Evil()), ("array", {"0": np.zeros(3)})):
        bad = tmp_path / f"{name}.pkl"
        bad.write_bytes(pickle.dumps(obj))
        with pytest.raises(InputError, match=rf"{name}\.pkl: not a plain-data pickle \(refusing to load "):
            load_mask_dict(bad)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(pickle.dumps({"0": [None] * 10})[:-3])
    with pytest.raises(InputError, match=r"cut\.pkl: malformed pickle"):
        load_mask_dict(cut)
    lst = tmp_path / "list.pkl"
    lst.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(InputError, match=r"list\.pkl: expected an object"):
        load_mask_dict(lst)


# ------------------------------------------------------------------------------------------------------- TSG


def test_map_thresholds_rounded():
    # np.linspace(0.5, 0.95, 10)[8] is 0.8999999999999999; the official code rounds to 2 decimals
    assert MAP_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_ap_iou_formula_and_rounded_threshold():
    # pred [0, 0.1], GT [0, 0.2]: AP tIoU = 0.1 / (0.1 + 0.2 − 0.1); in floats 0.1 + 0.2 = 0.30000000000000004,
    # − 0.1 = 0.20000000000000004, so the tIoU is 0.49999999999999994 < 0.5: a miss at every threshold.
    assert average_precision([[0, 0.1, 1.0]], [[0, 0.2]]).tolist() == [0.0] * 10
    # ...while the R1 tIoU is inter / (max end − min start) = 0.1 / 0.2 = 0.5 exactly: R1@0.5 is a hit.
    assert top1_iou([[0, 0.1, 1.0]], [[0, 0.2]]) == 0.5
    # pred [0.5, 12.2], GT [0, 13]: tIoU = 11.7 / 13 evaluates to 0.8999999999999999, one ulp below 0.9:
    # hits at 0.5 … 0.85 (8 thresholds), misses at the rounded 0.9 (it would hit the unrounded
    # 0.8999999999999999) and at 0.95 → AP = [1]*8 + [0, 0].
    assert average_precision([[0.5, 12.2, 1.0]], [[0, 13]]).tolist() == [1.0] * 8 + [0.0, 0.0]


def test_ap_gt_tie_order_is_argsort_reversed():
    # GT1 = [0, 10], GT2 = [2, 12]. Pred A = [1, 11] (score 0.9) has tIoU 9/11 with both (inter 9, union 11).
    # Pred B = [4, 14] (score 0.8): tIoU 8/12 = 0.667 with GT2, 6/14 = 0.43 with GT1.
    # argsort()[::-1] tries the tied GTs from the last one: A takes GT2; B then finds GT2 taken and GT1 below
    # every threshold → FP. Thresholds 0.5 … 0.8 (A's 0.818 passes): TP, FP → precision [1, 1/2] at recall
    # [1/2, 1/2] → AP 0.5; thresholds 0.85 … 0.95: A misses too → AP 0. (Trying GT1 first would give AP 1 at
    # 0.5 … 0.65.)
    ap = average_precision([[1, 11, 0.9], [4, 14, 0.8]], [[0, 10], [2, 12]])
    assert ap.tolist() == [0.5] * 7 + [0.0] * 3
    assert ap.mean() == pytest.approx(0.35)


def test_reversed_prediction_windows_accepted(tmp_path):
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"qid": 0, "pred_relevant_windows": [[5, 3, 0.9], [0, 2, 0.5]]}) + "\n")
    assert load_tsg_predictions(pred) == {0: [[5.0, 3.0, 0.9], [0.0, 2.0, 0.5]]}
    # The reversed [5, 3] overlaps nothing: R1 tIoU = max(0, min(3, 2) − max(5, 0)) / … = 0.
    assert top1_iou([[5, 3, 0.9]], [[0, 2]]) == 0.0
    # AP quirk: against GT [0, 2] its signed length −2 + 2 − 0 = 0 makes the tIoU 0 / 0 = NaN, and
    # "NaN < threshold" is False, so officially it matches: AP = 1 at every threshold.
    assert average_precision([[5, 3, 0.9]], [[0, 2]]).tolist() == [1.0] * 10


def _lighthouse_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_lighthouse_jsonl_gt_for_charades_and_anet(tmp_path):
    rows = [
        {
            "qid": 10,
            "query": "a person opens a door",
            "duration": 30.0,
            "vid": "AO8RW",
            "relevant_windows": [[0, 10]],
        },
        {
            "qid": 11,
            "query": "a person sits",
            "duration": 30.0,
            "vid": "AO8RW",
            "relevant_windows": [[10, 20]],
        },
    ]
    gt = _lighthouse_jsonl(tmp_path / "charades-sta_test.jsonl", rows)
    for loader in (load_charades, load_anet):
        qs = loader(gt)
        assert [q.qid for q in qs] == [10, 11] and qs[0].vid == "AO8RW" and qs[1].windows == [[10.0, 20.0]]
        assert qs[0].duration == 30.0 and qs[0].query == "a person opens a door"
    pred = _lighthouse_jsonl(
        tmp_path / "p.jsonl",
        [
            # unsorted scores: the first window [0, 10] is the top-1 (tIoU 1), not [20, 30]
            {"qid": 10, "pred_relevant_windows": [[0, 10, 0.1], [20, 30, 0.9]]},
            {"qid": 11, "pred_relevant_windows": [[10, 15, 0.5]]},  # tIoU 5/10 = 0.5
        ],
    )
    for bench in ("charades", "anet"):
        r = evaluate_tsg(bench, gt, pred, workers=1)
        # R1@0.5: both (1.0 and 0.5 ≥ 0.5); R1@0.7: only qid 10; mIoU (1 + 0.5) / 2
        assert (r["R1@0.3"], r["R1@0.5"], r["R1@0.7"], r["mIoU"]) == (100.0, 100.0, 50.0, 75.0)
        # mAP: qid 10 sorted by score: [20, 30] FP then [0, 10] TP → AP 0.5 at all thresholds;
        # qid 11: tIoU 0.5 (5 / (5 + 10 − 5)) → TP only at 0.5 → AP [1, 0, ..., 0]
        # mAP@0.5 = (0.5 + 1) / 2 = 75; mAP = mean over thresholds of (0.5 + [1,0,...]) / 2 = 25 + 5 = 30
        assert r["mAP@0.5"] == 75.0 and r["mAP"] == 30.0
        assert r["unsorted_predictions"] == 1 and r["protocol"] == "official-moment-detr"


def test_empty_anno_id_list_is_a_no_target_expression(tmp_path):
    # "anno_id": [] is an expression without target: the official loop adds nothing → empty GT; we warn.
    data = _revos_split(tmp_path / "revos", {"0": ([], 0), "1": ([1], 1)}, {"0": OBJ0, "1": OBJ1})
    pred = tmp_path / "pred"
    write_png_mask(pred / "v" / "0" / "00000.png", np.zeros(HW, np.uint8))
    write_png_mask(pred / "v" / "1" / "00000.png", OBJ1)
    report = evaluate_refvos("revos", data, pred, workers=1)
    # expression 0: empty GT, empty prediction → J = F = 1 (both empty)
    assert report["subsets"]["referring"]["J"] == 100.0 and report["subsets"]["referring"]["F"] == 100.0
    assert any("empty 'anno_id' list" in w and "v/0" in w for w in report["warnings"])
