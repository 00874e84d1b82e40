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



@pytest.fixture(scope="session")
def object_present():
    """``bias(sam2, bias=, weight_gain=1.0)``: push a random SAM2's object-score head towards "object present"
    (weights × ``weight_gain``, bias ``bias``) and return the model. A random head says "no object" about half
    the time, and SAM2 then clamps the whole mask to -1024, which would make every comparison of masks
    vacuous."""
    import torch

    def bias(sam2, *, bias: float, weight_gain: float = 1.0):
        with torch.no_grad():
            head = sam2.mask_decoder.pred_obj_score_head.proj_out
            if weight_gain != 1.0:
                head.weight.mul_(weight_gain)
            head.bias.fill_(bias)
        return sam2

    return bias


@pytest.fixture(scope="session")
def videos():
    """Synthetic-world videos of seeds 0–29 (ids ``vid_00000`` …), made once for the world and caption tests."""
    from momentseg.data.synthetic import generate_video

    return [generate_video(s, f"vid_{s:05d}") for s in range(30)]
