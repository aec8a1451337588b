"""schemathesis against the gateway's own OpenAPI document: generated input, valid and invalid,
for every operation, never gets a 5xx, and every answer conforms to the documented schema.

Runs on SQLite only: the generated requests exercise the API layer (parsing, validation, key
checks, error mapping), which is the same on both backends, and a PostgreSQL leg would double
the time for nothing new. What is backend-specific — text PostgreSQL cannot store, such as NUL
characters or over-long ids — is refused by the documented schema before the store is asked,
and tests/api/test_outcomes_http.py proves that on both backends.

Generation is derandomized with a bounded number of examples per operation, so every run sends
the same requests.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from nexml_ext.api import create_app
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES = 15  # per operation, generation mode and caller
# Invalid input must be refused with a 4xx; 413 (a body over the limit, refused before
# parsing) is one of ours that schemathesis does not list by default.
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429],
}}})


@pytest.mark.parametrize("backend", ["sqlite"])
def test_generated_requests_never_get_a_server_error(world, german, backend):  # noqa: F811
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"default": "main"})
    # Decisions on record, so the trail has something to prove intact afterwards.
    rows = json.loads(german.drop(columns=["risk"]).head(2).to_json(orient="records"))
    s.admin._as_platform().predict("loans", rows, subject_ids=["s-0", "s-1"], key=key)

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(s.admin), config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/routes/{route}/predict", "/v1/routes/{route}/outcomes", "/v2/models/{name}/infer",
    }
    # Two callers: one holding the route key, naming what exists (so requests get past the
    # key check into the endpoints), and one with no key, naming what exists in valid requests
    # (refused: 401) and anything at all in invalid ones.
    known = {"route": "loans", "name": "main", "version": "1"}
    positive, negative = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        names = {p.name: known[p.name] for p in operation.path_parameters} or None
        runs = {
            "with the route key": [({"Authorization": f"Bearer {key}"}, names, mode)
                                   for mode in (positive, negative)],
            "with no key": [(None, names, positive), (None, None, negative)],
        }
        for caller, generated in runs.items():
            seen = statuses.setdefault(f"{operation.label} {caller}", set())
            for headers, path, mode in generated:
                strategy = operation.as_strategy(
                    generation_mode=mode, headers=headers, path_parameters=path
                )
                try:
                    _run(strategy, seen)
                except Unsatisfiable:
                    # Nothing left to make invalid (no parameters or body are generated).
                    assert mode is GenerationMode.NEGATIVE, operation.label
    # Both callers were exercised: the key reached the models, its absence was refused.
    assert statuses["GET /v2/models/{name}/versions/{version}/ready with the route key"] == {200}
    for label in ("POST /v1/routes/{route}/predict", "POST /v1/routes/{route}/outcomes",
                  "POST /v2/models/{name}/infer"):
        assert 422 in statuses[f"{label} with the route key"]
        assert 401 in statuses[f"{label} with no key"]
    assert s.cora.audit.verify().ok


def _run(strategy, seen: set[int]) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case) -> None:
        response = case.call()
        seen.add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    check()
