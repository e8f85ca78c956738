"""Every error the API returns: application/problem+json (RFC 9457) with a stable `code`."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, json
from werkzeug.exceptions import HTTPException

from api.negotiation import html_response, prefers_html
from gradaudit.errors import ERRORS, error_code, failed_audit_status
from gradaudit.html_pages import render_problem

problems = Blueprint("problems", __name__)
log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Werkzeug's HTTP errors, mapped to our stable codes; any other status answers as http_error.
_HTTP_CODES = {ERRORS[code].status: code for code in
               ("bad_request", "not_found", "method_not_allowed", "upload_too_large", "unsupported_media_type")}


class Problem(Exception):
    """An error response: raise it from a view, the blueprint renders it."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, *,
                 headers: dict[str, str] | None = None, **extra):
        super().__init__(title)
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra
        self.headers = headers or {}


def problem(code: str, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra) -> Problem:
    """The catalogued problem for `code`: status and title come from gradaudit/errors.py; `headers` go on the
    response (a 401's WWW-Authenticate, a 429's Retry-After)."""
    entry = error_code(code)
    return Problem(entry.status, code, entry.title, detail, headers=headers, **extra)


def failed_audit_problem(code: str, detail: str | None, **extra) -> Problem:
    """The problem a failed audit answers with: the code and detail it stored, the status the catalogue gives."""
    return Problem(failed_audit_status(code), code, "The audit failed", detail, **extra)


def problem_response(raised: Problem) -> Response:
    """Render a Problem as problem+json, or as a page with the same status, code and detail for a request that
    wants HTML."""
    if prefers_html():
        page = render_problem(status=raised.status, code=raised.code, title=raised.title, detail=raised.detail)
        return html_response(page, raised.status, raised.headers)
    body = {"type": f"https://gradaudit.dev/problems/{raised.code}", "title": raised.title,
            "status": raised.status, "code": raised.code}
    if raised.detail:
        body["detail"] = raised.detail
    body.update(raised.extra)
    return Response(json.dumps(body), status=raised.status, mimetype=PROBLEM_JSON, headers=raised.headers)


@problems.app_errorhandler(Problem)
def _render_problem(raised: Problem) -> Response:
    return problem_response(raised)


@problems.app_errorhandler(HTTPException)
def _render_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = _HTTP_CODES.get(status)
    unmapped = Problem(status, "http_error", error.name, error.description)
    response = problem_response(problem(code, error.description) if code else unmapped)
    # Keep the error's own headers, e.g. the Allow header a 405 must carry (RFC 9110, 15.5.6).
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@problems.app_errorhandler(Exception)
def _render_unexpected(error: Exception) -> Response:
    # The traceback goes to the log, never to the client.
    log.exception("unhandled error")
    return problem_response(problem("internal_error"))
