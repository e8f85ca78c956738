"""API keys: created once (the key is shown to its owner then, and only its sha256 is stored), looked up by
hash on every request, revoked, never deleted (audits keep pointing at the key that made them).

Why sha256 and not a password KDF: a key is 256 random bits, so its hash cannot be reversed by guessing;
a slow KDF only helps low-entropy secrets such as passwords. A plain digest also lets a request find its key
with one indexed equality lookup instead of trying a KDF against every row."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models.tables import ApiKey, utcnow

KEY_PREFIX = "ga_"
PREFIX_CHARS = 8  # of the random part, shown in lists so people can tell their keys apart


def new_key_secret() -> str:
    """A fresh key: `ga_` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """The hex sha256 the database stores in place of the key."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def display_prefix(secret: str) -> str:
    """The key's first characters, enough to recognise it, far too few to use it."""
    return secret[: len(KEY_PREFIX) + PREFIX_CHARS]


def create_key(*, db_session: Session, name: str, admin: bool = False,
               webhook_url: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key's hash (and its default webhook URL) and commit; the row and the key itself, which is never
    stored."""
    secret = new_key_secret()
    key = ApiKey(name=name, prefix=display_prefix(secret), key_hash=hash_key(secret), admin=admin,
                 webhook_url=webhook_url)
    db_session.add(key)
    db_session.commit()
    return key, secret


def find_active_key(*, db_session: Session, secret: str) -> ApiKey | None:
    """The unrevoked key with this secret, or None."""
    query = select(ApiKey).where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
    return db_session.scalar(query)


def list_keys(*, db_session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(db_session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def matching_keys(*, db_session: Session, reference: str) -> list[ApiKey]:
    """The keys whose id or displayed prefix is `reference`."""
    return list(db_session.scalars(select(ApiKey).where(or_(ApiKey.id == reference, ApiKey.prefix == reference))))


def revoke_key(*, db_session: Session, key_id: str) -> bool:
    """Revoke a key from now on; False if it was already revoked or does not exist."""
    guard = (ApiKey.id == key_id) & ApiKey.revoked_at.is_(None)
    revoked = db_session.execute(update(ApiKey).where(guard).values(revoked_at=utcnow()))
    db_session.commit()
    return revoked.rowcount == 1


def set_webhook_url(*, db_session: Session, key_id: str, url: str | None) -> None:
    """Set (None: clear) the key's default webhook URL and commit."""
    db_session.execute(update(ApiKey).where(ApiKey.id == key_id).values(webhook_url=url))
    db_session.commit()
