"""Training curves of a ``momentseg train`` run: every loss component of its ``metrics.jsonl`` against the step.

    python benchmarks/training_curves.py runs/tiny-sam2 --out benchmarks/results/curve_tiny_sam2.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_SKIP = {"step", "lr", "grad_norm", "samples_per_s"}


def read_metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot(run: Path, out: Path) -> list[str]:
    """Write the curves of ``run`` to ``out`` (PNG); returns the plotted component names."""
    rows = read_metrics(run)
    keys = sorted({k for r in rows for k, v in r.items()
                   if k not in _SKIP and not k.endswith("_samples") and isinstance(v, int | float)})
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    speed = [r["samples_per_s"] for r in rows if "samples_per_s" in r]
    fig.suptitle(f"{run.name}: {rows[-1]['step']} steps, median {sorted(speed)[len(speed) // 2]:.1f} samples/s",
                 fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return keys


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run folder holding metrics.jsonl")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = ap.parse_args(argv)
    print("plotted", ", ".join(plot(args.run, args.out)), "→", args.out)


if __name__ == "__main__":
    main()
