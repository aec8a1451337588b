"""Use cases for the compliance record of a model version: its sections, risk tier and score.

People write the human sections; the platform fills information, provenance, performance and
change history from what it recorded, at read time, so those can never be stale or hand-made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..errors import InvalidInput, InvalidTransition
from ..governance import compliance as policy
from ..governance.lifecycle import Status
from ..governance.naming import format_ref
from ..store import tables as t
from .core import WorkspaceCore

TIER_POLICY_KEY = "tier_policy"
#: Re-review triggers of a record made without a template: every trigger on, yearly review.
DEFAULT_RE_REVIEW = {
    "material_change": True,
    "drift_alert": True,
    "performance_breach": True,
    "elapsed_days": 365,
}


@dataclass(frozen=True)
class ComplianceState:
    """Everything known about one version's compliance record at one moment."""

    ref: str
    template: policy.Template | None
    tier: int
    tier_source: str
    mandatory: frozenset[str]
    fields: dict[str, dict[str, Any]]
    statuses: dict[str, policy.SectionStatus]
    score: policy.Score
    re_review: dict[str, Any]


class ComplianceRecord:
    """A handle on one version's compliance record; every call goes through the Workspace."""

    def __init__(self, workspace: ComplianceMixin, ref: str) -> None:
        self._ws = workspace
        self.ref = ref

    def set(self, section: str, fields: dict[str, Any]) -> policy.SectionStatus:
        """Write human fields of one section (None or "" clears a field); returns its status."""
        return self._ws._set_section(self.ref, section, fields)

    def fields(self, section: str | None = None) -> dict[str, Any]:
        """All sections' fields (auto ones included), or one section's."""
        state = self._ws._compliance(self.ref)
        return state.fields.get(section, {}) if section else state.fields

    def status(self) -> dict[str, policy.SectionStatus]:
        """Per-section completeness, in section order."""
        return self._ws._compliance(self.ref).statuses

    def score(self) -> policy.Score:
        """The 0-100 compliance score with its per-section breakdown."""
        return self._ws._compliance(self.ref).score

    def state(self) -> ComplianceState:
        return self._ws._compliance(self.ref)

    def tier(self) -> tuple[int, str]:
        """(risk tier, where it came from)."""
        state = self._ws._compliance(self.ref)
        return state.tier, state.tier_source

    def set_tier(self, tier: int, *, reason: str) -> tuple[int, str]:
        """Set the risk tier explicitly (compliance officers), overriding materiality."""
        return self._ws._set_tier(self.ref, tier, reason)

    def re_review(self) -> dict[str, Any]:
        """The events that send this version back for review (drift, breach, change, time)."""
        return self._ws._compliance(self.ref).re_review

    def set_re_review(self, triggers: dict[str, Any], *, reason: str) -> dict[str, Any]:
        """Change some re-review triggers (compliance officers); returns all of them."""
        return self._ws._set_re_review(self.ref, triggers, reason)

    def __repr__(self) -> str:
        return f"<ComplianceRecord {self.ref}>"


