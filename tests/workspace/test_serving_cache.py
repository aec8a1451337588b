"""The gateway caches route specs and served versions under a revision fingerprint read on every
request: every change a person makes — from another Workspace, with its own database engine, as
from another process — takes effect on the gateway's next request."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from nexml_ext.errors import AuthenticationFailed, Conflict
from nexml_ext.store import tables as t
from nexml_ext.workspace import routes


def recorded(ws) -> int:
    with ws._db.read() as s:
        return s.scalar(select(func.count()).select_from(t.PredictionRecord))


def test_every_change_takes_effect_on_the_next_request(world, german):
    s = world.stack
    v1 = world.approved(s.dana, "credit-risk")
    v2 = world.approved(s.dana, "credit-risk")
    spare = world.approved(s.dave, "spare-model")
    s.mark.deploy(v1.ref, name="main")
    s.mark.deploy(spare.ref, name="spare")
    _, key = s.mark.set_route("loans", {"default": "main"})
    gateway = s.admin._as_platform()  # its own engine and caches, like a server process
    assert gateway._db is not s.mark._db
    rows = german.drop(columns=["risk"]).head(3)

    def served(route_key: str) -> set[tuple[str, str]]:
        answers = gateway.predict("loans", rows, key=route_key)
        assert len(answers) == len(rows)
        return {(a.deployment, a.model_ref) for a in answers}

    assert served(key) == {("main", v1.ref)}
    state = routes._SERVING[gateway._db]
    assert served(key) == {("main", v1.ref)}
    assert routes._SERVING[gateway._db] is state, "nothing changed: the cache is reused"
    assert "loans" in state.routes and "main" in state.served

    # a changed route
    s.mark.set_route("loans", {"default": "spare"})
    assert served(key) == {("spare", spare.ref)}

    # a rotated key: the old one is refused at once and nothing is scored
    new_key = s.mark.rotate_route_key("loans")
    before = recorded(s.cora)
    with pytest.raises(AuthenticationFailed, match="wrong key"):
        gateway.predict("loans", rows, key=key)
    assert recorded(s.cora) == before
    assert served(new_key) == {("spare", spare.ref)}

    # a deploy that switches the version a deployment serves, then a rollback
    s.mark.set_route("loans", {"default": "main"})
    assert served(new_key) == {("main", v1.ref)}
    s.mark.deploy(v2.ref, name="main")
    assert served(new_key) == {("main", v2.ref)}
    s.mark.rollback("main", to=v1.ref)
    assert served(new_key) == {("main", v1.ref)}
    assert routes._SERVING[gateway._db] is not state

    # a retire: the route no longer fits its deployments, and nothing is scored
    s.mark.retire(v1.ref, reason="Superseded by a later model.")
    before = recorded(s.cora)
    with pytest.raises(Conflict, match="route loans no longer fits its deployments"):
        gateway.predict("loans", rows, key=new_key)
    assert recorded(s.cora) == before
    assert s.cora.audit.verify().ok
