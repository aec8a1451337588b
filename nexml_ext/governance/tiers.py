"""Which compliance sections a model must complete: tier policy, materiality and templates.

Tier 1 is the highest risk. The tier follows materiality (exposure and purpose, as SR 26-2 frames
it) unless a compliance officer sets it; the Workspace stores that choice, this module only
computes the materiality tier. The default policy and the templates are data files under
``governance/data/``; a replacement policy or template comes in as a plain dict and is checked
here before anything uses it. Everything public here is also importable from
:mod:`nexml_ext.governance.compliance`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import ModuleType
from typing import Any

import yaml

from ..errors import InvalidInput, NotFound

TIERS: tuple[int, ...] = (1, 2, 3)
CORE_TIER1_SECTIONS: frozenset[str] = frozenset(
    {"information", "domain", "fairness", "provenance", "consent", "risk"}
)
RE_REVIEW_TRIGGERS: tuple[str, ...] = (
    "material_change",
    "drift_alert",
    "performance_breach",
    "elapsed_days",
)

# Threshold names a template may set, and what each means to the code that checks it.
THRESHOLDS: dict[str, str] = {
    "adverse_impact_ratio_min": "lowest acceptable ratio of a protected group's favourable-outcome "
    "rate to the most favoured group's (the four-fifths screen is 0.8)",
    "demographic_parity_difference_max": "largest acceptable difference in selection rates "
    "between groups",
    "equalized_odds_difference_max": "largest acceptable difference in true- or false-positive "
    "rates between groups",
    "auc_min": "lowest acceptable area under the ROC curve on validation data",
    "ks_min": "lowest acceptable Kolmogorov-Smirnov separation of the score between classes",
    "max_performance_drop": "largest acceptable absolute fall of AUC from its validated value",
    "false_positive_rate_max": "largest acceptable share of legitimate cases flagged",
    "psi_warning": "population stability index at which drift is reported for investigation",
    "psi_alert": "population stability index at which drift raises an alert and a re-review",
}
_UNBOUNDED_THRESHOLDS = frozenset({"psi_warning", "psi_alert"})
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _schema() -> ModuleType:
    # Imported late because compliance re-exports this module: a top-level import would be circular.
    from . import compliance

    return compliance


@cache
def _data_text(path: str) -> str:
    return resources.files(__package__).joinpath("data").joinpath(path).read_text("utf-8")


def _decision_purposes() -> tuple[str, ...]:
    return _schema().section("risk").field("decision_purpose").choices


def _tier(value: Any, what: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or value not in TIERS:
        raise InvalidInput(f"{what} must be a tier 1, 2 or 3, got {value!r}")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _section_ids(value: Any, what: str) -> frozenset[str]:
    known = _schema().SECTION_IDS
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise InvalidInput(f"{what} must be a list of section ids, got {value!r}")
    for sid in value:
        if sid not in known:
            raise InvalidInput(f"{what} names unknown section {sid!r} (known: {', '.join(known)})")
    return frozenset(value)


def _keys(raw: Any, required: set[str], optional: set[str], what: str) -> None:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{what} must be a mapping, got {type(raw).__name__}")
    missing = sorted(required - set(raw))
    unknown = sorted(set(raw) - required - optional)
    if missing:
        raise InvalidInput(f"{what} lacks {', '.join(missing)}")
    if unknown:
        raise InvalidInput(f"{what} has unknown keys {', '.join(map(str, unknown))}")


# --- tier policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierPolicy:
    """Mandatory sections per tier and the materiality rules that pick a tier.

    ``purpose_tiers`` gives, for each decision purpose, the most severe tier the purpose alone
    implies; ``exposure_thresholds`` holds (min_exposure, tier) pairs, highest exposure first.
    Treat the dicts as read-only.
    """

    mandatory: dict[int, frozenset[str]]
    purpose_tiers: dict[str, int]
    exposure_thresholds: tuple[tuple[float, int], ...]

    @classmethod
    def default(cls) -> TierPolicy:
        """The packaged policy from ``governance/data/tiers.yaml``."""
        return cls.from_dict(yaml.safe_load(_data_text("tiers.yaml")))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TierPolicy:
        """Build and check a policy from the shape ``to_dict`` produces (tier keys int or text).

        Raises InvalidInput when: a tier of 1, 2, 3 is missing or another appears; a section id is
        unknown; tier 1 drops one of ``CORE_TIER1_SECTIONS``; a lower-risk tier requires a section
        a higher-risk tier does not; a decision purpose is unknown or has no tier; an exposure
        threshold is negative, repeated, or makes more exposure mean a less severe tier.
        """
        _keys(d, {"mandatory", "materiality"}, set(), "tier policy")
        raw_mandatory = d["mandatory"]
        _keys(raw_mandatory, set(), {1, 2, 3, "1", "2", "3"}, "tier policy mandatory")
        mandatory: dict[int, frozenset[str]] = {}
        for key, ids in raw_mandatory.items():
            tier = _tier(key, "tier policy mandatory key")
            if tier in mandatory:
                raise InvalidInput(f"tier policy gives tier {tier} twice")
            mandatory[tier] = _section_ids(ids, f"tier policy: tier {tier}")
        if set(mandatory) != set(TIERS):
            raise InvalidInput(f"tier policy must give tiers 1, 2 and 3, got {sorted(mandatory)}")
        dropped = CORE_TIER1_SECTIONS - mandatory[1]
        if dropped:
            raise InvalidInput(
                f"tier policy: tier 1 must keep {', '.join(sorted(dropped))} mandatory "
                f"(always required: {', '.join(sorted(CORE_TIER1_SECTIONS))})"
            )
        for higher, lower in ((1, 2), (2, 3)):
            extra = mandatory[lower] - mandatory[higher]
            if extra:
                raise InvalidInput(
                    f"tier policy: tier {lower} makes {', '.join(sorted(extra))} mandatory but "
                    f"tier {higher} does not; a lower-risk tier cannot require more"
                )
        purpose_tiers, thresholds = _materiality(d["materiality"])
        return cls(mandatory, purpose_tiers, thresholds)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tier keys as text) that ``from_dict`` turns into an equal policy."""
        order = _schema().SECTION_IDS
        return {
            "mandatory": {str(t): [s for s in order if s in self.mandatory[t]] for t in TIERS},
            "materiality": {
                "purposes": dict(self.purpose_tiers),
                "exposure_thresholds": [
                    {"min_exposure": m, "tier": t} for m, t in self.exposure_thresholds
                ],
            },
        }


