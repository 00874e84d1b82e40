"""The training state across the distributed engines accelerate can run: one process or DDP, FSDP, and
DeepSpeed ZeRO-2.

A checkpoint (:mod:`momentseg.train.checkpoint`) always holds the *full* state keyed by parameter name, so a
run can resume under another engine or process count (with the same global batch). :class:`TrainState` is
made before ``accelerator.prepare`` (it records the trainable parameters' names, shapes and optimizer groups)
and then gathers a :class:`~momentseg.train.checkpoint.Snapshot` from, or restores one into, the prepared
module and optimizer. Both are collective calls: every process makes them, in the same order.

* one process / DDP: every process holds everything; read and written directly.
* FSDP2: parameters and Adam moments are DTensor shards, all-gathered (``full_tensor``) into the snapshot and
  cut back into this process's shards (``distribute_tensor``) on restore; names stay the module's.
* DeepSpeed ZeRO-2: parameters are replicated; the fp32 master weights and the optimizer state are partitioned
  across processes and gathered / scattered per parameter with DeepSpeed's ``safe_get_full_*`` /
  ``safe_set_full_*`` (its own checkpoint files would be pickles).
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate.utils import DistributedType

from momentseg.errors import CheckpointError
from momentseg.train.checkpoint import Snapshot, check_snapshot, optimizer_state_of, restore, snapshot


def engine_kind(accelerator) -> str:
    """``"torch"`` (one process or DDP), ``"fsdp"`` or ``"deepspeed"``."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return "fsdp"
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return "deepspeed"
    return "torch"


class TrainState:
    """The trainable parameters of ``model`` and the groups of ``optimizer``, as built before ``prepare``."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        name_of = {id(p): n for n, p in params.items()}
        self.shapes = {n: tuple(p.shape) for n, p in params.items()}
        self.group_names = [[name_of[id(p)] for p in g["params"]] for g in optimizer.param_groups]
        self.kind = "torch"
        self.module = self.optimizer = None

    def bind(self, kind: str, module: torch.nn.Module, optimizer) -> None:
        """The prepared JointLoss module (DDP / FSDP / DeepSpeed engine) and accelerate's optimizer wrapper."""
        if kind not in ("torch", "fsdp", "deepspeed"):
            raise ValueError(f"unknown engine {kind!r}")
        self.kind, self.module, self.optimizer = kind, module, optimizer

    def _inner_model(self) -> torch.nn.Module:
        # DDP and the DeepSpeed engine wrap JointLoss (.module); FSDP2 shards it in place
        m = self.module.module if hasattr(self.module, "module") else self.module
        return m.model

    def _torch_optimizer(self) -> torch.optim.Optimizer:
        return getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate's AcceleratedOptimizer

    # ------------------------------------------------------------------ gather
    def snapshot(self) -> Snapshot:
        """The full state (collective: every process calls; every process gets it)."""
        if self.kind == "deepspeed":
            return self._deepspeed_snapshot()
        return snapshot(self._inner_model(), self._torch_optimizer())

    def restore(self, snap: Snapshot, where: Path | str) -> None:
        """Load ``snap`` (collective: every process calls with the same snapshot)."""
        if self.kind == "deepspeed":
            check_snapshot(snap, self.shapes, self.group_names, where)
            self._deepspeed_restore(snap)
        else:  # checks the snapshot against the live parameters itself
            restore(snap, self._inner_model(), self._torch_optimizer(), where)

    # ------------------------------------------------------------------ DeepSpeed ZeRO-2
    def _zero(self):
        zero = self.module.optimizer  # DeepSpeedEngine.optimizer: the ZeRO optimizer
        if not hasattr(zero, "single_partition_of_fp32_groups"):
            raise CheckpointError(f"DeepSpeed optimizer {type(zero).__name__} is not ZeRO stage 1/2; "
                                  f"momentseg checkpoints support ZeRO-2 (configs/accelerate/deepspeed_zero2.json)")
        return zero

    def _deepspeed_params(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self._inner_model().named_parameters() if n in self.shapes}

    def _deepspeed_snapshot(self) -> Snapshot:
        # deepspeed is the optional [deepspeed] extra: imported only under a DeepSpeed engine
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        zero = self._zero()
        base = zero.optimizer
        params, tensors = {}, {}
        steps = _group_steps(zero)
        _relink(zero)
        live = self._deepspeed_params()
        for group, names in enumerate(self.group_names):
            flat = zero.single_partition_of_fp32_groups[group]
            # the partitioned (per-element) state tensors, e.g. Adam's exp_avg / exp_avg_sq
            keys = [k for k, v in base.state.get(flat, {}).items() if torch.is_tensor(v) and v.shape == flat.shape]
            for name in names:
                p = live[name]
                params[name] = safe_get_full_fp32_param(p).detach().cpu().contiguous()
                if steps[group] is None:
                    continue  # no optimizer step yet
                for key in keys:
                    tensors[f"{name}::{key}"] = safe_get_full_optimizer_state(p, key).detach().cpu().contiguous()
                tensors[f"{name}::step"] = steps[group].detach().cpu().clone()
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": names}
                  for g, names in zip(base.param_groups, self.group_names, strict=True)]
        return Snapshot(params, tensors, {}, groups)

    def _deepspeed_restore(self, snap: Snapshot) -> None:
        # deepspeed is the optional [deepspeed] extra: imported only under a DeepSpeed engine
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

        zero = self._zero()
        base = zero.optimizer
        live = self._deepspeed_params()
        for group, names in enumerate(self.group_names):
            states = [optimizer_state_of(snap, n) for n in names]
            if any(states) and not all(states):
                raise CheckpointError("DeepSpeed resume: some parameters of an optimizer group have no optimizer "
                                      "state in the checkpoint (they never got a gradient), but ZeRO keeps one "
                                      "state per group; resume that run under DDP or a single process")
            if states and states[0]:
                flat = zero.single_partition_of_fp32_groups[group]
                # ZeRO creates its optimizer state lazily at the first step: create it here so it can be filled
                keys = [k for k in states[0] if k != "step"]
                base.state[flat] = {k: torch.zeros_like(flat) for k in keys}
                base.state[flat]["step"] = states[0]["step"].clone().to(torch.float32)
        _relink(zero)
        for g, saved in zip(base.param_groups, snap.groups, strict=True):
            g.update({k: v for k, v in saved.items() if k != "params"})
        for names in self.group_names:
            for name in names:
                p = live[name]
                value = snap.params[name]
                safe_set_full_fp32_param(p, value.to(p.device, torch.float32))
                with torch.no_grad():
                    p.copy_(value.to(p.dtype))
                for key, v in optimizer_state_of(snap, name).items():
                    if key != "step":
                        safe_set_full_optimizer_state(p, v.to(p.device, torch.float32), key)


def _relink(zero) -> None:
    """Point every parameter's fragment at its group's optimizer state. (ZeRO links them once, right after
    the first group's first step, so later groups' fragments stay empty: DeepSpeed 0.19.)"""
    zero._hp_optimizer_states_linked = False
    zero._lazy_init_hp_params_optimizer_state()


def _group_steps(zero) -> list[torch.Tensor | None]:
    """The Adam step count of each ZeRO param group (``None`` before the first step)."""
    out = []
    for flat in zero.single_partition_of_fp32_groups:
        state = zero.optimizer.state.get(flat, {})
        step = state.get("step")
        out.append(torch.as_tensor(step, dtype=torch.float32) if step is not None else None)
    return out
