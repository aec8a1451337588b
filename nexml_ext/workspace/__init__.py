"""The application layer: every use case, acting as one authenticated principal.

``Workspace`` is the only place that combines governance, ML and storage. Surfaces (CLI, magics,
widgets, REST) parse input, call a Workspace method, and render what it returns; they hold no
rules. Open one with :func:`nexml_ext.connect` (reads ``NEXML_TOKEN`` or the credentials file) or
create a new store with :meth:`Workspace.init`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import select

from ..config import Settings
from ..errors import AuthenticationFailed, Conflict
from ..governance import tokens
from ..governance.audit import GENESIS
from ..governance.naming import check_name
from ..governance.roles import Principal, Role
from ..store import tables as t
from ..store.artifacts import ArtifactStore
from ..store.database import Database
from .analysis import AnalysisMixin
from .audit import AuditTrail
from .batch import BatchMixin
from .compliance import ComplianceMixin, ComplianceRecord
from .core import EVENTS_CHAIN, PLATFORM_USER
from .datasets import DatasetsMixin
from .decisions import DecisionsMixin
from .identity import IdentityMixin, issue_token
from .jobs import JobsMixin
from .models import ModelsMixin
from .monitoring import MonitoringMixin
from .overview import OverviewMixin
from .predictions import PredictionsMixin
from .reports import ReportsMixin
from .retraining import RetrainingMixin
from .review import ReviewMixin
from .routes import RoutesMixin
from .schedules import SchedulesMixin
from .training import TrainingMixin

__all__ = ["Workspace", "ComplianceRecord"]


class Workspace(
    IdentityMixin,
    DatasetsMixin,
    TrainingMixin,
    ModelsMixin,
    ComplianceMixin,
    DecisionsMixin,
    RoutesMixin,
    AnalysisMixin,
    BatchMixin,
    JobsMixin,
    PredictionsMixin,
    ReportsMixin,
    ReviewMixin,
    SchedulesMixin,
    RetrainingMixin,
    MonitoringMixin,
    OverviewMixin,
):
    """Every nexml-ext use case, as one principal. See the mixins for each concern."""

    @property
    def audit(self) -> AuditTrail:
        """The audit trail: ``verify()`` and ``log(...)``."""
        return AuditTrail(self)

    @classmethod
    def open(cls, settings: Settings | None = None, token: str | None = None) -> Workspace:
        """Authenticate ``token`` (default: settings, then the credentials file) and open.

        Raises NotInitialised, SchemaOutOfDate, AuthenticationFailed.
        """
        settings = settings or Settings.from_env()
        db = Database(settings.database_url)
        try:
            db.check_schema()
            principal = authenticate(db, token or settings.token or read_credentials(settings))
        except Exception:
            db.dispose()
            raise
        return cls(settings, db, ArtifactStore(settings.artifact_root), principal)

    @classmethod
    def init(
        cls, settings: Settings | None = None, admin: str | None = None
    ) -> tuple[Workspace, str]:
        """Create the store (migrations), the platform identity and the first superadmin.

        Writes the superadmin's token to ``<home>/credentials`` (mode 0600) and returns the
        open Workspace and the token. Raises Conflict if a store with users already exists.
        """
        settings = settings or Settings.from_env()
        admin = check_name("user", admin or os.environ.get("USER") or "admin")
        db = Database(settings.database_url)
        try:
            db.upgrade()
            with db.write() as s:
                if s.execute(select(t.User.id).limit(1)).first():
                    raise Conflict(f"a store already exists at {db.safe_url}; nothing was changed")
                s.add(t.ChainHead(chain=EVENTS_CHAIN, seq=0, hash=GENESIS))
                s.add(t.User(name=PLATFORM_USER, role=Role.PLATFORM.value, created_by="init"))
                user = t.User(name=admin, role=Role.SUPERADMIN.value, created_by="init")
                s.add(user)
                s.flush()
                token, secret = issue_token(s, user, label="created by nexml init")
                ws = cls(
                    settings,
                    db,
                    ArtifactStore(settings.artifact_root),
                    Principal(admin, Role.SUPERADMIN),
                )
                ws._event(
                    s, "store.init", "store", superadmin=admin, token=token.id, database=db.safe_url
                )
        except Exception:
            db.dispose()
            raise
        write_credentials(settings, admin, secret)
        return ws, secret

    def close(self) -> None:
        """Release database connections."""
        self._db.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workspace {self.principal} at {self._db.safe_url}>"


def authenticate(db: Database, token: str | None) -> Principal:
    """The principal a token stands for; AuthenticationFailed saying why not."""
    if not token:
        raise AuthenticationFailed(
            "no token: set NEXML_TOKEN or pass one (`nexml init` writes the first superadmin's)"
        )
    token_id, secret = tokens.parse_token(token)
    with db.read() as s:
        row = s.get(t.Token, token_id)
        # Compare against a dummy hash when the id is unknown, so both paths cost the same.
        stored = row.secret_sha256 if row is not None else "0" * 64
        if not tokens.secret_matches(secret, stored) or row is None:
            raise AuthenticationFailed("token refused: unknown token")
        if row.revoked_at is not None:
            raise AuthenticationFailed(
                f"token refused: {token_id} was revoked at {row.revoked_at:%Y-%m-%d %H:%M} UTC"
            )
        if row.expires_at is not None and row.expires_at <= t.utcnow():
            raise AuthenticationFailed(
                f"token refused: {token_id} expired at {row.expires_at:%Y-%m-%d %H:%M} UTC"
            )
        if row.user.disabled:
            raise AuthenticationFailed(f"token refused: user {row.user.name} is disabled")
        return Principal(row.user.name, Role(row.user.role))


def read_credentials(settings: Settings) -> str | None:
    """The token in ``<home>/credentials``, or None if there is no such file."""
    path = settings.credentials_path
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("token")
    except (json.JSONDecodeError, AttributeError):
        raise AuthenticationFailed(
            f"credentials file {path} is not valid; set NEXML_TOKEN"
        ) from None


def write_credentials(settings: Settings, user: str, token: str) -> Path:
    """Write the token to ``<home>/credentials``, readable by its owner only (0600)."""
    path = settings.credentials_path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"user": user, "token": token}, handle)
    os.replace(tmp, path)
    return path
