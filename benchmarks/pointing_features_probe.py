"""What bounds the ``[SEG]`` pass's pointing map: the head, or the features it reads (BENCHMARKS.md, "Round 15").

The frozen model's ``[SEG]`` pass runs once over pointing samples of the synthetic world (``task: point``, the
samples ``configs/tiny-pointing.yaml`` trains on: training-style keyframes, a 16-frame context). Cached per
sample: the language model's merged context tokens, the vision tower's features of the patches merged into each
of them (*cells*, before the merger; checked: the merger turns them into the tokens the language model reads),
the ``[SEG]`` head's input, and per token the target's and any object's pixel share. Then heads are trained on
the cache with the pointing loss (``balanced_bce``, as ``MomentSegModel._point_loss``), each from the same seed:

- ``shipped``: the model's own pointing head, not retrained (the reference);
- ``tokens``: a fresh head of the same architecture (``PointingHead``) on the same tokens: the head's training;
- ``cells``: the same, each token's input plus its cells (appearance at twice the token grid): the features;
- ``cells-fine``: ``cells``, scored per patch (twice the grid) by a small MLP over the token's output and its
  patch's feature, trained at the patch grid: a finer map.

Scored on val samples as ``pointing_eval.py`` scores the pipeline's map (a finer map by its maximum per token):
on every context patch where the target shows and ≥ 2 tokens hold an object, does the top object-holding token
hold the target (``hit``; ``chance`` the share that do), and the presence AUC of the map's maximum.

    python benchmarks/pointing_features_probe.py --model src/momentseg/embedded --json \\
        benchmarks/results/pointing_features_probe.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.vision_utils import get_vision_window_index

from momentseg.io.atomic import atomic_write_text
from momentseg.model.momentseg import MomentSegModel, balanced_bce, event_token_targets
from momentseg.model.pointing import WIDTH, PointingHead, grid_positions
from momentseg.model.processing import VIDEO
from momentseg.train.data import SyntheticSource
from momentseg.train.shapes import SampleShape

sys.path.insert(0, str(Path(__file__).resolve().parent))
from find_probe import auc  # noqa: E402
from pointing_eval import patch_hit  # noqa: E402
from seg_state_probe import MIN_SHARE  # noqa: E402

VARIANTS = ("shipped", "tokens", "cells", "cells-fine")
BATCH = 32


@torch.no_grad()
def collect(model: MomentSegModel, split: str, n: int, seed: int) -> dict[str, torch.Tensor]:
    """The cache of ``n`` pointing samples of ``split`` (module docstring)."""
    c, m = model.config, model.layout.merge_size
    shape = SampleShape(tsg_side=int(c.find_frame_size), context_side=int(c.context_frame_size),
                        keyframe_side=int(c.sam2_image_size), context_frames=int(c.context_frames), keyframes=5,
                        keyframe_window=10, temporal_patch=model.layout.temporal_patch_size)
    source, rng, visual = SyntheticSource("point", split), np.random.default_rng(seed), model.qwen.model.visual
    rec: dict[str, list] = {k: [] for k in ("tokens", "cells", "query", "obj", "tgt", "obj_fine", "tgt_fine")}
    for lo in range(0, n, BATCH):
        samples = [source.sample(lo + k, rng, shape) for k in range(min(BATCH, n - lo))]
        batch, hidden, rows, query_ids = model._seg_pass(samples)
        queries = model._head_inputs(rows, query_ids, hidden.dtype)
        grid = batch.videos.grid_thw
        out = model.qwen.model.get_video_features(batch.videos.pixel_values, grid)
        order, _ = get_vision_window_index(grid, visual.spatial_merge_size, visual.window_size, visual.patch_size)
        patches = out.last_hidden_state.reshape(-1, m * m, out.last_hidden_state.shape[-1])[torch.argsort(order)]
        if not torch.allclose(visual.merger(patches.flatten(0, 1)), torch.cat(out.pooler_output), atol=1e-5):
            raise RuntimeError("the cells do not merge into the video tokens")
        offset = 0
        for i, s in enumerate(samples):
            t, gh, gw = (int(x) for x in grid[batch.sample_videos[i]])
            h, w, count = gh // m, gw // m, t * (gh // m) * (gw // m)
            cells = patches[offset : offset + count].reshape(t, h, w, m, m, -1).permute(0, 1, 3, 2, 4, 5)
            offset += count
            flags = np.where(np.asarray(s.context_labels) < 0, -1, np.asarray(s.context_labels) > 0).astype(np.int64)
            rec["tokens"].append(hidden[i][batch.mm_token_type_ids[i] == VIDEO].reshape(t, h, w, -1).half())
            rec["cells"].append(cells.reshape(t, gh, gw, -1).half())
            rec["query"].append(queries[i].float())
            for suffix, side in (("", (h, w)), ("_fine", (gh, gw))):
                share, among = event_token_targets(flags, 1, t, model.layout.temporal_patch_size, side)
                rec["obj" + suffix].append(share.reshape(t, *side))
                rec["tgt" + suffix].append(among[:, 0].reshape(t, *side))
        print(f"{split}: {lo + len(samples)}/{n} samples", file=sys.stderr, flush=True)
    return {k: torch.stack(v) for k, v in rec.items()}


class ProbeHead(PointingHead):
    """``PointingHead`` run on a batch of videos of one grid. ``cells``: each token's input also reads its m×m
    cells; ``fine``: one logit per patch, from an MLP over the token's output, the patch's feature and its
    position. Without either it is the model's head (same parameters: ``shipped`` loads them)."""

    def __init__(self, hidden_size: int, cell_size: int, merge: int, cells: bool, fine: bool):
        super().__init__(hidden_size)
        self.merge, self.cells, self.fine = merge, cells, fine
        if cells:
            self.cells_in = nn.Sequential(nn.LayerNorm(merge * merge * cell_size),
                                          nn.Linear(merge * merge * cell_size, WIDTH))
        if fine:
            self.patch_in = nn.Sequential(nn.LayerNorm(cell_size), nn.Linear(cell_size, WIDTH))
            self.patch_mlp = nn.Sequential(nn.Linear(3 * WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))

    def maps(self, tokens: torch.Tensor, cells: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """tokens (b, t, h, w, d), cells (b, t, m·h, m·w, d_v), queries (b, d) → (b, t, h, w) or, fine, (b, t, mh, mw)."""
        b, t, h, w, _ = tokens.shape
        m = self.merge
        x = self.video_in(tokens.flatten(1, 3)) + self.position(grid_positions(t, h, w))
        if self.cells:
            grouped = cells.reshape(b, t, h, m, w, m, -1).permute(0, 1, 2, 4, 3, 5, 6).reshape(b, t * h * w, -1)
            x = x + self.cells_in(grouped)
        x = self.norm(self.mixer(torch.cat([self.query_in(queries)[:, None], x], 1)))
        query = self.query_out(x[:, 0])
        if not self.fine:
            return (self.key_out(x[:, 1:]) * query[:, None]).sum(-1).reshape(b, t, h, w) / math.sqrt(WIDTH)
        out = x[:, 1:].reshape(b, t, h, 1, w, 1, WIDTH).expand(-1, -1, -1, m, -1, m, -1).reshape(b, t, m * h, m * w, WIDTH)
        pos = self.position(grid_positions(t, m * h, m * w)).reshape(1, t, m * h, m * w, WIDTH).expand(b, -1, -1, -1, -1)
        keys = self.key_out(out + self.patch_mlp(torch.cat([out, self.patch_in(cells), pos], -1)))
        return (keys * query[:, None, None, None]).sum(-1) / math.sqrt(WIDTH)


def make_head(variant: str, model: MomentSegModel, cache: dict) -> ProbeHead:
    torch.manual_seed(0)
    head = ProbeHead(cache["tokens"].shape[-1], cache["cells"].shape[-1], model.layout.merge_size,
                     cells=variant.startswith("cells"), fine=variant == "cells-fine")
    if variant == "shipped":
        head.load_state_dict(model.pointing_head.float().state_dict())
    return head


def head_maps(head: ProbeHead, cache: dict, idx) -> torch.Tensor:
    return head.maps(cache["tokens"][idx].float(), cache["cells"][idx].float(), cache["query"][idx])


def train_head(variant: str, head: ProbeHead, cache: dict, steps: int, lr: float) -> list:
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.03)
    suffix, losses = "_fine" if head.fine else "", []
    for step in range(steps):
        idx = torch.randint(len(cache["query"]), (BATCH,))
        x = head_maps(head, cache, idx).reshape(-1)
        loss = balanced_bce(x, cache["tgt" + suffix][idx].reshape(-1), cache["obj" + suffix][idx].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"{variant}: step {step + 1} loss {np.mean(losses[-100:]):.4f}", file=sys.stderr, flush=True)
    return losses


