"""Ablation of keyframe sampling × propagation × K on the held-out synthetic test split (the paper's claims).

For videos ``N..N+M-1`` of ``SPLIT_SEEDS["test"]`` (``--first-video N --videos M``; regenerated in memory, nothing
read from disk) every expression with a target is segmented with each

* sampling (``--samplings``): ``first-k`` (frames 0..K−1, Sa2VA-style), ``uniform``, ``random`` (seeds 0..S−1;
  mean ± std over seeds), ``mcs`` (Moment-Centric Sampling);
* propagation: ``forward`` (Sa2VA-style, from the first keyframe), ``anchor-forward``, ``bap``;
* K ∈ ``--keyframes`` (default 5 10 20),

and scored as MeViS does: per expression J and F are the means over all frames of the video; a row is the mean
over expressions × 100, J&F = (J + F) / 2.

Three modes (``--mode``):

* ``table`` (default): the frame–query curve is the model's ``[FIND]`` similarity (as ``MomentSeg.segment``).
  Expressions with moments are also scored for TSG (R1@{0.3,0.5,0.7}, mIoU, mAP) from the dense ``[FIND]``
  pass, which no row changes.
* ``sweep`` (controlled grounding): the ``[FIND]`` curve is replaced by the ground-truth moment, blurred and
  corrupted at each noise level λ of ``--noise`` (:mod:`momentseg.grounding.controlled`)::

      curve = (1 − λ) · gaussian_filter1d(moment indicator, σ = --blur frames, mode="reflect")
              + λ · default_rng((--noise-seed, video index, expression index)).random(T)

  (the moment indicator is ``SynthVideo.moment_frames``: 1 on the frames inside the expression's moments; one
  uniform draw per expression shared by all λ; λ = 0 is the blurred truth, λ = 1 pure noise). Everything else
  is real: the keyframes the sampling picks from that curve, the model's ``[SEG]`` pass on them and SAM2
  propagation. Rows carry ``noise``; the TSG numbers of the controlled curves (the paper's answer read off
  each curve) are reported per λ, so the sweep can be placed against the model's own TSG quality.
* ``anchor``: BAP's anchor update, on the same videos — the anchor rule (``window``: centre of the best 5-frame
  window, the method; ``frame``: the single most similar frame; ``momentseg.grounding.sampling.ANCHOR_RULES``)
  × the memory-clearing rule (on: product < 0.9 × keyframe score clears ±7 frames, the method; off). Sampling
  defaults to ``mcs`` only (``--samplings`` to add others). Rows carry ``anchor``, ``anchor_update`` and
  ``updates`` (mean number of memory clears per expression, from ``momentseg.propagation.policy.fired_updates``).

Statistics (``momentseg.eval.bootstrap``): every J&F has a 95 % percentile bootstrap interval over expressions
(2000 resamples, seed 0; the same resampled expression indices for every row of a table). Paired differences
resample the same expression indices for both rows (the interval of the mean per-expression difference):
MCS+BAP against first-k+forward and against uniform+BAP per K (``table`` and, per λ, ``sweep``); the method
(window, update on) against each other (anchor, update) variant per K and sampling under BAP (``anchor``).
For ``random`` the per-expression value is the mean over seeds (its row: that mean, with the std over the
per-seed rows). The same rows are also given per subset of expressions, split by what the world knows
(``momentseg.data.synthetic.expression_flags``): the moment starts late (frame ≥ 5), the target is absent at
frame 0, the target has a look-alike, the target is occluded or exits; and ``plain`` (none of these).

Work shared across rows (results are identical to ``MomentSeg.segment`` with the same settings):

* per video: the low-res dense frames, the ``[SEG]`` context frames and the SAM2-size frames are decoded once,
  and SAM2's image encoder runs once per frame (:func:`shared_image_features`);
* per expression: one dense ``[FIND]`` pass (``table`` / ``anchor``); one ``[SEG]`` prompt per distinct set of
  keyframes; one BAP run per (keyframes, anchor, update rule) that also gives ``anchor-forward`` (BAP's first
  pass *is* the anchor-forward pass; anchor-forward leaves the frames before the anchor empty); one ``forward``
  run per (keyframes, update rule), none when the anchor is the first keyframe (then it is the same pass).

Outputs (``--json OUT.json``): ``OUT.json`` (rows ``{"sampling", "propagation", "keyframes", ["noise"],
["anchor", "anchor_update", "updates"], "J&F", "J", "F", "J&F_lo", "J&F_hi", "n"}``; random: one row per seed
with ``"seed"`` and one aggregated row with ``"seeds"``, ``"J&F_std"``, ``"J_std"``, ``"F_std"`` (sample std over
seeds)), ``OUT_paired.json`` (the paired differences), ``OUT_subsets.json`` (rows and differences per subset),
``OUT_tsg.json`` (TSG numbers — ``tsg``, and for ``sweep`` ``tsg_by_noise`` — and the run's settings, counts
and timing), ``OUT_raw.json`` (the settings and every per-expression score: what ``--merge`` reads), ``OUT.md`` (markdown tables) and
``OUT.png`` (J&F with its interval against K — ``table`` / ``anchor`` — or against λ — ``sweep`` — one line per
sampling (and anchor variant), one panel per propagation).

    python benchmarks/ablation.py --first-video 0 --videos 40 --workers 2 --json benchmarks/results/ablation.json
    python benchmarks/ablation.py --mode sweep --videos 40 --keyframes 10 --workers 2
    python benchmarks/ablation.py --mode anchor --videos 40 --workers 2

Ranges of videos scored separately (``--first-video``, e.g. on several machines) are combined by
``--merge A_raw.json B_raw.json … --json OUT.json``: the same tables, intervals and plots over all their
videos (the files must hold the same settings and no video twice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momentseg.grounding.controlled import BLUR_SIGMA
from momentseg.grounding.sampling import ANCHOR_RULES, DEFAULT_ANCHOR_RULE

SAMPLINGS = ("first-k", "uniform", "random", "mcs")
PROPAGATIONS = ("forward", "anchor-forward", "bap")
MODES = ("table", "sweep", "anchor")
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_JSON = {"table": RESULTS / "ablation.json", "sweep": RESULTS / "ablation_sweep.json",
                "anchor": RESULTS / "ablation_anchor.json"}
#: ``--mode sweep``: noise levels λ (0 = the blurred truth, 1 = pure noise).
DEFAULT_NOISE = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
#: ``--mode anchor``: samplings measured unless ``--samplings`` is given.
ANCHOR_MODE_SAMPLINGS = ("mcs",)
#: The memory-clearing rule: on (the method) and off.
UPDATE_RULES = (True, False)
#: Setting fields of a row besides sampling / propagation / K, per mode.
MODE_AXES = {"table": (), "sweep": ("noise",), "anchor": ("anchor", "anchor_update")}
#: Subsets of expressions (name, flags of ``expression_flags``: any of them set), then ``plain`` = none of all.
SUBSETS = (("late_start", ("late_start",)), ("absent_frame0", ("absent_frame0",)), ("lookalike", ("lookalike",)),
           ("occluded_or_exits", ("occluded", "exits")))
PLAIN = "plain"
#: Paired differences (row a − row b) of ``table`` and ``sweep``, as (sampling, propagation) pairs.
PAIRS = ((("mcs", "bap"), ("first-k", "forward")), (("mcs", "bap"), ("uniform", "bap")))
#: Every setting field of a per-expression row (the key of one measurement).
_FIELDS = ("noise", "sampling", "seed", "keyframes", "anchor", "anchor_update", "propagation")


@dataclass(frozen=True)
class Job:
    """One video of the ablation (plain data, sent to a worker process).

    ``noise`` empty: the model's ``[FIND]`` curve; otherwise the controlled curves at these levels."""

    model: str
    device: str
    index: int
    keyframes: tuple[int, ...]
    seeds: tuple[int, ...]
    threads: int
    max_expressions: int | None = None
    samplings: tuple[str, ...] = SAMPLINGS
    anchors: tuple[str, ...] = (DEFAULT_ANCHOR_RULE,)
    updates: tuple[bool, ...] = (True,)
    noise: tuple[float, ...] = ()
    blur: float = BLUR_SIGMA
    noise_seed: int = 0


