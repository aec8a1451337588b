"""``nexml demo``: the lifecycle so far, on a fresh store, with three people and a real model.

A data scientist registers the German credit data and a scikit-learn model and documents it; the
platform validates it; a manager approves and deploys it; a compliance officer verifies the audit
trail. The refusals a regulated shop relies on are shown along the way.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import click
import pandas as pd
import yaml

from .config import Settings
from .errors import NexmlError

PROTECTED = ["sex", "age"]
TARGET = "risk"


def german_credit() -> pd.DataFrame:
    """The German credit data shipped with the package (see ``nexml_ext/data/NOTICE.md``)."""
    with resources.files("nexml_ext.data").joinpath("german_credit.csv").open("rb") as handle:
        return pd.read_csv(handle)


def train_credit_model(
    data: pd.DataFrame, directory: str | Path, *, kind: str = "logistic", seed: int = 7
) -> Path:
    """Fit a credit model on ``data`` (protected attributes excluded) and save it as an artifact."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from .ml.artifact import save_sklearn
    from .ml.data import schema_of

    features = data.drop(columns=[TARGET, *PROTECTED])
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    encode = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), categorical),
            ("numbers", StandardScaler(), numeric),
        ]
    )
    estimator = (
        LogisticRegression(max_iter=1000, random_state=seed)
        if kind == "logistic"
        else HistGradientBoostingClassifier(max_iter=60, random_state=seed)
    )
    pipeline = Pipeline([("prepare", encode), ("model", estimator)])
    # The pipeline drops protected columns itself, so callers may pass whole rows.
    pipeline = Pipeline(
        [
            (
                "select",
                ColumnTransformer(
                    [("keep", "passthrough", list(features.columns))],
                    verbose_feature_names_out=False,
                ),
            ),
            ("fit", pipeline),
        ]
    ).set_output(transform="pandas")
    pipeline.fit(data.drop(columns=[TARGET]), data[TARGET])
    return save_sklearn(
        pipeline,
        directory,
        problem_type="binary",
        target=TARGET,
        input_schema=schema_of(features),
        classes=list(pipeline.classes_),
    )


