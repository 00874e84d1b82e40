"""Peak memory and time of decoding a whole video at low resolution with ``Video.iter_frames``.

Generates two synthetic videos with :func:`momentseg.io.overlay.write_video` in a temporary folder — a long
one (``--frames``, default 5,000) and a short one (``--compare``, default 500) at ``--height`` x ``--width``
(default 480 x 854) — then decodes each in a fresh subprocess at ``--size`` (default 112 x 112) and reports
the peak resident memory growth (``VmHWM`` at the end minus ``VmRSS`` before opening the video, after
importing PyAV, from ``/proc/self/status``) and the time to index (demux pass) and to decode. Memory
should not grow with the number of frames.

    python benchmarks/video_decode_memory.py [--frames 5000] [--compare 500] [--height 480] [--width 854]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def synthetic_frames(n: int, height: int, width: int):
    """``n`` frames of a textured scene with a moving square (cheap to make, realistic enough to encode)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) % 64) * 4], -1).astype(np.uint8)
    side = height // 4
    for i in range(n):
        frame = np.roll(base, i * 3, axis=1)
        y, x = (i * 5) % (height - side), (i * 7) % (width - side)
        frame[y : y + side, x : x + side] = (255, 255 - i % 256, i % 256)
        yield frame


def decode_in_this_process(path: str, size: tuple[int, int]) -> dict:
    import av  # noqa: F401  (loaded first so its shared libraries are not counted as decode memory)

    from momentseg.io.video import open_video

    rss_before = proc_status_kb("VmRSS")
    t0 = time.perf_counter()
    video = open_video(path)
    t1 = time.perf_counter()
    checksum = 0
    count = 0
    for _, frame in video.iter_frames(size=size):
        checksum += int(frame[0, 0, 0])
        count += 1
    t2 = time.perf_counter()
    return {
        "frames": count,
        "num_frames": video.num_frames,
        "index_s": round(t1 - t0, 3),
        "decode_s": round(t2 - t1, 3),
        "decode_fps": round(count / (t2 - t1), 1),
        "rss_before_mib": round(rss_before / 1024, 1),
        "peak_rss_mib": round(proc_status_kb("VmHWM") / 1024, 1),
        "peak_growth_mib": round((proc_status_kb("VmHWM") - rss_before) / 1024, 1),
        "checksum": checksum,
    }


def decode_in_subprocess(path: Path, size: tuple[int, int]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--decode", str(path), "--size", str(size[0]), str(size[1])],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000, help="frames of the long video")
    parser.add_argument("--compare", type=int, default=500, help="frames of the short video to compare with")
    parser.add_argument("--height", type=int, default=480, help="height of the generated videos")
    parser.add_argument("--width", type=int, default=854, help="width of the generated videos")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the generated videos")
    parser.add_argument("--size", type=int, nargs=2, default=(112, 112), help="decode size (height width)")
    parser.add_argument("--decode", help=argparse.SUPPRESS)  # internal: decode this file and print JSON
    args = parser.parse_args()
    size = (args.size[0], args.size[1])
    if args.decode:
        print(json.dumps(decode_in_this_process(args.decode, size)))
        return

    from momentseg.io.overlay import write_video

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.compare, args.frames):
            path = Path(tmp) / f"synthetic_{n}.mp4"
            t0 = time.perf_counter()
            write_video(path, synthetic_frames(n, args.height, args.width), args.fps)
            encode_s = time.perf_counter() - t0
            result = decode_in_subprocess(path, size)
            result["encode_s"] = round(encode_s, 2)
            result["file_mib"] = round(path.stat().st_size / 2**20, 2)
            results[n] = result
            print(
                f"{n} frames {args.height}x{args.width} -> decode at {size}: {json.dumps(result)}", flush=True
            )
    short, long = results[args.compare], results[args.frames]
    print(
        f"peak RSS growth: {short['peak_growth_mib']} MiB for {args.compare} frames, "
        f"{long['peak_growth_mib']} MiB for {args.frames} frames; "
        f"all {args.frames} frames at {size} held at once would be "
        f"{args.frames * size[0] * size[1] * 3 / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
