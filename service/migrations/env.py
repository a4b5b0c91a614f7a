"""Alembic environment: the engine comes from `service.db.alembic_config` (no alembic.ini, no URL in a file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from service.db import Base

# Any constant would do; it only has to be the same for every process migrating one database.
ADVISORY_LOCK = 4_151_200_126


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Several workers may start at once: one migrates, the others wait and find nothing to do.
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=Base.metadata,
                              render_as_batch=connection.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK})
                connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `python -m service db upgrade`")
run_migrations_online()
