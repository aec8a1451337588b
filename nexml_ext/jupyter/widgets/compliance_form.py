"""The compliance form: the twelve sections of a version's record, each saved on its own.

Every read and write goes through ``ws.compliance(ref)``. Which sections are mandatory comes from
the record's state (its risk tier), what a valid value is from the Workspace's validation, and
who may edit from its permission check; the form only shows the answers, including refusals.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ...governance.compliance import SectionSpec, SectionStatus, sections
from . import compliance_fields as fields_ui
from . import markup


class SectionForm(widgets.VBox):
    """One section. Attributes: ``fields`` (name → input widget, human fields only), ``auto``
    (name → read-only HTML of platform-filled fields), ``save`` (Button), ``status`` (HTML),
    ``stored`` (HTML of the values the record holds), ``mandatory`` (bool)."""

    def __init__(self, spec: SectionSpec) -> None:
        self.spec = spec
        self.mandatory = False
        self.complete = False
        self.fields: dict[str, widgets.ValueWidget] = {}
        self.auto: dict[str, widgets.HTML] = {}
        self._loaded: dict[str, str] = {}
        rows = []
        for field in spec.fields:
            if field.auto:
                self.auto[field.name] = widgets.HTML()
                rows.append(fields_ui.field_row(field, self.auto[field.name]))
            else:
                self.fields[field.name] = fields_ui.make_input(field)
                rows.append(fields_ui.field_row(field, self.fields[field.name]))
        self.status = widgets.HTML()
        self.stored = widgets.HTML()
        self.save = widgets.Button(description="Save section", icon="save",
                                   button_style="primary")
        description = widgets.HTML(f"<p><i>{markup.cell(spec.description)}</i></p>")
        super().__init__([description, self.status, *rows, self.save, self.stored])

    @property
    def title(self) -> str:
        """The accordion title: mandatory sections starred, completeness counted."""
        mark = "★ " if self.mandatory else ""
        need = " (mandatory)" if self.mandatory else ""
        return f"{mark}{self.spec.title}{need} · {'complete' if self.complete else 'incomplete'}"

    def show(self, values: dict[str, Any], status: SectionStatus, mandatory: bool, *,
             reset_inputs: bool) -> None:
        """Show what the record holds; ``reset_inputs`` also overwrites unsaved edits."""
        self.mandatory, self.complete = mandatory, status.complete
        by_name = {f.name: f for f in self.spec.fields}
        for name, view in self.auto.items():
            view.value = fields_ui.show_value(by_name[name], values.get(name))
        if reset_inputs:
            for name, control in self.fields.items():
                control.value = self._loaded[name] = fields_ui.to_widget(
                    by_name[name], values.get(name)
                )
        if status.complete:
            text = f"complete ({status.filled} of {status.required} required fields)"
            self.status.value = f"<span style='color:#1a7f37'>{text}</span>"
        else:
            missing = ", ".join(by_name[m].label for m in status.missing)
            self.status.value = (
                f"<span style='color:#8a6d00'>{status.filled} of {status.required} required "
                f"fields filled; missing: {markup.cell(missing)}</span>"
            )
        kept = [(by_name[n].label, values[n]) for n in self.fields if values.get(n) is not None]
        self.stored.value = (
            "<details><summary>Stored in the record</summary>"
            f"{markup.definitions(kept) if kept else '<i>nothing yet</i>'}</details>"
        )

    def changes(self) -> dict[str, Any]:
        """Edited fields since the last load, in the shape ``ComplianceRecord.set`` takes."""
        by_name = {f.name: f for f in self.spec.fields}
        return {
            name: fields_ui.from_widget(by_name[name], control.value)
            for name, control in self.fields.items()
            if control.value != self._loaded.get(name, "")
        }


class ComplianceForm(widgets.VBox):
    """The record of one version. Attributes: ``sections`` (id → :class:`SectionForm`),
    ``save_buttons`` (id → Button), ``accordion``, ``meter`` (IntProgress, the 0–100 score),
    ``summary`` (HTML: score, tier, missing mandatory sections), ``message``."""

    def __init__(self, ws: Any, ref: str) -> None:
        self.ws = ws
        self.ref = ref
        self.record = ws.compliance(ref)
        self.sections = {sid: SectionForm(spec) for sid, spec in sections().items()}
        self.save_buttons = {sid: form.save for sid, form in self.sections.items()}
        for sid, button in self.save_buttons.items():
            button.on_click(lambda _, sid=sid: self.save(sid))
        self.accordion = widgets.Accordion(children=list(self.sections.values()))
        self.meter = widgets.IntProgress(min=0, max=100, description="Score",
                                         layout=widgets.Layout(width="60%"))
        self.summary = widgets.HTML()
        self.message = markup.Message()
        self.refresh(reset_inputs=True)
        title = widgets.HTML(markup.heading(f"Compliance record {ref}", 3))
        super().__init__([title, self.meter, self.summary, self.message, self.accordion])

    def refresh(self, *, reset_inputs: bool | str = False) -> None:
        """Re-read the record. ``reset_inputs``: True for every section, a section id for that
        one only, False to keep all unsaved edits."""
        state = self.record.state()
        for sid, form in self.sections.items():
            form.show(state.fields[sid], state.statuses[sid], sid in state.mandatory,
                      reset_inputs=reset_inputs is True or reset_inputs == sid)
        self.accordion.titles = tuple(form.title for form in self.sections.values())
        score = state.score
        self.meter.value = score.total
        self.meter.bar_style = "success" if score.mandatory_complete else "warning"
        titles = [self.sections[sid].spec.title for sid in score.missing_mandatory]
        missing = ", ".join(titles) if titles else "none"
        self.summary.value = (
            f"score <b>{score.total}</b>/100 · risk tier <b>{state.tier}</b> "
            f"({markup.cell(state.tier_source)}) · mandatory sections incomplete: "
            f"{markup.cell(missing)}"
        )

    def save(self, section: str) -> None:
        """Save the edited fields of one section through the Workspace; show the outcome."""
        form = self.sections[section]
        changes = form.changes()
        if not changes:
            self.message.show(f"{form.spec.title}: nothing changed, nothing saved")
            return
        done, status = self.message.attempt(lambda: self.record.set(section, changes))
        if not done:
            return
        self.refresh(reset_inputs=section)
        outcome = "complete" if status.complete else f"{len(status.missing)} required missing"
        self.message.ok(f"saved {form.spec.title} ({outcome}); score {self.meter.value}/100")


def compliance_form(ws: Any, ref: str) -> ComplianceForm:
    """An editable form of ``ref``'s compliance record (``NAME:VERSION``).

    Mandatory sections (for the record's risk tier) are starred; platform-filled fields are
    read-only; each section's Save calls ``ComplianceRecord.set`` with the edited fields, and a
    refusal (invalid value, not the author, record frozen) is shown in ``message`` with nothing
    saved. Raises NotFound or PermissionDenied if the record cannot be read.
    """
    return ComplianceForm(ws, ref)
