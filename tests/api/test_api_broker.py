"""Sending the audit's task: a real Redis broker receives it; an unreachable one leaves the audit queued, unsent."""

from __future__ import annotations

import json
import time

import redis

from api import create_app
from models import audits as audit_rows

CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"


def test_task_message_lands_in_redis(make_settings, sqlite_url, redis_url, torchscript_bytes, decode_message):
    import io

    client = create_app(make_settings(database_url=sqlite_url, broker_url=redis_url)).test_client()
    form = {"model": (io.BytesIO(torchscript_bytes), "net.pt")}
    audit_id = client.post("/v1/audits", data=form, content_type="multipart/form-data").get_json()["id"]

    queued = redis.Redis.from_url(redis_url).lrange("audits", 0, -1)
    assert len(queued) == 1
    message = json.loads(queued[0])
    assert message["headers"]["task"] == "gradaudit.run_audit"
    assert message["properties"]["delivery_info"]["routing_key"] == "audits"
    assert decode_message(message) == ("gradaudit.run_audit", [audit_id])


def test_unreachable_broker_keeps_the_audit_queued(make_settings, sqlite_url, torchscript_bytes):
    import io

    app = create_app(make_settings(database_url=sqlite_url, broker_url=CLOSED_PORT_BROKER))
    client = app.test_client()
    form = {"model": (io.BytesIO(torchscript_bytes), "net.pt")}

    started = time.monotonic()
    response = client.post("/v1/audits", data=form, content_type="multipart/form-data")
    assert time.monotonic() - started < 10

    # The database is the truth: the audit waits, unsent, for a worker's reconciler to send it.
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and "error" not in body
    with app.extensions["gradaudit"].sessions() as db_session:
        row = audit_rows.get_audit(db_session=db_session, audit_id=body["id"])
    assert (row.status, row.error_code, row.enqueued_at) == ("queued", None, None)
    assert app.extensions["gradaudit"].store.path_for(row.artifact_sha256).read_bytes() == torchscript_bytes

    report = client.get(f"/v1/audits/{body['id']}/report")
    assert (report.status_code, report.get_json(force=True)["code"]) == (409, "audit_not_finished")
