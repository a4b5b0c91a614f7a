"""Persistence: the tables, the engine, and the Alembic migrations that create them.

SQLite in a local data folder is the embedded default; PostgreSQL through `CODER_DATABASE_URL` is the
production path. The schema is only ever created by the migrations in `service/migrations`.
"""

from __future__ import annotations

import fcntl
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, DateTime, Engine, Float, Index, Integer, String, Text, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

MIGRATIONS = Path(__file__).parent / "migrations"
# A request that needs PostgreSQL while it is down fails within seconds instead of waiting on it: libpq's
# connect timeout (2 s is its least), and how long a request waits for a free connection of the pool.
CONNECT_TIMEOUT_S = 2
POOL_TIMEOUT_S = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that always comes back timezone-aware in UTC (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC time")
        return value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once, when created."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    key_prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ReviewItem(Base):
    """A note whose suggestions a coder must review. Holds the note text: coders need it to decide."""

    __tablename__ = "review_items"
    __table_args__ = (Index("ix_review_items_queue", "status", "priority", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    note_id: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    encounter_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    text: Mapped[str] = mapped_column(Text)
    systems: Mapped[list | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    priority: Mapped[float] = mapped_column(Float, doc="the note's confidence: its best code's confidence")
    suggestions: Mapped[list] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(200))
    thresholds: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    final_codes: Mapped[list | None] = mapped_column(JSON, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditEvent(Base):
    """One line of the append-only audit log (database triggers refuse updates and deletes)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32), index=True)
    review_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    note_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    model_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    thresholds: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class ModelDeployment(Base):
    """Which artifact the service serves: the latest row wins; earlier rows are the rollback history."""

    __tablename__ = "model_deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    artifact: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(200))
    activated_by: Mapped[str] = mapped_column(String(100))
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy's default driver would be psycopg2)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; for SQLite, creates the data folder and turns on WAL and a busy timeout."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    connect_args = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    # pre_ping: a connection the server dropped (a restart) is replaced at checkout, so the service
    # recovers by itself once the database is back.
    # hide_parameters: a driver error's message would otherwise carry the statement's values (note text).
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         pool_timeout=POOL_TIMEOUT_S, connect_args=connect_args, hide_parameters=True)


@dataclass(frozen=True)
class Outage:
    """A database fault that should pass: `code` is the stable error code, `reason` is safe to show."""

    code: str
    reason: str


# SQLite primary result codes (an extended code carries one in its low byte).
_SQLITE_STORAGE = {
    sqlite3.SQLITE_FULL: "the database's disk is full",
    sqlite3.SQLITE_READONLY: "the database is read-only",
    sqlite3.SQLITE_IOERR: "the database's storage failed to read or write",
    sqlite3.SQLITE_CANTOPEN: "the database file cannot be opened",
    sqlite3.SQLITE_PERM: "the database file may not be written",
}
_SQLITE_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def outage(exc: BaseException) -> Outage | None:
    """The outage `exc` reports: the database is unreachable, restarting, busy, full or read-only; None
    for any other error (a bug, a constraint), which a retry would not cure.

    A reason never quotes the driver's message: SQLAlchemy's carries the statement and its parameters,
    which may be note text.
    """
    if isinstance(exc, sa_exc.TimeoutError):
        return Outage("database_unavailable", f"no database connection came free within {POOL_TIMEOUT_S} s")
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    if isinstance(exc.orig, sqlite3.Error):
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if code is None:
            return None
        if code & 0xFF in _SQLITE_BUSY:
            return Outage("database_unavailable", "the database is busy")
        if code & 0xFF in _SQLITE_STORAGE:
            return Outage("storage_unavailable", _SQLITE_STORAGE[code & 0xFF])
        return None
    # PostgreSQL: a refused or dropped connection, a server shutting down, a statement cancelled by the
    # server; all say OperationalError (or InterfaceError for a connection already closed).
    if exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return Outage("database_unavailable", "the database is unavailable")
    return None


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to `revision`. Several processes may race: PostgreSQL migrates under an
    advisory lock (see migrations/env.py), SQLite under a lock file beside the database."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        command.upgrade(alembic_config(engine), revision)
        return
    with open(f"{database}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # SQLite's DDL is not transactional under Alembic
        try:
            command.upgrade(alembic_config(engine), revision)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Run the migrations down to `revision`."""
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
