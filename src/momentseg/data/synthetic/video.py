"""Generate synthetic videos in memory: one seed -> one :class:`SynthVideo`, or a stream of them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from momentseg.data.synthetic.config import WorldConfig
from momentseg.data.synthetic.language import Candidate, candidate_expressions, generate_expressions
from momentseg.data.synthetic.records import SynthExpression, SynthVideo
from momentseg.data.synthetic.world import simulate_scene


def video_seed(split_seed: int, index: int) -> int:
    """Seed of video ``index`` of the split with seed ``split_seed`` (``SeedSequence([split_seed, index])``)."""
    if split_seed < 0 or index < 0:
        raise ValueError("split_seed and index must be non-negative")
    return int(np.random.SeedSequence([int(split_seed), int(index)]).generate_state(1)[0])


def video_id(index: int) -> str:
    """Deterministic video id of video ``index`` of a split (``vid_00000``)."""
    return f"vid_{index:05d}"


def generate_video(seed: int, video_id: str = "vid_00000", config: WorldConfig = WorldConfig()) -> SynthVideo:
    """Draw, simulate and render one video and its expressions from ``seed`` (same seed -> same video)."""
    rng = np.random.default_rng(int(seed))
    frames, tracks, full, visible = simulate_scene(rng, config)
    fps = float(config.fps)
    expressions = _expressions(generate_expressions(rng, tracks, config), fps)
    return SynthVideo(
        video_id=video_id,
        frames=frames,
        fps=fps,
        object_masks=visible,
        expressions=expressions,
        objects=tracks,
        full_masks=full,
        seed=int(seed),
    )


def _expressions(cands: list[Candidate], fps: float) -> list[SynthExpression]:
    return [SynthExpression(exp_id=str(i), text=c.text, obj_ids=sorted(c.obj_ids), kind=c.kind,
                            moments=[(a / fps, b / fps) for a, b in c.frames])
            for i, c in enumerate(cands)]


def all_expressions(video: SynthVideo, rng: np.random.Generator) -> list[SynthExpression]:
    """Every expression the world's language could say about ``video`` (:func:`~momentseg.data.synthetic.language
    .candidate_expressions`; ``rng`` picks among equivalent noun phrases), as :class:`SynthExpression` whose
    masks and moments ``video`` gives as for its own expressions. For training only: the video's own
    ``expressions`` (what the splits and every benchmark use) do not change."""
    return _expressions(candidate_expressions(rng, video.objects), video.fps)


def iter_videos(seed: int, n: int | None = None, config: WorldConfig = WorldConfig()) -> Iterator[SynthVideo]:
    """Stream videos ``0..n-1`` of the split with seed ``seed`` (``n=None``: forever), nothing written."""
    i = 0
    while n is None or i < n:
        yield generate_video(video_seed(seed, i), video_id(i), config)
        i += 1
