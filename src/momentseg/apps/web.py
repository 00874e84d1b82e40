"""The local web demo: a Gradio page that grounds and segments expressions in a video.

:func:`build_app` wires a loaded :class:`~momentseg.pipeline.MomentSeg` into a page where the user uploads a
video (or makes a synthetic one from a seed), types expressions one per line and gets back the overlay video,
the similarity plot (curve, grounded moment, keyframes), the ranked moments as a table and a download of the
masks (zip of PNGs) and ``result.json``. Input problems (:class:`~momentseg.errors.MomentSegError`) are shown
as one line in the page's status box; the app keeps running. ``momentseg web`` (:mod:`momentseg.cli.web`)
serves it.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from momentseg.apps.demo import MAX_EXPRESSIONS, demo_video
from momentseg.errors import InputError, MomentSegError
from momentseg.grounding.sampling import DEFAULT_KEYFRAMES, DEFAULT_METHOD, METHODS
from momentseg.io.atomic import atomic_path
from momentseg.io.overlay import write_video
from momentseg.io.video import open_video
from momentseg.propagation.policy import DEFAULT_MODE, MODES

log = logging.getLogger(__name__)

#: Columns of the moments table (one row per ranked moment of each expression).
MOMENT_COLUMNS = ["#", "expression", "rank", "start (s)", "end (s)", "score"]
#: Ranked moments shown per expression.
MOMENTS_SHOWN = 3


def parse_expressions(block: str | None) -> list[str]:
    """The non-blank lines of ``block`` (the text box), whitespace-collapsed; an error when there are none."""
    texts = [" ".join(line.split()) for line in (block or "").splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise InputError("no expression given: type at least one expression, one per line")
    return texts


def make_synthetic(seed: int | float | None, workdir: Path) -> tuple[str, str]:
    """Write the demo's synthetic video for ``seed`` to an mp4 in ``workdir``.

    Returns ``(mp4 path, expressions)``: the expressions that have a target and a moment, one per line (at
    most :data:`momentseg.apps.demo.MAX_EXPRESSIONS`), to prefill the text box.
    """
    if seed is None or float(seed) != int(seed):
        raise InputError(f"the synthetic video seed must be a whole number, got {seed!r}")
    synth = demo_video(int(seed))
    path = workdir / f"synthetic-{int(seed)}.mp4"
    write_video(path, synth.frames, synth.fps)
    texts = [e.text for e in synth.expressions if e.obj_ids and e.moments][:MAX_EXPRESSIONS]
    return str(path), "\n".join(texts)


def moment_rows(result) -> list[list]:
    """The moments table of a :class:`~momentseg.pipeline.SegmentResult`: up to :data:`MOMENTS_SHOWN` ranked
    moments per expression as ``[k, text, rank, start_s, end_s, score]`` rows (k and rank count from 1)."""
    rows = []
    for k, expr in enumerate(result.expressions, start=1):
        for rank, (s, e, score) in enumerate(expr.grounding.moments[:MOMENTS_SHOWN], start=1):
            rows.append([k, expr.text, rank, round(float(s), 2), round(float(e), 2), round(float(score), 3)])
    return rows


def zip_masks(out_dir: Path) -> Path:
    """Pack ``out_dir/masks/<k>/<frame>.png`` into ``out_dir/masks.zip`` (entries ``<k>/<frame>.png``)."""
    masks = out_dir / "masks"
    target = out_dir / "masks.zip"
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for png in sorted(masks.rglob("*.png")):
            zf.write(png, png.relative_to(masks).as_posix())
    return target


def _summary(result, seconds: float) -> str:
    v = result.video
    lines = [f"Segmented {len(result.expressions)} expression(s) on {v.num_frames} frames "
             f"({v.num_frames / v.fps:.1f} s, {v.width}x{v.height}) in {seconds:.1f} s."]
    for k, expr in enumerate(result.expressions, start=1):
        s, e, score = expr.grounding.moments[0]
        lines.append(f"{k}. *{expr.text}*: moment {s:.2f}-{e:.2f} s (score {score:.2f}), "
                     f"keyframes {[int(i) for i in expr.keyframes]}, anchor frame {int(expr.anchor)}")
    return "\n".join(lines)


def _error_text(exc: BaseException, upload: str | None) -> str:
    """One line for the status box; the upload's temporary path is shortened to its file name."""
    msg = str(exc)
    if upload:
        msg = msg.replace(str(upload), Path(upload).name)
    return f"**Error:** {msg}"


