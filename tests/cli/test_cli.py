"""The ``nexml`` command, run as real subprocesses against a real store on each backend.

Each Workspace command pays the package's import time in a fresh interpreter, so independent
commands run side by side (``Nexml.many``); commands whose order matters run one after another.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from nexml_ext.config import Settings
from nexml_ext.store.database import make_engine

ROOT = Path(__file__).resolve().parents[2]
TOKEN = re.compile(r"^nxm_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")
ROLES = ("data_scientist", "manager", "compliance_officer", "superadmin")


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def ok(self) -> Result:
        assert self.code == 0, f"nexml {' '.join(self.args)} -> {self.code}\n{self.err}"
        return self

    def refused(self, code: int, *fragments: str) -> str:
        """Assert the one-line refusal promise; return the line."""
        assert self.code == code, f"nexml {' '.join(self.args)} -> {self.code}: {self.err!r}"
        lines = self.err.splitlines()
        assert len(lines) == 1, f"stderr is not one line: {self.err!r}"
        line = lines[0]
        assert line.startswith("error: "), line
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment in line, f"{fragment!r} not in {line!r}"
        return line

    @property
    def last_line(self) -> str:
        return self.out.strip().splitlines()[-1]


class Nexml:
    """Runs ``python -m nexml_ext.cli`` with a store-specific environment."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def env(self, token: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
        env["NEXML_HOME"] = str(self.settings.home)
        if not self.settings.is_sqlite:
            env["NEXML_DATABASE_URL"] = self.settings.database_url
        if token:
            env["NEXML_TOKEN"] = token
        return env

    def start(
        self, *args: str, token: str | None = None
    ) -> tuple[tuple[str, ...], subprocess.Popen]:
        process = subprocess.Popen(
            [sys.executable, "-m", "nexml_ext.cli", *args],
            env=self.env(token),
            cwd=self.settings.home.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return args, process

    @staticmethod
    def finish(started: tuple[tuple[str, ...], subprocess.Popen]) -> Result:
        args, process = started
        out, err = process.communicate(timeout=120)
        return Result(args, process.returncode, out, err)

    def __call__(self, *args: str, token: str | None = None) -> Result:
        return self.finish(self.start(*args, token=token))

    def many(self, *calls: tuple[str, ...] | tuple[tuple[str, ...], str]) -> list[Result]:
        """Run independent commands at once: each call is ``args`` or ``(args, token)``."""
        started = []
        for call in calls:
            args, token = call if call and isinstance(call[0], tuple) else (call, None)
            started.append(self.start(*args, token=token))
        return [self.finish(s) for s in started]


def sql(settings: Settings, statement: str, **params: object) -> None:
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


@pytest.fixture
def nexml(settings: Settings) -> Nexml:
    return Nexml(settings)


def _static() -> Nexml:
    home = ROOT / "does-not-exist-nexml-home"
    return Nexml(Settings(home=home, database_url=f"sqlite:///{home}/x.db", artifact_root=""))


# --- init ----------------------------------------------------------------------------------


def test_init_prints_token_once_writes_credentials_and_refuses_twice(settings, nexml):
    first = nexml("init", "--admin", "ada").ok()
    token = first.last_line
    assert TOKEN.match(token)
    assert first.out.count(token) == 1
    assert "superadmin: ada" in first.out

    creds = settings.credentials_path
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    saved = creds.read_text()
    assert json.loads(saved)["token"] == token

    again, whoami = nexml.many(("init", "--admin", "eve"), ("whoami",))
    again.refused(8, "already exists")
    assert creds.read_text() == saved  # the refused init wrote nothing
    # Without NEXML_TOKEN the CLI acts as the credentials file's user.
    assert whoami.ok().out.strip() == "superadmin ada"


# --- users ---------------------------------------------------------------------------------


def test_user_add_whoami_list_disable(stack, nexml):
    added = nexml("user", "add", "bob", "--role", "data_scientist").ok()
    bob = added.last_line
    assert TOKEN.match(bob)
    assert "data_scientist bob" in added.out

    whoami, listed = nexml.many((("whoami",), bob), ("user", "list"))
    assert whoami.ok().out.strip() == "data_scientist bob"
    rows = {line.split()[0]: line.split() for line in listed.ok().out.splitlines()[1:]}
    assert set(rows) == {"ada", "bob", "cora", "dana", "dave", "mark", "mia"}
    assert rows["bob"][1] == "data_scientist"
    assert rows["ada"][1] == "superadmin"
    assert rows["bob"][-1] == "ada"  # created by

    assert nexml("user", "disable", "bob").ok().out.strip() == "disabled bob"
    refused, debug, listed = nexml.many(
        (("whoami",), bob), (("--debug", "whoami"), bob), ("user", "list")
    )
    assert refused.refused(5) == "error: token refused: user bob is disabled"
    assert debug.code != 0
    assert "Traceback" in debug.err and "AuthenticationFailed" in debug.err
    bob_row = next(line for line in listed.ok().out.splitlines() if line.startswith("bob "))
    assert "yes" in bob_row.split()


def test_refused_commands_are_one_line_and_change_nothing(stack, nexml):
    before, bad_role, duplicate, show, approve, bad_name = nexml.many(
        ("user", "list"),
        ("user", "add", "carol", "--role", "wizard"),
        ("user", "add", "dana", "--role", "manager"),
        ("show", "credit-risk"),
        ("approve", "x:0", "--findings", "looked fine"),
        ("user", "add", "no spaces!", "--role", "manager"),
    )
    line = bad_role.refused(2, "wizard")
    assert all(role in line for role in ROLES)
    duplicate.refused(8, "dana", "already exists")
    show.refused(2, "credit-risk", "NAME:VERSION")
    approve.refused(2, "x:0", "NAME:VERSION")
    bad_name.refused(2, "invalid user name")

    after = nexml("user", "list").ok()
    assert after.out == before.ok().out
    assert "carol" not in after.out
    assert [u.role for u in stack.admin.users() if u.name == "dana"] == ["data_scientist"]


# --- tokens --------------------------------------------------------------------------------


def test_token_create_list_revoke_and_expiry(stack, nexml):
    dana = stack.tokens["dana"]
    first, second = nexml.many(
        (("token", "create", "--expires-days", "1", "--label", "ci"), dana),
        (("token", "create", "--expires-days", "1"), dana),
    )
    keep, lapse = first.ok().last_line, second.ok().last_line
    assert TOKEN.match(keep) and TOKEN.match(lapse)
    keep_id, lapse_id = keep.split("_")[1], lapse.split("_")[1]
    assert f"token {keep_id} for dana, expires" in first.out

    # Time passes for one of them.
    sql(
        stack.settings,
        "UPDATE tokens SET expires_at = :past WHERE id = :id",
        past=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1),
        id=lapse_id,
    )
    listed, works, expired = nexml.many(
        (("token", "list"), dana), (("whoami",), keep), (("whoami",), lapse)
    )
    table = listed.ok().out
    assert keep_id in table and lapse_id in table
    assert keep.split("_", 2)[2] not in table and lapse.split("_", 2)[2] not in table
    assert keep not in table
    keep_row = next(line for line in table.splitlines() if line.startswith(keep_id))
    assert "ci" in keep_row.split()
    assert works.ok().out.strip() == "data_scientist dana"
    expired.refused(5, "token refused", lapse_id, "expired")

    assert nexml("token", "revoke", keep_id, token=dana).ok().out.strip() == f"revoked {keep_id}"
    revoked, listed = nexml.many((("whoami",), keep), (("token", "list"), dana))
    revoked.refused(5, "token refused: ", keep_id, "revoked")
    stamps = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    rows = {line.split()[0]: line for line in listed.ok().out.splitlines()}
    assert len(stamps.findall(rows[keep_id])) == 3  # created, expires, revoked
    assert len(stamps.findall(rows[lapse_id])) == 2  # not revoked


