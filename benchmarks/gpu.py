"""One short GPU run (≤ 5 min on one H100/H200-class GPU): what the real-size model costs.

The ``3b`` preset (Qwen2.5-VL-3B + SAM2 Hiera-L at 1024², ~4.0 B parameters) with random weights — built
directly on the GPU by :meth:`MomentSegModel.random` (a word tokenizer, no weight or tokenizer files), Qwen in
bf16, SAM2 and the heads in fp32, everything run under bf16 autocast (``--dtype bf16``, the default on CUDA).
Weights do not change the cost. Measured, each after a warm-up, with ``torch.cuda.synchronize`` around it and
the peak allocated GPU memory reset before it (``cuda_base_mib``: allocated at its start — the weights;
``cuda_peak_mib``: the peak during it; both None on a CPU):

* ``find_pass``: one ``[FIND]`` pass (``MomentSegModel.find_logits``) over ``config.find_max_frames`` low-res
  frames of a ``--height`` × ``--width`` video (100 frames at ≤ 140² px for 3b) — mean / min over ``--reps``;
* ``seg_pass``: one ``[SEG]`` pass (``seg_embedding``) on K high-res keyframes (K = ``MomentSeg.segment``'s
  default) plus ``config.context_frames`` low-res context frames — mean / min over ``--reps``;
* ``propagation``: SAM2 forward propagation alone (``momentseg.propagation.bap.propagate``, one mask prompt on
  frame 0, frames given as SAM2-size tensors already on the GPU, no mask upsampling) over max(``--lengths``)
  frames, once with SAM2's memories on the GPU and once with ``offload_state`` (``MomentSeg(...,
  offload_state=True)`` / ``--offload-state``: ``inference_state_device="cpu"``). For every length n in
  ``--lengths`` (500 and 2,000): wall time and frames/s over the first n frames and the peak allocated GPU
  memory up to frame n (one run serves every length: the first n frames of a longer run are an n-frame run);
* ``end_to_end``: ``MomentSeg.segment`` with its defaults (dense ``[FIND]`` pass, MCS, ``[SEG]`` pass, BAP over
  every frame, masks upsampled and kept as RLE) on an ``--e2e-frames``-frame mp4 (``--height`` × ``--width``,
  written with ``benchmarks/cost.py``'s synthetic video into ``--cache-dir``) against SAM2 propagation alone on
  the same file (``benchmarks/cost.py``'s ``sam2_floor``: decode, forward propagation, upsample, RLE).

``--dry-run``: the same code on the tiny preset with tiny sizes (CPU is fine; a test runs it), so the script
cannot rot before a GPU is available. Output: one JSON (``--json``), written atomically.

    python benchmarks/gpu.py --json benchmarks/results/gpu_3b.json          # or: bash benchmarks/gpu.sh
    python benchmarks/gpu.py --dry-run --device cpu --json /tmp/gpu_dry.json
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cost  # noqa: E402  (benchmarks/cost.py: the synthetic video and the SAM2-alone floor)

RESULTS = Path(__file__).resolve().parent / "results"
#: Full-run sizes (the 3b preset on a GPU).
FULL = {"preset": "3b", "lengths": (500, 2000), "e2e_frames": 200, "height": 480, "width": 854, "reps": 3}
#: ``--dry-run`` sizes (the tiny preset, seconds on a CPU).
DRY = {"preset": "tiny", "lengths": (6, 12), "e2e_frames": 10, "height": 48, "width": 64, "reps": 1}
#: Distinct SAM2-size frames cycled through by the propagation runs (they are encoded anew at every frame).
FRAME_BANK = 8


def default_keyframes() -> int:
    """K of ``MomentSeg.segment`` (its default, read from its signature: defined once)."""
    from momentseg.pipeline import MomentSeg

    return int(inspect.signature(MomentSeg.segment).parameters["keyframes"].default)


class Clock:
    """Wall time and peak allocated GPU memory of code blocks (CUDA synchronised; memory None on CPU)."""

    def __init__(self, device):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        self.sync()
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return round(self.torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None

    def allocated_mib(self) -> float | None:
        """GPU memory allocated now (before a measurement: the weights and whatever is held)."""
        return round(self.torch.cuda.memory_allocated() / 2**20, 1) if self.cuda else None

    def repeat(self, fn: Callable[[], object], reps: int) -> dict:
        """Warm-up once, then ``reps`` timed calls: mean / min seconds and the peak memory over them."""
        fn()
        self.reset()
        base = self.allocated_mib()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return {"seconds_mean": round(float(np.mean(times)), 4), "seconds_min": round(float(np.min(times)), 4),
                "reps": reps, "cuda_base_mib": base, "cuda_peak_mib": self.peak_mib()}


def build(preset: str, device, dtype: str):
    """The random ``preset`` model on ``device`` (Qwen in bf16 for ``dtype == "bf16"``) and its pipeline."""
    import torch

    from momentseg.data.synthetic import caption_vocabulary
    from momentseg.model.momentseg import MomentSegModel
    from momentseg.pipeline import MomentSeg

    torch.manual_seed(0)
    with torch.device(device):
        model = MomentSegModel.random(preset, caption_vocabulary())
    if dtype == "bf16":
        model.qwen.to(torch.bfloat16)
    return MomentSeg(model, device=device)


def propagation_runs(pipe, lengths: Sequence[int], clock: Clock) -> list[dict]:
    """SAM2 forward propagation alone over max(lengths) frames, memories on the GPU and offloaded; one row per
    (length, offload_state) (see the module docstring)."""
    import torch

    from momentseg.propagation.bap import propagate
    from momentseg.sam2.config import preprocess_for_sam2

    size = pipe.config.track_image_size
    bank = preprocess_for_sam2(np.stack([cost.synthetic_frame(t * 7, size, size) for t in range(FRAME_BANK)]),
                               size).to(pipe.device)
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = True
    total, marks = max(lengths), set(lengths)
    rows = []
    for offload in (False, True):
        clock.reset()
        base = clock.allocated_mib()
        start = time.perf_counter()
        outputs = propagate(pipe.model.tracker, lambda i: bank[i % FRAME_BANK], [0], 0, mask_prompts={0: mask},
                            mode="forward", num_frames=total, video_size=(size, size),
                            inference_state_device="cpu" if offload else None)
        for done, _ in enumerate(outputs, start=1):
            if done in marks:
                clock.sync()
                seconds = time.perf_counter() - start
                rows.append({"frames": done, "offload_state": offload, "image_size": size,
                             "seconds": round(seconds, 3), "fps": round(done / seconds, 2),
                             "cuda_base_mib": base, "cuda_peak_mib": clock.peak_mib()})
                print(f"  propagation {done} frames, offload_state={offload}: {seconds:.1f} s, "
                      f"peak {rows[-1]['cuda_peak_mib']} MiB", file=sys.stderr, flush=True)
        del outputs
        if clock.cuda:
            torch.cuda.empty_cache()
    return sorted(rows, key=lambda r: (r["frames"], r["offload_state"]))


def end_to_end(pipe, video: Path, clock: Clock) -> dict:
    """``MomentSeg.segment`` (defaults) vs SAM2 alone on the same file, each after a warm-up on 8 frames."""
    warm = np.stack([cost.synthetic_frame(t, 48, 64) for t in range(cost.WARMUP_FRAMES)])
    out = {}
    for name, fn in (("segment", lambda src: pipe.segment(src, cost.TEXT)),
                     ("sam2_alone", lambda src: cost.sam2_floor(pipe, _open(src)))):
        fn(warm)
        clock.reset()
        base = clock.allocated_mib()
        start = time.perf_counter()
        fn(str(video))
        clock.sync()
        seconds = time.perf_counter() - start
        out[name] = {"seconds": round(seconds, 3), "cuda_base_mib": base, "cuda_peak_mib": clock.peak_mib()}
        print(f"  {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    out["segment_over_sam2"] = round(out["segment"]["seconds"] / out["sam2_alone"]["seconds"], 2)
    return out


def _open(source):
    from momentseg.io.video import open_video

    return open_video(source)


def measure(args: argparse.Namespace) -> dict:
    import torch

    from momentseg.model.preprocess import target_size
    from momentseg.pipeline import resolve_device

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    clock = Clock(device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and args.dtype == "bf16"
                else contextlib.nullcontext())
    t0 = time.perf_counter()
    pipe = build(args.preset, device, args.dtype)
    clock.sync()
    model, config = pipe.model, pipe.config
    report: dict = {"build_seconds": round(time.perf_counter() - t0, 2),
                    "parameters": sum(p.numel() for p in model.parameters())}
    print(f"built {args.preset} ({report['parameters'] / 1e9:.2f} B parameters) in {report['build_seconds']} s",
          file=sys.stderr, flush=True)
    from PIL import Image

    k = default_keyframes()
    frames = [cost.synthetic_frame(t, args.height, args.width)
              for t in range(max(config.find_max_frames, config.context_frames, k))]

    def resized(side: int, count: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The first ``count`` frames at the model's size for a side budget ``side`` (as the pipeline sizes them)."""
        h, w = target_size(args.height, args.width, side, model.layout)
        return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames[:count]]), (h, w)

    lowres, size = resized(config.find_frame_size, config.find_max_frames)
    keyframes, _ = resized(config.seg_frame_size, k)
    context, context_size = resized(config.context_frame_size, config.context_frames)
    with torch.no_grad(), autocast:
        report["find_pass"] = {"frames": int(lowres.shape[0]), "frame_size": list(size),
                               **clock.repeat(lambda: model.find_logits(lowres, cost.TEXT), args.reps)}
        print(f"  [FIND] pass: {report['find_pass']['seconds_mean']} s", file=sys.stderr, flush=True)
        report["seg_pass"] = {"keyframes": k, "keyframe_size": list(keyframes.shape[1:3]),
                              "context_frames": int(context.shape[0]), "context_size": list(context_size),
                              **clock.repeat(lambda: model.seg_embedding(keyframes, cost.TEXT, context=context),
                                             args.reps)}
        print(f"  [SEG] pass: {report['seg_pass']['seconds_mean']} s", file=sys.stderr, flush=True)
        report["propagation"] = propagation_runs(pipe, args.lengths, clock)
        video = cost.ensure_video(args.cache_dir, args.e2e_frames, args.height, args.width)
        report["end_to_end"] = {"frames": args.e2e_frames, "height": args.height, "width": args.width,
                                **end_to_end(pipe, video, clock)}
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny preset and tiny sizes (CPU; the test runs this)")
    ap.add_argument("--device", default="cuda", help="cuda | cpu | auto")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="bf16: Qwen in bf16 + CUDA autocast")
    ap.add_argument("--preset", choices=("tiny", "3b", "7b"), default=None, help="default 3b (tiny with --dry-run)")
    ap.add_argument("--lengths", type=int, nargs="+", default=None, help="propagation lengths (default 500 2000)")
    ap.add_argument("--e2e-frames", type=int, default=None, help="end-to-end video length (default 200)")
    ap.add_argument("--height", type=int, default=None, help="video height (default 480)")
    ap.add_argument("--width", type=int, default=None, help="video width (default 854)")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions of each LLM pass (default 3)")
    ap.add_argument("--threads", type=int, default=max(1, min(8, os.cpu_count() or 1)), help="torch CPU threads")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "momentseg_cost_videos",
                    help="where the end-to-end video is written (reused)")
    ap.add_argument("--json", type=Path, default=None, help="results out (default benchmarks/results/gpu_PRESET.json)")
    args = ap.parse_args(argv)
    sizes = DRY if args.dry_run else FULL
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.lengths = tuple(sorted(set(args.lengths)))
    if min(*args.lengths, args.e2e_frames, args.height, args.width, args.reps, args.threads) < 1:
        ap.error("--lengths, --e2e-frames, --height, --width, --reps and --threads must be >= 1")
    if args.device not in ("cuda", "cpu", "auto"):
        ap.error(f"--device must be cuda, cpu or auto, got {args.device!r}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            ap.error("--device cuda but CUDA is not available here (use --dry-run --device cpu to check the script)")
    args.json = RESULTS / f"gpu_{args.preset}.json" if args.json is None else args.json
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    report = measure(args)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else None
    report["run"] = {
        "preset": args.preset, "dry_run": args.dry_run, "device": args.device, "gpu": gpu, "dtype": args.dtype,
        "lengths": list(args.lengths), "e2e_frames": args.e2e_frames, "height": args.height, "width": args.width,
        "reps": args.reps, "threads": args.threads, "seconds": round(time.perf_counter() - start, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "cuda": torch.version.cuda},
        "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    from momentseg.io.atomic import atomic_write_text

    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    print(f"{report['run']['seconds']} s; wrote {args.json}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
