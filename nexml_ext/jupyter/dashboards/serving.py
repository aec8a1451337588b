"""Serving the dashboards: ``nexml dashboards`` (a locked-down Voila app) and the handlers the
JupyterLab server extension shares with it.

Standalone (:class:`DashboardsApp`, a :class:`voila.app.Voila`):

- A person signs in at ``/login`` with their nexml token. It is checked against the store, and a
  short-lived *session token* is minted for them (``create_token(label="dashboard session")``,
  an audited event) and kept in an httponly, signed, SameSite=Strict cookie.
  :class:`SessionIdentityProvider` authenticates every request from that cookie against the
  store, so a revoked or expired session stops working at once. ``/logout`` revokes it and shuts
  the person's kernels down.
- ``/`` lists the dashboards; ``/dashboards/<name>`` renders ``<name>.ipynb`` through Voila's
  handler in a fresh kernel (never preheated) whose environment carries the person's session
  token as ``NEXML_TOKEN`` and the store's location — set by the server, never from a request.
- Lockdown: :class:`LockedKernelConnection` forwards only the widget messages a dashboard page
  sends (comm_open/msg/close, comm_info_request, kernel_info_request, on the shell channel) and
  drops everything else, execute_request above all; :class:`KernelOwnerAuthorizer` lets a person
  reach only the kernels started for them. Voila's directory tree, contents API and file
  handler are not mounted, and template/theme overrides from the URL are off.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyter_core.utils import ensure_async
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Type
from voila.app import Voila
from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler
from voila.tornado.contentshandler import VoilaContentsHandler
from voila.tornado.handler import TornadoVoilaHandler
from voila.tornado.treehandler import TornadoVoilaTreeHandler

from ...config import Settings
from ...errors import NexmlError
from ...store.database import Database
from . import title_of
from .paths import catalog

SESSION_COOKIE = "nexml-dashboards"
SESSION_LABEL = "dashboard session"
#: What a dashboard page needs to send its kernel; every other message is dropped.
ALLOWED_MESSAGES = frozenset(
    {"comm_open", "comm_msg", "comm_close", "comm_info_request", "kernel_info_request"}
)
STATE = "nexml_dashboards"  # the tornado settings key of the server's DashboardsState
#: Our index.html.j2 (Voila's lab template less its CDN stylesheets), searched before Voila's.
TEMPLATE_DIR = Path(__file__).resolve().parent / "voila_template"

PAGE_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;"
    "color:#1d2733}h1{font-size:1.5rem}a{color:#0b5cad}ul{line-height:2}"
    ".nexml-refused{background:#fde2e1;padding:.5rem .75rem;border-radius:4px}"
    "input[type=password]{width:100%;padding:.4rem;font-family:monospace}"
    "button{margin-top:.75rem;padding:.4rem 1rem}"
)


class DashboardsState:
    """What the handlers share: the store, the dashboards and who owns which kernel."""

    def __init__(self, settings: Settings, folder: Path, session_hours: float) -> None:
        self.settings = settings
        self.folder = folder
        self.session_hours = session_hours
        self.db = Database(settings.database_url)
        self.owners: dict[str, str] = {}  # kernel id -> user name

    def dashboards(self) -> dict[str, Path]:
        return catalog(self.folder)

    def kernel_env(self, session_token: str) -> dict[str, str]:
        return {
            "NEXML_TOKEN": session_token,
            "NEXML_HOME": str(self.settings.home),
            "NEXML_DATABASE_URL": self.settings.database_url,
            "NEXML_ARTIFACT_ROOT": str(self.settings.artifact_root),
        }


def _state(handler: web.RequestHandler) -> DashboardsState:
    return handler.settings[STATE]


def page(title: str, body: str) -> str:
    """A plain HTML page; ``title`` is escaped here, ``body`` must already be escaped."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>{html.escape(title)}</title><link rel="icon" href="data:,">'
        f"<style>{PAGE_CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


# ---------------------------------------------------------------------------------------------
# Identity: the session cookie
# ---------------------------------------------------------------------------------------------


