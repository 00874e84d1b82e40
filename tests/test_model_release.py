"""Released checkpoints (MomentSeg-3B/7B export, Sa2VA-Qwen2.5-VL export) built from the independent layout
description in ``released_layouts.py``: every source tensor lands on exactly one model tensor, nothing is left
over, and the Qwen hidden states / [SEG] / [FIND] head outputs equal those computed from the source tensors
with transformers' own Qwen2.5-VL and the heads written out by hand. Plus the SHA-256 manifest, dtypes and
strict base loading."""

from __future__ import annotations

import copy
import json
import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from momentseg.errors import CheckpointError
from momentseg.model import MomentSegModel
from momentseg.model.preprocess import image_inputs, num_tokens, video_inputs
from momentseg.model.processing import VisionInputs
from momentseg.model.tokenizer import build_word_tokenizer, token_ids
from momentseg.sam2.config import tiny_sam2_config
from released_layouts import (
    momentseg_release_keys,
    qwen_config_legacy,
    sa2va_keys,
)

WORDS = ["red", "ball", "moves"]


def _tokenizer():
    from momentseg.model.config import SEG_ANSWER, SEG_PROMPT, SYSTEM_PROMPT, TSG_ANSWER, TSG_PROMPT

    return build_word_tokenizer(WORDS, [TSG_PROMPT, TSG_ANSWER, SEG_PROMPT, SEG_ANSWER, SYSTEM_PROMPT])


def _ids(tok):
    ids = token_ids(tok)
    return {"image_token_id": ids["image_pad"], "video_token_id": ids["video_pad"],
            "vision_start_token_id": ids["vision_start"], "vision_end_token_id": ids["vision_end"]}


def _sam2_config():
    """The tiny SAM2 with SAM2.0's features (no object-pointer temporal encoding, no occlusion embedding)."""
    cfg = tiny_sam2_config(64)
    cfg["enable_temporal_pos_encoding_for_object_pointers"] = False
    cfg["enable_occlusion_spatial_embedding"] = False
    return cfg


def _values(keys, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in sorted(keys.items()):
        t = torch.randn(shape, generator=g) * 0.05
        if k.endswith(("norm.weight", "norm1.weight", "norm2.weight", "layernorm.weight", "ln_q.weight")):
            t = t + 1.0
        out[k] = t.to(dtype)
    return out


def _write_shards(tensors, path):
    keys = sorted(tensors)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, ks in shards.items():
        save_file({k: tensors[k].contiguous() for k in ks}, str(path / name))
    index = {"metadata": {"total_size": 0}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))


