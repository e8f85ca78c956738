"""Deleting audits: the row goes with its layers, batch rows and webhook deliveries (ON DELETE CASCADE), and each
stored file it used goes too once no audit references it: the upload (artifact_sha256), the inputs (inputs_sha256)
and the patched networks its report names (findings[].recommendations[].network, combined.network).

The store keeps each file once for every audit with the same bytes, so a file is removed only when no remaining
audit names it, and only if nobody wrote it again after the deleted audit last did: an upload of the same bytes
whose row is not committed yet has just rewritten the file, and keeps it. A running audit is not deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, delete, or_, select
from sqlalchemy.orm import Session

from gradaudit.artifacts import ArtifactStore
from models.audits import FAILED, RUNNING, SUCCEEDED
from models.tables import Audit, as_utc

log = logging.getLogger(__name__)

# Candidate files per query that looks for them in the reports' JSON.
_CHUNK = 50


@dataclass(frozen=True)
class DeletedAudit:
    """What a deleted audit leaves to clean up: each stored file it used and when it last wrote one."""

    id: str
    files: frozenset[str]
    written_by: datetime  # the audit's last write of its files: when it finished (created, if it never ran)


def delete_audit(*, db_session: Session, audit_id: str) -> DeletedAudit | None:
    """Delete the audit unless it is running (or gone): None then. Its rows go; its files are the caller's."""
    audit = db_session.get(Audit, audit_id, populate_existing=True)
    if audit is None or audit.status == RUNNING:
        return None
    deleted = DeletedAudit(id=audit.id, files=frozenset(files_of(audit)),
                           written_by=as_utc(audit.finished_at or audit.created_at))
    # Guarded: a claim that turned it running meanwhile wins, and the audit stays.
    result = db_session.execute(delete(Audit).where(Audit.id == audit_id, Audit.status == audit.status))
    db_session.commit()
    db_session.expunge_all()
    return deleted if result.rowcount == 1 else None


def files_of(audit: Audit) -> set[str]:
    """The sha256 of every stored file the audit uses."""
    files = {audit.artifact_sha256, audit.inputs_sha256}
    for finding in audit.findings or ():
        files.update(_network_sha256(recommendation) for recommendation in finding.get("recommendations", ()))
    files.add(_network_sha256(audit.combined or {}))
    return {sha256 for sha256 in files if sha256}


def _network_sha256(holder: dict[str, Any]) -> str | None:
    network = holder.get("network")
    return network.get("sha256") if isinstance(network, dict) else None


def find_expired_audits(*, db_session: Session, finished_before: datetime, limit: int) -> list[str]:
    """Finished audits that finished before this moment, oldest first: what retention deletes."""
    query = (select(Audit.id).where(Audit.status.in_((SUCCEEDED, FAILED)), Audit.finished_at < finished_before)
             .order_by(Audit.finished_at).limit(limit))
    return list(db_session.scalars(query))


def referenced_files(*, db_session: Session, candidates: Iterable[str]) -> set[str]:
    """Those of the candidate sha256s that some audit still uses."""
    candidates = set(candidates)
    found = set(db_session.scalars(select(Audit.artifact_sha256).where(Audit.artifact_sha256.in_(candidates))))
    found |= set(db_session.scalars(select(Audit.inputs_sha256).where(Audit.inputs_sha256.in_(candidates))))
    for chunk in _chunks(sorted(candidates - found)):
        found |= _named_in_reports(db_session, chunk)
    return found


def _named_in_reports(db_session: Session, chunk: list[str]) -> set[str]:
    # A sha256 is 64 hex digits: found in a report's JSON text, it is a patched network's name.
    findings, combined = cast(Audit.findings, Text), cast(Audit.combined, Text)
    mentions = or_(*(text.contains(sha256) for sha256 in chunk for text in (findings, combined)))
    found = set()
    for findings_text, combined_text in db_session.execute(select(findings, combined).where(mentions)):
        found |= {sha256 for sha256 in chunk if sha256 in f"{findings_text} {combined_text}"}
    return found


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def remove_unused_files(*, db_session: Session, store: ArtifactStore, deleted: Iterable[DeletedAudit]) -> list[str]:
    """Remove the files of deleted audits that no audit uses now; the sha256s removed. A file the store cannot
    remove is logged and left."""
    written_by: dict[str, datetime] = {}
    for audit in deleted:
        for sha256 in audit.files:
            written_by[sha256] = max(written_by.get(sha256, audit.written_by), audit.written_by)
    unused = set(written_by) - referenced_files(db_session=db_session, candidates=written_by)
    removed = []
    for sha256 in sorted(unused):
        try:
            if store.remove(sha256, written_before=written_by[sha256].timestamp()):
                removed.append(sha256)
        except OSError:
            log.warning("could not remove stored file %s", sha256, exc_info=True)
    return removed