# --- audit ---------------------------------------------------------------------------------


def test_audit_verify_detects_a_changed_event(stack, nexml):
    ok = nexml("audit", "verify").ok()
    assert "events: 6 records verified" in ok.out
    assert ok.err == ""

    sql(stack.settings, "UPDATE events SET action = 'user.remove' WHERE seq = 3")
    broken = nexml("audit", "verify")
    line = broken.refused(9, "record 3")
    assert "contents changed" in line


def test_audit_log_filters(stack, nexml):
    stack.admin.add_user("bob", "data_scientist")
    stack.admin.add_user("bobby", "manager")
    stack.admin.disable_user("bob")
    stack.dana.create_token(label="mine")
    two_days_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=2)
    # Move the genesis event into the past (the log does not verify the chain).
    sql(stack.settings, "UPDATE events SET at = :at WHERE seq = 1", at=two_days_ago)
    today = datetime.now(UTC).date().isoformat()

    by_ada, by_dana, about_bob, since, table = nexml.many(
        ("audit", "log", "--actor", "ada", "--json"),
        ("audit", "log", "--actor", "dana", "--json"),
        ("audit", "log", "--object", "user:bob", "--json"),
        ("audit", "log", "--since", today, "--json"),
        ("audit", "log", "--object", "user:bob"),
    )

    def events(result: Result) -> list[dict]:
        return [json.loads(line) for line in result.ok().out.splitlines()]

    ada = events(by_ada)
    assert [e["seq"] for e in ada] == list(range(1, 10))
    assert {e["actor"] for e in ada} == {"ada"}
    assert ada[0]["action"] == "store.init"
    assert {"seq", "at", "actor", "action", "object_ref", "data", "hash"} <= set(ada[0])

    dana = events(by_dana)
    assert [(e["seq"], e["action"], e["actor_role"]) for e in dana] == [
        (10, "token.create", "data_scientist")
    ]

    bob = events(about_bob)
    assert [(e["action"], e["object_ref"]) for e in bob] == [
        ("user.add", "user:bob"),
        ("user.disable", "user:bob"),
    ]

    assert [e["seq"] for e in events(since)] == list(range(2, 11))

    lines = table.ok().out.splitlines()
    assert lines[0].split() == ["SEQ", "AT", "ACTOR", "ACTION", "OBJECT"]
    assert [line.split()[-2:] for line in lines[1:]] == [
        ["user.add", "user:bob"],
        ["user.disable", "user:bob"],
    ]


# --- help, docs, demo ----------------------------------------------------------------------


def test_help_explains_the_commands():
    top, approve = _static().many(("--help",), ("approve", "--help"))
    text_ = top.ok().out
    assert "Usage: nexml" in text_
    for word in ("init", "user", "token", "whoami", "approve", "deploy", "audit", "--debug"):
        assert word in text_
    assert "superadmin token" in text_
    help_ = approve.ok().out
    assert "Usage: nexml approve" in help_
    assert "REF" in help_ and "--findings" in help_
    assert "staging version" in help_ and "findings" in help_


def test_docs_permissions_is_the_committed_file():
    result = subprocess.run(
        [sys.executable, "-m", "nexml_ext.cli", "docs", "permissions"],
        capture_output=True,
        check=True,
    )
    committed = ROOT / "docs" / "permissions.md"
    assert committed.exists(), "generate it: nexml docs permissions > docs/permissions.md"
    assert result.stdout == committed.read_bytes()
    assert b"| `model.approve` |" in result.stdout


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_demo_runs_the_lifecycle(settings, nexml):
    result = nexml("demo").ok()
    assert "Demo complete" in result.out
    assert "Traceback" not in result.err
