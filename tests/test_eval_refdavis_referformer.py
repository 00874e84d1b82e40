"""Ref-DAVIS17, ReferFormer convention: davis2017 unsupervised evaluation per annotator, averaged."""

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from momentseg.errors import InputError
from momentseg.eval.davis_unsupervised import PROTOCOL, evaluate_referformer_davis
from momentseg.eval.metrics import db_statistics, f_measure
from momentseg.eval.refvos import evaluate_refvos

H, W = 48, 64
PALETTE = [v for i in range(256) for v in (i * 7 % 256, i * 13 % 256, i * 29 % 256)]


def _gt_labels():
    """Two sequences with two objects each; seqA has a void (255) strip on frame 2, seqB's obj 2 leaves."""
    a = np.zeros((5, H, W), dtype=np.uint8)
    for t in range(5):
        a[t, 5:20, 5 + 2 * t : 20 + 2 * t] = 1
        a[t, 25:40, 30 : 45 + t] = 2
    a[2, 0:4, :] = 255
    b = np.zeros((4, H, W), dtype=np.uint8)
    for t in range(4):
        b[t, 10:30, 10:30] = 1
        if t < 3:
            b[t, 10:30, 35:55] = 2
    return {"seqA": a, "seqB": b}


GT = _gt_labels()


def write_indexed(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(labels, dtype=np.uint8))
    img.putpalette(PALETTE)  # turns the L image into a palette (P) image, as ReferFormer and DAVIS do
    assert img.mode == "P"
    img.save(path)


def make_davis(root):
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("seqA\nseqB\n")
    for seq, labels in GT.items():
        for t, frame in enumerate(labels):
            write_indexed(root / "Annotations_unsupervised" / "480p" / seq / f"{t:05d}.png", frame)
    return root


def write_pred(pred_root, anno, seq, labels, skip=()):
    for t, frame in enumerate(labels):
        if t not in skip:
            write_indexed(pred_root / anno / seq / f"{t:05d}.png", frame)


def permuted(labels, perm):
    """GT labels with object ids renamed by ``perm`` (old id -> new id); void becomes background."""
    out = np.zeros_like(labels)
    for old, new in perm.items():
        out[labels == old] = new
    return out


def imperfect_preds():
    """anno_1-style predictions: shifted / partial proposals, a distractor, a missing proposal."""
    a = np.zeros((5, H, W), dtype=np.uint8)
    for t in range(5):
        a[t, 8:23, 5 + 2 * t : 20 + 2 * t] = 2  # obj 1 shifted down by 3 px
        a[t, 25:40, 30:40] = 1  # left part of obj 2
        a[t, 42:46, 2:8] = 3  # distractor
    a[2, 1:8, 5:20] = 2  # reaches into the void strip of frame 2
    b = np.zeros((4, H, W), dtype=np.uint8)
    for t in range(4):
        b[t, 12:32, 10:30] = 1  # obj 1 shifted by 2 px; no proposal for obj 2
    return {"seqA": a, "seqB": b}


# ------------------------------------------------------------------------------------ brute-force reference


def brute_force_sequence(gt_labels, pred_labels):
    """Per-object (J per frame, F per frame) of the best one-to-one assignment, by enumeration."""
    void = gt_labels == 255
    gt = np.where(void, 0, gt_labels)
    n = int(gt[0].max())
    p = int(pred_labels.max())
    gts = [gt == k for k in range(1, n + 1)]
    props = [pred_labels == k for k in range(1, p + 1)] + [np.zeros_like(void)] * max(0, n - p)
    keep = ~void

    def j_count(g, s):
        out = []
        for t in range(g.shape[0]):
            inter = int(np.count_nonzero(g[t] & s[t] & keep[t]))
            union = int(np.count_nonzero((g[t] | s[t]) & keep[t]))
            out.append(1.0 if union == 0 else inter / union)
        return np.array(out)

    table = {}
    for gi, g in enumerate(gts):
        for pi, s in enumerate(props):
            table[pi, gi] = (j_count(g, s), np.asarray(f_measure(g & keep, s & keep)))
    totals = []
    for assign in itertools.permutations(range(len(props)), n):
        total = sum((table[pi, gi][0].mean() + table[pi, gi][1].mean()) / 2 for gi, pi in enumerate(assign))
        totals.append((total, assign))
    totals.sort(reverse=True)
    assert len(totals) == 1 or totals[0][0] - totals[1][0] > 1e-6  # the optimum is unique
    best = totals[0][1]
    return [(table[pi, gi], pi + 1 if pi < p else None) for gi, pi in enumerate(best)]


