"""Use cases for people and their tokens."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from ..errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ..governance import tokens
from ..governance.naming import check_name
from ..governance.roles import Role
from ..store import tables as t
from . import views
from .core import PLATFORM_USER, WorkspaceCore

MAX_TOKEN_DAYS = 3650


def issue_token(
    s, user: t.User, label: str = "", expires_in_days: float | None = None
) -> tuple[t.Token, str]:
    """Create a token row for ``user``; returns the row and the secret token (shown once)."""
    if expires_in_days is not None and not 0 < expires_in_days <= MAX_TOKEN_DAYS:
        raise InvalidInput(
            f"token expiry must be between 0 and {MAX_TOKEN_DAYS} days, got {expires_in_days}"
        )
    if len(label) > 128:
        raise InvalidInput("token label must be at most 128 characters")
    token_id, secret, full = tokens.new_token()
    expires = t.utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    row = t.Token(
        id=token_id,
        user_id=user.id,
        secret_sha256=tokens.hash_secret(secret),
        label=label,
        expires_at=expires,
    )
    s.add(row)
    s.flush()
    row.user = user
    return row, full


class IdentityMixin(WorkspaceCore):
    """Users and tokens (``user.manage`` for others, ``token.own`` for oneself)."""

    def add_user(self, name: str, role: str) -> tuple[views.User, str]:
        """Create a user with one role and a first token.

        Returns the user and the token, which is shown once and never stored in clear.
        Raises PermissionDenied, InvalidInput (bad name, unknown role), Conflict (name taken).
        """
        self._authorize("user.manage", "users")
        check_name("user", name)
        parsed = Role.parse(role)
        with self._write() as s:
            if s.execute(select(t.User.id).where(t.User.name == name)).first():
                raise Conflict(f"user {name!r} already exists")
            user = t.User(name=name, role=parsed.value, created_by=self.principal.name)
            s.add(user)
            try:
                s.flush()
            except DbIntegrityError as exc:
                raise Conflict(f"user {name!r} already exists") from exc
            token, secret = issue_token(s, user, label="first token")
            self._event(s, "user.add", f"user:{name}", role=parsed.value, token=token.id)
            return views.User.of(user), secret

    def users(self) -> list[views.User]:
        """Every user, people first by name (the platform's own identity excluded)."""
        self._authorize("user.manage", "users")
        with self._read() as s:
            rows = s.scalars(
                select(t.User).where(t.User.name != PLATFORM_USER).order_by(t.User.name)
            )
            return [views.User.of(r) for r in rows]

    def disable_user(self, name: str) -> views.User:
        """Disable a user: their tokens stop working at once. The last superadmin stays."""
        self._authorize("user.manage", "users")
        with self._write() as s:
            user = self._user_row(s, name)
            if user.name == PLATFORM_USER:
                raise InvalidInput("the platform's own identity cannot be disabled")
            if user.disabled:
                raise InvalidInput(f"user {name!r} is already disabled")
            if user.role == Role.SUPERADMIN.value:
                active = s.scalar(
                    select(func.count())
                    .select_from(t.User)
                    .where(t.User.role == Role.SUPERADMIN.value, t.User.disabled.is_(False))
                )
                if active <= 1:
                    raise InvalidInput(f"cannot disable {name!r}: it is the last active superadmin")
            user.disabled = True
            self._event(s, "user.disable", f"user:{name}")
            return views.User.of(user)

    def create_token(
        self, user: str | None = None, *, label: str = "", expires_in_days: float | None = None
    ) -> tuple[views.TokenInfo, str]:
        """A new token for ``user`` (default: oneself); the secret is returned once."""
        target = user or self.principal.name
        self._authorize("token.own" if target == self.principal.name else "user.manage", "tokens")
        with self._write() as s:
            row = self._user_row(s, target)
            if row.disabled:
                raise InvalidInput(f"user {target!r} is disabled; enable it before issuing tokens")
            if row.name == PLATFORM_USER:
                raise InvalidInput("the platform's own identity has no tokens")
            token, secret = issue_token(s, row, label, expires_in_days)
            self._event(
                s,
                "token.create",
                f"token:{token.id}",
                user=target,
                expires_at=token.expires_at.isoformat() if token.expires_at else None,
            )
            return views.TokenInfo.of(token), secret

    def tokens(self, user: str | None = None) -> list[views.TokenInfo]:
        """Tokens (never their secrets) of ``user``; default oneself, ``"*"`` for all."""
        target = user or self.principal.name
        self._authorize("token.own" if target == self.principal.name else "user.manage", "tokens")
        with self._read() as s:
            query = select(t.Token).join(t.User).order_by(t.Token.created_at)
            if target != "*":
                query = query.where(t.User.name == target)
            return [views.TokenInfo.of(r) for r in s.scalars(query)]

    def revoke_token(self, token_id: str) -> views.TokenInfo:
        """Revoke a token by its id (the ``nxm_<id>_…`` part); one's own or, for admins, any."""
        with self._write() as s:
            row = s.get(t.Token, token_id)
            if row is None:
                raise NotFound(f"token {token_id!r} not found")
            owner = row.user.name
            try:
                self._authorize(
                    "token.own" if owner == self.principal.name else "user.manage", "tokens"
                )
            except PermissionDenied as exc:
                raise PermissionDenied(f"{exc}: token {token_id} belongs to {owner}") from None
            if row.revoked_at is not None:
                raise InvalidInput(f"token {token_id} is already revoked")
            row.revoked_at = t.utcnow()
            self._event(s, "token.revoke", f"token:{token_id}", user=owner)
            return views.TokenInfo.of(row)
