"""A key's limit of active audits holds under concurrent submissions (models.audits.create_audit_within_limit):
each submission counts while it holds the key's row, so no two can both count below the limit."""

from __future__ import annotations

import threading
import time

from models import api_keys
from models import audits as audit_rows

SUBMITTERS = 8
MOST_ACTIVE = 3


def _key_id(db) -> str:
    with db.sessions() as db_session:
        key, _secret = api_keys.create_key(db_session=db_session, name="ci")
        return key.id


def test_concurrent_submissions_never_pass_the_limit(db, monkeypatch):
    key_id = _key_id(db)
    counted = audit_rows.count_active_audits

    def slow_count(**kwargs) -> int:
        active = counted(**kwargs)
        time.sleep(0.05)  # widen the gap between counting and inserting, where a race would slip through
        return active

    monkeypatch.setattr(audit_rows, "count_active_audits", slow_count)
    start, created = threading.Barrier(SUBMITTERS), []

    def submit() -> None:
        start.wait()
        with db.sessions() as db_session:
            audit = audit_rows.create_audit_within_limit(db_session=db_session, owner_key_id=key_id,
                                                         most_active=MOST_ACTIVE, artifact_sha256="ab" * 32,
                                                         artifact_format="onnx", artifact_size=10, options={})
            created.append(audit)

    threads = [threading.Thread(target=submit) for _ in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(audit is not None for audit in created) == MOST_ACTIVE
    with db.sessions() as db_session:
        assert audit_rows.count_active_audits(db_session=db_session, owned_by=key_id) == MOST_ACTIVE


def test_finished_audits_free_their_places(db):
    key_id = _key_id(db)
    fields = {"artifact_sha256": "cd" * 32, "artifact_format": "onnx", "artifact_size": 10, "options": {}}
    with db.sessions() as db_session:
        first = audit_rows.create_audit_within_limit(db_session=db_session, owner_key_id=key_id, most_active=1,
                                                     **fields)
        assert audit_rows.create_audit_within_limit(db_session=db_session, owner_key_id=key_id, most_active=1,
                                                    **fields) is None
        audit_rows.fail_audit(db_session=db_session, audit_id=first.id, code="input_too_large", detail="big")
        assert audit_rows.create_audit_within_limit(db_session=db_session, owner_key_id=key_id, most_active=1,
                                                    **fields) is not None
