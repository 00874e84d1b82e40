"""momentseg.io.video: frame-exact decoding of files, frame folders and arrays; errors name the input."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from momentseg.errors import InputError
from momentseg.io.video import DEFAULT_FPS, open_video

H, W = 64, 96
BITS = 8


def pattern(i: int, h: int = H, w: int = W) -> np.ndarray:
    """A frame whose index is written as 8 big black/white blocks (bit 0 leftmost), tinted so it is RGB."""
    frame = np.zeros((h, w, 3), np.uint8)
    block = w // BITS
    for b in range(BITS):
        if (i >> b) & 1:
            frame[:, b * block : (b + 1) * block] = 230
    frame[: h // 4, :, 0] = 40  # a red-less top strip: checks channel order survives
    return frame


def read_index(frame: np.ndarray) -> int:
    """Recover the index from a (possibly lossy, possibly resized) ``pattern`` frame."""
    h, w = frame.shape[:2]
    block = w / BITS
    value = 0
    for b in range(BITS):
        x0, x1 = int(b * block + block / 4), int((b + 1) * block - block / 4)
        if frame[h // 2 :, x0 : max(x1, x0 + 1), 1].mean() > 115:
            value |= 1 << b
    return value


def encode(path, frames, *, codec="libx264", rate=30, options=None, pts=None, time_base=None):
    """Write ``frames`` with PyAV directly (keyframe interval and timestamps under the test's control)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if options:
            stream.options = options
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i if pts is None else pts[i]
            if time_base is not None:
                frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def h264_file(tmp_path_factory):
    """120 frames, 30 fps, H.264 with B-frames and a keyframe every 12 frames (so seeking is exercised)."""
    path = tmp_path_factory.mktemp("vid") / "clip.mp4"
    return encode(path, [pattern(i) for i in range(120)], options={"g": "12", "keyint_min": "12", "bf": "2"})


def test_file_sequential_decode_is_exact(h264_file):
    video = open_video(h264_file)
    assert len(video) == video.num_frames == 120
    assert (video.height, video.width) == (H, W)
    assert video.fps == pytest.approx(30.0, abs=1e-9)
    np.testing.assert_allclose(video.timestamps, np.arange(120) / 30.0, atol=1e-12)
    assert video.timestamps.dtype == np.float64 and video.timestamps[0] == 0.0
    assert video.frame_names[:2] == ["00000", "00001"] and video.source == str(h264_file)
    frames = video.get_frames()
    assert frames.shape == (120, H, W, 3) and frames.dtype == np.uint8
    assert [read_index(f) for f in frames] == list(range(120))
    assert (
        frames[5, 0, 0, 0] < 60 and frames[5, -1, 0, 0] > 200
    )  # RGB order: red is low only in the top strip
    streamed = [(i, read_index(f)) for i, f in video.iter_frames()]
    assert streamed == [(i, i) for i in range(120)]


def test_random_access_is_frame_exact(h264_file):
    video = open_video(h264_file)
    everything = video.get_frames()
    picked = video.get_frames([37, 3, 37, 90])
    assert [read_index(f) for f in picked] == [37, 3, 37, 90]
    np.testing.assert_array_equal(picked, everything[[37, 3, 37, 90]])  # same pixels as a sequential decode
    rng = np.random.default_rng(0)
    order = [int(i) for i in rng.integers(0, 120, size=25)] + [119, 0, 118, 1]
    got = list(video.iter_frames(order))
    assert [i for i, _ in got] == order  # iter_frames keeps the requested order, going back by seeking
    for i, frame in got:
        np.testing.assert_array_equal(frame, everything[i])


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(".mkv", "libx264"), (".mov", "libx264"), (".webm", "libvpx-vp9"), (".avi", "mpeg4")],
)
def test_other_containers(tmp_path, suffix, codec):
    path = encode(
        tmp_path / f"clip{suffix}", [pattern(i) for i in range(30)], codec=codec, rate=25, options={"g": "8"}
    )
    video = open_video(path)
    assert len(video) == 30 and video.fps == pytest.approx(25.0)
    assert [read_index(f) for f in video.get_frames()] == list(range(30))
    assert [read_index(f) for f in video.get_frames([29, 2, 17])] == [29, 2, 17]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_timestamps_are_exact(tmp_path, suffix):
    pts_ms = [0, 40, 120, 130, 200, 210, 400, 433, 500, 1000, 1010, 1200]
    path = encode(
        tmp_path / f"vfr{suffix}",
        [pattern(i) for i in range(len(pts_ms))],
        pts=pts_ms,
        time_base=Fraction(1, 1000),
    )
    video = open_video(path)
    assert len(video) == len(pts_ms)
    assert video.timestamps.tolist() == [p / 1000 for p in pts_ms]
    assert video.fps == pytest.approx((len(pts_ms) - 1) / 1.2)
    assert [read_index(f) for f in video.get_frames([11, 0, 6])] == [11, 0, 6]


