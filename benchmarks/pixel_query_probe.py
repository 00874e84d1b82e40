"""How much of "which object" can the tiny preset's pixel query read from SAM2's S/4 features?

The tiny preset's ``[SEG]`` head also outputs a pixel query ``w · feature(x) + b`` over SAM2's S/4 features
(``MomentSegConfig.seg_pixel_query``). This probe isolates that path from the language model: single frames of
the synthetic world (train split to fit, val split to score), one visible object each, its words as the text
— ``colour`` ("red"), ``shape`` ("triangle") or ``both`` — a bag-of-words embedding (std 6, as the tiny
preset's query bag) → a two-layer head (output layer at zero, gain ``--scale``) → (w, b), BCE 2 + Dice 0.5 on
the S/4 mask (32 × 32 at SAM2 128²), AdamW lr 1e-3. ``--tune-encoder`` also trains SAM2's image encoder and
``conv_s0`` (the fine-tuning recipe freezes the encoder). ``oracle`` fits one (w, b) per object and frame by
logistic regression instead (an upper bound for any text → query map). ``learned`` reads the queries a trained
model's ``[SEG]`` head gives (``--model``): for each expression with a target on test videos 0..``--videos``-1, its
first target frame as the keyframe, the video's context frames: the queries' mean norm (weights and bias, after
``pixel_query_scale``) and the mean cosine between the queries of two expressions of one video. ``decoder`` asks
whether a trained model's masks depend on the text, and through which path: on the middle frame of each test
video, every expression's ``[SEG]`` embedding decodes that frame (a conditioning frame) once as the prompt token
alone and once with its pixel query; for each visible object the mean mask logit on its pixels. Reported: the
spread of an object's logit across the video's expressions (std, mean over objects) against the spread across
the objects for one expression (std, mean over expressions) — a decoder that ignores the token has the first
near 0.

Reported: mean IoU on the val frames, and the IoU of predicting every object's pixels ("all shapes": what a
query that ignores the text scores).

    python benchmarks/pixel_query_probe.py --mode shape --json benchmarks/results/pixel_query_probe_shape.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from momentseg.data import synthetic as syn
from momentseg.io.atomic import atomic_write_text
from momentseg.model import MomentSegModel
from momentseg.sam2.config import preprocess_for_sam2

MODES = ("colour", "shape", "both", "oracle", "learned", "decoder")


def _cells(mask: np.ndarray, side: int) -> torch.Tensor:
    """(side², ) 0/1: the S/4 cells at least 30 % covered by ``mask``."""
    m = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    return (F.interpolate(m, size=(side, side), mode="area")[0, 0].flatten() > 0.3).float()


def build(sam2, split: str, n: int, mode: str, stride: int = 7, min_pixels: int = 15):
    """n items (pixels (3,S,S), target cells, all-objects cells, word ids) from frames 0, stride, … of the
    split's videos, one per visible object with a named colour."""
    words = list(syn.COLOURS) + list(syn.SHAPES)
    size = sam2.config.image_size
    side = size // 4
    items, seed, i = [], syn.SPLIT_SEEDS[split], 0
    while len(items) < n:
        v = syn.generate_video(syn.video_seed(seed, i), syn.video_id(i))
        i += 1
        for f in range(0, v.num_frames, stride):
            px = preprocess_for_sam2(v.frames[[f]], size)[0]
            everything = np.zeros(v.frames.shape[1:3], bool)
            for tr in v.objects:
                everything |= v.object_masks[tr.obj_id][f]
            for tr in v.objects:
                mask = v.object_masks[tr.obj_id][f]
                if mask.sum() < min_pixels or tr.colour[f] < 0:
                    continue
                colour = syn.COLOURS[tr.colour[f]]
                text = {"colour": [colour], "shape": [tr.shape]}.get(mode, [colour, tr.shape])
                items.append((px, _cells(mask, side), _cells(everything, side), [words.index(w) for w in text]))
    return items[:n], len(words)


def iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, y = logits > 0, target > 0
    return (p & y).sum(-1).float() / (p | y).sum(-1).clamp(min=1)


