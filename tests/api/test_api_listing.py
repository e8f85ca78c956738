"""GET /v1/audits: pages of audits, newest first."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from models import audits as audit_rows

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def audit_ids(services) -> list[str]:
    """Five audits created a minute apart; ids oldest first."""
    ids = []
    with services.sessions() as db_session:
        for minute in range(5):
            audit = audit_rows.create_audit(db_session=db_session, artifact_sha256="cd" * 32,
                                            artifact_format="onnx", artifact_size=10,
                                            created_at=START + timedelta(minutes=minute))
            ids.append(audit.id)
    return ids


def test_empty_list(client):
    response = client.get("/v1/audits")
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "total": 0, "limit": 20, "offset": 0, "next": None}


def test_default_page_is_newest_first(client, audit_ids):
    body = client.get("/v1/audits").get_json()
    assert [item["id"] for item in body["items"]] == audit_ids[::-1]
    assert (body["total"], body["limit"], body["offset"], body["next"]) == (5, 20, 0, None)
    assert body["items"][0]["created_at"] == "2026-01-01T00:04:00Z"


def test_pages_follow_next_links(client, audit_ids):
    first = client.get("/v1/audits?limit=2").get_json()
    assert [item["id"] for item in first["items"]] == [audit_ids[4], audit_ids[3]]
    assert first["next"] == "/v1/audits?limit=2&offset=2"

    second = client.get(first["next"]).get_json()
    assert [item["id"] for item in second["items"]] == [audit_ids[2], audit_ids[1]]
    assert second["next"] == "/v1/audits?limit=2&offset=4"

    last = client.get(second["next"]).get_json()
    assert [item["id"] for item in last["items"]] == [audit_ids[0]]
    assert (last["total"], last["offset"], last["next"]) == (5, 4, None)


def test_offset_past_the_end(client, audit_ids):
    body = client.get("/v1/audits?limit=10&offset=50").get_json()
    assert (body["items"], body["total"], body["next"]) == ([], 5, None)


def test_largest_page(client, audit_ids):
    assert client.get("/v1/audits?limit=100").status_code == 200


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=-1", "offset=-1", "limit=abc", "offset=1.5",
                                   "limit="])
def test_invalid_pagination(query, client):
    response = client.get(f"/v1/audits?{query}")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert json.loads(response.get_data())["code"] == "invalid_pagination"
