"""Can the tiny SAM2 image encoder learn *which shape* a pixel belongs to? Per-pixel shape classes of the
synthetic world (background + 6 shapes) from an encoder's S/4 features, against a small CNN on the same data.

The tiny preset's ``[SEG]`` path selects an object through SAM2's S/4 features (the pixel query) or its decoder;
``pixel_query_probe.py`` found colours selectable there and shapes not. This probe asks the simpler question
underneath: with the class labels themselves as the target, how fast does each encoder learn shapes?

- ``--encoder DIR`` (a model folder; default the world-pretrained ``pretrained/tiny-sam2``) or ``random`` (the
  tiny preset's SAM2 at random init): a 1 × 1 conv (7 classes) on SAM2's S/4 features after ``conv_s0``; with
  ``--coarse`` also on the S/16 image embedding upsampled to S/4 (SAM2's FPN gives the S/4 level no top-down
  path); with ``--tune-encoder`` the image encoder and ``conv_s0`` train too (else their features are
  standardised and frozen).
- ``--own-head``: no fitting; the encoder folder's own per-pixel class head (``configs/tiny-sam2-classes.yaml``
  trains it with the encoder) scored on the same frames.
- ``--encoder cnn``: a 5-layer 32-channel CNN from the pixels (two stride-2 convs to S/4, then a plain and a
  dilated 3 × 3 conv), the reference for how learnable the task is at this resolution.

Data: frames 0, 7, 14, … of the train split (fit) and the val split (score), resized to SAM2's input (128²), labels
by nearest-neighbour to S/4 (32 × 32). Cross-entropy with background weighted 0.2, AdamW, batch 16. Reported: the
mean IoU over the 6 shape classes on the val frames (and on train frames at the end), every ``--eval-every`` steps.

    python benchmarks/shape_probe.py --encoder cnn --json benchmarks/results/shape_probe_cnn.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from momentseg.data import synthetic as syn
from momentseg.io.atomic import atomic_write_text
from momentseg.model import MomentSegModel
from momentseg.sam2.config import preprocess_for_sam2, tiny_sam2_config
from momentseg.sam2.video import build_sam2

CLASSES = 1 + len(syn.SHAPES)
IMAGE_SIZE = 128  # the tiny preset's SAM2 input


def build(split: str, n: int, size: int, stride: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """n frames (n,3,S,S) preprocessed for SAM2 and their shape-class maps (n,S/4,S/4) (0 = background)."""
    frames, labels, i = [], [], 0
    seed = syn.SPLIT_SEEDS[split]
    while len(frames) < n:
        v = syn.generate_video(syn.video_seed(seed, i), syn.video_id(i))
        i += 1
        for f in range(0, v.num_frames, stride):
            lab_t = torch.as_tensor(v.pixel_classes([f])[0])[None].float()
            frames.append(preprocess_for_sam2(v.frames[[f]], size)[0])
            labels.append(F.interpolate(lab_t, size=(size // 4, size // 4), mode="nearest")[0, 0].long())
    return torch.stack(frames[:n]), torch.stack(labels[:n])


def shape_miou(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean IoU of the argmax over the shape classes present in ``labels`` or the prediction."""
    pred = logits.argmax(1)
    scores = []
    for k in range(1, CLASSES):
        union = ((pred == k) | (labels == k)).sum().item()
        if union:
            scores.append(((pred == k) & (labels == k)).sum().item() / union)
    return float(np.mean(scores)) if scores else 0.0


class Sam2Features(nn.Module):
    """SAM2's S/4 features (after ``conv_s0``), optionally with the S/16 image embedding upsampled to S/4."""

    def __init__(self, sam2, coarse: bool):
        super().__init__()
        self.sam2, self.coarse = sam2, coarse
        self.channels = sam2.mask_decoder.conv_s0.out_channels
        self.channels += sam2.config.mask_decoder_config.hidden_size if coarse else 0

    def forward(self, px: torch.Tensor) -> torch.Tensor:
        feats = self.sam2.pixel_features(px)  # the map the model's coarse pixel query reads
        return feats if self.coarse else feats[:, : self.sam2.language_dims[1]]


def reference_cnn() -> nn.Module:
    width = 32
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 2, 1), nn.GELU(), nn.Conv2d(width, width, 3, 2, 1), nn.GELU(),
        nn.Conv2d(width, width, 3, 1, 1), nn.GELU(), nn.Conv2d(width, width, 3, 1, 2, dilation=2), nn.GELU(),
        nn.Conv2d(width, CLASSES, 1),
    )


