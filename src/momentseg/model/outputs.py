"""Typed outputs of MomentSegModel's training forwards (instead of dicts).

Each holds the unweighted loss components (with their graph, each a mean over the call's samples);
``components()`` gives them by name, in the order of ``COMPONENTS`` (where the trainer reads the names it logs), and
``weighted(weights)`` their sum weighted by a mapping component name → weight. The weights belong to the training
config (``momentseg.train.config.LossConfig``), not to the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch


@dataclass
class _LossOutput:
    COMPONENTS: ClassVar[tuple[str, ...]] = ()

    def components(self) -> dict[str, torch.Tensor]:
        """The unweighted loss components by name."""
        return {name: getattr(self, name) for name in self.COMPONENTS}

    def weighted(self, weights: Mapping[str, float]) -> torch.Tensor:
        """Σ weight × component over ``COMPONENTS`` (a weight for every component is required)."""
        missing = [name for name in self.COMPONENTS if name not in weights]
        if missing:
            raise KeyError(f"no loss weight for {', '.join(missing)}")
        return sum(float(weights[name]) * getattr(self, name) for name in self.COMPONENTS)


@dataclass
class TSGOutput(_LossOutput):
    """``forward_tsg``: find_loss, lm_loss and event_bce (0 for a model without an event head); ``find_logits``:
    per sample (T_i,) frame logits cos/τ (detached)."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("find_loss", "lm_loss", "event_bce")
    find_loss: torch.Tensor
    lm_loss: torch.Tensor
    event_bce: torch.Tensor
    find_logits: tuple[torch.Tensor, ...] = ()


@dataclass
class RefVOSOutput(_LossOutput):
    """``forward_refvos``: mask_bce, mask_dice, lm_loss, object_bce and point_bce (0 without ``seg_pointing``
    or labelled context); ``seg_embeddings``: the (B, P) SAM2 prompts of the samples (detached)."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("mask_bce", "mask_dice", "lm_loss", "object_bce", "point_bce")
    mask_bce: torch.Tensor
    mask_dice: torch.Tensor
    lm_loss: torch.Tensor
    object_bce: torch.Tensor
    point_bce: torch.Tensor
    seg_embeddings: torch.Tensor | None = None


@dataclass
class MomentOutput(_LossOutput):
    """``forward_moment`` (the moment head alone): find_loss; ``find_logits``: the curves (detached)."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("find_loss",)
    find_loss: torch.Tensor
    find_logits: tuple[torch.Tensor, ...] = ()


@dataclass
class PointOutput(_LossOutput):
    """``forward_point`` (the pointing head alone): point_bce, presence_bce and presence_point_bce (the presence
    head's map's pointing loss; 0 without ``seg_presence_head``)."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("point_bce", "presence_bce", "presence_point_bce")
    point_bce: torch.Tensor
    presence_bce: torch.Tensor
    presence_point_bce: torch.Tensor


@dataclass
class TrackOutput(_LossOutput):
    """``forward_track`` (SAM2 pretraining): mask_bce, mask_dice and object_bce."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("mask_bce", "mask_dice", "object_bce")
    mask_bce: torch.Tensor
    mask_dice: torch.Tensor
    object_bce: torch.Tensor


@dataclass
class ClassesOutput(_LossOutput):
    """``forward_classes`` (image-encoder pretraining): per-pixel shape and colour cross-entropies."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("shape_ce", "colour_ce")
    shape_ce: torch.Tensor
    colour_ce: torch.Tensor


@dataclass
class TokensOutput(_LossOutput):
    """``forward_tokens`` (vision-tower pretraining): per-token shape, colour and motion soft cross-entropies."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("token_shape_ce", "token_colour_ce", "token_motion_ce")
    token_shape_ce: torch.Tensor
    token_colour_ce: torch.Tensor
    token_motion_ce: torch.Tensor


class SegPrompts(NamedTuple):
    """What the ``[SEG]`` pass gives SAM2 for n queries: ``embeddings`` (n, P) (token, plus pixel query), the
    ``answers`` and, for a model with ``seg_pointing`` and a context video, ``priors`` (n, J, h, w): mask logits
    per context temporal patch (else None) and ``presence`` (n,): each query's presence logit (its presence head's
    map's maximum, or its pointing map's); with ``point_presence_threshold`` too, ``present`` (n,) bool: whether
    that logit reaches it (else None: every query has a target)."""

    embeddings: torch.Tensor
    answers: list[str]
    priors: torch.Tensor | None
    present: torch.Tensor | None = None
    presence: torch.Tensor | None = None


@dataclass
class CaptionOutput(_LossOutput):
    """``forward_caption`` (vision–language pretraining): lm_loss."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("lm_loss",)
    lm_loss: torch.Tensor
