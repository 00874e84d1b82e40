"""Training checkpoints: written atomically, read back without pickle.

A checkpoint is a folder ``OUT/checkpoints/step-0000123/`` holding

* ``trainable.safetensors`` – every parameter that trains (``requires_grad``), by name. The frozen rest is
  rebuilt identically on resume (same preset + seed, or the same ``pretrained`` folder), so it is not copied.
* ``optimizer.safetensors`` – the optimizer's per-parameter tensors as ``"<param name>::<key>"``
  (AdamW: ``exp_avg``, ``exp_avg_sq``, ``step``).
* ``state.json`` – step, optimizer param groups (hyper-parameters and parameter names), non-tensor optimizer
  state, and a few run facts (global batch, seed) that an exact resume depends on.

No RNG state is stored: the trainer reseeds every step from ``(seed, step, rank)`` and draws its samples as a
pure function of ``(seed, position)``, so a resumed run replays exactly what an unbroken run does.
Checkpoints older than the last ``keep_last`` are deleted after each write.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from momentseg.errors import CheckpointError
from momentseg.io.atomic import atomic_dir

FORMAT = 1
_SEP = "::"


def checkpoint_dir(out: Path, step: int) -> Path:
    return Path(out) / "checkpoints" / f"step-{step:07d}"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``out`` as (step, folder), oldest first."""
    root = Path(out) / "checkpoints"
    found = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith("step-") and (p / "state.json").is_file():
                try:
                    found.append((int(p.name[5:]), p))
                except ValueError:
                    continue
    return sorted(found)


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


@dataclass
class Snapshot:
    """A training state, full (unsharded) and keyed by parameter name, as a checkpoint holds it.

    ``params``: trainable parameter → tensor; ``optimizer``: ``"<param>::<key>"`` → tensor (only parameters
    that have optimizer state); ``scalars``: param → non-tensor optimizer state; ``groups``: the optimizer's
    param groups, hyper-parameters plus ``"params"`` = parameter names in order.
    """

    params: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    scalars: dict[str, dict[str, Any]]
    groups: list[dict[str, Any]]


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``t`` whole (never a view of live training state): an FSDP2 shard (DTensor) is
    all-gathered (collective)."""
    if hasattr(t, "full_tensor"):  # torch.distributed.tensor.DTensor
        t = t.full_tensor()
    return t.detach().to("cpu", copy=True).contiguous()


def like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A copy of ``value`` (a whole tensor) laid out as ``target``: this process's shard when ``target`` is a
    DTensor."""
    if hasattr(target, "device_mesh"):
        # on use: only FSDP's DTensors need torch's distributed tensor API
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(value.to(target.device, target.dtype), target.device_mesh, target.placements)
    return value.to(target.device, target.dtype, copy=True)


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Snapshot:
    """The :class:`Snapshot` of ``model`` and its (torch) ``optimizer``. With FSDP2 (DTensor parameters and
    state) this is collective: every process calls it and gets the whole state."""
    params = _trainable(model)
    name_of = {id(p): n for n, p in params.items()}
    sd = optimizer.state_dict()
    # state_dict() numbers parameters in param_groups order; map those numbers back to names.
    index_to_name = {}
    for group, sd_group in zip(optimizer.param_groups, sd["param_groups"], strict=True):
        for p, idx in zip(group["params"], sd_group["params"], strict=True):
            if id(p) not in name_of:
                raise CheckpointError("the optimizer holds a parameter that does not train")
            index_to_name[idx] = name_of[id(p)]
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        name = index_to_name[idx]
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{name}{_SEP}{key}"] = full_tensor(value)
            else:
                scalars.setdefault(name, {})[key] = value
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index_to_name[i] for i in g["params"]]}
              for g in sd["param_groups"]]
    return Snapshot({n: full_tensor(p) for n, p in params.items()}, tensors, scalars, groups)


def save_checkpoint(out: Path, step: int, snap: Snapshot, facts: dict[str, Any], keep_last: int) -> Path:
    """Write ``snap`` as the checkpoint of ``step`` (call on one process only) and prune old ones; returns
    its folder."""
    state = {
        "format": FORMAT,
        "step": step,
        "param_groups": snap.groups,
        "optimizer_scalars": snap.scalars,
        "facts": facts,
    }
    target = checkpoint_dir(out, step)
    with atomic_dir(target) as tmp:
        save_file({n: t.contiguous() for n, t in snap.params.items()}, str(tmp / "trainable.safetensors"))
        save_file({n: t.contiguous() for n, t in snap.optimizer.items()}, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps(state, indent=1, default=_json_default), encoding="utf-8")
    for _, old in list_checkpoints(out)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's state.json")


