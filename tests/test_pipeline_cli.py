"""End-to-end: a tiny (random-weight) MomentSeg saved to disk, run through the CLI on a synthetic video."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from momentseg.data.synthetic import caption_vocabulary, generate_video
from momentseg.io.overlay import write_video
from momentseg.io.video import open_video
from momentseg.model.momentseg import MomentSegModel
from momentseg.pipeline import MomentSeg


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    MomentSegModel.tiny(caption_vocabulary()).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    v = generate_video(11)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, v.frames[:40], fps=v.fps)
    return v, path


def test_segment_cli_writes_every_output(cli, model_dir, synth, tmp_path, capsys):
    v, path = synth
    out = tmp_path / "out"
    texts = [v.expressions[0].text, v.expressions[1].text]
    code = cli(["segment", path, "--text", texts[0], "--text", texts[1], "--out", out, "--overlay",
                "--model", model_dir, "--device", "cpu", "--keyframes", "5"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["video"]["num_frames"] == 40
    assert [e["text"] for e in result["expressions"]] == texts
    for k, expr in enumerate(result["expressions"]):
        assert len(expr["keyframes"]) == 5 and expr["anchor"] in expr["keyframes"]
        assert expr["keyframes"] == sorted(set(expr["keyframes"]))
        assert len(expr["similarity"]) == 40
        s, e, score = expr["moments"][0]
        assert 0 <= s < e <= 40 / v.fps + 1e-6 and 0 <= score <= 1
        pngs = sorted((out / "masks" / str(k)).glob("*.png"))
        assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(40)]
        areas = [int((np.asarray(Image.open(p)) > 0).sum()) for p in pngs]
        assert areas == expr["mask_area"]
        assert Image.open(pngs[0]).size == (v.frames.shape[2], v.frames.shape[1])
    assert len(open_video(out / "overlay.mp4")) == 40
    assert (out / "similarity.png").stat().st_size > 1000


def test_ground_cli_json(cli, model_dir, synth, capsys):
    v, path = synth
    assert cli(["ground", path, "--query", v.expressions[0].text, "--json", "--model", model_dir]) == 0
    windows = json.loads(capsys.readouterr().out)["pred_relevant_windows"]
    assert 1 <= len(windows) <= 10
    scores = [w[2] for w in windows]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--text", "the red circle", "--sampling", "sometimes"], "unknown sampling"),
        (["--text", "the red circle", "--propagation", "sideways"], "unknown propagation"),
        (["--text", "   "], "empty"),
        (["--text", "x", "--model", "/nonexistent/model"], "no model"),
    ],
)
def test_segment_bad_input_is_one_line_and_leaves_nothing(cli, model_dir, synth, tmp_path, capsys, args, needle):
    _, path = synth
    out = tmp_path / "out"
    if "--model" not in args:
        args = args + ["--model", model_dir]
    assert cli(["segment", path, "--out", out, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err
    assert not out.exists()


def test_segment_corrupt_video(cli, model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    out = tmp_path / "out"
    assert cli(["segment", bad, "--text", "the red circle", "--out", out, "--model", model_dir]) == 2
    assert "bad.mp4" in capsys.readouterr().err
    assert not out.exists()


def test_several_expressions_share_decoding_and_match_single_runs(model_dir, synth):
    """Shared frame decoding and SAM2 features change nothing; the shared LLM prefix (``share_prefix``) changes
    the [SEG] embedding by float rounding only (~1e-6), which may flip a pixel whose logit sits at 0."""
    v, path = synth
    pipe = MomentSeg.from_pretrained(model_dir, device="cpu")
    texts = [v.expressions[0].text, v.expressions[1].text]
    alone = pipe.segment(path, texts[1], keyframes=4).expressions[0]
    separate = MomentSeg(pipe.model, device="cpu", share_prefix=False).segment(path, texts, keyframes=4)
    a = separate.expressions[1]
    assert np.array_equal(a.keyframes, alone.keyframes)
    assert a.masks.rles == alone.masks.rles
    shared = pipe.segment(path, texts, keyframes=4).expressions[1]
    assert np.array_equal(shared.keyframes, alone.keyframes) and shared.anchor == alone.anchor
    got, want = shared.masks.to_array(), alone.masks.to_array()
    assert int((got != want).sum()) <= max(1, got.size // 100_000)


def test_offloaded_sam2_state_gives_the_same_masks(model_dir, synth):
    _, path = synth
    text = "the red circle"
    kept = MomentSeg.from_pretrained(model_dir, device="cpu").segment(path, text, keyframes=3)
    offloaded = MomentSeg.from_pretrained(model_dir, device="cpu", offload_state=True).segment(path, text, keyframes=3)
    assert offloaded.expressions[0].masks.rles == kept.expressions[0].masks.rles


def test_sam2_track_size_propagates_the_keyframe_masks_at_that_size(model_dir, synth):
    """With ``sam2_track_size`` the keyframes are decoded at the model's SAM2 size and their masks, by memory
    alone, propagated by the same weights at the track size: the pipeline's masks are that composition, built
    here from the public pieces."""
    from momentseg.propagation.bap import propagate, upsample_mask
    from momentseg.sam2.config import preprocess_for_sam2

    _, path = synth
    pipe = MomentSeg.from_pretrained(model_dir, device="cpu")
    size = pipe.config.sam2_image_size
    pipe.model.config.sam2_track_size = 2 * size
    result = pipe.segment(path, "the red circle", keyframes=3).expressions[0]
    video = open_video(path)
    keys = [int(k) for k in result.keyframes]
    prompt = pipe.seg_prompt(video, "the red circle", keys)
    with torch.no_grad():
        logits = pipe.model.decode_keyframes(preprocess_for_sam2(video.get_frames(keys, size=(size, size)), size),
                                             prompt.embedding)
    prompts = {k: upsample_mask(m, (video.height, video.width)).numpy() for k, m in zip(keys, logits, strict=True)}
    big = 2 * size
    frames = preprocess_for_sam2(video.get_frames(range(len(video)), size=(big, big)), big)
    tracker = pipe.model.sam2.at_size(big)
    want = np.zeros((len(video), video.height, video.width), dtype=bool)
    with torch.inference_mode():
        for out in propagate(tracker, frames, keys, result.anchor, mask_prompts=prompts):
            assert tuple(out.mask_logits.shape) == (big // 4, big // 4)
            want[out.frame_idx] = upsample_mask(out.mask_logits, (video.height, video.width)).numpy()
    assert 0 < want.mean() < 1  # masks with something in them (random weights)
    assert np.array_equal(result.masks.to_array(), want)
    assert pipe.model.tracker is not pipe.model.sam2 and "_tracker" not in dict(pipe.model.named_modules())
    assert set(pipe.model.state_dict()) == set(MomentSegModel.from_pretrained(model_dir).state_dict())


def test_a_train_config_sets_the_track_size_of_the_model_it_saves(model_dir, tmp_path):
    from momentseg.errors import InputError
    from momentseg.train.config import config_from_dict
    from momentseg.train.loop import _initial_model

    def cfg(size):
        return config_from_dict({"out": str(tmp_path / "run"), "data": {"sources": [{"type": "synthetic", "task": "refvos"}]},
                                 "model": {"pretrained": str(model_dir), "sam2_track_size": size}})

    model = _initial_model(cfg(256))
    assert model.config.sam2_track_size == 256 and model.config.track_image_size == 256
    model.save_pretrained(tmp_path / "saved")
    assert MomentSegModel.from_pretrained(tmp_path / "saved").config.sam2_track_size == 256
    for size in (100, 0):
        with pytest.raises(InputError, match="'model.sam2_track_size'.*multiple of 16"):
            cfg(size)
