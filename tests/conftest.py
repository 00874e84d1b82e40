import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def cli():
    """Run ``momentseg ARGS`` in-process; returns the exit status (0 on success)."""
    from momentseg.cli import main

    def run(args) -> int:
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            return exc.code or 0
        return 0

    return run
