"""The Celery task: a thin shell around worker.runner.execute_audit."""

from __future__ import annotations

from celery import shared_task

from gradaudit.queue import RUN_AUDIT
from worker.context import current_context
from worker.runner import execute_audit


@shared_task(name=RUN_AUDIT, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_audit(audit_id: str) -> str:
    """Audit one uploaded network by id; returns what the claim decided."""
    from worker.engine.audit import audit_network  # torch loads here, in the worker process only

    return execute_audit(audit_id, context=current_context(), run_engine=audit_network).value
