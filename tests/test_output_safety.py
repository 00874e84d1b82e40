"""``--out`` never loses a user's files; user mistakes are one ``error:`` line (exit 2) found before the model
loads; SIGTERM removes unfinished output like Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from momentseg.data.synthetic import generate_video
from momentseg.errors import CheckpointError, InputError, OutputError
from momentseg.io.atomic import MARKER, atomic_dir, check_output_dir, check_output_file, read_marker
from momentseg.io.overlay import write_video
from momentseg.pipeline import MomentSeg, embedded_model_dir

TEXT = "the red circle"


# ------------------------------------------------------------------------------------------------- helpers
def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path → sha256; folders → 'dir')."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _user_folder(root: Path) -> Path:
    """A user's folder: a file and a subfolder with a file."""
    d = root / "userdir"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.txt").write_text("three years of work\n")
    (d / "sub" / "notes.md").write_text("# notes\n")
    return d


def _user_files_intact(d: Path) -> None:
    assert (d / "thesis.txt").read_text() == "three years of work\n"
    assert (d / "sub" / "notes.md").read_text() == "# notes\n"


def _no_hidden_temp(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".momentseg-")
            and p.name != MARKER]
    assert not left, left


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


def _unwritable(tmp_path: Path) -> Path:
    """A folder path this process cannot create files in."""
    if os.geteuid() != 0:
        ro = tmp_path / "readonly"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out"
    target = Path("/proc/momentseg-test-out")  # root writes anywhere but in /proc
    try:
        tempfile.mkstemp(dir="/proc")
    except OSError:
        return target
    pytest.skip("no unwritable location for this user")


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a command loads a model: its errors must come before."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the argument error was reported")

    monkeypatch.setattr(MomentSeg, "from_pretrained", classmethod(refuse))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    v = generate_video(5)
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, v.frames[:12], fps=v.fps)
    return path


# ----------------------------------------------------------------------------------------- atomic_dir rules
def test_foreign_folder_needs_overwrite_and_keeps_user_files(tmp_path):
    d = _user_folder(tmp_path)
    before = _tree(d)
    with pytest.raises(OutputError, match="did not write"):
        with atomic_dir(d) as tmp:
            (tmp / "result.json").write_text("{}")
    assert _tree(d) == before
    with atomic_dir(d, overwrite=True) as tmp:
        (tmp / "result.json").write_text("1")
        (tmp / "masks" / "0").mkdir(parents=True)
        (tmp / "masks" / "0" / "00000.png").write_bytes(b"png")
    _user_files_intact(d)
    assert (d / "result.json").read_text() == "1" and (d / "masks" / "0" / "00000.png").is_file()
    assert read_marker(d) == ["masks/0/00000.png", "result.json"]
    _no_hidden_temp(d)


def test_own_folder_replaces_only_its_own_files(tmp_path):
    d = tmp_path / "out"
    with atomic_dir(d) as tmp:
        (tmp / "result.json").write_text("1")
        (tmp / "masks" / "1").mkdir(parents=True)
        (tmp / "masks" / "1" / "00000.png").write_bytes(b"old")
    (d / "mine.txt").write_text("added by the user later")
    with atomic_dir(d) as tmp:  # no --overwrite needed: the marker says momentseg wrote it
        (tmp / "result.json").write_text("2")
    assert (d / "result.json").read_text() == "2"
    assert not (d / "masks").exists()  # the previous output's files that the new one lacks
    assert (d / "mine.txt").read_text() == "added by the user later"
    assert read_marker(d) == ["result.json"]


def test_a_user_file_is_never_replaced_even_with_overwrite(tmp_path):
    d = _user_folder(tmp_path)
    with pytest.raises(OutputError, match="did not write"):
        with atomic_dir(d, overwrite=True) as tmp:
            (tmp / "thesis.txt").write_text("ours")
            (tmp / "result.json").write_text("{}")
    _user_files_intact(d)
    assert not (d / "result.json").exists()
    with pytest.raises(OutputError, match="folder"):
        with atomic_dir(d, overwrite=True) as tmp:
            (tmp / "sub").write_text("a file where the user has a folder")
    _user_files_intact(d)
    _no_hidden_temp(d)


def test_a_file_never_becomes_a_folder(tmp_path):
    f = tmp_path / "existing_file.txt"
    f.write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="not a folder"):
            with atomic_dir(f, overwrite=overwrite) as tmp:
                (tmp / "x").write_text("x")
    assert f.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing_file.txt"]
    with pytest.raises(OutputError, match="not a folder"):
        check_output_dir(f / "below")


