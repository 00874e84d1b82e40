"""``momentseg synth``: write a synthetic referring-video split (MeViS format + tsg.txt + stats.json)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from momentseg.cli import app
from momentseg.errors import InputError


@app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (MeViS layout), written atomically: new, or one "
                             "momentseg wrote before (its previous output is replaced; nothing else is touched)."),
    videos: int = typer.Option(..., "--videos", help="Number of videos to generate (>= 1)."),
    seed: int | None = typer.Option(
        None, "--seed", help="Split seed (>= 0). Give exactly one of --seed and --split."
    ),
    split: str | None = typer.Option(
        None, "--split", help="train, val or test: use that split's fixed seed (SPLIT_SEEDS). Not with --seed."
    ),
    workers: int = typer.Option(1, "--workers", help="Processes generating videos; output bytes do not depend on it."),
    overwrite: bool = typer.Option(False, "--overwrite", "--force",
                                   help="Write into a non-empty folder momentseg did not make (its files are kept)."),
) -> None:
    """Generate a synthetic split where *when* matters, and print its statistics."""
    from rich.console import Console
    from rich.table import Table

    from momentseg.data.synthetic import SPLIT_SEEDS, write_split
    from momentseg.data.synthetic.split import check_split_arguments
    from momentseg.io.atomic import check_output_dir

    if (seed is None) == (split is None):
        raise InputError("synth: give exactly one of --seed S or --split train|val|test")
    if split is not None:
        if split not in SPLIT_SEEDS:
            raise InputError(f"synth: --split must be one of {', '.join(SPLIT_SEEDS)}, got {split!r}")
        seed = SPLIT_SEEDS[split]
    check_split_arguments(videos, seed, workers, where="synth", names=("--videos", "--seed", "--workers"))
    check_output_dir(out, overwrite=overwrite, what="synth: --out")

    start = time.perf_counter()
    stats = write_split(out, videos, seed, workers=workers, overwrite=overwrite)
    elapsed = time.perf_counter() - start

    table = Table(title=f"synthetic split {split or ''} (seed {seed}) -> {out}")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in ("n_videos", "mean_frames", "mean_objects", "n_expressions", "mean_moment_s"):
        table.add_row(key, str(stats[key]))
    for kind, count in stats["kinds"].items():
        table.add_row(f"kind {kind}", str(count))
    descriptions = {
        "late_start": "moment starts after frame 5 (of exprs with a moment)",
        "lookalike": "target has a look-alike distractor",
        "absent_frame0": "target invisible in frame 0",
        "occluded": "target >= 25% occluded at some frame",
        "exits": "target disappears after being seen",
        "hard_forward": "absent at frame 0 / occluded / disappears",
        "no_target": "no-target expressions (of all)",
    }
    for key, value in stats["fractions"].items():
        table.add_row(f"{key}: {descriptions.get(key, '')}", f"{value:.3f}")
    Console().print(table)
    print(f"wrote {videos} videos to {out} in {elapsed:.1f} s")
