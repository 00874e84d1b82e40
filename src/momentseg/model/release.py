"""Import released checkpoints: MomentSeg-3B / 7B as the authors export them, and Sa2VA-Qwen2.5-VL.

Both are Hugging Face folders (``config.json``, tokenizer, safetensors sharded with
``model.safetensors.index.json`` or one ``model.safetensors``) that need their authors' remote code to run.
Here they load into :class:`~momentseg.model.momentseg.MomentSegModel` with no remote code, either directly
(``MomentSegModel.from_pretrained(DIR)`` recognises them by ``config.json``'s ``model_type``) or once, with
``momentseg convert --from momentseg-release|sa2va DIR --out OUT``. Every tensor of the source lands on exactly
one tensor of the model (a strict load: missing / unexpected / wrongly shaped tensors are one CheckpointError
line), in the dtype it was stored in.

**Released MomentSeg** (``model_type: momentseg_chat``; facts from github Dmmm1997/MomentSeg a118d15,
``projects/qwenvl_sam2/hf/convert_to_hf_qwenv2.py``, ``hf/models/modeling_momentseg.py``,
``hf/models/configuration_momentseg_chat.py``, ``hf/models/sam2.py``). Their model subclasses
``Qwen2_5_VLForConditionalGeneration`` (transformers < 4.52 layout), and the exporter strips ``mllm.model.`` and
renames ``.gamma`` to ``.g_weight``:

- ``visual.*`` / ``model.embed_tokens`` / ``model.layers.*`` / ``model.norm`` → this model's Qwen2.5-VL;
  ``lm_head.weight`` is stored untied (for 3B a copy of the embeddings) and loaded untied. The vocabulary is the
  base model's (no resize: ``[SEG]``/``[FIND]``/``<p>``/``</p>`` fall in Qwen's padded rows); the embedding
  table's row count is taken from the tensor.
- ``grounding_encoder.sam2_model.*``: original SAM2 names (SAM2.0 Hiera-L: no ``obj_ptr_tpos_proj``, no
  ``no_obj_embed_spatial``), mapped onto transformers' Sam2Video by
  :func:`~momentseg.model.checkpoint.sam2_original_to_hf`; the config is inferred from the tensors.
- ``text_hidden_fcs.{0,2}`` → the ``[SEG]`` head; ``find_hidden_fcs.{0,2}`` → the ``[FIND]`` head.
- ``img_hidden_fcs.*`` (decision): checked for shape, then **not loaded**. The authors' inference only reads it
  when ``perframe_seg`` is set (it feeds ``seg_attn``, a per-frame refinement of the ``[SEG]`` embedding);
  both released configs train with ``perframe_seg=False``, so it never influences their masks. A folder
  exported with ``perframe_seg: true`` or holding ``seg_attn.*`` tensors is refused (one line): that per-frame
  attention is not implemented here, and silently dropping it would change the masks.
- The Qwen config is ``config.json``'s ``mllm_config`` (the Qwen2.5-VL config the model was built from), or
  its top-level Qwen fields when ``mllm_config`` is empty.
- The method's own inference choices where they differ from this project's defaults
  (:data:`SOURCE_BEHAVIOUR`): the ``[FIND]`` curve is interpolated from temporal patches to frames with
  ``align_corners=True`` over the frame count (``find_start_end_FIND``), set as ``config.find_align_corners``;
  their SAM2 keeps the mask of a frame it scores "no object" (the ``NO_OBJ_SCORE`` clamp of
  ``SAM2Base._forward_sam_heads`` is commented out in ``hf/models/sam2.py``), set as
  ``config.clamp_no_object_masks = False``. The ``[SEG]`` embedding is given to SAM2 on every decoded frame,
  tracked ones included (their ``inference_state["language_embd"]``), which is this project's default
  (``config.language_on_tracked_frames``).

**Sa2VA-Qwen2.5-VL** (``model_type: sa2va_chat``; github magic-research/Sa2VA ``tools/convert_to_hf.py``,
``projects/sa2va/hf/models_qwen2_5_vl``): ``model.model.visual.*`` / ``model.model.language_model.*`` (or the
older ``model.visual.*`` / ``model.model.*``), untied ``model.lm_head.weight``, vocabulary = len(tokenizer)
(``text_config.vocab_size`` set to it, ``tie_word_embeddings: false``), ``grounding_encoder.sam2_model.*``
(SAM2.0 with ``.g_weight``), ``text_hidden_fcs.{0,2}``. Sa2VA has no ``[FIND]`` head: it starts random (a
warning and a note in ``config.notes``) and the ``[FIND]`` token gets a new embedding row. Two behaviour
differences remain after a correct import, options of ``MomentSegConfig`` set to Sa2VA's behaviour by the
importer (:data:`SOURCE_BEHAVIOUR`; sources in :mod:`momentseg.sam2.video`): transformers' SAM2 clamps the
mask of a frame scored "no object" to −1024 while Sa2VA's SAM2 keeps the predicted mask
(``config.clamp_no_object_masks = False``), and Sa2VA gives the ``[SEG]`` token only to its (first five)
conditioning frames, not to the tracked frames, while this project appends it on every decoded frame
(``config.language_on_tracked_frames = False``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from momentseg.errors import CheckpointError, InputError
from momentseg.model.checkpoint import (
    _BOOKKEEPING,
    _SHOW,
    CONFIG_FILE,
    RELEASED_MODEL_TYPES,
    WEIGHTS_FILE,
    _read_safetensors,
    clean_config_dict,
    load_strict,
    match_dtypes,
    read_folder_config,
)
from momentseg.model.config import preset_config
from momentseg.model.tokenizer import add_task_tokens, load_tokenizer
from momentseg.sam2.names import infer_sam2_config, sam2_original_to_hf

SOURCES = tuple(RELEASED_MODEL_TYPES.values())
SAM2_PREFIX = "grounding_encoder.sam2_model."
SEG_PREFIX = "text_hidden_fcs."
FIND_PREFIX = "find_hidden_fcs."
IMG_PREFIX = "img_hidden_fcs."
SEG_ATTN_PREFIX = "seg_attn."
_QWEN_TOP = ("text_config", "vision_config", "image_token_id", "video_token_id", "vision_start_token_id",
             "vision_end_token_id", "tie_word_embeddings")
_EMBED = "model.language_model.embed_tokens.weight"

#: ``MomentSegConfig`` fields each source's own inference sets differently from this project's defaults.
SOURCE_BEHAVIOUR: dict[str, dict[str, Any]] = {
    "momentseg-release": {"find_align_corners": True, "clamp_no_object_masks": False},
    "sa2va": {"clamp_no_object_masks": False, "language_on_tracked_frames": False},
}


def _read_config(src: Path) -> dict[str, Any]:
    raw = read_folder_config(src)
    if not isinstance(raw, dict):
        raise InputError(f"{src / CONFIG_FILE} must hold a JSON object")
    return raw


def detect_source(src: str | Path) -> str:
    """'momentseg-release' or 'sa2va' from a folder's config.json ``model_type`` (InputError otherwise)."""
    src = Path(src)
    model_type = _read_config(src).get("model_type")
    source = RELEASED_MODEL_TYPES.get(model_type)
    if source is None:
        raise InputError(f"{src / CONFIG_FILE} has model_type {model_type!r}: not a released MomentSeg "
                         "(momentseg_chat) or Sa2VA (sa2va_chat) checkpoint")
    return source


