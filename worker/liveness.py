"""A worker says it lives: a key in the broker, refreshed every heartbeat, that expires when the worker dies.

`/healthz` reports `worker: false` once no such key is left, so a dead worker shows within a few heartbeats.
"""

from __future__ import annotations

from celery import Celery

from gradaudit.queue import announce_worker
from gradaudit.settings import Settings
from worker.context import worker_id
from worker.periodic import Periodic

BEATS_TO_EXPIRE = 3  # a key outlives two missed beats, not three


class WorkerBeacon(Periodic):
    """A daemon thread in the worker's main process refreshing its liveness key every heartbeat."""

    def __init__(self, settings: Settings, celery: Celery):
        period, owner = settings.heartbeat_s, worker_id()
        super().__init__("gradaudit-beacon", period, {
            "worker liveness beat": lambda: announce_worker(celery, owner, ttl_s=BEATS_TO_EXPIRE * period)})