def write_release(path, qwen_dtype=torch.float32):
    """A tiny released-MomentSeg folder: tensors from the layout description, config as their exporter writes."""
    path.mkdir()
    tok = _tokenizer()
    vocab = len(tok) + 3  # the base vocabulary is padded beyond the tokenizer, as Qwen's is
    tensors = _values(momentseg_release_keys(vocab))
    for k in tensors:
        if not k.startswith(("grounding_encoder.", "text_hidden_fcs.", "find_hidden_fcs.", "img_hidden_fcs.")):
            tensors[k] = tensors[k].to(qwen_dtype)
    _write_shards(tensors, path)
    mllm = qwen_config_legacy(vocab, _ids(tok), eos=tok.convert_tokens_to_ids("<|im_end|>"))
    config = {k: v for k, v in mllm.items() if k not in ("architectures", "model_type")}
    config.update({
        "model_type": "momentseg_chat", "mllm_config": mllm, "mllm_path": "./pretrained/Qwen2.5-VL-3B-Instruct",
        "perframe_seg": False, "template": "qwen_chat", "min_pixels": 3136, "max_pixels": 200704,
        "video_min_pixels": 784, "video_max_pixels": 12544, "tie_word_embeddings": False,
        "auto_map": {"AutoConfig": "configuration_momentseg_chat.MomentSegConfig",
                     "AutoModel": "modeling_momentseg.MomentsegModel"},
    })
    (path / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(str(path))
    return tensors, mllm


def write_sa2va(path):
    """A tiny Sa2VA-Qwen2.5-VL folder as its exporter writes it (vocabulary = len(tokenizer), untied lm_head)."""
    from transformers import Qwen2_5_VLConfig

    path.mkdir()
    tok = _tokenizer()
    vocab = len(tok)
    tensors = _values(sa2va_keys(vocab), seed=1)
    _write_shards(tensors, path)
    legacy = qwen_config_legacy(vocab, _ids(tok), eos=tok.convert_tokens_to_ids("<|im_end|>"))
    qwen = Qwen2_5_VLConfig(**{k: v for k, v in legacy.items() if k not in ("model_type", "architectures")})
    config = qwen.to_dict()
    config["text_config"]["vocab_size"] = vocab
    config["tie_word_embeddings"] = False
    config.update({"model_type": "sa2va_chat", "template": "{% for m in messages %}{% endfor %}",
                   "auto_map": {"AutoModel": "modeling_sa2va_qwen.Sa2VAChatModelQwen"}})
    (path / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(str(path))
    return tensors, config


def _reference_qwen(tensors, prefix, qwen_fields, tmp):
    """transformers' own Qwen2.5-VL loaded from the source tensors (its own name handling, not ours)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tmp.mkdir()
    fields = {k: v for k, v in qwen_fields.items()
              if k not in ("model_type", "architectures", "auto_map", "template", "transformers_version")}
    fields["tie_word_embeddings"] = False
    Qwen2_5_VLConfig(**fields).save_pretrained(str(tmp))
    qwen = {k[len(prefix):]: v.float() for k, v in tensors.items()
            if k.startswith(prefix) and not k.startswith(("grounding_encoder.", "text_hidden_fcs.",
                                                         "find_hidden_fcs.", "img_hidden_fcs."))}
    save_file(qwen, str(tmp / "model.safetensors"))
    ref, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tmp), output_loading_info=True,
                                                                   dtype=torch.float32)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return ref.eval()


def _head(tensors, prefix, x):
    x = F.relu(x @ tensors[prefix + "0.weight"].float().T + tensors[prefix + "0.bias"].float())
    return x @ tensors[prefix + "2.weight"].float().T + tensors[prefix + "2.bias"].float()


def _assert_one_to_one(model, tensors, dropped=()):
    """Every source tensor equals exactly one model tensor (the shared SAM2 position encoding: the two copies
    transformers keeps; the four point embeddings: the rows of the one HF table) and every model tensor is
    one source tensor."""
    state = {k: v for k, v in model.state_dict().items()}
    by_value: dict[tuple, list[str]] = {}
    for k, v in tensors.items():
        by_value.setdefault((tuple(v.shape), v.float().numpy().tobytes()), []).append(k)
    hits = {k: [] for k in tensors}
    unmatched = []
    for k, v in state.items():
        sources = by_value.get((tuple(v.shape), v.float().numpy().tobytes()), [])
        if len(sources) == 1:
            hits[sources[0]].append(k)
        else:
            unmatched.append(k)
    point = "sam2.prompt_encoder.point_embed.weight"
    assert unmatched == [point], unmatched
    for i in range(state[point].shape[0]):
        src = f"grounding_encoder.sam2_model.sam_prompt_encoder.point_embeddings.{i}.weight"
        assert torch.equal(state[point][i : i + 1], tensors[src]), src
        hits[src].append(point)
    pe = "grounding_encoder.sam2_model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
    assert sorted(hits.pop(pe)) == ["sam2.prompt_encoder.shared_embedding.positional_embedding",
                                    "sam2.shared_image_embedding.positional_embedding"]
    for k in dropped:
        assert hits.pop(k) == [], k
    wrong = {k: v for k, v in hits.items() if len(v) != 1}
    assert not wrong, wrong


def _frames(n, seed=0, size=56):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _check_outputs(model, tensors, ref, find_prefix):
    """Qwen hidden states, [SEG] and [FIND] outputs of the imported model vs. the source tensors'."""
    c, layout = model.config, model.layout
    query = "red ball"
    # [SEG]: high-res keyframes as images
    keyframes = _frames(2, seed=3)
    images = image_inputs(keyframes, c.seg_frame_size, layout)
    proc = model.processor
    seq = proc.sequence([(1, n) for n in num_tokens(images[1], layout)], c.prompt_seg, query, c.answer_seg)
    with torch.no_grad():
        mine = model.llm_hidden(proc.collate([seq], images=[VisionInputs(*images)]))[0]
        theirs = ref.model(input_ids=seq.input_ids[None], mm_token_type_ids=seq.mm_types[None],
                           pixel_values=images[0], image_grid_thw=images[1], use_cache=False).last_hidden_state[0]
    assert (mine - theirs).abs().max() < 1e-5
    seg_pos = seq.answer_start + int((seq.input_ids[seq.answer_start:] == proc.ids["seg"]).nonzero()[0, 0])
    emb, _ = model.seg_embedding(keyframes, query)
    assert (emb - _head(tensors, "text_hidden_fcs.", theirs[seg_pos])).abs().max() < 1e-5
    if find_prefix is None:
        return
    # [FIND]: low-res video; the authors' curve (per temporal patch, align_corners=True over the frames)
    frames = _frames(6, seed=4)
    video = video_inputs(frames, c.find_frame_size, layout)
    seq = proc.sequence([(2, num_tokens(video[1], layout)[0])], c.prompt_tsg, query, c.answer_tsg)
    with torch.no_grad():
        mine = model.llm_hidden(proc.collate([seq], videos=[VisionInputs(*video)]))[0]
        theirs = ref.model(input_ids=seq.input_ids[None], mm_token_type_ids=seq.mm_types[None],
                           pixel_values_videos=video[0], video_grid_thw=video[1],
                           second_per_grid_ts=torch.tensor([layout.temporal_patch_size / c.fps]),
                           use_cache=False).last_hidden_state[0]
    assert (mine - theirs).abs().max() < 1e-5
    find_pos = seq.answer_start + int((seq.input_ids[seq.answer_start:] == proc.ids["find"]).nonzero()[0, 0])
    find = _head(tensors, find_prefix, theirs[find_pos])
    vid = _head(tensors, find_prefix, theirs[seq.mm_types == 2])
    t = int(video[1][0, 0])
    vid = vid.reshape(t, -1, vid.shape[-1]).mean(1)
    curve = F.interpolate(vid.T[None], size=len(frames), mode="linear", align_corners=True)[0].T
    expected = F.cosine_similarity(curve, find[None], dim=-1) / 0.07
    assert (model.find_logits(frames, query) - expected).abs().max() < 1e-4  # logits = cos/0.07: 1e-5 · 14


# ---------------------------------------------------------------------------------------------- MomentSeg release
def test_momentseg_release_loads_directly(tmp_path):
    src = tmp_path / "MomentSeg-3B"
    tensors, mllm = write_release(src)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no [FIND] warning: the release has its head
        model = MomentSegModel.from_released(src, sam2_config=_sam2_config(), preset="tiny")  # source from config.json
    assert model.config.find_align_corners and not model.config.pool_query and not model.config.seg_pixel_query
    # the authors' SAM2 keeps the mask of a frame scored "no object" and prompts tracked frames too
    assert model.sam2.behaviour == {"clamp_no_object_masks": False, "language_on_tracked_frames": True}
    assert model.qwen.lm_head.weight is not model.qwen.model.language_model.embed_tokens.weight  # untied
    assert any("img_hidden_fcs" in n for n in model.config.notes)
    dropped = [k for k in tensors if k.startswith("img_hidden_fcs.")]
    _assert_one_to_one(model, tensors, dropped)
    ref = _reference_qwen(tensors, "", mllm, tmp_path / "ref")
    _check_outputs(model, tensors, ref, "find_hidden_fcs.")


def test_from_pretrained_recognises_released_folders(tmp_path, monkeypatch):
    import momentseg.model.momentseg as modeling

    calls = []

    def fake_import(cls, path, source=None, sam2_config=None, preset=None):
        calls.append((cls, path.name, source))
        return 7

    monkeypatch.setattr(modeling, "import_checkpoint", fake_import)
    write_release(tmp_path / "rel")
    write_sa2va(tmp_path / "sa2va")
    assert MomentSegModel.from_pretrained(tmp_path / "rel") == 7
    assert MomentSegModel.from_pretrained(tmp_path / "sa2va") == 7
    assert calls == [(MomentSegModel, "rel", "momentseg-release"), (MomentSegModel, "sa2va", "sa2va")]


def test_momentseg_release_keeps_dtypes_and_converts(tmp_path, capsys):
    from momentseg.cli import main

    src = tmp_path / "rel"
    write_release(src, qwen_dtype=torch.bfloat16)
    out = tmp_path / "out"
    cfg_file = tmp_path / "sam2.json"
    cfg_file.write_text(json.dumps(_sam2_config()))
    with pytest.raises(SystemExit) as ok:
        main(["convert", str(src), "--out", str(out), "--from", "momentseg-release", "--sam2-config",
              str(cfg_file), "--preset", "tiny"])
    assert ok.value.code == 0, capsys.readouterr().err
    converted = MomentSegModel.from_pretrained(out)
    assert converted.qwen.model.language_model.embed_tokens.weight.dtype == torch.bfloat16
    assert converted.qwen.model.visual.patch_embed.proj.weight.dtype == torch.bfloat16
    assert converted.sam2.mask_decoder.iou_token.weight.dtype == torch.float32
    assert converted.find_head[0].weight.dtype == torch.float32
    assert converted.config.find_align_corners
    assert converted.sam2.behaviour == {"clamp_no_object_masks": False, "language_on_tracked_frames": True}


def test_momentseg_release_refuses_perframe_seg_and_missing_tensors(tmp_path):
    src = tmp_path / "rel"
    write_release(src)
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "perframe_seg": True}))
    with pytest.raises(CheckpointError, match="perframe_seg"):
        MomentSegModel.from_pretrained(src)  # refused before anything else is read
    (src / "config.json").write_text(json.dumps(cfg))
    # a tensor deleted from a shard: one line naming it
    from safetensors.torch import load_file

    shard = src / "model-00002-of-00002.safetensors"
    state = load_file(str(shard))
    victim = sorted(state)[0]
    del state[victim]
    save_file(state, str(shard))
    with pytest.raises(CheckpointError) as err:
        MomentSegModel.from_released(src, sam2_config=_sam2_config(), preset="tiny")
    assert "1 missing" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- Sa2VA
