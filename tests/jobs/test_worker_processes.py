"""`nexml worker` subprocesses: crashes (kill -9), stops, races between workers, and the CLI."""

from __future__ import annotations

import re
import signal
from collections import Counter

import pytest

from nexml_ext.store import tables as t

from .conftest import nexml, wait_for

FAST = ("--heartbeat", "0.3", "--poll", "0.2")


def _running_with_progress(ws, job_id, worker):
    def read():
        if worker.proc.poll() is not None:
            worker.finish()
            pytest.fail(f"worker exited {worker.proc.returncode}: {worker.err}")
        return ws.job(job_id)

    return wait_for(read, lambda j: j.status == "running" and j.progress > 0,
                    f"job {job_id} to run and report progress")


def test_kill_9_mid_job_requeues_it_and_a_second_worker_finishes_it(stack, workers):
    queued = stack.dana.submit_job("selftest", {"seconds": 8, "steps": 80}, max_attempts=2)
    first = workers(*FAST)
    job = _running_with_progress(stack.dana, queued.id, first)
    assert job.worker == first.id and job.attempts == 1

    first.signal(signal.SIGKILL)
    assert first.finish() == -signal.SIGKILL
    assert stack.dana.job(queued.id).status == "running"  # what the reaper exists for

    second = workers("--until-idle", *FAST)
    assert second.finish() == 0, second.err
    job = stack.dana.job(queued.id, log_tail=None)
    assert (job.status, job.attempts, job.worker) == ("succeeded", 2, second.id)
    assert job.result["worker"] == second.id and job.result["attempt"] == 2
    assert re.fullmatch(rf"job {job.id} selftest succeeded in [0-9.]+ s \(attempt 2/2\)\n",
                        second.out), second.out
    log = [line.line for line in job.log]
    died = f"requeued: worker {first.id} died (its process is gone) during attempt 1/2"
    assert died in log
    assert log.index(died) < log.index(f"attempt 2/2 started on worker {second.id}")
    requeued = [e for e in stack.admin.audit.log() if e.action == "job.requeue"]
    assert [(e.object_ref, e.data["worker"]) for e in requeued] == [(f"job:{job.id}", first.id)]


def test_kill_9_with_no_attempts_left_ends_failed_never_running(stack, workers):
    queued = stack.dana.submit_job("selftest", {"seconds": 60, "steps": 600}, max_attempts=1)
    first = workers(*FAST)
    _running_with_progress(stack.dana, queued.id, first)
    first.signal(signal.SIGKILL)
    first.finish()

    reaped = nexml(stack.settings, "jobs", "reap").ok()
    message = f"worker {first.id} died (its process is gone); no attempts left (attempt 1/1)"
    assert reaped.out.splitlines() == [f"job {queued.id} selftest failed: {message}"]
    job = stack.dana.job(queued.id)
    assert (job.status, job.error) == ("failed", message)
    assert nexml(stack.settings, "jobs", "reap").ok().out.strip() == (
        "no running job has a dead worker")


def test_sigterm_gives_the_running_job_back_without_using_an_attempt(stack, workers):
    queued = stack.dana.submit_job("selftest", {"seconds": 60, "steps": 600})
    worker = workers(*FAST)
    _running_with_progress(stack.dana, queued.id, worker)
    worker.signal(signal.SIGTERM)
    assert worker.finish() == 0
    assert worker.err.splitlines()[-1] == (
        f"worker {worker.id} stopped; its job went back to the queue")
    job = stack.dana.job(queued.id)
    assert (job.status, job.attempts, job.worker) == ("queued", 0, None)
    assert job.message == f"returned to the queue: worker {worker.id} stopped"