def _qwen_config(fields: dict[str, Any], where: Path) -> dict[str, Any]:
    """A Qwen2_5_VLConfig dict (text_config / vision_config nested, token ids, tying) from any transformers
    version's config.json fields."""
    from transformers import Qwen2_5_VLConfig

    fields = {k: v for k, v in fields.items() if k not in ("model_type", *_BOOKKEEPING)}
    try:
        config = Qwen2_5_VLConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: not a Qwen2.5-VL config: {exc}") from None
    full = clean_config_dict(config.to_dict())
    return {k: full[k] for k in _QWEN_TOP if k in full}


def import_checkpoint(model_cls, src: str | Path, source: str | None = None, sam2_config: dict[str, Any] | None = None,
                      preset: str | None = None):
    """A ``model_cls`` (:class:`~momentseg.model.momentseg.MomentSegModel`, or a subclass) from a released
    checkpoint folder; ``source`` ('momentseg-release' or 'sa2va')
    defaults to what config.json says. ``sam2_config``: a Sam2VideoConfig dict (default: inferred from the SAM2
    tensors). ``preset``: frame sizes / prompts (default: 3b or 7b by the LLM's hidden size)."""
    src = Path(src)
    source = source or detect_source(src)
    if source == "momentseg-release":
        return import_momentseg_release(model_cls, src, sam2_config=sam2_config, preset=preset)
    if source == "sa2va":
        return import_sa2va(model_cls, src, sam2_config=sam2_config, preset=preset)
    raise InputError(f"unknown checkpoint source {source!r}; choose one of {', '.join(SOURCES)}")


