"""Where a model's RefVOS J is lost, expression by expression (BENCHMARKS.md, "Round 19").

For every expression with a target on synthetic videos ``0..N-1`` of a split (default val), the pipeline as
shipped runs (``MomentSeg.segment``: MCS keyframes, the ``[SEG]`` pass, BAP) and its masks are split against the
truth (per expression the mean over frames, then the mean over expressions):

- ``J``: the MeViS J (× 1, mean over all frames);
- ``gated``: the share of expressions the presence threshold empties (``ExpressionResult.present`` False);
- over the frames where the target is visible: ``empty`` (no mask at all) and ``missed`` (a mask, but under 10 %
  of the target's pixels);
- over the frames with a mask: the share of its pixels on ``other_objects`` and on ``background``;
- ``J_without_others``: J once the pixels on other objects are taken off the masks — what choosing the right
  object among the pixels SAM2 already predicts would give;
- with a pointing head, per merged context token of the spatial prior (target share > 0.5 of its object pixels,
  or < 0.1 with objects in it): ``target_tokens_positive`` (prior > 0 where the target is) and
  ``other_tokens_negative`` (prior < 0 where only other objects are);
- ``J_independent``: every frame decoded alone as a SAM2 conditioning frame with the same ``[SEG]`` embedding and
  prior (no memory, no propagation); equal to J for a gated expression.
- with a ``sam2_track_size`` (the keyframes decoded, then tracked; BENCHMARKS.md, "Round 25"), for the expressions
  the presence decision keeps: ``J_keyframes``, J over the K keyframes alone (their decoded masks), and
  ``J_true_keyframes``, J of the same tracking (``model.tracker``, the same keyframes and anchor) prompted by the
  true masks on those keyframes — what the tracker gives from perfect keyframes.

    python benchmarks/mask_errors.py --videos 20 --json benchmarks/results/mask_errors.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from momentseg.data import synthetic as syn
from momentseg.eval.metrics import j_measure
from momentseg.io.atomic import atomic_write_text
from momentseg.io.video import open_video
from momentseg.pipeline import MomentSeg
from momentseg.sam2.config import preprocess_for_sam2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pointing_eval import token_shares  # noqa: E402
from sam2_tracking import track_from_masks  # noqa: E402

#: a visible target counts as missed by a non-empty mask holding less than this share of its pixels
MISSED_RECALL = 0.1


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def mask_split(gt: np.ndarray, pred: np.ndarray, objects: np.ndarray) -> dict:
    """The mask-only measures of one expression: ``gt`` / ``pred`` (T,H,W) bool, ``objects`` (T,H,W) bool: any
    object's pixels."""
    flat = (lambda m: m.reshape(len(m), -1).sum(1))  # noqa: E731 - per-frame pixel counts
    others = objects & ~gt
    visible, sizes = flat(gt) > 0, flat(pred)
    recall = flat(pred & gt)[visible] / flat(gt)[visible]
    shown = sizes > 0
    return {
        "J": float(np.mean(j_measure(gt, pred))),
        "empty": _mean(sizes[visible] == 0),
        "missed": _mean((sizes[visible] > 0) & (recall < MISSED_RECALL)),
        "other_objects": _mean(flat(pred & others)[shown] / sizes[shown]),
        "background": _mean(flat(pred & ~objects)[shown] / sizes[shown]),
        "J_without_others": float(np.mean(j_measure(gt, pred & ~others))),
    }


def token_signs(prior: torch.Tensor, target: torch.Tensor, objects: torch.Tensor) -> tuple[float | None, ...]:
    """Share of target tokens with a positive prior and of other-object tokens with a negative one (prior, target
    and object pixel shares per merged context token, all (J, h, w))."""
    share = target / objects.clamp(min=1e-6)
    held = objects > 0.02
    on, off = held & (share > 0.5), held & (share < 0.1)
    return (float((prior[on] > 0).float().mean()) if on.any() else None,
            float((prior[off] < 0).float().mean()) if off.any() else None)


def evaluate(pipe: MomentSeg, videos: int, split: str) -> dict:
    model, cfg, lay = pipe.model, pipe.config, pipe.model.layout
    rows = []
    for i in range(videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        video = open_video(v.frames, fps=v.fps)
        result = pipe.segment(video, [e.text for e in v.expressions])
        objects = np.any(np.stack(list(v.object_masks.values())), axis=0)
        context, ctx = pipe.context_frames(video), pipe._context_indices(video)
        pixels = preprocess_for_sam2(v.frames, cfg.sam2_image_size)
        if cfg.sam2_track_size is not None:
            track_pixels = preprocess_for_sam2(v.frames, cfg.track_image_size)
        for exp, r in zip(v.expressions, result.expressions, strict=True):
            if not exp.obj_ids:
                continue
            gt, pred = v.expression_masks(exp), r.masks.to_array()
            row = {"video": v.video_id, "text": exp.text, "kind": exp.kind, "gated": not r.present}
            row |= mask_split(gt, pred, objects)
            row["J_independent"] = row["J"]
            prompt = pipe.seg_prompt(video, exp.text, r.keyframes, context)
            if prompt.prior is not None:
                maps = prompt.prior.maps.float().cpu()
                target, any_object = token_shares(gt[ctx], objects[ctx], maps.shape, lay.temporal_patch_size)
                row["target_tokens_positive"], row["other_tokens_negative"] = token_signs(maps, target, any_object)
            if r.present:
                prior = None if prompt.prior is None else torch.stack(
                    [prompt.prior.at(t) for t in range(len(video))])
                low = model.decode_keyframes(pixels, prompt.embedding, prior)  # every frame decoded alone
                logits = F.interpolate(low[:, None].float(), size=gt.shape[1:], mode="bilinear",
                                       align_corners=False)[:, 0]
                row["J_independent"] = float(np.mean(j_measure(gt, (logits > 0).numpy())))
                if cfg.sam2_track_size is not None:
                    keys = [int(k) for k in r.keyframes]
                    row["J_keyframes"] = float(np.mean(j_measure(gt[keys], pred[keys])))
                    row["J_true_keyframes"] = float(np.mean(j_measure(gt, track_from_masks(
                        model.tracker, track_pixels, gt, keys, r.anchor))))
            rows.append(row)
    keys = [k for k in rows[0] if k not in ("video", "text", "kind")] if rows else []

    def summary(sel: list[dict]) -> dict:
        out = {"n": len(sel)}
        for k in keys:
            vals = [float(r[k]) for r in sel if r.get(k) is not None]
            out[k] = round(float(np.mean(vals)), 4) if vals else None
        return out

    return {"all": summary(rows),
            "by_kind": {k: summary([r for r in rows if r["kind"] == k]) for k in syn.EXPRESSION_KINDS
                        if any(r["kind"] == k for r in rows)},
            "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--split", default="val", choices=tuple(syn.SPLIT_SEEDS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    pipe = MomentSeg.from_pretrained(args.model, device="cpu")
    with torch.no_grad():
        out = evaluate(pipe, args.videos, args.split)
    out["args"] = vars(args)
    print(json.dumps(out["all"]))
    for kind, s in out["by_kind"].items():
        print(f"{kind}: n {s['n']}, J {s['J']}, J_independent {s['J_independent']}")
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
