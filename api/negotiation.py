"""HTML or JSON: which one a request gets, and how a page is answered.

JSON stays the default: clients send Accept: */* or application/json. A request that prefers text/html (a
browser's navigation does) gets the report as a page and its errors as pages; everything else gets problem+json,
report.html's errors included, so a program that fetched the page still reads the error's code.
"""

from __future__ import annotations

from flask import Response, request

# The pages run no script and load nothing; a policy that forbids both also defuses any markup that slipped past
# the templates' escaping. Forms may post only to this service.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
                           "base-uri 'none'; frame-ancestors 'none'")


def prefers_html() -> bool:
    """Whether the request's Accept header ranks text/html above JSON (a tie goes to JSON)."""
    return request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"


def html_response(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A page: text/html with the content security policy, never stored by a cache (it may show a key's audits)."""
    response = Response(body, status=status, mimetype="text/html", headers=headers)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response
