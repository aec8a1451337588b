"""`show(name)`, the dashboards' one entry point, in a real kernel (nbclient), with a tiny
dashboard registered by the notebook itself. What each call displayed is read back from the
executed notebook: its outputs and the widget state nbclient stores."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from nexml_ext.errors import InvalidInput
from nexml_ext.jupyter.dashboards import REGISTRY, register, title_of
from tests.dashboards.conftest import tiny_notebooks

BAD_TOKEN = "nxm_0123456789abcdef_" + "A" * 43


def _widget_texts(nb) -> list[str]:  # type: ignore[no-untyped-def]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [m["state"].get("value", "") for m in state.values()
            if m["model_name"] == "HTMLModel"]


def _shown_ids(cell) -> list[str]:  # type: ignore[no-untyped-def]
    return [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for o in cell.outputs if o.get("output_type") == "display_data"]


def test_show_displays_the_dashboard_as_the_token_holder_or_one_sentence(people,
                                                                          tmp_path):
    folder = tiny_notebooks(tmp_path / "nb")
    settings = people.settings
    env = (f"import os\nos.environ.update(NEXML_HOME={str(settings.home)!r}, "
           f"NEXML_DATABASE_URL={settings.database_url!r}, "
           f"NEXML_ARTIFACT_ROOT={str(settings.artifact_root)!r})\n"
           "from nexml_ext.jupyter.dashboards import register, show\n"
           "register('tiny', 'Tiny', 'tiny_dashboards:WhoAmI')\n"
           "register('missing', 'Missing', 'no_such_module_here:Nothing')\n")
    cells = [
        env,
        f"os.environ['NEXML_TOKEN'] = {BAD_TOKEN!r}\nshow('tiny')",
        f"os.environ['NEXML_TOKEN'] = {people.tokens['mark']!r}\nshow('tiny')",
        "show('nope')",
        "show('missing')",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(folder)}}).execute()

    for cell in nb.cells:
        assert not [o for o in cell.outputs if o["output_type"] == "error"], cell.outputs
    texts = _widget_texts(nb)
    refused = [t for t in texts if "cannot open" in t]
    assert refused == ['<p class="nexml-dashboard-message">The Tiny dashboard cannot open: '
                       "token refused: unknown token.</p>"]
    assert "<p>principal: mark (manager)</p>" in texts
    # One display per call: show() returns None, so nothing is shown twice.
    assert [len(_shown_ids(nb.cells[i])) for i in range(1, 5)] == [1, 1, 1, 1]
    stream = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert stream == "acting as mark (manager)\n"
    assert any("There is no dashboard called &#x27;nope&#x27;." in t for t in texts)
    assert any("The Missing dashboard is not installed (no_such_module_here:Nothing)." in t
               for t in texts)


def test_the_registry_names_the_five_dashboards_and_refuses_bad_names():
    assert {n: d.target for n, d in REGISTRY.items()}.items() >= {
        "approvals": "nexml_ext.jupyter.widgets.approvals:ApprovalsDashboard",
        "audit_trail": "nexml_ext.jupyter.widgets.audit_trail:AuditTrailDashboard",
        "platform_summary": "nexml_ext.jupyter.widgets.platform_summary:PlatformSummaryDashboard",
        "compliance": "nexml_ext.jupyter.widgets.compliance_dashboard:ComplianceDashboard",
        "monitoring": "nexml_ext.jupyter.widgets.monitoring_dashboard:MonitoringDashboard",
    }.items()
    assert title_of("platform_summary") == "Platform summary"
    assert title_of("made_up") == "Made up"
    with pytest.raises(InvalidInput, match="dashboard name '../x' refused"):
        register("../x", "X", "m:C")
    with pytest.raises(InvalidInput, match="expected 'module:Class'"):
        register("x", "X", "no_colon")


def test_each_installed_dashboard_notebook_follows_the_contract():
    from nexml_ext.jupyter.dashboards.paths import catalog, widgets_dir

    notebooks = catalog(widgets_dir())
    assert notebooks, "no dashboard notebooks in widgets/"
    for name, path in notebooks.items():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), name
        assert len(code) == 1, name
        assert code[0].source.strip() == (
            f'from nexml_ext.jupyter.dashboards import show\nshow("{name}")'), name
        assert name in REGISTRY, name


def test_installed_notebooks_are_found_when_there_is_no_source_tree(tmp_path, monkeypatch):
    from nexml_ext.errors import NotFound
    from nexml_ext.jupyter.dashboards import paths

    monkeypatch.setattr(paths, "_SOURCE", tmp_path / "no-checkout")
    monkeypatch.setattr(paths, "_prefixes", lambda: [tmp_path / "prefix"])
    with pytest.raises(NotFound, match="no dashboard notebooks found"):
        paths.widgets_dir()
    installed = tmp_path / "prefix" / "share" / "nexml-ext" / "widgets"
    installed.mkdir(parents=True)
    for name in ("approvals.ipynb", "Bad-Name.ipynb", "notes.txt"):
        (installed / name).write_text("{}")
    assert paths.widgets_dir() == installed
    assert list(paths.catalog()) == ["approvals"]  # only plain names, only notebooks