def _workdir(workdir: str | Path | None) -> Path:
    """The folder the runs write under: ``workdir``, or a temporary one removed at exit."""
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="momentseg-web-"))
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _synthetic_handler(gr, workdir: Path):
    """The "Make synthetic video" callback: seed → (video, expressions, status)."""

    def synthetic(seed):
        try:
            return *make_synthetic(seed, workdir), "Synthetic video ready: press **Segment**."
        except MomentSegError as exc:
            return gr.update(), gr.update(), _error_text(exc, None)

    return synthetic


def _segment_handler(gr, pipe, workdir: Path):
    """The "Segment" callback: inputs → (status, overlay, plot, moments, files); errors go to the status."""

    def segment(video, block, keyframes, sampling, propagation, progress=gr.Progress()):
        empty = (None, None, [], None)
        start = time.perf_counter()
        try:
            if not video:
                raise InputError("no video: upload a video or make a synthetic one first")
            texts = parse_expressions(block)
            progress(0.0, desc="reading the video")
            vid = open_video(video)
            n = len(texts)

            def report(stage: str, done: int, total: int) -> None:
                k = int(stage.split()[-1]) if stage.split()[-1].isdigit() else 0
                progress((k * total + done, n * total), desc=f"expression {k + 1}/{n}: propagating masks")

            result = pipe.segment(vid, texts, keyframes=int(keyframes), sampling=sampling,
                                  propagation=propagation, progress=report)
            progress(1.0, desc="writing the overlay video and masks")
            out = result.save(workdir / f"run-{uuid.uuid4().hex[:12]}", overlay=True)
            files = [str(zip_masks(out)), str(out / "result.json")]
            return (_summary(result, time.perf_counter() - start), str(out / "overlay.mp4"),
                    str(out / "similarity.png"), moment_rows(result), files)
        except MomentSegError as exc:
            return (_error_text(exc, video), *empty)
        except Exception as exc:  # a bug, not the user's fault: say so in the page, keep serving
            log.exception("web demo run failed")
            return (f"**Internal error:** {type(exc).__name__}: {' '.join(str(exc).split())}", *empty)

    return segment


def build_app(pipe, workdir: str | Path | None = None):
    """The Gradio page (``gr.Blocks``) for ``pipe`` (a loaded :class:`~momentseg.pipeline.MomentSeg`).

    Every run writes its outputs to a fresh folder under ``workdir`` (default: a temporary folder removed at
    exit). Runs are queued one at a time (the model is shared); launch it with ``.launch(...)``.
    """
    import gradio as gr  # the optional [web] extra: imported only when a page is built

    workdir = _workdir(workdir)
    synthetic = _synthetic_handler(gr, workdir)
    segment = _segment_handler(gr, pipe, workdir)

    with gr.Blocks(title="MomentSeg", delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown("# MomentSeg\nFind **when** a sentence happens in a video and segment **what** it refers "
                    f"to in every frame. Model on `{pipe.device}`.")
        with gr.Row():
            with gr.Column():
                video_in = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
                with gr.Row():
                    seed = gr.Number(0, label="Synthetic video seed", precision=0, minimum=0, elem_id="seed")
                    synth_btn = gr.Button("Make synthetic video", elem_id="synth")
                texts = gr.Textbox(label="Expressions (one per line)", lines=3, elem_id="texts",
                                   placeholder="the red ball rolling left\nwhich square starts moving?")
                with gr.Accordion("Settings", open=False):
                    keyframes = gr.Slider(1, 16, value=DEFAULT_KEYFRAMES, step=1, label="Keyframes K for the [SEG] pass")
                    sampling = gr.Dropdown(list(METHODS), value=DEFAULT_METHOD, label="Keyframe sampling")
                    propagation = gr.Dropdown(list(MODES), value=DEFAULT_MODE, label="Mask propagation")
                run_btn = gr.Button("Segment", variant="primary", elem_id="run")
                status = gr.Markdown(elem_id="status")
            with gr.Column():
                overlay = gr.Video(label="Overlay (masks, expressions, grounded moment)", interactive=False,
                                   loop=True, buttons=["download"], elem_id="overlay")
        plot = gr.Image(label="Similarity p(frame | text), grounded moment and keyframes", type="filepath",
                        interactive=False, height=350, buttons=["download", "fullscreen"], elem_id="similarity")
        moments = gr.Dataframe(headers=MOMENT_COLUMNS, label="Moments (ranked per expression)",
                               interactive=False, elem_id="moments")
        files = gr.File(label="Downloads: masks.zip (PNG per frame) and result.json", file_count="multiple",
                        interactive=False, elem_id="downloads")

        synth_btn.click(synthetic, inputs=seed, outputs=[video_in, texts, status])
        run_btn.click(segment, inputs=[video_in, texts, keyframes, sampling, propagation],
                      outputs=[status, overlay, plot, moments, files], concurrency_limit=1)
    return demo
