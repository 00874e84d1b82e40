"""Order-preserving map over worker processes (results are identical to a single-process run)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` computed by ``workers`` processes (in-process when 1 or few items).

    ``fn`` must be a module-level function and ``items`` picklable. An exception raised by ``fn`` (e.g. an
    :class:`~momentseg.errors.InputError`) is re-raised here.
    """
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError("workers must be >= 1")
    items = list(items)
    if workers == 1 or len(items) <= 1:
        return [fn(x) for x in items]
    workers = min(workers, len(items))
    chunksize = max(1, len(items) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items, chunksize=chunksize))