def brute_force_annotator(preds):
    objects = []
    for seq in GT:
        for (j, f), prop in brute_force_sequence(GT[seq], preds[seq]):
            objects.append((db_statistics(j), db_statistics(f), seq, prop))
    jm = np.mean([o[0]["mean"] for o in objects])
    fm = np.mean([o[1]["mean"] for o in objects])
    jr = np.mean([o[0]["recall"] for o in objects])
    fd = np.mean([o[1]["decay"] for o in objects])
    return {"J": jm, "F": fm, "J&F": (jm + fm) / 2, "J_recall": jr, "F_decay": fd}, objects


# ----------------------------------------------------------------------------------------------------- tests


def test_perfect_permuted_ids_score_100_via_cli(tmp_path, capsys, cli):
    root = make_davis(tmp_path / "DAVIS")
    pred = tmp_path / "valid"
    perms = [{1: 1, 2: 2}, {1: 2, 2: 1}, {1: 2, 2: 1}, {1: 1, 2: 2}]
    for a, perm in enumerate(perms):
        for seq, labels in GT.items():
            write_pred(pred, f"anno_{a}", seq, permuted(labels, perm))
    (pred / "anno_0" / "global_results-val.csv").write_text(
        "ignored\n"
    )  # eval_davis.py output, not a sequence
    out = tmp_path / "r.json"
    args = ["eval", "-b", "refdavis", "--protocol", "referformer", "--data", str(root), "--pred", str(pred)]
    assert cli([*args, "--out", str(out), "-j", "1"]) == 0
    report = json.loads(out.read_text())
    assert (report["J"], report["F"], report["J&F"]) == (100.0, 100.0, 100.0)
    assert report["protocol"] == PROTOCOL and report["benchmark"] == "refdavis"
    assert sorted(report["annotators"]) == ["anno_0", "anno_1", "anno_2", "anno_3"]
    assert all(b["J&F"] == 100.0 and b["n"] == 4 for b in report["annotators"].values())
    assert report["n_sequences"] == 2 and report["missing_frames"] == 0 and report["warnings"] == []
    assert len(report["per_sequence"]) == 8
    for row in report["per_sequence"]:
        perm = perms[int(row["annotator"][-1])]
        assert [o["proposal"] for o in row["objects"]] == [perm[1], perm[2]]  # matching undid the renaming
    printed = capsys.readouterr().out
    assert "anno_3" in printed and PROTOCOL in printed


def test_hand_computable_case_and_annotator_mean(tmp_path):
    root = make_davis(tmp_path / "DAVIS")
    pred = tmp_path / "pred"
    perfect = {seq: permuted(labels, {1: 2, 2: 1}) for seq, labels in GT.items()}
    rough = imperfect_preds()
    for seq in GT:
        write_pred(pred, "anno_0", seq, perfect[seq])
        write_pred(pred, "anno_1", seq, rough[seq], skip=(4,) if seq == "seqA" else ())
    # the missing frame 4 of seqA is scored as an empty frame
    rough_scored = {k: v.copy() for k, v in rough.items()}
    rough_scored["seqA"][4] = 0
    report = evaluate_referformer_davis(root, pred, workers=1, n_annotators=2)
    want0, _ = brute_force_annotator(perfect)
    want1, objects = brute_force_annotator(rough_scored)
    assert want0["J&F"] == 1.0 and want1["J&F"] < 0.9
    for name, want in (("anno_0", want0), ("anno_1", want1)):
        block = report["annotators"][name]
        for k in ("J", "F", "J&F", "J_recall", "F_decay"):
            assert block[k] == round(100 * want[k], 2), (name, k)
    for k in ("J", "F", "J&F"):
        assert report[k] == round(100 * (want0[k] + want1[k]) / 2, 2)
    rows = [r for r in report["per_sequence"] if r["annotator"] == "anno_1"]
    got = [(r["seq"], o) for r in rows for o in r["objects"]]
    assert len(got) == len(objects) == 4
    for (seq, o), (js, fs, bseq, prop) in zip(got, objects, strict=True):
        assert seq == bseq and o["proposal"] == prop
        assert o["J"] == pytest.approx(100 * js["mean"], abs=1e-4)
        assert o["F"] == pytest.approx(100 * fs["mean"], abs=1e-4)
    assert [o["proposal"] for o in rows[1]["objects"]] == [1, None]  # seqB obj 2 matched to padding
    assert report["missing_frames"] == 1 and "1 prediction PNGs are missing" in report["warnings"][0]
    assert report["protocol"].endswith("anno_0..anno_1, averaged)")
    # worker processes give the same report
    assert evaluate_referformer_davis(root, pred, workers=2, n_annotators=2) == report


