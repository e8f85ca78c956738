"""What API tests assert about responses and storage: problem+json bodies, audit rows, stored files."""

from __future__ import annotations

import json
from pathlib import Path

from models import audits as audit_rows

PROBLEM_JSON = "application/problem+json"


def stored_files(root: Path) -> list[Path]:
    """Every file under the artifact store, partial uploads included."""
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def audit_count(services) -> int:
    """How many audit rows the database holds."""
    with services.sessions() as db_session:
        return audit_rows.list_audits(db_session=db_session, limit=1, offset=0)[1]


def assert_problem(response, status: int, code: str) -> dict:
    """The response is problem+json with this status and code; returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = json.loads(response.get_data())
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://gradaudit.dev/problems/{code}"
    assert body["title"]
    return body