class Probe(nn.Module):
    def __init__(self, vocab: int, channels: int, scale: float, hidden: int = 128):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab, hidden, mode="mean")
        nn.init.normal_(self.bag.weight, std=6.0)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, channels + 1))
        nn.init.zeros_(self.head[2].weight)
        nn.init.zeros_(self.head[2].bias)
        self.offset = nn.Parameter(torch.tensor(-2.0))  # background starts negative, as SAM2's masks do
        self.scale = scale

    def forward(self, feats: torch.Tensor, words: list[list[int]]) -> torch.Tensor:
        """feats (B, HW, C) → logits (B, HW)."""
        bag = torch.stack([self.bag(torch.tensor(w)[None])[0] for w in words])
        q = self.head(bag) * self.scale
        c = feats.shape[-1]
        return torch.einsum("bnc,bc->bn", feats, q[:, :c]) + q[:, c:] + self.offset


def s4_features(sam2, px: torch.Tensor, coarse: bool = False) -> torch.Tensor:
    """(B,3,S,S) → (B, (S/4)², C0): SAM2's S/4 features (after ``conv_s0``), as the pixel query reads them;
    ``coarse`` (``--coarse``): also the S/16 image embedding bilinearly upsampled to S/4 (B, (S/4)², C0 + C) —
    SAM2's FPN gives the S/4 level no top-down path, so that is where any larger context would come from. The
    map the model's coarse pixel query reads (``MomentSegSam2.pixel_features``)."""
    feats = sam2.pixel_features(px)
    if not coarse:
        feats = feats[:, : sam2.language_dims[1]]
    return feats.flatten(2).transpose(1, 2)


