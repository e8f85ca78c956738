"""models.deletion on SQLite and PostgreSQL: a deleted audit takes its layer rows, batch rows and deliveries along
(ON DELETE CASCADE), a running one is not deleted, a file is referenced by an upload, inputs or a report's patched
network, and retention finds finished audits by finish time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from models import deletion
from models import webhooks as webhook_rows
from models.tables import LayerBatchRow, LayerRow, WebhookDelivery, utcnow
from tests.support.db import LAYER, claim, new_audit, set_columns, succeed

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def count(db, table) -> int:
    with db.sessions() as db_session:
        return db_session.scalar(select(func.count()).select_from(table))


def finished(db, **fields) -> str:
    audit_id = new_audit(db, **fields).id
    assert claim(db, audit_id).value == "claimed"
    batch_row = {"batch": 0, "seed": 0, "numel": 8}
    assert succeed(db, audit_id, layers=[{**LAYER, "batch_rows": [batch_row]}])
    return audit_id


def test_a_deleted_audit_takes_its_rows_along(db):
    audit_id = finished(db)
    db.call(webhook_rows.record_delivery, audit_id=audit_id, url="https://8.8.8.8/", attempt=1, status="failed")
    assert (count(db, LayerRow), count(db, LayerBatchRow), count(db, WebhookDelivery)) == (1, 1, 1)

    deleted = db.call(deletion.delete_audit, audit_id=audit_id)
    assert deleted.id == audit_id and deleted.files == {"ef" * 32}
    assert (count(db, LayerRow), count(db, LayerBatchRow), count(db, WebhookDelivery)) == (0, 0, 0)
    assert db.call(deletion.delete_audit, audit_id=audit_id) is None


def test_a_running_audit_is_not_deleted(db):
    audit_id = new_audit(db).id
    claim(db, audit_id)
    assert db.call(deletion.delete_audit, audit_id=audit_id) is None
    assert count(db, LayerRow) == 0 and db.call(deletion.find_expired_audits, finished_before=utcnow(),
                                                 limit=10) == []


def test_files_are_referenced_by_uploads_inputs_and_reports(db):
    audit_id = finished(db, inputs_sha256=B)
    findings = [{"code": "x", "recommendations": [{"code": "y", "network": {"sha256": C, "size": 1}}]}]
    set_columns(db, audit_id, artifact_sha256=A, findings=findings, combined={"network": {"sha256": D, "size": 1}})

    candidates = {A, B, C, D, "e" * 64}
    assert db.call(deletion.referenced_files, candidates=candidates) == {A, B, C, D}
    assert db.call(deletion.delete_audit, audit_id=audit_id).files == {A, B, C, D}
    assert db.call(deletion.referenced_files, candidates=candidates) == set()


def test_retention_finds_audits_finished_before_the_cutoff_oldest_first(db):
    old, older, recent = finished(db), finished(db), finished(db)
    now = utcnow()
    set_columns(db, old, finished_at=now - timedelta(days=10))
    set_columns(db, older, finished_at=now - timedelta(days=20))
    queued = new_audit(db).id

    expired = db.call(deletion.find_expired_audits, finished_before=now - timedelta(days=5), limit=10)
    assert expired == [older, old]
    assert recent not in expired and queued not in expired
    assert db.call(deletion.find_expired_audits, finished_before=now - timedelta(days=5), limit=1) == [older]
