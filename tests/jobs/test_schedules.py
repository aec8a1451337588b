"""Schedules: cron fire times, fire-time periods, and a scheduler that submits each fire once.

Fire times are checked against hand-computed cases (month ends, the first of the month, DST in
New York and Berlin). The scheduler gets its "now" as a parameter, so a test can stand at any
moment; restarts are new Workspaces (and real `nexml scheduler` processes) on the same store.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from nexml_ext.demo import demo_compliance
from nexml_ext.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from nexml_ext.jobs import Worker
from nexml_ext.jobs.schedules import (
    Scheduler,
    check_cron,
    check_timezone,
    fires_between,
    next_fire,
    resolve_params,
)
from nexml_ext.ml.data import split
from nexml_ext.store import tables as t
from nexml_ext.workspace import Workspace
from nexml_ext.workspace.core import PLATFORM_USER

from .conftest import PATIENCE, cli_env, nexml

D = datetime


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def clock(value: str):  # type: ignore[no-untyped-def]
    return lambda: at(value)


def events(ws, action: str) -> list:
    return [e for e in ws.audit.log() if e.action == action]


def count(ws, table) -> int:  # type: ignore[no-untyped-def]
    with ws._read() as s:
        return s.scalar(select(func.count()).select_from(table))


# --- fire times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "zone", "after", "expected"),
    [
        # The first of the month, 06:00 UTC: from the last day of January, and strictly after
        # a fire time (the fire itself is not "next").
        ("0 6 1 * *", "UTC", "2026-01-31 12:00", ["2026-02-01 06:00", "2026-03-01 06:00"]),
        ("0 6 1 * *", "UTC", "2026-02-01 06:00", ["2026-03-01 06:00"]),
        ("0 6 1 * *", "UTC", "2026-12-31 23:59", ["2027-01-01 06:00"]),
        # The 31st exists in seven months only: February, April and June are passed over.
        ("0 0 31 * *", "UTC", "2026-01-31 00:00", ["2026-03-31 00:00", "2026-05-31 00:00"]),
        # The last day of the month, leap year included.
        ("0 23 L * *", "UTC", "2028-02-01 00:00", ["2028-02-29 23:00", "2028-03-31 23:00"]),
        ("0 23 L * *", "UTC", "2027-02-01 00:00", ["2027-02-28 23:00"]),
        # Berlin: 06:00 local is 05:00 UTC in winter (CET) and 04:00 UTC in summer (CEST).
        ("0 6 1 * *", "Europe/Berlin", "2026-02-15 00:00",
         ["2026-03-01 05:00", "2026-04-01 04:00"]),
        # New York, spring forward (2026-03-08 02:00 EST -> 03:00 EDT): 02:30 does not exist
        # that day, so it fires at 03:00 EDT (07:00 UTC), then 02:30 EDT (06:30 UTC).
        ("30 2 * * *", "America/New_York", "2026-03-07 08:00",
         ["2026-03-08 07:00", "2026-03-09 06:30"]),
        # New York, fall back (2026-11-01 02:00 EDT -> 01:00 EST): 01:30 happens twice and fires
        # once, at the first (05:30 UTC); the next is 01:30 EST on the 2nd (06:30 UTC).
        ("30 1 * * *", "America/New_York", "2026-10-31 06:00",
         ["2026-11-01 05:30", "2026-11-02 06:30"]),
    ],
)
def test_fire_times_match_hand_computed_cases(cron, zone, after, expected):
    got, previous = [], at(after)
    for _ in expected:
        previous = next_fire(cron, zone, previous)
        got.append(f"{previous:%Y-%m-%d %H:%M}")
    assert got == expected


def test_the_repeated_hour_fires_once_and_a_window_lists_every_fire():
    # Every half hour in New York across fall back: 01:00 and 01:30 EDT, then 02:00 EST; the
    # second 01:00 and 01:30 (EST) are the same wall-clock times again and do not fire.
    fires = list(fires_between("*/30 * * * *", "America/New_York", at("2026-11-01 04:45"),
                               at("2026-11-01 07:30")))
    assert [f"{f:%H:%M}" for f in fires] == ["05:00", "05:30", "07:00", "07:30"]
    assert list(fires_between("0 5 * * *", "UTC", at("2026-01-01 05:00"),
                              at("2026-01-04 05:00"))) == [
        at("2026-01-02 05:00"), at("2026-01-03 05:00"), at("2026-01-04 05:00")]


def test_bad_cron_expressions_and_time_zones_are_refused_by_name():
    for bad, why in [
        ("61 * * * *", "out of range"),
        ("* * *", "expected five fields"),
        ("0 0 * * * 2026", "expected five fields"),
        ("0 0 30 2 *", "it never fires"),
        ("@reboot", "the macros are"),
        ("every day", "expected five fields"),
        ("0 6 1 * funday", "bad cron expression '0 6 1 * funday'"),
    ]:
        with pytest.raises(InvalidInput, match="bad cron expression") as refused:
            check_cron(bad)
        assert f"'{bad}'" in str(refused.value) and why in str(refused.value)
    assert check_cron("  0 6   1 * * ") == "0 6 1 * *"
    assert check_cron("@monthly") == "@monthly"
    with pytest.raises(InvalidInput, match="unknown time zone 'Mars/Olympus'"):
        check_timezone("Mars/Olympus")
    assert check_timezone("Europe/Berlin") == "Europe/Berlin"


def test_period_parameters_come_from_the_fire_time():
    params = {"month": "{previous_month}", "since": "{previous_day}",
              "until": "{fire_date}", "note": "kept {as is}", "n": 3}
    assert resolve_params(params, at("2026-03-01 06:00"), "UTC") == {
        "month": "2026-02", "since": "2026-02-28", "until": "2026-03-01",
        "note": "kept {as is}", "n": 3}
    assert resolve_params(params, at("2028-03-01 06:00"), "UTC")["since"] == "2028-02-29"
    assert resolve_params(params, at("2027-01-01 00:00"), "UTC")["month"] == "2026-12"
    # In Los Angeles, 03:00 UTC on March 1st is still February 28th: the period is local.
    los_angeles = resolve_params(params, at("2026-03-01 03:00"), "America/Los_Angeles")
    assert (los_angeles["month"], los_angeles["since"]) == ("2026-01", "2026-02-27")
    with pytest.raises(InvalidInput, match=r"unknown placeholder '\{last_week\}' in parameter"):
        resolve_params({"since": "{last_week}"}, at("2026-03-01 06:00"), "UTC")


# --- the scheduler -------------------------------------------------------------------------


def test_a_scheduler_at_a_given_now_submits_exactly_the_due_jobs(stack):
    audit = stack.admin.add_schedule("audit-monthly", "0 6 1 * *", "report-audit",
                                     {"month": "{previous_month}"}, now=at("2026-01-15 10:00"))
    assert (audit.next_run_at, audit.enabled, audit.created_by) == (
        at("2026-02-01 06:00"), True, "ada")
    stack.mark.add_schedule("nightly", "0 5 * * *", "selftest", {"seconds": 0},
                            now=at("2026-01-30 12:00"))
    lines: list[str] = []

    assert Scheduler(stack.admin, clock=clock("2026-01-31 04:59"), echo=lines.append
                     ).run_once() == []
    fired = Scheduler(stack.admin, clock=clock("2026-02-01 06:00"), echo=lines.append).run_once()
    assert [(f.schedule, f.fire_at) for f in fired] == [
        ("nightly", at("2026-01-31 05:00")), ("nightly", at("2026-02-01 05:00")),
        ("audit-monthly", at("2026-02-01 06:00"))]
    jobs = {j.id: j for j in stack.admin.jobs()}
    assert len(jobs) == 3 and {f.job_id for f in fired} == set(jobs)
    report_job = jobs[fired[2].job_id]
    assert (report_job.kind, report_job.status, report_job.created_by) == (
        "report-audit", "queued", "ada")
    assert report_job.params == {"month": "2026-01", "since": "2026-01-01",
                                 "until": "2026-01-31"}
    assert jobs[fired[0].job_id].created_by == "mark"
    assert lines[2] == (f"schedule audit-monthly 2026-02-01 06:00 UTC: job {report_job.id} "
                        "report-audit queued month=2026-01 since=2026-01-01 until=2026-01-31")
    assert [j.line for j in stack.admin.job(report_job.id).log][0] == (
        "submitted by schedule audit-monthly for ada (fire time 2026-02-01 06:00 UTC)")

    after = stack.admin.schedule("audit-monthly")
    assert (after.last_run_at, after.next_run_at, after.last_job_id) == (
        at("2026-02-01 06:00"), at("2026-03-01 06:00"), report_job.id)
    # Each fire is the platform's audited act on the creator's behalf.
    fires = events(stack.admin, "schedule.fire")
    assert [(e.actor, e.object_ref, e.data["fire_at"]) for e in fires][-1] == (
        PLATFORM_USER, "schedule:audit-monthly", "2026-02-01T06:00:00")
    submitted = [e for e in events(stack.admin, "job.submit")
                 if e.object_ref == f"job:{report_job.id}"]
    assert submitted[0].data["on_behalf_of"] == "ada"
    assert submitted[0].data["schedule"] == "audit-monthly"

    # A worker makes the report late (now, in real time): its period is still January 2026.
    finished = Worker(stack.admin).run_once()
    while finished is not None and finished.id != report_job.id:
        finished = Worker(stack.admin).run_once()
    assert finished is not None and finished.status == "succeeded", finished
    report = stack.admin.report(finished.result["report"])
    assert report.title == "Audit report: 2026-01"
    assert stack.admin.audit.verify().ok


def test_a_restart_across_due_times_submits_each_fire_once_and_skips_none(stack):
    params = {"since": "{previous_day}", "until": "{previous_day}"}
    stack.admin.add_schedule("daily-audit", "0 5 * * *", "report-audit", params,
                             now=at("2026-05-01 00:00"))
    stack.admin.add_schedule("daily-latest", "0 5 * * *", "report-audit", params,
                             catch_up="latest", now=at("2026-05-01 00:00"))

    def scheduler_at(now: str) -> list:
        ws = Workspace.open(stack.settings, stack.tokens["ada"])  # a fresh process's view
        try:
            return Scheduler(ws, clock=clock(now)).run_once()
        finally:
            ws.close()

    first = scheduler_at("2026-05-01 05:30")
    assert [(f.schedule, f"{f.fire_at:%m-%d}", f.params["since"]) for f in first] == [
        ("daily-audit", "05-01", "2026-04-30"), ("daily-latest", "05-01", "2026-04-30")]
    # Stopped for three days; the restarted scheduler catches up every missed day in order,
    # each with its own period; the "latest" schedule submits only the last, counting the rest.
    second = scheduler_at("2026-05-04 06:00")
    assert [(f.schedule, f"{f.fire_at:%m-%d}", f.params["since"], f.skipped) for f in second] == [
        ("daily-audit", "05-02", "2026-05-01", 0), ("daily-audit", "05-03", "2026-05-02", 0),
        ("daily-audit", "05-04", "2026-05-03", 0), ("daily-latest", "05-04", "2026-05-03", 2)]
    # Started again at the same moment (or twice): nothing is due, nothing is repeated.
    assert scheduler_at("2026-05-04 06:00") == []
    fires = stack.admin.schedule_fires("daily-audit")
    assert [f"{f.fire_at:%m-%d}" for f in fires] == ["05-04", "05-03", "05-02", "05-01"]
    assert len({f.job_id for f in fires}) == 4
    assert count(stack.admin, t.Job) == 6 == count(stack.admin, t.ScheduleRun)
    # Set back by hand to fires already recorded, it still submits none of them again.
    with stack.admin._write() as s:
        row = s.scalars(select(t.Schedule).where(t.Schedule.name == "daily-audit")).one()
        row.next_run_at = at("2026-05-03 05:00")
    assert scheduler_at("2026-05-04 06:00") == []
    assert stack.admin.schedule("daily-audit").next_run_at == at("2026-05-05 05:00")
    assert [e.data["fire_at"] for e in events(stack.admin, "schedule.skip")] == [
        "2026-05-03T05:00:00", "2026-05-04T05:00:00"]
    assert count(stack.admin, t.Job) == 6


def test_two_schedulers_at_once_never_submit_the_same_fire_twice(stack):
    # Sixty missed days, two real `nexml scheduler --once` processes started together.
    created = t.utcnow() - timedelta(days=60)
    stack.admin.add_schedule("daily", "0 5 * * *", "selftest", {"seconds": 0}, now=created)
    procs = [
        subprocess.Popen([sys.executable, "-m", "nexml_ext.cli", "scheduler", "--once"],
                         env=cli_env(stack.settings), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=PATIENCE) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    expected = list(fires_between("0 5 * * *", "UTC", created, t.utcnow()))
    assert len(expected) >= 59
    printed = [line for out, _ in outputs for line in out.splitlines()]
    assert sorted(printed) == sorted(set(printed)) and len(printed) == len(expected)
    assert sorted(line.split(" ")[2] for line in printed) == [f"{f:%Y-%m-%d}" for f in expected]
    fires = stack.admin.schedule_fires("daily", limit=1000)
    assert sorted(f.fire_at for f in fires) == expected
    assert count(stack.admin, t.Job) == len(expected) == len({f.job_id for f in fires})
    # The database itself refuses a second record of the same fire.
    with stack.admin._read() as s:
        schedule_id = s.scalar(select(t.Schedule.id).where(t.Schedule.name == "daily"))
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), stack.admin._write() as s:
        s.add(t.ScheduleRun(schedule_id=schedule_id, fire_at=expected[0], skipped=0))
        s.flush()


def test_defaults_cover_each_deployment_and_a_refused_fire_is_recorded(stack, german,
                                                                        fresh_artifact):
    deployment = _deploy(stack, german, fresh_artifact, "credit")
    # A manager may manage schedules, but not have the platform make audit reports.
    with pytest.raises(PermissionDenied, match="manager mark may not have the platform make "
                                               "a audit report"):
        stack.mark.add_default_schedules(now=at("2026-03-10 12:00"))
    assert stack.admin.schedules() == []

    created, existing = stack.admin.add_default_schedules(now=at("2026-03-10 12:00"))
    assert existing == []
    assert [(s.name, s.cron, s.kind, s.params, s.next_run_at) for s in created] == [
        ("audit-monthly", "0 6 1 * *", "report-audit", {"month": "{previous_month}"},
         at("2026-04-01 06:00")),
        (f"drift-daily-{deployment}", "0 5 * * *", "report-drift",
         {"deployment": deployment, "since": "{previous_day}", "until": "{previous_day}"},
         at("2026-03-11 05:00")),
    ]
    assert stack.admin.add_default_schedules() == ([], ["audit-monthly", "drift-daily-credit"])
    fired = Scheduler(stack.admin, clock=clock("2026-03-12 05:00")).run_once()
    assert [(f.schedule, f.params) for f in fired] == [
        ("drift-daily-credit", {"deployment": "credit", "since": "2026-03-10",
                                "until": "2026-03-10"}),
        ("drift-daily-credit", {"deployment": "credit", "since": "2026-03-11",
                                "until": "2026-03-11"}),
    ]

    # A fire whose job would be refused now is recorded with why, and the schedule moves on.
    stack.mark.add_schedule("marks-check", "0 7 * * *", "selftest", {"seconds": 0},
                            now=at("2026-03-12 00:00"))
    stack.admin.disable_user("mark")
    (refused,) = Scheduler(stack.admin, clock=clock("2026-03-12 07:00")).run_once()
    assert (refused.job_id, refused.error) == (
        None, "permission denied: the schedule's creator mark is disabled")
    assert refused.line() == ("schedule marks-check 2026-03-12 07:00 UTC: no job: permission "
                              "denied: the schedule's creator mark is disabled")
    assert stack.admin.schedule("marks-check").next_run_at == at("2026-03-13 07:00")
    assert stack.admin.audit.verify().ok


def test_managing_schedules_is_audited_and_refusals_change_nothing(stack):
    made = stack.mark.add_schedule("st", "0 5 * * *", "selftest", {"seconds": 0},
                                   now=at("2026-06-01 12:00"))
    assert made.next_run_at == at("2026-06-02 05:00")
    with pytest.raises(Conflict, match="schedule 'st' already exists"):
        stack.mia.add_schedule("st", "0 6 * * *", "selftest")
    for bad, error, message in [
        (("x", "0 25 * * *", "selftest"), InvalidInput, "bad cron expression '0 25 \\* \\* \\*'"),
        (("x", "0 5 * * *", "nope"), InvalidInput, "unknown job kind 'nope'"),
        (("x", "0 5 * * *", "selftest", {"steps": 0}), InvalidInput, "steps must be"),
        (("x", "0 5 * * *", "report-drift", {"deployment": "ghost", "since": "{previous_day}",
                                             "until": "{previous_day}"}),
         PermissionDenied, "may not have the platform make a drift report"),
        (("bad name!", "0 5 * * *", "selftest"), InvalidInput, "invalid schedule name"),
    ]:
        with pytest.raises(error, match=message):
            stack.mark.add_schedule(*bad)
    with pytest.raises(InvalidInput, match="unknown time zone 'Nowhere/Land'"):
        stack.mark.add_schedule("x", "0 5 * * *", "selftest", timezone="Nowhere/Land")
    with pytest.raises(NotFound, match="deployment 'ghost' not found"):
        stack.admin.add_schedule("x", "0 5 * * *", "report-drift",
                                 {"deployment": "ghost", "since": "{previous_day}",
                                  "until": "{previous_day}"})
    with pytest.raises(PermissionDenied, match="data_scientist dana may not manage schedule"):
        stack.dana.add_schedule("x", "0 5 * * *", "selftest")
    assert [s.name for s in stack.cora.schedules()] == ["st"]

    assert stack.mia.disable_schedule("st").next_run_at is None
    assert stack.admin.run_schedules(now=at("2026-06-10 00:00")) == []
    again = stack.mia.enable_schedule("st", now=at("2026-06-10 00:00"))
    assert (again.enabled, again.next_run_at) == (True, at("2026-06-10 05:00"))
    gone = stack.mark.remove_schedule("st")
    assert gone.name == "st" and stack.mark.schedules() == []
    with pytest.raises(NotFound, match="schedule 'st' not found"):
        stack.mark.schedule("st")
    assert [e.action for e in stack.admin.audit.log() if e.object_ref == "schedule:st"] == [
        "schedule.add", "schedule.disable", "schedule.enable", "schedule.remove"]
    assert count(stack.admin, t.Schedule) == 0


# --- the command line ----------------------------------------------------------------------


def test_cli_schedule_commands_and_the_scheduler_print_one_line_each(stack):
    s = stack.settings
    nexml(s, "schedule", "add", "bad", "--cron", "61 * * * *", "--kind", "selftest").refused(
        2, "bad cron expression '61 * * * *'")
    nexml(s, "schedule", "add", "st", "--cron", "0 5 * * *", "--kind", "selftest",
          token=stack.tokens["dana"]).refused(4, "data_scientist dana may not manage schedule st")
    added = nexml(s, "schedule", "add", "st", "--cron", "0 5 * * *", "--kind", "selftest",
                  "-p", "seconds=0", "--timezone", "Europe/Berlin").ok()
    assert added.out.startswith("schedule st: selftest at '0 5 * * *' (Europe/Berlin), next ")
    assert added.out.rstrip().endswith(" UTC")
    defaults = nexml(s, "schedule", "defaults").ok()
    assert defaults.out.startswith("schedule audit-monthly: report-audit at '0 6 1 * *' (UTC), "
                                   "next ")
    assert nexml(s, "schedule", "defaults").ok().out == "schedule audit-monthly already exists\n"
    listed = nexml(s, "schedule", "list").ok().out.splitlines()
    assert listed[0].split()[:5] == ["NAME", "CRON", "TIMEZONE", "KIND", "PARAMS"]
    assert [row.split()[0] for row in listed[1:]] == ["audit-monthly", "st"]
    assert "month={previous_month}" in listed[1]
    assert nexml(s, "schedule", "disable", "st").ok().out == (
        "schedule st: selftest at '0 5 * * *' (Europe/Berlin), disabled\n")
    assert "next " in nexml(s, "schedule", "enable", "st").ok().out
    none_due = nexml(s, "scheduler", "--once").ok()
    assert (none_due.out, none_due.err) == ("", "no schedule is due\n")

    # Missed months, then `nexml scheduler --once`: one line per fire, each fire once.
    created = t.utcnow() - timedelta(days=75)
    stack.admin.add_schedule("monthly", "0 6 1 * *", "report-audit",
                             {"month": "{previous_month}"}, now=created)
    ran = nexml(s, "scheduler", "--once").ok()
    expected = list(fires_between("0 6 1 * *", "UTC", created, t.utcnow()))
    assert len(expected) >= 2
    jobs = sorted(stack.admin.jobs(kind="report-audit"), key=lambda j: j.id)
    assert ran.out.splitlines() == [
        f"schedule monthly {fire:%Y-%m-%d} 06:00 UTC: job {job.id} report-audit queued "
        f"month={job.params['month']} since={job.params['since']} until={job.params['until']}"
        for fire, job in zip(expected, jobs, strict=True)
    ]
    assert [j.params["month"] for j in jobs] == [
        f"{(fire - timedelta(days=1)):%Y-%m}" for fire in expected]
    assert nexml(s, "scheduler", "--once").ok().err == "no schedule is due\n"
    runs = nexml(s, "schedule", "runs", "monthly").ok().out.splitlines()
    assert runs == list(reversed(ran.out.splitlines()))
    assert nexml(s, "schedule", "remove", "st").ok().out == "schedule st removed\n"
    nexml(s, "schedule", "remove", "st").refused(3, "schedule 'st' not found")


def test_the_scheduler_process_stops_on_sigterm(stack):
    proc = subprocess.Popen([sys.executable, "-m", "nexml_ext.cli", "scheduler", "--poll", "0.2"],
                            env=cli_env(stack.settings), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith("scheduler on ") and "Ctrl-C stops" in line
        stack.admin.add_schedule("soon", "0 5 * * *", "selftest", {"seconds": 0},
                                 now=t.utcnow() - timedelta(days=1))
        from .conftest import wait_for

        wait_for(lambda: stack.admin.jobs(), lambda jobs: len(jobs) >= 1,
                 "the running scheduler to submit the due fire")
        proc.terminate()
        out, err = proc.communicate(timeout=PATIENCE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.startswith("schedule soon ") and " selftest queued " in out
    assert err.strip().endswith("scheduler stopped")


# --- helpers -------------------------------------------------------------------------------


def _deploy(stack, german, fresh_artifact, name: str) -> str:
    train, holdout = split(german, "risk", test_size=0.25, seed=7)
    train_ref = stack.dana.register_dataset(train, "credit-train", split="train").ref
    holdout_ref = stack.dana.register_dataset(holdout, "credit-holdout", split="holdout").ref
    version = stack.dana.register_model(fresh_artifact(), "credit-risk",
                                        template="credit_scoring", datasets=[train_ref])
    for section, fields in demo_compliance().items():
        stack.dana.compliance(version.ref).set(section, fields)
    stack.mia.validate(version.ref, dataset=holdout_ref)
    stack.mark.approve(version.ref, findings="Validated on the holdout; documentation complete.")
    stack.mark.deploy(version.ref, name=name)
    return name
