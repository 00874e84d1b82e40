"""End-to-end: ``momentseg web`` serving a tiny random-weight MomentSeg, used through headless Chromium.

The server runs as a real subprocess (the CLI command); Playwright drives Debian's ``/usr/bin/chromium``
(CI installs it with apt-get; ``playwright install`` is not used). Without it the module is skipped, unless
``MOMENTSEG_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure; ``MOMENTSEG_CHROMIUM`` names
another Chromium binary. The masks of a random model mean nothing, but every output must reach the page. A screenshot of the page after a run is kept as
``<tmp_path>/web.png`` and, when ``MOMENTSEG_ARTIFACTS`` is set, copied to ``test-artifacts/web.png``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from momentseg.apps.demo import MAX_EXPRESSIONS, demo_video
from momentseg.data.synthetic import caption_vocabulary
from momentseg.io.overlay import write_video
from momentseg.model.momentseg import MomentSegModel

CHROMIUM = Path(os.environ.get("MOMENTSEG_CHROMIUM", "/usr/bin/chromium"))
#: Set (as .ci/run does) to make a missing browser a failure instead of a skip.
REQUIRE_BROWSER = os.environ.get("MOMENTSEG_REQUIRE_BROWSER", "") not in ("", "0")
# Without the background-networking flags Chromium dials out on start, which a closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_MS = 60_000

if not CHROMIUM.is_file() and not REQUIRE_BROWSER:
    pytest.skip(f"the web end-to-end test needs Chromium at {CHROMIUM} (Debian: `apt-get install chromium "
                "chromium-driver`); set MOMENTSEG_REQUIRE_BROWSER=1 to make its absence a failure",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``momentseg web`` on a free port with a tiny random model; yields its URL."""
    root = tmp_path_factory.mktemp("web")
    MomentSegModel.tiny(caption_vocabulary()).save_pretrained(root / "model")
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(root / "gradio"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = open(root / "server.log", "w")  # noqa: SIM115 (closed in teardown)
    proc = subprocess.Popen([sys.executable, "-m", "momentseg", "web", "--port", str(port),
                             "--model", str(root / "model"), "--device", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"momentseg web exited with {proc.returncode}:\n{(root / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"momentseg web did not answer in 60 s:\n{(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert f"127.0.0.1:{port}" in (root / "server.log").read_text()  # bound to localhost by default


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's browser with "
                    "`apt-get install -y chromium chromium-driver` (.ci/run does) to run the web test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(server)
    pg.wait_for_selector("#run")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _upload(page, path: Path) -> None:
    page.locator("#video-in input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#video-in video", timeout=20_000)


def _status_after_run(page, expect: str) -> str:
    """Click Segment and wait until the status box changes to a text containing ``expect``; returns it."""
    text = "#status [data-testid=markdown]"
    before = page.locator(text).inner_text()
    page.locator("#run").click()
    page.wait_for_function("([sel, old, t]) => { const s = document.querySelector(sel)?.innerText || '';"
                           " return s !== old && s.includes(t); }", arg=[text, before, expect],
                           timeout=RUN_TIMEOUT_MS)
    return page.locator(text).inner_text()


def _table_rows(page) -> list[list[str]]:
    """The moments table's body rows as cell texts (an empty table shows one blank row: left out)."""
    rows = page.locator("#moments [role=row].virtual-row")
    cells = [[c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()]
             for i in range(rows.count())]
    return [r for r in cells if any(r)]


def _download(page, name: str) -> bytes:
    link = page.locator(f"#downloads a[download='{name}']")
    assert link.count() == 1, f"no download link for {name}"
    response = page.request.get(link.get_attribute("href"))
    assert response.ok
    return response.body()


def _video_state(page, selector: str) -> dict:
    page.wait_for_function(f"document.querySelector('{selector}')?.readyState >= 1", timeout=20_000)
    return page.evaluate(f"(() => {{ const v = document.querySelector('{selector}'); "
                         "return {duration: v.duration, width: v.videoWidth, height: v.videoHeight}; })()")


def _image_width(page, selector: str) -> int:
    """The natural width of the image at ``selector`` once the browser has decoded it (the status text can
    change before the image's bytes arrive, so reading it at once races the download)."""
    page.wait_for_function(f"(() => {{ const i = document.querySelector('{selector}'); "
                           "return !!i && i.complete && i.naturalWidth > 0; })()", timeout=20_000)
    return page.evaluate(f"document.querySelector('{selector}').naturalWidth")


def test_upload_and_segment_shows_every_output(page, tmp_path):
    synth = demo_video(2)
    clip = tmp_path / "clip.mp4"
    write_video(clip, synth.frames[:30], synth.fps)
    texts = [synth.expressions[0].text, synth.expressions[1].text]
    _upload(page, clip)
    page.locator("#texts textarea").fill(f"{texts[0]}\n\n  {texts[1]}  \n")  # blank line and spaces ignored

    status = _status_after_run(page, "Segmented 2 expression(s)")
    assert "30 frames" in status and texts[0] in status and texts[1] in status

    # the overlay video plays in the browser: frame width as uploaded, a text/timeline panel added below
    overlay = _video_state(page, "#overlay video")
    assert overlay["width"] == synth.frames.shape[2] and overlay["height"] > synth.frames.shape[1]
    assert overlay["duration"] == pytest.approx(30 / synth.fps, abs=0.15)
    # the similarity plot is a loaded image
    assert _image_width(page, "#similarity img") > 200

    # the downloads hold every mask and the result the table shows
    result = json.loads(_download(page, "result.json"))
    assert [e["text"] for e in result["expressions"]] == texts
    assert result["video"]["num_frames"] == 30
    with zipfile.ZipFile(io.BytesIO(_download(page, "masks.zip"))) as zf:
        assert sorted(zf.namelist()) == [f"{k}/{t:05d}.png" for k in range(2) for t in range(30)]
    rows = _table_rows(page)
    expected = [[str(k + 1), e["text"], str(rank + 1), f"{s:g}", f"{end:g}"]
                for k, e in enumerate(result["expressions"])
                for rank, (s, end, _) in enumerate(e["moments"][:3])]
    assert len(rows) == len(expected) >= 2
    for row, want in zip(rows, expected, strict=True):
        assert row[:3] == want[:3]
        assert float(row[3]) == pytest.approx(float(want[3]), abs=0.006)
        assert float(row[4]) == pytest.approx(float(want[4]), abs=0.006)

    shot = tmp_path / "web.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MOMENTSEG_ARTIFACTS"):
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "test-artifacts" / "web.png")


def test_synthetic_video_button_fills_video_and_expressions(page):
    synth = demo_video(3)
    expected = [e.text for e in synth.expressions if e.obj_ids and e.moments][:MAX_EXPRESSIONS]
    page.locator("#seed input").fill("3")
    page.locator("#synth").click()
    page.wait_for_function("document.querySelector('#texts textarea')?.value.length > 0", timeout=20_000)
    assert page.locator("#texts textarea").input_value().splitlines() == expected
    video = _video_state(page, "#video-in video")
    assert (video["width"], video["height"]) == (synth.frames.shape[2], synth.frames.shape[1])
    assert video["duration"] == pytest.approx(synth.num_frames / synth.fps, abs=0.15)


def test_bad_inputs_show_a_message_and_the_page_keeps_working(page, tmp_path):
    assert "no video" in _status_after_run(page, "Error")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)  # an mp4 header, then junk
    _upload(page, broken)
    page.locator("#texts textarea").fill("the red ball")
    status = _status_after_run(page, "Error")
    assert "cannot decode video 'broken.mp4'" in status
    assert page.locator("#overlay video").count() == 0 and _table_rows(page) == []

    page.locator("#video-in button[aria-label='Clear']").click()
    clip = tmp_path / "clip.mp4"
    synth = demo_video(4)
    write_video(clip, synth.frames[:12], synth.fps)
    _upload(page, clip)
    page.locator("#texts textarea").fill("  \n ")
    assert "no expression given" in _status_after_run(page, "Error")

    page.locator("#texts textarea").fill(synth.expressions[0].text)
    assert "12 frames" in _status_after_run(page, "Segmented 1 expression(s)")
