"""The temporal sentence grounding answer: moments (time windows) from per-frame probabilities.

Conventions
-----------
* Frame ``i`` covers ``[timestamps[i], end_i)`` where ``end_i`` is the next frame's timestamp; the last frame
  lasts ``frame_duration`` seconds (default: the median spacing of the timestamps, or 1 s — the paper's 1 fps —
  for a single frame). A window over frames ``s..e`` (inclusive) is ``[timestamps[s], end_e]``.
* "Above the threshold" is strict: ``p > threshold``.

Ranking
-------
1. The paper's answer comes first: the longest contiguous run with ``p > threshold`` (ties: higher mean p, then
   earlier). If no frame is above the threshold, the whole video: a fallback, not a finding —
   :func:`has_confident_moment` tells the two apart (shown as :data:`NO_CONFIDENT_MOMENT`).
2. Then this project's extra windows (for mAP and for users): every contiguous run above each of the thresholds
   ``threshold``, :data:`EXTRA_ABSOLUTE_THRESHOLDS` and :data:`EXTRA_RELATIVE_THRESHOLDS` × max(p), ranked by
   score and de-duplicated greedily: a window whose tIoU with an already kept window is ≥ ``nms_tiou`` is dropped.

Score of a window = mean p inside × (1 − mean p outside) (the outside mean is 0 when the window spans the whole
video): high when the window holds the confident frames and leaves out few of them; always in [0, 1]. Scores are
then made non-increasing along the ranking (each is capped at the previous one's) so that sorting by score keeps
the paper's answer first.
"""

from __future__ import annotations

import numpy as np

from momentseg.errors import InputError

#: The paper's threshold on smoothed p.
DEFAULT_THRESHOLD = 0.4
#: What the demo's table, the similarity plot and the overlay say when no frame passes the threshold.
NO_CONFIDENT_MOMENT = "no confident moment"
#: Extra absolute thresholds used to propose additional (ranked) windows.
EXTRA_ABSOLUTE_THRESHOLDS = (0.3, 0.2)
#: Extra thresholds relative to max(p) used to propose additional windows.
EXTRA_RELATIVE_THRESHOLDS = (0.75, 0.5, 0.25)


def contiguous_runs(above: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D bool array, as inclusive frame ranges ``(start, end)``."""
    a = np.asarray(above, dtype=bool).astype(np.int8)
    edges = np.diff(np.concatenate(([0], a, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def has_confident_moment(p, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """Whether some frame's p is above ``threshold`` (strictly), i.e. :func:`ground_moments`' first window is a
    run of confident frames; False when it is the whole-video fallback."""
    return bool(np.any(np.asarray(p, dtype=np.float64) > threshold))


def frame_end_times(timestamps: np.ndarray, frame_duration: float | None = None) -> np.ndarray:
    """End time (s) of each frame: the next frame's timestamp; the last one lasts ``frame_duration``."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if frame_duration is None:
        frame_duration = float(np.median(np.diff(ts))) if ts.size > 1 else 1.0
    if frame_duration <= 0:
        raise InputError(f"frame_duration must be positive, got {frame_duration}")
    return np.concatenate((ts[1:], [ts[-1] + frame_duration]))


def _tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _score(p: np.ndarray, s: int, e: int) -> float:
    inside = p[s : e + 1]
    outside = np.concatenate((p[:s], p[e + 1 :]))
    mean_out = float(outside.mean()) if outside.size else 0.0
    return float(np.clip(inside.mean() * (1.0 - mean_out), 0.0, 1.0))


def _check_inputs(p: np.ndarray, ts: np.ndarray, max_windows: int) -> None:
    """Refuse mismatched, empty, non-finite or out-of-range ``p`` / ``ts`` and ``max_windows`` below 1."""
    if p.ndim != 1 or ts.ndim != 1 or p.size != ts.size:
        raise InputError(f"p and timestamps must be 1-D of equal length, got {p.shape} and {ts.shape}")
    if p.size == 0:
        raise InputError("cannot ground a moment in a video with no frames")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(ts))):
        raise InputError("p or timestamps contain NaN or infinite values")
    if np.any(p < 0) or np.any(p > 1):
        raise InputError("p must be probabilities in [0, 1]")
    if np.any(np.diff(ts) <= 0):
        raise InputError("timestamps must be strictly increasing")
    if max_windows < 1:
        raise InputError(f"max_windows must be at least 1, got {max_windows}")


def ground_moments(
    p,
    timestamps,
    threshold: float = DEFAULT_THRESHOLD,
    max_windows: int = 10,
    *,
    frame_duration: float | None = None,
    nms_tiou: float = 0.5,
) -> list[list[float]]:
    """Ranked moments ``[[start_s, end_s, score], ...]`` (at most ``max_windows``) from p (T,) in [0, 1].

    ``timestamps`` (T,) are the frames' start times in seconds, strictly increasing. The first window is the
    paper's answer (see the module docstring for the conventions, extra windows and the score).
    """
    p = np.asarray(p, dtype=np.float64)
    ts = np.asarray(timestamps, dtype=np.float64)
    _check_inputs(p, ts, max_windows)
    ends = frame_end_times(ts, frame_duration)

    def window(s: int, e: int) -> tuple[float, float]:
        return float(ts[s]), float(ends[e])

    # 1. the paper's answer
    runs = contiguous_runs(p > threshold)
    if runs:
        top = max(runs, key=lambda r: (r[1] - r[0], p[r[0] : r[1] + 1].mean(), -r[0]))
    else:
        top = (0, p.size - 1)
    ranked = [(top, _score(p, *top))]

    # 2. extra windows
    thresholds = {
        threshold,
        *EXTRA_ABSOLUTE_THRESHOLDS,
        *(f * float(p.max()) for f in EXTRA_RELATIVE_THRESHOLDS),
    }
    candidates = {run for t in thresholds for run in contiguous_runs(p > t)}
    candidates.discard(top)
    for run, score in sorted(((r, _score(p, *r)) for r in candidates), key=lambda rs: (-rs[1], rs[0])):
        if len(ranked) >= max_windows:
            break
        if all(_tiou(window(*run), window(*kept)) < nms_tiou for kept, _ in ranked):
            ranked.append((run, score))

    out: list[list[float]] = []
    cap = 1.0
    for (s, e), score in ranked:
        cap = min(cap, score)
        out.append([*window(s, e), cap])
    return out
