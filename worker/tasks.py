"""The Celery tasks: thin shells around worker.runner.execute_audit and worker.webhooks.deliver."""

from __future__ import annotations

from functools import partial

from celery import shared_task

from gradaudit.queue import DELIVER_WEBHOOK, RUN_AUDIT
from models.audits import Claim
from worker.context import current_context
from worker.runner import execute_audit
from worker.webhooks import announce_finish, backoff_s, deliver

# A webhook attempt is a connect and a POST with short timeouts; the limit bounds a receiver that drips its answer.
WEBHOOK_SOFT_LIMIT_S, WEBHOOK_HARD_LIMIT_S = 30, 40


@shared_task(name=RUN_AUDIT, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_audit(self, audit_id: str) -> str:
    """Audit one uploaded network by id, then queue its webhook; returns what the claim decided."""
    from worker.remedies.audit import audit_with_remedies  # torch loads here, in the worker process only

    context = current_context()
    engine = partial(audit_with_remedies, max_verified=context.settings.max_verified_remedies)
    claim = execute_audit(audit_id, context=context, run_engine=engine)
    if claim in (Claim.CLAIMED, Claim.EXHAUSTED):  # this delivery finished the audit (or gave it up)
        announce_finish(context, self.app, audit_id)
    return claim.value


@shared_task(name=DELIVER_WEBHOOK, bind=True, acks_late=True, ignore_result=True,
             soft_time_limit=WEBHOOK_SOFT_LIMIT_S, time_limit=WEBHOOK_HARD_LIMIT_S)
def deliver_webhook(self, audit_id: str) -> str:
    """Post a finished audit to its webhook; a failed attempt is retried by Celery after an exponential backoff,
    up to GRADAUDIT_WEBHOOK_MAX_ATTEMPTS attempts in all."""
    context = current_context()
    attempt, most = self.request.retries + 1, context.settings.webhook_max_attempts
    outcome = deliver(context, audit_id, attempt)
    if outcome.retry and attempt < most:
        raise self.retry(countdown=backoff_s(context.settings, attempt), max_retries=most - 1)
    return outcome.status