def _materiality(raw: Any) -> tuple[dict[str, int], tuple[tuple[float, int], ...]]:
    _keys(raw, {"purposes", "exposure_thresholds"}, set(), "tier policy materiality")
    known = _decision_purposes()
    purposes = raw["purposes"]
    if not isinstance(purposes, Mapping):
        raise InvalidInput(f"tier policy: purposes must be a mapping, got {purposes!r}")
    unknown = [p for p in purposes if p not in known]
    if unknown:
        raise InvalidInput(
            f"tier policy: unknown decision purpose {unknown[0]!r} (known: {', '.join(known)})"
        )
    missing = [p for p in known if p not in purposes]
    if missing:
        raise InvalidInput(f"tier policy: no tier for decision purpose {', '.join(missing)}")
    purpose_tiers = {p: _tier(purposes[p], f"tier policy: purpose {p!r}") for p in known}

    rows = raw["exposure_thresholds"]
    if not isinstance(rows, (list, tuple)):
        raise InvalidInput(f"tier policy: exposure_thresholds must be a list, got {rows!r}")
    pairs = []
    for row in rows:
        _keys(row, {"min_exposure", "tier"}, set(), "tier policy exposure threshold")
        amount = _number(row["min_exposure"])
        if amount is None or amount < 0:
            raise InvalidInput(
                f"tier policy: min_exposure must be a number >= 0, got {row['min_exposure']!r}"
            )
        pairs.append((amount, _tier(row["tier"], "tier policy exposure threshold tier")))
    pairs.sort(reverse=True)
    for (hi, hi_tier), (lo, lo_tier) in itertools.pairwise(pairs):
        if hi == lo:
            raise InvalidInput(f"tier policy: exposure threshold {hi:g} appears twice")
        if hi_tier > lo_tier:
            raise InvalidInput(
                f"tier policy: exposure {hi:g} gives tier {hi_tier}, less severe than tier "
                f"{lo_tier} at {lo:g}; more exposure cannot mean less risk"
            )
    return purpose_tiers, tuple(pairs)


