"""Finds audits whose worker died (no heartbeat) and sends their task again.

Redis alone would restore a dead worker's unacked message only after the visibility
timeout, which must outlast the longest audit. The database knows sooner: a running
audit whose heartbeat stopped has lost its worker.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery

from gradaudit.queue import send_audit
from models import audits as audit_rows
from worker.context import WorkerContext
from worker.periodic import Periodic
from worker.reconciler import reconcile_queue

log = logging.getLogger(__name__)


def resend_stale_audits(context: WorkerContext, celery: Celery) -> list[str]:
    """Send the task again for every audit that lost its worker or never reached the broker."""
    settings = context.settings
    with context.sessions() as db_session:
        stale = audit_rows.find_stale_audits(
            db_session=db_session, stale_after=timedelta(seconds=settings.stale_after_s),
            unsent_after=timedelta(seconds=settings.stale_after_s),
        )
        for audit_id in stale:
            log.warning("audit %s lost its worker or was never queued; sending it again", audit_id)
            send_audit(celery, audit_id)
            audit_rows.mark_enqueued(db_session=db_session, audit_id=audit_id)
    return stale


class Watchdog(Periodic):
    """A daemon thread running resend_stale_audits and reconcile_queue every half staleness period."""

    def __init__(self, context: WorkerContext, celery: Celery):
        super().__init__("gradaudit-watchdog", context.settings.stale_after_s / 2, {
            "watchdog pass": lambda: resend_stale_audits(context, celery),
            "reconciler pass": lambda: reconcile_queue(context, celery)})
