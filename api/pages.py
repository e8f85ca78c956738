"""The pages a browser opens: the index at / (the caller's recent audits and an upload form), and the key form
that keeps an API key in this browser.

A browser cannot send `Authorization: Bearer` from a link, so the form puts the key in a cookie that scripts cannot
read (HttpOnly), other sites cannot make the browser send (SameSite=Strict) and that ends with the browser session;
api/auth.py accepts it in place of the header, and refuses unsafe requests it authenticates unless they come from
these pages. A key never travels in a URL, where it would land in logs.
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for

from api.auth import KEY_COOKIE, authenticate, caller, find_key, refuse_cross_site, uses_key_cookie
from api.negotiation import html_response
from api.problems import Problem
from api.services import services
from api.views import audit_json
from gradaudit.html_pages import render_index, render_key_form
from models import audits as audit_rows
from models.tables import Audit

pages = Blueprint("pages", __name__)

RECENT = 20


@pages.get("/")
def index():
    """The caller's most recent audits and an upload form; the key form where no valid key came along."""
    try:
        authenticate()
    except Problem as refused:
        return html_response(render_key_form(message=_why_refused(refused)))
    with services().sessions() as db_session:
        recent, total = audit_rows.list_audits(db_session=db_session, limit=RECENT, offset=0,
                                               owned_by=caller().owned_by)
        rows = [_index_row(audit) for audit in recent]
    signed_in = services().settings.auth_required and uses_key_cookie()
    return html_response(render_index(audits=rows, total=total, signed_in=signed_in))


@pages.post("/session")
def keep_key():
    """Check the key from the form and keep it in this browser's cookie: 303 to the index; 401 and the form again
    for a key that is unknown or revoked."""
    refuse_cross_site()
    secret = request.form.get("api_key", "").strip()
    if find_key(secret) is None:
        return html_response(render_key_form(message="That API key is unknown or revoked."), 401)
    response = redirect(url_for("pages.index"), 303)
    response.set_cookie(KEY_COOKIE, secret, httponly=True, samesite="Strict", secure=request.is_secure, path="/")
    return response


@pages.post("/session/end")
def forget_key():
    """Forget the key this browser keeps: 303 to the index."""
    refuse_cross_site()
    response = redirect(url_for("pages.index"), 303)
    response.delete_cookie(KEY_COOKIE, httponly=True, samesite="Strict", secure=request.is_secure, path="/")
    return response


def _why_refused(refused: Problem) -> str | None:
    if refused.code == "unauthorized":
        return None  # no key at all: the form says what to do
    if uses_key_cookie():
        return "The API key this browser kept is unknown or revoked: enter another."
    return refused.detail


def _index_row(audit: Audit) -> dict:
    """What the index shows of an audit: its status document's fields, and where its page is."""
    body = audit_json(audit, with_options=False)
    created = body["created_at"][:19].replace("T", " ") + " UTC"  # ISO 8601 to the second, easier to read
    return {"id": body["id"], "status": body["status"], "verdict": body["verdict"], "created_at": created,
            "filename": body["artifact"]["filename"], "format": body["artifact"]["format"],
            "error_code": (body.get("error") or {}).get("code"),
            "report_url": url_for("audits.get_report_html", audit_id=audit.id)}
