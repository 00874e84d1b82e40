"""A fixed probe of what a tiny Qwen2.5-VL learned about the synthetic world (the ``caption`` pretraining stage).

For held-out synthetic videos the model sees the frames the ``[FIND]`` pass sees (``config.fps``, at most
``config.find_max_frames``, ``find_frame_size`` px) and answers, greedily, every question that
:func:`momentseg.data.synthetic.caption_pairs` asks about them (rng seeded by the video index, so the probe is
fixed). Scores:

* ``objects_f1``: "which shapes are visible ?" — F1 between the sets of "size colour shape" phrases;
* ``where_acc``: "where is the <np> at <t> seconds ?" — exact "row column" answer (thirds of the frame);
* ``when_mae_s`` / ``when_within_0.5s``: "when does the <np> <verb> ?" — absolute error of the answered time
  (an answer with no time counts as a miss for ``within`` and is left out of the mean);
* ``events_f1``: "describe the video ." — F1 between the sets of "the <np> <verb> at <t> seconds" clauses.

Chance levels (a model that ignores the video) are in the output as ``*_prior``: the same scores for the
most frequent training answer of each kind.

    python benchmarks/vlm_probe.py --model runs/tiny-vlm/final --videos 20 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np

from momentseg.data import synthetic as syn
from momentseg.data.synthetic.captions import objects_f1, time_error
from momentseg.grounding.sampling import dense_frame_indices
from momentseg.io.atomic import atomic_write_text
from momentseg.model import MomentSegModel
from momentseg.train.shapes import area_fit, resize_frames


def probe_pairs(model: MomentSegModel, split: str, first: int, count: int):
    """(frames, CaptionPair) for every probe question of videos ``first .. first+count-1`` of ``split``."""
    c = model.config
    for i in range(first, first + count):
        v = syn.generate_video(syn.video_seed(syn.SPLIT_SEEDS[split], i), syn.video_id(i), syn.WorldConfig())
        idx = dense_frame_indices(np.arange(v.num_frames) / v.fps, c.fps, c.find_max_frames)
        frames = resize_frames(v.frames[idx], area_fit(v.frames.shape[1:3], c.find_frame_size))
        for pair in syn.caption_pairs(v, idx / v.fps, np.random.default_rng(i)):
            yield frames, pair


def _clauses(answer: str) -> set[str]:
    return {c.strip() for c in answer.split(";") if c.strip() and c.strip() != "nothing"}


def _set_f1(pred: set[str], true: set[str]) -> float:
    if not pred and not true:
        return 1.0
    hit = len(pred & true)
    return 0.0 if hit == 0 else 2 * hit / (len(pred) + len(true))


def score_answers(rows: list[tuple[str, str, str]]) -> dict[str, float]:
    """rows: (kind, predicted answer, true answer) → the probe's scores."""
    by = {k: [(p, t) for kind, p, t in rows if kind == k] for k in syn.CAPTION_KINDS}
    errors = [time_error(p, t) for p, t in by["when"]]
    known = [e for e in errors if e is not None]
    return {
        "objects_f1": float(np.mean([objects_f1(p, t) for p, t in by["objects"]])) if by["objects"] else float("nan"),
        "where_acc": float(np.mean([p == t for p, t in by["where"]])) if by["where"] else float("nan"),
        "when_mae_s": float(np.mean(known)) if known else float("nan"),
        "when_within_0.5s": float(np.mean([e is not None and e <= 0.5 for e in errors])) if errors else float("nan"),
        "events_f1": float(np.mean([_set_f1(_clauses(p), _clauses(t)) for p, t in by["events"]]))
        if by["events"] else float("nan"),
        "questions": {k: len(v) for k, v in by.items()},
    }


def prior_answers(model: MomentSegModel, videos: int = 100) -> dict[str, str]:
    """The most frequent answer of each kind on training videos (what a model blind to the video would say)."""
    counts: dict[str, Counter] = {k: Counter() for k in syn.CAPTION_KINDS}
    for _, pair in probe_pairs(model, "train", 0, videos):
        counts[pair.kind][pair.answer] += 1
    return {k: c.most_common(1)[0][0] for k, c in counts.items() if c}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint folder (e.g. runs/tiny-vlm/final)")
    ap.add_argument("--first-video", type=int, default=0)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--split", default="test", choices=tuple(syn.SPLIT_SEEDS))
    ap.add_argument("--prior-videos", type=int, default=100)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = MomentSegModel.from_pretrained(args.model).eval()  # answer() runs without autograd
    prior = prior_answers(model, args.prior_videos)
    rows, prior_rows, examples = [], [], []
    for frames, pair in probe_pairs(model, args.split, args.first_video, args.videos):
        pred = " ".join(syn.tokenize(model.answer(frames, pair.question)))  # the decoder glues "1 ." into "1."
        rows.append((pair.kind, pred, pair.answer))
        prior_rows.append((pair.kind, prior.get(pair.kind, ""), pair.answer))
        if len(examples) < 8:
            examples.append({"question": pair.question, "answer": pair.answer, "predicted": pred})
    result = score_answers(rows)
    result.update({f"{k}_prior": v for k, v in score_answers(prior_rows).items() if k != "questions"})
    result.update({"examples": examples, "seconds": round(time.perf_counter() - t0, 1), "args": vars(args)})
    for k in ("objects_f1", "where_acc", "when_mae_s", "when_within_0.5s", "events_f1"):
        print(f"{k:18s} {result[k]:.3f}   (prior {result[k + '_prior']:.3f})")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