def make_model(args) -> tuple[nn.Module, list[nn.Parameter], float]:
    """(pixels → logits (B,7,S/4,S/4), trained parameters, learning rate)."""
    if args.encoder == "cnn":
        net = reference_cnn()
        return net, list(net.parameters()), 2e-3
    sam2 = build_sam2(tiny_sam2_config(IMAGE_SIZE)) if args.encoder == "random" else \
        MomentSegModel.from_pretrained(args.encoder).sam2
    sam2.eval()
    for p in sam2.parameters():
        p.requires_grad_(False)
    feats = Sam2Features(sam2, args.coarse)
    head = nn.Conv2d(feats.channels, CLASSES, 1)
    params = list(head.parameters())
    if args.tune_encoder:
        tuned = list(sam2.vision_encoder.parameters()) + list(sam2.mask_decoder.conv_s0.parameters())
        for p in tuned:
            p.requires_grad_(True)
        return nn.Sequential(feats, head), params + tuned, 1e-3
    return nn.Sequential(Standardised(feats), head), params, 1e-2


class Standardised(nn.Module):
    """Frozen features, standardised per channel with statistics from the first batch it sees."""

    def __init__(self, feats: nn.Module):
        super().__init__()
        self.feats, self.stats = feats, None

    def forward(self, px: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.feats(px)
        if self.stats is None:
            self.stats = (x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True) + 1e-6)
        return (x - self.stats[0]) / self.stats[1]


@torch.no_grad()
def score(model: nn.Module, frames: torch.Tensor, labels: torch.Tensor) -> float:
    logits = torch.cat([model(frames[i:i + 64]) for i in range(0, len(frames), 64)])
    return shape_miou(logits, labels)


def own_head(args) -> dict:
    """Score the encoder folder's own per-pixel class head (the ``classes`` stage's), untrained further."""
    model = MomentSegModel.from_pretrained(args.encoder).eval()
    if not model.config.pixel_classes:
        raise SystemExit(f"{args.encoder}: this model has no per-pixel class head")

    def net(px):
        return model.pixel_class_head(model.sam2.pixel_features(px))[:, :CLASSES]

    val_x, val_y = build("val", args.val_items, IMAGE_SIZE)
    train_x, train_y = build("train", args.val_items, IMAGE_SIZE)
    return {"val_shape_miou": score(net, val_x, val_y), "train_shape_miou": score(net, train_x, train_y)}


def run(args) -> dict:
    torch.manual_seed(args.seed)
    if args.own_head:
        return own_head(args)
    train_x, train_y = build("train", args.train_items, IMAGE_SIZE)
    val_x, val_y = build("val", args.val_items, IMAGE_SIZE)
    model, params, lr = make_model(args)
    if isinstance(model[0], Standardised):
        model(train_x[: min(len(train_x), 256)])  # fix the standardisation on train frames
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    weight = torch.tensor([0.2] + [1.0] * (CLASSES - 1))
    gen = torch.Generator().manual_seed(args.seed)
    curve, start = [], time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(0, len(train_x), (args.batch,), generator=gen)
        loss = F.cross_entropy(model(train_x[idx]), train_y[idx], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            curve.append({"step": step + 1, "loss": float(loss), "val_shape_miou": score(model, val_x, val_y),
                          "seconds": round(time.perf_counter() - start, 1)})
            print(curve[-1], flush=True)
    return {"val_shape_miou": curve[-1]["val_shape_miou"],
            "train_shape_miou": score(model, train_x[: args.val_items], train_y[: args.val_items]), "curve": curve}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default="pretrained/tiny-sam2", help="a model folder (its SAM2), random or cnn")
    ap.add_argument("--coarse", action="store_true", help="SAM2: also the S/16 image embedding")
    ap.add_argument("--tune-encoder", action="store_true", help="SAM2: train the image encoder and conv_s0 too")
    ap.add_argument("--own-head", action="store_true",
                    help="score the encoder folder's own per-pixel class head (configs/tiny-sam2-classes.yaml)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--train-items", type=int, default=800)
    ap.add_argument("--val-items", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if min(args.steps, args.batch, args.train_items, args.val_items, args.eval_every) < 1:
        ap.error("--steps, --batch, --train-items, --val-items and --eval-every must be ≥ 1")
    if args.encoder == "cnn" and (args.coarse or args.tune_encoder):
        ap.error("--coarse / --tune-encoder apply to a SAM2 encoder, not cnn")
    if args.own_head and (args.encoder in ("cnn", "random") or args.tune_encoder):
        ap.error("--own-head scores a trained model folder's head as it is")
    result = run(args)
    result["args"] = vars(args)
    print(f"{args.encoder}: val shape mIoU {result['val_shape_miou']:.3f} (train {result['train_shape_miou']:.3f})")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
