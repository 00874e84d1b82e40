"""benchmarks/ablation.py and benchmarks/cost.py on their smallest inputs, through their ``main(argv)``."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from momentseg.data.synthetic import WorldConfig, generate_video
from momentseg.grounding.sampling import select_keyframes
from momentseg.io.video import open_video
from momentseg.model.momentseg import MomentSegModel
from momentseg.model.sam2 import preprocess_for_sam2
from momentseg.pipeline import MomentSeg
from momentseg.propagation.session import shared_image_features

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ablation = _load("ablation")
cost = _load("cost")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    MomentSegModel.tiny().save_pretrained(d)
    return d


def test_ablation_rows_equal_the_public_segment_api(model_dir):
    """Shared work (one BAP run for bap + anchor-forward, memoised SAM2 image features, one frame tensor) gives
    exactly what MomentSeg.segment gives for each propagation mode."""
    synth = generate_video(3, config=WorldConfig(min_frames=20, max_frames=22))
    exp = next(e for e in synth.expressions if e.obj_ids)
    pipe = MomentSeg.from_pretrained(model_dir, device="cpu")
    video = open_video(synth.frames, fps=synth.fps)
    dense = pipe._dense_frames(video)
    grounding = pipe._ground(video, exp.text, dense, pipe._lowres(video, dense))
    size = pipe.config.sam2_image_size
    frames = preprocess_for_sam2(video.get_frames(range(len(video)), size=(size, size)), size)
    gt = synth.expression_masks(exp)
    sam2 = pipe.model.sam2
    for sampling, k in (("mcs", 3), ("random", 4)):
        choice = select_keyframes(grounding.probabilities, k, sampling, seed=1)
        with shared_image_features(sam2) as memo:
            got = ablation._propagation_scores(pipe, video, exp.text, choice, pipe._context(video), frames, gt)
            assert sorted(memo) == list(range(len(video)))  # each frame encoded once, all passes reuse it
        assert "_prepare_vision_features" not in sam2.__dict__  # the wrapper is gone after the block
        for mode in ablation.PROPAGATIONS:
            result = pipe.segment(video, exp.text, keyframes=k, sampling=sampling, propagation=mode, seed=1)
            assert list(result.expressions[0].keyframes) == list(choice.indices)
            assert got[mode] == ablation._scores(gt, result.expressions[0].masks.to_array()), (sampling, mode)


def test_ablation_main_writes_rows_tsg_table_and_plot(model_dir, tmp_path):
    out = tmp_path / "res" / "abl.json"
    rows = ablation.main(["--videos", "1", "--keyframes", "2", "--seeds", "2", "--max-expressions", "1",
                          "--model", str(model_dir), "--json", str(out)])
    assert json.loads(out.read_text()) == rows
    assert len(rows) == 3 * (3 + 2 + 1)  # propagations × (first-k, uniform, mcs, 2 random seeds, random mean)
    for r in rows:
        assert r["keyframes"] == 2 and r["propagation"] in ablation.PROPAGATIONS
        assert r["sampling"] in ablation.SAMPLINGS
        assert 0 <= r["J"] <= 100 and 0 <= r["F"] <= 100
        assert abs(r["J&F"] - (r["J"] + r["F"]) / 2) <= 0.011
    for prop in ablation.PROPAGATIONS:
        seeds = [r for r in rows if r["propagation"] == prop and "seed" in r]
        agg = [r for r in rows if r["propagation"] == prop and r["sampling"] == "random" and "seed" not in r]
        assert [r["seed"] for r in seeds] == [0, 1] and len(agg) == 1
        vals = np.array([r["J&F"] for r in seeds])
        assert agg[0]["J&F"] == pytest.approx(vals.mean(), abs=0.006)
        assert agg[0]["J&F_std"] == pytest.approx(vals.std(ddof=1), abs=0.006)
    files = ablation.companions(out)
    meta = json.loads(files["tsg"].read_text())
    assert meta["run"]["expressions"] == 1 and meta["run"]["videos"] == 1
    assert meta["tsg"]["queries"] == 1 and set(meta["tsg"]) >= {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    table = files["md"].read_text()
    assert "| 2 | mcs |" in table and "±" in table and "mIoU" in table
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cost_main_measures_each_method_in_its_own_process(tmp_path):
    out = tmp_path / "cost.json"
    rows = cost.main(["--lengths", "20", "--height", "64", "--width", "96", "--cache-dir", str(tmp_path / "v"),
                      "--json", str(out)])
    assert [r["method"] for r in rows] == list(cost.METHODS)
    assert json.loads(out.read_text())["rows"] == rows
    for r in rows:
        assert r["frames"] == 20 and r["seconds"] > 0
        assert r["peak_mib"] >= r["base_mib"] > 0 and r["delta_mib"] >= 0
    floor = rows[cost.METHODS.index("sam2")]
    assert floor["time_x"] == 1.0
    assert rows[0]["time_x"] == round(rows[0]["seconds"] / floor["seconds"], 2)
    assert (tmp_path / "v" / "bench_64x96_20.mp4").is_file()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "| 20 | sa2va |" in out.with_suffix(".md").read_text()


def test_sa2va_baseline_keeps_one_full_size_mask_per_frame(model_dir):
    pipe = MomentSeg.from_pretrained(model_dir, device="cpu")
    frames = np.stack([cost.synthetic_frame(t, 48, 80) for t in range(9)])
    masks = cost.sa2va_segment(pipe, open_video(frames), cost.TEXT)
    assert len(masks) == 9 and all(m.shape == (48, 80) and m.dtype == bool for m in masks)


def test_3b_preset_builds_on_the_meta_device():
    model = cost.build_model("tiny", "3b", None, "meta")
    assert next(model.parameters()).device.type == "meta"
    assert sum(p.numel() for p in model.parameters()) > 3_000_000_000


def test_cost_update_keeps_other_rows_and_refuses_other_settings():
    run = {k: v for k, v in zip(cost.SETTINGS, (480, 854, "tiny", "tiny", "cpu", "fp32", 1), strict=True)}
    old_rows = [{"method": m, "frames": n, "seconds": 1.0, "delta_mib": 2.0, "time_x": 1.0}
                for n in (10, 20) for m in cost.METHODS]
    new = [{"method": "sam2", "frames": 20, "seconds": 3.0, "delta_mib": 5.0}]
    rows, commands = cost.merge({"rows": old_rows, "run": {**run, "command": "first"}}, new, run, ["second"])
    assert len(rows) == 6 and commands == ["first", "second"]
    assert [r["seconds"] for r in rows if (r["method"], r["frames"]) == ("sam2", 20)] == [3.0]
    assert all("time_x" not in r for r in rows)
    ratios = {(r["method"], r["frames"]): r["time_x"] for r in cost.with_ratios(rows)}
    assert ratios[("momentseg", 20)] == round(1 / 3, 2) and ratios[("momentseg", 10)] == 1.0
    with pytest.raises(SystemExit, match="height"):
        cost.merge({"rows": old_rows, "run": {**run, "height": 240}}, new, run, [])


# ------------------------------------------------------------------ the embedded model's own benchmarks
sam2_tracking = _load("sam2_tracking")
vlm_probe = _load("vlm_probe")
embedded_eval = _load("embedded_eval")
training_curves = _load("training_curves")


def test_tracking_ceiling_with_a_perfect_tracker_scores_100(model_dir, monkeypatch):
    """The tracking benchmark's scoring: a tracker that returns the truth scores 100; the real one runs."""
    monkeypatch.setattr(sam2_tracking, "track_object", lambda sam2, px, masks: masks.copy())
    perfect = sam2_tracking.main(["--model", str(model_dir), "--videos", "1"])
    assert perfect["J&F"] == pytest.approx(100.0) and perfect["objects"] >= 3
    monkeypatch.undo()
    real = sam2_tracking.main(["--model", str(model_dir), "--videos", "1"])
    assert real["objects"] == perfect["objects"] and 0.0 <= real["J&F"] <= 100.0


