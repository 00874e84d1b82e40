"""Checkpoints: save/load (safetensors, strict, SHA-256 manifest) and the strict-loading helpers the importers
share. Building from base Qwen2.5-VL + SAM2 folders is :mod:`momentseg.model.base`; importing Sa2VA and the
released MomentSeg checkpoints is :mod:`momentseg.model.release`. Nothing here imports the model class: the
loaders take it as an argument (``MomentSegModel.from_pretrained`` passes itself).

A checkpoint folder holds ``config.json`` (:class:`MomentSegConfig`), ``model.safetensors`` (the whole
module's state, tied tensors stored once and listed in the file metadata), the tokenizer files and
``manifest.json`` (:data:`MANIFEST_FILE`: the SHA-256 of every other file, written by :func:`save_checkpoint`
and checked by :func:`load_checkpoint`; a mismatch is a :class:`CheckpointError`, a folder without one loads
with a one-line warning). Loading is strict: any missing, unexpected or wrongly-shaped tensor raises
:class:`CheckpointError` listing them. Every tensor keeps the dtype it was saved with (a bf16 Qwen beside an
fp32 SAM2 comes back that way). No pickle, no remote code. :func:`released_source` tells a folder in a released
layout (MomentSeg ``momentseg_chat``, Sa2VA ``sa2va_chat``), which ``MomentSegModel.from_pretrained`` imports.

"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from momentseg.errors import CheckpointError, InputError
from momentseg.io.atomic import atomic_dir
from momentseg.model.config import MomentSegConfig
from momentseg.model.tokenizer import load_tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: The SHA-256 manifest :func:`save_checkpoint` writes beside the other files of a checkpoint folder.
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "momentseg-sha256-manifest"

log = logging.getLogger(__name__)
_SHOW = 5  # keys listed per category in mismatch errors

_BOOKKEEPING = ("transformers_version", "architectures", "_name_or_path", "auto_map", "dtype", "torch_dtype")


def clean_config_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A transformers config dict without bookkeeping fields (recursively), for config.json."""
    out = {}
    for key, value in d.items():
        if key in _BOOKKEEPING:
            continue
        out[key] = clean_config_dict(value) if isinstance(value, dict) and key.endswith("_config") else value
    return out


# ---------------------------------------------------------------------------------------------- strict loading
def _raise_problems(what: str, **groups: list[str]) -> None:
    """One-line CheckpointError ``what: <n> missing (...); <n> wrongly shaped (...)`` when any group is non-empty
    (group names with ``_`` read as spaces)."""
    problems = [_summary(name.replace("_", " "), keys) for name, keys in groups.items() if keys]
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))


def _summary(kind: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW]) + (", …" if len(keys) > _SHOW else "")
    return f"{len(keys)} {kind} ({shown})"


def check_state(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError unless ``given`` has exactly the keys and shapes of ``expected``."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(
        f"{k} {tuple(given[k].shape)}≠{tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if tuple(given[k].shape) != tuple(expected[k].shape)
    )
    _raise_problems(f"{where} does not match the model", missing=missing, unexpected=unexpected,
                    wrongly_shaped=shapes)


def load_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str, skip_prefixes=()) -> None:
    """Copy ``tensors`` into ``module`` after :func:`check_state` (keys starting with ``skip_prefixes`` are
    neither expected nor allowed). Tied parameters may be given once or twice."""
    expected = {k: v for k, v in module.state_dict().items() if not k.startswith(tuple(skip_prefixes))}
    tensors = dict(tensors)
    for alias, source in _aliases(module).items():
        if alias in expected and alias not in tensors and source in tensors:
            tensors[alias] = tensors[source]
    check_state(expected, tensors, where)
    result = module.load_state_dict(tensors, strict=False)
    leftover = [k for k in result.missing_keys if not k.startswith(tuple(skip_prefixes))]
    if leftover or result.unexpected_keys:  # cannot happen after check_state; never a silent partial load
        raise CheckpointError(f"{where}: incomplete load ({len(leftover)} missing)")


def _aliases(module: torch.nn.Module) -> dict[str, str]:
    """State-dict keys whose tensor is the same object as an earlier key's (tied weights): alias → source."""
    first: dict[int, str] = {}
    aliases = {}
    for key, value in module.state_dict(keep_vars=True).items():
        ident = id(value)
        if ident in first:
            aliases[key] = first[ident]
        else:
            first[ident] = key
    return aliases


