"""Sends every queued audit that the broker does not hold.

The database is the truth, the broker only a delivery: an audit whose enqueue failed (the broker was down
when it was posted, or the API died between its commit and the send) stays queued with `enqueued_at` unset,
and a broker that lost messages (restarted without its append-only file) leaves queued audits nobody will
deliver. Each worker's watchdog thread runs this pass; a duplicate message is harmless, the claim refuses it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery

from gradaudit.queue import audits_in_broker, send_audit
from models import audits as audit_rows
from models.tables import utcnow
from worker.context import WorkerContext

log = logging.getLogger(__name__)


def audits_to_send(candidates: list[str], in_broker: set[str]) -> list[str]:
    """The queued candidates the broker does not hold, oldest first."""
    return [audit_id for audit_id in candidates if audit_id not in in_broker]


def reconcile_queue(context: WorkerContext, celery: Celery) -> list[str]:
    """Send the task of every queued audit, settled for a while, that is neither waiting nor delivered."""
    # The grace keeps the pass off audits the API is sending right now and messages still being delivered.
    settled_before = utcnow() - timedelta(seconds=context.settings.stale_after_s)
    with context.sessions() as db_session:
        candidates = audit_rows.find_queued_audits(db_session=db_session, sent_before=settled_before)
        if not candidates:
            return []
        # A live worker claims what it was handed at once; a message unacked for the whole grace on a still
        # queued audit sits with a consumer that died between taking it and claiming it.
        held = audits_in_broker(celery, delivered_within_s=context.settings.stale_after_s)
        missing = audits_to_send(candidates, held)
        for audit_id in missing:
            log.warning("queued audit %s is not in the broker; sending it", audit_id)
            send_audit(celery, audit_id)
            audit_rows.mark_enqueued(db_session=db_session, audit_id=audit_id)
    return missing