def test_sa2va_as_exported(tmp_path):
    src = tmp_path / "Sa2VA-Qwen2_5-VL-3B"
    tensors, config = write_sa2va(src)
    with pytest.warns(UserWarning, match="FIND"):
        model = MomentSegModel.from_released(src, sam2_config=_sam2_config(), preset="tiny")  # source from config.json
    assert model.qwen.lm_head.weight is not model.qwen.model.language_model.embed_tokens.weight
    assert model.config.qwen["text_config"]["vocab_size"] == config["text_config"]["vocab_size"]
    # Sa2VA's SAM2: the mask of a frame scored "no object" is kept; [SEG] only on conditioning frames
    sa2va = {"clamp_no_object_masks": False, "language_on_tracked_frames": False}
    assert model.config.sam2_behaviour == sa2va and model.sam2.behaviour == sa2va
    assert not model.config.find_align_corners  # a MomentSeg-only choice
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("find_head.")}

    class _View:  # the one-to-one check over everything but the random [FIND] head
        def state_dict(self):
            return state

    _assert_one_to_one(_View(), tensors)
    ref = _reference_qwen(tensors, "model.", config, tmp_path / "ref")
    _check_outputs(model, tensors, ref, None)


# ---------------------------------------------------------------------------------------------- own format
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    return MomentSegModel.tiny(words=WORDS, sam2_image_size=64).eval()


