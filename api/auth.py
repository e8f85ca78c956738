"""Who is calling: the API key a request carries (`Authorization: Bearer <key>`), which audits it may see,
and how many it may have queued or running."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, request
from sqlalchemy.orm import Session

from api.problems import problem
from api.services import services
from models import api_keys
from models import audits as audit_rows
from models.tables import Audit

# A 401 names the scheme it wants (RFC 6750, 3).
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gradaudit"'}
# An audit takes seconds to minutes: about when a slot may be free again.
RETRY_AFTER_S = 30
# Far longer than any key we issue; a longer token is refused before it is hashed.
MAX_KEY_CHARS = 256


@dataclass(frozen=True)
class Caller:
    """The key behind a request; key_id None when auth is off (the caller then sees every audit)."""

    key_id: str | None
    admin: bool

    @property
    def owned_by(self) -> str | None:
        """The owner to scope queries to; None: every audit (an admin key, or auth off)."""
        return None if self.admin else self.key_id

    def may_see(self, audit: Audit) -> bool:
        """Whether this caller may read the audit: its own, or any for an admin."""
        return self.admin or audit.owner_key_id == self.key_id


def authenticate() -> None:
    """Before every /v1 request: the caller from its Bearer key, or 401 problem+json."""
    if not services().settings.auth_required:
        g.caller = Caller(key_id=None, admin=True)
        return
    secret = _bearer_token()
    key = None
    if len(secret) <= MAX_KEY_CHARS:
        with services().sessions() as db_session:
            key = api_keys.find_active_key(db_session=db_session, secret=secret)
    if key is None:
        raise problem("invalid_api_key", "the API key is unknown or revoked", headers=CHALLENGE)
    g.caller = Caller(key_id=key.id, admin=key.admin)


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise problem("unauthorized", "send an API key as 'Authorization: Bearer <key>' (gradaudit keys create)",
                      headers=CHALLENGE)
    return token.strip()


def caller() -> Caller:
    """The current request's caller, set by authenticate."""
    return g.caller


def check_active_limit() -> None:
    """429 with Retry-After when the caller's key already has its most queued and running audits: checked
    before the upload is stored; create_owned_audit enforces it again, atomically, when the audit is inserted."""
    key_id, most = caller().key_id, services().settings.max_active_audits_per_key
    if key_id is None:
        return
    with services().sessions() as db_session:
        active = audit_rows.count_active_audits(db_session=db_session, owned_by=key_id)
    if active >= most:
        raise _too_many_active_audits(most)


def create_owned_audit(db_session: Session, **fields) -> Audit:
    """Insert the caller's queued audit, within its key's limit of active audits (429 past it)."""
    key_id = caller().key_id
    if key_id is None:
        return audit_rows.create_audit(db_session=db_session, owner_key_id=None, **fields)
    most = services().settings.max_active_audits_per_key
    audit = audit_rows.create_audit_within_limit(db_session=db_session, owner_key_id=key_id, most_active=most,
                                                 **fields)
    if audit is None:
        raise _too_many_active_audits(most)
    return audit


def _too_many_active_audits(most: int):
    return problem("too_many_active_audits",
                   f"this key already has {most} audits queued or running, its limit "
                   "(GRADAUDIT_MAX_ACTIVE_AUDITS_PER_KEY)",
                   headers={"Retry-After": str(RETRY_AFTER_S)})
