"""find_queued_audits on SQLite and PostgreSQL: which queued audits the reconciler looks at."""

from __future__ import annotations

from datetime import timedelta

from models import audits as audit_rows
from models.tables import utcnow
from tests.support.db import claim, fail, new_audit, set_columns


def test_queued_audits_settled_before_the_moment_oldest_first(db):
    now = utcnow()
    long_ago, lately = now - timedelta(minutes=10), now - timedelta(seconds=5)
    never_sent = new_audit(db, created_at=long_ago - timedelta(minutes=1))
    sent_long_ago = new_audit(db, created_at=long_ago, enqueued_at=long_ago)
    sent_lately = new_audit(db, created_at=long_ago, enqueued_at=lately)
    just_created = new_audit(db, created_at=lately)
    running = new_audit(db, created_at=long_ago)
    claim(db, running.id)
    finished = new_audit(db, created_at=long_ago)
    fail(db, finished.id)

    found = db.call(audit_rows.find_queued_audits, sent_before=now - timedelta(minutes=1))

    assert found == [never_sent.id, sent_long_ago.id]
    assert {sent_lately.id, just_created.id, running.id, finished.id}.isdisjoint(found)


def test_a_resent_audit_waits_out_the_grace_again(db):
    now = utcnow()
    audit = new_audit(db, created_at=now - timedelta(minutes=10))
    assert db.call(audit_rows.find_queued_audits, sent_before=now - timedelta(minutes=1)) == [audit.id]

    db.call(audit_rows.mark_enqueued, audit_id=audit.id)
    assert db.call(audit_rows.find_queued_audits, sent_before=now - timedelta(minutes=1)) == []
    set_columns(db, audit.id, enqueued_at=now - timedelta(minutes=2))
    assert db.call(audit_rows.find_queued_audits, sent_before=now - timedelta(minutes=1)) == [audit.id]
