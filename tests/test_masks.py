import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco

from momentseg.errors import InputError
from momentseg.io.masks import (
    read_png_mask,
    rle_decode,
    rle_decode_layers,
    rle_encode,
    rle_size,
    write_png_mask,
)


def _asym_mask(h=7, w=11):
    m = np.zeros((h, w), dtype=bool)
    m[1:3, 2:9] = True  # wide bar: transposition / C-vs-Fortran mix-ups change it
    m[5, 0] = True
    return m


def test_rle_roundtrip_c_order_input_and_str_counts():
    m = _asym_mask()
    assert m.flags["C_CONTIGUOUS"]
    rle = rle_encode(m.astype(np.uint8) * 255)
    assert isinstance(rle["counts"], str) and rle["size"] == [7, 11]
    back = json.loads(json.dumps(rle))  # JSON-safe
    np.testing.assert_array_equal(rle_decode(back), m)
    # The encoding is the standard one: pycocotools decodes it to the same mask.
    np.testing.assert_array_equal(coco.decode({"size": [7, 11], "counts": rle["counts"].encode()}), m)
    # ... and equals what pycocotools produces from a Fortran array.
    ref = coco.encode(np.asfortranarray(m.astype(np.uint8)))
    assert rle["counts"] == ref["counts"].decode()


def test_rle_decode_variants():
    m = _asym_mask()
    rle = rle_encode(m)
    np.testing.assert_array_equal(rle_decode({"size": rle["size"], "counts": rle["counts"].encode()}), m)
    # uncompressed RLE: column-major run lengths starting with background
    flat = m.flatten(order="F").astype(int)
    runs, cur, n = [], 0, 0
    for v in flat:
        if v == cur:
            n += 1
        else:
            runs.append(n)
            cur, n = v, 1
    runs.append(n)
    np.testing.assert_array_equal(rle_decode({"size": [7, 11], "counts": runs}), m)
    other = np.zeros_like(m)
    other[6, 10] = True
    union = rle_decode([rle, rle_encode(other)])
    np.testing.assert_array_equal(union, m | other)
    assert rle_decode_layers([rle, rle_encode(other)]).shape == (2, 7, 11)
    assert rle_decode(None, (7, 11)).shape == (7, 11) and not rle_decode(None, (7, 11)).any()
    assert rle_size(rle) == (7, 11) and rle_size(None) is None and rle_size([rle]) == (7, 11)
    with pytest.raises(ValueError):
        rle_decode(rle, (11, 7))
    with pytest.raises(ValueError):
        rle_decode({"counts": "abc"})
    with pytest.raises(ValueError):
        rle_decode(None)


def test_png_roundtrip_and_modes(tmp_path):
    m = _asym_mask()
    p = tmp_path / "a" / "m.png"
    write_png_mask(p, m)
    assert [x.name for x in p.parent.iterdir()] == ["m.png"]  # no temp file left
    with Image.open(p) as img:
        assert img.mode == "L" and set(np.unique(np.asarray(img))) == {0, 255}
    np.testing.assert_array_equal(read_png_mask(p, (7, 11)), m)

    pal = Image.fromarray(m.astype(np.uint8) * 3, mode="P")  # palette indices, non-zero = fg
    pal.putpalette([0, 0, 0, 10, 10, 10, 20, 20, 20, 255, 0, 0])
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_png_mask(tmp_path / "p.png"), m)

    rgb = np.zeros((7, 11, 3), dtype=np.uint8)
    rgb[m, 1] = 200  # green object
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_png_mask(tmp_path / "rgb.png"), m)

    rgba = np.zeros((7, 11, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque background must not count
    rgba[m, 0] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_png_mask(tmp_path / "rgba.png"), m)


def test_png_errors(tmp_path):
    p = tmp_path / "m.png"
    write_png_mask(p, _asym_mask())
    with pytest.raises(InputError, match=r"m\.png is 11x7.*frame is 12x7"):
        read_png_mask(p, (7, 12))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read mask PNG .*bad.png"):
        read_png_mask(bad)
    with pytest.raises(InputError, match="missing.png"):
        read_png_mask(tmp_path / "missing.png")
