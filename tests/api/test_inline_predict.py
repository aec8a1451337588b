"""Predict requests answered on the event loop (``predict.InlinePredict``): the same answers
and refusals as the endpoint, records committed before each answer, concurrent requests
sharing transactions, and everything it declines left to the endpoint."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from nexml_ext.api import create_app
from nexml_ext.api.predict import INLINE_ROWS
from nexml_ext.store.decision_log import LoopCommitter
from nexml_ext.workspace.predictions import Cold, decision_log
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared

URL = "/v1/routes/loans/predict"


@pytest.fixture
def served(world, german):  # noqa: F811 - the imported fixture
    """Route ``loans`` to deployment ``main``; apps with and without the inline path."""
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"default": "main"})
    rows = json.loads(german.drop(columns=["risk"]).head(40).to_json(orient="records"))
    return s, create_app(s.admin), create_app(s.admin, inline=False), key, rows


async def _post_all(app: Any, bodies: list[Any], headers: dict[str, str]) -> list[httpx.Response]:
    """Every body posted at once, on one event loop."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return list(await asyncio.gather(*(
            client.post(URL, json=body, headers=headers) for body in bodies
        )))


def post(app: Any, body: Any, headers: dict[str, str]) -> httpx.Response:
    return asyncio.run(_post_all(app, [body], headers))[0]


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    """The answer without what differs between two requests: their ids and chain places."""
    body = json.loads(json.dumps(body))
    body.pop("request_id", None)
    for row in body.get("predictions", []):
        row.pop("request_id")
        row.pop("recorded")
    return body


def test_inline_answers_equal_the_endpoints_and_are_recorded_first(served, monkeypatch):
    s, inline, endpoint, key, rows = served
    auth = {"Authorization": f"Bearer {key}"}
    body = {"inputs": rows[:3], "subject_ids": ["a", "b", "c"], "explain": True}
    submitted: list[int] = []  # records handed to a LoopCommitter (the inline path only)
    real_submit = LoopCommitter.submit

    def counting_submit(self, records):  # type: ignore[no-untyped-def]
        submitted.append(len(records))
        return real_submit(self, records)

    monkeypatch.setattr(LoopCommitter, "submit", counting_submit)
    post(inline, body, auth)  # the first request loads the model: the endpoint's work
    assert submitted == []
    log = decision_log(s.admin._db)
    batches = log.stats.batches
    ours = post(inline, body, auth)
    assert submitted == [3]
    theirs = post(endpoint, body, auth)
    assert submitted == [3]
    assert ours.status_code == theirs.status_code == 200, (ours.text, theirs.text)
    assert log.stats.batches == batches + 2  # each committed its records
    assert _without_ids(ours.json()) == _without_ids(theirs.json())
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json"
    assert ours.json()["request_id"] == ours.headers["X-Request-Id"]
    for row in ours.json()["predictions"]:
        [record] = s.cora.find_decisions(request_id=row["request_id"])
        assert record.hash == row["recorded"]["hash"] and record.link_verified
        assert (record.seq, record.subject_id) == (row["recorded"]["seq"], row["subject_id"])


@pytest.mark.parametrize(
    ("url", "body", "headers", "status"),
    [
        (URL, {"inputs": [{"age": 30}]}, {"Authorization": "Bearer nxr_wrong"}, 401),  # key first
        (URL, None, {}, 401),
        ("/v1/routes/nowhere/predict", None, None, 404),
        (URL, {"inputs": [{"age": "forty"}]}, None, 422),  # the schema check's fields
        (URL, {"inputs": [], "explain": True}, None, 422),  # not a PredictRequest: declined
        (URL, {"inputs": None, "subject_ids": ["a", "b"]}, None, 422),  # one id per row
    ],
)
def test_refusals_equal_the_endpoints_and_record_nothing(served, url, body, headers, status):
    s, inline, endpoint, key, rows = served
    auth = {"Authorization": f"Bearer {key}"}
    post(inline, {"inputs": rows[:1]}, auth)  # warm: the next requests may go inline
    body = body or {"inputs": rows[:1]}
    if body.get("inputs") is None:
        body = {**body, "inputs": rows[:1]}
    before = len(s.cora.find_decisions(deployment="main", limit=1000))

    async def both() -> list[httpx.Response]:
        answers = []
        for app in (inline, endpoint):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                answers.append(await client.post(
                    url, json=body, headers=auth if headers is None else headers
                ))
        return answers

    ours, theirs = asyncio.run(both())
    assert ours.status_code == theirs.status_code == status, (ours.text, theirs.text)
    mine, other = ours.json(), theirs.json()
    assert mine.pop("request_id") == ours.headers["X-Request-Id"]
    other.pop("request_id")
    assert mine == other
    assert len(s.cora.find_decisions(deployment="main", limit=1000)) == before


def test_concurrent_requests_share_transactions_and_every_answer_is_in_the_trail(served):
    s, inline, _, key, rows = served
    auth = {"Authorization": f"Bearer {key}"}
    post(inline, {"inputs": rows[:1]}, auth)
    log = decision_log(s.admin._db)
    batches, records = log.stats.batches, log.stats.records
    bodies = [{"inputs": [row], "subject_ids": [f"s-{i}"]} for i, row in enumerate(rows)]
    answers = asyncio.run(_post_all(inline, bodies, auth))
    assert [a.status_code for a in answers] == [200] * len(rows)
    assert log.stats.records - records == len(rows)
    assert log.stats.batches - batches < len(rows)  # some requests shared a commit
    recorded = {d.request_id: d for d in s.cora.find_decisions(deployment="main", limit=1000)}
    for i, answer in enumerate(answers):
        [row] = answer.json()["predictions"]
        assert row["subject_id"] == f"s-{i}"
        assert recorded[row["request_id"]].hash == row["recorded"]["hash"]
    seqs = sorted(d.seq for d in recorded.values())
    assert seqs == list(range(1, len(seqs) + 1))  # one chain, no fork, no gap
    assert s.cora.audit.verify().ok


def test_large_batches_and_cold_routes_are_left_to_the_endpoint(served):
    s, inline, _, key, rows = served
    auth = {"Authorization": f"Bearer {key}"}
    gateway = inline.state.gateway
    with pytest.raises(Cold):  # nothing loaded yet: the loop must not load it
        gateway.prepare_predict("loans", rows[:1], key=key, warm_only=True)
    first = post(inline, {"inputs": rows[:1]}, auth)  # answered by the endpoint, which loads
    assert first.status_code == 200, first.text
    assert gateway.prepare_predict("loans", rows[:1], key=key, warm_only=True).records
    many = (rows * 2)[: INLINE_ROWS + 1]
    answer = post(inline, {"inputs": many}, auth)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == INLINE_ROWS + 1
