"""Reading background and recorded work: training runs, analyses (and, later, reports)."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import InvalidInput, NotFound
from ..governance.roles import Role
from ..store import tables as t
from . import views
from .core import WorkspaceCore


class JobsMixin(WorkspaceCore):
    def jobs(self, *, kind: str | None = None, limit: int = 50) -> list[views.Job]:
        """Recent jobs, newest first. Data scientists see their own; reviewers see all."""
        self._authorize("model.view")
        if limit < 1:
            raise InvalidInput(f"limit must be a positive number, got {limit}")
        query = select(t.Job).order_by(t.Job.id.desc()).limit(limit)
        if kind:
            query = query.where(t.Job.kind == kind)
        if self.principal.role is Role.DATA_SCIENTIST:
            query = query.where(t.Job.created_by == self.principal.name)
        with self._read() as s:
            return [views.Job.of(row) for row in s.scalars(query)]

    def job(self, job_id: int) -> views.Job:
        """One job by id (data scientists: their own only)."""
        self._authorize("model.view")
        with self._read() as s:
            row = s.get(t.Job, job_id)
            mine = row is not None and (
                self.principal.role is not Role.DATA_SCIENTIST
                or row.created_by == self.principal.name
            )
            if not mine:
                raise NotFound(f"job {job_id} not found")
            return views.Job.of(row)
