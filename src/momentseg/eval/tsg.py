"""Temporal sentence grounding metrics: tIoU, R1@θ, mIoU and mAP@[0.5:0.05:0.95].

Conventions (Moment-DETR ``standalone_eval`` / ActivityNet ``compute_average_precision_detection``):

* tIoU of ``[s1, e1]`` and ``[s2, e2]`` = ``max(0, min(e1, e2) − max(s1, s2)) / (max(e1, e2) − min(s1, s2))``,
  0 when the union is 0. (Equal to the true IoU whenever the windows overlap.)
* Top-1 prediction = the highest-scoring window (the first one on ties). With several GT windows the best
  matching GT (highest tIoU with the top-1 window) counts.
* R1@θ = percentage of queries whose top-1 tIoU ≥ θ; mIoU = mean top-1 tIoU × 100.
* mAP: per query, at most :data:`MAX_PRED_WINDOWS` predicted windows (the first ten as given), sorted by
  score (stable), greedily matched to unmatched GT windows at each tIoU threshold, AP = area under the
  interpolated precision–recall curve; mean over queries, then over thresholds.
* A query without predictions counts as a miss (tIoU 0, AP 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

R1_THRESHOLDS = (0.3, 0.5, 0.7)
MAP_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
MAX_PRED_WINDOWS = 10


def temporal_iou(pred: np.ndarray | Sequence, gt: np.ndarray | Sequence) -> np.ndarray:
    """tIoU matrix ``(N, M)`` between ``N`` predicted and ``M`` GT windows ``[start, end]`` (seconds)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(
        np.minimum(p[:, None, 1], g[None, :, 1]) - np.maximum(p[:, None, 0], g[None, :, 0]), 0, None
    )
    union = np.maximum(p[:, None, 1], g[None, :, 1]) - np.minimum(p[:, None, 0], g[None, :, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def top1_window(pred_windows: Sequence[Sequence[float]]) -> list[float] | None:
    """The highest-scoring ``[s, e]`` of ``[[s, e, score], ...]`` (first on ties); ``None`` if there is none."""
    if len(pred_windows) == 0:
        return None
    scores = np.asarray([w[2] for w in pred_windows], dtype=np.float64)
    best = int(np.argmax(scores))
    return [float(pred_windows[best][0]), float(pred_windows[best][1])]


def top1_iou(pred_windows: Sequence[Sequence[float]], gt_windows: Sequence[Sequence[float]]) -> float:
    """tIoU of the top-1 predicted window with its best-matching GT window (0 without predictions)."""
    top = top1_window(pred_windows)
    if top is None or len(gt_windows) == 0:
        return 0.0
    return float(temporal_iou([top], gt_windows).max())


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
    order = np.argsort(-scores, kind="stable")
    windows = np.asarray([[preds[i][0], preds[i][1]] for i in order], dtype=np.float64)
    ious = temporal_iou(windows, gt_windows)  # (N, M)
    tp = np.zeros((len(thresholds), len(windows)))
    fp = np.zeros_like(tp)
    for t, thr in enumerate(thresholds):
        locked = np.zeros(n_gt, dtype=bool)
        for i in range(len(windows)):
            matched = False
            for j in np.argsort(-ious[i], kind="stable"):
                if ious[i, j] < thr:
                    break
                if locked[j]:
                    continue
                locked[j] = True
                matched = True
                break
            tp[t, i] = matched
            fp[t, i] = not matched
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


def summarize(per_query: Sequence[dict]) -> dict[str, float]:
    """Headline numbers in percent (2 decimals) from :func:`score_query` results.

    Keys: ``R1@0.3``, ``R1@0.5``, ``R1@0.7``, ``mIoU``, ``mAP`` (mean over thresholds of the mean over queries),
    ``mAP@0.5``, ``mAP@0.75``.
    """
    if not per_query:
        raise ValueError("no queries to summarise")
    ious = np.asarray([q["iou"] for q in per_query], dtype=np.float64)
    aps = np.asarray([q["ap"] for q in per_query], dtype=np.float64).mean(axis=0)
    out = {f"R1@{t}": round(100.0 * float(np.mean(ious >= t)), 2) for t in R1_THRESHOLDS}
    out["mIoU"] = round(100.0 * float(ious.mean()), 2)
    out["mAP"] = round(100.0 * float(aps.mean()), 2)
    out["mAP@0.5"] = round(100.0 * float(aps[0]), 2)
    out["mAP@0.75"] = round(100.0 * float(aps[5]), 2)
    return out


def _score_item(item: tuple[list, list]) -> dict:
    return score_query(item[0], item[1])


def evaluate_tsg(benchmark: str, gt_path, pred_path, workers: int | None = None) -> dict:
    """Score a TSG prediction JSONL against ``charades`` / ``anet`` / ``qvhighlights`` GT; returns the report.

    Report keys: ``benchmark``, ``gt``, ``pred``, ``R1@0.3``, ``R1@0.5``, ``R1@0.7``, ``mIoU``, ``mAP``,
    ``mAP@0.5``, ``mAP@0.75`` (percent), ``n_queries``, ``missing``, ``warnings``, ``per_query``. A prediction
    for a qid that is not in the GT raises :class:`InputError`; a GT query without prediction is a miss.
    """
    from momentseg.data.formats import TSG_LOADERS, load_tsg_predictions
    from momentseg.errors import InputError
    from momentseg.eval.parallel import parallel_map

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
    preds = load_tsg_predictions(pred_path)
    known = {q.qid for q in queries}
    unknown = sorted(set(preds) - known)
    if unknown:
        raise InputError(f"{pred_path}: prediction for unknown qid {unknown[0]} (not in {gt_path})")
    results = parallel_map(_score_item, [(preds.get(q.qid, []), q.windows) for q in queries], workers)
    missing = [q.qid for q in queries if q.qid not in preds]
    warnings = []
    if missing:
        warnings.append(
            f"{len(missing)} of {len(queries)} queries have no prediction (scored as misses), "
            f"e.g. qid {missing[0]}"
        )
    per_query = []
    for q, r in zip(queries, results, strict=True):
        per_query.append(
            {
                "qid": q.qid,
                "vid": q.vid,
                "query": q.query,
                "gt": q.windows,
                "top1": r["top1"],
                "iou": round(100.0 * r["iou"], 4),
                "AP": round(100.0 * float(np.mean(r["ap"])), 4),
                "missing": q.qid not in preds,
            }
        )
    return {
        "benchmark": benchmark,
        "gt": str(gt_path),
        "pred": str(pred_path),
        **summarize(results),
        "n_queries": len(queries),
        "missing": len(missing),
        "warnings": warnings,
        "per_query": per_query,
    }
