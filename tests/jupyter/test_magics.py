"""``%nexml`` driven in a real IPython shell with run_line_magic / run_cell, on each backend.

Refusals are read from the shell's stderr: one line, ``error: ...``, and the magic returns None.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from nexml_ext.demo import demo_compliance
from nexml_ext.errors import InvalidInput, PermissionDenied
from nexml_ext.governance.roles import Principal
from nexml_ext.jupyter.magic_commands import COMMANDS, view
from nexml_ext.jupyter.magics import NexmlMagics
from nexml_ext.ml.automl import TrainingRun
from nexml_ext.ml.drift import DriftReport
from nexml_ext.ml.fairness import FairnessReport
from nexml_ext.workspace import ComplianceRecord, Workspace, views
from nexml_ext.workspace.analysis import Explanation
from nexml_ext.workspace.audit import AuditVerification

FINDINGS = "Reviewed the holdout AUC ($0.70 floor, {target} = risk); documentation complete."


@pytest.fixture
def ip(monkeypatch):
    """A fresh IPython shell with ``%load_ext nexml_ext`` done and no NEXML_* environment."""
    for name in ("NEXML_TOKEN", "NEXML_HOME", "NEXML_DATABASE_URL", "NEXML_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    config = Config()
    config.HistoryManager.enabled = False
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "nexml_ext")
    shell.run_line_magic("config", "NexmlMagics.progress = False")
    yield shell
    magics(shell).close()
    InteractiveShell.clear_instance()


def magics(shell) -> NexmlMagics:
    return shell.magics_manager.registry["NexmlMagics"]


def nexml(shell, line: str):
    return shell.run_line_magic("nexml", line)


def connect(shell, stack, user: str) -> Workspace:
    settings = stack.settings
    shell.user_ns["token"] = stack.tokens[user]  # the secret stays out of the line
    line = (f"connect --token token --home {shlex.quote(str(settings.home))} "
            f"--database-url {shlex.quote(settings.database_url)}")
    return nexml(shell, line)


def one_error(capsys) -> str:
    """The single stderr line a refused magic printed (and nothing on stdout)."""
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(("error: ", "internal error: ")), err
    return lines[0]


def rendered(result, widget: str, plain: type) -> None:
    """Views return the widget; while the widgets module (or that widget) is missing, the
    plain object it would show."""
    if importlib.util.find_spec("nexml_ext.jupyter.widgets") is not None:
        from nexml_ext.jupyter import widgets

        if hasattr(widgets, widget):
            import ipywidgets

            assert isinstance(result, ipywidgets.Widget), type(result)
            return
    assert isinstance(result, plain), type(result)


# --- loading, options, help ------------------------------------------------------------------


def test_load_ext_registers_line_and_cell_magic_with_traitlet_options(ip):
    assert ip.find_line_magic("nexml") is not None
    assert ip.find_cell_magic("nexml") is not None
    options = set(NexmlMagics.class_trait_names(config=True))
    assert {"home", "database_url", "default_backend", "default_time_limit", "progress",
            "debug"} <= options
    assert not any("token" in name for name in options)  # secrets are never configuration
    ip.run_line_magic("config", "NexmlMagics.default_time_limit = 5")
    assert magics(ip).default_time_limit == 5.0
    ip.run_line_magic("reload_ext", "nexml_ext")  # a reload replaces the instance, config kept
    assert sum(isinstance(c, NexmlMagics) for c in ip.configurables) == 1
    assert magics(ip).default_time_limit == 5.0


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_explains_itself(ip, capsys, name):
    assert nexml(ip, f"{name} --help") is None
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"usage: %{'%' if name == 'route' else ''}nexml {name} ")
    options = {o for a in COMMANDS[name].parser._actions for o in a.option_strings}
    assert {"--help", "--debug"} <= options
    for option in options - {"-h"}:
        assert option in out, f"{name} --help does not mention {option}"
    assert COMMANDS[name].summary in out
    assert nexml(ip, f"--help {name}") is None  # the same help, asked the other way round
    assert capsys.readouterr().out == out


def test_help_lists_the_subcommands(ip, capsys):
    for line in ("", "--help", "-h"):
        assert nexml(ip, line) is None
        out = capsys.readouterr().out
        assert out.startswith("usage: %nexml")
        for name in COMMANDS:
            assert f"{name}  " in out
    ip.run_cell("%nexml?")
    assert "audit verify" in capsys.readouterr().out
    assert nexml(ip, "audit") is None
    out = capsys.readouterr().out
    assert "audit log" in out and "audit verify" in out and "approve" not in out
    specific = {"train": ["--time-limit", "--allow-protected", "--justification", "--backend"],
                "approve": ["--findings"], "deploy": ["--name", "--size"],
                "audit log": ["--since", "--actor", "--object", "--limit"],
                "explain": ["--data", "--row"], "validate": ["--data"]}
    for name, options in specific.items():
        nexml(ip, f"{name} -h")
        out = capsys.readouterr().out
        assert all(option in out for option in options), (name, out)


# --- the whole notebook story, as a data scientist and then a manager -----------------------


def test_story_every_subcommand_returns_its_object(ip, stack, german, capsys):
    ws = connect(ip, stack, "dana")
    assert isinstance(ws, Workspace) and ws.principal.name == "dana"
    assert nexml(ip, "whoami") == Principal("dana", ws.principal.role)

    ip.run_line_magic("config", "NexmlMagics.default_time_limit = 5")
    ip.user_ns["df"] = german.sample(300, random_state=0)
    assert ip.run_cell("dv = %nexml ingest df --name credit").success
    dv = ip.user_ns["dv"]
    assert isinstance(dv, views.DatasetVersion) and (dv.ref, dv.row_count) == ("credit:1", 300)

    ip.run_cell("train, holdout = %nexml split dv --target risk --test-size 0.25 --seed 1")
    train, holdout = ip.user_ns["train"], ip.user_ns["holdout"]
    assert (train.ref, holdout.ref) == ("credit-train:1", "credit-holdout:1")
    assert train.row_count + holdout.row_count == 300
    listed = nexml(ip, "datasets")
    assert isinstance(listed, pd.DataFrame)
    assert list(listed["ref"]) == ["credit:1", "credit-train:1", "credit-holdout:1"]
    assert nexml(ip, "datasets;") is None  # a trailing semicolon silences the result

    # --time-limit left out: the %config default is what the recorded job used
    ip.run_cell("run = %nexml train train --target risk --template credit_scoring")
    run = ip.user_ns["run"]
    assert isinstance(run, TrainingRun) and magics(ip).last_run is run
    job = stack.dana.jobs(kind="training")[0]
    assert job.params["time_limit"] == 5.0 and job.params["backend"] == "sklearn"
    assert job.params["dataset"] == "credit-train:1"
    rendered(nexml(ip, "leaderboard"), "leaderboard_widget", pd.DataFrame)
    rendered(nexml(ip, "leaderboard run"), "leaderboard_widget", pd.DataFrame)

    ip.run_cell("mv = %nexml register --model credit-risk --reasons german_credit")
    mv = ip.user_ns["mv"]
    assert isinstance(mv, views.ModelVersion)
    assert (mv.ref, mv.status, mv.template) == ("credit-risk:1", "staging", "credit_scoring")
    inventory = nexml(ip, "models")
    assert isinstance(inventory, pd.DataFrame)
    assert inventory.loc[0, ["latest", "status"]].tolist() == ["credit-risk:1", "staging"]
    rendered(nexml(ip, "show credit-risk:1"), "model_card", views.ModelVersion)
    rendered(nexml(ip, "compliance mv"), "compliance_form", ComplianceRecord)
    record = stack.dana.compliance(mv.ref)
    for section, fields in demo_compliance().items():
        record.set(section, fields)

    ip.run_cell("val = %nexml validate mv --data holdout --now")
    val = ip.user_ns["val"]
    assert isinstance(val, views.Validation)
    assert (val.ref, val.dataset, val.run_by) == ("credit-risk:1", "credit-holdout:1",
                                                  "nexml-platform")
    ip.user_ns["few"] = stack.dana.load_dataset(holdout.ref).head(3)
    rendered(nexml(ip, "explain credit-risk:1 --data few --row 2"), "explanation_view",
             Explanation)
    rendered(nexml(ip, "fairness credit-risk:1 --data credit-holdout:1"), "fairness_view",
             FairnessReport)
    rendered(nexml(ip, "drift mv --data few"), "drift_view", DriftReport)
    jobs = nexml(ip, "jobs")
    assert isinstance(jobs, pd.DataFrame)
    assert list(jobs["kind"]) == ["drift", "fairness", "explain", "training"]
    assert list(nexml(ip, "jobs --kind training --limit 1")["id"]) == [job.id]
    rendered(nexml(ip, "jobs --view"), "jobs_view", pd.DataFrame)
    capsys.readouterr()

    # the author may not approve: the Workspace refuses, the magic says so in one line
    assert ip.run_cell(f'a = %nexml approve mv --findings "{FINDINGS}"').success
    assert ip.user_ns["a"] is None
    assert one_error(capsys) == (
        "error: permission denied: data_scientist dana may not approve credit-risk:1"
    )

    connect(ip, stack, "mark")
    ip.run_cell(f'a = %nexml approve credit-risk:1 --findings "{FINDINGS}"')
    approval = ip.user_ns["a"]
    assert isinstance(approval, views.Approval)
    assert (approval.decision, approval.approver) == ("approved", "mark")
    assert approval.findings == FINDINGS  # quotes honoured, $ and {} kept as typed
    deployment = nexml(ip, "deploy mv --name credit --size medium")
    assert isinstance(deployment, views.Deployment)
    assert (deployment.model_ref, deployment.size, deployment.status) == (
        "credit-risk:1", "medium", "active")
    assert nexml(ip, "models").loc[0, "deployed"] == "credit"

    connect(ip, stack, "cora")
    verified = nexml(ip, "audit verify")
    assert isinstance(verified, AuditVerification) and verified.ok
    log = nexml(ip, "audit log --object credit-risk --actor mark")
    assert isinstance(log, pd.DataFrame)
    assert list(log["action"]) == ["model.approve"]
    assert log.loc[0, "data"]["findings"] == FINDINGS
    assert len(nexml(ip, "audit log --limit 3")) == 3
    assert capsys.readouterr().err == ""


def test_views_fall_back_to_the_plain_object_without_the_widgets_module(monkeypatch):
    import nexml_ext.jupyter as package

    monkeypatch.delattr(package, "widgets", raising=False)
    monkeypatch.setitem(sys.modules, "nexml_ext.jupyter.widgets", None)
    plain = object()
    assert view("model_card", "ws", "credit-risk:1", fallback=plain) is plain


# --- refusals: one line each, None returned ---------------------------------------------------


@pytest.fixture
def staged(stack, fresh_artifact, german):
    """A staging version by dana, trained on a registered dataset (no AutoML needed)."""
    data = stack.dana.register_dataset(german.head(100), "credit")
    return stack.dana.register_model(
        fresh_artifact(), "credit-risk", template="credit_scoring", datasets=[data.ref]
    )


def test_refusals_print_one_line_and_return_none(ip, stack, staged, capsys):
    connect(ip, stack, "dana")
    capsys.readouterr()
    ref = staged.ref
    refusals = {
        f"approve {ref} --findings 'Looks fine to me, I wrote it myself.'":
            f"error: permission denied: data_scientist dana may not approve {ref}",
        "show credit-risk":
            "error: malformed model reference 'credit-risk': expected NAME:VERSION, "
            "e.g. credit-risk:3",
        f"explain {ref} --data nosuchframe":
            "error: --data nosuchframe: no notebook variable named 'nosuchframe', and it is "
            "not a dataset reference NAME:VERSION",
        f"validate {ref} --data frame":
            "error: --data frame: a DataFrame is not a registered dataset version (register "
            "it first: %nexml ingest VAR --name NAME)",
        "ingest nosuchframe --name credit":
            "error: SOURCE nosuchframe: no notebook variable or file named 'nosuchframe'",
        "leaderboard":
            "error: no training run in this session yet: run %nexml train first, or name a "
            "variable holding a run",
        "register frame --model credit-risk":
            "error: RUN frame: a DataFrame is not a training run",
        "route main":
            "error: %%nexml route main: write the route as YAML in the cell body (rules, "
            "default, canary, shadow)",
        "audit find --subject 42":
            "error: permission denied: data_scientist dana may not read prediction records",
        f"approve {ref}":
            "error: %nexml approve: the following arguments are required: --findings "
            "(see %nexml approve --help)",
        "deploy credit-risk:1 --name x --size huge": None,
        "frobnicate": "error: unknown subcommand 'frobnicate' (see %nexml --help)",
        "audit rewrite": "error: unknown subcommand 'audit rewrite' (see %nexml audit --help)",
        "approve x:1 --findings 'unclosed": "error: cannot read the line: No closing quotation",
        "--verbose whoami": None,
    }
    ip.user_ns["frame"] = pd.DataFrame({"a": [1]})
    for line, expected in refusals.items():
        assert nexml(ip, line) is None, line
        message = one_error(capsys)
        if expected is not None:
            assert message == expected, line

    # the route body is YAML in a %%nexml cell; configuring routes is a manager's action
    result = ip.run_cell("%%nexml route main\nrules: []\ndefault: credit\n")
    assert result.success and result.result is None
    assert one_error(capsys).startswith("error: permission denied: data_scientist dana may not")
    ip.run_cell("%%nexml whoami\nbody: ignored?\n")
    assert one_error(capsys) == "error: %%nexml whoami takes no cell body; use %nexml whoami ..."

    # managers in notebooks meet the same rules: no approval before a platform validation
    connect(ip, stack, "mark")
    capsys.readouterr()
    assert nexml(ip, f"approve {ref} --findings 'Reviewed; validation still missing.'") is None
    assert one_error(capsys).startswith(f"error: cannot approve {ref}: no platform validation")
    rejected = nexml(ip, f'reject {ref} --findings "Holdout AUC below the floor; retrain."')
    assert isinstance(rejected, views.Approval) and rejected.decision == "rejected"
    nexml(ip, f"reject {ref} --findings 'A second decision on the same version.'")
    assert one_error(capsys).startswith("error: ")

    # an identity that cannot be authenticated is refused in one line; the old one stays
    ip.user_ns["token"] = "nxm_0123456789abcdef_" + "x" * 43
    where = f"--home {shlex.quote(str(stack.settings.home))} " \
            f"--database-url {shlex.quote(stack.settings.database_url)}"
    assert nexml(ip, f"connect --token token {where}") is None
    assert one_error(capsys) == "error: token refused: unknown token"
    assert nexml(ip, "whoami").name == "mark"


def test_unexpected_failure_is_one_line_pointing_at_debug(ip, stack, capsys, monkeypatch):
    ws = connect(ip, stack, "dana")
    capsys.readouterr()
    monkeypatch.setattr(ws, "models", lambda: 1 / 0)
    assert nexml(ip, "models") is None
    assert one_error(capsys) == (
        "internal error: ZeroDivisionError: division by zero "
        "(rerun with %nexml --debug models … to see the traceback)"
    )
    with pytest.raises(ZeroDivisionError):
        nexml(ip, "--debug models")


def test_debug_raises_instead(ip, stack, staged, capsys):
    connect(ip, stack, "dana")
    line = f"approve {staged.ref} --findings 'Approving my own work here.'"
    with pytest.raises(PermissionDenied, match="data_scientist dana may not approve"):
        nexml(ip, f"--debug {line}")
    with pytest.raises(PermissionDenied):
        nexml(ip, f"{line} --debug")
    result = ip.run_cell(f"%nexml --debug {line}")  # in a cell: the traceback is shown
    assert isinstance(result.error_in_exec, PermissionDenied)
    capsys.readouterr()
    ip.run_line_magic("config", "NexmlMagics.debug = True")
    with pytest.raises(InvalidInput, match="malformed model reference"):
        nexml(ip, "show credit-risk")


def test_connect_defaults_to_environment_and_options(ip, stack, monkeypatch):
    settings = stack.settings
    monkeypatch.setenv("NEXML_TOKEN", stack.tokens["mark"])
    monkeypatch.setenv("NEXML_HOME", str(settings.home))
    monkeypatch.setenv("NEXML_DATABASE_URL", settings.database_url)
    assert nexml(ip, "whoami").name == "mark"  # first use connects from the environment
    monkeypatch.delenv("NEXML_HOME")
    monkeypatch.delenv("NEXML_DATABASE_URL")
    ip.run_line_magic("config", f"NexmlMagics.home = {str(settings.home)!r}")
    ip.run_line_magic("config", f"NexmlMagics.database_url = {settings.database_url!r}")
    ws = nexml(ip, "connect")
    assert isinstance(ws, Workspace) and ws.principal.name == "mark"
    literal = f"connect --token {stack.tokens['cora']}"
    assert nexml(ip, literal).principal.name == "cora"
    assert nexml(ip, "whoami").name == "cora"
