"""Users and tokens through the Workspace: secrets never stored, refusals change nothing."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text

from nexml_ext.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NexmlError,
    NotFound,
    PermissionDenied,
)
from nexml_ext.store import tables as t
from nexml_ext.store.database import Database
from nexml_ext.store.tables import Base
from nexml_ext.workspace import Workspace

TOKEN = re.compile(r"^nxm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@pytest.fixture
def db(stack) -> Iterator[Database]:
    """A separate connection to the stack's database, for looking behind the Workspace."""
    database = Database(stack.settings.database_url)
    yield database
    database.dispose()


def snapshot(db: Database) -> dict[str, object]:
    """Row count of every table, and the events chain head."""
    with db.engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        state: dict[str, object] = {
            name: conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            for name in tables
        }
        state["events chain head"] = conn.execute(
            text("SELECT seq, hash FROM chain_heads WHERE chain = 'events'")
        ).one()
    assert set(Base.metadata.tables) <= set(tables)
    return state


def events(db: Database) -> list[tuple]:
    with db.engine.connect() as conn:
        return list(
            conn.execute(text("SELECT seq, actor, action, object_ref FROM events ORDER BY seq"))
        )


def expire(db: Database, token_id: str) -> None:
    """Let time pass: the token's expiry moves into the past."""
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE tokens SET expires_at = :past WHERE id = :id"),
            {"past": past, "id": token_id},
        )


def refused(db: Database, call: Callable[[], object], kind: type[NexmlError], *words: str) -> str:
    """Assert ``call`` raises exactly ``kind`` and changes no table and not the chain head."""
    before = snapshot(db)
    with pytest.raises(kind) as raised:
        call()
    assert type(raised.value) is kind, f"{type(raised.value).__name__}: {raised.value}"
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert snapshot(db) == before, f"refused call changed the store: {message}"
    return message


def test_tokens_are_256_bit_secrets_in_a_fixed_format(stack):
    _, created = stack.dana.create_token(label="second")
    _, for_bob = stack.admin.add_user("bob", "manager")
    all_tokens = [*stack.tokens.values(), created, for_bob]
    for token in all_tokens:
        match = TOKEN.match(token)
        assert match, token
        secret = match.group(2)
        assert len(base64.urlsafe_b64decode(secret + "=")) == 32  # 256 bits
    assert len(set(all_tokens)) == len(all_tokens)
    assert len({TOKEN.match(tok).group(1) for tok in all_tokens}) == len(all_tokens)


def test_the_secret_is_stored_nowhere_only_its_sha256(stack, db):
    info, extra = stack.dana.create_token(label="extra", expires_in_days=3)
    stack.dana.revoke_token(info.id)
    tokens = {**stack.tokens, "extra": extra}

    with db.engine.connect() as conn:
        dump = []
        for name in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{name}"')):
                dump.extend(str(value) for value in row)
        stored = dict(conn.execute(text("SELECT id, secret_sha256 FROM tokens")).all())
    everything = "\n".join(dump)
    assert len(stored) == len(tokens)

    for token in tokens.values():
        token_id, secret = TOKEN.match(token).groups()
        assert secret not in everything
        assert token not in everything
        assert secret[:20] not in everything  # not even a prefix
        assert stored[token_id] == hashlib.sha256(secret.encode()).hexdigest()
        assert token_id in everything  # the public id is how a token is found


def test_each_kind_of_bad_token_is_refused_with_its_own_message(stack, db):
    settings = stack.settings
    revoked_info, revoked = stack.dana.create_token(label="to revoke")
    stack.dana.revoke_token(revoked_info.id)
    expired_info, expired = stack.dana.create_token(expires_in_days=1)
    expire(db, expired_info.id)
    stack.admin.disable_user("dave")
    dana_id, _ = TOKEN.match(stack.tokens["dana"]).groups()
    cases = {
        "revoked": (revoked, [revoked_info.id, "revoked"]),
        "expired": (expired, [expired_info.id, "expired"]),
        "disabled": (stack.tokens["dave"], ["user dave is disabled"]),
        "malformed": ("nxm_not-a-token", ["not an nexml token"]),
        "unknown id": ("nxm_" + "0" * 16 + "_" + "A" * 43, ["unknown token"]),
        "wrong secret": (f"nxm_{dana_id}_" + "A" * 43, ["unknown token"]),
    }
    messages = {}
    for case, (token, words) in cases.items():
        messages[case] = refused(
            db, lambda token=token: Workspace.open(settings, token), AuthenticationFailed, *words
        )
        assert messages[case].startswith("token refused"), messages[case]
    # An unknown id and a wrong secret must not be told apart; everything else is distinct.
    assert messages["unknown id"] == messages["wrong secret"]
    assert len(set(messages.values())) == 5
    # The good tokens still work.
    with Workspace.open(settings, stack.tokens["dana"]) as ws:
        assert str(ws.whoami()) == "data_scientist dana"


