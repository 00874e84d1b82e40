"""The similarity plot: each expression's frame–query curve, its grounded moment and its keyframes."""

from __future__ import annotations

import os

import numpy as np

from momentseg.grounding.moments import DEFAULT_THRESHOLD, NO_CONFIDENT_MOMENT
from momentseg.io.atomic import atomic_path
from momentseg.io.overlay import PALETTE


def write_similarity_plot(path: str | os.PathLike, result) -> None:
    """Write a PNG of ``result`` (a :class:`momentseg.pipeline.SegmentResult`): one panel per expression with
    p(frame | text) over time, the top-1 moment shaded, the other moments outlined and keyframes marked.

    An expression whose curve never passes the threshold gets no span at all and the words
    :data:`~momentseg.grounding.moments.NO_CONFIDENT_MOMENT` in its panel (its top-1 window is then only the
    whole-video fallback)."""
    # matplotlib is slow to import and must be set to Agg before pyplot: loaded only when a plot is written
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = np.asarray(result.video.timestamps)
    n = len(result.expressions)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.2 * n + 0.4), squeeze=False, sharex=True)
    for k, (ax, expr) in enumerate(zip(axes[:, 0], result.expressions, strict=True)):
        colour = np.asarray(PALETTE[k % len(PALETTE)]) / 255.0
        p = expr.grounding.probabilities
        ax.plot(times, p, color=colour, lw=1.8, label="p(frame | text)")
        confident = expr.grounding.confident
        for j, (s, e, _) in enumerate(expr.grounding.moments[:3] if confident else []):
            if j == 0:
                ax.axvspan(s, e, color=colour, alpha=0.18, label=f"moment {s:.2f}-{e:.2f} s")
            else:
                ax.axvspan(s, e, fill=False, ls="--", ec=colour, alpha=0.6)
        kf = np.asarray(expr.keyframes, dtype=int)
        ax.plot(times[kf], p[kf], "v", color="black", ms=5, label="keyframes")
        ax.plot([times[expr.anchor]], [p[expr.anchor]], "*", color="red", ms=11, label="anchor")
        ax.axhline(DEFAULT_THRESHOLD, color="grey", lw=0.8, ls=":")
        if not confident:
            ax.text(0.5, 0.5, f"{NO_CONFIDENT_MOMENT} (no frame has p > {DEFAULT_THRESHOLD:g})",
                    transform=ax.transAxes, ha="center", va="center", fontsize=10, color="dimgrey")
        # a band above p = 1 holds the legend, so it never covers the curve, a keyframe or the anchor
        ax.set_ylim(-0.02, 1.25)
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
        ax.set_ylabel("p")
        ax.set_title(expr.text, fontsize=10, loc="left")
        ax.legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
