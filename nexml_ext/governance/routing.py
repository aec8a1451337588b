"""Routes: which deployment answers a scoring request, decided by ordered rules over its fields.

A route spec is plain data (usually YAML)::

    rules:                      # tried in order; the first whose condition holds wins
      - name: large-loans
        when: {all: [{field: credit_amount, op: ">", value: 10000},
                     {not: {field: housing, op: "=", value: own}}]}
        to: credit-careful
    default: credit-main        # when no rule matches
    canary: {to: credit-next, share: 0.1}   # optional: that share of *default* traffic
    shadow: credit-shadow       # optional: also scored and recorded, never returned

A condition is ``{all: [...]}``, ``{any: [...]}``, ``{not: COND}`` or a comparison
``{field, op, value}`` with ``op`` one of ``= != < <= > >= in "not in" "is null"``.
:func:`parse_route` checks every comparison against the input schema of the model each
deployment serves, so a route that could never be evaluated is refused when saved, naming the
rule and the field. At decision time a missing or null field makes every comparison false except
``is null``.

The canary share is deterministic per subject: SHA-256 of ``"<route>:<subject id>"`` read as a
number in [0, 1) below the share sends that subject's default traffic to the canary, so one
applicant always meets the same model. Requests without a subject id never go to the canary.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from ..errors import InvalidInput

OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in", "is null")
_ORDERED = {"<", "<=", ">", ">="}
_SPEC_KEYS = {"rules", "default", "canary", "shadow"}
_RESERVED_RULE_NAMES = {"default", "canary"}
KEY_PREFIX = "nxr"


# --- conditions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Any = None
    kind: str = "categorical"

    def matches(self, row: Mapping[str, Any]) -> bool:
        actual = row.get(self.field)
        if self.op == "is null":
            return _is_null(actual)
        if _is_null(actual):
            return False
        actual = _coerce(actual, self.kind)
        if actual is None:  # a value of the wrong type matches nothing
            return False
        if self.op in ("in", "not in"):
            found = any(actual == _coerce(v, self.kind) for v in self.value)
            return found if self.op == "in" else not found
        expected = _coerce(self.value, self.kind)
        try:
            return bool(_COMPARE[self.op](actual, expected))
        except TypeError:
            return False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "op": self.op}
        if self.op != "is null":
            out["value"] = list(self.value) if self.op in ("in", "not in") else self.value
        return out


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]

    def matches(self, row: Mapping[str, Any]) -> bool:
        return all(c.matches(row) for c in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {"all": [c.to_dict() for c in self.items]}


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]

    def matches(self, row: Mapping[str, Any]) -> bool:
        return any(c.matches(row) for c in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {"any": [c.to_dict() for c in self.items]}


@dataclass(frozen=True)
class Not:
    item: Condition

    def matches(self, row: Mapping[str, Any]) -> bool:
        return not self.item.matches(row)

    def to_dict(self) -> dict[str, Any]:
        return {"not": self.item.to_dict()}


Condition = Compare | All | AnyOf | Not

_COMPARE = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _coerce(value: Any, kind: str) -> Any:
    """The request value as the field's kind compares it; None when it cannot be one."""
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            return float(value)
        except ValueError:
            return None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "datetime":
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return str(value)


# --- the route ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    when: Condition
    to: str


@dataclass(frozen=True)
class Canary:
    to: str
    share: float


@dataclass(frozen=True)
class RouteDecision:
    """Where one request goes. ``rule`` is the matching rule's name, ``"default"`` or
    ``"canary"``; ``shadow`` is the deployment that also scores it (never answers), if any."""

    deployment: str
    rule: str
    canary: bool
    shadow: str | None


@dataclass(frozen=True)
class RouteSpec:
    name: str
    rules: tuple[Rule, ...]
    default: str
    canary: Canary | None = None
    shadow: str | None = None

    @property
    def deployments(self) -> tuple[str, ...]:
        """Every deployment the route names, each once, in order of appearance."""
        names = [r.to for r in self.rules] + [self.default]
        names += [self.canary.to] if self.canary else []
        names += [self.shadow] if self.shadow else []
        return tuple(dict.fromkeys(names))

    def decide(self, row: Mapping[str, Any], subject_id: str | None = None) -> RouteDecision:
        """The first rule whose condition holds; else the default, or the canary for the
        subjects whose bucket falls below its share. The shadow is reported unless it is the
        deployment that answers anyway."""
        for rule in self.rules:
            if rule.when.matches(row):
                return self._decision(rule.to, rule.name, False)
        canary = self.canary
        if canary and subject_id is not None and self._bucket(subject_id) < canary.share:
            return self._decision(canary.to, "canary", True)
        return self._decision(self.default, "default", False)

    def _bucket(self, subject_id: str) -> float:
        return canary_bucket(self.name, str(subject_id))

    def _decision(self, deployment: str, rule: str, canary: bool) -> RouteDecision:
        shadow = self.shadow if self.shadow != deployment else None
        return RouteDecision(deployment, rule, canary, shadow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": [{"name": r.name, "when": r.when.to_dict(), "to": r.to} for r in self.rules],
            "default": self.default,
            "canary": {"to": self.canary.to, "share": self.canary.share} if self.canary else None,
            "shadow": self.shadow,
        }