def split(data: pd.DataFrame, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, holdout = train_test_split(
        data, test_size=0.25, stratify=data[TARGET], random_state=seed
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def demo_compliance() -> dict[str, dict[str, Any]]:
    text = resources.files("nexml_ext.data").joinpath("demo_compliance.yaml").read_text()
    return yaml.safe_load(text)


def _step(text: str) -> None:
    click.echo(click.style(f"\n==> {text}", bold=True))


def _refused(action: Any) -> None:
    try:
        action()
    except NexmlError as exc:
        click.echo(click.style(f"    refused, as it should be: {exc}", fg="yellow"))
    else:  # pragma: no cover - a demo that shows a refusal that did not happen is a bug
        raise RuntimeError("the demo expected a refusal here")


def run(home: str | None = None) -> None:
    """Run the demo in ``home`` (default: a fresh temporary folder, deleted afterwards)."""
    from .workspace import Workspace

    temporary = home is None
    folder = Path(home) if home else Path(tempfile.mkdtemp(prefix="nexml-demo-"))
    settings = Settings.from_env(
        home=folder,
        database_url=f"sqlite:///{folder / 'nexml.db'}",
        artifact_root=str(folder / "artifacts"),
        token="",
    )
    opened: list[Workspace] = []
    try:
        _step(f"Create a store in {folder} (SQLite in WAL mode, artifacts in a local folder)")
        ada, _ = Workspace.init(settings, "ada")
        opened.append(ada)
        click.echo(
            f"    superadmin {ada.principal.name}; token saved to {settings.credentials_path} (0600)"
        )
        people = {}
        for name, role in (
            ("dana", "data_scientist"),
            ("mark", "manager"),
            ("cora", "compliance_officer"),
        ):
            user, token = ada.add_user(name, role)
            people[name] = Workspace.open(settings, token)
            opened.append(people[name])
            click.echo(
                f"    added {user.role} {user.name} (token shown once, stored only as a hash)"
            )
        dana, mark, cora = people["dana"], people["mark"], people["cora"]

        _step(
            "dana registers the German credit data: full table, then a stratified train/holdout split"
        )
        data = german_credit()
        full = dana.register_dataset(
            data,
            "german-credit",
            source={
                "kind": "file",
                "uri": "package://nexml_ext/data/german_credit.csv",
                "licence": "DbCL v1.0",
            },
        )
        train_df, holdout_df = split(data)
        train = dana.register_dataset(
            train_df, "german-credit-train", split="train", parent=full.ref
        )
        holdout = dana.register_dataset(
            holdout_df, "german-credit-holdout", split="holdout", parent=full.ref
        )
        for dv in (full, train, holdout):
            click.echo(f"    {dv.ref}: {dv.row_count} rows, sha256 {dv.content_sha256[:16]}…")

        _step("dana trains a logistic-regression credit model (sex and age kept out of its inputs)")
        work = folder / "work"
        v1_dir = train_credit_model(train_df, work / "v1")
        v1 = dana.register_model(
            v1_dir, "credit-risk", template="credit_scoring", datasets=[train.ref]
        )
        click.echo(
            f"    registered {v1.ref} in {v1.status}; artifact manifest sha256 {v1.artifact_sha256[:16]}…"
        )
        record = dana.compliance(v1.ref)
        tier, source = record.tier()
        click.echo(f"    risk tier {tier} ({source}); compliance score {record.score().total}/100")

        _step("dana documents the model: the human sections of the compliance record")
        for section, fields in demo_compliance().items():
            record.set(section, fields)
        state = record.state()
        click.echo(f"    risk tier {state.tier} ({state.tier_source})")
        click.echo(
            f"    compliance score {state.score.total}/100; missing mandatory: "
            f"{', '.join(state.score.missing_mandatory) or 'none'}"
        )

        _step("Segregation of duties and evidence rules")
        _refused(lambda: dana.approve(v1.ref, findings="I reviewed my own model and it is fine."))
        _refused(lambda: mark.approve(v1.ref, findings="Reviewed documentation; looks sound."))

        _step("mark asks the platform to validate credit-risk:1 on the holdout set")
        validation = mark.validate(v1.ref, dataset=holdout.ref)
        click.echo(
            f"    validation #{validation.id} {validation.status} (run by {validation.run_by}): "
            + ", ".join(f"{k}={validation.metrics[k]:.3f}" for k in ("roc_auc", "accuracy", "ks"))
        )
        click.echo(f"    compliance score now {record.score().total}/100")

        _step("mark approves and deploys it")
        _refused(lambda: mark.approve(v1.ref, findings=""))
        mark.approve(
            v1.ref,
            findings=(
                f"Holdout AUC {validation.metrics['roc_auc']:.3f} meets the 0.70 template minimum; "
                "documentation complete; protected attributes excluded from inputs."
            ),
        )
        click.echo(f"    {v1.ref} is {mark.version(v1.ref).status}")
        deployment = mark.deploy(v1.ref, name="credit", size="small")
        click.echo(f"    deployment {deployment.name} serves {deployment.model_ref}")

        _step(
            "A challenger: dana registers a gradient-boosting version 2; it is validated, approved, deployed"
        )
        v2 = dana.register_model(
            train_credit_model(train_df, work / "v2", kind="boosting"),
            "credit-risk",
            datasets=[train.ref],
        )
        for section, fields in demo_compliance().items():
            dana.compliance(v2.ref).set(section, fields)
        v2_validation = mark.validate(v2.ref, dataset=holdout.ref)
        click.echo(
            f"    validation #{v2_validation.id}: roc_auc={v2_validation.metrics['roc_auc']:.3f}"
        )
        mark.approve(
            v2.ref,
            findings="Challenger validated on the same holdout; approved for a controlled switch.",
        )
        mark.deploy(v2.ref, name="credit")
        click.echo(
            f"    deployment credit serves {v2.ref}; {v1.ref} is {mark.version(v1.ref).status} again"
        )

        _step("mark rolls back to version 1")
        back = mark.rollback("credit", to=v1.ref)
        click.echo(
            f"    deployment credit serves {back.model_ref}; {v2.ref} is {mark.version(v2.ref).status}"
        )

        _step("Tampering with a stored artifact is caught before anything is loaded")
        stored = Path(mark.version(v2.ref).artifact_uri) / "model.joblib"
        original = stored.read_bytes()
        stored.write_bytes(original + b"tampered")
        _refused(lambda: mark.deploy(v2.ref, name="credit"))
        stored.write_bytes(original)

        _step("cora, compliance officer, verifies the audit trail")
        result = cora.audit.verify()
        click.echo(f"    {result}")
        if not result.ok:
            raise RuntimeError("the demo's own audit chain failed to verify")
        for event in cora.audit.log(object="credit-risk:1"):
            click.echo(f"    #{event.seq:<3} {event.at:%H:%M:%S} {event.actor:<15} {event.action}")
        click.echo("\nDemo complete: every step above is in the hash-chained audit trail.")
    finally:
        for ws in opened:
            ws.close()
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            click.echo(f"Store kept in {folder}")
