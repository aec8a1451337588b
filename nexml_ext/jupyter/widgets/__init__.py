"""ipywidgets for notebooks and Voila dashboards, each a thin view over the Workspace.

Every widget reads through the Workspace (or a result it returned) and writes only by calling it;
a refusal is shown in the widget's ``message``, never decided here. User-provided text is
HTML-escaped wherever it reaches HTML. Charts are matplotlib figures drawn with Agg into PNG
images.
"""

from __future__ import annotations

from .compliance_form import ComplianceForm, SectionForm, compliance_form
from .drift import DriftView, drift_view
from .explanation import ExplanationView, explanation_view
from .fairness import FairnessView, fairness_view
from .jobs import JobsView, jobs_view
from .leaderboard import Leaderboard, leaderboard_widget
from .model_card import ModelCard, model_card

__all__ = [
    "ComplianceForm",
    "DriftView",
    "ExplanationView",
    "FairnessView",
    "JobsView",
    "Leaderboard",
    "ModelCard",
    "SectionForm",
    "compliance_form",
    "drift_view",
    "explanation_view",
    "fairness_view",
    "jobs_view",
    "leaderboard_widget",
    "model_card",
]
