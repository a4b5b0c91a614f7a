"""API keys and roles.

A key is shown once, when it is created; the database keeps only its SHA-256 (keys are 256 random bits,
so a fast hash is enough: there is nothing to brute-force). Roles: `ehr` posts notes, `coder` works the
review queue, `admin` manages models, keys and the audit log and may do everything the others may.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from service import audit
from service.db import ApiKey, utcnow

Role = Literal["ehr", "coder", "admin"]
ROLES: tuple[str, ...] = ("ehr", "coder", "admin")
KEY_PREFIX = "icd_"


class KeyManagementError(ValueError):
    """A key operation that cannot be done (unknown role, a name taken, an unknown key)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return self.role == role or self.role == "admin"


SYSTEM = Principal("system", "admin")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    id: int
    name: str
    role: str
    key: str
    key_prefix: str


class KeyStore:
    """Create, list, revoke and check API keys."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def create(self, name: str, role: str, by: Principal = SYSTEM) -> CreatedKey:
        """Make a new key; the plain key is in the result and nowhere else.

        Raises:
            KeyManagementError: unknown role, empty name, or a name already in use.
        """
        if role not in ROLES:
            raise KeyManagementError(f"unknown role {role!r}; expected one of {list(ROLES)}")
        name = name.strip()
        if not name or len(name) > 100:
            raise KeyManagementError("a key name must have 1 to 100 characters")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(name=name, role=role, key_prefix=key[:10], key_hash=hash_key(key), created_at=utcnow())
        try:
            with self.sessions.begin() as session:
                session.add(row)
                session.flush()
                audit.record(session, by, "key_create", details={"key_name": name, "role": role})
        except IntegrityError as exc:
            raise KeyManagementError(f"a key named {name!r} exists already") from exc
        return CreatedKey(id=row.id, name=name, role=role, key=key, key_prefix=row.key_prefix)

    def revoke(self, name: str, by: Principal = SYSTEM) -> None:
        """Revoke the key with this name; it is refused from the next request on.

        Raises:
            KeyManagementError: no active key has this name.
        """
        with self.sessions.begin() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
            if row is None:
                raise KeyManagementError(f"no active key named {name!r}")
            row.revoked_at = utcnow()
            audit.record(session, by, "key_revoke", details={"key_name": name, "role": row.role})

    def list(self) -> list[ApiKey]:
        with self.sessions() as session:
            return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))

    def authenticate(self, key: str) -> Principal | None:
        """The principal of an active key, or None."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200 or not key.isprintable():
            return None  # not a key we could have made (NUL would even break a PostgreSQL query)
        digest = hash_key(key)
        # Candidates by the key's public prefix, then a constant-time comparison of the hashes.
        with self.sessions() as session:
            rows = session.scalars(
                select(ApiKey).where(ApiKey.key_prefix == key[:10], ApiKey.revoked_at.is_(None))
            ).all()
        for row in rows:
            if hmac.compare_digest(row.key_hash, digest):
                return Principal(row.name, row.role)
        return None
