"""Binary masks to and from COCO RLE and PNG files.

COCO RLE (pycocotools):

* ``pycocotools.mask.encode`` only accepts **Fortran-ordered** ``uint8`` arrays; :func:`rle_encode` takes any
  ``(H, W)`` array (non-zero = foreground) and does the conversion.
* The encoded ``counts`` are ``bytes``; in JSON they are stored as ``str`` (:func:`rle_encode` returns ``str``).
  :func:`rle_decode` accepts ``str`` or ``bytes`` compressed counts, uncompressed RLE (``counts`` a list of
  ints), a list of RLEs (one per instance; decoded as their union), and ``None`` (no object: needs ``hw``).

PNG masks: any mode; a pixel is foreground when it is non-zero in any colour channel (alpha ignored). Written
as 8-bit grayscale 0/255, atomically.

Per-frame masks of one expression (:class:`MaskSequence`): held as RLE in memory (short videos),
or streamed to a folder of PNGs as they are produced (:class:`MaskWriter`, then :class:`PngMasks` reads them
back on demand), so the masks of a long video are never all in memory.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as _coco

from momentseg.errors import InputError
from momentseg.io.atomic import atomic_path

RLE = dict[str, Any]


def rle_encode(mask: np.ndarray) -> RLE:
    """Encode one ``(H, W)`` mask (non-zero = foreground) as ``{"size": [H, W], "counts": str}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a (H, W) mask, got shape {mask.shape}")
    rle = _coco.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _check_rle(rle: Any) -> None:
    if not (isinstance(rle, dict) and "size" in rle and "counts" in rle):
        raise ValueError(f"not a COCO RLE (needs 'size' and 'counts'): {str(rle)[:80]}")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise ValueError(f"COCO RLE 'size' must be [H, W], got {size!r}")


def _to_coco(rle: RLE) -> RLE:
    """Turn a JSON RLE into what ``pycocotools.mask.decode`` accepts (compressed counts as bytes)."""
    _check_rle(rle)
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        if sum(counts) != h * w:
            raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, expected {h * w}")
        return _coco.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise ValueError(f"COCO RLE 'counts' must be str, bytes or a list, got {type(counts).__name__}")
    return {"size": [h, w], "counts": counts}


def rle_decode_layers(rle: RLE | Sequence[RLE] | None, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one RLE or a list of RLEs to a ``(N, H, W)`` bool stack (``N = 0`` for ``None`` / ``[]``).

    ``hw`` is needed for ``None`` / ``[]`` (gives shape ``(0, H, W)``) and, if given, is checked against
    every RLE's size. Raises ``ValueError`` on malformed input.
    """
    items = [] if rle is None else ([rle] if isinstance(rle, dict) else list(rle))
    layers = []
    with warnings.catch_warnings():
        # pycocotools' Cython RLE object triggers a NumPy 2 "__array__ copy keyword" DeprecationWarning.
        warnings.simplefilter("ignore", DeprecationWarning)
        for item in items:
            layers.append(_coco.decode(_to_coco(item)).astype(bool))
    if not layers:
        if hw is None:
            raise ValueError("empty RLE needs the frame size")
        return np.zeros((0, int(hw[0]), int(hw[1])), dtype=bool)
    shapes = {m.shape for m in layers}
    if len(shapes) != 1:
        raise ValueError(f"RLE layers have different sizes: {sorted(shapes)}")
    if hw is not None and layers[0].shape != tuple(hw):
        raise ValueError(f"RLE size {list(layers[0].shape)} does not match frame size {list(hw)}")
    return np.stack(layers)


def rle_decode(rle: RLE | Sequence[RLE] | None, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode to one ``(H, W)`` bool mask; a list of RLEs gives their union, ``None`` an empty mask of ``hw``."""
    layers = rle_decode_layers(rle, hw)
    return layers.any(axis=0)


def rle_size(rle: RLE | Sequence[RLE] | None) -> tuple[int, int] | None:
    """The ``(H, W)`` an RLE (or the first of a list) declares, or ``None`` for ``None`` / ``[]``."""
    if rle is None:
        return None
    if not isinstance(rle, dict):
        rle = next(iter(rle), None)
        if rle is None:
            return None
    _check_rle(rle)
    return int(rle["size"][0]), int(rle["size"][1])


def _load_png(path: str | os.PathLike, what: str) -> tuple[np.ndarray, str]:
    """A PNG's pixels and PIL mode; a one-line :class:`InputError` naming the file if it cannot be read."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img), img.mode
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read {what} PNG {Path(path)}: {exc}") from None


def read_png_mask(path: str | os.PathLike, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a PNG mask as ``(H, W)`` bool (non-zero in any colour channel = foreground).

    Raises :class:`InputError` naming the file if it cannot be read or, when ``hw`` is given, if its size is
    not ``hw`` (height, width).
    """
    arr, mode = _load_png(path, "mask")
    if arr.ndim == 3:
        if mode in ("RGBA", "LA", "PA"):
            arr = arr[..., :-1]
        arr = arr.any(axis=-1)
    mask = arr != 0
    if hw is not None and mask.shape != tuple(hw):
        raise InputError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but the frame is {hw[1]}x{hw[0]}"
        )
    return mask


