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
    seed: int = typer.Option(None, "--seed", min=0, help="Override seed (the samples drawn and the model's randomness; "
                             "a resumed run must keep its seed)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Do not draw the progress bar."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Use a non-empty run folder momentseg did not make "
                                   "(its files are kept; it must not hold config.json, metrics.jsonl, "
                                   "checkpoints/ or final/)."),
) -> None:
    """Train MomentSeg per CONFIG. Multi-GPU: `accelerate launch --config_file configs/accelerate/ddp.yaml -m momentseg train CONFIG`."""
    from momentseg.train.config import load_config, validate
    from momentseg.train.loop import train

    cfg = load_config(config)
    if steps is not None:
        cfg.run.steps = steps
    if seed is not None:
        cfg.seed = seed
    if no_progress:
        cfg.run.progress = False
    validate(cfg, str(config))
    _check_model_folders(cfg, config)
    run_dir = Path(out if out is not None else cfg.out)
    _check_run_dir(run_dir, resume, overwrite)
    result = train(cfg, out=run_dir, resume=resume)
    if result.history:
        last = result.history[-1]
        print(f"step {last['step']}: loss {last['loss']:.4f}; final model in {result.final}")


#: The train config's ``model`` keys that name a folder to load weights from.
MODEL_FOLDERS = ("pretrained", "sam2_from", "vision_from", "pointing_vision_from", "qwen_dir", "sam2_dir")


def _check_model_folders(cfg, config: Path) -> None:
    """Every folder the config loads weights from exists — checked before the run folder is made, so a missing
    one (e.g. a stage whose previous stage has not run) leaves nothing behind."""
    from momentseg.errors import InputError

    for key in MODEL_FOLDERS:
        folder = getattr(cfg.model, key)
        if folder is not None and not Path(folder).is_dir():
            raise InputError(f"{config}: model.{key}: folder {folder} does not exist")


#: What the training loop writes into its run folder.
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints", "final")


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """The run folder rule, checked before the model is built: a new folder, a run folder momentseg made
    (marker), or with ``--resume`` the run to continue; another non-empty folder only with ``--overwrite`` and
    only when none of the loop's files are in it. The main process then marks the folder as momentseg's."""
    import os

    from momentseg.errors import OutputError
    from momentseg.io.atomic import check_output_dir, read_marker, write_marker

    if int(os.environ.get("RANK", "0")) != 0:
        return  # the main process checks and marks; the others would race with its marker
    check_output_dir(run_dir, overwrite=overwrite or resume, what="--out")
    if run_dir.is_dir() and read_marker(run_dir) is None and not resume:
        clash = [name for name in RUN_FILES if (run_dir / name).exists()]
        if clash:
            raise OutputError(f"--out {run_dir} holds {', '.join(clash)}, which momentseg did not write; training "
                              "would replace it: choose another run folder")
    if not run_dir.exists() or read_marker(run_dir) is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_marker(run_dir, [])
