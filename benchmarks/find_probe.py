"""What the dense ``[FIND]`` pass's frame features carry, and how well its curve ranks frames.

- **Ranking**: for every expression with a moment on videos ``0..N-1`` of a synthetic split, the AUC of its
  per-frame ``[FIND]`` logits (frames inside the ground-truth moment against the others; 0.5 = no information),
  overall and by expression kind. Unlike R1@IoU this scores the curve itself, before thresholding.
- **Position vs content**: the per-frame features the curve is the cosine of (``find_head`` on the video tokens,
  pooled per frame) on the first 20 dense frames of each video, split into their mean over videos and frames
  (*grand*), the mean over videos at each frame minus the grand mean (*position*: the same for every video)
  and each video's deviation from that (*content*); mean vector norms. Measured on the video tokens after the
  language model (what the method reads) and straight out of the vision tower (what the language model is
  given). A curve built on features with no content can only encode a prior over time.
- **Peak placement**: for expressions with one moment, where the curve's peak (the mean time of its
  ``PEAK_FRAMES`` highest frames) falls: before, inside or after the moment, by kind.
- **Top-1 windows**: the window ``MomentSeg.ground`` answers first, by kind: how often some frame passes the
  threshold (*confident*), its mean length as a share of the video against the ground truth's, its mean tIoU
  with the best-matching ground-truth window and R1@0.5 — whether a weak curve gives too long or misplaced
  windows.
- **Event head** (a model with one, ``config.event_classes``): on the same first frames, per event kind, the AUC of
  ``event_head`` on the video tokens that show an object (object share ≥ ``EVENT_MIN_SHARE``: a token covers
  ≈ 40 × 40 video pixels, a shape at most ≈ 12 % of that), positives those whose object pixels are mostly inside
  an event of that kind: whether the video tokens say what happens to the object they show.

    python benchmarks/find_probe.py --model src/momentseg/embedded --videos 10 --json benchmarks/results/find_probe.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from momentseg.data import synthetic as syn
from momentseg.eval.tsg import temporal_iou
from momentseg.io.atomic import atomic_write_text
from momentseg.io.video import open_video
from momentseg.model.momentseg import event_token_targets
from momentseg.model.processing import VIDEO
from momentseg.pipeline import MomentSeg

FEATURE_FRAMES = 20
PEAK_FRAMES = 3
EVENT_MIN_SHARE = 0.04
PLACES = ("before", "inside", "after")


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """P(score of a positive frame > score of a negative one), ties counted half; None without both kinds."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def _decompose(feats: np.ndarray) -> dict:
    grand = feats.mean((0, 1))
    position = feats.mean(0) - grand
    content = feats - feats.mean(0)
    return {"grand": float(np.linalg.norm(grand)), "position": float(np.linalg.norm(position, axis=1).mean()),
            "content": float(np.linalg.norm(content, axis=2).mean())}


def _windows(rows: np.ndarray) -> dict:
    """Means over (confident, predicted share, true share, tIoU) rows, and R1@0.5."""
    return {"confident": float(rows[:, 0].mean()), "predicted_share": float(rows[:, 1].mean()),
            "true_share": float(rows[:, 2].mean()), "tiou": float(rows[:, 3].mean()),
            "R1@0.5": float((rows[:, 3] >= 0.5).mean()), "n": len(rows)}


@torch.no_grad()
def measure(pipe: MomentSeg, videos: int, split: str) -> dict:
    model = pipe.model
    by_kind: dict[str, list[float]] = {}
    peaks: dict[str, list[str]] = {}
    windows: dict[str, list[tuple[float, ...]]] = {}
    feats: dict[str, list[np.ndarray]] = {"after_llm": [], "vision_tower": []}
    events: dict[str, list[np.ndarray]] = {"scores": [], "inside": []}
    for i in range(videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        video = open_video(v.frames, fps=v.fps)
        dense = pipe.dense_frames(video)
        lowres = pipe._lowres(video, dense)
        logits = model.find_logits_many(lowres, [e.text for e in v.expressions]).numpy()
        t = video.timestamps[dense]
        grounded = [e for e in v.expressions if e.moments]
        duration = v.num_frames / v.fps
        for e, g in zip(grounded, pipe.ground_many(video, [e.text for e in grounded]), strict=True):
            top = g.moments[0][:2]
            windows.setdefault(e.kind, []).append((
                float(g.confident), (top[1] - top[0]) / duration, sum(b - a for a, b in e.moments) / duration,
                float(temporal_iou([top], e.moments).max())))
        for e, row in zip(v.expressions, logits, strict=True):
            if e.moments:
                inside = np.zeros(len(t), bool)
                for start, end in e.moments:
                    inside |= (t >= start) & (t <= end)
                a = auc(row, inside)
                if a is not None:
                    by_kind.setdefault(e.kind, []).append(a)
                if len(e.moments) == 1:
                    (start, end), peak = e.moments[0], float(t[np.argsort(row)[-PEAK_FRAMES:]].mean())
                    place = "before" if peak < start else "after" if peak > end else "inside"
                    peaks.setdefault(e.kind, []).append(place)
        first = lowres[:FEATURE_FRAMES]
        batch = model.processor.tsg([first], [v.expressions[0].text])
        n_t = int(batch.videos.grid_thw[0, 0])
        hidden = model.llm_hidden(batch)[0][batch.mm_token_type_ids[0] == VIDEO]
        tower = model.video_tokens([model.processor.video(first, model.config.find_frame_size)])[0]
        feats["after_llm"].append(model._frame_features(hidden, n_t, len(first)).numpy())
        if model.config.event_classes:
            lay, grid = model.layout, batch.videos.grid_thw[0]
            share, among = event_token_targets(v.pixel_events(dense[:FEATURE_FRAMES]), model.config.event_classes,
                                               n_t, lay.temporal_patch_size,
                                               (int(grid[1]) // lay.merge_size, int(grid[2]) // lay.merge_size))
            keep = (share >= EVENT_MIN_SHARE).numpy()
            events["scores"].append(model.event_head(hidden).numpy()[keep])
            events["inside"].append(among.numpy()[keep] >= 0.5)
        feats["vision_tower"].append(model._frame_features(tower, n_t, len(first)).numpy())
    every = [a for v in by_kind.values() for a in v]
    result = {
        "auc": float(np.mean(every)), "expressions": len(every),
        "auc_by_kind": {k: {"auc": float(np.mean(v)), "n": len(v)} for k, v in sorted(by_kind.items())},
        "frame_features": {k: _decompose(np.stack(v)) for k, v in feats.items()},
        "peak_placement": {k: {p: v.count(p) / len(v) for p in PLACES} | {"n": len(v)} for k, v in sorted(peaks.items())},
        "top1_windows": {k: _windows(np.array(v)) for k, v in sorted(windows.items())},
    }
    if events["scores"]:
        scores, inside = np.concatenate(events["scores"]), np.concatenate(events["inside"])
        result["event_head"] = {kind: {"auc": auc(scores[:, j], inside[:, j]), "positives": int(inside[:, j].sum()),
                                       "tokens": len(inside)} for j, kind in enumerate(syn.EVENT_KINDS)}
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="src/momentseg/embedded", help="a model folder")
    ap.add_argument("--videos", type=int, default=10, help="videos 0..N-1 of the split")
    ap.add_argument("--split", default="val", choices=("train", "val", "test"))
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.videos < 1:
        ap.error("--videos must be ≥ 1")
    result = measure(MomentSeg.from_pretrained(args.model, device="cpu"), args.videos, args.split)
    result["args"] = vars(args)
    print(json.dumps(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
