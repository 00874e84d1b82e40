"""``momentseg eval``: score RefVOS / TSG predictions, or pack a CodaLab submission zip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from momentseg.cli import app
from momentseg.data.benchmarks import REFVOS_BENCHMARKS as REFVOS
from momentseg.data.benchmarks import TSG_BENCHMARKS as TSG
from momentseg.errors import InputError


def _print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    is_tsg = report["benchmark"] in TSG
    keys = (
        ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "mAP"]
        if is_tsg
        else [k for k in ("J&F", "J", "F", "A", "R") if k in report]
    )
    table = Table(title=f"momentseg eval: {report['benchmark']}")
    table.add_column("set")
    for k in keys:
        table.add_column(k, justify="right")
    table.add_column("n", justify="right")
    for name, block in {**report.get("subsets", {}), **report.get("annotators", {})}.items():
        table.add_row(name, *[f"{block[k]:.2f}" for k in keys], str(block["n"]))
    n = report["n_queries"] if is_tsg else report.get("n_expressions", report.get("n_objects"))
    table.add_row("overall", *[f"{report[k]:.2f}" for k in keys], str(n), style="bold")
    Console(file=sys.stdout).print(table)
    if "protocol" in report:
        print(f"protocol: {report['protocol']}")


@app.command("eval")
def eval_command(
    benchmark: str = typer.Option(
        ...,
        "--benchmark",
        "-b",
        help="mevis | revos | refdavis | refytvos | refsav | charades | anet | qvhighlights",
    ),
    data: Path = typer.Option(
        None,
        "--data",
        help="RefVOS split folder (or its meta_expressions*.json); a DAVIS root for --protocol referformer.",
    ),
    gt: Path = typer.Option(
        None, "--gt", help="TSG ground-truth file (Charades txt, ActivityNet json, QVH jsonl)."
    ),
    pred: Path = typer.Option(
        ..., "--pred", help="Predictions: PNG folder PRED/<vid>/<exp_id>/<frame>.png or RLE JSON; TSG: JSONL."
    ),
    out: Path = typer.Option(None, "--out", help="Write the JSON report here (atomically); an existing file is "
                             "replaced only with --overwrite."),
    submission_zip: Path = typer.Option(
        None,
        "--submission-zip",
        help="mevis / refytvos: check every expected PNG and pack the CodaLab upload zip here instead of scoring.",
    ),
    protocol: str = typer.Option(
        None,
        "--protocol",
        help="refdavis only: sa2va (default; per expression, --data is a mask_dict split) or referformer "
        "(davis2017 unsupervised per annotator, averaged; --data DAVIS_ROOT, --pred PRED/anno_0..anno_3).",
    ),
    workers: int = typer.Option(None, "--workers", "-j", help="Worker processes (default: number of CPUs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out / --submission-zip file."),
) -> None:
    """Score predictions against a benchmark's ground truth, or build a CodaLab submission zip."""
    from momentseg.io.atomic import atomic_write_text

    benchmark, protocol = _check_common(benchmark, out, submission_zip, protocol, workers, overwrite)
    if benchmark in REFVOS:
        report = _refvos_report(benchmark, data, gt, pred, out, submission_zip, protocol, workers)
        if report is None:
            return
    else:
        report = _tsg_report(benchmark, data, gt, pred, out, submission_zip, workers)
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    _print_table(report)
    print(f"report: {out}")


def _check_common(
    benchmark: str,
    out: Path | None,
    submission_zip: Path | None,
    protocol: str | None,
    workers: int | None,
    overwrite: bool,
) -> tuple[str, str | None]:
    """Check the outputs (before any scoring), the benchmark, ``--workers`` and ``--protocol``.

    Returns the lower-cased benchmark and the checked protocol.
    """
    from momentseg.io.atomic import check_output_file

    # outputs are checked before any scoring: an unwritable or occupied path fails at once
    if out is not None:
        check_output_file(out, overwrite=overwrite, what="--out")
    if submission_zip is not None:
        check_output_file(submission_zip, overwrite=overwrite, what="--submission-zip")
    benchmark = benchmark.lower()
    if benchmark not in REFVOS + TSG:
        raise InputError(f"--benchmark must be one of {', '.join(REFVOS + TSG)}, got {benchmark!r}")
    if workers is not None and workers < 1:
        raise InputError("--workers must be >= 1")
    from momentseg.eval.refvos import check_protocol

    return benchmark, check_protocol(benchmark, protocol)


def _refvos_report(
    benchmark: str,
    data: Path | None,
    gt: Path | None,
    pred: Path,
    out: Path | None,
    submission_zip: Path | None,
    protocol: str | None,
    workers: int | None,
) -> dict | None:
    """Score a RefVOS benchmark; with ``--submission-zip`` pack the upload instead and return None."""
    from momentseg.io.atomic import atomic_write_text

    if data is None:
        raise InputError(f"--data SPLIT_DIR is required for {benchmark}")
    if gt is not None:
        raise InputError(f"--gt is for TSG benchmarks; use --data for {benchmark}")
    if submission_zip is not None:
        from momentseg.eval.refvos import write_submission_zip

        info = write_submission_zip(benchmark, data, pred, submission_zip, workers)
        print(f"wrote {info['zip']}: {info['n_files']} PNGs for {info['n_expressions']} expressions")
        if out is not None:
            atomic_write_text(out, json.dumps({"benchmark": benchmark, "submission": info}, indent=1) + "\n")
        return None
    if out is None:
        raise InputError("--out report.json is required")
    from momentseg.eval.refvos import evaluate_refvos

    return evaluate_refvos(benchmark, data, pred, workers, protocol)


def _tsg_report(
    benchmark: str,
    data: Path | None,
    gt: Path | None,
    pred: Path,
    out: Path | None,
    submission_zip: Path | None,
    workers: int | None,
) -> dict:
    """Score a TSG benchmark."""
    if gt is None:
        raise InputError(f"--gt FILE is required for {benchmark}")
    if data is not None or submission_zip is not None:
        raise InputError(f"--data / --submission-zip are for RefVOS benchmarks, not {benchmark}")
    if out is None:
        raise InputError("--out report.json is required")
    from momentseg.eval.tsg import evaluate_tsg

    return evaluate_tsg(benchmark, gt, pred, workers)
