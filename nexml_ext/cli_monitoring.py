"""``nexml monitor``, ``nexml alerts`` and ``nexml alert-sink``: monitoring from the shell.

Thin, like every command: parse, call one Workspace method, print. Refusals are one line
(``error: ...``) through the root group.
"""

from __future__ import annotations

import json
from typing import Any

import click

_WINDOWS = click.Choice(["daily", "weekly", "monthly"])


def _ws(ctx: click.Context):  # type: ignore[no-untyped-def]
    from .cli import _workspace

    return _workspace(ctx)


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else ""


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


# --- nexml monitor ---------------------------------------------------------------------------


@click.group(no_args_is_help=True)
def monitor() -> None:
    """Monitor deployments: data drift of recorded inputs against the training data, prediction
    drift, performance from attached outcomes, traffic and latency, per daily, weekly or monthly
    window. Thresholds come from the model's compliance template unless overridden here.

    \b
    nexml monitor enrol credit --window weekly --sink ops-hook
    nexml monitor run credit            # every complete window not yet judged
    nexml monitor results credit --metric psi
    """


@monitor.command("enrol")
@click.argument("deployment")
@click.option("--window", type=_WINDOWS, default="weekly", show_default=True,
              help="Window the monitor judges.")
@click.option("--checks", default="data_drift,prediction_drift,performance,health",
              show_default=True, help="Comma-separated checks to run.")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="Override a template threshold (psi_alert=0.2, auc_min=0.72, min_rows=200, "
              "latency_p95_ms_max=50, ...); repeatable.")
@click.option("--segment", "segments", multiple=True, metavar="COLUMN",
              help="Break performance down by this column too (protected attributes always "
              "are); repeatable.")
@click.option("--sink", "sinks", multiple=True, metavar="NAME",
              help="Send new alerts to this alert sink (see `nexml alert-sink`); repeatable.")
@click.option("--retrain-on-alert", is_flag=True,
              help="Submit a retraining job when a drift or performance alert is raised.")
@click.option("--source", help="Labelled-data source (path or URL) the retraining job reads.")
@click.option("--replace", is_flag=True, help="Change the monitor of an enrolled deployment.")
@click.pass_context
def monitor_enrol(ctx: click.Context, deployment: str, window: str, checks: str,
                  thresholds: tuple[str, ...], segments: tuple[str, ...], sinks: tuple[str, ...],
                  retrain_on_alert: bool, source: str | None, replace: bool) -> None:
    """Enrol DEPLOYMENT for monitoring (managers)."""
    from .cli import _pairs

    made = _ws(ctx).enrol_monitor(
        deployment, window=window, checks=checks,
        thresholds=_pairs(thresholds, "--threshold"), segments=segments, sinks=sinks,
        retrain_on_alert=retrain_on_alert, source=source, replace=replace,
    )
    click.echo(f"monitoring {made.deployment} ({made.model_ref}): {made.window} windows, checks "
               f"{', '.join(made.checks)}")
    shown = ", ".join(f"{k}={v:g}" for k, v in sorted(made.effective_thresholds.items()))
    click.echo(f"thresholds: {shown}")
    if made.sinks:
        click.echo(f"alerts go to: {', '.join(made.sinks)}")


@monitor.command("list")
@click.pass_context
def monitor_list(ctx: click.Context) -> None:
    """Enrolled deployments, their windows and open alerts."""
    from .cli import _table

    _table(
        [
            {"deployment": m.deployment, "model": m.model_ref, "window": m.window,
             "checks": ",".join(m.checks), "sinks": ",".join(m.sinks),
             "judged_until": _when(m.last_window_end), "open_alerts": m.open_alerts,
             "enabled": "yes" if m.enabled else "no"}
            for m in _ws(ctx).monitors()
        ],
        ["deployment", "model", "window", "checks", "sinks", "judged_until", "open_alerts",
         "enabled"],
    )


@monitor.command("run")
@click.argument("deployment")
@click.option("--window", type=_WINDOWS, help="Window kind (default: the monitor's).")
@click.option("--until", help="Judge windows complete by this date or ISO time (default: now).")
@click.option("--since", help="Re-judge from the window holding this date (default: after the "
              "last judged window).")
@click.pass_context
def monitor_run(ctx: click.Context, deployment: str, window: str | None, until: str | None,
                since: str | None) -> None:
    """Run DEPLOYMENT's monitor over every complete window not yet judged."""
    runs = _ws(ctx).run_monitor(deployment, window=window, until=until, since=since)
    if not runs:
        click.echo("no complete window to judge")
    for run in runs:
        alerts = f", alerts {', '.join(map(str, run.alerts))}" if run.alerts else ""
        click.echo(f"{run.window} {run.window_start:%Y-%m-%d}: {run.rows} decisions, "
                   f"{run.outcomes} outcomes, {run.breaches} breaches{alerts}")


@monitor.command("results")
@click.argument("deployment")
@click.option("--metric", help="Only this metric (psi, score_psi, auc, latency_p95_ms, ...).")
@click.option("--kind", type=click.Choice(["data_drift", "prediction_drift", "performance",
                                           "health"]), help="Only this check.")
