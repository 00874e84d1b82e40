"""Training sources over the real benchmark formats (read by :mod:`momentseg.data.refvos` / :mod:`momentseg.data.tsg`, decoded by
:func:`momentseg.io.video.open_video`).

* :class:`MaskDictSource` – a RefVOS split in the MeViS layout (MeViS, Ref-YouTube-VOS, ReVOS, Ref-DAVIS17);
  one item per (video, expression). Keyframe masks are decoded from ``mask_dict.json`` for the chosen frames
  only; a frame counts as "target visible" when one of the expression's objects has a non-null RLE there.
* :class:`TSGVideoSource` – Charades-STA / ActivityNet Captions; one item per (video, sentence). Frames are
  sampled on the video's real timestamps; a frame is positive when its timestamp lies in the GT window.

Every video an annotation names must exist: a missing one is an InputError when the source is built.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from momentseg.data.refvos import load_refvos_split
from momentseg.data.tsg import load_anet, load_charades
from momentseg.errors import InputError
from momentseg.grounding.sampling import dense_frame_indices, nearest_patches, uniform_frames
from momentseg.io.masks import rle_decode
from momentseg.io.video import open_video
from momentseg.model import RefVOSSample, TSGSample
from momentseg.train.shapes import (
    SampleShape,
    area_fit,
    keyframe_indices,
    long_side_fit,
    moment_positives,
    one_or_group,
    resize_masks,
)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


class MaskDictSource:
    """RefVOS samples from a MeViS-layout split folder (or its meta JSON file) with ``mask_dict.json``."""

    task = "refvos"

    def __init__(self, root: str | os.PathLike, benchmark: str = "mevis"):
        self.split = load_refvos_split(root, benchmark)
        if not self.split.has_gt:
            raise InputError(f"training split {root} has no mask_dict.json")
        self.items = [(v.vid, e.exp_id) for v, e in self.split.expressions()]
        self.size = len(self.items)

    def __repr__(self) -> str:
        return f"MaskDictSource({str(self.split.root)!r}, {self.size} expressions)"

    def sample(self, item: int, rng: np.random.Generator, shape: SampleShape):
        vid, exp_id = self.items[item]
        video = self.split.videos[vid]
        rles = self.split.gt_rles(vid, exp_id)  # one per-frame RLE list per object
        visible = np.array([any(obj[t] for obj in rles) for t in range(len(video.frames))], dtype=bool)
        keys = keyframe_indices(visible, shape.keyframes, shape.keyframe_window, rng)
        ctx = uniform_frames(len(video.frames), shape.context_frames)

        frames = open_video(self.split.root / "JPEGImages" / vid)
        index_of = {name: i for i, name in enumerate(frames.frame_names)}
        missing = [f for f in video.frames if f not in index_of]
        if missing:
            raise InputError(f"{self.split.root}/JPEGImages/{vid}: frame '{missing[0]}' listed in "
                             f"{self.split.meta_path.name} has no image")
        hw = (frames.height, frames.width)
        key_hw = long_side_fit(hw, shape.keyframe_side)
        masks = np.zeros((len(keys), *hw), dtype=bool)
        for row, t in enumerate(keys):
            for obj in rles:
                if obj[t]:
                    try:
                        masks[row] |= rle_decode(obj[t], hw)
                    except ValueError as exc:
                        raise InputError(f"{self.split.mask_dict_path}: video {vid} frame {t}: {exc}") from None
        return RefVOSSample(
            context=frames.get_frames([index_of[video.frames[t]] for t in ctx], area_fit(hw, shape.context_side)),
            keyframes=frames.get_frames([index_of[video.frames[t]] for t in keys], key_hw),
            query=video.expressions[exp_id].text,
            masks=resize_masks(masks, key_hw),
            key_patch=nearest_patches(keys, ctx, shape.temporal_patch),
        )


class TSGVideoSource:
    """TSG samples from Charades-STA (``kind="charades"``) or ActivityNet Captions (``kind="activitynet"``)."""

    task = "tsg"

    def __init__(self, kind: str, annotations: str | os.PathLike, videos: str | os.PathLike):
        loader = {"charades": load_charades, "activitynet": load_anet}[kind]
        self.queries = loader(annotations)
        folder = Path(videos)
        if not folder.is_dir():
            raise InputError(f"videos folder not found: {folder}")
        by_stem = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}
        self.paths = {}
        for q in self.queries:
            path = by_stem.get(q.vid) or by_stem.get(f"v_{q.vid}")  # ActivityNet files are often v_<id>
            if path is None:
                raise InputError(f"{annotations}: video '{q.vid}' (query {q.qid}) has no file in {folder} "
                                 f"(looked for {', '.join(VIDEO_SUFFIXES)})")
            self.paths[q.vid] = path
        self.by_video: dict[str, list[int]] = {}
        for j, q in enumerate(self.queries):
            self.by_video.setdefault(q.vid, []).append(j)
        self.size = len(self.queries)

    def __repr__(self) -> str:
        return f"TSGVideoSource({len(self.paths)} videos, {self.size} queries)"

    def sample(self, item: int, rng: np.random.Generator, shape: SampleShape):
        """Query ``item``; with ``shape.tsg_queries`` > 1 a list: it and up to ``tsg_queries - 1`` other queries of
        its video (drawn by ``rng``), on the same frames."""
        q = self.queries[item]
        video = open_video(self.paths[q.vid])
        ts = video.timestamps
        idx = dense_frame_indices(ts, shape.tsg_fps, shape.tsg_max_frames)
        frames = video.get_frames(idx.tolist(), area_fit((video.height, video.width), shape.tsg_side))
        chosen = [q]
        if shape.tsg_queries > 1:
            others = [j for j in self.by_video[q.vid] if j != item]
            chosen += [self.queries[others[int(k)]] for k in rng.permutation(len(others))[: shape.tsg_queries - 1]]
        return one_or_group([TSGSample(frames=frames, query=c.query,
                                       positive=moment_positives(ts[idx], [tuple(w) for w in c.windows]))
                             for c in chosen])


def build_source(cfg):
    """A real-data source from a :class:`~momentseg.train.config.SourceConfig`."""
    if cfg.type == "mask_dict":
        return MaskDictSource(cfg.root)
    return TSGVideoSource(cfg.type, cfg.annotations, cfg.videos)
