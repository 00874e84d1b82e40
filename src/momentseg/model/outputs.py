"""Typed outputs of MomentSegModel's training forwards (instead of dicts).

Each holds ``loss`` (the weighted sum the model's config describes, with its graph) and the unweighted loss
components (detached, each a mean over the call's samples); ``components()`` gives the components by name, in
the order of ``COMPONENTS``, which is where the trainer reads the names it logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass
class _LossOutput:
    COMPONENTS: ClassVar[tuple[str, ...]] = ()

    def components(self) -> dict[str, torch.Tensor]:
        """The unweighted loss components by name."""
        return {name: getattr(self, name) for name in self.COMPONENTS}


@dataclass
class TSGOutput(_LossOutput):
    """``forward_tsg``: loss = w_find·find_loss + w_lm·lm_loss; ``find_logits``: per sample (T_i,) frame logits
    cos/τ (detached)."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("find_loss", "lm_loss")
    loss: torch.Tensor
    find_loss: torch.Tensor
    lm_loss: torch.Tensor
    find_logits: tuple[torch.Tensor, ...] = ()


@dataclass
class RefVOSOutput(_LossOutput):
    """``forward_refvos``: loss = w_bce·mask_bce + w_dice·mask_dice + w_lm·lm_loss + w_obj·object_bce;
    ``seg_embeddings``: the (B, P) SAM2 prompts of the samples (detached)."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("mask_bce", "mask_dice", "lm_loss", "object_bce")
    loss: torch.Tensor
    mask_bce: torch.Tensor
    mask_dice: torch.Tensor
    lm_loss: torch.Tensor
    object_bce: torch.Tensor
    seg_embeddings: torch.Tensor | None = None


@dataclass
class TrackOutput(_LossOutput):
    """``forward_track`` (SAM2 pretraining): loss = w_bce·mask_bce + w_dice·mask_dice + w_obj·object_bce."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("mask_bce", "mask_dice", "object_bce")
    loss: torch.Tensor
    mask_bce: torch.Tensor
    mask_dice: torch.Tensor
    object_bce: torch.Tensor


@dataclass
class CaptionOutput(_LossOutput):
    """``forward_caption`` (vision–language pretraining): loss = w_lm·lm_loss."""

    COMPONENTS: ClassVar[tuple[str, ...]] = ("lm_loss",)
    loss: torch.Tensor
    lm_loss: torch.Tensor
