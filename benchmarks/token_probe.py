"""How well a vision tower pretrained by the ``tokens`` task (``configs/tiny-vision.yaml``) tells shapes, colours
and motions apart: on one ``tokens`` sample (8 consecutive 5 fps frames) of each of videos ``0..N-1`` of a
synthetic split, the tokens where a single object class covers ≥ 25 % of the pixels, and the share of them
whose largest predicted object class (background left out) is that class. Chance is about 1/6 (shapes,
colours) and 1/5 (motions: still or one of four directions).

    python benchmarks/token_probe.py --model pretrained/tiny-vision --json benchmarks/results/token_probe.json

``--checkpoint runs/X/checkpoints/step-N`` scores a training run's checkpoint: its trainable weights replace
``--model``'s (the folder the run started from).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from momentseg.data import synthetic as syn
from momentseg.io.atomic import atomic_write_text
from momentseg.model import MomentSegModel
from momentseg.model.momentseg import token_shares
from momentseg.train.data import tokens_sample
from momentseg.train.shapes import SampleShape

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_probe import load  # noqa: E402

KINDS = ("shapes", "colours", "motions")


@torch.no_grad()
def measure(model: MomentSegModel, videos: int, split: str) -> dict:
    c, lay = model.config, model.layout
    if not c.token_classes:
        raise SystemExit("this model has no per-token class head (train it with configs/tiny-vision.yaml)")
    shape = SampleShape(tsg_side=c.find_frame_size, context_side=c.context_frame_size, keyframe_side=128,
                        tsg_fps=c.fps, tsg_max_frames=c.find_max_frames)
    hits = {k: [0, 0] for k in KINDS}
    for i in range(videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        s = tokens_sample(v, np.random.default_rng(i), shape)
        vision = model.processor.video(s.frames, c.find_frame_size)
        tokens = model.video_tokens([vision])[0]
        t, gh, gw = (int(x) for x in vision.grid_thw[0])
        side = (gh // lay.merge_size, gw // lay.merge_size)
        for kind, part in zip(KINDS, model.token_class_head(tokens).split(c.token_classes, dim=1), strict=True):
            target = token_shares(getattr(s, kind), part.shape[1], t, lay.temporal_patch_size, side)
            chosen = target[:, 1:].max(1).values >= 0.25
            right = part[chosen][:, 1:].argmax(1) == target[chosen][:, 1:].argmax(1)
            hits[kind][0] += int(right.sum())
            hits[kind][1] += int(chosen.sum())
    return {k: {"accuracy": a / max(n, 1), "tokens": n} for k, (a, n) in hits.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pretrained/tiny-vision", help="a model folder with a per-token class head")
    ap.add_argument("--videos", type=int, default=30, help="videos 0..N-1 of the split")
    ap.add_argument("--split", default="val", choices=("train", "val", "test"))
    ap.add_argument("--checkpoint", default=None, help="a training checkpoint folder whose trainable weights "
                                                       "replace --model's (runs/X/checkpoints/step-N)")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.videos < 1:
        ap.error("--videos must be ≥ 1")
    result = measure(load(args.model, args.checkpoint), args.videos, args.split)
    result["args"] = vars(args)
    print(json.dumps(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
