"""The ``nexml`` command: a thin parser over the Workspace.

Every command prints its result, or one line ``error: ...`` and a non-zero exit status when the
Workspace refuses (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from functools import update_wrapper
from typing import Any

import click

from .config import Settings
from .deploy.export import TARGETS
from .deploy.sizes import SIZES
from .errors import InvalidInput, NexmlError

INTERNAL_ERROR = 70


class _Group(click.Group):
    """Turns NexmlError into one line on stderr and the error's exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NexmlError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="NEXML_HOME",
    type=click.Path(file_okay=False),
    help="Store folder for the embedded default (env NEXML_HOME, default ~/.nexml).",
)
@click.option(
    "--token",
    envvar="NEXML_TOKEN",
    help="Act as this token's user (env NEXML_TOKEN; "
    "default: the credentials file written by `nexml init`).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="nexml-ext")
@click.pass_context
def cli(ctx: click.Context, home: str | None, token: str | None, debug: bool) -> None:
    """nexml-ext: govern regulated ML models from notebook to audited endpoint.

    Start with `nexml init` (creates the store and your superadmin token), or
    `nexml demo` to watch the whole lifecycle on a throwaway store.
    """
    ctx.obj = Settings.from_env(home=home, token=token)


def _workspace(ctx: click.Context):  # type: ignore[no-untyped-def]
    from .workspace import Workspace

    ws = Workspace.open(ctx.find_root().obj)
    ctx.call_on_close(ws.close)
    return ws


def with_workspace(fn):  # type: ignore[no-untyped-def]
    """Pass the authenticated Workspace as the first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        return fn(_workspace(ctx), *args, **kwargs)

    return update_wrapper(wrapper, fn)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    text = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in text)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _pairs(pairs: tuple[str, ...], option: str = "--param") -> dict[str, Any]:
    """NAME=VALUE options as a dict; VALUE parsed as JSON when it is valid JSON."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"{option} {pair!r}: expected NAME=VALUE")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


# --- store ---------------------------------------------------------------------------------


@cli.command()
@click.option("--admin", help="Name of the first superadmin (default: $USER).")
@click.pass_obj
def init(settings: Settings, admin: str | None) -> None:
    """Create the store and the first superadmin; print its token once."""
    from .workspace import Workspace

    ws, token = Workspace.init(settings, admin)
    ws.close()
    click.echo(f"created store at {ws._db.safe_url}; artifacts in {settings.artifact_root}")
    click.echo(f"superadmin: {ws.principal.name}")
    click.echo(f"token (shown once; also saved to {settings.credentials_path}, mode 0600):")
    click.echo(token)


@cli.group(cls=_Group)
def db() -> None:
    """Database schema: migrations."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Run migrations up to the version this nexml-ext needs."""
    from .store.database import Database

    database = Database(settings.database_url)
    try:
        before, after = database.upgrade()
    finally:
        database.dispose()
    if before == after:
        click.echo(f"schema already at {after} ({database.safe_url})")
    else:
        click.echo(f"schema upgraded {before or 'empty'} -> {after} ({database.safe_url})")


@db.command("current")
@click.pass_obj
def db_current(settings: Settings) -> None:
    """Show the schema revision and the one this code needs."""
    from .store.database import Database

    database = Database(settings.database_url)
    try:
        click.echo(
            f"current {database.current_revision() or 'empty'}, "
            f"needed {database.head_revision()} ({database.safe_url})"
        )
    finally:
        database.dispose()


# --- people --------------------------------------------------------------------------------


@cli.group(cls=_Group)
def user() -> None:
    """Users and their roles (superadmins)."""


@user.command("add")
@click.argument("name")
@click.option(
    "--role", required=True, help="data_scientist, manager, compliance_officer or superadmin."
)
@with_workspace
def user_add(ws, name: str, role: str) -> None:  # type: ignore[no-untyped-def]
    """Add a user and print their first token (shown once)."""
    created, token = ws.add_user(name, role)
    click.echo(f"added {created.role} {created.name}; token (shown once):")
    click.echo(token)


@user.command("list")
@with_workspace
def user_list(ws) -> None:  # type: ignore[no-untyped-def]
    """List users."""
    _table(
        [
            {
                "name": u.name,
                "role": u.role,
                "disabled": "yes" if u.disabled else "",
                "created": _when(u.created_at),
                "by": u.created_by,
            }
            for u in ws.users()
        ],
        ["name", "role", "disabled", "created", "by"],
    )


@user.command("disable")
@click.argument("name")
@with_workspace
def user_disable(ws, name: str) -> None:  # type: ignore[no-untyped-def]
    """Disable a user; their tokens stop working at once."""
    ws.disable_user(name)
    click.echo(f"disabled {name}")


@cli.group(cls=_Group)
def token() -> None:
    """API tokens: create, list, revoke."""


@token.command("create")
@click.option("--user", "for_user", help="Whose token (superadmins; default yourself).")
@click.option("--label", default="", help="What the token is for.")
@click.option("--expires-days", type=float, help="Expire after this many days.")
@with_workspace
def token_create(ws, for_user: str | None, label: str, expires_days: float | None) -> None:  # type: ignore[no-untyped-def]
    """Create a token; the secret is printed once and only its hash is stored."""
    info, secret = ws.create_token(for_user, label=label, expires_in_days=expires_days)
    expiry = f", expires {_when(info.expires_at)} UTC" if info.expires_at else ""
    click.echo(f"token {info.id} for {info.user}{expiry} (shown once):")
    click.echo(secret)


@token.command("list")
@click.option("--user", "for_user", help="Whose tokens (superadmins); '*' for everyone's.")
@with_workspace
def token_list(ws, for_user: str | None) -> None:  # type: ignore[no-untyped-def]
    """List tokens (never their secrets)."""
    _table(
        [
            {
                "id": i.id,
                "user": i.user,
                "label": i.label,
                "created": _when(i.created_at),
                "expires": _when(i.expires_at),
                "revoked": _when(i.revoked_at),
            }
            for i in ws.tokens(for_user)
        ],
        ["id", "user", "label", "created", "expires", "revoked"],
    )


@token.command("revoke")
@click.argument("token_id")
@with_workspace
def token_revoke(ws, token_id: str) -> None:  # type: ignore[no-untyped-def]
    """Revoke a token by its id (the part after nxm_)."""
    ws.revoke_token(token_id)
    click.echo(f"revoked {token_id}")


@cli.command()
@with_workspace
def whoami(ws) -> None:  # type: ignore[no-untyped-def]
    """Show who you are acting as."""
    click.echo(str(ws.whoami()))


# --- models --------------------------------------------------------------------------------


@cli.command()
@with_workspace
def models(ws) -> None:  # type: ignore[no-untyped-def]
    """The model inventory."""
    _table(
        [
            {
                "model": m.name,
                "template": m.template,
                "versions": m.versions,
                "latest": f"{m.name}:{m.latest}",
                "status": m.latest_status,
                "deployed": ",".join(m.deployed),
            }
            for m in ws.models()
        ],
        ["model", "template", "versions", "latest", "status", "deployed"],
    )


@cli.command()
@click.argument("name")
@with_workspace
def versions(ws, name: str) -> None:  # type: ignore[no-untyped-def]
    """Every version of one model."""
    _table(
        [
            {
                "ref": v.ref,
                "status": v.status,
                "author": v.author,
                "artifact": v.artifact_sha256[:12],
                "registered": _when(v.created_at),
            }
            for v in ws.versions(name)
        ],
        ["ref", "status", "author", "artifact", "registered"],
    )


@cli.command()
@click.argument("ref")
@with_workspace
def show(ws, ref: str) -> None:  # type: ignore[no-untyped-def]
    """One version: status, artifact, compliance score, validations, decisions."""
    v = ws.version(ref)
    state = ws.compliance(ref).state()
    click.echo(f"{v.ref}  {v.status}  by {v.author}  ({v.flavour or '?'} {v.problem_type or ''})")
    click.echo(f"artifact  {v.artifact_sha256}  {v.artifact_uri}")
    click.echo(
        f"risk tier {state.tier} ({state.tier_source}); compliance score {state.score.total}/100"
    )
    if state.score.missing_mandatory:
        click.echo(f"missing mandatory sections: {', '.join(state.score.missing_mandatory)}")
    for val in ws.validations(ref):
        shown = ", ".join(f"{k}={val.metrics[k]:.3f}" for k in list(val.metrics)[:4])
        click.echo(f"validation #{val.id} {val.status} on {val.dataset}: {shown}")
    for a in ws.approvals(ref):
        click.echo(f"{a.decision} by {a.approver} at {_when(a.created_at)}: {a.findings}")


@cli.command()
@click.argument("ref")
@click.option("--dataset", required=True, help="Dataset version to validate on (NAME:VERSION).")
@with_workspace
def validate(ws, ref: str, dataset: str) -> None:  # type: ignore[no-untyped-def]
    """Have the platform validate a version on a dataset version."""
    val = ws.validate(ref, dataset=dataset)
    click.echo(
        f"validation #{val.id} of {ref} on {dataset}: {val.status} "
        + " ".join(f"{k}={v:.4f}" for k, v in val.metrics.items())
    )


def _decision(move: str):  # type: ignore[no-untyped-def]
    @click.argument("ref")
    @click.option("--findings", required=True, help="What you reviewed and why you decided so.")
    @with_workspace
    def command(ws, ref: str, findings: str) -> None:  # type: ignore[no-untyped-def]
        decided = getattr(ws, move)(ref, findings=findings)
        click.echo(f"{ref} {decided.decision} by {decided.approver}")

    command.__doc__ = f"{move.capitalize()} a staging version, with written findings."
    return cli.command(move)(command)


_decision("approve")
_decision("reject")


class _DeployGroup(_Group):
    """`nexml deploy REF ...` runs the default command; `nexml deploy export ...` the other."""

    default_command = "version"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "REF --name NAME [--size SIZE]")
        formatter.write_usage(
            ctx.command_path,
            "export NAME --target docker|kubernetes --out DIR [--force]",
            prefix="       ",
        )


