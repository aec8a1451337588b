"""Background and recorded work: a table of ``ws.jobs()`` with live progress of running jobs
and a cancel button on each one the viewer may cancel (their own; managers and superadmins
any), which calls ``ws.cancel_job`` and shows its refusal if any."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets

from ...errors import InvalidInput
from ...governance.roles import Grant, grant
from . import markup

ACTIVE = ("queued", "running")
COLUMNS = ["id", "kind", "status", "progress", "subject", "created_by", "created", "finished",
           "message"]


class JobsView(widgets.VBox):
    """Attributes: ``table`` (HTML), ``running`` (VBox of one row per active job),
    ``progress`` (job id → FloatProgress 0–1), ``cancel_buttons`` (job id → Button, for the
    active jobs the viewer may cancel and nobody asked to cancel yet), ``refresh_button``,
    ``message``, ``jobs`` (the last list read). ``refresh()`` re-reads; ``close()`` also stops
    the auto-refresh thread."""

    def __init__(self, ws: Any, *, refresh_seconds: float | None = None) -> None:
        if refresh_seconds is not None and not refresh_seconds > 0:
            raise InvalidInput(f"refresh_seconds must be positive, got {refresh_seconds}")
        self.ws = ws
        self.jobs: list[Any] = []
        self.table = widgets.HTML()
        self.running = widgets.VBox()
        self.progress: dict[int, widgets.FloatProgress] = {}
        self.cancel_buttons: dict[int, widgets.Button] = {}
        self._buttons: dict[int, widgets.Button] = {}
        self._rows: dict[int, widgets.HBox] = {}
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.message = markup.Message()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh_button.on_click(lambda _: self.refresh())
        self.refresh()
        super().__init__([widgets.HBox([self.refresh_button, self.message]), self.running,
                          self.table])
        self._thread: threading.Thread | None = None
        if refresh_seconds is not None:
            self._thread = threading.Thread(
                target=self._auto_refresh, args=(refresh_seconds,), daemon=True,
                name="nexml-jobs-view",
            )
            self._thread.start()

    def refresh(self, *, note: str | None = None) -> None:
        """Re-read the jobs from the Workspace; a refusal is shown in ``message``."""
        with self._lock:
            done, jobs = self.message.attempt(self.ws.jobs)
            if not done:
                return
            self.jobs = jobs
            self.table.value = markup.table(
                COLUMNS, [_row(job) for job in jobs],
                flagged=lambda row: row["status"] == "failed",
            )
            self._show_progress([job for job in jobs if job.status in ACTIVE])
            if note:
                self.message.ok(note)
            else:
                self.message.show(f"{len(jobs)} jobs, {len(self.progress)} running")

    def may_cancel(self, job: Any) -> bool:
        """Whether the viewer may cancel ``job`` (the matrix's ``job.cancel``, own or any)."""
        principal = self.ws.principal
        cell = grant(principal.role, "job.cancel")
        return cell is Grant.ALLOW or (cell is Grant.OWN and job.created_by == principal.name)

    def cancel(self, job_id: int) -> None:
        """Ask the Workspace to cancel ``job_id``; its answer (or refusal) goes to ``message``."""
        done, job = self.message.attempt(lambda: self.ws.cancel_job(job_id))
        if done:
            self.refresh(note=f"job {job.id} {job.kind}: " + (
                "cancelled" if job.status == "cancelled" else "cancel requested"))

    def close(self) -> None:
        """Stop refreshing and close the widget and its children."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for row in self._rows.values():
            row.close()
        for button in self._buttons.values():
            button.close()
        super().close()

    def _show_progress(self, active: list[Any]) -> None:
        for job_id in set(self._rows) - {job.id for job in active}:
            self._rows.pop(job_id).close()
            self.progress.pop(job_id).close()
            self._buttons.pop(job_id).close()
            self.cancel_buttons.pop(job_id, None)
        for job in active:
            if job.id not in self._rows:
                self.progress[job.id] = widgets.FloatProgress(min=0.0, max=1.0)
                label = widgets.Label(f"job {job.id} {job.kind}")
                button = widgets.Button(description="Cancel", icon="stop",
                                        button_style="warning")
                button.on_click(lambda _, job_id=job.id: self.cancel(job_id))
                self._buttons[job.id] = button
                self._rows[job.id] = widgets.HBox([label, self.progress[job.id],
                                                   widgets.Label(), button])
            self.progress[job.id].value = min(max(float(job.progress or 0.0), 0.0), 1.0)
            status = "cancelling" if job.cancel_requested_by else job.status
            self._rows[job.id].children[2].value = (
                f"{job.progress or 0:.0%} {status} {job.message or ''}".rstrip())
            button = self._buttons[job.id]
            if self.may_cancel(job) and not job.cancel_requested_by:
                button.layout.display = None
                self.cancel_buttons[job.id] = button
            else:
                button.layout.display = "none"
                self.cancel_buttons.pop(job.id, None)
        self.running.children = [self._rows[job.id] for job in active]

    def _auto_refresh(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.refresh()
            except Exception as exc:  # a dead connection must not kill the kernel's thread
                self.message.show(f"auto-refresh stopped: {exc}", "error")
                return


def _row(job: Any) -> dict[str, Any]:
    params = job.params or {}
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": f"{float(job.progress or 0):.0%}",
        "subject": params.get("ref") or params.get("dataset") or params.get("data"),
        "created_by": job.created_by,
        "created": f"{job.created_at:%Y-%m-%d %H:%M:%S}",
        "finished": f"{job.finished_at:%Y-%m-%d %H:%M:%S}" if job.finished_at else None,
        "message": job.error or job.message,
    }


def jobs_view(ws: Any, *, refresh_seconds: float | None = None) -> JobsView:
    """The principal's jobs (data scientists: their own; reviewers: all), newest first.

    Running and queued jobs get a progress bar. With ``refresh_seconds`` a background thread
    re-reads every that many seconds until ``close()``; otherwise use the Refresh button.
    """
    return JobsView(ws, refresh_seconds=refresh_seconds)