def materiality_tier(
    exposure_amount: float | None, decision_purpose: str | None, policy: TierPolicy
) -> int | None:
    """The tier materiality implies: the more severe of the purpose's tier and the exposure's.

    Exposure takes the tier of the highest threshold it reaches (tier 3 below all of them).

    Args:
        exposure_amount: the risk section's ``exposure_amount`` (>= 0), or None if not yet written.
        decision_purpose: the risk section's ``decision_purpose``, or None if not yet written.
        policy: the tier policy in force.

    Returns:
        1, 2 or 3; None when either input is unknown, since half the inputs could understate risk.

    Raises:
        InvalidInput: a negative or non-numeric exposure, or a purpose the policy does not know.
    """
    if exposure_amount is None or decision_purpose is None or not str(decision_purpose).strip():
        return None
    amount = _number(exposure_amount)
    if amount is None or amount < 0:
        raise InvalidInput(
            f"materiality: exposure_amount must be a number >= 0, got {exposure_amount!r}"
        )
    purpose_tier = policy.purpose_tiers.get(decision_purpose)
    if purpose_tier is None:
        known = ", ".join(policy.purpose_tiers)
        raise InvalidInput(
            f"materiality: unknown decision purpose {decision_purpose!r} (known: {known})"
        )
    exposure_tier = next((t for m, t in policy.exposure_thresholds if amount >= m), TIERS[-1])
    return min(exposure_tier, purpose_tier)


# --- re-review triggers and templates ----------------------------------------------------------


def validate_re_review(triggers: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete set of re-review triggers and return a clean copy.

    Expects exactly ``material_change``, ``drift_alert``, ``performance_breach`` (booleans) and
    ``elapsed_days`` (an integer >= 1, or None for no time trigger); merge an edit over the
    current triggers before calling. Raises InvalidInput naming the bad trigger.
    """
    _keys(triggers, set(RE_REVIEW_TRIGGERS), set(), "re-review triggers")
    clean: dict[str, Any] = {}
    for name in RE_REVIEW_TRIGGERS[:-1]:
        if not isinstance(triggers[name], bool):
            raise InvalidInput(
                f"re-review trigger {name!r} must be true or false, got {triggers[name]!r}"
            )
        clean[name] = triggers[name]
    days = triggers["elapsed_days"]
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise InvalidInput(
            f"re-review trigger 'elapsed_days' must be an integer >= 1 or null, got {days!r}"
        )
    clean["elapsed_days"] = days
    return clean


@dataclass(frozen=True)
class Template:
    """A compliance template for one kind of model: defaults a record starts from.

    ``extra_mandatory`` sections are mandatory on top of the tier policy whatever the tier;
    ``thresholds`` use the names in ``THRESHOLDS``; ``sr11_7_mapping`` maps section ids to the
    SR 11-7 expectations they evidence, for institutions still documenting against SR 11-7.
    Treat the dicts as read-only.
    """

    name: str
    title: str
    description: str
    regulations: tuple[str, ...]
    default_tier: int
    extra_mandatory: frozenset[str]
    protected_attributes: tuple[str, ...]
    thresholds: dict[str, float]
    re_review: dict[str, Any]
    sr11_7_mapping: dict[str, tuple[str, ...]] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Template:
        """Build and check a template from the shape ``to_dict`` produces.

        Raises InvalidInput for a missing or unknown key, a name that is not lower_snake_case,
        blank text, a bad tier, an unknown section id, a repeated protected attribute, an unknown
        or out-of-range threshold, psi_warning above psi_alert, or bad re-review triggers.
        """
        name = d.get("name") if isinstance(d, Mapping) else None
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(f"template name must be lower_snake_case text, got {name!r}")
        what = f"template {name!r}"
        required = {f for f in cls.__dataclass_fields__ if f != "sr11_7_mapping"}
        _keys(d, required, {"sr11_7_mapping"}, what)
        for key in ("title", "description"):
            if not isinstance(d[key], str) or not d[key].strip():
                raise InvalidInput(f"{what}: {key} must be non-blank text")
        regulations = _texts(d["regulations"], f"{what}: regulations")
        attributes = _texts(d["protected_attributes"], f"{what}: protected_attributes")
        if len(set(attributes)) != len(attributes):
            raise InvalidInput(f"{what}: protected_attributes repeats an attribute")
        mapping = d.get("sr11_7_mapping")
        if mapping is not None:
            _keys(mapping, set(), set(_schema().SECTION_IDS), f"{what}: sr11_7_mapping")
            mapping = {s: _texts(v, f"{what}: sr11_7_mapping {s!r}") for s, v in mapping.items()}
        return cls(
            name=name,
            title=d["title"].strip(),
            description=" ".join(d["description"].split()),
            regulations=regulations,
            default_tier=_tier(d["default_tier"], f"{what}: default_tier"),
            extra_mandatory=_section_ids(d["extra_mandatory"], f"{what}: extra_mandatory"),
            protected_attributes=attributes,
            thresholds=_thresholds(d["thresholds"], what),
            re_review=validate_re_review(d["re_review"]),
            sr11_7_mapping=mapping,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``from_dict`` turns back into an equal template."""
        order = _schema().SECTION_IDS
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "regulations": list(self.regulations),
            "default_tier": self.default_tier,
            "extra_mandatory": [s for s in order if s in self.extra_mandatory],
            "protected_attributes": list(self.protected_attributes),
            "thresholds": dict(self.thresholds),
            "re_review": dict(self.re_review),
            "sr11_7_mapping": None
            if self.sr11_7_mapping is None
            else {s: list(v) for s, v in self.sr11_7_mapping.items()},
        }


