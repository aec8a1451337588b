"""The ``nexml`` command, run as real subprocesses against a real store on each backend.

Each Workspace command pays the package's import time in a fresh interpreter, so independent
commands run side by side (``Nexml.many``); commands whose order matters run one after another.
"""

from __future__ import annotations

import hashlib
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

    def env(self, token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
        env.update(extra or {})
        env["NEXML_HOME"] = str(self.settings.home)
        if not self.settings.is_sqlite:
            env["NEXML_DATABASE_URL"] = self.settings.database_url
        if token:
            env["NEXML_TOKEN"] = token
        return env

    def start(
        self, *args: str, token: str | None = None, env: dict[str, str] | None = None
    ) -> tuple[tuple[str, ...], subprocess.Popen]:
        process = subprocess.Popen(
            [sys.executable, "-m", "nexml_ext.cli", *args],
            env=self.env(token, env),
            cwd=self.settings.home.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return args, process

    @staticmethod
    def finish(started: tuple[tuple[str, ...], subprocess.Popen]) -> Result:
        args, process = started
        # The demo trains, validates and makes reports: give it room on a shared machine.
        out, err = process.communicate(timeout=600 if args[:1] == ("demo",) else 120)
        return Result(args, process.returncode, out, err)

    def __call__(
        self, *args: str, token: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return self.finish(self.start(*args, token=token, env=env))

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


# --- init and users ------------------------------------------------------------------------


def test_init_users_and_refusals(settings, nexml):
    first = nexml("init", "--admin", "ada").ok()
    token = first.last_line
    assert TOKEN.match(token)
    assert first.out.count(token) == 1
    assert "superadmin: ada" in first.out
    creds = settings.credentials_path
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    saved = creds.read_text()
    assert json.loads(saved)["token"] == token

    again, added, bad_role = nexml.many(
        ("init", "--admin", "eve"),
        ("user", "add", "bob", "--role", "data_scientist"),
        ("user", "add", "carol", "--role", "wizard"),
    )
    again.refused(8, "already exists")
    assert creds.read_text() == saved  # the refused init wrote nothing
    bob = added.ok().last_line
    assert TOKEN.match(bob) and bob != token
    assert "data_scientist bob" in added.out
    line = bad_role.refused(2, "wizard")
    assert all(role in line for role in ROLES)

    # Without NEXML_TOKEN the CLI acts as the credentials file's user (ada).
    listed, whoami, duplicate, verified = nexml.many(
        ("user", "list"),
        (("whoami",), bob),
        ("user", "add", "bob", "--role", "manager"),
        ("audit", "verify"),
    )
    rows = [line.split() for line in listed.ok().out.splitlines()]
    assert rows[0] == ["NAME", "ROLE", "DISABLED", "CREATED", "BY"]
    assert [(r[0], r[1], r[-1]) for r in rows[1:]] == [
        ("ada", "superadmin", "init"),
        ("bob", "data_scientist", "ada"),
    ]  # no carol, no eve: the refusals wrote nothing
    assert whoami.ok().out.strip() == "data_scientist bob"
    duplicate.refused(8, "'bob' already exists")
    assert verified.ok().out.startswith("events: 2 records verified")  # store.init, user.add
    assert verified.err == ""

    assert nexml("user", "disable", "bob").ok().out.strip() == "disabled bob"
    refused, debug = nexml.many((("whoami",), bob), (("--debug", "whoami"), bob))
    assert refused.refused(5) == "error: token refused: user bob is disabled"
    assert debug.code != 0
    assert "Traceback" in debug.err and "AuthenticationFailed" in debug.err
    assert "user bob is disabled" in debug.err


# --- tokens --------------------------------------------------------------------------------


def test_token_create_list_revoke_and_expiry(stack, nexml):
    dana = stack.tokens["dana"]
    created = nexml("token", "create", "--expires-days", "1", "--label", "ci", token=dana).ok()
    keep = created.last_line
    assert TOKEN.match(keep)
    keep_id = keep.split("_")[1]
    assert f"token {keep_id} for dana, expires" in created.out

    lapse_info, lapse = stack.dana.create_token(expires_in_days=1)
    # Time passes for that one.
    sql(
        stack.settings,
        "UPDATE tokens SET expires_at = :past WHERE id = :id",
        past=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1),
        id=lapse_info.id,
    )
    listed, works, expired = nexml.many(
        (("token", "list"), dana), (("whoami",), keep), (("whoami",), lapse)
    )
    table = listed.ok().out
    rows = {line.split()[0]: line for line in table.splitlines()}
    assert {keep_id, lapse_info.id} <= set(rows)
    for secret in (keep, lapse):
        assert secret not in table and secret.split("_", 2)[2] not in table
    assert rows[keep_id].split()[1:3] == ["dana", "ci"]
    assert works.ok().out.strip() == "data_scientist dana"
    expired.refused(5, "token refused", lapse_info.id, "expired")

    assert nexml("token", "revoke", keep_id, token=dana).ok().out.strip() == f"revoked {keep_id}"
    revoked = nexml("whoami", token=keep)
    revoked.refused(5, "token refused: ", keep_id, "revoked")
    state = {i.id: i for i in stack.dana.tokens()}
    assert state[keep_id].revoked_at is not None
    assert state[lapse_info.id].revoked_at is None


# --- audit ---------------------------------------------------------------------------------


def test_audit_log_filters_and_verify(stack, nexml):
    stack.admin.add_user("bob", "data_scientist")
    stack.admin.add_user("bobby", "manager")
    stack.admin.disable_user("bob")
    stack.dana.create_token(label="mine")
    today = datetime.now(UTC).date().isoformat()
    engine = make_engine(stack.settings.database_url)
    try:
        with engine.begin() as conn:  # the genesis event happened two days ago
            at = conn.execute(text("SELECT at FROM events WHERE seq = 1")).scalar_one()
            earlier = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=2)
            conn.execute(text("UPDATE events SET at = :at WHERE seq = 1"), {"at": earlier})

        by_ada, about_bob, since = nexml.many(
            ("audit", "log", "--actor", "ada", "--json"),
            ("audit", "log", "--object", "user:bob"),
            ("audit", "log", "--since", today, "--json"),
        )

        with engine.begin() as conn:  # put it back exactly, then rewrite one action
            conn.execute(text("UPDATE events SET at = :at WHERE seq = 1"), {"at": at})
            conn.execute(text("UPDATE events SET action = 'user.remove' WHERE seq = 3"))
    finally:
        engine.dispose()
    broken = nexml("audit", "verify")

    ada = [json.loads(line) for line in by_ada.ok().out.splitlines()]
    assert [e["seq"] for e in ada] == list(range(1, 10))  # seq 10 is dana's
    assert {e["actor"] for e in ada} == {"ada"}
    assert ada[0]["action"] == "store.init"
    assert {"seq", "at", "actor", "action", "object_ref", "data", "hash"} <= set(ada[0])

    lines = about_bob.ok().out.splitlines()
    assert lines[0].split() == ["SEQ", "AT", "ACTOR", "ACTION", "OBJECT"]
    assert [line.split()[-2:] for line in lines[1:]] == [
        ["user.add", "user:bob"],
        ["user.disable", "user:bob"],
    ]  # not user:bobby

    assert [json.loads(line)["seq"] for line in since.ok().out.splitlines()] == list(range(2, 11))

    broken.refused(9, "record 3", "contents changed")


def test_malformed_references_are_refused(stack, nexml):
    show, approve = nexml.many(
        ("show", "credit-risk"), ("approve", "x:0", "--findings", "looked fine")
    )
    show.refused(2, "credit-risk", "NAME:VERSION")
    approve.refused(2, "x:0", "NAME:VERSION")
    assert stack.admin.audit.log(action="model.approve") == []


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


def test_usage_mistakes_are_one_line_too():
    missing, unknown, bad_choice = _static().many(
        ("user", "add", "bob"), ("nosuch",), ("deploy", "a:1", "--name", "x", "--size", "huge")
    )
    missing.refused(2, "Missing option '--role'", "nexml user add --help")
    unknown.refused(2, "No such command 'nosuch'")
    bad_choice.refused(2, "'huge' is not one of", "nexml deploy --help")


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


class _Demo:
    """`nexml demo --home HOME` running, its output read as it comes (both pipes drained, so
    the servers' logs never block it)."""

    def __init__(self, nexml: Nexml, home: Path) -> None:
        import queue
        import threading

        # PYTHONFAULTHANDLER: a demo that does not stop is made to print every thread's stack.
        # (A test run started in the background, sh's `cmd &`, ignores SIGINT and the demo
        # inherits that: the demo's own handler must still stop it on Ctrl-C.)
        _, self.process = nexml.start("demo", "--home", str(home),
                                      env={"PYTHONFAULTHANDLER": "1"})
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []

        def pump_out() -> None:
            for line in self.process.stdout:
                self.lines.put(line)
            self.lines.put(None)

        def pump_err() -> None:
            self.err.extend(self.process.stderr)

        self.threads = [threading.Thread(target=f, daemon=True) for f in (pump_out, pump_err)]
        for thread in self.threads:
            thread.start()

    def read_until(self, marker: str, seconds: float) -> str:
        seen: list[str] = []
        while True:
            line = self.lines.get(timeout=seconds)
            if line is None:
                raise AssertionError("the demo ended early:\n" + "".join(seen + self.err))
            seen.append(line)
            if marker in line:
                return "".join(seen)

    def interrupt(self) -> tuple[int, str, str]:
        """Ctrl-C, as a person ends the demo: its exit status, the rest of its output, stderr."""
        import signal

        self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # the fault handler prints the stacks
            self.process.wait(timeout=60)
            for thread in self.threads:
                thread.join(timeout=30)
            raise AssertionError(  # noqa: B904 - the stacks say more than the timeout
                "the demo did not stop within 120 s of Ctrl-C; its stderr ends:\n"
                + "".join(self.err)[-8000:]
            )
        for thread in self.threads:
            thread.join(timeout=30)
        rest = []
        while (line := self.lines.get(timeout=5)) is not None:
            rest.append(line)
        return status, "".join(rest), "".join(self.err)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_demo_runs_the_lifecycle_then_serves_the_dashboards(settings, nexml):
    import httpx

    from nexml_ext.workspace import Workspace
    from tests.dashboards.conftest import sign_in

    demo = _Demo(nexml, settings.home)  # the store is kept, to inspect
    try:
        # The demo trains three models and makes five reports: room on a shared machine.
        out = demo.read_until("the dashboards inside it:", seconds=900)
        assert "Demo complete" in out
        # JupyterLab and the dashboards on loopback, with each demo identity's token.
        dash = re.search(r"dashboards: (http://127\.0\.0\.1:\d+/) ", out)
        lab = re.search(r"JupyterLab \(as dana\): (http://127\.0\.0\.1:\d+)/lab\?token=(\S+)", out)
        people = dict(re.findall(r"^\s+(ada|dana|mark|cora)\s+\w+\s+(nxm_\S+)$", out, re.M))
        assert dash and lab and set(people) == {"ada", "dana", "mark", "cora"}, out
        with httpx.Client(base_url=dash.group(1), timeout=60) as client:
            assert client.get("/").status_code in (302, 303)  # nothing without signing in
            assert sign_in(client, people["mark"]).status_code in (302, 303)
            index = client.get("/")
            assert index.status_code == 200 and "approvals" in index.text
        with httpx.Client(base_url=lab.group(1), timeout=60) as client:
            assert client.get("/nexml/api/whoami").status_code in (302, 403)
            who = client.get("/nexml/api/whoami", headers={"Authorization":
                                                           f"token {lab.group(2)}"})
            assert who.status_code == 200 and who.json()["user"] == "dana", who.text
    finally:
        status, rest, err = demo.interrupt()
    assert status == 0, err
    assert "Stopping the servers." in rest
    assert "Traceback" not in err
    # The manager approved from the platform-made validation report, which is authentic.
    made = re.search(r"validation report #(\d+) written to (\S+)\n.*its sha256 ([0-9a-f]{64})",
                     out)
    assert made, out
    assert hashlib.sha256(Path(made.group(2)).read_bytes()).hexdigest() == made.group(3)
    assert re.search(rf"from validation report #{made.group(1)}\b", out)
    # Scoring went over real HTTP to the gateway on loopback, with the route key.
    assert re.search(r"gateway listening on http://127\.0\.0\.1:\d+ ", out)
    answered = re.findall(
        r"POST /v1/routes/loans/predict (applicant-\d+): HTTP 200 (approved|declined), "
        r"probability [0-9.]+, credit-risk:1, request ([0-9a-f]{32})",
        out,
    )
    assert len(answered) >= 5 and "declined" in {verdict for _, verdict, _ in answered}
    # Months of simulated traffic: the weekly monitor raises the drift alert in the week the
    # market shifts and not before; the retraining it asks for leaves a challenger in staging.
    weeks = re.findall(r"week +(\d+) \([0-9-]+\): 250 decisions, (.*)", out)
    assert [int(w) for w, _ in weeks] == list(range(1, 13))
    assert all(v == "no breach" for _, v in weeks[:8]), weeks
    assert "ALERT psi of credit_amount" in weeks[8][1] and "ALERT psi of duration" in weeks[8][1]
    assert all("still open" in v and "ALERT" not in v for _, v in weeks[9:]), weeks
    challenger = re.search(r"challenger (credit-risk:\d+) is in staging, author mark; "
                           r"comparison report #(\d+)", out)
    assert challenger, out
    assert "deployment credit still serves credit-risk:1: nothing is deployed" in out
    assert re.search(r"wrong route key: HTTP 401 route key refused", out)
    assert re.search(r"credit_amount \"a lot\": HTTP 422 .*'credit_amount'", out)
    outcome = re.search(r"POST /v1/routes/loans/outcomes -> HTTP 200, attached to request "
                        r"([0-9a-f]{32})", out)
    assert outcome and outcome.group(1) == answered[0][2]
    declined = next(s for s, verdict, _ in answered if verdict == "declined")
    assert f"Why was {declined} declined?" in out
    # The challenger's switch and the rollback were seen over HTTP too.
    assert re.search(r"is now answered by credit-risk:2: (approved|declined)", out)
    assert re.search(r"is now answered by credit-risk:1: (approved|declined)", out)
    # At the end, the platform's audit report over those requests (a job run by a worker) and
    # the schedules the deployment gets.
    audit = re.search(r"report-audit succeeded: report #(\d+) \"Audit report: [0-9-]+ to "
                      r"[0-9-]+\"\n\s+HTML (\S+\.html)\n\s+sha256 ([0-9a-f]{64})", out)
    assert audit, out
    assert hashlib.sha256(Path(audit.group(2)).read_bytes()).hexdigest() == audit.group(3)
    assert "audit-monthly: report-audit month={previous_month} at '0 6 1 * *' (UTC)" in out
    assert ("drift-daily-credit: report-drift deployment=credit since={previous_day} "
            "until={previous_day} at '0 5 * * *' (UTC)") in out
    # Every request id the demo printed is a recorded decision in the store it kept.
    ws = Workspace.open(settings)  # ada, the demo's superadmin, from its credentials file
    try:
        for subject, verdict, request_id in answered:
            [found] = ws.find_decisions(request_id=request_id)
            assert found.subject_id == subject and found.route == "loans"
            assert found.model_ref == "credit-risk:1"
            assert found.output["approved"] is (verdict == "approved")
            assert bool(found.reasons) is (verdict == "declined")
        [first] = ws.find_decisions(request_id=answered[0][2])
        assert first.outcome in ("repaid", "defaulted")
        assert ws.audit.verify().ok
        assert ws.verify_report(Path(audit.group(2))).id == int(audit.group(1))
        assert {sc.name for sc in ws.schedules()} == {"audit-monthly", "drift-daily-credit"}
        staged = ws.version(challenger.group(1))
        assert staged.status == "staging"
        assert staged.lineage["retraining"]["report"] == int(challenger.group(2))
        assert [a.feature for a in ws.alerts(deployment="credit") if a.metric == "psi"]
    finally:
        ws.close()


def test_audit_verify_says_when_the_native_scanner_did_not_run(stack, nexml):
    token = stack.tokens["cora"]
    plain = nexml("audit", "verify", token=token).ok()
    off = nexml("audit", "verify", token=token, env={"NEXML_NATIVE_SCAN": "0"}).ok()
    assert plain.out == off.out  # the same verdict either way
    if stack.settings.is_sqlite:
        assert plain.err == ""
        assert off.err.strip() == (
            "note: the native chain scanner is off (NEXML_NATIVE_SCAN=0); verification used "
            "the Python scans (same verdicts, slower)"
        )
    else:  # PostgreSQL hashes on the server: no scanner to miss
        assert plain.err == off.err == ""
