"""The serving app in-process (httpx over ASGI), on each backend: every answered row is a
record, and every refusal leaves nothing recorded."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
import pytest

from nexml_ext.api import create_app
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared


class Client:
    """A blocking client of an ASGI app, one event loop per request (as a caller sees it)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture
def served(world, german):  # noqa: F811 - the imported fixture
    """Deployment ``main`` behind route ``loans``, and a client of the app serving it."""
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"default": "main"})
    rows = json.loads(german.drop(columns=["risk"]).head(5).to_json(orient="records"))
    return s, Client(create_app(s.admin)), key, rows


def _recorded(s) -> int:
    return len(s.cora.find_decisions(deployment="main", limit=1000))


def test_predict_answers_each_row_and_records_it(served):
    s, client, key, rows = served
    subjects = [f"applicant-{i}" for i in range(len(rows))]
    response = client.post(
        "/v1/routes/loans/predict",
        json={"inputs": rows, "subject_ids": subjects, "explain": True},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert [p["subject_id"] for p in body["predictions"]] == subjects
    label = "route-key:" + hashlib.sha256(key.encode()).hexdigest()[:8]
    for row in body["predictions"]:
        assert row["prediction"] in (0, 1)
        assert 0.0 <= row["probability"] <= 1.0 and row["probability"] == row["score"]
        assert row["model_version"] == "credit-risk:1" and row["deployment"] == "main"
        assert len(row["artifact_sha256"]) == 64
        assert row["explanation"]
        if not row["approved"]:
            assert row["reasons"]
        [record] = s.cora.find_decisions(request_id=row["request_id"])
        assert record.hash == row["recorded"]["hash"] and record.link_verified
        assert record.caller == label and record.route == "loans"
    assert key not in json.dumps([d.caller for d in s.cora.find_decisions(deployment="main")])


def test_route_key_may_come_in_x_route_key(served):
    _, client, key, rows = served
    response = client.post(
        "/v1/routes/loans/predict", json={"inputs": rows[:1]}, headers={"X-Route-Key": key}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nxr_" + "A" * 43}, {"X-Route-Key": "wrong"},
     {"Authorization": "Basic abc"}],
)
def test_wrong_or_missing_key_is_401_and_nothing_is_scored(served, headers):
    s, client, _, rows = served
    before = _recorded(s)
    response = client.post("/v1/routes/loans/predict", json={"inputs": rows}, headers=headers)
    assert response.status_code == 401, response.text
    assert "route key refused for route loans" in response.json()["detail"]
    assert response.json()["request_id"] == response.headers["X-Request-Id"]
    assert _recorded(s) == before


