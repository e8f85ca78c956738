"""Reading and writing audits. Every function takes the session as `db_session=`, so a request
and a worker task call the same code. Status changes are guarded UPDATEs: a redelivered or
duplicated task cannot move an audit backwards or run it twice at once."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from models.tables import ApiKey, Audit, AuditStatus, LayerBatchRow, LayerRow, as_utc, utcnow

QUEUED, RUNNING = AuditStatus.QUEUED.value, AuditStatus.RUNNING.value
SUCCEEDED, FAILED = AuditStatus.SUCCEEDED.value, AuditStatus.FAILED.value
WORKER_LOST = "worker_lost"


class Claim(str, enum.Enum):
    """What a worker may do with an audit it was handed."""

    CLAIMED = "claimed"  # run it
    BUSY = "busy"  # another live worker runs it: drop this delivery
    FINISHED = "finished"  # already succeeded or failed: drop this delivery
    EXHAUSTED = "exhausted"  # too many workers died on it: now failed with worker_lost
    MISSING = "missing"  # no such audit


def create_audit(*, db_session: Session, **fields: Any) -> Audit:
    """Insert a queued audit and commit it."""
    audit = Audit(status=QUEUED, **fields)
    db_session.add(audit)
    db_session.commit()
    return audit


def create_audit_within_limit(*, db_session: Session, owner_key_id: str, most_active: int,
                              **fields: Any) -> Audit | None:
    """Insert and commit a queued audit for this key unless the key already has `most_active` audits queued or
    running; None then. The key's row is written before counting: that serialises concurrent submissions of one
    key (a row lock in PostgreSQL, the write lock in SQLite), so two of them cannot both count below the limit."""
    db_session.execute(update(ApiKey).where(ApiKey.id == owner_key_id).values(name=ApiKey.name))
    if count_active_audits(db_session=db_session, owned_by=owner_key_id) >= most_active:
        db_session.rollback()
        return None
    return create_audit(db_session=db_session, owner_key_id=owner_key_id, **fields)


def get_audit(*, db_session: Session, audit_id: str) -> Audit | None:
    """The audit with this id, or None."""
    return db_session.get(Audit, audit_id)


def list_audits(
    *, db_session: Session, limit: int, offset: int, owned_by: str | None = None
) -> tuple[list[Audit], int]:
    """One page of audits, newest first, and the total count; with owned_by, only that API key's audits."""
    scope = [Audit.owner_key_id == owned_by] if owned_by is not None else []
    total = db_session.scalar(select(func.count()).select_from(Audit).where(*scope))
    page = db_session.scalars(
        select(Audit).where(*scope).order_by(Audit.created_at.desc(), Audit.id.desc()).limit(limit).offset(offset)
    )
    return list(page), total


def count_active_audits(*, db_session: Session, owned_by: str) -> int:
    """How many of this API key's audits are queued or running."""
    active = and_(Audit.owner_key_id == owned_by, Audit.status.in_((QUEUED, RUNNING)))
    return db_session.scalar(select(func.count()).select_from(Audit).where(active))


def list_layers(*, db_session: Session, audit_id: str) -> list[LayerRow]:
    """The stored per-layer statistics of an audit, input side first, with their per-batch rows loaded."""
    query = (select(LayerRow).where(LayerRow.audit_id == audit_id).order_by(LayerRow.depth, LayerRow.id)
             .options(selectinload(LayerRow.batch_rows)))
    return list(db_session.scalars(query))


def mark_enqueued(*, db_session: Session, audit_id: str) -> None:
    """Record that the audit's task reached the broker."""
    db_session.execute(update(Audit).where(Audit.id == audit_id).values(enqueued_at=utcnow()))
    db_session.commit()


def claim_audit(
    *,
    db_session: Session,
    audit_id: str,
    worker_id: str,
    stale_after: timedelta,
    max_attempts: int,
    owner_is_dead: Callable[[str], bool],
) -> Claim:
    """Take an audit for this worker: a queued one, or a running one whose worker is gone."""
    # populate_existing: decide on the row as it is now, not on a copy this session cached earlier.
    audit = db_session.get(Audit, audit_id, populate_existing=True)
    if audit is None:
        return Claim.MISSING
    if audit.status in (SUCCEEDED, FAILED):
        return Claim.FINISHED
    now = utcnow()
    if audit.status == RUNNING and not _is_abandoned(audit, now - stale_after, owner_is_dead):
        return Claim.BUSY
    if audit.attempts >= max_attempts:
        detail = (f"the worker process running this audit vanished {audit.attempts} times (killed, or its machine "
                  "lost); an audit that itself runs out of time or memory fails with its own code instead")
        return Claim.EXHAUSTED if _fail_abandoned(db_session, audit, detail) else Claim.BUSY
    return Claim.CLAIMED if _take(db_session, audit, worker_id, now) else Claim.BUSY


def _is_abandoned(audit: Audit, stale_before: datetime, owner_is_dead: Callable[[str], bool]) -> bool:
    silent = audit.heartbeat_at is None or as_utc(audit.heartbeat_at) < stale_before
    return owner_is_dead(audit.claimed_by or "") or silent


