"""How audits look on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for

from models.tables import Audit, as_utc


def _timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def audit_json(audit: Audit, *, with_options: bool = True) -> dict[str, Any]:
    """An audit's status document; a list's items leave out the options (GET the audit for them)."""
    body = {
        "id": audit.id,
        "status": audit.status,
        "created_at": _timestamp(audit.created_at),
        "started_at": _timestamp(audit.started_at),
        "finished_at": _timestamp(audit.finished_at),
        "attempts": audit.attempts,
        "phase": audit.phase,
        "progress": audit.progress,
        "artifact": {"format": audit.artifact_format, "sha256": audit.artifact_sha256,
                     "size": audit.artifact_size, "filename": audit.filename},
        "options": audit.options,
        "verdict": audit.verdict,
        "links": {"self": url_for("audits.get_audit", audit_id=audit.id),
                  "report": url_for("audits.get_report", audit_id=audit.id),
                  "layers": url_for("audits.get_layers", audit_id=audit.id)},
    }
    if not with_options:
        del body["options"]
    if audit.error_code:
        body["error"] = {"code": audit.error_code, "detail": audit.error_detail}
    return body


def page_json(page: list[Audit], *, total: int, limit: int, offset: int) -> dict[str, Any]:
    """A page of audits with the link to the next one."""
    following = offset + limit
    next_link = url_for("audits.list_audits", limit=limit, offset=following) if following < total else None
    return {"items": [audit_json(audit, with_options=False) for audit in page], "total": total, "limit": limit,
            "offset": offset, "next": next_link}

