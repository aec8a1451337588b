"""The Jupyter server extension: the nexml dashboards inside JupyterLab (or any jupyter_server).

Enabled on install by ``etc/jupyter/jupyter_server_config.d/nexml_ext.json``. It adds, under the
server's base URL and behind the server's own authentication:

- ``/nexml/dashboards``: the dashboards, as links;
- ``/nexml/dashboards/<name>``: the installed ``widgets/<name>.ipynb`` rendered by Voila's handler
  (Voila's own extension renders only files under the server root; these live elsewhere);
- ``/nexml/api/whoami``: the nexml principal this server's ``NEXML_TOKEN`` or credentials file
  stand for (the identity the dashboards act as here).

Inside JupyterLab the person is whoever runs the server — they can run any code in it anyway —
so dashboards here act with the server's own nexml identity; ``nexml dashboards`` is the
multi-person, locked-down way to serve them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from ..errors import NexmlError, NotFound

AUTH_RESOURCE = "nexml"
CONTENTS = "nexml_widgets_contents"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nexml_ext.jupyter.server_extension"}]


def _folder(_handler: Any = None) -> Path | None:
    from .dashboards.paths import widgets_dir

    try:
        return widgets_dir()
    except NotFound:
        return None


class IndexHandler(JupyterHandler):
    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from .dashboards.paths import catalog
        from .dashboards.serving import index_body, page

        folder = _folder()
        names = list(catalog(folder)) if folder else []
        body = "<h1>nexml dashboards</h1>" + index_body(
            self, url_path_join(self.base_url, "nexml", "dashboards"), names
        )
        self.finish(page("nexml dashboards", body))


class WhoAmIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from .. import connect

        try:
            with connect() as ws:
                principal = ws.whoami()
            reply = {"user": principal.name, "role": principal.role.value, "error": None}
        except NexmlError as exc:
            reply = {"user": None, "role": None, "error": str(exc)}
        self.finish(json.dumps(reply))


def _dashboard_handler() -> type:
    from .dashboards.serving import DashboardHandler

    class LabDashboardHandler(DashboardHandler):
        """Voila's handler over the installed notebooks (not the server root)."""

        auth_resource = AUTH_RESOURCE

        @property
        def contents_manager(self) -> Any:  # type: ignore[override]
            return self.settings[CONTENTS]

        @web.authenticated
        @authorized
        async def get(self, name: str) -> None:  # type: ignore[override]
            if self.settings.get(CONTENTS) is None:
                raise web.HTTPError(404, "no dashboard notebooks are installed")
            await super().get(name)

    return LabDashboardHandler


def _load_jupyter_server_extension(server_app: Any) -> None:
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from voila.configuration import VoilaConfiguration
    from voila.paths import collect_template_paths

    from .dashboards.serving import TEMPLATE_DIR

    web_app = server_app.web_app
    enabled = server_app.jpserver_extensions
    if not (enabled.get("voila.server_extension") or enabled.get("voila")):
        # Voila's own extension serves the page's scripts and styles under /voila/.
        from voila.server_extension import _load_jupyter_server_extension as load_voila

        load_voila(server_app)
    configuration = VoilaConfiguration(parent=server_app)
    template_paths = [
        str(TEMPLATE_DIR),
        *collect_template_paths(["voila", "nbconvert"], configuration.template),
    ]
    folder = _folder()
    web_app.settings[CONTENTS] = (
        FileContentsManager(root_dir=str(folder), parent=server_app) if folder else None
    )
    base = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "nexml", "dashboards"), IndexHandler),
            (
                url_path_join(base, "nexml", "dashboards", r"([a-z][a-z0-9_]*)"),
                _dashboard_handler(),
                {
                    "template_paths": template_paths,
                    "config": server_app.config,
                    "voila_configuration": configuration,
                    "folder_of": _folder,
                },
            ),
            (url_path_join(base, "nexml", "api", "whoami"), WhoAmIHandler),
        ],
    )
    where = str(folder) if folder else "nowhere (none installed)"
    server_app.log.info("nexml: dashboards at %snexml/dashboards from %s", base, where)


load_jupyter_server_extension = _load_jupyter_server_extension  # older jupyter_server names
