"""Write a synthetic split in MeViS format (+ Charades-STA ``tsg.txt`` and ``stats.json``) and compute the
fractions that say how much the split needs *when* (moments after the first frames, look-alikes, targets
that are absent at frame 0 / occluded / leave).

Folder layout::

    JPEGImages/<vid>/<frame:05d>.jpg
    meta_expressions.json  {"videos": {vid: {"fps", "frames", "expressions": {exp_id: {"exp", "obj_id",
                            "anno_id", "moments", "kind"}}}}}   (fps, moments, kind are this project's fields)
    mask_dict.json         {anno_id: [COCO RLE {"size": [H, W], "counts": str} or null, one per frame]}
    tsg.txt                "<vid> <start> <end>##<expression>" (2 decimals, seconds), one line per expression
                           with a moment; with several moments the longest one (the first among equals)
    stats.json             the split's statistics (see :func:`split_stats`)

One annotation per object per video; anno ids count up from 0 over the split in video order, then object
order.  A no-target expression has ``obj_id == anno_id == []`` and ``moments == []``.  Moments are
``[start, end]`` seconds of inclusive frame runs (frame t is at t/fps), rounded to 4 decimals.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import asdict
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from momentseg.data.synthetic.config import EXPRESSION_KINDS, WorldConfig
from momentseg.data.synthetic.records import SynthExpression, SynthVideo
from momentseg.data.synthetic.video import generate_video, video_id, video_seed
from momentseg.errors import InputError
from momentseg.io.atomic import atomic_dir
from momentseg.io.masks import rle_encode

FIRST_K = 5  # a moment "starts late" when its first frame index is >= FIRST_K (a first-5-frames sampler misses it)
OCCLUDED_FRACTION = 0.25  # an object counts as occluded when >= 25 % of its in-frame pixels are hidden


def _encode_rle(mask: np.ndarray) -> dict | None:
    """COCO RLE of a (H,W) bool mask (``momentseg.io.masks.rle_encode``); None when the mask is empty."""
    return rle_encode(mask) if mask.any() else None


def _jpeg_bytes(frame: np.ndarray, quality: int) -> bytes:
    buf = BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def expression_flags(video: SynthVideo, exp: SynthExpression) -> dict[str, bool]:
    """What makes one expression hard without *when* (all False for a no-target expression but ``none``):

    - ``has_moment``: it has at least one moment;
    - ``late_start``: its first moment starts at frame index >= :data:`FIRST_K`;
    - ``lookalike``: a non-target object has the same shape, size and first colour as a target;
    - ``absent_frame0``: a target object is invisible in frame 0;
    - ``occluded``: a target object has >= :data:`OCCLUDED_FRACTION` of its in-frame pixels hidden in some frame;
    - ``exits``: a target object is visible in some frame and invisible in a later one (left or fully hidden);
    - ``hard_forward``: any of the last three (forward-only propagation from frame 0 has to recover);
    - ``none``: no target.
    """
    flags = dict.fromkeys(
        ("has_moment", "late_start", "lookalike", "absent_frame0", "occluded", "exits", "hard_forward", "none"),
        False,
    )
    flags["none"] = not exp.obj_ids
    if exp.moments:
        flags["has_moment"] = True
        first = min(s for s, _ in exp.moments)
        flags["late_start"] = bool(round(first * video.fps) >= FIRST_K)
    tracks = {t.obj_id: t for t in video.objects}
    for oid in exp.obj_ids:
        t = tracks[oid]
        look = (t.shape, t.size, t.base_colour)
        if any((o.shape, o.size, o.base_colour) == look for o in video.objects if o.obj_id not in exp.obj_ids):
            flags["lookalike"] = True
        vis = t.visible_area > 0
        if not vis[0]:
            flags["absent_frame0"] = True
        hidden = (t.full_area - t.visible_area) >= OCCLUDED_FRACTION * np.maximum(t.full_area, 1)
        if (hidden & (t.full_area > 0)).any():
            flags["occluded"] = True
        seen = np.flatnonzero(vis)
        if seen.size and not vis[seen[0] :].all():
            flags["exits"] = True
    flags["hard_forward"] = flags["absent_frame0"] or flags["occluded"] or flags["exits"]
    return flags


def split_stats(records: list[dict]) -> dict:
    """Aggregate per-expression records (``expression_flags`` plus ``kind`` and ``moment_s``, the summed moment
    length in seconds) and per-video counts into the split statistics.

    Fractions: ``late_start`` over expressions with a moment; ``lookalike``, ``absent_frame0``, ``occluded``,
    ``exits``, ``hard_forward`` over expressions with a target; ``no_target`` over all expressions.
    """
    n = len(records)
    with_moment = [r for r in records if r["has_moment"]]
    with_target = [r for r in records if not r["none"]]

    def frac(rows: list[dict], key: str) -> float:
        return round(sum(bool(r[key]) for r in rows) / len(rows), 4) if rows else 0.0

    return {
        "n_expressions": n,
        "kinds": {k: sum(r["kind"] == k for r in records) for k in EXPRESSION_KINDS},
        "fractions": {
            "late_start": frac(with_moment, "late_start"),
            "lookalike": frac(with_target, "lookalike"),
            "absent_frame0": frac(with_target, "absent_frame0"),
            "occluded": frac(with_target, "occluded"),
            "exits": frac(with_target, "exits"),
            "hard_forward": frac(with_target, "hard_forward"),
            "no_target": frac(records, "none"),
        },
        "late_start_by_kind": {
            k: frac([r for r in with_moment if r["kind"] == k], "late_start") for k in EXPRESSION_KINDS if k != "none"
        },
        "lookalike_by_kind": {
            k: frac([r for r in with_target if r["kind"] == k], "lookalike") for k in EXPRESSION_KINDS if k != "none"
        },
        "mean_moment_s": round(float(np.mean([r["moment_s"] for r in with_moment])), 4) if with_moment else 0.0,
    }


def _build_video(job: tuple[int, int, WorldConfig, str]) -> dict:
    """Worker: generate video ``index``, write its JPEGs under ``root`` and return its JSON-ready records."""
    split_seed, index, config, root = job
    vid = video_id(index)
    video = generate_video(video_seed(split_seed, index), vid, config)
    vdir = Path(root) / "JPEGImages" / vid
    vdir.mkdir(parents=True)
    for t, frame in enumerate(video.frames):
        (vdir / f"{t:05d}.jpg").write_bytes(_jpeg_bytes(frame, config.jpeg_quality))
    masks = {oid: [_encode_rle(m) for m in video.object_masks[oid]] for oid in sorted(video.object_masks)}
    records = []
    for exp in video.expressions:
        rec = expression_flags(video, exp)
        rec["kind"] = exp.kind
        rec["moment_s"] = float(sum(e - s for s, e in exp.moments) + len(exp.moments) / video.fps)
        records.append(rec)
    exps = [
        {
            "exp_id": e.exp_id,
            "exp": e.text,
            "obj_id": list(e.obj_ids),
            "moments": [[round(s, 4), round(t, 4)] for s, t in e.moments],
            "kind": e.kind,
        }
        for e in video.expressions
    ]
    return {
        "video_id": vid,
        "fps": video.fps,
        "n_frames": video.num_frames,
        "masks": masks,
        "expressions": exps,
        "records": records,
    }


def _tsg_line(vid: str, exp: dict) -> str | None:
    if not exp["moments"]:
        return None
    start, end = max(exp["moments"], key=lambda m: m[1] - m[0])  # max() keeps the first among equals
    return f"{vid} {start:.2f} {end:.2f}##{exp['exp']}"


def check_split_arguments(n_videos: int, seed: int, workers: int, *, where: str = "write_split",
                          names: tuple[str, str, str] = ("n_videos", "seed", "workers")) -> None:
    """One-line :class:`InputError` (``where: name must be …``) unless n_videos ≥ 1, seed ≥ 0, workers ≥ 1;
    ``names`` are what the caller calls the three (e.g. the CLI's options)."""
    for name, value, least in zip(names, (n_videos, seed, workers), (1, 0, 1), strict=True):
        if value < least:
            raise InputError(f"{where}: {name} must be >= {least}, got {value}")


def write_split(
    out_dir: str | os.PathLike, n_videos: int, seed: int, config: WorldConfig = WorldConfig(), workers: int = 1,
    overwrite: bool = False,
) -> dict:
    """Generate videos ``0..n_videos-1`` of the split with seed ``seed`` into ``out_dir`` (MeViS format).

    The folder is written atomically under :func:`momentseg.io.atomic.atomic_dir`'s rule: a new folder, or one
    momentseg wrote before (its previous output is replaced); another non-empty folder only with ``overwrite``
    (its files are kept).  ``workers > 1`` generates in processes; the bytes are identical for any ``workers``.
    Returns the statistics that are also written to ``stats.json``.
    """
    check_split_arguments(n_videos, seed, workers)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "JPEGImages").mkdir()
        jobs = [(int(seed), i, config, str(tmp)) for i in range(n_videos)]
        pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
        try:
            results = pool.imap(_build_video, jobs) if pool else map(_build_video, jobs)
            stats = _assemble(tmp, results, n_videos, seed, config)
        finally:
            if pool:
                pool.terminate()
                pool.join()
    return stats


