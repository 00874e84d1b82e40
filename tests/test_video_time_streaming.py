"""Time and streaming (issue 18): damaged-video warning, VFR overlays, --fps / fps= for frame folders, mask
names that follow the input frames, and ``segment(out=DIR)`` streaming the same masks as the in-memory result."""

import json
import logging
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from momentseg.data.synthetic import caption_vocabulary
from momentseg.errors import InputError
from momentseg.io.masks import MaskSequence, PngMasks
from momentseg.io.video import open_video
from momentseg.model.momentseg import MomentSegModel
from momentseg.pipeline import MomentSeg

H, W = 48, 64


def frame(i: int) -> np.ndarray:
    """A frame with a bright square that moves with ``i`` over a gradient."""
    out = np.zeros((H, W, 3), np.uint8)
    out[..., 0] = np.linspace(30, 120, W, dtype=np.uint8)[None, :]
    out[..., 2] = 90
    x = (i * 3) % (W - 12)
    out[16:28, x : x + 12] = (230, 40, 40)
    return out


def encode(path, n, **options):
    """Write ``n`` of :func:`frame` with test_io_video's PyAV writer (same options: codec, rate, pts, time_base)."""
    from test_io_video import encode as encode_frames

    return encode_frames(path, [frame(i) for i in range(n)], **options)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    MomentSegModel.tiny(caption_vocabulary()).save_pretrained(d)
    return MomentSeg.from_pretrained(d, device="cpu")


@pytest.fixture(scope="module")
def model_dir(pipe, tmp_path_factory):
    d = tmp_path_factory.mktemp("model2")
    pipe.model.save_pretrained(d)
    return d


# ------------------------------------------------------------------ damaged files
@pytest.mark.parametrize(("suffix", "codec"), [(".avi", "mpeg4"), (".webm", "libvpx-vp9"), (".mkv", "libx264")])
def test_truncated_video_warns_on_one_line(tmp_path, caplog, suffix, codec):
    full = encode(tmp_path / f"full{suffix}", 240, codec=codec, rate=25, options={"g": "8"})  # > AVI's header
    with caplog.at_level(logging.WARNING, logger="momentseg.io.video"):
        assert len(open_video(full)) == 240
    assert not caplog.records  # an intact file: no warning
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="momentseg.io.video"):
        video = open_video(cut)
    assert 0 < len(video) < 240
    [record] = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING and message.startswith("warning: ") and "\n" not in message
    assert str(cut) in message and "truncated" in message and f"{len(video)} frames" in message


def test_cli_prints_the_damage_warning_as_one_line(tmp_path):
    full = encode(tmp_path / "full.webm", 60, codec="libvpx-vp9", rate=25, options={"g": "8"})
    cut = tmp_path / "cut.webm"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "momentseg", "ground", str(cut), "--query", "the red square",
                           "--json", "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: video ") and "cut.webm" in lines[0], proc.stderr
    assert json.loads(proc.stdout)["pred_relevant_windows"]


def test_variable_rate_mp4_with_b_frames_does_not_warn(tmp_path, caplog):
    """An mp4 header may declare less time than a VFR B-frame stream holds: nothing is lost, no warning."""
    pts = [0, 40, 120, 130, 200, 210, 400, 433, 500, 1000, 1010, 1200, 3000, 3033]
    path = encode(tmp_path / "vfr.mp4", len(pts), pts=pts, time_base=Fraction(1, 1000))
    with caplog.at_level(logging.WARNING, logger="momentseg.io.video"):
        assert open_video(path).timestamps.tolist() == [p / 1000 for p in pts]
    assert not caplog.records


# ------------------------------------------------------------------ VFR overlay
def test_overlay_keeps_each_frames_timestamp(pipe, tmp_path):
    # 40 frames: 30 fps, then a slow stretch (frame 30 at 3.0 s), then 30 fps again
    ts = [i / 30 for i in range(15)] + [0.5 + (i - 15) * 2.5 / 15 for i in range(15, 31)]
    ts += [3.0 + (i - 30) / 30 for i in range(31, 40)]
    pts = [round(t * 1000) for t in ts]
    src = encode(tmp_path / "vfr.mkv", len(pts), pts=pts, time_base=Fraction(1, 1000))
    video = open_video(src)
    assert video.timestamps[30] == 3.0
    out = tmp_path / "out"
    result = pipe.segment(src, "the red square", keyframes=3, out=out, overlay=True)
    overlay = open_video(out / "overlay.mp4")
    assert len(overlay) == 40
    np.testing.assert_allclose(overlay.timestamps, np.asarray(pts) / 1000, atol=1e-3)
    assert abs(overlay.timestamps[30] - 3.0) < 1e-3  # was 30 / average fps = 2.01 s
    # the PTS as stored in the container, read back directly
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        stored = sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None)
    np.testing.assert_allclose(np.asarray(stored) - stored[0], np.asarray(pts) / 1000, atol=1e-3)
    saved = json.loads((out / "result.json").read_text())
    assert saved["video"]["timestamps"][30] == 3.0 and len(result.expressions[0].masks) == 40