def import_momentseg_release(model_cls, src: str | Path, sam2_config: dict[str, Any] | None = None,
                             preset: str | None = None):
    """A ``model_cls`` from a MomentSeg-3B / 7B folder as the authors release it (see the module docstring)."""
    src = Path(src)
    raw = _read_config(src)
    if raw.get("model_type") != "momentseg_chat":
        raise CheckpointError(f"{src / CONFIG_FILE}: model_type is {raw.get('model_type')!r}, not momentseg_chat")
    if raw.get("perframe_seg"):
        raise CheckpointError(f"{src} was exported with perframe_seg (seg_attn over img_hidden_fcs): per-frame "
                              "[SEG] attention is not supported here")
    mllm = raw.get("mllm_config")
    fields = mllm if isinstance(mllm, dict) and mllm else raw
    return _import(model_cls, src, "momentseg-release", _qwen_config(fields, src), lambda k: k, sam2_config, preset)


def import_sa2va(model_cls, src: str | Path, sam2_config: dict[str, Any] | None = None, preset: str | None = None):
    """A ``model_cls`` from a Sa2VA-Qwen2.5-VL folder as its exporter writes it (see the module docstring).
    The [FIND] head starts random (warned, and noted in ``config.notes``)."""
    src = Path(src)
    raw = _read_config(src)

    def qwen_key(key: str) -> str | None:
        return key[len("model."):] if key.startswith("model.") else None

    return _import(model_cls, src, "sa2va", _qwen_config(raw, src), qwen_key, sam2_config, preset)


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


def _split_tensors(tensors: dict[str, torch.Tensor], source: str, qwen_key, src: Path):
    """A released state dict by part: Qwen (this transformers version's names), original-SAM2, [SEG] head, [FIND]
    head, img head, and keys of no known part; refuses per-frame [SEG] attention and folders missing SAM2 or the
    Qwen embedding table."""
    qwen_state, sam2_original, seg, find, img, refused, other = {}, {}, {}, {}, {}, [], []
    for key, value in tensors.items():
        if key.startswith(SAM2_PREFIX):
            sam2_original[key[len(SAM2_PREFIX):]] = value
        elif key.startswith(SEG_PREFIX):
            seg[key[len(SEG_PREFIX):]] = value
        elif source == "momentseg-release" and key.startswith(FIND_PREFIX):
            find[key[len(FIND_PREFIX):]] = value
        elif source == "momentseg-release" and key.startswith(IMG_PREFIX):
            img[key[len(IMG_PREFIX):]] = value
        elif key.startswith(SEG_ATTN_PREFIX):
            refused.append(key)
        elif (inner := qwen_key(key)) is not None and inner.startswith(("visual.", "model.", "lm_head.")):
            qwen_state[_qwen_name(inner)] = value
        else:
            other.append(key)
    if refused:
        raise CheckpointError(f"{src} holds seg_attn tensors ({refused[0]}, …): per-frame [SEG] attention "
                              "(perframe_seg) is not supported here")
    if not sam2_original:
        raise CheckpointError(f"{src} has no {SAM2_PREFIX}* tensors: not a {source} checkpoint")
    if _EMBED not in qwen_state:
        raise CheckpointError(f"{src} has no Qwen embedding table (model.embed_tokens.weight): not a {source} "
                              "checkpoint")
    return qwen_state, sam2_original, seg, find, img, other


