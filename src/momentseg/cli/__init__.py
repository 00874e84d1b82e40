"""The ``momentseg`` command line.

Each command lives in its own module of this package and registers itself on :data:`app`; heavy imports
(torch, transformers) happen inside the command functions so ``momentseg --help`` stays fast.
User errors (:class:`momentseg.errors.MomentSegError`) are printed as one ``error: …`` line with exit
status 2 and no traceback. SIGTERM ends a command like Ctrl-C does: the temporary files and folders of an
unfinished output are removed (exit status 143).
"""

from __future__ import annotations

import signal
import sys
import threading

import typer

from momentseg.errors import MomentSegError

app = typer.Typer(
    name="momentseg",
    help="MomentSeg: temporal sentence grounding + referring video object segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """MomentSeg: find when a sentence happens in a video and segment what it refers to."""


# Command modules: importing one registers its command(s) on `app`.
from momentseg.cli import convert as _convert  # noqa: E402,F401
from momentseg.cli import demo as _demo  # noqa: E402,F401
from momentseg.cli import eval as _eval  # noqa: E402,F401
from momentseg.cli import ground as _ground  # noqa: E402,F401
from momentseg.cli import predict as _predict  # noqa: E402,F401
from momentseg.cli import segment as _segment  # noqa: E402,F401
from momentseg.cli import synth as _synth  # noqa: E402,F401
from momentseg.cli import train as _train  # noqa: E402,F401
from momentseg.cli import version as _version  # noqa: E402,F401
from momentseg.cli import web as _web  # noqa: E402,F401


def _on_sigterm(signum, _frame) -> None:
    # unwinds the stack like Ctrl-C, so every `except BaseException` / `finally` cleanup runs
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app(args=argv, prog_name="momentseg")
    except MomentSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
