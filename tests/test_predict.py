"""`momentseg predict` over a synthetic MeViS-format split, scored by `momentseg eval`, 1 and 2 processes."""

import json
import os
import subprocess
import sys

import pytest

from momentseg.data.synthetic import WorldConfig, caption_vocabulary, write_split
from momentseg.model.momentseg import MomentSegModel

SMALL = WorldConfig(min_frames=20, max_frames=24, min_expressions=2, max_expressions=3)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "val"
    write_split(root, 2, seed=5, config=SMALL)
    model = tmp_path_factory.mktemp("model")
    MomentSegModel.tiny(caption_vocabulary()).save_pretrained(model)
    return root, model


def test_predict_refvos_then_eval(cli, split, tmp_path):
    root, model = split
    pred = tmp_path / "pred.json"
    args = ["--model", model, "--device", "cpu", "--keyframes", "3"]
    assert cli(["predict", "--benchmark", "mevis", "--data", root, "--out", pred, *args]) == 0
    meta = json.loads((root / "meta_expressions.json").read_text())["videos"]
    written = json.loads(pred.read_text())
    assert {v: sorted(e) for v, e in written.items()} == {v: sorted(m["expressions"]) for v, m in meta.items()}
    for vid, exps in written.items():
        assert all(len(rles) == len(meta[vid]["frames"]) for rles in exps.values())
    report = tmp_path / "report.json"
    assert cli(["eval", "--benchmark", "mevis", "--data", root, "--pred", pred, "--out", report, "-j", "1"]) == 0
    rep = json.loads(report.read_text())
    assert rep["missing"] == 0
    assert 0 <= rep["J&F"] <= 100

    png = tmp_path / "pred_png"
    assert cli(["predict", "--benchmark", "mevis", "--data", root, "--out", png, *args]) == 0
    report_png = tmp_path / "report_png.json"
    assert cli(["eval", "--benchmark", "mevis", "--data", root, "--pred", png, "--out", report_png]) == 0
    assert json.loads(report_png.read_text())["J&F"] == rep["J&F"]


def test_predict_tsg_then_eval(cli, split, tmp_path):
    root, model = split
    pred = tmp_path / "tsg.jsonl"
    assert cli(["predict", "--benchmark", "charades", "--gt", root / "tsg.txt", "--data", root / "JPEGImages",
                "--fps", "10", "--out", pred, "--model", model]) == 0
    lines = [json.loads(x) for x in pred.read_text().splitlines()]
    n_queries = len([x for x in (root / "tsg.txt").read_text().splitlines() if x.strip()])
    assert [x["qid"] for x in lines] == list(range(n_queries))
    report = tmp_path / "r.json"
    assert cli(["eval", "--benchmark", "charades", "--gt", root / "tsg.txt", "--pred", pred, "--out", report]) == 0
    assert set(json.loads(report.read_text())) >= {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "mAP"}


def test_predict_unknown_benchmark_and_missing_gt(cli, split, tmp_path, capsys):
    root, model = split
    assert cli(["predict", "-b", "davis2099", "--data", root, "--out", tmp_path / "p.json"]) == 2
    assert "unknown --benchmark" in capsys.readouterr().err
    assert cli(["predict", "-b", "charades", "--data", root, "--out", tmp_path / "p.jsonl"]) == 2
    assert "--gt" in capsys.readouterr().err


def test_torchrun_two_processes_match_one(cli, split, tmp_path):
    root, model = split
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    common = ["--benchmark", "mevis", "--data", str(root), "--model", str(model), "--device", "cpu",
              "--keyframes", "3"]
    assert cli(["predict", *common, "--out", one]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
         "-m", "momentseg", "predict", *common, "--out", str(two)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(two.read_text()) == json.loads(one.read_text())
    assert not list(tmp_path.glob(".two.json.shard*"))
