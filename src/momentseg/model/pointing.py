"""The ``[SEG]`` pass's pointing head (``MomentSegConfig.seg_pointing``; BENCHMARKS.md, "Round 13"): where the
target is in each temporal patch of the low-res context video, one logit per merged context token.

The head reads the language model's output — the ``[SEG]`` head's input (the query) and every context video
token — and mixes them in a small bidirectional transformer, so a token of an early patch can learn from what its
object does later (the language model's own attention is causal), and the query from every token. Each token's
logit is the dot product of its output with the query's. Token positions enter as Fourier features of the
token's (time, row, column) at its cell centre, normalised to [0, 1], so any grid size works. With ``subgrid``
s > 1 (``MomentSegConfig.seg_pointing_subgrid``; "Round 24") each token gives s × s logits, one per sub-cell of
its merged cell (s² key projections of its output), so the map is s times as fine per side as the token grid. With
``vision`` (``MomentSegConfig.seg_pointing_vision``; "Round 16") each token's input also adds the same token of
the head's own vision tower, through a projection that starts at zero (a fresh one changes no map); with
``patches`` (``MomentSegConfig.seg_pointing_patches``; "Round 24") each sub-cell's key also adds that tower's
patch of the sub-cell before the merger, through a projection that starts at zero.

The ``[FIND]`` curve's moment head (``MomentSegConfig.find_moment_head``; "Round 14") is a second instance over the
``[FIND]`` head's input and the dense pass's video tokens; the model reads one logit per temporal patch from it."""

from __future__ import annotations

import math

import torch
from torch import nn

#: width, transformer layers (by default: ``MomentSegConfig.seg_pointing_layers`` can deepen the pointing head) and
#: attention heads of the pointing head (every preset)
WIDTH, LAYERS, HEADS = 128, 2, 4
#: Fourier frequencies 2^k·π, k < FREQUENCIES, per position axis
FREQUENCIES = 4


def _mixer(layers: int) -> nn.TransformerEncoder:
    if layers < 1:
        raise ValueError(f"a pointing head needs at least one layer, not {layers}")
    layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 2 * WIDTH, dropout=0.0, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def grid_positions(t: int, h: int, w: int) -> torch.Tensor:
    """Fourier features (t·h·w, 3·2·FREQUENCIES) of each token's normalised (time, row, column) cell centre."""
    axes = [(torch.arange(n, dtype=torch.float32) + 0.5) / n for n in (t, h, w)]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)  # (N, 3)
    angles = coords[..., None] * (math.pi * 2.0 ** torch.arange(FREQUENCIES))  # (N, 3, F)
    return torch.cat([angles.sin(), angles.cos()], -1).reshape(len(coords), -1)


