"""RefVOS splits (MeViS, ReVOS, Ref-DAVIS17, Ref-YouTube-VOS, Ref-SAV) with their ground truth; all use the
MeViS layout::

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

``mask_dict.pkl`` is read by :func:`momentseg.data.files.load_plain_pickle` (plain data only).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from momentseg.data.benchmarks import REFVOS_BENCHMARKS
from momentseg.data.files import load_json, load_plain_pickle
from momentseg.errors import InputError
from momentseg.io.masks import rle_decode_layers, rle_size

_META_NAMES = {
    "mevis": ("meta_expressions.json",),
    "revos": ("meta_expressions_valid_.json", "meta_expressions.json"),
    "refdavis": ("meta_expressions.json",),
    "refytvos": ("meta_expressions.json",),
    "refsav": ("meta_expressions_valid.json", "meta_expressions.json"),
}
_OFFICIAL_META_DIR = ("refdavis", "refytvos")  # also ../meta_expressions/<split>/meta_expressions.json


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


def rle_frames(rles: Sequence, hw: tuple[int, int], where: str,
               names: Sequence[str] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(t, (N, H, W) bool object layers)`` of every non-empty entry of a per-frame RLE list (an RLE or a list
    of RLEs per frame; ``None`` / ``[]`` entries are skipped). A malformed RLE or one of another size than
    ``hw`` is an :class:`InputError` naming ``where`` and the frame (its name in ``names``, else its index)."""
    for t, rle in enumerate(rles):
        if not rle:
            continue
        try:
            layers = rle_decode_layers(rle, hw)
        except ValueError as exc:
            raise InputError(f"{where}: frame {t if names is None else names[t]}: {exc}") from None
        yield t, layers


def gt_from_rles(rles: Sequence[Sequence], n_frames: int, hw: tuple[int, int], where: str) -> np.ndarray:
    """Union per frame of several objects' RLE lists → ``(T, H, W)`` bool (``None`` entries are empty)."""
    out = np.zeros((n_frames, hw[0], hw[1]), dtype=bool)
    for per_frame in rles:
        for t, layers in rle_frames(per_frame, hw, where):
            out[t] |= layers.any(axis=0)
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
        for t, layers in rle_frames(per_frame, hw, where):
            for layer in layers:
                out[t] += layer.view(np.uint8)
    return out


def foreground_area(rles: Sequence, hw: tuple[int, int], where: str) -> np.ndarray:
    """Per-frame foreground area ``(T,)`` (ReVOS R denominator), as VISA ``eval_revos.py`` computes it.

    The frame's object layers are summed per pixel, cast to uint8 (wrapping at 256 overlapping objects) and
    then summed; so overlapping objects count once per object.
    """
    areas = np.zeros(len(rles), dtype=np.float64)
    for t, layers in rle_frames(rles, hw, where):
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
    exclude = _excluded_videos(meta_path, benchmark)
    videos: dict[str, RefVOSVideo] = {}
    for vid, v in vids.items():
        if vid in exclude:
            continue
        videos[str(vid)] = _parse_video(vid, v, meta_path)
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


def _excluded_videos(meta_path: Path, benchmark: str) -> set[str]:
    """Ref-YouTube-VOS ``valid``: the videos of the sibling ``test`` meta, which are not part of the split."""
    exclude: set[str] = set()
    if benchmark == "refytvos" and meta_path.parent.parent.name == "meta_expressions":
        test_meta = meta_path.parent.parent / "test" / "meta_expressions.json"
        if meta_path.parent.name == "valid" and test_meta.is_file():
            exclude = set((load_json(test_meta).get("videos") or {}).keys())
    return exclude


def _parse_video(vid: Any, v: Any, meta_path: Path) -> RefVOSVideo:
    """One ``videos`` entry of the meta JSON as a :class:`RefVOSVideo`; malformed entries raise InputError."""
    where = f"{meta_path}: video {vid}"
    if (
        not isinstance(v, dict)
        or not isinstance(v.get("frames"), list)
        or not isinstance(v.get("expressions"), dict)
    ):
        raise InputError(f"{where}: needs a 'frames' list and an 'expressions' object")
    frames = [str(f) for f in v["frames"]]
    exps = {str(exp_id): _parse_expression(exp_id, e, where) for exp_id, e in v["expressions"].items()}
    known = {"frames", "expressions", "fps", "height", "width"}
    fps = v.get("fps")
    return RefVOSVideo(
        vid=str(vid),
        frames=frames,
        expressions=exps,
        fps=float(fps) if isinstance(fps, (int, float)) else None,
        height=v.get("height") if isinstance(v.get("height"), int) else None,
        width=v.get("width") if isinstance(v.get("width"), int) else None,
        extra={k: val for k, val in v.items() if k not in known},
    )


def _parse_expression(exp_id: Any, e: Any, where: str) -> RefVOSExpression:
    """One ``expressions`` entry of a video as a :class:`RefVOSExpression`; malformed ones raise InputError."""
    if not isinstance(e, dict) or not isinstance(e.get("exp", ""), str):
        raise InputError(f"{where}, expression {exp_id}: needs an 'exp' string")
    type_id = e.get("type_id")
    if type_id is not None and (not isinstance(type_id, int) or isinstance(type_id, bool)):
        raise InputError(f"{where}, expression {exp_id}: 'type_id' must be an int, got {type_id!r}")
    return RefVOSExpression(
        exp_id=str(exp_id),
        text=e.get("exp", ""),
        anno_ids=tuple(str(a) for a in _id_list(e.get("anno_id"), "anno_id", where)),
        obj_ids=_id_list(e.get("obj_id"), "obj_id", where),
        type_id=type_id,
        has_anno_id=e.get("anno_id") is not None,
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
