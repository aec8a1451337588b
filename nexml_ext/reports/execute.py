"""Run a report template with papermill in a fresh kernel whose environment the caller sets.

The environment is the only channel for the store's location and the run's grant: parameters
hold ids only, and they are written into the executed notebook, which is stored as evidence.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from ..errors import ReportFailed

KERNEL = "python3"
#: The cell tag of the template's last cell, which displays the machine-readable summary.
SUMMARY_TAG = "nexml-summary"
SUMMARY_MIME = "application/vnd.nexml.summary+json"
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
#: Seconds between two calls of a run's ``checkpoint`` while the template runs.
CHECK_EVERY = 1.0


class _Stop:
    """Stops a run when its ``checkpoint`` raises: a thread calls it every ``CHECK_EVERY``
    seconds while papermill works; once it raised, the run's kernels are killed (with their
    process group: a kernel starts its own session) and no kernel of the run starts again."""

    def __init__(self, checkpoint: Callable[[], None] | None) -> None:
        self._checkpoint = checkpoint
        self.reason: BaseException | None = None
        self._managers: list[Any] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Stop:
        if self._checkpoint is not None:
            self._thread = threading.Thread(target=self._watch, name="nexml-report-stop")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def finish(self) -> None:
        """No more checks: what ``reason`` says now is the verdict."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def starting(self, manager: Any) -> None:
        """A kernel of the run is about to start: refused once the run is stopped."""
        with self._lock:
            if self.reason is not None:
                raise RuntimeError("the report run was stopped")
            self._managers.append(manager)

    def _watch(self) -> None:
        assert self._checkpoint is not None
        while not self._done.wait(CHECK_EVERY):
            if self.reason is None:
                try:
                    self._checkpoint()
                except BaseException as exc:  # noqa: BLE001 - the run stops for any reason
                    with self._lock:
                        self.reason = exc
            if self.reason is not None:  # again each time: one may have been starting
                with self._lock:
                    managers = list(self._managers)
                for manager in managers:
                    _kill(manager)


def _kill(manager: Any) -> None:
    provisioner = getattr(manager, "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is None or process.poll() is not None:
        return
    group = getattr(provisioner, "pgid", None)
    try:
        if group is not None and group != os.getpgid(0):  # the kernel's own group, never ours
            os.killpg(group, signal.SIGKILL)
        else:
            process.kill()
    except OSError:  # gone meanwhile
        pass


def _kernel_manager_class(env: dict[str, str], stop: _Stop) -> type:
    """An AsyncKernelManager that starts (and restarts) its kernel with exactly ``env``, unless
    the run was stopped."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ReportKernelManager(AsyncKernelManager):
        @default("transport")
        def _ipc_transport(self) -> str:
            # Unix sockets in the run's private folder: no TCP port another process could reach.
            return "ipc"

        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            stop.starting(self)
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
    checkpoint: Callable[[], None] | None = None,
) -> nbformat.NotebookNode:
    """Execute ``template`` with ``parameters`` in a fresh ``python3`` kernel started with
    ``env``; returns the executed notebook. Raises ReportFailed naming the failing cell's
    error (the partly executed notebook is on the exception as ``notebook``).

    ``checkpoint`` (a job's cancel check) is called every ``CHECK_EVERY`` seconds while the
    template runs; when it raises, the kernel is killed and its exception ends the run, even
    one that had just finished."""
    import papermill

    with tempfile.TemporaryDirectory(prefix="nexml-report-") as work, _Stop(checkpoint) as stop:
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
                kernel_manager_class=_kernel_manager_class(env, stop),
            )
        except BaseException as exc:
            stop.finish()
            if stop.reason is not None:  # whatever the killed kernel made papermill say
                raise stop.reason from None
            failed = _failure(template, output, timeout, exc)
            if failed is None:
                raise
            raise failed from None
        stop.finish()
        if stop.reason is not None:
            raise stop.reason
        return nbformat.read(output, as_version=4)


def _failure(template: Path, output: Path, timeout: int, exc: BaseException) -> Exception | None:
    """The ReportFailed that papermill's ``exc`` means, or None when it means none."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        failed = ReportFailed(
            f"report template {template.name} failed in cell {exc.exec_count}: "
            f"{exc.ename}: {exc.evalue}"
        )
        failed.notebook = nbformat.read(output, as_version=4) if output.exists() else None
        return failed
    if isinstance(exc, CellTimeoutError):
        return ReportFailed(
            f"report template {template.name} did not finish a cell within the run's time "
            f"limit of {timeout} s"
        )
    if isinstance(exc, DeadKernelError):
        return ReportFailed(
            f"report template {template.name}: the kernel died while running ({exc})"
        )
    return None


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