def run_text(sam2, train, test, vocab, args) -> dict:
    tune = args.tune_encoder
    extra = list(sam2.vision_encoder.parameters()) + list(sam2.mask_decoder.conv_s0.parameters()) if tune else []
    for p in sam2.parameters():
        p.requires_grad_(False)
    for p in extra:
        p.requires_grad_(True)
    with torch.no_grad():
        cached = None if tune else [s4_features(sam2, torch.stack([t[0] for t in train[i:i + 64]]), args.coarse)
                                    for i in range(0, len(train), 64)]
    cached = None if cached is None else torch.cat(cached)
    channels = sam2.mask_decoder.conv_s0.out_channels
    channels += sam2.config.mask_decoder_config.hidden_size if args.coarse else 0
    probe = Probe(vocab, channels, args.scale)
    opt = torch.optim.AdamW(list(probe.parameters()) + extra, lr=1e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(args.seed)
    curve = []
    for step in range(args.steps):
        idx = torch.randint(0, len(train), (args.batch,), generator=gen).tolist()
        if cached is not None:
            feats = cached[idx]
        else:
            feats = s4_features(sam2, torch.stack([train[i][0] for i in idx]), args.coarse)
        y = torch.stack([train[i][1] for i in idx])
        logits = probe(feats, [train[i][3] for i in idx])
        prob = logits.sigmoid()
        dice = 1 - (2 * (prob * y).sum(1) + 1) / (prob.sum(1) + y.sum(1) + 1)
        loss = 2 * F.binary_cross_entropy_with_logits(logits, y) + 0.5 * dice.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            curve.append({"step": step + 1, "val_iou": evaluate(sam2, probe, test, args.coarse)})
            print(curve[-1], flush=True)
    return {"val_iou": curve[-1]["val_iou"], "curve": curve}


@torch.no_grad()
def evaluate(sam2, probe, test, coarse: bool) -> float:
    scores = []
    for i in range(0, len(test), 64):
        chunk = test[i:i + 64]
        feats = s4_features(sam2, torch.stack([t[0] for t in chunk]), coarse)
        scores.append(iou(probe(feats, [t[3] for t in chunk]), torch.stack([t[1] for t in chunk])))
    return float(torch.cat(scores).mean())


def run_oracle(sam2, test, steps: int, coarse: bool) -> dict:
    """One logistic regression (w, b) per item, fitted on that item's own frame: the best a linear query can do."""
    scores, norms = [], []
    for px, y, _, _ in test:
        with torch.no_grad():
            x = s4_features(sam2, px[None], coarse)[0]
        w = torch.zeros(x.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=0.1)
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(x @ w + b, y, pos_weight=torch.tensor(5.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            scores.append(float(iou(x @ w + b, y)))
            norms.append(float(w.norm()))
    return {"val_iou": float(np.mean(scores)), "query_norm_median": float(np.median(norms))}


def _test_videos(n: int, context_frames: int):
    """Test videos 0..n-1 and their [SEG] context frames (uniform over the video, as the pipeline takes them)."""
    from momentseg.grounding.sampling import uniform_frames

    for i in range(n):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS["test"], i), syn.video_id(i))
        yield v, v.frames[uniform_frames(v.num_frames, context_frames)]


@torch.no_grad()
def run_learned(model_dir: str, videos: int) -> dict:
    model = MomentSegModel.from_pretrained(model_dir).eval()
    c = model.config
    if not c.seg_pixel_query:
        raise SystemExit(f"{model_dir}: this model's [SEG] head has no pixel query")
    norms, cosines = [], []
    for v, context in _test_videos(videos, c.context_frames):
        queries = []
        for e in v.expressions:
            visible = np.flatnonzero(v.expression_masks(e).any(axis=(1, 2)))
            if len(visible):
                emb, _ = model.seg_embedding(v.frames[visible[:1]], e.text, context=context)
                queries.append(emb[c.prompt_dim:].float())
        q = torch.stack(queries)
        norms += q.norm(dim=1).tolist()
        cos = F.cosine_similarity(q[:, None], q[None], dim=-1)
        n = len(q)
        if n > 1:
            cosines.append(float((cos.sum() - cos.diag().sum()) / (n * n - n)))
    return {"query_norm_mean": float(np.mean(norms)), "pair_cosine_mean": float(np.mean(cosines)),
            "expressions": len(norms), "videos": videos}


@torch.no_grad()
def run_decoder(model_dir: str, videos: int) -> dict:

    model = MomentSegModel.from_pretrained(model_dir).eval()
    c = model.config
    out = {}
    for path, width in (("token", c.prompt_dim), ("token+pixel query", c.seg_dim)):
        across_texts, across_objects = [], []
        for v, context in _test_videos(videos, c.context_frames):
            f = v.num_frames // 2
            masks = [m[f] for m in v.object_masks.values() if m[f].sum() >= 15]
            px = preprocess_for_sam2(v.frames[[f]], c.sam2_image_size)
            table = []  # (expressions, objects) mean logit
            for e in v.expressions:
                emb, _ = model.seg_embedding(v.frames[[f]], e.text, context=context)
                low, _ = model.sam2.decode_clip(px, emb[:width], cond_frames=(0,))
                up = F.interpolate(low[:, None].float(), size=v.frames.shape[1:3], mode="bilinear")[0, 0]
                table.append([float(up[torch.as_tensor(m)].mean()) for m in masks])
            t = np.asarray(table)
            if t.shape[1] >= 2 and t.shape[0] >= 2:
                across_texts.append(float(t.std(axis=0).mean()))
                across_objects.append(float(t.std(axis=1).mean()))
        out[path] = {"std_across_expressions": float(np.mean(across_texts)),
                     "std_across_objects": float(np.mean(across_objects))}
    return {"paths": out, "videos": videos}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sam2", default="pretrained/tiny-sam2", help="model folder whose SAM2 is probed")
    ap.add_argument("--mode", choices=MODES, default="both")
    ap.add_argument("--scale", type=float, default=16.0, help="gain on the head's output (pixel_query_scale)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--train-items", type=int, default=600)
    ap.add_argument("--val-items", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--tune-encoder", action="store_true", help="also train SAM2's image encoder and conv_s0")
    ap.add_argument("--coarse", action="store_true",
                    help="colour / shape / both / oracle: the query also reads the S/16 image embedding")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", help="learned / decoder: the trained model folder")
    ap.add_argument("--videos", type=int, default=5, help="learned / decoder: test videos 0..N-1")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.train_items < 1 or args.val_items < 1 or args.batch < 1:
        ap.error("--steps, --batch, --train-items and --val-items must be ≥ 1")
    torch.manual_seed(args.seed)
    if args.mode in ("learned", "decoder"):
        if not args.model:
            ap.error(f"--mode {args.mode} needs --model")
        result = (run_learned if args.mode == "learned" else run_decoder)(args.model, args.videos)
        result.update(mode=args.mode, args=vars(args))
        print(f"{args.mode}: {json.dumps({k: v for k, v in result.items() if k != 'args'})}")
        if args.json:
            atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
        return
    sam2 = MomentSegModel.from_pretrained(args.sam2).sam2.eval()
    test, vocab = build(sam2, "val", args.val_items, args.mode)
    baseline = float(torch.stack([iou(t[2] * 2 - 1, t[1]) for t in test]).mean())
    if args.mode == "oracle":
        result = run_oracle(sam2, test, args.steps, args.coarse)
    else:
        train, _ = build(sam2, "train", args.train_items, args.mode)
        result = run_text(sam2, train, test, vocab, args)
    result.update(mode=args.mode, all_shapes_iou=baseline, args=vars(args))
    print(f"{args.mode}: val IoU {result['val_iou']:.3f} (all shapes {baseline:.3f})")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
