"""`momentseg demo` without the model: a stand-in pipeline with one confident and one never-confident curve.

Checks the "no confident moment" path (table, similarity plot, overlay text, result.json flag), the demo's
numbers, and that the overlay of the 160x120 demo video is upscaled for display while masks keep its size.
"""

import json

import numpy as np
import pytest
from PIL import Image

from momentseg.apps.demo import (
    NO_TARGET_FOUND,
    OVERLAY_MIN_WIDTH,
    TABLE_COLUMNS,
    DemoScore,
    demo_video,
    run_demo,
)
from momentseg.grounding.moments import (
    DEFAULT_THRESHOLD,
    NO_CONFIDENT_MOMENT,
    ground_moments,
    has_confident_moment,
)
from momentseg.io.video import open_video
from momentseg.pipeline import ExpressionResult, Grounding, SegmentResult

SEED = 0


class ArrayMasks:
    """The mask interface the demo and ``SegmentResult.save`` use, over a ``(T, H, W)`` array."""

    def __init__(self, masks: np.ndarray):
        self.masks = np.asarray(masks, dtype=bool)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, t):
        return self.masks[t]

    def to_array(self) -> np.ndarray:
        return self.masks

    def areas(self) -> np.ndarray:
        return self.masks.sum(axis=(1, 2))


class FakePipe:
    """Expression 0: p = 0.9 inside its true moment (confident, masks = truth); the others: p stays at the
    threshold (never above it: the whole-video fallback), masks empty."""

    def __init__(self, seed: int = SEED):
        self.synth = demo_video(seed)
        self.calls = 0

    def segment(self, video, texts, progress=None):
        self.calls += 1
        ts = np.asarray(video.timestamps)
        by_text = {e.text: e for e in self.synth.expressions}
        results = []
        for k, text in enumerate(texts):
            exp = by_text[text]
            if k == 0:
                start, end = exp.moments[0]
                p = np.where((ts >= start - 1e-9) & (ts < end - 1e-9), 0.9, 0.1)
                masks = self.synth.expression_masks(exp)
            else:
                p = np.full(len(ts), DEFAULT_THRESHOLD)
                masks = np.zeros((len(ts), video.height, video.width), dtype=bool)
            moments = ground_moments(p, ts, frame_duration=1.0 / video.fps)
            grounding = Grounding(text, moments, p, np.arange(len(ts)), has_confident_moment(p))
            keyframes = np.array([int(np.argmax(p))])
            results.append(ExpressionResult(text, grounding, keyframes, int(keyframes[0]), "", ArrayMasks(masks),
                                            np.zeros(len(ts)), present=k == 0))
        return SegmentResult(video, results, {})


def test_has_confident_moment_is_strictly_above_the_threshold():
    ts = np.arange(5.0)
    flat = np.full(5, DEFAULT_THRESHOLD)
    assert not has_confident_moment(flat)
    assert ground_moments(flat, ts)[0][:2] == [0.0, 5.0]  # the whole-video fallback
    bump = flat.copy()
    bump[2] += 1e-3
    assert has_confident_moment(bump)
    assert ground_moments(bump, ts)[0][:2] == [2.0, 3.0]
    assert has_confident_moment([0.35], threshold=0.3) and not has_confident_moment([0.35], threshold=0.5)


def test_demo_scores_and_no_confident_moment(tmp_path):
    pipe = FakePipe()
    synth, scores = run_demo(pipe, SEED, tmp_path / "out")
    assert pipe.calls == 1 and len(scores) >= 2
    sure, unsure = scores[0], scores[1]
    # the confident expression: its moment is the truth, masks = truth
    assert sure.confident and sure.moment == pytest.approx(sure.truth[0])
    assert sure.tiou == pytest.approx(1.0) and sure.jf == pytest.approx(1.0)
    row = sure.row()
    assert len(row) == len(TABLE_COLUMNS)
    assert row[1] == f"{sure.truth[0][0]:.1f}-{sure.truth[0][1]:.1f}" and row[3:5] == ["1.00", "100.0"]
    # the never-confident one: no moment shown, tIoU 0 (not the whole video's overlap with the truth)
    assert not unsure.confident and unsure.tiou == 0.0
    assert unsure.row()[1] == NO_CONFIDENT_MOMENT and unsure.row()[3] == "0.00"
    assert sure.present and NO_TARGET_FOUND not in row[0] and unsure.row()[0].endswith(NO_TARGET_FOUND)
    # result.json carries the flag; the fallback window is still there for TSG evaluation
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    flags = [e["confident"] for e in result["expressions"]]
    assert flags[:2] == [True, False]
    assert result["expressions"][1]["moments"][0][:2] == [0.0, pytest.approx(synth.num_frames / synth.fps)]


