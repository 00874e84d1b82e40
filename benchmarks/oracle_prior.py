"""The ceiling of a spatial prior at the context-token grid: J&F when SAM2's masks get the *true* pointing map.

A model with ``seg_pointing`` adds a map over its context video's merged tokens (one per temporal patch,
upsampled from e.g. 3 × 4 tokens) to SAM2's mask logits on every frame. This script replaces that map with the
truth: per context token, ``gain × (2s − 1)`` where ``s`` is the target's share of the token's object pixels
(``−gain`` for a token without an object; every token ``−gain`` for a no-target expression), read at the
patch nearest each frame as inference reads it. Everything else is the model's own inference path
(``MomentSeg.segment``: its ``[FIND]`` pass, MCS keyframes, its ``[SEG]`` embedding, BAP). The gap between this
and the model's J&F is what a perfect pointing head could add at this grid; a small gap means the grid is too
coarse (or SAM2 ignores the prior).

Where the truth goes (``--where``, BENCHMARKS.md "Round 23"): ``all`` (the map above, with presence from it);
``presence`` (the model's own map, but whether the text has a target from the truth: what a perfect presence
decision adds); ``inside`` / ``outside`` (the true map on the context patches whose frames lie inside / outside the
expression's ground-truth moments, the model's map on the others, presence from the truth). ``--scale`` s builds
the true map on a grid s times finer per side than the model's map (its tokens, or their sub-cells with
``seg_pointing_subgrid``; ``all`` only): what a finer context grid
could add.

    python benchmarks/oracle_prior.py --model src/momentseg/embedded --videos 20 --gain 4 \\
        --json benchmarks/results/oracle_prior.json
    python benchmarks/oracle_prior.py --split val --videos 20 --gain 16 --where all presence inside outside \\
        --scale 1 2 4 --json benchmarks/results/oracle_prior_r21_val.json
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

#: where the truth replaces the model's answer (module docstring)
WHERE = ("all", "presence", "inside", "outside")


class OraclePrior(MomentSeg):
    """``MomentSeg`` whose ``[SEG]`` prompts carry the true pointing map of the current synthetic video (``where``
    and ``scale``: the module docstring)."""

    gain: float = 4.0
    scale: int = 1
    where: str = "all"
    truth: syn.SynthVideo | None = None

    def _seg_prompt_group(self, video, texts, keyframes, context, share_prefix):
        prompts = super()._seg_prompt_group(video, texts, keyframes, context, share_prefix)
        out = []
        for p, text in zip(prompts, texts, strict=True):
            exp = self._expression(text)
            if self.where == "presence":
                out.append(p._replace(present=bool(exp.obj_ids)))
            elif self.where == "all" or not exp.obj_ids:
                # the true map replaces the model's, and with it what the model's map says about presence
                out.append(p._replace(prior=self.oracle(video, text), present=bool(exp.obj_ids) or self.where == "all"))
            else:
                true = self.oracle(video, text).maps.to(p.prior.maps)
                inside = torch.as_tensor(self._inside(video, exp, len(true)))
                use = inside if self.where == "inside" else ~inside
                maps = torch.where(use[:, None, None], true, p.prior.maps)
                out.append(p._replace(prior=SpatialPrior(maps, p.prior.frame_patch), present=True))
        return out

    def _expression(self, text: str):
        return next(e for e in self.truth.expressions if e.text == text)

    def _inside(self, video, exp, patches: int) -> np.ndarray:
        """(patches,) bool: some frame of the context patch lies inside one of ``exp``'s moments."""
        ctx, tps = self._context_indices(video), self.model.layout.temporal_patch_size
        times = [np.asarray(ctx[k * tps:(k + 1) * tps] if k * tps < len(ctx) else ctx[-1:]) / self.truth.fps
                 for k in range(patches)]
        return np.array([any(((t >= a) & (t <= b)).any() for a, b in exp.moments) for t in times])

    def oracle(self, video, text: str) -> SpatialPrior:
        v, lay = self.truth, self.model.layout
        exp = self._expression(text)
        ctx = self._context_indices(video)
        h, w = target_size(video.height, video.width, self.config.context_frame_size, lay)
        cells = self.scale * self.model.config.seg_pointing_subgrid  # per token side: the model's map grid × scale
        side = (cells * h // (lay.patch_size * lay.merge_size), cells * w // (lay.patch_size * lay.merge_size))
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
    ap.add_argument("--split", default="test", choices=tuple(syn.SPLIT_SEEDS), help="synthetic split")
    ap.add_argument("--videos", type=int, default=20, help="videos 0..N-1 of the split")
    ap.add_argument("--gain", type=float, nargs="+", default=[4.0], help="oracle map gains to try")
    ap.add_argument("--where", nargs="+", default=["all"], choices=WHERE, help="where the truth goes (docstring)")
    ap.add_argument("--scale", type=int, nargs="+", default=[1], help="true-map grid per side, × the model's (all)")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.videos < 1:
        ap.error("--videos must be ≥ 1")
    if min(args.scale) < 1 or (max(args.scale) > 1 and args.where != ["all"]):
        ap.error("--scale must be ≥ 1, and above 1 only with --where all")
    model = MomentSeg.from_pretrained(args.model, device="cpu").model
    result = {"model": evaluate(MomentSeg(model, device="cpu"), args.videos, args.split), "oracle": {},
              "args": vars(args)}
    for where in args.where:
        for scale in args.scale:
            for gain in args.gain:
                pipe = OraclePrior(model, device="cpu")
                pipe.gain, pipe.scale, pipe.where = gain, scale, where
                # the key of the first oracle (true map everywhere, the model's grid) is its gain, as before
                key = str(gain) if (where, scale) == ("all", 1) else f"{where}/x{scale}/{gain}"
                result["oracle"][key] = evaluate(pipe, args.videos, args.split)
    print(json.dumps({k: ({g: {"jf": r["jf"], "by_kind": r["by_kind"]} for g, r in v.items()} if k == "oracle" else
                          {"jf": v["jf"], "by_kind": v["by_kind"]} if k == "model" else v)
                      for k, v in result.items()}))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