def test_resize_on_decode(h264_file):
    video = open_video(h264_file)
    small = video.get_frames([0, 77], size=(24, 40))
    assert small.shape == (2, 24, 40, 3) and small.dtype == np.uint8
    assert [read_index(f) for f in small] == [0, 77]
    i, frame = next(video.iter_frames([5], size=(31, 17)))
    assert i == 5 and frame.shape == (31, 17, 3)
    assert video.get_frames([], size=(8, 8)).shape == (0, 8, 8, 3)


def test_frame_folder_sorted_numerically(tmp_path):
    names = {"2.png": 2, "10.png": 10, "1.png": 1, "00005.jpg": 5}
    for name, i in names.items():
        Image.fromarray(pattern(i)).save(tmp_path / name, quality=95)
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub.png").mkdir()  # a folder is not a frame either
    video = open_video(tmp_path)
    assert video.frame_names == ["1", "2", "00005", "10"]
    assert [read_index(f) for f in video.get_frames()] == [1, 2, 5, 10]
    assert video.fps == DEFAULT_FPS and video.timestamps.tolist() == [0, 1 / 30, 2 / 30, 3 / 30]
    assert (video.height, video.width) == (H, W) and video.source == str(tmp_path)
    small = open_video(tmp_path, fps=10).get_frames([3, 0], size=(16, 48))
    assert small.shape == (2, 16, 48, 3) and [read_index(f) for f in small] == [10, 1]
    assert open_video(str(tmp_path), fps=10).timestamps.tolist() == [0, 0.1, 0.2, 0.3]


def test_frame_folder_converts_grey_and_rgba(tmp_path):
    Image.fromarray(pattern(3)[:, :, 1]).save(tmp_path / "0.png")  # greyscale
    Image.fromarray(np.dstack([pattern(4), np.full((H, W), 255, np.uint8)])).save(tmp_path / "1.png")
    frames = open_video(tmp_path).get_frames()
    assert frames.shape == (2, H, W, 3) and [read_index(f) for f in frames] == [3, 4]


def test_arrays(tmp_path):
    stack = np.stack([pattern(i) for i in range(6)])
    video = open_video(stack)
    assert len(video) == 6 and video.fps == DEFAULT_FPS and video.source == "<array>"
    out = video.get_frames([4, 1, 4])
    np.testing.assert_array_equal(out, stack[[4, 1, 4]])
    out[0] = 0  # a copy, not a view of the caller's array
    assert stack[4].any()
    listed = open_video(list(stack), fps=5)
    np.testing.assert_allclose(listed.timestamps, np.arange(6) / 5)
    assert listed.get_frames(size=(32, 48)).shape == (6, 32, 48, 3)
    assert [read_index(f) for f in listed.get_frames(size=(32, 48))] == list(range(6))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4, 3), np.float32), []],
)
def test_bad_arrays(bad):
    with pytest.raises(InputError):
        open_video(bad)


