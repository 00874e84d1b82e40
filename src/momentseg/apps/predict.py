"""Run a model over a benchmark split and write predictions in the formats ``momentseg eval`` reads.

* RefVOS splits (MeViS layout): COCO-RLE JSON ``{vid: {exp_id: [RLE per frame]}}`` (a ``.json`` ``--out``) or
  a PNG folder ``<out>/<vid>/<exp_id>/<frame>.png`` (any other ``--out``).
* TSG (Charades-STA / ActivityNet / QVHighlights ground truth + a folder of videos): JSONL lines
  ``{"qid", "pred_relevant_windows": [[s, e, score], ...]}``.

Several processes (``torchrun --nproc_per_node N -m momentseg predict ...``) shard the videos
(``videos[rank::world]``); each rank writes its part to a hidden shard file next to ``--out``, and rank 0
gathers them into the output after a barrier. Every expression / query of the split gets a prediction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch.distributed as dist

from momentseg.data.predictions import write_tsg_predictions
from momentseg.errors import InputError
from momentseg.io.atomic import atomic_dir, atomic_write_text
from momentseg.io.masks import rle_decode, write_png_mask
from momentseg.io.video import IMAGE_SUFFIXES, Video, open_frames, open_video

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")


def dist_info() -> tuple[int, int]:
    """(rank, world size) from the torchrun environment; starts the process group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("gloo")
    return rank, world


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _shard_path(out: Path, rank: int) -> Path:
    return out.parent / f".{out.name}.shard{rank}.json"


def _gather(out: Path, rank: int, world: int, part: dict) -> dict | None:
    """Every rank contributes ``part``; rank 0 returns the merged dict (others ``None``)."""
    if world == 1:
        return part
    atomic_write_text(_shard_path(out, rank), json.dumps(part))
    _barrier(world)
    if rank != 0:
        return None
    merged: dict = {}
    for r in range(world):
        path = _shard_path(out, r)
        merged.update(json.loads(path.read_text(encoding="utf-8")))
        path.unlink()
    return merged


def split_video(split, vid: str) -> Video:
    """The frames the split's meta file lists for ``vid``, as a video (fps from the meta file, else 30)."""
    v = split.videos[vid]
    folder = split.root / "JPEGImages" / vid
    return open_frames(folder, [split.frame_path(vid, f) for f in v.frames], fps=v.fps)


def predict_refvos(
    pipe, split, out: Path, *, rank: int = 0, world: int = 1, on_video: Callable[[str], None] | None = None,
    overwrite: bool = False, **segment_args,
) -> int:
    """Segment every expression of ``split``; returns the number of expressions written (by rank 0).

    A PNG folder ``out`` follows :func:`momentseg.io.atomic.atomic_dir`'s rule (``overwrite``: write into a
    folder momentseg did not make, keeping its files)."""
    part: dict[str, dict[str, list]] = {}
    for vid in list(split.videos)[rank::world]:
        exps = list(split.videos[vid].expressions.values())
        if not exps:
            continue
        result = pipe.segment(split_video(split, vid), [e.text for e in exps], **segment_args)
        part[vid] = {e.exp_id: r.masks.rles for e, r in zip(exps, result.expressions, strict=True)}
        if on_video is not None:
            on_video(vid)
    merged = _gather(out, rank, world, part)
    if merged is None:
        return 0
    if out.suffix.lower() == ".json":
        atomic_write_text(out, json.dumps(merged))
    else:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            for vid, exps in merged.items():
                names = split.videos[vid].frames
                for exp_id, rles in exps.items():
                    for name, rle in zip(names, rles, strict=True):
                        write_png_mask(tmp / vid / exp_id / f"{name}.png", rle_decode(rle))
    return sum(len(e) for e in merged.values())


def find_video(data: Path, vid: str, fps: float | None) -> Video:
    """``data/<vid>`` as a frame folder, or ``data/<vid>.<ext>`` as a video file."""
    folder = data / vid
    if folder.is_dir():
        return open_video(folder, fps=fps)
    for suffix in VIDEO_SUFFIXES:
        if (data / f"{vid}{suffix}").is_file():
            return open_video(data / f"{vid}{suffix}")
    raise InputError(f"video {vid!r} not found in {data} (no folder of {'/'.join(sorted(IMAGE_SUFFIXES))} "
                     f"frames and no {'/'.join(VIDEO_SUFFIXES)} file)")


def predict_tsg(
    pipe, queries: Sequence, data: Path, out: Path, *, fps: float | None = None, rank: int = 0, world: int = 1,
    on_video: Callable[[str], None] | None = None,
) -> int:
    """Ground every query; returns the number of prediction lines written (by rank 0)."""
    by_video: dict[str, list] = {}
    for q in queries:
        by_video.setdefault(q.vid, []).append(q)
    part: dict[str, list] = {}
    for vid in sorted(by_video)[rank::world]:
        qs = by_video[vid]
        groundings = pipe.ground_many(find_video(data, vid, fps), [q.query for q in qs])
        for q, g in zip(qs, groundings, strict=True):
            part[str(q.qid)] = [[round(s, 3), round(e, 3), round(sc, 4)] for s, e, sc in g.moments]
        if on_video is not None:
            on_video(vid)
    merged = _gather(out, rank, world, part)
    if merged is None:
        return 0
    rows = [{"qid": q.qid, "pred_relevant_windows": merged[str(q.qid)]} for q in queries]
    write_tsg_predictions(out, rows)
    return len(rows)
