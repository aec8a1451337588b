"""Scoring through routes: rules, default, canary share and shadow, each proven by its records."""

from __future__ import annotations

import json

import pytest

from nexml_ext.errors import AuthenticationFailed
from nexml_ext.ml.served_model import ServedModel


@pytest.fixture
def routed(world, german):
    """Three deployments of approved versions of one model behind route ``loans``."""
    s = world.stack
    for name in ("main", "big", "challenger"):
        version = world.approved(s.dana, "credit-risk")
        s.mark.deploy(version.ref, name=name)
    spec = {
        "rules": [{"name": "large-loans", "to": "big",
                   "when": {"all": [{"field": "credit_amount", "op": ">=", "value": 10000},
                                    {"not": {"field": "housing", "op": "=", "value": "free"}}]}}],
        "default": "main",
        "canary": {"to": "challenger", "share": 0.3},
        "shadow": "challenger",
    }
    route, key = s.mark.set_route("loans", spec)
    rows = german.drop(columns=["risk"]).head(20)
    return s, key, rows


def test_rules_default_canary_and_shadow_are_recorded(routed):
    s, key, rows = routed
    subjects = [f"applicant-{i}" for i in range(len(rows))]
    gateway = s.admin._as_platform()
    answers = gateway.predict("loans", rows, subject_ids=subjects, key=key)
    assert len(answers) == len(rows)
    assert [a.subject_id for a in answers] == subjects  # input order kept
    for answer, (_, row) in zip(answers, rows.iterrows(), strict=True):
        large = row["credit_amount"] >= 10000 and row["housing"] != "free"
        if large:
            assert (answer.deployment, answer.rule) == ("big", "large-loans")
        else:
            assert answer.deployment in {"main", "challenger"}
            assert answer.rule == ("canary" if answer.deployment == "challenger" else "default")
        assert answer.route == "loans" and not answer.shadow
    canaried = {a.subject_id for a in answers if a.rule == "canary"}
    assert 0 < len(canaried) < len(rows)
    # Deterministic by subject: the same applicants go to the canary again.
    again = gateway.predict("loans", rows, subject_ids=subjects, key=key)
    assert {a.subject_id for a in again if a.rule == "canary"} == canaried
    # Shadow: every request the challenger did not answer itself is also scored by it,
    # recorded, and never returned.
    recorded = s.cora.find_decisions(deployment="challenger", limit=1000)
    shadow = [d for d in recorded if d.shadow]
    assert len(shadow) == 2 * (len(rows) - len(canaried))
    assert all(d.rule == "shadow" for d in shadow)
    assert s.cora.audit.verify().ok


def test_records_are_decided_as_the_frame_of_them_is(routed, monkeypatch):
    """A JSON body's records skip the DataFrame (ServedModel.score_records) on every group,
    shadow included, and come to the same decisions as the frame of the same rows."""
    s, key, rows = routed
    subjects = [f"applicant-{i}" for i in range(len(rows))]
    gateway = s.admin._as_platform()
    by_frame = gateway.predict("loans", rows, subject_ids=subjects, key=key)
    taken = []
    score_records = ServedModel.score_records

    def counted(self, records):
        result = score_records(self, records)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(ServedModel, "score_records", counted)
    records = json.loads(rows.to_json(orient="records"))
    by_records = gateway.predict("loans", records, subject_ids=subjects, key=key)
    assert len(taken) >= 3 and all(taken)  # main, big, challenger (canary and shadow)

    def decided(d):
        return (d.subject_id, d.deployment, d.rule, d.prediction, d.score, d.confidence,
                d.inputs, d.reasons, d.explanation, d.shadow)

    assert [decided(d) for d in by_records] == [decided(d) for d in by_frame]
    shadows: dict[str, list[tuple]] = {}  # each shadowed subject: once per request
    for d in s.cora.find_decisions(deployment="challenger", limit=1000):
        if d.shadow:
            shadows.setdefault(d.subject_id, []).append(decided(d))
    assert shadows and all(len(v) == 2 and v[0] == v[1] for v in shadows.values())


def test_route_key_guards_the_gateway(routed):
    s, key, rows = routed
    gateway = s.admin._as_platform()
    before = len(s.cora.find_decisions(deployment="main", limit=1000))
    for wrong in (None, "nxr_" + "A" * 43):
        with pytest.raises(AuthenticationFailed, match="route key refused for route loans"):
            gateway.predict("loans", rows.head(3), key=wrong)
    assert len(s.cora.find_decisions(deployment="main", limit=1000)) == before


def test_why_was_this_applicant_declined_in_one_command(routed, tmp_path):
    """`nexml audit find` and `%nexml audit find` answer it: inputs, version, output, reasons,
    chain proof — and each look-up by a person is itself audited."""
    import datetime
    import os
    import subprocess
    import sys

    from tests.jupyter.test_magics import connect, magics, nexml

    s, key, rows = routed
    answers = s.admin._as_platform().predict("loans", rows, subject_ids=[
        f"applicant-{47390 + i}" for i in range(len(rows))], key=key)
    declined = next(a for a in answers if not a.output["approved"])
    reads_before = len(s.cora.audit.log(action="prediction.read"))

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(s.settings.home), NEXML_TOKEN=s.tokens["cora"],
               NEXML_DATABASE_URL=s.settings.database_url)
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    result = subprocess.run(
        [sys.executable, "-m", "nexml_ext.cli", "audit", "find", "--subject",
         declined.subject_id, "--date", today],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert declined.subject_id in out and declined.model_ref in out
    assert declined.artifact_sha256[:12] in out
    assert declined.reasons[0]["reason"] in out
    assert "link verified" in out

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    try:
        shell.run_line_magic("load_ext", "nexml_ext")
        connect(shell, s, "cora")
        found = nexml(shell, f"audit find --subject {declined.subject_id}")
        # the answer, and the shadow deployment's record of the same request
        assert declined.request_id in set(found["request"])
        assert set(found["deployment"]) <= {declined.deployment, "challenger"}
        assert all("link verified" in proof for proof in found["proof"])
    finally:
        magics(shell).close()
        InteractiveShell.clear_instance()
    assert len(s.cora.audit.log(action="prediction.read")) == reads_before + 2