class _DefaultDeploy(click.Command):
    """The default command, named and shown as `nexml deploy` itself in usage and errors."""

    def make_context(  # type: ignore[override]
        self, info_name: str | None, args: list[str], parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        outer = parent.parent if parent is not None else None
        name = parent.info_name if parent is not None else info_name
        return super().make_context(name, args, parent=outer, **extra)


@cli.group(cls=_DeployGroup, no_args_is_help=True)
def deploy() -> None:
    """Deploy an approved version, or export a deployment as a bundle to run elsewhere.

    \b
    nexml deploy REF --name NAME [--size small|medium|large]
        Deploy an approved version under NAME (re-verifies its artifact hash). The size sets
        how `nexml server` runs it (processes and concurrency) and what an export requests.
    nexml deploy export NAME --target docker|kubernetes --out DIR [--force]
        Write a Dockerfile (and Deployment, Service and HorizontalPodAutoscaler manifests)
        with the verified artifact into DIR; no secret goes into it.
    """


@deploy.command(
    "version", cls=_DefaultDeploy, hidden=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("ref")
@click.option("--name", required=True, help="Deployment name (created if new).")
@click.option(
    "--size", default="small", show_default=True, type=click.Choice(SIZES),
    help="small: 1 process; medium: 2; large: 4 (see nexml_ext/deploy/sizes.py).",
)
@with_workspace
def deploy_version(ws, ref: str, name: str, size: str) -> None:  # type: ignore[no-untyped-def]
    """Deploy an approved version (re-verifies its artifact hash)."""
    d = ws.deploy(ref, name=name, size=size)
    click.echo(f"deployment {d.name} now serves {d.model_ref} ({d.size})")


@deploy.command("export")
@click.argument("name")
@click.option("--target", required=True, type=click.Choice(TARGETS),
              help="docker: Dockerfile; kubernetes: also Deployment, Service and HPA manifests.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Directory to write (created; must be empty unless --force).")
@click.option("--force", is_flag=True, help="Replace a non-empty --out directory.")
@with_workspace
def deploy_export(ws, name: str, target: str, out: str, force: bool) -> None:  # type: ignore[no-untyped-def]
    """Write a bundle to run deployment NAME elsewhere, with its hash-verified artifact."""
    bundle = ws.export_deployment(name, target=target, out=out, force=force)
    click.echo(
        f"exported deployment {bundle.deployment} ({bundle.model_ref}, artifact "
        f"{bundle.artifact_sha256[:12]}) for {bundle.target} to {bundle.path}"
    )
    for rel in bundle.files:
        if not rel.startswith("artifact/"):
            click.echo(f"  {rel}")


@cli.command()
@click.argument("name")
@click.option("--to", "to", required=True, help="The earlier approved version, NAME:VERSION.")
@with_workspace
def rollback(ws, name: str, to: str) -> None:  # type: ignore[no-untyped-def]
    """Point a deployment back at an earlier approved version."""
    d = ws.rollback(name, to=to)
    click.echo(f"deployment {d.name} rolled back to {d.model_ref}")


@cli.command()
@click.argument("ref")
@click.option("--reason", default="", help="Why it is retired.")
@with_workspace
def retire(ws, ref: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    """Retire a version for good (stops its deployment if it has one)."""
    ws.retire(ref, reason=reason)
    click.echo(f"{ref} retired")


@cli.command()
@with_workspace
def deployments(ws) -> None:  # type: ignore[no-untyped-def]
    """Deployments and what they serve."""
    _table(
        [
            {
                "name": d.name,
                "serves": d.model_ref,
                "size": d.size,
                "status": d.status,
                "updated": _when(d.updated_at),
            }
            for d in ws.deployments()
        ],
        ["name", "serves", "size", "status", "updated"],
    )


# --- compliance ----------------------------------------------------------------------------


@cli.group(cls=_Group)
def compliance() -> None:
    """Compliance records: status, fields, risk tier."""


@compliance.command("status")
@click.argument("ref")
@with_workspace
def compliance_status(ws, ref: str) -> None:  # type: ignore[no-untyped-def]
    """Per-section completeness and the score breakdown."""
    state = ws.compliance(ref).state()
    click.echo(
        f"{ref}: risk tier {state.tier} ({state.tier_source}); score {state.score.total}/100"
    )
    triggers = ", ".join(f"{k}={v}" for k, v in state.re_review.items() if v not in (False, None))
    click.echo(f"re-review on: {triggers or 'nothing'}")
    _table(
        [
            {
                "section": line.section_id,
                "mandatory": "yes" if line.mandatory else "",
                "complete": f"{line.completeness:.0%}",
                "points": f"{line.points:.1f}",
                "missing": ", ".join(state.statuses[line.section_id].missing),
            }
            for line in state.score.lines
        ],
        ["section", "mandatory", "complete", "points", "missing"],
    )


@compliance.command("set")
@click.argument("ref")
@click.argument("section")
@click.option(
    "--field",
    "-f",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A field to set (repeatable). VALUE is parsed as JSON when it is valid JSON.",
)
@with_workspace
def compliance_set(ws, ref: str, section: str, pairs: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """Write fields of one section of a version's compliance record."""
    status = ws.compliance(ref).set(section, _pairs(pairs, "--field"))
    click.echo(
        f"{ref} {section}: {status.filled}/{status.required} required fields"
        + (f"; missing {', '.join(status.missing)}" if status.missing else "; complete")
    )


@compliance.command("tier")
@click.argument("ref")
@click.option(
    "--set", "tier", type=click.IntRange(1, 3), help="Set the tier (compliance officers)."
)
@click.option("--reason", default="", help="Why (required with --set).")
@with_workspace
def compliance_tier(ws, ref: str, tier: int | None, reason: str) -> None:  # type: ignore[no-untyped-def]
    """Show a version's risk tier, or set it explicitly."""
    record = ws.compliance(ref)
    value, source = record.set_tier(tier, reason=reason) if tier else record.tier()
    click.echo(f"{ref}: tier {value} ({source})")


# --- audit ---------------------------------------------------------------------------------


@cli.group(cls=_Group)
def audit() -> None:
    """The hash-chained audit trail."""


@audit.command("verify")
@with_workspace
def audit_verify(ws) -> None:  # type: ignore[no-untyped-def]
    """Recompute every chain; exit non-zero naming the first broken record."""
    result = ws.audit.verify()
    click.echo(str(result))
    if result.note and result.ok:  # a failure's stderr is its one error line
        click.echo(f"note: {result.note}", err=True)
    if not result.ok:
        bad = result.first_failure
        click.echo(
            f"error: audit chain {bad.chain} broken at record {bad.first_bad_seq}: {bad.problem}",
            err=True,
        )
        sys.exit(9)


@audit.command("log")
@click.option("--since", help="From this date (YYYY-MM-DD, UTC) or ISO date-time.")
@click.option("--until", help="Up to this date (inclusive) or ISO date-time.")
@click.option("--actor", help="Only events by this user.")
@click.option("--object", "obj", help="Only events about this reference (and what is below it).")
@click.option("--action", help="Only this action, e.g. model.approve.")
@click.option("--limit", type=int, help="At most this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_workspace
def audit_log(ws, since, until, actor, obj, action, limit, as_json) -> None:  # type: ignore[no-untyped-def]
    """Show audit events, oldest first."""
    events = ws.audit.log(
        since=since, until=until, actor=actor, object=obj, action=action, limit=limit
    )
    if as_json:
        for e in events:
            click.echo(json.dumps(asdict(e), default=str, sort_keys=True))
        return
    _table(
        [
            {
                "seq": e.seq,
                "at": _when(e.at),
                "actor": e.actor,
                "action": e.action,
                "object": e.object_ref,
            }
            for e in events
        ],
        ["seq", "at", "actor", "action", "object"],
    )


# --- routes --------------------------------------------------------------------------------


@cli.group(cls=_Group)
def route() -> None:
    """Scoring routes: ordered rules over request fields, a default, canary and shadow."""


def _route_lines(r) -> list[str]:  # type: ignore[no-untyped-def]
    import yaml

    head = f"route {r.name} (revision {r.revision}, created by {r.created_by})"
    return [head, yaml.safe_dump(r.spec, sort_keys=False).rstrip()]


@route.command("set")
@click.argument("name")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@with_workspace
def route_set(ws, name: str, file) -> None:  # type: ignore[no-untyped-def]
    """Create or replace a route from a YAML FILE ('-': stdin); prints a new route's key once."""
    r, key = ws.set_route(name, file.read())
    click.echo(f"route {r.name} saved (revision {r.revision})")
    if key:
        click.echo("route key (shown once; callers send it with every request):")
        click.echo(key)


@route.command("list")
@with_workspace
def route_list(ws) -> None:  # type: ignore[no-untyped-def]
    """Routes and where their traffic goes."""
    _table(
        [
            {
                "name": r.name,
                "rules": len(r.rules),
                "default": r.default,
                "canary": f"{r.canary['to']} ({r.canary['share']:.0%})" if r.canary else None,
                "shadow": r.shadow,
                "revision": r.revision,
            }
            for r in ws.routes()
        ],
        ["name", "rules", "default", "canary", "shadow", "revision"],
    )


@route.command("show")
@click.argument("name")
@with_workspace
def route_show(ws, name: str) -> None:  # type: ignore[no-untyped-def]
    """A route's full spec, as YAML."""
    click.echo("\n".join(_route_lines(ws.route(name))))


@route.command("rotate-key")
@click.argument("name")
@with_workspace
def route_rotate_key(ws, name: str) -> None:  # type: ignore[no-untyped-def]
    """Replace a route's key (the old one stops working); prints the new key once."""
    key = ws.rotate_route_key(name)
    click.echo(f"new key for route {name} (shown once; the old key no longer works):")
    click.echo(key)


@audit.command("find")
@click.option("--subject", help="Every decision about this subject (e.g. an applicant id).")
@click.option("--request", help="The decision with this request id.")
@click.option("--date", "day", help="Only this day (YYYY-MM-DD, UTC).")
@click.option("--since", help="From this date (YYYY-MM-DD, UTC) or ISO date-time.")
@click.option("--until", help="Up to this date (inclusive) or ISO date-time.")
@click.option("--deployment", help="Only decisions served by this deployment.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_workspace
def audit_find(ws, subject, request, day, since, until, deployment, limit, as_json) -> None:  # type: ignore[no-untyped-def]
    """Find recorded decisions: inputs, model version, output, reasons and chain proof.

    Your look-up is itself recorded in the audit trail.
    """
    found = ws.find_decisions(
        subject_id=subject, request_id=request, date=day, since=since, until=until,
        deployment=deployment, limit=limit,
    )
    if as_json:
        for d in found:
            click.echo(json.dumps({**asdict(d), "chain": d.chain, "proof": d.proof},
                                  default=str, sort_keys=True))
        return
    if not found:
        click.echo("no recorded decisions match")
    for d in found:
        click.echo(f"{_when(d.at)}  request {d.request_id}  subject {d.subject_id or '-'}")
        click.echo(f"  deployment {d.deployment}, model {d.model_ref}, "
                   f"artifact {d.artifact_sha256[:16]}…")
        click.echo(f"  inputs   {json.dumps(d.inputs, sort_keys=True)}")
        click.echo(f"  output   {json.dumps(d.output, sort_keys=True)}")
        for r in d.reasons:
            click.echo(f"  reason   {r['reason']} ({r['feature']}, {r['contribution']:+.3f})")
        if d.outcome is not None:
            click.echo(f"  outcome  {json.dumps(d.outcome)} at {_when(d.outcome_at)}")
        click.echo(f"  proof    {d.proof}")
    if not all(d.link_verified for d in found):
        sys.exit(9)


# --- jobs ----------------------------------------------------------------------------------


def _bar(progress: float, width: int = 10) -> str:
    filled = round(min(max(float(progress or 0.0), 0.0), 1.0) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {float(progress or 0.0):4.0%}"


def _age(value: Any) -> str:
    from .store.tables import utcnow

    seconds = max((utcnow() - value).total_seconds(), 0.0) if value else 0.0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


@cli.group(cls=_Group, invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Every job, not only the 20 newest.")
@click.option("--kind", help="Only jobs of this kind (selftest, validation, ...).")
@click.option("--status", help="Only jobs in this state (queued, running, succeeded, ...).")
@click.pass_context
def jobs(ctx: click.Context, show_all: bool, kind: str | None, status: str | None) -> None:
    """Jobs the platform runs in `nexml worker` processes.

    Without a subcommand: a table of jobs, newest first (data scientists see their own),
    with progress. `nexml jobs submit selftest --param seconds=5` queues a job; a worker
    runs it as the platform; `nexml jobs show ID` prints its parameters, result, error and
    log; `nexml jobs cancel ID` stops it (a running job at its next progress checkpoint).
    """
    if ctx.invoked_subcommand is not None:
        return
    ws = _workspace(ctx)
    _table(
        [
            {
                "id": j.id,
                "kind": j.kind,
                "status": j.status + (" (cancelling)" if j.status == "running"
                                      and j.cancel_requested_by else ""),
                "progress": _bar(j.progress),
                "by": j.created_by,
                "age": _age(j.created_at),
                "message": j.error or j.message,
            }
            for j in ws.jobs(kind=kind, status=status, limit=None if show_all else 20)
        ],
        ["id", "kind", "status", "progress", "by", "age", "message"],
    )


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--log-lines", type=click.IntRange(0), default=100, show_default=True,
              help="How many of the last log lines to print (0: none).")
@with_workspace
def jobs_show(ws, job_id: int, log_lines: int) -> None:  # type: ignore[no-untyped-def]
    """One job: state, parameters, result, error and the tail of its log."""
    j = ws.job(job_id, log_tail=log_lines)
    click.echo(f"job {j.id} {j.kind}: {j.status}")
    click.echo(f"  progress  {_bar(j.progress)} {j.message}")
    click.echo(f"  by        {j.created_by}, {_when(j.created_at)} ({_age(j.created_at)} ago)")
    click.echo(f"  attempts  {j.attempts}/{j.max_attempts}")
    if j.worker:
        beat = f", heartbeat {_age(j.heartbeat_at)} ago" if j.status == "running" else ""
        click.echo(f"  worker    {j.worker}{beat}")
    if j.started_at:
        click.echo(f"  started   {_when(j.started_at)}")
    if j.finished_at:
        click.echo(f"  finished  {_when(j.finished_at)}")
    if j.cancel_requested_by:
        click.echo(f"  cancel    requested by {j.cancel_requested_by}")
    click.echo(f"  params    {json.dumps(j.params, sort_keys=True)}")
    if j.result:
        click.echo(f"  result    {json.dumps(j.result, sort_keys=True, default=str)}")
    if j.error:
        click.echo(f"  error     {j.error}")
    if j.log:
        click.echo("log:")
        for line in j.log:
            click.echo(f"  {line}")


@jobs.command("cancel")
@click.argument("job_id", type=int)
@with_workspace
def jobs_cancel(ws, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """Cancel a job: a queued one at once, a running one at its next progress checkpoint."""
    j = ws.cancel_job(job_id)
    if j.status == "cancelled":
        click.echo(f"job {j.id} {j.kind} cancelled")
    else:
        click.echo(f"job {j.id} {j.kind}: cancel requested; worker {j.worker} stops it at its "
                   "next progress checkpoint")


@jobs.command("submit")
@click.argument("kind")
@click.option("--param", "-p", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A parameter (repeatable). VALUE is parsed as JSON when it is valid JSON.")
@click.option("--max-attempts", type=int,
              help="How often a crashed worker's job may be started (default: the kind's).")
@with_workspace
def jobs_submit(ws, kind: str, pairs: tuple[str, ...], max_attempts: int | None) -> None:  # type: ignore[no-untyped-def]
    """Queue a job of KIND (selftest, validation, ...) for a worker.

    \b
    nexml jobs submit selftest -p seconds=30 -p steps=10
    nexml jobs submit validation -p ref=credit-risk:3 -p dataset=credit-holdout:1
    """
    j = ws.submit_job(kind, _pairs(pairs), max_attempts=max_attempts)
    click.echo(f"job {j.id} {j.kind} queued (max attempts {j.max_attempts})")


@jobs.command("reap")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Seconds without a heartbeat after which a worker is dead.")
@with_workspace
def jobs_reap(ws, stale_after: float) -> None:  # type: ignore[no-untyped-def]
    """Requeue (or fail, when no attempts remain) running jobs whose worker died.

    Every worker does this before each job; this is for when none is running.
    """
    reaped = ws.reap_jobs(stale_after=stale_after)
    for j in reaped:
        click.echo(f"job {j.id} {j.kind} {j.status}: {j.error or j.message}")
    if not reaped:
        click.echo("no running job has a dead worker")


@cli.command()
@click.option("--once", is_flag=True, help="Run at most one queued job, then exit.")
@click.option("--until-idle", is_flag=True, help="Exit when no job is queued.")
@click.option("--poll", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="Seconds between looks at an empty queue.")
@click.option("--heartbeat", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Seconds between heartbeats of the running job.")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True,
              help="Seconds without a heartbeat after which another worker is given up for dead.")
@with_workspace
def worker(ws, once: bool, until_idle: bool, poll: float, heartbeat: float,  # type: ignore[no-untyped-def]
           stale_after: float) -> None:
    """Run queued jobs as the platform, one at a time, printing one line per job.

    Before each job it requeues the jobs of dead workers (process gone on this host, or no
    heartbeat for --stale-after seconds), or fails them when no attempts remain. SIGTERM or
    Ctrl-C gives the running job back to the queue and exits. Needs a superadmin's token.
    """
    from .jobs import Worker, WorkerStopping, kinds

    def echo(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    runner = Worker(ws, poll_seconds=poll, heartbeat_seconds=heartbeat, stale_after=stale_after,
                    echo=echo)
    runner.install_signal_handlers()
    click.echo(f"worker {runner.id} on {ws._db.safe_url}, kinds {', '.join(sorted(kinds()))}"
               + ("" if once or until_idle else " (Ctrl-C stops)"), err=True)
    try:
        ran = runner.run(max_jobs=1, until_idle=True) if once else runner.run(
            until_idle=until_idle)
    except (WorkerStopping, KeyboardInterrupt):
        click.echo(f"worker {runner.id} stopped; its job went back to the queue", err=True)
        return
    if once and not ran:
        click.echo("no job queued", err=True)


# --- schedules -----------------------------------------------------------------------------



def _schedule_line(sc) -> str:  # type: ignore[no-untyped-def]
    state = f"next {_when(sc.next_run_at)} UTC" if sc.enabled else "disabled"
    return f"schedule {sc.name}: {sc.kind} at '{sc.cron}' ({sc.timezone}), {state}"


@cli.group(cls=_Group)
def schedule() -> None:
    """Schedules: jobs the platform submits on a cron schedule (`nexml scheduler` submits them).

    \b
    nexml schedule defaults      monthly audit report, daily drift report per deployment
    nexml schedule add audit-q --cron "0 6 1 1,4,7,10 *" --kind report-audit \\
        --param month={previous_month}
    """


@schedule.command("add")
@click.argument("name")
@click.option("--cron", "cron_expression", required=True, metavar="EXPR",
              help='Five-field cron expression, e.g. "0 6 1 * *" (06:00 on the first).')
@click.option("--kind", required=True, help="The job kind to submit (report-audit, ...).")
@click.option("--param", "-p", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A job parameter (repeatable; JSON when valid JSON). {previous_month}, "
                   "{previous_day} and {fire_date} stand for the fire time's period.")
@click.option("--timezone", default="UTC", show_default=True,
              help="IANA time zone the cron expression is read in.")
@click.option("--catch-up", type=click.Choice(["all", "latest"]), default="all",
              show_default=True, help="After downtime: submit every missed fire, or the latest.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@with_workspace
def schedule_add(ws, name, cron_expression, kind, pairs, timezone, catch_up, disabled) -> None:  # type: ignore[no-untyped-def]
    """Add schedule NAME submitting a KIND job at each fire time."""
    sc = ws.add_schedule(name, cron_expression, kind, _pairs(pairs), timezone=timezone,
                         catch_up=catch_up, enabled=not disabled)
    click.echo(_schedule_line(sc))


@schedule.command("defaults")
@with_workspace
def schedule_defaults(ws) -> None:  # type: ignore[no-untyped-def]
    """Add the default schedules that are missing: a monthly audit report (previous month,
    06:00 UTC on the first) and a daily drift report per active deployment (previous day,
    05:00 UTC). Run it again after deploying to cover a new deployment."""
    created, existing = ws.add_default_schedules()
    for sc in created:
        click.echo(_schedule_line(sc))
    for name in existing:
        click.echo(f"schedule {name} already exists")


@schedule.command("list")
@with_workspace
def schedule_list(ws) -> None:  # type: ignore[no-untyped-def]
    """Every schedule: cron, time zone, kind, parameters, next and last fire (UTC)."""
    _table(
        [
            {
                "name": sc.name, "cron": sc.cron, "timezone": sc.timezone, "kind": sc.kind,
                "params": " ".join(f"{k}={v}" for k, v in sorted(sc.params.items())),
                "enabled": "yes" if sc.enabled else "no", "next": _when(sc.next_run_at),
                "last": _when(sc.last_run_at),
                "job": sc.last_job_id, "by": sc.created_by,
            }
            for sc in ws.schedules()
        ],
        ["name", "cron", "timezone", "kind", "params", "enabled", "next", "last", "job", "by"],
    )


@schedule.command("runs")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@with_workspace
def schedule_runs(ws, name: str, limit: int) -> None:  # type: ignore[no-untyped-def]
    """The fire times schedule NAME submitted, newest first."""
    fires = ws.schedule_fires(name, limit=limit)
    for fire in fires:
        click.echo(fire.line())
    if not fires:
        click.echo(f"schedule {name} has not fired yet")


def _switch_schedule(move: str):  # type: ignore[no-untyped-def]
    @click.argument("name")
    @with_workspace
    def command(ws, name: str) -> None:  # type: ignore[no-untyped-def]
        if move == "remove":
            gone = ws.remove_schedule(name)
            click.echo(f"schedule {gone.name} removed")
            return
        sc = ws.enable_schedule(name) if move == "enable" else ws.disable_schedule(name)
        click.echo(_schedule_line(sc))

    command.__doc__ = {
        "enable": "Enable schedule NAME (fire times missed while disabled are not caught up).",
        "disable": "Disable schedule NAME: nothing is submitted until it is enabled.",
        "remove": "Delete schedule NAME (its jobs and audit events stay).",
    }[move]
    return command


for _move in ("enable", "disable", "remove"):
    schedule.command(_move)(_switch_schedule(_move))


@cli.command()
@click.option("--once", is_flag=True, help="Submit what is due now, then exit.")
@click.option("--poll", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds between looks for due schedules.")
@with_workspace
def scheduler(ws, once: bool, poll: float) -> None:  # type: ignore[no-untyped-def]
    """Submit due schedules' jobs, printing one line per fire time; `nexml worker` runs them.

    Each fire time is submitted once, in one transaction with the schedule's advance, so a
    restart neither skips nor repeats one and two schedulers never submit the same fire;
    fire times missed while no scheduler ran are caught up. Needs a superadmin's token.
    """
    import signal

    from .jobs.schedules import Scheduler

    def echo(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    runner = Scheduler(ws, poll_seconds=poll, echo=echo)
    if once:
        if not runner.run_once():
            click.echo("no schedule is due", err=True)
        return

    def stop(_signum: int, _frame: Any) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"scheduler on {ws._db.safe_url}, every {poll:g} s (Ctrl-C stops)", err=True)
    runner.run()
    click.echo("scheduler stopped", err=True)


# --- reports -------------------------------------------------------------------------------


@cli.group(cls=_Group)
def report() -> None:
    """Platform-made reports: a version's compliance, the audit of a period, drift."""


def _save_report(ws, made, out: str) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    data = ws.report_html(made.id)
    try:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise InvalidInput(
            f"report #{made.id} is recorded, but {out} cannot be written: {exc.strerror}; "
            f"fetch it again with `nexml report get {made.id} --out FILE`"
        ) from None
    click.echo(f"report #{made.id} ({made.title}) written to {out}")
    click.echo(f"  html sha256 {made.html_sha256}")
    for chain, head in sorted(made.chain_heads.items()):
        click.echo(f"  chain {chain} at record {head['seq']}, head {head['hash']}")


@report.command("compliance")
@click.argument("ref")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Write the HTML here.")
@with_workspace
def report_compliance(ws, ref: str, out: str) -> None:  # type: ignore[no-untyped-def]
    """The compliance report of model version REF (NAME:VERSION), made by the platform."""
    _save_report(ws, ws.make_report("compliance", subject=ref), out)


@report.command("validation")
@click.argument("ref")
@click.option("--dataset", required=True, metavar="NAME:VERSION",
              help="The labelled dataset version the platform validates REF on.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Write the HTML here.")
@with_workspace
def report_validation(ws, ref: str, dataset: str, out: str) -> None:  # type: ignore[no-untyped-def]
    """The validation report of REF on a dataset version, made by the platform; the validation
    it computed is recorded with it and is what an approval of REF rests on."""
    made = ws.make_report("validation", subject=ref, dataset=dataset)
    _save_report(ws, made, out)
    check = made.summary.get("validation", {})
    click.echo(f"validation #{made.summary.get('validation_id')} {check.get('status')}; "
               f"html sha256 {made.html_sha256}")


@report.command("audit")
@click.option("--since", help="First day of the period (YYYY-MM-DD, UTC).")
@click.option("--until", help="Last day of the period, included (YYYY-MM-DD, UTC).")
@click.option("--month", help="A calendar month instead of --since/--until (YYYY-MM).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Write the HTML here.")
@with_workspace
def report_audit(ws, since, until, month, out: str) -> None:  # type: ignore[no-untyped-def]
    """The audit report of a period: chain verification, decisions, reasons, activity."""
    _save_report(ws, ws.make_report("audit", since=since, until=until, month=month), out)


@report.command("drift")
@click.argument("deployment")
@click.option("--since", help="First day of the period (YYYY-MM-DD, UTC).")
@click.option("--until", help="Last day of the period, included (YYYY-MM-DD, UTC).")
@click.option("--month", help="A calendar month instead of --since/--until (YYYY-MM).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Write the HTML here.")
@with_workspace
def report_drift(ws, deployment: str, since, until, month, out: str) -> None:  # type: ignore[no-untyped-def]
    """The drift report of DEPLOYMENT over a period: its inputs against the training data."""
    made = ws.make_report("drift", deployment=deployment, since=since, until=until, month=month)
    _save_report(ws, made, out)


@report.command("get")
@click.argument("report_id", type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Write the HTML here.")
@click.option("--notebook", is_flag=True, help="Write the executed notebook (.ipynb) instead.")
@with_workspace
def report_get(ws, report_id: int, out: str, notebook: bool) -> None:  # type: ignore[no-untyped-def]
    """Write a recorded report's HTML (or executed notebook), checked against its SHA-256."""
    from pathlib import Path

    data = ws.report_notebook(report_id) if notebook else ws.report_html(report_id)
    try:
        Path(out).write_bytes(data)
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror}") from None
    click.echo(f"report #{report_id} written to {out}")


@report.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@with_workspace
def report_verify(ws, file: str) -> None:  # type: ignore[no-untyped-def]
    """Whether FILE is exactly a report the platform made (exit status 9 if it is not)."""
    from pathlib import Path

    found = ws.verify_report(Path(file))
    click.echo(f"authentic: report #{found.id} ({found.title}), made {_when(found.finished_at)} "
               f"UTC for {found.created_by}; sha256 {found.html_sha256}")


@cli.command("reports")
@click.option("--kind", help="Only this kind (compliance, audit, drift).")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many.")
@with_workspace
def reports_list(ws, kind: str | None, limit: int) -> None:  # type: ignore[no-untyped-def]
    """Recorded reports, newest first."""
    rows = [
        {
            "id": r.id,
            "kind": r.kind,
            "subject": r.subject or "",
            "period": r.period,
            "status": r.status,
            "made": _when(r.finished_at or r.created_at),
            "for": r.created_by,
            "html_sha256": (r.html_sha256 or "")[:16],
        }
        for r in ws.reports(kind=kind, limit=limit)
    ]
    _table(rows, ["id", "kind", "subject", "period", "status", "made", "for", "html_sha256"])


# --- docs and demo -------------------------------------------------------------------------


@cli.group(cls=_Group)
def docs() -> None:
    """Documentation generated from code."""


@docs.command("permissions")
def docs_permissions() -> None:
    """Print the permission matrix as Markdown (docs/permissions.md is this output)."""
    from .governance.roles import render_markdown

    click.echo(render_markdown(), nl=False)


@cli.command()
@click.option(
    "--home",
    "demo_home",
    type=click.Path(file_okay=False),
    help="Run in this folder instead of a fresh temporary one (kept afterwards).",
)
@click.option(
    "--no-challenger",
    is_flag=True,
    help="Skip the AutoGluon challenger, the switch and the rollback.",
)
@click.option(
    "--no-serve",
    is_flag=True,
    help="End after the lifecycle instead of serving JupyterLab and the dashboards.",
)
def demo(demo_home: str | None, no_challenger: bool, no_serve: bool) -> None:
    """Run the whole lifecycle on a fresh store, printing each step; then serve JupyterLab and
    the dashboards on 127.0.0.1 with each demo identity's token, until Ctrl-C."""
    from .demo import run

    run(demo_home, challenger=not no_challenger, serve=not no_serve)



# --- serving -------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; anything but loopback exposes the routes to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--processes", type=click.IntRange(1, 64),
              help="Server processes sharing the port (default: the largest size among active "
              "deployments: small 1, medium 2, large 4).")
@click.option("--concurrency", type=click.IntRange(1),
              help="Connections and requests in flight per process before callers get 503 "
              "(default: from the same size: 64, 128, 256).")
@click.option("--max-body-bytes", default=1024 * 1024, show_default=True,
              type=click.IntRange(1), help="Larger request bodies are refused with 413.")
@with_workspace
def server(  # type: ignore[no-untyped-def]
    ws, host: str, port: int, processes: int | None, concurrency: int | None, max_body_bytes: int
) -> None:
    """Serve every deployment: /v1/routes/{route}/predict, Open Inference Protocol v2,
    /healthz, /readyz, /metrics and /docs. Callers present their route key.

    Several processes share one listening socket that this command binds itself, with
    TCP_NODELAY kept on every connection (uvicorn's --workers loses it, adding ~44 ms to every
    keep-alive request on Linux: uvicorn issue 3149). Each process opens its own store
    connections; a process that dies is restarted. /metrics sums the counts of every process,
    whichever one answers the scrape. X-Nexml-Process names the process on every response.
    """
    from .api.server import plan_for, serve

    chosen = plan_for(ws, processes, concurrency)
    click.echo(
        f"serving {ws._db.safe_url} on http://{host}:{port} with {chosen.describe()} "
        "(Ctrl-C stops)",
        err=True,
    )
    serve(ws, chosen, host=host, port=port, max_body_bytes=max_body_bytes)


# Commands that live in modules of their own (imported last: they build on the helpers above).
from .cli_batch import batch  # noqa: E402
from .cli_dashboards import dashboards  # noqa: E402
from .cli_monitoring import alert_sink, alerts, monitor  # noqa: E402
from .cli_retrain import retrain, shadow  # noqa: E402

for _command in (dashboards, batch, monitor, alerts, alert_sink, retrain, shadow):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage mistakes, like refusals, are one line (`error: ...`), exit status 2."""
    try:
        status = cli.main(args=argv, prog_name="nexml", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "nexml"
        click.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