def canary_bucket(route: str, subject_id: str) -> float:
    """The subject's fixed place in [0, 1) for this route's canary split."""
    digest = hashlib.sha256(f"{route}:{subject_id}".encode()).digest()
    return int.from_bytes(digest, "big") / 2**256


# --- parsing and validation ---------------------------------------------------------------


def parse_route_yaml(text: str) -> dict[str, Any]:
    """The spec dict in ``text``; InvalidInput saying where the YAML is broken."""
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"route spec is not valid YAML{at}: {problem}") from None
    if not isinstance(spec, dict):
        raise InvalidInput("route spec must be a mapping with rules, default, canary, shadow")
    return spec


def parse_route(
    spec: Mapping[str, Any], schemas: Mapping[str, Mapping[str, Any]], *, name: str
) -> RouteSpec:
    """Validate ``spec`` for route ``name`` and return it frozen.

    ``schemas`` maps each deployment that may be named to the input schema of the version it
    serves (``{"columns": {field: {"dtype", "kind", "categories"?}}}``). Refused with
    InvalidInput naming the rule and field: unknown keys or deployments, fields missing from the
    schema of the rule's target or of the default, values whose type does not fit the field,
    categories the model never saw, and canary shares outside [0, 1].
    """
    prefix = f"route {name}"
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"{prefix}: the spec must be a mapping with rules, default, ...")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise InvalidInput(
            f"{prefix}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(sorted(_SPEC_KEYS))}"
        )
    default = _deployment(spec.get("default"), schemas, f"{prefix}: default")
    rules_in = spec.get("rules") or []
    if not isinstance(rules_in, list):
        raise InvalidInput(f"{prefix}: rules must be a list")
    rules: list[Rule] = []
    for i, raw in enumerate(rules_in, 1):
        rules.append(_rule(raw, i, rules, schemas, default, prefix))
    canary = _canary(spec.get("canary"), schemas, default, prefix)
    shadow = spec.get("shadow")
    if shadow is not None:
        shadow = _deployment(shadow, schemas, f"{prefix}: shadow")
    return RouteSpec(name, tuple(rules), default, canary, shadow)


def _deployment(value: Any, schemas: Mapping[str, Any], where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}: name a deployment")
    if value not in schemas:
        known = ", ".join(sorted(schemas)) or "none"
        raise InvalidInput(
            f"{where}: unknown or inactive deployment {value!r} (active deployments: {known})"
        )
    return value


def _rule(raw, index, earlier, schemas, default, prefix) -> Rule:  # type: ignore[no-untyped-def]
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{prefix}: rule {index} must be a mapping with name, when, to")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{prefix}: rule {index} needs a name")
    where = f"{prefix}: rule {name!r}"
    extra = sorted(set(raw) - {"name", "when", "to"})
    if extra:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(map(repr, extra))}")
    if name in _RESERVED_RULE_NAMES or any(r.name == name for r in earlier):
        raise InvalidInput(f"{where}: the name is reserved or used twice; choose another")
    to = _deployment(raw.get("to"), schemas, where)
    # A request reaching this rule may equally end at the default, so both must know its fields.
    targets = dict.fromkeys([to, default])
    when = _condition(raw.get("when"), where, [(d, schemas[d]) for d in targets])
    return Rule(name, when, to)


def _condition(raw: Any, where: str, schemas: list[tuple[str, Mapping[str, Any]]]) -> Condition:
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidInput(f"{where}: a condition must be all, any, not or field/op/value")
    if "field" not in raw:
        if len(raw) != 1 or next(iter(raw)) not in ("all", "any", "not"):
            raise InvalidInput(
                f"{where}: a condition is exactly one of all, any, not, or field/op/value; "
                f"got {', '.join(map(str, raw))}"
            )
        key, value = next(iter(raw.items()))
        if key == "not":
            return Not(_condition(value, where, schemas))
        if not isinstance(value, list) or not value:
            raise InvalidInput(f"{where}: {key} needs a non-empty list of conditions")
        items = tuple(_condition(v, where, schemas) for v in value)
        return All(items) if key == "all" else AnyOf(items)
    return _compare(raw, where, schemas)