class PointingHead(nn.Module):
    """(video tokens (N, d) of one video on a (t, h, w) merged grid, queries (b, d)[, the head's own vision
    tokens (N, d)][, each token's patches (N, s², ``patches``) before the tower's merger]) → maps
    (b, t, h·s, w·s), s = ``subgrid``."""

    def __init__(self, hidden_size: int, vision: bool = False, layers: int = LAYERS, subgrid: int = 1,
                 patches: int | None = None):
        super().__init__()
        if subgrid < 1:
            raise ValueError(f"a pointing head's subgrid is at least 1, not {subgrid}")
        self.subgrid = subgrid
        self.video_in = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, WIDTH))
        if vision:
            self.vision_in = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, WIDTH))
            nn.init.zeros_(self.vision_in[1].weight)
            nn.init.zeros_(self.vision_in[1].bias)
        self.query_in = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, WIDTH))
        self.position = nn.Linear(3 * 2 * FREQUENCIES, WIDTH)
        self.mixer = _mixer(layers)
        self.norm = nn.LayerNorm(WIDTH)
        self.key_out = nn.Linear(WIDTH, WIDTH * subgrid**2)  # sub-cell (i, j)'s key: block i·s + j
        self.query_out = nn.Linear(WIDTH, WIDTH)
        if patches is not None:
            self.add_patches(patches)

    def add_patches(self, width: int) -> None:
        """Add each sub-cell's own patch (``width`` wide, from the tower before its merger) to its key, through a
        projection that starts at zero (no map changes until it trains)."""
        param = self.key_out.weight
        self.patch_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, WIDTH)).to(param.device, param.dtype)
        nn.init.zeros_(self.patch_in[1].weight)
        nn.init.zeros_(self.patch_in[1].bias)

    @property
    def layers(self) -> int:
        """Transformer layers of the mixer."""
        return len(self.mixer.layers)

    def deepen(self, layers: int) -> None:
        """Grow the mixer to ``layers`` layers (in place): the new ones go on top and start as the identity (their
        attention and feed-forward outputs are zero; ``norm_first`` makes each a residual), so every map is
        unchanged until they train."""
        if layers < self.layers:
            raise ValueError(f"a pointing head of {self.layers} layers cannot shrink to {layers}")
        old = self.mixer
        self.mixer = _mixer(layers)
        param = next(old.parameters())
        self.mixer.to(param.device, param.dtype)
        for i, layer in enumerate(self.mixer.layers):
            if i < len(old.layers):
                layer.load_state_dict(old.layers[i].state_dict())
                continue
            for linear in (layer.self_attn.out_proj, layer.linear2):
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)

    def refine(self, subgrid: int) -> None:
        """Give a head of subgrid 1 ``subgrid`` × ``subgrid`` sub-cells per token (in place): every sub-cell's key
        projection starts as the token's, so each map is its token map repeated over the sub-cells until it
        trains."""
        if self.subgrid != 1:
            raise ValueError(f"only a head of subgrid 1 can be refined, this one has {self.subgrid}")
        if subgrid < 1:
            raise ValueError(f"a pointing head's subgrid is at least 1, not {subgrid}")
        old, n = self.key_out, subgrid**2
        self.key_out = nn.Linear(WIDTH, WIDTH * n).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            self.key_out.weight.copy_(old.weight.repeat(n, 1))
            self.key_out.bias.copy_(old.bias.repeat(n))
        self.subgrid = subgrid

    def forward(self, video: torch.Tensor, grid: tuple[int, int, int], queries: torch.Tensor,
                vision: torch.Tensor | None = None, patches: torch.Tensor | None = None) -> torch.Tensor:
        t, h, w = grid
        if video.shape[0] != t * h * w:
            raise ValueError(f"{video.shape[0]} video tokens do not fill a {t}×{h}×{w} grid")
        if (vision is None) != (not hasattr(self, "vision_in")):
            raise ValueError("the head's own vision tokens are given exactly when it has a vision input")
        dtype = self.position.weight.dtype
        pos = self.position(grid_positions(t, h, w).to(video.device, dtype))
        tokens = self.video_in(video.to(dtype)) + pos
        if vision is not None:
            if vision.shape[0] != video.shape[0]:
                raise ValueError(f"{vision.shape[0]} vision tokens for {video.shape[0]} video tokens")
            tokens = tokens + self.vision_in(vision.to(dtype))
        tokens = tokens[None].expand(len(queries), -1, -1)
        x = self.norm(self.mixer(torch.cat([self.query_in(queries.to(dtype))[:, None], tokens], 1)))
        s = self.subgrid
        keys = self.key_out(x[:, 1:]).unflatten(-1, (s * s, WIDTH))  # (b, N, s², WIDTH)
        if (patches is None) != (not hasattr(self, "patch_in")):
            raise ValueError("the tower's patches are given exactly when the head reads them")
        if patches is not None:
            if patches.shape[:2] != (video.shape[0], s * s):
                raise ValueError(f"patches {tuple(patches.shape)} for {video.shape[0]} tokens of {s * s} sub-cells")
            keys = keys + self.patch_in(patches.to(dtype))[None]
        logits = (keys * self.query_out(x[:, :1])[:, :, None]).sum(-1) / math.sqrt(WIDTH)  # (b, N, s²)
        logits = logits.float().reshape(len(queries), t, h, w, s, s).permute(0, 1, 2, 4, 3, 5)
        return logits.reshape(len(queries), t, h * s, w * s)
