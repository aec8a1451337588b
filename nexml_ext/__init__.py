"""nexml-ext: a governed path for regulated machine-learning models.

``nexml_ext.connect()`` opens the Workspace as the principal whose token is in ``NEXML_TOKEN``
or in the credentials file that ``nexml init`` wrote.
"""

from __future__ import annotations

from .config import Settings
from .errors import (
    AuthenticationFailed,
    Conflict,
    IncompleteCompliance,
    IntegrityError,
    InvalidInput,
    InvalidTransition,
    NexmlError,
    NotFound,
    NotInitialised,
    PermissionDenied,
    SchemaOutOfDate,
)

__version__ = "0.1.0"

__all__ = [
    "connect",
    "Settings",
    "NexmlError",
    "AuthenticationFailed",
    "Conflict",
    "IncompleteCompliance",
    "IntegrityError",
    "InvalidInput",
    "InvalidTransition",
    "NotFound",
    "NotInitialised",
    "PermissionDenied",
    "SchemaOutOfDate",
]


def connect(
    token: str | None = None,
    *,
    home: str | None = None,
    database_url: str | None = None,
    artifact_root: str | None = None,
):
    """Open the local Workspace as the principal ``token`` names.

    Arguments override the environment (``NEXML_TOKEN``, ``NEXML_HOME``, ``NEXML_DATABASE_URL``,
    ``NEXML_ARTIFACT_ROOT``). Raises NotInitialised, SchemaOutOfDate or AuthenticationFailed.
    """
    from .workspace import Workspace

    settings = Settings.from_env(home=home, database_url=database_url, artifact_root=artifact_root)
    return Workspace.open(settings, token)


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext nexml_ext``: register the ``%nexml`` magics."""
    from .jupyter import load_ipython_extension as load

    load(ipython)
