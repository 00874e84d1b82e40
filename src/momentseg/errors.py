"""User-facing errors.

Every problem caused by the user's input (a bad file, a bad argument, a malformed line) is raised as a
:class:`MomentSegError` whose message is one line naming what was wrong and where. The CLI prints it as
``error: <message>`` and exits with status 2, without a traceback.
"""

from __future__ import annotations


class MomentSegError(Exception):
    """A problem with the user's input or environment, reported as one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # force one line


class InputError(MomentSegError):
    """A file or argument given by the user is missing, unreadable or malformed."""


class CheckpointError(MomentSegError):
    """A checkpoint does not match the model it is loaded into."""


class OutputError(MomentSegError):
    """An output path cannot be written without losing or replacing something that is already there."""
