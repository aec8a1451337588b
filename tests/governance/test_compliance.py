"""Compliance-record rules: section schemas, fields, completeness, tiers, templates and score.

Expected values are worked out by hand from sections.yaml, tiers.yaml and the templates; the
required-field counts they rest on are pinned in ``REQUIRED`` so a schema change shows up here.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nexml_ext
from nexml_ext.errors import InvalidInput, NotFound
from nexml_ext.governance.compliance import (
    AUTO_SECTIONS,
    CORE_TIER1_SECTIONS,
    FIELD_KINDS,
    SECTION_IDS,
    THRESHOLDS,
    Template,
    TierPolicy,
    mandatory_sections,
    materiality_tier,
    score,
    section_status,
    sections,
    template,
    templates,
    validate_fields,
    validate_re_review,
)

REQUIRED = {
    "information": (
        "name",
        "version",
        "author",
        "flavour",
        "problem_type",
        "target",
        "registered_at",
        "artifact_sha256",
    ),
    "domain": (
        "business_purpose",
        "intended_use",
        "target_population",
        "out_of_scope_uses",
        "decision_automation",
    ),
    "fairness": (
        "protected_attributes_assessed",
        "metrics_and_thresholds",
        "results_summary",
        "less_discriminatory_alternatives",
    ),
    "provenance": ("training_datasets", "data_sources_description", "sampling_and_exclusions"),
    "consent": (
        "permissible_purpose",
        "consent_basis",
        "data_use_restrictions",
        "prohibited_bases_excluded",
    ),
    "risk": ("exposure_amount", "decision_purpose", "assumptions", "limitations"),
    "methodology": (
        "target_definition",
        "approach",
        "feature_selection",
        "alternatives_considered",
    ),
    "performance": ("validations",),
    "explainability": ("explanation_method", "adverse_action_reasons"),
    "monitoring": (
        "monitoring_metrics",
        "monitoring_frequency",
        "escalation_procedure",
        "monitoring_owner",
    ),
    "security": ("data_classification", "access_controls", "personal_data_handling"),
    "change_history": ("history",),
}
AUTO_FIELDS = {
    "information": {
        "name",
        "version",
        "author",
        "flavour",
        "problem_type",
        "target",
        "registered_at",
        "artifact_sha256",
    },
    "provenance": {"training_datasets"},
    "performance": {"validations"},
    "fairness": {"protected_inputs"},
    "change_history": {"history"},
}
LONG = "Ranks unsecured personal-loan applicants by 12-month default risk."


def complete(section_id: str) -> dict:
    """Every required field of a section filled (values only need to count as filled)."""
    return {name: "filled" for name in REQUIRED[section_id]}


# --- section schemas ---------------------------------------------------------------------------


def test_the_twelve_sections_in_order_with_their_titles():
    assert SECTION_IDS == (
        "information",
        "domain",
        "fairness",
        "provenance",
        "consent",
        "risk",
        "methodology",
        "performance",
        "explainability",
        "monitoring",
        "security",
        "change_history",
    )
    titles = {sid: spec.title for sid, spec in sections().items()}
    assert list(titles) == list(SECTION_IDS)
    assert titles["information"] == "Model information"
    assert titles["consent"] == "Consent and permissible purpose"
    assert titles["risk"] == "Risk classification, assumptions and limitations"
    assert titles["explainability"] == "Explainability and adverse-action reasons"
    assert titles["change_history"] == "Change history and approvals"


def test_every_section_has_required_fields_and_well_formed_specs():
    for sid, spec in sections().items():
        assert spec.description
        assert tuple(f.name for f in spec.fields if f.required) == REQUIRED[sid]
        assert len({f.name for f in spec.fields}) == len(spec.fields), sid
        for f in spec.fields:
            assert f.kind in FIELD_KINDS
            assert f.label and len(f.help) > 20, (sid, f.name)
            assert (f.choices is not None) == (f.kind == "choice"), (sid, f.name)


def test_auto_fields_are_exactly_the_platform_supplied_names_and_all_required():
    autos = {
        sid: {f.name for f in spec.fields if f.auto}
        for sid, spec in sections().items()
        if any(f.auto for f in spec.fields)
    }
    assert autos == AUTO_FIELDS
    # Sections the platform fills entirely; elsewhere (fairness) it records one optional fact.
    assert set(autos) - {"fairness"} == AUTO_SECTIONS
    assert all(
        f.required for sid in AUTO_SECTIONS for f in sections()[sid].fields if f.auto
    )
    assert not sections()["fairness"].field("protected_inputs").required
    kinds = {f.name: f.kind for f in sections()["information"].fields}
    assert kinds["version"] == "integer" and kinds["artifact_sha256"] == "text"
    history = sections()["change_history"].field("history")
    assert history.kind == "list" and history.item_keys == ("at", "actor", "action")


def test_risk_section_carries_the_materiality_inputs():
    risk = sections()["risk"]
    exposure, purpose = risk.field("exposure_amount"), risk.field("decision_purpose")
    assert (exposure.kind, exposure.minimum, exposure.required) == ("number", 0, True)
    assert purpose.kind == "choice"
    assert {
        "consumer_credit_decision",
        "pricing",
        "fraud_screening",
        "capital_or_reserving",
        "marketing",
        "internal_analytics",
    } <= set(purpose.choices)
    assert risk.field("assumptions").required and risk.field("limitations").required


# --- validate_fields ---------------------------------------------------------------------------


def test_validate_cleans_text_and_parses_numbers():
    raw = {
        "exposure_amount": " 250000 ",
        "decision_purpose": " pricing ",
        "assumptions": f"  {LONG} ",
    }
    assert validate_fields("risk", raw) == {
        "exposure_amount": 250000,
        "decision_purpose": "pricing",
        "assumptions": LONG,
    }
    assert raw["exposure_amount"] == " 250000 "  # the input is not modified
    assert validate_fields("risk", {"exposure_amount": "1.5e6"}) == {"exposure_amount": 1500000.0}
    assert validate_fields("risk", {"exposure_amount": 0}) == {"exposure_amount": 0}


@pytest.mark.parametrize(
    ("section_id", "fields", "message"),
    [
        (
            "risk",
            {"exposure_amount": "lots"},
            "compliance section 'risk': field 'exposure_amount' must be a number >= 0, got 'lots'",
        ),
        (
            "risk",
            {"exposure_amount": -5},
            "compliance section 'risk': field 'exposure_amount' must be a number >= 0, got -5",
        ),
        ("risk", {"exposure_amount": True}, "must be a number >= 0, got True"),
        ("risk", {"exposure_amount": "nan"}, "must be a number >= 0, got 'nan'"),
        (
            "risk",
            {"decision_purpose": "astrology"},
            "field 'decision_purpose' must be one of consumer_credit_decision, account_management",
        ),
        ("risk", {"colour": "red"}, "compliance section 'risk': unknown field 'colour' (known: "),
        (
            "domain",
            {"business_purpose": "tbd"},
            "field 'business_purpose' must be at least 20 characters",
        ),
        ("domain", {"target_population": 42}, "field 'target_population' must be text, got 42"),
        (
            "domain",
            {"jurisdictions": ["US", 1]},
            "field 'jurisdictions' must be a list of text items",
        ),
        (
            "consent",
            {"prohibited_bases_excluded": 1},
            "field 'prohibited_bases_excluded' must be true or false, got 1",
        ),
        (
            "explainability",
            {"max_reasons_disclosed": 4.5},
            "field 'max_reasons_disclosed' must be an integer between 1 and 10, got 4.5",
        ),
        ("explainability", {"max_reasons_disclosed": 11}, "between 1 and 10, got 11"),
        (
            "monitoring",
            {"next_review_date": "31/12/2026"},
            "field 'next_review_date' must be a date YYYY-MM-DD, got '31/12/2026'",
        ),
        ("risk", ["exposure_amount"], "compliance section 'risk': fields must be a mapping"),
    ],
)
def test_validate_refuses_bad_values_naming_section_field_and_reason(section_id, fields, message):
    with pytest.raises(InvalidInput) as caught:
        validate_fields(section_id, fields)
    assert message in str(caught.value)


def test_validate_other_kinds():
    assert validate_fields("consent", {"prohibited_bases_excluded": "No"}) == {
        "prohibited_bases_excluded": False
    }
    assert validate_fields("explainability", {"max_reasons_disclosed": "4"}) == {
        "max_reasons_disclosed": 4
    }
    assert validate_fields("monitoring", {"next_review_date": dt.date(2026, 12, 31)}) == {
        "next_review_date": "2026-12-31"
    }
    assert validate_fields("domain", {"jurisdictions": [" US ", " ", "DE"]}) == {
        "jurisdictions": ["US", "DE"]
    }


def test_empty_string_or_none_clears_a_human_field():
    assert validate_fields("information", {"description": "  ", "model_owner": None}) == {
        "description": None,
        "model_owner": None,
    }


def test_auto_fields_are_refused_to_people_and_accepted_from_the_platform():
    with pytest.raises(InvalidInput) as caught:
        validate_fields("information", {"name": "german-credit"})
    assert str(caught.value) == (
        "compliance section 'information': field 'name' is filled by the platform"
    )
    with pytest.raises(InvalidInput, match="'training_datasets' is filled by the platform"):
        validate_fields("provenance", {"training_datasets": None})
    assert validate_fields("information", {"version": "3"}, allow_auto=True) == {"version": 3}
    dataset = {"ref": "german_credit:1", "sha256": "ab" * 32, "rows": 1000}
    assert validate_fields("provenance", {"training_datasets": [dataset]}, allow_auto=True) == {
        "training_datasets": [dataset]
    }
    with pytest.raises(
        InvalidInput, match="must be a list of mappings with keys ref, sha256, rows"
    ):
        validate_fields("provenance", {"training_datasets": [{"ref": "x"}]}, allow_auto=True)


def test_unknown_section_is_not_found():
    with pytest.raises(NotFound, match="unknown compliance section 'nope' \\(known: information"):
        validate_fields("nope", {})
    with pytest.raises(NotFound):
        section_status("nope", {})


# --- completeness ------------------------------------------------------------------------------


def test_status_counts_required_fields_filled():
    status = section_status(
        "consent",
        {"prohibited_bases_excluded": False, "consent_basis": "  ", "opt_out_mechanism": "x"},
    )
    assert (status.complete, status.filled, status.required) == (False, 1, 4)
    assert status.missing == ("permissible_purpose", "consent_basis", "data_use_restrictions")
    assert status.completeness == 0.25


def test_status_treats_zero_as_filled_and_empty_lists_as_missing():
    risk = section_status(
        "risk",
        {
            "exposure_amount": 0,
            "decision_purpose": "marketing",
            "assumptions": LONG,
            "limitations": LONG,
            "not_in_schema": "ignored",
        },
    )
    assert risk.complete and risk.missing == () and risk.filled == 4
    perf = section_status("performance", {"validations": []})
    assert (perf.complete, perf.filled, perf.required, perf.missing) == (
        False,
        0,
        1,
        ("validations",),
    )


# --- tier policy and materiality ---------------------------------------------------------------


def test_default_policy_requires_the_core_at_tier_1_and_nests_tiers():
    policy = TierPolicy.default()
    core = {"information", "domain", "fairness", "provenance", "consent", "risk"}
    assert core == CORE_TIER1_SECTIONS
    assert policy.mandatory[1] == frozenset(SECTION_IDS)
    assert policy.mandatory[3] == {"information", "domain", "risk", "performance", "change_history"}
    assert policy.mandatory[3] <= policy.mandatory[2] <= policy.mandatory[1]


def test_policy_round_trips_through_plain_json():
    policy = TierPolicy.default()
    as_json = json.loads(json.dumps(policy.to_dict()))
    assert as_json == policy.to_dict()
    assert TierPolicy.from_dict(as_json) == policy
    assert as_json["materiality"]["exposure_thresholds"] == [
        {"min_exposure": 50000000, "tier": 1},
        {"min_exposure": 5000000, "tier": 2},
    ]


def _policy_dict(**mandatory) -> dict:
    d = TierPolicy.default().to_dict()
    d["mandatory"].update(mandatory)
    return d


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["mandatory"]["1"].remove("consent"), "tier 1 must keep consent mandatory"),
        (lambda d: d["mandatory"]["2"].append("colour"), "tier 2 names unknown section 'colour'"),
        (
            lambda d: d["mandatory"]["3"].append("security"),
            "tier 3 makes security mandatory but tier 2 does not",
        ),
        (lambda d: d["mandatory"].pop("3"), "must give tiers 1, 2 and 3"),
        (lambda d: d["mandatory"].update({"4": []}), "has unknown keys 4"),
        (lambda d: d.update({"colour": 1}), "tier policy has unknown keys colour"),
        (
            lambda d: d["materiality"]["purposes"].update({"astrology": 1}),
            "unknown decision purpose 'astrology'",
        ),
        (
            lambda d: d["materiality"]["purposes"].pop("pricing"),
            "no tier for decision purpose pricing",
        ),
        (lambda d: d["materiality"]["purposes"].update({"pricing": 4}), "must be a tier 1, 2 or 3"),
        (
            lambda d: d["materiality"]["exposure_thresholds"].append(
                {"min_exposure": -1, "tier": 3}
            ),
            "min_exposure must be a number >= 0, got -1",
        ),
        (
            lambda d: d["materiality"]["exposure_thresholds"].append(
                {"min_exposure": 90000000, "tier": 2}
            ),
            "more exposure cannot mean less risk",
        ),
    ],
)
def test_policy_from_dict_refuses_bad_policies(change, message):
    d = TierPolicy.default().to_dict()
    change(d)
    with pytest.raises(InvalidInput) as caught:
        TierPolicy.from_dict(d)
    assert message in str(caught.value)


def test_a_custom_policy_with_integer_keys_is_accepted_and_used():
    d = _policy_dict()
    d["mandatory"] = {1: list(CORE_TIER1_SECTIONS), 2: ["information", "risk"], 3: ["information"]}
    d["materiality"]["exposure_thresholds"] = []
    policy = TierPolicy.from_dict(d)
    assert mandatory_sections(3, None, policy) == {"information"}
    assert materiality_tier(10**12, "marketing", policy) == 3  # no exposure rule: purpose decides
    assert TierPolicy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize(
    ("exposure", "purpose", "tier"),
    [
        (0, "internal_analytics", 3),
        (4_999_999, "marketing", 3),
        (5_000_000, "marketing", 2),  # thresholds are inclusive
        (49_999_999.99, "internal_analytics", 2),
        (50_000_000, "marketing", 1),
        (1_000, "consumer_credit_decision", 1),  # purpose alone makes it tier 1
        (1_000, "fraud_screening", 2),
        (60_000_000, "fraud_screening", 1),  # exposure raises it
        (100, "capital_or_reserving", 1),
        (None, "pricing", None),
        (1_000, None, None),
        (1_000, " ", None),
    ],
)
def test_materiality_tier(exposure, purpose, tier):
    assert materiality_tier(exposure, purpose, TierPolicy.default()) == tier


@pytest.mark.parametrize(
    ("exposure", "purpose", "message"),
    [
        (-1, "pricing", "exposure_amount must be a number >= 0, got -1"),
        ("lots", "pricing", "got 'lots'"),
        (True, "pricing", "got True"),
        (10, "astrology", "unknown decision purpose 'astrology'"),
    ],
)
def test_materiality_refuses_bad_inputs(exposure, purpose, message):
    with pytest.raises(InvalidInput, match=message):
        materiality_tier(exposure, purpose, TierPolicy.default())


# --- templates ---------------------------------------------------------------------------------


def test_the_four_templates_and_their_default_tiers():
    assert {name: t.default_tier for name, t in templates().items()} == {
        "credit_scoring": 1,
        "fair_lending": 1,
        "fraud_detection": 2,
        "risk_assessment": 1,
    }


def test_every_template_is_consistent_and_round_trips():
    for name, t in templates().items():
        assert t.name == name and t.title and t.description and t.regulations
        assert t.extra_mandatory <= set(SECTION_IDS)
        assert set(t.thresholds) <= set(THRESHOLDS)
        assert t.thresholds.get("psi_alert") == 0.25
        assert set(t.re_review) == {
            "material_change",
            "drift_alert",
            "performance_breach",
            "elapsed_days",
        }
        assert t.re_review["elapsed_days"] >= 1
        assert Template.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_demo_templates_protect_columns_of_the_german_credit_data():
    path = Path(nexml_ext.__file__).parent / "data" / "german_credit.csv"
    with path.open(newline="") as f:
        columns = set(next(csv.reader(f)))
    for name in ("credit_scoring", "fair_lending"):
        assert template(name).protected_attributes == ("sex", "age")
        assert set(template(name).protected_attributes) <= columns
        assert template(name).thresholds["adverse_impact_ratio_min"] == 0.8


def test_template_contents_that_regulation_requires():
    credit = template("credit_scoring")
    assert "explainability" in credit.extra_mandatory
    assert any("Regulation B" in r and "1002.9" in r for r in credit.regulations)
    risk = template("risk_assessment")
    assert any("SR 26-2" in r for r in risk.regulations)
    assert any("Basel" in r for r in risk.regulations)
    assert risk.sr11_7_mapping is not None and set(risk.sr11_7_mapping) <= set(SECTION_IDS)
    assert "conceptual soundness" in risk.sr11_7_mapping["methodology"][0]
    assert template("fraud_detection").re_review["elapsed_days"] == 180


def test_unknown_template_is_not_found_listing_the_names():
    with pytest.raises(NotFound) as caught:
        template("mortgage")
    assert str(caught.value) == (
        "unknown compliance template 'mortgage' "
        "(known: credit_scoring, fair_lending, fraud_detection, risk_assessment)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["thresholds"].update({"gini_min": 0.4}), "has unknown keys gini_min"),
        (lambda d: d["thresholds"].update({"auc_min": 1.2}), "must be a number between 0 and 1"),
        (lambda d: d["thresholds"].update({"psi_warning": 0.3}), "psi_warning must not exceed"),
        (lambda d: d["extra_mandatory"].append("colour"), "unknown section 'colour'"),
        (lambda d: d.update({"default_tier": 0}), "default_tier must be a tier 1, 2 or 3"),
        (lambda d: d["re_review"].update({"elapsed_days": 0}), "'elapsed_days' must be an integer"),
        (lambda d: d["protected_attributes"].append("sex"), "repeats an attribute"),
        (lambda d: d.update({"name": "Credit Scoring"}), "must be lower_snake_case"),
    ],
)
def test_template_from_dict_refuses_bad_templates(change, message):
    d = template("credit_scoring").to_dict()
    change(d)
    with pytest.raises(InvalidInput, match=message):
        Template.from_dict(d)


def test_re_review_triggers():
    good = {
        "material_change": True,
        "drift_alert": False,
        "performance_breach": True,
        "elapsed_days": None,
    }
    assert validate_re_review(good) == good
    with pytest.raises(InvalidInput, match="'drift_alert' must be true or false"):
        validate_re_review({**good, "drift_alert": "often"})
    with pytest.raises(InvalidInput, match="lacks elapsed_days"):
        validate_re_review({k: v for k, v in good.items() if k != "elapsed_days"})


def test_mandatory_sections_add_the_template_extras_to_the_tier():
    policy = TierPolicy.default()
    assert mandatory_sections(1, None, policy) == frozenset(SECTION_IDS)
    assert mandatory_sections(3, template("credit_scoring"), policy) == {
        "information",
        "domain",
        "risk",
        "performance",
        "change_history",  # tier 3
        "fairness",
        "consent",
        "explainability",
        "monitoring",  # credit_scoring extras
    }
    with pytest.raises(InvalidInput, match="must be a tier 1, 2 or 3, got 4"):
        mandatory_sections(4, None, policy)


# --- score -------------------------------------------------------------------------------------


def test_score_hand_computed_two_mandatory_complete_others_partial():
    # weights: 2 mandatory x 3 + 10 optional x 1 = 16
    # earned:  3*1 (information) + 3*1 (domain) + 1*2/4 (fairness) + 1*1/4 (risk) = 6.75
    # total:   100 * 6.75 / 16 = 42.1875 -> 42
    record = {
        "information": complete("information"),
        "domain": complete("domain"),
        "fairness": {"protected_attributes_assessed": ["sex", "age"], "results_summary": LONG},
        "risk": {"exposure_amount": 0},
    }
    result = score(record, frozenset({"information", "domain"}))
    assert result.total == 42
    assert result.mandatory_complete and result.missing_mandatory == ()
    lines = {line.section_id: line for line in result.lines}
    assert [line.section_id for line in result.lines] == list(SECTION_IDS)
    assert (lines["information"].weight, lines["information"].points) == (3.0, 18.75)
    assert (lines["fairness"].completeness, lines["fairness"].points) == (0.5, 3.12)
    assert (lines["risk"].mandatory, lines["risk"].points) == (False, 1.56)
    assert lines["security"].points == 0.0 and lines["domain"].title == (
        "Domain context and intended use"
    )


def test_score_hand_computed_tier_1_core():
    # weights: 6 core x 3 + 6 x 1 = 24; earned: 3 + 3 + 3*2/3 (provenance) + 3*1/4 (consent)
    # + 1 (performance, optional) = 9.75; total = 100 * 9.75 / 24 = 40.625 -> 41
    record = {
        "information": complete("information"),
        "domain": complete("domain"),
        "provenance": {
            "training_datasets": [{"ref": "d:1", "sha256": "0", "rows": 1}],
            "data_sources_description": LONG,
        },
        "consent": {"prohibited_bases_excluded": False},
        "performance": complete("performance"),
    }
    result = score(record, CORE_TIER1_SECTIONS)
    assert result.total == 41
    assert not result.mandatory_complete
    assert result.missing_mandatory == ("fairness", "provenance", "consent", "risk")


def test_score_rounds_halves_up():
    # no mandatory: weights 12; earned 7 complete + fairness 2/4 = 7.5; 100 * 7.5 / 12 = 62.5 -> 63
    record = {sid: complete(sid) for sid in SECTION_IDS[3:10]}
    record["fairness"] = {"results_summary": LONG, "metrics_and_thresholds": LONG}
    assert score(record, frozenset()).total == 63


def test_score_never_reaches_100_with_an_incomplete_section():
    # information optional with 7/8: 100 * (33 + 7/8) / 34 = 99.63, capped at 99
    record = {sid: complete(sid) for sid in SECTION_IDS}
    del record["information"]["target"]
    assert score(record, frozenset(SECTION_IDS[1:])).total == 99
    record["information"]["target"] = "risk"
    assert score(record, frozenset(SECTION_IDS[1:])).total == 100


def test_score_refuses_unknown_sections():
    with pytest.raises(NotFound):
        score({"colour": {}}, frozenset())
    with pytest.raises(InvalidInput, match="unknown mandatory sections 'colour'"):
        score({}, frozenset({"colour"}))


records = st.fixed_dictionaries(
    {sid: st.sets(st.sampled_from(REQUIRED[sid])) for sid in SECTION_IDS}
).map(lambda filled: {sid: {name: "x" for name in names} for sid, names in filled.items()})
mandatory_sets = st.frozensets(st.sampled_from(SECTION_IDS))


@given(records, mandatory_sets)
def test_score_is_0_to_100_and_100_exactly_when_every_section_is_complete(record, mandatory):
    result = score(record, mandatory)
    everything_complete = all(section_status(s, f).complete for s, f in record.items())
    assert 0 <= result.total <= 100
    assert (result.total == 100) == everything_complete
    assert result.mandatory_complete == all(
        section_status(s, record[s]).complete for s in mandatory
    )


@given(records, mandatory_sets, st.sampled_from(SECTION_IDS), st.data())
def test_filling_a_field_never_lowers_the_score(record, mandatory, sid, data):
    missing = section_status(sid, record[sid]).missing
    if missing:
        before = score(record, mandatory).total
        record[sid][data.draw(st.sampled_from(missing))] = "x"
        assert score(record, mandatory).total >= before


def test_tiers_module_imports_on_its_own():
    # compliance re-exports tiers; importing tiers first must not hit a circular import
    code = (
        "from nexml_ext.governance import tiers; print(len(tiers.TierPolicy.default().mandatory))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "3"
