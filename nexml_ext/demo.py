"""``nexml demo``: the platform so far, on a fresh store, with four people and real models.

A data scientist ingests the German credit data, splits it, trains with AutoML (scikit-learn,
then an AutoGluon challenger) and documents the model; the platform validates it (performance
with confidence intervals, fairness, drift); a manager approves, deploys, explains a declined
application with its adverse-action reasons, puts the model behind a route key and the real HTTP
gateway (the app `nexml server` runs, on uvicorn at 127.0.0.1) and sends it applications, and
rolls back; a compliance officer answers "why was this applicant declined?" from the decision
trail and verifies the audit trail. Then months of traffic are simulated: a weekly monitor
raises the drift alert in the week the market shifts, the alert asks for a retraining, and the
challenger waits in staging for a person's approval. The refusals a regulated shop relies on are
shown along the way. Last, JupyterLab and the dashboards are served on 127.0.0.1 (unless
``--no-serve``) with each demo identity's token.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
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


class Gateway:
    """The scoring gateway as a real HTTP server inside the demo's process: ``create_app`` on
    uvicorn in a background thread, bound to 127.0.0.1 on a free port, and an httpx client."""

    def __init__(self, workspace: Any) -> None:
        import httpx
        import uvicorn

        from .api import create_app

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))  # a free port, held from here on: no race for it
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(workspace), log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]},
            name="nexml-demo-gateway", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise NexmlError(f"the demo's gateway did not start on {self.url}")
            time.sleep(0.05)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def post(self, path: str, body: dict[str, Any], key: str | None) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.client.post(path, json=body, headers=headers)

    def predict(self, route: str, key: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The answered rows of one request; any other answer than 200 stops the demo."""
        response = self.post(f"/v1/routes/{route}/predict", body, key)
        if response.status_code != 200:
            raise NexmlError(
                f"the gateway answered HTTP {response.status_code} to a valid request: "
                f"{_detail(response)}"
            )
        return response.json()["predictions"]

    def close(self) -> None:
        """Stop serving (in-flight requests finish first) and release the port."""
        if getattr(self, "client", None) is not None:
            self.client.close()
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


def _detail(response: Any) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:200]


def _rows(frame: Any) -> list[dict[str, Any]]:
    """DataFrame rows as the JSON objects an application would send."""
    import json

    return json.loads(frame.to_json(orient="records"))


def _subject(index: int) -> str:
    return f"applicant-{47390 + index}"


def _outcome_endpoint(gateway: Gateway, key: str, answer: dict[str, Any], actual: Any) -> None:
    """Attach what really happened to a past decision, if this build has the endpoint."""
    response = gateway.post(
        "/v1/routes/loans/outcomes",
        {"outcomes": [{"request_id": answer["request_id"], "outcome": actual}]},
        key,
    )
    absent = response.status_code == 405 or (
        response.status_code == 404 and _detail(response) == "Not Found"
    )
    if absent:
        _say("(this build has no outcomes endpoint yet: POST /v1/routes/loans/outcomes "
             f"answered {response.status_code}; skipped)")
    elif response.status_code == 200:
        _say(f"months later {answer['subject_id']}'s loan is {actual}: POST "
             f"/v1/routes/loans/outcomes -> HTTP 200, attached to request {answer['request_id']}")
        _say("(outcomes sit beside the record, outside its hash: they arrive after the decision)")
    else:
        raise NexmlError(
            f"the gateway refused an outcome with HTTP {response.status_code}: "
            f"{_detail(response)}"
        )


def _next_application(gateway: Gateway, key: str, applicants: Any, i: int) -> str:
    [answer] = gateway.predict("loans", key, {
        "inputs": _rows(applicants.iloc[[i]]), "subject_ids": [_subject(i)], "explain": False,
    })
    verdict = "approved" if answer["approved"] else "declined"
    return (f"over HTTP, {answer['subject_id']} is now answered by {answer['model_version']}: "
            f"{verdict}, request {answer['request_id']}")