def test_manifest_detects_damage(tiny, tmp_path, caplog):
    ckpt = tmp_path / "ckpt"
    tiny.save_pretrained(ckpt)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    weights = ckpt / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    raw[header + 100 : header + 612] = np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes()
    weights.write_bytes(bytes(raw))  # header intact: safetensors alone would load it
    with pytest.raises(CheckpointError) as err:
        MomentSegModel.from_pretrained(ckpt)
    assert "model.safetensors" in str(err.value) and "SHA-256" in str(err.value) and "\n" not in str(err.value)
    # without a manifest: loads, with one warning line
    tiny.save_pretrained(tmp_path / "plain")
    (tmp_path / "plain" / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="momentseg.model.checkpoint"):
        MomentSegModel.from_pretrained(tmp_path / "plain")
    lines = [r.getMessage() for r in caplog.records if r.name == "momentseg.model.checkpoint"]
    assert len(lines) == 1 and "manifest.json" in lines[0] and "\n" not in lines[0]


def test_embedded_model_loads_without_warning(caplog):
    from momentseg.pipeline import embedded_model_dir

    with caplog.at_level(logging.WARNING, logger="momentseg.model.checkpoint"):
        MomentSegModel.from_pretrained(embedded_model_dir())
    assert not [r for r in caplog.records if r.name == "momentseg.model.checkpoint"]