def read_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((Path(folder) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"unreadable checkpoint state {folder}/state.json: {exc}") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{folder} has checkpoint format {state.get('format')}, expected {FORMAT}")
    return state


def read_checkpoint(folder: Path) -> tuple[Snapshot, dict[str, Any]]:
    """The :class:`Snapshot` stored in ``folder`` and its state.json content."""
    folder = Path(folder)
    state = read_state(folder)
    try:
        params = load_file(str(folder / "trainable.safetensors"))
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"unreadable checkpoint {folder}: {exc}") from None
    groups = []
    for g in state["param_groups"]:  # JSON turned tuples (betas) into lists
        groups.append({k: (tuple(v) if k != "params" and isinstance(v, list) else v) for k, v in g.items()})
    return Snapshot(params, tensors, state["optimizer_scalars"], groups), state


def check_snapshot(snap: Snapshot, shapes: dict[str, tuple[int, ...]], group_names: list[list[str]],
                   where: Path | str) -> None:
    """Raise CheckpointError unless ``snap`` fits a model whose trainable parameters have ``shapes`` and an
    optimizer whose groups hold ``group_names``."""
    if set(snap.params) != set(shapes):
        missing, extra = sorted(set(shapes) - set(snap.params)), sorted(set(snap.params) - set(shapes))
        raise CheckpointError(
            f"checkpoint {where} does not match the model's trainable parameters "
            f"(missing {missing[:3]}{'…' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
            f"{'…' if len(extra) > 3 else ''})"
        )
    for name, shape in shapes.items():
        if tuple(snap.params[name].shape) != tuple(shape):
            raise CheckpointError(f"checkpoint {where}: {name} has shape {tuple(snap.params[name].shape)}, "
                                  f"the model has {tuple(shape)}")
    if len(snap.groups) != len(group_names):
        raise CheckpointError(f"checkpoint {where} has {len(snap.groups)} optimizer groups, "
                              f"the optimizer has {len(group_names)}")
    if [g["params"] for g in snap.groups] != group_names:
        raise CheckpointError(f"checkpoint {where}: optimizer parameter groups differ from this model's")


def optimizer_state_of(snap: Snapshot, name: str) -> dict[str, Any]:
    """The optimizer state of parameter ``name`` in ``snap`` (empty if it has none)."""
    prefix = f"{name}{_SEP}"
    out: dict[str, Any] = {k[len(prefix):]: v for k, v in snap.optimizer.items() if k.startswith(prefix)}
    out.update(snap.scalars.get(name, {}))
    return out


def restore(snap: Snapshot, model: torch.nn.Module, optimizer: torch.optim.Optimizer, where: Path | str) -> None:
    """Load ``snap`` into ``model`` and its (torch) ``optimizer``, built exactly as for the saved run
    (mismatch → CheckpointError). FSDP2-sharded parameters and state get this process's shards."""
    params = _trainable(model)
    name_of = {id(p): n for n, p in params.items()}
    group_names = [[name_of.get(id(p)) for p in g["params"]] for g in optimizer.param_groups]
    check_snapshot(snap, {n: tuple(p.shape) for n, p in params.items()}, group_names, where)
    restore_params(snap, model)
    index = {n: i for i, n in enumerate(n for names in group_names for n in names)}
    opt_state = {}
    for n in index:
        state = optimizer_state_of(snap, n)
        if state:  # per-element state (Adam moments) sharded like the parameter; scalars and step as saved
            opt_state[index[n]] = {k: _state_value(v, params[n]) for k, v in state.items()}
    groups = [{**{k: v for k, v in saved.items() if k != "params"}, "params": [index[n] for n in saved["params"]]}
              for saved in snap.groups]
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})


def _state_value(value: Any, param: torch.Tensor) -> Any:
    """An optimizer state entry for ``param``: per-element tensors (Adam's moments) laid out like it, other
    tensors (the step count) copied: the optimizer updates them in place, the snapshot must not change."""
    if not torch.is_tensor(value):
        return value
    return like(value, param) if value.shape == param.shape else value.clone()


def restore_params(snap: Snapshot, model: torch.nn.Module) -> None:
    """Copy ``snap``'s parameters into the trainable parameters of ``model`` (shards of them with FSDP2)."""
    with torch.no_grad():
        for name, p in _trainable(model).items():
            p.copy_(like(snap.params[name], p))


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load trainable parameters and optimizer state from ``folder`` into an unsharded ``model`` and its
    ``optimizer``; returns the checkpoint's state.json content."""
    snap, state = read_checkpoint(folder)
    restore(snap, model, optimizer, folder)
    return state