# ------------------------------------------------------------------ frame folders: --fps, names
@pytest.fixture
def frame_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(frame(i)).save(folder / f"img_{i + 7:04d}.jpg", quality=95)
    (folder / "notes.txt").write_text("not a frame")
    return folder


def test_segment_frame_folder_with_fps_names_masks_after_the_frames(cli, model_dir, frame_folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli(["segment", frame_folder, "--text", "the red square", "--fps", "10", "--keyframes", "3",
                "--out", out, "--model", model_dir, "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    names = [f"img_{i + 7:04d}" for i in range(20)]
    result = json.loads((out / "result.json").read_text())
    assert result["video"]["fps"] == 10.0
    assert result["video"]["timestamps"] == [round(i / 10, 6) for i in range(20)]
    assert result["video"]["frame_names"] == names
    assert result["masks"] == "masks/<expression index>/<frame name>.png"
    assert sorted(p.name for p in (out / "masks" / "0").iterdir()) == [f"{n}.png" for n in names]
    for s, e, _ in result["expressions"][0]["moments"]:
        assert 0 <= s < e <= 2.0 + 1e-6
    areas = [int((np.asarray(Image.open(out / "masks" / "0" / f"{n}.png")) > 0).sum()) for n in names]
    assert areas == result["expressions"][0]["mask_area"]


def test_fps_changes_the_reported_seconds(cli, model_dir, pipe, frame_folder, capsys):
    windows = {}
    for fps in (None, 5.0):
        args = ["ground", frame_folder, "--query", "the red square", "--json", "--model", model_dir]
        assert cli(args + ([] if fps is None else ["--fps", str(fps)])) == 0
        windows[fps] = json.loads(capsys.readouterr().out)["pred_relevant_windows"]
    assert max(e for _, e, _ in windows[None]) <= 20 / 30 + 1e-6  # 20 frames at the default 30 fps
    assert max(e for _, e, _ in windows[5.0]) > 20 / 30  # ... but 4 s at 5 fps
    assert max(e for _, e, _ in windows[5.0]) <= 20 / 5 + 1e-6
    # the API: fps= for segment and ground
    grounding = pipe.ground(frame_folder, "the red square", fps=5.0)
    np.testing.assert_allclose(np.asarray(grounding.moments), np.asarray(windows[5.0]))
    result = pipe.segment(frame_folder, "the red square", keyframes=2, fps=5.0)
    assert result.video.fps == 5.0 and result.video.timestamps[-1] == pytest.approx(19 / 5)


def test_fps_for_a_video_file_is_a_one_line_error(cli, model_dir, pipe, tmp_path, capsys):
    path = encode(tmp_path / "clip.mp4", 10)
    assert cli(["ground", path, "--query", "x", "--fps", "10", "--model", model_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "fps" in err and "\n" not in err
    with pytest.raises(InputError, match="fps"):
        pipe.segment(path, "x", fps=10)
    with pytest.raises(InputError, match="fps"):
        pipe.ground(open_video(path), "x", fps=10)
    with pytest.raises(InputError, match="overlay"):
        pipe.segment(path, "x", overlay=True)


# ------------------------------------------------------------------ streaming
def test_segment_out_streams_the_same_masks_as_in_memory(pipe, tmp_path):
    path = encode(tmp_path / "clip.mp4", 36)
    texts = ["the red square", "the blue background"]
    in_memory = pipe.segment(path, texts, keyframes=3)
    out = tmp_path / "streamed"
    streamed = pipe.segment(path, texts, keyframes=3, out=out)
    saved = tmp_path / "saved"
    in_memory.save(saved)
    assert json.loads((out / "result.json").read_text()) == json.loads((saved / "result.json").read_text())
    for k in range(2):
        a, b = in_memory.expressions[k].masks, streamed.expressions[k].masks
        assert type(a) is MaskSequence and isinstance(b, PngMasks) and isinstance(b, MaskSequence)
        assert b._rles is None  # streamed: nothing per frame is held but the areas
        assert b.folder == out.absolute() / "masks" / str(k)
        names = sorted(p.name for p in (out / "masks" / str(k)).iterdir())
        assert names == [f"{t:05d}.png" for t in range(36)]
        assert names == sorted(p.name for p in (saved / "masks" / str(k)).iterdir())
        for name in names:
            assert (out / "masks" / str(k) / name).read_bytes() == (saved / "masks" / str(k) / name).read_bytes()
        assert len(b) == len(a) == 36
        np.testing.assert_array_equal(b.to_array(), a.to_array())
        np.testing.assert_array_equal(b[5], a[5])
        np.testing.assert_array_equal(b.areas(), a.areas())
        assert b.rles == a.rles  # the RLE view still works (encoded on demand)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
