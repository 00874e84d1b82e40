"""The MomentSeg processor: samples → padded batch tensors for Qwen2.5-VL (no model weights here).

As transformers splits ``processing_qwen2_5_vl`` from the modeling file, :class:`MomentSegProcessor` owns what
turns frames and text into model inputs: the tokenizer, the config's system prompt / prompt and answer templates,
and the :class:`~momentseg.model.preprocess.VisionLayout` (resize, normalise, patchify). Sequences follow
Qwen2.5-VL's chat structure::

    <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n
    [<|vision_start|><|video_pad|>×n<|vision_end|>] [<|vision_start|><|image_pad|>×n<|vision_end|>]×K
    {prompt}<|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>

A batch (:class:`MomentSegBatch`) is right-padded; its attention mask lets transformers compute Qwen2.5-VL's
3-D rope positions per sample (``get_rope_index`` skips the padding). Its vision inputs are the samples'
patches concatenated in sample order, with one grid row per image / video, which is the order in which
transformers fills the placeholder tokens (row-major over the batch).

:class:`PrefixedQueries` is the form for several queries on the same vision inputs: the shared prefix (system +
vision tokens + the prompt's text before the query) once, and each query's suffix (right-padded), so that the
model runs the prefix once and the suffixes against its KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from momentseg.model.preprocess import VisionLayout, image_inputs, num_tokens, video_inputs
from momentseg.model.tokenizer import IM_END, IM_START, token_ids

#: mm token types (transformers' ``mm_token_type_ids``): text, image placeholder, video placeholder.
TEXT, IMAGE, VIDEO = 0, 1, 2


@dataclass
class Sequence:
    """One tokenized sample."""

    input_ids: torch.Tensor  # (L,) long
    mm_types: torch.Tensor  # (L,) int: 0 text, 1 image token, 2 video token
    answer_start: int  # index of the first answer token
    query_span: tuple[int, int] = (0, 0)  # [start, end) of the query's tokens in input_ids


@dataclass
class VisionInputs:
    """Patches of some images or videos, concatenated, and their grids (one (t, h, w) row each)."""

    pixel_values: torch.Tensor  # (N_patches, 3·tps·p·p)
    grid_thw: torch.Tensor  # (n, 3) long


@dataclass
class MomentSegBatch:
    """Padded model inputs of B samples (right padding) and where each sample's special tokens sit."""

    input_ids: torch.Tensor  # (B, L) long
    attention_mask: torch.Tensor  # (B, L) long, 1 on real tokens
    mm_token_type_ids: torch.Tensor  # (B, L) int
    lengths: torch.Tensor  # (B,) long: real tokens per sample
    answer_starts: torch.Tensor  # (B,) long
    query_spans: torch.Tensor  # (B, 2) long: [start, end) of each query's tokens
    token_positions: torch.Tensor  # (B,) long: the [FIND] / [SEG] token (-1: the batch reads none)
    images: VisionInputs | None = None  # every sample's images, in sample order
    videos: VisionInputs | None = None  # every sample's video (at most one per sample), in sample order
    sample_videos: tuple[int | None, ...] = ()  # per sample: its row of videos.grid_thw (None: no video)
    second_per_grid: float = 1.0  # seconds per temporal patch of every video (temporal_patch_size / fps)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def model_inputs(self, device) -> dict[str, torch.Tensor]:
        """Keyword arguments of ``Qwen2_5_VLModel.forward`` (no cache, no position ids: transformers computes
        the rope indices per sample from the attention mask and the grids)."""
        kwargs = {
            "input_ids": self.input_ids.to(device),
            "attention_mask": self.attention_mask.to(device),
            "mm_token_type_ids": self.mm_token_type_ids.to(device),
        }
        kwargs.update(vision_kwargs(self.images, self.videos, self.second_per_grid, device))
        return kwargs

    def query_ids(self, i: int) -> torch.Tensor:
        """The query's token ids of sample ``i``."""
        s, e = self.query_spans[i].tolist()
        return self.input_ids[i, s:e]


@dataclass
class PrefixedQueries:
    """Several queries on the same vision inputs: the shared prefix once and each query's suffix.

    The full sequence of query ``i`` is ``prefix.input_ids[0] ++ suffix_ids[i, :suffix_lengths[i]]``; positions
    in ``token_positions`` / ``answer_starts`` / ``query_spans`` are in the suffix's coordinates."""

    prefix: MomentSegBatch  # one row: system + vision tokens + the prompt's text before any query token
    suffix_ids: torch.Tensor  # (n, Ls) long, right padded
    suffix_mask: torch.Tensor  # (n, Ls) long
    suffix_lengths: torch.Tensor  # (n,) long
    answer_starts: torch.Tensor  # (n,) long
    query_spans: torch.Tensor  # (n, 2) long
    token_positions: torch.Tensor  # (n,) long

    def __len__(self) -> int:
        return int(self.suffix_ids.shape[0])

    @property
    def prefix_length(self) -> int:
        return int(self.prefix.input_ids.shape[1])

    def query_ids(self, i: int) -> torch.Tensor:
        s, e = self.query_spans[i].tolist()
        return self.suffix_ids[i, s:e]


