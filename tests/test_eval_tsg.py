import json

import numpy as np
import pytest

from momentseg.errors import InputError
from momentseg.eval.tsg import (
    MAP_THRESHOLDS,
    average_precision,
    evaluate_tsg,
    summarize,
    temporal_iou,
    top1_iou,
    top1_window,
)


def test_temporal_iou_hand_computed():
    iou = temporal_iou([[0, 10], [20, 30], [5, 5]], [[5, 15], [0, 10]])
    np.testing.assert_allclose(iou, [[5 / 15, 1.0], [0.0, 0.0], [0.0, 0.0]])
    assert temporal_iou([[2, 4]], [[0, 10]])[0, 0] == pytest.approx(0.2)


def test_top1_is_first_window_and_best_gt():
    preds = [[20, 30, 0.2], [0, 10, 0.9], [40, 50, 0.9]]
    assert top1_window(preds) == [20.0, 30.0]  # the first window, as Moment-DETR: not the best score
    assert top1_window([]) is None
    # two GT windows: the one that matches the top-1 counts
    assert top1_iou(preds, [[0, 10], [20, 28]]) == pytest.approx(0.8)
    assert top1_iou([], [[0, 1]]) == 0.0


def test_average_precision_hand_computed():
    assert (
        MAP_THRESHOLDS[0] == 0.5 and MAP_THRESHOLDS[-1] == pytest.approx(0.95) and len(MAP_THRESHOLDS) == 10
    )
    # FP then TP: precision [0, 1/2], recall [0, 1] -> AP = 0.5 at every threshold
    np.testing.assert_allclose(average_precision([[0, 10, 0.9], [20, 30, 0.8]], [[20, 30]]), 0.5)
    # two GT windows, TP, duplicate (FP), TP: AP = 0.5 * 1 + 0.5 * 2/3
    ap = average_precision([[0, 10, 0.9], [0, 10, 0.8], [20, 30, 0.7]], [[0, 10], [20, 30]])
    np.testing.assert_allclose(ap, 0.5 + 0.5 * 2 / 3)
    # scores decide the order, not the list order
    np.testing.assert_allclose(average_precision([[20, 30, 0.1], [0, 10, 0.9]], [[20, 30]]), 0.5)
    # tIoU 10/12 = 0.833: a hit for thresholds 0.5..0.8 (7 of 10), a miss above
    ap = average_precision([[0, 10, 1.0]], [[0, 12]])
    np.testing.assert_allclose(ap, [1.0] * 7 + [0.0] * 3)
    # only the first 10 windows count
    far = [[100 + i, 101 + i, 1.0] for i in range(10)]
    assert average_precision([*far, [0, 10, 2.0]], [[0, 10]]).sum() == 0.0
    assert average_precision([], [[0, 10]]).sum() == 0.0


def test_summarize_percentages():
    per_query = [
        {"iou": 0.8, "ap": [1.0] * 10},
        {"iou": 0.55, "ap": [0.5] * 10},
        {"iou": 0.3, "ap": [0.0] * 10},
        {"iou": 0.0, "ap": [0.0] * 10},
    ]
    s = summarize(per_query)
    assert s["R1@0.3"] == 75.0 and s["R1@0.5"] == 50.0 and s["R1@0.7"] == 25.0
    assert s["mIoU"] == round(100 * (0.8 + 0.55 + 0.3) / 4, 2)
    assert s["mAP"] == 37.5 and s["mAP@0.5"] == 37.5