def _same_state(audit: Audit):
    """The guard of a compare-and-set: the row is still exactly as this worker read it."""
    # The heartbeat is part of it: an owner that beat after we read the row is alive, not abandoned.
    return and_(Audit.id == audit.id, Audit.status == audit.status, Audit.attempts == audit.attempts,
                Audit.heartbeat_at.is_not_distinct_from(audit.heartbeat_at))


def _take(db_session: Session, audit: Audit, worker_id: str, now: datetime) -> bool:
    values = dict(status=RUNNING, attempts=audit.attempts + 1, claimed_by=worker_id, heartbeat_at=now)
    if audit.started_at is None:
        values["started_at"] = now
    return _compare_and_set(db_session, _same_state(audit), values)


def _fail_abandoned(db_session: Session, audit: Audit, detail: str) -> bool:
    values = dict(status=FAILED, error_code=WORKER_LOST, error_detail=detail, finished_at=utcnow())
    return _compare_and_set(db_session, _same_state(audit), values)


def _compare_and_set(db_session: Session, guard, values: dict[str, Any]) -> bool:
    result = db_session.execute(update(Audit).where(guard).values(**values))
    db_session.commit()
    return result.rowcount == 1


def _owned_by(audit_id: str, worker_id: str):
    return and_(Audit.id == audit_id, Audit.status == RUNNING, Audit.claimed_by == worker_id)


def beat(*, db_session: Session, audit_id: str, worker_id: str) -> bool:
    """Refresh the heartbeat of an audit this worker runs; False once it is no longer ours."""
    return _compare_and_set(db_session, _owned_by(audit_id, worker_id), dict(heartbeat_at=utcnow()))


def record_progress(*, db_session: Session, audit_id: str, worker_id: str, phase: str, progress: float) -> bool:
    """Store where a running audit of this worker is; False if it is no longer ours, or already further along
    (progress never goes back, and a finished audit never moves)."""
    not_back = or_(Audit.progress.is_(None), Audit.progress <= progress)
    return _compare_and_set(db_session, and_(_owned_by(audit_id, worker_id), not_back),
                            dict(phase=phase, progress=progress))


def succeed_audit(
    *, db_session: Session, audit_id: str, worker_id: str, result: dict[str, Any], layers: Iterable[dict[str, Any]]
) -> bool:
    """Store a finished audit's report and layer rows, if this worker still owns it.

    A layer dict (a LayerRecord as plain data) may carry `batch_rows`; they go to layer_probes.
    """
    values = dict(
        status=SUCCEEDED,
        finished_at=utcnow(),
        progress=1.0,
        network_parameters=result["network"]["parameters"],
        network_layers=result["network"]["layers"],
        setup=result["setup"],
        findings=result["findings"],
        verdict=result["verdict"],
        combined=result.get("combined"),
    )
    updated = db_session.execute(update(Audit).where(_owned_by(audit_id, worker_id)).values(**values))
    if updated.rowcount != 1:
        db_session.rollback()
        return False
    db_session.add_all(_layer_row(audit_id, layer) for layer in layers)
    db_session.commit()
    return True


def _layer_row(audit_id: str, layer: dict[str, Any]) -> LayerRow:
    fields = {key: value for key, value in layer.items() if key != "batch_rows"}
    batch_rows = [LayerBatchRow(audit_id=audit_id, depth=fields["depth"], **row) for row in layer.get("batch_rows", ())]
    return LayerRow(audit_id=audit_id, batch_rows=batch_rows, **fields)


def fail_audit(*, db_session: Session, audit_id: str, code: str, detail: str, worker_id: str | None = None) -> bool:
    """Mark an unfinished audit failed with a stable code; with worker_id, only if that worker owns it."""
    guard = (
        _owned_by(audit_id, worker_id)
        if worker_id
        else and_(Audit.id == audit_id, Audit.status.in_((QUEUED, RUNNING)))
    )
    values = dict(status=FAILED, error_code=code, error_detail=detail, finished_at=utcnow())
    return _compare_and_set(db_session, guard, values)


def find_stale_audits(*, db_session: Session, stale_after: timedelta, unsent_after: timedelta) -> list[str]:
    """Audits that need their task sent again: running with a silent worker, or never enqueued."""
    now = utcnow()
    not_resent_lately = or_(Audit.enqueued_at.is_(None), Audit.enqueued_at < now - stale_after)
    silent = and_(Audit.status == RUNNING, Audit.heartbeat_at < now - stale_after, not_resent_lately)
    unsent = and_(Audit.status == QUEUED, Audit.enqueued_at.is_(None), Audit.created_at < now - unsent_after)
    return list(db_session.scalars(select(Audit.id).where(or_(silent, unsent))))


def find_queued_audits(*, db_session: Session, sent_before: datetime) -> list[str]:
    """Queued audits last sent (or, never sent, created) before this moment: the reconciler's candidates."""
    last_sent = func.coalesce(Audit.enqueued_at, Audit.created_at)
    query = select(Audit.id).where(Audit.status == QUEUED, last_sent < sent_before).order_by(Audit.created_at)
    return list(db_session.scalars(query))
