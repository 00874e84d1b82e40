"""The FSDP path of the training state (momentseg.train.engine) on two CPU processes (torch FSDP2 over gloo):
a checkpoint gathered from shards equals the state of the same training run unsharded, and restoring it into
a freshly sharded model continues exactly. (accelerate enables FSDP on GPUs only, so the trainer's FSDP
launch itself needs a GPU machine; this is the part of it that does not.)
Run as a script, this file is the worker that torchrun starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

STEPS = 3


def _setup(seed: int = 3, shard: bool = False):
    """The stand-in in the trainer's JointLoss wrapper (FSDP2-sharded when ``shard``; the optimizer is made
    after sharding, as FSDP2 needs) and its TrainState."""
    from torch.distributed.fsdp import fully_shard

    from momentseg.train.engine import TrainState
    from momentseg.train.loop import JointLoss, param_groups
    from test_train_loop import cfg, make_model

    model = make_model(seed)
    model.dropout.p = 0.0
    model.pixel.bias.requires_grad_(False)  # a frozen parameter: not in the checkpoint
    module = JointLoss(model, cfg().loss)
    if shard:
        fully_shard(model.find_head)
        fully_shard(module)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=0.02)
    state = TrainState(model, optimizer)
    if shard:
        state.bind("fsdp", module, optimizer)
    return state, module, optimizer


def _step(module, optimizer, samples):
    tsg, refvos = samples
    loss = module(tsg, refvos)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _batches():
    from test_train_loop import stream

    s = stream()
    # step 0 has RefVOS samples only: the [FIND] head gets no gradient and no optimizer state then
    refvos = s.batch(range(8))["refvos"]
    pairs = [s.batch([2 * i, 2 * i + 1]) for i in range(4, STEPS + 4)]
    return [([], refvos[:1])] + [(b["tsg"], b["refvos"]) for b in pairs]


def _worker(out: Path):
    import torch.distributed as dist
    from safetensors.torch import save_file

    from momentseg.train import checkpoint as ckpt

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    batches = _batches()
    # every process sees the same samples: the sharded run must equal one unsharded process
    state, module, optimizer = _setup(shard=True)
    _step(module, optimizer, batches[0])
    first = state.snapshot()  # after a step in which the [FIND] head got no gradient
    for b in batches[1:STEPS]:
        _step(module, optimizer, b)
    snap = state.snapshot()
    after = _step(module, optimizer, batches[STEPS])

    # frozen parameters are rebuilt as in the saved run; the trained ones must all come from the checkpoint
    fresh_state, fresh, fresh_opt = _setup(shard=True)
    with torch.no_grad():
        for p in fresh.parameters():
            if p.requires_grad:
                p.add_(1.0)
    fresh_state.restore(first, "first")
    absent = sum(1 for g in fresh_opt.param_groups for p in g["params"] if p not in fresh_opt.state)
    fresh_state.restore(snap, "snap")
    resumed = _step(fresh, fresh_opt, batches[STEPS])
    final = fresh_state.snapshot()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.save_checkpoint(out / "first", 1, first, {}, keep_last=1)
        ckpt.save_checkpoint(out / "snap", STEPS, snap, {}, keep_last=1)
        ckpt.save_checkpoint(out / "final", STEPS + 1, final, {}, keep_last=1)
        save_file({"after": torch.tensor(after), "resumed": torch.tensor(resumed),
                   "absent": torch.tensor(absent)}, str(out / "values.safetensors"))
    dist.barrier()  # both processes are done with gloo before it is torn down
    dist.destroy_process_group()


def test_fsdp_snapshot_is_the_full_state_and_restores_exactly(tmp_path):
    from safetensors.torch import load_file

    from momentseg.train import checkpoint as ckpt
    from multiproc import torchrun

    torchrun(__file__, tmp_path)

    def read(name):
        return ckpt.read_checkpoint(ckpt.list_checkpoints(tmp_path / name)[-1][1])[0]

    first, snap, final = read("first"), read("snap"), read("final")
    # the same run on one process, unsharded
    state, module, optimizer = _setup()
    batches = _batches()
    _step(module, optimizer, batches[0])
    plain_first = ckpt.snapshot(module.model, optimizer)
    for b in batches[1:STEPS]:
        _step(module, optimizer, b)
    plain = ckpt.snapshot(module.model, optimizer)
    after = _step(module, optimizer, batches[STEPS])
    plain_final = ckpt.snapshot(module.model, optimizer)

    assert "pixel.bias" not in snap.params and set(snap.params) == set(state.shapes)
    assert [g["params"] for g in snap.groups] == state.group_names
    # no optimizer state for the [FIND] head after the first step, in the snapshot and after restoring it
    assert not any(k.startswith("find_head.") for k in first.optimizer)
    assert first.optimizer.keys() == plain_first.optimizer.keys()
    values = load_file(str(tmp_path / "values.safetensors"))
    assert int(values["absent"]) == 2  # find_head weight and bias
    for got, want in ((snap, plain), (final, plain_final)):
        assert got.params.keys() == want.params.keys() and got.optimizer.keys() == want.optimizer.keys()
        for k in want.params:
            torch.testing.assert_close(got.params[k], want.params[k], rtol=1e-5, atol=1e-6, msg=k)
        for k in want.optimizer:
            torch.testing.assert_close(got.optimizer[k], want.optimizer[k], rtol=1e-4, atol=1e-7, msg=k)
    # the restored run takes the same next step as the unbroken one
    assert float(values["resumed"]) == pytest.approx(float(values["after"]), rel=1e-6)
    assert float(values["after"]) == pytest.approx(after, rel=1e-5)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _worker(Path(sys.argv[1]))