class ComplianceMixin(WorkspaceCore):
    def compliance(self, ref: str) -> ComplianceRecord:
        """The compliance record of ``ref`` (raises NotFound if the version does not exist)."""
        self._authorize("compliance.view", ref)
        with self._read() as s:
            self._version_row(s, ref)
        return ComplianceRecord(self, ref)

    def tier_policy(self) -> policy.TierPolicy:
        """The mandatory sections per risk tier in force (the default until configured)."""
        self._authorize("compliance.view")
        with self._read() as s:
            return self._policy(s)

    def set_tier_policy(self, mandatory: dict[Any, Any]) -> policy.TierPolicy:
        """Change which sections are mandatory at each tier (compliance officers, superadmins)."""
        self._authorize("compliance.configure", "the risk-tier policy")
        new = policy.TierPolicy.from_dict(mandatory)
        with self._write() as s:
            before = self._policy(s).to_dict()
            row = s.get(t.Setting, TIER_POLICY_KEY)
            if row is None:
                s.add(
                    t.Setting(
                        key=TIER_POLICY_KEY, value=new.to_dict(), updated_by=self.principal.name
                    )
                )
            else:
                row.value, row.updated_by = new.to_dict(), self.principal.name
            self._event(
                s, "compliance.configure", "tier_policy", before=before, after=new.to_dict()
            )
        return new

    # --- internals used by the handle and by approval ------------------------------------

    def _compliance(self, ref: str) -> ComplianceState:
        self._authorize("compliance.view", ref)
        with self._read() as s:
            return self._compliance_state(s, self._version_row(s, ref))

    def _set_section(self, ref: str, section: str, fields: dict[str, Any]) -> policy.SectionStatus:
        with self._write() as s:
            version = self._version_row(s, ref, lock=True)
            self._authorize("compliance.edit", ref, owner=version.author)
            if version.status != Status.STAGING.value:
                raise InvalidTransition(
                    f"cannot edit the compliance record of {ref}: it is {version.status}; the "
                    "record is frozen once decided (register a new version to change it)"
                )
            clean = policy.validate_fields(section, fields)
            record = self._record_row(s, version)
            sections = {k: dict(v) for k, v in (record.sections or {}).items()}
            current = sections.get(section, {})
            changed = {k: v for k, v in clean.items() if current.get(k) != v}
            if not changed:
                return policy.section_status(
                    section, self._compliance_state(s, version).fields[section]
                )
            before = {k: current.get(k) for k in changed}
            for key, value in changed.items():
                if value is None or value == "":
                    current.pop(key, None)
                else:
                    current[key] = value
            sections[section] = current
            record.sections = sections
            record.updated_by = self.principal.name
            s.flush()
            self._event(s, "compliance.set", ref, section=section, before=before, after=changed)
            return self._compliance_state(s, version).statuses[section]

    def _set_tier(self, ref: str, tier: int, reason: str) -> tuple[int, str]:
        self._authorize("compliance.set_tier", ref)
        if tier not in (1, 2, 3):
            raise InvalidInput(f"risk tier must be 1, 2 or 3, got {tier!r}")
        if not (reason or "").strip():
            raise InvalidInput(f"cannot set the risk tier of {ref}: a written reason is required")
        with self._write() as s:
            version = self._version_row(s, ref, lock=True)
            record = self._record_row(s, version)
            before = self._compliance_state(s, version)
            record.tier_override, record.tier_reason = tier, reason.strip()
            record.tier_set_by = self.principal.name
            s.flush()
            self._event(
                s,
                "compliance.set_tier",
                ref,
                before={"tier": before.tier},
                after={"tier": tier},
                reason=reason.strip(),
            )
            after = self._compliance_state(s, version)
            return after.tier, after.tier_source

    def _set_re_review(self, ref: str, triggers: dict[str, Any], reason: str) -> dict[str, Any]:
        self._authorize("compliance.set_tier", ref)
        if not (reason or "").strip():
            raise InvalidInput(f"cannot change the re-review triggers of {ref}: give a reason")
        with self._write() as s:
            record = self._record_row(s, self._version_row(s, ref, lock=True))
            before = {**DEFAULT_RE_REVIEW, **(record.re_review or {})}
            after = policy.validate_re_review({**before, **triggers})
            record.re_review = after
            record.updated_by = self.principal.name
            s.flush()
            self._event(s, "compliance.set_re_review", ref, before=before, after=after,
                        reason=reason.strip())
            return after

    def _record_row(self, s, version: t.ModelVersion) -> t.ComplianceRecord:
        return s.execute(
            select(t.ComplianceRecord).where(t.ComplianceRecord.model_version_id == version.id)
        ).scalar_one()

    def _policy(self, s) -> policy.TierPolicy:
        row = s.get(t.Setting, TIER_POLICY_KEY)
        return policy.TierPolicy.from_dict(row.value) if row else policy.TierPolicy.default()

    def _compliance_state(self, s, version: t.ModelVersion) -> ComplianceState:
        ref = format_ref(version.model.name, version.version)
        record = self._record_row(s, version)
        template = policy.template(record.template) if record.template else None
        fields = {sid: dict((record.sections or {}).get(sid, {})) for sid in policy.SECTION_IDS}
        for sid, facts in self._auto_facts(s, version, ref).items():
            fields[sid].update(facts)
        tier_policy = self._policy(s)
        risk = fields.get("risk", {})
        material = policy.materiality_tier(
            risk.get("exposure_amount"), risk.get("decision_purpose"), tier_policy
        )
        if record.tier_override:
            tier, source = (
                record.tier_override,
                f"set by {record.tier_set_by}: {record.tier_reason}",
            )
        elif material is not None:
            tier, source = material, "materiality (exposure and purpose in the risk section)"
        elif template is not None:
            tier, source = template.default_tier, f"template {template.name}"
        else:
            tier, source = 1, "default (no template, no materiality inputs): highest tier"
        mandatory = policy.mandatory_sections(tier, template, tier_policy)
        statuses = {sid: policy.section_status(sid, fields[sid]) for sid in policy.SECTION_IDS}
        return ComplianceState(
            ref,
            template,
            tier,
            source,
            mandatory,
            fields,
            statuses,
            policy.score(fields, mandatory),
            {**DEFAULT_RE_REVIEW, **(record.re_review or {})},
        )

    def _auto_facts(self, s, version: t.ModelVersion, ref: str) -> dict[str, dict[str, Any]]:
        validations = s.scalars(
            select(t.Validation)
            .where(t.Validation.model_version_id == version.id)
            .order_by(t.Validation.id)
        )
        history = s.scalars(select(t.Event).where(t.Event.object_ref == ref).order_by(t.Event.seq))
        return {
            "information": {
                "name": version.model.name,
                "version": version.version,
                "author": version.author,
                "flavour": version.flavour,
                "problem_type": version.problem_type,
                "target": version.target,
                "registered_at": version.created_at.isoformat(),
                "artifact_sha256": version.artifact_sha256,
            },
            "fairness": {
                "protected_inputs": list((version.lineage or {}).get("protected_inputs") or []),
            },
            "provenance": {
                "training_datasets": [
                    {k: d[k] for k in ("ref", "sha256", "rows")}
                    for d in (version.lineage or {}).get("datasets", [])
                ],
            },
            "performance": {
                "validations": [
                    {
                        "id": v.id,
                        "dataset": v.dataset_version_id,
                        "status": v.status,
                        "artifact_sha256": v.artifact_sha256,
                        "metrics": v.metrics,
                    }
                    for v in validations
                ],
            },
            "change_history": {
                "history": [
                    {"at": e.at.isoformat(), "actor": e.actor, "action": e.action} for e in history
                ],
            },
        }
