"""Running the gateway: one listening socket, N uvicorn processes, a supervising parent.

Why not uvicorn's ``--workers``: its supervisor binds the listener with ``socket(AF_INET)``, so
the socket's ``proto`` is 0; accepted sockets inherit it, asyncio turns ``TCP_NODELAY`` on only
for ``proto == IPPROTO_TCP``, and every keep-alive request after the first then waits ~40 ms for
the client's delayed ACK (uvicorn issue 3149). :func:`bind_listener` creates the socket with
``IPPROTO_TCP`` explicitly, and each child runs ``uvicorn.Server(config).run(sockets=[sock])``.

Children are started with the ``spawn`` method: each is a fresh interpreter that opens its own
Workspace (its own database engine, decision-log committer thread and model cache), so no
connection or thread is ever shared across a fork. The database serialises the chains, so
several committers append safely. The parent only supervises: a child that dies is logged and
replaced (with a back-off when it dies before serving; repeated failed starts stop the server
with an error), and SIGTERM or SIGINT stops every child gracefully (SIGKILL after a grace
period).

Prometheus ``/metrics`` covers the whole gateway: the parent makes a fresh directory for the
children's metric files (``PROMETHEUS_MULTIPROC_DIR``, set before they start, so prometheus_client
in each keeps its values there), any child answers a scrape with the sums over all of them
(api/metrics.py), the parent marks a dead child's live gauges gone, and removes the directory
when it stops.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import multiprocess
from uvicorn.config import LOGGING_CONFIG

from ..config import Settings
from ..deploy import sizes
from ..errors import InvalidInput, NexmlError
from .metrics import SHARED_DIR_ENV

log = logging.getLogger("uvicorn.error")  # the stream operators already read

#: Response header naming the process that answered (which child served a request).
PROCESS_HEADER = "X-Nexml-Process"
#: Seconds uvicorn gives open requests to finish on shutdown, and the parent's wait beyond it.
GRACEFUL_SECONDS = 20
KILL_AFTER_SECONDS = GRACEFUL_SECONDS + 10
#: A slot whose process dies this many times in a row before serving stops the server.
MAX_FAILED_STARTS = 3
#: Both spellings prometheus_client reads; the children get only the parent's own directory.
_METRICS_ENV = (SHARED_DIR_ENV, SHARED_DIR_ENV.lower())


@dataclass(frozen=True)
class Plan:
    """How the gateway runs: processes, per-process concurrency, and why (the size)."""

    processes: int
    concurrency: int
    size: str  # the size the defaults came from

    def describe(self) -> str:
        noun = "process" if self.processes == 1 else "processes"
        return (
            f"{self.processes} {noun}, up to {self.concurrency} concurrent connections each "
            f"(size {self.size})"
        )


def plan(
    deployment_sizes: Iterable[str], processes: int | None = None, concurrency: int | None = None
) -> Plan:
    """The largest size among ``deployment_sizes`` (those of the active deployments), with
    ``processes`` and ``concurrency`` overriding it when given."""
    size = sizes.largest(deployment_sizes)
    if processes is not None and processes < 1:
        raise InvalidInput(f"--processes must be at least 1, got {processes}")
    if concurrency is not None and concurrency < 1:
        raise InvalidInput(f"--concurrency must be at least 1, got {concurrency}")
    return Plan(processes or size.processes, concurrency or size.concurrency, size.name)


def plan_for(workspace: Any, processes: int | None = None, concurrency: int | None = None) -> Plan:
    """:func:`plan` over the workspace's active deployments."""
    active = [d.size for d in workspace.deployments() if d.status == "active"]
    return plan(active, processes, concurrency)


