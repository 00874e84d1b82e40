"""Tracking ceiling of a model's SAM2: every object of held-out synthetic test videos, prompted with its
ground-truth mask on its first visible frame and propagated through the whole video (forward and backward from
there) with this project's own propagation session — the code BAP runs (:func:`momentseg.propagation.propagate`).

Scored per object as MeViS scores an expression: J and F are the means over all frames of the video (frames
where the object is absent count 1 when the prediction is empty too); a row is the mean over objects × 100.
This is the best J&F the ``[SEG]`` path could reach if it prompted SAM2 as well as a ground-truth mask does.

    python benchmarks/sam2_tracking.py --model runs/tiny-sam2/final --videos 20 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from momentseg.data import synthetic as syn
from momentseg.eval.metrics import f_measure, j_measure
from momentseg.io.atomic import atomic_write_text
from momentseg.model import MomentSegModel
from momentseg.propagation.bap import propagate, upsample_mask
from momentseg.sam2.config import preprocess_for_sam2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded_eval import track_size  # noqa: E402  (benchmarks/embedded_eval.py)


def track_from_masks(sam2, px: torch.Tensor, masks: np.ndarray, keyframes: list[int], anchor: int) -> np.ndarray:
    """Predicted masks (T,H,W) of ``sam2``'s propagation (BAP from ``anchor``) prompted with the true ``masks``
    (T,H,W) on ``keyframes``."""
    t, h, w = masks.shape
    pred = np.zeros((t, h, w), dtype=bool)
    for out in propagate(sam2, px, keyframes, anchor, mask_prompts={k: masks[k] for k in keyframes}, mode="bap"):
        pred[out.frame_idx] = upsample_mask(out.mask_logits, (h, w)).cpu().numpy()
    return pred


def track_object(sam2, px: torch.Tensor, masks: np.ndarray) -> np.ndarray:
    """Predicted masks (T,H,W) of one object whose visible masks are ``masks`` (T,H,W), prompted with the mask
    of its first visible frame."""
    first = int(np.flatnonzero(masks.any(axis=(1, 2)))[0])
    return track_from_masks(sam2, px, masks, [first], first)


def score(model: MomentSegModel, first_video: int, videos: int, split: str = "test") -> dict:
    sam2 = model.eval().tracker  # the SAM2 the propagation runs (at sam2_track_size when the model has one)
    size = model.config.track_image_size
    rows = []
    for i in range(first_video, first_video + videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        px = preprocess_for_sam2(v.frames, size)
        for oid, masks in sorted(v.object_masks.items()):
            if not masks.any():
                continue
            pred = track_object(sam2, px, masks)
            j, f = float(np.mean(j_measure(masks, pred))), float(np.mean(f_measure(masks, pred)))
            rows.append({"video": v.video_id, "obj_id": int(oid), "J": j, "F": f})
    j = 100 * float(np.mean([r["J"] for r in rows]))
    f = 100 * float(np.mean([r["F"] for r in rows]))
    return {"J&F": (j + f) / 2, "J": j, "F": f, "objects": len(rows), "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint folder (e.g. runs/tiny-sam2/final)")
    ap.add_argument("--first-video", type=int, default=0)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--split", default="test", choices=tuple(syn.SPLIT_SEEDS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--sam2-track-size", metavar="S", type=track_size,
                    help="replace the model's sam2_track_size: track at S (a multiple of 16), or none: at its "
                         "SAM2 size")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = MomentSegModel.from_pretrained(args.model)
    if args.sam2_track_size is not None:
        model.config.sam2_track_size = args.sam2_track_size or None
    with torch.no_grad():
        result = score(model, args.first_video, args.videos, args.split)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"tracking J&F {result['J&F']:.2f} (J {result['J']:.2f}, F {result['F']:.2f}) over "
          f"{result['objects']} objects, {result['seconds']} s")
    if args.json:
        atomic_write_text(args.json, json.dumps(dict(result) | {"args": vars(args)}, indent=1))
    return result


if __name__ == "__main__":
    main()
