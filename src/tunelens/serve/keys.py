"""API keys: shown once at creation, stored only as a salted sha256 hash.

Each key has a role: ``user`` (the default, and what keys made before roles existed became) may
give feedback on and judge only what it created itself; ``admin`` may act on any key's exchanges.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from tunelens.errors import TunelensError
from tunelens.serve.db import ROLES, ApiKey, Store, utcnow

PREFIX = "tl"
_KEY_ID = re.compile(r"[0-9a-f]{1,32}")


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


@dataclass
class CreatedKey:
    id: str
    name: str
    key: str  # the full secret; never stored
    role: str = "user"


@dataclass(frozen=True)
class Caller:
    """An authenticated key."""
    id: str
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def create_key(store: Store, name: str, role: str = "user") -> CreatedKey:
    if role not in ROLES:
        raise TunelensError(f"unknown key role {role!r}; choose one of {list(ROLES)}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    salt = secrets.token_hex(16)
    with store.session.begin() as s:
        s.add(ApiKey(id=key_id, name=name, salt=salt, key_hash=_hash(salt, secret), role=role))
    return CreatedKey(key_id, name, f"{PREFIX}_{key_id}_{secret}", role)


def list_keys(store: Store) -> list[ApiKey]:
    with store.session() as s:
        return list(s.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(store: Store, key_id: str) -> ApiKey:
    with store.session.begin() as s:
        row = s.get(ApiKey, key_id)
        if row is None:
            raise TunelensError(f"no API key with id {key_id!r} (see `tunelens serve keys list`)")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return row


def authenticate(store: Store, presented: str) -> Caller | None:
    """The caller if ``presented`` is a valid, unrevoked key, else None."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not _KEY_ID.fullmatch(parts[1]):
        return None
    key_id, secret = parts[1], parts[2]
    with store.session() as s:
        row = s.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return None
        ok = hmac.compare_digest(row.key_hash, _hash(row.salt, secret))
        return Caller(key_id, row.role or "user") if ok else None


def verify_key(store: Store, presented: str) -> str | None:
    """The key id if ``presented`` is a valid, unrevoked key, else None."""
    caller = authenticate(store, presented)
    return caller.id if caller else None
