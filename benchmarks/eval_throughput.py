"""Time ``momentseg eval --benchmark mevis`` with 1 worker vs N workers on a synthetic MeViS-format split.

Builds (in a temporary folder unless ``--workdir`` is given) a split of ``videos × exprs_per_video``
expressions (default 50 × 16 = 800, like MeViS valid_u's 793) with random moving-ellipse GT objects in
``mask_dict.json`` and PNG predictions that are jittered / partly dropped copies of the GT, then runs the real
CLI in a subprocess for each worker count and checks the reports agree.

    python benchmarks/eval_throughput.py --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from momentseg.data.predictions import write_png_predictions
from momentseg.io.masks import rle_encode


def ellipse_track(rng: np.random.Generator, n_frames: int, hw: tuple[int, int]) -> np.ndarray:
    """``(T, H, W)`` bool: a randomly sized ellipse moving on a straight line (absent in some frames)."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    ry, rx = rng.uniform(0.05, 0.25) * h, rng.uniform(0.05, 0.25) * w
    cy0, cx0 = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    vy, vx = rng.uniform(-0.02, 0.02) * h, rng.uniform(-0.02, 0.02) * w
    out = np.zeros((n_frames, h, w), dtype=bool)
    for t in range(n_frames):
        if rng.random() < 0.1:
            continue
        cy, cx = cy0 + vy * t, cx0 + vx * t
        out[t] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    return out


def build_split(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    rng = np.random.default_rng(args.seed)
    hw = (args.height, args.width)
    split, pred = root / "valid_u", root / "pred"
    split.mkdir(parents=True, exist_ok=True)
    meta: dict = {"videos": {}}
    mask_dict: dict = {}
    anno = 0
    for v in range(args.videos):
        vid = f"vid{v:04d}"
        frames = [f"{i:05d}" for i in range(args.frames)]
        objects = []
        for _ in range(3):
            track = ellipse_track(rng, args.frames, hw)
            mask_dict[str(anno)] = [rle_encode(m) if m.any() else None for m in track]
            objects.append((anno, track))
            anno += 1
        exps = {}
        for e in range(args.exprs_per_video):
            pick = sorted(rng.choice(len(objects), size=int(rng.integers(1, 3)), replace=False).tolist())
            ids = [objects[i][0] for i in pick]
            exps[str(e)] = {"exp": f"expression {e}", "obj_id": ids, "anno_id": ids}
            gt = np.zeros((args.frames, *hw), dtype=bool)
            for i in pick:
                gt |= objects[i][1]
            shift = rng.integers(-6, 7, size=2)
            guess = np.roll(gt, tuple(shift.tolist()), axis=(1, 2))
            guess[rng.random(args.frames) < 0.1] = False
            write_png_predictions(pred, vid, str(e), frames, guess)
        meta["videos"][vid] = {"frames": frames, "expressions": exps}
    (split / "meta_expressions.json").write_text(json.dumps(meta))
    (split / "mask_dict.json").write_text(json.dumps(mask_dict))
    return split, pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=50)
    ap.add_argument("--exprs-per-video", type=int, default=16)
    ap.add_argument("--frames", type=int, default=12, help="frames per video")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--workdir", type=Path, default=None, help="keep the split here (default: a temp folder)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        split, pred = build_split(root, args)
        n = args.videos * args.exprs_per_video
        print(
            f"built {n} expressions x {args.frames} frames at {args.height}x{args.width} "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        reports = {}
        for w in args.workers:
            out = root / f"report_w{w}.json"
            cmd = [
                sys.executable,
                "-m",
                "momentseg",
                "eval",
                "--benchmark",
                "mevis",
                "--data",
                str(split),
                "--pred",
                str(pred),
                "--out",
                str(out),
                "--workers",
                str(w),
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            dt = time.perf_counter() - t0
            reports[w] = json.loads(out.read_text())
            frames = n * args.frames
            print(
                f"workers={w}: {dt:.2f} s wall, {frames / dt:.0f} frames/s, {n / dt:.1f} expressions/s, "
                f"J&F={reports[w]['J&F']}"
            )
        first = reports[args.workers[0]]
        same = all(
            r["per_expression"] == first["per_expression"] and r["J&F"] == first["J&F"]
            for r in reports.values()
        )
        print(f"reports identical across worker counts: {same}")


if __name__ == "__main__":
    main()