def test_a_data_scientist_cannot_revoke_someone_elses_token(stack, db):
    info, other = stack.dave.create_token(label="dave's")
    message = refused(db, lambda: stack.dana.revoke_token(info.id), PermissionDenied, "dave")
    assert "data_scientist dana" in message
    with Workspace.open(stack.settings, other) as ws:
        assert ws.principal.name == "dave"
    refused(db, lambda: stack.dana.tokens("dave"), PermissionDenied)
    refused(db, lambda: stack.dana.create_token("dave"), PermissionDenied)


def test_the_last_active_superadmin_cannot_be_disabled(stack, db):
    refused(db, lambda: stack.admin.disable_user("ada"), InvalidInput, "last active superadmin")
    _, sam_token = stack.admin.add_user("sam", "superadmin")
    stack.admin.disable_user("ada")  # another superadmin is active now
    with Workspace.open(stack.settings, sam_token) as sam:
        refused(db, lambda: sam.disable_user("sam"), InvalidInput, "last active superadmin")
        assert {u.name: u.disabled for u in sam.users()}["ada"] is True
    refused(db, lambda: Workspace.open(stack.settings, stack.tokens["ada"]), AuthenticationFailed)


def test_refused_identity_calls_change_nothing(stack, db):
    admin, dana = stack.admin, stack.dana
    refused(db, lambda: dana.add_user("eve", "manager"), PermissionDenied, "permission denied")
    refused(db, lambda: dana.users(), PermissionDenied)
    refused(db, lambda: dana.disable_user("dave"), PermissionDenied)
    refused(db, lambda: admin.add_user("dana", "manager"), Conflict, "already exists")
    refused(db, lambda: admin.add_user("eve", "wizard"), InvalidInput, "superadmin")
    refused(db, lambda: admin.add_user("eve", "platform"), InvalidInput, "unknown role")
    refused(db, lambda: admin.add_user("not a name", "manager"), InvalidInput, "invalid user name")
    refused(db, lambda: admin.disable_user("nobody"), NotFound)
    refused(db, lambda: admin.disable_user("nexml-platform"), InvalidInput)
    refused(db, lambda: admin.create_token("nobody"), NotFound)
    refused(db, lambda: admin.create_token("nexml-platform"), InvalidInput)
    refused(db, lambda: admin.create_token(expires_in_days=0), InvalidInput, "expiry")
    refused(db, lambda: admin.create_token(expires_in_days=-1), InvalidInput, "expiry")
    refused(db, lambda: admin.create_token(label="x" * 200), InvalidInput, "label")
    refused(db, lambda: dana.revoke_token("0" * 16), NotFound)
    admin.disable_user("dave")
    refused(db, lambda: admin.disable_user("dave"), InvalidInput, "already disabled")
    refused(db, lambda: admin.create_token("dave"), InvalidInput, "disabled")
    info, _ = dana.create_token()
    dana.revoke_token(info.id)
    refused(db, lambda: dana.revoke_token(info.id), InvalidInput, "already revoked")


def test_each_identity_change_appends_exactly_one_event(stack, db):
    def changes(call: Callable[[], object]) -> tuple[object, tuple]:
        before, seen = snapshot(db), events(db)
        result = call()
        after, now = snapshot(db), events(db)
        assert now[: len(seen)] == seen
        assert len(now) == len(seen) + 1
        assert after["events"] == before["events"] + 1
        assert after["events chain head"] != before["events chain head"]
        return result, now[-1]

    (bob, _), event = changes(lambda: stack.admin.add_user("bob", "data_scientist"))
    assert bob.role == "data_scientist"
    assert tuple(event)[1:] == ("ada", "user.add", "user:bob")

    (info, _), event = changes(lambda: stack.dana.create_token(label="laptop"))
    assert tuple(event)[1:] == ("dana", "token.create", f"token:{info.id}")

    (other, _), event = changes(lambda: stack.admin.create_token("mark", expires_in_days=2))
    assert tuple(event)[1:] == ("ada", "token.create", f"token:{other.id}")
    assert other.user == "mark" and other.expires_at is not None

    _, event = changes(lambda: stack.dana.revoke_token(info.id))
    assert tuple(event)[1:] == ("dana", "token.revoke", f"token:{info.id}")

    _, event = changes(lambda: stack.admin.revoke_token(other.id))
    assert tuple(event)[1:] == ("ada", "token.revoke", f"token:{other.id}")

    _, event = changes(lambda: stack.admin.disable_user("bob"))
    assert tuple(event)[1:] == ("ada", "user.disable", "user:bob")

    with db.read() as s:
        data = s.scalars(select(t.Event.data).order_by(t.Event.seq)).all()
    assert data[-6]["role"] == "data_scientist"
    assert data[-4]["user"] == "mark" and data[-4]["expires_at"]
    assert stack.admin.audit.verify().ok
