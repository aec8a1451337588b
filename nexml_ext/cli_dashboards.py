"""``nexml dashboards``: the Voila dashboards on 127.0.0.1, behind a sign-in with nexml tokens."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import NotFound


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; anything but loopback exposes the sign-in page.")
@click.option("--port", default=8866, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-browser", is_flag=True, help="Do not open a web browser.")
@click.option("--session-hours", default=8.0, show_default=True,
              type=click.FloatRange(0.01, 24 * 30),
              help="How long a sign-in lasts (the session token's expiry).")
@click.option("--notebooks", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Serve the dashboard notebooks in this folder instead of the installed ones.")
@click.pass_context
def dashboards(  # type: ignore[no-untyped-def]
    ctx: click.Context, host: str, port: int, no_browser: bool, session_hours: float,
    notebooks: Path | None,
) -> None:
    """Serve the dashboards (approvals, platform summary, audit trail, compliance, monitoring).

    People sign in with their own nexml token; each gets a short-lived session token (an
    audited event) in a signed, httponly cookie, and each dashboard runs in a kernel of its own
    acting as that person. The browser can only talk to widgets: no code runs from a page.
    Signing out revokes the session.
    """
    from .jupyter.dashboards.paths import catalog, widgets_dir
    from .jupyter.dashboards.serving import serve
    from .store.database import Database

    settings = ctx.find_root().obj
    db = Database(settings.database_url)
    try:
        db.check_schema()  # NotInitialised / SchemaOutOfDate, before anything listens
    finally:
        db.dispose()
    folder = (notebooks or widgets_dir()).resolve()
    if not catalog(folder):
        raise NotFound(f"no dashboard notebooks (<name>.ipynb) in {folder}")
    click.echo(
        f"serving the dashboards in {folder} on http://{host}:{port}/ (sign in with your "
        "nexml token; Ctrl-C stops)",
        err=True,
    )
    serve(settings, host=host, port=port, open_browser=not no_browser, folder=folder,
          session_hours=session_hours)
