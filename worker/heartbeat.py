"""A background thread that keeps an audit's heartbeat fresh while the engine runs."""

from __future__ import annotations

import logging
import threading

from models import audits as audit_rows
from worker.context import WorkerContext

log = logging.getLogger(__name__)


class Heartbeat:
    """Refresh `heartbeat_at` every `heartbeat_s` until stopped: a silent audit is a dead worker."""

    def __init__(self, context: WorkerContext, audit_id: str, owner: str):
        self._context, self._audit_id, self._owner = context, audit_id, owner
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{audit_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._context.settings.heartbeat_s):
            try:
                with self._context.sessions() as db_session:
                    audit_rows.beat(db_session=db_session, audit_id=self._audit_id, worker_id=self._owner)
            except Exception:
                # A missed beat is survivable; the next one may reach the database.
                log.warning("heartbeat for audit %s failed", self._audit_id, exc_info=True)
