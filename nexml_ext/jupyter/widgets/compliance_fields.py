"""One compliance field as a widget: which input each kind gets, and how values travel.

Inputs stay permissive (numbers and dates are typed as text) so that checking what was typed is
the Workspace's job alone (``governance.compliance.validate_fields``); the form only converts the
widget's value into the shape the Workspace accepts and shows its refusal.
"""

from __future__ import annotations

import json
from typing import Any

import ipywidgets as widgets

from ...governance.compliance import FieldSpec
from . import markup

UNSET = "— not set —"
_WIDE = widgets.Layout(width="95%")


def make_input(spec: FieldSpec) -> widgets.ValueWidget:
    """The editable input for a human field, empty."""
    if spec.kind == "choice":
        options = [(UNSET, "")] + [(c.replace("_", " "), c) for c in spec.choices or ()]
        return widgets.Dropdown(options=options, value="", layout=_WIDE)
    if spec.kind == "bool":
        return widgets.Dropdown(options=[(UNSET, ""), ("yes", "true"), ("no", "false")],
                                value="", layout=widgets.Layout(width="200px"))
    if spec.kind in ("number", "integer"):
        return widgets.Text(placeholder=_range_hint(spec), layout=widgets.Layout(width="300px"))
    if spec.kind == "date":
        return widgets.Text(placeholder="YYYY-MM-DD", layout=widgets.Layout(width="200px"))
    if spec.kind == "list":
        hint = "a JSON list of objects" if spec.item_keys else "one item per line"
        return widgets.Textarea(placeholder=hint, rows=3, layout=_WIDE)
    hint = f"at least {spec.min_length} characters" if spec.min_length else ""
    return widgets.Textarea(placeholder=hint, rows=2, layout=_WIDE)


def to_widget(spec: FieldSpec, value: Any) -> str:
    """A stored value as the input's value ("" when unset)."""
    if value is None:
        return ""
    if spec.kind == "bool":
        return "true" if value else "false"
    if spec.kind == "list":
        if spec.item_keys:
            return json.dumps(value, indent=1)
        return "\n".join(str(item) for item in value)
    return str(value)


def from_widget(spec: FieldSpec, value: str) -> Any:
    """The input's value in the shape ``ComplianceRecord.set`` takes (None clears the field)."""
    if spec.kind != "list":
        return value
    if not value.strip():
        return None
    if spec.item_keys:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # the Workspace refuses it, naming the shape it wants
    return [line for line in value.splitlines() if line.strip()]


def show_value(spec: FieldSpec, value: Any) -> str:
    """A stored value as escaped HTML (auto fields, the stored-values summary)."""
    if spec.item_keys and isinstance(value, list):
        if not value:
            return "—"
        columns = list(spec.item_keys)
        return markup.table(columns, [item for item in value if isinstance(item, dict)])
    return markup.cell(value)


def field_row(spec: FieldSpec, control: widgets.Widget) -> widgets.VBox:
    """The label (required fields starred), the control and the field's help text."""
    star = " <span style='color:#b42318'>*</span>" if spec.required else ""
    label = widgets.HTML(f"<b>{markup.cell(spec.label)}</b>{star}")
    help_text = widgets.HTML(f"<small style='color:#666'>{markup.cell(spec.help)}</small>")
    return widgets.VBox([label, control, help_text])


def _range_hint(spec: FieldSpec) -> str:
    noun = "an integer" if spec.kind == "integer" else "a number"
    if spec.minimum is not None and spec.maximum is not None:
        return f"{noun} from {spec.minimum:g} to {spec.maximum:g}"
    if spec.minimum is not None:
        return f"{noun} ≥ {spec.minimum:g}"
    if spec.maximum is not None:
        return f"{noun} ≤ {spec.maximum:g}"
    return noun
