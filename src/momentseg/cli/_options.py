"""Options shared by the commands that run a model."""

from __future__ import annotations

import typer

MODEL = typer.Option("embedded", "--model", "-m", help="Checkpoint folder, or 'embedded' (the shipped tiny model).")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda.")


OVERWRITE = typer.Option(
    False, "--overwrite",
    help="Write into an existing folder that momentseg did not make (its files are kept, never removed).",
)

#: Files a segment / demo output folder holds at its top (checked against a user's files before the model loads).
SEGMENT_FILES = ("result.json", "similarity.png", "overlay.mp4")

OFFLOAD = typer.Option(False, "--offload-state", help="Keep SAM2's memories on the CPU (long videos, small GPU).")


def load_pipeline(model: str, device: str, offload_state: bool = False):
    from momentseg.pipeline import MomentSeg, resolve_device

    resolve_device(device)  # validate before the (slow) load
    return MomentSeg.from_pretrained(model, device=device, offload_state=offload_state)
