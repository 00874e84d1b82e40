"""The ceiling of a spatial prior at the context-token grid: J&F when SAM2's masks get the *true* pointing map.

A model with ``seg_pointing`` adds a map over its context video's merged tokens (one per temporal patch,
upsampled from e.g. 3 × 4 tokens) to SAM2's mask logits on every frame. This script replaces that map with the
truth: per context token, ``gain × (2s − 1)`` where ``s`` is the target's share of the token's object pixels
(``−gain`` for a token without an object; every token ``−gain`` for a no-target expression), read at the
patch nearest each frame as inference reads it. Everything else is the model's own inference path
(``MomentSeg.segment``: its ``[FIND]`` pass, MCS keyframes, its ``[SEG]`` embedding, BAP). The gap between this
and the model's J&F is what a perfect pointing head could add at this grid; a small gap means the grid is too
coarse (or SAM2 ignores the prior).

    python benchmarks/oracle_prior.py --model src/momentseg/embedded --videos 20 --gain 4 \\
        --json benchmarks/results/oracle_prior.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from momentseg.data import synthetic as syn
from momentseg.eval.metrics import f_measure, j_measure
from momentseg.grounding.sampling import nearest_patches
from momentseg.io.atomic import atomic_write_text
from momentseg.io.video import open_video
from momentseg.model.momentseg import token_pool
from momentseg.model.preprocess import target_size
from momentseg.pipeline import MomentSeg
from momentseg.sam2.video import SpatialPrior


class OraclePrior(MomentSeg):
    """``MomentSeg`` whose ``[SEG]`` prompts carry the true pointing map of the current synthetic video."""

    gain: float = 4.0
    truth: syn.SynthVideo | None = None

    def _seg_prompt_group(self, video, texts, keyframes, context, share_prefix):
        prompts = super()._seg_prompt_group(video, texts, keyframes, context, share_prefix)
        # the true map replaces the model's, and with it what the model's map says about presence
        return [p._replace(prior=self.oracle(video, text), present=True)
                for p, text in zip(prompts, texts, strict=True)]

    def oracle(self, video, text: str) -> SpatialPrior:
        v, lay = self.truth, self.model.layout
        exp = next(e for e in v.expressions if e.text == text)
        ctx = self._context_indices(video)
        h, w = target_size(video.height, video.width, self.config.context_frame_size, lay)
        side = (h // (lay.patch_size * lay.merge_size), w // (lay.patch_size * lay.merge_size))
        j = -(-len(ctx) // lay.temporal_patch_size)
        objects = np.any(np.stack(list(v.object_masks.values())), axis=0)[ctx]
        shares = torch.stack([torch.as_tensor(m, dtype=torch.float32)
                              for m in (v.expression_masks(exp)[ctx], objects)], 1)
        pooled = token_pool(shares, j, lay.temporal_patch_size, side).reshape(j, *side, 2)
        s = pooled[..., 0] / pooled[..., 1].clamp(min=1e-6)
        maps = torch.where(pooled[..., 1] > 0, self.gain * (2 * s - 1), torch.tensor(-self.gain))
        return SpatialPrior(maps, nearest_patches(np.arange(len(video)), ctx, lay.temporal_patch_size))


def evaluate(pipe: MomentSeg, videos: int, split: str = "test") -> dict:
    rows = []
    for i in range(videos):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        if isinstance(pipe, OraclePrior):
            pipe.truth = v
        result = pipe.segment(open_video(v.frames, fps=v.fps), [e.text for e in v.expressions])
        for exp, r in zip(v.expressions, result.expressions, strict=True):
            gt, pred = v.expression_masks(exp), r.masks.to_array()
            rows.append({"kind": exp.kind, "j": float(np.mean(j_measure(gt, pred))),
                         "f": float(np.mean(f_measure(gt, pred)))})
    by_kind = {}
    for kind in sorted({r["kind"] for r in rows}):
        sel = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = round(100 * float(np.mean([(r["j"] + r["f"]) / 2 for r in sel])), 2)
    return {"jf": round(100 * float(np.mean([(r["j"] + r["f"]) / 2 for r in rows])), 2), "by_kind": by_kind,
            "expressions": len(rows), "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="src/momentseg/embedded", help="a model folder")
    ap.add_argument("--videos", type=int, default=20, help="test videos 0..N-1")
    ap.add_argument("--gain", type=float, nargs="+", default=[4.0], help="oracle map gains to try")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.videos < 1:
        ap.error("--videos must be ≥ 1")
    model = MomentSeg.from_pretrained(args.model, device="cpu").model
    result = {"model": evaluate(MomentSeg(model, device="cpu"), args.videos), "oracle": {}, "args": vars(args)}
    for gain in args.gain:
        pipe = OraclePrior(model, device="cpu")
        pipe.gain = gain
        result["oracle"][str(gain)] = evaluate(pipe, args.videos)
    print(json.dumps({k: ({g: {"jf": r["jf"], "by_kind": r["by_kind"]} for g, r in v.items()} if k == "oracle" else
                          {"jf": v["jf"], "by_kind": v["by_kind"]} if k == "model" else v)
                      for k, v in result.items()}))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
