"""Two CPU processes (torchrun + gloo, through accelerate) train in sync and match one process with the
same global batch. Run as a script, this file is the worker that torchrun starts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STEPS = 4


def _run(out: Path, batch: int):
    """Train the stand-in (no dropout) for STEPS steps; save this process's parameters and losses."""
    from momentseg.train.loop import train
    from test_train_loop import cfg, make_model, stream

    model = make_model()
    model.dropout.p = 0.0
    result = train(cfg(steps=STEPS, batch_size=batch, grad_accum=1, checkpoint_every=100), out=out,
                   model=model, stream=stream())
    rank = int(os.environ.get("RANK", "0"))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    if rank == 0:
        (out / "losses.json").write_text(json.dumps([r["loss"] for r in result.history]))


def test_two_processes_stay_in_sync_and_match_one_process(tmp_path):
    from multiproc import synced_weights, torchrun

    torchrun(__file__, tmp_path / "ddp")
    r0 = synced_weights(tmp_path / "ddp")
    # one process, batch 2·2 = the same global batch
    _run(tmp_path / "single", batch=4)
    single = load_file(str(tmp_path / "single" / "rank0.safetensors"))
    from test_train_loop import make_model

    initial = make_model().state_dict()
    for k in r0:
        torch.testing.assert_close(r0[k], single[k], rtol=1e-4, atol=1e-6, msg=k)
    assert all(not torch.equal(r0[k], initial[k]) for k in r0)  # every parameter trained
    l_ddp = json.loads((tmp_path / "ddp" / "losses.json").read_text())
    l_one = json.loads((tmp_path / "single" / "losses.json").read_text())
    assert len(l_ddp) == STEPS
    np.testing.assert_allclose(l_ddp, l_one, rtol=1e-5)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _run(Path(sys.argv[1]), batch=2)
