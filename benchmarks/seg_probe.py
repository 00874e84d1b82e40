"""Can the tiny preset's ``[SEG]`` path learn to select an object by its text? A one-keyframe probe.

Samples: one frame of a synthetic train-split video and the expression "the <colour> shape" for an object whose
current colour no other visible object has (held-out: the val split). The tiny model (random init) trains on
``forward_refvos`` alone (AdamW, lr 1e-3, batch 8); the held-out mask Dice loss is printed every 25 steps.
``--init transformers`` undoes the tiny preset's fan-in re-initialisation of SAM2 (transformers' N(0, 0.02)
init everywhere), ``--init preset`` keeps it. Also printed: the std of SAM2's S/4 features at init.

    python benchmarks/seg_probe.py --init transformers --steps 150
    python benchmarks/seg_probe.py --init preset --steps 150
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from momentseg.data import synthetic as syn
from momentseg.data.synthetic import caption_vocabulary
from momentseg.data.synthetic.config import COLOURS
from momentseg.model import MomentSegModel, RefVOSSample
from momentseg.sam2.config import preprocess_for_sam2
from momentseg.sam2.video import build_sam2
from momentseg.train.config import LossConfig
from momentseg.train.data import long_side_fit, resize_frames, resize_masks

WEIGHTS = LossConfig().by_component()  # the training config's loss weights


def samples(split: str, start: int, n: int, rng: np.random.Generator, side: int) -> tuple[list, int]:
    """``n`` probe samples from videos ``start, start+1, …`` of ``split``; returns them and the next video."""
    out, i = [], start
    while len(out) < n:
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        i += 1
        for _ in range(4):
            t = int(rng.integers(v.num_frames))
            visible = [o for o in v.objects if v.object_masks[o.obj_id][t].sum() > 20 and o.colour[t] >= 0]
            colours = [COLOURS[o.colour[t]] for o in visible]
            unique = [o for o, c in zip(visible, colours, strict=True) if colours.count(c) == 1]
            if len(visible) < 2 or not unique:
                continue
            o = unique[int(rng.integers(len(unique)))]
            hw = long_side_fit(v.frames.shape[1:3], side)
            out.append(RefVOSSample(context=np.zeros((0, 8, 8, 3), np.uint8),
                                    keyframes=resize_frames(v.frames[t : t + 1], hw),
                                    query=f"the {COLOURS[o.colour[t]]} shape",
                                    masks=resize_masks(v.object_masks[o.obj_id][t : t + 1], hw)))
    return out[:n], i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", choices=("preset", "transformers"), default="preset")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MomentSegModel.tiny(caption_vocabulary())
    if args.init == "transformers":
        fresh = build_sam2(model.config.sam2)  # transformers' init
        fresh.mask_decoder.pred_obj_score_head.proj_out.bias.data.fill_(2.0)  # the preset's object prior
        model.sam2.load_state_dict(fresh.state_dict())
    side = model.config.sam2_image_size
    val, _ = samples("val", 0, 32, np.random.default_rng(1), side)
    with torch.no_grad():
        px = preprocess_for_sam2(val[0].keyframes, side)
        std = float(model.sam2.get_image_features(px, return_dict=True).fpn_hidden_states[0].std())
    print(f"init {args.init}: S/4 feature std at init {std:.4f}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    rng, item, t0 = np.random.default_rng(0), 0, time.time()
    for step in range(args.steps):
        batch, item = samples("train", item, 8, rng, side)
        out = model.forward_refvos(batch)
        opt.zero_grad()
        out.weighted(WEIGHTS).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 25 == 0 or step + 1 == args.steps:
            with torch.no_grad():
                held = model.forward_refvos(val)
            print(f"step {step + 1}: held-out Dice loss {float(held.mask_dice):.3f}  "
                  f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