@click.option("--window", type=_WINDOWS, help="Only this window kind.")
@click.option("--since", help="Windows starting from this date.")
@click.option("--until", help="Windows ending by this date.")
@click.option("--breached", is_flag=True, help="Only measurements beyond their threshold.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def monitor_results(ctx: click.Context, deployment: str, metric: str | None, kind: str | None,
                    window: str | None, since: str | None, until: str | None, breached: bool,
                    as_json: bool) -> None:
    """The time series of DEPLOYMENT's monitor."""
    from .cli import _table

    found = _ws(ctx).monitor_results(deployment, metric=metric, kind=kind, window=window,
                                     since=since, until=until)
    found = [r for r in found if r.breached or not breached]
    if as_json:
        for r in found:
            click.echo(json.dumps({
                "window": r.window, "start": r.window_start.isoformat(),
                "end": r.window_end.isoformat(), "kind": r.kind, "metric": r.metric,
                "scope": r.scope, "feature": r.feature, "value": r.value,
                "threshold": r.threshold, "breached": r.breached, "rows": r.rows,
            }))
        return
    _table(
        [{"start": f"{r.window_start:%Y-%m-%d}", "window": r.window, "kind": r.kind,
          "metric": r.metric, "feature": r.feature, "value": _number(r.value),
          "threshold": _number(r.threshold), "breached": "BREACH" if r.breached else "",
          "rows": r.rows} for r in found],
        ["start", "window", "kind", "metric", "feature", "value", "threshold", "breached",
         "rows"],
    )


@monitor.command("disable")
@click.argument("deployment")
@click.pass_context
def monitor_disable(ctx: click.Context, deployment: str) -> None:
    """Stop monitoring DEPLOYMENT (its time series and alerts stay)."""
    _ws(ctx).disable_monitor(deployment)
    click.echo(f"monitor of {deployment} disabled")


# --- nexml alerts ----------------------------------------------------------------------------


_STATUS = click.option(
    "--status", type=click.Choice(["open", "acknowledged", "resolved", "all"]), default="open",
    show_default=True, help="Which alerts.")
_DEPLOYMENT = click.option("--deployment", help="Only this deployment's alerts.")


def _list_alerts(ctx: click.Context, status: str, deployment: str | None) -> None:
    from .cli import _table

    _table(
        [{"id": a.id, "status": a.status, "severity": a.severity, "deployment": a.deployment,
          "metric": a.metric, "feature": a.feature, "window": a.window, "count": a.count,
          "first_window": _when(a.first_window_start)[:10],
          "last_window": _when(a.last_window_start)[:10], "value": _number(a.value),
          "threshold": _number(a.threshold), "acknowledged_by": a.acknowledged_by}
         for a in _ws(ctx).alerts(status=status, deployment=deployment)],
        ["id", "status", "severity", "deployment", "metric", "feature", "window", "count",
         "first_window", "last_window", "value", "threshold", "acknowledged_by"],
    )


@click.group(invoke_without_command=True)
@_STATUS
@_DEPLOYMENT
@click.pass_context
def alerts(ctx: click.Context, status: str, deployment: str | None) -> None:
    """Monitoring alerts: one per deployment, metric, feature and window kind while the breach
    lasts (COUNT windows so far). `nexml alerts` lists the open ones."""
    if ctx.invoked_subcommand is None:
        _list_alerts(ctx, status, deployment)


@alerts.command("list")
@_STATUS
@_DEPLOYMENT
@click.pass_context
def alerts_list(ctx: click.Context, status: str, deployment: str | None) -> None:
    """List alerts, newest first."""
    _list_alerts(ctx, status, deployment)


@alerts.command("ack")
@click.argument("alert_id", type=int)
@click.option("--note", required=True, help="What was looked at or done (recorded).")
@click.pass_context
def alerts_ack(ctx: click.Context, alert_id: int, note: str) -> None:
    """Acknowledge alert ALERT_ID (managers, compliance officers, superadmins)."""
    done = _ws(ctx).acknowledge_alert(alert_id, note=note)
    click.echo(f"alert {done.id} acknowledged by {done.acknowledged_by}: {done.message}")


# --- nexml alert-sink ------------------------------------------------------------------------


@click.group("alert-sink", no_args_is_help=True)
def alert_sink() -> None:
    """Where alerts are sent: webhook (an HTTP POST of the alert as JSON), email (SMTP) or the
    log. Secrets are never stored: give the NAME of the environment variable holding one.

    \b
    nexml alert-sink add ops-hook --kind webhook --config url=https://hooks.example/nexml \\
        --config secret_env=NEXML_HOOK_SECRET
    nexml alert-sink add risk-mail --kind email --config host=smtp.example --config port=587 \\
        --config from=nexml@example --config 'to=["risk@example"]' --config starttls=true \\
        --config user=nexml --config password_env=NEXML_SMTP_PASSWORD
    """


@alert_sink.command("add")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(["webhook", "email", "log"]))
@click.option("--config", "config", multiple=True, metavar="NAME=VALUE",
              help="A setting of the sink (VALUE is JSON when it parses as JSON); repeatable.")
@click.pass_context
def alert_sink_add(ctx: click.Context, name: str, kind: str, config: tuple[str, ...]) -> None:
    """Add alert sink NAME (managers, superadmins)."""
    from .cli import _pairs

    made = _ws(ctx).add_alert_sink(name, kind, _pairs(config, "--config"))
    click.echo(f"alert sink {made.name} ({made.kind}) added")


@alert_sink.command("list")
@click.pass_context
def alert_sink_list(ctx: click.Context) -> None:
    """Alert sinks and their settings (secrets appear only as environment variable names)."""
    from .cli import _table

    _table(
        [{"name": s.name, "kind": s.kind, "config": json.dumps(s.config, sort_keys=True),
          "created_by": s.created_by} for s in _ws(ctx).alert_sinks()],
        ["name", "kind", "config", "created_by"],
    )


@alert_sink.command("remove")
@click.argument("name")
@click.pass_context
def alert_sink_remove(ctx: click.Context, name: str) -> None:
    """Remove alert sink NAME (no enabled monitor may still send to it)."""
    _ws(ctx).remove_alert_sink(name)
    click.echo(f"alert sink {name} removed")
