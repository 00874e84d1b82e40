"""The numbers issue 14 asks of the embedded model, on held-out synthetic test videos, in one run:

* RefVOS (MeViS protocol: per expression J and F are means over all frames, targets merged; × 100): overall and
  by expression kind;
* TSG from the same dense ``[FIND]`` pass (official top-1 / mAP definitions of ``momentseg.eval.tsg``):
  R1@{0.3,0.5,0.7}, mIoU over the expressions with a moment;
* no-target expressions: the share whose mask is empty in every frame;
* "the masks follow the text": for every pair of expressions of one video whose targets are disjoint, the mean
  IoU between their predicted masks over the frames where either is non-empty.

Each video is segmented with all its expressions in one ``MomentSeg.segment`` call (K keyframes, MCS + BAP —
the defaults). The videos are regenerated in memory from the test split's seeds (the same as ``momentseg synth
--split test``).

    python benchmarks/embedded_eval.py --videos 20 --json benchmarks/results/embedded_eval.json

``--point-prior GAIN BIAS`` evaluates a model with a pointing head at another prior gain and bias (the
gain of ``configs/tiny-pointing.yaml`` was chosen so on val videos); ``--presence-threshold X`` at another
``point_presence_threshold`` (``none``: off; chosen so for ``configs/tiny-pointing-long.yaml``).

``--keyframes K`` and ``--language-on-tracked-frames on|off`` change those inference settings.
``--against OTHER.json`` (an earlier run's ``--json`` on the same videos) also prints the paired differences
this − other with 95 % bootstrap intervals (``momentseg.eval.bootstrap.paired_difference``): J&F over every
expression, R1@0.5 / R1@0.3 / mIoU over the expressions with a moment.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import combinations

import numpy as np
import torch

from momentseg.data import synthetic as syn
from momentseg.eval.metrics import f_measure, j_measure
from momentseg.eval.tsg import score_query, summarize_exact
from momentseg.grounding.sampling import DEFAULT_KEYFRAMES
from momentseg.io.atomic import atomic_write_text
from momentseg.io.video import open_video
from momentseg.pipeline import MomentSeg
from momentseg.sam2.config import is_sam2_size


def pair_iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean IoU of two (T,H,W) predictions over the frames where either is non-empty (None if both are empty)."""
    union = (a | b).reshape(len(a), -1).sum(1)
    inter = (a & b).reshape(len(a), -1).sum(1)
    used = union > 0
    return float(np.mean(inter[used] / union[used])) if used.any() else None


def evaluate(pipe: MomentSeg, first: int, count: int, split: str = "test", keyframes: int = DEFAULT_KEYFRAMES) -> dict:
    rows, pairs, tsg = [], [], []
    for i in range(first, first + count):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        result = pipe.segment(open_video(v.frames, fps=v.fps), [e.text for e in v.expressions], keyframes=keyframes)
        preds = []
        for exp, r in zip(v.expressions, result.expressions, strict=True):
            gt, pred = v.expression_masks(exp), r.masks.to_array()
            preds.append(pred)
            rows.append({"video": v.video_id, "text": exp.text, "kind": exp.kind,
                         "J": float(np.mean(j_measure(gt, pred))), "F": float(np.mean(f_measure(gt, pred))),
                         "empty": not pred.any(), "tiou": None})
            if exp.moments:
                tsg.append(score_query(r.grounding.moments, exp.moments))
                rows[-1]["tiou"] = float(tsg[-1]["iou"])
        for (ea, pa), (eb, pb) in combinations(zip(v.expressions, preds, strict=True), 2):
            if ea.obj_ids and eb.obj_ids and not set(ea.obj_ids) & set(eb.obj_ids):
                iou = pair_iou(pa, pb)
                if iou is not None:
                    pairs.append(iou)

    def jf(sel: list[dict]) -> dict:
        j, f = 100 * np.mean([r["J"] for r in sel]), 100 * np.mean([r["F"] for r in sel])
        return {"J&F": float((j + f) / 2), "J": float(j), "F": float(f), "n": len(sel)}

    none = [r for r in rows if r["kind"] == "none"]
    return {
        "refvos": jf(rows),
        "by_kind": {k: jf([r for r in rows if r["kind"] == k]) for k in syn.EXPRESSION_KINDS
                    if any(r["kind"] == k for r in rows)},
        "tsg": summarize_exact(tsg) | {"n": len(tsg)},
        "no_target_empty_rate": float(np.mean([r["empty"] for r in none])) if none else None,
        "disjoint_pair_mask_iou": float(np.mean(pairs)) if pairs else None,
        "disjoint_pairs": len(pairs),
        "rows": rows,
    }


