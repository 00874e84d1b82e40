"""Checkpoints: bit-exact round trip, strict mismatch errors, base-folder build, Sa2VA import + CLI convert."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from momentseg.errors import CheckpointError
from momentseg.model import MomentSegModel
from momentseg.model.config import MomentSegConfig
from momentseg.sam2.config import sam2_config_to_dict
from momentseg.sam2.names import infer_sam2_config, sam2_hf_to_original, sam2_original_to_hf
from momentseg.sam2.video import build_sam2

WORDS = ["red", "ball", "moves"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return MomentSegModel.tiny(words=WORDS, sam2_image_size=64).eval()


@pytest.fixture(scope="module")
def sa2va_like():
    """A tiny model with the method's plain heads (no query bag, no pixel query), as Sa2VA has."""
    torch.manual_seed(2)
    tiny = MomentSegModel.tiny(words=WORDS, sam2_image_size=64)
    config = tiny.config
    config.pool_query = config.seg_pixel_query = False
    return MomentSegModel.build(config, tiny.tokenizer).eval()


def _frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 56, 56, 3), dtype=np.uint8)


def test_round_trip_bit_exact(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "ckpt").iterdir()}
    loaded = MomentSegModel.from_pretrained(tmp_path / "ckpt")
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert loaded.config.to_dict() == model.config.to_dict()
    assert loaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    # tied weights stay tied after loading
    assert loaded.qwen.lm_head.weight is loaded.qwen.model.language_model.embed_tokens.weight
    frames = _frames(6)
    assert torch.equal(model.find_logits(frames, "red ball"), loaded.find_logits(frames, "red ball"))


def test_mismatched_checkpoint_fails_loudly(model, tmp_path):
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    (ckpt / "manifest.json").unlink()  # a hand-edited folder: the manifest would catch it first (see below)
    state = load_file(str(ckpt / "model.safetensors"))
    heads = [k for k in sorted(state) if k.startswith(("find_head.", "pixel_query_head.", "query_bag.", "seg_head."))]
    dropped = [k for k in heads if k != "find_head.0.weight"][:7]  # that one is reshaped below
    for k in dropped:
        del state[k]
    state["extra.weight"] = torch.zeros(2)
    state["find_head.0.weight"] = torch.zeros(3, 3)
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        MomentSegModel.from_pretrained(ckpt)
    msg = str(err.value)
    assert "7 missing" in msg and dropped[0] in msg
    assert "1 unexpected (extra.weight)" in msg
    assert "1 wrongly shaped" in msg and "find_head.0.weight" in msg
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError):
        MomentSegModel.from_pretrained(ckpt)


def test_from_base_folders(model, tmp_path):
    qdir, sdir = tmp_path / "qwen", tmp_path / "sam2"
    model.qwen.save_pretrained(qdir)
    model.tokenizer.save_pretrained(qdir)
    model.sam2.save_pretrained(sdir)
    (qdir / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5], "patch_size": 14}))
    built = MomentSegModel.from_base(qdir, sdir, preset="tiny")
    from momentseg.sam2.video import MomentSegSam2

    assert isinstance(built.sam2, MomentSegSam2) and built.sam2.behaviour == built.config.sam2_behaviour
    for prefix, src in (("qwen.", model.qwen), ("sam2.", model.sam2)):
        theirs = src.state_dict()
        mine = {k[len(prefix) :]: v for k, v in built.state_dict().items() if k.startswith(prefix)}
        assert mine.keys() == theirs.keys()
        for k in theirs:
            assert torch.equal(mine[k].float(), theirs[k].float()), k
    assert built.config.image_mean == (0.5, 0.5, 0.5)
    assert built.find_logits(_frames(4), "red ball").shape == (4,)
    # and it saves / loads as a normal checkpoint
    built.save_pretrained(tmp_path / "out")
    assert MomentSegModel.from_pretrained(tmp_path / "out").config.notes == built.config.notes


def test_sam2_name_mapping_round_trip_and_known_names(model):
    hf = model.sam2.state_dict()
    orig = sam2_hf_to_original(hf)
    for name in (
        "image_encoder.trunk.patch_embed.proj.weight",
        "image_encoder.trunk.blocks.0.mlp.layers.0.weight",
        "image_encoder.trunk.blocks.1.norm1.bias",
        "image_encoder.neck.convs.0.conv.weight",
        "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "sam_prompt_encoder.point_embeddings.3.weight",
        "sam_prompt_encoder.mask_downscaling.6.weight",
        "sam_mask_decoder.transformer.layers.0.mlp.layers.1.bias",
        "sam_mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.weight",
        "sam_mask_decoder.transformer.norm_final_attn.weight",
        "sam_mask_decoder.output_upscaling.3.weight",
        "sam_mask_decoder.output_hypernetworks_mlps.2.layers.2.weight",
        "sam_mask_decoder.pred_obj_score_head.layers.1.weight",
        "sam_mask_decoder.iou_prediction_head.layers.0.bias",
        "memory_attention.layers.0.cross_attn_image.out_proj.weight",
        "memory_attention.norm.weight",
        "memory_encoder.mask_downsampler.encoder.0.weight",
        "memory_encoder.mask_downsampler.encoder.1.weight",
        "memory_encoder.mask_downsampler.encoder.12.weight",
        "memory_encoder.pix_feat_proj.weight",
        "memory_encoder.fuser.layers.0.gamma",
        "memory_encoder.fuser.layers.1.dwconv.weight",
        "memory_encoder.out_proj.weight",
        "maskmem_tpos_enc",
        "no_mem_embed",
        "no_obj_embed_spatial",
        "obj_ptr_proj.layers.2.weight",
        "obj_ptr_tpos_proj.weight",
        "mask_downsample.weight",
    ):
        assert name in orig, name
    assert orig["sam_prompt_encoder.point_embeddings.3.weight"].shape == (1, 128)
    back, unknown = sam2_original_to_hf(orig)
    assert unknown == [] and set(back) == set(hf)
    for k in hf:
        assert torch.equal(back[k], hf[k]), k
    _, unknown = sam2_original_to_hf({**orig, "image_encoder.something_new": torch.zeros(1)})
    assert unknown == ["image_encoder.something_new"]


