import os

import pytest
from hypothesis import settings

# Property tests check behaviour, not speed: no per-example deadline (on a loaded 2-core machine an example can
# take longer than hypothesis' default 200 ms, which made a correct test fail as "flaky").
settings.register_profile("momentseg", deadline=None)
settings.load_profile("momentseg")

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
