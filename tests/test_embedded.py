"""The shipped tiny model: it loads offline, `momentseg demo` runs end to end, and it is a trained model."""

import json
import subprocess
import sys

import numpy as np
import pytest

from momentseg.data.synthetic import SPLIT_SEEDS, generate_video, video_seed
from momentseg.eval.metrics import f_measure, j_measure
from momentseg.eval.tsg import score_query
from momentseg.io.video import open_video
from momentseg.pipeline import MomentSeg, embedded_model_dir

#: Held-out test-split videos used for the quality check, and the floor it must clear: on these 9 expressions
#: the embedded model measured J&F 0.239 and a random-weight tiny model 0.023 (/tmp checks, 2026-11-25). The
#: floor sits between, well below the trained value so float noise across CPUs cannot flip it. (Top-1 tIoU
#: does not separate the two on so few expressions — 0.34 vs 0.32 — so it is measured in BENCHMARKS.md only.)
VIDEOS = (0, 1, 2)
MIN_JF = 0.12
#: Grounding: over the 41 expressions with a moment of test videos 0–5, top-1 tIoU averaged 0.50 for the shipped
#: round 14 and 0.33 for round 13, the same model without its moment head (2026-12-05); the floor sits between.
GROUNDING_VIDEOS = range(6)
MIN_TIOU = 0.42


@pytest.fixture(scope="module")
def pipe():
    return MomentSeg.from_pretrained("embedded", device="cpu")


def test_embedded_weights_are_shipped_small_and_safetensors():
    folder = embedded_model_dir()
    weights = folder / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 20 * 2**20
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    config = json.loads((folder / "config.json").read_text())
    assert config["preset"] == "tiny"


def test_demo_command_runs_and_reports(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "momentseg", "demo", "--seed", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "J&F" in proc.stdout and "tIoU" in proc.stdout and str(out / "overlay.mp4") in proc.stdout
    for name in ("overlay.mp4", "similarity.png", "result.json"):
        assert (out / name).is_file()
    result = json.loads((out / "result.json").read_text())
    assert result["expressions"] and all((out / "masks" / str(k)).is_dir()
                                         for k in range(len(result["expressions"])))


def test_embedded_model_is_trained(pipe):
    jfs = []
    for i in VIDEOS:
        video = generate_video(video_seed(SPLIT_SEEDS["test"], i), f"vid_{i:05d}")
        exps = [e for e in video.expressions if e.obj_ids and e.moments][:3]
        result = pipe.segment(open_video(video.frames, fps=video.fps), [e.text for e in exps])
        for exp, r in zip(exps, result.expressions, strict=True):
            gt, pred = video.expression_masks(exp), r.masks.to_array()
            jfs.append((np.mean(j_measure(gt, pred)) + np.mean(f_measure(gt, pred))) / 2)
    assert np.mean(jfs) > MIN_JF


def test_embedded_model_grounds(pipe):
    ious = []
    for i in GROUNDING_VIDEOS:
        video = generate_video(video_seed(SPLIT_SEEDS["test"], i), f"vid_{i:05d}")
        exps = [e for e in video.expressions if e.moments]
        groundings = pipe.ground_many(open_video(video.frames, fps=video.fps), [e.text for e in exps])
        ious += [score_query(g.moments, e.moments)["iou"] for e, g in zip(exps, groundings, strict=True)]
    assert len(ious) == 41 and np.mean(ious) > MIN_TIOU
