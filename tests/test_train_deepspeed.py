"""DeepSpeed ZeRO-2 through accelerate, on CPU (DeepSpeed's CPU accelerator, gloo), launched with the shipped
``configs/accelerate/deepspeed_zero2.yaml``: two processes match one plain process with the same global
batch, the checkpoints hold the full state, ``--resume`` under DeepSpeed replays the unbroken run, and one
plain process resumes a DeepSpeed checkpoint.
Run as a script, this file is the worker that ``accelerate launch`` starts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("deepspeed", reason="DeepSpeed is in the dev extra; install it to run this test")

STEPS = 4


def _run(out: Path, batch: int, resume: bool = False):
    """Train the stand-in (no dropout) into ``out`` for STEPS steps (checkpoints every 2); save this process's
    parameters and losses."""
    from momentseg.train.loop import train
    from test_train_loop import cfg, make_model, stream

    model = make_model()
    model.dropout.p = 0.0
    config = cfg(steps=STEPS, batch_size=batch, grad_accum=2, checkpoint_every=2)
    rank = int(os.environ.get("RANK", "0"))
    result = train(config, out=out, resume=resume, model=model, stream=stream())
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(out / f"rank{rank}.safetensors"))
    if rank == 0:
        (out / f"losses{'-resumed' if resume else ''}.json").write_text(json.dumps([r["loss"] for r in result.history]))


def _launch(*args: str):
    from multiproc import accelerate_launch

    accelerate_launch("configs/accelerate/deepspeed_zero2.yaml", __file__, *args, env={"DS_ACCELERATOR": "cpu"})


def test_zero2_matches_one_process_and_resumes_exactly(tmp_path):
    from momentseg.train import checkpoint as ckpt
    from multiproc import synced_weights

    _launch(str(tmp_path / "ds"), "fresh")
    r0 = synced_weights(tmp_path / "ds")

    # one plain process, batch 2·2 (× the same accumulation) = the same global batch
    _run(tmp_path / "single", batch=4)
    single = load_file(str(tmp_path / "single" / "rank0.safetensors"))
    for k in r0:
        torch.testing.assert_close(r0[k], single[k], rtol=1e-4, atol=1e-6, msg=k)
    l_ds = json.loads((tmp_path / "ds" / "losses.json").read_text())
    l_one = json.loads((tmp_path / "single" / "losses.json").read_text())
    assert len(l_ds) == STEPS
    np.testing.assert_allclose(l_ds, l_one, rtol=1e-5)
    # the logged gradient norm (before clipping) is DeepSpeed's, equal to the one process's
    norms = [[json.loads(x)["grad_norm"] for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
             for run in ("ds", "single")]
    np.testing.assert_allclose(norms[0], norms[1], rtol=1e-4)

    # the DeepSpeed checkpoint holds the full (gathered) state: the same parameter names and shapes as the
    # plain run's checkpoint, Adam moments for every trained parameter, close to the plain run's values
    (_, ds_folder), (_, one_folder) = ckpt.list_checkpoints(tmp_path / "ds")[-1], ckpt.list_checkpoints(
        tmp_path / "single")[-1]
    ds_snap, _ = ckpt.read_checkpoint(ds_folder)
    one_snap, _ = ckpt.read_checkpoint(one_folder)
    assert ds_snap.params.keys() == one_snap.params.keys()
    for k, v in one_snap.params.items():
        torch.testing.assert_close(ds_snap.params[k], v, rtol=1e-4, atol=1e-6, msg=k)
    for k, v in one_snap.optimizer.items():
        torch.testing.assert_close(ds_snap.optimizer[k], v, rtol=1e-3, atol=1e-7, msg=k)

    # simulate a run that died after step 2 (drop the step-4 checkpoint and the final model), resume under
    # DeepSpeed: the same losses and weights as the unbroken run
    import shutil

    shutil.rmtree(ckpt.checkpoint_dir(tmp_path / "ds", 4))
    shutil.rmtree(tmp_path / "ds" / "final")
    shutil.copytree(ckpt.checkpoint_dir(tmp_path / "ds", 2), ckpt.checkpoint_dir(tmp_path / "cross", 2))
    _launch(str(tmp_path / "ds"), "resume")
    resumed = json.loads((tmp_path / "ds" / "losses-resumed.json").read_text())
    np.testing.assert_allclose(resumed, l_ds[2:], rtol=0, atol=1e-6)
    p0 = load_file(str(tmp_path / "ds" / "rank0.safetensors"))
    for k in r0:
        torch.testing.assert_close(p0[k], r0[k], rtol=0, atol=1e-6, msg=k)

    # the same checkpoint format whatever the engine: one plain process resumes the DeepSpeed checkpoint
    _run(tmp_path / "cross", batch=4, resume=True)
    cross = json.loads((tmp_path / "cross" / "losses-resumed.json").read_text())
    np.testing.assert_allclose(cross, l_ds[2:], rtol=1e-5)
    c0 = load_file(str(tmp_path / "cross" / "rank0.safetensors"))
    for k in r0:
        torch.testing.assert_close(c0[k], r0[k], rtol=1e-4, atol=1e-6, msg=k)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _run(Path(sys.argv[1]), batch=2, resume=sys.argv[2] == "resume")
