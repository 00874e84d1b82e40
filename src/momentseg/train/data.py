"""Training samples: TSG and RefVOS samples drawn from data sources, deterministic in (seed, position).

One optimizer step of the whole job sees ``G = processes × grad_accum × batch_size`` samples, at global
positions ``q = step·G + (micro·processes + rank)·batch_size + i``. Everything about the sample at ``q`` (its
task, source, item and frame choices) is a pure function of ``(seed, q)``, so

* a resumed run draws exactly the samples an unbroken run would, with no sampler state to save;
* 2 processes × batch b and 1 process × batch 2b (or batch b × accumulation 2) see the same global batch.

Task mix: position ``q`` is TSG when ``⌊(q+1)·r⌋ > ⌊q·r⌋`` for the TSG ratio ``r`` (as an exact fraction), so
over any window the TSG share is ``r`` to within one sample, and the ``j``-th TSG sample is number
``⌊q·r⌋``. A fine-tuning mix may also hold SAM2's own task (``track``, share ``t``): position ``q`` is then a
``track`` sample when ``⌊(q+1)·t⌋ > ⌊q·t⌋`` (number ``⌊q·t⌋``), and the other positions, renumbered
``q − ⌊q·t⌋``, split into TSG and RefVOS as above. The other pretraining tasks are trained alone.

Within a task, finite sources form one pool in which each source's items appear ``weight`` times (the paper's
dataset repeats), visited in a fresh random order every pass; the streamed synthetic world is
infinite and must be the task's only source (its ``j``-th sample is built from the ``j``-th video).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Protocol

import numpy as np

from momentseg.data import synthetic
from momentseg.data.synthetic import caption_pairs
from momentseg.errors import InputError
from momentseg.grounding.sampling import dense_frame_indices, nearest_patches, uniform_frames
from momentseg.model import CaptionSample, ClassesSample, RefVOSSample, TokensSample, TrackSample, TSGSample
from momentseg.train import real_data
from momentseg.train.config import EXPRESSION_POOLS, PRETRAIN_TASKS, TASKS
from momentseg.train.shapes import (
    SampleShape,
    anchor_candidates,
    area_fit,
    keyframe_indices,
    long_side_fit,
    moment_positives,
    one_or_group,
    resize_frames,
    resize_masks,
)

_TASK_ID = {task: i for i, task in enumerate(TASKS)}


class Source(Protocol):
    """A data source of ``size`` items (``None`` = infinite), each turned into one sample."""

    task: str
    size: int | None

    def sample(self, item: int, rng: np.random.Generator, shape: SampleShape): ...


# --------------------------------------------------------------------------------------- synthetic source
class SyntheticSource:
    """The synthetic world (``momentseg.data.synthetic``) streamed: item ``j`` of the TSG / RefVOS source is
    built from video ``2j`` / ``2j+1`` of the split (the videos ``iter_videos(SPLIT_SEEDS[split])`` yields).
    TSG samples use an expression with a moment; RefVOS samples any expression (a "none" expression has
    empty masks: the model learns to say "not there"). The pointing head's own task (``point``) takes RefVOS
    samples, the moment head's (``moment``) TSG samples of any expression, from every video of the split. With
    ``expressions="candidates"`` a RefVOS / point sample draws its expression from every one the world's language
    could say about the video (:func:`momentseg.data.synthetic.all_expressions`), not only the video's own."""

    def __init__(self, task: str, split: str = "train", world=None, expressions: str = EXPRESSION_POOLS[0]):
        self.task = task
        self.expressions = expressions
        self._seed = synthetic.SPLIT_SEEDS[split]
        self._world = world if world is not None else synthetic.WorldConfig()
        self.size = None  # infinite
        self._cache: tuple[int, object] | None = None

    def video(self, item: int):
        if self._cache is None or self._cache[0] != item:
            # TSG and RefVOS sources of one split use disjoint videos of it (even / odd indices); the
            # pretraining tasks, each trained alone, see every video
            index = item if self.task in PRETRAIN_TASKS else 2 * item + _TASK_ID[self.task]
            syn = synthetic
            self._cache = (item, syn.generate_video(syn.video_seed(self._seed, index), syn.video_id(index), self._world))
        return self._cache[1]

    def sample(self, item: int, rng: np.random.Generator, shape: SampleShape):
        if self.task == "track":
            return track_sample(self.video(item), rng, shape)
        if self.task == "caption":
            return caption_sample(self.video(item), rng, shape)
        if self.task == "classes":
            return classes_sample(self.video(item), rng, shape)
        if self.task == "tokens":
            return tokens_sample(self.video(item), rng, shape)
        video = self.video(item)
        if self.task == "moment":
            return tsg_sample(video, video.expressions, rng, shape)
        if self.task == "tsg":
            # A generated video whose expressions are all no-target has nothing to ground: the stream takes
            # the next video of the (infinite, deterministic) world instead, so resume stays exact.
            step = 1
            while not any(e.moments for e in video.expressions):
                if step > 100:
                    raise ValueError(f"synthetic videos {item}..{item + step} have no expression with a moment")
                video, step = self.video(item + step), step + 1
            return tsg_sample(video, [e for e in video.expressions if e.moments], rng, shape)
        t, hw = len(video.frames), video.frames.shape[1:3]
        pool = video.expressions if self.expressions == EXPRESSION_POOLS[0] else synthetic.all_expressions(video, rng)
        exp = pool[int(rng.integers(len(pool)))]
        masks = video.expression_masks(exp)
        candidates = anchor_candidates(masks.any(axis=(1, 2)), video.moment_frames(exp))
        keys = keyframe_indices(candidates, shape.keyframes, shape.keyframe_window, rng)
        ctx = uniform_frames(t, shape.context_frames)
        key_hw, ctx_hw = long_side_fit(hw, shape.keyframe_side), area_fit(hw, shape.context_side)
        return RefVOSSample(
            context=resize_frames(video.frames[ctx], ctx_hw),
            keyframes=resize_frames(video.frames[keys], key_hw),
            query=exp.text,
            masks=resize_masks(masks[keys], key_hw),
            key_patch=nearest_patches(keys, ctx, shape.temporal_patch),
            context_labels=context_labels(video, masks, ctx, ctx_hw),
        )


