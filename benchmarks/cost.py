"""Time and peak memory against video length: MomentSeg vs bare SAM2 propagation vs a Sa2VA-style pipeline.

Methods (same backbones, one expression, one video file read from disk):

* ``momentseg``: ``MomentSeg.segment(path, text, out=DIR)`` with its defaults (K = 8, MCS, BAP): dense ``[FIND]``
  pass, ``[SEG]`` pass, BAP over every frame with frames decoded in chunks and pruned SAM2 memory, each mask
  written as a PNG into a temporary output folder as it is produced (streaming: only its area is kept), plus
  result.json and similarity.png.
* ``sam2``: the floor — SAM2 propagation alone from one given mask on frame 0 (``propagate`` with a mask prompt,
  forward) over frames decoded in one sequential pass, one at a time; each mask upsampled to the video size and
  stored as RLE, as the pipeline does.
* ``sa2va``: a Sa2VA-style pipeline (:func:`sa2va_segment`): every frame decoded, resized to the SAM2 size and
  stacked up front as one tensor; the first 5 frames as images to the MLLM; the ``[SEG]`` embedding prompts
  frames 0–4 (conditioning frames); forward propagation with transformers' default ``Sam2VideoInferenceSession``
  (every frame's outputs kept, no pruning); every mask kept as a full-size bool array (as Sa2VA returns them).

Each (method, length) runs in a fresh subprocess: the model is built, a warm-up runs on an 8-frame clip, then
the method runs once on the video file. Reported: wall time of that run, peak resident memory (VmHWM from
/proc/self/status) and its increase over the peak before the run (model + warm-up), and on CUDA the peak
allocated GPU memory. Weights do not change the cost: ``--model tiny`` is a random tiny model.

Videos: synthetic (a moving disc and square over a textured gradient), written once with ``write_video`` into
``--cache-dir``.

    python benchmarks/cost.py --lengths 100 500 2000 5000 --height 480 --width 854
    python benchmarks/cost.py --model CHECKPOINT_DIR --device cuda --dtype bf16        # e.g. a converted 3B
    python benchmarks/cost.py --preset 3b --tokenizer QWEN_DIR --device cuda --dtype bf16   # random 3B
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

METHODS = ("momentseg", "sam2", "sa2va")
TEXT = "the red circle that moves to the right"
SA2VA_FRAMES = 5
WARMUP_FRAMES = 8
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------ videos
def synthetic_frame(t: int, height: int, width: int) -> np.ndarray:
    """Frame ``t`` (H, W, 3) uint8 of the benchmark video: a disc and a square moving over a textured gradient."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.stack([80 + 60 * xx / width, 90 + 50 * yy / height, 110 + 20 * np.sin(xx / 17 + yy / 23)], axis=-1)
    r = max(4, min(height, width) // 10)
    cx = r + (t * 3) % max(1, width - 2 * r)
    cy = height / 2 + (height / 4) * np.sin(t / 15)
    bg[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (220, 40, 40)
    sx, sy = width - r - (t * 2) % max(1, width - 2 * r), height / 3
    bg[(np.abs(xx - sx) <= r) & (np.abs(yy - sy) <= r)] = (40, 60, 220)
    return bg.astype(np.uint8)


def ensure_video(cache: Path, length: int, height: int, width: int) -> Path:
    """The cached benchmark mp4 of ``length`` frames at 25 fps (written on first use)."""
    from momentseg.io.overlay import write_video

    path = cache / f"bench_{height}x{width}_{length}.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, (synthetic_frame(t, height, width) for t in range(length)), fps=25.0)
    return path


# ------------------------------------------------------------------ model
def build_model(model: str, preset: str, tokenizer: str | None, device: str):
    """``--model tiny``: a random tiny model (seed 0); a folder: that checkpoint; ``--preset 3b|7b`` (with
    ``--model tiny`` left as is): random weights built directly on ``device`` with the tokenizer of
    ``--tokenizer`` (a Qwen2.5-VL folder) plus [SEG]/[FIND]."""
    import torch

    from momentseg.model.config import preset_config
    from momentseg.model.momentseg import MomentSegModel

    if model != "tiny":
        return MomentSegModel.from_pretrained(model)
    if preset == "tiny":
        torch.manual_seed(0)
        from momentseg.data.synthetic import caption_vocabulary

        return MomentSegModel.tiny(caption_vocabulary())
    tok = None
    if tokenizer is not None:
        from momentseg.model.tokenizer import add_task_tokens, load_tokenizer

        tok = load_tokenizer(tokenizer)
        add_task_tokens(tok)
    config = preset_config(preset, tokenizer=tok)
    with torch.device(device):
        return MomentSegModel(config, tok)


# ------------------------------------------------------------------ methods
def sa2va_segment(pipe, video, text: str) -> list[np.ndarray]:
    """Sa2VA-style segmentation of ``video`` (a :class:`~momentseg.io.video.Video`); returns T masks (H, W) bool.

    All frames → one (T,3,S,S) tensor; first 5 frames (high-res images, no low-res context video) → [SEG]
    embedding; frames 0–4 decoded from it as conditioning frames; forward propagation over the whole video with
    transformers' default session (``new_session``: all frames stored, every output kept).
    """
    import torch

    from momentseg.model.preprocess import target_size
    from momentseg.propagation.bap import upsample_mask
    from momentseg.sam2.config import preprocess_for_sam2
    from momentseg.sam2.video import new_session

    model, sam2 = pipe.model, pipe.model.sam2
    size, (height, width), n = pipe.config.sam2_image_size, (video.height, video.width), len(video)
    pixels = preprocess_for_sam2(video.get_frames(range(n), size=(size, size)), size).to(pipe.device)
    first = video.get_frames(range(min(SA2VA_FRAMES, n)),
                             size=target_size(height, width, pipe.config.seg_frame_size, model.layout))
    with torch.no_grad():
        embedding, _ = model.seg_embedding(first, text)
    session = new_session(sam2, pixels, height, width)
    sam2.set_language_embedding(session, 0, embedding.to(pipe.device))
    masks = []
    with torch.inference_mode():
        for k in range(min(SA2VA_FRAMES, n)):
            sam2(inference_session=session, frame_idx=k, condition=(0,))
        for out in sam2.propagate_in_video_iterator(session, start_frame_idx=0):
            masks.append(upsample_mask(out.pred_masks[0, 0], (height, width)).cpu().numpy())
    return masks


class SequentialFrames:
    """``idx -> (3,S,S)`` SAM2 input from ONE forward decoding pass of ``video`` (indices must not decrease;
    the last frame is repeated on request). Holds one frame at a time."""

    def __init__(self, video, size: int):
        self.size = size
        self._frames = video.iter_frames(None, size=(size, size))
        self._last: tuple[int, np.ndarray | None] = (-1, None)

    def __call__(self, idx: int):
        from momentseg.sam2.config import preprocess_for_sam2

        while self._last[0] < idx:
            self._last = next(self._frames)
        if self._last[0] != idx:
            raise RuntimeError(f"frame {idx} requested after frame {self._last[0]}: forward order only")
        return preprocess_for_sam2(self._last[1][None], self.size)[0]


def sam2_floor(pipe, video) -> list[dict]:
    """SAM2 alone: a box mask on frame 0 as the prompt, forward propagation over frames decoded in one
    sequential pass (:class:`SequentialFrames`), each mask upsampled and stored as RLE (T dicts)."""
    from momentseg.io.masks import rle_encode
    from momentseg.propagation.bap import propagate, upsample_mask

    height, width = video.height, video.width
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = True
    frames = SequentialFrames(video, pipe.config.track_image_size)
    rles: list[dict] = [{}] * len(video)
    for out in propagate(pipe.model.tracker, frames, [0], 0, mask_prompts={0: mask}, mode="forward",
                         num_frames=len(video), video_size=(height, width)):
        rles[out.frame_idx] = rle_encode(upsample_mask(out.mask_logits, (height, width)).cpu().numpy())
    return rles


def run_method(method: str, pipe, source) -> tuple[int, int]:
    """Run ``method`` on ``source`` (a path or an array); returns (frames segmented, bytes of the kept masks:
    RLE ``counts`` strings, the bool arrays for ``sa2va``, the per-frame areas for ``momentseg`` whose masks
    are on disk)."""
    from momentseg.io.video import open_video

    if method == "momentseg":
        with tempfile.TemporaryDirectory(prefix="momentseg_cost_") as folder:
            masks = pipe.segment(source, TEXT, out=Path(folder) / "out").expressions[0].masks
            return len(masks), int(masks.areas().nbytes)
    elif method == "sam2":
        rles = sam2_floor(pipe, open_video(source))
    else:
        masks = sa2va_segment(pipe, open_video(source), TEXT)
        return len(masks), sum(m.nbytes for m in masks)
    return len(rles), sum(len(r["counts"]) for r in rles)


# ------------------------------------------------------------------ child process
def vm_hwm_mib() -> float:
    """Peak resident set size of this process so far (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(args: argparse.Namespace) -> dict:
    """Build the model, warm up, run one method on one video; the measurement as a dict."""
    import contextlib

    import torch

    from momentseg.pipeline import MomentSeg

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pipe = MomentSeg(build_model(args.model, args.preset, args.tokenizer, args.device), device=device)
    cuda = device.type == "cuda"
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda and args.dtype == "bf16"
                else contextlib.nullcontext())
    warm = np.stack([synthetic_frame(t, args.height, args.width) for t in range(WARMUP_FRAMES)])
    with autocast:
        run_method(args.child, pipe, warm)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = vm_hwm_mib()
    start, cpu = time.perf_counter(), time.process_time()
    with autocast:
        frames, kept = run_method(args.child, pipe, args.video)
    if cuda:
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    out = {"method": args.child, "frames": frames, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
           "peak_mib": round(vm_hwm_mib(), 1), "base_mib": round(base, 1), "masks_mib": round(kept / 2**20, 1)}
    out["delta_mib"] = round(out["peak_mib"] - base, 1)
    if cuda:
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def measure(method: str, video: Path, args: argparse.Namespace) -> dict:
    """Run :func:`child` for ``method`` on ``video`` in a fresh Python process."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--video", str(video),
           "--height", str(args.height), "--width", str(args.width), "--model", args.model,
           "--preset", args.preset, "--device", args.device, "--dtype", args.dtype, "--threads", str(args.threads)]
    if args.tokenizer:
        cmd += ["--tokenizer", args.tokenizer]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} on {video.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ report
SETTINGS = ("height", "width", "model", "preset", "device", "dtype", "threads")


def merge(old: dict, new_rows: list[dict], run: dict, commands: list[str]) -> tuple[list[dict], list[str]]:
    """Rows of a previous results file (``{"rows", "run"}``) not re-measured in ``new_rows``, plus ``new_rows``;
    the settings must match. Returns (rows without ratios, the commands of both runs)."""
    differ = [k for k in SETTINGS if old["run"].get(k) != run[k]]
    if differ:
        raise SystemExit(f"--update: the previous results were measured with other settings: {', '.join(differ)}")
    fresh = {(r["method"], r["frames"]) for r in new_rows}
    kept = [{k: v for k, v in r.items() if k not in ("time_x", "delta_x")} for r in old["rows"]
            if (r["method"], r["frames"]) not in fresh]
    previous = old["run"].get("commands") or ([old["run"]["command"]] if "command" in old["run"] else [])
    return kept + new_rows, previous + commands


def with_ratios(rows: list[dict]) -> list[dict]:
    """Adds ``time_x`` and ``delta_x``: each row's time and memory increase divided by the ``sam2`` row's (same
    length)."""
    floor = {r["frames"]: r for r in rows if r["method"] == "sam2"}
    out = []
    for r in rows:
        f = floor.get(r["frames"])
        extra = {}
        if f is not None:
            extra["time_x"] = round(r["seconds"] / f["seconds"], 2) if f["seconds"] > 0 else None
            extra["delta_x"] = round(r["delta_mib"] / f["delta_mib"], 2) if f["delta_mib"] > 0 else None
        out.append({**r, **extra})
    return out


def markdown(rows: list[dict], run: dict) -> str:
    lines = [
        f"Video {run['height']}×{run['width']}, model {run['model']} (preset {run['preset']}), device "
        f"{run['device']}, {run['threads']} thread(s). Time: wall clock of one run after an 8-frame warm-up. "
        "Peak: VmHWM of a fresh process; Δ: peak − peak before the run (model + warm-up). "
        "×: ratio to `sam2` (SAM2 alone) at the same length. CPU: process CPU time of the run (all threads). "
        "Kept masks: the output held in memory at the end (RLE strings; Sa2VA's full-size bool masks; "
        "for momentseg, whose masks stream to disk, the per-frame areas).",
        "",
        "| frames | method | time (s) | CPU (s) | frames/s | time × | peak RSS (MiB) | Δ peak (MiB) | Δ × "
        "| kept masks (MiB) |" + (" CUDA peak (MiB) |" if any("cuda_peak_mib" in r for r in rows) else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if any("cuda_peak_mib" in r for r in rows) else ""),
    ]
    for r in rows:
        cells = [r["frames"], r["method"], f"{r['seconds']:.2f}", f"{r.get('cpu_seconds', float('nan')):.2f}",
                 f"{r['frames'] / r['seconds']:.1f}", r.get("time_x", ""), f"{r['peak_mib']:.0f}",
                 f"{r['delta_mib']:.0f}", r.get("delta_x", ""), f"{r.get('masks_mib', float('nan')):.1f}"]
        if "cuda_peak_mib" in r:
            cells.append(f"{r['cuda_peak_mib']:.0f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Time and Δ peak memory vs video length, one line per method (log-log), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from momentseg.io.atomic import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method in METHODS:
        pts = sorted((r["frames"], r["seconds"], max(r["delta_mib"], 0.1)) for r in rows if r["method"] == method)
        if not pts:
            continue
        n, t, m = zip(*pts, strict=True)
        axes[0].plot(n, t, marker="o", label=method)
        axes[1].plot(n, m, marker="o", label=method)
    for ax, label in zip(axes, ("wall time (s)", "Δ peak RSS (MiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("video length (frames)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[100, 500, 2000, 5000], help="video lengths")
    ap.add_argument("--height", type=int, default=480, help="video height")
    ap.add_argument("--width", type=int, default=854, help="video width")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run")
    ap.add_argument("--model", default="tiny", help="'tiny' (random tiny model) or a checkpoint folder")
    ap.add_argument("--preset", default="tiny", choices=("tiny", "3b", "7b"), help="random model preset")
    ap.add_argument("--tokenizer", default=None, help="Qwen2.5-VL tokenizer folder (random 3b/7b presets)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="bf16 = CUDA autocast")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in each measurement process")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "momentseg_cost_videos",
                    help="where the benchmark videos are written (reused)")
    ap.add_argument("--json", type=Path, default=RESULTS / "cost.json",
                    help="results out (OUT.md and OUT.png are written next to it)")
    ap.add_argument("--update", action="store_true",
                    help="keep OUT.json's rows for the (method, length) pairs not measured now (same settings)")
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return []
    if min(args.lengths) < 1:
        ap.error("--lengths must be >= 1")

    rows = []
    for length in sorted(set(args.lengths)):
        t0 = time.perf_counter()
        video = ensure_video(args.cache_dir, length, args.height, args.width)
        print(f"video {video} ready ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        for method in args.methods:
            r = measure(method, video, args)
            rows.append(r)
            print(f"  {method:9s} {length:6d} frames: {r['seconds']:8.2f} s, peak {r['peak_mib']:7.0f} MiB "
                  f"(Δ {r['delta_mib']:.0f})", file=sys.stderr, flush=True)
    import torch

    run = {"height": args.height, "width": args.width, "model": args.model, "preset": args.preset,
           "device": args.device, "dtype": args.dtype, "threads": args.threads,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "python": platform.python_version(), "torch": torch.__version__}}
    commands = ["python benchmarks/cost.py " + " ".join(sys.argv[1:] if argv is None else argv)]
    if args.update and args.json.is_file():
        rows, commands = merge(json.loads(args.json.read_text()), rows, run, commands)
    rows = with_ratios(sorted(rows, key=lambda r: (r["frames"], METHODS.index(r["method"]))))
    run["lengths"] = sorted({r["frames"] for r in rows})
    run["commands"] = commands
    from momentseg.io.atomic import atomic_write_text

    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps({"rows": rows, "run": run}, indent=1) + "\n")
    atomic_write_text(args.json.with_suffix(".md"), markdown(rows, run))
    plot(rows, args.json.with_suffix(".png"))
    print(markdown(rows, run))
    return rows


if __name__ == "__main__":
    main()
