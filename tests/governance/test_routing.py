"""Route specs, pure: every operator, nesting, rule order, canary split, shadow, validation."""

from __future__ import annotations

import pytest

from nexml_ext.errors import InvalidInput
from nexml_ext.governance.routing import (
    RouteDecision,
    canary_bucket,
    new_route_key,
    parse_route,
    parse_route_yaml,
    route_key_matches,
)

SCHEMA = {
    "columns": {
        "amount": {"dtype": "int64", "kind": "numeric", "min": 250.0, "max": 18424.0},
        "housing": {"dtype": "object", "kind": "categorical", "categories": ["free", "own", "rent"]},
        "purpose": {"dtype": "object", "kind": "categorical"},
        "vip": {"dtype": "bool", "kind": "boolean"},
        "note": {"dtype": "float64"},  # no kind: inferred from the dtype
    }
}
SCHEMAS = {"main": SCHEMA, "careful": SCHEMA, "next": SCHEMA, "shadow": SCHEMA}


def route(rules=(), **spec):
    return parse_route({"rules": list(rules), "default": "main", **spec}, SCHEMAS, name="credit")


def when(cond, row):
    """Does ``cond`` send ``row`` to its rule's deployment?"""
    spec = route([{"name": "r", "when": cond, "to": "careful"}])
    return spec.decide(row).rule == "r"


def cmp(field, op, value=None):
    out = {"field": field, "op": op}
    if op != "is null":
        out["value"] = value
    return out


@pytest.mark.parametrize(
    ("cond", "row", "expected"),
    [
        (cmp("amount", "=", 1000), {"amount": 1000}, True),
        (cmp("amount", "=", 1000), {"amount": 1000.0}, True),
        (cmp("amount", "=", 1000), {"amount": 999}, False),
        (cmp("amount", "!=", 1000), {"amount": 999}, True),
        (cmp("amount", "!=", 1000), {"amount": 1000}, False),
        (cmp("amount", "<", 1000), {"amount": 999.5}, True),
        (cmp("amount", "<", 1000), {"amount": 1000}, False),
        (cmp("amount", "<=", 1000), {"amount": 1000}, True),
        (cmp("amount", "<=", 1000), {"amount": 1001}, False),
        (cmp("amount", ">", 1000), {"amount": 1001}, True),
        (cmp("amount", ">", 1000), {"amount": 1000}, False),
        (cmp("amount", ">=", 1000), {"amount": 1000}, True),
        (cmp("amount", ">=", 1000), {"amount": 10}, False),
        (cmp("amount", ">", 1000), {"amount": "2000"}, True),  # numeric text compares as a number
        (cmp("amount", ">", 1000), {"amount": "lots"}, False),  # and nonsense matches nothing
        (cmp("housing", "in", ["own", "free"]), {"housing": "own"}, True),
        (cmp("housing", "in", ["own", "free"]), {"housing": "rent"}, False),
        (cmp("housing", "not in", ["own", "free"]), {"housing": "rent"}, True),
        (cmp("housing", "not in", ["own", "free"]), {"housing": "own"}, False),
        (cmp("amount", "in", [1, 2]), {"amount": 2}, True),
        (cmp("purpose", "=", "anything"), {"purpose": "anything"}, True),  # no categories known
        (cmp("vip", "=", True), {"vip": True}, True),
        (cmp("vip", "=", True), {"vip": False}, False),
        (cmp("note", "<", 1.5), {"note": 1}, True),
        (cmp("housing", "is null"), {"housing": None}, True),
        (cmp("housing", "is null"), {}, True),
        (cmp("housing", "is null"), {"housing": "own"}, False),
        (cmp("amount", "is null"), {"amount": float("nan")}, True),
        # a missing value fails every comparison, even != and not in
        (cmp("amount", "!=", 5), {}, False),
        (cmp("housing", "not in", ["own"]), {"housing": None}, False),
    ],
)
def test_every_operator(cond, row, expected):
    assert when(cond, row) is expected


def test_nested_all_any_not():
    cond = {
        "all": [
            cmp("amount", ">", 5000),
            {"any": [cmp("housing", "=", "rent"), {"not": cmp("vip", "=", True)}]},
        ]
    }
    assert when(cond, {"amount": 6000, "housing": "rent", "vip": True})
    assert when(cond, {"amount": 6000, "housing": "own", "vip": False})
    assert not when(cond, {"amount": 6000, "housing": "own", "vip": True})
    assert not when(cond, {"amount": 100, "housing": "rent", "vip": False})
    assert when({"not": {"not": cmp("amount", "=", 1)}}, {"amount": 1})


