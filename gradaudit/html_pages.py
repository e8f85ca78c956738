"""The service's other HTML pages, rendered from plain data like the report: the index at / (the caller's recent
audits and an upload form, or the form that takes an API key) and the page an error answers a browser with."""

from __future__ import annotations

from typing import Any

from gradaudit.html_report import TEMPLATES

# A page for an audit still queued or running reloads itself this often (a meta refresh: the pages run no script).
REFRESH_S = 2


def render_index(*, audits: list[dict[str, Any]], total: int, signed_in: bool) -> str:
    """The index of a caller the service knows: an upload form and its most recent audits (`signed_in`: by a key
    this browser keeps, which it can forget)."""
    return TEMPLATES.get_template("index.html").render(audits=audits, total=total, signed_in=signed_in)


def render_key_form(*, message: str | None = None) -> str:
    """The index of a caller without a valid key: the form that keeps one in this browser."""
    return TEMPLATES.get_template("key_form.html").render(message=message)


def render_problem(*, status: int, code: str, title: str, detail: str | None) -> str:
    """An error as a page: the same status, code and detail a problem+json body carries; an audit that has not
    finished reloads until it has."""
    return TEMPLATES.get_template("problem.html").render(
        status=status, code=code, title=title, detail=detail,
        refresh_s=REFRESH_S if code == "audit_not_finished" else None)
