"""The public API: ``MomentSeg.from_pretrained(...).ground(video, query)`` and ``.segment(video, texts)``.

One expression goes through the stages of the method, each a module of its own:

1. dense pass (:meth:`MomentSegModel.find_logits`): many low-res frames + the query → ``[FIND]`` logits
   (several expressions: :meth:`MomentSegModel.find_logits_many`, one video prefix for all of them);
2. :mod:`momentseg.grounding.similarity`: sigmoid + Gaussian smoothing, resampled to every video frame;
   :mod:`momentseg.grounding.moments`: ranked moments (the TSG answer);
3. :mod:`momentseg.grounding.sampling`: K keyframes (Moment-Centric Sampling or a baseline) and the anchor;
4. ``[SEG]`` pass (:meth:`MomentSegModel.seg_embedding`) on the high-res keyframes → one prompt embedding
   (expressions that chose the same keyframes: :meth:`MomentSegModel.seg_embedding_many`, one prefix);
5. :mod:`momentseg.propagation.bap`: SAM2 propagation over all frames (BAP or a baseline);
6. each frame's mask is upsampled to the original size and, as soon as it is produced, either written as a PNG
   into the output folder (``segment(..., out=DIR)``: nothing per frame is kept but its area) or stored as COCO
   RLE (:class:`MaskSequence`, the in-memory result for short videos); no all-frames-at-full-size array exists.

Each stage is a public method, so benchmarks can run one alone: :meth:`MomentSeg.dense_frames` and
:meth:`MomentSeg.ground` / :meth:`MomentSeg.ground_many` (1–2), :meth:`MomentSeg.keyframes` (3),
:meth:`MomentSeg.context_frames` and :meth:`MomentSeg.seg_prompt` (4), :meth:`MomentSeg.propagate` (5–6).

Several expressions on one video share the decoded frames (a bounded chunk cache of SAM2-size frames) and the
LLM's video prefix (``share_prefix``; all dense passes first, then the ``[SEG]`` passes, then propagation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from momentseg.errors import CheckpointError, InputError
from momentseg.grounding.moments import NO_CONFIDENT_MOMENT, ground_moments, has_confident_moment
from momentseg.grounding.sampling import (
    DEFAULT_KEYFRAMES,
    DEFAULT_METHOD,
    DEFAULT_SEED,
    METHODS,
    KeyframeChoice,
    dense_frame_indices,
    nearest_patches,
    select_keyframes,
    uniform_frames,
)
from momentseg.grounding.similarity import frame_probabilities, resample_to_frames
from momentseg.io.atomic import atomic_dir
from momentseg.io.masks import MaskSequence, MaskWriter, PngMasks, png_mask_bytes  # noqa: F401 (result types)
from momentseg.io.overlay import write_overlay
from momentseg.io.plot import write_similarity_plot
from momentseg.io.video import Video, open_video
from momentseg.model.checkpoint import released_source
from momentseg.model.config import MomentSegConfig
from momentseg.model.momentseg import MomentSegModel
from momentseg.model.preprocess import target_size
from momentseg.propagation.bap import propagate, upsample_mask
from momentseg.propagation.policy import DEFAULT_MODE, MODES
from momentseg.sam2.config import preprocess_for_sam2
from momentseg.sam2.session import shared_image_features
from momentseg.sam2.video import SpatialPrior

#: Where the embedded (packaged) tiny model lives.
EMBEDDED = "embedded"
#: SAM2-size frames are decoded in chunks of consecutive frames of about this many bytes (uint8), two chunks
#: kept: few re-opens / seeks of the video file (each seek decodes from the previous keyframe), bounded memory
#: (small enough that a video of a few hundred frames already fills it: memory does not grow with the length).
FRAME_CHUNK_BYTES = 8 * 2**20

#: SAM2 image features kept across the expressions of one video (per frame: ~0.6 MB at 128², ~17 MB at
#: 1024²), least recently used out. Only used with several expressions: one expression's BAP visits each frame
#: once, so a cache would only cost memory. A video longer than the cache gets no reuse (LRU on cyclic passes).
FEATURE_CACHE_BYTES = 512 * 2**20

Progress = Callable[[str, int, int], None]


def embedded_model_dir() -> Path:
    """The folder of the tiny MomentSeg shipped inside the package."""
    return Path(str(resources.files("momentseg") / "embedded"))


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda if available else cpu; ``cpu``; ``cuda`` (an error without CUDA). Under torchrun the
    CUDA device is the process's ``LOCAL_RANK``."""
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available on this machine")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


