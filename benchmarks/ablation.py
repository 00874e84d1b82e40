"""Ablation of keyframe sampling × propagation × K on the held-out synthetic test split (the paper's claims).

For videos ``0..N-1`` of ``SPLIT_SEEDS["test"]`` (regenerated in memory, nothing read from disk) every expression
with a target is segmented with each

* sampling: ``first-k`` (frames 0..K−1, Sa2VA-style), ``uniform``, ``random`` (seeds 0..S−1; mean ± std over
  seeds), ``mcs`` (Moment-Centric Sampling);
* propagation: ``forward`` (Sa2VA-style, from the first keyframe), ``anchor-forward``, ``bap``;
* K ∈ ``--keyframes`` (default 5 10 20),

and scored as MeViS does: per expression J and F are the means over all frames of the video; a row is the mean
over expressions × 100, J&F = (J + F) / 2. Expressions with moments are also scored for TSG (R1@{0.3,0.5,0.7},
mIoU, mAP) from the dense ``[FIND]`` pass, which no row changes.

Work shared across rows (results are identical to ``MomentSeg.segment`` with the same settings):

* per video: the low-res dense frames, the ``[SEG]`` context frames and the SAM2-size frames are decoded once,
  and SAM2's image encoder runs once per frame (:func:`shared_image_features`);
* per expression: one dense ``[FIND]`` pass;
* per (sampling, seed, K): one ``[SEG]`` embedding, and one BAP run that also gives ``anchor-forward`` (BAP's
  first pass *is* the anchor-forward pass; anchor-forward leaves the frames before the anchor empty);
  ``forward`` is run separately unless the anchor is the first keyframe (then it is the same pass).

Outputs (``--json OUT.json``): ``OUT.json`` (list of rows ``{"sampling", "propagation", "keyframes", "J&F",
"J", "F"}``; random: one row per seed with ``"seed"`` and one aggregated row with ``"seeds"``, ``"J&F_std"``,
``"J_std"``, ``"F_std"`` (sample std over seeds)), ``OUT_tsg.json`` (TSG numbers and the run's settings,
counts and timing), ``OUT.md`` (markdown tables) and ``OUT.png`` (J&F vs K per sampling, one panel per
propagation).

    python benchmarks/ablation.py --videos 50 --workers 2 --json benchmarks/results/ablation.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLINGS = ("first-k", "uniform", "random", "mcs")
PROPAGATIONS = ("forward", "anchor-forward", "bap")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "ablation.json"


@dataclass(frozen=True)
class Job:
    """One video of the ablation (plain data, sent to a worker process)."""

    model: str
    device: str
    index: int
    keyframes: tuple[int, ...]
    seeds: tuple[int, ...]
    threads: int
    max_expressions: int | None = None


_PIPES: dict[tuple[str, str], object] = {}


def _pipeline(model: str, device: str):
    from momentseg.pipeline import MomentSeg

    key = (model, device)
    if key not in _PIPES:
        _PIPES[key] = MomentSeg.from_pretrained(model, device=device)
    return _PIPES[key]


def variants(seeds: Sequence[int]) -> list[tuple[str, int | None]]:
    """(sampling, seed) pairs: one per deterministic sampling, one per seed for ``random``."""
    out: list[tuple[str, int | None]] = []
    for s in SAMPLINGS:
        out += [(s, seed) for seed in seeds] if s == "random" else [(s, None)]
    return out


def _scores(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Per-expression (J, F): means over all frames of (T,H,W) bool masks."""
    from momentseg.eval.metrics import f_measure, j_measure

    return float(np.mean(j_measure(gt, pred))), float(np.mean(f_measure(gt, pred)))


