"""The rules of retraining and shadowing, on both backends: what a retrain job refuses at
submission, a retraining that fails, who may ask, and what a shadow-only deployment may be."""

from __future__ import annotations

import pytest

from nexml_ext.errors import (
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)

FINDINGS = "Validated on the holdout; documentation complete."


@pytest.fixture
def deployed(world):
    """dana's approved credit model deployed by mark as ``main`` behind route ``loans``."""
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"rules": [], "default": "main"})
    return world, version.ref, key


def _jobs(ws):
    return [j.id for j in ws.jobs(kind="retrain")]


def test_retrain_parameters_are_checked_and_a_failed_run_registers_nothing(
    deployed, tmp_path, german
):
    world, ref, _ = deployed
    s = world.stack
    csv = tmp_path / "labelled.csv"
    german.to_csv(csv, index=False)
    cases = [
        ({"deployment": "main", "source": str(csv), "seed": 3}, InvalidInput,
         "unknown parameter(s) seed"),
        ({"source": str(csv)}, InvalidInput, "missing parameter deployment"),
        ({"deployment": "nowhere", "source": str(csv)}, NotFound, "deployment 'nowhere'"),
        ({"deployment": "main"}, InvalidInput, "no source given and none configured"),
        ({"deployment": "main", "source": str(tmp_path / "missing.csv")}, InvalidInput,
         "no labelled-data file at"),
        ({"deployment": "main", "source": "postgresql://reader:hunter2@db/loans"}, InvalidInput,
         "holds a credential"),
        ({"deployment": "main", "source": {"uri": "postgresql://reader@db/loans",
                                           "table": "a", "query": "select 1"}}, InvalidInput,
         "a table or a query, not both"),
        ({"deployment": "main", "source": str(csv), "time_limit": 0}, InvalidInput,
         "time_limit must be"),
    ]
    for params, error, fragment in cases:
        with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            s.mark.submit_job("retrain", params)
    with pytest.raises(PermissionDenied, match="may not retrain"):
        s.cora.retrain("main", source=str(csv))
    with pytest.raises(PermissionDenied, match="only its author"):
        s.dave.retrain("main", source=str(csv))  # a data scientist, not the champion's author
    assert _jobs(s.mark) == []
    # The champion's author may ask (own), and a relative path is stored absolute.
    job = s.dana.retrain("main", source={"uri": str(csv), "format": "csv"}, time_limit=2)
    assert job.params == {"deployment": "main", "source": {"uri": str(csv), "format": "csv"},
                          "time_limit": 2.0}
    assert job.created_by == "dana"
    log = s.admin.audit.log(action="job.submit")
    assert log[-1].actor == "dana" and log[-1].data["params"] == job.params

    # A retraining that fails ends failed, with the reason, and registers nothing.
    csv = tmp_path / "no-duration.csv"
    german.drop(columns=["duration"]).to_csv(csv, index=False)
    versions, datasets = len(s.mark.versions("credit-risk")), len(s.mark.datasets())
    job = s.mark.retrain("main", source=str(csv), now=True)  # run here, as a worker would
    assert job.status == "failed" and job.created_by == "mark"
    assert "lacks column(s) duration" in job.error
    assert len(s.mark.versions("credit-risk")) == versions
    assert len(s.mark.datasets()) == datasets
    finished = s.admin.audit.log(action="job.finish")[-1]
    assert finished.object_ref == f"job:{job.id}" and finished.data["status"] == "failed"


def test_a_shadow_only_deployment_only_shadows(deployed, german):
    world, ref, key = deployed
    s = world.stack
    challenger = world.ready(s.dana, "credit-risk")  # staging, validated
    with pytest.raises(PermissionDenied, match="may not shadow"):
        s.dana.shadow(challenger.ref, name="shadow")
    with pytest.raises(InvalidTransition, match="it already answers"):
        s.mark.shadow(ref, name="shadow")
    with pytest.raises(InvalidInput, match="that deployment answers requests"):
        s.mark.shadow(challenger.ref, name="main")
    made = s.mark.shadow(challenger.ref, name="shadow", route="loans")
    assert (made.name, made.model_ref, made.status) == ("shadow", challenger.ref, "active")
    assert s.mark.version(challenger.ref).status == "staging"  # shadowing decides nothing
    route = s.mark.route("loans")
    assert (route.default, route.shadow) == ("main", "shadow")
    with pytest.raises(InvalidInput, match="default 'shadow' is a shadow-only deployment"):
        s.mark.set_route("other", {"rules": [], "default": "shadow"})
    # Scoring through the route answers with the champion and records the shadow.
    rows = german.drop(columns=["risk"]).head(3)
    answers = s.admin._as_platform().predict("loans", rows, key=key)
    assert {a.model_ref for a in answers} == {ref}
    shadowed = s.admin.find_decisions(deployment="shadow")
    assert len(shadowed) == 3 and all(d.shadow for d in shadowed)
    # Scoring on the shadow-only deployment directly never answers either, and records nothing.
    with pytest.raises(InvalidTransition, match="shadow-only deployment"):
        s.mark.score_deployment("shadow", rows)
    assert len(s.admin.find_decisions(deployment="shadow")) == 3
    # Rejected, the challenger can no longer be put on a shadow deployment ...
    s.mia.reject(challenger.ref, findings="Fairness section contradicts the validation report.")
    with pytest.raises(InvalidTransition, match="is rejected"):
        s.mark.shadow(challenger.ref, name="shadow-2")
    # ... while a later approved version switches the shadow deployment, and deploying it
    # there makes that deployment an answering one (the shadow's staging version is untouched).
    later = world.approved(s.dana, "credit-risk")
    switched = s.mark.shadow(later.ref, name="shadow")
    assert switched.model_ref == later.ref
    events = s.admin.audit.log(action="model.shadow")
    assert [e.data["version"] for e in events] == [challenger.ref, later.ref]
    assert events[-1].data["previous"] == challenger.ref and events[-1].actor == "mark"
    s.mark.deploy(later.ref, name="shadow")
    s.mark.set_route("other", {"rules": [], "default": "shadow"})
    assert s.admin.audit.verify().ok
