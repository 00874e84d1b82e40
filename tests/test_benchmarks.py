"""benchmarks/ablation.py and benchmarks/cost.py on their smallest inputs, through their ``main(argv)``."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from momentseg.data.synthetic import (
    EVENT_KINDS,
    PIXEL_CLASS_COUNTS,
    TOKEN_CLASS_COUNTS,
    WorldConfig,
    caption_vocabulary,
    generate_video,
)
from momentseg.grounding.sampling import select_keyframes
from momentseg.io.video import open_video
from momentseg.model.momentseg import MomentSegModel
from momentseg.pipeline import MomentSeg
from momentseg.sam2.config import preprocess_for_sam2
from momentseg.sam2.session import shared_image_features

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
    MomentSegModel.tiny(caption_vocabulary()).save_pretrained(d)
    return d


def test_ablation_rows_equal_the_public_segment_api(model_dir):
    """Shared work (one BAP run for bap + anchor-forward, memoised SAM2 image features, one frame tensor, one
    [SEG] embedding per keyframe set) gives exactly what MomentSeg.segment gives for each propagation mode."""
    from momentseg.propagation.bap import propagate, upsample_mask

    synth = generate_video(3, config=WorldConfig(min_frames=20, max_frames=22))
    exp = next(e for e in synth.expressions if e.obj_ids)
    pipe = MomentSeg.from_pretrained(model_dir, device="cpu")
    video = open_video(synth.frames, fps=synth.fps)
    grounding = pipe.ground(video, exp.text)
    size = pipe.config.sam2_image_size
    frames = preprocess_for_sam2(video.get_frames(range(len(video)), size=(size, size)), size)
    gt = synth.expression_masks(exp)
    sam2 = pipe.model.sam2
    for sampling, k in (("mcs", 3), ("random", 4)):
        choice = select_keyframes(grounding.probabilities, k, sampling, seed=1)
        cache = {}
        with shared_image_features(sam2) as memo:
            got = ablation._propagation_scores(pipe, video, exp.text, choice, pipe.context_frames(video), frames, gt,
                                               cache=cache)
            assert sorted(memo) == list(range(len(video)))  # each frame encoded once, all passes reuse it
        assert "_prepare_vision_features" not in sam2.__dict__  # the wrapper is gone after the block
        for mode in ablation.PROPAGATIONS:
            result = pipe.segment(video, exp.text, keyframes=k, sampling=sampling, propagation=mode, seed=1)
            assert list(result.expressions[0].keyframes) == list(choice.indices)
            assert got[mode][:2] == ablation._scores(gt, result.expressions[0].masks.to_array()), (sampling, mode)
        # the memory-clearing rule off: what propagate gives with anchor_update=False, no memory clears
        off = ablation._propagation_scores(pipe, video, exp.text, choice, pipe.context_frames(video), frames, gt,
                                           anchor_update=False, cache=cache)
        prompt = cache[("seg", tuple(int(i) for i in choice.indices))]
        embedding, prior = prompt.embedding, prompt.prior
        masks = np.zeros_like(gt)
        for out in propagate(sam2, frames, choice.indices, choice.anchor, embedding, prompt_prior=prior,
                             num_frames=len(video), anchor_update=False):
            masks[out.frame_idx] = upsample_mask(out.mask_logits, gt.shape[1:]).numpy()
        assert off["bap"] == (*ablation._scores(gt, masks), 0) and all(v[2] == 0 for v in off.values())


def test_ablation_main_writes_rows_intervals_pairs_subsets_table_and_plot(model_dir, tmp_path):
    from momentseg.data.synthetic import SPLIT_SEEDS, expression_flags, video_id, video_seed

    out = tmp_path / "res" / "abl.json"
    rows = ablation.main(["--first-video", "2", "--videos", "1", "--keyframes", "2", "--seeds", "2",
                          "--max-expressions", "2", "--model", str(model_dir), "--json", str(out)])
    assert json.loads(out.read_text()) == rows
    assert len(rows) == 3 * (3 + 2 + 1)  # propagations × (first-k, uniform, mcs, 2 random seeds, random mean)
    for r in rows:
        assert r["keyframes"] == 2 and r["propagation"] in ablation.PROPAGATIONS
        assert r["sampling"] in ablation.SAMPLINGS
        assert 0 <= r["J"] <= 100 and 0 <= r["F"] <= 100
        assert abs(r["J&F"] - (r["J"] + r["F"]) / 2) <= 0.011
        assert r["J&F_lo"] <= r["J&F"] <= r["J&F_hi"] and r["n"] == 2
    for prop in ablation.PROPAGATIONS:
        seeds = [r for r in rows if r["propagation"] == prop and "seed" in r]
        agg = [r for r in rows if r["propagation"] == prop and r["sampling"] == "random" and "seed" not in r]
        assert [r["seed"] for r in seeds] == [0, 1] and len(agg) == 1
        vals = np.array([r["J&F"] for r in seeds])
        assert agg[0]["J&F"] == pytest.approx(vals.mean(), abs=0.006)
        assert agg[0]["J&F_std"] == pytest.approx(vals.std(ddof=1), abs=0.006)
    files = ablation.companions(out)
    meta = json.loads(files["tsg"].read_text())
    assert meta["run"]["expressions"] == 2 and meta["run"]["videos"] == 1
    assert meta["run"]["video_ids"] == [video_id(2)] and meta["run"]["first_video"] == 2  # --first-video
    assert meta["run"]["bootstrap"] == {"interval": "percentile", "over": "expressions", "resamples": 2000,
                                        "seed": 0, "level": 0.95}
    assert meta["tsg"]["queries"] == 2 and set(meta["tsg"]) >= {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    pairs = json.loads(files["paired"].read_text())
    assert [(d["a"], d["b"]) for d in pairs] == [("mcs+bap", "first-k+forward"), ("mcs+bap", "uniform+bap")]
    by = {(r["sampling"], r["propagation"]): r for r in ablation.headline(rows)}
    for d in pairs:
        a, b = (by[tuple(x.split("+"))] for x in (d["a"], d["b"]))
        assert d["J&F_diff"] == pytest.approx(a["J&F"] - b["J&F"], abs=0.011) and d["lo"] <= d["J&F_diff"] <= d["hi"]
    # subsets follow the world's flags of the chosen expressions
    synth = generate_video(video_seed(SPLIT_SEEDS["test"], 2), video_id(2))
    flags = [expression_flags(synth, e) for e in synth.expressions if e.obj_ids or e.moments][:2]
    parts = {p["subset"]: p for p in json.loads(files["subsets"].read_text())}
    assert list(parts) == [name for name, _ in ablation.SUBSETS] + ["plain"]
    assert parts["late_start"]["expressions"] == sum(f["late_start"] for f in flags)
    assert parts["occluded_or_exits"]["expressions"] == sum(f["occluded"] or f["exits"] for f in flags)
    hard = ("late_start", "absent_frame0", "lookalike", "occluded", "exits")
    assert parts["plain"]["expressions"] == sum(not any(f[x] for x in hard) for f in flags)
    for p in parts.values():
        assert all(r["n"] == p["expressions"] for r in p["rows"]) and (p["rows"] == []) == (p["expressions"] == 0)
        assert all("seed" not in r for r in p["rows"])
    md = files["md"].read_text()
    assert "| 2 | mcs |" in md and "±" in md and "mIoU" in md and "[95 % CI]" in md and "Subset `plain`" in md
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --merge: the raw file alone gives the same rows; with another range, the rows cover both
    assert ablation.main(["--merge", str(files["raw"]), "--json", str(tmp_path / "again.json")]) == rows
    raw = json.loads(files["raw"].read_text())
    other = tmp_path / "other_raw.json"
    other.write_text(json.dumps({**raw, "videos": [{**raw["videos"][0], "index": 7, "video": video_id(7)}]}))
    merged = ablation.main(["--merge", str(files["raw"]), str(other), "--json", str(tmp_path / "m.json")])
    assert all(r["n"] == 4 for r in merged) and [r["J&F"] for r in merged] == [r["J&F"] for r in rows]
    run = json.loads(ablation.companions(tmp_path / "m.json")["tsg"].read_text())["run"]
    assert run["video_indices"] == [2, 7] and run["merged_from"] == [str(files["raw"]), str(other)]
    assert "indices 2, 7;" in ablation.companions(tmp_path / "m.json")["md"].read_text()
    for bad, message in ((files["raw"], "more than one file"), (files["md"], "not an ablation raw file")):
        with pytest.raises(ValueError, match=message):
            ablation.load_raw([files["raw"], bad])
    other.write_text(json.dumps({**raw, "settings": {**raw["settings"], "keyframes": [3]}}))
    with pytest.raises(ValueError, match=r"other settings \(keyframes\)"):
        ablation.load_raw([files["raw"], other])
    with pytest.raises(SystemExit):  # on the command line: one error line, exit 2
        ablation.parse_args(["--merge", str(files["raw"]), str(other)])


def _fake_videos(n: int, settings, seed: int = 0) -> list[dict]:
    """score_video-shaped results with random per-expression J / F for every setting of ``settings``."""
    rng = np.random.default_rng(seed)
    names = ("has_moment", "late_start", "lookalike", "absent_frame0", "occluded", "exits", "hard_forward", "none")
    exps = []
    for i in range(n):
        flags = dict.fromkeys(names, False)
        flags["late_start"], flags["exits"] = i % 3 == 0, i % 4 == 1
        rows = []
        for s in settings.grid():
            for seed_ in (settings.seeds if s["sampling"] == "random" else (None,)):
                j, f = rng.uniform(0, 1, 2)
                rows.append({**s, "seed": seed_, "J": j, "F": f, "updates": int(rng.integers(0, 3))})
        exps.append({"exp_id": str(i), "kind": "event", "flags": flags, "rows": rows})
    return [{"video": "v", "index": 0, "frames": 9, "seconds": 0.0, "expressions": exps}]


def test_ablation_statistics_are_fixed_seed_percentile_bootstraps_over_expressions():
    from momentseg.eval.bootstrap import bootstrap_indices, paired_difference, percentile_interval

    settings = ablation.Settings("table", (5, 10), (0, 1, 2))
    table = ablation.Table(_fake_videos(13, settings))
    rows = ablation.aggregate(table, settings)
    assert len(rows) == 2 * 3 * (3 + 3 + 1)
    idx = bootstrap_indices(13)

    def jf(setting, seed=None):
        v = table.values(setting, seed)
        return 100 * (v[:, 0] + v[:, 1]) / 2

    base = {"noise": None, "anchor": "window", "anchor_update": True}
    mcs_bap = {**base, "keyframes": 10, "sampling": "mcs", "propagation": "bap"}
    row = next(r for r in rows if r["keyframes"] == 10 and (r["sampling"], r["propagation"]) == ("mcs", "bap"))
    lo, hi = percentile_interval(jf(mcs_bap), idx)
    assert (row["J&F"], row["J&F_lo"], row["J&F_hi"], row["n"]) == (
        round(jf(mcs_bap).mean(), 2), round(lo, 2), round(hi, 2), 13)
    # random: the per-expression mean over seeds, bootstrapped; its std is over the per-seed rows
    rnd = {**base, "keyframes": 5, "sampling": "random", "propagation": "forward"}
    seed_mean = np.mean([jf(rnd, s) for s in (0, 1, 2)], axis=0)
    agg = next(r for r in rows if r["keyframes"] == 5 and r["sampling"] == "random"
               and r["propagation"] == "forward" and "seed" not in r)
    lo, hi = percentile_interval(seed_mean, idx)
    assert (agg["J&F"], agg["J&F_lo"], agg["J&F_hi"]) == (round(seed_mean.mean(), 2), round(lo, 2), round(hi, 2))
    per_seed = [r["J&F"] for r in rows if r.get("seed") is not None and r["keyframes"] == 5
                and r["propagation"] == "forward"]
    assert agg["J&F_std"] == pytest.approx(np.std(per_seed, ddof=1), abs=0.006)
    # paired differences: the same resampled expressions for both rows
    diffs = ablation.differences(table, settings)
    assert [(d["keyframes"], d["a"], d["b"]) for d in diffs] == [
        (k, "mcs+bap", b) for k in (5, 10) for b in ("first-k+forward", "uniform+bap")]
    fk = {**base, "keyframes": 10, "sampling": "first-k", "propagation": "forward"}
    d, lo, hi = paired_difference(jf(mcs_bap), jf(fk), idx)
    assert (diffs[2]["J&F_diff"], diffs[2]["lo"], diffs[2]["hi"]) == (round(d, 2), round(lo, 2), round(hi, 2))
    # subsets: by the flags; each subset bootstraps its own expressions
    parts = {p["subset"]: p for p in ablation.subsets(table, settings)}
    late = np.array([i % 3 == 0 for i in range(13)])
    assert parts["late_start"]["expressions"] == late.sum() == 5
    assert parts["occluded_or_exits"]["expressions"] == sum(i % 4 == 1 for i in range(13))
    assert parts["plain"]["expressions"] == sum(i % 3 != 0 and i % 4 != 1 for i in range(13))
    assert parts["lookalike"] == {"subset": "lookalike", "flags": ["lookalike"], "expressions": 0, "rows": [],
                                  "differences": []}
    sub = next(r for r in parts["late_start"]["rows"] if r["keyframes"] == 10 and r["sampling"] == "mcs"
               and r["propagation"] == "bap")
    lo, hi = percentile_interval(jf(mcs_bap)[late], bootstrap_indices(5))
    assert (sub["J&F"], sub["J&F_lo"], sub["J&F_hi"]) == (round(jf(mcs_bap)[late].mean(), 2), round(lo, 2),
                                                         round(hi, 2))


def test_ablation_anchor_pairs_compare_the_method_with_each_variant():
    settings = ablation.Settings("anchor", (5,), (0,), ("mcs", "uniform"), ("window", "frame"), (True, False))
    table = ablation.Table(_fake_videos(6, settings))
    rows = ablation.aggregate(table, settings)
    assert len(rows) == 2 * 2 * 3 * 2 and all({"anchor", "anchor_update", "updates"} <= set(r) for r in rows)
    r = rows[0]
    v = table.values({**r, "noise": None}, None)
    assert r["updates"] == round(v[:, 2].mean(), 3)
    diffs = ablation.differences(table, settings)
    assert [(d["a"], d["b"]) for d in diffs] == [
        (f"{s}+bap (window, update on)", f"{s}+bap ({a}, update {u})")
        for s in ("mcs", "uniform") for a, u in (("window", "off"), ("frame", "on"), ("frame", "off"))]


def test_ablation_sweep_scores_controlled_curves_with_the_real_seg_pass(model_dir, tmp_path):
    out = tmp_path / "sweep.json"
    rows = ablation.main(["--mode", "sweep", "--noise", "1", "0", "--first-video", "2", "--videos", "1",
                          "--keyframes", "2", "--seeds", "1", "--max-expressions", "1", "--model", str(model_dir),
                          "--json", str(out)])
    assert {r["noise"] for r in rows} == {0.0, 1.0}
    assert len(rows) == 2 * 3 * (3 + 1 + 1)
    # first-k does not look at the curve: its keyframes and (forward) masks are the same at every level
    fk = [r for r in rows if r["sampling"] == "first-k" and r["propagation"] == "forward"]
    assert fk[0]["J&F"] == fk[1]["J&F"]
    files = ablation.companions(out)
    meta = json.loads(files["tsg"].read_text())
    assert meta["tsg"] == {"queries": 0}  # no [FIND] pass in a sweep
    by_noise = meta["tsg_by_noise"]
    assert by_noise["0.0"]["R1@0.5"] == 100.0  # the blurred truth grounds its moment
    assert by_noise["1.0"]["queries"] == by_noise["0.0"]["queries"] == 1
    pairs = json.loads(files["paired"].read_text())
    assert [(d["noise"], d["b"]) for d in pairs] == [(0.0, "first-k+forward"), (0.0, "uniform+bap"),
                                                     (1.0, "first-k+forward"), (1.0, "uniform+bap")]
    assert meta["run"]["noise"] == [0.0, 1.0] and meta["run"]["blur"] == 2.0
    md = files["md"].read_text()
    assert "| 2 | 0 | mcs |" in md and "| 2 | 1 | mcs |" in md and "controlled curves" in md
    assert files["png"].read_bytes()[:4] == b"\x89PNG"


def test_ablation_anchor_mode_measures_both_rules_on_the_same_expressions(model_dir, tmp_path):
    out = tmp_path / "anchor.json"
    rows = ablation.main(["--mode", "anchor", "--videos", "1", "--first-video", "2", "--keyframes", "3",
                          "--max-expressions", "1", "--model", str(model_dir), "--json", str(out)])
    assert len(rows) == 2 * 2 * 3 and {r["sampling"] for r in rows} == {"mcs"}
    assert {(r["anchor"], r["anchor_update"]) for r in rows} == {("window", True), ("window", False),
                                                                 ("frame", True), ("frame", False)}
    assert all(r["updates"] == 0 for r in rows if not r["anchor_update"])  # off: memory never cleared
    assert len(json.loads(ablation.companions(out)["paired"].read_text())) == 3
    assert "| 3 | mcs | frame | off |" in ablation.companions(out)["md"].read_text()


@pytest.mark.parametrize("argv, message", [
    (["--noise", "0.5"], "only apply to --mode sweep"),
    (["--mode", "sweep", "--noise", "1.5"], "must lie in"),
    (["--first-video", "-1"], "--first-video"),
    (["--mode", "sweep", "--blur", "-2"], "--blur"),
    (["--samplings", "bogus"], "invalid choice"),
])
def test_ablation_bad_arguments_exit_with_one_error_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert ": error: " in err[-1] and message in err[-1]


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


gpu = _load("gpu")


def test_gpu_script_dry_run_measures_every_item_on_the_tiny_preset(tmp_path):
    """benchmarks/gpu.py --dry-run: the GPU script's code path on the tiny preset, tiny sizes, CPU."""
    out = tmp_path / "gpu.json"
    report = gpu.main(["--dry-run", "--device", "cpu", "--threads", "1", "--cache-dir", str(tmp_path / "v"),
                       "--json", str(out)])
    assert json.loads(out.read_text()) == report
    run = report["run"]
    assert run["preset"] == "tiny" and run["dry_run"] and run["lengths"] == list(gpu.DRY["lengths"])
    config = MomentSegModel.tiny(caption_vocabulary()).config
    assert report["find_pass"]["frames"] == config.find_max_frames and report["find_pass"]["seconds_mean"] > 0
    seg = report["seg_pass"]
    assert seg["keyframes"] == gpu.default_keyframes() == 8 and seg["context_frames"] == config.context_frames
    assert seg["seconds_min"] <= seg["seconds_mean"]
    rows = report["propagation"]
    assert [(r["frames"], r["offload_state"]) for r in rows] == [(n, o) for n in gpu.DRY["lengths"]
                                                                 for o in (False, True)]
    for r in rows:
        assert r["image_size"] == config.sam2_image_size and r["fps"] == pytest.approx(r["frames"] / r["seconds"],
                                                                                          rel=0.01)
        assert r["cuda_peak_mib"] is None and r["cuda_base_mib"] is None  # CPU: no GPU memory to report
    e2e = report["end_to_end"]
    assert e2e["frames"] == gpu.DRY["e2e_frames"] and (tmp_path / "v" / "bench_48x64_10.mp4").is_file()
    assert e2e["segment_over_sam2"] == round(e2e["segment"]["seconds"] / e2e["sam2_alone"]["seconds"], 2)


