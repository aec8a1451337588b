"""The one configuration object: where the store lives and who is acting.

Everything is read from the environment once, at ``Settings.from_env()``; callers may override any
field explicitly (tests, ``nexml --home``). Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_HOME = "~/.nexml"
CREDENTIALS_FILE = "credentials"


@dataclass(frozen=True)
class Settings:
    """Where metadata, artifacts and credentials live.

    ``home``: the embedded default's folder (``NEXML_HOME``, default ``~/.nexml``).
    ``database_url``: SQLAlchemy URL (``NEXML_DATABASE_URL``); default SQLite ``home/nexml.db``.
    ``artifact_root``: fsspec URL or path (``NEXML_ARTIFACT_ROOT``); default ``home/artifacts``.
    ``token``: the acting principal's token (``NEXML_TOKEN``); default: the credentials file.
    """

    home: Path
    database_url: str
    artifact_root: str
    token: str | None = None

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        home = Path(str(overrides.pop("home", None) or env.get("NEXML_HOME") or DEFAULT_HOME))
        home = home.expanduser().resolve()
        database_url = env.get("NEXML_DATABASE_URL") or f"sqlite:///{home / 'nexml.db'}"
        artifact_root = env.get("NEXML_ARTIFACT_ROOT") or str(home / "artifacts")
        settings = cls(
            home=home,
            database_url=database_url,
            artifact_root=artifact_root,
            token=env.get("NEXML_TOKEN") or None,
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean) if clean else settings

    @property
    def credentials_path(self) -> Path:
        return self.home / CREDENTIALS_FILE

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