def test_two_workers_never_run_the_same_job(stack, workers):
    ids = [stack.dana.submit_job("selftest", {"seconds": 0.2, "steps": 1}).id for _ in range(10)]
    pair = [workers("--until-idle", *FAST) for _ in range(2)]
    for w in pair:
        assert w.finish() == 0, w.err
    ran = Counter(int(m) for w in pair for m in re.findall(r"^job (\d+) selftest succeeded",
                                                           w.out, re.M))
    assert ran == Counter(ids)  # each job exactly once, by one worker or the other
    with stack.admin._db.read() as s:
        rows = s.query(t.Job).order_by(t.Job.id).all()
        starts = Counter(
            line.job_id for line in s.query(t.JobLog) if "started on worker" in line.line
        )
    assert [(r.status, r.attempts) for r in rows] == [("succeeded", 1)] * 10
    assert starts == Counter(ids)
    assert {r.worker for r in rows} <= {w.id for w in pair}


def test_the_jobs_commands(stack, workers):
    dana = stack.tokens["dana"]
    submitted = nexml(stack.settings, "jobs", "submit", "selftest", "-p", "seconds=60",
                      "-p", "steps=600", token=dana).ok()
    job_id = int(re.fullmatch(r"job (\d+) selftest queued \(max attempts 2\)\n",
                              submitted.out).group(1))
    nexml(stack.settings, "jobs", "submit", "selftest", "-p", "steps=x",
          token=dana).refused(2, "steps must be a number from 1 to 1000, got 'x'")
    nexml(stack.settings, "jobs", "submit", "selftest", "-p", "oops",
          token=dana).refused(2, "--param 'oops': expected NAME=VALUE")
    nexml(stack.settings, "jobs", "submit", "sleep", token=dana).refused(
        2, "unknown job kind 'sleep'")
    nexml(stack.settings, "jobs", "cancel", str(job_id), token=stack.tokens["dave"]).refused(
        4, f"dave may not cancel job {job_id}: only its author (dana) may")
    nexml(stack.settings, "worker", token=dana).refused(4, "dana may not run queued jobs")

    worker = workers(*FAST)
    _running_with_progress(stack.dana, job_id, worker)
    table = nexml(stack.settings, "jobs", token=dana).ok().out.splitlines()
    assert table[0].split() == ["ID", "KIND", "STATUS", "PROGRESS", "BY", "AGE", "MESSAGE"]
    assert re.match(rf"{job_id}\s+selftest\s+running\s+\[[#.]{{10}}\]\s+\d+%\s+dana\s+\d+[smhd]\s+"
                    r"step \d+/600", table[1]), table[1]

    shown = nexml(stack.settings, "jobs", "show", str(job_id), token=dana).ok().out
    assert shown.startswith(f"job {job_id} selftest: running\n")
    assert f"  worker    {worker.id}, heartbeat " in shown
    assert '  params    {"seconds": 60.0, "steps": 600}' in shown
    assert "  attempts  1/2" in shown and "log:\n" in shown and "submitted by dana" in shown

    cancelled = nexml(stack.settings, "jobs", "cancel", str(job_id), token=dana).ok()
    assert cancelled.out == (f"job {job_id} selftest: cancel requested; worker {worker.id} stops "
                             "it at its next progress checkpoint\n")
    wait_for(lambda: stack.dana.job(job_id), lambda j: j.status == "cancelled", "the cancel")
    worker.signal(signal.SIGTERM)
    assert worker.finish() == 0
    assert re.fullmatch(rf"job {job_id} selftest cancelled in [0-9.]+ s \(attempt 1/2\), "
                        r"cancelled by dana\n", worker.out), worker.out
    shown = nexml(stack.settings, "jobs", "show", str(job_id), "--log-lines", "1",
                  token=dana).ok().out
    assert "  cancel    requested by dana" in shown and shown.endswith("] cancelled\n")
    nexml(stack.settings, "jobs", "cancel", str(job_id), token=dana).refused(
        6, f"cannot cancel job {job_id}: it already cancelled")
    nexml(stack.settings, "jobs", "show", str(job_id), token=stack.tokens["dave"]).refused(
        3, f"job {job_id} not found")
    assert nexml(stack.settings, "jobs", "--all", token=stack.tokens["dave"]).ok().out == (
        "(none)\n")

    once = nexml(stack.settings, "worker", "--once")
    assert once.ok().out == "" and once.err.splitlines()[-1] == "no job queued"
