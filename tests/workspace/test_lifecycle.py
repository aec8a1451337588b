"""Lifecycle moves, approval guards and segregation of duties, each refusal with its message."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from nexml_ext.errors import (
    Conflict,
    IncompleteCompliance,
    IntegrityError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from nexml_ext.store import tables as t
from nexml_ext.store.database import normalise_url

FINDINGS = "Holdout AUC above the template minimum; documentation reviewed in full."


def counts(settings) -> dict[str, int]:
    """Row count of every table, and the chain head: what a refused call must not change."""
    engine = create_engine(normalise_url(settings.database_url))
    with engine.connect() as conn:
        out = {
            table.name: conn.scalar(select(func.count()).select_from(table))
            for table in t.Base.metadata.sorted_tables
        }
        out["head"] = conn.scalar(select(t.ChainHead.hash))
    engine.dispose()
    return out


# --- segregation of duties (hand-written, independent of the matrix table) --------------------


def test_data_scientists_never_approve_or_deploy_even_their_own(world):
    s = world.stack
    version = world.ready(s.dana)
    before = counts(s.settings)
    with pytest.raises(PermissionDenied, match="data_scientist dana may not approve"):
        s.dana.approve(version.ref, findings=FINDINGS)
    with pytest.raises(PermissionDenied, match="data_scientist dave may not approve"):
        s.dave.approve(version.ref, findings=FINDINGS)
    s.mark.approve(version.ref, findings=FINDINGS)
    with pytest.raises(PermissionDenied, match="data_scientist dana may not deploy"):
        s.dana.deploy(version.ref, name="credit")
    assert s.mark.version(version.ref).status == "approved"
    assert counts(s.settings)["approvals"] == before["approvals"] + 1


def test_self_approval_refused_with_its_reason(world):
    s = world.stack
    version = world.ready(s.mark)  # a manager may build a model, but never approve it
    before = counts(s.settings)
    with pytest.raises(PermissionDenied) as err:
        s.mark.approve(version.ref, findings=FINDINGS)
    assert str(err.value) == f"manager mark may not approve {version.ref}: mark is its author"
    with pytest.raises(PermissionDenied, match="mark is its author"):
        s.mark.reject(version.ref, findings=FINDINGS)
    assert counts(s.settings) == before
    s.mia.approve(version.ref, findings=FINDINGS)
    assert s.mark.version(version.ref).status == "approved"


def test_compliance_officers_and_superadmins_do_not_deploy(world):
    s = world.stack
    version = world.approved(s.dana)
    for ws in (s.cora, s.admin):
        with pytest.raises(PermissionDenied, match="may not deploy"):
            ws.deploy(version.ref, name="credit")


def test_only_the_platform_records_validations(world):
    s = world.stack
    version = world.staged(s.dana)
    for ws in (s.dana, s.mark, s.admin, s.cora):
        with pytest.raises(PermissionDenied, match="may not record"):
            ws.record_validation(
                version.ref, artifact_sha256=version.artifact_sha256, metrics={"roc_auc": 0.99}
            )
    assert s.mark.validations(version.ref) == []


# --- approval guards, each with its own message -----------------------------------------------


def test_approval_needs_a_validation_of_this_artifact(world):
    s = world.stack
    version = world.staged(s.dana)
    world.document(s.dana, version.ref)
    before = counts(s.settings)
    with pytest.raises(InvalidTransition, match="no platform validation of its artifact"):
        s.mark.approve(version.ref, findings=FINDINGS)
    assert counts(s.settings) == before
    assert s.mark.version(version.ref).status == "staging"


def test_validation_of_another_artifact_is_refused(world):
    s = world.stack
    version = world.staged(s.dana)
    platform = s.admin._as_platform()
    with pytest.raises(IntegrityError, match="the registered artifact is"):
        platform.record_validation(version.ref, artifact_sha256="ab" * 32, metrics={})


def test_approval_needs_complete_mandatory_sections(world):
    s = world.stack
    version = world.staged(s.dana)
    s.mia.validate(version.ref, dataset=world.holdout)
    s.dana.compliance(version.ref).set("domain", {"target_population": "Retail applicants"})
    before = counts(s.settings)
    with pytest.raises(IncompleteCompliance) as err:
        s.mark.approve(version.ref, findings=FINDINGS)
    message = str(err.value)
    assert "mandatory compliance sections for tier 1 are incomplete" in message
    for section in ("domain", "fairness", "consent", "risk"):
        assert section in message
    assert "information" not in message  # filled by the platform
    assert counts(s.settings) == before


def test_approval_needs_written_findings(world):
    s = world.stack
    version = world.ready(s.dana)
    before = counts(s.settings)
    for findings in ("", "   "):
        with pytest.raises(InvalidInput, match="findings are required"):
            s.mark.approve(version.ref, findings=findings)
    with pytest.raises(InvalidInput, match="at least 20 characters, got 2"):
        s.mark.approve(version.ref, findings="ok")
    assert counts(s.settings) == before


@pytest.mark.parametrize("tamper", ["change", "add", "remove"])
def test_approval_refused_after_the_artifact_changed_on_disk(world, tamper):
    s = world.stack
    version = world.ready(s.dana)
    stored = Path(version.artifact_uri)
    if tamper == "change":
        payload = stored / "model.joblib"
        payload.write_bytes(payload.read_bytes()[:-1] + b"\x00")
    elif tamper == "add":
        (stored / "backdoor.py").write_text("print('hi')")
    else:
        (stored / "model.joblib").unlink()
    before = counts(s.settings)
    with pytest.raises(IntegrityError) as err:
        s.mark.approve(version.ref, findings=FINDINGS)
    message = str(err.value)
    assert message.startswith(f"cannot approve {version.ref}: its artifact no longer matches")
    assert {"change": "'model.joblib' changed", "add": "'backdoor.py'", "remove": "'model.joblib'"}[
        tamper
    ] in message
    assert counts(s.settings) == before


def test_approval_records_who_what_and_which_evidence(world):
    s = world.stack
    version = world.ready(s.dana)
    approval = s.mark.approve(version.ref, findings=f"  {FINDINGS}  ")
    assert (approval.decision, approval.approver, approval.findings) == (
        "approved",
        "mark",
        FINDINGS,
    )
    assert approval.artifact_sha256 == version.artifact_sha256
    event = s.cora.audit.log(action="model.approve")[-1]
    assert event.actor == "mark" and event.object_ref == version.ref
    assert event.data["before"] == {"status": "staging"}
    assert event.data["after"] == {"status": "approved"}
    assert event.data["validation"] == s.mark.validations(version.ref)[-1].id


def test_a_decided_version_cannot_be_decided_again(world):
    s = world.stack
    version = world.ready(s.dana)
    s.mark.approve(version.ref, findings=FINDINGS)
    with pytest.raises(Conflict, match="already decided and is approved"):
        s.mia.approve(version.ref, findings=FINDINGS)
    with pytest.raises(Conflict, match="already decided"):
        s.mia.reject(version.ref, findings=FINDINGS)
    rejected = world.staged(s.dana)
    s.mark.reject(rejected.ref, findings="Fairness section missing; not reviewable.")
    with pytest.raises(Conflict, match="is rejected"):
        s.mia.approve(rejected.ref, findings=FINDINGS)


def test_the_record_freezes_once_decided(world):
    s = world.stack
    version = world.approved(s.dana)
    with pytest.raises(InvalidTransition, match="frozen once decided"):
        s.dana.compliance(version.ref).set("domain", {"target_population": "Everyone at all"})


# --- deploy, rollback, retire ------------------------------------------------------------------


def test_deploy_requires_an_approved_version(world):
    s = world.stack
    version = world.ready(s.dana)
    with pytest.raises(InvalidTransition, match="it is staging, not approved"):
        s.mark.deploy(version.ref, name="credit")
    with pytest.raises(InvalidInput, match="invalid deployment size"):
        s.mark.deploy(version.ref, name="credit", size="huge")
    assert s.mark.deployments() == []


def test_deploy_switch_rollback_and_retire(world):
    s = world.stack
    v1 = world.approved(s.dana, "credit-risk")
    v2 = world.approved(s.dana, "credit-risk")
    d = s.mark.deploy(v1.ref, name="credit", size="medium")
    assert (d.model_ref, d.size, d.status) == (v1.ref, "medium", "active")
    assert s.mark.version(v1.ref).status == "deployed"
    s.mark.deploy(v2.ref, name="credit")
    assert s.mark.version(v1.ref).status == "approved"
    assert s.mark.version(v2.ref).status == "deployed"
    with pytest.raises(InvalidTransition, match="not earlier than the deployed credit-risk:2"):
        s.mark.rollback("credit", to=v1.ref.replace(":1", ":2"))
    back = s.mark.rollback("credit", to=v1.ref)
    assert back.model_ref == v1.ref
    assert s.mark.version(v2.ref).status == "approved"
    assert [m.deployed for m in s.mark.models() if m.name == "credit-risk"] == [("credit",)]
    other = world.approved(s.dana)
    with pytest.raises(InvalidInput, match="serves model credit-risk"):
        s.mark.deploy(other.ref, name="credit")
    with pytest.raises(InvalidInput, match="serves model credit-risk"):
        s.mark.rollback("credit", to=other.ref)
    with pytest.raises(NotFound, match="deployment 'nowhere' not found"):
        s.mark.rollback("nowhere", to=v1.ref)
    retired = s.mark.retire(v1.ref, reason="Superseded by the challenger.")
    assert retired.status == "retired"
    assert s.mark.deployments()[0].status == "retired"
    with pytest.raises(InvalidTransition, match="it is retired, not approved"):
        s.mark.deploy(v1.ref, name="credit")
    with pytest.raises(InvalidTransition, match="cannot retire"):
        s.mark.retire(world.staged(s.dana).ref)
    assert s.cora.audit.verify().ok


def test_deploy_reverifies_the_artifact(world):
    s = world.stack
    version = world.approved(s.dana)
    (Path(version.artifact_uri) / "extra.bin").write_bytes(b"\x00")
    with pytest.raises(IntegrityError, match="cannot deploy .*unexpected file 'extra.bin'"):
        s.mark.deploy(version.ref, name="credit")
    assert s.mark.version(version.ref).status == "approved"


def test_malformed_and_unknown_references(world):
    s = world.stack
    for bad in ("credit-risk", "credit-risk:0", "credit risk:1", ":1", "a:b:1", "x:-1"):
        with pytest.raises(InvalidInput, match="malformed model reference"):
            s.mark.approve(bad, findings=FINDINGS)
    with pytest.raises(NotFound, match="model version nope:1 not found"):
        s.mark.version("nope:1")


# --- compliance record: tier, auto sections, score ---------------------------------------------


def test_tier_follows_template_then_materiality_then_officer(world):
    s = world.stack
    version = world.staged(s.dana)
    record = s.dana.compliance(version.ref)
    assert record.tier() == (1, "template credit_scoring")
    record.set("risk", {"exposure_amount": 100_000, "decision_purpose": "internal_analytics"})
    tier, source = record.tier()
    assert tier == 3 and source.startswith("materiality")
    with pytest.raises(PermissionDenied, match="data_scientist dana may not set tier"):
        record.set_tier(1, reason="Raising to be safe")
    with pytest.raises(InvalidInput, match="a written reason is required"):
        s.cora.compliance(version.ref).set_tier(2, reason=" ")
    assert s.cora.compliance(version.ref).set_tier(2, reason="Board-reported portfolio") == (
        2,
        "set by cora: Board-reported portfolio",
    )
    state = record.state()
    # Tier 2 policy sections plus the template's extra mandatory ones.
    assert {"fairness", "consent", "explainability"} <= state.mandatory
    assert "security" not in state.mandatory


def test_platform_fills_its_sections(world):
    s = world.stack
    version = world.ready(s.dana)
    fields = s.cora.compliance(version.ref).fields()
    assert fields["information"]["author"] == "dana"
    assert fields["information"]["artifact_sha256"] == version.artifact_sha256
    assert fields["provenance"]["training_datasets"][0]["ref"] == world.train
    assert fields["performance"]["validations"][0]["metrics"]["roc_auc"] > 0.6
    actions = [h["action"] for h in fields["change_history"]["history"]]
    assert actions[0] == "model.register" and "validation.record" in actions
    with pytest.raises(InvalidInput, match="filled by the platform"):
        s.dana.compliance(version.ref).set("information", {"author": "someone else"})
    assert s.cora.compliance(version.ref).score().total == 100


def test_tier_policy_configuration(world):
    s = world.stack
    policy = s.cora.tier_policy().to_dict()
    with pytest.raises(PermissionDenied):
        s.mark.set_tier_policy(policy)
    broken = {**policy, "mandatory": {**policy["mandatory"], "1": ["information"]}}
    with pytest.raises(InvalidInput):
        s.cora.set_tier_policy(broken)
    assert s.cora.tier_policy().to_dict() == policy
    s.cora.set_tier_policy(policy)
    assert s.cora.audit.log(action="compliance.configure")[-1].actor == "cora"


def test_failed_threshold_marks_the_validation_failed(world, german, tmp_path):
    from tests.conftest import fit_credit_artifact

    s = world.stack
    shuffled = german.copy()
    shuffled["risk"] = shuffled["risk"].sample(frac=1, random_state=1).to_numpy()
    weak = s.dana.register_model(
        fit_credit_artifact(shuffled, tmp_path / "weak"), "weak", template="credit_scoring"
    )
    validation = s.mark.validate(weak.ref, dataset=world.holdout)
    assert validation.status == "failed"
    assert validation.metrics["roc_auc"] < 0.7


def test_re_review_triggers_kept_and_set_by_compliance(world):
    s = world.stack
    version = world.staged(s.dana)
    record = s.cora.compliance(version.ref)
    assert record.re_review() == {"material_change": True, "drift_alert": True,
                                  "performance_breach": True, "elapsed_days": 365}
    with pytest.raises(PermissionDenied):
        s.dana.compliance(version.ref).set_re_review({"elapsed_days": 30}, reason="Quarterly")
    with pytest.raises(InvalidInput, match="give a reason"):
        record.set_re_review({"elapsed_days": 90}, reason="")
    with pytest.raises(InvalidInput):
        record.set_re_review({"elapsed_days": 0}, reason="Never expire")
    after = record.set_re_review({"elapsed_days": 90}, reason="New product, review quarterly")
    assert after["elapsed_days"] == 90 and after["drift_alert"] is True
    assert record.re_review() == after
    event = s.cora.audit.log(action="compliance.set_re_review")[-1]
    assert event.data["before"]["elapsed_days"] == 365 and event.data["after"]["elapsed_days"] == 90
