"""Prediction files: what ``momentseg predict`` writes and ``momentseg eval`` reads.

Mask predictions (read by :func:`open_mask_predictions`, written by the ``write_*`` functions):

* PNG folder: ``PRED/<vid>/<exp_id>/<frame>.png`` (non-zero = foreground; ``vid`` may contain ``/``).
* COCO-RLE JSON file: ``{vid: {exp_id: [RLE or null, one per frame of the video, in meta order]}}``;
  ``null`` is an empty mask. A value may also be ``{"prediction_masks": [...]}`` (Sa2VA's Ref-SAV output).

TSG predictions: JSONL ``{"qid": int, "pred_relevant_windows": [[s, e, score], ...]}``
(``[s, e]`` without scores is accepted: then the given order is the ranking); as in Moment-DETR's
``standalone_eval`` a predicted window may end before it starts (it then overlaps nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from momentseg.data.files import load_json
from momentseg.data.refvos import RefVOSSplit, rle_frames
from momentseg.data.tsg import parse_window, qid_rows
from momentseg.errors import InputError
from momentseg.io.atomic import atomic_dir, atomic_write_text
from momentseg.io.masks import png_mask_bytes, rle_encode


class MaskPredictions:
    """Predicted masks for (video, expression) pairs, from a PNG folder or a COCO-RLE JSON file.

    ``keys()`` gives every (vid, exp_id) present; ``check_known(split)`` raises :class:`InputError` for a
    prediction of a video / expression the split does not have; ``task_source(vid, exp_id)`` returns a small,
    picklable description that :func:`load_predicted_masks` turns into masks inside a worker process.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.kind: str
        self._png: dict[tuple[str, str], set[str]] = {}
        self._rle: dict[str, dict[str, Any]] = {}
        if self.path.is_dir():
            self.kind = "png"
            for dirpath, _dirs, files in os.walk(self.path):
                pngs = {f[:-4] for f in files if f.lower().endswith(".png")}
                if not pngs:
                    continue
                rel = Path(dirpath).relative_to(self.path).as_posix()
                if "/" not in rel:
                    raise InputError(
                        f"PNG masks must be in PRED/<vid>/<exp_id>/<frame>.png; found some in {dirpath}"
                    )
                vid, exp_id = rel.rsplit("/", 1)
                self._png[(vid, exp_id)] = pngs
        elif self.path.is_file():
            self.kind = "rle"
            data = load_json(self.path)
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise InputError(f"{self.path}: expected {{vid: {{exp_id: [RLE or null per frame]}}}}")
            for vid, exps in data.items():
                for exp_id, masks in exps.items():
                    if isinstance(masks, dict) and "prediction_masks" in masks:
                        masks = masks["prediction_masks"]
                    if not isinstance(masks, list):
                        raise InputError(
                            f"{self.path}: {vid}/{exp_id}: expected a list of RLEs (one per frame)"
                        )
                    self._rle.setdefault(str(vid), {})[str(exp_id)] = masks
        else:
            raise InputError(f"predictions not found: {self.path}")

    def keys(self) -> set[tuple[str, str]]:
        if self.kind == "png":
            return set(self._png)
        return {(v, e) for v, exps in self._rle.items() for e in exps}

    def has(self, vid: str, exp_id: str) -> bool:
        if self.kind == "png":
            return (vid, exp_id) in self._png
        return exp_id in self._rle.get(vid, {})

    def check_known(self, split: RefVOSSplit) -> None:
        """Raise :class:`InputError` for predictions of unknown videos / expressions or wrong frame counts."""
        for vid, exp_id in sorted(self.keys()):
            if vid not in split.videos:
                where = self.path / vid if self.kind == "png" else self.path
                raise InputError(f"{where}: unknown video id {vid!r} (not in {split.meta_path})")
            if exp_id not in split.videos[vid].expressions:
                where = self.path / vid / exp_id if self.kind == "png" else self.path
                raise InputError(f"{where}: unknown expression {exp_id!r} of video {vid!r}")
            frames = split.videos[vid].frames
            if self.kind == "png":
                extra = self._png[(vid, exp_id)] - set(frames)
                if extra:
                    raise InputError(f"{self.path / vid / exp_id}: unknown frame {sorted(extra)[0]}.png")
            elif len(self._rle[vid][exp_id]) != len(frames):
                raise InputError(
                    f"{self.path}: {vid}/{exp_id} has {len(self._rle[vid][exp_id])} masks but the video has "
                    f"{len(frames)} frames"
                )

    def missing_frames(self, vid: str, exp_id: str, frames: Sequence[str]) -> int:
        """Number of frames without a PNG for a present expression (always 0 for RLE input)."""
        if self.kind == "png" and (vid, exp_id) in self._png:
            return sum(f not in self._png[(vid, exp_id)] for f in frames)
        return 0

    def task_source(self, vid: str, exp_id: str) -> tuple[str, Any]:
        """``("none", None)``, ``("png", folder)`` or ``("rle", [RLE or None per frame])``."""
        if not self.has(vid, exp_id):
            return ("none", None)
        if self.kind == "png":
            return ("png", str(self.path / vid / exp_id))
        return ("rle", self._rle[vid][exp_id])


