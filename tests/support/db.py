"""Calling models.audits from tests: a migrated database opened per call, and audits in each state."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from models import audits as audit_rows
from models.audits import Claim
from models.database import make_engine, make_session_factory
from models.tables import Audit

STALE_AFTER = timedelta(seconds=30)
RESULT = {"network": {"format": "onnx", "parameters": 10, "layers": 1},
          "setup": {"device": "cpu", "batch_size": 2}, "findings": [], "verdict": "healthy"}
LAYER = {"name": "fc", "kind": "Gemm", "depth": 0, "parameters": 10, "weight_norm": 1.0, "grad_norm": 0.1,
         "grad_mean_abs": 0.01, "grad_std": 0.02, "grad_max_abs": 0.3, "grad_zero_fraction": 0.0,
         "grad_nonfinite": 0, "grad_to_weight": 0.1}


class Database:
    """A migrated database; every call opens its own short session, as requests and tasks do."""

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.sessions = make_session_factory(self.engine)

    def call(self, function, **kwargs):
        """Run one persistence function in a fresh session."""
        with self.sessions() as db_session:
            return function(db_session=db_session, **kwargs)


def new_audit(db, **fields) -> Audit:
    """A queued audit with placeholder artifact fields."""
    values = dict(artifact_sha256="ef" * 32, artifact_format="onnx", artifact_size=123, **fields)
    return db.call(audit_rows.create_audit, **values)


def claim(db, audit_id: str, worker_id: str = "w1", *, max_attempts: int = 3, dead=()) -> Claim:
    """claim_audit with the test's defaults."""
    return db.call(audit_rows.claim_audit, audit_id=audit_id, worker_id=worker_id, stale_after=STALE_AFTER,
                   max_attempts=max_attempts, owner_is_dead=lambda owner: owner in dead)


def reread(db, audit_id: str) -> Audit:
    """The row as the database holds it now."""
    return db.call(audit_rows.get_audit, audit_id=audit_id)


def succeed(db, audit_id: str, worker_id: str = "w1", layers=()) -> bool:
    """succeed_audit with the fabricated result."""
    return db.call(audit_rows.succeed_audit, audit_id=audit_id, worker_id=worker_id, result=RESULT,
                   layers=list(layers))


def fail(db, audit_id: str, worker_id: str | None = None, code: str = "c", detail: str = "d") -> bool:
    """fail_audit with placeholder code and detail."""
    return db.call(audit_rows.fail_audit, audit_id=audit_id, code=code, detail=detail, worker_id=worker_id)


def layers_of(db, audit_id: str) -> list[dict]:
    """The stored layer rows of an audit, as dicts."""
    return [layer.as_dict() for layer in db.call(audit_rows.list_layers, audit_id=audit_id)]


def set_columns(db, audit_id: str, **values) -> None:
    """Rewrite columns directly, e.g. to age a heartbeat."""
    with db.sessions() as db_session:
        db_session.execute(update(Audit).where(Audit.id == audit_id).values(**values))
        db_session.commit()