def test_gpu_script_builds_the_random_3b_preset_without_files():
    """What the GPU run builds: MomentSegModel.random("3b", caption_vocabulary()) (here on the meta device: no memory), with a word
    tokenizer that fits the 3b config and encodes the prompts."""
    with torch.device("meta"):
        model = MomentSegModel.random("3b", caption_vocabulary())
    assert model.config.preset == "3b" and model.config.sam2_image_size == 1024
    assert sum(p.numel() for p in model.parameters()) > 3_900_000_000
    seq = model.processor.sequence([(2, 4)], model.config.prompt_tsg, "the red circle", model.config.answer_tsg)
    assert int((seq.mm_types == 2).sum()) == 4 and model.processor.position(seq, "find") > seq.answer_start - 1
    with pytest.raises(SystemExit):
        gpu.parse_args(["--device", "cuda"]) if not torch.cuda.is_available() else gpu.parse_args(["--reps", "0"])


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
    # --sam2-track-size: the tracker at that input size, the frames too
    seen = []

    def record(sam2, px, masks):
        seen.append((int(sam2.config.image_size), px.shape[-1]))
        return masks.copy()

    monkeypatch.setattr(sam2_tracking, "track_object", record)
    sam2_tracking.main(["--model", str(model_dir), "--videos", "1", "--sam2-track-size", "256"])
    assert set(seen) == {(256, 256)}
    for bad in ("100", "big"):
        with pytest.raises(SystemExit):
            sam2_tracking.main(["--model", str(model_dir), "--videos", "1", "--sam2-track-size", bad])


