"""``momentseg demo``: a fresh synthetic video, grounded and segmented by a model, scored against its truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momentseg.data.synthetic import SPLIT_SEEDS, SynthVideo, generate_video, video_seed
from momentseg.errors import InputError
from momentseg.eval.metrics import f_measure, j_measure
from momentseg.eval.tsg import top1_iou
from momentseg.grounding.moments import DEFAULT_THRESHOLD, NO_CONFIDENT_MOMENT
from momentseg.io.video import open_video

#: Expressions shown by the demo (those with a target and a moment), at most this many.
MAX_EXPRESSIONS = 3
#: The demo's overlay.mp4 is drawn at least this wide (a small synthetic video is upscaled for display).
OVERLAY_MIN_WIDTH = 480
#: Added to an expression's cell when the model says it has no target (``ExpressionResult.present``).
NO_TARGET_FOUND = "(no target found)"
#: The columns of the demo's table, one row per expression (:meth:`DemoScore.row`).
TABLE_COLUMNS = ("expression", "grounded moment (s)", "true moment (s)", "tIoU", "J&F", "J", "F")
#: Printed under the table: how to read it.
TABLE_CAPTION = (f"tIoU: how much the grounded and the true moment overlap in time (0 when there is "
                 f"{NO_CONFIDENT_MOMENT}: no frame's similarity is above {DEFAULT_THRESHOLD:g}). J&F, J, F (%): the "
                 "masks against the true ones over all frames (J: region IoU, F: boundary accuracy). "
                 f"{NO_TARGET_FOUND}: the model found nothing the text names, so its masks are empty.")


@dataclass
class DemoScore:
    text: str
    moment: tuple[float, float]  # predicted top-1 window (s); the whole video when not ``confident``
    truth: list[tuple[float, float]]  # GT moments (s)
    tiou: float  # of ``moment`` with the truth; 0 when not ``confident``
    j: float
    f: float
    confident: bool = True  # some frame passed the moment threshold
    present: bool = True  # the model found a target (ExpressionResult.present)

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    def row(self) -> list[str]:
        """This expression's cells of the demo table (:data:`TABLE_COLUMNS`)."""
        moment = f"{self.moment[0]:.1f}-{self.moment[1]:.1f}" if self.confident else NO_CONFIDENT_MOMENT
        truth = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in self.truth)
        text = self.text if self.present else f"{self.text} {NO_TARGET_FOUND}"
        return [text, moment, truth, f"{self.tiou:.2f}", f"{100 * self.jf:.1f}", f"{100 * self.j:.1f}",
                f"{100 * self.f:.1f}"]


def demo_video(seed: int) -> SynthVideo:
    """The demo's video for ``seed``: from the held-out test world, so the embedded model never trained on it."""
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    return generate_video(video_seed(SPLIT_SEEDS["test"] + 7919, seed), video_id=f"demo_{seed}")


def run_demo(pipe, seed: int, out: Path, progress=None, *, overwrite: bool = False) -> tuple[SynthVideo, list[DemoScore]]:
    """Segment up to :data:`MAX_EXPRESSIONS` expressions of the demo video; write ``out`` (masks, plot, overlay;
    ``overwrite`` as in :meth:`~momentseg.pipeline.SegmentResult.save`). An expression whose grounding is not
    confident (no frame passes the moment threshold) scores tIoU 0: it has no moment to compare."""
    synth = demo_video(seed)
    exps = [e for e in synth.expressions if e.obj_ids and e.moments][:MAX_EXPRESSIONS]
    video = open_video(synth.frames, fps=synth.fps)
    result = pipe.segment(video, [e.text for e in exps], progress=progress)
    result.save(out, overlay=True, overwrite=overwrite, overlay_min_width=OVERLAY_MIN_WIDTH)
    scores = []
    for exp, r in zip(exps, result.expressions, strict=True):
        gt = synth.expression_masks(exp)
        pred = r.masks.to_array()
        s, e, _ = r.grounding.moments[0]
        confident = bool(r.grounding.confident)
        tiou = top1_iou(r.grounding.moments[:1] if confident else [], exp.moments)
        scores.append(DemoScore(exp.text, (s, e), list(exp.moments), tiou, float(np.mean(j_measure(gt, pred))),
                                float(np.mean(f_measure(gt, pred))), confident, bool(r.present)))
    return synth, scores
