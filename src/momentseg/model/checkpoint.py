"""Checkpoints: save/load (safetensors, strict, SHA-256 manifest), build from base Qwen2.5-VL + SAM2 folders,
import Sa2VA and the released MomentSeg checkpoints (:mod:`momentseg.model.release`).

A checkpoint folder holds ``config.json`` (:class:`MomentSegConfig`), ``model.safetensors`` (the whole
module's state, tied tensors stored once and listed in the file metadata), the tokenizer files and
``manifest.json`` (:data:`MANIFEST_FILE`: the SHA-256 of every other file, written by :func:`save_checkpoint`
and checked by :func:`load_checkpoint`; a mismatch is a :class:`CheckpointError`, a folder without one loads
with a one-line warning). Loading is strict: any missing, unexpected or wrongly-shaped tensor raises
:class:`CheckpointError` listing them. Every tensor keeps the dtype it was saved with (a bf16 Qwen beside an
fp32 SAM2 comes back that way). No pickle, no remote code. :func:`load_checkpoint` also accepts a folder in
a released layout (MomentSeg ``momentseg_chat``, Sa2VA ``sa2va_chat``) and imports it.

Sa2VA-Qwen2.5-VL checkpoints (``model.*`` = Qwen2.5-VL, ``grounding_encoder.sam2_model.*`` = original SAM2
names, ``text_hidden_fcs.*`` = the [SEG] head) are imported with :func:`import_sa2va`; original SAM2 names are
mapped to transformers' Sam2Video names by :func:`sam2_original_to_hf` (its inverse
:func:`sam2_hf_to_original` exists for tests and export).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from momentseg.errors import CheckpointError, InputError
from momentseg.io.atomic import atomic_dir
from momentseg.model.config import HIERA_LARGE_BACKBONE, MomentSegConfig, preset_config
from momentseg.model.tokenizer import add_task_tokens, load_tokenizer

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


def load_checkpoint(path: str | Path):
    """A MomentSegModel from a folder written by :func:`save_checkpoint` (manifest checked, dtypes kept), or
    from a folder in a released layout (MomentSeg-3B/7B, Sa2VA-Qwen2.5-VL), imported on the fly."""
    from momentseg.model.momentseg import MomentSegModel

    path = Path(path)
    raw = read_folder_config(path)
    source = released_source(raw)
    if source is not None:
        from momentseg.model.release import import_checkpoint

        return import_checkpoint(path, source=source)
    if not (path / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{path} has no {WEIGHTS_FILE}")
    verify_manifest(path)
    config = MomentSegConfig.from_json_file(path / CONFIG_FILE)
    tokenizer = load_tokenizer(path) if (path / "tokenizer.json").is_file() else None
    model = MomentSegModel(config, tokenizer)
    tensors = _read_safetensors([path / WEIGHTS_FILE])
    match_dtypes(model, tensors)
    load_strict(model, tensors, str(path / WEIGHTS_FILE))
    return model.eval()


# ---------------------------------------------------------------------------------------------- base weights
def _read_preprocessor(directory: Path) -> dict[str, Any]:
    f = directory / "preprocessor_config.json"
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {f}: {exc}") from exc


def _from_pretrained_strict(cls, directory: Path, what: str):
    """``cls.from_pretrained(directory)`` that fails (one line, listing them) when a tensor of the model is
    missing from the folder or has another shape, instead of initialising it at random as transformers does."""
    try:
        model, info = cls.from_pretrained(str(directory), local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load the {what} folder {directory}: {exc}") from None
    missing = sorted(info.get("missing_keys") or [])
    shapes = sorted(str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or [])
    _raise_problems(f"{what} folder {directory} does not hold the whole model", missing=missing,
                    wrongly_shaped=shapes)
    return model


def build_from_base(qwen_dir: str | Path, sam2_dir: str | Path, preset: str = "3b"):
    """MomentSegModel from a local Qwen2.5-VL-Instruct folder (weights + tokenizer) and a local SAM2 folder in
    transformers' Sam2Video format. [SEG]/[FIND] are added to the tokenizer (embeddings resized only when the
    vocabulary is full); the heads are random. Frame sizes / prompts / losses come from ``preset``."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from momentseg.model.momentseg import MomentSegModel
    from momentseg.sam2.config import sam2_config_to_dict
    from momentseg.sam2.video import MomentSegSam2

    qwen_dir, sam2_dir = Path(qwen_dir), Path(sam2_dir)
    for d, what in ((qwen_dir, "Qwen2.5-VL"), (sam2_dir, "SAM2")):
        if not (d / CONFIG_FILE).is_file():
            raise InputError(f"{what} folder {d} has no config.json")
    tokenizer = load_tokenizer(qwen_dir)
    add_task_tokens(tokenizer)
    qwen = _from_pretrained_strict(Qwen2_5_VLForConditionalGeneration, qwen_dir, "Qwen2.5-VL")
    sam2 = _from_pretrained_strict(MomentSegSam2, sam2_dir, "SAM2")
    if len(tokenizer) > qwen.config.text_config.vocab_size:
        qwen.resize_token_embeddings(len(tokenizer))
    config = preset_config(preset, tokenizer=tokenizer)
    config.qwen = clean_config_dict(qwen.config.to_dict())
    config.sam2 = clean_config_dict(sam2_config_to_dict(sam2.config))
    pre = _read_preprocessor(qwen_dir)
    if "image_mean" in pre:
        config.image_mean = tuple(float(v) for v in pre["image_mean"])
    if "image_std" in pre:
        config.image_std = tuple(float(v) for v in pre["image_std"])
    config.notes.append(f"built from base weights {qwen_dir.name} + {sam2_dir.name}; [FIND]/[SEG] heads random")
    model = MomentSegModel(config, tokenizer, qwen=qwen, sam2=sam2)
    dtype = next(qwen.parameters()).dtype
    model.find_head.to(dtype)
    model.seg_head.to(dtype)
    return model


