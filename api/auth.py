"""Who is calling: the API key a request carries (`Authorization: Bearer <key>`, or the cookie a browser keeps it
in once the index's key form took it), which audits it may see, and how many it may have queued or running.

A browser sends its cookies with every request to this service, so a request authenticated by the cookie must show
it was sent by this service's own pages: unsafe methods carry Sec-Fetch-Site (same-origin) or a matching Origin,
and the cookie is SameSite=Strict besides. Any unsafe request a browser marks as sent from another site is refused,
whatever its credential (with auth off, a page elsewhere could otherwise submit audits to a loopback service)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

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
# The cookie a browser keeps the key in (api/pages.py sets it: HttpOnly, SameSite=Strict).
KEY_COOKIE = "gradaudit_key"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What Sec-Fetch-Site says of a request this service's own pages sent, or the user typed.
OWN_SITE = frozenset({"same-origin", "none"})


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
    """Before every /v1 request: the caller from its Bearer key (or key cookie), or 401 problem+json; 403 for an
    unsafe request sent from another site."""
    refuse_cross_site()
    if not services().settings.auth_required:
        g.caller = Caller(key_id=None, admin=True)
        return
    key = find_key(_cookie_key() if uses_key_cookie() else _bearer_token())
    if key is None:
        raise problem("invalid_api_key", "the API key is unknown or revoked", headers=CHALLENGE)
    g.caller = Caller(key_id=key.id, admin=key.admin)


def find_key(secret: str) -> api_keys.ApiKey | None:
    """The active key with this secret, or None."""
    if not secret or len(secret) > MAX_KEY_CHARS:
        return None
    with services().sessions() as db_session:
        return api_keys.find_active_key(db_session=db_session, secret=secret)


def uses_key_cookie() -> bool:
    """Whether the request's credential is the key cookie: it has one and no Authorization header."""
    return KEY_COOKIE in request.cookies and "Authorization" not in request.headers


def _cookie_key() -> str:
    return request.cookies[KEY_COOKIE].strip()


def refuse_cross_site() -> None:
    """403 cross_site_request for an unsafe request a browser says another site sent, and for one the key cookie
    authenticates that does not say where it comes from."""
    if request.method in SAFE_METHODS:
        return
    site, origin = request.headers.get("Sec-Fetch-Site"), request.headers.get("Origin")
    if site is not None:
        # Set by the browser alone (no script can), and right behind proxies that rewrite Host: it decides.
        own = site in OWN_SITE
    elif origin is not None:
        own = urlsplit(origin).netloc == request.host
    else:
        own = not uses_key_cookie()  # not a browser's request, or one too old to say: only a header key passes
    if not own:
        raise problem("cross_site_request",
                      "this service accepts forms only from its own pages; send the key as 'Authorization: Bearer "
                      "<key>' from other programs")


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