def read_png_labels(path: str | os.PathLike, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read an indexed (palette ``P``) or grayscale PNG as an ``(H, W)`` int32 label map (palette indices).

    Raises :class:`InputError` naming the file if it cannot be read, has colour channels (RGB, alpha), or,
    when ``hw`` is given, is not ``hw`` (height, width) in size.
    """
    arr, _ = _load_png(path, "label")
    if arr.ndim != 2:
        raise InputError(
            f"{path} has colour channels (shape {list(arr.shape)}): DAVIS masks must be indexed (palette) or "
            f"grayscale PNGs whose value k is object k"
        )
    if hw is not None and arr.shape != tuple(hw):
        raise InputError(f"{path} is {arr.shape[1]}x{arr.shape[0]} (WxH) but the GT frame is {hw[1]}x{hw[0]}")
    return arr.astype(np.int32)


def png_mask_bytes(mask: np.ndarray) -> bytes:
    """Encode a ``(H, W)`` mask (non-zero = foreground) as an 8-bit grayscale 0/255 PNG."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"png_mask_bytes expects a (H, W) mask, got shape {mask.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_png_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a ``(H, W)`` mask as a 0/255 grayscale PNG, atomically."""
    data = png_mask_bytes(mask)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# ---------------------------------------------------------------------------------------------------------
# Per-frame masks of one expression
# ---------------------------------------------------------------------------------------------------------
class MaskSequence(Sequence):
    """Per-frame masks of one expression at the video's original size, stored as COCO RLE.

    ``masks[t]`` decodes frame t to an ``(H, W)`` bool array; ``masks.rles[t]`` is the RLE dict. See also
    :class:`PngMasks`, the same interface over a folder of PNG files.
    """

    def __init__(self, height: int, width: int, rles: list[dict]):
        self.height, self.width = int(height), int(width)
        self.rles = rles

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, t):  # type: ignore[override]
        if isinstance(t, slice):
            return np.stack([self[i] for i in range(*t.indices(len(self)))])
        return rle_decode(self.rles[t], (self.height, self.width))

    def to_array(self) -> np.ndarray:
        """All frames as one ``(T, H, W)`` bool array (only for short videos)."""
        return self[:]

    def areas(self) -> np.ndarray:
        """Foreground pixel count per frame (T,)."""
        return np.array([int(_coco.area({**r, "counts": r["counts"].encode()})) for r in self.rles])


class PngMasks(MaskSequence):
    """A :class:`MaskSequence` over ``folder/<name>.png`` files (one per frame, named by ``names``), read when
    indexed. ``rles`` encodes every frame on first use (it holds them all: only for short videos)."""

    def __init__(self, folder: str | os.PathLike, names: Sequence[str], height: int, width: int,
                 areas: np.ndarray | None = None):
        self.folder = Path(folder)
        self.names = list(names)
        self.height, self.width = int(height), int(width)
        self._areas = None if areas is None else np.asarray(areas, dtype=np.int64)
        self._rles: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def path(self, t: int) -> Path:
        """The PNG file of frame ``t``."""
        return self.folder / f"{self.names[t]}.png"

    def __getitem__(self, t):  # type: ignore[override]
        if isinstance(t, slice):
            return np.stack([self[i] for i in range(*t.indices(len(self)))])
        return read_png_mask(self.path(range(len(self))[t]), (self.height, self.width))

    @property
    def rles(self) -> list[dict]:  # type: ignore[override]
        if self._rles is None:
            self._rles = [rle_encode(self[t]) for t in range(len(self))]
        return self._rles

    def areas(self) -> np.ndarray:
        if self._areas is None:
            self._areas = np.array([int(self[t].sum()) for t in range(len(self))], dtype=np.int64)
        return self._areas.copy()


class MaskWriter:
    """Collects one expression's masks as they are produced, in any frame order, each frame once.

    With ``folder``: every mask is written at once to ``folder/<names[t]>.png`` (0/255 grayscale) and only its
    area is kept; :meth:`finish` returns a :class:`PngMasks` over ``folder`` (set its ``folder`` when the files
    move). Without: masks are kept as RLE and :meth:`finish` returns an in-memory :class:`MaskSequence`.
    """

    def __init__(self, height: int, width: int, names: Sequence[str], folder: str | os.PathLike | None = None):
        self.height, self.width = int(height), int(width)
        self.names = names
        self.folder = None if folder is None else Path(folder)
        n = len(names)
        self._areas = np.full(n, -1, dtype=np.int64)
        self._rles: list[dict | None] | None = None if self.folder is not None else [None] * n
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, t: int, mask: np.ndarray) -> None:
        """Store the ``(H, W)`` mask of frame ``t`` (non-zero = foreground)."""
        mask = np.asarray(mask)
        if mask.shape != (self.height, self.width):
            raise ValueError(f"mask {t} is {mask.shape}, expected {(self.height, self.width)}")
        if self._areas[t] >= 0:
            raise ValueError(f"frame {t} was given twice")
        self._areas[t] = int(np.count_nonzero(mask))
        if self._rles is not None:
            self._rles[t] = rle_encode(mask)
        else:  # the whole folder is published atomically: a plain write is enough
            (self.folder / f"{self.names[t]}.png").write_bytes(png_mask_bytes(mask))

    def missing(self) -> list[int]:
        """Frames not given yet."""
        return [int(t) for t in np.flatnonzero(self._areas < 0)]

    def finish(self) -> MaskSequence:
        """The masks; an error if a frame is missing."""
        missing = self.missing()
        if missing:
            raise RuntimeError(f"no mask for frames {missing[:5]}")
        if self._rles is not None:
            return MaskSequence(self.height, self.width, self._rles)  # type: ignore[arg-type]
        return PngMasks(self.folder, self.names, self.height, self.width, self._areas)