@dataclass
class Grounding:
    """The TSG answer for one query: ranked moments and the per-frame relevance curve.

    ``confident``: some frame's p passes the moment threshold; when False, ``moments[0]`` is only the
    whole-video fallback (shown as "no confident moment" by the plot, the overlay and the demo)."""

    query: str
    moments: list[list[float]]  # [[start_s, end_s, score], ...], best first
    probabilities: np.ndarray  # (T,) smoothed frame-query probability for every video frame
    dense_frames: np.ndarray  # indices of the frames the dense pass looked at
    confident: bool = True  # has_confident_moment(probabilities)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "moments": [[round(s, 3), round(e, 3), round(sc, 4)] for s, e, sc in self.moments],
            "similarity": [round(float(x), 4) for x in self.probabilities],
            "dense_frames": [int(i) for i in self.dense_frames],
            "confident": bool(self.confident),
        }


class SegPrompt(NamedTuple):
    """What stage 4 (:meth:`MomentSeg.seg_prompt`) gives stage 5 for one text."""

    embedding: torch.Tensor  # (P,) the SAM2 prompt
    answer: str  # the model's text answer
    prior: SpatialPrior | None  # the spatial prior (a model with seg_pointing)
    present: bool = True  # False: the text's presence logit is below point_presence_threshold: no target
    presence: float | None = None  # the presence logit ``present`` thresholds (a model with seg_pointing)


@dataclass
class ExpressionResult:
    """Everything produced for one referring expression."""

    text: str
    grounding: Grounding
    keyframes: np.ndarray  # (K,) sorted frame indices given to the [SEG] pass
    anchor: int  # the keyframe propagation starts from
    answer: str  # the model's text answer of the [SEG] pass
    masks: MaskSequence
    object_probs: np.ndarray  # (T,) SAM2 object-presence probability per frame
    present: bool = True  # False: the [SEG] pass found no target (MomentSegConfig.point_presence_threshold)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            **{k: v for k, v in self.grounding.to_json().items() if k != "query"},
            "keyframes": [int(k) for k in self.keyframes],
            "anchor": int(self.anchor),
            "answer": self.answer,
            "present": bool(self.present),
            "mask_area": [int(a) for a in self.masks.areas()],
        }


@dataclass
class SegmentResult:
    video: Video
    expressions: list[ExpressionResult]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        v = self.video
        return {
            "video": {
                "source": v.source,
                "num_frames": v.num_frames,
                "fps": round(float(v.fps), 6),
                "height": v.height,
                "width": v.width,
                "timestamps": [round(float(t), 6) for t in v.timestamps],
                "frame_names": list(v.frame_names),
            },
            "masks": "masks/<expression index>/<frame name>.png",
            "settings": self.settings,
            "expressions": [e.to_json() for e in self.expressions],
        }

    def save(self, out_dir: str | Path, overlay: bool = False, *, overwrite: bool = False,
             overlay_min_width: int = 0) -> Path:
        """Write ``out_dir`` atomically: ``result.json``, ``masks/<k>/<frame name>.png`` for the k-th expression
        (frame names: the input frames' names for a frame folder, ``00000``… otherwise), ``similarity.png``
        and, with ``overlay``, ``overlay.mp4`` (drawn at least
        ``overlay_min_width`` px wide, for display; the masks keep the video's size).

        ``out_dir`` may be new or a folder momentseg wrote before (its previous output is replaced); another
        non-empty folder needs ``overwrite`` and keeps its files (:func:`momentseg.io.atomic.atomic_dir`)."""
        out_dir = Path(out_dir)
        with atomic_dir(out_dir, overwrite=overwrite) as tmp:
            for k, expr in enumerate(self.expressions):
                folder = tmp / "masks" / str(k)
                folder.mkdir(parents=True, exist_ok=True)
                for t, name in enumerate(self.video.frame_names):  # the folder appears atomically as a whole
                    (folder / f"{name}.png").write_bytes(png_mask_bytes(expr.masks[t]))
            self._write_summary(tmp, overlay, overlay_min_width)
        return out_dir

    def _write_summary(self, folder: Path, overlay: bool, overlay_min_width: int = 0) -> None:
        """``similarity.png``, ``overlay.mp4`` (with ``overlay``) and ``result.json`` into ``folder``."""
        write_similarity_plot(folder / "similarity.png", self)
        if overlay:
            moments = [[(s, e) for s, e, _ in x.grounding.moments[:1]] if x.grounding.confident else []
                       for x in self.expressions]
            texts = [x.text if x.grounding.confident else f"{x.text} ({NO_CONFIDENT_MOMENT})"
                     for x in self.expressions]
            write_overlay(folder / "overlay.mp4", self.video, [x.masks for x in self.expressions], texts, moments,
                          min_width=overlay_min_width)
        (folder / "result.json").write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")


