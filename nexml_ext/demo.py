"""``nexml demo``: the platform so far, on a fresh store, with four people and real models.

A data scientist ingests the German credit data, splits it, trains with AutoML (scikit-learn,
then an AutoGluon challenger) and documents the model; the platform validates it (performance
with confidence intervals, fairness, drift); a manager approves, deploys, explains a declined
application with its adverse-action reasons, and rolls back; a compliance officer verifies the
audit trail. The refusals a regulated shop relies on are shown along the way.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import click
import yaml

from .config import Settings
from .errors import NexmlError
from .sample_data import german_credit_path

TARGET = "risk"


def demo_compliance() -> dict[str, dict[str, Any]]:
    """What the demo's data scientist writes into the German credit model's compliance record."""
    text = resources.files("nexml_ext.data").joinpath("demo_compliance.yaml").read_text()
    return yaml.safe_load(text)


def _step(text: str) -> None:
    click.echo(click.style(f"\n==> {text}", bold=True))


def _say(text: str) -> None:
    click.echo(f"    {text}")


def _refused(action: Any) -> None:
    try:
        action()
    except NexmlError as exc:
        click.echo(click.style(f"    refused, as it should be: {exc}", fg="yellow"))
    else:  # pragma: no cover - a demo that shows a refusal that did not happen is a bug
        raise RuntimeError("the demo expected a refusal here")


def run(home: str | None = None, *, challenger: bool = True) -> None:
    """Run the demo in ``home`` (default: a fresh temporary folder, deleted afterwards)."""
    from .workspace import Workspace

    temporary = home is None
    folder = Path(home) if home else Path(tempfile.mkdtemp(prefix="nexml-demo-"))
    settings = Settings.from_env(home=folder, database_url=f"sqlite:///{folder / 'nexml.db'}",
                                 artifact_root=str(folder / "artifacts"), token="")
    opened: list[Workspace] = []
    try:
        _step(f"Create a store in {folder} (SQLite in WAL mode, artifacts in a local folder)")
        ada, _ = Workspace.init(settings, "ada")
        opened.append(ada)
        _say(f"superadmin {ada.principal.name}; token saved to {settings.credentials_path} (0600)")
        people = {}
        for name, role in (("dana", "data_scientist"), ("mark", "manager"),
                           ("cora", "compliance_officer")):
            user, token = ada.add_user(name, role)
            people[name] = Workspace.open(settings, token)
            opened.append(people[name])
            _say(f"added {user.role} {user.name} (token shown once, stored only as a hash)")
        dana, mark, cora = people["dana"], people["mark"], people["cora"]

        _step("dana ingests the German credit data and splits it 75/25 (stratified, seed 7)")
        with german_credit_path() as csv:
            full = dana.ingest(csv, "german-credit")
        train, holdout = dana.split(full.ref, TARGET, test_size=0.25, seed=7)
        for dv in (full, train, holdout):
            _say(f"{dv.ref}: {dv.row_count} rows, sha256 {dv.content_sha256[:16]}…")
        _say("each version keeps its schema and a drift-baseline profile; drift never needs "
             "the raw rows again")

        _step("dana runs AutoML (scikit-learn: successive halving over three model families)")
        run_ = dana.train(train.ref, TARGET, backend="sklearn", time_limit=30,
                          template="credit_scoring", seed=7)
        _say(f"protected attributes kept out of the inputs: {', '.join(run_.protected)}")
        for row in run_.leaderboard.itertuples():
            _say(f"{row.model:<28} CV roc_auc {row.score_val:.3f}  fit {row.fit_time_s:.1f}s")
        from .ml.explain import load_reason_table

        reasons = load_reason_table("german_credit")
        v1 = dana.register_model(run_, "credit-risk", template="credit_scoring",
                                 reason_codes=reasons)
        _say(f"registered {v1.ref} ({run_.champion_name}) in {v1.status}; manifest sha256 "
             f"{v1.artifact_sha256[:16]}…")
        record = dana.compliance(v1.ref)
        tier, source = record.tier()
        _say(f"risk tier {tier} ({source}); compliance score {record.score().total}/100")

        _step("dana documents the model: the human sections of the compliance record")
        for section, fields in demo_compliance().items():
            record.set(section, fields)
        state = record.state()
        _say(f"risk tier {state.tier} ({state.tier_source})")
        _say(f"compliance score {state.score.total}/100; missing mandatory: "
             f"{', '.join(state.score.missing_mandatory) or 'none'}")

        _step("Segregation of duties and evidence rules")
        _refused(lambda: dana.approve(v1.ref, findings="I reviewed my own model and it is fine."))
        _refused(lambda: mark.approve(v1.ref, findings="Reviewed documentation; looks sound."))

        _step("mark asks the platform to validate credit-risk:1 on the holdout set")
        validation = mark.validate(v1.ref, dataset=holdout.ref)
        m = validation.metrics
        _say(f"validation #{validation.id} {validation.status} (run by {validation.run_by} on the "
             f"verified artifact)")
        _say(f"roc_auc {m['roc_auc']:.3f} (95% CI {m['roc_auc_ci_low']:.3f}-"
             f"{m['roc_auc_ci_high']:.3f}), KS {m['ks']:.3f}, Brier {m['brier']:.3f}")
        details = validation.details
        for attribute, info in (details.get("fairness") or {}).get("attributes", {}).items():
            worst = min((g for g in info["groups"] if g.get("air") is not None),
                        key=lambda g: g["air"])
            _say(f"fairness by {attribute}: lowest adverse impact ratio {worst['air']:.2f} "
                 f"({worst['group']} vs {info['control']}); flagged: "
                 f"{', '.join(info['flagged']) or 'none'}")
        drift = details.get("drift") or {}
        _say(f"drift vs training baseline: {drift.get('n_alert', 0)} alerts, "
             f"{drift.get('n_warn', 0)} warnings over {drift.get('n_columns', 0)} features")
        _say(f"compliance score now {record.score().total}/100")

        _step("mark approves and deploys it")
        _refused(lambda: mark.approve(v1.ref, findings=""))
        mark.approve(v1.ref, findings=(
            f"Holdout AUC {m['roc_auc']:.3f} meets the 0.70 template minimum; no adverse-impact "
            "flags; documentation complete; protected attributes excluded from inputs."))
        _say("someone edits the stored model file after approval ...")
        stored = next(p for p in Path(mark.version(v1.ref).artifact_uri).rglob("*")
                      if p.is_file() and p.name != "MODEL.json")
        original = stored.read_bytes()
        stored.write_bytes(original + b"tampered")
        _refused(lambda: mark.deploy(v1.ref, name="credit"))
        stored.write_bytes(original)
        _say("... and once the file is restored, the deployment goes ahead")
        deployment = mark.deploy(v1.ref, name="credit", size="small")
        _say(f"{v1.ref} approved; deployment {deployment.name} serves {deployment.model_ref}")

        _step("Why was an applicant declined? Adverse-action reasons (Regulation B)")
        holdout_rows = mark.load_dataset(holdout.ref)
        explanation = mark.explain(v1.ref, holdout_rows.head(40))
        declined = [i for i, ok in enumerate(explanation.approved) if not ok]
        if declined:
            row = declined[0]
            _say(f"applicant {row}: score {explanation.scores[row]:.3f} below the cutoff "
                 f"{explanation.cutoff}; principal reasons:")
            for reason in explanation.reasons[row]:
                _say(f"  - {reason.reason}")

        _step("Applications are scored through route 'loans'; every decision is recorded")
        _route, route_key = mark.set_route("loans", {"rules": [], "default": "credit"})
        _say(f"route loans -> deployment credit; its key is shown once ({route_key[:8]}…) and "
             "stored only as a hash")
        applicants = holdout_rows.drop(columns=[TARGET]).head(8)
        subjects = [f"applicant-{47390 + i}" for i in range(len(applicants))]
        answers = mark.predict("loans", applicants, subject_ids=subjects)
        for answer in answers[:4]:
            verdict = "approved" if answer.output.get("approved") else "declined"
            _say(f"{answer.subject_id}: {verdict} (score {answer.score:.3f}) by {answer.model_ref}, "
                 f"record {answer.seq} of predictions:{answer.deployment}")
        declined_answer = next((a for a in answers if not a.output.get("approved")), None)
        if declined_answer is not None:
            found = cora.find_decisions(subject_id=declined_answer.subject_id)[0]
            _say(f"cora asks why {found.subject_id} was declined: "
                 + "; ".join(r["reason"] for r in found.reasons))
            _say(f"proof: {found.proof}")

        if challenger:
            _step("A challenger: dana trains with AutoGluon (LightGBM, XGBoost, CatBoost, ...)")
            run2 = dana.train(train.ref, TARGET, backend="autogluon", time_limit=30,
                              template="credit_scoring", seed=7)
            v2 = dana.register_model(run2, "credit-risk", reason_codes=reasons)
            for section, fields in demo_compliance().items():
                dana.compliance(v2.ref).set(section, fields)
            v2_validation = mark.validate(v2.ref, dataset=holdout.ref)
            _say(f"{v2.ref}: validation roc_auc {v2_validation.metrics['roc_auc']:.3f}")
            mark.approve(v2.ref, findings="Challenger validated on the same holdout; approved "
                                          "for a controlled switch.")
            mark.deploy(v2.ref, name="credit")
            _say(f"deployment credit serves {v2.ref}; {v1.ref} is "
                 f"{mark.version(v1.ref).status} again")

            _step("mark rolls back to version 1")
            back = mark.rollback("credit", to=v1.ref)
            _say(f"deployment credit serves {back.model_ref}; {v2.ref} is "
                 f"{mark.version(v2.ref).status}")

        _step("cora, compliance officer, verifies the audit trail")
        result = cora.audit.verify()
        for chain in result.chains:
            _say(str(chain))
        if not result.ok:
            raise RuntimeError("the demo's own audit chain failed to verify")
        for event in cora.audit.log(object=v1.ref):
            _say(f"#{event.seq:<3} {event.at:%H:%M:%S} {event.actor:<15} {event.action}")
        click.echo("\nDemo complete: every step above is in the hash-chained audit trail.")
    finally:
        for ws in opened:
            ws.close()
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            click.echo(f"Store kept in {folder}")
