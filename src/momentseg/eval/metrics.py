"""Region similarity J, boundary F, DAVIS sequence statistics and the ReVOS A / R metrics.

These reproduce the DAVIS 2017 evaluation (``davis2017/metrics.py``: ``db_eval_iou``, ``db_eval_boundary``,
``f_measure``, ``_seg2bmap``; ``utils.db_statistics``), which MeViS, ReVOS, Sa2VA and VISA ship unchanged,
and the ReVOS ``get_r2vos_accuracy`` / ``get_r2vos_robustness``:

* J = |P ∩ G| / |P ∪ G| per frame, 1 when both masks are empty.
* F: 1-pixel boundary maps (:func:`seg2bmap`), boundary tolerance ``ceil(0.008 · ‖(H, W)‖₂)`` pixels
  (8 at 480×854), a boundary pixel of one map matches when it lies within the Euclidean disk
  ``x² + y² ≤ r²`` of a boundary pixel of the other (the reference dilates with ``skimage.morphology.disk``;
  we use the exact Euclidean distance transform, which gives the same set), precision is measured on the
  prediction, F = 2PR / (P + R). Empty cases: no predicted boundary and some GT boundary → P=1, R=0 (F=0);
  the reverse → P=0, R=1 (F=0); both empty → F=1.
* A = mean over frames of the fraction of pixels where prediction and GT agree.
* R = mean over frames of ``max(1 − |P \\ G| / (|foreground| + 1e-6), 0)`` where ``|foreground|`` is the
  summed area of all annotated objects of that frame (``mask_dict_foreground.json``).

J and F take bool-like arrays, ``(H, W)`` for one frame or ``(T, H, W)`` for a sequence; non-zero is
foreground (the reference also casts to bool, so 0/255 PNGs and summed multi-object masks work). Void
pixels are not used by any of the referring benchmarks and are not supported.

A and R come in two forms. :func:`r2vos_accuracy` / :func:`r2vos_robustness` are the official ones: VISA's
``get_r2vos_accuracy`` / ``get_r2vos_robustness`` work on the **raw uint8 values** — the predicted PNG's grey
values and the GT built as the uint8 *sum* of the objects' masks — so a 0/255 prediction never "agrees" with
a 0/1 GT pixel, and ``(1 − gt) · pred`` wraps modulo 256 (a false-positive pixel of a 0/255 PNG weighs 255,
a predicted pixel on two overlapping objects weighs 255·255 mod 256 = 1). Published ReVOS A / R numbers come
from this code. :func:`pixel_accuracy` / :func:`robustness` are the binarised forms (the evident intent),
reported next to the official ones as ``A_binary`` / ``R_binary``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import ndimage

BOUND_TH = 0.008


def _as_bool(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(bool)


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = _as_bool(gt), _as_bool(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"GT shape {gt.shape} and prediction shape {pred.shape} differ")
    if gt.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (T, H, W), got shape {gt.shape}")
    return gt, pred


def j_measure(gt: np.ndarray, pred: np.ndarray) -> float | np.ndarray:
    """Region similarity (Jaccard) per frame: a float for ``(H, W)``, a ``(T,)`` array for ``(T, H, W)``."""
    gt, pred = _check_pair(gt, pred)
    inter = np.sum(gt & pred, axis=(-2, -1)).astype(np.float64)
    union = np.sum(gt | pred, axis=(-2, -1)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        j = np.where(union == 0, 1.0, inter / np.maximum(union, 1.0))
    return float(j) if j.ndim == 0 else j


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """1-pixel boundary map of a ``(H, W)`` mask, offset half a pixel towards the origin (DAVIS ``_seg2bmap``).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour (outside the
    image counts as background); on the last row only the east neighbour is used, on the last column only
    the south neighbour, and the bottom-right pixel is never a boundary pixel.
    """
    seg = _as_bool(seg)
    if seg.ndim != 2:
        raise ValueError(f"seg2bmap expects a (H, W) mask, got shape {seg.shape}")
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def boundary_tolerance(hw: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Boundary tolerance in pixels: ``bound_th`` itself if ≥ 1, else ``ceil(bound_th · ‖(H, W)‖₂)``."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(hw[0], hw[1])))


def disk(radius: int) -> np.ndarray:
    """The ``(2r+1, 2r+1)`` bool Euclidean disk ``x² + y² ≤ r²`` (same as ``skimage.morphology.disk``)."""
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def _within(points: np.ndarray, targets: np.ndarray, radius: int) -> np.ndarray:
    """``points & dilate(targets, disk(radius))`` for bool maps of the same shape (both non-empty).

    Uses the exact Euclidean distance transform on the bounding box of both maps: a pixel is within the
    disk of some target pixel iff its squared distance to the nearest target pixel is ≤ radius².
    """
    both = points | targets
    rows = np.flatnonzero(both.any(axis=1))
    cols = np.flatnonzero(both.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    sub_t = targets[r0:r1, c0:c1]
    sub_p = points[r0:r1, c0:c1]
    # Nearest target pixel of every pixel; squared distance from the integer index difference (exact).
    idx = ndimage.distance_transform_edt(~sub_t, return_distances=False, return_indices=True)
    gy, gx = np.indices(sub_t.shape)
    d2 = (idx[0] - gy) ** 2 + (idx[1] - gx) ** 2
    out = np.zeros_like(points)
    out[r0:r1, c0:c1] = sub_p & (d2 <= radius * radius)
    return out


def f_measure_frame(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of one ``(H, W)`` frame (DAVIS ``f_measure(foreground_mask=pred, gt_mask=gt)``)."""
    gt, pred = _check_pair(gt, pred)
    if gt.ndim != 2:
        raise ValueError("f_measure_frame expects (H, W) masks")
    radius = boundary_tolerance(gt.shape, bound_th)
    fg_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    n_fg = int(fg_b.sum())
    n_gt = int(gt_b.sum())
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = float(_within(fg_b, gt_b, radius).sum()) / n_fg
        recall = float(_within(gt_b, fg_b, radius).sum()) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def f_measure(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float | np.ndarray:
    """Boundary F per frame: a float for ``(H, W)``, a ``(T,)`` array for ``(T, H, W)`` (``db_eval_boundary``)."""
    gt, pred = _check_pair(gt, pred)
    if gt.ndim == 2:
        return f_measure_frame(gt, pred, bound_th)
    return np.array(
        [f_measure_frame(g, p, bound_th) for g, p in zip(gt, pred, strict=True)], dtype=np.float64
    )


def pixel_accuracy(gt: np.ndarray, pred: np.ndarray) -> float | np.ndarray:
    """ReVOS A per frame: fraction of pixels where the (binarised) prediction equals the GT."""
    gt, pred = _check_pair(gt, pred)
    acc = np.mean(gt == pred, axis=(-2, -1))
    return float(acc) if np.ndim(acc) == 0 else acc


def robustness(gt: np.ndarray, pred: np.ndarray, foreground_area: float | np.ndarray) -> float | np.ndarray:
    """ReVOS R per frame: ``max(1 − |pred \\ gt| / (foreground_area + 1e-6), 0)``.

    ``foreground_area`` is the number of annotated foreground pixels of the frame (summed over all objects of
    the video, as ``mask_dict_foreground.json`` gives them): a scalar for ``(H, W)`` or ``(T,)``.
    """
    gt, pred = _check_pair(gt, pred)
    neg = np.sum(~gt & pred, axis=(-2, -1)).astype(np.float64)
    pos = np.asarray(foreground_area, dtype=np.float64)
    if pos.shape != neg.shape:
        raise ValueError(f"foreground_area shape {pos.shape} does not match {neg.shape} frames")
    r = np.maximum(1.0 - neg / (pos + 1e-6), 0.0)
    return float(r) if r.ndim == 0 else r


def r2vos_accuracy(gt_values: np.ndarray, pred_values: np.ndarray) -> float | np.ndarray:
    """Official ReVOS A per frame (VISA ``get_r2vos_accuracy``): fraction of pixels whose **raw** values are equal.

    ``gt_values``: the uint8 sum of the objects' 0/1 masks; ``pred_values``: the predicted grey values (0/255
    for usual PNGs, 0/1 for RLE). Values are compared as they are, without binarising.
    """
    gt, pred = np.asarray(gt_values), np.asarray(pred_values)
    if gt.shape != pred.shape:
        raise ValueError(f"GT shape {gt.shape} and prediction shape {pred.shape} differ")
    acc = np.mean(gt == pred, axis=(-2, -1))
    return float(acc) if np.ndim(acc) == 0 else acc


def r2vos_robustness(
    gt_values: np.ndarray, pred_values: np.ndarray, foreground_area: float | np.ndarray
) -> float | np.ndarray:
    """Official ReVOS R per frame (VISA ``get_r2vos_robustness``) on raw uint8 values.

    ``neg = Σ ((1 − gt) · pred)`` computed in uint8 arithmetic (both the subtraction and the product wrap
    modulo 256, then the sum is exact), ``R = max(1 − neg / (foreground_area + 1e-6), 0)``.
    """
    gt = np.asarray(gt_values).astype(np.uint8)
    pred = np.asarray(pred_values).astype(np.uint8)
    if gt.shape != pred.shape:
        raise ValueError(f"GT shape {gt.shape} and prediction shape {pred.shape} differ")
    complement = np.subtract(np.uint8(1), gt, dtype=np.uint8)  # 1 − gt mod 256
    weighted = np.multiply(complement, pred, dtype=np.uint8)  # mod 256
    neg = np.sum(weighted, axis=(-2, -1), dtype=np.uint64).astype(np.float64)
    pos = np.asarray(foreground_area, dtype=np.float64)
    if pos.shape != neg.shape:
        raise ValueError(f"foreground_area shape {pos.shape} does not match {neg.shape} frames")
    r = np.maximum(1.0 - neg / (pos + 1e-6), 0.0)
    return float(r) if r.ndim == 0 else r


def db_statistics(per_frame: np.ndarray) -> dict[str, float]:
    """DAVIS sequence statistics of a per-frame metric ``(T,)``: ``mean``, ``recall``, ``decay`` (fractions).

    mean = nanmean; recall = fraction of frames with value > 0.5 (NaN counts as not > 0.5); decay = mean of the
    first quarter − mean of the last quarter, with the quarter bounds
    ``round(linspace(1, T, 5) + 1e-10) − 1`` (inclusive ends). The reference casts these bounds to uint8,
    which wraps for sequences longer than 256 frames; here they are plain integers.
    """
    x = np.asarray(per_frame, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return {"mean": float("nan"), "recall": float("nan"), "decay": float("nan")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(x))
        recall = float(np.mean(x > 0.5))
        ids = (np.round(np.linspace(1, x.size, 5) + 1e-10) - 1).astype(np.int64)
        bins = [x[ids[i] : ids[i + 1] + 1] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return {"mean": mean, "recall": recall, "decay": decay}


def recall_decay(j: np.ndarray, f: np.ndarray) -> dict[str, float]:
    """``J_recall``, ``J_decay``, ``F_recall``, ``F_decay`` of per-frame J and F (:func:`db_statistics`)."""
    js, fs = db_statistics(j), db_statistics(f)
    return {"J_recall": js["recall"], "J_decay": js["decay"], "F_recall": fs["recall"], "F_decay": fs["decay"]}
