"""Tiny-preset model cost on CPU: parameters, checkpoint size, forward+backward time per training sample;
and the parameter counts of the real presets (built on the meta device, no memory).

    python benchmarks/bench_model.py [--sam2-size 128] [--threads 2] [--real]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from momentseg.model import MomentSegModel, RefVOSSample, TSGSample, preset_config
from momentseg.train.config import LossConfig

WEIGHTS = LossConfig().by_component()  # the training config's loss weights


def _time(fn, repeats: int) -> str:
    """'median s (min s)' over ``repeats`` calls after two warm-up calls (oneDNN builds kernels per shape)."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return f"{np.median(times):.3f} s (min {min(times):.3f} s)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sam2-size", type=int, default=128)
    ap.add_argument("--keyframe-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--real", action="store_true", help="also count 3b/7b parameters on the meta device")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    words = [f"w{i}" for i in range(300)]
    model = MomentSegModel.tiny(words=words, sam2_image_size=args.sam2_size).train()
    n = sum(p.numel() for p in model.parameters())
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in ("qwen", "sam2")}
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(Path(d) / "ckpt")
        size = (Path(d) / "ckpt" / "model.safetensors").stat().st_size
    print(f"tiny (sam2 {args.sam2_size}): {n:,} params (qwen {parts['qwen']:,}, sam2 {parts['sam2']:,}); "
          f"model.safetensors {size / 1e6:.2f} MB")

    rng = np.random.default_rng(0)
    s = model.config.find_frame_size
    pos = np.zeros(64, bool)
    pos[20:35] = True
    tsg = TSGSample(rng.integers(0, 256, (64, s, s, 3), dtype=np.uint8), "w1 w2 w3 w4", pos)
    k = args.keyframe_size
    masks = np.zeros((5, k, k), bool)
    masks[:, k // 4 : k // 2, k // 4 : 3 * k // 4] = True
    ref = RefVOSSample(
        rng.integers(0, 256, (16, s, s, 3), dtype=np.uint8),
        rng.integers(0, 256, (5, k, k, 3), dtype=np.uint8),
        "w5 w6",
        masks,
    )

    def step(fn, sample):
        def run():
            model.zero_grad()
            fn([sample]).weighted(WEIGHTS).backward()

        return run

    t_tsg = _time(step(model.forward_tsg, tsg), args.repeats)
    t_ref = _time(step(model.forward_refvos, ref), args.repeats)
    print(f"TSG sample (64 frames {s}px) forward+backward: {t_tsg}")
    print(f"RefVOS sample (16 context {s}px + 5 keyframes {k}px, memory path) forward+backward: {t_ref}")
    model.config.train_memory_path = False
    t_ref2 = _time(step(model.forward_refvos, ref), args.repeats)
    print(f"RefVOS sample, per-frame decoding (train_memory_path=False): {t_ref2}")

    if args.real:
        for name in ("3b", "7b"):
            cfg = preset_config(name)
            with torch.device("meta"):
                m = MomentSegModel.build(cfg)
            total = sum(p.numel() for p in m.parameters())
            q = sum(p.numel() for p in m.qwen.parameters())
            print(f"{name}: {total:,} params (qwen {q:,}, sam2 {total - q - sum(p.numel() for p in m.find_head.parameters()) - sum(p.numel() for p in m.seg_head.parameters()):,})")


if __name__ == "__main__":
    main()