def score_video(job: Job) -> dict:
    """Ground, segment (every row) and score every expression of test video ``job.index``.

    Returns ``{"video", "frames", "seconds", "expressions": [{"exp_id", "kind", "tsg"?: score_query,
    "rows"?: [{"sampling", "seed", "keyframes", "propagation", "J", "F"}]}]}``.
    """
    import torch

    from momentseg.data.synthetic import SPLIT_SEEDS, generate_video, video_id, video_seed
    from momentseg.eval.tsg import score_query
    from momentseg.grounding.sampling import select_keyframes
    from momentseg.io.video import open_video
    from momentseg.model.sam2 import preprocess_for_sam2
    from momentseg.propagation.session import shared_image_features

    start = time.perf_counter()
    torch.set_num_threads(job.threads)
    pipe = _pipeline(job.model, job.device)
    synth = generate_video(video_seed(SPLIT_SEEDS["test"], job.index), video_id(job.index))
    video = open_video(synth.frames, fps=synth.fps)
    dense = pipe._dense_frames(video)
    lowres = pipe._lowres(video, dense)
    context = pipe._context(video)
    size = pipe.config.sam2_image_size
    sam_frames = preprocess_for_sam2(video.get_frames(range(len(video)), size=(size, size)), size)
    chosen = [e for e in synth.expressions if e.obj_ids or e.moments][: job.max_expressions]
    expressions = []
    with shared_image_features(pipe.model.sam2):
        for exp in chosen:
            text = " ".join(exp.text.split())
            grounding = pipe._ground(video, text, dense, lowres)
            rec: dict = {"exp_id": exp.exp_id, "kind": exp.kind}
            if exp.moments:
                rec["tsg"] = score_query(grounding.moments, [list(m) for m in exp.moments])
            if exp.obj_ids:
                gt = synth.expression_masks(exp)
                done: dict[tuple, dict[str, tuple[float, float]]] = {}
                rows = []
                for sampling, seed in variants(job.seeds):
                    for k in job.keyframes:
                        choice = select_keyframes(grounding.probabilities, k, sampling, seed=seed or 0)
                        key = (tuple(int(i) for i in choice.indices), int(choice.anchor))
                        if key not in done:
                            done[key] = _propagation_scores(pipe, video, text, choice, context, sam_frames, gt)
                        rows += [
                            {"sampling": sampling, "seed": seed, "keyframes": k, "propagation": p,
                             "J": j, "F": f}
                            for p, (j, f) in done[key].items()
                        ]
                rec["rows"] = rows
            expressions.append(rec)
    return {"video": synth.video_id, "frames": len(video), "seconds": time.perf_counter() - start,
            "expressions": expressions}


def _propagation_scores(pipe, video, text, choice, context, sam_frames, gt) -> dict[str, tuple[float, float]]:
    """(J, F) of one keyframe choice under every propagation mode (one [SEG] pass, BAP reused, see top)."""
    embedding, _ = pipe._seg_prompt(video, text, choice, context)
    bap = pipe._propagate(video, choice, embedding, sam_frames, "bap")[0].to_array()
    anchor_forward = bap.copy()
    anchor_forward[: choice.anchor] = False
    if int(choice.indices[0]) == int(choice.anchor):
        forward = anchor_forward
    else:
        forward = pipe._propagate(video, choice, embedding, sam_frames, "forward")[0].to_array()
    return {"forward": _scores(gt, forward), "anchor-forward": _scores(gt, anchor_forward), "bap": _scores(gt, bap)}


def aggregate(videos: list[dict], keyframes: Sequence[int], seeds: Sequence[int]) -> list[dict]:
    """The table rows (percent, 2 decimals) from :func:`score_video` results; see the module docstring."""
    per: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for v in videos:
        for e in v["expressions"]:
            for r in e.get("rows", []):
                per[(r["sampling"], r["seed"], r["keyframes"], r["propagation"])].append((r["J"], r["F"]))
    if not per:
        raise SystemExit("no expression with a target in the chosen videos")

    def row(sampling, seed, k, prop) -> dict:
        jf = np.asarray(per[(sampling, seed, k, prop)], dtype=np.float64)
        j, f = 100 * jf[:, 0].mean(), 100 * jf[:, 1].mean()
        out = {"sampling": sampling, "propagation": prop, "keyframes": k,
               "J&F": round((j + f) / 2, 2), "J": round(j, 2), "F": round(f, 2)}
        if seed is not None:
            out["seed"] = seed
        return out

    rows = []
    for k in keyframes:
        for prop in PROPAGATIONS:
            for sampling in SAMPLINGS:
                if sampling != "random":
                    rows.append(row(sampling, None, k, prop))
                    continue
                per_seed = [row(sampling, s, k, prop) for s in seeds]
                rows += per_seed
                agg = {"sampling": sampling, "propagation": prop, "keyframes": k, "seeds": list(seeds)}
                for m in ("J&F", "J", "F"):
                    vals = np.asarray([r[m] for r in per_seed])
                    agg[m] = round(float(vals.mean()), 2)
                    agg[f"{m}_std"] = round(float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, 2)
                rows.append(agg)
    return rows


