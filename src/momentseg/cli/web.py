from __future__ import annotations

import typer

from momentseg.cli import app
from momentseg.cli._options import DEVICE, MODEL, load_pipeline


@app.command("web")
def web(
    port: int = typer.Option(7860, "--port", "-p", min=1, max=65535, help="Port to serve the page on."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind: 127.0.0.1 keeps the page on this machine only."),
    model: str = MODEL,
    device: str = DEVICE,
) -> None:
    """Serve a local web page: upload or make a video, type expressions, see overlay, moments and masks."""
    import os

    from momentseg.errors import MomentSegError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline demo
    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise MomentSegError("the web demo needs gradio: pip install 'momentseg[web]'") from exc
    from momentseg.apps.web import build_app

    pipe = load_pipeline(model, device)
    page = build_app(pipe)
    try:
        page.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, share=False, inbrowser=False, ssr_mode=False,
            mcp_server=False, footer_links=[],
        )
    except OSError as exc:  # port taken, bad address
        raise MomentSegError(f"cannot serve on {host}:{port}: {exc}") from exc