def _write_preds(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_evaluate_charades_with_missing_prediction(tmp_path):
    gt = tmp_path / "charades_sta_test.txt"
    gt.write_text(
        "AO8RW 0.0 6.9##a person is putting a book on a shelf.\nY6R7T 10 20##person opens the door\n\n"
    )
    pred = tmp_path / "pred.jsonl"
    _write_preds(pred, [{"qid": 0, "pred_relevant_windows": [[0.0, 6.9, 0.9], [3.0, 4.0, 0.1]]}])
    report = evaluate_tsg("charades", gt, pred, workers=1)
    assert report["n_queries"] == 2 and report["missing"] == 1
    assert report["R1@0.3"] == 50.0 and report["R1@0.7"] == 50.0 and report["mIoU"] == 50.0
    assert report["mAP"] == 50.0
    assert report["per_query"][1]["missing"] is True and report["per_query"][1]["iou"] == 0.0
    assert "no prediction" in report["warnings"][0]


def test_evaluate_anet_and_workers_identical(tmp_path):
    gt = tmp_path / "val_2.json"
    gt.write_text(
        json.dumps(
            {
                "v_a": {"duration": 60.0, "timestamps": [[0, 30], [30, 60]], "sentences": ["x", "y"]},
                "v_b": {"duration": 20.0, "timestamps": [[5, 10]], "sentences": ["z"]},
            }
        )
    )
    pred = tmp_path / "pred.jsonl"
    _write_preds(
        pred,
        [
            {"qid": 0, "pred_relevant_windows": [[0, 20, 0.5]]},  # iou 2/3
            {"qid": 1, "pred_relevant_windows": [[40, 60]]},  # no score: order is the ranking; iou 2/3
            # unsorted: the top-1 is still the first window [5, 9] (iou 4/5), not [0, 20] (iou 0.25)
            {"qid": 2, "pred_relevant_windows": [[5, 9, 0.3], [0, 20, 0.4]]},
        ],
    )
    r1 = evaluate_tsg("anet", gt, pred, workers=1)
    r2 = evaluate_tsg("anet", gt, pred, workers=2)
    assert r1 == r2
    assert r1["R1@0.3"] == 100.0 and r1["R1@0.7"] == pytest.approx(33.33)
    assert r1["mIoU"] == round(100 * (2 / 3 + 2 / 3 + 0.8) / 3, 2)
    assert r1["unsorted_predictions"] == 1 and any("not by descending score" in w for w in r1["warnings"])
    assert r1["protocol"] == "official-moment-detr"
    assert [q["qid"] for q in r1["per_query"]] == [0, 1, 2] and r1["per_query"][2]["vid"] == "v_b"


def test_evaluate_qvhighlights_multiple_gt(tmp_path):
    gt = tmp_path / "highlight_val.jsonl"
    rows = [
        {"qid": 7, "query": "a", "vid": "v1", "duration": 150, "relevant_windows": [[0, 10], [50, 60]]},
        {"qid": 9, "query": "b", "vid": "v2", "duration": 150, "relevant_windows": [[20, 40]]},
    ]
    gt.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pred = tmp_path / "p.jsonl"
    _write_preds(
        pred,
        [
            {"qid": 7, "pred_relevant_windows": [[50, 60, 0.9], [0, 10, 0.8]]},
            {"qid": 9, "pred_relevant_windows": [[20, 40, 0.9]]},
        ],
    )
    r = evaluate_tsg("qvhighlights", gt, pred, workers=1)
    assert r["R1@0.7"] == 100.0 and r["mAP"] == 100.0 and r["missing"] == 0


def test_tsg_bad_inputs(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("vid 0 5##a\n")
    pred = tmp_path / "p.jsonl"
    _write_preds(pred, [{"qid": 3, "pred_relevant_windows": [[0, 1, 1]]}])
    with pytest.raises(InputError, match="unknown qid 3"):
        evaluate_tsg("charades", gt, pred, workers=1)
    pred.write_text('{"qid": 0, "pred_relevant_windows": [[0, 1, 1]]}\n{"qid": 1, \n')
    with pytest.raises(InputError, match=r"p\.jsonl:2: malformed JSON line"):
        evaluate_tsg("charades", gt, pred, workers=1)
    pred.write_text('{"qid": 0, "pred_relevant_windows": [[0, 1, 1], [2, 3]]}\n')
    with pytest.raises(InputError, match=r"p\.jsonl:1"):
        evaluate_tsg("charades", gt, pred, workers=1)
    gt.write_text("vid 0 5 a sentence without separator\n")
    with pytest.raises(InputError, match=r"gt\.txt:1"):
        evaluate_tsg("charades", gt, pred, workers=1)
    qv = tmp_path / "test.jsonl"
    qv.write_text(json.dumps({"qid": 1, "query": "q", "vid": "v", "duration": 10}) + "\n")
    with pytest.raises(InputError, match="no GT windows"):
        evaluate_tsg("qvhighlights", qv, pred, workers=1)
