"""Temporal sentence grounding ground truth (Charades-STA, ActivityNet Captions, QVHighlights).

Charades-STA ``vid start end##sentence`` lines (qid = 0-based index of the non-empty
line), ActivityNet Captions JSON ``{vid: {"duration", "timestamps": [[s, e], ...], "sentences": [...]}}``
(qid = running index over (video, sentence) in file order), QVHighlights JSONL (``qid``, ``query``, ``vid``,
``duration``, ``relevant_windows``). Charades-STA and ActivityNet also read that JSONL form (Lighthouse's
``charades-sta_test.jsonl`` / ``activitynet_val_1.jsonl`` style: ``qid``, ``query``, ``duration``, ``vid``,
``relevant_windows``), recognised by its first line being a JSON object with ``qid`` and
``relevant_windows``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from momentseg.data.benchmarks import TSG_BENCHMARKS
from momentseg.data.files import load_json, read_jsonl, read_lines
from momentseg.errors import InputError


@dataclass(frozen=True)
class TSGQuery:
    """One grounding query: GT ``windows`` ``[[s, e], ...]`` in seconds; ``duration`` in seconds or None."""

    qid: int
    vid: str
    query: str
    windows: list[list[float]]
    duration: float | None = None


def parse_window(value: Any, where: str, allow_reversed: bool = False) -> list[float]:
    """``[start, end]`` in seconds as two finite floats (end ≥ start unless ``allow_reversed``); else a one-line
    :class:`InputError` naming ``where``."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    ):
        raise InputError(f"{where}: a window must be [start, end] in seconds, got {value!r}")
    s, e = float(value[0]), float(value[1])
    if not (math.isfinite(s) and math.isfinite(e)):
        raise InputError(f"{where}: bad window [{s}, {e}] (not finite)")
    if e < s and not allow_reversed:
        raise InputError(f"{where}: bad window [{s}, {e}] (end before start)")
    return [s, e]


def _is_tsg_jsonl(path: Path) -> bool:
    """True when the first non-empty line of ``path`` is a JSON object with ``qid`` and ``relevant_windows``."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        return False
                    return isinstance(row, dict) and "qid" in row and "relevant_windows" in row
    except (OSError, UnicodeDecodeError):
        return False  # the format's own reader reports the problem
    return False


def load_charades(path: str | os.PathLike) -> list[TSGQuery]:
    """Charades-STA: ``vid start end##sentence`` lines (qid = index of the non-empty line) or Lighthouse JSONL."""
    path = Path(path)
    if _is_tsg_jsonl(path):
        return load_tsg_jsonl(path)
    out = []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        parts = head.split()
        where = f"{path}:{lineno}"
        if not sep or len(parts) != 3:
            raise InputError(f"{where}: expected 'vid start end##sentence', got {line[:80]!r}")
        try:
            win = parse_window([float(parts[1]), float(parts[2])], where)
        except ValueError:
            raise InputError(f"{where}: start/end are not numbers: {head!r}") from None
        out.append(TSGQuery(qid=len(out), vid=parts[0], query=sentence.strip(), windows=[win]))
    return out


def load_anet(path: str | os.PathLike) -> list[TSGQuery]:
    """ActivityNet Captions JSON (qid = running index over (video, sentence) in file order) or Lighthouse JSONL."""
    path = Path(path)
    if _is_tsg_jsonl(path):
        return load_tsg_jsonl(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected {{vid: {{'duration', 'timestamps', 'sentences'}}}}")
    out = []
    for vid, v in data.items():
        where = f"{path}: video {vid}"
        if (
            not isinstance(v, dict)
            or not isinstance(v.get("timestamps"), list)
            or not isinstance(v.get("sentences"), list)
        ):
            raise InputError(f"{where}: needs 'timestamps' and 'sentences' lists")
        if len(v["timestamps"]) != len(v["sentences"]):
            raise InputError(
                f"{where}: {len(v['timestamps'])} timestamps but {len(v['sentences'])} sentences"
            )
        duration = v.get("duration")
        if duration is not None and not isinstance(duration, (int, float)):
            raise InputError(f"{where}: 'duration' must be a number")
        for ts, sentence in zip(v["timestamps"], v["sentences"], strict=True):
            out.append(
                TSGQuery(
                    qid=len(out),
                    vid=str(vid),
                    query=str(sentence).strip(),
                    windows=[parse_window(ts, where)],
                    duration=float(duration) if duration is not None else None,
                )
            )
    return out


def qid_rows(path: str | os.PathLike) -> Iterator[tuple[str, int, dict]]:
    """``(where, qid, row)`` for every line of a TSG JSONL file (ground truth or predictions): each line a JSON
    object whose ``qid`` is an int, each qid once; ``where`` is ``path:line`` for error messages."""
    path = Path(path)
    seen: set[int] = set()
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        qid = row.get("qid")
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise InputError(f"{where}: 'qid' must be an int")
        if qid in seen:
            raise InputError(f"{where}: duplicate qid {qid}")
        seen.add(qid)
        yield where, qid, row


def load_tsg_jsonl(path: str | os.PathLike) -> list[TSGQuery]:
    """Moment-DETR / Lighthouse GT JSONL (``qid``, ``query``, ``vid``, ``duration``, ``relevant_windows``).

    QVHighlights ships this form (its test split has no windows); Lighthouse ships Charades-STA and
    ActivityNet Captions in it too.
    """
    out = []
    for where, qid, row in qid_rows(path):
        windows = row.get("relevant_windows") or []
        if not isinstance(windows, list):
            raise InputError(f"{where}: 'relevant_windows' must be a list of [start, end]")
        duration = row.get("duration")
        out.append(
            TSGQuery(
                qid=qid,
                vid=str(row.get("vid", "")),
                query=str(row.get("query", "")),
                windows=[parse_window(w, where) for w in windows],
                duration=float(duration) if isinstance(duration, (int, float)) else None,
            )
        )
    return out


load_qvhighlights = load_tsg_jsonl

TSG_LOADERS = dict(zip(TSG_BENCHMARKS, (load_charades, load_anet, load_tsg_jsonl), strict=True))
