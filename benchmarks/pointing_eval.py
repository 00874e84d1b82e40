"""Where the ``[SEG]`` pass's pointing head points (a model with ``seg_pointing``; BENCHMARKS.md, "Round 12").

For every expression of synthetic videos ``0..N-1`` of a split, the inference path runs (``MomentSeg``: the dense
``[FIND]`` pass, MCS keyframes, the ``[SEG]`` pass with its context), and the spatial prior it hands SAM2 — one
map per context temporal patch over the merged context tokens — is scored against the truth:

- **Pointing**: on every context patch where the target shows (target share ≥ ``MIN_SHARE`` in some token) and
  at least two tokens hold an object, the object-holding token with the highest prior. Hit = it holds the
  target; chance = the share of object-holding tokens that do. Overall, by expression kind, and where the
  target has a look-alike; appearance expressions also split by what they name (``appearance:colour`` when a
  colour word of the world, ``appearance:shape`` when only a shape or size: "the triangle"); overall and by kind
  also by when the patch is against the expression's ground-truth moment (``all@inside``, ``event@before``,
  ``…@after``: the text describes the target inside its moment only). The same measure
  as ``seg_state_probe.py``'s pointing, there on keyframe tokens with a fitted probe, here on context tokens
  with the trained head.
- **Presence**: AUC of the presence logit (the maximum over the video of the presence head's map, or of the
  pointing map without one; target vs no-target expressions), the share of target expressions kept at the
  threshold that flags ``NO_TARGET_AIM`` of the no-target ones, and at each of ``THRESHOLDS`` the shares of
  no-target expressions flagged and of target expressions lost; ``by_text`` gives the AUC and those shares apart
  for the texts that name a colour and a shape and for the others.

    python benchmarks/pointing_eval.py --model runs/tiny-pointing/final --videos 60 --split val \\
        --json benchmarks/results/pointing_eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from momentseg.data import synthetic as syn
from momentseg.data.synthetic.split import expression_flags
from momentseg.io.atomic import atomic_write_text
from momentseg.io.video import open_video
from momentseg.model.momentseg import token_pool
from momentseg.pipeline import MomentSeg

#: presence thresholds at which the shares of no-target expressions flagged and of target expressions lost are given
THRESHOLDS = (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from find_probe import auc  # noqa: E402
from seg_state_probe import MIN_SHARE, NO_TARGET_AIM  # noqa: E402

COLOUR_WORDS = set(syn.COLOURS)
SHAPE_WORDS = set(syn.SHAPES)


@torch.no_grad()
def collect(pipe: MomentSeg, split: str, videos: int) -> list[dict]:
    """Per expression: its kind, flags, the prior (J, h, w), the presence logit and, with a target, per context token the target's
    and any object's pixel share (J, h, w)."""
    model, items = pipe.model, []
    tps = model.layout.temporal_patch_size
    for i in range(videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        video = open_video(v.frames, fps=v.fps)
        texts = [e.text for e in v.expressions]
        dense = pipe.dense_frames(video)
        groundings = pipe._ground_all(video, texts, dense, pipe._lowres(video, dense))
        context = pipe.context_frames(video)
        ctx = pipe._context_indices(video)
        any_object = np.any(np.stack(list(v.object_masks.values())), axis=0)[ctx]
        for e, g in zip(v.expressions, groundings, strict=True):
            prompt = pipe.seg_prompt(video, e.text, pipe.keyframes(g).indices, context)
            maps = prompt.prior.maps.float().cpu()
            j, h, w = maps.shape
            when = [moment_relation(t, e.moments) for t in patch_times(ctx, j, tps, v.fps)] if e.moments else None
            item = {"kind": e.kind, "flags": expression_flags(v, e), "maps": maps, "has_target": bool(e.obj_ids),
                    "text": e.text, "presence": prompt.presence, "when": when}
            if e.obj_ids:
                target, objects = token_shares(v.expression_masks(e)[ctx], any_object, (j, h, w), tps)
                item.update(target=target, objects=objects)
            items.append(item)
    return items


def token_shares(target: np.ndarray, objects: np.ndarray, grid: tuple[int, int, int],
                 tps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per merged context token of ``grid`` (J, h, w), the target's and any object's pixel share, from the context
    frames' target and object masks (Tc, H, W) bool."""
    shares = torch.stack([torch.as_tensor(m, dtype=torch.float32) for m in (target, objects)], 1)  # (Tc, 2, H, W)
    j, h, w = grid
    pooled = token_pool(shares, j, tps, (h, w)).reshape(j, h, w, 2)
    return pooled[..., 0], pooled[..., 1]


def patch_times(ctx: np.ndarray, patches: int, tps: int, fps: float) -> np.ndarray:
    """The time (s) of each of ``patches`` context temporal patches: the mean of its frames' times."""
    return np.asarray(ctx, dtype=np.float64)[: patches * tps].reshape(patches, tps).mean(1) / fps


def moment_relation(t: float, moments: list[tuple[float, float]]) -> str:
    """Where time ``t`` (s) lies against an expression's ground-truth ``moments``: inside one, before the first, or
    after (outside every moment, after the first)."""
    if any(a <= t <= b for a, b in moments):
        return "inside"
    return "before" if t < min(a for a, _ in moments) else "after"


def patch_hit(target: torch.Tensor, objects: torch.Tensor, scores: torch.Tensor) -> tuple[float, float] | None:
    """One context patch's (hit, chance) from its tokens' target share, object share and map (each flat), or None
    when the patch is not scored (the target does not show, or fewer than two tokens hold an object)."""
    holds = objects > MIN_SHARE
    if not (target > MIN_SHARE).any() or int(holds.sum()) < 2:
        return None
    top = int(torch.where(holds, scores, torch.tensor(-torch.inf)).argmax())
    return float(target[top] > MIN_SHARE), float((target[holds] > MIN_SHARE).float().mean())


def pointing(items: list[dict]) -> dict:
    groups: dict[str, list[tuple[float, float]]] = {}
    for it in items:
        if not it["has_target"]:
            continue
        for j in range(it["maps"].shape[0]):
            scored = patch_hit(it["target"][j].flatten(), it["objects"][j].flatten(), it["maps"][j].flatten())
            if scored is None:
                continue
            keys = ["all", it["kind"]] + (["lookalike"] if it["flags"].get("lookalike") else [])
            if it.get("when"):
                keys += [f"{k}@{it['when'][j]}" for k in ("all", it["kind"])]
            if it["kind"] == "appearance":
                keys.append("appearance:" + ("colour" if COLOUR_WORDS & set(it["text"].split()) else "shape"))
            for key in keys:
                groups.setdefault(key, []).append(scored)
    return {k: {"hit": float(np.mean([h for h, _ in v])), "chance": float(np.mean([c for _, c in v])), "n": len(v)}
            for k, v in sorted(groups.items())}


def names_colour_and_shape(text: str) -> bool:
    """The text names a colour and a shape ("the small green diamond", "the red star that stops"): most no-target
    texts do, so a presence head can learn that such texts have no target (BENCHMARKS.md, "Round 23")."""
    words = set(text.replace("?", "").split())
    return bool(words & COLOUR_WORDS) and bool(words & SHAPE_WORDS)


def presence(items: list[dict]) -> dict:
    score = np.array([it["presence"] for it in items])
    label = np.array([it["has_target"] for it in items])
    if label.all() or not label.any():
        return {"auc": None, "targets": int(label.sum()), "no_target": int((~label).sum())}
    threshold = float(np.quantile(score[~label], NO_TARGET_AIM))
    both = np.array([names_colour_and_shape(it["text"]) for it in items])
    return {"auc": auc(score, label), "kept_at_aim": float((score[label] > threshold).mean()),
            "by_threshold": _by_threshold(score, label), "targets": int(label.sum()), "no_target": int((~label).sum()),
            # the same, apart for the texts that name a colour and a shape and for the others
            "by_text": {name: {"auc": auc(score[sel], label[sel]) if 0 < label[sel].sum() < sel.sum() else None,
                               "targets": int(label[sel].sum()), "no_target": int((~label[sel]).sum()),
                               "by_threshold": _by_threshold(score[sel], label[sel])}
                        for name, sel in (("colour+shape", both), ("other", ~both))}}


def _by_threshold(score: np.ndarray, label: np.ndarray) -> dict:
    """At each of THRESHOLDS, the shares of no-target texts flagged and of target texts lost (a text is flagged
    "no target" below the threshold: MomentSegConfig.point_presence_threshold)."""
    return {str(x): {"no_target_flagged": _share(score[~label] < x), "targets_lost": _share(score[label] < x)}
            for x in THRESHOLDS}


def _share(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a model folder with a pointing head")
    ap.add_argument("--videos", type=int, default=60, help="videos 0..N-1 of the split")
    ap.add_argument("--split", default="val", choices=sorted(syn.SPLIT_SEEDS))
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.videos < 1:
        ap.error("--videos must be ≥ 1")
    pipe = MomentSeg.from_pretrained(args.model, device="cpu")
    if not pipe.model.config.seg_pointing:
        ap.error(f"--model {args.model}: the model has no pointing head (config seg_pointing is false)")
    items = collect(pipe, args.split, args.videos)
    result = {"pointing": pointing(items), "presence": presence(items), "expressions": len(items), "args": vars(args)}
    print(json.dumps(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