class _SamFrames:
    """``frame_idx -> (3,S,S)`` SAM2 input, decoded in chunks of consecutive frames; keeps the last 2 chunks."""

    def __init__(self, video: Video, image_size: int, preprocess: Callable):
        self.video, self.size, self.preprocess = video, image_size, preprocess
        self.chunk = max(16, FRAME_CHUNK_BYTES // (3 * image_size * image_size))
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()

    def __call__(self, idx: int) -> torch.Tensor:
        c = idx // self.chunk
        if c not in self._chunks:
            lo, hi = c * self.chunk, min((c + 1) * self.chunk, len(self.video))
            self._chunks[c] = self.video.get_frames(range(lo, hi), size=(self.size, self.size))
            while len(self._chunks) > 2:
                self._chunks.popitem(last=False)
        self._chunks.move_to_end(c)
        frame = self._chunks[c][idx - c * self.chunk]
        return self.preprocess(frame[None], self.size)[0]


class MomentSeg:
    """MomentSeg inference: ``ground`` (TSG) and ``segment`` (RefVOS) on any video."""

    def __init__(self, model, device: str | torch.device = "cpu", offload_state: bool = False,
                 share_prefix: bool = True):
        """``offload_state``: keep SAM2's stored memories on the CPU (for long videos on a small GPU).
        ``share_prefix``: several expressions of one video run the LLM's video prefix once (KV cache) and only
        their own tokens each; False: one full pass per expression (the same results up to float rounding)."""
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.offload_state = offload_state
        self.share_prefix = share_prefix
        self.model = model.to(self.device).eval()
        self.config = model.config

    @classmethod
    def from_pretrained(cls, path: str | Path = EMBEDDED, device: str = "auto", offload_state: bool = False) -> MomentSeg:
        """Load a MomentSeg checkpoint folder (``save_pretrained`` layout), or ``"embedded"`` for the tiny model."""
        folder = check_model_folder(path)
        return cls(MomentSegModel.from_pretrained(folder), device=device, offload_state=offload_state)

    # ------------------------------------------------------------------ grounding
    def _video(self, video, fps: float | None = None) -> Video:
        if isinstance(video, Video):
            if fps is not None:
                raise InputError("fps is for a frame folder or an array: this Video was opened with its own timing "
                                 "(give open_video(..., fps=...) instead)")
            return video
        return open_video(video, fps=fps)

    def dense_frames(self, video: Video) -> np.ndarray:
        """Stage 1's frames: the indices of the low-res frames the ``[FIND]`` pass sees (``config.fps``, at
        most ``config.find_max_frames``)."""
        return dense_frame_indices(video.timestamps, self.config.fps, self.config.find_max_frames)

    @torch.no_grad()
    def _ground(self, video: Video, query: str, dense: np.ndarray, lowres: np.ndarray) -> Grounding:
        return self._grounding(video, query, dense, self.model.find_logits(lowres, query).float().cpu().numpy())

    @torch.no_grad()
    def _ground_all(self, video: Video, queries: list[str], dense: np.ndarray, lowres: np.ndarray) -> list[Grounding]:
        """:meth:`_ground` of every query; with ``share_prefix`` one video prefix for all of them."""
        if not (self.share_prefix and len(queries) > 1):
            return [self._ground(video, q, dense, lowres) for q in queries]
        logits = self.model.find_logits_many(lowres, queries).float().cpu().numpy()
        return [self._grounding(video, q, dense, row) for q, row in zip(queries, logits, strict=True)]

    def _grounding(self, video: Video, query: str, dense: np.ndarray, logits: np.ndarray) -> Grounding:
        """The Grounding of the dense pass's ``logits`` (one per dense frame)."""
        p_dense = frame_probabilities(logits)
        p = resample_to_frames(p_dense, video.timestamps[dense], video.timestamps)
        frame_duration = 1.0 / video.fps if video.fps > 0 else None
        moments = ground_moments(p, video.timestamps, frame_duration=frame_duration)
        return Grounding(query, moments, p, dense, has_confident_moment(p))

    def _lowres(self, video: Video, dense: np.ndarray) -> np.ndarray:
        size = target_size(video.height, video.width, self.config.find_frame_size, self.model.layout)
        return video.get_frames(dense, size=size)

    def context_frames(self, video: Video) -> np.ndarray:
        """Stage 4's context: the low-res uniform frames shown with the ``[SEG]`` keyframes (as in RefVOS
        training), (N,h,w,3) uint8."""
        size = target_size(video.height, video.width, self.config.context_frame_size, self.model.layout)
        return video.get_frames(self._context_indices(video), size=size)

    def _context_indices(self, video: Video) -> np.ndarray:
        return uniform_frames(len(video), self.config.context_frames)

    def ground(self, video, query: str, *, fps: float | None = None) -> Grounding:
        """Temporal sentence grounding: ranked moments ``[[start_s, end_s, score], …]`` for ``query``.

        ``fps``: the frame rate of a frame folder or array (default 30; a video file has its own timestamps)."""
        return self.ground_many(video, [query], fps=fps)[0]

    def ground_many(self, video, queries: Sequence[str], *, fps: float | None = None) -> list[Grounding]:
        """:meth:`ground` for several queries on one video, decoding its low-res frames once."""
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise InputError(f"queries must be a list of strings, got {type(queries).__name__}")
        queries = [check_text(q, f"query #{i}") for i, q in enumerate(queries)]
        video = self._video(video, fps)
        dense = self.dense_frames(video)
        lowres = self._lowres(video, dense)
        return self._ground_all(video, queries, dense, lowres)

    # ------------------------------------------------------------------ keyframes
    def keyframes(self, grounding: Grounding, keyframes: int = DEFAULT_KEYFRAMES, sampling: str = DEFAULT_METHOD,
                  seed: int = DEFAULT_SEED) -> KeyframeChoice:
        """Stage 3: the K keyframes and the anchor of ``grounding``'s curve
        (:func:`momentseg.grounding.sampling.select_keyframes`; ``sampling``: mcs | uniform | first-k | random)."""
        return select_keyframes(grounding.probabilities, keyframes, sampling, seed=seed)

    # ------------------------------------------------------------------ segmentation
    def segment(
        self,
        video,
        texts: str | Sequence[str],
        *,
        keyframes: int = DEFAULT_KEYFRAMES,
        sampling: str = DEFAULT_METHOD,
        propagation: str = DEFAULT_MODE,
        seed: int = DEFAULT_SEED,
        progress: Progress | None = None,
        fps: float | None = None,
        out: str | os.PathLike | None = None,
        overlay: bool = False,
        overwrite: bool = False,
    ) -> SegmentResult:
        """Ground and segment every expression in ``texts`` on ``video`` (a path, a frame folder or an array).

        ``keyframes``: K frames for the [SEG] pass; ``sampling``: mcs | uniform | first-k | random (``seed``);
        ``propagation``: bap | forward | anchor-forward. ``progress(stage, done, total)`` is called as frames
        are propagated. ``fps``: the frame rate of a frame folder or array (default 30).

        ``out``: stream the result into this folder (as :meth:`SegmentResult.save` writes it, ``overlay`` and
        ``overwrite`` as there): each mask is written as a PNG as soon as it is produced and not kept in memory
        (use this for long videos); the folder appears atomically at the end, and the returned result's masks
        read the PNGs back when indexed. Without ``out`` every mask is kept in memory as RLE (short videos).
        """
        texts = check_texts(texts)
        check_segment_options(keyframes, sampling, propagation)
        if overlay and out is None:
            raise InputError("overlay=True needs out=: the overlay is written into the output folder "
                             "(or call result.save(folder, overlay=True))")
        video = self._video(video, fps)
        if out is None:
            return self._segment(video, texts, keyframes, sampling, propagation, seed, progress)
        final = Path(os.path.abspath(os.fspath(out)))
        with atomic_dir(final, overwrite=overwrite) as tmp:
            result = self._segment(video, texts, keyframes, sampling, propagation, seed, progress, tmp / "masks")
            result._write_summary(tmp, overlay)
        for k, expr in enumerate(result.expressions):  # the PNGs are now in the output folder
            expr.masks.folder = final / "masks" / str(k)
        return result

    def _segment(self, video: Video, texts: list[str], keyframes: int, sampling: str, propagation: str, seed: int,
                 progress: Progress | None, mask_folder: Path | None = None) -> SegmentResult:
        """:meth:`segment` on an open video; with ``mask_folder`` masks are written to ``mask_folder/<k>/``."""
        dense = self.dense_frames(video)
        lowres = self._lowres(video, dense)

        frames = _SamFrames(video, self.config.track_image_size, preprocess_for_sam2)
        context = self.context_frames(video)
        results = []
        # several expressions: SAM2 encodes each frame once for all of them (bounded cache)
        if len(texts) > 1:
            share = shared_image_features(self.model.tracker, max_bytes=FEATURE_CACHE_BYTES)
        else:
            share = contextlib.nullcontext()
        groundings = self._ground_all(video, texts, dense, lowres)
        choices = [self.keyframes(g, keyframes, sampling, seed) for g in groundings]
        prompts = self._seg_prompts(video, texts, choices, context)
        with share:
            for i, (text, grounding, choice, prompt) in enumerate(zip(texts, groundings, choices, prompts,
                                                                      strict=True)):
                folder = None if mask_folder is None else mask_folder / str(i)
                results.append(
                    self._segment_one(video, text, grounding, choice, frames, prompt, propagation, i, progress,
                                      folder)
                )
        settings = {"keyframes": keyframes, "sampling": sampling, "propagation": propagation, "seed": seed}
        return SegmentResult(video, results, settings)

    @torch.no_grad()
    def _segment_one(self, video, text, grounding, choice, frames, prompt: SegPrompt, propagation, i,
                     progress, mask_folder: Path | None = None) -> ExpressionResult:
        writer = MaskWriter(video.height, video.width, video.frame_names, mask_folder)
        masks, probs = self.propagate(video, choice, prompt.embedding, frames, propagation, label=f"segment {i}",
                                      progress=progress, writer=writer, prior=prompt.prior, present=prompt.present)
        return ExpressionResult(text, grounding, choice.indices, choice.anchor, prompt.answer, masks, probs,
                                prompt.present)

    @torch.no_grad()
    def seg_prompt(self, video: Video, text: str, keyframes: Sequence[int],
                   context: np.ndarray | None = None) -> SegPrompt:
        """Stage 4, the ``[SEG]`` pass: the high-res ``keyframes`` (frame indices, e.g. a
        :meth:`keyframes` choice's ``indices``) + the low-res ``context`` (default: :meth:`context_frames`)
        → a :class:`SegPrompt`: the SAM2 prompt embedding (P,), the model's answer text, the spatial prior (a model
        with ``seg_pointing``; else None), whether the text has a target (False only for a model with
        ``point_presence_threshold`` whose presence logit is below it) and that logit."""
        return self._seg_prompt_group(video, [text], keyframes, context, share_prefix=False)[0]

    def _seg_prompt_group(self, video: Video, texts: list[str], keyframes: Sequence[int], context: np.ndarray | None,
                          share_prefix: bool) -> list[SegPrompt]:
        """:meth:`seg_prompt` of ``texts`` on the same keyframes (``share_prefix``: one [SEG] prefix)."""
        if context is None:
            context = self.context_frames(video)
        out = self.model.seg_prompts(self._keyframe_images(video, keyframes), texts, context=context,
                                     share_prefix=share_prefix)
        frame_patch = None
        if out.priors is not None:  # each frame reads the context patch nearest it
            frame_patch = nearest_patches(np.arange(len(video)), self._context_indices(video),
                                          self.model.layout.temporal_patch_size)
        return [SegPrompt(emb, answer, None if out.priors is None else SpatialPrior(out.priors[j], frame_patch),
                          True if out.present is None else bool(out.present[j]),
                          None if out.presence is None else float(out.presence[j]))
                for j, (emb, answer) in enumerate(zip(out.embeddings, out.answers, strict=True))]

    def _keyframe_images(self, video: Video, keyframes: Sequence[int]) -> np.ndarray:
        """The frames ``keyframes`` at the ``[SEG]`` pass's size."""
        seg_size = target_size(video.height, video.width, self.config.seg_frame_size, self.model.layout)
        return video.get_frames(keyframes, size=seg_size)

    @torch.no_grad()
    def _seg_prompts(self, video: Video, texts: list[str], choices: list, context: np.ndarray) -> list:
        """:meth:`seg_prompt` of every text; with ``share_prefix`` the texts whose keyframes are the same
        share one [SEG] prefix (``seg_embedding_many``)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, choice in enumerate(choices):
            groups.setdefault(tuple(int(k) for k in choice.indices), []).append(i)
        prompts: list = [None] * len(texts)
        for members in groups.values():
            group = self._seg_prompt_group(video, [texts[i] for i in members], choices[members[0]].indices,
                                           context, share_prefix=self.share_prefix and len(members) > 1)
            for i, prompt in zip(members, group, strict=True):
                prompts[i] = prompt
        return prompts

    @torch.no_grad()
    def propagate(self, video: Video, choice: KeyframeChoice, embedding: torch.Tensor, frames,
                  propagation: str = DEFAULT_MODE, *, anchor_update: bool = True, label: str = "segment",
                  progress: Progress | None = None, writer: MaskWriter | None = None,
                  prior: SpatialPrior | None = None, present: bool = True) -> tuple[MaskSequence, np.ndarray]:
        """Stage 5: SAM2 propagation of ``embedding`` from ``choice``'s keyframes over every frame
        (:func:`momentseg.propagation.bap.propagate`; ``propagation``: bap | forward | anchor-forward;
        ``anchor_update``: BAP's memory-clearing rule on or off; ``prior`` and ``present``: the embedding's
        spatial prior and whether it has a target, from :meth:`seg_prompt` — without one every mask is empty and
        SAM2 decodes nothing). With the model's ``sam2_track_size`` the keyframes are decoded first
        (:meth:`~momentseg.model.momentseg.MomentSegModel.decode_keyframes`) and their masks are the prompts of a
        memory-only propagation by ``model.tracker``.

        ``frames``: SAM2 inputs at ``config.track_image_size``, a callable ``idx -> (3,S,S)`` (e.g.
        :class:`_SamFrames`) or a (T,3,S,S) tensor.
        Each mask, upsampled to the original size, goes to ``writer`` as it is produced (default: kept as RLE).
        Returns the masks (``writer.finish()``) and the object probability per frame (T,).
        """
        T, (H, W) = len(video), (video.height, video.width)
        if writer is None:
            writer = MaskWriter(H, W, video.frame_names)
        probs = np.zeros(T, dtype=np.float32)
        if not present:
            empty = np.zeros((H, W), dtype=bool)
            for t in range(T):
                writer.put(t, empty)
                if progress is not None:
                    progress(label, t + 1, T)
            return writer.finish(), probs
        prompt: dict = {"prompt_embedding": embedding.to(self.device), "prompt_prior": prior}
        if self.config.sam2_track_size is not None:
            prompt = {"mask_prompts": self._keyframe_masks(video, choice.indices, embedding, prior)}
        outputs = propagate(
            self.model.tracker,
            frames,
            choice.indices,
            choice.anchor,
            **prompt,
            mode=propagation,
            num_frames=T,
            anchor_update=anchor_update,
            video_size=(H, W),
            inference_state_device="cpu" if self.offload_state else None,
        )
        for done, out in enumerate(outputs, start=1):
            writer.put(out.frame_idx, upsample_mask(out.mask_logits, (H, W)).cpu().numpy())
            probs[out.frame_idx] = out.object_prob
            if progress is not None:
                progress(label, done, T)
        missing = writer.missing()
        if missing:  # propagation promises every frame; never hand back a silent gap
            raise RuntimeError(f"propagation returned no mask for frames {missing[:5]}")
        return writer.finish(), probs

    def _keyframe_masks(self, video: Video, keyframes: Sequence[int], embedding: torch.Tensor,
                        prior: SpatialPrior | None) -> dict[int, np.ndarray]:
        """{keyframe: (H, W) bool mask}: the keyframes decoded at ``sam2_image_size`` from ``embedding`` and
        ``prior`` (:meth:`~momentseg.model.momentseg.MomentSegModel.decode_keyframes`)."""
        keys = [int(k) for k in keyframes]
        size = self.config.sam2_image_size
        pixels = preprocess_for_sam2(video.get_frames(keys, size=(size, size)), size)
        maps = None if prior is None else torch.stack([prior.at(k) for k in keys])
        logits = self.model.decode_keyframes(pixels, embedding, maps)
        return {k: upsample_mask(m, (video.height, video.width)).cpu().numpy() for k, m in zip(keys, logits,
                                                                                               strict=True)}


def check_text(text: str, what: str = "text") -> str:
    """``text`` with its whitespace collapsed; an :class:`InputError` for a non-string (e.g. ``None``), text
    that is not valid UTF-8 (undecodable bytes in a command-line argument) or an empty sentence."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} {text.encode('utf-8', 'replace').decode()!r} is not valid UTF-8: "
                         "give the sentence as UTF-8 text") from None
    if not text.strip():
        raise InputError(f"{what} is empty: give a non-empty sentence")
    return " ".join(text.split())


