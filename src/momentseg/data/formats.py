"""Readers for the official benchmark formats, and prediction writers.

RefVOS splits (MeViS, ReVOS, Ref-DAVIS17, Ref-YouTube-VOS, Ref-SAV) all use the MeViS layout::

    SPLIT/JPEGImages/<vid>/<frame>.jpg
    SPLIT/<meta>.json          {"videos": {vid: {"frames": [frame names],
                                                 "expressions": {exp_id: {"exp": text,
                                                                          "obj_id": int | [int],
                                                                          "anno_id": int | [int],
                                                                          "type_id": 0 | 1 | 2 (ReVOS, Ref-SAV)}},
                                                 "fps" / "height" / "width" / ...: optional, kept}}}
    SPLIT/mask_dict.json       {str(anno_id): [COCO RLE or null, one per frame]}      (absent: no GT)
    SPLIT/mask_dict.pkl        the same, pickled (VISA / Sa2VA Ref-DAVIS17); read when there is no .json
    SPLIT/mask_dict_foreground.json  {vid: {"masks_rle": [RLE or [RLE, ...], one per frame]}}  (ReVOS only)

The meta file name per benchmark (the first that exists): MeViS / Ref-DAVIS17 / Ref-YouTube-VOS
``meta_expressions.json`` (for Ref-YouTube-VOS / Ref-DAVIS17 also ``../meta_expressions/<split>/
meta_expressions.json``, the official layout); ReVOS ``meta_expressions_valid_.json``; Ref-SAV
``meta_expressions_valid.json``; each falls back to ``meta_expressions.json``. ``split`` may also be the meta
JSON file itself (e.g. ReVOS ``meta_expressions_train_.json``); its folder is then the split folder.
Ref-YouTube-VOS's official valid meta also lists the test videos; when ``../meta_expressions/test/
meta_expressions.json`` exists those videos are dropped (as ReferFormer does).

``anno_id`` is what links an expression to its GT. A meta without it (the Ref-DAVIS17 / Ref-YouTube-VOS meta
that ReferFormer, VISA and Sa2VA ship) is handled as the official tooling does, never as an empty GT:

* ``refdavis``: when **no** expression has an ``anno_id``, they are numbered by a running index over the
  videos in sorted order and, inside each video, the expression ids in sorted (string) order, from 0 —
  VISA ``tools/eval_davis17.py`` / Sa2VA ``get_meta_exp``; ``RefVOSSplit.anno_id_fallback`` is then True.
  Some with and some without → one-line error.
* everywhere else, scoring an expression without ``anno_id`` (absent or ``null``) is a one-line error naming
  the meta file and the field. ``"anno_id": []`` is an expression without target (empty GT, as officially).

``mask_dict.pkl`` is read by a restricted unpickler: only dicts, lists, tuples, strings, bytes, numbers,
booleans and None can be built (any class or function reference is refused with a one-line error).

Mask predictions (read by :func:`open_mask_predictions`, written by the ``write_*`` functions):

* PNG folder: ``PRED/<vid>/<exp_id>/<frame>.png`` (non-zero = foreground; ``vid`` may contain ``/``).
* COCO-RLE JSON file: ``{vid: {exp_id: [RLE or null, one per frame of the video, in meta order]}}``;
  ``null`` is an empty mask. A value may also be ``{"prediction_masks": [...]}`` (Sa2VA's Ref-SAV output).

TSG ground truth: Charades-STA ``vid start end##sentence`` lines (qid = 0-based index of the non-empty
line), ActivityNet Captions JSON ``{vid: {"duration", "timestamps": [[s, e], ...], "sentences": [...]}}``
(qid = running index over (video, sentence) in file order), QVHighlights JSONL (``qid``, ``query``, ``vid``,
``duration``, ``relevant_windows``). Charades-STA and ActivityNet also read that JSONL form (Lighthouse's
``charades-sta_test.jsonl`` / ``activitynet_val_1.jsonl`` style: ``qid``, ``query``, ``duration``, ``vid``,
``relevant_windows``), recognised by its first line being a JSON object with ``qid`` and
``relevant_windows``. TSG predictions: JSONL ``{"qid": int, "pred_relevant_windows": [[s, e, score], ...]}``
(``[s, e]`` without scores is accepted: then the given order is the ranking); as in Moment-DETR's
``standalone_eval`` a predicted window may end before it starts (it then overlaps nothing).
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from momentseg.errors import InputError
from momentseg.io.atomic import atomic_dir, atomic_write_text
from momentseg.io.masks import (
    png_mask_bytes,
    rle_decode,
    rle_decode_layers,
    rle_encode,
    rle_size,
)

#: The benchmark names every command takes (``momentseg predict`` / ``eval --benchmark``), defined only here.
REFVOS_BENCHMARKS = ("mevis", "revos", "refdavis", "refytvos", "refsav")
TSG_BENCHMARKS = ("charades", "anet", "qvhighlights")
_META_NAMES = {
    "mevis": ("meta_expressions.json",),
    "revos": ("meta_expressions_valid_.json", "meta_expressions.json"),
    "refdavis": ("meta_expressions.json",),
    "refytvos": ("meta_expressions.json",),
    "refsav": ("meta_expressions_valid.json", "meta_expressions.json"),
}
_OFFICIAL_META_DIR = ("refdavis", "refytvos")  # also ../meta_expressions/<split>/meta_expressions.json


def load_json(path: str | os.PathLike) -> Any:
    """``json.load`` that raises a one-line :class:`InputError` naming the file on any problem."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in {path}: {exc}") from None