# ---------------------------------------------------------------------------------------------- save / load
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: str | Path) -> None:
    """Write :data:`MANIFEST_FILE` in ``folder``: the SHA-256 of every other regular file in it."""
    folder = Path(folder)
    files = {
        p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST_FILE
    }
    manifest = {"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _is_embedded(folder: Path) -> bool:
    from importlib import resources

    try:
        return folder.resolve() == Path(str(resources.files("momentseg") / "embedded")).resolve()
    except OSError:
        return False


def verify_manifest(folder: str | Path) -> bool:
    """Check every file listed in ``folder``'s :data:`MANIFEST_FILE` against its SHA-256 (CheckpointError on
    a mismatch or a listed file that is missing). Returns False when there is no manifest (one-line warning,
    except for the package's embedded model)."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        if not _is_embedded(folder):
            log.warning("warning: %s has no %s: its files cannot be checked for damage (re-save it with "
                        "save_pretrained to add one)", folder, MANIFEST_FILE)
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("algorithm", "sha256") != "sha256" or not isinstance(files, dict):
            raise ValueError("not a sha256 manifest")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    for name, digest in sorted(files.items()):
        target = folder / name
        if Path(name).name != name or not target.is_file():
            raise CheckpointError(f"{folder} lacks {name}, which its {MANIFEST_FILE} lists")
        if _sha256(target) != str(digest).lower():
            raise CheckpointError(f"{target} does not match the SHA-256 in {MANIFEST_FILE}: the file was changed "
                                  "or damaged after it was saved")
    return True


def save_checkpoint(model, path: str | Path) -> None:
    """Write ``model`` (a MomentSegModel) to folder ``path`` atomically, with its SHA-256 manifest. Every
    tensor is stored in its own dtype."""
    from safetensors.torch import save_file

    aliases = _aliases(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in aliases}
    with atomic_dir(path) as tmp:
        (tmp / CONFIG_FILE).write_text(model.config.to_json(), encoding="utf-8")
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "aliases": json.dumps(aliases)})
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        write_manifest(tmp)


def _read_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            out.update(load_file(str(f)))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read {f}: {exc}") from exc
    return out


def match_dtypes(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Give each floating parameter / buffer of ``module`` the dtype of its tensor in ``tensors`` (in place:
    tied parameters stay one object), so loading keeps every tensor's saved dtype bit for bit."""
    for key, value in module.state_dict(keep_vars=True).items():
        given = tensors.get(key)
        if given is None or not value.is_floating_point() or not given.is_floating_point():
            continue
        if value.dtype != given.dtype:
            value.data = value.data.to(given.dtype)


#: config.json ``model_type`` of a released layout → its importer (``momentseg convert --from``).
RELEASED_MODEL_TYPES = {"momentseg_chat": "momentseg-release", "sa2va_chat": "sa2va"}


def released_source(raw: Any) -> str | None:
    """The released layout a config.json dict describes ('momentseg-release', 'sa2va'), or None."""
    if not isinstance(raw, dict) or raw.get("format") == "momentseg":
        return None
    return RELEASED_MODEL_TYPES.get(raw.get("model_type"))


def read_folder_config(path: Path) -> Any:
    """The parsed config.json of checkpoint folder ``path`` (any JSON value; InputError when the folder does not
    exist, CheckpointError when its config is missing or unreadable)."""
    if not path.is_dir():
        raise InputError(f"checkpoint folder {path} does not exist")
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path} has no {CONFIG_FILE}")
    try:
        return json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path / CONFIG_FILE}: {exc}") from None


def load_checkpoint(model_cls, path: str | Path):
    """A ``model_cls`` (:class:`~momentseg.model.momentseg.MomentSegModel`) from a folder written by
    :func:`save_checkpoint` (manifest checked, dtypes kept)."""
    path = Path(path)
    if not (path / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{path} has no {WEIGHTS_FILE}")
    verify_manifest(path)
    config = MomentSegConfig.from_json_file(path / CONFIG_FILE)
    tokenizer = load_tokenizer(path) if (path / "tokenizer.json").is_file() else None
    model = model_cls(config, tokenizer)
    tensors = _read_safetensors([path / WEIGHTS_FILE])
    match_dtypes(model, tensors)
    load_strict(model, tensors, str(path / WEIGHTS_FILE))
    return model.eval()
