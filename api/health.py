"""GET /healthz: is the database reachable, is the broker reachable, can the artifact store keep files."""

from __future__ import annotations

import os
import tempfile

from flask import Blueprint
from sqlalchemy import text

from api.services import services
from gradaudit.queue import worker_seen

health = Blueprint("health", __name__)


# What the API itself needs to take uploads. A worker is not among them: a POST while none runs is kept queued.
SERVING_CHECKS = ("database", "broker", "storage")


@health.get("/healthz")
def healthz():
    """200 when the database, the broker and the artifact store answer, else 503 naming the one that did not;
    `worker` says whether a worker was seen in the last few heartbeats."""
    checks = _checks()
    return _answer(checks, all(checks[name] for name in SERVING_CHECKS))


@health.get("/readyz")
def readyz():
    """200 only when, beyond /healthz, a live worker will run what is posted."""
    checks = _checks()
    return _answer(checks, all(checks.values()))


def _checks() -> dict[str, bool]:
    broker = _broker_ok()
    return {"database": _database_ok(), "broker": broker, "storage": _storage_ok(), "worker": broker and _worker_ok()}


def _answer(checks: dict[str, bool], ok: bool):
    return {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503


def _worker_ok() -> bool:
    try:
        return worker_seen(services().celery)
    except Exception:
        return False


def _database_ok() -> bool:
    try:
        with services().sessions() as db_session:
            db_session.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _broker_ok() -> bool:
    try:
        with services().celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


def _storage_ok() -> bool:
    # Writing a file is the only proof: a folder can exist, and even look writable, on a full or read-only disk.
    try:
        root = services().store.root
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".healthz-") as probe:
            probe.write(b"ok")
            probe.flush()
            os.fsync(probe.fileno())
        return True
    except OSError:
        return False
