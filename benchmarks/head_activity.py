"""Are the [SEG] / [FIND] heads alive? Their hidden ReLU units' activity and how much their output follows the text.

Each head is Linear → ReLU → Linear (Sa2VA's ``text_hidden_fcs`` layout). A unit whose pre-activation is negative
for every input passes no signal and gets no gradient ("dead"); when all of them are, the head's output is its
last bias whatever the text. For each of test videos 0..``--videos``-1, every expression's [SEG] embedding (first
five frames as keyframes, every fourth frame as context) and [FIND] logits (every second frame), with forward hooks
on the heads' ReLUs. Reported per head: the fraction of (input, unit) activations > 0, the fraction of units active
for at least one input, and for [SEG] the mean over videos of the std of each embedding value across the video's
expressions (0 = the same embedding for every text), split into the prompt token and the pixel query.

    python benchmarks/head_activity.py --model src/momentseg/embedded --json benchmarks/results/head_activity.json
"""

from __future__ import annotations

import argparse
import json

import torch

from momentseg.data import synthetic as syn
from momentseg.io.atomic import atomic_write_text
from momentseg.model import MomentSegModel


@torch.no_grad()
def measure(model: MomentSegModel, videos: int) -> dict:
    acts: dict[str, list[torch.Tensor]] = {"seg": [], "find": []}
    hooks = [getattr(model, f"{name}_head")[1].register_forward_hook(
        lambda mod, inp, out, name=name: acts[name].append(out.reshape(-1, out.shape[-1])))
        for name in acts]
    p = model.config.prompt_dim
    spread = {"token": [], "pixel_query": []}
    try:
        for i in range(videos):
            v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS["test"], i), syn.video_id(i))
            texts = [e.text for e in v.expressions]
            emb, _ = model.seg_embedding_many(v.frames[:5], texts, context=v.frames[::4])
            model.find_logits_many(v.frames[::2], texts)
            if len(texts) > 1:
                spread["token"].append(float(emb[:, :p].std(0).mean()))
                if emb.shape[1] > p:
                    spread["pixel_query"].append(float(emb[:, p:].std(0).mean()))
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name, rows in acts.items():
        a = torch.cat(rows) > 0
        out[name] = {"active": float(a.float().mean()), "units_ever_active": float(a.any(0).float().mean()),
                     "units": int(a.shape[1]), "inputs": int(a.shape[0])}
    out["seg"]["std_across_expressions"] = {k: (sum(v) / len(v) if v else None) for k, v in spread.items()}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="src/momentseg/embedded", help="a model folder")
    ap.add_argument("--videos", type=int, default=5, help="test videos 0..N-1")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.videos < 1:
        ap.error("--videos must be ≥ 1")
    result = measure(MomentSegModel.from_pretrained(args.model).eval(), args.videos)
    result["args"] = vars(args)
    print(json.dumps(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
