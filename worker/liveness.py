"""A worker says it lives: a key in the broker, refreshed every heartbeat, that expires when the worker dies.

`/healthz` reports `worker: false` once no such key is left, so a dead worker shows within a few heartbeats.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery

from gradaudit.queue import announce_worker
from gradaudit.settings import Settings
from worker.context import worker_id

log = logging.getLogger(__name__)
BEATS_TO_EXPIRE = 3  # a key outlives two missed beats, not three


class WorkerBeacon:
    """A daemon thread in the worker's main process refreshing its liveness key every heartbeat."""

    def __init__(self, settings: Settings, celery: Celery):
        self._settings, self._celery = settings, celery
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gradaudit-beacon", daemon=True)

    def start(self) -> None:
        """Start announcing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop announcing and wait for the thread; the key expires on its own."""
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        owner, period = worker_id(), self._settings.heartbeat_s
        while True:
            try:
                announce_worker(self._celery, owner, ttl_s=BEATS_TO_EXPIRE * period)
            except Exception:
                # The broker may be restarting; the next beat will tell it again.
                log.warning("worker liveness beat failed", exc_info=True)
            if self._stopped.wait(period):
                return
