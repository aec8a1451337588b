"""The predict endpoint writes its JSON itself: the body is exactly what the documented
``PredictResponse`` model serialises, and the OpenAPI document still names that model."""

from __future__ import annotations

import json

import pytest

from nexml_ext.api.schemas import PredictResponse
from tests.api.test_app import served  # noqa: F401 - the fixture, shared
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared


@pytest.mark.parametrize("explain", [True, False])
def test_predict_body_is_the_response_models_serialisation(served, explain):  # noqa: F811
    s, client, key, rows = served
    response = client.post(
        "/v1/routes/loans/predict",
        json={"inputs": rows, "subject_ids": [None, "s-1", "ü-2", None, "s-4"],
              "explain": explain},
        headers={"X-Route-Key": key},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    model = PredictResponse.model_validate(body)
    assert body == json.loads(model.model_dump_json())  # every field, in the model's types
    assert list(body["predictions"][0]) == list(type(model.predictions[0]).model_fields)
    assert [p["subject_id"] for p in body["predictions"]] == [None, "s-1", "ü-2", None, "s-4"]
    for row in body["predictions"]:
        [record] = s.cora.find_decisions(request_id=row["request_id"])
        assert row["score"] == record.score and row["recorded"]["seq"] == record.seq
        assert row["reasons"] == record.reasons
        assert row["explanation"] == (record.explanation if explain else None)
        if explain:
            contributions = row["explanation"]["contributions"]
            assert row["explanation"]["base_value"] + sum(contributions.values()) == (
                pytest.approx(row["explanation"]["output"], abs=1e-9)
            )


def test_openapi_still_documents_the_predict_response(served):  # noqa: F811
    _, client, _, _ = served
    document = client.get("/openapi.json").json()
    answer = document["paths"]["/v1/routes/{route}/predict"]["post"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictResponse"
    }
    assert "PredictedRow" in document["components"]["schemas"]
