"""A background thread that stores where a running audit is (audits.phase, audits.progress) as the sandbox reports
it, so a client polling the audit sees it move."""

from __future__ import annotations

import logging
import threading

from models import audits as audit_rows
from worker.context import WorkerContext

log = logging.getLogger(__name__)

WRITE_INTERVAL_S = 0.5


class ProgressWriter:
    """Keeps the latest (phase, progress) offered and writes it to the audit's row from a thread of its own, at
    most every `interval_s`: the sandbox's reader, which offers, never waits on the database. The last value
    offered is written before the writer stops, so a failed audit shows how far it got."""

    def __init__(self, context: WorkerContext, audit_id: str, owner: str, interval_s: float = WRITE_INTERVAL_S):
        self._context, self._audit_id, self._owner, self._interval_s = context, audit_id, owner, interval_s
        self._lock = threading.Lock()
        self._latest: tuple[str, float] | None = None
        self._offered, self._stopped = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{audit_id}", daemon=True)

    def __enter__(self) -> "ProgressWriter":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stopped.set()
        self._offered.set()
        self._thread.join()

    def offer(self, phase: str, progress: float) -> None:
        """The audit is now here (returns at once)."""
        with self._lock:
            self._latest = (phase, progress)
        self._offered.set()

    def _take(self) -> tuple[str, float] | None:
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    def _run(self) -> None:
        while True:
            self._offered.wait()
            self._offered.clear()
            if (latest := self._take()) is not None:
                self._write(*latest)
            if self._stopped.is_set():
                return
            self._stopped.wait(self._interval_s)

    def _write(self, phase: str, progress: float) -> None:
        try:
            with self._context.sessions() as db_session:
                audit_rows.record_progress(db_session=db_session, audit_id=self._audit_id, worker_id=self._owner,
                                           phase=phase, progress=progress)
        except Exception:
            # Progress is a courtesy: the audit goes on, the next write may reach the database.
            log.warning("recording the progress of audit %s failed", self._audit_id, exc_info=True)
