"""Where does a model's RefVOS error come from: keyframe choice, propagation, or the [SEG] embedding itself?

For each expression with a target on held-out synthetic test videos ``0..N-1``, the mean per-frame J of

* ``bap``: the pipeline as shipped (MCS keyframes, [SEG] embedding, BAP propagation);
* ``independent``: the same [SEG] embedding, every frame decoded on its own as a SAM2 conditioning frame (no
  memory, no propagation);
* ``oracle``: a [SEG] embedding from 8 keyframes spread over the frames where the target is visible, every
  frame decoded on its own.

If the three agree, neither sampling nor propagation limits the model: the text → mask mapping does.

    python benchmarks/seg_diagnosis.py --videos 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from momentseg.data import synthetic as syn
from momentseg.eval.metrics import j_measure
from momentseg.io.video import open_video
from momentseg.pipeline import MomentSeg
from momentseg.sam2.config import preprocess_for_sam2


def frame_by_frame(model, px: torch.Tensor, embedding: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
    """Masks (T,H,W) with every frame decoded alone as a conditioning frame prompted by ``embedding``."""
    with torch.no_grad():
        low, _ = model.sam2.decode_clip(px, embedding, cond_frames=tuple(range(px.shape[0])))
        logits = F.interpolate(low[:, None], size=hw, mode="bilinear", align_corners=False)[:, 0]
    return (logits > 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--model", default="embedded")
    args = ap.parse_args()
    pipe = MomentSeg.from_pretrained(args.model, device="cpu")
    m, c = pipe.model, pipe.config
    rows = []
    for i in range(args.videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS["test"], i), syn.video_id(i), syn.WorldConfig())
        video = open_video(v.frames, fps=v.fps)
        hw = v.frames.shape[1:3]
        px = preprocess_for_sam2(v.frames, c.sam2_image_size)
        context = pipe.context_frames(video)
        for exp in v.expressions:
            if not exp.obj_ids:
                continue
            gt = v.expression_masks(exp)
            r = pipe.segment(video, [exp.text]).expressions[0]
            bap = float(np.mean(j_measure(gt, r.masks.to_array())))
            # the pipeline's [SEG] pass on its own keyframes, then on oracle ones
            emb = pipe.seg_prompt(video, exp.text, r.keyframes, context)[0]
            independent = float(np.mean(j_measure(gt, frame_by_frame(m, px, emb, hw))))
            visible = np.flatnonzero(gt.reshape(len(gt), -1).any(1))
            keys = visible[np.linspace(0, len(visible) - 1, 8).round().astype(int)]
            emb = pipe.seg_prompt(video, exp.text, keys, context)[0]
            oracle = float(np.mean(j_measure(gt, frame_by_frame(m, px, emb, hw))))
            rows.append((bap, independent, oracle))
            print(f"{v.video_id} {exp.text[:48]:48s} bap {bap:.3f}  independent {independent:.3f}  "
                  f"oracle {oracle:.3f}", flush=True)
    mean = np.mean(rows, axis=0)
    print(f"mean over {len(rows)} expressions: bap {mean[0]:.3f}  independent {mean[1]:.3f}  oracle {mean[2]:.3f}")


if __name__ == "__main__":
    main()
