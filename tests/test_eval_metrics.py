import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from momentseg.eval.metrics import (
    boundary_tolerance,
    db_statistics,
    disk,
    f_measure,
    j_measure,
    pixel_accuracy,
    robustness,
    seg2bmap,
)

H, W = 480, 854


def _box(r0, r1, c0, c1, hw=(H, W)):
    m = np.zeros(hw, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


GT = _box(100, 300, 200, 500)
EMPTY = np.zeros((H, W), dtype=bool)


# anchors.md §C.2 golden values (davis2017 metrics.py, 480x854, GT rows 100:300 x cols 200:500).
@pytest.mark.parametrize(
    "gt, pred, j, f",
    [
        (GT, GT, 1.0, 1.0),
        (GT, _box(100, 300, 205, 505), 0.967213, 1.0),
        (GT, _box(100, 300, 220, 520), 0.875, 0.594),
        (GT, EMPTY, 0.0, 0.0),
        (EMPTY, EMPTY, 1.0, 1.0),
        (EMPTY, _box(0, 10, 0, 10), 0.0, 0.0),
        (GT, _box(100, 300, 350, 650), 0.333333, 0.334),
    ],
    ids=["identical", "shift5", "shift20", "empty-pred", "both-empty", "gt-empty", "half-overlap"],
)
def test_golden_values(gt, pred, j, f):
    assert j_measure(gt, pred) == pytest.approx(j, abs=5e-7)
    assert f_measure(gt, pred) == pytest.approx(f, abs=5e-7)


def test_boundary_tolerance_and_disk():
    assert boundary_tolerance((480, 854)) == 8
    assert boundary_tolerance((720, 1280)) == 12
    assert boundary_tolerance((1080, 1920)) == 18
    assert boundary_tolerance((10, 10), bound_th=3) == 3
    assert int(disk(7).sum()) == 149
    assert disk(7).shape == (15, 15)


def test_sequence_shapes():
    gt = np.stack([GT, GT, EMPTY])
    pred = np.stack([GT, _box(100, 300, 220, 520), EMPTY]).astype(np.uint8) * 255  # 0/255 like PNGs
    j = j_measure(gt, pred)
    f = f_measure(gt, pred)
    assert j.shape == f.shape == (3,)
    np.testing.assert_allclose(j, [1.0, 0.875, 1.0])
    np.testing.assert_allclose(f, [1.0, 0.594, 1.0], atol=1e-9)
    with pytest.raises(ValueError):
        j_measure(gt, pred[:2])


# ---------------------------------------------------------------------------------- brute-force references


def naive_bmap(seg):
    h, w = seg.shape
    b = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            v = bool(seg[y, x])
            east = bool(seg[y, x + 1]) if x + 1 < w else False
            south = bool(seg[y + 1, x]) if y + 1 < h else False
            se = bool(seg[y + 1, x + 1]) if (x + 1 < w and y + 1 < h) else False
            if y == h - 1 and x == w - 1:
                b[y, x] = False
            elif y == h - 1:
                b[y, x] = v ^ east
            elif x == w - 1:
                b[y, x] = v ^ south
            else:
                b[y, x] = (v ^ east) or (v ^ south) or (v ^ se)
    return b


def naive_f(gt, pred, radius):
    gb, pb = naive_bmap(gt), naive_bmap(pred)
    gpts, ppts = np.argwhere(gb), np.argwhere(pb)

    def n_close(a, b):
        return sum(any((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 <= radius * radius for q in b) for p in a)

    n_p, n_g = len(ppts), len(gpts)
    if n_p == 0 and n_g > 0:
        prec, rec = 1.0, 0.0
    elif n_p > 0 and n_g == 0:
        prec, rec = 0.0, 1.0
    elif n_p == 0 and n_g == 0:
        prec, rec = 1.0, 1.0
    else:
        prec, rec = n_close(ppts, gpts) / n_p, n_close(gpts, ppts) / n_g
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def naive_j(gt, pred):
    inter = union = 0
    for g, p in zip(gt.reshape(-1), pred.reshape(-1), strict=True):
        inter += bool(g) and bool(p)
        union += bool(g) or bool(p)
    return 1.0 if union == 0 else inter / union


small_masks = st.integers(2, 12).flatmap(
    lambda h: st.integers(2, 12).flatmap(
        lambda w: st.tuples(arrays(np.bool_, (h, w)), arrays(np.bool_, (h, w)))
    )
)


@settings(max_examples=60, deadline=None)
@given(small_masks)
def test_j_matches_naive(pair):
    gt, pred = pair
    assert j_measure(gt, pred) == pytest.approx(naive_j(gt, pred), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(small_masks)
def test_seg2bmap_matches_naive(pair):
    np.testing.assert_array_equal(seg2bmap(pair[0]), naive_bmap(pair[0]))


@settings(max_examples=60, deadline=None)
@given(small_masks, st.sampled_from([1, 2, 3, 0.2]))
def test_f_matches_naive_boundary_distances(pair, bound_th):
    gt, pred = pair
    radius = boundary_tolerance(gt.shape, bound_th)
    if bound_th < 1:
        assert radius == math.ceil(bound_th * math.hypot(*gt.shape))
    assert f_measure(gt, pred, bound_th=bound_th) == pytest.approx(naive_f(gt, pred, radius), abs=1e-12)


def reference_style_f(gt, pred, radius):
    """F with an explicit binary dilation by the Euclidean disk (what davis2017 does with cv2.dilate)."""
    gb, pb = seg2bmap(gt), seg2bmap(pred)
    se = disk(radius)
    gd = ndimage.binary_dilation(gb, structure=se) if gb.any() else gb
    pd = ndimage.binary_dilation(pb, structure=se) if pb.any() else pb
    n_p, n_g = pb.sum(), gb.sum()
    if n_p == 0 or n_g == 0:
        return naive_f(gt, pred, radius)
    prec, rec = (pb & gd).sum() / n_p, (gb & pd).sum() / n_g
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(20, 90),
    st.integers(20, 120),
)
def test_f_matches_disk_dilation_on_blobs(seed, h, w):
    rng = np.random.default_rng(seed)
    gt = ndimage.binary_opening(rng.random((h, w)) < 0.45, iterations=1)
    pred = ndimage.binary_closing(rng.random((h, w)) < 0.45, iterations=1)
    radius = boundary_tolerance((h, w), 0.05)
    assert f_measure(gt, pred, bound_th=0.05) == pytest.approx(reference_style_f(gt, pred, radius), abs=1e-12)


# ------------------------------------------------------------------------------------ A, R, db_statistics


def test_pixel_accuracy_and_robustness_hand_computed():
    gt = np.zeros((2, 4, 5), dtype=bool)
    gt[0, 0, :2] = True  # 2 px
    pred = np.zeros_like(gt)
    pred[0, 0, 1:4] = True  # 1 px overlap, 2 px false positive
    pred[1, 3, 4] = True  # 1 px false positive in an empty frame
    acc = pixel_accuracy(gt, pred)
    np.testing.assert_allclose(acc, [(20 - 3) / 20, 19 / 20])
    r = robustness(gt, pred, np.array([4.0, 0.0]))
    np.testing.assert_allclose(r, [1 - 2 / (4 + 1e-6), 0.0])  # second frame clamps at 0
    assert robustness(gt[0], gt[0], 3.0) == 1.0
    with pytest.raises(ValueError):
        robustness(gt, pred, np.array([1.0]))


def test_db_statistics_hand_computed():
    x = np.array([1.0, 1.0, 0.9, 0.8, 0.6, 0.5, 0.4, 0.2, 0.1])  # T = 9
    stats = db_statistics(x)
    assert stats["mean"] == pytest.approx(x.mean())
    assert stats["recall"] == pytest.approx(5 / 9)  # > 0.5 strictly
    # ids = round(linspace(1, 9, 5)) - 1 = [0, 2, 4, 6, 8]: first bin x[0:3], last bin x[6:9]
    assert stats["decay"] == pytest.approx(np.mean(x[0:3]) - np.mean(x[6:9]))
    nan = db_statistics(np.array([np.nan, 1.0, 1.0, 1.0]))
    assert nan["mean"] == 1.0 and nan["recall"] == 0.75
    single = db_statistics(np.array([0.7]))
    assert single == {"mean": 0.7, "recall": 1.0, "decay": 0.0}