def run(home: str | None = None, *, challenger: bool = True, serve: bool = True) -> None:
    """Run the demo in ``home`` (default: a fresh temporary folder, deleted afterwards); with
    ``serve``, end by serving JupyterLab and the dashboards until Ctrl-C."""
    from .workspace import Workspace

    temporary = home is None
    folder = Path(home) if home else Path(tempfile.mkdtemp(prefix="nexml-demo-"))
    settings = Settings.from_env(home=folder, database_url=f"sqlite:///{folder / 'nexml.db'}",
                                 artifact_root=str(folder / "artifacts"), token="")
    opened: list[Workspace] = []
    gateway: Gateway | None = None
    try:
        _step(f"Create a store in {folder} (SQLite in WAL mode, artifacts in a local folder)")
        ada, ada_token = Workspace.init(settings, "ada")
        opened.append(ada)
        tokens = {"ada": ("superadmin", ada_token)}
        _say(f"superadmin {ada.principal.name}; token saved to {settings.credentials_path} (0600)")
        people = {}
        for name, role in (("dana", "data_scientist"), ("mark", "manager"),
                           ("cora", "compliance_officer")):
            user, token = ada.add_user(name, role)
            people[name] = Workspace.open(settings, token)
            tokens[name] = (role, token)
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

        _step("mark asks the platform for the validation report of credit-risk:1 on the holdout")
        made = mark.make_report("validation", subject=v1.ref, dataset=holdout.ref)
        validation = next(v for v in mark.validations(v1.ref) if v.report_id == made.id)
        report_file = folder / f"validation-report-{made.id}.html"
        report_file.write_bytes(mark.report_html(made.id))
        _say(f"validation report #{made.id} written to {report_file}")
        _say(f"its sha256 {made.html_sha256} (nexml report verify tells it is the platform's)")
        m = validation.metrics
        _say(f"validation #{validation.id} {validation.status} (run by {validation.run_by} on the "
             f"verified artifact), recorded from report #{made.id}")
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

        _step("mark approves from the validation report, and deploys it")
        _refused(lambda: mark.approve(v1.ref, findings=""))
        approval = mark.approve(v1.ref, findings=(
            f"Holdout AUC {m['roc_auc']:.3f} meets the 0.70 template minimum; no adverse-impact "
            "flags; documentation complete; protected attributes excluded from inputs."))
        _say(f"approval rests on validation #{approval.validation_id} from validation report "
             f"#{approval.report_id}")
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
            _say(f"{_subject(row)}: score {explanation.scores[row]:.3f} below the cutoff "
                 f"{explanation.cutoff}; principal reasons:")
            for reason in explanation.reasons[row]:
                _say(f"  - {reason.reason}")

        _step("Applications arrive over HTTP: route 'loans' on the gateway (`nexml server`)")
        _route, route_key = mark.set_route("loans", {"rules": [], "default": "credit"})
        _say(f"route loans -> deployment credit; its key is shown once ({route_key[:8]}…) and "
             "stored only as a hash")
        gateway = Gateway(ada)
        _say(f"gateway listening on {gateway.url} (FastAPI on uvicorn, loopback only); an "
             "answer is sent only after its record is committed")
        applicants = holdout_rows.drop(columns=[TARGET])
        picks = list(range(5))
        if declined and not set(declined) & set(picks):
            picks.append(declined[0])  # the declined applicant explained above
        answers = []
        for i in picks:
            [answer] = gateway.predict("loans", route_key, {
                "inputs": _rows(applicants.iloc[[i]]), "subject_ids": [_subject(i)],
                "explain": False,
            })
            answers.append(answer)
            verdict = "approved" if answer["approved"] else "declined"
            _say(f"POST /v1/routes/loans/predict {answer['subject_id']}: HTTP 200 {verdict}, "
                 f"probability {answer['probability']:.3f}, {answer['model_version']}, "
                 f"request {answer['request_id']}")
            for reason in answer["reasons"]:
                _say(f"  - {reason['reason']}")
        first = _rows(applicants.iloc[[0]])
        wrong = gateway.post("/v1/routes/loans/predict", {"inputs": first},
                             "nxr_" + secrets.token_urlsafe(32))
        _say(f"the same application with a wrong route key: HTTP {wrong.status_code} "
             f"{_detail(wrong)} (nothing scored or recorded)")
        bad = gateway.post("/v1/routes/loans/predict",
                           {"inputs": [dict(first[0], credit_amount="a lot")]}, route_key)
        _say(f"an application with credit_amount \"a lot\": HTTP {bad.status_code} "
             f"{_detail(bad)}")
        if wrong.status_code != 401 or bad.status_code != 422:  # pragma: no cover - a bug
            raise NexmlError(f"the gateway answered {wrong.status_code} to a wrong key and "
                             f"{bad.status_code} to a bad field (expected 401 and 422)")
        repaid = int(holdout_rows[TARGET].iloc[picks[0]]) == 1  # risk 1: repaid as agreed
        _outcome_endpoint(gateway, route_key, answers[0], "repaid" if repaid else "defaulted")

        declined_answer = next((a for a in answers if not a["approved"]), None)
        if declined_answer is not None:
            subject = declined_answer["subject_id"]
            _step(f"Why was {subject} declined? cora asks the decision trail "
                  f"(`nexml audit find --subject {subject}`)")
            found = cora.find_decisions(subject_id=subject)[0]
            _say(f"request {found.request_id} at {found.at:%Y-%m-%d %H:%M:%S} UTC, route "
                 f"{found.route}, by {found.model_ref} (artifact {found.artifact_sha256[:16]}…)")
            shown = ", ".join(f"{k}={v}" for k, v in list(found.inputs.items())[:5])
            _say(f"inputs: {shown}, … ({len(found.inputs)} fields)")
            _say(f"output: declined, score {found.score:.3f} below the cutoff "
                 f"{found.output.get('cutoff')}; principal reasons:")
            for reason in found.reasons:
                _say(f"  - {reason['reason']}")
            _say(f"proof: {found.proof}")
            _say("(cora's look-up is itself an audit event)")

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
            _say(_next_application(gateway, route_key, applicants, picks[-1] + 1))

            _step("mark rolls back to version 1")
            back = mark.rollback("credit", to=v1.ref)
            _say(f"deployment credit serves {back.model_ref}; {v2.ref} is "
                 f"{mark.version(v2.ref).status}")
            _say(_next_application(gateway, route_key, applicants, picks[-1] + 2))

        _monitoring_and_retraining(folder, ada, mark, holdout_rows)

        _step("cora, compliance officer, verifies the audit trail")
        result = cora.audit.verify()
        for chain in result.chains:
            _say(str(chain))
        if not result.ok:
            raise RuntimeError("the demo's own audit chain failed to verify")
        for event in cora.audit.log(object=v1.ref):
            _say(f"#{event.seq:<3} {event.at:%H:%M:%S} {event.actor:<15} {event.action}")
        _audit_report_and_schedules(folder, ada, cora, temporary)
        click.echo("\nDemo complete: every step above is in the hash-chained audit trail.")
        if serve:
            gateway.close()
            gateway = None
            for ws in opened:
                ws.close()
            opened.clear()
            _serve(settings, folder, tokens)
    finally:
        if gateway is not None:
            gateway.close()
        for ws in opened:
            ws.close()
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            click.echo(f"Store kept in {folder}")


