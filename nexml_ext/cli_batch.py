"""``nexml batch``: scoring and drift over a directory of Parquet files larger than memory."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any

import click

from .ml.batch import DEFAULT_MEMORY


@click.group()
def batch() -> None:
    """Batch scoring and drift of Parquet directories, in bounded memory, here or on Dask."""


_INPUT = click.option(
    "--input",
    "input_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory of Parquet files (read in sorted order; .* and _* names skipped).",
)
_MEMORY = click.option(
    "--memory-limit",
    default=DEFAULT_MEMORY,
    show_default=True,
    help="Memory for data in flight (chunks and statistics), e.g. 256MB or 1GiB.",
)
_DASK = click.option(
    "--dask", metavar="ADDR", help="Run on this Dask scheduler, e.g. tcp://host:8786."
)


@contextmanager
def _bar(total: int, quiet: bool):  # type: ignore[no-untyped-def]
    """A tqdm progress bar in rows on stderr (none with --json)."""
    from tqdm import tqdm

    with tqdm(total=total, unit="rows", unit_scale=True, disable=quiet) as bar:
        yield bar.update


def _total_rows(input_dir: str) -> int:
    from .ml.batch import open_input

    return open_input(input_dir).total_rows


@batch.command("score")
@click.argument("ref")
@_INPUT
@click.option(
    "--output",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="New or empty directory for the predictions (part-NNNNN.parquet per input file).",
)
@_MEMORY
@_DASK
@click.option("--keep", multiple=True, help="An input column to copy into the output (an id).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.pass_context
def batch_score(  # type: ignore[no-untyped-def]
    ctx: click.Context,
    ref: str,
    input_dir: str,
    output_dir: str,
    memory_limit: str,
    dask: str | None,
    keep: tuple[str, ...],
    as_json: bool,
) -> None:
    """Score every row under --input with version REF into --output (an audited run)."""
    from .cli import _workspace

    ws = _workspace(ctx)
    with _bar(_total_rows(input_dir), as_json) as progress:
        run = ws.batch_score(
            ref,
            input_dir,
            output_dir,
            memory_limit=memory_limit,
            dask=dask,
            keep=list(keep),
            progress=progress,
        )
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, default=str))
        return
    click.echo(
        f"scored {run.rows} rows of {run.input['files']} file(s) with {ref} "
        f"({run.chunks} chunks of up to {run.chunk_rows} rows, {run.executor}) into {output_dir}"
    )
    click.echo(f"input fingerprint {run.input['sha256']}")


@batch.command("drift")
@click.argument("ref")
@_INPUT
@_MEMORY
@_DASK
@click.option(
    "--method",
    type=click.Choice(["auto", "test", "distance"]),
    default="auto",
    show_default=True,
    help="Test or distance next to PSI (auto: a test up to 1000 rows, else a distance).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def batch_drift(  # type: ignore[no-untyped-def]
    ctx: click.Context,
    ref: str,
    input_dir: str,
    memory_limit: str,
    dask: str | None,
    method: str,
    as_json: bool,
) -> None:
    """Drift of every row under --input against REF's training profile (an audited run)."""
    from .cli import _table, _workspace

    ws = _workspace(ctx)
    with _bar(_total_rows(input_dir), as_json) as progress:
        run = ws.batch_drift(
            ref, input_dir, memory_limit=memory_limit, dask=dask, method=method, progress=progress
        )
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, default=str))
        return
    report = run.report
    rows: list[dict[str, Any]] = [
        {
            "column": c.column,
            "kind": c.kind,
            "psi": None if c.psi is None else f"{c.psi:.4f}",
            "status": c.status,
            "test": c.test,
            "statistic": None if c.statistic is None else f"{c.statistic:.4g}",
            "p_value": None if c.p_value is None else f"{c.p_value:.3g}",
            "drift": "yes" if c.drift_detected else "no",
        }
        for c in report.columns.values()
    ]
    _table(rows, ["column", "kind", "psi", "status", "test", "statistic", "p_value", "drift"])
    verdict = "DRIFT" if report.dataset_drift else "no dataset drift"
    click.echo(
        f"{report.rows} rows, {len(report.alerts)} of {len(rows)} columns at alert "
        f"(share {report.drift_share:.2f}): {verdict} [{run.executor}, {run.passes} pass(es), "
        f"input {run.input['sha256'][:12]}]"
    )