# ---------------------------------------------------------------------------------------------- SAM2 names
# Original facebookresearch/sam2 (SAM2Base) parameter names → transformers Sam2VideoModel names (the
# parameters of MomentSegSam2). Templates:
# {a},{b} = integers, {w} = a module name; a template ending in "." renames a prefix, otherwise a whole key.
# Facts from transformers' convert_sam2_video_to_hf.py; table and code written for this project.
_SAM2_RULES: list[tuple[str, str]] = [
    # image encoder (Hiera trunk + FPN neck)
    ("image_encoder.trunk.patch_embed.proj.", "vision_encoder.backbone.patch_embed.projection."),
    ("image_encoder.trunk.blocks.{a}.norm{b}.", "vision_encoder.backbone.blocks.{a}.layer_norm{b}."),
    ("image_encoder.trunk.blocks.{a}.mlp.layers.0.", "vision_encoder.backbone.blocks.{a}.mlp.proj_in."),
    ("image_encoder.trunk.blocks.{a}.mlp.layers.1.", "vision_encoder.backbone.blocks.{a}.mlp.proj_out."),
    ("image_encoder.trunk.", "vision_encoder.backbone."),
    ("image_encoder.neck.convs.{a}.conv.", "vision_encoder.neck.convs.{a}."),
    # prompt encoder (point_embeddings.{i} and pe_layer are handled separately)
    ("sam_prompt_encoder.mask_downscaling.0.", "prompt_encoder.mask_embed.conv1."),
    ("sam_prompt_encoder.mask_downscaling.1.", "prompt_encoder.mask_embed.layer_norm1."),
    ("sam_prompt_encoder.mask_downscaling.3.", "prompt_encoder.mask_embed.conv2."),
    ("sam_prompt_encoder.mask_downscaling.4.", "prompt_encoder.mask_embed.layer_norm2."),
    ("sam_prompt_encoder.mask_downscaling.6.", "prompt_encoder.mask_embed.conv3."),
    ("sam_prompt_encoder.not_a_point_embed.", "prompt_encoder.not_a_point_embed."),
    ("sam_prompt_encoder.no_mask_embed.", "prompt_encoder.no_mask_embed."),
    # mask decoder
    ("sam_mask_decoder.transformer.layers.{a}.norm{b}.", "mask_decoder.transformer.layers.{a}.layer_norm{b}."),
    ("sam_mask_decoder.transformer.layers.{a}.mlp.layers.0.", "mask_decoder.transformer.layers.{a}.mlp.proj_in."),
    ("sam_mask_decoder.transformer.layers.{a}.mlp.layers.1.", "mask_decoder.transformer.layers.{a}.mlp.proj_out."),
    ("sam_mask_decoder.transformer.layers.{a}.{w}.out_proj.", "mask_decoder.transformer.layers.{a}.{w}.o_proj."),
    (
        "sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.",
        "mask_decoder.transformer.final_attn_token_to_image.o_proj.",
    ),
    ("sam_mask_decoder.transformer.norm_final_attn.", "mask_decoder.transformer.layer_norm_final_attn."),
    ("sam_mask_decoder.output_upscaling.0.", "mask_decoder.upscale_conv1."),
    ("sam_mask_decoder.output_upscaling.1.", "mask_decoder.upscale_layer_norm."),
    ("sam_mask_decoder.output_upscaling.3.", "mask_decoder.upscale_conv2."),
    ("sam_mask_decoder.output_hypernetworks_mlps.{a}.layers.0.", "mask_decoder.output_hypernetworks_mlps.{a}.proj_in."),
    ("sam_mask_decoder.output_hypernetworks_mlps.{a}.layers.1.", "mask_decoder.output_hypernetworks_mlps.{a}.layers.0."),
    ("sam_mask_decoder.output_hypernetworks_mlps.{a}.layers.2.", "mask_decoder.output_hypernetworks_mlps.{a}.proj_out."),
    ("sam_mask_decoder.iou_prediction_head.layers.0.", "mask_decoder.iou_prediction_head.proj_in."),
    ("sam_mask_decoder.iou_prediction_head.layers.1.", "mask_decoder.iou_prediction_head.layers.0."),
    ("sam_mask_decoder.iou_prediction_head.layers.2.", "mask_decoder.iou_prediction_head.proj_out."),
    ("sam_mask_decoder.pred_obj_score_head.layers.0.", "mask_decoder.pred_obj_score_head.proj_in."),
    ("sam_mask_decoder.pred_obj_score_head.layers.1.", "mask_decoder.pred_obj_score_head.layers.0."),
    ("sam_mask_decoder.pred_obj_score_head.layers.2.", "mask_decoder.pred_obj_score_head.proj_out."),
    ("sam_mask_decoder.", "mask_decoder."),
    # memory attention
    ("memory_attention.layers.{a}.norm{b}.", "memory_attention.layers.{a}.layer_norm{b}."),
    ("memory_attention.layers.{a}.{w}.out_proj.", "memory_attention.layers.{a}.{w}.o_proj."),
    ("memory_attention.norm.", "memory_attention.layer_norm."),
    ("memory_attention.", "memory_attention."),
    # memory encoder (mask_downsampler.encoder.{i} is handled separately)
    ("memory_encoder.pix_feat_proj.", "memory_encoder.feature_projection."),
    ("memory_encoder.fuser.layers.{a}.dwconv.", "memory_encoder.memory_fuser.layers.{a}.depthwise_conv."),
    ("memory_encoder.fuser.layers.{a}.norm.", "memory_encoder.memory_fuser.layers.{a}.layer_norm."),
    ("memory_encoder.fuser.layers.{a}.pwconv{b}.", "memory_encoder.memory_fuser.layers.{a}.pointwise_conv{b}."),
    ("memory_encoder.fuser.layers.{a}.gamma", "memory_encoder.memory_fuser.layers.{a}.scale"),
    # Sa2VA's and MomentSeg's exporters rename ".gamma" to ".g_weight" (the inverse keeps ".gamma": listed first)
    ("memory_encoder.fuser.layers.{a}.g_weight", "memory_encoder.memory_fuser.layers.{a}.scale"),
    ("memory_encoder.out_proj.", "memory_encoder.projection."),
    # top level
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("no_obj_ptr", "no_object_pointer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ("obj_ptr_proj.layers.0.", "object_pointer_proj.proj_in."),
    ("obj_ptr_proj.layers.1.", "object_pointer_proj.layers.0."),
    ("obj_ptr_proj.layers.2.", "object_pointer_proj.proj_out."),
    ("obj_ptr_tpos_proj.", "temporal_positional_encoding_projection_layer."),
    ("mask_downsample.", "mask_downsample."),
]

_PE_ORIGINAL = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_PE_HF = ("prompt_encoder.shared_embedding.positional_embedding", "shared_image_embedding.positional_embedding")
_POINT_ORIGINAL = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")
_POINT_HF = "prompt_encoder.point_embed.weight"
_DOWN_ORIGINAL = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.+)$")
_DOWN_HF = re.compile(r"^memory_encoder\.mask_downsampler\.(?:layers\.(\d+)\.(conv|layer_norm)|final_conv)\.(.+)$")


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    pattern = pattern.replace(r"\{a\}", r"(?P<a>\d+)").replace(r"\{b\}", r"(?P<b>\d+)")
    pattern = pattern.replace(r"\{w\}", r"(?P<w>[a-z_]+)")
    return re.compile("^" + pattern + ("(?P<rest>.*)$" if template.endswith(".") else "$"))


