"""Alembic environment: runs on the connection the caller passes, or on NEXML_DATABASE_URL."""

from __future__ import annotations

from alembic import context

from nexml_ext.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from nexml_ext.config import Settings
    from nexml_ext.store.database import make_engine

    url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    with make_engine(url).begin() as conn:
        _run(conn)