def test_memory_probe_scores_distance_areas_and_memory_sensitivity(model_dir, monkeypatch, tmp_path):
    """The memory probe: a tracker that returns the truth has J 1 at every distance, the true area and empty
    absent frames; the memory encoder of a random SAM2 sees the mask (its memories of two objects differ), and a
    training checkpoint's weights replace the folder's."""
    probe = _load("memory_probe")
    monkeypatch.setattr(probe, "track_object", lambda sam2, px, masks: masks.copy())
    perfect = probe.main(["--model", str(model_dir), "--videos", "1"])
    assert all(j == pytest.approx(1.0) for j in perfect["J_by_distance"].values() if j is not None)
    assert perfect["frames_by_distance"]["0"] >= 3 and perfect["pred_area"] == pytest.approx(perfect["true_area"])
    assert perfect["absent_frames_empty"] in (None, pytest.approx(1.0))
    assert perfect["memory_pairs"] > 0 and perfect["memory_relative_difference"] > 0
    monkeypatch.undo()

    model = MomentSegModel.from_pretrained(model_dir)
    ckpt = tmp_path / "step-1"
    ckpt.mkdir()
    with torch.no_grad():
        for p in model.sam2.memory_encoder.parameters():
            p.zero_()
    from safetensors.torch import save_file
    save_file({f"sam2.memory_encoder.{k}": v.contiguous() for k, v in model.sam2.memory_encoder.state_dict().items()},
              str(ckpt / "trainable.safetensors"))
    zeroed = probe.main(["--model", str(model_dir), "--checkpoint", str(ckpt), "--videos", "1",
                         "--json", str(tmp_path / "probe.json")])
    assert zeroed["memory_relative_difference"] == 0.0
    assert json.loads((tmp_path / "probe.json").read_text())["args"]["checkpoint"] == str(ckpt)
    assert 0.0 <= zeroed["J_by_distance"]["0"] <= 1.0

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
    ious = [r["tiou"] for r in out["rows"] if r["tiou"] is not None]  # per expression with a moment: paired TSG
    assert len(ious) == out["tsg"]["n"] and np.mean(ious) * 100 == pytest.approx(out["tsg"]["mIoU"])
    other = [dict(r, J=r["J"] - 0.1, F=r["F"] - 0.1, tiou=None if r["tiou"] is None else 0.0) for r in out["rows"]]
    diff = embedded_eval.paired(out["rows"], other)
    assert diff["J&F"] == [10.0, 10.0, 10.0]  # 0.1 better on every expression: the interval is the point
    assert diff["mIoU"][0] == pytest.approx(round(np.mean(ious) * 100, 2))
    with pytest.raises(SystemExit, match="different expressions"):
        embedded_eval.paired(out["rows"], other[::-1] if len(other) > 1 else [])