def test_first_matching_rule_wins_then_default():
    spec = route(
        [
            {"name": "huge", "when": cmp("amount", ">", 10000), "to": "careful"},
            {"name": "big", "when": cmp("amount", ">", 5000), "to": "next"},
        ]
    )
    assert spec.decide({"amount": 20000}) == RouteDecision("careful", "huge", False, None)
    assert spec.decide({"amount": 7000}) == RouteDecision("next", "big", False, None)
    assert spec.decide({"amount": 100}) == RouteDecision("main", "default", False, None)


def test_canary_share_is_close_and_deterministic_per_subject():
    spec = route(
        [{"name": "huge", "when": cmp("amount", ">", 10000), "to": "careful"}],
        canary={"to": "next", "share": 0.2},
    )
    decisions = [spec.decide({"amount": 100}, f"applicant-{i}") for i in range(10_000)]
    share = sum(d.canary for d in decisions) / len(decisions)
    assert 0.18 < share < 0.22
    assert all(d.deployment == ("next" if d.canary else "main") for d in decisions)
    assert {d.rule for d in decisions} == {"canary", "default"}
    # the same subject always meets the same deployment
    again = [spec.decide({"amount": 100}, f"applicant-{i}") for i in range(200)]
    assert again == decisions[:200]
    # the bucket is sha256("<route>:<subject>") / 2**256, and rules still come first
    inside = next(f"applicant-{i}" for i in range(10_000) if canary_bucket("credit", f"applicant-{i}") < 0.2)
    assert spec.decide({"amount": 100}, inside).canary
    assert spec.decide({"amount": 20000}, inside).rule == "huge"
    # no subject id: never the canary
    assert all(not spec.decide({"amount": 100}).canary for _ in range(50))
    # share 0 and 1 are the two ends
    assert not route(canary={"to": "next", "share": 0}).decide({}, inside).canary
    assert route(canary={"to": "next", "share": 1}).decide({}, "anyone").canary


def test_shadow_is_reported_but_never_answers():
    spec = route(
        [{"name": "to-shadow", "when": cmp("vip", "=", True), "to": "shadow"}], shadow="shadow"
    )
    assert spec.decide({"vip": False}) == RouteDecision("main", "default", False, "shadow")
    # when the shadow itself answers, it is not scored twice
    assert spec.decide({"vip": True}) == RouteDecision("shadow", "to-shadow", False, None)


