"""``POST /v1/routes/{route}/outcomes`` in-process (httpx over ASGI), on each backend: outcomes
reach only the decisions made through the caller's route, all of them or none, and each call is
an audited event."""

from __future__ import annotations

import hashlib
import json

import pytest

from nexml_ext.api import create_app
from nexml_ext.errors import NotFound
from tests.api.test_app import Client
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared


@pytest.fixture
def two_routes(world, german):  # noqa: F811 - the imported fixture
    """Routes ``loans`` and ``cards`` both answered by deployment ``main``; each has scored
    rows for subjects ``s-0``..``s-2`` (so the same subject has decisions on both routes)."""
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, loans_key = s.mark.set_route("loans", {"default": "main"})
    _, cards_key = s.mark.set_route("cards", {"default": "main"})
    rows = json.loads(german.drop(columns=["risk"]).head(3).to_json(orient="records"))
    client = Client(create_app(s.admin))
    made = {}
    for route, key in (("loans", loans_key), ("cards", cards_key)):
        response = client.post(
            f"/v1/routes/{route}/predict",
            json={"inputs": rows, "subject_ids": ["s-0", "s-1", "s-2"], "explain": False},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        made[route] = [p["request_id"] for p in response.json()["predictions"]]
    return s, client, {"loans": loans_key, "cards": cards_key}, made


def _outcomes(s) -> dict[str, object]:
    """request id -> outcome, for every decision recorded on ``main``."""
    return {d.request_id: d.outcome for d in s.cora.find_decisions(deployment="main", limit=1000)}


def _events(s) -> int:
    return len(s.cora.audit.log(action="prediction.outcome"))


def _post(client, route: str, key: str | None, body, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(f"/v1/routes/{route}/outcomes", json=body, headers=headers, **kwargs)


def test_outcomes_attach_by_request_and_subject_id(two_routes):
    s, client, keys, made = two_routes
    response = client.post(
        "/v1/routes/loans/outcomes",
        json={"outcomes": [
            {"request_id": made["loans"][0], "outcome": {"defaulted": True}},
            {"subject_id": "s-1", "outcome": 0},
        ]},
        headers={"X-Route-Key": keys["loans"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["route"] == "loans" and body["request_id"] == response.headers["X-Request-Id"]
    assert body["attached"] == 2
    assert body["request_ids"] == [made["loans"][0], made["loans"][1]]

    found = {d.request_id: d for d in s.cora.find_decisions(deployment="main", limit=1000)}
    assert found[made["loans"][0]].outcome == {"defaulted": True}
    assert found[made["loans"][1]].outcome == 0 and found[made["loans"][1]].outcome_at
    assert found[made["loans"][2]].outcome is None
    # Subject s-1 also has a decision through route cards: the loans key did not reach it.
    assert found[made["cards"][1]].outcome is None
    assert all(d.link_verified for d in found.values())
    assert s.cora.audit.verify().ok

    [event] = s.cora.audit.log(action="prediction.outcome")
    assert event.actor_role == "platform"
    assert event.data["route"] == "loans" and event.data["records"] == 2
    label = "route-key:" + hashlib.sha256(keys["loans"].encode()).hexdigest()[:8]
    assert event.data["caller"] == label
    assert keys["loans"] not in json.dumps(event.data)
    assert event.data["outcomes"][1] == {
        "subject_id": "s-1", "outcome": 0, "requests": [made["loans"][1]],
    }


def test_an_outcome_may_be_corrected_later(two_routes):
    s, client, keys, made = two_routes
    for value in (1, 0):
        response = _post(client, "cards", keys["cards"],
                         {"outcomes": [{"request_id": made["cards"][2], "outcome": value}]})
        assert response.status_code == 200, response.text
    assert _outcomes(s)[made["cards"][2]] == 0
    assert _events(s) == 2


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nxr_" + "A" * 43}, {"X-Route-Key": "wrong"},
     {"Authorization": "Basic abc"}],
)
def test_wrong_or_missing_key_is_401_and_nothing_is_written(two_routes, headers):
    s, client, _, made = two_routes
    response = client.post(
        "/v1/routes/loans/outcomes",
        json={"outcomes": [{"request_id": made["loans"][0], "outcome": 1}]},
        headers=headers,
    )
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "route key refused for route loans" in response.json()["detail"]
    assert set(_outcomes(s).values()) == {None}
    assert _events(s) == 0


def test_a_route_key_reaches_only_its_own_routes_decisions(two_routes):
    s, client, keys, made = two_routes
    # The cards key is not a loans key, even though both routes are answered by `main`.
    response = _post(client, "loans", keys["cards"],
                     {"outcomes": [{"request_id": made["loans"][0], "outcome": 1}]})
    assert response.status_code == 401
    # On its own route, a loans decision's id is unknown — like an id that exists nowhere —
    # and the valid item in the same call is not written either.
    response = _post(client, "cards", keys["cards"], {"outcomes": [
        {"request_id": made["cards"][0], "outcome": 1},
        {"request_id": made["loans"][1], "outcome": 1},
        {"request_id": "no-such-request", "outcome": 1},
        {"subject_id": "s-9", "outcome": 1},
    ]})
    assert response.status_code == 404, response.text
    problem = response.json()
    assert set(problem["fields"]) == {
        "outcomes.1.request_id", "outcomes.2.request_id", "outcomes.3.subject_id",
    }
    assert made["loans"][1] in problem["detail"] and "no-such-request" in problem["detail"]
    assert "through route cards" in problem["fields"]["outcomes.1.request_id"]
    assert "nothing was recorded" in problem["detail"]
    assert set(_outcomes(s).values()) == {None}
    assert _events(s) == 0
    # Unknown route: 404 naming it; a name no route can have: 422 before the store is asked.
    response = _post(client, "nowhere", keys["cards"],
                     {"outcomes": [{"request_id": made["cards"][0], "outcome": 1}]})
    assert response.status_code == 404 and "nowhere" in response.json()["detail"]
    # (PostgreSQL text cannot hold a NUL: asking the store would fail, not refuse.)
    for action, body in (("outcomes", {"outcomes": [{"subject_id": "s-0", "outcome": 1}]}),
                         ("predict", {"inputs": [{"duration": 6}]})):
        response = client.post(f"/v1/routes/no%00where/{action}", json=body,
                               headers={"Authorization": f"Bearer {keys['cards']}"})
        assert response.status_code == 422, response.text
        assert "path.route" in response.json()["fields"]
    # Nor a subject id longer than the records hold.
    response = client.post("/v1/routes/cards/predict",
                           json={"inputs": [{"duration": 6}], "subject_ids": ["x" * 129]},
                           headers={"Authorization": f"Bearer {keys['cards']}"})
    assert response.status_code == 422 and "body.subject_ids.0" in response.json()["fields"]
    assert _events(s) == 0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"body.outcomes"}),
        ({"outcomes": []}, {"body.outcomes"}),
        ({"outcomes": {"request_id": "x", "outcome": 1}}, {"body.outcomes"}),
        ({"outcomes": [{"outcome": 1}]}, {"body.outcomes.0"}),
        ({"outcomes": [{"request_id": "x", "subject_id": "s-0", "outcome": 1}]},
         {"body.outcomes.0"}),
        ({"outcomes": [{"subject_id": "s-0"}]}, {"body.outcomes.0.outcome"}),
        ({"outcomes": [{"subject_id": "s-0", "outcome": None}]}, {"body.outcomes.0"}),
        ({"outcomes": [{"subject_id": "s-0", "outcome": 1, "note": "x"}]},
         {"body.outcomes.0.note"}),
        ({"outcomes": [{"request_id": "r" * 65, "outcome": 1},
                       {"subject_id": "s\x000", "outcome": 1},
                       {"subject_id": 7, "outcome": 1}]},
         {"body.outcomes.0.request_id", "body.outcomes.1.subject_id",
          "body.outcomes.2.subject_id"}),
    ],
)
def test_malformed_bodies_are_422_naming_each_field(two_routes, body, fields):
    s, client, keys, _ = two_routes
    response = _post(client, "loans", keys["loans"], body)
    assert response.status_code == 422, response.text
    assert set(response.json()["fields"]) == fields
    assert set(_outcomes(s).values()) == {None}
    assert _events(s) == 0