class SessionIdentityProvider(IdentityProvider):
    """Every request is the person whose session token is in the signed cookie, checked against
    the store each time (a revoked, expired or disabled session is refused at once)."""

    @property
    def auth_enabled(self) -> bool:
        return True

    @property
    def login_available(self) -> bool:
        return True

    def get_handlers(self) -> list[tuple[str, object]]:
        return [(r"/login", LoginHandler), (r"/logout", LogoutHandler)]

    def get_cookie_name(self, handler: web.RequestHandler) -> str:
        return SESSION_COOKIE

    def session_token(self, handler: web.RequestHandler) -> str | None:
        raw = handler.get_signed_cookie(SESSION_COOKIE)
        return raw.decode() if raw else None

    def get_user(self, handler: web.RequestHandler) -> User | None:
        from ...workspace import authenticate

        token = self.session_token(handler)
        if not token:
            return None
        try:
            principal = authenticate(_state(handler).db, token)
        except NexmlError as exc:
            self.log.info("dashboard session refused: %s", exc)
            handler.clear_cookie(SESSION_COOKIE, path=handler.base_url)  # type: ignore[attr-defined]
            return None
        handler._nexml_session = token  # type: ignore[attr-defined]
        return User(
            username=principal.name,
            name=principal.name,
            display_name=f"{principal.name} ({principal.role.value})",
        )

    def set_session_cookie(self, handler: web.RequestHandler, token: str, hours: float) -> None:
        handler.set_signed_cookie(
            SESSION_COOKIE,
            token,
            expires_days=hours / 24,
            httponly=True,
            samesite="Strict",
            secure=handler.request.protocol == "https",
            path=handler.base_url,  # type: ignore[attr-defined]
        )

    def should_check_origin(self, handler: web.RequestHandler) -> bool:
        return True  # cookie-authenticated, always: websockets must come from our own pages

    def validate_security(self, app: Any, ssl_options: dict[str, Any] | None = None) -> None:
        return None


def _safe_next(handler: JupyterHandler, target: str | None) -> str:
    """Only a path on this server (no scheme, no host, no //) is followed after sign-in."""
    base = handler.base_url
    if not target:
        return base
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith(base) or target.startswith("//"):
        return base
    return target


class LoginHandler(JupyterHandler):
    """``/login``: a token in, a session cookie out."""

    def _form(self, message: str = "", status: int = 200) -> None:
        refused = (
            f'<p class="nexml-refused" role="alert">{html.escape(message)}</p>' if message else ""
        )
        nxt = html.escape(self.get_argument("next", ""), quote=True)
        body = (
            "<h1>nexml dashboards: sign in</h1>"
            "<p>Paste the nexml token you were given (<code>nxm_…</code>).</p>"
            f"{refused}"
            f'<form method="post" action="{html.escape(self.base_url)}login">'
            f"{self.xsrf_form_html()}"
            f'<input type="hidden" name="next" value="{nxt}">'
            '<label for="token">Token</label>'
            '<input id="token" name="token" type="password" autocomplete="off" required>'
            '<button type="submit" class="nexml-sign-in">Sign in</button></form>'
        )
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(page("Sign in — nexml dashboards", body))

    @allow_unauthenticated
    async def get(self) -> None:
        if self.current_user:
            self.redirect(_safe_next(self, self.get_argument("next", None)))
            return
        self._form()

    @allow_unauthenticated
    async def post(self) -> None:  # the xsrf form field is checked in prepare()
        from ...workspace import Workspace

        state = _state(self)
        token = self.get_body_argument("token", "").strip()
        try:
            ws = Workspace.open(state.settings, token)
            try:
                _, session = ws.create_token(
                    label=SESSION_LABEL, expires_in_days=state.session_hours / 24
                )
            finally:
                ws.close()
        except NexmlError as exc:
            self._form(f"Sign-in refused: {exc}.", status=403)
            return
        self.identity_provider.set_session_cookie(self, session, state.session_hours)
        self.redirect(_safe_next(self, self.get_body_argument("next", None)))



class LogoutHandler(JupyterHandler):
    """``/logout`` (POST): revoke the session token, shut the person's kernels down."""

    @web.authenticated
    async def post(self) -> None:
        from ...governance import tokens
        from ...workspace import Workspace

        state = _state(self)
        token = self._nexml_session  # type: ignore[attr-defined]
        user = self.current_user.username
        with Workspace.open(state.settings, token) as ws:
            ws.revoke_token(tokens.parse_token(token)[0])
        for kernel_id, owner in list(state.owners.items()):
            if owner == user:
                state.owners.pop(kernel_id, None)
                if kernel_id in self.kernel_manager:
                    await ensure_async(self.kernel_manager.shutdown_kernel(kernel_id))
        self.clear_cookie(SESSION_COOKIE, path=self.base_url)
        self.redirect(url_path_join(self.base_url, "login"))


