"""RefVOS benchmark protocols (MeViS, ReVOS, Ref-DAVIS17, Ref-YouTube-VOS, Ref-SAV) and CodaLab submissions.

Every benchmark scores each (video, expression) over **all** frames of the video listed in the meta file:
GT = union of the expression's ``anno_id`` masks per frame (empty where absent), J and F per frame
(:mod:`momentseg.eval.metrics`), averaged over frames, then over expressions; J&F = (J + F) / 2; reported
in percent with 2 decimals. Per benchmark:

* ``mevis`` — J, F (``MeViS/tools/eval_mevis.py``).
* ``revos`` — J, F, A, R (``VISA tools/eval_revos.py``): per-expression values in percent rounded to 2
  decimals, means over the ``referring`` (type_id 0) and ``reasoning`` (type_id 1) subsets; expressions with
  type_id 2 are scored and listed but not aggregated; the overall number is the mean of the subset means.
* ``refsav`` — J, F, A (``Sa2VA tools/eval/eval_ref_sav.py``); with type_ids, ``long`` (0) and ``short`` (1)
  subsets and overall = mean of the subset means (per-expression rounding as ReVOS); without, a plain mean.
* ``refdavis`` — by default the Sa2VA/VISA per-expression ``mask_dict`` protocol (``protocol`` field of the
  report); ``protocol="referformer"`` runs the ReferFormer per-annotator davis2017 unsupervised protocol
  instead (:mod:`momentseg.eval.davis_unsupervised`: DAVIS root + ``anno_0..anno_3`` PNG folders).
* ``refytvos`` — scored like MeViS when the split has a ``mask_dict.json``; the official ``valid`` split has
  no GT and is scored only by the CodaLab server (:func:`write_submission_zip`).

A missing prediction (no masks for an expression) counts as empty masks; a missing PNG of one frame as an
empty frame. Both are counted in the report (``missing``, ``missing_frames``) and listed in ``warnings``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from momentseg.data.formats import (
    MaskPredictions,
    RefVOSSplit,
    foreground_area,
    gt_from_rles,
    load_predicted_masks,
    load_refvos_split,
    open_mask_predictions,
)
from momentseg.errors import InputError
from momentseg.eval.metrics import db_statistics, f_measure, j_measure, pixel_accuracy, robustness
from momentseg.eval.parallel import parallel_map
from momentseg.io.atomic import atomic_path
from momentseg.io.masks import png_mask_bytes, read_png_mask

PROTOCOLS = {
    "mevis": "mevis: per expression over all frames, GT = union of anno_ids, mean over expressions",
    "revos": "revos: per expression over all frames (J, F, A, R), overall = mean of referring and reasoning means",
    "refdavis": "sa2va-per-expression: Sa2VA/VISA mask_dict protocol, per expression over all frames "
    "(not the ReferFormer per-annotator davis2017 protocol)",
    "refytvos": "mevis-style: per expression over all frames, GT = union of anno_ids, mean over expressions",
    "refsav": "refsav: per expression over all frames (J, F, A), overall = mean of long and short means",
}
REFDAVIS_PROTOCOLS = ("sa2va", "referformer")
SUBSETS = {"revos": {0: "referring", 1: "reasoning"}, "refsav": {0: "long", 1: "short"}}
SUBMISSION_PREFIX = {"mevis": "", "refytvos": "Annotations/"}


@dataclass
class _Task:
    """Everything one worker needs to score one expression (plain, picklable data)."""

    vid: str
    exp_id: str
    frames: list[str]
    hw: tuple[int, int]
    gt: list[list]
    pred: tuple[str, Any]
    foreground: list | None
    want_a: bool
    gt_where: str
    pred_where: str


def _score(task: _Task) -> dict[str, Any]:
    gt = gt_from_rles(task.gt, len(task.frames), task.hw, task.gt_where)
    pred = load_predicted_masks(task.pred, task.frames, task.hw, task.pred_where)
    j = np.asarray(j_measure(gt, pred), dtype=np.float64).reshape(-1)
    f = np.asarray(f_measure(gt, pred), dtype=np.float64).reshape(-1)
    js, fs = db_statistics(j), db_statistics(f)
    out: dict[str, Any] = {
        "J": js["mean"],
        "F": fs["mean"],
        "J_recall": js["recall"],
        "J_decay": js["decay"],
        "F_recall": fs["recall"],
        "F_decay": fs["decay"],
    }
    if task.want_a:
        out["A"] = float(np.mean(pixel_accuracy(gt, pred)))
    if task.foreground is not None:
        area = foreground_area(task.foreground, task.hw, task.gt_where)
        out["R"] = float(np.mean(robustness(gt, pred, area)))
    return out


def _metric_keys(benchmark: str) -> tuple[str, ...]:
    return {"revos": ("J", "F", "A", "R"), "refsav": ("J", "F", "A")}.get(benchmark, ("J", "F"))


def _aggregate(benchmark: str, rows: list[dict], split: RefVOSSplit) -> tuple[dict, dict, list[str]]:
    """Headline numbers (percent, 2 decimals), per-subset blocks and warnings."""
    keys = _metric_keys(benchmark)
    warnings: list[str] = []
    subsets_def = SUBSETS.get(benchmark)
    typed = [r.get("type_id") is not None for r in rows]
    if benchmark == "revos" and not all(typed):
        raise InputError(
            f"{split.meta_path}: ReVOS expressions need a 'type_id' (0 referring, 1 reasoning, 2 ignored)"
        )
    if benchmark == "refsav" and any(typed) and not all(typed):
        raise InputError(f"{split.meta_path}: some Ref-SAV expressions have a 'type_id' and some do not")
    if subsets_def is None or not any(typed):
        # Plain mean over expressions of the unrounded fractions.
        head = {k: 100.0 * float(np.mean([r[k] for r in rows])) for k in keys}
        head["J&F"] = (head["J"] + head["F"]) / 2
        return {k: round(v, 2) for k, v in head.items()}, {}, warnings
    # Subset protocol (VISA / Sa2VA): per-expression percent rounded to 2 decimals, mean per subset.
    blocks: dict[str, dict] = {}
    for type_id, name in subsets_def.items():
        sub = [r for r in rows if r["type_id"] == type_id]
        if not sub:
            warnings.append(f"no {name} expressions (type_id {type_id}); overall uses the other subset only")
            continue
        block = {k: float(np.mean([round(100.0 * r[k], 2) for r in sub])) for k in keys}
        block["J&F"] = (block["J"] + block["F"]) / 2
        block["n"] = len(sub)
        blocks[name] = block
    if not blocks:
        raise InputError(f"{split.meta_path}: no expressions with type_id in {sorted(subsets_def)} to score")
    head = {k: float(np.mean([b[k] for b in blocks.values()])) for k in (*keys, "J&F")}
    rounded = {
        name: {k: (round(v, 2) if k != "n" else v) for k, v in b.items()} for name, b in blocks.items()
    }
    return {k: round(v, 2) for k, v in head.items()}, rounded, warnings


def _build_tasks(
    split: RefVOSSplit, preds: MaskPredictions, benchmark: str
) -> tuple[list[_Task], list[dict]]:
    tasks, rows = [], []
    want_r = benchmark == "revos"
    want_a = benchmark in ("revos", "refsav")
    for video, exp in split.expressions():
        gt = split.gt_rles(video.vid, exp.exp_id)
        hw = split.frame_size(video.vid)
        tasks.append(
            _Task(
                vid=video.vid,
                exp_id=exp.exp_id,
                frames=video.frames,
                hw=hw,
                gt=gt,
                pred=preds.task_source(video.vid, exp.exp_id),
                foreground=split.foreground_rles(video.vid) if want_r else None,
                want_a=want_a,
                gt_where=str(split.mask_dict_path),
                pred_where=str(preds.path),
            )
        )
        row: dict[str, Any] = {"vid": video.vid, "exp_id": exp.exp_id, "exp": exp.text}
        if exp.type_id is not None:
            row["type_id"] = exp.type_id
        row["n_frames"] = len(video.frames)
        row["missing"] = not preds.has(video.vid, exp.exp_id)
        row["missing_frames"] = preds.missing_frames(video.vid, exp.exp_id, video.frames)
        rows.append(row)
    return tasks, rows


def check_protocol(benchmark: str, protocol: str | None) -> str | None:
    """Validate a ``--protocol`` choice: only ``refdavis`` has one (``sa2va`` default, or ``referformer``)."""
    if protocol is None:
        return None
    if benchmark != "refdavis":
        raise InputError(f"--protocol is only for --benchmark refdavis, not {benchmark}")
    protocol = protocol.lower()
    if protocol not in REFDAVIS_PROTOCOLS:
        raise InputError(f"--protocol must be one of {', '.join(REFDAVIS_PROTOCOLS)}, got {protocol!r}")
    return protocol


def evaluate_refvos(
    benchmark: str,
    data: str | os.PathLike,
    pred: str | os.PathLike,
    workers: int | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """Score predictions ``pred`` (PNG folder or RLE JSON) on the split ``data``; returns the report dict.

    Report keys: ``benchmark``, ``protocol``, ``data``, ``pred``, the headline ``J``, ``F``, ``J&F`` (+ ``A``,
    ``R``) in percent, ``subsets`` (ReVOS / Ref-SAV), ``n_expressions``, ``missing``, ``missing_frames``,
    ``warnings`` and ``per_expression`` (fractions ×100, 4 decimals, with DAVIS recall / decay).
    ``protocol="referformer"`` (``refdavis`` only) instead takes a DAVIS root as ``data`` and
    ``anno_<a>/<seq>/<frame>.png`` folders as ``pred`` and returns
    :func:`~momentseg.eval.davis_unsupervised.evaluate_referformer_davis`'s report.
    """
    if check_protocol(benchmark, protocol) == "referformer":
        from momentseg.eval.davis_unsupervised import evaluate_referformer_davis

        return evaluate_referformer_davis(data, pred, workers)
    split = load_refvos_split(data, benchmark)
    if not split.has_gt:
        where = "CodaLab" if benchmark in SUBMISSION_PREFIX else "its evaluation server"
        raise InputError(
            f"{split.root} has no ground truth (no mask_dict.json): this split can only be scored on {where}; "
            f"build the upload with --submission-zip OUT.zip"
        )
    if benchmark == "revos" and split.foreground_path is None:
        raise InputError(f"{split.root}: ReVOS needs mask_dict_foreground.json for the R metric")
    preds = open_mask_predictions(pred)
    preds.check_known(split)
    tasks, rows = _build_tasks(split, preds, benchmark)
    if not tasks:
        raise InputError(f"{split.meta_path}: no expressions to score")
    scores = parallel_map(_score, tasks, workers)
    for row, s in zip(rows, scores, strict=True):
        row.update(s)
    head, subsets, warnings = _aggregate(benchmark, rows, split)
    n_missing = sum(r["missing"] for r in rows)
    n_missing_frames = sum(r["missing_frames"] for r in rows)
    if n_missing:
        first = next(r for r in rows if r["missing"])
        warnings.insert(
            0,
            f"{n_missing} of {len(rows)} expressions have no prediction (scored as empty masks), "
            f"e.g. {first['vid']}/{first['exp_id']}",
        )
    if n_missing_frames:
        warnings.insert(0, f"{n_missing_frames} frames have no PNG (scored as empty masks)")
    ignored = sum(1 for r in rows if benchmark in SUBSETS and r.get("type_id") not in (None, 0, 1))
    report: dict[str, Any] = {
        "benchmark": benchmark,
        "protocol": PROTOCOLS[benchmark],
        "data": str(split.meta_path),
        "pred": str(preds.path),
        **head,
    }
    if subsets:
        report["subsets"] = subsets
    report.update(
        {
            "n_expressions": len(rows),
            "ignored": ignored,
            "missing": n_missing,
            "missing_frames": n_missing_frames,
            "warnings": warnings,
            "per_expression": [_round_row(r) for r in rows],
        }
    )
    if not ignored:
        del report["ignored"]
    return report


def _round_row(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k in ("J", "F", "A", "R", "J_recall", "F_recall", "J_decay", "F_decay"):
            out[k] = round(100.0 * v, 4)
        else:
            out[k] = v
    if "J" in out:
        out["J&F"] = round((100.0 * row["J"] + 100.0 * row["F"]) / 2, 4)
    return out


# ---------------------------------------------------------------------------------------- CodaLab submission


def _submission_files(task: tuple[str, Any, list[str], tuple[int, int], str]) -> list[bytes | None]:
    """Validate one expression's masks; PNG input returns ``None`` per frame (copied as is), RLE the PNG bytes."""
    kind, ref, frames, hw, where = task
    if kind == "png":
        for frame in frames:
            read_png_mask(Path(ref) / f"{frame}.png", hw)
        return [None] * len(frames)
    masks = load_predicted_masks((kind, ref), frames, hw, where)
    return [png_mask_bytes(m) for m in masks]


