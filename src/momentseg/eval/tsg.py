"""Temporal sentence grounding metrics: tIoU, R1@θ, mIoU and mAP@[0.5:0.05:0.95].

The default is the official evaluation, bit for bit (``protocol: official-moment-detr``): Moment-DETR
``standalone_eval/eval.py`` + ``utils.py``, which Lighthouse ships unchanged for QVHighlights, Charades-STA
and ActivityNet Captions. Its conventions, quirks included (each also listed in the report's ``quirks``):

* **Top-1** = the **first** window of ``pred_relevant_windows`` (``pred_relevant_windows[0]``), whatever the
  scores say; predictions are expected sorted by score. ``top1_by_score`` is reported as a side note only.
* **R1@θ**: among several GT windows, the one with the highest tIoU to the top-1 window counts (first on
  ties), chosen with the AP's tIoU below; the R1 tIoU itself is then ``max(0, min(e1, e2) − max(s1, s2)) /
  (max(e1, e2) − min(s1, s2))`` (0 when that "union" is 0; equal to the true IoU whenever the windows
  overlap). R1@θ = percentage of queries with tIoU ≥ θ; mIoU = mean of the same tIoU × 100 (the TSG-LLM
  convention; not in Moment-DETR).
* **mAP** (ActivityNet ``compute_average_precision_detection``): per query the first
  :data:`MAX_PRED_WINDOWS` windows as given, sorted by descending score (stable: equal scores keep their
  order); tIoU = ``inter / (a1 + a2 − inter)`` with ``a = end − start`` (a window ending before it starts
  has a negative area; 0 / 0 gives NaN, which passes every threshold, as officially); the GT windows are
  tried in ``tiou.argsort()[::-1]`` order (ties: the later GT window first), an already matched GT window is
  skipped, the first one below the threshold stops the search; AP = VOC-interpolated area under the
  precision–recall curve. Thresholds ``np.linspace(0.5, 0.95, 10)`` rounded to 2 decimals
  (:data:`MAP_THRESHOLDS`: 0.9, not 0.8999999999999999). mAP = mean over thresholds of the mean over queries.
* A predicted window may end before it starts (accepted, as officially; it overlaps nothing).
* Percentages are rounded to 2 decimals (``float(f"{100 * x:.2f}")`` officially, the same as ``round``).

Deliberate difference: a query without prediction (or with an empty window list) is scored as a miss (tIoU 0,
AP 0) and counted in ``missing``; the official code asserts that every GT qid has a prediction (and crashes on
an empty list).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from momentseg.data.predictions import load_tsg_predictions
from momentseg.data.tsg import TSG_LOADERS, TSGQuery
from momentseg.errors import InputError
from momentseg.eval.parallel import parallel_map

R1_THRESHOLDS = (0.3, 0.5, 0.7)
MAP_THRESHOLDS = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
MAX_PRED_WINDOWS = 10
PROTOCOL = "official-moment-detr"
QUIRKS = [
    "top-1 = pred_relevant_windows[0] (the first window as given), not the highest-scoring one",
    "R1 / mIoU tIoU = inter / (max end - min start) (0 when that is 0); the best of several GT windows is "
    "chosen with the AP tIoU",
    "mAP tIoU = inter / (len1 + len2 - inter); GT ties tried in argsort()[::-1] order; 0/0 tIoU (NaN) counts "
    "as a match",
    "mAP uses the first 10 predicted windows as given, then sorts them by score (stable)",
    "mAP thresholds np.linspace(0.5, 0.95, 10) rounded to 2 decimals",
    "predicted windows may end before they start",
]


def _windows(w: np.ndarray | Sequence) -> np.ndarray:
    return np.asarray(w, dtype=np.float64).reshape(-1, 2)


def temporal_iou(pred: np.ndarray | Sequence, gt: np.ndarray | Sequence) -> np.ndarray:
    """R1 / mIoU tIoU matrix ``(N, M)``: ``inter / (max(e) − min(s))``, 0 where that is 0 (Moment-DETR
    ``compute_temporal_iou_batch_paired``, for every pair)."""
    p, g = _windows(pred), _windows(gt)
    inter = np.maximum(
        0.0, np.minimum(p[:, None, 1], g[None, :, 1]) - np.maximum(p[:, None, 0], g[None, :, 0])
    )
    union = np.maximum(p[:, None, 1], g[None, :, 1]) - np.minimum(p[:, None, 0], g[None, :, 0])
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union != 0)
    return out


def temporal_iou_ap(pred: np.ndarray | Sequence, gt: np.ndarray | Sequence) -> np.ndarray:
    """AP tIoU matrix ``(N, M)``: ``inter / (len1 + len2 − inter)`` with signed lengths; 0 / 0 → NaN
    (Moment-DETR ``compute_temporal_iou_batch_cross``)."""
    p, g = _windows(pred), _windows(gt)
    left = np.maximum(p[:, None, 0], g[None, :, 0])
    right = np.minimum(p[:, None, 1], g[None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = (p[:, 1] - p[:, 0])[:, None] + (g[:, 1] - g[:, 0])[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def top1_window(pred_windows: Sequence[Sequence[float]]) -> list[float] | None:
    """The first ``[s, e]`` of ``[[s, e, score], ...]`` (the official top-1); ``None`` if there is none."""
    if len(pred_windows) == 0:
        return None
    return [float(pred_windows[0][0]), float(pred_windows[0][1])]


def top1_by_score(pred_windows: Sequence[Sequence[float]]) -> list[float] | None:
    """The highest-scoring ``[s, e]`` (first on ties); ``None`` if there is none. Not used for the metrics."""
    if len(pred_windows) == 0:
        return None
    best = int(np.argmax(np.asarray([w[2] for w in pred_windows], dtype=np.float64)))
    return [float(pred_windows[best][0]), float(pred_windows[best][1])]


def top1_iou(pred_windows: Sequence[Sequence[float]], gt_windows: Sequence[Sequence[float]]) -> float:
    """R1 tIoU of the top-1 window with the GT window of highest AP tIoU to it (0 without predictions)."""
    top = top1_window(pred_windows)
    if top is None or len(gt_windows) == 0:
        return 0.0
    best = int(np.argmax(temporal_iou_ap([top], gt_windows)[0]))
    return float(temporal_iou([top], [gt_windows[best]])[0, 0])


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC/ActivityNet interpolated AP: area under the monotone precision envelope."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision(
    pred_windows: Sequence[Sequence[float]],
    gt_windows: Sequence[Sequence[float]],
    thresholds: Sequence[float] = MAP_THRESHOLDS,
) -> np.ndarray:
    """AP of one query at each tIoU threshold, ``(len(thresholds),)`` fractions.

    ``pred_windows``: ``[[s, e, score], ...]`` (only the first :data:`MAX_PRED_WINDOWS` are used);
    ``gt_windows``: ``[[s, e], ...]``.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    preds = list(pred_windows)[:MAX_PRED_WINDOWS]
    n_gt = len(gt_windows)
    ap = np.zeros(len(thresholds))
    if not preds or n_gt == 0:
        return ap
    scores = np.asarray([w[2] for w in preds], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")  # Python's list.sort(key=-score) is stable too
    windows = np.asarray([[preds[i][0], preds[i][1]] for i in order], dtype=np.float64)
    ious = temporal_iou_ap(windows, gt_windows)  # (N, M)
    locked = np.zeros((len(thresholds), n_gt), dtype=bool)
    tp = np.zeros((len(thresholds), len(windows)))
    fp = np.zeros_like(tp)
    for i in range(len(windows)):
        tried = np.argsort(ious[i])[::-1]  # the official tie order (NaN first)
        for t, thr in enumerate(thresholds):
            tp[t, i] = 0.0
            for j in tried:
                if ious[i, j] < thr:  # False for NaN: a NaN tIoU matches, as officially
                    break
                if locked[t, j]:
                    continue
                locked[t, j] = True
                tp[t, i] = 1.0
                break
            fp[t, i] = 1.0 - tp[t, i]
    tp_c = np.cumsum(tp, axis=1)
    fp_c = np.cumsum(fp, axis=1)
    recall = tp_c / n_gt
    precision = tp_c / (tp_c + fp_c)
    for t in range(len(thresholds)):
        ap[t] = _interpolated_ap(precision[t], recall[t])
    return ap


def score_query(pred_windows: Sequence[Sequence[float]], gt_windows: Sequence[Sequence[float]]) -> dict:
    """All per-query numbers: ``iou`` (top-1 tIoU), ``top1`` window or None, ``ap`` (10 thresholds)."""
    return {
        "iou": top1_iou(pred_windows, gt_windows),
        "top1": top1_window(pred_windows),
        "ap": average_precision(pred_windows, gt_windows).tolist(),
    }


def summarize_exact(per_query: Sequence[dict]) -> dict[str, float]:
    """Headline numbers in percent, unrounded, from :func:`score_query` results.

    Keys: ``R1@0.3``, ``R1@0.5``, ``R1@0.7``, ``mIoU``, ``mAP`` (mean over thresholds of the mean over queries),
    ``mAP@0.5``, ``mAP@0.75``.
    """
    if not per_query:
        raise ValueError("no queries to summarise")
    ious = np.asarray([q["iou"] for q in per_query], dtype=np.float64)
    aps = np.asarray([q["ap"] for q in per_query], dtype=np.float64).mean(axis=0)
    out = {f"R1@{t}": 100.0 * float(np.mean(ious >= t)) for t in R1_THRESHOLDS}
    out["mIoU"] = 100.0 * float(ious.mean())
    out["mAP"] = 100.0 * float(np.mean(aps))
    out["mAP@0.5"] = 100.0 * float(aps[0])
    out["mAP@0.75"] = 100.0 * float(aps[5])
    return out


def summarize(per_query: Sequence[dict]) -> dict[str, float]:
    """:func:`summarize_exact` rounded to 2 decimals (the official ``float(f"{100 * x:.2f}")``)."""
    return {k: round(v, 2) for k, v in summarize_exact(per_query).items()}


def _unsorted(windows: Sequence[Sequence[float]]) -> bool:
    scores = [w[2] for w in windows]
    return any(a < b for a, b in zip(scores, scores[1:], strict=False))


def _score_item(item: tuple[list, list]) -> dict:
    return score_query(item[0], item[1])


def evaluate_tsg(benchmark: str, gt_path, pred_path, workers: int | None = None) -> dict:
    """Score a TSG prediction JSONL against ``charades`` / ``anet`` / ``qvhighlights`` GT; returns the report.

    Report keys: ``benchmark``, ``protocol``, ``quirks``, ``gt``, ``pred``, ``R1@0.3``, ``R1@0.5``,
    ``R1@0.7``, ``mIoU``, ``mAP``, ``mAP@0.5``, ``mAP@0.75`` (percent, 2 decimals), ``exact`` (the same,
    unrounded), ``n_queries``, ``missing``, ``empty_predictions``, ``unsorted_predictions``, ``warnings``,
    ``per_query``. A prediction
    for a qid that is not in the GT raises :class:`InputError`; a GT query without prediction is a miss.
    """
    queries = _load_gt(benchmark, gt_path)
    preds = load_tsg_predictions(pred_path)
    known = {q.qid for q in queries}
    unknown = sorted(set(preds) - known)
    if unknown:
        raise InputError(f"{pred_path}: prediction for unknown qid {unknown[0]} (not in {gt_path})")
    results = parallel_map(_score_item, [(preds.get(q.qid, []), q.windows) for q in queries], workers)
    missing = [q.qid for q in queries if q.qid not in preds]
    empty = [q.qid for q in queries if q.qid in preds and not preds[q.qid]]
    unsorted = [q.qid for q in queries if _unsorted(preds.get(q.qid, []))]
    warnings = _warnings(len(queries), missing, empty, unsorted)
    per_query = [_query_row(q, r, preds) for q, r in zip(queries, results, strict=True)]
    exact = summarize_exact(results)
    return {
        "benchmark": benchmark,
        "protocol": PROTOCOL,
        "quirks": list(QUIRKS),
        "gt": str(gt_path),
        "pred": str(pred_path),
        **{k: round(v, 2) for k, v in exact.items()},
        "exact": exact,
        "n_queries": len(queries),
        "missing": len(missing),
        "empty_predictions": len(empty),
        "unsorted_predictions": len(unsorted),
        "warnings": warnings,
        "per_query": per_query,
    }


def _load_gt(benchmark: str, gt_path) -> list[TSGQuery]:
    """Load the ``benchmark`` GT queries, refusing an unknown benchmark, no queries or a query without window."""
    if benchmark not in TSG_LOADERS:
        raise InputError(f"unknown TSG benchmark {benchmark!r} (one of {', '.join(TSG_LOADERS)})")
    queries = TSG_LOADERS[benchmark](gt_path)
    if not queries:
        raise InputError(f"{gt_path}: no queries")
    no_gt = [q.qid for q in queries if not q.windows]
    if no_gt:
        raise InputError(
            f"{gt_path}: {len(no_gt)} queries have no GT windows (e.g. qid {no_gt[0]}); cannot score"
        )
    return queries


def _warnings(n_queries: int, missing: list[int], empty: list[int], unsorted: list[int]) -> list[str]:
    """The report's warnings about missing, empty and unsorted predictions."""
    warnings = []
    if missing:
        warnings.append(
            f"{len(missing)} of {n_queries} queries have no prediction (scored as misses; the official "
            f"script refuses such a submission), e.g. qid {missing[0]}"
        )
    if empty:
        warnings.append(
            f"{len(empty)} predictions have no window (scored as misses; the official script crashes), "
            f"e.g. qid {empty[0]}"
        )
    if unsorted:
        warnings.append(
            f"{len(unsorted)} predictions list their windows not by descending score; as officially, top-1 is "
            f"the first window, not the highest-scoring one (e.g. qid {unsorted[0]})"
        )
    return warnings


def _query_row(q: TSGQuery, r: dict, preds: dict[int, list[list[float]]]) -> dict:
    """One ``per_query`` row of the report: query ``q`` scored as ``r``."""
    return {
        "qid": q.qid,
        "vid": q.vid,
        "query": q.query,
        "gt": q.windows,
        "top1": r["top1"],
        "iou": round(100.0 * r["iou"], 4),
        "AP": round(100.0 * float(np.mean(r["ap"])), 4),
        "missing": q.qid not in preds,
    }
