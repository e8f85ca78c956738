"""The Celery application both sides share: the API sends tasks by name, the worker runs them.

Nothing here imports torch, so the API can send work without loading the engine.
"""

from __future__ import annotations

import base64
import json
import time

from celery import Celery

from gradaudit.settings import Settings

RUN_AUDIT = "gradaudit.run_audit"
AUDIT_QUEUE = "audits"
DELIVER_WEBHOOK = "gradaudit.deliver_webhook"
WEBHOOK_QUEUE = "webhooks"  # consumed by the same workers as audits (worker/app.py)
QUEUES = (AUDIT_QUEUE, WEBHOOK_QUEUE)
BROKER_SOCKET_TIMEOUT_S = 5


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
            # A broker that accepts the connection but never answers (hung, stopped) must not hang a POST:
            # the send fails and the audit waits queued for the reconciler. Past the 1 s BRPOP of the consumer.
            "socket_timeout": BROKER_SOCKET_TIMEOUT_S,
            "socket_connect_timeout": BROKER_SOCKET_TIMEOUT_S,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        worker_hijack_root_logger=False,
    )


def send_audit(celery: Celery, audit_id: str) -> None:
    """Queue the audit by task name: only the id travels, the database has the rest."""
    celery.send_task(RUN_AUDIT, args=[audit_id], queue=AUDIT_QUEUE)


def send_webhook(celery: Celery, audit_id: str) -> None:
    """Queue the post of a finished audit to its webhook, by task name."""
    celery.send_task(DELIVER_WEBHOOK, args=[audit_id], queue=WEBHOOK_QUEUE)


# Redis keys a live worker refreshes; /healthz reads them. They expire on their own when a worker dies.
WORKER_KEY_PREFIX = "gradaudit:worker:"


def _redis_client(connection):
    """The redis-py client under a kombu Redis connection (the only broker gradaudit deploys)."""
    connection.ensure_connection(max_retries=1, timeout=2)
    return connection.default_channel.client


def announce_worker(celery: Celery, worker_id: str, ttl_s: float) -> None:
    """Say in the broker that this worker lives, for ttl_s seconds."""
    with celery.connection_for_write() as connection:
        _redis_client(connection).set(WORKER_KEY_PREFIX + worker_id, "alive", px=max(1, int(ttl_s * 1000)))


def worker_seen(celery: Celery) -> bool:
    """True while some worker's liveness key has not expired."""
    with celery.connection_for_read() as connection:
        keys = _redis_client(connection).scan_iter(match=WORKER_KEY_PREFIX + "*", count=100)
        return next(iter(keys), None) is not None


def live_workers(celery: Celery) -> int:
    """How many workers' liveness keys have not expired."""
    with celery.connection_for_read() as connection:
        return sum(1 for _key in _redis_client(connection).scan_iter(match=WORKER_KEY_PREFIX + "*", count=100))


def queue_depths(celery: Celery) -> dict[str, int]:
    """Messages waiting in each of our queues (a retry waiting out its backoff is held by a worker, not counted)."""
    with celery.connection_for_read() as connection:
        client, channel = _redis_client(connection), connection.default_channel
        return {queue: sum(client.llen(channel._q_for_pri(queue, priority)) for priority in channel.priority_steps)
                for queue in QUEUES}


def audits_in_broker(celery: Celery, delivered_within_s: float | None = None) -> set[str]:
    """The ids of every audit whose task the broker holds: waiting in the queue, or delivered and not yet acked
    (with delivered_within_s, only if delivered that recently: a consumer that sat longer on it is gone)."""
    with celery.connection_for_read() as connection:
        client, channel = _redis_client(connection), connection.default_channel
        # The queue first: a message moves from it to the unacked hash, so reading in this order misses none.
        held = []
        for priority in channel.priority_steps:
            held += [json.loads(raw) for raw in client.lrange(channel._q_for_pri(AUDIT_QUEUE, priority), 0, -1)]
        held += _delivered(client, channel, delivered_within_s)
    return {audit_id for message in held if (audit_id := _audit_id_of(message))}


def _delivered(client, channel, within_s: float | None) -> list[dict]:
    """The unacked messages, each as kombu stores it: [message, exchange, routing key] -> message."""
    unacked = client.hgetall(channel.unacked_key)
    if within_s is not None:
        since = time.time() - within_s  # kombu scores each delivery with its wall-clock time
        recent = {tag for tag, _at in client.zrangebyscore(channel.unacked_index_key, since, "+inf", withscores=True)}
        unacked = {tag: raw for tag, raw in unacked.items() if tag in recent}
    return [json.loads(raw)[0] for raw in unacked.values()]


def _audit_id_of(message: dict) -> str | None:
    """The audit id a run_audit task message carries; None for any other message."""
    try:
        if message["headers"]["task"] != RUN_AUDIT:
            return None
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        return str(args[0])
    except (KeyError, ValueError, TypeError, IndexError):
        return None
