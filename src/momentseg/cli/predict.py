from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from momentseg.cli import _options as opt
from momentseg.cli import app
from momentseg.data.benchmarks import REFVOS_BENCHMARKS as REFVOS
from momentseg.data.benchmarks import TSG_BENCHMARKS as TSG


@app.command("predict")
def predict(
    benchmark: str = typer.Option(..., "--benchmark", "-b", help=f"One of {', '.join(REFVOS + TSG)}."),
    data: Path = typer.Option(..., "--data", help="RefVOS: the split folder (MeViS layout). TSG: the folder of "
                              "videos (<vid>.mp4 files or <vid>/ frame folders)."),
    out: Path = typer.Option(..., "--out", "-o", help="RefVOS: PRED.json (COCO RLE) or a folder (PNGs). "
                             "TSG: predictions .jsonl. An existing file is replaced only with --overwrite; a "
                             "folder follows segment's --out rule."),
    overwrite: bool = opt.OVERWRITE,
    gt: Path = typer.Option(None, "--gt", help="TSG: the annotation file (Charades-STA txt, ActivityNet json, "
                            "QVHighlights jsonl) listing the queries."),
    fps: float = typer.Option(None, "--fps", help=f"TSG: {opt.FPS_HELP}"),
    keyframes: int = opt.KEYFRAMES,
    sampling: str = opt.SAMPLING,
    propagation: str = opt.PROPAGATION,
    seed: int = opt.SEED,
    model: str = opt.MODEL,
    device: str = opt.DEVICE,
    offload_state: bool = opt.OFFLOAD,
) -> None:
    """Run a model over a benchmark split into the formats `momentseg eval` reads. Under
    `torchrun --nproc_per_node N -m momentseg predict ...` the videos are sharded and rank 0 gathers."""
    from rich.progress import Progress

    from momentseg.apps.predict import dist_info, predict_refvos, predict_tsg
    from momentseg.pipeline import resolve_device

    _check_outputs_and_options(benchmark, out, overwrite, keyframes, sampling, propagation)
    resolve_device(device)
    rank, world = dist_info()
    inputs, total = _load_inputs(benchmark, data, gt)
    pipe = opt.load_pipeline(model, device, offload_state)
    with Progress(transient=True, disable=rank != 0) as bar:
        task = bar.add_task(f"{benchmark} (rank 0 of {world})", total=len(range(rank, total, world)))

        def advance(_vid: str) -> None:
            bar.advance(task)

        if benchmark in REFVOS:
            n = predict_refvos(pipe, inputs, out, rank=rank, world=world, on_video=advance, keyframes=keyframes,
                               sampling=sampling, propagation=propagation, seed=seed,
                               overwrite=overwrite)
        else:
            n = predict_tsg(pipe, inputs, data, out, fps=fps, rank=rank, world=world, on_video=advance)
    if rank == 0:
        print(f"wrote {n} predictions to {out}")


def _check_outputs_and_options(
    benchmark: str, out: Path, overwrite: bool, keyframes: int, sampling: str, propagation: str
) -> None:
    """Refuse an unknown benchmark, an occupied ``--out`` (file or PNG folder) and bad segment options."""
    from momentseg.errors import InputError
    from momentseg.io.atomic import check_output_dir, check_output_file
    from momentseg.pipeline import check_segment_options

    if benchmark not in REFVOS + TSG:
        raise InputError(f"unknown --benchmark {benchmark!r}: use one of {', '.join(REFVOS + TSG)}")
    png_folder = benchmark in REFVOS and out.suffix.lower() != ".json"
    if png_folder:
        check_output_dir(out, overwrite=overwrite, what="--out")
    else:
        check_output_file(out, overwrite=overwrite, what="--out")
    if benchmark in REFVOS:
        check_segment_options(keyframes, sampling, propagation)


def _load_inputs(benchmark: str, data: Path, gt: Path | None) -> tuple[Any, int]:
    """The RefVOS split (or the TSG queries) to predict, and its number of videos."""
    from momentseg.errors import InputError

    if benchmark in REFVOS:
        from momentseg.data.refvos import load_refvos_split

        split = load_refvos_split(data, benchmark)
        return split, len(split.videos)
    if gt is None:
        raise InputError(f"--benchmark {benchmark} needs --gt (the annotation file listing the queries)")
    if not data.is_dir():
        raise InputError(f"--data {data} is not a folder of videos")
    from momentseg.data.tsg import TSG_LOADERS

    queries = TSG_LOADERS[benchmark](gt)
    return queries, len({q.vid for q in queries})
