"""Every error the API returns: application/problem+json (RFC 9457) with a stable `code`."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, json
from werkzeug.exceptions import HTTPException

problems = Blueprint("problems", __name__)
log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Werkzeug's HTTP errors, mapped to our stable codes.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    415: "unsupported_media_type",
}


class Problem(Exception):
    """An error response: raise it from a view, the blueprint renders it."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, **extra):
        super().__init__(title)
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra


def problem_response(problem: Problem) -> Response:
    """Render a Problem as problem+json."""
    body = {"type": f"https://gradaudit.dev/problems/{problem.code}", "title": problem.title,
            "status": problem.status, "code": problem.code}
    if problem.detail:
        body["detail"] = problem.detail
    body.update(problem.extra)
    return Response(json.dumps(body), status=problem.status, mimetype=PROBLEM_JSON)


@problems.app_errorhandler(Problem)
def _render_problem(problem: Problem) -> Response:
    return problem_response(problem)


@problems.app_errorhandler(HTTPException)
def _render_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = _HTTP_CODES.get(status, "http_error")
    response = problem_response(Problem(status, code, error.name, error.description))
    # Keep the error's own headers, e.g. the Allow header a 405 must carry (RFC 9110, 15.5.6).
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@problems.app_errorhandler(Exception)
def _render_unexpected(error: Exception) -> Response:
    # The traceback goes to the log, never to the client.
    log.exception("unhandled error")
    return problem_response(Problem(500, "internal_error", "Internal Server Error"))
