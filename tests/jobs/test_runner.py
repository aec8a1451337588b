"""The job runner in process, on a real store: submit, run, fail, cancel, reap, permissions."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from nexml_ext.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from nexml_ext.jobs import JobCancelled, JobContext, JobLost, Worker, register_kind
from nexml_ext.jobs.registry import kinds
from nexml_ext.ml.data import split
from nexml_ext.store import tables as t
from nexml_ext.workspace.core import PLATFORM_USER

from .conftest import wait_for


def run_all(ws) -> list[str]:
    lines: list[str] = []
    Worker(ws, echo=lines.append).run(until_idle=True)
    return lines


def events(ws, action: str) -> list:
    return [e for e in ws.audit.log() if e.action == action]


def test_a_job_runs_to_succeeded_with_its_result_progress_and_log(stack):
    queued = stack.dana.submit_job("selftest", {"seconds": 0.2, "steps": 4})
    assert (queued.status, queued.attempts, queued.max_attempts) == ("queued", 0, 2)
    assert queued.params == {"seconds": 0.2, "steps": 4}

    lines = run_all(stack.admin)
    job = stack.dana.job(queued.id)
    assert lines == [f"job {job.id} selftest succeeded in {lines[0].split(' in ')[1]}"]
    assert "(attempt 1/2)" in lines[0]
    assert (job.status, job.progress, job.attempts, job.error) == ("succeeded", 1.0, 1, None)
    assert job.result["steps"] == 4 and job.result["worker"] == job.worker
    assert job.started_at <= job.finished_at
    log = [line.line for line in job.log]
    assert log[0] == "submitted by dana"
    assert log[1] == f"attempt 1/2 started on worker {job.worker}"
    assert [x for x in log if x.startswith("step ")] == [f"step {i}/4 done" for i in (1, 2, 3, 4)]
    assert log[-1] == "succeeded"
    assert [line.attempt for line in job.log][:2] == [0, 1]
    assert [str(x).split("] ", 1)[1] for x in stack.dana.job(job.id, log_tail=2).log] == [
        "step 4/4 done", "succeeded"]

    # Submitting is the submitter's audited act; finishing is the platform's.
    (submitted,) = events(stack.admin, "job.submit")
    assert (submitted.actor, submitted.object_ref) == ("dana", f"job:{job.id}")
    assert submitted.data["params"] == {"seconds": 0.2, "steps": 4}
    (finished,) = events(stack.admin, "job.finish")
    assert (finished.actor, finished.data["status"]) == (PLATFORM_USER, "succeeded")
    assert stack.admin.audit.verify().ok


def test_a_job_that_raises_ends_failed_with_the_error_and_its_log(stack):
    queued = stack.mark.submit_job("selftest", {"seconds": 0, "steps": 4, "fail": "disk on fire"})
    lines = run_all(stack.admin)
    job = stack.mark.job(queued.id, log_tail=None)
    assert lines[0].endswith("(attempt 1/2): RuntimeError: disk on fire")
    assert (job.status, job.error, job.attempts) == ("failed", "RuntimeError: disk on fire", 1)
    assert job.progress == pytest.approx(0.25)  # step 1 of 4 done, failed in step 2
    log = [line.line for line in job.log]
    assert "step 1/4 done" in log and "step 2/4: failing on purpose" in log
    assert any(x.startswith("Traceback") for x in log)  # kept for whoever debugs it
    assert log[-1] == "failed: RuntimeError: disk on fire"
    assert events(stack.admin, "job.finish")[0].data["error"] == "RuntimeError: disk on fire"


def test_cancelling_a_queued_job_is_immediate_and_no_worker_runs_it(stack):
    first = stack.dana.submit_job("selftest", {"seconds": 0})
    second = stack.dana.submit_job("selftest", {"seconds": 0})
    cancelled = stack.dana.cancel_job(first.id)
    assert (cancelled.status, cancelled.cancel_requested_by) == ("cancelled", "dana")
    assert cancelled.finished_at is not None
    lines = run_all(stack.admin)
    assert len(lines) == 1 and lines[0].startswith(f"job {second.id} selftest succeeded")
    job = stack.dana.job(first.id)
    assert (job.status, job.attempts, job.worker) == ("cancelled", 0, None)
    assert stack.dana.job(second.id).status == "succeeded"
    assert job.message == "cancelled by dana before it started"
    with pytest.raises(InvalidTransition, match=f"cannot cancel job {first.id}: it already "
                                                "cancelled"):
        stack.dana.cancel_job(first.id)
    with pytest.raises(InvalidTransition, match="already succeeded"):
        stack.mark.cancel_job(second.id)
    with pytest.raises(NotFound, match="job 999 not found"):
        stack.mark.cancel_job(999)
    (event,) = events(stack.admin, "job.cancel")
    assert (event.actor, event.data["was"]) == ("dana", "queued")


def test_cancelling_a_running_job_stops_it_at_its_next_checkpoint(stack):
    queued = stack.dana.submit_job("selftest", {"seconds": 600, "steps": 1000})
    worker = Worker(stack.admin, heartbeat_seconds=0.2, stale_after=30)
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    try:
        wait_for(lambda: stack.dana.job(queued.id), lambda j: j.progress > 0, "progress")
        asked = stack.mark.cancel_job(queued.id)  # a manager may cancel anyone's job
        assert (asked.status, asked.cancel_requested_by) == ("running", "mark")
        assert stack.mark.cancel_job(queued.id).status in {"running", "cancelled"}  # idempotent
        job = wait_for(lambda: stack.dana.job(queued.id, log_tail=None),
                       lambda j: j.status != "running", "the job to stop")
    finally:
        worker.stop()
        thread.join()
    assert (job.status, job.message, job.error) == ("cancelled", "cancelled by mark", None)
    assert job.progress < 1
    log = [line.line for line in job.log]
    assert "cancel requested by mark" in log and log[-1] == "cancelled"
    assert [e.data["was"] for e in events(stack.admin, "job.cancel")] == ["running"]


def _dataset_and_version(stack, german, fresh_artifact):
    train, holdout = split(german, "risk", test_size=0.25, seed=7)
    tr = stack.dana.register_dataset(train, "credit-train", split="train")
    ho = stack.dana.register_dataset(holdout, "credit-holdout", split="holdout")
    version = stack.dana.register_model(fresh_artifact(), "credit", template="credit_scoring",
                                        datasets=[tr.ref])
    return version, ho.ref


def test_a_validation_job_is_run_by_the_platform_for_its_submitter(stack, german, fresh_artifact):
    version, holdout = _dataset_and_version(stack, german, fresh_artifact)
    # Authorised at submission, as the submitter: only the author or a manager may ask.
    with pytest.raises(PermissionDenied, match="dave may not request a validation job on "
                                               f"{version.ref}: only its author"):
        stack.dave.submit_job("validation", {"ref": version.ref, "dataset": holdout})
    with pytest.raises(NotFound):
        stack.dana.submit_job("validation", {"ref": "credit:9", "dataset": holdout})
    with pytest.raises(NotFound):
        stack.dana.submit_job("validation", {"ref": version.ref, "dataset": "nope:1"})
    with pytest.raises(InvalidInput, match="missing parameter"):
        stack.dana.submit_job("validation", {"ref": version.ref})

    queued = stack.dana.submit_job("validation", {"ref": version.ref, "dataset": holdout})
    run_all(stack.admin)
    job = stack.dana.job(queued.id)
    assert job.status == "succeeded", job.error
    (validation,) = stack.dana.validations(version.ref)
    assert job.result["validation"] == validation.id
    assert job.result["status"] == validation.status
    assert job.result["artifact_sha256"] == version.artifact_sha256
    assert (validation.run_by, validation.requested_by) == (PLATFORM_USER, "dana")
    assert "validating" in " ".join(line.line for line in job.log)


def test_who_may_do_what_with_jobs(stack):
    mine = stack.dana.submit_job("selftest", {"seconds": 0})
    # Data scientists: their own jobs only; others may not cancel them (managers may).
    with pytest.raises(PermissionDenied, match=f"dave may not cancel job {mine.id}: only its "
                                               "author \\(dana\\)"):
        stack.dave.cancel_job(mine.id)
    with pytest.raises(PermissionDenied, match="cora may not cancel"):
        stack.cora.cancel_job(mine.id)
    with pytest.raises(NotFound):
        stack.dave.job(mine.id)
    assert stack.dave.jobs() == [] and [j.id for j in stack.dana.jobs()] == [mine.id]
    assert [j.id for j in stack.cora.jobs()] == [mine.id]
    # Workers and the reaper need job.run: a superadmin's workspace or the platform.
    for person in (stack.dana, stack.mark, stack.cora):
        with pytest.raises(PermissionDenied, match="may not run queued jobs"):
            Worker(person)
        with pytest.raises(PermissionDenied, match="may not run dead workers' jobs"):
            person.reap_jobs()
    with pytest.raises(PermissionDenied, match="platform nexml-platform may not test"):
        stack.admin._as_platform().submit_job("selftest", {})
    assert stack.dana.job(mine.id).status == "queued"  # nothing above changed it
    assert stack.dana.cancel_job(mine.id).status == "cancelled"


def test_bad_submissions_are_refused_and_record_nothing(stack):
    refusals = [
        (("nope", {}), "unknown job kind 'nope': known kinds are"),
        (("selftest", {"seconds": -1}), "seconds must be a number from 0 to 600"),
        (("selftest", {"seconds": "soon"}), "seconds must be a number"),
        (("selftest", {"steps": 2.5}), "steps must be a whole number"),
        (("selftest", {"sleep": 1}), "unknown parameter(s) sleep; it takes fail, seconds, steps"),
        (("selftest", ["seconds"]), "parameters must be a mapping"),
    ]
    for (kind, params), message in refusals:
        with pytest.raises(InvalidInput) as raised:
            stack.dana.submit_job(kind, params)
        assert message in str(raised.value)
    for attempts in (0, 11, True):
        with pytest.raises(InvalidInput, match="max_attempts must be 1..10"):
            stack.dana.submit_job("selftest", {}, max_attempts=attempts)
    with stack.admin._db.read() as s:
        assert s.scalar(select(func.count()).select_from(t.Job)) == 0
    assert events(stack.admin, "job.submit") == []


def _platform_info(ctx: JobContext) -> dict:
    ctx.progress(0.5, "looking")
    return {"as": ctx.workspace.principal.name, "by": ctx.submitted_by, "n": ctx.params["n"]}


def _not_json(ctx: JobContext) -> dict:
    return {"when": object()}


def _swallows(ctx: JobContext) -> dict:
    try:
        while True:
            ctx.progress(0.1, "spinning")
            time.sleep(0.01)
    except Exception:  # job code catching Exception must not swallow a cancel
        return {"swallowed": True}


def test_registered_kinds_run_as_the_platform_and_must_return_json(stack):
    register_kind("test-info", _platform_info, action="model.view", max_attempts=3)
    register_kind("test-not-json", _not_json, action="model.view")
    register_kind("test-info", _platform_info, action="model.view", max_attempts=3)  # again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_kind("test-info", _not_json, action="model.view")
    with pytest.raises(ValueError, match="unknown matrix action"):
        register_kind("test-bad", _not_json, action="model.fly")
    with pytest.raises(ValueError, match="invalid job kind name"):
        register_kind("Bad Name", _not_json, action="model.view")
    assert {"selftest", "validation", "test-info"} <= set(kinds())

    info = stack.dana.submit_job("test-info", {"n": 3})
    assert info.max_attempts == 3
    bad = stack.dana.submit_job("test-not-json", {})
    run_all(stack.admin)
    assert stack.dana.job(info.id).result == {"as": PLATFORM_USER, "by": "dana", "n": 3}
    failed = stack.dana.job(bad.id)
    assert failed.status == "failed"
    assert "returned a result that is not JSON" in failed.error


def test_a_cancel_is_not_swallowed_by_job_code_catching_exception(stack):
    register_kind("test-swallow", _swallows, action="model.view")
    queued = stack.dana.submit_job("test-swallow", {})
    worker = Worker(stack.admin)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    try:
        wait_for(lambda: stack.dana.job(queued.id), lambda j: j.progress > 0, "progress")
        stack.dana.cancel_job(queued.id)
    finally:
        thread.join()
    assert stack.dana.job(queued.id).status == "cancelled"


def test_the_reaper_requeues_a_silent_workers_job_and_that_worker_can_no_longer_write(stack):
    platform = stack.admin._as_platform()
    queued = stack.dana.submit_job("selftest", {"seconds": 0}, max_attempts=2)
    # A worker on another host claims the job, then goes silent (its heartbeat stops).
    claim = platform._claim_job("far-away-host:4242", kinds())
    assert claim.id == queued.id and claim.attempt == 1
    assert stack.admin.reap_jobs(stale_after=3600) == []  # a recent heartbeat: left alone
    wait_for(lambda: stack.admin.reap_jobs(stale_after=0.5), bool, "the reaper to act")
    job = stack.dana.job(queued.id)
    assert (job.status, job.attempts, job.worker) == ("queued", 1, None)
    assert job.message.startswith("requeued: worker far-away-host:4242 died (no heartbeat for")

    # The silent worker wakes up: every write it tries is refused, nothing is overwritten.
    ctx = JobContext(platform, claim)
    with pytest.raises(JobLost):
        ctx.progress(0.9, "still here")
    with pytest.raises(JobLost):
        ctx.log("still here")
    assert platform._finish_job(claim, "succeeded", result={"stale": True}) is None
    assert platform._job_beat(claim) is False

    # A second claim is attempt 2; when that worker goes silent too, the job ends failed.
    second = platform._claim_job("far-away-host:4343", kinds())
    assert second.attempt == 2
    wait_for(lambda: stack.admin.reap_jobs(stale_after=0.5), bool, "the reaper to act")
    job = stack.dana.job(queued.id, log_tail=None)
    assert (job.status, job.attempts, job.result) == ("failed", 2, {})
    assert job.error.startswith("worker far-away-host:4343 died (no heartbeat for")
    assert job.error.endswith("no attempts left (attempt 2/2)")
    assert [e.action for e in stack.admin.audit.log() if e.object_ref == f"job:{job.id}"] == [
        "job.submit", "job.requeue", "job.finish"]
    assert [x.attempt for x in job.log if "started on worker" in x.line] == [1, 2]


def test_a_cancel_requested_job_whose_worker_died_ends_cancelled(stack):
    platform = stack.admin._as_platform()
    queued = stack.dana.submit_job("selftest", {"seconds": 0})
    claim = platform._claim_job("far-away-host:1", kinds())
    stack.dana.cancel_job(queued.id)
    ctx = JobContext(platform, claim)
    with pytest.raises(JobCancelled):
        ctx.checkpoint()
    wait_for(lambda: stack.admin.reap_jobs(stale_after=0.2), bool, "the reaper to act")
    job = stack.dana.job(queued.id)
    assert job.status == "cancelled" and "worker far-away-host:1 died" in job.message


def test_worker_settings_are_checked(stack):
    with pytest.raises(InvalidInput, match="at least twice the heartbeat"):
        Worker(stack.admin, heartbeat_seconds=5, stale_after=6)
    with pytest.raises(InvalidInput, match="poll must be a positive number"):
        Worker(stack.admin, poll_seconds=0)
    with pytest.raises(InvalidInput, match="stale_after must be a positive"):
        stack.admin.reap_jobs(stale_after=0)


def _signal_turned_into_an_error(ctx: JobContext) -> dict:
    """Job code in which the worker's stop signal lands inside a call that turns it into
    another error, as a PostgreSQL query abandoned mid-protocol does to its session."""
    import os
    import signal

    ctx.progress(0.5, "working")
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
    except BaseException as exc:
        raise RuntimeError("could not roll back: another command is already in progress") \
            from exc
    return {}


def test_a_stop_signal_turned_into_another_error_still_gives_the_job_back(stack):
    import signal

    from nexml_ext.jobs import WorkerStopping

    register_kind("test-interrupted", _signal_turned_into_an_error, action="model.view")
    queued = stack.dana.submit_job("test-interrupted", {})
    worker = Worker(stack.admin)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    worker.install_signal_handlers()
    try:
        with pytest.raises(WorkerStopping):
            worker.run_once()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    job = stack.dana.job(queued.id)
    assert (job.status, job.attempts, job.worker) == ("queued", 0, None)
    assert job.message == f"returned to the queue: worker {worker.id} stopped"
