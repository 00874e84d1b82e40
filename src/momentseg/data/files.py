"""Reading annotation files with one-line errors: JSON, JSON lines, text lines and plain-data pickles.

A ``.pkl`` is read by a restricted unpickler: only dicts, lists, tuples, strings, bytes, numbers, booleans and
None can be built (any class or function reference is refused with a one-line error).
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from momentseg.errors import InputError


def load_json(path: str | os.PathLike) -> Any:
    """``json.load`` that raises a one-line :class:`InputError` naming the file on any problem."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in {path}: {exc}") from None


class _Refused(pickle.UnpicklingError):
    pass


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain data: every global (class, function) reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"refusing to load {module}.{name}")


def load_plain_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` allowing only dicts, lists, tuples, sets, strings, bytes, numbers, bools and None.

    Anything that needs a class or function (numpy arrays, custom objects, ``__reduce__`` payloads) raises a
    one-line :class:`InputError` naming the file; so does a missing or malformed file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    try:
        return _PlainDataUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise InputError(
            f"{path}: not a plain-data pickle ({exc}); only dicts, lists, strings, bytes and numbers are read"
        ) from None
    except Exception as exc:  # truncated / corrupt data raise many kinds of errors
        raise InputError(f"{path}: malformed pickle: {type(exc).__name__}: {exc}") from None


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (an :class:`InputError` naming the file if it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of every non-empty line of a JSON-lines file; one-line errors."""
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: malformed JSON line: {exc}") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object per line")
        yield lineno, row
