"""The reconciler: queued audits the broker does not hold are sent, those it holds are left alone."""

from __future__ import annotations

import time
from datetime import timedelta

import redis

from gradaudit.queue import AUDIT_QUEUE, audits_in_broker, make_celery, send_audit
from models import audits as audit_rows
from models.tables import utcnow
from tests.support.db import Database, new_audit, set_columns
from worker.context import build_context
from worker.reconciler import audits_to_send, reconcile_queue


def test_audits_to_send_keeps_the_order_and_drops_those_held():
    assert audits_to_send(["a", "b", "c", "d"], {"b", "d", "x"}) == ["a", "c"]
    assert audits_to_send([], {"a"}) == []
    assert audits_to_send(["a"], set()) == ["a"]


def test_audits_in_broker_sees_waiting_and_delivered_tasks(make_settings, redis_url):
    celery = make_celery(make_settings(broker_url=redis_url))
    send_audit(celery, "waiting")
    send_audit(celery, "delivered")
    celery.send_task("some.other_task", args=["not-an-audit"], queue=AUDIT_QUEUE)
    client = redis.Redis.from_url(redis_url)
    # Deliver one as a worker would: off the queue into the unacked hash.
    raw = client.rpop(AUDIT_QUEUE)
    client.hset("unacked", "tag-1", b'[' + raw + b', "", "audits"]')

    assert audits_in_broker(celery) == {"waiting", "delivered"}


def test_a_delivery_nobody_acked_for_too_long_is_not_held(make_settings, redis_url):
    celery = make_celery(make_settings(broker_url=redis_url))
    client = redis.Redis.from_url(redis_url)
    for audit_id, delivered_s_ago in (("taken-lately", 1), ("taken-by-the-dead", 600)):
        send_audit(celery, audit_id)
        raw = client.rpop(AUDIT_QUEUE)
        client.hset("unacked", audit_id, b'[' + raw + b', "", "audits"]')
        client.zadd("unacked_index", {audit_id: time.time() - delivered_s_ago})

    assert audits_in_broker(celery) == {"taken-lately", "taken-by-the-dead"}
    assert audits_in_broker(celery, delivered_within_s=30) == {"taken-lately"}


def test_reconcile_sends_only_settled_queued_audits_the_broker_lacks(make_settings, sqlite_url, redis_url):
    settings = make_settings(database_url=sqlite_url, broker_url=redis_url, stale_after_s=30)
    context, celery, db = build_context(settings), make_celery(settings), Database(sqlite_url)
    long_ago = utcnow() - timedelta(minutes=10)
    never_sent = new_audit(db, created_at=long_ago)
    lost = new_audit(db, created_at=long_ago, enqueued_at=long_ago)
    held = new_audit(db, created_at=long_ago, enqueued_at=long_ago)
    fresh = new_audit(db)  # the API may be sending it right now
    send_audit(celery, held.id)

    sent = reconcile_queue(context, celery)

    assert sent == [never_sent.id, lost.id]
    assert audits_in_broker(celery) == {never_sent.id, lost.id, held.id}
    assert fresh.id not in audits_in_broker(celery)
    assert db.call(audit_rows.get_audit, audit_id=lost.id).enqueued_at is not None
    assert reconcile_queue(context, celery) == []  # sent once, not on every pass
    set_columns(db, never_sent.id, status="running")
    assert len(redis.Redis.from_url(redis_url).lrange(AUDIT_QUEUE, 0, -1)) == 3