def write_submission_zip(
    benchmark: str,
    data: str | os.PathLike,
    pred: str | os.PathLike,
    out_zip: str | os.PathLike,
    workers: int | None = None,
) -> dict[str, Any]:
    """Pack predictions as the CodaLab upload for ``mevis`` (``<vid>/<exp_id>/<frame>.png``) or ``refytvos``
    (``Annotations/<vid>/<exp_id>/<frame>.png``), after checking every expected PNG exists, is readable and
    has the frame size. The zip is written atomically. Returns ``{"zip", "n_expressions", "n_files"}``.
    """
    if benchmark not in SUBMISSION_PREFIX:
        raise InputError(f"--submission-zip is for mevis and refytvos, not {benchmark}")
    split = load_refvos_split(data, benchmark)
    preds = open_mask_predictions(pred)
    preds.check_known(split)
    missing: list[str] = []
    n_missing = 0
    tasks = []
    for video, exp in split.expressions():
        absent = (
            len(video.frames)
            if not preds.has(video.vid, exp.exp_id)
            else preds.missing_frames(video.vid, exp.exp_id, video.frames)
        )
        if absent:
            n_missing += absent
            missing.append(f"{video.vid}/{exp.exp_id}")
            continue
        kind, ref = preds.task_source(video.vid, exp.exp_id)
        tasks.append((kind, ref, video.frames, split.frame_size(video.vid), str(preds.path)))
    if missing:
        raise InputError(
            f"submission incomplete: {n_missing} frame masks missing in {len(missing)} expressions of {preds.path}, "
            f"e.g. {missing[0]}"
        )
    if not tasks:
        raise InputError(f"{split.meta_path}: no expressions")
    contents = parallel_map(_submission_files, tasks, workers)
    prefix = SUBMISSION_PREFIX[benchmark]
    n_files = 0
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for (video, exp), files in zip(split.expressions(), contents, strict=True):
            for frame, blob in zip(video.frames, files, strict=True):
                arcname = f"{prefix}{video.vid}/{exp.exp_id}/{frame}.png"
                if blob is None:
                    zf.write(preds.path / video.vid / exp.exp_id / f"{frame}.png", arcname)
                else:
                    zf.writestr(arcname, blob)
                n_files += 1
    return {"zip": str(out_zip), "n_expressions": len(tasks), "n_files": n_files}
