"""What the ``[SEG]`` pass knows about its target: *whether* it is in the video, and *where* on a keyframe.

Features come from the inference path (``MomentSeg``: the dense ``[FIND]`` pass, MCS keyframes, the context
frames, the ``[SEG]`` pass) for every expression of videos ``0..N-1`` of the synthetic ``train`` split (fit) and
of the ``val`` split (score); the model stays frozen, each probe is a small classifier fitted on top.

- **Presence**: logistic regression (classes balanced, L2 ``PRESENCE_L2``) from what the ``[SEG]`` head reads
  (the token's last hidden state plus the bag-of-words query) to "the expression has a target". Reported: the
  held-out AUC, and at the threshold that empties ``NO_TARGET_AIM`` of the no-target expressions (the issue's
  bar), the share of target expressions that would keep their mask. A model that could say "not there" from its
  ``[SEG]`` state needs that share near 1.
- **Pointing**: on every keyframe where the target shows (object share ≥ ``MIN_SHARE`` in some token) and at
  least two of the keyframe's merged image tokens hold an object, which object-holding token scores highest
  under a probe fitted on the image tokens' last hidden states: *objectness* (a linear score of the token
  alone) and *query* (the same plus a rank-``RANK`` bilinear term between the token and the ``[SEG]`` head input).
  Hit = that token holds the target; chance = the share of object-holding tokens that do. A query probe at
  chance means the language model's keyframe tokens do not say which object the text means.

    python benchmarks/seg_state_probe.py --model src/momentseg/embedded --train-videos 150 --val-videos 60 \\
        --json benchmarks/results/seg_state_probe.json
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
from momentseg.data.synthetic.split import expression_flags
from momentseg.io.atomic import atomic_write_text
from momentseg.io.video import open_video
from momentseg.model.processing import IMAGE
from momentseg.pipeline import MomentSeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from find_probe import auc  # noqa: E402

MIN_SHARE = 0.05
NO_TARGET_AIM = 0.8
PRESENCE_L2 = 1e-3
RANK = 32
POINT_STEPS = 600
POINT_BATCH = 64


def token_share(masks: np.ndarray, side: tuple[int, int]) -> torch.Tensor:
    """Per frame and merged image token (K, h·w): the share of its pixels inside ``masks`` (K,H,W)."""
    return F.adaptive_avg_pool2d(torch.tensor(masks, dtype=torch.float32)[:, None], side).flatten(1)


@torch.no_grad()
def collect(pipe: MomentSeg, split: str, videos: int) -> list[dict]:
    """Per expression: the [SEG] head input ``q`` (d,), its kind and world flags; with a target, also the
    keyframes' image-token states ``tokens`` (K, n, d) and per token the target's / any object's pixel share
    ``target`` / ``objects`` (K, n)."""
    model, items = pipe.model, []
    for i in range(videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        video = open_video(v.frames, fps=v.fps)
        texts = [e.text for e in v.expressions]
        dense = pipe.dense_frames(video)
        groundings = pipe._ground_all(video, texts, dense, pipe._lowres(video, dense))
        context = pipe.context_frames(video)
        any_object = np.any(np.stack(list(v.object_masks.values())), axis=0)
        for e, g in zip(v.expressions, groundings, strict=True):
            keys = pipe.keyframes(g).indices
            batch = model.processor.refvos([pipe._keyframe_images(video, keys)], [e.text], [context])
            hidden = model.llm_hidden(batch)
            rows = model._token_rows(hidden, batch.token_positions)
            item = {"q": model._head_inputs(rows, [batch.query_ids(0)], torch.float32)[0], "kind": e.kind,
                    "flags": expression_flags(v, e)}
            if e.obj_ids:
                grid = batch.images.grid_thw[0]
                side = (int(grid[1]) // model.layout.merge_size, int(grid[2]) // model.layout.merge_size)
                tokens = hidden[0][batch.mm_token_type_ids[0] == IMAGE].float()
                item.update(tokens=tokens.reshape(len(keys), -1, tokens.shape[-1]),
                            target=token_share(v.expression_masks(e)[keys], side),
                            objects=token_share(any_object[keys], side))
            items.append(item)
    return items


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [(x - mu) / sd for x in (train, *others)]


def presence(train: list[dict], val: list[dict]) -> dict:
    """Balanced L2 logistic regression on the [SEG] head input → has a target; held-out AUC and the target
    expressions kept at the threshold that empties NO_TARGET_AIM of the no-target ones."""
    x, xv = _standardise(torch.stack([it["q"] for it in train]), torch.stack([it["q"] for it in val]))
    y = torch.tensor([not it["flags"]["none"] for it in train], dtype=torch.float32)
    yv = np.array([not it["flags"]["none"] for it in val])
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)
    pos_weight = (1 - y.mean()) / y.mean().clamp(min=1e-6)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y, pos_weight=pos_weight) + PRESENCE_L2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    scores = (xv @ w + b).detach().numpy()
    if yv.all() or not yv.any():
        return {"auc": None, "no_target": int((~yv).sum()), "target": int(yv.sum())}
    threshold = np.quantile(scores[~yv], NO_TARGET_AIM)  # NO_TARGET_AIM of the no-target ones score below it
    return {"auc": auc(scores, yv), "target_kept_at_aim": float((scores[yv] > threshold).mean()),
            "no_target": int((~yv).sum()), "target": int(yv.sum())}


def _fit_pointer(train: list[dict], dim: int, with_query: bool, seed: int = 0):
    """Token score = w·t + b (+ (V t)·(U q) with the query); BCE against "the token holds the target"."""
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(dim, RANK, generator=g) * 0.05).requires_grad_()
    v = (torch.randn(dim, RANK, generator=g) * 0.05).requires_grad_()
    w = torch.zeros(dim, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([u, v, w, b], lr=3e-3, weight_decay=1e-4)

    def score(q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        s = tokens @ w + b
        return s + (tokens @ v) @ (u.T @ q) if with_query else s

    rng = np.random.default_rng(seed)
    for _ in range(POINT_STEPS):
        picks = rng.choice(len(train), min(POINT_BATCH, len(train)))
        loss = sum(F.binary_cross_entropy_with_logits(score(train[j]["q"], train[j]["tokens"]),
                                                      (train[j]["target"] > MIN_SHARE).float()) for j in picks)
        opt.zero_grad()
        (loss / len(picks)).backward()
        opt.step()
    return lambda q, tokens: score(q, tokens).detach()


def pointing(train: list[dict], val: list[dict]) -> dict:
    """Hit rate of each pointer's top object token against chance, overall, by kind and on look-alikes."""
    train, val = [it for it in train if "tokens" in it], [it for it in val if "tokens" in it]
    if not train or not val:
        return {}
    dim = train[0]["tokens"].shape[-1]
    q_all = _standardise(torch.stack([it["q"] for it in train]), torch.stack([it["q"] for it in val]))
    t_train = torch.cat([it["tokens"].reshape(-1, dim) for it in train])
    mu, sd = t_train.mean(0), t_train.std(0) + 1e-6
    prep = [[dict(it, q=q, tokens=(it["tokens"] - mu) / sd) for it, q in zip(items, qs, strict=True)]
            for items, qs in ((train, q_all[0]), (val, q_all[1]))]
    result = {}
    for name, with_query in (("objectness", False), ("query", True)):
        score = _fit_pointer(prep[0], dim, with_query)
        groups: dict[str, list[tuple[float, float]]] = {}
        for it in prep[1]:
            s = score(it["q"], it["tokens"])
            for k in range(s.shape[0]):
                holds = it["objects"][k] > MIN_SHARE
                if it["target"][k].max() <= MIN_SHARE or int(holds.sum()) < 2:
                    continue
                top = int(s[k].masked_fill(~holds, -torch.inf).argmax())
                hit = float(it["target"][k][top] > MIN_SHARE)
                chance = float((it["target"][k][holds] > MIN_SHARE).float().mean())
                for key in ["all", it["kind"]] + (["lookalike"] if it["flags"]["lookalike"] else []):
                    groups.setdefault(key, []).append((hit, chance))
        result[name] = {k: {"hit": float(np.mean([h for h, _ in v])), "chance": float(np.mean([c for _, c in v])),
                            "keyframes": len(v)} for k, v in sorted(groups.items())}
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="src/momentseg/embedded", help="a model folder")
    ap.add_argument("--train-videos", type=int, default=150, help="train-split videos 0..N-1 to fit the probes on")
    ap.add_argument("--val-videos", type=int, default=60, help="val-split videos 0..N-1 to score them on")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.train_videos < 1 or args.val_videos < 1:
        ap.error("--train-videos and --val-videos must be ≥ 1")
    torch.manual_seed(0)
    pipe = MomentSeg.from_pretrained(args.model, device="cpu")
    train, val = collect(pipe, "train", args.train_videos), collect(pipe, "val", args.val_videos)
    result = {"presence": presence(train, val), "pointing": pointing(train, val),
              "expressions": {"train": len(train), "val": len(val)}, "args": vars(args)}
    print(json.dumps(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
