"""Routes through the Workspace on each backend, then once through the CLI and the cell magic."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell
from sqlalchemy import func, select, text
from traitlets.config import Config

from nexml_ext.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from nexml_ext.governance.routing import RouteDecision
from nexml_ext.store import tables as t

SPEC = {
    "rules": [
        {
            "name": "large-renters",
            "when": {
                "all": [
                    {"field": "credit_amount", "op": ">", "value": 10000},
                    {"any": [{"field": "housing", "op": "=", "value": "rent"},
                             {"field": "housing", "op": "is null"}]},
                ]
            },
            "to": "careful",
        }
    ],
    "default": "main",
}

YAML = """\
rules:
  - name: long-loans
    when: {field: duration, op: ">=", value: 36}
    to: careful
default: main
canary: {to: careful, share: 0.5}
"""


@pytest.fixture
def deployed(world):
    """Two deployments, ``main`` and ``careful``, each serving an approved credit model."""
    stack = world.stack
    for name in ("main", "careful"):
        version = world.approved(stack.dana)
        stack.mark.deploy(version.ref, name=name)
    return world


def counts(ws) -> dict[str, int]:
    with ws._db.read() as s:
        return {
            "routes": s.scalar(select(func.count()).select_from(t.Route)),
            "events": s.scalar(select(func.count()).select_from(t.Event)),
        }


def stored_routes(ws) -> list[str]:
    """Every routes row, every column, as text: what someone reading the table would see."""
    with ws._db.read() as s:
        return [json.dumps(dict(r._mapping), default=str) for r in s.execute(text("select * from routes"))]


def test_routes_lifecycle(deployed):
    stack = deployed.stack
    mark = stack.mark

    route, key = mark.set_route("credit", SPEC)
    assert key and key.startswith("nxr_")
    assert (route.name, route.default, route.canary, route.shadow) == ("credit", "main", None, None)
    assert route.spec == {**SPEC, "canary": None, "shadow": None}
    assert route.created_by == "mark"

    # only the key's hash is stored
    rows = stored_routes(mark)
    assert len(rows) == 1 and key not in rows[0]
    assert hashlib.sha256(key.encode()).hexdigest() in rows[0]
    with mark._db.read() as s:
        row = s.execute(select(t.Route)).scalar_one()
        ids = {d.name: d.id for d in s.scalars(select(t.Deployment))}
        assert row.default_deployment_id == ids["main"] and row.shadow_deployment_id is None
        assert row.canary == {} and row.rules == SPEC["rules"]

    # data scientists and compliance officers do not configure routes
    before = counts(mark)
    for ws in (stack.dana, stack.cora):
        with pytest.raises(PermissionDenied, match="may not manage route credit"):
            ws.set_route("credit", {"default": "careful"})
        with pytest.raises(PermissionDenied):
            ws.rotate_route_key("credit")
    # an invalid spec is refused and nothing is written
    bad = {**SPEC, "rules": [{**SPEC["rules"][0], "when": {"field": "salary", "op": ">", "value": 1}}]}
    with pytest.raises(InvalidInput, match="rule 'large-renters': unknown field 'salary'"):
        mark.set_route("other", bad)
    with pytest.raises(InvalidInput, match="unknown category 'castle'"):
        mark.set_route("credit", {"default": "main", "rules": [
            {"name": "h", "when": {"field": "housing", "op": "=", "value": "castle"}, "to": "careful"}
        ]})
    with pytest.raises(InvalidInput, match="unknown or inactive deployment 'nowhere'"):
        mark.set_route("other", {"default": "nowhere"})
    with pytest.raises(InvalidInput, match="not valid YAML"):
        mark.set_route("other", "rules: [unclosed\n")
    with pytest.raises(InvalidInput, match="invalid route name"):
        mark.set_route("bad name!", SPEC)
    assert counts(mark) == before
    assert mark.route("credit").spec["rules"] == SPEC["rules"]

    # everyone who may view models may read routes and resolve them
    assert [r.name for r in stack.cora.routes()] == ["credit"]
    assert stack.dana.route("credit").default == "main"
    with pytest.raises(NotFound, match="route 'nope' not found"):
        mark.route("nope")

    big_renter = {"credit_amount": 12000, "housing": "rent", "duration": 12}
    assert mark.resolve_route("credit", big_renter) == RouteDecision(
        "careful", "large-renters", False, None
    )
    assert mark.resolve_route("credit", {**big_renter, "housing": None}).rule == "large-renters"
    assert mark.resolve_route("credit", {**big_renter, "housing": "own"}) == RouteDecision(
        "main", "default", False, None
    )

    # an update keeps the key; rotating replaces it
    updated, no_key = mark.set_route("credit", YAML)
    assert no_key is None and updated.revision == route.revision + 1
    assert updated.canary == {"to": "careful", "share": 0.5}
    mark.check_route_key("credit", key)
    subjects = [f"applicant-{i}" for i in range(400)]
    decisions = [mark.resolve_route("credit", {"duration": 12}, s) for s in subjects]
    assert 120 < sum(d.canary for d in decisions) < 280
    assert decisions == [mark.resolve_route("credit", {"duration": 12}, s) for s in subjects]
    assert mark.resolve_route("credit", {"duration": 48}, "x").rule == "long-loans"
    assert mark.resolve_route("credit", {"duration": 12}).rule == "default"

    new_key = mark.rotate_route_key("credit")
    assert new_key != key and new_key not in "".join(stored_routes(mark))
    mark.check_route_key("credit", new_key)
    for wrong, why in ((key, "wrong key"), ("", "no key presented"), (None, "no key presented"),
                       (new_key + "x", "wrong key")):
        with pytest.raises(AuthenticationFailed, match=f"route key refused for route credit: {why}"):
            mark.check_route_key("credit", wrong)
    with pytest.raises(NotFound):
        mark.check_route_key("nope", new_key)

    # configuring is audited, before and after, and no key ever reaches the trail
    events = stack.admin.audit.log(object="route:credit")
    assert [e.action for e in events] == ["route.set", "route.set", "route.rotate_key"]
    assert all(e.actor == "mark" for e in events)
    assert events[0].data["before"] is None and events[0].data["key_issued"] is True
    assert events[1].data["before"]["rules"] == SPEC["rules"]
    assert events[1].data["after"]["canary"] == {"to": "careful", "share": 0.5}
    trail = json.dumps([e.data for e in stack.admin.audit.log()])
    assert key not in trail and new_key not in trail
    assert stack.admin.audit.verify().ok


def test_a_route_refuses_to_resolve_once_its_deployment_is_retired(deployed):
    stack = deployed.stack
    stack.mark.set_route("credit", {**SPEC, "shadow": "careful"})
    careful = next(d for d in stack.mark.deployments() if d.name == "careful")
    stack.mark.retire(careful.model_ref, reason="Superseded")
    with pytest.raises(Conflict, match="route credit no longer fits its deployments"):
        stack.mark.resolve_route("credit", {"credit_amount": 1})
    with pytest.raises(InvalidInput, match="unknown or inactive deployment 'careful'"):
        stack.mark.set_route("credit", {"default": "careful"})
    # the stored route still reads back as it was written
    assert stack.mark.route("credit").shadow == "careful"


@pytest.mark.parametrize("backend", ["sqlite"])  # the surfaces are thin; once is enough
def test_cli_route_commands(deployed, tmp_path):
    stack = deployed.stack
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env |= {"NEXML_HOME": str(stack.settings.home), "NEXML_TOKEN": stack.tokens["mark"]}
    spec = tmp_path / "credit.yaml"
    spec.write_text(YAML)

    def nexml(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nexml_ext.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    created = nexml("route", "set", "credit", str(spec))
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert lines[0] == "route credit saved (revision 1)"
    key = lines[-1]
    assert key.startswith("nxr_")
    stack.mark.check_route_key("credit", key)
    assert stack.mark.route("credit").canary == {"to": "careful", "share": 0.5}

    listed = nexml("route", "list")
    assert listed.returncode == 0 and "credit" in listed.stdout and "careful (50%)" in listed.stdout
    shown = nexml("route", "show", "credit")
    assert "long-loans" in shown.stdout and key not in shown.stdout
    rotated = nexml("route", "rotate-key", "credit")
    assert rotated.returncode == 0
    stack.mark.check_route_key("credit", rotated.stdout.splitlines()[-1])

    env["NEXML_TOKEN"] = stack.tokens["dana"]
    refused = nexml("route", "set", "credit", str(spec))
    assert refused.returncode == PermissionDenied.exit_code
    assert refused.stderr.startswith("error: permission denied: data_scientist dana may not")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_route_cell_magic(deployed, monkeypatch, capsys):
    stack = deployed.stack
    for name in ("NEXML_TOKEN", "NEXML_HOME", "NEXML_DATABASE_URL", "NEXML_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    config = Config()
    config.HistoryManager.enabled = False
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    try:
        shell.run_line_magic("load_ext", "nexml_ext")
        shell.user_ns["token"] = stack.tokens["mark"]
        settings = stack.settings
        shell.run_line_magic(
            "nexml",
            f"connect --token token --home {shlex.quote(str(settings.home))} "
            f"--database-url {shlex.quote(settings.database_url)}",
        )
        capsys.readouterr()
        result = shell.run_cell(f"%%nexml route credit\n{YAML}")
        assert result.success, result.error_in_exec
        assert result.result.name == "credit" and result.result.default == "main"
        out = capsys.readouterr().out
        key = next(line for line in out.splitlines() if line.startswith("nxr_"))
        stack.mark.check_route_key("credit", key)

        # an empty cell and a bad spec are one-line refusals
        assert shell.run_cell("%%nexml route credit\n\n").result is None
        assert "write the route as YAML in the cell body" in capsys.readouterr().err
        assert shell.run_cell("%%nexml route credit\ndefault: nowhere\n").result is None
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: route credit: default: unknown or inactive deployment")
        shell.magics_manager.registry["NexmlMagics"].close()
    finally:
        InteractiveShell.clear_instance()