def test_embedded_eval_segments_with_the_keyframes_and_propagation_it_is_given(model_dir, monkeypatch):
    from momentseg.grounding.sampling import DEFAULT_KEYFRAMES
    from momentseg.pipeline import MomentSeg

    seen = []
    segment = MomentSeg.segment

    def spy(self, video, texts, **kwargs):
        seen.append((kwargs.get("keyframes"), self.model.sam2.language_on_tracked_frames,
                     self.model.config.language_on_tracked_frames))
        return segment(self, video, texts, **kwargs)

    monkeypatch.setattr(MomentSeg, "segment", spy)
    embedded_eval.main(["--model", str(model_dir), "--videos", "1"])
    embedded_eval.main(["--model", str(model_dir), "--videos", "1", "--keyframes", "3",
                        "--language-on-tracked-frames", "off"])
    assert seen == [(DEFAULT_KEYFRAMES, True, True), (3, False, False)]
    with pytest.raises(SystemExit):
        embedded_eval.main(["--model", str(model_dir), "--videos", "1", "--language-on-tracked-frames", "no"])


def test_training_curves_plot_every_component(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": s, "loss": 1.0 / s, "track/mask_dice": 0.5, "lr": 1e-3, "samples_per_s": 2.0,
              "track_samples": 8} for s in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    keys = training_curves.plot(run, tmp_path / "c.png")
    assert keys == ["loss", "track/mask_dice"] and (tmp_path / "c.png").stat().st_size > 1000


