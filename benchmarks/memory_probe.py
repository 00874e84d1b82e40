"""Does a model's SAM2 memory carry *which* object it tracks? Two measurements on held-out synthetic videos.

1. **Tracking by distance.** Every object of test videos ``--first-video`` … is prompted with its ground-truth
   mask on its first visible frame and propagated through the video (``benchmarks/sam2_tracking.track_object``,
   the code BAP runs). J is reported by distance (frames) from the prompted frame, with the predicted against the
   true mask area (share of the frame) on the frames where the object is visible, and the share of frames where
   the object is absent that get an empty mask. A memory that carries identity keeps J near its distance-0
   value; one that does not drops at distance 1 to the "segment every shape" level.
2. **Memory-encoder sensitivity.** For every frame with two or more visible objects, the memory encoder
   (``memory_encoder`` on the frame's S/16 features and the mask as SAM2 feeds it: logits ±10, sigmoid, × 20 −
   10) encodes each object's ground-truth mask; reported: mean |difference| between two objects' memories over
   the mean |memory| (0 = the memory is the same whatever the mask), and the error the bfloat16 cast
   transformers applies before storing the memory makes in that difference, over the difference (0 = kept
   exactly; ≥ 1 = lost in rounding).

    python benchmarks/memory_probe.py --model pretrained/tiny-sam2-tracking --videos 5 --json OUT.json

``--model`` is a checkpoint folder; ``--checkpoint DIR`` (a training checkpoint ``runs/X/checkpoints/step-N``)
loads its ``trainable.safetensors`` over that folder first, to probe a run in progress.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from momentseg.data import synthetic as syn
from momentseg.eval.metrics import j_measure
from momentseg.io.atomic import atomic_write_text
from momentseg.model import MomentSegModel
from momentseg.sam2.config import preprocess_for_sam2
from momentseg.sam2.video import _MASK_BIAS, _MASK_SCALE  # a mask prompt's logits, as SAM2 makes them

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sam2_tracking import track_object  # noqa: E402  (the tracking ceiling's own propagation of one object)

DISTANCE_BINS = ((0, 0), (1, 1), (2, 4), (5, 9), (10, 10**9))


def load(model: str, checkpoint: str | None) -> MomentSegModel:
    m = MomentSegModel.from_pretrained(model)
    if checkpoint is not None:
        missing = m.load_state_dict(load_file(str(Path(checkpoint) / "trainable.safetensors")), strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"{checkpoint}: parameters the model does not have: {missing.unexpected_keys[:3]}")
    return m.eval()


def memory_of(sam2, feats: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """The memory encoder's output (C_mem, h, w), float32, for S/16 features ``feats`` (1, C, h, w) and a
    boolean mask at any size, fed as SAM2 feeds a binary mask (logits ±10 → sigmoid → scale/bias)."""
    size = sam2.prompt_encoder.mask_input_size[0] * 4
    m = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    logits = m * _MASK_SCALE + _MASK_BIAS
    x = torch.sigmoid(logits) * sam2.config.sigmoid_scale_for_mem_enc + sam2.config.sigmoid_bias_for_mem_enc
    out, _ = sam2.memory_encoder(feats, x)
    return out[0].float()


def probe(model: MomentSegModel, first_video: int, videos: int, split: str = "test") -> dict:
    sam2 = model.sam2
    size = model.config.sam2_image_size
    by_bin: dict[str, list[float]] = {f"{lo}" if lo == hi else f"{lo}+" if hi > 999 else f"{lo}-{hi}": []
                                      for lo, hi in DISTANCE_BINS}
    areas_pred, areas_true, absent_empty = [], [], []
    rel_diffs, bf16_errors = [], []
    for i in range(first_video, first_video + videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        px = preprocess_for_sam2(v.frames, size)
        objects = {oid: m for oid, m in sorted(v.object_masks.items()) if m.any()}
        for masks in objects.values():
            pred = track_object(sam2, px, masks)
            first = int(np.flatnonzero(masks.any(axis=(1, 2)))[0])
            js = j_measure(masks, pred)
            for t in range(masks.shape[0]):
                visible = bool(masks[t].any())
                if not visible:
                    absent_empty.append(not pred[t].any())
                    continue
                d = abs(t - first)
                label = next(k for k, (lo, hi) in zip(by_bin, DISTANCE_BINS, strict=True) if lo <= d <= hi)
                by_bin[label].append(float(js[t]))
                areas_pred.append(float(pred[t].mean()))
                areas_true.append(float(masks[t].mean()))
        maps = sam2.feature_maps(sam2.get_image_features(px, return_dict=True).fpn_hidden_states)[-1]
        for t in range(px.shape[0]):
            visible = [m[t] for m in objects.values() if m[t].sum() >= 20]
            if len(visible) < 2:
                continue
            mems = [memory_of(sam2, maps[t : t + 1], m) for m in visible]
            for a, b in itertools.combinations(mems, 2):
                diff, scale = (a - b).abs().mean(), (a.abs().mean() + b.abs().mean()) / 2
                rel_diffs.append(float(diff / scale) if scale > 0 else 0.0)
                q = a.bfloat16().float() - b.bfloat16().float()
                bf16_errors.append(float((q - (a - b)).abs().mean() / diff) if diff > 0 else 0.0)

    def mean(xs):
        return round(float(np.mean(xs)), 4) if xs else None

    return {
        "J_by_distance": {k: mean(v) for k, v in by_bin.items()},
        "frames_by_distance": {k: len(v) for k, v in by_bin.items()},
        "pred_area": mean(areas_pred),
        "true_area": mean(areas_true),
        "absent_frames_empty": mean(absent_empty),
        "absent_frames": len(absent_empty),
        "memory_relative_difference": mean(rel_diffs),
        "memory_difference_bf16_error": mean(bf16_errors),
        "memory_pairs": len(rel_diffs),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint folder (e.g. pretrained/tiny-sam2-tracking)")
    ap.add_argument("--checkpoint", default=None, help="a training checkpoint folder whose trainable weights "
                                                       "replace --model's (runs/X/checkpoints/step-N)")
    ap.add_argument("--first-video", type=int, default=0)
    ap.add_argument("--videos", type=int, default=5)
    ap.add_argument("--split", default="test", choices=tuple(syn.SPLIT_SEEDS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    with torch.no_grad():
        result = probe(load(args.model, args.checkpoint), args.first_video, args.videos, args.split)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=1))
    if args.json:
        atomic_write_text(args.json, json.dumps(result | {"args": vars(args)}, indent=1))
    return result


if __name__ == "__main__":
    main()