def _compare(raw: Mapping[str, Any], where: str, schemas) -> Compare:  # type: ignore[no-untyped-def]
    extra = sorted(set(raw) - {"field", "op", "value"})
    field = raw.get("field")
    if extra:
        raise InvalidInput(f"{where}: field {field!r}: unknown key(s) {', '.join(extra)}")
    if not isinstance(field, str):
        raise InvalidInput(f"{where}: field must be a column name, got {field!r}")
    op = raw.get("op")
    if op not in OPS:
        raise InvalidInput(
            f"{where}: field {field!r}: unknown op {op!r}; use one of {', '.join(OPS)}"
        )
    entries = []
    for deployment, schema in schemas:
        entry = (schema.get("columns") or {}).get(field)
        if entry is None:
            raise InvalidInput(
                f"{where}: unknown field {field!r}: deployment {deployment!r} has no such input"
            )
        entries.append(entry)
    kind = _kind(entries[0])
    value = raw.get("value")
    if op == "is null":
        if value is not None:
            raise InvalidInput(f"{where}: field {field!r}: 'is null' takes no value")
        return Compare(field, op, None, kind)
    if op in ("in", "not in"):
        if not isinstance(value, list) or not value:
            raise InvalidInput(f"{where}: field {field!r}: {op!r} needs a non-empty list")
        for entry in entries:
            for v in value:
                _check_value(v, entry, where, field, op)
        return Compare(field, op, tuple(value), kind)
    for entry in entries:
        _check_value(value, entry, where, field, op)
    return Compare(field, op, value, kind)


def _kind(entry: Mapping[str, Any]) -> str:
    if entry.get("kind"):
        return str(entry["kind"])
    dtype = str(entry.get("dtype", ""))
    if dtype.startswith("bool"):
        return "boolean"
    if dtype.startswith(("int", "uint", "float", "Int", "UInt", "Float")):
        return "numeric"
    if dtype.startswith("datetime"):
        return "datetime"
    return "categorical"


def _check_value(value: Any, entry: Mapping[str, Any], where: str, field: str, op: str) -> None:
    kind = _kind(entry)
    bad = f"{where}: field {field!r} is {kind}"
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"{bad}: compare it with a number, not {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidInput(f"{bad}: compare it with true or false, not {value!r}")
        if op in _ORDERED:
            raise InvalidInput(f"{bad}: {op!r} does not apply; use = or !=")
    elif kind == "datetime":
        if isinstance(value, datetime):
            return
        if not isinstance(value, str) or _coerce(value, kind) is None:
            raise InvalidInput(f"{bad}: compare it with an ISO date or date-time, not {value!r}")
    else:
        if not isinstance(value, str):
            raise InvalidInput(f"{bad}: compare it with text, not {value!r}")
        if op in _ORDERED:
            raise InvalidInput(f"{bad}: {op!r} does not apply to text; use =, !=, in, not in")
        categories = entry.get("categories")
        if categories is not None and value not in categories:
            raise InvalidInput(
                f"{bad}: unknown category {value!r} (known: {', '.join(categories)})"
            )


def _canary(raw: Any, schemas, default: str, prefix: str) -> Canary | None:  # type: ignore[no-untyped-def]
    if raw is None:
        return None
    where = f"{prefix}: canary"
    if not isinstance(raw, Mapping) or set(raw) != {"to", "share"}:
        raise InvalidInput(f"{where} must be a mapping with exactly 'to' and 'share'")
    to = _deployment(raw["to"], schemas, where)
    if to == default:
        raise InvalidInput(f"{where}: {to!r} is already the default; name another deployment")
    share = raw["share"]
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise InvalidInput(f"{where}: share must be a number from 0 to 1, got {share!r}")
    return Canary(to, float(share))


# --- route keys ---------------------------------------------------------------------------


def new_route_key() -> tuple[str, str]:
    """A fresh route key and its SHA-256: (the key to show once, what to store)."""
    key = f"{KEY_PREFIX}_{secrets.token_urlsafe(32)}"
    return key, hash_route_key(key)


def hash_route_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def route_key_matches(key: str | None, stored_sha256: str | None) -> bool:
    """Constant-time check of a presented key against the stored hash (False if either lacks)."""
    presented = hash_route_key(key) if isinstance(key, str) else "0" * 64
    ok = hmac.compare_digest(presented, stored_sha256 or "1" * 64)
    return ok and bool(key) and stored_sha256 is not None
