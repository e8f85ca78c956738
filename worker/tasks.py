"""The Celery task: a thin shell around worker.runner.execute_audit."""

from __future__ import annotations

from functools import partial

from celery import shared_task

from gradaudit.queue import RUN_AUDIT
from worker.context import current_context
from worker.runner import execute_audit


@shared_task(name=RUN_AUDIT, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_audit(audit_id: str) -> str:
    """Audit one uploaded network by id; returns what the claim decided."""
    from worker.remedies.audit import audit_with_remedies  # torch loads here, in the worker process only

    context = current_context()
    engine = partial(audit_with_remedies, max_verified=context.settings.max_verified_remedies)
    return execute_audit(audit_id, context=context, run_engine=engine).value