def _texts(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise InvalidInput(f"{what} must be a list of non-blank text, got {value!r}")
    return tuple(v.strip() for v in value)


def _thresholds(raw: Any, what: str) -> dict[str, float]:
    _keys(raw, set(), set(THRESHOLDS), f"{what}: thresholds")
    clean = {}
    for name, value in raw.items():
        number = _number(value)
        bounded = name not in _UNBOUNDED_THRESHOLDS
        if number is None or number < 0 or (bounded and number > 1):
            limits = "between 0 and 1" if bounded else ">= 0"
            raise InvalidInput(
                f"{what}: threshold {name!r} must be a number {limits}, got {value!r}"
            )
        clean[name] = float(number)
    if clean.get("psi_warning", 0.0) > clean.get("psi_alert", math.inf):
        raise InvalidInput(f"{what}: psi_warning must not exceed psi_alert")
    return clean


@cache
def _templates() -> dict[str, Template]:
    folder = resources.files(__package__).joinpath("data").joinpath("templates")
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            loaded = Template.from_dict(yaml.safe_load(entry.read_text("utf-8")))
            if f"{loaded.name}.yaml" != entry.name:
                raise InvalidInput(f"template file {entry.name} names template {loaded.name!r}")
            found[loaded.name] = loaded
    return found


def templates() -> dict[str, Template]:
    """The packaged templates by name, sorted (read once from ``governance/data/templates``)."""
    return dict(_templates())


def template(name: str) -> Template:
    """The packaged template called ``name``. Raises NotFound listing the known names."""
    found = _templates().get(name)
    if found is None:
        raise NotFound(f"unknown compliance template {name!r} (known: {', '.join(_templates())})")
    return found


def mandatory_sections(tier: int, template: Template | None, policy: TierPolicy) -> frozenset[str]:
    """Sections a record must complete: the policy's for ``tier`` plus the template's extras.

    Raises InvalidInput when ``tier`` is not 1, 2 or 3.
    """
    sections = policy.mandatory[_tier(tier, "mandatory_sections: tier")]
    return (sections | template.extra_mandatory) if template is not None else sections
