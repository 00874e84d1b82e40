"""RefVOS benchmark protocols (MeViS, ReVOS, Ref-DAVIS17, Ref-YouTube-VOS, Ref-SAV) and CodaLab submissions.

The default of every benchmark is its official script, bit for bit, quirks included; each report names it
(``protocol``) and lists its quirks (``quirks``). Every benchmark scores each (video, expression) over **all**
frames of the video listed in the meta file: GT = the uint8 **sum** of the expression's ``anno_id`` masks
per frame (empty where absent; J and F see its union), J and F per frame (:mod:`momentseg.eval.metrics`),
averaged over frames, then over expressions; J&F = (J + F) / 2; reported in percent with 2 decimals
(``exact`` holds the same numbers unrounded). Per benchmark:

* ``mevis`` — J, F (``official-mevis``: ``MeViS/tools/eval_mevis.py``).
* ``revos`` — J, F, A, R (``official-visa``: VISA ``tools/eval_revos.py``): per-expression values in percent
  rounded to 2 decimals, means over the ``referring`` (type_id 0) and ``reasoning`` (type_id 1) subsets;
  expressions with type_id 2 are scored and listed but not aggregated; the overall number is the mean of the
  subset means. A and R are computed on the raw uint8 values as VISA does (a 0/255 PNG is compared with the
  0/1 / summed GT; see :func:`~momentseg.eval.metrics.r2vos_accuracy`); their binarised values are reported
  too, as ``A_binary`` / ``R_binary``.
* ``refsav`` — J, F, A (``official-sa2va-refsav``: Sa2VA ``tools/eval/eval_ref_sav.py``, which reads RLE
  predictions, i.e. 0/1 values; PNG predictions are read as 0/1 too); with type_ids, ``long`` (0) and
  ``short`` (1) subsets and overall = mean of the subset means (per-expression rounding as ReVOS); without,
  a plain mean. ``A_binary`` as for ReVOS.
* ``refdavis`` — by default the Sa2VA/VISA per-expression ``mask_dict`` protocol (``official-visa-davis17``:
  VISA ``tools/eval_davis17.py``, plain means, ``mask_dict.json`` or ``.pkl``; a meta without ``anno_id`` is
  numbered by VISA's running index); ``protocol="referformer"`` runs the ReferFormer per-annotator davis2017 unsupervised protocol
  instead (:mod:`momentseg.eval.davis_unsupervised`: DAVIS root + ``anno_0..anno_3`` PNG folders).
* ``refytvos`` — scored like MeViS when the split has a ``mask_dict.json``; the official ``valid`` split has
  no GT and is scored only by the CodaLab server (:func:`write_submission_zip`).

A missing prediction (no masks for an expression) counts as empty masks; a missing PNG of one frame as an
empty frame. Both are counted in the report (``missing``, ``missing_frames``) and listed in ``warnings``.
This is the one deliberate difference from the official scripts, which score a missing video as 0 (MeViS,
VISA) and silently drop an expression whose folder or frame PNG is missing (MeViS: the worker crashes and its
expression never reaches the mean) or score it 0 (VISA).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from momentseg.data.predictions import (
    MaskPredictions,
    load_predicted_masks,
    load_predicted_values,
    open_mask_predictions,
)
from momentseg.data.refvos import RefVOSSplit, foreground_area, gt_values_from_rles, load_refvos_split
from momentseg.errors import InputError
from momentseg.eval.davis_unsupervised import evaluate_referformer_davis
from momentseg.eval.metrics import (
    f_measure,
    j_measure,
    pixel_accuracy,
    r2vos_accuracy,
    r2vos_robustness,
    recall_decay,
    robustness,
)
from momentseg.eval.parallel import parallel_map
from momentseg.io.atomic import atomic_path
from momentseg.io.masks import png_mask_bytes, read_png_mask

PROTOCOLS = {
    "mevis": "official-mevis",
    "revos": "official-visa",
    "refdavis": "official-visa-davis17",
    "refytvos": "official-mevis",
    "refsav": "official-sa2va-refsav",
}
PROTOCOL_DESCRIPTIONS = {
    "mevis": "MeViS tools/eval_mevis.py: per expression over all frames, mean over expressions",
    "revos": "VISA tools/eval_revos.py: per expression over all frames (J, F, A, R), per-expression values "
    "rounded to 2 decimals, overall = mean of the referring and reasoning means",
    "refdavis": "Sa2VA/VISA per-expression mask_dict protocol (VISA tools/eval_davis17.py), all frames, "
    "mean over expressions (not the ReferFormer per-annotator davis2017 protocol)",
    "refytvos": "MeViS-style (tools/eval_mevis.py): per expression over all frames, mean over expressions",
    "refsav": "Sa2VA tools/eval/eval_ref_sav.py: per expression over all frames (J, F, A), overall = mean of "
    "the long and short means",
}
_GT_SUM = (
    "GT of a multi-object expression is the uint8 sum of the objects' masks (overlap = 2, ...); J and F see "
    "its union"
)
QUIRKS = {
    "mevis": [_GT_SUM],
    "refytvos": [_GT_SUM],
    "refdavis": [_GT_SUM],
    "revos": [
        _GT_SUM,
        "A compares raw uint8 values (a 0/255 PNG pixel never equals a GT of 1); the binarised value is "
        "A_binary",
        "R uses raw uint8 values with wrap-around ((1 - gt) * pred mod 256: a 0/255 false positive weighs "
        "255); the binarised value is R_binary",
        "per-expression values are rounded to 2 decimals before the subset means",
    ],
    "refsav": [
        _GT_SUM,
        "A compares raw values (predictions 0/1, GT summed: overlap pixels never agree); the binarised value "
        "is A_binary",
        "per-expression values are rounded to 2 decimals before the subset means",
    ],
}
_ANNO_ID_FALLBACK = (
    "the meta has no anno_id: expressions numbered by a running index over sorted videos and sorted "
    "expression ids (VISA / Sa2VA get_meta_exp)"
)
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
    binary_pred: bool = False


def _score(task: _Task) -> dict[str, Any]:
    gt_v = gt_values_from_rles(task.gt, len(task.frames), task.hw, task.gt_where)
    pred_v = load_predicted_values(task.pred, task.frames, task.hw, task.pred_where)
    if task.binary_pred:  # Ref-SAV's official script reads RLE, i.e. 0/1
        pred_v = (pred_v != 0).view(np.uint8)
    gt, pred = gt_v != 0, pred_v != 0
    j = np.asarray(j_measure(gt, pred), dtype=np.float64).reshape(-1)
    f = np.asarray(f_measure(gt, pred), dtype=np.float64).reshape(-1)
    out: dict[str, Any] = {"J": float(j.mean()), "F": float(f.mean()), **recall_decay(j, f)}
    if task.want_a:
        out["A"] = float(np.mean(r2vos_accuracy(gt_v, pred_v)))
        out["A_binary"] = float(np.mean(pixel_accuracy(gt, pred)))
    if task.foreground is not None:
        area = foreground_area(task.foreground, task.hw, task.gt_where)
        out["R"] = float(np.mean(r2vos_robustness(gt_v, pred_v, area)))
        out["R_binary"] = float(np.mean(robustness(gt, pred, area)))
    return out


def _metric_keys(benchmark: str) -> tuple[str, ...]:
    return {
        "revos": ("J", "F", "A", "R", "A_binary", "R_binary"),
        "refsav": ("J", "F", "A", "A_binary"),
    }.get(benchmark, ("J", "F"))


def _aggregate(benchmark: str, rows: list[dict], split: RefVOSSplit) -> tuple[dict, dict, list[str], dict]:
    """Headline numbers (percent, 2 decimals), per-subset blocks, warnings and the unrounded headline."""
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
        return {k: round(v, 2) for k, v in head.items()}, {}, warnings, head
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
    return {k: round(v, 2) for k, v in head.items()}, rounded, warnings, head


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
                binary_pred=benchmark == "refsav",
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
        return evaluate_referformer_davis(data, pred, workers)
    split = _load_scorable_split(data, benchmark)
    preds = open_mask_predictions(pred)
    preds.check_known(split)
    tasks, rows = _build_tasks(split, preds, benchmark)
    if not tasks:
        raise InputError(f"{split.meta_path}: no expressions to score")
    scores = parallel_map(_score, tasks, workers)
    for row, s in zip(rows, scores, strict=True):
        row.update(s)
    head, subsets, warnings, exact = _aggregate(benchmark, rows, split)
    n_missing, n_missing_frames = _add_coverage_warnings(warnings, rows, split)
    report: dict[str, Any] = {
        "benchmark": benchmark,
        "protocol": PROTOCOLS[benchmark],
        "protocol_description": PROTOCOL_DESCRIPTIONS[benchmark],
        "quirks": _quirks(benchmark, split),
        "data": str(split.meta_path),
        "pred": str(preds.path),
        **head,
        "exact": exact,
    }
    if subsets:
        report["subsets"] = subsets
    ignored = sum(1 for r in rows if benchmark in SUBSETS and r.get("type_id") not in (None, 0, 1))
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


def _load_scorable_split(data: str | os.PathLike, benchmark: str) -> RefVOSSplit:
    """Load the split ``data`` and check it has what scoring ``benchmark`` needs (GT, ReVOS foreground)."""
    split = load_refvos_split(data, benchmark)
    if not split.has_gt:
        where = "CodaLab" if benchmark in SUBMISSION_PREFIX else "its evaluation server"
        raise InputError(
            f"{split.root} has no ground truth (no mask_dict.json): this split can only be scored on {where}; "
            f"build the upload with --submission-zip OUT.zip"
        )
    if benchmark == "revos" and split.foreground_path is None:
        raise InputError(f"{split.root}: ReVOS needs mask_dict_foreground.json for the R metric")
    return split


def _add_coverage_warnings(warnings: list[str], rows: list[dict], split: RefVOSSplit) -> tuple[int, int]:
    """Add the missing-prediction / empty-target warnings to ``warnings``; returns (missing, missing_frames)."""
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
    no_target = [f"{v.vid}/{e.exp_id}" for v, e in split.expressions() if not e.anno_ids]
    if no_target:
        warnings.append(
            f"{len(no_target)} expressions have an empty 'anno_id' list in {split.meta_path.name} (scored "
            f"against an empty GT, as officially), e.g. {no_target[0]}"
        )
    return n_missing, n_missing_frames


def _quirks(benchmark: str, split: RefVOSSplit) -> list[str]:
    """The benchmark's known quirks, plus the anno_id fallback note when ``split`` needed it."""
    quirks = list(QUIRKS[benchmark])
    if split.anno_id_fallback:
        quirks.append(_ANNO_ID_FALLBACK)
    return quirks


def _round_row(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k in ("J", "F", "A", "R", "A_binary", "R_binary", "J_recall", "F_recall", "J_decay", "F_decay"):
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