def test_shape_probe_scores_and_runs(model_dir, tmp_path):
    probe = _load("shape_probe")
    labels = torch.tensor([[[0, 1], [2, 2]]])
    logits = F.one_hot(torch.tensor([[[0, 1], [2, 1]]]), probe.CLASSES).permute(0, 3, 1, 2).float()
    assert probe.shape_miou(logits, labels) == pytest.approx((1 / 2 + 1 / 2) / 2)  # class 1: 1/2, class 2: 1/2
    for encoder, extra in ((str(model_dir), ["--coarse"]), (str(model_dir), ["--tune-encoder"]), ("cnn", [])):
        out = tmp_path / "probe.json"
        probe.main(["--encoder", encoder, *extra, "--steps", "2", "--batch", "2", "--train-items", "3",
                    "--val-items", "2", "--eval-every", "1", "--json", str(out)])
        result = json.loads(out.read_text())
        assert [c["step"] for c in result["curve"]] == [1, 2] and 0.0 <= result["val_shape_miou"] <= 1.0
    headed = tmp_path / "headed"
    MomentSegModel.tiny(caption_vocabulary(), pixel_classes=PIXEL_CLASS_COUNTS).save_pretrained(headed)
    probe.main(["--encoder", str(headed), "--own-head", "--val-items", "2", "--json", str(out)])
    assert 0.0 <= json.loads(out.read_text())["val_shape_miou"] <= 1.0
    with pytest.raises(SystemExit):
        probe.main(["--encoder", str(model_dir), "--own-head", "--val-items", "2"])  # no head to score


def test_find_probe_scores_the_curve_and_splits_position_from_content(model_dir, tmp_path):
    probe = _load("find_probe")
    assert probe.auc(np.array([3.0, 1.0, 2.0, 2.0]), np.array([True, False, True, False])) == pytest.approx(
        (1 + 1 + 1 + 0.5) / 4)
    assert probe.auc(np.array([1.0, 2.0]), np.array([True, True])) is None  # no negative frame
    feats = np.zeros((2, 3, 2))
    feats[:, :, 0] = 5.0  # grand mean (5, 0)
    feats[:, 0, 1], feats[:, 2, 1] = 1.0, -1.0  # the same time course in both videos: position only
    d = probe._decompose(feats)
    assert d == pytest.approx({"grand": 5.0, "position": 2 / 3, "content": 0.0})
    feats[0, :, 1] += 0.5
    feats[1, :, 1] -= 0.5  # a per-video offset: content
    assert probe._decompose(feats)["content"] == pytest.approx(0.5)
    out = probe.main(["--model", str(model_dir), "--videos", "1", "--json", str(tmp_path / "f.json")])
    assert out["expressions"] == sum(v["n"] for v in out["auc_by_kind"].values()) > 0 and 0 <= out["auc"] <= 1
    assert set(out["frame_features"]) == {"after_llm", "vision_tower"}
    assert all(sum(v[p] for p in probe.PLACES) == pytest.approx(1.0) and v["n"] > 0
               for v in out["peak_placement"].values())
    assert "event_head" not in out  # the model has none
    wins = out["top1_windows"]
    assert sum(w["n"] for w in wins.values()) >= out["expressions"]  # every expression with a moment; AUC needs both
    assert all(0 <= w[k] <= 1 for w in wins.values() for k in ("confident", "predicted_share", "true_share", "tiou"))
    rows = np.array([[1.0, 0.5, 0.25, 0.6], [0.0, 1.0, 0.25, 0.25]])
    assert probe._windows(rows) == pytest.approx({"confident": 0.5, "predicted_share": 0.75, "true_share": 0.25,
                                                   "tiou": 0.425, "R1@0.5": 0.5, "n": 2})
    headed = tmp_path / "events"
    MomentSegModel.tiny(caption_vocabulary(), event_classes=len(EVENT_KINDS)).save_pretrained(headed)
    out = probe.main(["--model", str(headed), "--videos", "1"])
    assert list(out["event_head"]) == list(EVENT_KINDS)
    assert all(r["tokens"] > 0 and (r["auc"] is None or 0 <= r["auc"] <= 1) for r in out["event_head"].values())


def test_prompt_probe_scores_clicks_and_trains_a_fresh_decoder(model_dir, tmp_path):
    probe = _load("prompt_probe")
    target = torch.zeros(2, 4, 4)
    target[0, :2], target[1, 2:] = 1.0, 1.0
    own, others, sens = probe.scores(torch.where(target[[0, 0]] > 0, 5.0, -5.0), target)
    assert own == [1.0, 0.0] and others == [0.0, 1.0] and sens == 0.0  # both clicks gave object 0's mask
    own, others, sens = probe.scores(torch.where(target > 0, 5.0, -5.0), target)
    assert own == [1.0, 1.0] and others == [0.0, 0.0] and sens == pytest.approx(2.0)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 1:3, 1:3], masks[1, 5:7, 4:6] = True, True
    pts = probe.clicks(masks, np.random.default_rng(0))
    assert all(masks[k, int(y), int(x)] for k, (x, y) in enumerate(pts.tolist()))
    out = probe.main(["--model", str(model_dir), "--videos", "1", "--train-steps", "2", "--train-videos", "1",
                      "--every", "1", "--json", str(tmp_path / "p.json")])
    assert [c["step"] for c in out["curve"]] == [0, 1, 2] and out["frames"] > 0
    assert 0.0 <= out["measured"]["own_iou"] <= 1.0 and json.loads((tmp_path / "p.json").read_text())["curve"]


def test_token_probe_scores_a_token_head(tmp_path):
    probe = _load("token_probe")
    headed = tmp_path / "headed"
    MomentSegModel.tiny(caption_vocabulary(), token_classes=TOKEN_CLASS_COUNTS).save_pretrained(headed)
    out = probe.main(["--model", str(headed), "--videos", "2", "--json", str(tmp_path / "t.json")])
    assert set(out) - {"args"} == set(probe.KINDS)
    assert all(0 <= v["accuracy"] <= 1 and v["tokens"] > 0 for k, v in out.items() if k != "args")
    MomentSegModel.tiny(caption_vocabulary()).save_pretrained(tmp_path / "plain")
    with pytest.raises(SystemExit):
        probe.main(["--model", str(tmp_path / "plain"), "--videos", "1"])
    # --checkpoint: a training checkpoint's trainable weights (here another model's tower and head) replace
    # --model's, and score as that model does
    from safetensors.torch import save_file

    torch.manual_seed(1)
    other = MomentSegModel.tiny(caption_vocabulary(), token_classes=TOKEN_CLASS_COUNTS)
    other.save_pretrained(tmp_path / "other")
    step = tmp_path / "run" / "checkpoints" / "step-0000002"
    step.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()
               if k.startswith(("qwen.model.visual.", "token_class_head."))}, str(step / "trainable.safetensors"))
    args = ["--videos", "2"]
    via_checkpoint = probe.main(["--model", str(headed), "--checkpoint", str(step), *args])
    direct = probe.main(["--model", str(tmp_path / "other"), *args])
    assert {k: v for k, v in via_checkpoint.items() if k != "args"} == {k: v for k, v in direct.items() if k != "args"}


