"""Alembic environment: runs on the connection mailtrack hands it (see store.db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from mailtrack.store.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # `alembic` CLI, e.g. revision --autogenerate
        url = config.get_main_option("sqlalchemy.url") or "sqlite:///./var/alembic.db"
        with create_engine(url).connect() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
