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


def save_checkpoint(
    out: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    facts: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write the checkpoint of ``step`` (call on one process only) and prune old ones; returns its folder."""
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
    opt_tensors, opt_scalars = {}, {}
    for idx, state in sd["state"].items():
        name = index_to_name[idx]
        for key, value in state.items():
            if torch.is_tensor(value):
                opt_tensors[f"{name}{_SEP}{key}"] = value.detach().cpu().contiguous()
            else:
                opt_scalars.setdefault(name, {})[key] = value
    groups = []
    for sd_group in sd["param_groups"]:
        g = {k: v for k, v in sd_group.items() if k != "params"}
        g["params"] = [index_to_name[i] for i in sd_group["params"]]
        groups.append(g)
    state = {
        "format": FORMAT,
        "step": step,
        "param_groups": groups,
        "optimizer_scalars": opt_scalars,
        "facts": facts,
    }
    target = checkpoint_dir(out, step)
    with atomic_dir(target) as tmp:
        save_file({n: p.detach().cpu().contiguous() for n, p in params.items()}, str(tmp / "trainable.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
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


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load trainable parameters and optimizer state from ``folder`` into ``model``/``optimizer`` (built
    exactly as for the saved run); returns the checkpoint's state.json content."""
    folder = Path(folder)
    state = read_state(folder)
    params = _trainable(model)
    weights = load_file(str(folder / "trainable.safetensors"))
    if set(weights) != set(params):
        missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
        raise CheckpointError(
            f"checkpoint {folder} does not match the model's trainable parameters "
            f"(missing {missing[:3]}{'…' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
            f"{'…' if len(extra) > 3 else ''})"
        )
    with torch.no_grad():
        for name, p in params.items():
            if weights[name].shape != p.shape:
                raise CheckpointError(f"checkpoint {folder}: {name} has shape {tuple(weights[name].shape)}, "
                                      f"the model has {tuple(p.shape)}")
            p.copy_(weights[name])
    opt_tensors = load_file(str(folder / "optimizer.safetensors"))
    name_of = {id(p): n for n, p in params.items()}
    index = {}  # param name -> index in this optimizer's numbering
    saved_groups = state["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise CheckpointError(f"checkpoint {folder} has {len(saved_groups)} optimizer groups, "
                              f"the optimizer has {len(optimizer.param_groups)}")
    groups, i = [], 0
    for saved, group in zip(saved_groups, optimizer.param_groups, strict=True):
        names = [name_of.get(id(p)) for p in group["params"]]
        if names != saved["params"]:
            raise CheckpointError(f"checkpoint {folder}: optimizer parameter groups differ from this model's")
        ids = []
        for n in names:
            index[n] = i
            ids.append(i)
            i += 1
        groups.append({**{k: v for k, v in saved.items() if k != "params"}, "params": ids})
    opt_state: dict[int, dict[str, Any]] = {}
    for key, tensor in opt_tensors.items():
        name, sub = key.rsplit(_SEP, 1)
        opt_state.setdefault(index[name], {})[sub] = tensor
    for name, scalars in state["optimizer_scalars"].items():
        opt_state.setdefault(index[name], {}).update(scalars)
    for g in groups:  # JSON turned tuples (betas) into lists
        for k, v in g.items():
            if k != "params" and isinstance(v, list):
                g[k] = tuple(v)
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    return state
