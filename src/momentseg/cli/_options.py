"""Options shared by the commands that run a model."""

from __future__ import annotations

import typer

from momentseg.grounding.sampling import DEFAULT_KEYFRAMES, DEFAULT_METHOD, DEFAULT_SEED, METHODS
from momentseg.io.video import DEFAULT_FPS
from momentseg.propagation.policy import DEFAULT_MODE, MODES

MODEL = typer.Option("embedded", "--model", "-m", help="Checkpoint folder, or 'embedded' (the shipped tiny model).")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda.")


OVERWRITE = typer.Option(
    False, "--overwrite",
    help="Write into an existing folder that momentseg did not make (its files are kept, never removed).",
)

#: Files a segment / demo output folder holds at its top (checked against a user's files before the model loads).
SEGMENT_FILES = ("result.json", "similarity.png", "overlay.mp4")

# The [SEG] pass's keyframe choice and the propagation: defaults and choices from the modules that own them.
KEYFRAMES = typer.Option(DEFAULT_KEYFRAMES, "--keyframes", "-k", help="Keyframes K given to the [SEG] pass.")
SAMPLING = typer.Option(DEFAULT_METHOD, help=f"Keyframe sampling: {' | '.join(METHODS)}.")
PROPAGATION = typer.Option(DEFAULT_MODE, help=f"Mask propagation: {' | '.join(MODES)}.")
SEED = typer.Option(DEFAULT_SEED, help="Seed for --sampling random.")

#: The frame rate of a frame folder: the default is the one open_video uses.
FPS_HELP = f"Frame rate of a frame folder (default {DEFAULT_FPS:g}); a video file has its own timestamps."
FPS = typer.Option(None, "--fps", help=FPS_HELP)

OFFLOAD = typer.Option(False, "--offload-state", help="Keep SAM2's memories on the CPU (long videos, small GPU).")


def load_pipeline(model: str, device: str, offload_state: bool = False):
    from momentseg.pipeline import MomentSeg, resolve_device

    resolve_device(device)  # validate before the (slow) load
    return MomentSeg.from_pretrained(model, device=device, offload_state=offload_state)
