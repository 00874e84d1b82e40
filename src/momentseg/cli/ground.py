from __future__ import annotations

import json

import typer

from momentseg.cli import app
from momentseg.cli._options import DEVICE, FPS, MODEL, load_pipeline


@app.command("ground")
def ground(
    video: str = typer.Argument(..., help="Video file or a folder of frames."),
    query: str = typer.Option(..., "--query", "-q", help="The sentence to find in time."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranked windows as JSON."),
    fps: float = FPS,
    model: str = MODEL,
    device: str = DEVICE,
) -> None:
    """Temporal sentence grounding: print the ranked windows (start_s, end_s, score) for --query."""
    from momentseg.io.video import open_video
    from momentseg.pipeline import check_text, resolve_device

    query = check_text(query, "--query")
    resolve_device(device)
    vid = open_video(video, fps=fps)
    result = load_pipeline(model, device).ground(vid, query)
    if as_json:
        print(json.dumps({"query": result.query, "pred_relevant_windows": result.moments}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{query!r} in {video}")
    for col in ("rank", "start (s)", "end (s)", "score"):
        table.add_column(col, justify="right")
    for i, (s, e, score) in enumerate(result.moments, start=1):
        table.add_row(str(i), f"{s:.2f}", f"{e:.2f}", f"{score:.3f}")
    Console().print(table)
