"""models.audits on SQLite and PostgreSQL: rows, guarded transitions, claims, stale audits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from models import audits as audit_rows
from models.audits import Claim
from models.tables import Audit, LayerRow, as_utc, utcnow
from tests.support.db import (
    LAYER,
    RESULT,
    STALE_AFTER,
    claim,
    fail,
    layers_of,
    new_audit,
    reread,
    set_columns,
    succeed,
)


def test_create_and_get(db):
    audit = new_audit(db, filename="net.onnx", options={"batch_size": 4})
    row = reread(db, audit.id)

    assert len(row.id) == 32
    assert (row.status, row.attempts, row.filename, row.options) == ("queued", 0, "net.onnx", {"batch_size": 4})
    assert (row.artifact_sha256, row.artifact_format, row.artifact_size) == ("ef" * 32, "onnx", 123)
    assert row.created_at is not None
    assert row.enqueued_at is row.started_at is row.finished_at is row.heartbeat_at is None


def test_get_missing(db):
    assert reread(db, "missing") is None


def test_list_newest_first_with_total(db):
    start = utcnow() - timedelta(hours=1)
    ids = [new_audit(db, created_at=start + timedelta(seconds=n)).id for n in range(3)]

    page, total = db.call(audit_rows.list_audits, limit=2, offset=0)
    assert ([a.id for a in page], total) == ([ids[2], ids[1]], 3)
    page, total = db.call(audit_rows.list_audits, limit=2, offset=2)
    assert ([a.id for a in page], total) == ([ids[0]], 3)


def test_mark_enqueued(db):
    audit = new_audit(db)
    db.call(audit_rows.mark_enqueued, audit_id=audit.id)
    assert reread(db, audit.id).enqueued_at is not None


def test_first_claim_runs_the_audit(db):
    audit = new_audit(db)

    assert claim(db, audit.id) == Claim.CLAIMED
    row = reread(db, audit.id)
    assert (row.status, row.attempts, row.claimed_by) == ("running", 1, "w1")
    assert row.started_at is not None and row.heartbeat_at is not None


def test_second_claim_while_heartbeat_is_fresh_is_busy(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")

    assert claim(db, audit.id, "w2") == Claim.BUSY
    row = reread(db, audit.id)
    assert (row.status, row.attempts, row.claimed_by) == ("running", 1, "w1")


def test_claim_after_stale_heartbeat_takes_over(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")
    started_at = reread(db, audit.id).started_at
    set_columns(db, audit.id, heartbeat_at=utcnow() - STALE_AFTER - timedelta(seconds=1))

    assert claim(db, audit.id, "w2") == Claim.CLAIMED
    row = reread(db, audit.id)
    assert (row.status, row.attempts, row.claimed_by) == ("running", 2, "w2")
    assert row.started_at == started_at  # the first start stands


def test_claim_from_a_dead_owner_is_immediate(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")

    assert claim(db, audit.id, "w2", dead={"w1"}) == Claim.CLAIMED
    row = reread(db, audit.id)
    assert (row.attempts, row.claimed_by) == (2, "w2")


def test_claim_past_max_attempts_is_exhausted(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1", max_attempts=2)
    claim(db, audit.id, "w2", max_attempts=2, dead={"w1"})

    assert claim(db, audit.id, "w3", max_attempts=2, dead={"w2"}) == Claim.EXHAUSTED
    row = reread(db, audit.id)
    assert (row.status, row.error_code, row.attempts) == ("failed", "worker_lost", 2)
    assert "2 times" in row.error_detail
    assert row.finished_at is not None
    assert claim(db, audit.id, "w4", max_attempts=2) == Claim.FINISHED


def test_live_owner_is_busy_even_past_max_attempts(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1", max_attempts=1)

    assert claim(db, audit.id, "w2", max_attempts=1) == Claim.BUSY
    assert reread(db, audit.id).status == "running"


@pytest.mark.parametrize("finish", [succeed, fail], ids=["succeeded", "failed"])
def test_claim_of_finished_audit(finish, db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")
    assert finish(db, audit.id, "w1")

    assert claim(db, audit.id, "w2", dead={"w1"}) == Claim.FINISHED


def test_claim_of_missing_audit(db):
    assert claim(db, "0" * 32) == Claim.MISSING


def test_claim_loses_a_race_to_a_concurrent_claim(db):
    audit = new_audit(db)
    with db.sessions() as db_session:
        read_before = audit_rows.get_audit(db_session=db_session, audit_id=audit.id)
        # Another worker claims between this session's read and its guarded UPDATE.
        assert claim(db, audit.id, "w2") == Claim.CLAIMED
        assert audit_rows._take(db_session, read_before, "w1", utcnow()) is False
    row = reread(db, audit.id)
    assert (row.claimed_by, row.attempts) == ("w2", 1)


def test_claim_loses_to_an_owner_that_beats_after_the_read(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")
    set_columns(db, audit.id, heartbeat_at=utcnow() - STALE_AFTER - timedelta(seconds=1))

    def owner_beats_meanwhile(owner: str) -> bool:
        # Runs between claim_audit's read and its guarded UPDATE: the owner proves it is alive.
        assert db.call(audit_rows.beat, audit_id=audit.id, worker_id="w1")
        return False

    outcome = db.call(audit_rows.claim_audit, audit_id=audit.id, worker_id="w2", stale_after=STALE_AFTER,
                      max_attempts=3, owner_is_dead=owner_beats_meanwhile)

    assert outcome == Claim.BUSY
    assert reread(db, audit.id).claimed_by == "w1"


def test_claim_decides_on_the_row_not_on_a_cached_copy(db):
    # A session that already holds the audit (here: the one that created and claimed it)
    # must still see the heartbeat and owner that its own claim wrote.
    with db.sessions() as db_session:
        audit = audit_rows.create_audit(db_session=db_session, artifact_sha256="ef" * 32,
                                        artifact_format="onnx", artifact_size=1)
        arguments = dict(db_session=db_session, audit_id=audit.id, stale_after=STALE_AFTER, max_attempts=3,
                         owner_is_dead=lambda owner: False)
        assert audit_rows.claim_audit(worker_id="w1", **arguments) == Claim.CLAIMED
        assert audit_rows.claim_audit(worker_id="w2", **arguments) == Claim.BUSY
    row = reread(db, audit.id)
    assert (row.claimed_by, row.attempts) == ("w1", 1)


def test_succeed_stores_result_and_layers(db):
    audit = new_audit(db)
    claim(db, audit.id)
    second = {**LAYER, "name": "out", "depth": 1}

    assert succeed(db, audit.id, layers=[second, LAYER])
    row = reread(db, audit.id)
    assert (row.status, row.verdict, row.network_parameters, row.network_layers) == ("succeeded", "healthy", 10, 1)
    assert (row.setup, row.findings, row.error_code) == (RESULT["setup"], [], None)
    assert row.finished_at is not None
    assert layers_of(db, audit.id) == [LAYER, second]


def test_only_the_owner_may_succeed(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")

    assert not succeed(db, audit.id, "w2", layers=[LAYER])
    row = reread(db, audit.id)
    assert (row.status, row.verdict) == ("running", None)
    assert layers_of(db, audit.id) == []


def test_queued_audit_cannot_succeed(db):
    audit = new_audit(db)
    assert not succeed(db, audit.id)
    assert reread(db, audit.id).status == "queued"


def test_only_the_owner_may_fail(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")

    assert not fail(db, audit.id, "w2")
    assert reread(db, audit.id).status == "running"
    assert fail(db, audit.id, "w1", code="input_shape_required", detail="give a shape")
    row = reread(db, audit.id)
    assert (row.status, row.error_code, row.error_detail) == ("failed", "input_shape_required", "give a shape")
    assert row.finished_at is not None


def test_fail_without_owner_takes_queued_or_running(db):
    queued, running = new_audit(db), new_audit(db)
    claim(db, running.id)

    for audit in (queued, running):
        assert fail(db, audit.id)
        assert reread(db, audit.id).status == "failed"


def test_finished_audit_never_moves_again(db):
    audit = new_audit(db)
    claim(db, audit.id)
    succeed(db, audit.id)

    assert not fail(db, audit.id)
    assert not fail(db, audit.id, "w1")
    assert not succeed(db, audit.id, layers=[LAYER])
    row = reread(db, audit.id)
    assert (row.status, row.error_code) == ("succeeded", None)
    assert layers_of(db, audit.id) == []


def test_failed_audit_cannot_succeed_late(db):
    audit = new_audit(db)
    claim(db, audit.id)
    fail(db, audit.id)

    assert not succeed(db, audit.id, layers=[LAYER])
    assert reread(db, audit.id).status == "failed"
    assert layers_of(db, audit.id) == []


def test_beat_refreshes_only_the_owners_heartbeat(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")
    old = utcnow() - timedelta(minutes=5)
    set_columns(db, audit.id, heartbeat_at=old)

    assert not db.call(audit_rows.beat, audit_id=audit.id, worker_id="w2")
    assert as_utc(reread(db, audit.id).heartbeat_at) == old
    assert db.call(audit_rows.beat, audit_id=audit.id, worker_id="w1")
    assert as_utc(reread(db, audit.id).heartbeat_at) > old


def test_beat_after_finish_is_refused(db):
    audit = new_audit(db)
    claim(db, audit.id, "w1")
    fail(db, audit.id)
    assert not db.call(audit_rows.beat, audit_id=audit.id, worker_id="w1")


def stale(db) -> set[str]:
    """find_stale_audits with 30 s for heartbeats and 60 s for unsent audits."""
    return set(db.call(audit_rows.find_stale_audits, stale_after=STALE_AFTER, unsent_after=timedelta(seconds=60)))


def test_find_stale_audits(db):
    long_ago = utcnow() - timedelta(minutes=10)
    never_sent = new_audit(db, created_at=long_ago)
    just_created = new_audit(db)
    sent = new_audit(db, created_at=long_ago, enqueued_at=long_ago)
    silent, alive = new_audit(db), new_audit(db)
    for audit in (silent, alive):
        claim(db, audit.id)
    set_columns(db, silent.id, heartbeat_at=long_ago)
    finished = new_audit(db, created_at=long_ago)
    fail(db, finished.id)

    found = stale(db)
    assert found == {never_sent.id, silent.id}
    assert {just_created.id, sent.id, alive.id, finished.id}.isdisjoint(found)


def test_silent_audit_resent_lately_is_not_stale_again(db):
    long_ago = utcnow() - timedelta(minutes=10)
    audit = new_audit(db)
    claim(db, audit.id)
    set_columns(db, audit.id, heartbeat_at=long_ago, enqueued_at=utcnow())
    assert stale(db) == set()

    set_columns(db, audit.id, enqueued_at=long_ago)
    assert stale(db) == {audit.id}


def layer_count(db) -> int:
    """Every layer row in the database."""
    with db.sessions() as db_session:
        return db_session.scalar(select(func.count()).select_from(LayerRow))


def finished_with_layers(db, count: int) -> str:
    """A succeeded audit with `count` layer rows; its id."""
    audit = new_audit(db)
    claim(db, audit.id)
    succeed(db, audit.id, layers=[{**LAYER, "depth": depth} for depth in range(count)])
    return audit.id


def test_deleting_an_audit_deletes_its_layers(db):
    keep, drop = finished_with_layers(db, 2), finished_with_layers(db, 3)
    assert layer_count(db) == 5

    with db.sessions() as db_session:
        db_session.delete(audit_rows.get_audit(db_session=db_session, audit_id=drop))
        db_session.commit()
    assert layer_count(db) == 2
    assert len(layers_of(db, keep)) == 2


def test_schema_cascades_without_the_orm(db):
    # ON DELETE CASCADE in the schema itself, not only the ORM relationship's cascade.
    finished_with_layers(db, 2)
    with db.sessions() as db_session:
        db_session.execute(delete(Audit))
        db_session.commit()
    assert layer_count(db) == 0


def test_status_check_constraint(db):
    audit = new_audit(db)
    with pytest.raises(IntegrityError):
        set_columns(db, audit.id, status="paused")
    assert reread(db, audit.id).status == "queued"
