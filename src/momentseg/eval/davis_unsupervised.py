"""Ref-DAVIS17, ReferFormer convention: the davis2017 *unsupervised* evaluation, per annotator, averaged.

ReferFormer (``wjn922/ReferFormer``: ``inference_davis.py``, ``scripts/dist_test_davis.sh``, ``eval_davis.py``)
writes one indexed PNG per frame and annotator, ``OUTPUT_DIR/valid/anno_<a>/<seq>/<frame:05d>.png`` (value
k = the k-th referred object of that annotator's expressions, 0 = background), and scores each ``anno_<a>``
folder separately with ``davis2017.evaluation.DAVISEvaluation(task="unsupervised", gt_set="val")``; the
paper's number is the mean of the four annotators. This module reproduces that evaluation
(``davisvideochallenge/davis2017-evaluation``: ``davis2017/davis.py``, ``results.py``, ``evaluation.py``):

* **Sequences**: the lines of ``DAVIS_ROOT/ImageSets/2017/val.txt``.
* **GT**: ``DAVIS_ROOT/Annotations_unsupervised/480p/<seq>/*.png`` (sorted names; the frame ids are the
  names without ``.png``), palette / grayscale label maps. Pixels equal to 255 are *void*: they are set to
  background and excluded from J and F of every pair (``db_eval_iou`` / ``f_measure`` with ``void_pixels``).
  The objects are ``1 .. max label of the first frame`` (ids above that which appear later are ignored, as
  in the reference; this is reported as a warning).
* **Predictions**: ``PRED_ROOT/anno_<a>/<seq>/<frame id>.png`` for every GT frame, label maps; proposals are
  ``1 .. max label over the sequence``, at most 20 (the reference aborts above that).
* **All frames** are scored (only the semi-supervised task drops the first and last frame).
* **Matching**: J and F per frame for every (proposal, GT object) pair; cost matrix
  ``(mean_t J + mean_t F) / 2`` with proposals as rows (zero-padded to the number of objects when fewer),
  ``scipy.optimize.linear_sum_assignment`` on its negation; each object keeps its matched proposal's
  per-frame J and F (an unmatched object gets an all-empty proposal).
* **Statistics**: :func:`~momentseg.eval.metrics.db_statistics` per object (mean, recall, decay); per
  annotator J-Mean / F-Mean (and recall / decay) are means over all objects of all sequences,
  J&F = (J-Mean + F-Mean) / 2; the headline is the mean over the annotators.

Deviations from the reference, all reported: a missing prediction PNG (or sequence folder) is scored as an
empty frame and counted (the reference aborts); per-object rows are labelled by the GT object id (the
reference labels them ``<seq>_<i>`` by the matched proposals' order). JPEGImages are not read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from momentseg.errors import InputError
from momentseg.eval.metrics import db_statistics, f_measure, j_measure, recall_decay
from momentseg.eval.parallel import parallel_map
from momentseg.io.masks import read_png_labels

PROTOCOL = "referformer-unsupervised (per annotator anno_0..anno_3, averaged)"
N_ANNOTATORS = 4
MAX_PROPOSALS = 20
VOID_LABEL = 255
GT_DIR = Path("Annotations_unsupervised") / "480p"
SEQ_LIST = Path("ImageSets") / "2017" / "val.txt"
_STAT_KEYS = ("J", "F", "J_recall", "J_decay", "F_recall", "F_decay")


def _png_frames(folder: Path) -> list[str]:
    """Frame ids (file names without ``.png``) of the PNGs in ``folder``, sorted (the reference's glob)."""
    return sorted(p.name[:-4] for p in folder.glob("*.png") if not p.name.startswith("."))


@dataclass
class _Task:
    """One (annotator, sequence) to score: plain picklable data."""

    annotator: str
    seq: str
    frames: list[str]
    gt_dir: str
    pred_dir: str


def _read_gt(gt_dir: Path, frames: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """GT label maps ``(T, H, W)`` (void set to 0) and the void mask ``(T, H, W)`` bool."""
    first = read_png_labels(gt_dir / f"{frames[0]}.png")
    labels = np.zeros((len(frames), *first.shape), dtype=np.int32)
    labels[0] = first
    for t, frame in enumerate(frames[1:], start=1):
        labels[t] = read_png_labels(gt_dir / f"{frame}.png", first.shape)
    void = labels == VOID_LABEL
    labels[void] = 0
    return labels, void


def match_proposals(
    gt: np.ndarray, proposals: np.ndarray, void: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, list[int | None]]:
    """davis2017 unsupervised matching of proposals to GT objects.

    ``gt``: ``(N, T, H, W)`` bool, one layer per GT object; ``proposals``: ``(P, T, H, W)`` bool (``P`` may
    be 0); ``void``: ``(T, H, W)`` bool pixels excluded from both J and F, or ``None``. Returns the per-frame
    J and F of each GT object's matched proposal, both ``(N, T)`` in GT object order, and the matched
    proposal index (0-based) per object, ``None`` when it was matched to zero padding.
    """
    n, t = gt.shape[:2]
    p = proposals.shape[0]
    if p < n:  # the reference pads the proposals with empty masks up to the number of objects
        pad = np.zeros((n - p, *proposals.shape[1:]), dtype=bool)
        proposals = np.concatenate([proposals.astype(bool), pad], axis=0)
    keep = None if void is None or not void.any() else ~void
    j = np.zeros((proposals.shape[0], n, t))
    f = np.zeros((proposals.shape[0], n, t))
    for ii in range(n):
        g = gt[ii] if keep is None else gt[ii] & keep
        for jj in range(proposals.shape[0]):
            s = proposals[jj] if keep is None else proposals[jj] & keep
            j[jj, ii] = j_measure(g, s)
            f[jj, ii] = f_measure(g, s)
    score = (j.mean(axis=2) + f.mean(axis=2)) / 2
    rows, cols = linear_sum_assignment(-score)
    matched: list[int | None] = [None] * n
    j_out = np.zeros((n, t))
    f_out = np.zeros((n, t))
    for r, c in zip(rows, cols, strict=True):
        matched[c] = int(r) if r < p else None
        j_out[c] = j[r, c]
        f_out[c] = f[r, c]
    return j_out, f_out, matched


def _score(task: _Task) -> dict[str, Any]:
    """Score one (annotator, sequence): per-object statistics (fractions) and the missing-frame count."""
    gt_dir, pred_dir = Path(task.gt_dir), Path(task.pred_dir)
    labels, void = _read_gt(gt_dir, task.frames)
    hw = labels.shape[1:]
    n_obj = int(labels[0].max())
    ignored = sorted(int(v) for v in np.unique(labels) if v > n_obj)
    gt = labels[None] == np.arange(1, n_obj + 1)[:, None, None, None]
    pred = np.zeros_like(labels)
    missing = 0
    worst: tuple[int, Path | None] = (0, None)
    for t, frame in enumerate(task.frames):
        path = pred_dir / f"{frame}.png"
        if not path.is_file():
            missing += 1
            continue
        pred[t] = read_png_labels(path, hw)
        top = int(pred[t].max())
        if top > worst[0]:
            worst = (top, path)
    if worst[0] > MAX_PROPOSALS:
        raise InputError(
            f"{worst[1]} has object id {worst[0]}: the unsupervised protocol allows at most {MAX_PROPOSALS} "
            f"proposals (write indexed PNGs, 0 background and k for object k, not 0/255 masks)"
        )
    proposals = pred[None] == np.arange(1, worst[0] + 1)[:, None, None, None]
    j, f, matched = match_proposals(gt, proposals, void)
    objects = []
    for k in range(n_obj):
        objects.append(
            {
                "object": k + 1,
                "proposal": None if matched[k] is None else matched[k] + 1,
                "J": db_statistics(j[k])["mean"],
                "F": db_statistics(f[k])["mean"],
                **recall_decay(j[k], f[k]),
            }
        )
    return {
        "annotator": task.annotator,
        "seq": task.seq,
        "n_frames": len(task.frames),
        "n_proposals": worst[0],
        "missing_frames": missing,
        "ignored_gt_ids": ignored,
        "objects": objects,
    }


def _load_sequences(root: Path) -> list[tuple[str, list[str]]]:
    """``(sequence, GT frame ids)`` for every sequence of ``ImageSets/2017/val.txt``."""
    if not root.is_dir():
        raise InputError(f"DAVIS root {root} does not exist")
    seq_file = root / SEQ_LIST
    if not seq_file.is_file():
        hint = (
            f" (found {root / 'DAVIS' / SEQ_LIST}: pass {root / 'DAVIS'})"
            if (root / "DAVIS" / SEQ_LIST).is_file()
            else ""
        )
        raise InputError(
            f"{seq_file} not found: --data must be a DAVIS root with ImageSets/2017/val.txt{hint}"
        )
    try:
        names = [line.strip() for line in seq_file.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {seq_file}: {exc}") from None
    names = [n for n in names if n]
    if not names:
        raise InputError(f"{seq_file} lists no sequences")
    if len(set(names)) != len(names):
        raise InputError(f"{seq_file} lists a sequence twice")
    gt_root = root / GT_DIR
    if not gt_root.is_dir():
        raise InputError(
            f"{gt_root} not found: the unsupervised task needs the Annotations_unsupervised masks"
        )
    out = []
    for seq in names:
        frames = _png_frames(gt_root / seq)
        if not frames:
            raise InputError(f"no GT PNGs in {gt_root / seq} (sequence {seq!r} of {seq_file})")
        out.append((seq, frames))
    return out


def _annotator_dirs(pred_root: Path, n_annotators: int) -> list[tuple[str, Path]]:
    if not pred_root.is_dir():
        raise InputError(f"prediction folder {pred_root} does not exist")
    dirs = []
    for a in range(n_annotators):
        name = f"anno_{a}"
        d = pred_root / name
        if not d.is_dir():
            hint = (
                f" (ReferFormer writes OUTPUT_DIR/valid/anno_k: pass {pred_root / 'valid'})"
                if (pred_root / "valid" / name).is_dir()
                else ""
            )
            raise InputError(
                f"annotator folder {d} not found: --pred must hold anno_0..anno_{n_annotators - 1}/<seq>/"
                f"<frame>.png{hint}"
            )
        dirs.append((name, d))
    return dirs


def _summary(objects: list[dict]) -> dict[str, Any]:
    """Mean over objects of each statistic (fractions) and J&F."""
    out = {k: float(np.mean([o[k] for o in objects])) for k in _STAT_KEYS}
    out["J&F"] = (out["J"] + out["F"]) / 2
    return out


def _pct(block: dict, digits: int) -> dict:
    return {k: (round(100.0 * v, digits) if k in (*_STAT_KEYS, "J&F") else v) for k, v in block.items()}


def _tasks(
    root: Path, sequences: list[tuple[str, list[str]]], annotators: list[tuple[str, Path]], warnings: list[str]
) -> list[_Task]:
    """One scoring task per annotator and sequence; warns (into ``warnings``) about non-val folders."""
    known = {seq for seq, _ in sequences}
    tasks = []
    for name, d in annotators:
        extra = sorted(p.name for p in d.iterdir() if p.is_dir() and p.name not in known)
        if extra:
            warnings.append(
                f"{d}: {len(extra)} folders are not val sequences and are ignored, e.g. {extra[0]}"
            )
        for seq, frames in sequences:
            tasks.append(_Task(name, seq, frames, str(root / GT_DIR / seq), str(d / seq)))
    return tasks


def _annotator_blocks(root: Path, annotators: list[tuple[str, Path]], rows: list[dict]) -> dict[str, dict]:
    """Per annotator: the summary over all its objects plus their number ``n``."""
    blocks: dict[str, dict] = {}
    for name, _ in annotators:
        objects = [o for r in rows if r["annotator"] == name for o in r["objects"]]
        if not objects:
            raise InputError(f"{root / GT_DIR}: no GT objects in the first frames of the val sequences")
        blocks[name] = {**_summary(objects), "n": len(objects)}
    return blocks


def _add_row_warnings(warnings: list[str], rows: list[dict], n_sequences: int) -> int:
    """Add the missing-PNG and GT warnings of the scored ``rows`` to ``warnings``; returns the missing frames."""
    n_missing = sum(r["missing_frames"] for r in rows)
    if n_missing:
        first = next(r for r in rows if r["missing_frames"])
        warnings.insert(
            0,
            f"{n_missing} prediction PNGs are missing (scored as empty frames), e.g. "
            f"{first['annotator']}/{first['seq']} ({first['missing_frames']} of {first['n_frames']})",
        )
    first_rows = rows[:n_sequences]  # GT facts are the same for every annotator
    for r in first_rows:
        if not r["objects"]:
            warnings.append(f"sequence {r['seq']}: no objects in its first GT frame, it contributes none")
        if r["ignored_gt_ids"]:
            warnings.append(
                f"sequence {r['seq']}: GT ids {r['ignored_gt_ids']} exceed the first frame's objects and are "
                f"ignored (davis2017-evaluation counts objects from the first frame)"
            )
    return n_missing


def _sequence_row(r: dict) -> dict:
    """One ``per_sequence`` row of the report (per-object numbers ×100, 4 decimals)."""
    row = {k: r[k] for k in ("annotator", "seq", "n_frames", "n_proposals", "missing_frames")}
    if r["objects"]:
        row.update(_pct(_summary(r["objects"]), 4))
    row["objects"] = [_pct(o, 4) for o in r["objects"]]
    return row


def evaluate_referformer_davis(
    davis_root: str | os.PathLike,
    pred_root: str | os.PathLike,
    workers: int | None = None,
    n_annotators: int = N_ANNOTATORS,
) -> dict[str, Any]:
    """Score ReferFormer-layout predictions ``pred_root/anno_<a>/<seq>/<frame>.png`` against DAVIS 2017 val.

    ``n_annotators`` folders ``anno_0 ..`` are required (4 in the protocol). Returns the report dict:
    ``benchmark``, ``protocol``, ``data``, ``pred``, headline ``J&F``, ``J``, ``F`` and recall / decay
    (percent, 2 decimals, mean over annotators), ``annotators`` (``anno_<a>`` → the same numbers plus
    ``n`` objects), ``n_sequences``, ``n_objects`` (per annotator), ``missing_frames``, ``warnings`` and
    ``per_sequence`` rows (per annotator and sequence, per-object numbers ×100 with 4 decimals).
    """
    if n_annotators < 1:
        raise ValueError("n_annotators must be >= 1")
    root, pred_root = Path(davis_root), Path(pred_root)
    sequences = _load_sequences(root)
    annotators = _annotator_dirs(pred_root, n_annotators)
    warnings: list[str] = []
    tasks = _tasks(root, sequences, annotators, warnings)
    rows = parallel_map(_score, tasks, workers)
    blocks = _annotator_blocks(root, annotators, rows)
    head = {k: float(np.mean([b[k] for b in blocks.values()])) for k in ("J&F", *_STAT_KEYS)}
    n_missing = _add_row_warnings(warnings, rows, len(sequences))
    per_sequence = [_sequence_row(r) for r in rows]
    return {
        "benchmark": "refdavis",
        "protocol": PROTOCOL.replace("anno_3", f"anno_{n_annotators - 1}"),
        "data": str(root),
        "pred": str(pred_root),
        **_pct({k: head[k] for k in ("J&F", *_STAT_KEYS)}, 2),
        "annotators": {name: _pct(b, 2) for name, b in blocks.items()},
        "n_sequences": len(sequences),
        "n_objects": blocks[annotators[0][0]]["n"],
        "missing_frames": n_missing,
        "warnings": warnings,
        "per_sequence": per_sequence,
    }
