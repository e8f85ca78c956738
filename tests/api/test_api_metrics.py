"""GET /metrics: Prometheus' text format, read back with prometheus_client's own parser: audits by status and
error code, webhook deliveries, durations by phase (each finished audit once, across scrapes), the broker's
queue depth and live workers (a real Redis), and GRADAUDIT_METRICS_TOKEN."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from gradaudit.queue import announce_worker, send_audit, send_webhook
from models import audits as audit_rows
from models import webhooks as webhook_rows
from models.tables import utcnow
from tests.support.api_rows import claim
from tests.support.db import set_columns
from tests.support.problems import assert_problem

RESULT = {"network": {"format": "onnx", "parameters": 10, "layers": 1}, "setup": {"device": "cpu"},
          "findings": [], "verdict": "healthy"}


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} for every sample of a scrape."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def finish(services, new_audit, *, seconds: float, code: str | None = None, phase_seconds=None) -> str:
    """An audit claimed and finished (failed with `code`, else succeeded) that ran for `seconds`."""
    audit_id = new_audit()
    claim(services, audit_id)
    with services.sessions() as db_session:
        if code:
            audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code=code, detail="d")
        else:
            setup = {"device": "cpu", **({"phase_seconds": phase_seconds} if phase_seconds else {})}
            audit_rows.succeed_audit(db_session=db_session, audit_id=audit_id, worker_id="worker-1",
                                     result={**RESULT, "setup": setup}, layers=[])
    started = utcnow() - timedelta(seconds=seconds)
    set_columns(services, audit_id, started_at=started, finished_at=started + timedelta(seconds=seconds))
    return audit_id


def test_audits_are_counted_by_status_and_error_code(client, services, new_audit):
    new_audit()
    finish(services, new_audit, seconds=3)
    finish(services, new_audit, seconds=4, code="invalid_onnx")
    finish(services, new_audit, seconds=5, code="invalid_onnx")
    finish(services, new_audit, seconds=6, code="time_limit_exceeded")

    audits = scrape(client)["gradaudit_audits"]
    assert audits == {(("error_code", ""), ("status", "queued")): 1, (("error_code", ""), ("status", "succeeded")): 1,
                      (("error_code", ""), ("status", "running")): 0,
                      (("error_code", "invalid_onnx"), ("status", "failed")): 2,
                      (("error_code", "time_limit_exceeded"), ("status", "failed")): 1}


def test_durations_are_a_histogram_by_phase_each_audit_once(client, services, new_audit):
    finish(services, new_audit, seconds=3, phase_seconds={"loading": 0.4, "probing": 2.0})
    finish(services, new_audit, seconds=45, code="forward_failed")
    first = scrape(client)
    buckets = first["gradaudit_audit_duration_seconds_bucket"]
    assert buckets[(("le", "5.0"), ("phase", "total"))] == 1 and buckets[(("le", "60.0"), ("phase", "total"))] == 2
    assert buckets[(("le", "+Inf"), ("phase", "loading"))] == 1
    assert buckets[(("le", "0.5"), ("phase", "loading"))] == 1 and buckets[(("le", "1.0"), ("phase", "probing"))] == 0
    assert first["gradaudit_audit_duration_seconds_count"][(("phase", "total"),)] == 2
    assert first["gradaudit_audit_duration_seconds_sum"][(("phase", "total"),)] == pytest.approx(48, abs=0.01)

    assert scrape(client)["gradaudit_audit_duration_seconds_count"] == first["gradaudit_audit_duration_seconds_count"]
    finish(services, new_audit, seconds=700)
    counts = scrape(client)["gradaudit_audit_duration_seconds_count"]
    assert counts[(("phase", "total"),)] == 3 and counts[(("phase", "probing"),)] == 1


def test_deliveries_are_counted_by_outcome(client, services, new_audit):
    audit_id = finish(services, new_audit, seconds=1)
    with services.sessions() as db_session:
        for attempt, status in enumerate(["failed", "failed", "delivered"], start=1):
            webhook_rows.record_delivery(db_session=db_session, audit_id=audit_id, url="https://8.8.8.8/",
                                         attempt=attempt, status=status)
    assert scrape(client)["gradaudit_webhook_deliveries"] == {(("status", "delivered"),): 1,
                                                              (("status", "failed"),): 2, (("status", "refused"),): 0}


def test_a_broker_that_does_not_answer_is_said_so(client):
    # The test app's broker is kombu's in-memory transport, which holds no Redis lists or keys to read.
    samples = scrape(client)
    assert samples["gradaudit_broker_up"] == {(): 0}
    assert "gradaudit_queue_depth" not in samples and "gradaudit_workers_live" not in samples


def test_queue_depth_and_live_workers_come_from_redis(make_settings, sqlite_url, redis_url):
    app = create_app(make_settings(database_url=sqlite_url, broker_url=redis_url))
    celery = app.extensions["gradaudit"].celery
    for audit_id in ("a1", "a2"):
        send_audit(celery, audit_id)
    send_webhook(celery, "a1")
    announce_worker(celery, "host:1", ttl_s=30)
    announce_worker(celery, "host:2", ttl_s=30)

    samples = scrape(app.test_client())
    assert samples["gradaudit_broker_up"] == {(): 1}
    assert samples["gradaudit_queue_depth"] == {(("queue", "audits"),): 2, (("queue", "webhooks"),): 1}
    assert samples["gradaudit_workers_live"] == {(): 2}


def test_openmetrics_is_served_to_who_asks_for_it(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


def test_a_metrics_token_is_required_once_set(make_settings, sqlite_url):
    client = create_app(make_settings(database_url=sqlite_url, auth=True, metrics_token="scrape-me")).test_client()
    assert_problem(client.get("/metrics"), 401, "unauthorized")
    assert_problem(client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert "gradaudit_audits" in scrape(client, Authorization="Bearer scrape-me")


def test_metrics_need_no_api_key_unless_a_token_is_set(make_settings, sqlite_url):
    client = create_app(make_settings(database_url=sqlite_url, auth=True)).test_client()
    assert client.get("/metrics").status_code == 200


def test_every_metric_reads_both_databases(make_settings, database_url):
    app = create_app(make_settings(database_url=database_url))
    services = app.extensions["gradaudit"]

    def new_audit() -> str:
        with services.sessions() as db_session:
            return audit_rows.create_audit(db_session=db_session, artifact_sha256="ab" * 32,
                                           artifact_format="onnx", artifact_size=1, options={}).id

    finish(services, new_audit, seconds=2, phase_seconds={"probing": 1.5})
    finish(services, new_audit, seconds=3, code="invalid_onnx")
    samples = scrape(app.test_client())
    assert samples["gradaudit_audits"][(("error_code", "invalid_onnx"), ("status", "failed"))] == 1
    assert samples["gradaudit_audit_duration_seconds_count"] == {(("phase", "total"),): 2,
                                                                 (("phase", "probing"),): 1}
    assert samples["gradaudit_audit_duration_seconds_sum"][(("phase", "probing"),)] == 1.5
