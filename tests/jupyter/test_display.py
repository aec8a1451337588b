"""HTML renderings: each shows its object's key facts, and text from people or data is escaped."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter

from nexml_ext.jupyter import display
from nexml_ext.ml.automl import TrainingRun
from nexml_ext.ml.explain import Reason
from nexml_ext.ml.fairness import AttributeFairness, FairnessReport
from nexml_ext.workspace import views
from nexml_ext.workspace.analysis import Explanation

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
AT = datetime(2026, 11, 2, 9, 30, 0)
SHA = "ab" * 32


def assert_escaped(markup: str) -> None:
    assert "<script" not in markup.lower()
    assert ESCAPED in markup


def dataset_version(name: str = "german-credit") -> views.DatasetVersion:
    return views.DatasetVersion(
        name=name,
        version=3,
        content_sha256=SHA,
        row_count=1000,
        schema={
            "columns": {
                "risk": {"kind": "numeric", "dtype": "int64", "min": 0.0, "max": 1.0},
                "housing": {"kind": "categorical", "dtype": "object", "categories": [EVIL, "own"]},
                EVIL: {"kind": "numeric", "dtype": "float64", "min": 250.0, "max": 18424.0},
            }
        },
        source={"kind": "file", "uri": f"/data/{EVIL}.csv"},
        split=None,
        data_uri="/store/x.parquet",
        created_at=AT,
        created_by="dana",
    )


def model_version(**changes) -> views.ModelVersion:
    fields = {
        "name": "credit-risk",
        "version": 1,
        "status": "staging",
        "author": "dana",
        "artifact_uri": "/store/models/credit-risk/1",
        "artifact_sha256": SHA,
        "flavour": "sklearn",
        "problem_type": "binary",
        "target": "risk",
        "metrics": {"roc_auc": 0.7712},
        "lineage": {
            "datasets": [{"ref": "german-credit-train:1"}],
            "training": {
                "backend": "sklearn",
                "metric": "roc_auc",
                "champion_name": "RandomForest",
                "features": ["duration", "credit_amount", EVIL],
                "protected": ["sex", "age"],
                "leaderboard": [
                    {"model": "RandomForest", "score_val": 0.7545, "fit_time_s": 0.1},
                    {"model": EVIL, "score_val": 0.7, "fit_time_s": 0.2},
                ],
            },
        },
        "created_at": AT,
        "updated_at": AT,
        "template": "credit_scoring",
    }
    return views.ModelVersion(**{**fields, **changes})


def test_dataset_version_shows_ref_rows_columns_source_and_hash():
    markup = dataset_version()._repr_html_()
    for fact in ("german-credit:3", "1000", "risk", "housing", "own", "18424", SHA[:12], "dana"):
        assert fact in markup
    assert_escaped(markup)


def test_dataset_version_name_is_escaped():
    assert_escaped(dataset_version(name=EVIL)._repr_html_())


def test_model_version_shows_ref_status_lineage_and_champion():
    markup = model_version()._repr_html_()
    for fact in (
        "credit-risk:1",
        "staging",
        "dana",
        "credit_scoring",
        "german-credit-train:1",
        "RandomForest",
        "0.7545",
        "sex, age",
        "roc_auc 0.7712",
        SHA[:12],
    ):
        assert fact in markup
    assert_escaped(markup)


def test_model_version_author_and_template_are_escaped():
    assert_escaped(model_version(author=EVIL, template=EVIL, lineage={})._repr_html_())


def test_validation_shows_status_metrics_intervals_and_findings():
    validation = views.Validation(
        id=7,
        ref="credit-risk:1",
        artifact_sha256=SHA,
        dataset="german-credit-holdout:1",
        status="failed",
        metrics={
            "roc_auc": 0.7586,
            "roc_auc_ci_low": 0.6924,
            "roc_auc_ci_high": 0.827,
            "ks": 0.45,
            "rows": 250.0,
        },
        run_by="nexml-platform",
        requested_by=EVIL,
        created_at=AT,
        details={
            "breaches": [f"roc_auc 0.6 is below 0.7 {EVIL}"],
            "fairness": {"flagged": {"age": ["<25"]}},
            "drift": {"n_alert": 1, "n_warn": 2, "n_columns": 7},
        },
    )
    markup = validation._repr_html_()
    for fact in (
        "#7 of credit-risk:1",
        "failed",
        "german-credit-holdout:1",
        "roc_auc",
        "0.7586",
        "0.6924",
        "0.827",
        "250",
        "nexml-platform",
        "age: &lt;25",
        "1 alerts, 2 warnings over 7 inputs",
    ):
        assert fact in markup
    assert_escaped(markup)


@pytest.mark.parametrize(
    ("view", "facts"),
    [
        (
            views.Approval("credit-risk:1", "approved", f"Reviewed it {EVIL}", "mark", SHA, AT),
            ["credit-risk:1", "approved", "mark", "Reviewed it", SHA[:12]],
        ),
        (
            views.Deployment(EVIL, "credit-risk:2", "small", "active", "mark", AT),
            ["credit-risk:2", "small", "active", "mark"],
        ),
        (
            views.Event(
                12, AT, "mark", "manager", "model.approve", "credit-risk:1", {"findings": EVIL}, SHA
            ),
            ["#12", "model.approve", "mark (manager)", "credit-risk:1", SHA[:12]],
        ),
        (
            views.Job(
                4,
                "training",
                "failed",
                0.5,
                "champion RandomForest",
                {"dataset": EVIL},
                "dana",
                AT,
                None,
                error="ValueError: bad",
            ),
            ["training job", "#4", "failed", "50%", "champion RandomForest", "ValueError"],
        ),
        (
            views.User(EVIL, "data_scientist", True, AT, "ada"),
            ["data_scientist", "disabled", "ada"],
        ),
        (
            views.TokenInfo("c3fbc31d", "dana", EVIL, AT, None, AT),
            ["c3fbc31d", "dana", "revoked"],
        ),
        (
            views.ModelSummary(EVIL, "credit_scoring", 3, 3, "approved", ("credit",)),
            ["credit_scoring", "approved", "credit"],
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, list) else "",
)
def test_every_other_view_shows_its_facts_and_escapes(view, facts):
    markup = view._repr_html_()
    for fact in facts:
        assert fact in markup
    assert_escaped(markup)


def training_run(champion: str) -> TrainingRun:
    leaderboard = pd.DataFrame(
        {
            "model": [champion, "LogisticRegression"],
            "score_val": [0.75, 0.74],
            "fit_time_s": [0.1, 0.02],
            "predict_time_per_row_s": [1e-5, 1e-5],
        }
    )
    return TrainingRun(
        backend="sklearn",
        problem_type="binary",
        target="risk",
        metric="roc_auc",
        seed=7,
        features=["duration"],
        protected=["sex"],
        excluded=[],
        leaderboard=leaderboard,
        champion_name=champion,
        champion=None,
        candidates=[],
        preprocessing=[],
        input_schema={},
        classes=[0, 1],
        training_rows=750,
        duration_s=14.3,
        libraries={},
    )


def test_training_run_shows_champion_and_leaderboard():
    markup = training_run("RandomForest")._repr_html_()
    for fact in ("RandomForest", "LogisticRegression", "roc_auc", "750 rows", "0.75"):
        assert fact in markup


def test_training_run_escapes_model_names():
    assert_escaped(training_run(EVIL)._repr_html_())


def explanation() -> Explanation:
    values = pd.DataFrame({"duration": [0.1, -0.3]}, index=["applicant-1", EVIL])
    return Explanation(
        ref="credit-risk:1",
        values=values,
        base_values=np.array([0.7, 0.7]),
        scores=np.array([0.81, 0.36]),
        approved=np.array([True, False]),
        cutoff=0.5,
        reasons=[[], [Reason("duration", f"Length of requested loan term {EVIL}", -0.3)]],
        method="tree-shap",
    )


def test_explanation_shows_scores_decisions_and_reason_codes():
    markup = display.explanation_html(explanation())
    for fact in (
        "credit-risk:1",
        "2 rows, 1 declined",
        "0.5",
        "applicant-1",
        "0.81",
        "declined",
        "Length of requested loan term",
        "(duration)",
        "tree-shap",
    ):
        assert fact in markup
    assert_escaped(markup)


def fairness_report() -> FairnessReport:
    groups = [
        {"group": "male", "air": 1.0, "flagged": False},
        {"group": EVIL, "air": 0.62, "flagged": True},
    ]
    attribute = AttributeFairness("sex", "male", False, groups, 0.2, 0.62, 0.1, 0.8)
    return FairnessReport(250, 1, 0.8, 0.05, {"sex": attribute})


def test_fairness_report_shows_lowest_ratio_and_flags():
    markup = display.fairness_html(fairness_report())
    for fact in ("250 rows", "sex", "male", "0.62", "0.8", "0.2"):
        assert fact in markup
    assert_escaped(markup)


def test_register_formatters_renders_explanations_and_fairness_as_html():
    class Shell:
        display_formatter = DisplayFormatter()

    shell = Shell()
    display.register_formatters(shell)
    for value, fact in ((explanation(), "applicant-1"), (fairness_report(), "0.62")):
        data, _ = shell.display_formatter.format(value)
        assert fact in data["text/html"]
        assert "<script" not in data["text/html"]
