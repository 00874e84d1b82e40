"""Issue #13's speed measurements: batched training forwards, and one video prefix shared by all expressions.

* ``train``: forward + backward of ``forward_tsg`` / ``forward_refvos`` on a batch of ``--batch`` samples of the
  embedded model's training stream (``configs/tiny-synthetic.yaml``: TSG 32 frames at 5 fps, RefVOS 16 context
  frames + 5 keyframes), tiny preset (random weights, the config's frozen parts and loss weights), once as one
  batched call (one padded LLM pass) and once one sample per call with the losses summed before one backward
  (the previous code's loop), at each ``--threads``. Reported: samples/s (median over ``--repeats`` after one
  warm-up) and the ratio.
  ``tsg_shared_video``: ``batch`` queries of one video (``data.tsg_queries_per_video``), which the batched call
  runs on one shared video prefix (vision tower and video tokens once, each query's suffix against the KV cache).
* ``inference``: ``MomentSeg.ground_many`` and ``MomentSeg.segment`` (K = 8, MCS, BAP) on one synthetic video
  with 1, 4 and 16 expressions (``--expressions``), with the video prefix shared (``share_prefix=True``: one
  dense-pass prefix for all expressions, one [SEG] prefix per set of equal keyframes) and without (one full
  pass per expression). Model: ``--model`` (default the embedded one).

    python benchmarks/batch_speed.py --json benchmarks/results/batch_speed.json
    python benchmarks/batch_speed.py --dry-run --json /tmp/b.json     # tiny sizes, one repeat (the test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from momentseg.data.synthetic import SPLIT_SEEDS, WorldConfig, caption_vocabulary, generate_video, video_seed
from momentseg.io.atomic import atomic_write_text
from momentseg.io.video import open_video
from momentseg.model import MomentSegModel
from momentseg.pipeline import MomentSeg
from momentseg.train.config import LossConfig, load_config
from momentseg.train.loop import _initial_model, build_stream

WEIGHTS = LossConfig().by_component()  # the training config's loss weights

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = ROOT / "configs" / "tiny-synthetic.yaml"
DRY = {"batch": 2, "threads": [1], "repeats": 1, "expressions": [1, 2], "frames": (20, 22)}


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN builds its kernels per shape)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def training_samples(batch: int, dry: bool) -> tuple[MomentSegModel, dict[str, list]]:
    """The tiny model as training sets it up, and ``batch`` TSG and ``batch`` RefVOS samples of its stream."""
    cfg = load_config(TRAIN_CONFIG)
    torch.manual_seed(cfg.seed)
    model = _initial_model(cfg, MomentSegModel.tiny(caption_vocabulary(), sam2_image_size=64 if dry else 128))
    if dry:
        model.config.find_max_frames, model.config.context_frames = 8, 4
    stream = build_stream(cfg, model)
    got: dict[str, list] = {"tsg": [], "refvos": []}
    q = 0
    while min(len(v) for v in got.values()) < batch:
        task = stream.task_of(q)[0]
        if task in got and len(got[task]) < batch:  # the stream's SAM2 track samples are not timed here
            got[task].append(stream.sample(q))
        q += 1
    # the same stream with data.tsg_queries_per_video = batch: its TSG positions hold queries of one video
    cfg.data.tsg_queries_per_video = batch
    grouped_stream, grouped = build_stream(cfg, model), []
    q = 0
    while len(grouped) < batch:
        if grouped_stream.task_of(q)[0] == "tsg":
            sample = grouped_stream.sample(q)
            grouped += sample if isinstance(sample, list) else [sample]
        q += 1
    got["tsg_shared_video"] = grouped[:batch]
    return model.train(), got


def measure_training(model, samples: dict[str, list], threads: list[int], repeats: int) -> list[dict]:
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for task, batch in samples.items():
            forward = getattr(model, f"forward_{task.split('_')[0]}")

            def batched(forward=forward, batch=batch):
                model.zero_grad(set_to_none=True)
                forward(batch).weighted(WEIGHTS).backward()

            def one_by_one(forward=forward, batch=batch):
                model.zero_grad(set_to_none=True)
                (sum(forward([s]).weighted(WEIGHTS) for s in batch) / len(batch)).backward()

            times = {name: _median_seconds(fn, repeats) for name, fn in (("batched", batched),
                                                                          ("one_by_one", one_by_one))}
            rows.append({"threads": n_threads, "task": task, "batch": len(batch),
                         **{f"{k}_samples_per_s": round(len(batch) / v, 2) for k, v in times.items()},
                         "speedup": round(times["one_by_one"] / times["batched"], 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def expressions(video, n: int) -> list[str]:
    """``n`` different expression texts: the video's own, then other synthetic videos' (all valid sentences)."""
    texts = list(dict.fromkeys(e.text for e in video.expressions))
    i = 0
    while len(texts) < n:
        other = generate_video(video_seed(SPLIT_SEEDS["val"], i), f"vid_{i:05d}")
        texts += [e.text for e in other.expressions if e.text not in texts]
        i += 1
    return texts[:n]


def measure_inference(model_path: str, counts: list[int], repeats: int, dry: bool) -> tuple[list[dict], dict]:
    torch.set_num_threads(1)
    shared = MomentSeg.from_pretrained(model_path, device="cpu")
    separate = MomentSeg(shared.model, device="cpu", share_prefix=False)
    world = WorldConfig(min_frames=DRY["frames"][0], max_frames=DRY["frames"][1]) if dry else WorldConfig()
    synth = generate_video(video_seed(SPLIT_SEEDS["test"], 0), "vid_00000", world)
    video = open_video(synth.frames, fps=synth.fps)
    rows = []
    for n in counts:
        texts = expressions(synth, n)
        for op in ("ground", "segment"):
            def run(pipe, texts=texts, op=op):
                return pipe.ground_many(video, texts) if op == "ground" else pipe.segment(video, texts)

            t_shared = _median_seconds(lambda run=run: run(shared), repeats)
            t_separate = _median_seconds(lambda run=run: run(separate), repeats)
            rows.append({"op": op, "expressions": n, "shared_prefix_s": round(t_shared, 3),
                         "separate_s": round(t_separate, 3), "speedup": round(t_separate / t_shared, 2)})
            print(json.dumps(rows[-1]), flush=True)
    setting = {"video_frames": len(video), "video_size": [video.height, video.width],
               "dense_frames": int(len(shared.dense_frames(video))), "keyframes": 8, "sampling": "mcs",
               "propagation": "bap", "threads": 1}
    return rows, setting


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--expressions", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--model", default="embedded", help="checkpoint folder for the inference timings")
    ap.add_argument("--json", default=None)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes and one repeat (a check that it runs)")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.batch, args.threads, args.repeats, args.expressions = (DRY["batch"], DRY["threads"], DRY["repeats"],
                                                                    DRY["expressions"])
    model, samples = training_samples(args.batch, args.dry_run)
    train_rows = measure_training(model, samples, args.threads, args.repeats)
    infer_rows, setting = measure_inference(args.model, args.expressions, args.repeats, args.dry_run)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "command": "python benchmarks/batch_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "train": train_rows,
        "inference": infer_rows,
        "inference_setting": setting,
        "args": vars(args),
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