def read_png_gray(path: str | os.PathLike, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a PNG mask as the ``(H, W)`` uint8 grey values ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` gives.

    8-bit grayscale PNGs (what MeViS, VISA, Sa2VA and ``momentseg predict`` write) are returned as stored, so
    0/255 and 0/1 masks keep their values; 1-bit PNGs give 0/255, 16-bit ones their high byte; with an alpha
    channel the alpha is dropped. Palette and colour PNGs are converted with Pillow's ITU-R 601 luma, which can
    differ from OpenCV's conversion by one grey level. Raises :class:`InputError` naming the file if it cannot
    be read or, when ``hw`` is given, is not ``hw`` (height, width) in size.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "L":
                arr = np.asarray(img)
            elif mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = (np.asarray(img).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
            elif mode == "LA":
                arr = np.asarray(img)[..., 0]
            else:
                arr = np.asarray(img.convert("L"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read mask PNG {path}: {exc}") from None
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if hw is not None and arr.shape != tuple(hw):
        raise InputError(
            f"mask {path} is {arr.shape[1]}x{arr.shape[0]} (WxH) but the frame is {hw[1]}x{hw[0]}"
        )
    return arr


def load_predicted_values(
    source: tuple[str, Any], frames: Sequence[str], hw: tuple[int, int], where: str
) -> np.ndarray:
    """Predicted masks ``(T, H, W)`` uint8 with the values the official scripts see; missing frames are 0.

    PNG: the grey value of each pixel (:func:`read_png_gray`; a 0/255 PNG gives 0/255). RLE: 0/1, as
    ``cocomask.decode`` gives.
    """
    kind, ref = source
    out = np.zeros((len(frames), hw[0], hw[1]), dtype=np.uint8)
    if kind == "png":
        folder = Path(ref)
        for t, frame in enumerate(frames):
            p = folder / f"{frame}.png"
            if p.exists():
                out[t] = read_png_gray(p, hw)
    elif kind == "rle":
        for t, layers in rle_frames(ref, hw, where, frames):
            out[t] = layers.any(axis=0)
    return out


def load_predicted_masks(
    source: tuple[str, Any], frames: Sequence[str], hw: tuple[int, int], where: str
) -> np.ndarray:
    """Masks ``(T, H, W)`` bool (grey value ≠ 0) from a :meth:`MaskPredictions.task_source`; missing = empty."""
    return load_predicted_values(source, frames, hw, where) != 0


def open_mask_predictions(path: str | os.PathLike) -> MaskPredictions:
    """Open a PNG prediction folder or a COCO-RLE JSON prediction file (layouts in the module docstring)."""
    return MaskPredictions(path)


def write_png_predictions(
    pred_dir: str | os.PathLike, vid: str, exp_id: str, frame_names: Sequence[str], masks: np.ndarray
) -> Path:
    """Write ``masks`` ``(T, H, W)`` as ``pred_dir/<vid>/<exp_id>/<frame>.png`` (0/255); the folder atomically."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] != len(frame_names):
        raise ValueError(f"masks shape {masks.shape} does not match {len(frame_names)} frames")
    target = Path(pred_dir) / vid / str(exp_id)
    with atomic_dir(target) as tmp:
        for name, m in zip(frame_names, masks, strict=True):
            (tmp / f"{name}.png").write_bytes(png_mask_bytes(m))
    return target


def encode_rle_masks(masks: np.ndarray) -> list[dict]:
    """``(T, H, W)`` masks → list of JSON-ready COCO RLEs (``counts`` as str)."""
    return [rle_encode(m) for m in np.asarray(masks)]


def write_rle_predictions(path: str | os.PathLike, predictions: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``{vid: {exp_id: masks}}`` as the COCO-RLE prediction JSON, atomically.

    Each ``masks`` is a ``(T, H, W)`` array or an already-encoded list of RLEs (or ``None``) per frame.
    """
    out: dict[str, dict[str, list]] = {}
    for vid, exps in predictions.items():
        for exp_id, masks in exps.items():
            if isinstance(masks, np.ndarray):
                enc = encode_rle_masks(masks)
            else:
                enc = [m if (m is None or isinstance(m, dict)) else rle_encode(np.asarray(m)) for m in masks]
            out.setdefault(str(vid), {})[str(exp_id)] = enc
    atomic_write_text(path, json.dumps(out))


def load_tsg_predictions(path: str | os.PathLike) -> dict[int, list[list[float]]]:
    """TSG prediction JSONL → ``{qid: [[s, e, score], ...]}`` in the given order.

    Windows without a score (``[s, e]``) get scores ``1, 1/2, 1/3, ...`` in the given order (all windows of a
    line must then lack scores). Malformed lines or duplicate qids raise :class:`InputError`.
    """
    out: dict[int, list[list[float]]] = {}
    for where, qid, row in qid_rows(path):
        wins = row.get("pred_relevant_windows")
        if not isinstance(wins, list):
            raise InputError(f"{where}: 'pred_relevant_windows' must be a list of [start, end, score]")
        lens = {len(w) if isinstance(w, list) else -1 for w in wins}
        if lens - {2, 3} or len(lens) > 1:
            raise InputError(f"{where}: every window must be [start, end, score] (or all [start, end])")
        parsed = []
        for i, w in enumerate(wins):
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in w):
                raise InputError(f"{where}: window {w!r} has non-numbers")
            s, e = parse_window(w[:2], where, allow_reversed=True)
            parsed.append([s, e, float(w[2]) if len(w) == 3 else 1.0 / (i + 1)])
        out[qid] = parsed
    return out


def write_tsg_predictions(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``{"qid": int, "pred_relevant_windows": [[s, e, score], ...], ...}`` rows as JSONL, atomically."""
    lines = []
    for row in rows:
        if "qid" not in row or "pred_relevant_windows" not in row:
            raise ValueError("each row needs 'qid' and 'pred_relevant_windows'")
        lines.append(json.dumps(dict(row)))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