def test_demo_score_row_is_checkable():
    s = DemoScore("the cross", (1.4, 2.0), [(1.0, 2.0)], 0.6, 0.5, 0.7)
    assert s.row() == ["the cross", "1.4-2.0", "1.0-2.0", "0.60", "60.0", "50.0", "70.0"]
    assert DemoScore("x", (0.0, 5.0), [(1.0, 2.0)], 0.0, 0.5, 0.7, confident=False).row()[1] == NO_CONFIDENT_MOMENT
    gated = DemoScore("the cross", (1.4, 2.0), [(1.0, 2.0)], 0.6, 0.0, 0.0, present=False).row()
    assert gated[0] == f"the cross {NO_TARGET_FOUND}" and gated[4] == "0.0"


def test_similarity_plot_draws_no_span_without_a_confident_moment(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from momentseg.io.plot import write_similarity_plot

    spans, texts = [], []
    axvspan, text = Axes.axvspan, Axes.text

    def spy_axvspan(ax, *args, **kwargs):
        spans.append(ax)
        return axvspan(ax, *args, **kwargs)

    def spy_text(ax, x, y, s, *args, **kwargs):
        texts.append((ax, s))
        return text(ax, x, y, s, *args, **kwargs)

    monkeypatch.setattr(Axes, "axvspan", spy_axvspan)
    monkeypatch.setattr(Axes, "text", spy_text)
    pipe = FakePipe()
    synth = pipe.synth
    exps = [e for e in synth.expressions if e.obj_ids and e.moments][:2]
    result = pipe.segment(open_video(synth.frames, fps=synth.fps), [e.text for e in exps])
    write_similarity_plot(tmp_path / "similarity.png", result)
    assert (tmp_path / "similarity.png").stat().st_size > 0
    titles_with_span = {ax.get_title(loc="left") for ax in spans}
    assert exps[0].text in titles_with_span and exps[1].text not in titles_with_span
    notes = [(ax.get_title(loc="left"), s) for ax, s in texts if NO_CONFIDENT_MOMENT in s]
    assert [t for t, _ in notes] == [exps[1].text]


def test_demo_cli_table_overlay_and_masks(tmp_path, cli, monkeypatch, capsys):
    import av

    import momentseg.cli.demo as demo_cli

    monkeypatch.setenv("COLUMNS", "240")  # one line per table row
    monkeypatch.setattr(demo_cli, "load_pipeline", lambda model, device: FakePipe())
    out = tmp_path / "demo"
    assert cli(["demo", "--seed", SEED, "--out", out]) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if NO_CONFIDENT_MOMENT in line]
    assert lines and "0.00" in lines[0] and "tIoU" in printed and "J&F" in printed
    # the fake's second expression has no target: its row and the caption say so (not eaten as rich markup)
    assert NO_TARGET_FOUND in lines[0] and printed.count(NO_TARGET_FOUND) == 2
    synth = demo_video(SEED)
    assert synth.frames.shape[1:3] == (120, 160)
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.width >= OVERLAY_MIN_WIDTH >= 480
        assert stream.codec_context.width == 480  # 160 px x 3 (whole factor), aspect kept
    mask_file = sorted((out / "masks" / "0").glob("*.png"))[0]
    assert Image.open(mask_file).size == (160, 120)


def test_overlay_min_width_upscales_only_small_videos(tmp_path):
    import av

    from momentseg.io.overlay import write_overlay

    frames = np.zeros((3, 120, 160, 3), dtype=np.uint8)
    masks = np.zeros((3, 120, 160), dtype=bool)
    masks[:, 10:20, 30:50] = True
    video = open_video(frames, fps=10)
    for min_width, width in ((0, 160), (480, 480), (500, 640), (100, 160)):
        path = tmp_path / f"o{min_width}.mp4"
        write_overlay(path, video, [masks], ["x"], [[(0.0, 0.1)]], min_width=min_width)
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
        assert frame.shape[1] == width
        assert frame.shape[0] > 120 * width // 160  # the frame, upscaled with its aspect, plus the text panel
