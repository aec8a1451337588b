"""A standard Open Inference Protocol client (Triton's ``tritonclient[http]``) against a real
`nexml server` process on 127.0.0.1: health, model readiness and metadata, and inference whose
outputs equal what the Workspace gives for the same rows, each answered row on record."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tests.api.serving import Server, server_env
from tests.api.test_app import _recorded, served  # noqa: F401 - the fixture, shared
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared

_NUMPY = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32,
          "BOOL": np.bool_, "BYTES": np.object_}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_triton_client_gets_the_workspaces_predictions(world, german, backend, tmp_path):  # noqa: F811
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"default": "main"})
    rows = german.drop(columns=["risk"]).head(6)

    server = Server(server_env(s.settings, s.tokens["ada"]), tmp_path / "server.log")
    port = server.port
    try:
        server.wait_ready()
        client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
        # A fresh dict per call: the client writes its binary-data header into the one given.
        auth = {"Authorization": f"Bearer {key}"}
        try:
            assert client.is_server_live()
            assert client.is_server_ready()
            assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
            assert client.is_model_ready("main", headers=dict(auth))
            assert client.is_model_ready("main", model_version="1", headers=dict(auth))
            assert not client.is_model_ready("main")  # no key: not for this caller
            assert not client.is_model_ready("main", model_version="2", headers=dict(auth))

            meta = client.get_model_metadata("main", headers=dict(auth))
            assert meta["name"] == "main" and meta["versions"] == ["1"]
            assert {o["name"] for o in meta["outputs"]} == {"prediction", "probability",
                                                            "request_id"}
            inputs = _inputs(triton, meta, rows, binary=False)
            assert {i.name() for i in inputs} == set(rows.columns) - {"sex", "age"}

            result = client.infer("main", inputs, model_version="1", request_id="batch-1",
                                  headers=dict(auth))
            response = result.get_response()
            assert (response["model_name"], response["model_version"], response["id"]) == (
                "main", "1", "batch-1")
            predictions = result.as_numpy("prediction").tolist()
            probabilities = result.as_numpy("probability").tolist()
            request_ids = [str(r) for r in result.as_numpy("request_id").tolist()]

            # The client's default: tensors as binary data after the JSON (the extension).
            binary = client.infer("main", _inputs(triton, meta, rows, binary=True),
                                  headers=dict(auth))
            assert binary.as_numpy("probability").tolist() == probabilities
            assert binary.as_numpy("prediction").tolist() == predictions
            request_ids += [str(r) for r in binary.as_numpy("request_id").tolist()]
            probabilities_twice = probabilities * 2
            # Only the outputs asked for, in the order asked.
            only = client.infer("main", inputs, headers=dict(auth),
                                outputs=[triton.InferRequestedOutput("probability",
                                                                     binary_data=False)])
            assert [o["name"] for o in only.get_response()["outputs"]] == ["probability"]
            assert only.as_numpy("probability").tolist() == probabilities

            with pytest.raises(InferenceServerException) as refused:
                client.infer("main", inputs)  # no key
            assert refused.value.status() == "401"
            assert "route key refused for model main" in refused.value.message()
            with pytest.raises(InferenceServerException) as unknown:
                client.get_model_metadata("ghost", headers=dict(auth))
            assert unknown.value.status() == "404"
        finally:
            client.close()
    finally:
        server.stop()

    expected = s.admin._as_platform().score_deployment("main", rows, explain=False)
    assert predictions == [d.prediction for d in expected]
    assert probabilities == [d.score for d in expected]
    label = "route-key:" + hashlib.sha256(key.encode()).hexdigest()[:8]
    for request_id, probability in zip(request_ids, probabilities_twice, strict=True):
        [record] = s.cora.find_decisions(request_id=request_id)
        assert record.deployment == "main" and record.model_ref == version.ref
        assert record.score == probability and record.caller == label
    assert s.cora.audit.verify().ok


def test_malformed_binary_tensor_data_is_422_and_nothing_is_scored(served):  # noqa: F811
    s, client, key, _ = served
    before = _recorded(s)
    header = json.dumps({"inputs": [{"name": "duration", "datatype": "FP64", "shape": [2],
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    cases = [
        (header + b"\0" * 8, str(len(header)), "duration"),  # fewer bytes than declared
        (header + b"\0" * 20, str(len(header)), "inference-header-content-length"),  # more
        (header + b"\0" * 16, str(len(header) + 3), "inference-header-content-length"),
        (header + b"\0" * 16, "many", "inference-header-content-length"),
    ]
    for body, length, named in cases:
        response = client.post("/v2/models/main/infer", content=body, headers={
            "Authorization": f"Bearer {key}", "Inference-Header-Content-Length": length})
        assert response.status_code == 422, response.text
        assert named in response.json()["fields"] and response.json()["error"]
        assert response.json()["request_id"] == response.headers["X-Request-Id"]
    assert _recorded(s) == before


def _inputs(triton, meta: dict, rows, *, binary: bool) -> list:
    """One InferInput per input the model's metadata describes, holding ``rows``' column."""
    inputs = []
    for tensor in meta["inputs"]:
        column = rows[tensor["name"]].tolist()
        values = [str(v) for v in column] if tensor["datatype"] == "BYTES" else column
        entry = triton.InferInput(tensor["name"], [len(rows)], tensor["datatype"])
        entry.set_data_from_numpy(np.array(values, dtype=_NUMPY[tensor["datatype"]]),
                                  binary_data=binary)
        inputs.append(entry)
    return inputs