def test_vlm_probe_scores_answers_and_runs(model_dir, tmp_path):
    rows = [("objects", "small red star and large blue circle", "large blue circle and small red star"),
            ("where", "top left", "top left"), ("where", "top left", "bottom left"),
            ("when", "at 1 . 5 seconds", "at 1 . 0 seconds"), ("when", "nothing", "at 2 . 0 seconds"),
            ("events", "the red star stops at 1 . 0 seconds", "the red star stops at 1 . 0 seconds ; x")]
    s = vlm_probe.score_answers(rows)
    assert s["objects_f1"] == 1.0 and s["where_acc"] == 0.5 and s["when_mae_s"] == 0.5
    assert s["when_within_0.5s"] == 0.5 and s["events_f1"] == pytest.approx(2 / 3)
    out = vlm_probe.main(["--model", str(model_dir), "--videos", "1", "--prior-videos", "2",
                          "--json", str(tmp_path / "p.json")])
    assert out["questions"]["objects"] == 1 and json.loads((tmp_path / "p.json").read_text())["examples"]


def test_embedded_eval_reports_what_issue_14_asks(model_dir):
    a = np.zeros((3, 4, 4), bool)
    b = a.copy()
    a[0, :2], b[0, 1:3], b[2, 0] = True, True, True
    assert embedded_eval.pair_iou(a, b) == pytest.approx((4 / 12 + 0.0) / 2)  # frame 1 empty in both: skipped
    out = embedded_eval.main(["--model", str(model_dir), "--videos", "1"])
    assert set(out) >= {"refvos", "by_kind", "tsg", "no_target_empty_rate", "disjoint_pair_mask_iou"}
    assert sum(v["n"] for v in out["by_kind"].values()) == out["refvos"]["n"] == len(out["rows"])


def test_training_curves_plot_every_component(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": s, "loss": 1.0 / s, "track/mask_dice": 0.5, "lr": 1e-3, "samples_per_s": 2.0,
              "track_samples": 8} for s in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    keys = training_curves.plot(run, tmp_path / "c.png")
    assert keys == ["loss", "track/mask_dice"] and (tmp_path / "c.png").stat().st_size > 1000
