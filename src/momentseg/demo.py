"""``momentseg demo``: a fresh synthetic video, grounded and segmented by a model, scored against its truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momentseg.data.synthetic import SPLIT_SEEDS, SynthVideo, generate_video, video_seed
from momentseg.errors import InputError
from momentseg.eval.metrics import f_measure, j_measure
from momentseg.eval.tsg import top1_iou
from momentseg.io.video import open_video

#: Expressions shown by the demo (those with a target and a moment), at most this many.
MAX_EXPRESSIONS = 3


@dataclass
class DemoScore:
    text: str
    moment: tuple[float, float]  # predicted top-1 window (s)
    truth: list[tuple[float, float]]  # GT moments (s)
    tiou: float
    j: float
    f: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def demo_video(seed: int) -> SynthVideo:
    """The demo's video for ``seed``: from the held-out test world, so the embedded model never trained on it."""
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    return generate_video(video_seed(SPLIT_SEEDS["test"] + 7919, seed), video_id=f"demo_{seed}")


def run_demo(pipe, seed: int, out: Path, progress=None, *, overwrite: bool = False) -> tuple[SynthVideo, list[DemoScore]]:
    """Segment up to :data:`MAX_EXPRESSIONS` expressions of the demo video; write ``out`` (masks, plot, overlay;
    ``overwrite`` as in :meth:`~momentseg.pipeline.SegmentResult.save`)."""
    synth = demo_video(seed)
    exps = [e for e in synth.expressions if e.obj_ids and e.moments][:MAX_EXPRESSIONS]
    video = open_video(synth.frames, fps=synth.fps)
    result = pipe.segment(video, [e.text for e in exps], progress=progress)
    result.save(out, overlay=True, overwrite=overwrite)
    scores = []
    for exp, r in zip(exps, result.expressions, strict=True):
        gt = synth.expression_masks(exp)
        pred = r.masks.to_array()
        s, e, _ = r.grounding.moments[0]
        scores.append(DemoScore(exp.text, (s, e), list(exp.moments), top1_iou(r.grounding.moments[:1], exp.moments),
                                float(np.mean(j_measure(gt, pred))), float(np.mean(f_measure(gt, pred)))))
    return synth, scores
