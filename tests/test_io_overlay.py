"""momentseg.io.overlay: the mp4 writer and the mask/expression/moment overlay writer."""

from __future__ import annotations

import numpy as np
import pytest

from momentseg.io import overlay
from momentseg.io.overlay import PALETTE, paint_mask, write_overlay, write_video
from momentseg.io.video import open_video

GREY = 100


def index_frame(i: int, h: int, w: int) -> np.ndarray:
    """Index ``i`` written as 6 black/white vertical blocks (bit 0 leftmost)."""
    frame = np.zeros((h, w, 3), np.uint8)
    block = w // 6
    for b in range(6):
        if (i >> b) & 1:
            frame[:, b * block : (b + 1) * block] = 220
    return frame


def read_index(frame: np.ndarray) -> int:
    block = frame.shape[1] // 6
    return sum(
        1 << b
        for b in range(6)
        if frame[:, b * block + block // 4 : (b + 1) * block - block // 4].mean() > 110
    )


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_write_video_round_trip_with_odd_size(tmp_path, monkeypatch, codec):
    monkeypatch.setattr(overlay, "_pick_codec", lambda: codec)
    path = tmp_path / "out.mp4"
    n = write_video(path, (index_frame(i, 47, 61) for i in range(40)), fps=12.5)
    assert n == 40
    video = open_video(path)
    assert len(video) == 40 and (video.height, video.width) == (48, 62)  # padded to even
    assert video.fps == pytest.approx(12.5)
    frames = video.get_frames()
    assert [read_index(f[:47, :61]) for f in frames] == list(range(40))
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "a.mp4", [], fps=10)
    with pytest.raises(ValueError, match="frame 1"):
        write_video(
            tmp_path / "b.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], fps=10
        )
    assert list(tmp_path.iterdir()) == []


class LazyMasks:
    """A mask source decoded on demand (like the pipeline's), recording which frames were read."""

    def __init__(self, masks: np.ndarray):
        self.masks, self.read = masks, []

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int) -> np.ndarray:
        self.read.append(i)
        return self.masks[i]


def near(pixels: np.ndarray, colour, tol: float = 30) -> bool:
    return bool(np.abs(pixels.reshape(-1, 3).mean(0) - np.asarray(colour, float)).max() < tol)


def grey_video(t=20, h=64, w=80):
    return open_video(np.full((t, h, w, 3), GREY, np.uint8), fps=10)


def test_overlay_colours_masks_where_they_are(tmp_path):
    video = grey_video()
    first = np.zeros((20, 64, 80), bool)
    first[5:10, 8:40, 8:40] = True  # object 1 only in frames 5..9
    second = np.zeros((20, 64, 80), np.uint8)
    second[:, 40:60, 50:76] = 1  # object 2 everywhere, given as 0/1 uint8
    lazy = LazyMasks(second)
    n = write_overlay(
        tmp_path / "over.mp4",
        video,
        [first, lazy],
        ["a red thing", "a green thing"],
        moments=[[(0.5, 0.9)], []],
    )
    assert n == 20 and lazy.read == list(range(20))
    out = open_video(tmp_path / "over.mp4")
    assert len(out) == 20 and out.width == 80 and out.height > 64  # panel added below the frame
    frames = out.get_frames()
    blend = lambda c: [GREY * (1 - overlay.MASK_ALPHA) + v * overlay.MASK_ALPHA for v in c]  # noqa: E731
    assert near(frames[7, 14:34, 14:34], blend(PALETTE[0]))  # inside object 1, away from the contour
    assert near(frames[2, 14:34, 14:34], (GREY,) * 3, tol=6)  # object 1 absent in frame 2
    assert near(frames[7, 44:56, 56:70], blend(PALETTE[1]))
    assert near(frames[7, 0:6, 44:48], (GREY,) * 3, tol=6)  # untouched background
    # The contour is drawn in the full colour.
    assert near(frames[7, 20:30, 8:9], PALETTE[0], tol=45)
    # The timeline bar highlights the moment (0.5 s .. 0.9 s of 2 s) in the expression's colour.
    panel = frames[0, 64:]
    hits = np.abs(panel.astype(int) - np.asarray(PALETTE[0])).max(-1) < 40
    cols = np.nonzero(hits.any(0))[0]
    assert cols.size and 0.2 * 80 <= np.median(cols) <= 0.5 * 80


def test_overlay_in_moment_label_and_resize(tmp_path):
    video = grey_video(t=10)
    masks = np.zeros((10, 64, 80), bool)
    masks[:, 16:48, 20:60] = True
    write_overlay(tmp_path / "big.mp4", video, [masks], ["x"], moments=[[(0.0, 0.3)]], size=(128, 160))
    out = open_video(tmp_path / "big.mp4")
    assert out.width == 160 and len(out) == 10
    frames = out.get_frames([1, 8])
    assert near(frames[0, 40:90, 50:110], [GREY * 0.5 + v * 0.5 for v in PALETTE[0]])
    # Frame 1 (0.1 s) is inside the moment, frame 8 (0.8 s) is not: their text lines differ
    # ("[in moment]" is appended) while the frame area is the same.
    text_rows = slice(128, 128 + 12)
    assert np.abs(frames[0, text_rows, 40:].astype(int) - frames[1, text_rows, 40:]).max() > 60
    assert np.abs(frames[0, :120].astype(int) - frames[1, :120]).max() < 20


def test_paint_mask_blends_and_outlines():
    frame = np.full((10, 10, 3), 100, np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    paint_mask(frame, mask, (200, 0, 0))
    assert frame[0, 0].tolist() == [100, 100, 100]
    assert frame[2, 5].tolist() == [200, 0, 0] and frame[3, 5].tolist() == [200, 0, 0]  # 2 px contour
    assert frame[5, 5].tolist() == [150, 50, 50]


def test_overlay_failure_leaves_no_file(tmp_path):
    video = grey_video()
    target = tmp_path / "over.mp4"
    target.write_bytes(b"previous result")

    class Broken(LazyMasks):
        def __getitem__(self, i):
            if i == 7:
                raise RuntimeError("mask decode failed")
            return super().__getitem__(i)

    with pytest.raises(RuntimeError, match="mask decode failed"):
        write_overlay(target, video, [Broken(np.zeros((20, 64, 80), bool))], ["x"])
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["over.mp4"]


def test_overlay_argument_checks(tmp_path):
    video = grey_video()
    masks = np.zeros((20, 64, 80), bool)
    with pytest.raises(ValueError, match="texts"):
        write_overlay(tmp_path / "a.mp4", video, [masks], ["a", "b"])
    with pytest.raises(ValueError, match="19 masks"):
        write_overlay(tmp_path / "a.mp4", video, [masks[:19]], ["a"])
    with pytest.raises(ValueError, match="expected"):
        write_overlay(tmp_path / "a.mp4", video, [np.zeros((20, 32, 80), bool)], ["a"])
    with pytest.raises(ValueError, match="ends before"):
        write_overlay(tmp_path / "a.mp4", video, [masks], ["a"], moments=[[(1.0, 0.5)]])
    assert list(tmp_path.iterdir()) == []