def tsg_sample(video, expressions: list, rng: np.random.Generator, shape: SampleShape):
    """A ``TSGSample`` of the synthetic ``video`` (its dense frames, ``tsg_fps``, ≤ ``tsg_max_frames``) for one of
    ``expressions`` — or, when ``shape.tsg_queries`` > 1, a list of up to that many sharing the frames. Positive
    frames are those inside the expression's moments (none for a no-target expression)."""
    if shape.tsg_queries == 1:
        chosen = [expressions[int(rng.integers(len(expressions)))]]
    else:
        chosen = [expressions[int(k)] for k in rng.permutation(len(expressions))[: shape.tsg_queries]]
    idx = dense_frame_indices(np.arange(len(video.frames)) / video.fps, shape.tsg_fps, shape.tsg_max_frames)
    frames = resize_frames(video.frames[idx], area_fit(video.frames.shape[1:3], shape.tsg_side))
    events = video.pixel_events(idx)
    return one_or_group([TSGSample(frames=frames, query=e.text, positive=moment_positives(idx / video.fps, e.moments),
                                   events=events) for e in chosen])


def context_labels(video, target: np.ndarray, ctx: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel labels (Tc, h, w) int8 of a synthetic video's context frames ``ctx`` at ``size``: 1 the target
    (``target`` (T,H,W) bool, the expression's masks), 0 another object, -1 background."""
    objects = target[ctx].copy()
    for masks in video.object_masks.values():
        objects |= masks[ctx]
    fg, tg = resize_masks(objects, size), resize_masks(target[ctx], size)
    return np.where(tg, 1, np.where(fg, 0, -1)).astype(np.int8)


def track_sample(video, rng: np.random.Generator, shape: SampleShape):
    """SAM2's own task on a synthetic video: a clip of ``track_frames`` frames (stride 1..``track_max_stride``)
    starting at a frame where some object is visible; up to ``track_max_objects`` of the objects visible there
    (all of them when fewer: a decoder that ignores its prompt and segments every shape is penalised), each
    prompted on the clip's first frame by its mask, its box (±2 px jitter) or 1–3 clicks (positives inside the
    mask, sometimes a negative outside), and half the time once more, by box or clicks, on a later frame where
    it is visible (a second conditioning frame). Occlusions, exits and re-entries inside the clip stay in the
    targets (an empty mask = "absent")."""
    t = video.num_frames
    stride = int(rng.integers(1, shape.track_max_stride + 1))
    span = min(t, (shape.track_frames - 1) * stride + 1)
    stride = max(1, (span - 1) // max(1, shape.track_frames - 1))
    ids = sorted(video.object_masks)
    areas = np.stack([video.object_masks[o].sum(axis=(1, 2)) for o in ids])  # (N_all, T)
    starts = np.flatnonzero((areas[:, : t - span + 1] >= 12).any(axis=0))
    start = int(rng.choice(starts)) if len(starts) else 0
    idx = np.arange(start, start + span, stride)[: shape.track_frames]
    visible = [o for o, a in zip(ids, areas[:, start], strict=True) if a >= 12] or ids[:1]
    chosen = rng.permutation(visible)[: shape.track_max_objects]
    hw = long_side_fit(video.frames.shape[1:3], shape.keyframe_side)
    masks = np.stack([resize_masks(video.object_masks[int(o)][idx], hw) for o in chosen])
    prompts = []
    for i, m in enumerate(masks):
        prompts.append({"obj": i, "frame": 0, **_track_prompt(m[0], rng, ("mask", "box", "points"))})
        later = [f for f in range(1, len(idx)) if m[f].sum() >= 12]
        if later and rng.random() < 0.5:
            f = int(rng.choice(later))
            prompts.append({"obj": i, "frame": f, **_track_prompt(m[f], rng, ("box", "points"))})
    return TrackSample(frames=resize_frames(video.frames[idx], hw), masks=masks, prompts=prompts)


def _track_prompt(mask: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...]) -> dict:
    ys, xs = np.nonzero(mask)
    weights = np.array([{"mask": 0.4, "box": 0.3, "points": 0.3}[k] for k in kinds])
    kind = rng.choice(kinds, p=weights / weights.sum()) if len(xs) else "mask"
    if kind == "mask":
        return {"mask": True}
    if kind == "box":
        jitter = rng.integers(-2, 3, size=4)
        x0, y0, x1, y1 = xs.min() + jitter[0], ys.min() + jitter[1], xs.max() + jitter[2], ys.max() + jitter[3]
        return {"box": [float(min(x0, x1)), float(min(y0, y1)), float(max(x0, x1)), float(max(y0, y1))]}
    pick = rng.choice(len(xs), size=int(rng.integers(1, 4)), replace=True)
    points = [[float(xs[i]), float(ys[i])] for i in pick]
    labels = [1] * len(points)
    out_y, out_x = np.nonzero(~mask)
    if rng.random() < 0.3 and len(out_x):
        j = int(rng.integers(len(out_x)))
        points.append([float(out_x[j]), float(out_y[j])])
        labels.append(0)
    return {"points": points, "labels": labels}


def classes_sample(video, rng: np.random.Generator, shape: SampleShape):
    """Image-encoder pretraining on a synthetic video: ``classes_frames`` distinct random frames (full size; the
    model resizes them to SAM2's input and the labels to its S/4 grid) with their per-pixel shape and colour
    classes (:meth:`~momentseg.data.synthetic.SynthVideo.pixel_classes`)."""
    count = min(shape.classes_frames, video.num_frames)
    idx = np.sort(rng.choice(video.num_frames, size=count, replace=False))
    shapes, colours = video.pixel_classes(idx)
    return ClassesSample(frames=video.frames[idx], shapes=shapes, colours=colours)


def tokens_sample(video, rng: np.random.Generator, shape: SampleShape):
    """Vision-tower pretraining on a synthetic video: a random run of ``tokens_frames`` consecutive frames of the
    ``[FIND]`` pass's sampling (``tsg_fps``), low-res as TSG frames, with the per-pixel shape and colour classes
    of each frame and the motion class of its frame pair (the two frames one temporal patch covers:
    :meth:`~momentseg.data.synthetic.SynthVideo.pixel_motion`)."""
    t, hw = video.num_frames, video.frames.shape[1:3]
    dense = dense_frame_indices(np.arange(t) / video.fps, shape.tsg_fps, shape.tsg_max_frames)
    count = min(shape.tokens_frames, len(dense)) // 2 * 2
    if count < 2:
        raise ValueError(f"synthetic video {video.video_id}: {len(dense)} frame(s) at {shape.tsg_fps} fps, need 2")
    start = 2 * int(rng.integers((len(dense) - count) // 2 + 1))
    idx = dense[start : start + count]
    shapes, colours = video.pixel_classes(idx)
    motions = video.pixel_motion(idx[0::2], idx[1::2]).reshape(count, *hw)
    return TokensSample(frames=resize_frames(video.frames[idx], area_fit(hw, shape.tsg_side)), shapes=shapes,
                        colours=colours, motions=motions)


def caption_sample(video, rng: np.random.Generator, shape: SampleShape):
    """Vision–language pretraining on the world's own text: the TSG frames of a synthetic video (``tsg_fps``,
    ≤ ``tsg_max_frames``) and one question / answer about them (:func:`momentseg.data.synthetic.caption_pairs`).

    Half the samples are a short clip instead (2–8 consecutive of those frames) asked only "which shapes are
    visible ?": an answer that a few frames decide, so the language model has to read the vision tokens (on
    whole videos alone it first settles on the answers' prior and gives its vision tokens a constant offset)."""
    idx = dense_frame_indices(np.arange(video.num_frames) / video.fps, shape.tsg_fps, shape.tsg_max_frames)
    if rng.random() < 0.5 and len(idx) >= 2:
        length = min(len(idx), 2 * int(rng.integers(1, 5)))
        first = int(rng.integers(0, len(idx) - length + 1))
        idx = idx[first : first + length]
        pairs = [p for p in caption_pairs(video, idx / video.fps, rng) if p.kind == "objects"]
    else:
        pairs = caption_pairs(video, idx / video.fps, rng)
    pair = pairs[int(rng.integers(len(pairs)))]
    frames = resize_frames(video.frames[idx], area_fit(video.frames.shape[1:3], shape.tsg_side))
    return CaptionSample(frames=frames, question=pair.question, answer=pair.answer)


# --------------------------------------------------------------------------------------- mixing
class _TaskPool:
    """The samples of one task: item ``j`` of the task → (source, item within it)."""

    def __init__(self, task: str, sources: list[Source], weights: list[float], seed: int):
        self.task = task
        self.sources = sources
        self.seed = seed
        lengths = [s.size for s in sources]
        if any(n is None for n in lengths):
            if len(sources) > 1:
                raise InputError(f"the synthetic source must be the only '{task}' source (it is infinite)")
            self.size = None
            return
        for s, n in zip(sources, lengths, strict=True):
            if n == 0:
                raise InputError(f"a '{task}' data source has no samples: {s!r}")
        # Source s contributes round(weight·len) slots; slot m maps to its item m mod len.
        counts = [max(1, round(w * n)) for w, n in zip(weights, lengths, strict=True)]
        self.offsets = np.cumsum([0] + counts)
        self.lengths = lengths
        self.size = int(self.offsets[-1])
        self._perm: tuple[int, np.ndarray] | None = None

    def locate(self, j: int) -> tuple[Source, int]:
        if self.size is None:
            return self.sources[0], j
        epoch, k = divmod(j, self.size)
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, _TASK_ID[self.task], epoch, 7])
            self._perm = (epoch, rng.permutation(self.size))
        slot = int(self._perm[1][k])
        s = int(np.searchsorted(self.offsets, slot, side="right") - 1)
        return self.sources[s], (slot - int(self.offsets[s])) % self.lengths[s]


class SampleStream:
    """Deterministic, stateless mixture of TSG and RefVOS sources, optionally with SAM2's own task (see the module
    docstring)."""

    def __init__(
        self,
        sources: list[Source],
        shape: SampleShape,
        tsg_ratio: float = 0.5,
        seed: int = 0,
        weights: list[float] | None = None,
        track_ratio: float = 0.0,
    ):
        weights = weights or [1.0] * len(sources)
        by_task: dict[str, tuple[list, list]] = {t: ([], []) for t in _TASK_ID}
        for s, w in zip(sources, weights, strict=True):
            by_task[s.task][0].append(s)
            by_task[s.task][1].append(w)
        self.pools = {t: _TaskPool(t, ss, ws, seed) for t, (ss, ws) in by_task.items() if ss}
        if not self.pools:
            raise InputError("no data sources given")
        finetune = [t for t in ("tsg", "refvos") if t in self.pools]
        mixed_track = "track" in self.pools and bool(finetune)
        if mixed_track != (track_ratio > 0):
            raise InputError("a share of SAM2's own task in a fine-tuning mix needs both a 'track' source among "
                             f"tsg / refvos sources and data.track_ratio > 0 (sources: {sorted(self.pools)}, "
                             f"track_ratio {track_ratio})")
        alone = [t for t in PRETRAIN_TASKS if t in self.pools and not (t == "track" and mixed_track)]
        if alone and len(self.pools) > 1:
            raise InputError(f"a '{alone[0]}' (pretraining) stream cannot mix other tasks: {sorted(self.pools)}")
        self.single = alone[0] if alone else None
        self.track_ratio = Fraction(track_ratio).limit_denominator(1000)
        if "tsg" not in self.pools:
            tsg_ratio = 0.0
        elif "refvos" not in self.pools:
            tsg_ratio = 1.0
        self.ratio = Fraction(tsg_ratio).limit_denominator(1000)
        self.shape = shape
        self.seed = seed

    def _tsg_before(self, q: int) -> int:
        return q * self.ratio.numerator // self.ratio.denominator

    def task_of(self, q: int) -> tuple[str, int]:
        """The task of global position ``q`` and the index of that sample within its task."""
        if self.single is not None:
            return self.single, q
        if self.track_ratio:
            t = self.track_ratio
            n = q * t.numerator // t.denominator
            if (q + 1) * t.numerator // t.denominator > n:
                return "track", n
            q -= n
        n = self._tsg_before(q)
        if self._tsg_before(q + 1) > n:
            return "tsg", n
        return "refvos", q - n

    def sample(self, q: int):
        """The sample at global position ``q`` (a ``TSGSample`` — or a list of them, several queries of one video,
        when ``shape.tsg_queries`` > 1 —, a ``RefVOSSample``, or a pretraining task's sample)."""
        task, j = self.task_of(q)
        source, item = self.pools[task].locate(j)
        rng = np.random.default_rng([self.seed, _TASK_ID[task], j, 1])
        return source.sample(item, rng, self.shape)

    def batch(self, positions: Sequence[int]) -> dict[str, list]:
        """Samples at ``positions`` grouped by task (``{"tsg": [...], "refvos": [...]}``, plus ``"track"`` in a mix
        with SAM2's own task; a pretraining stream gives its one task)."""
        tasks = ("tsg", "refvos") + (("track",) if self.track_ratio else ())
        out: dict[str, list] = {t: [] for t in ((self.single,) if self.single else tasks)}
        for q in positions:
            sample = self.sample(int(q))
            out[self.task_of(int(q))[0]].extend(sample if isinstance(sample, list) else [sample])
        return out


def batch_positions(step: int, micro: int, rank: int, processes: int, accum: int, batch: int) -> list[int]:
    """Global sample positions of one micro-batch (see the module docstring)."""
    base = step * processes * accum * batch + (micro * processes + rank) * batch
    return list(range(base, base + batch))


def build_sources(cfg, shape: SampleShape) -> tuple[list[Source], list[float]]:
    """Instantiate the sources of a :class:`~momentseg.train.config.DataConfig`; returns (sources, weights)."""
    sources, weights = [], []
    for s in cfg.sources:
        if s.type == "synthetic":
            sources.append(SyntheticSource(s.task, s.split, expressions=s.expressions))
        else:
            sources.append(real_data.build_source(s))
        weights.append(s.weight)
    return sources, weights
