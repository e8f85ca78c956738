"""The Celery application both sides share: the API sends tasks by name, the worker runs them.

Nothing here imports torch, so the API can send work without loading the engine.
"""

from __future__ import annotations

from celery import Celery

from gradaudit.settings import Settings

RUN_AUDIT = "gradaudit.run_audit"
AUDIT_QUEUE = "audits"


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for at-least-once delivery of long, memory-hungry audits."""
    app = Celery("gradaudit", broker=settings.broker_url, set_as_current=True)
    app.conf.update(celery_config(settings))
    return app


def celery_config(settings: Settings) -> dict:
    """The Celery settings, kept in one dict so tests can read what production uses."""
    return dict(
        task_default_queue=AUDIT_QUEUE,
        task_ignore_result=True,  # the database holds every result; no result backend
        result_backend=None,
        # Ack only after the audit ran, and requeue when the process running it dies,
        # so a crashed audit is retried; the database's guarded claim makes retries harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.soft_time_limit_s,
        task_time_limit=settings.hard_time_limit_s,
        broker_transport_options={
            # Redis redelivers an unacked message after this long; past the hard limit so a
            # running audit is never handed out twice while its worker is alive.
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_limit": 10,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        worker_hijack_root_logger=False,
    )


def send_audit(celery: Celery, audit_id: str) -> None:
    """Queue the audit by task name: only the id travels, the database has the rest."""
    celery.send_task(RUN_AUDIT, args=[audit_id], queue=AUDIT_QUEUE)
