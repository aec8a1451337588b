"""What a complete compliance record is: the twelve sections, their fields, completeness and score.

Pure rules over plain dicts: no database, no principal. The section schemas and the templates are
data files under ``governance/data/`` so that a model-risk team can read and review them without
reading Python. The tier policy, materiality and templates live in :mod:`nexml_ext.governance.tiers`
and are re-exported here, so callers need one import.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ..errors import InvalidInput, NotFound
from .tiers import (
    CORE_TIER1_SECTIONS,
    THRESHOLDS,
    TIERS,
    Template,
    TierPolicy,
    mandatory_sections,
    materiality_tier,
    template,
    templates,
    validate_re_review,
)

SECTION_IDS: tuple[str, ...] = (
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
AUTO_SECTIONS: frozenset[str] = frozenset(
    {"information", "provenance", "performance", "change_history"}
)
FIELD_KINDS: frozenset[str] = frozenset(
    {"text", "choice", "number", "integer", "bool", "list", "date"}
)

MANDATORY_WEIGHT = 3.0
OPTIONAL_WEIGHT = 1.0


@dataclass(frozen=True)
class FieldSpec:
    """One field of a section.

    ``min_length`` applies to text (characters after stripping); ``minimum``/``maximum`` to numbers
    and integers; ``item_keys`` says that a list holds mappings with at least these keys (otherwise
    a list holds text items). ``auto`` fields are filled by the platform, never by people.
    """

    name: str
    label: str
    kind: str
    required: bool
    auto: bool
    help: str
    choices: tuple[str, ...] | None = None
    min_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    item_keys: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SectionSpec:
    """One of the twelve sections: its id, title, description and fields in display order."""

    id: str
    title: str
    description: str
    fields: tuple[FieldSpec, ...]

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name``, or None."""
        return next((f for f in self.fields if f.name == name), None)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


def _field_spec(section_id: str, raw: Mapping[str, Any]) -> FieldSpec:
    kind = raw["kind"]
    where = f"sections.yaml: section {section_id!r} field {raw['name']!r}"
    if kind not in FIELD_KINDS:
        raise InvalidInput(f"{where} has unknown kind {kind!r}")
    if (kind == "choice") != bool(raw.get("choices")):
        raise InvalidInput(f"{where}: choices go with kind choice, and only with it")
    return FieldSpec(
        name=raw["name"],
        label=raw["label"],
        kind=kind,
        required=bool(raw["required"]),
        auto=bool(raw["auto"]),
        help=" ".join(str(raw["help"]).split()),
        choices=tuple(raw["choices"]) if raw.get("choices") else None,
        min_length=raw.get("min_length"),
        minimum=raw.get("minimum"),
        maximum=raw.get("maximum"),
        item_keys=tuple(raw["item_keys"]) if raw.get("item_keys") else None,
    )