def test_unknown_route_is_404(served):
    _, client, key, rows = served
    response = client.post(
        "/v1/routes/nowhere/predict", json={"inputs": rows},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 404
    assert "nowhere" in response.json()["detail"]


def test_schema_violations_are_422_naming_each_field(served):
    s, client, key, rows = served
    before = _recorded(s)
    bad = [dict(rows[0], housing="castle", duration="long"), dict(rows[1])]
    del bad[1]["purpose"]
    response = client.post(
        "/v1/routes/loans/predict", json={"inputs": bad},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 422, response.text
    fields = response.json()["fields"]
    assert set(fields) == {"housing", "duration", "purpose"}
    assert "missing" in fields["purpose"]
    # the request itself malformed: named too
    response = client.post(
        "/v1/routes/loans/predict", json={"inputs": [], "explain": "maybe", "extra": 1},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 422
    assert {"body.inputs", "body.explain", "body.extra"} <= set(response.json()["fields"])
    assert _recorded(s) == before


def test_oversized_body_is_413(served):
    s, client, key, rows = served
    before = _recorded(s)
    huge = [dict(rows[0], note="x" * 1000) for _ in range(1100)]
    response = client.post(
        "/v1/routes/loans/predict", json={"inputs": huge},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 413
    assert response.headers["X-Request-Id"] == response.json()["request_id"]
    assert _recorded(s) == before


def test_model_failure_is_500_with_the_request_id_and_no_record(served, monkeypatch):
    from sklearn.ensemble import RandomForestClassifier

    from nexml_ext.ml.sklearn_compiled import CompiledPipeline

    s, client, key, rows = served
    before = _recorded(s)

    def broken(self, X):
        raise RuntimeError("the model fell over")

    # The fixture's model is a random forest (conftest.fit_credit_artifact); every scoring
    # path, the gateway's included, ends in its predict_proba or in the compiled pipeline's
    # output (small batches, sklearn_compiled.py).
    monkeypatch.setattr(RandomForestClassifier, "predict_proba", broken)
    monkeypatch.setattr(CompiledPipeline, "output", broken)
    response = client.post(
        "/v1/routes/loans/predict", json={"inputs": rows},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 500
    assert response.json()["request_id"] == response.headers["X-Request-Id"]
    assert "fell over" not in response.text  # internals stay in the server log
    assert _recorded(s) == before


def test_open_inference_protocol_round_trip(served):
    s, client, key, rows = served
    auth = {"Authorization": f"Bearer {key}"}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "nexml-ext"

    assert client.get("/v2/models/main").status_code == 401
    assert client.get("/v2/models/ghost", headers=auth).status_code == 404
    meta = client.get("/v2/models/main", headers=auth).json()
    assert meta["versions"] == ["1"]
    inputs = {t["name"]: t["datatype"] for t in meta["inputs"]}
    assert inputs["credit_amount"] == "FP64" and inputs["housing"] == "BYTES"
    assert "sex" not in inputs
    assert client.get("/v2/models/main/versions/1", headers=auth).status_code == 200
    assert client.get("/v2/models/main/versions/7", headers=auth).status_code == 404
    assert client.get("/v2/models/main/ready", headers=auth).json() == {"ready": True}

    tensors = [
        {"name": name, "datatype": inputs[name], "shape": [len(rows)],
         "data": [r[name] for r in rows]}
        for name in inputs
    ]
    response = client.post(
        "/v2/models/main/infer", json={"id": "batch-7", "inputs": tensors}, headers=auth
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("main", "1", "batch-7")
    out = {t["name"]: t for t in body["outputs"]}
    assert set(out) == {"prediction", "probability", "request_id"}
    assert out["probability"]["shape"] == [len(rows)]
    assert all(0.0 <= p <= 1.0 for p in out["probability"]["data"])
    for request_id in out["request_id"]["data"]:
        [record] = s.cora.find_decisions(request_id=request_id)
        assert record.deployment == "main"

    before = _recorded(s)
    tensors[0]["shape"] = [len(rows) + 1]
    bad = client.post("/v2/models/main/infer", json={"inputs": tensors}, headers=auth)
    assert bad.status_code == 422 and tensors[0]["name"] in bad.json()["fields"]
    assert "error" in bad.json()
    assert _recorded(s) == before


def test_metrics_count_requests_by_route_and_version(served):
    _, client, key, rows = served
    client.post("/v1/routes/loans/predict", json={"inputs": rows[:2]},
                headers={"Authorization": f"Bearer {key}"})
    client.post("/v1/routes/loans/predict", json={"inputs": rows[:2]})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert ('nexml_http_requests_total{endpoint="/v1/routes/{route}/predict",'
            'route="loans",status="200"} 1.0') in text
    assert ('nexml_predictions_total{deployment="main",model_version="credit-risk:1",'
            'route="loans"} 2.0') in text
    assert 'nexml_request_errors_total{model_version="",route="loans",status="401"} 1.0' in text
    assert "nexml_http_request_duration_seconds_bucket" in text
    assert "nexml_audit_queue_depth" in text


def test_probes_and_openapi_document(served):
    _, client, _, _ = served
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").status_code == 200
    document = client.get("/openapi.json").json()
    for path in ("/v1/routes/{route}/predict", "/v2/models/{name}/infer", "/metrics"):
        assert path in document["paths"]