def tsg_summary(videos: list[dict]) -> dict:
    """TSG headline numbers over every expression with moments (see ``momentseg.eval.tsg.summarize``)."""
    from momentseg.eval.tsg import summarize

    queries = [e["tsg"] for v in videos for e in v["expressions"] if "tsg" in e]
    return {**summarize(queries), "queries": len(queries)} if queries else {"queries": 0}


def headline(rows: list[dict]) -> list[dict]:
    """Rows without the per-seed random rows (random = the aggregated row)."""
    return [r for r in rows if "seed" not in r]


def _cell(r: dict, metric: str) -> str:
    return f"{r[metric]:.2f} ± {r[metric + '_std']:.2f}" if metric + "_std" in r else f"{r[metric]:.2f}"


def markdown(rows: list[dict], tsg: dict, run: dict) -> str:
    """Markdown tables: J&F (J / F) per (K, sampling) × propagation; TSG."""
    lines = [
        f"RefVOS on {run['videos']} synthetic test videos ({run['expressions']} expressions with a target), "
        f"MeViS protocol (×100); random = mean ± std over seeds {run['seeds']}.",
        "",
        "| K | sampling | " + " | ".join(f"{p} J&F (J / F)" for p in PROPAGATIONS) + " |",
        "|---|---|" + "---|" * len(PROPAGATIONS),
    ]
    table = {(r["keyframes"], r["sampling"], r["propagation"]): r for r in headline(rows)}
    for k in run["keyframes"]:
        for s in SAMPLINGS:
            cells = [table[(k, s, p)] for p in PROPAGATIONS]
            lines.append(f"| {k} | {s} | " + " | ".join(
                f"{_cell(c, 'J&F')} ({_cell(c, 'J')} / {_cell(c, 'F')})" for c in cells) + " |")
    if tsg.get("queries"):
        keys = [k for k in tsg if k != "queries"]
        lines += ["", f"TSG from the dense [FIND] pass over {tsg['queries']} expressions with moments:", "",
                  "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                  "| " + " | ".join(f"{tsg[k]:.2f}" for k in keys) + " |"]
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict], tsg: dict, run: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Ablation: {run['videos']} videos, {run['expressions']} expressions (J&F / J / F ×100)")
    for col in ("K", "sampling", *PROPAGATIONS):
        table.add_column(col, justify="right" if col == "K" else "left")
    cells = {(r["keyframes"], r["sampling"], r["propagation"]): r for r in headline(rows)}
    for k in run["keyframes"]:
        for s in SAMPLINGS:
            table.add_row(str(k), s, *(
                f"{_cell(cells[(k, s, p)], 'J&F')} / {cells[(k, s, p)]['J']:.1f} / {cells[(k, s, p)]['F']:.1f}"
                for p in PROPAGATIONS))
        table.add_section()
    console = Console()
    console.print(table)
    if tsg.get("queries"):
        console.print("TSG: " + ", ".join(f"{k} {v}" for k, v in tsg.items()))


