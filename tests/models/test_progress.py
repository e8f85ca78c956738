"""models.audits.record_progress on SQLite and PostgreSQL: only the owner of a running audit moves it, only
forward; a finished audit never moves, and one that succeeded reads 1."""

from __future__ import annotations

from models import audits as audit_rows
from tests.support.db import claim, fail, new_audit, reread, succeed


def _record(db, audit_id: str, phase: str, progress: float, worker_id: str = "w1") -> bool:
    return db.call(audit_rows.record_progress, audit_id=audit_id, worker_id=worker_id, phase=phase,
                   progress=progress)


def _where(db, audit_id: str) -> tuple[str | None, float | None]:
    row = reread(db, audit_id)
    return row.phase, row.progress


def test_a_new_audit_has_no_phase_and_no_progress(db):
    assert _where(db, new_audit(db).id) == (None, None)


def test_the_running_owner_moves_it_forward_only(db):
    audit = new_audit(db)
    claim(db, audit.id)

    assert _record(db, audit.id, "loading", 0.0)
    assert _record(db, audit.id, "probing", 0.3)
    assert _record(db, audit.id, "diagnosing", 0.3)  # a new phase at the same progress
    assert not _record(db, audit.id, "loading", 0.1)
    assert _where(db, audit.id) == ("diagnosing", 0.3)


def test_another_worker_or_a_queued_audit_is_not_moved(db):
    queued = new_audit(db)
    assert not _record(db, queued.id, "loading", 0.0)
    running = new_audit(db)
    claim(db, running.id, "w1")
    assert not _record(db, running.id, "probing", 0.2, worker_id="w2")
    assert _where(db, queued.id) == _where(db, running.id) == (None, None)


def test_a_finished_audit_never_moves(db):
    succeeded, failed = new_audit(db), new_audit(db)
    for audit in (succeeded, failed):
        claim(db, audit.id)
        _record(db, audit.id, "probing", 0.3)
    succeed(db, succeeded.id)
    fail(db, failed.id, worker_id="w1")

    assert not _record(db, succeeded.id, "verifying", 0.9)
    assert not _record(db, failed.id, "verifying", 0.9)
    assert _where(db, succeeded.id) == ("probing", 1.0)  # the phase it was last in; done
    assert _where(db, failed.id) == ("probing", 0.3)  # how far it got
