"""What a report template's kernel opens the store with: :func:`platform_workspace`.

The process that starts a run (``Workspace.make_report``) puts three things in the kernel's
environment and nowhere else: where the store is (``NEXML_HOME``, ``NEXML_DATABASE_URL``,
``NEXML_ARTIFACT_ROOT``) and the run's grant (``NEXML_REPORT_GRANT``). The grant opens the
store as the platform's principal for this one run only: it is stored as a SHA-256 on the
running report's row, compared in constant time, expires with the run's time limit and is
cleared when the run ends, and the Workspace it opens may only *read*, and only what its kind
of report needs. It never sits in a notebook parameter, so it is not in the stored notebook.
"""

from __future__ import annotations

import os

from ..config import Settings
from ..errors import AuthenticationFailed

GRANT_VARIABLE = "NEXML_REPORT_GRANT"


def platform_workspace():  # type: ignore[no-untyped-def]
    """The report run's Workspace: the platform, reading only, for this run only.

    Raises AuthenticationFailed outside a report run (no grant, or a grant that is not the
    current run's).
    """
    from ..workspace import Workspace

    grant = os.environ.get(GRANT_VARIABLE)
    if not grant:
        raise AuthenticationFailed(
            f"no report grant: {GRANT_VARIABLE} is set only in the kernel of a platform report run"
        )
    return Workspace.open_report_run(Settings.from_env(token=""), grant)
