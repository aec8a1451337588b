"""Scoring through routes: rules, default, canary share and shadow, each proven by its records."""

from __future__ import annotations

import pytest

from nexml_ext.errors import AuthenticationFailed


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


def test_route_key_guards_the_gateway(routed):
    s, key, rows = routed
    gateway = s.admin._as_platform()
    before = len(s.cora.find_decisions(deployment="main", limit=1000))
    for wrong in (None, "nxr_" + "A" * 43):
        with pytest.raises(AuthenticationFailed, match="route key refused for route loans"):
            gateway.predict("loans", rows.head(3), key=wrong)
    assert len(s.cora.find_decisions(deployment="main", limit=1000)) == before
