"""``momentseg convert``: turn other checkpoints into MomentSeg checkpoint folders."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from momentseg.cli import app
from momentseg.errors import InputError


@app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="Source checkpoint folder (config.json, tokenizer, safetensors)."),
    out: Path = typer.Option(..., "--out", help="Destination folder for the MomentSeg checkpoint: new, or one "
                             "momentseg wrote before (its previous files are replaced; nothing else is touched)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Write into a non-empty folder momentseg did not make (its files are kept)."),
    source_format: str = typer.Option(
        "auto", "--from",
        help="Source format: 'momentseg-release' (the authors' MomentSeg-3B/7B), 'sa2va' (Sa2VA-Qwen2.5-VL), or "
        "'auto' (from config.json's model_type).",
    ),
    sam2_config: Path | None = typer.Option(
        None,
        "--sam2-config",
        help="JSON file with a transformers Sam2VideoConfig dict; default: inferred from the SAM2 weights.",
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Frame sizes / prompts preset (3b or 7b); default: by the LLM's hidden size."
    ),
) -> None:
    """Convert a released MomentSeg-3B/7B or a Sa2VA-Qwen2.5-VL checkpoint into a MomentSeg checkpoint folder
    (from Sa2VA the [FIND] head starts random)."""
    import warnings

    from momentseg.io.atomic import allow_overwrite, check_output_dir
    from momentseg.model import MomentSegModel
    from momentseg.model.release import SOURCES, detect_source

    check_output_dir(out, overwrite=overwrite, what="--out")
    if source_format not in (*SOURCES, "auto"):
        raise InputError(f"--from {source_format!r} is not supported; use one of {', '.join(SOURCES)} or auto")
    if not src.is_dir():
        raise InputError(f"source folder {src} does not exist")
    if source_format == "auto":
        source_format = detect_source(src)
    if preset is not None and preset not in ("3b", "7b", "tiny"):
        raise InputError(f"--preset {preset!r} is not one of 3b, 7b, tiny")
    sam2_dict = None
    if sam2_config is not None:
        try:
            sam2_dict = json.loads(sam2_config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read --sam2-config {sam2_config}: {exc}") from exc
        if not isinstance(sam2_dict, dict):
            raise InputError(f"--sam2-config {sam2_config} must hold a JSON object")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MomentSegModel.from_released(src, source=source_format, sam2_config=sam2_dict, preset=preset)
    with allow_overwrite(*([out] if overwrite else [])):
        model.save_pretrained(out)
    for note in model.config.notes:
        print(f"warning: {note}")
    print(f"wrote {out}")