def _run_in_worker(ada: Any, asker: Any, job_id: int, what: str) -> Any:
    """Run queued jobs in this process, as `nexml worker` would, until job ``job_id`` has run;
    its finished record as ``asker`` sees it (NexmlError unless it succeeded)."""
    from .jobs import Worker

    worker = Worker(ada)
    ran = worker.run_once()
    while ran is not None and ran.id != job_id:
        ran = worker.run_once()
    done = asker.job(job_id, log_tail=0)
    if done.status != "succeeded":
        raise NexmlError(f"the demo's {what} job {done.id} {done.status}: {done.error}")
    return done


def _audit_report_and_schedules(folder: Path, ada: Any, cora: Any, temporary: bool) -> None:
    """The demo's last step: the platform's audit report over the requests the demo sent,
    made as a `report-audit` job by an in-process worker, and the default schedules."""
    from .store.tables import utcnow

    (opened,) = cora.audit.log(action="store.init")
    since, until = f"{opened.at:%Y-%m-%d}", f"{utcnow():%Y-%m-%d}"
    _step(f"cora asks the platform for an audit report over the demo's requests ({since} to "
          f"{until}); a worker makes it")
    job = cora.submit_job("report-audit", {"since": since, "until": until})
    done = _run_in_worker(ada, cora, job.id, "audit report")
    report = cora.report(done.result["report"])
    html = folder / "reports" / f"audit-report-{report.id}.html"
    html.parent.mkdir(exist_ok=True)
    html.write_bytes(cora.report_html(report.id))
    _say(f"job {job.id} report-audit {done.status}: report #{report.id} \"{report.title}\"")
    _say(f"HTML {html}" + (" (removed with the demo's store; --home keeps it)"
                           if temporary else ""))
    _say(f"sha256 {report.html_sha256}")
    heads = "; ".join(f"{chain} #{head['seq']}" for chain, head in sorted(report.chain_heads.items()))
    _say(f"chain heads it carries: {heads}")
    verified = cora.verify_report(html)
    _say(f"`nexml report verify` on that file: report #{verified.id}, made by the platform")

    _step("The schedules a deployment gets (`nexml schedule defaults`; `nexml scheduler` "
          "submits each fire once)")
    created, _existing = ada.add_default_schedules()
    for sc in created:
        params = " ".join(f"{k}={v}" for k, v in sorted(sc.params.items()))
        _say(f"{sc.name}: {sc.kind} {params} at '{sc.cron}' ({sc.timezone}), next "
             f"{sc.next_run_at:%Y-%m-%d %H:%M} UTC")


