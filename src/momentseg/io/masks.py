"""Binary masks to and from COCO RLE and PNG files.

COCO RLE (pycocotools):

* ``pycocotools.mask.encode`` only accepts **Fortran-ordered** ``uint8`` arrays; :func:`rle_encode` takes any
  ``(H, W)`` array (non-zero = foreground) and does the conversion.
* The encoded ``counts`` are ``bytes``; in JSON they are stored as ``str`` (:func:`rle_encode` returns ``str``).
  :func:`rle_decode` accepts ``str`` or ``bytes`` compressed counts, uncompressed RLE (``counts`` a list of
  ints), a list of RLEs (one per instance; decoded as their union), and ``None`` (no object: needs ``hw``).

PNG masks: any mode; a pixel is foreground when it is non-zero in any colour channel (alpha ignored). Written
as 8-bit grayscale 0/255, atomically.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
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


def read_png_mask(path: str | os.PathLike, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a PNG mask as ``(H, W)`` bool (non-zero in any colour channel = foreground).

    Raises :class:`InputError` naming the file if it cannot be read or, when ``hw`` is given, if its size is
    not ``hw`` (height, width).
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
            mode = img.mode
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read mask PNG {path}: {exc}") from None
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


def png_mask_bytes(mask: np.ndarray) -> bytes:
    """Encode a ``(H, W)`` mask (non-zero = foreground) as an 8-bit grayscale 0/255 PNG."""
    import io

    from PIL import Image

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