def bind_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` whose accepted connections get TCP_NODELAY.

    The socket is created with ``IPPROTO_TCP`` (not 0), which is what asyncio checks before
    setting TCP_NODELAY on each accepted connection. It is inheritable, for child processes.
    Raises InvalidInput when the address cannot be resolved or bound.
    """
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a listening socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ProcessHeader:
    """ASGI wrapper adding ``X-Nexml-Process: <pid>`` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._value = str(os.getpid()).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_pid(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((PROCESS_HEADER.lower().encode(), self._value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_pid)


@dataclass(frozen=True)
class _Options:
    concurrency: int
    max_body_bytes: int
    log_level: str = "info"


def serve(
    workspace: Any,
    chosen: Plan,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body_bytes: int,
    log_level: str = "info",
) -> None:
    """Serve ``workspace``'s deployments on ``host``:``port`` as ``chosen`` says, until SIGTERM
    or SIGINT. With one process it serves in this process with ``workspace``; with more, the
    workspace is closed and each child opens its own from ``workspace.settings``."""
    options = _Options(chosen.concurrency, max_body_bytes, log_level)
    sock = bind_listener(host, port)
    try:
        if chosen.processes == 1:
            with _exit_on_signals():
                _serve_here(workspace, sock, options, on_started=None)
            return
        workspace.close()  # the children open their own; nothing of ours crosses into them
        logging.config.dictConfig(LOGGING_CONFIG)
        _log_running(sock)
        Supervisor(workspace.settings, sock, options, chosen.processes).run()
    finally:
        sock.close()


# --- one serving process -----------------------------------------------------------------------


class _ReportingServer(uvicorn.Server):
    """``uvicorn.Server`` that calls ``on_started`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()