@torch.no_grad()
def score(head: ProbeHead, cache: dict) -> dict:
    hits, chances, peaks, present = [], [], [], []
    for lo in range(0, len(cache["query"]), 64):
        idx = slice(lo, lo + 64)
        maps = head_maps(head, cache, idx)
        b, t, h, w = cache["obj"][idx].shape
        if maps.shape[2:] != (h, w):  # a finer map: its maximum per token
            maps = maps.reshape(b, t, h, maps.shape[2] // h, w, maps.shape[3] // w).amax((3, 5))
        target, objects = cache["obj"][idx] * cache["tgt"][idx], cache["obj"][idx]
        for i in range(b):
            present.append(bool((target[i] > MIN_SHARE).any()))
            peaks.append(float(maps[i].max()))
            for j in range(t):
                scored = patch_hit(target[i, j].flatten(), objects[i, j].flatten(), maps[i, j].flatten())
                if scored is not None:
                    hits.append(scored[0])
                    chances.append(scored[1])
    present_arr = np.array(present)
    return {"hit": float(np.mean(hits)), "chance": float(np.mean(chances)), "patches": len(hits),
            "presence_auc": auc(np.array(peaks), present_arr), "no_target": int((~present_arr).sum())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a model folder with a pointing head")
    ap.add_argument("--train", type=int, default=12800, help="train-split pointing samples cached")
    ap.add_argument("--val", type=int, default=1600, help="val-split pointing samples scored")
    ap.add_argument("--steps", type=int, default=1500, help="training steps of each head (batch 32)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if min(args.train, args.val, args.steps) < 1:
        ap.error("--train, --val and --steps must be ≥ 1")
    torch.manual_seed(0)
    model = MomentSegModel.from_pretrained(args.model).eval()
    if not model.config.seg_pointing:
        ap.error(f"--model {args.model}: the model has no pointing head (config seg_pointing is false)")
    if model.config.seg_pointing_vision:
        ap.error(f"--model {args.model}: its pointing head reads its own vision tower; this probe caches the "
                 "frozen language model's features only (a model without config seg_pointing_vision)")
    start = time.time()
    val = collect(model, "val", args.val, seed=1)
    train = collect(model, "train", args.train, seed=0)
    result: dict = {"args": vars(args), "collect_s": round(time.time() - start), "variants": {}}
    for variant in args.variants:
        start = time.time()
        head = make_head(variant, model, train)
        losses = [] if variant == "shipped" else train_head(variant, head, train, args.steps, args.lr)
        head.eval()
        result["variants"][variant] = {
            "val": score(head, val), "train_first_1600": score(head, {k: v[:1600] for k, v in train.items()}),
            "loss_last_100": float(np.mean(losses[-100:])) if losses else None, "seconds": round(time.time() - start)}
        print(json.dumps({variant: result["variants"][variant]}), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