def test_errors(tmp_path, capsys, cli):
    root = make_davis(tmp_path / "DAVIS")
    pred = tmp_path / "pred"
    for a in range(2):
        for seq, labels in GT.items():
            write_pred(pred, f"anno_{a}", seq, permuted(labels, {1: 1, 2: 2}))
    out = tmp_path / "r.json"
    base = ["eval", "--data", str(root), "--pred", str(pred), "--out", str(out), "-j", "1"]

    assert cli([*base, "-b", "mevis", "--protocol", "referformer"]) == 2
    assert "--protocol is only for --benchmark refdavis" in capsys.readouterr().err
    assert cli([*base, "-b", "refdavis", "--protocol", "davis"]) == 2
    assert "--protocol must be one of sa2va, referformer" in capsys.readouterr().err
    assert cli([*base, "-b", "refdavis", "--protocol", "referformer"]) == 2  # needs anno_0..anno_3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "anno_2" in err[0] and "not found" in err[0] and not out.exists()
    with pytest.raises(InputError, match="only for --benchmark refdavis"):
        evaluate_refvos("revos", root, pred, workers=1, protocol="referformer")

    def expect(match, **kw):
        with pytest.raises(InputError, match=match):
            evaluate_referformer_davis(kw.get("root", root), pred, workers=1, n_annotators=2)

    bad = pred / "anno_1" / "seqB" / "00002.png"
    Image.fromarray(np.zeros((H, W + 1), dtype=np.uint8)).save(bad)
    expect(r"seqB/00002\.png is 65x48 \(WxH\) but the GT frame is 64x48")
    bad.write_bytes(b"not a png")
    expect(r"cannot read label PNG .*anno_1/seqB/00002\.png")
    Image.new("RGB", (W, H)).save(bad, format="PNG")
    expect(r"anno_1/seqB/00002\.png has colour channels")
    binary = np.where(GT["seqB"][2] > 0, 255, 0).astype(np.uint8)
    Image.fromarray(binary).save(bad)  # 0/255 masks are not indexed object ids
    expect(r"00002\.png has object id 255: .* at most 20 proposals")
    write_indexed(bad, GT["seqB"][2])
    assert evaluate_referformer_davis(root, pred, workers=1, n_annotators=2)["J&F"] == 100.0

    expect("DAVIS root .* does not exist", root=tmp_path / "nope")
    expect(r"ImageSets/2017/val\.txt not found.*pass .*DAVIS\)", root=tmp_path)
    (root / "Annotations_unsupervised" / "480p" / "seqB" / "00001.png").write_bytes(b"junk")
    expect(r"cannot read label PNG .*Annotations_unsupervised/480p/seqB/00001\.png")
    (root / "ImageSets" / "2017" / "val.txt").write_text("seqA\nseqC\n")
    expect(r"no GT PNGs in .*seqC")


def test_warnings_for_ignored_gt_ids_and_unknown_folders(tmp_path):
    root = make_davis(tmp_path / "DAVIS")
    # a third object appears after the first frame: the reference counts objects from frame 0 only
    write_indexed(
        root / "Annotations_unsupervised" / "480p" / "seqB" / "00003.png", np.where(GT["seqB"][3] > 0, 3, 0)
    )
    pred = tmp_path / "pred"
    for seq, labels in GT.items():
        write_pred(pred, "anno_0", seq, permuted(labels, {1: 1, 2: 2}))
    write_pred(pred, "anno_0", "bear", GT["seqB"])
    report = evaluate_referformer_davis(root, pred, workers=1, n_annotators=1)
    text = " | ".join(report["warnings"])
    assert "1 folders are not val sequences and are ignored, e.g. bear" in text
    assert "sequence seqB: GT ids [3] exceed the first frame's objects" in text
    assert report["n_objects"] == 4
    seq_b = report["per_sequence"][1]["objects"]
    assert seq_b[0]["J"] < 100.0 and seq_b[1]["J"] == 100.0  # object 1 is gone from GT frame 3
