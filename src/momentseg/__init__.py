"""MomentSeg: find *when* a sentence happens in a video and segment *what* it refers to in every frame."""

from __future__ import annotations

from momentseg._version import __version__

__all__ = ["MomentSeg", "__version__"]


def __getattr__(name: str):
    # Imported lazily so that `import momentseg` (and the CLI's --help) stays fast and torch-free.
    if name == "MomentSeg":
        from momentseg.pipeline import MomentSeg

        return MomentSeg
    raise AttributeError(name)