def _import(model_cls, src: Path, source: str, qwen_config: dict[str, Any], qwen_key, sam2_config, preset):
    tensors = _read_safetensors(weight_files(src))
    qwen_state, sam2_original, seg, find, img, other = _split_tensors(tensors, source, qwen_key, src)
    sam2_state, unknown = sam2_original_to_hf(sam2_original)
    if sam2_config is None:
        sam2_config = infer_sam2_config(sam2_original)

    # the tensors, not the config, say how large the vocabulary is and whether lm_head is its own tensor
    vocab = int(qwen_state[_EMBED].shape[0])
    qwen_config = json.loads(json.dumps(qwen_config))
    qwen_config.setdefault("text_config", {})["vocab_size"] = vocab
    untied = "lm_head.weight" in qwen_state
    qwen_config["tie_word_embeddings"] = not untied
    qwen_config["text_config"]["tie_word_embeddings"] = not untied

    tokenizer = load_tokenizer(src)
    added = add_task_tokens(tokenizer)
    hidden = int(qwen_config["text_config"]["hidden_size"])
    preset = preset or {2048: "3b", 3584: "7b"}.get(hidden, "3b")
    config = preset_config(preset, tokenizer=tokenizer)
    config.qwen = qwen_config
    config.sam2 = sam2_config
    config.pool_query = config.seg_pixel_query = False  # the released heads are the method's plain ones
    if find:
        if "2.weight" not in find:
            raise CheckpointError(f"{src}: {FIND_PREFIX}2.weight is missing")
        config.find_dim = int(find["2.weight"].shape[0])
    for name, value in SOURCE_BEHAVIOUR[source].items():  # the source's own inference choices
        setattr(config, name, value)
    if source == "momentseg-release":
        config.notes.append(f"imported from the released MomentSeg checkpoint {src.name}")
    if img:
        _check_img_head(img, hidden, config.prompt_dim, src)
        config.notes.append(f"{IMG_PREFIX}* not loaded: only read with perframe_seg, which this checkpoint "
                            "does not use")
    if not find:
        note = (f"imported from {source}; the [FIND] head is randomly initialised (no {source} counterpart): "
                "train it")
        config.notes.append(note)
        warnings.warn(note, stacklevel=3)

    model = model_cls(config, tokenizer=None)
    state = {f"qwen.{k}": v for k, v in qwen_state.items()}
    state.update({f"sam2.{k}": v for k, v in sam2_state.items()})
    state.update({f"seg_head.{k}": v for k, v in seg.items()})
    state.update({f"find_head.{k}": v for k, v in find.items()})
    state.update({f"{source}:{k}": tensors[k] for k in other})
    state.update({f"sam2-original:{k}": sam2_original[k] for k in unknown})
    match_dtypes(model, state)
    load_strict(model, state, str(src), skip_prefixes=() if find else ("find_head.",))
    if not find:  # the random head in the dtype of the trained one
        model.find_head.to(model.seg_head[0].weight.dtype)
    if len(tokenizer) > vocab:
        model.qwen.resize_token_embeddings(len(tokenizer))
        model.config.qwen["text_config"]["vocab_size"] = len(tokenizer)
        model.config.notes.append(f"{added} task token(s) added to the tokenizer; their embedding rows are new")
    model.tokenizer = tokenizer  # checked against the Qwen config's ids by the processor
    return model.eval()


def _check_img_head(img: dict[str, torch.Tensor], hidden: int, out: int, src: Path) -> None:
    want = {"0.weight": (hidden, hidden), "0.bias": (hidden,), "2.weight": (out, hidden), "2.bias": (out,)}
    got = {k: tuple(v.shape) for k, v in img.items()}
    if got != want:
        raise CheckpointError(f"{src}: {IMG_PREFIX}* is not the authors' Linear({hidden},{hidden}) → "
                              f"Linear({hidden},{out}) head: {sorted(got.items())}")