def test_to_dict_round_trips():
    spec = route(
        [{"name": "big", "when": {"any": [cmp("amount", ">", 1), cmp("housing", "is null")]},
          "to": "careful"}],
        canary={"to": "next", "share": 0.25},
        shadow="shadow",
    )
    again = parse_route(spec.to_dict(), SCHEMAS, name="credit")
    assert again == spec
    assert spec.deployments == ("careful", "main", "next", "shadow")


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ({"rules": [{"name": "big", "when": cmp("salary", ">", 1), "to": "careful"}]},
         ["rule 'big'", "unknown field 'salary'", "'careful'"]),
        ({"rules": [{"name": "big", "when": cmp("amount", ">", "lots"), "to": "careful"}]},
         ["rule 'big'", "field 'amount' is numeric", "'lots'"]),
        ({"rules": [{"name": "b", "when": cmp("amount", "=", True), "to": "careful"}]},
         ["rule 'b'", "field 'amount' is numeric"]),
        ({"rules": [{"name": "h", "when": cmp("housing", "=", 3), "to": "careful"}]},
         ["rule 'h'", "field 'housing' is categorical", "text"]),
        ({"rules": [{"name": "h", "when": cmp("housing", "<", "own"), "to": "careful"}]},
         ["rule 'h'", "field 'housing'", "does not apply to text"]),
        ({"rules": [{"name": "h", "when": cmp("housing", "=", "castle"), "to": "careful"}]},
         ["rule 'h'", "field 'housing'", "unknown category 'castle'", "free, own, rent"]),
        ({"rules": [{"name": "h", "when": cmp("housing", "in", ["own", "castle"]), "to": "careful"}]},
         ["rule 'h'", "unknown category 'castle'"]),
        ({"rules": [{"name": "h", "when": cmp("housing", "in", "own"), "to": "careful"}]},
         ["rule 'h'", "field 'housing'", "'in' needs a non-empty list"]),
        ({"rules": [{"name": "v", "when": cmp("vip", "=", "yes"), "to": "careful"}]},
         ["rule 'v'", "field 'vip' is boolean"]),
        ({"rules": [{"name": "o", "when": cmp("amount", "~", 1), "to": "careful"}]},
         ["rule 'o'", "unknown op '~'"]),
        ({"rules": [{"name": "n", "when": {"field": "amount", "op": "is null", "value": 1},
                     "to": "careful"}]},
         ["rule 'n'", "'is null' takes no value"]),
        ({"rules": [{"name": "x", "when": {"all": []}, "to": "careful"}]},
         ["rule 'x'", "all needs a non-empty list"]),
        ({"rules": [{"name": "x", "when": {"all": [], "any": []}, "to": "careful"}]},
         ["rule 'x'", "exactly one of all, any, not"]),
        ({"rules": [{"name": "x", "when": cmp("amount", ">", 1), "to": "nowhere"}]},
         ["rule 'x'", "unknown or inactive deployment 'nowhere'"]),
        ({"default": "nowhere"}, ["default", "unknown or inactive deployment 'nowhere'"]),
        ({"shadow": "nowhere"}, ["shadow", "unknown or inactive deployment 'nowhere'"]),
        ({"canary": {"to": "nowhere", "share": 0.1}}, ["canary", "'nowhere'"]),
        ({"canary": {"to": "next", "share": 1.5}}, ["canary", "share must be a number from 0 to 1"]),
        ({"canary": {"to": "next", "share": -0.1}}, ["canary", "share"]),
        ({"canary": {"to": "next", "share": "10%"}}, ["canary", "share"]),
        ({"canary": {"to": "main", "share": 0.1}}, ["canary", "already the default"]),
        ({"canary": {"to": "next"}}, ["canary", "exactly 'to' and 'share'"]),
        ({"rules": [{"name": "default", "when": cmp("amount", ">", 1), "to": "careful"}]},
         ["rule 'default'", "reserved or used twice"]),
        ({"rules": [{"name": "a", "when": cmp("amount", ">", 1), "to": "careful"},
                    {"name": "a", "when": cmp("amount", ">", 2), "to": "careful"}]},
         ["rule 'a'", "used twice"]),
        ({"rules": [{"when": cmp("amount", ">", 1), "to": "careful"}]}, ["rule 1 needs a name"]),
        ({"ruels": []}, ["unknown key(s) 'ruels'"]),
    ],
)
def test_invalid_specs_are_refused_naming_rule_and_field(spec, fragments):
    with pytest.raises(InvalidInput) as caught:
        parse_route({"default": "main", **spec}, SCHEMAS, name="credit")
    message = str(caught.value)
    assert message.startswith("route credit: ")
    for fragment in fragments:
        assert fragment in message, message


def test_a_rule_field_must_also_be_known_to_the_default():
    schemas = {**SCHEMAS, "slim": {"columns": {"amount": {"dtype": "int64", "kind": "numeric"}}}}
    rule = {"name": "h", "when": cmp("housing", "=", "own"), "to": "careful"}
    with pytest.raises(InvalidInput, match="rule 'h': unknown field 'housing': deployment 'slim'"):
        parse_route({"rules": [rule], "default": "slim"}, schemas, name="credit")


def test_yaml():
    text = """
rules:
  - name: large
    when: {all: [{field: amount, op: ">", value: 10000}, {field: housing, op: "not in", value: [own]}]}
    to: careful
default: main
canary: {to: next, share: 0.1}
shadow: shadow
"""
    spec = parse_route(parse_route_yaml(text), SCHEMAS, name="credit")
    assert spec.decide({"amount": 12000, "housing": "rent"}).deployment == "careful"
    assert spec.decide({"amount": 12000, "housing": "own"}).shadow == "shadow"
    with pytest.raises(InvalidInput, match=r"route spec is not valid YAML at line \d+, column \d+: expected"):
        parse_route_yaml("rules:\n  - name: [unclosed\n")
    with pytest.raises(InvalidInput, match="must be a mapping"):
        parse_route_yaml("- just\n- a list\n")


def test_route_keys_are_checked_in_constant_time_against_the_hash():
    key, stored = new_route_key()
    assert key.startswith("nxr_") and len(stored) == 64 and key not in stored
    assert route_key_matches(key, stored)
    assert not route_key_matches(key + "x", stored)
    assert not route_key_matches("", stored)
    assert not route_key_matches(None, stored)
    assert not route_key_matches(key, None)
    assert not route_key_matches("nxr_é", stored)
