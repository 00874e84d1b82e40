from __future__ import annotations

from pathlib import Path

import typer

from momentseg.cli import _options as opt
from momentseg.cli import app


@app.command("segment")
def segment(
    video: str = typer.Argument(..., help="Video file (mp4/mov/webm/avi/mkv) or a folder of JPEG/PNG frames."),
    text: list[str] = typer.Option(..., "--text", "-t", help="A referring expression; repeat for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: new, or one momentseg wrote before (its "
                             "previous output is replaced; nothing else is touched). Written atomically."),
    overwrite: bool = opt.OVERWRITE,
    overlay: bool = typer.Option(False, "--overlay", help="Also write overlay.mp4 (masks + text + moment)."),
    keyframes: int = opt.KEYFRAMES,
    sampling: str = opt.SAMPLING,
    propagation: str = opt.PROPAGATION,
    seed: int = opt.SEED,
    fps: float = opt.FPS,
    model: str = opt.MODEL,
    device: str = opt.DEVICE,
    offload_state: bool = opt.OFFLOAD,
) -> None:
    """Ground and segment each --text in VIDEO; writes result.json, masks/<k>/<frame>.png, similarity.png."""
    from rich.progress import Progress

    from momentseg.io.atomic import check_output_dir
    from momentseg.io.video import open_video
    from momentseg.pipeline import check_segment_options, check_texts, resolve_device

    # every argument is checked before anything is computed or the model loads
    check_output_dir(out, overwrite=overwrite, what="--out", files=opt.SEGMENT_FILES)
    text = check_texts(text)
    check_segment_options(keyframes, sampling, propagation)
    resolve_device(device)
    vid = open_video(video, fps=fps)  # fail on a bad video before loading the model
    pipe = opt.load_pipeline(model, device, offload_state)
    with Progress(transient=True) as bar:
        task = bar.add_task("segmenting", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        # masks are written into --out as they are produced (never all held in memory)
        result = pipe.segment(vid, text, keyframes=keyframes, sampling=sampling, propagation=propagation,
                              seed=seed, progress=progress, out=out, overlay=overlay, overwrite=overwrite)
    for k, expr in enumerate(result.expressions):
        s, e, score = expr.grounding.moments[0]
        print(f"[{k}] {expr.text!r}: moment {s:.2f}-{e:.2f} s (score {score:.2f}), "
              f"{len(expr.keyframes)} keyframes, anchor frame {expr.anchor}")
    print(f"wrote {out}/result.json, {out}/masks/, {out}/similarity.png" + (f", {out}/overlay.mp4" if overlay else ""))