# ---------------------------------------------------------------------------------------------
# Authorization: one's own kernels only
# ---------------------------------------------------------------------------------------------


class KernelOwnerAuthorizer(Authorizer):
    """Signed-in people may use the dashboards; a kernel only by the person it was started for."""

    def is_authorized(
        self, handler: JupyterHandler, user: User, action: str, resource: str
    ) -> bool:
        if user is None:
            return False
        if resource != "kernels":
            return True
        kernel_id = handler.path_kwargs.get("kernel_id") or getattr(handler, "kernel_id", None)
        return bool(kernel_id) and _state(handler).owners.get(kernel_id) == user.username


class OwnKernelShutdownHandler(VoilaShutdownKernelHandler):
    """Voila's page shuts its kernel down when it closes; only the owner may."""

    @web.authenticated
    async def post(self, kernel_id: str) -> None:
        if _state(self).owners.get(kernel_id) != self.current_user.username:
            raise web.HTTPError(403, "not your kernel")
        _state(self).owners.pop(kernel_id, None)
        await ensure_async(self.kernel_manager.shutdown_kernel(kernel_id))
        self.set_status(204)
        self.finish()


# ---------------------------------------------------------------------------------------------
# Lockdown: what the browser may send a kernel
# ---------------------------------------------------------------------------------------------


def message_route(ws_msg: str | bytes, subprotocol: str | None) -> tuple[str | None, str | None]:
    """(channel, msg_type) of a message from the browser; (None, None) if it cannot be read."""
    try:
        if subprotocol == "v1.kernel.websocket.jupyter.org":
            channel, parts = deserialize_msg_from_ws_v1(ws_msg)
            header = json.loads(parts[0])
        else:
            msg = (
                deserialize_binary_message(ws_msg)
                if isinstance(ws_msg, bytes)
                else json.loads(ws_msg)
            )
            channel, header = msg.get("channel"), msg.get("header")
        msg_type = header.get("msg_type") if isinstance(header, dict) else None
        return (channel or "shell"), msg_type
    except Exception:  # noqa: BLE001 - anything unreadable is dropped, never forwarded
        return None, None


class LockedKernelConnection(ZMQChannelsWebsocketConnection):
    """Forwards to the kernel only the shell messages widgets need; drops everything else."""

    def handle_incoming_message(self, incoming_msg: str) -> None:
        channel, msg_type = message_route(incoming_msg, self.subprotocol)
        if channel != "shell" or msg_type not in ALLOWED_MESSAGES:
            self.log.warning(
                "nexml dashboards: dropped a %r message on channel %r from the browser",
                msg_type,
                channel,
            )
            return
        super().handle_incoming_message(incoming_msg)


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------


class _KernelsForPerson:
    """The server's kernel manager, seen by one dashboard request: every kernel it starts gets
    ``env`` on top of the server's environment and is recorded as ``owner``'s."""

    def __init__(self, manager: Any, env: dict[str, str], owners: dict | None, owner: str) -> None:
        self._manager = manager
        self._env = env
        self._owners = owners
        self._owner = owner

    async def start_kernel(self, **kwargs: Any) -> str:
        env = {k: v for k, v in (kwargs.pop("env", None) or os.environ).items()}
        env.pop("NEXML_TOKEN", None)
        env.update(self._env)
        kernel_id = await ensure_async(self._manager.start_kernel(env=env, **kwargs))
        if self._owners is not None:
            self._owners[kernel_id] = self._owner
        return kernel_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


class DashboardHandler(TornadoVoilaHandler):
    """``<prefix>/<name>``: the dashboard notebook ``<name>.ipynb`` rendered by Voila."""

    def initialize(self, **kwargs: Any) -> None:
        self._folder_of = kwargs.pop("folder_of")
        super().initialize(**kwargs)

    @property
    def kernel_manager(self) -> Any:  # type: ignore[override]
        manager = self.settings["kernel_manager"]
        state = self.settings.get(STATE)
        if state is None:  # inside JupyterLab: the server's own identity and environment
            return manager
        return _KernelsForPerson(
            manager,
            state.kernel_env(self._nexml_session),  # type: ignore[attr-defined]
            state.owners,
            self.current_user.username,
        )

    @web.authenticated
    async def get(self, name: str) -> None:  # type: ignore[override]
        folder = self._folder_of(self)
        if name not in catalog(folder):
            raise web.HTTPError(404, f"no dashboard called {name!r}")
        await super().get(path=f"{name}.ipynb")