class _Refused(pickle.UnpicklingError):
    pass


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain data: every global (class, function) reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"refusing to load {module}.{name}")


def load_plain_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` allowing only dicts, lists, tuples, sets, strings, bytes, numbers, bools and None.

    Anything that needs a class or function (numpy arrays, custom objects, ``__reduce__`` payloads) raises a
    one-line :class:`InputError` naming the file; so does a missing or malformed file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    try:
        return _PlainDataUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise InputError(
            f"{path}: not a plain-data pickle ({exc}); only dicts, lists, strings, bytes and numbers are read"
        ) from None
    except Exception as exc:  # truncated / corrupt data raise many kinds of errors
        raise InputError(f"{path}: malformed pickle: {type(exc).__name__}: {exc}") from None


def load_mask_dict(path: str | os.PathLike) -> dict:
    """``mask_dict.json`` or ``mask_dict.pkl`` → ``{str(anno_id): [RLE or None per frame]}`` (keys as str)."""
    path = Path(path)
    data = load_plain_pickle(path) if path.suffix == ".pkl" else load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object {{anno_id: [RLE per frame]}}")
    return {str(k): v for k, v in data.items()}


def _id_list(value: Any, what: str, where: str) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise InputError(f"{where}: '{what}' must be an int or a list of ints, got {value!r}")


# ----------------------------------------------------------------------------------------------------- RefVOS


@dataclass(frozen=True)
class RefVOSExpression:
    """One referring expression: ``anno_ids`` index ``mask_dict.json``; ``type_id`` is ReVOS / Ref-SAV only.

    ``has_anno_id`` is False when the meta gives no ``anno_id`` (absent or null): its GT cannot be found.
    """

    exp_id: str
    text: str
    anno_ids: tuple[str, ...]
    obj_ids: tuple = ()
    type_id: int | None = None
    has_anno_id: bool = True


@dataclass
class RefVOSVideo:
    """One video: frame names in order, its expressions, optional size / fps and any other meta fields."""

    vid: str
    frames: list[str]
    expressions: dict[str, RefVOSExpression]
    fps: float | None = None
    height: int | None = None
    width: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class RefVOSSplit:
    """A RefVOS split in the MeViS layout (see the module docstring); GT masks are loaded lazily.

    Attributes: ``benchmark``, ``root`` (split folder), ``meta_path``, ``videos`` (vid → :class:`RefVOSVideo`,
    meta order), ``mask_dict_path`` / ``foreground_path`` (``None`` when the file is absent),
    ``anno_id_fallback`` (True when the anno_ids are VISA's running index, see the module docstring).
    """

    def __init__(
        self,
        benchmark: str,
        root: Path,
        meta_path: Path,
        videos: dict[str, RefVOSVideo],
        mask_dict_path: Path | None,
        foreground_path: Path | None,
        anno_id_fallback: bool = False,
    ):
        self.benchmark = benchmark
        self.anno_id_fallback = anno_id_fallback
        self.root = root
        self.meta_path = meta_path
        self.videos = videos
        self.mask_dict_path = mask_dict_path
        self.foreground_path = foreground_path
        self._mask_dict: dict | None = None
        self._foreground: dict | None = None
        self._sizes: dict[str, tuple[int, int]] = {}

    @property
    def has_gt(self) -> bool:
        return self.mask_dict_path is not None

    def expressions(self) -> Iterator[tuple[RefVOSVideo, RefVOSExpression]]:
        """All (video, expression) pairs in meta order."""
        for video in self.videos.values():
            for exp in video.expressions.values():
                yield video, exp

    def frame_path(self, vid: str, frame: str) -> Path:
        return self.root / "JPEGImages" / vid / f"{frame}.jpg"

    def _json_object(self, path: Path | None, missing: str, layout: str) -> dict:
        if path is None:
            raise InputError(f"{self.root} has no {missing}")
        data = load_json(path)
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected an object {layout}")
        return data

    @property
    def mask_dict(self) -> dict:
        if self._mask_dict is None:
            if self.mask_dict_path is None:
                raise InputError(f"{self.root} has no mask_dict.json (no ground truth in this split)")
            self._mask_dict = load_mask_dict(self.mask_dict_path)
        return self._mask_dict

    @property
    def foreground(self) -> dict:
        if self._foreground is None:
            self._foreground = self._json_object(
                self.foreground_path,
                "mask_dict_foreground.json (needed for ReVOS R)",
                "{vid: {'masks_rle': [...]}}",
            )
        return self._foreground

    def gt_rles(self, vid: str, exp_id: str) -> list[list]:
        """GT RLEs of an expression: one list per anno_id of ``len(frames)`` RLE-or-None entries."""
        video = self.videos[vid]
        exp = video.expressions[exp_id]
        if not exp.has_anno_id:
            raise InputError(
                f"{self.meta_path}: video {vid}, expression {exp_id} has no 'anno_id' (needed to find its "
                f"ground truth in {self.mask_dict_path.name if self.mask_dict_path else 'mask_dict.json'})"
            )
        out = []
        for anno in exp.anno_ids:
            entry = self.mask_dict.get(str(anno))
            if entry is None:
                raise InputError(
                    f"{self.mask_dict_path}: anno_id {anno} (video {vid}, expression {exp_id}) missing"
                )
            if not isinstance(entry, list) or len(entry) != len(video.frames):
                n = len(entry) if isinstance(entry, list) else type(entry).__name__
                raise InputError(
                    f"{self.mask_dict_path}: anno_id {anno} has {n} masks but video {vid} has "
                    f"{len(video.frames)} frames"
                )
            out.append(entry)
        return out

    def foreground_rles(self, vid: str) -> list:
        """ReVOS foreground RLEs of a video, one entry (RLE or list of RLEs) per frame."""
        entry = self.foreground.get(vid)
        n = len(self.videos[vid].frames)
        if not isinstance(entry, dict) or not isinstance(entry.get("masks_rle"), list):
            raise InputError(f"{self.foreground_path}: video {vid} has no 'masks_rle' list")
        if len(entry["masks_rle"]) != n:
            raise InputError(
                f"{self.foreground_path}: video {vid} has {len(entry['masks_rle'])} foreground masks, expected {n}"
            )
        return entry["masks_rle"]

    def frame_size(self, vid: str) -> tuple[int, int]:
        """``(H, W)`` of a video: from the meta, else any GT / foreground RLE of it, else its first JPEG."""
        if vid in self._sizes:
            return self._sizes[vid]
        video = self.videos[vid]
        hw: tuple[int, int] | None = None
        if video.height and video.width:
            hw = (int(video.height), int(video.width))
        if hw is None and self.has_gt:
            per_anno = [
                self.mask_dict.get(str(a)) or [] for e in video.expressions.values() for a in e.anno_ids
            ]
            hw = _first_size([r for entry in per_anno for r in entry], self.mask_dict_path)
        if hw is None and self.foreground_path is not None and isinstance(self.foreground.get(vid), dict):
            hw = _first_size(self.foreground[vid].get("masks_rle") or [], self.foreground_path)
        if hw is None and video.frames:
            path = self.frame_path(vid, video.frames[0])
            if path.exists():
                from PIL import Image

                try:
                    with Image.open(path) as img:
                        hw = (img.height, img.width)
                except OSError as exc:
                    raise InputError(f"cannot read frame {path}: {exc}") from None
        if hw is None:
            raise InputError(
                f"cannot tell the frame size of video {vid}: no size in the meta, no GT, no frames"
            )
        self._sizes[vid] = hw
        return hw

    def gt_masks(self, vid: str, exp_id: str) -> np.ndarray:
        """GT of an expression, ``(T, H, W)`` bool: the union of its anno_ids' masks per frame."""
        rles = self.gt_rles(vid, exp_id)
        hw = self.frame_size(vid)
        return gt_from_rles(rles, len(self.videos[vid].frames), hw, str(self.mask_dict_path))

    def gt_values(self, vid: str, exp_id: str) -> np.ndarray:
        """GT of an expression as the official scripts build it: ``(T, H, W)`` uint8 *sum* of the objects."""
        rles = self.gt_rles(vid, exp_id)
        hw = self.frame_size(vid)
        return gt_values_from_rles(rles, len(self.videos[vid].frames), hw, str(self.mask_dict_path))


def _first_size(rles: Iterable, where: Path | None) -> tuple[int, int] | None:
    """Size of the first non-empty RLE in ``rles`` (``None`` if all are empty)."""
    for rle in rles:
        if rle:
            try:
                return rle_size(rle)
            except ValueError as exc:
                raise InputError(f"{where}: {exc}") from None
    return None


def gt_from_rles(rles: Sequence[Sequence], n_frames: int, hw: tuple[int, int], where: str) -> np.ndarray:
    """Union per frame of several objects' RLE lists → ``(T, H, W)`` bool (``None`` entries are empty)."""
    out = np.zeros((n_frames, hw[0], hw[1]), dtype=bool)
    for per_frame in rles:
        for t, rle in enumerate(per_frame):
            if rle:
                try:
                    out[t] |= rle_decode(rle, hw)
                except ValueError as exc:
                    raise InputError(f"{where}: frame {t}: {exc}") from None
    return out


def gt_values_from_rles(
    rles: Sequence[Sequence], n_frames: int, hw: tuple[int, int], where: str
) -> np.ndarray:
    """Official GT of several objects → ``(T, H, W)`` uint8: the per-pixel **sum** of their 0/1 masks.

    This is what MeViS / VISA / Sa2VA build (``gt_masks[t] += cocomask.decode(rle)`` on uint8), so pixels where
    objects overlap hold 2, 3, ... (modulo 256). J and F only look at ``!= 0`` (the union); the official ReVOS
    A and R use these raw values.
    """
    out = np.zeros((n_frames, hw[0], hw[1]), dtype=np.uint8)
    for per_frame in rles:
        for t, rle in enumerate(per_frame):
            if rle:
                try:
                    layers = rle_decode_layers(rle, hw)
                except ValueError as exc:
                    raise InputError(f"{where}: frame {t}: {exc}") from None
                for layer in layers:
                    out[t] += layer.view(np.uint8)
    return out


def foreground_area(rles: Sequence, hw: tuple[int, int], where: str) -> np.ndarray:
    """Per-frame foreground area ``(T,)`` (ReVOS R denominator), as VISA ``eval_revos.py`` computes it.

    The frame's object layers are summed per pixel, cast to uint8 (wrapping at 256 overlapping objects) and
    then summed; so overlapping objects count once per object.
    """
    areas = np.zeros(len(rles), dtype=np.float64)
    for t, rle in enumerate(rles):
        if rle:
            try:
                layers = rle_decode_layers(rle, hw)
            except ValueError as exc:
                raise InputError(f"{where}: frame {t}: {exc}") from None
            per_pixel = layers.sum(axis=0, dtype=np.int64).astype(np.uint8)
            areas[t] = float(per_pixel.sum(dtype=np.uint64))
    return areas


def _find_meta(path: Path, benchmark: str) -> tuple[Path, Path]:
    """Return ``(split_root, meta_path)`` for a split folder or a meta JSON file."""
    if path.is_file():
        return path.parent, path
    if not path.is_dir():
        raise InputError(f"dataset split not found: {path}")
    candidates = [path / n for n in _META_NAMES[benchmark]]
    if benchmark in _OFFICIAL_META_DIR:
        candidates.append(path.parent / "meta_expressions" / path.name / "meta_expressions.json")
    for c in candidates:
        if c.is_file():
            return path, c
    names = ", ".join(str(c) for c in candidates)
    raise InputError(f"no expressions file in {path} (looked for {names})")


def load_refvos_split(path: str | os.PathLike, benchmark: str = "mevis") -> RefVOSSplit:
    """Read a RefVOS split (folder or meta JSON) of ``benchmark`` in the MeViS layout; masks stay lazy."""
    if benchmark not in REFVOS_BENCHMARKS:
        raise InputError(f"unknown RefVOS benchmark {benchmark!r} (one of {', '.join(REFVOS_BENCHMARKS)})")
    root, meta_path = _find_meta(Path(path), benchmark)
    meta = load_json(meta_path)
    vids = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(vids, dict):
        raise InputError(f"{meta_path}: expected {{'videos': {{vid: {{...}}}}}}")
    exclude: set[str] = set()
    if benchmark == "refytvos" and meta_path.parent.parent.name == "meta_expressions":
        test_meta = meta_path.parent.parent / "test" / "meta_expressions.json"
        if meta_path.parent.name == "valid" and test_meta.is_file():
            exclude = set((load_json(test_meta).get("videos") or {}).keys())
    videos: dict[str, RefVOSVideo] = {}
    for vid, v in vids.items():
        if vid in exclude:
            continue
        where = f"{meta_path}: video {vid}"
        if (
            not isinstance(v, dict)
            or not isinstance(v.get("frames"), list)
            or not isinstance(v.get("expressions"), dict)
        ):
            raise InputError(f"{where}: needs a 'frames' list and an 'expressions' object")
        frames = [str(f) for f in v["frames"]]
        exps: dict[str, RefVOSExpression] = {}
        for exp_id, e in v["expressions"].items():
            if not isinstance(e, dict) or not isinstance(e.get("exp", ""), str):
                raise InputError(f"{where}, expression {exp_id}: needs an 'exp' string")
            type_id = e.get("type_id")
            if type_id is not None and (not isinstance(type_id, int) or isinstance(type_id, bool)):
                raise InputError(f"{where}, expression {exp_id}: 'type_id' must be an int, got {type_id!r}")
            exps[str(exp_id)] = RefVOSExpression(
                exp_id=str(exp_id),
                text=e.get("exp", ""),
                anno_ids=tuple(str(a) for a in _id_list(e.get("anno_id"), "anno_id", where)),
                obj_ids=_id_list(e.get("obj_id"), "obj_id", where),
                type_id=type_id,
                has_anno_id=e.get("anno_id") is not None,
            )
        known = {"frames", "expressions", "fps", "height", "width"}
        fps = v.get("fps")
        videos[str(vid)] = RefVOSVideo(
            vid=str(vid),
            frames=frames,
            expressions=exps,
            fps=float(fps) if isinstance(fps, (int, float)) else None,
            height=v.get("height") if isinstance(v.get("height"), int) else None,
            width=v.get("width") if isinstance(v.get("width"), int) else None,
            extra={k: val for k, val in v.items() if k not in known},
        )
    fallback = False
    if benchmark == "refdavis":
        fallback = _refdavis_anno_ids(videos, meta_path)
    mask_dict = next((p for p in (root / "mask_dict.json", root / "mask_dict.pkl") if p.is_file()), None)
    fg = root / "mask_dict_foreground.json"
    return RefVOSSplit(
        benchmark=benchmark,
        root=root,
        meta_path=meta_path,
        videos=videos,
        mask_dict_path=mask_dict,
        foreground_path=fg if fg.is_file() else None,
        anno_id_fallback=fallback,
    )


def _refdavis_anno_ids(videos: dict[str, RefVOSVideo], meta_path: Path) -> bool:
    """Ref-DAVIS17 meta without ``anno_id``: number the expressions as VISA / Sa2VA do (returns True if so).

    The official ``get_meta_exp`` walks ``sorted(videos)`` and, per video, ``sorted(expression ids)`` (string
    order: "10" < "2") and gives each expression ``anno_id = [running index]`` starting at 0.
    """
    flags = [e.has_anno_id for v in videos.values() for e in v.expressions.values()]
    if all(flags):
        return False
    if any(flags):
        missing = next(
            f"video {v.vid}, expression {e.exp_id}"
            for v in videos.values()
            for e in v.expressions.values()
            if not e.has_anno_id
        )
        raise InputError(
            f"{meta_path}: {missing} has no 'anno_id' but other expressions do; give all or none "
            f"(none: numbered by a running index, as VISA / Sa2VA do)"
        )
    count = 0
    for vid in sorted(videos):
        video = videos[vid]
        for exp_id in sorted(video.expressions):
            old = video.expressions[exp_id]
            video.expressions[exp_id] = RefVOSExpression(
                exp_id=old.exp_id,
                text=old.text,
                anno_ids=(str(count),),
                obj_ids=old.obj_ids,
                type_id=old.type_id,
                has_anno_id=True,
            )
            count += 1
    return True


def load_mevis_split(path: str | os.PathLike) -> RefVOSSplit:
    """MeViS ``train`` / ``valid_u`` / ``valid`` split folder (``valid`` has no ``mask_dict.json``)."""
    return load_refvos_split(path, "mevis")


# ------------------------------------------------------------------------------------------ mask predictions


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
    from PIL import Image

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
        for t, rle in enumerate(ref):
            if rle:
                try:
                    out[t] = rle_decode(rle, hw)
                except ValueError as exc:
                    raise InputError(f"{where}: frame {frames[t]}: {exc}") from None
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


# ------------------------------------------------------------------------------------------------------- TSG


@dataclass(frozen=True)
class TSGQuery:
    """One grounding query: GT ``windows`` ``[[s, e], ...]`` in seconds; ``duration`` in seconds or None."""

    qid: int
    vid: str
    query: str
    windows: list[list[float]]
    duration: float | None = None


def _window(value: Any, where: str, allow_reversed: bool = False) -> list[float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    ):
        raise InputError(f"{where}: a window must be [start, end] in seconds, got {value!r}")
    s, e = float(value[0]), float(value[1])
    if not (math.isfinite(s) and math.isfinite(e)):
        raise InputError(f"{where}: bad window [{s}, {e}] (not finite)")
    if e < s and not allow_reversed:
        raise InputError(f"{where}: bad window [{s}, {e}] (end before start)")
    return [s, e]


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


def _is_tsg_jsonl(path: Path) -> bool:
    """True when the first non-empty line of ``path`` is a JSON object with ``qid`` and ``relevant_windows``."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        return False
                    return isinstance(row, dict) and "qid" in row and "relevant_windows" in row
    except (OSError, UnicodeDecodeError):
        return False  # the format's own reader reports the problem
    return False


def load_charades(path: str | os.PathLike) -> list[TSGQuery]:
    """Charades-STA: ``vid start end##sentence`` lines (qid = index of the non-empty line) or Lighthouse JSONL."""
    path = Path(path)
    if _is_tsg_jsonl(path):
        return load_tsg_jsonl(path)
    out = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        parts = head.split()
        where = f"{path}:{lineno}"
        if not sep or len(parts) != 3:
            raise InputError(f"{where}: expected 'vid start end##sentence', got {line[:80]!r}")
        try:
            win = _window([float(parts[1]), float(parts[2])], where)
        except ValueError:
            raise InputError(f"{where}: start/end are not numbers: {head!r}") from None
        out.append(TSGQuery(qid=len(out), vid=parts[0], query=sentence.strip(), windows=[win]))
    return out


def load_anet(path: str | os.PathLike) -> list[TSGQuery]:
    """ActivityNet Captions JSON (qid = running index over (video, sentence) in file order) or Lighthouse JSONL."""
    path = Path(path)
    if _is_tsg_jsonl(path):
        return load_tsg_jsonl(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected {{vid: {{'duration', 'timestamps', 'sentences'}}}}")
    out = []
    for vid, v in data.items():
        where = f"{path}: video {vid}"
        if (
            not isinstance(v, dict)
            or not isinstance(v.get("timestamps"), list)
            or not isinstance(v.get("sentences"), list)
        ):
            raise InputError(f"{where}: needs 'timestamps' and 'sentences' lists")
        if len(v["timestamps"]) != len(v["sentences"]):
            raise InputError(
                f"{where}: {len(v['timestamps'])} timestamps but {len(v['sentences'])} sentences"
            )
        duration = v.get("duration")
        if duration is not None and not isinstance(duration, (int, float)):
            raise InputError(f"{where}: 'duration' must be a number")
        for ts, sentence in zip(v["timestamps"], v["sentences"], strict=True):
            out.append(
                TSGQuery(
                    qid=len(out),
                    vid=str(vid),
                    query=str(sentence).strip(),
                    windows=[_window(ts, where)],
                    duration=float(duration) if duration is not None else None,
                )
            )
    return out


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: malformed JSON line: {exc}") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object per line")
        yield lineno, row


def load_tsg_jsonl(path: str | os.PathLike) -> list[TSGQuery]:
    """Moment-DETR / Lighthouse GT JSONL (``qid``, ``query``, ``vid``, ``duration``, ``relevant_windows``).

    QVHighlights ships this form (its test split has no windows); Lighthouse ships Charades-STA and
    ActivityNet Captions in it too.
    """
    path = Path(path)
    out = []
    seen: set[int] = set()
    for lineno, row in _jsonl(path):
        where = f"{path}:{lineno}"
        qid = row.get("qid")
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise InputError(f"{where}: 'qid' must be an int")
        if qid in seen:
            raise InputError(f"{where}: duplicate qid {qid}")
        seen.add(qid)
        windows = row.get("relevant_windows") or []
        if not isinstance(windows, list):
            raise InputError(f"{where}: 'relevant_windows' must be a list of [start, end]")
        duration = row.get("duration")
        out.append(
            TSGQuery(
                qid=qid,
                vid=str(row.get("vid", "")),
                query=str(row.get("query", "")),
                windows=[_window(w, where) for w in windows],
                duration=float(duration) if isinstance(duration, (int, float)) else None,
            )
        )
    return out


load_qvhighlights = load_tsg_jsonl

TSG_LOADERS = dict(zip(TSG_BENCHMARKS, (load_charades, load_anet, load_tsg_jsonl), strict=True))


def load_tsg_predictions(path: str | os.PathLike) -> dict[int, list[list[float]]]:
    """TSG prediction JSONL → ``{qid: [[s, e, score], ...]}`` in the given order.

    Windows without a score (``[s, e]``) get scores ``1, 1/2, 1/3, ...`` in the given order (all windows of a
    line must then lack scores). Malformed lines or duplicate qids raise :class:`InputError`.
    """
    path = Path(path)
    out: dict[int, list[list[float]]] = {}
    for lineno, row in _jsonl(path):
        where = f"{path}:{lineno}"
        qid = row.get("qid")
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise InputError(f"{where}: 'qid' must be an int")
        if qid in out:
            raise InputError(f"{where}: duplicate qid {qid}")
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
            s, e = _window(w[:2], where, allow_reversed=True)
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