def _serve_here(
    workspace: Any,
    sock: socket.socket,
    options: _Options,
    on_started: Callable[[], None] | None,
) -> None:
    from . import create_app

    app = ProcessHeader(create_app(workspace, max_body_bytes=options.max_body_bytes))
    config = uvicorn.Config(
        app,
        log_level=options.log_level,
        limit_concurrency=options.concurrency,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    if on_started is None:  # the one process: say where it listens, as uvicorn would
        _log_running(sock)
    _ReportingServer(config, on_started).run(sockets=[sock])


def _log_running(sock: socket.socket) -> None:
    log.info("Uvicorn running on %s (Press CTRL+C to quit)", url_of(sock))


def _watch_parent(parent: int) -> None:
    """Stop this child gracefully if its parent disappears (killed with SIGKILL, say), so no
    orphan keeps holding the port after the server is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("Parent process [%d] is gone; child process [%d] stops", parent, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)


def _leave(signum: int, frame: Any) -> None:
    raise SystemExit(0)


@contextlib.contextmanager
def _exit_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end the process with status 0. uvicorn handles them while it serves
    and re-raises the one that stopped it after its graceful shutdown; this makes that (or a
    signal during start-up) a clean exit that still runs every ``finally``."""
    previous = {sig: signal.signal(sig, _leave) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _child(
    settings: Settings, sock: socket.socket, options: _Options, started: Any, parent: int
) -> None:
    """A child's whole life: its own Workspace, one uvicorn server on the shared socket.
    ``parent`` is the supervisor's pid, passed in: a parent killed while this child was still
    starting is then noticed too (``os.getppid()`` here would already name the reaper)."""
    # The parent coordinates shutdown: a terminal's Ctrl-C reaches the whole process group and
    # the parent's SIGTERM follows, so a child ignores SIGINT until uvicorn takes over.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _leave)
    logging.config.dictConfig(LOGGING_CONFIG)
    threading.Thread(
        target=_watch_parent, args=(parent,), name="nexml-parent-watch", daemon=True
    ).start()
    from ..workspace import Workspace

    try:
        workspace = Workspace.open(settings)
    except NexmlError as exc:
        log.error("Child process [%d] cannot open the store: %s", os.getpid(), exc)
        raise SystemExit(1) from None
    try:
        _serve_here(workspace, sock, options, on_started=started.set)
    finally:
        workspace.close()


# --- the supervising parent --------------------------------------------------------------------


@dataclass
class _Slot:
    index: int
    process: Any = None
    started: Any = None
    failed_starts: int = 0
    launched_at: float = field(default_factory=time.monotonic)


class Supervisor:
    """Keeps ``count`` child processes serving ``sock`` until SIGTERM or SIGINT."""

    def __init__(
        self, settings: Settings, sock: socket.socket, options: _Options, count: int
    ) -> None:
        self._settings = settings
        self._sock = sock
        self._options = options
        self._count = count
        self._spawn = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i) for i in range(count)]
        self._stopping: int | None = None
        self._metrics_dir = ""  # made by run()

    def run(self) -> None:
        """Start the children and keep them running; returns after a clean stop. Raises
        NexmlError when a child keeps dying before it serves (after stopping the rest), or
        when no directory for the children's metrics can be made."""
        with _shared_metrics_dir() as self._metrics_dir:
            previous = {
                sig: signal.signal(sig, self._on_signal)
                for sig in (signal.SIGTERM, signal.SIGINT)
            }
            log.info("Started parent process [%d]", os.getpid())
            try:
                for slot in self._slots:
                    self._launch(slot)
                while self._stopping is None:
                    multiprocessing.connection.wait(
                        [slot.process.sentinel for slot in self._slots], timeout=0.5
                    )
                    for slot in self._slots:
                        if self._stopping is None and not slot.process.is_alive():
                            self._replace(slot)
            finally:
                self._stop_all()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        log.info("Stopping parent process [%d]", os.getpid())

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stopping = signum

    def _launch(self, slot: _Slot) -> None:
        slot.started = self._spawn.Event()
        slot.process = self._spawn.Process(
            target=_child,
            args=(self._settings, self._sock, self._options, slot.started, os.getpid()),
            name=f"nexml-server-{slot.index}",
        )
        slot.launched_at = time.monotonic()
        slot.process.start()
        log.info("Started child process %d [%d]", slot.index, slot.process.pid)

    def _replace(self, slot: _Slot) -> None:
        # Its live gauges leave the sums; its counters stay in them.
        multiprocess.mark_process_dead(slot.process.pid, self._metrics_dir)
        code = slot.process.exitcode
        served = slot.started.is_set()
        slot.failed_starts = 0 if served else slot.failed_starts + 1
        how = _describe_exit(code)
        if slot.failed_starts >= MAX_FAILED_STARTS:
            raise NexmlError(
                f"server process {slot.index} {how} before serving, {slot.failed_starts} times "
                "in a row; stopped (see the log above)"
            )
        delay = 0.0 if served else min(0.5 * 2**slot.failed_starts, 10.0)
        log.warning(
            "Child process %d [%d] %s%s; restarting it%s",
            slot.index,
            slot.process.pid,
            how,
            "" if served else " before serving",
            f" in {delay:.1f}s" if delay else "",
        )
        slot.process.close()
        deadline = time.monotonic() + delay
        while self._stopping is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._stopping is None:
            self._launch(slot)

    def _stop_all(self) -> None:
        running = [s for s in self._slots if s.process is not None and _alive(s.process)]
        for slot in running:
            log.info("Stopping child process %d [%d]", slot.index, slot.process.pid)
            slot.process.terminate()
        deadline = time.monotonic() + KILL_AFTER_SECONDS
        for slot in running:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.exitcode is None:
                log.warning(
                    "Child process %d [%d] did not stop in %ds; killing it",
                    slot.index, slot.process.pid, KILL_AFTER_SECONDS,
                )
                slot.process.kill()
                slot.process.join()


@contextlib.contextmanager
def _shared_metrics_dir() -> Iterator[str]:
    """A fresh directory named in this process's environment (which children inherit when they
    start) as the one their metrics are kept in; the environment is restored and the directory
    removed afterwards."""
    try:
        path = tempfile.mkdtemp(prefix="nexml-metrics-")
    except OSError as exc:
        raise NexmlError(
            f"cannot make a directory for the server's metrics in {tempfile.gettempdir()}: "
            f"{exc.strerror or exc} (set TMPDIR to a writable directory)"
        ) from None
    before = {name: os.environ.pop(name, None) for name in _METRICS_ENV}
    os.environ[SHARED_DIR_ENV] = path
    try:
        yield path
    finally:
        for name, value in before.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        shutil.rmtree(path, ignore_errors=True)


def _alive(process: Any) -> bool:
    try:
        return process.is_alive()
    except ValueError:  # already closed
        return False


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