def index_body(handler: JupyterHandler, prefix: str, names: list[str]) -> str:
    items = "".join(
        f'<li><a class="nexml-dashboard-link" href="{html.escape(url_path_join(prefix, n))}">'
        f"{html.escape(title_of(n))}</a></li>"
        for n in names
    )
    return f"<ul>{items}</ul>" if items else "<p>No dashboards are installed.</p>"


class IndexHandler(JupyterHandler):
    """``/``: the dashboards, the person signed in, and a sign-out button."""

    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        names = list(_state(self).dashboards())
        body = (
            "<h1>nexml dashboards</h1>"
            f'<p class="nexml-signed-in">Signed in as {html.escape(user.display_name)}.</p>'
            f"{index_body(self, url_path_join(self.base_url, 'dashboards'), names)}"
            f'<form method="post" action="{html.escape(self.base_url)}logout">'
            f'{self.xsrf_form_html()}<button type="submit" class="nexml-sign-out">Sign out'
            "</button></form>"
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(page("nexml dashboards", body))


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


class DashboardsApp(Voila):
    """Voila, locked down, signed in with nexml tokens, serving only the dashboard notebooks."""

    name = "nexml-dashboards"

    identity_provider_class = Type(SessionIdentityProvider, klass=IdentityProvider)
    authorizer_class = Type(KernelOwnerAuthorizer, klass=Authorizer)
    kernel_websocket_connection_class = Type(
        LockedKernelConnection, klass=ZMQChannelsWebsocketConnection
    )

    def __init__(self, state: DashboardsState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nexml_state = state

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv or [])
        self.root_dir = str(self.nexml_state.folder)
        cfg = self.voila_configuration
        cfg.preheat_kernel = False  # identity is per request
        cfg.progressive_rendering = False
        cfg.allow_template_override = "NO"
        cfg.allow_theme_override = "NO"
        cfg.show_tracebacks = False
        cfg.http_header_envs = []  # nothing from a request reaches a kernel's environment
        cfg.file_allowlist = []

    def setup_template_dirs(self) -> None:
        super().setup_template_dirs()
        self.template_paths = [str(TEMPLATE_DIR), *self.template_paths]

    def init_settings(self) -> dict[str, Any]:
        settings = super().init_settings()
        settings[STATE] = self.nexml_state
        return settings

    def init_handlers(self) -> list:
        dropped = (TornadoVoilaTreeHandler, TornadoVoilaHandler, VoilaContentsHandler)
        handlers = []
        for spec in super().init_handlers():
            pattern, cls = spec[0], spec[1]
            if isinstance(cls, type) and issubclass(cls, dropped):
                continue
            if "voila/files" in pattern:
                continue  # nothing but the notebooks is served from the folder
            if cls is VoilaShutdownKernelHandler:
                spec = (pattern, OwnKernelShutdownHandler)
            handlers.append(spec)
        state = self.nexml_state
        handlers += [
            (self.server_url, IndexHandler),
            (
                url_path_join(self.server_url, r"/dashboards/([a-z][a-z0-9_]*)"),
                DashboardHandler,
                {
                    "template_paths": self.template_paths,
                    "config": self.config,
                    "voila_configuration": self.voila_configuration,
                    "folder_of": lambda _handler: state.folder,
                },
            ),
        ]
        return handlers

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.nexml_state.db.dispose()


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8866,
    open_browser: bool = False,
    folder: Path,
    session_hours: float = 8.0,
) -> None:
    """Run the dashboards server until stopped (SIGTERM or Ctrl-C)."""
    os.environ.pop("NEXML_TOKEN", None)  # the launcher's token never reaches a kernel
    state = DashboardsState(settings, folder, session_hours)
    app = DashboardsApp(state)
    app.ip = host
    app.port = port
    app.port_retries = 0
    app.open_browser = open_browser
    app.initialize([])
    app.start()
