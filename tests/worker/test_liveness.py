"""WorkerBeacon: a worker is seen while it beats, and not once it stopped for three heartbeats."""

from __future__ import annotations

import time

from gradaudit.queue import make_celery, worker_seen
from worker.liveness import BEATS_TO_EXPIRE, WorkerBeacon


def test_a_worker_is_seen_while_it_beats_and_forgotten_after(make_settings, redis_url):
    settings = make_settings(broker_url=redis_url, heartbeat_s=0.2, stale_after_s=1)
    celery = make_celery(settings)
    assert not worker_seen(celery)

    beacon = WorkerBeacon(settings, celery)
    beacon.start()
    try:
        deadline = time.monotonic() + 5
        while not worker_seen(celery):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(BEATS_TO_EXPIRE * settings.heartbeat_s * 2)
        assert worker_seen(celery)  # refreshed, not merely announced once
    finally:
        beacon.stop()

    time.sleep(BEATS_TO_EXPIRE * settings.heartbeat_s + 0.3)
    assert not worker_seen(celery)