def vision_kwargs(images: VisionInputs | None, videos: VisionInputs | None, second_per_grid: float,
                  device) -> dict[str, torch.Tensor]:
    """The vision keyword arguments of ``Qwen2_5_VLModel.forward``."""
    kwargs = {}
    if videos is not None:
        kwargs["pixel_values_videos"] = videos.pixel_values.to(device)
        kwargs["video_grid_thw"] = videos.grid_thw.to(device)
        kwargs["second_per_grid_ts"] = torch.full((len(videos.grid_thw),), float(second_per_grid), device=device)
    if images is not None:
        kwargs["pixel_values"] = images.pixel_values.to(device)
        kwargs["image_grid_thw"] = images.grid_thw.to(device)
    return kwargs


def concat_vision(parts: list[VisionInputs]) -> VisionInputs | None:
    """Several images' or videos' inputs as one (their patches and grid rows in order); None for none."""
    if not parts:
        return None
    return VisionInputs(torch.cat([p.pixel_values for p in parts]), torch.cat([p.grid_thw for p in parts]))


def as_uint8(frames) -> np.ndarray | torch.Tensor:
    """``frames`` as a uint8 array / CPU tensor (a ValueError for any other dtype)."""
    if isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        return frames.cpu()
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {arr.dtype}")
    return arr