def test_pixel_query_probe_scores_iou_and_runs(model_dir, tmp_path):
    probe = _load("pixel_query_probe")
    logits = torch.tensor([[1.0, 1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0]])
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert probe.iou(logits, target).tolist() == [pytest.approx(1 / 3), 0.0]
    for mode in ("colour", "oracle"):
        out = tmp_path / f"{mode}.json"
        probe.main(["--sam2", str(model_dir), "--mode", mode, "--steps", "2", "--batch", "2", "--train-items", "3",
                    "--val-items", "3", "--eval-every", "1", "--json", str(out)])
        result = json.loads(out.read_text())
        assert result["mode"] == mode and 0.0 <= result["val_iou"] <= 1.0
        assert 0.0 < result["all_shapes_iou"] <= 1.0  # every target lies inside "all shapes"
    assert [c["step"] for c in json.loads((tmp_path / "colour.json").read_text())["curve"]] == [1, 2]
    out = tmp_path / "learned.json"
    probe.main(["--mode", "learned", "--model", str(model_dir), "--videos", "1", "--json", str(out)])
    learned = json.loads(out.read_text())
    assert learned["expressions"] > 0 and learned["query_norm_mean"] == 0.0  # the head's pixel query starts at 0
    out = tmp_path / "decoder.json"
    probe.main(["--mode", "decoder", "--model", str(model_dir), "--videos", "1", "--json", str(out)])
    paths = json.loads(out.read_text())["paths"]
    # a fresh head's pixel query is zero: both paths give the same masks
    assert paths["token"] == pytest.approx(paths["token+pixel query"])
    assert paths["token"]["std_across_objects"] > 0


