from __future__ import annotations

from momentseg._version import __version__
from momentseg.cli import app


@app.command("version")
def version() -> None:
    """Print the momentseg version."""
    print(__version__)
