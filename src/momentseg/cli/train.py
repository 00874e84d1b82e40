"""``momentseg train CONFIG.yaml``: joint TSG + RefVOS training (one process, or many under accelerate/torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer

from momentseg.cli import app


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="Training config YAML (see configs/tiny-synthetic.yaml, configs/3b.yaml)."),
    out: Path = typer.Option(None, "--out", help="Run folder (checkpoints, metrics.jsonl, final/); default: 'out' in the config."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the run folder."),
    steps: int = typer.Option(None, "--steps", min=1, help="Override run.steps (total optimizer steps)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Do not draw the progress bar."),
) -> None:
    """Train MomentSeg per CONFIG. Multi-GPU: `accelerate launch --config_file configs/accelerate/ddp.yaml -m momentseg train CONFIG`."""
    from momentseg.train.config import load_config, validate
    from momentseg.train.loop import train

    cfg = load_config(config)
    if steps is not None:
        cfg.run.steps = steps
    if no_progress:
        cfg.run.progress = False
    validate(cfg, str(config))
    result = train(cfg, out=out, resume=resume)
    if result.history:
        last = result.history[-1]
        print(f"step {last['step']}: loss {last['loss']:.4f}; final model in {result.final}")