@cache
def _sections() -> dict[str, SectionSpec]:
    data = resources.files(__package__).joinpath("data")
    text = data.joinpath("sections.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)["sections"]
    specs = {}
    for s in raw:
        fields = tuple(_field_spec(s["id"], f) for f in s["fields"])
        description = " ".join(s["description"].split())
        specs[s["id"]] = SectionSpec(s["id"], s["title"], description, fields)
    if tuple(specs) != SECTION_IDS:
        raise InvalidInput(f"sections.yaml lists {tuple(specs)}, expected {SECTION_IDS}")
    return specs


def sections() -> dict[str, SectionSpec]:
    """The twelve section schemas by id, in ``SECTION_IDS`` order (read once from sections.yaml)."""
    return dict(_sections())


def section(section_id: str) -> SectionSpec:
    """The schema of one section. Raises NotFound naming the known ids."""
    spec = _sections().get(section_id)
    if spec is None:
        known = ", ".join(SECTION_IDS)
        raise NotFound(f"unknown compliance section {section_id!r} (known: {known})")
    return spec


# --- validating what people (or the platform) write ------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _range_words(noun: str, spec: FieldSpec) -> str:
    lo, hi = spec.minimum, spec.maximum
    if lo is not None and hi is not None:
        return f"{noun} between {lo:g} and {hi:g}"
    if lo is not None:
        return f"{noun} >= {lo:g}"
    if hi is not None:
        return f"{noun} <= {hi:g}"
    return noun


def _in_range(value: float, spec: FieldSpec) -> bool:
    above = spec.minimum is None or value >= spec.minimum
    return above and (spec.maximum is None or value <= spec.maximum)


def _parse_number(value: Any) -> int | float | None:
    """An int or finite float from a number (numpy's too) or a numeric string; else None."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    return None


_TRUE_WORDS = {"true": True, "yes": True, "false": False, "no": False}


def _clean_value(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """(cleaned value, None) or (None, 'what it must be') for a non-blank value."""
    kind = spec.kind
    if kind in ("text", "choice"):
        if not isinstance(value, str):
            return None, "text" if kind == "text" else f"one of {', '.join(spec.choices or ())}"
        text = value.strip()
        if kind == "choice" and text not in (spec.choices or ()):
            return None, f"one of {', '.join(spec.choices or ())}"
        if spec.min_length and len(text) < spec.min_length:
            return None, f"at least {spec.min_length} characters (a placeholder is not an answer)"
        return text, None
    if kind == "number":
        number = _parse_number(value)
        if number is None or not _in_range(number, spec):
            return None, _range_words("a number", spec)
        return number, None
    if kind == "integer":
        number = _parse_number(value)
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if not isinstance(number, int) or not _in_range(number, spec):
            return None, _range_words("an integer", spec)
        return number, None
    if kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS:
            return _TRUE_WORDS[value.strip().lower()], None
        return None, "true or false"
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date().isoformat(), None
        if isinstance(value, dt.date):
            return value.isoformat(), None
        try:
            return dt.date.fromisoformat(value.strip()).isoformat(), None
        except (AttributeError, ValueError):
            return None, "a date YYYY-MM-DD"
    # list
    if not isinstance(value, (list, tuple)):
        return None, _list_words(spec)
    if spec.item_keys:
        keys = set(spec.item_keys)
        if not all(isinstance(item, Mapping) and keys <= set(item) for item in value):
            return None, _list_words(spec)
        return [dict(item) for item in value], None
    if not all(isinstance(item, str) for item in value):
        return None, _list_words(spec)
    return [item.strip() for item in value if item.strip()], None


def _list_words(spec: FieldSpec) -> str:
    if spec.item_keys:
        return f"a list of mappings with keys {', '.join(spec.item_keys)}"
    return "a list of text items"


def validate_fields(
    section_id: str, fields: Mapping[str, Any], *, allow_auto: bool = False
) -> dict[str, Any]:
    """Check and clean field values for one section before they are stored.

    Args:
        section_id: one of ``SECTION_IDS``.
        fields: field name -> value; a partial update is fine. None or blank text clears a field.
        allow_auto: True only when the platform itself writes the auto fields from metadata.

    Returns:
        A new dict with the same keys: text stripped, numbers and integers parsed from numeric
        strings, booleans from "true"/"false"/"yes"/"no", dates as ISO ``YYYY-MM-DD`` text, lists
        of text stripped of blank items; cleared fields map to None.

    Raises:
        NotFound: unknown section.
        InvalidInput: ``fields`` is not a mapping; an unknown field; an auto field set while
            ``allow_auto`` is False ("... is filled by the platform"); or a bad value, naming
            section, field and reason, e.g. "compliance section 'risk': field 'exposure_amount'
            must be a number >= 0, got 'lots'".
    """
    spec = section(section_id)
    where = f"compliance section {section_id!r}"
    if not isinstance(fields, Mapping):
        raise InvalidInput(f"{where}: fields must be a mapping, got {_show(fields)}")
    cleaned: dict[str, Any] = {}
    for name, value in fields.items():
        field = spec.field(name)
        if field is None:
            known = ", ".join(f.name for f in spec.fields)
            raise InvalidInput(f"{where}: unknown field {name!r} (known: {known})")
        if field.auto and not allow_auto:
            raise InvalidInput(f"{where}: field {name!r} is filled by the platform")
        if _is_blank(value):
            cleaned[name] = None
            continue
        result, expected = _clean_value(field, value)
        if expected is not None:
            raise InvalidInput(f"{where}: field {name!r} must be {expected}, got {_show(value)}")
        cleaned[name] = result
    return cleaned


# --- completeness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SectionStatus:
    """Completeness of one section: ``filled`` of its ``required`` fields; ``missing`` by name."""

    section_id: str
    complete: bool
    filled: int
    required: int
    missing: tuple[str, ...]

    @property
    def completeness(self) -> float:
        """Share of required fields filled, 1.0 when the section requires none."""
        return self.filled / self.required if self.required else 1.0


def is_filled(value: Any) -> bool:
    """Whether a stored value counts as an answer: not None, not blank text, not an empty list or
    mapping. False and 0 are answers."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return bool(value)
    return True


def section_status(section_id: str, fields: Mapping[str, Any]) -> SectionStatus:
    """Completeness of one section from its stored fields (auto and human together).

    Fields not in the schema are ignored. Raises NotFound for an unknown section and InvalidInput
    when ``fields`` is not a mapping.
    """
    spec = section(section_id)
    if not isinstance(fields, Mapping):
        where = f"compliance section {section_id!r}"
        raise InvalidInput(f"{where}: fields must be a mapping, got {_show(fields)}")
    required = spec.required_fields
    missing = tuple(name for name in required if not is_filled(fields.get(name)))
    filled = len(required) - len(missing)
    return SectionStatus(section_id, not missing, filled, len(required), missing)


# --- score -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreLine:
    """One section's share of the score; ``points`` is its contribution out of 100."""

    section_id: str
    title: str
    mandatory: bool
    weight: float
    completeness: float
    points: float


@dataclass(frozen=True)
class Score:
    """The 0-100 compliance score with one line per section, in ``SECTION_IDS`` order."""

    total: int
    lines: tuple[ScoreLine, ...]
    mandatory_complete: bool
    missing_mandatory: tuple[str, ...]


def score(fields_by_section: Mapping[str, Mapping[str, Any]], mandatory: frozenset[str]) -> Score:
    """Score a compliance record from 0 to 100.

    Formula: each of the twelve sections has weight 3 if mandatory, else 1, and completeness
    c = filled required fields / required fields (1.0 if it requires none; a section absent from
    ``fields_by_section`` counts as empty). total = round(100 * sum(w * c) / sum(w)), rounding
    halves up; since rounding could turn 99.7 into 100, a record with any incomplete section is
    capped at 99, so 100 means every section is complete. A line's points are 100 * w * c / sum(w).

    Args:
        fields_by_section: section id -> stored fields (auto and human).
        mandatory: section ids mandatory for this record (see ``mandatory_sections``).

    Raises:
        NotFound: an unknown section id in ``fields_by_section``.
        InvalidInput: an unknown section id in ``mandatory``.
    """
    for sid in fields_by_section:
        section(sid)
    unknown = sorted(set(mandatory) - set(SECTION_IDS))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise InvalidInput(f"compliance score: unknown mandatory sections {names}")
    statuses = [section_status(sid, fields_by_section.get(sid) or {}) for sid in SECTION_IDS]
    weights = [MANDATORY_WEIGHT if s.section_id in mandatory else OPTIONAL_WEIGHT for s in statuses]
    total_weight = sum(weights)
    specs = _sections()
    lines = tuple(
        ScoreLine(
            section_id=s.section_id,
            title=specs[s.section_id].title,
            mandatory=s.section_id in mandatory,
            weight=w,
            completeness=s.completeness,
            points=round(100 * w * s.completeness / total_weight, 2),
        )
        for s, w in zip(statuses, weights, strict=True)
    )
    earned = sum(w * s.completeness for s, w in zip(statuses, weights, strict=True))
    raw = 100 * earned / total_weight
    total = math.floor(raw + 0.5)
    if not all(s.complete for s in statuses):
        total = min(total, 99)
    missing = tuple(s.section_id for s in statuses if s.section_id in mandatory and not s.complete)
    return Score(total, lines, not missing, missing)


__all__ = [
    "AUTO_SECTIONS",
    "CORE_TIER1_SECTIONS",
    "FIELD_KINDS",
    "SECTION_IDS",
    "THRESHOLDS",
    "TIERS",
    "FieldSpec",
    "Score",
    "ScoreLine",
    "SectionSpec",
    "SectionStatus",
    "Template",
    "TierPolicy",
    "is_filled",
    "mandatory_sections",
    "materiality_tier",
    "score",
    "section",
    "section_status",
    "sections",
    "template",
    "templates",
    "validate_fields",
    "validate_re_review",
]