def test_list_of_mismatched_frames():
    with pytest.raises(InputError, match="frame 1"):
        open_video([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(InputError, match=r"video not found: '.*nope\.mp4'"):
        open_video(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"cannot decode video '.*empty\.mp4': file is empty"):
        open_video(empty)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match=r"cannot decode video '.*garbage\.mp4'"):
        open_video(garbage)


def test_truncated_file(tmp_path, h264_file):
    data = h264_file.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.mp4"):
        open_video(cut).get_frames()


def test_zero_frame_and_audio_only_containers(tmp_path):
    for name, codec in [("zero.mkv", "libx264"), ("zero.avi", "mpeg4"), ("zero.mp4", "libx264")]:
        with av.open(str(tmp_path / name), "w") as container:
            stream = container.add_stream(codec, rate=30)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            container.start_encoding()
        with pytest.raises(InputError, match=f"cannot decode video '.*{name}'"):
            open_video(tmp_path / name)
    with av.open(str(tmp_path / "sound.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InputError, match=r"sound\.m4a'.*no video stream"):
        open_video(tmp_path / "sound.m4a")


def test_folder_errors(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match=f"no .* frames in folder '{tmp_path}'"):
        open_video(tmp_path)
    Image.fromarray(pattern(0)).save(tmp_path / "0.png")
    (tmp_path / "1.png").write_bytes(b"this is not a png")
    good = Image.fromarray(pattern(2))
    good.save(tmp_path / "2.jpg")
    whole = (tmp_path / "2.jpg").read_bytes()
    (tmp_path / "3.jpg").write_bytes(whole[: len(whole) // 2])  # truncated JPEG
    Image.fromarray(pattern(4, h=32)).save(tmp_path / "4.png")  # wrong size
    video = open_video(tmp_path)
    assert read_index(video.get_frames([0])[0]) == 0 and read_index(video.get_frames([2])[0]) == 2
    with pytest.raises(InputError, match=r"cannot read frame image '.*1\.png'"):
        video.get_frames([1])
    with pytest.raises(InputError, match=r"cannot read frame image '.*3\.jpg'"):
        video.get_frames([3])
    with pytest.raises(InputError, match=r"frame image '.*4\.png' is 96x32"):
        video.get_frames([4])


def test_out_of_range_index_and_fps_for_file(h264_file):
    video = open_video(h264_file)
    with pytest.raises(InputError, match=r"frame index 120 out of range for '.*clip\.mp4' with 120 frames"):
        video.get_frames([3, 120])
    with pytest.raises(InputError, match="frame index -1"):
        list(video.iter_frames([-1]))
    with pytest.raises(InputError, match="fps"):
        open_video(h264_file, fps=25)
    with pytest.raises(InputError, match="fps"):
        open_video(np.zeros((1, 2, 2, 3), np.uint8), fps=0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file(tmp_path, h264_file):
    path = tmp_path / "locked.mp4"
    path.write_bytes(h264_file.read_bytes())
    path.chmod(0)
    with pytest.raises(InputError, match=r"locked\.mp4"):
        open_video(path)


def test_frames_are_fresh_writable_arrays(tmp_path, h264_file):
    for i in range(3):
        Image.fromarray(pattern(i)).save(tmp_path / f"{i}.png")
    for source in (h264_file, tmp_path, np.stack([pattern(i) for i in range(3)])):
        video = open_video(source)
        got = list(video.iter_frames([2, 2, 0], size=(32, 48))) + list(video.iter_frames([1]))
        assert [i for i, _ in got] == [2, 2, 0, 1]
        for _, frame in got:
            assert frame.flags.writeable and frame.flags.c_contiguous and frame.shape[-1] == 3
        got[0][1][:] = 0  # changing one yielded frame does not change another
        assert read_index(got[1][1]) == 2