def test_failure_leaves_nothing_behind(tmp_path):
    d = _user_folder(tmp_path)
    before = _tree(d)
    for target in (d, tmp_path / "new"):
        with pytest.raises(RuntimeError):
            with atomic_dir(target, overwrite=True) as tmp:
                (tmp / "result.json").write_text("half")
                raise RuntimeError("crash while writing")
    assert _tree(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdir"]


def test_dot_and_dotdot(tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    with atomic_dir(".") as tmp:
        (tmp / "x.txt").write_text("1")
    assert (work / "x.txt").read_text() == "1"
    (tmp_path / "a" / "user.txt").write_text("u")
    with pytest.raises(OutputError, match="did not write"):
        check_output_dir("..")
    with atomic_dir("..", overwrite=True) as tmp:
        (tmp / "y.txt").write_text("2")
    assert (tmp_path / "a" / "y.txt").read_text() == "2" and (tmp_path / "a" / "user.txt").read_text() == "u"


def test_single_file_outputs(tmp_path):
    f = tmp_path / "report.json"
    check_output_file(f)
    f.write_text("old")
    with pytest.raises(OutputError, match="--overwrite"):
        check_output_file(f)
    check_output_file(f, overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)


def test_unwritable_location_is_reported(tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        check_output_dir(_unwritable(tmp_path))


# ---------------------------------------------------------------------------------------------- the CLI
def test_segment_into_a_user_folder(cli, clip, tmp_path, capsys):
    d = _user_folder(tmp_path)
    before = _tree(d)
    assert cli(["segment", clip, "--text", TEXT, "--out", d, "--device", "cpu", "--keyframes", "2"]) == 2
    _one_line_error(capsys, "--overwrite", str(d))
    assert _tree(d) == before
    assert cli(["segment", clip, "--text", TEXT, "--text", "a square", "--out", d, "--overwrite",
                "--device", "cpu", "--keyframes", "2"]) == 0, capsys.readouterr().err
    _user_files_intact(d)
    assert (d / "result.json").is_file() and (d / "masks" / "1" / "00000.png").is_file()
    # a second run into the folder it wrote: no --overwrite needed, its own files are replaced
    assert cli(["segment", clip, "--text", "a square", "--out", d, "--device", "cpu", "--keyframes", "2"]) == 0
    _user_files_intact(d)
    assert [e["text"] for e in json.loads((d / "result.json").read_text())["expressions"]] == ["a square"]
    assert not (d / "masks" / "1").exists()
    _no_hidden_temp(d)


def test_segment_out_file_is_an_error_even_with_overwrite(cli, clip, tmp_path, capsys, no_model_load):
    f = tmp_path / "existing_file.txt"
    f.write_text("keep me")
    for extra in ([], ["--overwrite"]):
        assert cli(["segment", clip, "--text", TEXT, "--out", f, *extra]) == 2
        _one_line_error(capsys, "not a folder")
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["existing_file.txt"]


def test_overwrite_never_replaces_a_user_file_of_the_same_name(cli, clip, tmp_path, capsys, no_model_load):
    d = _user_folder(tmp_path)
    (d / "result.json").write_text("the user's own result.json")
    before = _tree(d)
    assert cli(["segment", clip, "--text", TEXT, "--out", d, "--overwrite"]) == 2
    _one_line_error(capsys, "result.json", "did not write")
    assert _tree(d) == before


def test_out_dot_and_dotdot_on_the_cli(cli, clip, tmp_path, capsys, monkeypatch, no_model_load):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "user.txt").write_text("u")
    monkeypatch.chdir(work)
    assert cli(["segment", clip, "--text", TEXT, "--out", ".."]) == 2
    _one_line_error(capsys, "did not write")
    assert cli(["synth", "--out", ".", "--videos", "1", "--seed", "1"]) == 0
    assert (work / "stats.json").is_file() and read_marker(work)


def test_unwritable_out_fails_before_the_model_loads(cli, clip, tmp_path, capsys, no_model_load):
    out = _unwritable(tmp_path)
    assert cli(["segment", clip, "--text", TEXT, "--out", out]) == 2
    _one_line_error(capsys, "cannot write")
    assert cli(["demo", "--out", out]) == 2
    _one_line_error(capsys, "cannot write")
    assert cli(["synth", "--out", out, "--videos", "1", "--seed", "1"]) == 2
    _one_line_error(capsys, "cannot write")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--keyframes", "0"], "keyframes"),
        (["--sampling", "sometimes"], "unknown sampling"),
        (["--propagation", "sideways"], "unknown propagation"),
        (["--device", "tpu"], "unknown device"),
        (["--text", "caf\udce9"], "UTF-8"),  # how Python receives the argv bytes b"caf\xe9"
    ],
)
def test_segment_options_fail_before_the_model_loads(cli, clip, tmp_path, capsys, no_model_load, args, needle):
    out = tmp_path / "out"
    assert cli(["segment", clip, "--text", TEXT, *args, "--out", out]) == 2
    _one_line_error(capsys, needle)
    assert not out.exists()


def test_ground_non_utf8_query(cli, clip, capsys, no_model_load):
    assert cli(["ground", clip, "--query", "\udcff\udcfe"]) == 2
    _one_line_error(capsys, "UTF-8")


def test_non_utf8_argv_bytes_in_a_real_process(clip, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-m", "momentseg", "segment", str(clip), "--text", b"caf\xe9 r\xff",
                           "--out", str(tmp_path / "out")], capture_output=True, env=env, timeout=120)
    err = proc.stderr.decode("utf-8", "replace").strip()
    assert proc.returncode == 2 and err.startswith("error:") and "UTF-8" in err and "\n" not in err, err