# --- monitoring and retraining -------------------------------------------------------------

SIM_WEEKS = 12
SHIFT_WEEK = 8  # 0-based: the ninth simulated week is the first with larger, longer loans


def _shifted(rows: Any) -> Any:
    """The demo's market change: loans 2.5 times larger over terms twice as long."""
    out = rows.copy()
    out["credit_amount"] = (out["credit_amount"] * 2.5).round().astype(int)
    out["duration"] = (out["duration"] * 2).astype(int)
    return out


class _SimClock:
    """The simulation's time: what the superadmin's workspace takes "now" from."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _monitoring_and_retraining(folder: Path, ada: Any, mark: Any, holdout_rows: Any) -> None:
    """Months of traffic on a simulated clock, a weekly monitor that raises the drift alert in
    the week the market shifts (and not before), the retraining that alert asks for, and the
    challenger left in staging for a person to approve."""

    today = datetime.now(UTC).replace(tzinfo=None)
    monday = (today - timedelta(days=today.weekday())).replace(hour=0, minute=0, second=0,
                                                               microsecond=0)
    start = monday - timedelta(weeks=SIM_WEEKS + 2)
    _step(f"Months of traffic, simulated: {SIM_WEEKS} weeks on deployment credit from "
          f"{start:%Y-%m-%d}; from week {SHIFT_WEEK + 1} applicants ask for larger loans over "
          "longer terms")
    labelled = folder / "labelled-latest.csv"
    with german_credit_path() as csv:
        import pandas as pd

        _shifted(pd.read_csv(csv)).to_csv(labelled, index=False)
    clock = _SimClock(start)
    ada.set_clock(clock)  # an audited act: the chain says these decisions are simulated
    try:
        mark.enrol_monitor("credit", window="weekly", retrain_on_alert=True, source=str(labelled))
        _say("mark enrols deployment credit: weekly data drift, prediction drift, performance "
             f"and health; on an alert, retrain on {labelled.name}")
        platform = ada._as_platform()  # the gateway's identity, on the simulated clock
        inputs = holdout_rows.drop(columns=[TARGET, "sex", "age"], errors="ignore")
        for week in range(SIM_WEEKS):
            rows = inputs.sample(frac=1.0, random_state=week).reset_index(drop=True)
            if week >= SHIFT_WEEK:
                rows = _shifted(rows)
            for day, part in enumerate(range(0, len(rows), 50)):
                clock.now = start + timedelta(weeks=week, days=day, hours=10)
                platform.score_deployment("credit", rows.iloc[part:part + 50], explain=False)
            clock.now = start + timedelta(weeks=week + 1, hours=6)
            for run in platform.run_monitor("credit"):  # what `nexml scheduler` would run
                alerts = [a for a in ada.alerts(status="all", deployment="credit")
                          if a.id in run.alerts]
                new = [a for a in alerts if a.first_window_start == run.window_start]
                verdict = "; ".join(
                    f"ALERT {a.metric} of {a.feature or 'the score'} {a.value:.2f} >= "
                    f"{a.threshold:g}" for a in new
                ) or "no breach"
                if len(alerts) > len(new):
                    verdict += f" ({len(alerts) - len(new)} alerts still open: counted, not sent "
                    verdict += "again)"
                _say(f"week {week + 1:>2} ({run.window_start:%Y-%m-%d}): {run.rows} decisions, "
                     f"{verdict}")
        asked = mark.jobs(kind="retrain")
        if not asked:  # pragma: no cover - the shift is large: a demo without the alert is a bug
            raise NexmlError("the simulated shift raised no alert, so no retraining was asked")
        retrain = asked[0]
        _say(f"the alert asked for retraining: job {retrain.id} ({retrain.kind}, submitted by "
             f"{retrain.created_by}); the compliance record of the model is flagged for "
             "re-review")
    finally:
        ada.set_clock(None)

    _step("A worker retrains on the latest labelled data into staging: champion and "
          "challenger on one holdout, side by side")
    done = _run_in_worker(ada, mark, retrain.id, "retraining")
    result = done.result
    challenger = mark.version(result["challenger"])
    retraining = challenger.lineage.get("retraining", {})
    recommendation = retraining.get("recommendation", {})
    _say(f"challenger {challenger.ref} is in {challenger.status}, author "
         f"{challenger.author}; comparison report #{retraining.get('report')}")
    _say(f"recommendation: {recommendation.get('decision')} ({recommendation.get('reason')})")
    served = {d.name: d.model_ref for d in mark.deployments()}["credit"]
    _say(f"deployment credit still serves {served}: "
         "nothing is deployed until a manager who is not the challenger's author approves it")


# --- serving -------------------------------------------------------------------------------


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise NexmlError("no free port on 127.0.0.1")  # pragma: no cover


def _wait_listening(process: Any, port: int, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NexmlError(f"{what} exited with status {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise NexmlError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def _serve(settings: Settings, folder: Path, tokens: dict[str, tuple[str, str]]) -> None:
    """Serve the dashboards (`nexml dashboards`) and JupyterLab (with the dashboards inside it,
    through the server extension) on 127.0.0.1 until Ctrl-C, and print who can sign in."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(settings.home), NEXML_DATABASE_URL=settings.database_url,
               NEXML_ARTIFACT_ROOT=str(settings.artifact_root))
    dash_port, lab_port = _free_port(8866), _free_port(8888)
    lab_token = secrets.token_urlsafe(24)
    notebooks = folder / "notebooks"
    notebooks.mkdir(exist_ok=True)
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    lab_args = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
        f"--port={lab_port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={lab_token}", f"--ServerApp.root_dir={notebooks}",
        # the nexml extension (enabled on install by etc/jupyter; named here too, so a
        # checkout without the installed config file serves it as well)
        '--ServerApp.jpserver_extensions={"nexml_ext.jupyter.server_extension": True}',
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lab_args.append("--allow-root")  # containers often run as root; it still binds loopback
    processes: list[subprocess.Popen] = []
    # Ctrl-C and SIGTERM both stop the servers. Set here, not inherited: a demo started from a
    # background job (sh's `cmd &`) begins with SIGINT ignored, and `kill` must not orphan them.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(logs / "dashboards.log", "ab") as dash_log, \
                open(logs / "jupyterlab.log", "ab") as lab_log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "nexml_ext.cli", "dashboards", "--port", str(dash_port),
                 "--no-browser"], env=env, stdout=dash_log, stderr=subprocess.STDOUT))
            lab_env = dict(env, NEXML_TOKEN=tokens["dana"][1])  # JupyterLab: dana's workbench
            processes.append(subprocess.Popen(lab_args, env=lab_env, stdout=lab_log,
                                              stderr=subprocess.STDOUT))
        _wait_listening(processes[0], dash_port, f"the dashboards server (log: {logs})")
        _wait_listening(processes[1], lab_port, f"JupyterLab (log: {logs})")
        _step("Serving the dashboards and JupyterLab on 127.0.0.1 (Ctrl-C stops)")
        _say(f"dashboards: http://127.0.0.1:{dash_port}/  (sign in with a token below)")
        for name, (role, token) in tokens.items():
            _say(f"  {name:<5} {role:<19} {token}")
        _say(f"JupyterLab (as dana): http://127.0.0.1:{lab_port}/lab?token={lab_token}")
        _say(f"  the dashboards inside it: http://127.0.0.1:{lab_port}/nexml/dashboards")
        _say(f"server logs in {logs}")
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        raise NexmlError("a server stopped on its own; see its messages above")
    except KeyboardInterrupt:
        click.echo("\nStopping the servers.")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:  # pragma: no cover - a server that hangs
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