def plot(rows: list[dict], path: Path) -> None:
    """J&F vs K, one line per sampling (random: mean ± std), one panel per propagation mode; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from momentseg.io.atomic import atomic_path

    fig, axes = plt.subplots(1, len(PROPAGATIONS), figsize=(4.2 * len(PROPAGATIONS), 3.6), sharey=True)
    for ax, prop in zip(axes, PROPAGATIONS, strict=True):
        for s in SAMPLINGS:
            pts = sorted((r["keyframes"], r["J&F"], r.get("J&F_std", 0.0)) for r in headline(rows)
                         if r["propagation"] == prop and r["sampling"] == s)
            ks, jf, sd = (np.asarray(x) for x in zip(*pts, strict=True))
            ax.errorbar(ks, jf, yerr=sd if s == "random" else None, marker="o", capsize=3, label=s)
        ax.set_title(prop)
        ax.set_xlabel("keyframes K")
        ax.set_xticks(sorted({r["keyframes"] for r in rows}))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("J&F (×100)")
    axes[-1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def run_jobs(jobs: list[Job], workers: int) -> Iterator[dict]:
    """score_video over the jobs, in order, in ``workers`` processes (in-process when 1)."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(score_video, jobs)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        yield from pool.map(score_video, jobs)


def companions(json_path: Path) -> dict[str, Path]:
    """The files written next to ``OUT.json``: ``tsg`` (OUT_tsg.json), ``md`` (OUT.md), ``png`` (OUT.png)."""
    stem = json_path.with_suffix("")
    return {"tsg": Path(f"{stem}_tsg.json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png")}


def main(argv: Sequence[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=20, help="test videos 0..N-1 of the held-out split")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="rows out (companions written next to it)")
    ap.add_argument("--model", default="embedded", help="checkpoint folder, or 'embedded'")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--workers", type=int, default=1, help="processes over videos")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--keyframes", type=int, nargs="+", default=[5, 10, 20], help="values of K")
    ap.add_argument("--seeds", type=int, default=5, help="random sampling: seeds 0..S-1")
    ap.add_argument("--max-expressions", type=int, default=None,
                    help="only the first M expressions (with a target or moments) of each video (quick runs)")
    args = ap.parse_args(argv)
    if min(args.videos, args.seeds, args.workers, args.threads, *args.keyframes, args.max_expressions or 1) < 1:
        ap.error("--videos, --seeds, --workers, --threads, --max-expressions and --keyframes must be >= 1")
    keyframes = tuple(sorted(set(args.keyframes)))
    seeds = tuple(range(args.seeds))
    model = str(Path(args.model).resolve()) if args.model != "embedded" else args.model
    jobs = [Job(model, args.device, i, keyframes, seeds, args.threads, args.max_expressions)
            for i in range(args.videos)]

    start = time.perf_counter()
    videos = []
    for v in run_jobs(jobs, args.workers):
        videos.append(v)
        n_exp = sum("rows" in e for e in v["expressions"])
        print(f"[{len(videos)}/{len(jobs)}] {v['video']}: {v['frames']} frames, {n_exp} expressions, "
              f"{v['seconds']:.1f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start

    rows = aggregate(videos, keyframes, seeds)
    tsg = tsg_summary(videos)
    import torch

    run = {
        "videos": args.videos,
        "expressions": sum("rows" in e for v in videos for e in v["expressions"]),
        "frames": sum(v["frames"] for v in videos),
        "keyframes": list(keyframes),
        "seeds": list(seeds),
        "max_expressions": args.max_expressions,
        "model": args.model,
        "device": args.device,
        "workers": args.workers,
        "threads": args.threads,
        "seconds": round(seconds, 2),
        "video_seconds": [round(v["seconds"], 2) for v in videos],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "command": "python benchmarks/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    from momentseg.io.atomic import atomic_write_text

    out = companions(args.json)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    atomic_write_text(out["tsg"], json.dumps({"tsg": tsg, "run": run}, indent=1) + "\n")
    atomic_write_text(out["md"], markdown(rows, tsg, run))
    plot(rows, out["png"])
    print_table(rows, tsg, run)
    print(f"{seconds:.1f} s for {args.videos} videos ({run['expressions']} expressions, {run['frames']} frames); "
          f"wrote {args.json}, {out['tsg']}, {out['md']}, {out['png']}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
