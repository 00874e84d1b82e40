"""Does a tiny SAM2's mask decoder follow its prompt, and how many steps does a fresh one need to learn to?

Frames: 4 random frames of each of videos ``0..N-1`` of a synthetic split where ≥ 2 objects show ≥ 20 pixels;
every such object is clicked once (a random pixel of its mask, SAM2 input pixels) and decoded on that frame alone
(a conditioning frame, no memory). Three numbers, masks at SAM2's S/4 resolution:

- ``own_iou``: IoU of the mask (logit > 0) with the clicked object's mask;
- ``others_covered``: share of the other objects' pixels inside it (1 = "segment every shape");
- ``prompt_sensitivity``: mean |logit difference| between the masks of the first two objects of a frame over
  the mean |logit| (0 = the mask does not depend on the click; logits clamped at −32, as a frame scored
  "no object" gets −1024 everywhere).

Modes:

- ``--model DIR``: a checkpoint's SAM2, measured on val frames through ``MomentSegSam2.decode_prompted_clip``
  (the path training and tracking run);
- ``--train-steps N``: the diagnostic of BENCHMARKS.md "Stage 1e": that checkpoint's image encoder frozen, its
  mask decoder replaced by a fresh one (this project's tiny-SAM2 init, seed 0) and trained on this click task
  alone (train split frames; 4 frames per step, every object of a frame; mask BCE + Dice and object-score BCE
  (every clicked object is present) per object, AdamW lr 1e-3);
  the three numbers on the val frames every ``--every`` steps. Image features are computed once per frame
  (so the decoder's ``conv_s0`` / ``conv_s1``, which the image-feature call applies, keep their init).

    python benchmarks/prompt_probe.py --model pretrained/tiny-sam2-classes --json benchmarks/results/prompt_probe_stage1.json
    python benchmarks/prompt_probe.py --model pretrained/tiny-sam2-classes --train-steps 2000 \\
        --json benchmarks/results/prompt_probe_fresh_decoder.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from momentseg.data import synthetic as syn
from momentseg.io.atomic import atomic_write_text
from momentseg.model import MomentSegModel
from momentseg.sam2.config import preprocess_for_sam2, tiny_sam2_config
from momentseg.sam2.video import build_sam2

MIN_PIXELS = 20


def frames(sam2, split: str, videos: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(preprocessed frame (1,3,S,S), object masks (N,S,S) bool) for 4 random frames of each video."""
    s = sam2.config.image_size
    rng, out = np.random.default_rng(seed), []
    for i in range(videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        for f in rng.choice(v.num_frames, 4, replace=False):
            objs = [m[f] for m in v.object_masks.values() if m[f].sum() >= MIN_PIXELS]
            if len(objs) < 2:
                continue
            masks = torch.as_tensor(np.stack(objs), dtype=torch.float32)[:, None]
            masks = F.interpolate(masks, size=(s, s), mode="area")[:, 0] > 0.5
            keep = masks.flatten(1).any(1)
            if int(keep.sum()) >= 2:
                out.append((preprocess_for_sam2(v.frames[f][None], s), masks[keep]))
    return out


def clicks(masks: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One random pixel (x, y) inside each mask: (N, 2) float."""
    out = []
    for m in masks:
        ys, xs = np.nonzero(m.numpy())
        j = int(rng.integers(len(xs)))
        out.append([float(xs[j]), float(ys[j])])
    return torch.tensor(out)


def targets(masks: torch.Tensor, size: int) -> torch.Tensor:
    return (F.interpolate(masks[:, None].float(), size=(size, size), mode="area")[:, 0] > 0.5).float()


def scores(logits: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[float], float]:
    pred, tgt = logits > 0, target > 0.5
    own, others = [], []
    for k in range(len(tgt)):
        rest = tgt.any(0) & ~tgt[k]
        own.append(float((pred[k] & tgt[k]).sum() / (pred[k] | tgt[k]).sum().clamp(min=1)))
        others.append(float((pred[k] & rest).sum() / rest.sum().clamp(min=1)))
    a, b = logits[0].clamp(min=-32), logits[1].clamp(min=-32)  # "no object" frames: -1024 everywhere
    sens = float((a - b).abs().mean() / (a.abs().mean() + 1e-9))
    return own, others, sens


def summary(rows: list[tuple[list[float], list[float], float]]) -> dict:
    return {"own_iou": float(np.mean([x for r in rows for x in r[0]])),
            "others_covered": float(np.mean([x for r in rows for x in r[1]])),
            "prompt_sensitivity": float(np.mean([r[2] for r in rows]))}


@torch.no_grad()
def measure(sam2, items, seed: int = 5) -> dict:
    """The three numbers through ``decode_prompted_clip`` (one frame, every object clicked)."""
    rng, rows = np.random.default_rng(seed), []
    for px, masks in items:
        pts = clicks(masks, rng)
        prompts = [{"obj": k, "frame": 0, "points": [pts[k].tolist()], "labels": [1]} for k in range(len(masks))]
        logits, _ = sam2.decode_prompted_clip(px, prompts)
        rows.append(scores(logits[0], targets(masks, logits.shape[-1])))
    return summary(rows)


class CachedDecoder:
    """Click → mask through the model's own ``_decode`` on image features computed once per frame (a
    conditioning frame: the S/16 map plus SAM2's "no memory" embedding)."""

    def __init__(self, sam2):
        self.sam2, self.cache = sam2, {}

    def features(self, px: torch.Tensor) -> list[torch.Tensor]:
        key = id(px)
        if key not in self.cache:
            sam2 = self.sam2
            with torch.no_grad():
                fpn = sam2.get_image_features(px, return_dict=True).fpn_hidden_states  # (HW, 1, C) each
            maps = sam2.feature_maps(fpn)
            maps[-1] = maps[-1] + sam2.no_memory_embedding.detach().view(1, -1, 1, 1)
            self.cache[key] = maps
        return self.cache[key]

    def __call__(self, px: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        n = pts.shape[0]  # one object per batch row, as tracking decodes them
        points = {"point_coords": pts.view(n, 1, 1, 2), "point_labels": torch.ones(n, 1, 1, dtype=torch.int32)}
        maps = [m.expand(n, -1, -1, -1) for m in self.features(px)]
        out = self.sam2._decode(maps, points, None, False, None)
        return out["pred_masks"][:, 0], out["object_score_logits"].reshape(-1)  # (N, S/4, S/4), (N,)


def train_fresh_decoder(sam2, train_items, val_items, steps: int, every: int, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)
    fresh = build_sam2(tiny_sam2_config(sam2.config.image_size))
    sam2.mask_decoder.load_state_dict(fresh.mask_decoder.state_dict())
    for p in sam2.parameters():
        p.requires_grad_(False)
    for p in sam2.mask_decoder.parameters():
        p.requires_grad_(True)
    decode = CachedDecoder(sam2)
    opt = torch.optim.AdamW(sam2.mask_decoder.parameters(), lr=1e-3, weight_decay=0.05)
    rng, curve, t0 = np.random.default_rng(seed), [], time.perf_counter()

    def evaluate(step: int) -> None:
        r, rows = np.random.default_rng(5), []
        with torch.no_grad():
            for px, masks in val_items:
                logits, _ = decode(px, clicks(masks, r))
                rows.append(scores(logits, targets(masks, logits.shape[-1])))
        curve.append({"step": step, **summary(rows), "seconds": time.perf_counter() - t0})
        print(json.dumps(curve[-1]), flush=True)

    evaluate(0)
    for step in range(1, steps + 1):
        loss = 0.0
        for _ in range(4):
            px, masks = train_items[int(rng.integers(len(train_items)))]
            logits, present = decode(px, clicks(masks, rng))
            y = targets(masks, logits.shape[-1])
            prob = logits.sigmoid().flatten(1)
            dice = 1 - (2 * (prob * y.flatten(1)).sum(1) + 1) / (prob.sum(1) + y.flatten(1).sum(1) + 1)
            loss = loss + F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
            loss = loss + F.binary_cross_entropy_with_logits(present, torch.ones_like(present))
        opt.zero_grad()
        (loss / 4).backward()
        opt.step()
        if step % every == 0:
            evaluate(step)
    return curve


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pretrained/tiny-sam2-classes", help="a model folder (its SAM2 is used)")
    ap.add_argument("--videos", type=int, default=15, help="val videos 0..N-1 to measure on")
    ap.add_argument("--train-steps", type=int, default=0, help="train a fresh decoder this many steps first")
    ap.add_argument("--train-videos", type=int, default=60, help="train videos 0..N-1 for --train-steps")
    ap.add_argument("--every", type=int, default=100, help="measure every N training steps")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if min(args.videos, args.train_videos, args.every) < 1 or args.train_steps < 0:
        ap.error("--videos, --train-videos and --every must be ≥ 1, --train-steps ≥ 0")
    sam2 = MomentSegModel.from_pretrained(args.model).sam2.eval()
    val = frames(sam2, "val", args.videos, seed=1)
    result: dict = {"frames": len(val), "objects": int(sum(len(m) for _, m in val))}
    if args.train_steps:
        result["curve"] = train_fresh_decoder(sam2, frames(sam2, "train", args.train_videos, seed=0), val,
                                              args.train_steps, args.every)
    result["measured"] = measure(sam2, val)
    result["args"] = vars(args)
    print(json.dumps(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