_FORWARD = [(_template_regex(o), h) for o, h in _SAM2_RULES]
_INVERSE = [(_template_regex(h), o) for o, h in _SAM2_RULES]


def _rename(key: str, rules) -> str | None:
    for regex, target in rules:
        m = regex.match(key)
        if m:
            groups = m.groupdict()
            out = target
            for name in ("a", "b", "w"):
                if groups.get(name) is not None:
                    out = out.replace("{" + name + "}", groups[name])
            return out + (groups.get("rest") or "")
    return None


def sam2_original_to_hf(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original SAM2 state (names as in facebookresearch/sam2) → transformers Sam2VideoModel state.
    Returns (mapped state, original keys no rule knows)."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    points: dict[int, torch.Tensor] = {}
    down = [int(m.group(1)) for k in state if (m := _DOWN_ORIGINAL.match(k))]
    final_idx = max(down) if down else -1
    for key, value in state.items():
        if key == _PE_ORIGINAL:
            for k in _PE_HF:
                out[k] = value
        elif m := _POINT_ORIGINAL.match(key):
            points[int(m.group(1))] = value
        elif m := _DOWN_ORIGINAL.match(key):
            i, rest = int(m.group(1)), m.group(2)
            if i == final_idx:
                out[f"memory_encoder.mask_downsampler.final_conv.{rest}"] = value
            elif i % 3 in (0, 1):
                part = "conv" if i % 3 == 0 else "layer_norm"
                out[f"memory_encoder.mask_downsampler.layers.{i // 3}.{part}.{rest}"] = value
            else:
                unknown.append(key)
        elif (new := _rename(key, _FORWARD)) is not None:
            out[new] = value
        else:
            unknown.append(key)
    if points:
        if sorted(points) != list(range(len(points))):
            unknown.extend(f"sam_prompt_encoder.point_embeddings.{i}.weight" for i in sorted(points))
        else:
            out[_POINT_HF] = torch.cat([points[i] for i in range(len(points))], dim=0)
    return out, unknown


def sam2_hf_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`sam2_original_to_hf` (raises KeyError on a name no rule knows, ValueError when the two
    copies of the position encoding differ: original SAM2 has only one)."""
    pe = [state[k] for k in _PE_HF if k in state]
    if len(pe) == 2 and not pe[0].is_meta and not torch.equal(pe[0], pe[1]):
        raise ValueError("image and prompt position encodings differ; original SAM2 shares one")
    out: dict[str, torch.Tensor] = {}
    n_down = len({m.group(1) for k in state if (m := _DOWN_HF.match(k)) and m.group(1) is not None})
    for key, value in state.items():
        if key in _PE_HF:
            out[_PE_ORIGINAL] = value
        elif key == _POINT_HF:
            for i in range(value.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = value[i : i + 1].clone()
        elif m := _DOWN_HF.match(key):
            layer, part, rest = m.groups()
            idx = 3 * n_down if layer is None else 3 * int(layer) + (0 if part == "conv" else 1)
            out[f"memory_encoder.mask_downsampler.encoder.{idx}.{rest}"] = value
        elif (new := _rename(key, _INVERSE)) is not None:
            out[new] = value
        else:
            raise KeyError(f"no original SAM2 name for {key}")
    return out


# ---------------------------------------------------------------------------------------------- imports

# Hiera variants of SAM2 / SAM2.1 by (first-stage width, number of blocks).
_HIERA_VARIANTS = {
    (96, 12): {"blocks_per_stage": [1, 2, 7, 2], "global_attention_blocks": [5, 7, 9]},
    (96, 16): {"blocks_per_stage": [1, 2, 11, 2], "global_attention_blocks": [7, 10, 13]},
    (112, 24): {
        "hidden_size": 112,
        "embed_dim_per_stage": [112, 224, 448, 896],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "blocks_per_stage": [2, 3, 16, 3],
        "global_attention_blocks": [12, 16, 20],
        "window_positional_embedding_background_size": [14, 14],
    },
    (144, 48): HIERA_LARGE_BACKBONE,
}


def infer_sam2_config(original_state: dict[str, torch.Tensor], image_size: int = 1024) -> dict[str, Any]:
    """A Sam2VideoConfig dict for an original SAM2 state dict: the Hiera variant from the trunk's width and
    block count; SAM2.1 features (object-pointer temporal encoding, occlusion embedding) from key presence."""
    width = int(original_state["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
    blocks = len({k.split(".")[3] for k in original_state if k.startswith("image_encoder.trunk.blocks.")})
    backbone = _HIERA_VARIANTS.get((width, blocks))
    if backbone is None:
        raise CheckpointError(
            f"unknown SAM2 image encoder (width {width}, {blocks} blocks); pass the SAM2 config explicitly"
        )
    backbone = dict(copy.deepcopy(backbone), image_size=[image_size, image_size])
    channels = backbone.get("embed_dim_per_stage", [96, 192, 384, 768])[::-1]
    s = image_size
    return {
        "vision_config": {
            "backbone_config": backbone,
            "backbone_channel_list": channels,
            "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        },
        "prompt_encoder_config": {"image_size": s},
        "image_size": s,
        "memory_attention_rope_feat_sizes": [s // 16, s // 16],
        "enable_temporal_pos_encoding_for_object_pointers": "obj_ptr_tpos_proj.weight" in original_state,
        "enable_occlusion_spatial_embedding": "no_obj_embed_spatial" in original_state,
    }


def _qwen_name(key: str) -> str:
    """Qwen2.5-VL state names from any transformers version → this version's (model.visual / language_model)."""
    if key.startswith(("model.visual.", "model.language_model.", "lm_head.")):
        return key
    if key.startswith("visual."):
        return "model." + key
    if key.startswith("model."):
        return "model.language_model." + key[len("model.") :]
    return key


def weight_files(src: Path) -> list[Path]:
    """The safetensors files of a folder: the shards its index lists, or model.safetensors."""
    index = src / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"cannot read {index}: {exc}") from exc
        files = sorted({src / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{src} lacks shards listed in its index: {', '.join(missing[:_SHOW])}")
        return files
    single = src / WEIGHTS_FILE
    if single.is_file():
        return [single]
    if any(src.glob("*.bin")) or any(src.glob("*.pth")):
        raise CheckpointError(f"{src} holds only pickle weights (.bin/.pth); convert them to safetensors first")
    raise CheckpointError(f"{src} has no model.safetensors or model.safetensors.index.json")


def import_sa2va(src: str | Path, sam2_config: dict[str, Any] | None = None, preset: str | None = None):
    """A MomentSegModel from a Sa2VA-Qwen2.5-VL checkpoint folder (see :func:`momentseg.model.release.import_sa2va`)."""
    from momentseg.model.release import import_sa2va as _import

    return _import(src, sam2_config=sam2_config, preset=preset)
