"""Run a report template with papermill in a fresh kernel whose environment the caller sets.

The environment is the only channel for the store's location and the run's grant: parameters
hold ids only, and they are written into the executed notebook, which is stored as evidence.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import nbformat

from ..errors import ReportFailed

KERNEL = "python3"
#: The cell tag of the template's last cell, which displays the machine-readable summary.
SUMMARY_TAG = "nexml-summary"
SUMMARY_MIME = "application/vnd.nexml.summary+json"
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def _kernel_manager_class(env: dict[str, str]) -> type:
    """An AsyncKernelManager that starts (and restarts) its kernel with exactly ``env``."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ReportKernelManager(AsyncKernelManager):
        @default("transport")
        def _ipc_transport(self) -> str:
            # Unix sockets in the run's private folder: no TCP port another process could reach.
            return "ipc"

        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["env"] = dict(env)
            await super().start_kernel(**kw)

    return ReportKernelManager


def kernel_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any NEXML_ variable (no token reaches the kernel),
    with the package this process runs first on the path, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_PARENT + (os.pathsep + path if path else "")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.update(extra)
    return env


def run_notebook(
    template: Path,
    parameters: dict[str, Any],
    env: dict[str, str],
    *,
    timeout: int,
) -> nbformat.NotebookNode:
    """Execute ``template`` with ``parameters`` in a fresh ``python3`` kernel started with
    ``env``; returns the executed notebook. Raises ReportFailed naming the failing cell's
    error (the partly executed notebook is on the exception as ``notebook``)."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    with tempfile.TemporaryDirectory(prefix="nexml-report-") as work:
        output = Path(work) / "executed.ipynb"
        logging.getLogger("papermill").setLevel(logging.WARNING)
        try:
            papermill.execute_notebook(
                str(template),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL,
                progress_bar=False,
                log_output=False,
                cwd=work,
                execution_timeout=timeout,
                request_save_on_cell_execute=False,
                kernel_manager_class=_kernel_manager_class(env),
            )
        except PapermillExecutionError as exc:
            failed = ReportFailed(
                f"report template {template.name} failed in cell {exc.exec_count}: "
                f"{exc.ename}: {exc.evalue}"
            )
            failed.notebook = nbformat.read(output, as_version=4) if output.exists() else None
            raise failed from None
        except CellTimeoutError:
            raise ReportFailed(
                f"report template {template.name} did not finish a cell within the run's time "
                f"limit of {timeout} s"
            ) from None
        except DeadKernelError as exc:
            raise ReportFailed(
                f"report template {template.name}: the kernel died while running ({exc})"
            ) from None
        return nbformat.read(output, as_version=4)


def summary_of(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The machine-readable summary the template's tagged last cell displayed ({} if none)."""
    for cell in nb.cells:
        if SUMMARY_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if SUMMARY_MIME in data:
                return dict(data[SUMMARY_MIME])
    return {}
