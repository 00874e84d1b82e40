from __future__ import annotations

from pathlib import Path

import typer

from momentseg.cli import app
from momentseg.cli._options import DEVICE, MODEL, OVERWRITE, SEGMENT_FILES, load_pipeline


@app.command("demo")
def demo(
    seed: int = typer.Option(0, "--seed", "-s", help="Which synthetic video to make (any integer)."),
    out: Path = typer.Option(Path("momentseg-demo"), "--out", "-o",
                             help="Output folder: new, or one momentseg wrote before (its previous output is "
                                  "replaced; nothing else is touched)."),
    overwrite: bool = OVERWRITE,
    model: str = MODEL,
    device: str = DEVICE,
) -> None:
    """Make a fresh synthetic video, ground + segment its expressions with the model, and score the result."""
    import time

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from momentseg.apps.demo import TABLE_CAPTION, TABLE_COLUMNS, demo_video, run_demo
    from momentseg.io.atomic import check_output_dir
    from momentseg.pipeline import resolve_device

    check_output_dir(out, overwrite=overwrite, what="--out", files=SEGMENT_FILES)
    if seed < 0:
        demo_video(seed)  # its one-line error, before the model loads
    resolve_device(device)
    start = time.perf_counter()
    pipe = load_pipeline(model, device)
    with Progress(transient=True) as bar:
        task = bar.add_task("segmenting", total=None)
        synth, scores = run_demo(pipe, seed, out, overwrite=overwrite,
                                 progress=lambda st, d, t: bar.update(task, description=st, completed=d, total=t))
    console = Console()
    table = Table(title=f"MomentSeg demo: synthetic video {synth.video_id} ({synth.num_frames} frames, "
                        f"{synth.num_frames / synth.fps:.1f} s)", caption=TABLE_CAPTION)
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col == "expression" else "right")
    for s in scores:
        table.add_row(*s.row())
    console.print(table)
    console.print(f"overlay video: {out / 'overlay.mp4'}")
    console.print(f"similarity plot: {out / 'similarity.png'}")
    console.print(f"masks: {out / 'masks'}/<k>/<frame>.png, details: {out / 'result.json'}")
    console.print(f"done in {time.perf_counter() - start:.1f} s")