def check_texts(texts: str | Sequence[str]) -> list[str]:
    """One expression or a list of them, each checked by :func:`check_text`; at least one."""
    if isinstance(texts, str):
        texts = [texts]
    elif not isinstance(texts, Sequence):
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    if not texts:
        raise InputError("no expression given: pass at least one text")
    return [check_text(t, f"text #{i}") for i, t in enumerate(texts)]


def check_segment_options(keyframes: int, sampling: str, propagation: str) -> None:
    """Validate :meth:`MomentSeg.segment`'s settings (the CLI calls this before loading a model)."""
    if sampling not in METHODS:
        raise InputError(f"unknown sampling {sampling!r}: use one of {', '.join(METHODS)}")
    if propagation not in MODES:
        raise InputError(f"unknown propagation {propagation!r}: use one of {', '.join(MODES)}")
    if isinstance(keyframes, bool) or not isinstance(keyframes, int | np.integer) or keyframes < 1:
        raise InputError(f"keyframes must be a whole number of at least 1, got {keyframes!r}")


def check_model_folder(path: str | Path) -> Path:
    """The checkpoint folder for ``path`` (``"embedded"`` = the shipped model), checked enough that loading it
    cannot end in a traceback: a JSON object config.json with every required field, weights, tokenizer.json."""
    folder = embedded_model_dir() if str(path) == EMBEDDED else Path(path)
    if not folder.is_dir():
        what = "the embedded model is not installed" if str(path) == EMBEDDED else "no model"
        raise InputError(f"{what}: {folder} is not a folder (expected a momentseg checkpoint folder)")
    config = folder / "config.json"
    if not config.is_file():
        what = "the embedded model is not installed" if str(path) == EMBEDDED else "no model"
        raise InputError(f"{what}: {folder} has no config.json (expected a momentseg checkpoint folder)")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {config}: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{config} must hold a JSON object, found a JSON {type(data).__name__}")
    if released_source(data) is not None:  # a released MomentSeg / Sa2VA folder: imported when loaded
        return folder
    required = [f.name for f in dataclasses.fields(MomentSegConfig)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise CheckpointError(f"{config} lacks the field(s) {', '.join(missing)}: not a complete momentseg config")
    for name in ("qwen", "sam2"):
        if not isinstance(data[name], dict):
            raise CheckpointError(f"{config}: the field {name} must be a JSON object")
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder} has no tokenizer.json: a momentseg checkpoint needs its tokenizer")
    return folder