def paired(rows: list[dict], other: list[dict]) -> dict:
    """Paired differences (mean, low, high) of ``rows`` − ``other`` (the same expressions, in order)."""
    from momentseg.eval.bootstrap import bootstrap_indices, paired_difference

    if [(r["video"], r["text"]) for r in rows] != [(r["video"], r["text"]) for r in other]:
        raise SystemExit("--against: the two runs scored different expressions")
    out = {}
    jf = [np.array([100 * (r["J"] + r["F"]) / 2 for r in x]) for x in (rows, other)]
    out["J&F"] = paired_difference(*jf, bootstrap_indices(len(rows)))
    timed = [i for i, r in enumerate(rows) if r.get("tiou") is not None]
    if timed:
        tiou = [np.array([x[i]["tiou"] for i in timed]) for x in (rows, other)]
        idx = bootstrap_indices(len(timed))
        for name, f in (("R1@0.3", lambda t: 100.0 * (t >= 0.3)), ("R1@0.5", lambda t: 100.0 * (t >= 0.5)),
                        ("mIoU", lambda t: 100.0 * t)):
            out[name] = paired_difference(f(tiou[0]), f(tiou[1]), idx)
    return {k: [round(float(x), 2) for x in v] for k, v in out.items()}


def track_size(text: str) -> int:
    """``--sam2-track-size``: a positive multiple of 16, or ``none`` (0: the model's one SAM2 pass)."""
    if text == "none":
        return 0
    size = int(text) if text.isdigit() else None
    if not is_sam2_size(size):
        raise argparse.ArgumentTypeError(f"a positive multiple of 16 or none, got {text!r}")
    return size


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--first-video", type=int, default=0)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--split", default="test", choices=tuple(syn.SPLIT_SEEDS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--keyframes", type=int, default=DEFAULT_KEYFRAMES, help="K keyframes of the [SEG] pass")
    ap.add_argument("--language-on-tracked-frames", choices=("on", "off"),
                    help="replace the model's language_on_tracked_frames (off: Sa2VA's propagation, the [SEG] "
                         "prompt and prior on the keyframes only, SAM2's memory on every other frame)")
    ap.add_argument("--sam2-track-size", metavar="S", type=track_size,
                    help="replace the model's sam2_track_size (a multiple of 16: keyframes decoded at the model's "
                         "SAM2 size, their masks propagated by SAM2's memory at S; or none: one SAM2 pass)")
    ap.add_argument("--against", default=None, help="an earlier --json on the same videos: paired differences")
    ap.add_argument("--point-prior", type=float, nargs=2, metavar=("GAIN", "BIAS"),
                    help="replace the pointing prior's gain and bias (a model with a pointing head)")
    ap.add_argument("--presence-threshold", metavar="X",
                    help="replace the model's point_presence_threshold (a number, or none: off)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    pipe = MomentSeg.from_pretrained(args.model, device="cpu")
    if args.point_prior is not None:
        if not pipe.model.config.seg_pointing:
            ap.error(f"--point-prior: the model {args.model} has no pointing head")
        with torch.no_grad():
            pipe.model.point_prior_scale.copy_(torch.tensor(args.point_prior))
    if args.presence_threshold is not None:
        if not pipe.model.config.seg_pointing:
            ap.error(f"--presence-threshold: the model {args.model} has no pointing head")
        try:
            value = None if args.presence_threshold == "none" else float(args.presence_threshold)
        except ValueError:
            ap.error(f"--presence-threshold: a number or none, got {args.presence_threshold!r}")
        pipe.model.config.point_presence_threshold = value
    if args.language_on_tracked_frames is not None:
        pipe.model.config.language_on_tracked_frames = args.language_on_tracked_frames == "on"
        pipe.model.sam2.language_on_tracked_frames = pipe.model.config.language_on_tracked_frames
    if args.sam2_track_size is not None:
        pipe.model.config.sam2_track_size = args.sam2_track_size or None
    with torch.no_grad():
        out = evaluate(pipe, args.first_video, args.videos, args.split, args.keyframes)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["args"] = vars(args)
    r, t = out["refvos"], out["tsg"]
    print(f"J&F {r['J&F']:.2f} (J {r['J']:.2f}, F {r['F']:.2f}; {r['n']} expressions)  TSG R1@0.5 {t['R1@0.5']:.2f} "
          f"R1@0.3 {t['R1@0.3']:.2f} mIoU {t['mIoU']:.2f} ({t['n']})")
    print("by kind: " + ", ".join(f"{k} {v['J&F']:.1f} ({v['n']})" for k, v in out["by_kind"].items()))
    print(f"no-target empty: {out['no_target_empty_rate']}, disjoint-pair mask IoU: {out['disjoint_pair_mask_iou']} "
          f"({out['disjoint_pairs']} pairs), {out['seconds']} s")
    if args.against:
        with open(args.against, encoding="utf-8") as fh:
            out["paired"] = paired(out["rows"], json.load(fh)["rows"])
        print("this − against (95 % interval): " + ", ".join(f"{k} {d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                                                             for k, (d, lo, hi) in out["paired"].items()))
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