def test_infer_sam2_large_config():
    """The hiera-large architecture is recognised from original names alone (built on the meta device)."""
    from momentseg.sam2.config import sam2_large_config

    with torch.device("meta"):
        large = build_sam2(sam2_large_config())
        orig = sam2_hf_to_original(large.state_dict())
        inferred = build_sam2(infer_sam2_config(orig))
    a, b = large.state_dict(), inferred.state_dict()
    assert set(a) == set(b) and all(a[k].shape == b[k].shape for k in a)
    assert 200e6 < sum(p.numel() for p in large.parameters()) < 250e6


def _write_sa2va(model, path, split_qwen_names=False, extra=None):
    """A Sa2VA-Qwen2.5-VL checkpoint folder in its key layout, sharded in two files with an index."""
    path.mkdir()
    tensors = {}
    for k, v in model.qwen.state_dict().items():
        if k == "lm_head.weight":  # tied: Sa2VA-3B stores it once
            continue
        if split_qwen_names:  # transformers < 4.52 layout: visual.* and model.* (text)
            k = k.replace("model.visual.", "visual.").replace("model.language_model.", "model.")
        tensors["model." + k] = v.clone()
    for k, v in sam2_hf_to_original(model.sam2.state_dict()).items():
        tensors["grounding_encoder.sam2_model." + k] = v.clone()
    for k, v in model.seg_head.state_dict().items():
        tensors["text_hidden_fcs." + k] = v.clone()
    tensors.update(extra or {})
    keys = sorted(tensors)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, ks in shards.items():
        save_file({k: tensors[k].contiguous() for k in ks}, str(path / name))
    index = {"weight_map": {k: name for name, ks in shards.items() for k in ks}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    cfg = {k: v for k, v in model.qwen.config.to_dict().items() if k != "transformers_version"}
    cfg.update({"model_type": "sa2va_chat", "auto_map": {"AutoModel": "modeling_sa2va_qwen.Sa2VAChatModelQwen"}})
    (path / "config.json").write_text(json.dumps(cfg))
    model.tokenizer.save_pretrained(str(path))


@pytest.mark.parametrize("split_qwen_names", [False, True])
def test_import_sa2va(sa2va_like, tmp_path, split_qwen_names):

    src = tmp_path / "sa2va"
    _write_sa2va(sa2va_like, src, split_qwen_names)
    sam2_cfg = sam2_config_to_dict(sa2va_like.sam2.config)
    with pytest.warns(UserWarning, match="FIND"):
        imported = MomentSegModel.from_released(src, source="sa2va", sam2_config=sam2_cfg, preset="tiny")
    mine, theirs = imported.state_dict(), sa2va_like.state_dict()
    for k in theirs:
        if k.startswith("find_head."):
            assert not torch.equal(mine[k], theirs[k])  # random, not copied from anywhere
        else:
            assert torch.equal(mine[k], theirs[k]), k
    assert any("[FIND]" in n for n in imported.config.notes)
    kf = _frames(2, seed=3)
    e1, _ = imported.seg_embedding(kf, "red ball")
    e2, _ = sa2va_like.seg_embedding(kf, "red ball")
    assert torch.allclose(e1, e2)


def test_import_sa2va_mismatch(model, tmp_path):

    src = tmp_path / "sa2va"
    _write_sa2va(model, src, extra={"grounding_encoder.sam2_model.image_encoder.extra": torch.zeros(1)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="unexpected .*image_encoder.extra"):
            MomentSegModel.from_released(src, source="sa2va", sam2_config=sam2_config_to_dict(model.sam2.config), preset="tiny")


def test_cli_convert(sa2va_like, tmp_path, capsys):
    from momentseg.cli import main

    src = tmp_path / "sa2va"
    _write_sa2va(sa2va_like, src)
    cfg_file = tmp_path / "sam2.json"
    cfg_file.write_text(json.dumps(sam2_config_to_dict(sa2va_like.sam2.config)))
    args = ["convert", str(src), "--out", str(tmp_path / "out"), "--from", "sa2va"]
    with pytest.raises(SystemExit) as ok:
        main([*args, "--sam2-config", str(cfg_file), "--preset", "tiny"])
    assert ok.value.code == 0
    assert "[FIND] head is randomly initialised" in capsys.readouterr().out
    converted = MomentSegModel.from_pretrained(tmp_path / "out")
    assert torch.equal(converted.seg_head[0].weight, sa2va_like.seg_head[0].weight)
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("size", [100, 0, "256", 256.0])
def test_a_bad_sam2_track_size_in_config_json_is_named(model, size):
    d = model.config.to_dict() | {"sam2_track_size": size}
    with pytest.raises(CheckpointError, match="sam2_track_size must be a positive multiple of 16"):
        MomentSegConfig.from_dict(d)
    assert MomentSegConfig.from_dict(d | {"sam2_track_size": 256}).track_image_size == 256
