"""GET /healthz and /readyz: database, broker and store reachability, and whether a worker lives."""

from __future__ import annotations

import time

from api import create_app
from gradaudit.queue import announce_worker

# Nothing listens on port 1: the connection is refused at once.
CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"


def test_healthy_with_memory_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": True, "broker": True, "storage": True, "worker": False}}


def test_unreachable_broker_is_503_and_fast(make_settings, sqlite_url):
    settings = make_settings(database_url=sqlite_url, broker_url=CLOSED_PORT_BROKER)
    client = create_app(settings).test_client()

    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": {"database": True, "broker": False, "storage": True, "worker": False}}


def test_unreachable_database_is_503(make_settings, tmp_path):
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'x.db'}")
    response = create_app(settings).test_client().get("/healthz")

    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": {"database": False, "broker": True, "storage": True, "worker": False}}


def test_healthy_with_real_redis(make_settings, sqlite_url, redis_url):
    client = create_app(make_settings(database_url=sqlite_url, broker_url=redis_url)).test_client()
    assert client.get("/healthz").status_code == 200


def test_a_live_worker_is_seen_until_its_key_expires(make_settings, sqlite_url, redis_url):
    app = create_app(make_settings(database_url=sqlite_url, broker_url=redis_url))
    client = app.test_client()
    assert client.get("/healthz").get_json()["checks"]["worker"] is False
    assert client.get("/readyz").status_code == 503

    announce_worker(app.extensions["gradaudit"].celery, "host:123", ttl_s=0.5)
    healthz, readyz = client.get("/healthz"), client.get("/readyz")
    assert (healthz.status_code, healthz.get_json()["checks"]["worker"]) == (200, True)
    assert readyz.get_json() == {"status": "ok", "checks": {"database": True, "broker": True, "storage": True,
                                                            "worker": True}}

    time.sleep(0.8)
    assert client.get("/healthz").get_json()["checks"]["worker"] is False
    assert client.get("/healthz").status_code == 200  # the API still takes uploads; they wait queued
    assert client.get("/readyz").status_code == 503