_PIPES: dict[tuple[str, str], object] = {}


def _pipeline(model: str, device: str):
    from momentseg.pipeline import MomentSeg

    key = (model, device)
    if key not in _PIPES:
        _PIPES[key] = MomentSeg.from_pretrained(model, device=device)
    return _PIPES[key]


def variants(seeds: Sequence[int], samplings: Sequence[str] = SAMPLINGS) -> list[tuple[str, int | None]]:
    """(sampling, seed) pairs: one per deterministic sampling, one per seed for ``random``."""
    out: list[tuple[str, int | None]] = []
    for s in samplings:
        out += [(s, seed) for seed in seeds] if s == "random" else [(s, None)]
    return out


def _scores(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Per-expression (J, F): means over all frames of (T,H,W) bool masks."""
    from momentseg.eval.metrics import f_measure, j_measure

    return float(np.mean(j_measure(gt, pred))), float(np.mean(f_measure(gt, pred)))


def score_video(job: Job) -> dict:
    """Ground, segment (every row) and score every expression of test video ``job.index``.

    Returns ``{"video", "index", "frames", "seconds", "expressions": [{"exp_id", "kind", "flags", "tsg"?:
    score_query, "tsg_by_noise"?: {str(λ): score_query}, "rows"?: [{"noise", "sampling", "seed", "keyframes",
    "anchor", "anchor_update", "propagation", "J", "F", "updates"}]}]}``.
    """
    import torch

    from momentseg.data.synthetic import SPLIT_SEEDS, expression_flags, generate_video, video_id, video_seed
    from momentseg.eval.tsg import score_query
    from momentseg.grounding.controlled import controlled_curve
    from momentseg.grounding.moments import ground_moments
    from momentseg.grounding.sampling import select_keyframes
    from momentseg.io.video import open_video
    from momentseg.sam2.config import preprocess_for_sam2
    from momentseg.sam2.session import shared_image_features

    start = time.perf_counter()
    torch.set_num_threads(job.threads)
    pipe = _pipeline(job.model, job.device)
    synth = generate_video(video_seed(SPLIT_SEEDS["test"], job.index), video_id(job.index))
    video = open_video(synth.frames, fps=synth.fps)
    sweep = bool(job.noise)
    chosen = [(i, e) for i, e in enumerate(synth.expressions) if e.obj_ids or e.moments][: job.max_expressions]
    texts = [" ".join(e.text.split()) for _, e in chosen]
    expressions = []
    with torch.no_grad():
        groundings = [None] * len(chosen) if sweep else pipe.ground_many(video, texts)
        context = pipe.context_frames(video)
        size = pipe.config.track_image_size
        sam_frames = preprocess_for_sam2(video.get_frames(range(len(video)), size=(size, size)), size)
        with shared_image_features(pipe.model.tracker):
            for (e_idx, exp), text, grounding in zip(chosen, texts, groundings, strict=True):
                rec: dict = {"exp_id": exp.exp_id, "kind": exp.kind, "flags": expression_flags(synth, exp)}
                moments = [list(m) for m in exp.moments]
                if sweep:
                    indicator = synth.moment_frames(exp)
                    curves = [(lam, controlled_curve(indicator, lam, blur_sigma=job.blur,
                                                     seed=(job.noise_seed, job.index, e_idx)))
                              for lam in job.noise]
                    if moments:
                        rec["tsg_by_noise"] = {
                            str(lam): score_query(ground_moments(p, video.timestamps, frame_duration=1 / video.fps),
                                             moments) for lam, p in curves}
                else:
                    curves = [(None, grounding.probabilities)]
                    if moments:
                        rec["tsg"] = score_query(grounding.moments, moments)
                if exp.obj_ids:
                    gt = synth.expression_masks(exp)
                    cache: dict = {}
                    rows = []
                    for noise, p in curves:
                        for sampling, seed in variants(job.seeds, job.samplings):
                            for k in job.keyframes:
                                for rule in job.anchors:
                                    choice = select_keyframes(p, k, sampling, seed=seed or 0, anchor_rule=rule)
                                    for update in job.updates:
                                        scores = _propagation_scores(pipe, video, text, choice, context,
                                                                     sam_frames, gt, anchor_update=update,
                                                                     cache=cache)
                                        rows += [
                                            {"noise": noise, "sampling": sampling, "seed": seed, "keyframes": k,
                                             "anchor": rule, "anchor_update": update, "propagation": prop,
                                             "J": j, "F": f, "updates": fired}
                                            for prop, (j, f, fired) in scores.items()
                                        ]
                    rec["rows"] = rows
                expressions.append(rec)
    return {"video": synth.video_id, "index": job.index, "frames": len(video),
            "seconds": time.perf_counter() - start, "expressions": expressions}


def _masks(pipe, video, choice, prompt, sam_frames, mode: str, anchor_update: bool):
    """SAM2 propagation as ``MomentSeg.segment`` runs it (:meth:`MomentSeg.propagate`) of a
    :meth:`MomentSeg.seg_prompt` ``prompt``: (T,H,W) bool masks at the video's size and the (T,) object
    probabilities."""
    masks, probs = pipe.propagate(video, choice, prompt.embedding, sam_frames, mode, anchor_update=anchor_update,
                                  prior=prompt.prior, present=prompt.present)
    return masks.to_array(), probs


def _propagation_scores(pipe, video, text, choice, context, sam_frames, gt, *, anchor_update: bool = True,
                        cache: dict | None = None) -> dict[str, tuple[float, float, int]]:
    """(J, F, memory clears) of one keyframe choice under every propagation mode (see the module docstring for
    what is shared; ``cache`` carries it across the choices of one expression)."""
    from momentseg.propagation.policy import bap_plan, fired_updates

    cache = {} if cache is None else cache
    idx, anchor = tuple(int(i) for i in choice.indices), int(choice.anchor)
    key = ("scores", idx, anchor, anchor_update)
    if key in cache:
        return cache[key]
    if ("seg", idx) not in cache:
        cache[("seg", idx)] = pipe.seg_prompt(video, text, choice.indices, context)
    prompt, n = cache[("seg", idx)], len(video)
    bap, probs = _masks(pipe, video, choice, prompt, sam_frames, "bap", anchor_update)
    fired = fired_updates(bap_plan(n, idx, anchor, "bap"), probs, enabled=anchor_update)
    anchor_forward = bap.copy()
    anchor_forward[:anchor] = False
    out = {"bap": (*_scores(gt, bap), len(fired)),
           "anchor-forward": (*_scores(gt, anchor_forward), sum(f > anchor for f in fired))}
    if ("forward", idx, anchor_update) not in cache:
        if idx[0] == anchor:
            cache[("forward", idx, anchor_update)] = out["anchor-forward"]
        else:
            fwd, fprobs = _masks(pipe, video, choice, prompt, sam_frames, "forward", anchor_update)
            fired_fwd = fired_updates(bap_plan(n, idx, anchor, "forward"), fprobs, enabled=anchor_update)
            cache[("forward", idx, anchor_update)] = (*_scores(gt, fwd), len(fired_fwd))
    out["forward"] = cache[("forward", idx, anchor_update)]
    cache[key] = {p: out[p] for p in PROPAGATIONS}
    return cache[key]


# ------------------------------------------------------------------ aggregation
@dataclass(frozen=True)
class Settings:
    """What one run measured (from the command line): the grid of headline rows."""

    mode: str
    keyframes: tuple[int, ...]
    seeds: tuple[int, ...]
    samplings: tuple[str, ...] = SAMPLINGS
    anchors: tuple[str, ...] = (DEFAULT_ANCHOR_RULE,)
    updates: tuple[bool, ...] = (True,)
    noise: tuple[float, ...] = ()

    def grid(self) -> list[dict]:
        """Headline settings (no seed) in table order: noise, K, anchor, update, propagation, sampling."""
        return [{"noise": lam, "keyframes": k, "anchor": a, "anchor_update": u, "propagation": p, "sampling": s}
                for lam in (self.noise or (None,)) for k in self.keyframes for a in self.anchors
                for u in self.updates for p in PROPAGATIONS for s in self.samplings]

    def pairs(self) -> list[tuple[dict, dict]]:
        """(a, b) settings of the paired differences a − b (see the module docstring)."""
        out = []
        for lam in self.noise or (None,):
            for k in self.keyframes:
                base = {"noise": lam, "keyframes": k}
                if self.mode == "anchor":
                    method = {"anchor": DEFAULT_ANCHOR_RULE, "anchor_update": True}
                    for s in self.samplings:
                        a = {**base, **method, "sampling": s, "propagation": "bap"}
                        out += [(a, {**a, "anchor": r, "anchor_update": u}) for r in self.anchors
                                for u in self.updates if (r, u) != (method["anchor"], method["anchor_update"])]
                    continue
                one = {**base, "anchor": DEFAULT_ANCHOR_RULE, "anchor_update": True}
                out += [({**one, "sampling": sa, "propagation": pa}, {**one, "sampling": sb, "propagation": pb})
                        for (sa, pa), (sb, pb) in PAIRS if {sa, sb} <= set(self.samplings)]
        return out


class Table:
    """Per-expression (J, F, updates) of every measured setting, in one expression order."""

    def __init__(self, videos: list[dict]):
        self.expressions = [e for v in videos for e in v["expressions"] if "rows" in e]
        if not self.expressions:
            raise SystemExit("no expression with a target in the chosen videos")
        n = len(self.expressions)
        self._values: dict[tuple, np.ndarray] = defaultdict(lambda: np.full((n, 3), np.nan))
        for i, e in enumerate(self.expressions):
            for r in e["rows"]:
                self._values[tuple(r[f] for f in _FIELDS)][i] = (r["J"], r["F"], r["updates"])

    def values(self, setting: dict, seed: int | None = None) -> np.ndarray:
        """(n, 3) per-expression (J, F, updates) of ``setting`` with ``seed`` (None: not random)."""
        key = tuple(seed if f == "seed" else setting[f] for f in _FIELDS)
        if key not in self._values:
            raise KeyError(f"setting not measured: {dict(zip(_FIELDS, key, strict=True))}")
        return self._values[key]

    def per_expression(self, setting: dict, seeds: Sequence[int]) -> np.ndarray:
        """(n, 3); ``random``: the mean over seeds per expression."""
        if setting["sampling"] == "random":
            return np.mean([self.values(setting, s) for s in seeds], axis=0)
        return self.values(setting)

    def subset(self, name: str) -> np.ndarray:
        """Bool mask over the expressions of subset ``name`` (see :data:`SUBSETS`)."""
        named = dict(SUBSETS)
        flags = [e["flags"] for e in self.expressions]
        if name == PLAIN:
            return np.array([not any(f[x] for fl in named.values() for x in fl) for f in flags], dtype=bool)
        return np.array([any(f[x] for x in named[name]) for f in flags], dtype=bool)


def _row(setting: dict, vals: np.ndarray, indices: np.ndarray, mode: str) -> dict:
    from momentseg.eval.bootstrap import percentile_interval

    jf = 100 * (vals[:, 0] + vals[:, 1]) / 2
    lo, hi = percentile_interval(jf, indices)
    out = {"sampling": setting["sampling"], "propagation": setting["propagation"], "keyframes": setting["keyframes"],
           **{a: setting[a] for a in MODE_AXES[mode]},
           "J&F": round(float(jf.mean()), 2), "J": round(100 * float(vals[:, 0].mean()), 2),
           "F": round(100 * float(vals[:, 1].mean()), 2), "J&F_lo": round(lo, 2), "J&F_hi": round(hi, 2),
           "n": int(len(jf))}
    if mode == "anchor":
        out["updates"] = round(float(vals[:, 2].mean()), 3)
    return out


def aggregate(table: Table, settings: Settings, mask: np.ndarray | None = None, *,
              per_seed: bool = True) -> list[dict]:
    """The rows (percent, 2 decimals) over the expressions of ``mask`` (default: all); see the module
    docstring. ``per_seed``: also one row per random seed (before the aggregated random row)."""
    from momentseg.eval.bootstrap import bootstrap_indices

    mask = np.ones(len(table.expressions), dtype=bool) if mask is None else mask
    if not mask.any():
        return []
    indices = bootstrap_indices(int(mask.sum()))
    rows = []
    for s in settings.grid():
        if s["sampling"] != "random":
            rows.append(_row(s, table.values(s)[mask], indices, settings.mode))
            continue
        seeds = [{**_row(s, table.values(s, seed)[mask], indices, settings.mode), "seed": seed}
                 for seed in settings.seeds]
        agg = {**_row(s, table.per_expression(s, settings.seeds)[mask], indices, settings.mode),
               "seeds": list(settings.seeds)}
        for m in ("J&F", "J", "F"):
            vals = np.asarray([r[m] for r in seeds])
            agg[f"{m}_std"] = round(float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, 2)
        rows += (seeds if per_seed else []) + [agg]
    return rows


def _label(setting: dict, mode: str) -> str:
    """``mcs+bap``, with the mode's axes (``window/on``) where they vary."""
    out = f"{setting['sampling']}+{setting['propagation']}"
    if mode == "anchor":
        out += f" ({setting['anchor']}, update {'on' if setting['anchor_update'] else 'off'})"
    return out


def differences(table: Table, settings: Settings, mask: np.ndarray | None = None) -> list[dict]:
    """Paired differences a − b of J&F (×100) with their intervals, over the expressions of ``mask``."""
    from momentseg.eval.bootstrap import bootstrap_indices, paired_difference

    mask = np.ones(len(table.expressions), dtype=bool) if mask is None else mask
    if not mask.any():
        return []
    indices = bootstrap_indices(int(mask.sum()))
    out = []
    for a, b in settings.pairs():
        va, vb = (table.per_expression(s, settings.seeds)[mask] for s in (a, b))
        d, lo, hi = paired_difference(100 * va[:, :2].mean(1), 100 * vb[:, :2].mean(1), indices)
        out.append({"keyframes": a["keyframes"], **({"noise": a["noise"]} if settings.mode == "sweep" else {}),
                    "a": _label(a, settings.mode), "b": _label(b, settings.mode),
                    "J&F_diff": round(d, 2), "lo": round(lo, 2), "hi": round(hi, 2), "n": int(mask.sum())})
    return out


def subsets(table: Table, settings: Settings) -> list[dict]:
    """Headline rows and paired differences per subset of expressions (:data:`SUBSETS`, then ``plain``)."""
    named = dict(SUBSETS)
    out = []
    for name in [*named, PLAIN]:
        mask = table.subset(name)
        out.append({"subset": name, "flags": list(named.get(name, ())), "expressions": int(mask.sum()),
                    "rows": aggregate(table, settings, mask, per_seed=False),
                    "differences": differences(table, settings, mask)})
    return out


def tsg_summary(videos: list[dict]) -> dict:
    """TSG headline numbers over every expression with moments (see ``momentseg.eval.tsg.summarize``)."""
    from momentseg.eval.tsg import summarize

    queries = [e["tsg"] for v in videos for e in v["expressions"] if "tsg" in e]
    return {**summarize(queries), "queries": len(queries)} if queries else {"queries": 0}


def tsg_by_noise(videos: list[dict], noise: Sequence[float]) -> dict[str, dict]:
    """``sweep``: TSG numbers of the controlled curves per noise level (keys ``str(λ)``)."""
    from momentseg.eval.tsg import summarize

    out = {}
    for lam in noise:
        queries = [e["tsg_by_noise"][str(lam)] for v in videos for e in v["expressions"] if "tsg_by_noise" in e]
        out[str(lam)] = {**summarize(queries), "queries": len(queries)} if queries else {"queries": 0}
    return out


def headline(rows: list[dict]) -> list[dict]:
    """Rows without the per-seed random rows (random = the aggregated row)."""
    return [r for r in rows if "seed" not in r]


# ------------------------------------------------------------------ report
def _cell(r: dict) -> str:
    std = f" ± {r['J&F_std']:.2f}" if "J&F_std" in r else ""
    clears = f", {r['updates']:.2f} clears" if "updates" in r else ""
    return f"{r['J&F']:.2f}{std} [{r['J&F_lo']:.1f}, {r['J&F_hi']:.1f}] ({r['J']:.1f} / {r['F']:.1f}{clears})"


#: Markdown row heads per mode: the columns before the propagation cells (row fields, in this order).
_HEADS = {"table": ("K", "sampling"), "sweep": ("K", "noise λ", "sampling"),
          "anchor": ("K", "sampling", "anchor", "update")}
_HEAD_FIELDS = {"K": "keyframes", "sampling": "sampling", "noise λ": "noise", "anchor": "anchor",
                "update": "anchor_update"}


def _table_lines(rows: list[dict], mode: str) -> list[str]:
    heads = "| " + " | ".join(_HEADS[mode]) + " |"
    cells: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in headline(rows):
        cells[tuple(r[_HEAD_FIELDS[h]] for h in _HEADS[mode])][r["propagation"]] = r
    extra = ", memory clears per expression" if mode == "anchor" else ""
    lines = [heads + "".join(f" {p} J&F [95 % CI] (J / F{extra}) |" for p in PROPAGATIONS),
             "|" + "---|" * (heads.count("|") - 1 + len(PROPAGATIONS))]
    for key, by_prop in cells.items():
        head = "| " + " | ".join(
            ("on" if x is True else "off" if x is False else f"{x:g}" if isinstance(x, float) else str(x))
            for x in key) + " |"
        lines.append(head + "".join(f" {_cell(by_prop[p])} |" for p in PROPAGATIONS if p in by_prop))
    return lines


def _diff_lines(diffs: list[dict], mode: str) -> list[str]:
    if not diffs:
        return []
    noise = mode == "sweep"
    lines = ["| K |" + (" noise λ |" if noise else "") + " a | b | Δ J&F (a − b) [95 % CI] | n |",
             "|---|" + ("---|" if noise else "") + "---|---|---|---|"]
    for d in diffs:
        lines.append(f"| {d['keyframes']} |" + (f" {d['noise']:g} |" if noise else "")
                     + f" {d['a']} | {d['b']} | {d['J&F_diff']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}] | {d['n']} |")
    return lines


def markdown(rows: list[dict], diffs: list[dict], parts: list[dict], tsg: dict, run: dict,
             tsg_noise: dict | None = None) -> str:
    """Markdown: the rows (J&F ± seed std [95 % CI] (J / F)), the paired differences, the subsets, TSG (of the
    model's [FIND] pass; ``sweep``: ``tsg_noise``, of the controlled curves per noise level)."""
    mode = run["mode"]
    what = {"table": "the model's [FIND] curve",
            "sweep": f"controlled curves (ground-truth moment blurred σ = {run['blur']:g} frames, mixed with "
                     f"uniform noise of weight λ, noise seed {run['noise_seed']})",
            "anchor": "the model's [FIND] curve; anchor rule × memory-clearing rule"}[mode]
    lines = [
        f"RefVOS on {run['videos']} synthetic test videos (indices {_ranges(run['video_indices'])}; "
        f"{run['expressions']} expressions with a target), {what}; "
        f"MeViS protocol (×100). Intervals: 95 % percentile bootstrap over expressions ({run['bootstrap']['resamples']} "
        f"resamples, seed {run['bootstrap']['seed']}); random = mean over seeds {run['seeds']} ± their std.",
        "", *_table_lines(rows, mode)]
    if diffs:
        lines += ["", "Paired differences (the same resampled expressions for both rows):", "",
                  *_diff_lines(diffs, mode)]
    for part in parts:
        flags = " or ".join(part["flags"]) if part["flags"] else "none of " + ", ".join(n for n, _ in SUBSETS)
        lines += ["", f"Subset `{part['subset']}` ({flags}): {part['expressions']} expressions", ""]
        if part["rows"]:
            lines += [*_table_lines(part["rows"], mode), "", *_diff_lines(part["differences"], mode)]
    if tsg.get("queries"):
        t = tsg
        keys = [k for k in t if k != "queries"]
        lines += ["", f"TSG from the dense [FIND] pass over {t['queries']} expressions with moments:", "",
                  "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                  "| " + " | ".join(f"{t[k]:.2f}" for k in keys) + " |"]
    if tsg_noise:
        first = next(iter(tsg_noise.values()))
        keys = [k for k in first if k != "queries"]
        lines += ["", "TSG of the controlled curves (the paper's answer: longest run above 0.4):", "",
                  "| noise λ | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        lines += [f"| {lam} | " + " | ".join(f"{t.get(k, float('nan')):.2f}" for k in keys) + " |"
                  for lam, t in tsg_noise.items()]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, mode: str = "table") -> None:
    """J&F with its 95 % interval against K (``table`` / ``anchor``) or against λ (``sweep``, one panel row per
    K): one line per sampling (``anchor``: per sampling × anchor variant), one panel per propagation; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from momentseg.io.atomic import atomic_path

    rows = headline(rows)
    x_key = "noise" if mode == "sweep" else "keyframes"
    facets = sorted({r["keyframes"] for r in rows}) if mode == "sweep" else [None]
    fig, axes = plt.subplots(len(facets), len(PROPAGATIONS), figsize=(4.2 * len(PROPAGATIONS), 3.6 * len(facets)),
                             sharey=True, squeeze=False)
    for axes_row, k in zip(axes, facets, strict=True):
        for ax, prop in zip(axes_row, PROPAGATIONS, strict=True):
            lines: dict[str, list] = defaultdict(list)
            for r in rows:
                if r["propagation"] == prop and (k is None or r["keyframes"] == k):
                    label = r["sampling"] + (f" {r['anchor']}/{'on' if r['anchor_update'] else 'off'}"
                                             if mode == "anchor" else "")
                    lines[label].append((r[x_key], r["J&F"], r["J&F_lo"], r["J&F_hi"]))
            span = max((max(r[x_key] for r in rows) - min(r[x_key] for r in rows)), 1)
            for i, (label, pts) in enumerate(lines.items()):
                xs, jf, lo, hi = (np.asarray(v, dtype=float) for v in zip(*sorted(pts), strict=True))
                dodge = (i - (len(lines) - 1) / 2) * 0.012 * span  # side by side, so the intervals stay visible
                ax.errorbar(xs + dodge, jf, yerr=np.stack([jf - lo, hi - jf]), marker="o", capsize=3, label=label)
            ax.set_title(prop if k is None else f"{prop}, K = {k}")
            ax.set_xlabel("noise λ (0 = truth, 1 = pure noise)" if mode == "sweep" else "keyframes K")
            ax.set_xticks(sorted({r[x_key] for r in rows}))
            ax.grid(alpha=0.3)
        axes_row[0].set_ylabel("J&F (×100), 95 % CI")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def run_jobs(jobs: list[Job], workers: int) -> Iterator[dict]:
    """score_video over the jobs, in order, in ``workers`` processes (in-process when 1)."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(score_video, jobs)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        yield from pool.map(score_video, jobs)


def companions(json_path: Path) -> dict[str, Path]:
    """The files written next to ``OUT.json``: ``tsg`` (OUT_tsg.json), ``paired`` (OUT_paired.json), ``subsets``
    (OUT_subsets.json), ``raw`` (OUT_raw.json), ``md`` (OUT.md), ``png`` (OUT.png)."""
    stem = json_path.with_suffix("")
    return {"tsg": Path(f"{stem}_tsg.json"), "paired": Path(f"{stem}_paired.json"),
            "subsets": Path(f"{stem}_subsets.json"), "raw": Path(f"{stem}_raw.json"), "md": stem.with_suffix(".md"),
            "png": stem.with_suffix(".png")}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=MODES, default=MODES[0], help="table | sweep (controlled grounding) | "
                    "anchor (BAP's anchor update)")
    ap.add_argument("--first-video", type=int, default=0, help="first test video index N (default 0)")
    ap.add_argument("--videos", type=int, default=20, help="test videos N..N+M-1 of the held-out split")
    ap.add_argument("--json", type=Path, default=None,
                    help="rows out (companions written next to it); default benchmarks/results/ablation[_MODE].json")
    ap.add_argument("--model", default="embedded", help="checkpoint folder, or 'embedded'")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--workers", type=int, default=1, help="processes over videos")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--keyframes", type=int, nargs="+", default=[5, 10, 20], help="values of K")
    ap.add_argument("--seeds", type=int, default=5, help="random sampling: seeds 0..S-1")
    ap.add_argument("--samplings", nargs="+", choices=SAMPLINGS, default=None,
                    help=f"samplings to measure (default: all; --mode anchor: {' '.join(ANCHOR_MODE_SAMPLINGS)})")
    ap.add_argument("--noise", type=float, nargs="+", default=None,
                    help=f"--mode sweep: noise levels in [0, 1] (default {' '.join(map(str, DEFAULT_NOISE))})")
    ap.add_argument("--blur", type=float, default=None,
                    help=f"--mode sweep: blur sigma of the ground-truth moment, frames (default {BLUR_SIGMA:g})")
    ap.add_argument("--noise-seed", type=int, default=None, help="--mode sweep: seed of the noise (default 0)")
    ap.add_argument("--max-expressions", type=int, default=None,
                    help="only the first M expressions (with a target or moments) of each video (quick runs)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="score nothing: combine the OUT_raw.json files of earlier runs (their settings apply)")
    args = ap.parse_args(argv)
    if min(args.videos, args.seeds, args.workers, args.threads, *args.keyframes, args.max_expressions or 1) < 1:
        ap.error("--videos, --seeds, --workers, --threads, --max-expressions and --keyframes must be >= 1")
    if args.first_video < 0:
        ap.error(f"--first-video must be >= 0, got {args.first_video}")
    if args.mode != "sweep":
        given = [f for f, v in (("--noise", args.noise), ("--blur", args.blur), ("--noise-seed", args.noise_seed))
                 if v is not None]
        if given:
            ap.error(f"{', '.join(given)} only apply to --mode sweep")
    args.noise = tuple(sorted(set(args.noise if args.noise is not None else DEFAULT_NOISE)))
    if args.mode == "sweep" and not all(0.0 <= x <= 1.0 for x in args.noise):
        ap.error(f"--noise levels must lie in [0, 1], got {' '.join(map(str, args.noise))}")
    args.blur = BLUR_SIGMA if args.blur is None else args.blur
    if args.blur < 0:
        ap.error(f"--blur must be >= 0 frames, got {args.blur}")
    args.noise_seed = 0 if args.noise_seed is None else args.noise_seed
    default = ANCHOR_MODE_SAMPLINGS if args.mode == "anchor" else SAMPLINGS
    args.samplings = tuple(s for s in SAMPLINGS if s in (args.samplings or default))  # table order
    if args.merge:
        try:
            args.raw = load_raw(args.merge)
        except ValueError as exc:
            ap.error(str(exc))
        args.mode = args.raw["settings"]["mode"]
    args.json = DEFAULT_JSON[args.mode] if args.json is None else args.json
    return args


#: The settings a raw file records; files merged together must agree on all of them.
RAW_SETTINGS = ("mode", "keyframes", "seeds", "samplings", "anchors", "updates", "noise", "blur", "noise_seed",
                "model", "max_expressions")


def load_raw(paths: Sequence[Path]) -> dict:
    """``{"settings", "videos", "files"}`` from ``OUT_raw.json`` files (ValueError: unreadable, other settings,
    a video twice); videos sorted by index."""
    settings, videos = None, []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            got, vids = {k: data["settings"][k] for k in RAW_SETTINGS}, list(data["videos"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--merge: {path} is not an ablation raw file ({type(exc).__name__}: {exc})") from None
        if settings is not None and got != settings:
            differ = [k for k in RAW_SETTINGS if got[k] != settings[k]]
            raise ValueError(f"--merge: {path} was run with other settings ({', '.join(differ)})")
        settings = got
        videos += vids
    indices = [v["index"] for v in videos]
    twice = sorted({i for i in indices if indices.count(i) > 1})
    if twice:
        raise ValueError(f"--merge: test video(s) {twice} appear in more than one file")
    return {"settings": settings, "videos": sorted(videos, key=lambda v: v["index"]),
            "files": [str(p) for p in paths]}


def _ranges(indices: Sequence[int]) -> str:
    """``0..3, 7, 9..10`` for the sorted indices."""
    out, start = [], None
    for i, x in enumerate(indices):
        start = x if start is None else start
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            out.append(f"{start}..{x}" if x != start else str(x))
            start = None
    return ", ".join(out)


def score(args: argparse.Namespace) -> tuple[dict, list[dict], float]:
    """Score test videos ``--first-video``.. of the split with the command line's settings: (the raw settings,
    the :func:`score_video` results in video order, wall seconds)."""
    mode = args.mode
    raw = {"mode": mode, "keyframes": sorted(set(args.keyframes)), "seeds": list(range(args.seeds)),
           "samplings": list(args.samplings),
           "anchors": list(ANCHOR_RULES if mode == "anchor" else (DEFAULT_ANCHOR_RULE,)),
           "updates": list(UPDATE_RULES if mode == "anchor" else (True,)),
           "noise": list(args.noise if mode == "sweep" else ()), "blur": args.blur, "noise_seed": args.noise_seed,
           "model": args.model, "max_expressions": args.max_expressions}
    model = str(Path(args.model).resolve()) if args.model != "embedded" else args.model
    jobs = [Job(model, args.device, i, tuple(raw["keyframes"]), tuple(raw["seeds"]), args.threads,
                args.max_expressions, tuple(raw["samplings"]), tuple(raw["anchors"]), tuple(raw["updates"]),
                tuple(raw["noise"]), args.blur, args.noise_seed)
            for i in range(args.first_video, args.first_video + args.videos)]
    start = time.perf_counter()
    videos = []
    for v in run_jobs(jobs, args.workers):
        videos.append(v)
        n_exp = sum("rows" in e for e in v["expressions"])
        print(f"[{len(videos)}/{len(jobs)}] {v['video']}: {v['frames']} frames, {n_exp} expressions, "
              f"{v['seconds']:.1f} s", file=sys.stderr, flush=True)
    return raw, videos, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.merge:
        raw, videos, seconds = args.raw["settings"], args.raw["videos"], None
    else:
        raw, videos, seconds = score(args)
    mode = raw["mode"]
    settings = Settings(mode, tuple(raw["keyframes"]), tuple(raw["seeds"]), tuple(raw["samplings"]),
                        tuple(raw["anchors"]), tuple(raw["updates"]), tuple(raw["noise"]))

    table = Table(videos)
    rows = aggregate(table, settings)
    diffs = differences(table, settings)
    parts = subsets(table, settings)
    tsg = tsg_summary(videos)
    tsg_noise = tsg_by_noise(videos, settings.noise) if mode == "sweep" else None
    import torch

    from momentseg.eval import bootstrap

    indices = [v["index"] for v in videos]
    run = {
        **raw,
        "first_video": min(indices),
        "videos": len(videos),
        "video_indices": indices,
        "video_ids": [v["video"] for v in videos],
        "expressions": len(table.expressions),
        "frames": sum(v["frames"] for v in videos),
        "subsets": {name: list(flags) for name, flags in SUBSETS},
        "bootstrap": {"interval": "percentile", "over": "expressions", "resamples": bootstrap.RESAMPLES,
                      "seed": bootstrap.SEED, "level": bootstrap.LEVEL},
        "seconds": None if seconds is None else round(seconds, 2),
        "video_seconds": [round(v["seconds"], 2) for v in videos],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "command": "python benchmarks/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.merge:
        run["merged_from"] = args.raw["files"]
    else:
        run.update(device=args.device, workers=args.workers, threads=args.threads)
    from momentseg.io.atomic import atomic_write_text

    out = companions(args.json)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    atomic_write_text(out["paired"], json.dumps(diffs, indent=1) + "\n")
    atomic_write_text(out["subsets"], json.dumps(parts, indent=1) + "\n")
    meta = {"tsg": tsg, **({"tsg_by_noise": tsg_noise} if tsg_noise else {}), "run": run}
    atomic_write_text(out["tsg"], json.dumps(meta, indent=1) + "\n")
    atomic_write_text(out["raw"], json.dumps({"settings": raw, "videos": videos}) + "\n")
    text = markdown(rows, diffs, parts, tsg, run, tsg_noise)
    atomic_write_text(out["md"], text)
    plot(rows, out["png"], mode)
    print(text)
    took = "merged" if seconds is None else f"{seconds:.1f} s"
    print(f"{took}: {run['videos']} videos ({run['expressions']} expressions, {run['frames']} frames); "
          f"wrote {args.json} and {', '.join(str(p) for p in out.values())}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
