"""worker.retention: with GRADAUDIT_RETENTION_DAYS, audits finished longer ago go with their rows and the stored
files no remaining audit uses; recent, queued and running audits stay; unset, nothing is deleted."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta

import pytest

from models import audits as audit_rows
from models.tables import utcnow
from tests.support.db import claim, new_audit, set_columns, succeed
from worker import retention
from worker.context import build_context


@pytest.fixture
def context(make_settings, sqlite_url):
    return build_context(make_settings(database_url=sqlite_url, retention_days=7))


def stored(context, content: bytes, written_at: float) -> str:
    """Bytes in the store as if written at that POSIX time (a later upload of the same bytes rewrites it)."""
    artifact = context.store.save(io.BytesIO(content), max_bytes=len(content) + 1)
    os.utime(artifact.path, (written_at, written_at))
    return artifact.sha256


def finished_days_ago(db, context, days: float, upload: bytes) -> str:
    """An audit created and finished `days` ago, its upload written then."""
    audit_id = new_audit(db).id
    claim(db, audit_id)
    assert succeed(db, audit_id)
    moment = utcnow() - timedelta(days=days)
    sha256 = stored(context, upload, written_at=moment.timestamp() - 1)
    set_columns(db, audit_id, artifact_sha256=sha256, created_at=moment, finished_at=moment)
    return audit_id


def files(context) -> set[bytes]:
    return {path.read_bytes() for path in context.store.root.rglob("*") if path.is_file()}


def exists(db, audit_id: str) -> bool:
    return db.call(audit_rows.get_audit, audit_id=audit_id) is not None


def test_audits_past_the_retention_go_with_their_unshared_files(db, context):
    old = finished_days_ago(db, context, 10, b"old upload")
    shared_old = finished_days_ago(db, context, 9, b"shared upload")
    recent = finished_days_ago(db, context, 3, b"shared upload")
    queued, running = new_audit(db).id, new_audit(db).id
    claim(db, running)
    set_columns(db, queued, created_at=utcnow() - timedelta(days=30))
    set_columns(db, running, created_at=utcnow() - timedelta(days=30))

    assert sorted(retention.sweep_expired(context)) == sorted([old, shared_old])
    assert not exists(db, old) and not exists(db, shared_old)
    assert all(exists(db, audit_id) for audit_id in (recent, queued, running))
    assert files(context) == {b"shared upload"}
    assert retention.sweep_expired(context) == []


def test_a_long_history_is_swept_in_batches(db, context, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 2)
    expired = [finished_days_ago(db, context, 8 + n, f"upload {n}".encode()) for n in range(5)]
    assert sorted(retention.sweep_expired(context)) == sorted(expired)
    assert files(context) == set()


def test_without_a_retention_nothing_is_deleted(db, make_settings, sqlite_url):
    context = build_context(make_settings(database_url=sqlite_url))
    audit_id = finished_days_ago(db, context, 3650, b"upload")
    assert retention.sweep_expired(context) == []
    assert exists(db, audit_id) and files(context) == {b"upload"}


def test_the_sweeper_thread_sweeps(db, context, monkeypatch):
    monkeypatch.setattr(retention, "SWEEP_EVERY_S", 0.05)
    audit_id = finished_days_ago(db, context, 10, b"upload")
    sweeper = retention.RetentionSweeper(context)
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while exists(db, audit_id):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        sweeper.stop()
    assert files(context) == set()
