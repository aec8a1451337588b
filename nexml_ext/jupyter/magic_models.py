"""``%nexml`` subcommands for models: train, leaderboard, register, models, show, compliance,
validate, jobs, and the analyses explain, fairness and drift."""

from __future__ import annotations

from argparse import Namespace
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from .magic_commands import (
    arg,
    command,
    dataset_ref,
    frame_or_dataset,
    model_ref,
    table,
    training_run,
    view,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..ml.automl import TrainingRun
    from ..workspace import views
    from .magics import NexmlMagics

REF_HELP = "model version NAME:VERSION, or a variable holding one"
DATASET_HELP = "dataset version NAME:VERSION, or a variable holding one"


@command(
    "train",
    arg("dataset", metavar="DATASET", help=DATASET_HELP),
    arg("--target", required=True, metavar="T", help="column to predict"),
    arg("--backend", choices=("sklearn", "autogluon"),
        help="AutoML engine (default NexmlMagics.default_backend)"),
    arg("--time-limit", type=float, metavar="S",
        help="seconds for the search (default NexmlMagics.default_time_limit)"),
    arg("--template", metavar="NAME",
        help="compliance template whose protected attributes are kept out (credit_scoring, ...)"),
    arg("--seed", type=int, default=0, help="random seed (default 0)"),
    arg("--metric", metavar="M", help="metric to rank candidates by (default per problem type)"),
    arg("--allow-protected", nargs="+", default=[], metavar="COL",
        help="protected attributes to keep as inputs anyway (needs --justification)"),
    arg("--justification", metavar="TEXT",
        help="why the allowed protected attributes are needed (goes to the compliance record)"),
)
def train(nx: NexmlMagics, args: Namespace) -> TrainingRun:
    """Run AutoML on a dataset version; the run is recorded as a job.

    Returns the TrainingRun and remembers it as the session's last run, which `leaderboard`
    and `register` use when no run variable is named.
    """
    run = nx.workspace.train(
        dataset_ref(nx.user_ns, args.dataset), args.target,
        backend=args.backend or nx.default_backend,
        time_limit=nx.default_time_limit if args.time_limit is None else args.time_limit,
        template=args.template, seed=args.seed, metric=args.metric,
        allow_protected_inputs=args.allow_protected, justification=args.justification,
        progress=nx.progress,
    )
    nx.last_run = run
    return run


@command(
    "leaderboard",
    arg("run", nargs="?", metavar="RUN_VAR",
        help="variable holding a TrainingRun (default: the last %%nexml train)"),
)
def leaderboard(nx: NexmlMagics, args: Namespace) -> Any:
    """Every candidate of a training run with its validation score, best first.

    Returns the leaderboard widget.
    """
    run = training_run(nx, args.run)
    return view("leaderboard_widget", run, fallback=run.leaderboard)


@command(
    "register",
    arg("run", nargs="?", metavar="RUN_VAR",
        help="variable holding a TrainingRun (default: the last %%nexml train)"),
    arg("--model", required=True, metavar="NAME", help="model name; this becomes its next version"),
    arg("--template", metavar="T",
        help="compliance template (credit_scoring, fraud_detection, risk_assessment, "
             "fair_lending); default: the run's"),
    arg("--reasons", metavar="TABLE",
        help="packaged adverse-action reason-code table, e.g. german_credit"),
)
def register(nx: NexmlMagics, args: Namespace) -> views.ModelVersion:
    """Register a training run's champion as the next version of a model (in staging).

    Returns the ModelVersion: `mv = %nexml register --model credit-risk`.
    """
    from ..ml.explain import load_reason_table

    run = training_run(nx, args.run)
    reasons = load_reason_table(args.reasons) if args.reasons else None
    return nx.workspace.register_model(
        run, args.model, template=args.template, reason_codes=reasons
    )


@command("models")
def models(nx: NexmlMagics, args: Namespace) -> pd.DataFrame:
    """The model inventory: each model, its latest version and where it is deployed.

    Returns a pandas DataFrame.
    """
    return table(
        [
            {"model": m.name, "template": m.template, "versions": m.versions,
             "latest": f"{m.name}:{m.latest}", "status": m.latest_status,
             "deployed": ", ".join(m.deployed)}
            for m in nx.workspace.models()
        ],
        ["model", "template", "versions", "latest", "status", "deployed"],
    )


@command("show", arg("ref", metavar="NAME:VER", help=REF_HELP))
def show(nx: NexmlMagics, args: Namespace) -> Any:
    """The model card of one version: status, artifact, metrics, compliance, decisions.

    Returns the model-card widget.
    """
    ref = model_ref(nx.user_ns, args.ref)
    version = nx.workspace.version(ref)
    return view("model_card", nx.workspace, ref, fallback=version)


@command("compliance", arg("ref", metavar="NAME:VER", help=REF_HELP))
def compliance(nx: NexmlMagics, args: Namespace) -> Any:
    """The compliance record of one version as a form to fill in, with its score.

    Returns the compliance-form widget.
    """
    ref = model_ref(nx.user_ns, args.ref)
    record = nx.workspace.compliance(ref)
    return view("compliance_form", nx.workspace, ref, fallback=record)


@command(
    "validate",
    arg("ref", metavar="NAME:VER", help=REF_HELP),
    arg("--data", "--dataset", dest="data", required=True, metavar="DATASET",
        help="dataset version NAME:VERSION to validate on, or a variable holding one"),
    arg("--now", action="store_true",
        help="validate here, in this process, without the report (recorded all the same)"),
)
def validate(nx: NexmlMagics, args: Namespace) -> Any:
    """Have the platform validate one version on a registered dataset version.

    Submits a ``validation`` job: a worker (``nexml worker``) runs it as the platform, which
    makes the validation report (notebooks/validation.ipynb) and records the validation linked
    to it, the evidence an approval rests on. Watch it with ``%nexml jobs``. With --now the
    platform validates here and records the validation without a report. Returns the Job (with
    --now, the Validation).
    """
    ref = model_ref(nx.user_ns, args.ref)
    dataset = dataset_ref(nx.user_ns, args.data, "--data")
    if args.now:
        return nx.workspace.validate(ref, dataset=dataset)
    return nx.workspace.submit_job("validation", {"ref": ref, "dataset": dataset})


@command(
    "jobs",
    arg("--kind", help="only this kind: training, explain, fairness, drift, ..."),
    arg("--limit", type=int, default=50, help="at most this many (default 50)"),
    arg("--view", action="store_true", help="return the live jobs widget instead of a table"),
)
def jobs(nx: NexmlMagics, args: Namespace) -> Any:
    """Recent jobs, newest first (data scientists see their own).

    Returns a pandas DataFrame, or with --view the jobs widget.
    """
    listed = nx.workspace.jobs(kind=args.kind, limit=args.limit)
    rows = table(
        [
            {"id": j.id, "kind": j.kind, "status": j.status, "progress": j.progress,
             "message": j.message, "created_by": j.created_by, "created_at": j.created_at,
             "finished_at": j.finished_at, "params": j.params}
            for j in listed
        ],
        ["id", "kind", "status", "progress", "message", "created_by", "created_at",
         "finished_at", "params"],
    )
    return view("jobs_view", nx.workspace, fallback=rows) if args.view else rows


@command(
    "explain",
    arg("ref", metavar="NAME:VER", help=REF_HELP),
    arg("--data", required=True, metavar="DF_OR_DATASET",
        help="a notebook DataFrame variable, or a dataset version NAME:VERSION"),
    arg("--row", type=int, default=0, help="which row to show first (default 0)"),
)
def explain(nx: NexmlMagics, args: Namespace) -> Any:
    """Explain one version's scores row by row: contributions and adverse-action reasons.

    Returns the explanation widget (`ws.explain(...)` gives the Explanation itself).
    """
    explanation = nx.workspace.explain(
        model_ref(nx.user_ns, args.ref), frame_or_dataset(nx.user_ns, args.data)
    )
    rows = len(explanation.values)
    if not 0 <= args.row < rows:
        raise InvalidInput(f"--row {args.row} is out of range: the data has {rows} row(s)")
    return view("explanation_view", explanation, row=args.row, fallback=explanation)


@command(
    "fairness",
    arg("ref", metavar="NAME:VER", help=REF_HELP),
    arg("--data", required=True, metavar="DATASET",
        help="labelled dataset version NAME:VERSION, or a variable holding one"),
)
def fairness(nx: NexmlMagics, args: Namespace) -> Any:
    """Fairness of one version's decisions per protected group (adverse impact and more).

    Returns the fairness widget.
    """
    report = nx.workspace.fairness(
        model_ref(nx.user_ns, args.ref), dataset_ref(nx.user_ns, args.data, "--data")
    )
    return view("fairness_view", report, fallback=report)


@command(
    "drift",
    arg("ref", metavar="NAME:VER", help=REF_HELP),
    arg("--data", required=True, metavar="DF_OR_DATASET",
        help="a notebook DataFrame variable, or a dataset version NAME:VERSION"),
)
def drift(nx: NexmlMagics, args: Namespace) -> Any:
    """Drift of new data against the version's training-data profile (PSI per feature).

    Returns the drift widget.
    """
    report = nx.workspace.drift(
        model_ref(nx.user_ns, args.ref), frame_or_dataset(nx.user_ns, args.data)
    )
    return view("drift_view", report, fallback=report)