def test_non_json_values_and_contradictions_are_422_and_nothing_is_written(two_routes):
    s, client, keys, made = two_routes
    auth = {"Authorization": f"Bearer {keys['loans']}", "Content-Type": "application/json"}
    for content in (b"{not json", b'{"outcomes": [{"subject_id": "s-0", "outcome": NaN}]}'):
        response = client.post("/v1/routes/loans/outcomes", content=content, headers=auth)
        assert response.status_code == 422, response.text
        assert response.json()["fields"]
    # One decision given two different outcomes in one call (by its id and by its subject).
    response = _post(client, "loans", keys["loans"], {"outcomes": [
        {"request_id": made["loans"][0], "outcome": 1},
        {"subject_id": "s-0", "outcome": 0},
    ]})
    assert response.status_code == 422, response.text
    assert set(response.json()["fields"]) == {"outcomes.1.outcome"}
    assert "contradictory" in response.json()["detail"]
    # The same outcome twice is no contradiction: the decision is counted once.
    response = _post(client, "loans", keys["loans"], {"outcomes": [
        {"request_id": made["loans"][0], "outcome": 1},
        {"subject_id": "s-0", "outcome": 1},
    ]})
    assert response.status_code == 200, response.text
    assert response.json()["request_ids"] == [made["loans"][0]]
    assert [e.data["records"] for e in s.cora.audit.log(action="prediction.outcome")] == [1]


def test_workspace_callers_may_scope_outcomes_to_a_route(two_routes):
    s, _, keys, made = two_routes
    # A manager without a route reaches every decision about the subject, as before.
    assert s.mark.record_outcomes([{"subject_id": "s-2", "outcome": 1}]) == 2
    # With a route (and no key: a manager acts under their own permission) only that route's.
    assert s.mark.record_outcomes([{"subject_id": "s-0", "outcome": 0}], route="cards") == 1
    with pytest.raises(NotFound, match=f"through route cards with request_id '{made['loans'][1]}'"):
        s.mark.record_outcomes([{"request_id": made["loans"][1], "outcome": 1}], route="cards")
    outcomes = _outcomes(s)
    assert outcomes[made["cards"][0]] == 0 and outcomes[made["loans"][0]] is None
    assert outcomes[made["loans"][2]] == outcomes[made["cards"][2]] == 1
    assert s.cora.audit.log(action="prediction.outcome")[-1].data["route"] == "cards"
