"""GRADAUDIT_RETENTION_DAYS: every worker deletes, now and then, the audits that finished longer ago than that, as
DELETE /v1/audits/{id} does (models/deletion.py): rows, deliveries, and the stored files no remaining audit uses.
Several workers sweeping at once is harmless: an audit is deleted once, a file removed once."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from models import deletion
from models.tables import utcnow
from worker.context import WorkerContext
from worker.periodic import Periodic

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 600.0
BATCH = 100  # audits per transaction, so a first sweep over a long history holds no long lock


def sweep_expired(context: WorkerContext, now: datetime | None = None) -> list[str]:
    """Delete every audit that finished more than GRADAUDIT_RETENTION_DAYS before `now`; their ids."""
    days = context.settings.retention_days
    if days is None:
        return []
    finished_before = (now or utcnow()) - timedelta(days=days)
    swept: list[str] = []
    while batch := _sweep_batch(context, finished_before):
        swept += batch
    if swept:
        log.info("retention: deleted %d audits finished before %s", len(swept), finished_before.isoformat())
    return swept


def _sweep_batch(context: WorkerContext, finished_before: datetime) -> list[str]:
    with context.sessions() as db_session:
        expired = deletion.find_expired_audits(db_session=db_session, finished_before=finished_before, limit=BATCH)
        deleted = [gone for audit_id in expired
                   if (gone := deletion.delete_audit(db_session=db_session, audit_id=audit_id))]
        deletion.remove_unused_files(db_session=db_session, store=context.store, deleted=deleted)
    return [gone.id for gone in deleted]


class RetentionSweeper(Periodic):
    """A daemon thread running sweep_expired every SWEEP_EVERY_S seconds."""

    def __init__(self, context: WorkerContext):
        super().__init__("gradaudit-retention", SWEEP_EVERY_S, {"retention sweep": lambda: sweep_expired(context)})