class MomentSegProcessor:
    """Builds MomentSeg's token sequences and vision inputs, one sample or a padded batch.

    ``config``: the model's :class:`~momentseg.model.config.MomentSegConfig` (read at each call: prompts, frame
    sizes, fps); ``tokenizer``: a ``PreTrainedTokenizerFast`` with the special tokens the config's Qwen ids name
    (None: a model without one; building sequences then raises); ``layout``: the vision tower's patch geometry
    (default: the one the config's Qwen vision config gives)."""

    def __init__(self, config, tokenizer=None, layout: VisionLayout | None = None):
        self.config = config
        self.layout = layout if layout is not None else layout_of(config)
        self._tokenizer = None
        self._ids: dict[str, int] | None = None
        if tokenizer is not None:
            self.tokenizer = tokenizer

    # ------------------------------------------------------------------ tokenizer
    @property
    def tokenizer(self):
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer) -> None:
        self._ids = self._check_tokenizer(tokenizer) if tokenizer is not None else None
        self._tokenizer = tokenizer

    def _check_tokenizer(self, tokenizer) -> dict[str, int]:
        ids = token_ids(tokenizer)
        q = self.config.qwen
        expected = {
            "image_pad": q["image_token_id"],
            "video_pad": q["video_token_id"],
            "vision_start": q["vision_start_token_id"],
            "vision_end": q["vision_end_token_id"],
        }
        for key, want in expected.items():
            if ids[key] != want:
                raise ValueError(f"tokenizer id of {key} is {ids[key]}, the Qwen config says {want}")
        vocab = int(q["text_config"]["vocab_size"])
        if len(tokenizer) > vocab:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the embedding table only {vocab}")
        return ids

    @property
    def ids(self) -> dict[str, int]:
        """Ids of the structural tokens (``seg``, ``find``, ``im_end``, …); a ValueError without a tokenizer."""
        if self._ids is None:
            raise ValueError("this model has no tokenizer")
        return self._ids

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else self.ids["im_end"]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    # ------------------------------------------------------------------ one sequence
    def sequence(self, vision: list[tuple[int, int]], template: str, query: str, answer: str) -> Sequence:
        """vision: (mm type 1 image / 2 video, number of placeholder tokens) parts, in order; ``template``
        holds ``{query}``."""
        prompt = template.format(query=query)
        ids = self.ids
        c = self.config
        parts: list[tuple[list[int], int]] = [
            (self.encode(f"{IM_START}system\n{c.system_prompt}{IM_END}\n{IM_START}user\n"), TEXT)
        ]
        for kind, n in vision:
            pad = ids["image_pad"] if kind == IMAGE else ids["video_pad"]
            parts += [([ids["vision_start"]], TEXT), ([pad] * n, kind), ([ids["vision_end"]], TEXT)]
        before = sum(len(p) for p, _ in parts)
        parts.append((self.encode(f"{prompt}{IM_END}\n{IM_START}assistant\n"), TEXT))
        answer_start = sum(len(p) for p, _ in parts)
        # the query's tokens: the tokens that encoding the text up to the end of the query adds
        pre = template.split("{query}")[0]
        start = before + len(self.encode(pre))
        end = max(start + 1, before + len(self.encode(pre + query)))
        parts.append((self.encode(f"{answer}{IM_END}"), TEXT))
        input_ids = torch.tensor([t for p, _ in parts for t in p], dtype=torch.long)
        mm = torch.tensor([k for p, k in parts for _ in p], dtype=torch.int32)
        return Sequence(input_ids, mm, answer_start, (start, min(end, answer_start)))

    def position(self, seq: Sequence, token: str) -> int:
        """Index of the first ``token`` (``find`` / ``seg``) of the answer."""
        tid = self.ids[token]
        hits = (seq.input_ids[seq.answer_start :] == tid).nonzero()
        if len(hits) == 0:
            raise ValueError(f"the answer template has no {token} token")
        return seq.answer_start + int(hits[0, 0])

    # ------------------------------------------------------------------ vision inputs
    def video(self, frames, size: int) -> VisionInputs:
        """One video (T,H,W,3) uint8 at side budget ``size``."""
        return VisionInputs(*video_inputs(as_uint8(frames), size, self.layout))

    def images(self, frames, size: int) -> VisionInputs:
        """K images (K,H,W,3) uint8 at side budget ``size``, each its own grid row."""
        return VisionInputs(*image_inputs(as_uint8(frames), size, self.layout))

    def tokens(self, vision: VisionInputs) -> list[int]:
        """LLM placeholder tokens per grid row."""
        return num_tokens(vision.grid_thw, self.layout)

    @property
    def second_per_grid(self) -> float:
        return self.layout.temporal_patch_size / self.config.fps

    # ------------------------------------------------------------------ per task
    def tsg_sample(self, frames, query: str) -> tuple[Sequence, VisionInputs]:
        """The [FIND] sequence of ``query`` over low-res ``frames`` and the video's inputs."""
        c = self.config
        video = self.video(frames, c.find_frame_size)
        return self.sequence([(VIDEO, self.tokens(video)[0])], c.prompt_tsg, query, c.answer_tsg), video

    def refvos_sample(self, keyframes, query: str, context=None) -> tuple[Sequence, VisionInputs | None,
                                                                          VisionInputs]:
        """The [SEG] sequence of ``query`` over high-res ``keyframes`` (images) after optional low-res
        ``context`` (a video; None or no frames: none), and the vision inputs (context video, keyframe images)."""
        c = self.config
        video = None
        if context is not None and len(context) > 0:
            video = self.video(context, c.context_frame_size)
        images = self.images(keyframes, c.seg_frame_size)
        return self.sequence(self._vision_parts(video, images), c.prompt_seg, query, c.answer_seg), video, images

    def caption_sample(self, frames, question: str, answer: str) -> tuple[Sequence, VisionInputs]:
        """A vision–language sequence: low-res ``frames``, the question as the prompt, then ``answer``."""
        video = self.video(frames, self.config.find_frame_size)
        return self.sequence([(VIDEO, self.tokens(video)[0])], "{query}", question, answer), video

    def tsg(self, frames: list, queries: list[str]) -> MomentSegBatch:
        """A padded [FIND] batch: sample ``i`` is ``queries[i]`` over ``frames[i]``."""
        items = [self.tsg_sample(f, q) for f, q in zip(frames, queries, strict=True)]
        return self.collate([s for s, _ in items], videos=[v for _, v in items], token="find")

    def refvos(self, keyframes: list, queries: list[str], contexts: list | None = None) -> MomentSegBatch:
        """A padded [SEG] batch: sample ``i`` is ``queries[i]`` over ``keyframes[i]`` after ``contexts[i]``."""
        contexts = [None] * len(keyframes) if contexts is None else contexts
        items = [self.refvos_sample(k, q, c) for k, q, c in zip(keyframes, queries, contexts, strict=True)]
        return self.collate([s for s, _, _ in items], videos=[v for _, v, _ in items],
                            images=[i for _, _, i in items], token="seg")

    def caption(self, frames: list, questions: list[str], answers: list[str]) -> MomentSegBatch:
        """A padded vision–language batch (no special token read)."""
        items = [self.caption_sample(f, q, a) for f, q, a in zip(frames, questions, answers, strict=True)]
        return self.collate([s for s, _ in items], videos=[v for _, v in items])

    # ------------------------------------------------------------------ batching
    def collate(self, seqs: list[Sequence], videos: list[VisionInputs | None] | None = None,
                images: list[VisionInputs | None] | None = None, token: str | None = None) -> MomentSegBatch:
        """Right-pad ``seqs`` into one batch; ``videos[i]`` / ``images[i]``: sample i's vision inputs (None:
        none); ``token``: the special token whose position each sample reports (``find`` / ``seg``)."""
        if not seqs:
            raise ValueError("an empty batch")
        n = len(seqs)
        videos = [None] * n if videos is None else list(videos)
        images = [None] * n if images is None else list(images)
        lengths = torch.tensor([len(s.input_ids) for s in seqs], dtype=torch.long)
        width = int(lengths.max())
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        mm = torch.zeros((n, width), dtype=torch.int32)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s.input_ids)] = s.input_ids
            mask[i, : len(s.input_ids)] = 1
            mm[i, : len(s.input_ids)] = s.mm_types
        rows, sample_videos = 0, []
        for v in videos:
            sample_videos.append(None if v is None else rows)
            rows += 0 if v is None else len(v.grid_thw)
            if v is not None and len(v.grid_thw) != 1:
                raise ValueError("a sample has at most one video")
        positions = [self.position(s, token) if token is not None else -1 for s in seqs]
        return MomentSegBatch(
            input_ids=input_ids,
            attention_mask=mask,
            mm_token_type_ids=mm,
            lengths=lengths,
            answer_starts=torch.tensor([s.answer_start for s in seqs], dtype=torch.long),
            query_spans=torch.tensor([s.query_span for s in seqs], dtype=torch.long),
            token_positions=torch.tensor(positions, dtype=torch.long),
            images=concat_vision([x for x in images if x is not None]),
            videos=concat_vision([x for x in videos if x is not None]),
            sample_videos=tuple(sample_videos),
            second_per_grid=self.second_per_grid,
        )

    # ------------------------------------------------------------------ one prefix, many queries
    def tsg_queries(self, frames, queries: list[str]) -> PrefixedQueries:
        """``queries`` over the same low-res ``frames``: the video is patchified once."""
        c = self.config
        video = self.video(frames, c.find_frame_size)
        seqs = [self.sequence([(VIDEO, self.tokens(video)[0])], c.prompt_tsg, q, c.answer_tsg) for q in queries]
        return self.prefixed(seqs, videos=video, token="find")

    def refvos_queries(self, keyframes, queries: list[str], context=None) -> PrefixedQueries:
        """``queries`` over the same high-res ``keyframes`` and ``context``."""
        if not queries:
            raise ValueError("no query")
        c = self.config
        first, video, images = self.refvos_sample(keyframes, queries[0], context)
        parts = self._vision_parts(video, images)
        seqs = [first] + [self.sequence(parts, c.prompt_seg, q, c.answer_seg) for q in queries[1:]]
        return self.prefixed(seqs, videos=video, images=images, token="seg")

    def _vision_parts(self, video: VisionInputs | None, images: VisionInputs) -> list[tuple[int, int]]:
        parts = [] if video is None else [(VIDEO, self.tokens(video)[0])]
        return parts + [(IMAGE, n) for n in self.tokens(images)]

    def prefixed(self, seqs: list[Sequence], videos: VisionInputs | None = None, images: VisionInputs | None = None,
                 token: str = "find") -> PrefixedQueries:
        """Split sequences that share their vision inputs into the common prefix (everything before the first
        token where they differ, and before any query token) and right-padded suffixes."""
        if not seqs:
            raise ValueError("no query")
        cut = min(s.query_span[0] for s in seqs)
        first = seqs[0].input_ids
        for s in seqs[1:]:
            m = min(cut, len(s.input_ids))
            differ = (s.input_ids[:m] != first[:m]).nonzero()
            cut = int(differ[0, 0]) if len(differ) else m
        if any(bool((s.mm_types[cut:] != TEXT).any()) for s in seqs):
            raise ValueError("the queries' sequences differ before their vision tokens end: no shared prefix")
        if cut < 1:
            raise ValueError("the queries' sequences share no prefix")
        prefix = self.collate([Sequence(first[:cut], seqs[0].mm_types[:cut], cut, (cut, cut))],
                              videos=[videos], images=[images])
        tails = [Sequence(s.input_ids[cut:], s.mm_types[cut:], s.answer_start - cut,
                          (s.query_span[0] - cut, s.query_span[1] - cut)) for s in seqs]
        body = self.collate(tails, token=token)
        return PrefixedQueries(prefix, body.input_ids, body.attention_mask, body.lengths, body.answer_starts,
                               body.query_spans, body.token_positions)


def layout_of(config) -> VisionLayout:
    """The :class:`VisionLayout` a :class:`~momentseg.model.config.MomentSegConfig` describes."""
    vc = config.qwen["vision_config"]
    return VisionLayout(
        patch_size=int(vc.get("patch_size", 14)),
        merge_size=int(vc.get("spatial_merge_size", 2)),
        temporal_patch_size=int(vc.get("temporal_patch_size", 2)),
        image_mean=tuple(config.image_mean),
        image_std=tuple(config.image_std),
    )