def test_batch_speed_dry_run_times_every_row(tmp_path):
    """benchmarks/batch_speed.py on tiny sizes: both training tasks batched vs one by one, ground and segment
    with and without a shared prefix for each expression count, written as JSON."""
    batch_speed = _load("batch_speed")
    out = tmp_path / "b.json"
    report = batch_speed.main(["--dry-run", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    dry = batch_speed.DRY
    assert [(r["threads"], r["task"], r["batch"]) for r in report["train"]] == [
        (t, task, dry["batch"]) for t in dry["threads"] for task in ("tsg", "refvos", "tsg_shared_video")]
    for r in report["train"]:
        assert r["batched_samples_per_s"] > 0 and r["one_by_one_samples_per_s"] > 0
        assert r["speedup"] == pytest.approx(r["batched_samples_per_s"] / r["one_by_one_samples_per_s"], rel=0.02)
    assert [(r["op"], r["expressions"]) for r in report["inference"]] == [
        (op, n) for n in dry["expressions"] for op in ("ground", "segment")]
    for r in report["inference"]:
        assert r["shared_prefix_s"] > 0 and r["separate_s"] > 0
    assert report["inference_setting"]["video_frames"] >= dry["frames"][0]


def test_head_activity_counts_live_units_and_text_spread(model_dir, tmp_path):
    probe = _load("head_activity")
    out = tmp_path / "heads.json"
    result = probe.main(["--model", str(model_dir), "--videos", "1", "--json", str(out)])
    assert json.loads(out.read_text())["seg"] == result["seg"]
    for head in ("seg", "find"):  # a fresh Linear → ReLU → Linear: about half the activations are on
        assert 0.2 < result[head]["active"] < 0.8 and result[head]["units_ever_active"] > 0.8
    spread = result["seg"]["std_across_expressions"]
    assert spread["token"] > 0 and spread["pixel_query"] == 0.0  # the pixel query starts at zero


def test_seg_state_probe_finds_presence_and_pointing_signals_when_they_exist(model_dir, tmp_path):
    probe = _load("seg_state_probe")
    rng = torch.Generator().manual_seed(0)

    def items(n: int) -> list[dict]:
        out = []
        for i in range(n):
            q = torch.randn(8, generator=rng)
            none = i % 4 == 0
            q[0] = -3.0 if none else 3.0  # presence is written in one feature of the [SEG] state
            it = {"q": q, "kind": "event", "flags": {"none": none, "lookalike": i % 2 == 1}}
            if not none:
                tokens = torch.randn(2, 6, 8, generator=rng)
                target, objects = torch.zeros(2, 6), torch.zeros(2, 6)
                objects[:, :3] = 0.5
                for k in range(2):
                    j = int(torch.randint(3, (1,), generator=rng))
                    tokens[k, j, 1:] += 2 * q[1:]  # the target's token echoes the query: only a query probe can point
                    target[k, j] = 0.5
                it.update(tokens=tokens, target=target, objects=objects)
            out.append(it)
        return out

    train, val = items(120), items(60)
    pres = probe.presence(train, val)
    assert pres["auc"] == pytest.approx(1.0) and pres["target_kept_at_aim"] == pytest.approx(1.0)
    point = probe.pointing(train, val)
    assert point["query"]["all"]["chance"] == pytest.approx(1 / 3)
    assert point["query"]["all"]["hit"] > 0.8 > 0.6 > point["objectness"]["all"]["hit"]
    assert point["query"]["lookalike"]["keyframes"] + point["query"]["event"]["keyframes"] > 0
    out = probe.main(["--model", str(model_dir), "--train-videos", "2", "--val-videos", "1",
                      "--json", str(tmp_path / "s.json")])
    assert out["expressions"]["train"] > 0 and json.loads((tmp_path / "s.json").read_text())["args"]["val_videos"] == 1
    assert all(0 <= r["hit"] <= 1 and 0 < r["chance"] <= 1 for p in out["pointing"].values() for r in p.values())


def test_pointing_eval_scores_hits_chance_and_presence(model_dir, tmp_path):
    probe = _load("pointing_eval")
    target, objects = torch.zeros(2, 2, 3), torch.zeros(2, 2, 3)
    objects[:, 0, :] = 0.5  # three object tokens per patch, the target in the middle one
    target[:, 0, 1] = 0.5
    right = torch.zeros(2, 2, 3)
    right[:, 0, 1] = 4.0
    wrong = torch.zeros(2, 2, 3)
    wrong[:, 0, 2] = 4.0
    items = [{"kind": "event", "flags": {"lookalike": True}, "has_target": True, "maps": right, "target": target,
              "objects": objects, "text": "which star stops?", "presence": 4.0, "when": ["before", "inside"]},
             {"kind": "motion", "flags": {}, "has_target": True, "maps": wrong, "target": target, "objects": objects,
              "text": "the star moving left", "presence": 4.0, "when": ["before", "inside"]},
             {"kind": "appearance", "flags": {}, "has_target": True, "maps": right, "target": target,
              "objects": objects, "text": "the red star", "presence": 4.0, "when": ["before", "inside"]},
             {"kind": "appearance", "flags": {}, "has_target": True, "maps": wrong, "target": target,
              "objects": objects, "text": "the small star", "presence": 4.0, "when": ["before", "inside"]},
             {"kind": "none", "flags": {}, "has_target": False, "maps": torch.full((2, 2, 3), -1.0), "text": "the hat",
              "presence": -1.0, "when": None}]
    point = probe.pointing(items)
    assert point["event"] == {"hit": 1.0, "chance": pytest.approx(1 / 3), "n": 2}
    assert point["appearance:colour"]["hit"] == 1.0 and point["appearance:shape"]["hit"] == 0.0
    assert point["appearance"]["n"] == 4 and point["all"]["n"] == 8
    assert point["motion"]["hit"] == 0.0 and point["all"]["hit"] == 0.5 and point["lookalike"]["n"] == 2
    assert point["all@before"]["n"] == 4 and point["all@inside"]["n"] == 4 and "all@after" not in point
    assert point["event@inside"] == {"hit": 1.0, "chance": pytest.approx(1 / 3), "n": 1}
    assert probe.moment_relation(0.5, [(1.0, 2.0)]) == "before" and probe.moment_relation(1.0, [(1.0, 2.0)]) == "inside"
    assert probe.moment_relation(2.5, [(1.0, 2.0), (3.0, 4.0)]) == "after"  # after the first of two moments
    assert probe.moment_relation(4.5, [(1.0, 2.0), (3.0, 4.0)]) == "after"
    assert probe.patch_times(np.arange(0, 8, 2), 2, 2, 2.0).tolist() == [0.5, 2.5]
    pres = probe.presence(items)
    assert pres["auc"] == 1.0  # every target's presence logit is above the no-target one
    assert pres["by_threshold"]["0.0"] == {"no_target_flagged": 1.0, "targets_lost": 0.0}  # -1 < 0 <= 4
    assert pres["by_threshold"]["-1.0"] == {"no_target_flagged": 0.0, "targets_lost": 0.0}  # -1 is not below -1
    # apart: "the red star" names a colour and a shape, the others do not ("the hat" has no target)
    both, other = pres["by_text"]["colour+shape"], pres["by_text"]["other"]
    assert (both["targets"], both["no_target"], both["auc"]) == (1, 0, None)
    assert (other["targets"], other["no_target"], other["auc"]) == (3, 1, 1.0)
    assert both["by_threshold"]["0.0"] == {"no_target_flagged": None, "targets_lost": 0.0}
    assert probe.names_colour_and_shape("which red star stops?") and not probe.names_colour_and_shape("the red shape")
    with pytest.raises(SystemExit):
        probe.main(["--model", str(model_dir), "--videos", "1"])  # no pointing head
    pointing_dir = tmp_path / "pointing"
    model = MomentSegModel.from_pretrained(model_dir)
    model.add_pointing_head()
    model.save_pretrained(pointing_dir)
    out = probe.main(["--model", str(pointing_dir), "--videos", "1", "--json", str(tmp_path / "p.json")])
    assert out["expressions"] > 0 and out["pointing"]["all"]["n"] > 0
    assert json.loads((tmp_path / "p.json").read_text())["pointing"] == out["pointing"]
    # embedded_eval --point-prior: a bias of +50 everywhere makes every decoded frame foreground
    base = embedded_eval.main(["--model", str(pointing_dir), "--videos", "1"])
    raised = embedded_eval.main(["--model", str(pointing_dir), "--videos", "1", "--point-prior", "0", "50"])
    assert raised["args"]["point_prior"] == [0.0, 50.0] and raised["rows"] != base["rows"]
    assert not any(r["empty"] for r in raised["rows"])
    with pytest.raises(SystemExit):
        embedded_eval.main(["--model", str(model_dir), "--videos", "1", "--point-prior", "1", "0"])
    # --presence-threshold: a threshold no map reaches says "no target" for every text: every mask empty
    gated = embedded_eval.main(["--model", str(pointing_dir), "--videos", "1", "--presence-threshold", "1e9"])
    assert all(r["empty"] for r in gated["rows"]) and gated["no_target_empty_rate"] in (1.0, None)
    off = embedded_eval.main(["--model", str(pointing_dir), "--videos", "1", "--presence-threshold", "none"])
    assert off["rows"] == base["rows"]
    with pytest.raises(SystemExit):  # not a number
        embedded_eval.main(["--model", str(pointing_dir), "--videos", "1", "--presence-threshold", "high"])
    with pytest.raises(SystemExit):  # no pointing head
        embedded_eval.main(["--model", str(model_dir), "--videos", "1", "--presence-threshold", "none"])


def test_oracle_prior_points_at_the_target_on_the_real_prior_grid(model_dir, tmp_path):
    probe = _load("oracle_prior")
    synth = generate_video(3, config=WorldConfig(min_frames=20, max_frames=22))
    model = MomentSegModel.from_pretrained(model_dir)
    model.add_pointing_head()
    pipe = probe.OraclePrior(model, device="cpu")
    pipe.truth = synth
    video = open_video(synth.frames, fps=synth.fps)
    real = MomentSeg(model, device="cpu").seg_prompt(video, synth.expressions[0].text, [0, 5])[2]
    ctx = pipe._context_indices(video)
    for exp in synth.expressions:
        oracle = pipe.oracle(video, exp.text)
        assert oracle.maps.shape == real.maps.shape and np.array_equal(oracle.frame_patch, real.frame_patch)
        shown = synth.expression_masks(exp)[ctx].any()
        assert bool((oracle.maps > 0).any()) == bool(shown)  # positive only where the target is
        assert float(oracle.maps.min()) == -pipe.gain
    out = probe.main(["--model", str(model_dir), "--videos", "1", "--gain", "4", "--json", str(tmp_path / "o.json")])
    assert out["oracle"]["4.0"]["expressions"] == out["model"]["expressions"] > 0
    pipe.scale = 2  # a finer true map: twice the tokens per side, the same patches
    assert pipe.oracle(video, synth.expressions[0].text).maps.shape == (real.maps.shape[0], *(2 * n for n in
                                                                                              real.maps.shape[1:]))
    pipe.scale = 1
    exp = next(e for e in synth.expressions if e.moments)
    context = pipe.context_frames(video)
    for where in ("inside", "outside", "presence"):
        pipe.where = where
        got = pipe._seg_prompt_group(video, [exp.text], [0, 5], context, False)[0]
        own = MomentSeg(model, device="cpu")._seg_prompt_group(video, [exp.text], [0, 5], context, False)[0]
        assert got.present  # the truth says: a target
        if where == "presence":
            assert torch.equal(got.prior.maps, own.prior.maps)
            continue
        inside = torch.as_tensor(pipe._inside(video, exp, len(real.maps)))
        true = pipe.oracle(video, exp.text).maps
        use = inside if where == "inside" else ~inside
        assert torch.equal(got.prior.maps[use], true[use]) and torch.equal(got.prior.maps[~use], own.prior.maps[~use])
    with pytest.raises(SystemExit):  # a finer grid is for the true map everywhere only
        probe.main(["--model", str(model_dir), "--videos", "1", "--where", "inside", "--scale", "2"])


def test_pointing_features_probe_caches_the_seg_pass_and_scores_heads(tmp_path):
    probe = _load("pointing_features_probe")
    torch.manual_seed(0)
    model = MomentSegModel.tiny(caption_vocabulary())
    model.add_pointing_head()
    model.eval()
    cache = probe.collect(model, "val", 3, seed=1)  # raises unless the cells merge into the video tokens
    n, t, h, w, _ = cache["tokens"].shape
    assert n == 3 and cache["cells"].shape[1:4] == (t, 2 * h, 2 * w) and cache["tgt_fine"].shape[2:] == (2 * h, 2 * w)
    shipped = probe.make_head("shipped", model, cache).eval()
    with torch.no_grad():  # the batched probe head is the model's own head
        got = probe.head_maps(shipped, cache, slice(0, 3))
        for i in range(n):
            own = model.pointing_head(cache["tokens"][i].float().reshape(-1, cache["tokens"].shape[-1]), (t, h, w),
                                      cache["query"][i][None])[0]
            assert torch.allclose(got[i], own, atol=1e-4)

    class Oracle:  # maps = the target's share: every scored patch is a hit, every target expression ranks first
        fine = False

        def maps(self, tokens, cells, queries):
            return self.truth

    oracle = Oracle()
    oracle.truth = cache["obj"] * cache["tgt"]
    s = probe.score(oracle, cache)
    assert s["patches"] > 0 and s["hit"] == 1.0 and 0 < s["chance"] < 1
    oracle.truth = -oracle.truth  # the opposite: never a hit
    assert probe.score(oracle, cache)["hit"] == 0.0
    model.save_pretrained(tmp_path / "m")
    out = probe.main(["--model", str(tmp_path / "m"), "--train", "4", "--val", "3", "--steps", "2",
                      "--json", str(tmp_path / "p.json")])
    assert set(out["variants"]) == set(probe.VARIANTS)
    assert json.loads((tmp_path / "p.json").read_text())["variants"]["cells-fine"]["loss_last_100"] > 0


def test_mask_errors_splits_a_mask_into_target_other_objects_and_background(model_dir):
    probe = _load("mask_errors")
    gt = np.zeros((4, 6, 6), bool)
    gt[:3, :2, :2] = True  # the target: visible in frames 0-2 (4 pixels)
    other = np.zeros((4, 6, 6), bool)
    other[:, 4:, 4:] = True  # another object: 4 pixels, every frame
    pred = np.zeros((4, 6, 6), bool)
    pred[0, :2, :2] = True  # frame 0: the target exactly
    pred[1, 4:, 4:] = True  # frame 1: only the other object (missed)
    # frame 2: empty while the target shows; frame 3: the target gone, 2 target-free background pixels
    pred[3, 2, 2:4] = True
    s = probe.mask_split(gt, pred, gt | other)
    assert s["empty"] == pytest.approx(1 / 3) and s["missed"] == pytest.approx(1 / 3)
    assert s["other_objects"] == pytest.approx((0 + 1 + 0) / 3) and s["background"] == pytest.approx(1 / 3)
    assert s["J"] == pytest.approx(0.25)  # 1, 0, 0, 0 (a frame with no target and a mask scores 0)
    assert s["J_without_others"] == pytest.approx(0.25)  # frame 1 becomes empty: J 0 still
    prior = torch.tensor([[[3.0, -1.0, 2.0]]])
    target, objects = torch.tensor([[[0.5, 0.0, 0.0]]]), torch.tensor([[[0.5, 0.4, 0.3]]])
    assert probe.token_signs(prior, target, objects) == (1.0, 0.5)  # one target token, two other-object ones
    out = probe.main(["--model", str(model_dir), "--videos", "1", "--split", "val"])
    assert out["all"]["n"] == len(out["rows"]) > 0 and 0 <= out["all"]["J"] <= 1
    assert all(r["J_independent"] is not None for r in out["rows"])
    assert not any("J_true_keyframes" in r for r in out["rows"])  # no track size: the keyframes are not split off


def test_mask_errors_tracks_from_the_true_keyframes_with_a_track_size(tmp_path):
    """With a sam2_track_size, mask_errors reports J on the keyframes and J tracked from the true keyframe masks;
    the latter's keyframes are the true masks (a mask prompt is that frame's output)."""
    probe = _load("mask_errors")
    torch.manual_seed(0)
    model = MomentSegModel.tiny(caption_vocabulary())
    model.config.sam2_track_size = 2 * model.config.sam2_image_size
    synth = generate_video(3, config=WorldConfig(min_frames=20, max_frames=20))
    exp = next(e for e in synth.expressions if e.obj_ids)
    gt = synth.expression_masks(exp)
    keys = [int(k) for k in np.flatnonzero(gt.any(axis=(1, 2)))[[0, -1]]]
    pixels = preprocess_for_sam2(synth.frames, model.config.track_image_size)
    with torch.no_grad():
        tracked = probe.track_from_masks(model.tracker, pixels, gt, keys, keys[-1])
    assert tracked.shape == gt.shape and tracked.dtype == bool
    for k in keys:
        assert (tracked[k] & gt[k]).sum() / (tracked[k] | gt[k]).sum() > 0.7
    model.save_pretrained(tmp_path / "m")
    out = probe.main(["--model", str(tmp_path / "m"), "--videos", "1", "--split", "val"])
    kept = [r for r in out["rows"] if not r["gated"]]
    assert kept and all(0 <= r["J_keyframes"] <= 1 and 0 <= r["J_true_keyframes"] <= 1 for r in kept)
    assert 0 <= out["all"]["J_true_keyframes"] <= 1
