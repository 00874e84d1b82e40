"""Qwen visual preprocessing (layout = transformers' Qwen2-VL processors) and the word tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentseg.model.preprocess import (
    VisionLayout,
    image_inputs,
    normalise,
    num_tokens,
    patchify,
    smart_resize,
    video_inputs,
)
from momentseg.model.tokenizer import build_word_tokenizer, split_words, token_ids

L = VisionLayout()


def test_image_patches_equal_qwen_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    img = np.random.default_rng(0).integers(0, 256, size=(56, 84, 3), dtype=np.uint8)
    ref = Qwen2VLImageProcessorPil()(images=[img], do_resize=False, return_tensors="np")
    mine, grid = image_inputs(img[None], 84, L)
    assert grid.tolist() == ref["image_grid_thw"].tolist() == [[1, 4, 6]]
    np.testing.assert_allclose(mine.numpy(), ref["pixel_values"], atol=1e-6)


def test_video_patch_layout_channel_then_time():
    """Row = (channel, temporal, py, px); rows ordered (t, h/2, w/2, 2, 2)."""
    frames = np.zeros((3, 28, 56, 3), np.uint8)
    frames[1] = 255  # frame 1 white, frames 0 and 2 black; odd count → frame 2 repeated
    patches, grid = video_inputs(frames, 56, L)
    assert grid.tolist() == [[2, 2, 4]] and patches.shape == (16, 3 * 2 * 14 * 14)
    row = patches[0].reshape(3, 2, 14, 14)
    black, white = normalise(frames[:2, :1, :1], (1, 1), L)[:, :, 0, 0]
    assert torch.allclose(row[:, 0], black[:, None, None].expand(3, 14, 14))
    assert torch.allclose(row[:, 1], white[:, None, None].expand(3, 14, 14))
    assert torch.allclose(patches[8].reshape(3, 2, 14, 14)[:, 1], black[:, None, None].expand(3, 14, 14))
    assert num_tokens(grid, L) == [4]


def test_patch_order_spatial():
    """A frame whose pixel value encodes its 14×14 patch index comes back in merge-window order."""
    gh, gw = 4, 4
    idx = np.arange(gh * gw).reshape(gh, gw)
    img = np.kron(idx, np.ones((14, 14))).astype(np.float32)
    x = torch.from_numpy(img)[None, None].expand(1, 3, -1, -1)
    patches, grid = patchify(x, L)
    got = patches[:, 0].long().tolist()  # first value of each row = its patch index
    want = [int(idx[bh * 2 + mh, bw * 2 + mw]) for bh in range(2) for bw in range(2) for mh in range(2) for mw in range(2)]
    assert got == want and grid == (1, 4, 4)


def test_smart_resize():
    h, w = smart_resize(480, 854, 28, 28 * 28, 140 * 140)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 140 * 140 and abs(w / h - 854 / 480) < 0.3
    assert smart_resize(10, 10, 28, 28 * 28, 56 * 56) == (28, 28)
    with pytest.raises(ValueError):
        smart_resize(1, 500, 28, 784, 10000)


def test_word_tokenizer():
    tok = build_word_tokenizer(["Red", "ball"], ["Please segment {query} in this video."])
    ids = token_ids(tok)
    assert len(set(ids.values())) == len(ids)
    enc = tok.encode("<|im_start|>user\nPlease segment the RED ball.[SEG]<|im_end|>", add_special_tokens=False)
    toks = tok.convert_ids_to_tokens(enc)
    assert toks == ["<|im_start|>", "user", "please", "segment", "[UNK]", "red", "ball", ".", "[SEG]", "<|im_end|>"]
    assert "query" not in tok.get_vocab()
    assert split_words("It's low-res.") == ["it", "'", "s", "low", "-", "res", "."]