def test_eval_and_predict_outputs_checked_first(cli, tmp_path, capsys):
    report = tmp_path / "report.json"
    report.write_text("the user's report")
    gt = tmp_path / "gt.txt"
    gt.write_text("v0 0.0 1.0##a person\n")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"qid": 0, "pred_relevant_windows": [[0.0, 1.0, 0.9]]}) + "\n")
    assert cli(["eval", "-b", "charades", "--gt", gt, "--pred", pred, "--out", report]) == 2
    _one_line_error(capsys, "already exists", "--overwrite")
    assert report.read_text() == "the user's report"
    assert cli(["eval", "-b", "charades", "--gt", gt, "--pred", pred, "--out", report, "--overwrite"]) == 0
    assert "mIoU" in json.loads(report.read_text())
    assert cli(["eval", "-b", "charades", "--gt", gt, "--pred", pred, "--out", tmp_path]) == 2
    _one_line_error(capsys, "is a folder")
    assert cli(["eval", "-b", "charades", "--gt", gt, "--pred", pred, "--out", _unwritable(tmp_path) / "r.json"]) == 2
    _one_line_error(capsys, "cannot write")
    assert cli(["predict", "-b", "charades", "--gt", gt, "--data", tmp_path, "--out", pred]) == 2
    _one_line_error(capsys, "already exists")


def test_convert_and_train_check_out_first(cli, tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    assert cli(["convert", tmp_path / "no-such-source", "--out", f]) == 2
    _one_line_error(capsys, "not a folder")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("seed: 1\nmodel: {preset: tiny}\ndata:\n  sources:\n    - {type: synthetic, task: tsg}\n"
                   "run: {steps: 1, batch_size: 1}\n")
    run = _user_folder(tmp_path)
    before = _tree(run)
    assert cli(["train", cfg, "--out", run]) == 2
    _one_line_error(capsys, "--overwrite")
    (run / "config.json").write_text("{}")
    before = _tree(run)
    assert cli(["train", cfg, "--out", run, "--overwrite"]) == 2
    _one_line_error(capsys, "config.json")
    assert _tree(run) == before


# ------------------------------------------------------------------------------------- model folder, API
def _model_copy(root: Path, edit) -> Path:
    d = root / "model"
    d.mkdir()
    for p in embedded_model_dir().iterdir():
        (d / p.name).symlink_to(p)
    (d / "config.json").unlink()
    config = json.loads((embedded_model_dir() / "config.json").read_text())
    edit(d, config)
    return d


def _drop_qwen(d, c):
    c.pop("qwen")
    (d / "config.json").write_text(json.dumps(c))


def _list_config(d, c):
    (d / "config.json").write_text(json.dumps([c]))


def _no_tokenizer(d, c):
    (d / "config.json").write_text(json.dumps(c))
    (d / "tokenizer.json").unlink()


@pytest.mark.parametrize("edit, needle", [(_drop_qwen, "qwen"), (_list_config, "JSON object"),
                                          (_no_tokenizer, "tokenizer.json")])
def test_broken_model_folder_is_one_line(cli, clip, tmp_path, capsys, edit, needle):
    model = _model_copy(tmp_path, edit)
    with pytest.raises(CheckpointError, match=needle):
        MomentSeg.from_pretrained(model, device="cpu")
    assert cli(["ground", clip, "--query", TEXT, "--model", model]) == 2
    _one_line_error(capsys, needle)


def test_api_rejects_none_text(clip):
    pipe = MomentSeg.from_pretrained("embedded", device="cpu")
    with pytest.raises(InputError, match="string"):
        pipe.segment(clip, None)
    with pytest.raises(InputError, match="string"):
        pipe.segment(clip, [TEXT, None])
    with pytest.raises(InputError, match="string"):
        pipe.ground(clip, None)
    with pytest.raises(InputError, match="UTF-8"):
        pipe.ground(clip, "caf\udce9")
    with pytest.raises(InputError, match="keyframes"):
        pipe.segment(clip, TEXT, keyframes=0)


# ------------------------------------------------------------------------------------------------- SIGTERM
def test_sigterm_during_a_save_removes_the_temporary_folder(tmp_path):
    out = tmp_path / "split"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "momentseg", "synth", "--out", str(out), "--videos", "500",
                             "--seed", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):  # the save has begun
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "synth never started writing"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # no hidden .split.*.tmp, no half-written split


def test_sigterm_handler_is_restored_after_main(cli, tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    cli(["synth", "--out", tmp_path / "s", "--videos", "1", "--seed", "1"])
    assert signal.getsignal(signal.SIGTERM) == before


def test_output_files_get_the_usual_permissions(tmp_path):
    """safetensors writes its files 0600; an output folder's files come out 0666 & ~umask like any other."""
    import os

    import torch
    from safetensors.torch import save_file

    from momentseg.io.atomic import atomic_dir

    with atomic_dir(tmp_path / "out") as tmp:
        save_file({"a": torch.zeros(2)}, str(tmp / "w.safetensors"))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out" / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