def test_sam2_behaviour_is_a_saved_config_option(tiny, tmp_path):
    assert tiny.sam2.behaviour == tiny.config.sam2_behaviour == {"clamp_no_object_masks": True,
                                                                  "language_on_tracked_frames": True}
    config = copy.deepcopy(tiny.config)
    config.clamp_no_object_masks = config.language_on_tracked_frames = False
    with pytest.raises(ValueError, match="the config says"):  # a given SAM2 must behave as the config says
        MomentSegModel(config, tiny.tokenizer, qwen=tiny.qwen, sam2=tiny.sam2)
    model = MomentSegModel(config, tiny.tokenizer)
    assert model.sam2.behaviour == config.sam2_behaviour
    model.save_pretrained(tmp_path / "ckpt")
    loaded = MomentSegModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.sam2.behaviour == {"clamp_no_object_masks": False, "language_on_tracked_frames": False}


def test_dtypes_survive_round_trip(tiny, tmp_path):
    mixed = MomentSegModel.tiny(words=WORDS, sam2_image_size=64)
    mixed.qwen.to(torch.bfloat16)
    mixed.seg_head.to(torch.bfloat16)
    mixed.save_pretrained(tmp_path / "mixed")
    loaded = MomentSegModel.from_pretrained(tmp_path / "mixed")
    a, b = mixed.state_dict(), loaded.state_dict()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert loaded.qwen.lm_head.weight is loaded.qwen.model.language_model.embed_tokens.weight  # still tied


def test_from_base_is_strict(tiny, tmp_path):
    from safetensors.torch import load_file

    qdir, sdir = tmp_path / "qwen", tmp_path / "sam2"
    tiny.qwen.save_pretrained(qdir)
    tiny.tokenizer.save_pretrained(qdir)
    tiny.sam2.save_pretrained(sdir)
    weights = sdir / "model.safetensors"
    state = load_file(str(weights))
    victim = sorted(k for k in state if "mask_decoder" in k)[0]
    del state[victim]
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        MomentSegModel.from_base(qdir, sdir, preset="tiny")
    msg = str(err.value)
    assert "SAM2" in msg and "1 missing" in msg and victim.split(".")[-2] in msg and "\n" not in msg



def test_real_size_sam2_0_large_layout_matches_inferred_config():
    """The released SAM2.0 Hiera-L (with .g_weight) at full size: every name maps and every shape fits the
    Sam2Video built from the inferred config (on the meta device: no memory)."""
    from momentseg.sam2.names import infer_sam2_config, sam2_original_to_hf
    from momentseg.sam2.video import build_sam2
    from released_layouts import sam2_original_keys

    large = dict(embed=144, stages=[2, 6, 36, 4], window0=8, pos_bkg=(7, 7), d=256, mask_in_chans=16,
                 dec_layers=2, dec_mlp=2048, dec_down=2, iou_hidden=256, mask_tokens=4, att_layers=4,
                 att_ffn=2048, mem_dim=64, mem_in=256, ds_embed=256, fuser_dim=256, fuser_inter=1024,
                 num_maskmem=7)
    with torch.device("meta"):
        original = {k: torch.empty(s) for k, s in sam2_original_keys("2.0", "g_weight", large).items()}
        cfg = infer_sam2_config(original)
        model = build_sam2(cfg)
    assert cfg["enable_temporal_pos_encoding_for_object_pointers"] is False
    assert cfg["enable_occlusion_spatial_embedding"] is False
    mapped, unknown = sam2_original_to_hf(original)
    expected = model.state_dict()
    assert unknown == [] and set(mapped) == set(expected)
    assert all(tuple(mapped[k].shape) == tuple(expected[k].shape) for k in expected)


def test_pipeline_accepts_released_folders(tmp_path):
    """The pipeline's up-front model-folder check lets released layouts through to their importer."""
    from momentseg.pipeline import check_model_folder

    write_release(tmp_path / "rel")
    write_sa2va(tmp_path / "sa2va")
    assert check_model_folder(tmp_path / "rel") == tmp_path / "rel"
    assert check_model_folder(tmp_path / "sa2va") == tmp_path / "sa2va"