def _assemble(tmp: Path, results, n_videos: int, seed: int, config: WorldConfig) -> dict:
    """Write the JSON / text files from the per-video results (in video order) and return the stats."""
    videos: dict[str, dict] = {}
    tsg: list[str] = []
    records: list[dict] = []
    frames_total = objects_total = 0
    next_anno = 0
    with open(tmp / "mask_dict.json", "w", encoding="utf-8") as md:
        md.write("{")
        for res in results:
            vid = res["video_id"]
            anno_of: dict[int, int] = {}
            for oid, rles in res["masks"].items():
                anno_of[oid] = next_anno
                md.write(("," if next_anno else "") + json.dumps(str(next_anno)) + ":")
                md.write(json.dumps(rles, separators=(",", ":")))
                next_anno += 1
            exps = {}
            for e in res["expressions"]:
                exps[e["exp_id"]] = {
                    "exp": e["exp"],
                    "obj_id": e["obj_id"],
                    "anno_id": [anno_of[o] for o in e["obj_id"]],
                    "moments": e["moments"],
                    "kind": e["kind"],
                }
                line = _tsg_line(vid, e)
                if line:
                    tsg.append(line)
            videos[vid] = {
                "fps": res["fps"],
                "frames": [f"{t:05d}" for t in range(res["n_frames"])],
                "expressions": exps,
            }
            records += res["records"]
            frames_total += res["n_frames"]
            objects_total += len(res["masks"])
        md.write("}")
    (tmp / "meta_expressions.json").write_text(json.dumps({"videos": videos}, indent=1) + "\n", encoding="utf-8")
    (tmp / "tsg.txt").write_text("".join(line + "\n" for line in tsg), encoding="utf-8")
    stats = {
        "seed": int(seed),
        "n_videos": n_videos,
        "mean_frames": round(frames_total / n_videos, 2),
        "mean_objects": round(objects_total / n_videos, 2),
        **split_stats(records),
        "config": asdict(config),
    }
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return stats
