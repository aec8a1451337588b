"""``nexml retrain`` and ``nexml shadow``: continuous training from the command line."""

from __future__ import annotations

from typing import Any

import click

from .deploy.sizes import SIZES
from .errors import InvalidInput


def _workspace(ctx: click.Context) -> Any:
    from .workspace import Workspace

    ws = Workspace.open(ctx.find_root().obj)
    ctx.call_on_close(ws.close)
    return ws


@click.command()
@click.argument("deployment")
@click.option("--source", metavar="PATH|URL",
              help="The labelled data: a CSV/Parquet path, an fsspec URL or a SQL URL (no "
                   "password in it: use PGPASSWORD or .pgpass). Default: the source configured "
                   "for the deployment's monitor.")
@click.option("--table", help="With a SQL URL: the table to read.")
@click.option("--query", help="With a SQL URL: the query to run (read-only).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]),
              help="File format, when the name does not tell.")
@click.option("--time-limit", type=click.FloatRange(1, 3600), metavar="SECONDS",
              help="AutoML time limit (default: the champion's).")
@click.option("--now", is_flag=True,
              help="Run the retraining here and wait for it, instead of queueing it for a "
                   "worker (`nexml worker`).")
@click.pass_context
def retrain(  # type: ignore[no-untyped-def]
    ctx: click.Context, deployment: str, source: str | None, table: str | None,
    query: str | None, fmt: str | None, time_limit: float | None, now: bool,
) -> None:
    """Retrain the model DEPLOYMENT serves on the latest labelled data.

    The platform ingests the data as a new dataset version, splits off a holdout, runs AutoML
    with the champion's settings, makes the champion/challenger comparison report on that
    holdout (also the challenger's platform validation) and registers the challenger in
    staging with a recommendation. It never deploys: a person approves (not you: you are the
    challenger's author) and deploys.

    \b
    nexml retrain credit --source labelled/2026-11.csv --now
    nexml retrain credit --source postgresql://reader@db/loans --table outcomes
    """
    if source is None and (table or query or fmt):
        raise click.UsageError("--table, --query and --format describe a --source")
    spec: Any = None
    if source is not None:
        spec = {"uri": source}
        for key, value in (("table", table), ("query", query), ("format", fmt)):
            if value is not None:
                spec[key] = value
        if len(spec) == 1:
            spec = source
    ws = _workspace(ctx)
    job = ws.retrain(deployment, source=spec, time_limit=time_limit, now=now)
    if not now:
        click.echo(f"job {job.id} retrain queued for deployment {deployment}; "
                   f"`nexml worker` runs it, `nexml jobs show {job.id}` follows it")
        return
    if job.status != "succeeded":
        raise InvalidInput(f"retraining job {job.id} {job.status}: {job.error or job.message}")
    r = job.result
    click.echo(f"challenger {r['challenger']} in staging (author {r['author']}), against "
               f"champion {r['champion']} on holdout {r['holdout']}")
    click.echo(f"comparison report #{r['report']} (html sha256 {r['html_sha256']}); "
               f"validation #{r['validation']} {r['validation_status']}")
    primary = (r.get("deltas") or {})
    for metric, d in primary.items():
        click.echo(f"  {metric}: {d['champion']:.4f} -> {d['challenger']:.4f} "
                   f"({d['delta']:+.4f})")
    click.echo(f"recommendation: {r['recommendation']} ({r['reason']})")
    click.echo("nothing was deployed: approval stays with a person")


@click.command()
@click.argument("ref")
@click.option("--name", required=True, help="The shadow-only deployment's name.")
@click.option("--route", help="Make it this route's shadow (scored and recorded, never "
                              "answering).")
@click.option("--size", type=click.Choice(list(SIZES)), default="small", show_default=True)
@click.pass_context
def shadow(ctx: click.Context, ref: str, name: str, route: str | None, size: str) -> None:  # type: ignore[no-untyped-def]
    """Put staging or approved version REF on a shadow-only deployment (managers).

    A route may name it as its shadow only: every request is also scored by REF and recorded,
    marked shadow, and its answer is never returned. It cannot be a route's default, a rule's
    target or a canary until it is approved and deployed.
    """
    ws = _workspace(ctx)
    made = ws.shadow(ref, name=name, route=route, size=size)
    where = f"; shadow of route {route}" if route else ""
    click.echo(f"shadow-only deployment {made.name} serves {made.model_ref}{where}")
