"""Scoring a deployment records every decision in its hash chain; finding them is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select, update

from nexml_ext.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from nexml_ext.store import tables as t
from nexml_ext.store.database import normalise_url

PROTECTED = {"sex", "age"}


@pytest.fixture
def served(world, german):
    """An approved version deployed as ``credit-<n>``, and German rows to score (features only;
    sex and age are passed along and must never surface as reasons)."""
    stack = world.stack
    version = world.approved(stack.dana)
    name = world.unique("credit")
    stack.mark.deploy(version.ref, name=name)
    rows = german.drop(columns=["risk"]).head(12).to_dict(orient="records")
    return stack, version, name, rows


def _records(stack, name):
    engine = create_engine(normalise_url(stack.settings.database_url))
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(t.PredictionRecord.__table__)
                .join(t.Deployment.__table__)
                .where(t.Deployment.name == name)
                .order_by(t.PredictionRecord.seq)
            ).mappings().all()
    finally:
        engine.dispose()


def test_scored_decisions_are_recorded_explained_and_found(served):
    stack, version, name, rows = served
    platform = stack.admin._as_platform()
    subjects = [str(47000 + i) for i in range(len(rows))]
    decisions = platform.score_deployment(name, rows, subject_ids=subjects, route="retail",
                                          rule="default")
    decisions += stack.mark.score_deployment(name, rows[:2], explain=False,
                                             request_ids=["req-m-1", "req-m-2"])
    assert [d.seq for d in decisions] == list(range(1, len(rows) + 3))
    first = decisions[0]
    assert first.model_ref == version.ref and first.artifact_sha256 == version.artifact_sha256
    assert first.caller == "nexml-platform" and first.route == "retail"
    assert set(first.explanation["contributions"]) == set(first.inputs)
    assert PROTECTED.isdisjoint(first.inputs)  # what the model saw
    declined = [d for d in decisions if not d.output["approved"]]
    assert declined, "the sample should hold at least one declined applicant"
    for d in declined:
        assert d.reasons and PROTECTED.isdisjoint(r["feature"] for r in d.reasons)
        assert all(r["contribution"] < 0 for r in d.reasons)
    assert all(d.reasons == [] for d in decisions if d.output["approved"])
    assert decisions[-1].caller == "mark" and decisions[-1].request_id == "req-m-2"

    stored = _records(stack, name)
    assert len(stored) == len(decisions)
    assert stored[0]["artifact_sha256"] == version.artifact_sha256
    assert stored[0]["rule"] == "default" and stored[0]["shadow"] is False
    assert stack.cora.audit.verify().ok

    target = declined[0]
    found = stack.cora.find_decisions(subject_id=target.subject_id, date=target.at.date())
    assert [d.request_id for d in found] == [target.request_id]
    hit = found[0]
    assert hit.inputs == target.inputs and hit.reasons == target.reasons
    assert hit.model_ref == version.ref and hit.link_verified is True
    assert hit.proof.startswith(f"record {target.seq} of predictions:{name}, hash ")
    assert stack.cora.find_decisions(request_id="req-m-1")[0].caller == "mark"
    assert len(stack.admin.find_decisions(deployment=name, since=target.at.date())) == len(
        decisions
    )
    assert stack.cora.find_decisions(date="2001-01-01") == []
    reads = stack.cora.audit.log(action="prediction.read")
    assert len(reads) == 4
    assert reads[0].actor == "cora"
    assert reads[0].data["query"]["subject_id"] == target.subject_id
    assert reads[0].data["returned"] == [target.request_id]

    for person in (stack.dana, stack.mark):
        with pytest.raises(PermissionDenied, match="may not"):
            person.find_decisions(subject_id=target.subject_id)
    with pytest.raises(PermissionDenied, match="data_scientist dana may not"):
        stack.dana.score_deployment(name, rows[:1])
    assert stack.cora.audit.verify().ok


def test_bad_inputs_are_refused_naming_fields_and_nothing_is_recorded(served):
    stack, _, name, rows = served
    bad = [dict(rows[0], credit_amount="lots", housing="castle")]
    del bad[0]["duration"]
    with pytest.raises(InvalidInput) as raised:
        stack.mark.score_deployment(name, bad)
    for field in ("credit_amount", "housing", "duration"):
        assert field in str(raised.value)
    assert _records(stack, name) == []
    with pytest.raises(NotFound):
        stack.mark.score_deployment("no-such-deployment", rows[:1])
    with pytest.raises(InvalidInput, match="subject_ids has 1 entries for 2 rows"):
        stack.mark.score_deployment(name, rows[:2], subject_ids=["1"])


def test_retired_deployment_does_not_score(served):
    stack, version, name, rows = served
    stack.mark.retire(version.ref)
    with pytest.raises(InvalidTransition, match="retired"):
        stack.mark.score_deployment(name, rows[:1])


def test_outcomes_attach_by_request_and_subject_without_breaking_the_chain(served):
    stack, _, name, rows = served
    made = stack.mark.score_deployment(
        name, rows[:4], subject_ids=["a", "b", "b", "c"], explain=False
    )
    count = stack.mark.record_outcomes(
        [{"request_id": made[0].request_id, "outcome": {"defaulted": True}},
         {"subject_id": "b", "outcome": 0}]
    )
    assert count == 3
    assert stack.cora.audit.verify().ok
    found = {d.request_id: d for d in stack.cora.find_decisions(deployment=name)}
    assert found[made[0].request_id].outcome == {"defaulted": True}
    assert found[made[1].request_id].outcome == 0 and found[made[1].request_id].outcome_at
    assert found[made[3].request_id].outcome is None
    assert all(d.link_verified for d in found.values())
    event = stack.cora.audit.log(action="prediction.outcome")[-1]
    assert event.actor == "mark" and event.data["records"] == 3
    with pytest.raises(NotFound, match="request_id 'nope'"):
        stack.mark.record_outcomes([{"request_id": "nope", "outcome": 1}])
    with pytest.raises(InvalidInput, match="exactly one"):
        stack.mark.record_outcomes([{"outcome": 1}])
    with pytest.raises(PermissionDenied):
        stack.cora.record_outcomes([{"subject_id": "a", "outcome": 1}])


def test_tampering_with_a_decision_is_named_by_verify(served):
    stack, _, name, rows = served
    made = stack.mark.score_deployment(name, rows[:5], explain=False)
    engine = create_engine(normalise_url(stack.settings.database_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                update(t.PredictionRecord.__table__)
                .where(t.PredictionRecord.request_id == made[2].request_id)
                .values(output={**made[2].output, "approved": not made[2].output["approved"]})
            )
    finally:
        engine.dispose()
    result = stack.cora.audit.verify()
    bad = result.first_failure
    assert bad is not None and bad.chain == f"predictions:{name}"
    assert bad.first_bad_seq == made[2].seq and "contents changed" in bad.problem
    assert stack.cora.find_decisions(request_id=made[2].request_id)[0].link_verified is False
